package push

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/parley-chat/parley/persistence"
	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/payload"
	"github.com/sideshow/apns2/token"
	"golang.org/x/net/http2"
)

// APNs sends through Apple's push service with token authentication (a
// .p8 key signs an ES256 provider token, renewed by apns2 every 50
// minutes) over HTTP/2.
type APNs struct {
	client *apns2.Client
	topic  string
}

// APNsOptions configure NewAPNs.
type APNsOptions struct {
	Key                  []byte // the .p8 file's content
	KeyID, TeamID, Topic string
	Production           bool
	// Endpoint overrides Apple's host (production or sandbox).
	Endpoint string
	// RootCAs, when set, are the only roots trusted for the endpoint's
	// certificate (a test server); default the system's.
	RootCAs *x509.CertPool
}

// NewAPNs reads the key.
func NewAPNs(o APNsOptions) (*APNs, error) {
	key, err := token.AuthKeyFromBytes(o.Key)
	if err != nil {
		return nil, fmt.Errorf("APNs: the key is not a .p8 token signing key: %w", err)
	}
	c := apns2.NewTokenClient(&token.Token{AuthKey: key, KeyID: o.KeyID, TeamID: o.TeamID})
	if o.Production {
		c.Production()
	} else {
		c.Development()
	}
	if o.Endpoint != "" {
		c.Host = strings.TrimRight(o.Endpoint, "/")
	}
	if o.RootCAs != nil {
		c.HTTPClient = &http.Client{Timeout: 30 * time.Second, Transport: &http2.Transport{
			TLSClientConfig: &tls.Config{RootCAs: o.RootCAs}, ReadIdleTimeout: apns2.ReadIdleTimeout}}
	}
	return &APNs{client: c, topic: o.Topic}, nil
}

// Platform is "apns".
func (a *APNs) Platform() string { return persistence.PlatformAPNs }

// APNsPayload is the notification's payload: the alert (title, body), the
// badge, a thread per matter, and the ids the app opens.
func APNsPayload(n Notification) *payload.Payload {
	p := payload.NewPayload().AlertTitle(n.Title).AlertBody(n.Body()).Badge(n.Badge).Sound("default").ThreadID(n.CollapseID())
	for k, v := range n.Data() {
		p.Custom(k, v)
	}
	return p
}

// Send pushes an alert. 410 Unregistered and 400 BadDeviceToken or
// DeviceTokenNotForTopic mean the token is dead; 429 and 5xx are retried;
// anything else (a bad provider token, a wrong topic) is rejected.
func (a *APNs) Send(ctx context.Context, d persistence.Device, n Notification) error {
	res, err := a.client.PushWithContext(ctx, &apns2.Notification{
		DeviceToken: d.Token, Topic: a.topic, PushType: apns2.PushTypeAlert, Priority: apns2.PriorityHigh,
		CollapseID: n.CollapseID(), Expiration: time.Now().Add(24 * time.Hour), Payload: APNsPayload(n),
	})
	if err != nil {
		return err
	}
	if res.Sent() {
		return nil
	}
	dead := res.StatusCode == http.StatusGone || res.Reason == apns2.ReasonBadDeviceToken || res.Reason == apns2.ReasonDeviceTokenNotForTopic
	return failure(res.StatusCode, res.Reason, 0, dead)
}
