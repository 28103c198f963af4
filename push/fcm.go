package push

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/persistence"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
)

// FCMScope is the OAuth scope of FCM's HTTP v1 API.
const FCMScope = "https://www.googleapis.com/auth/firebase.messaging"

// FCM sends through Firebase Cloud Messaging's HTTP v1 API. Its OAuth
// access tokens come from the service account's key file through
// golang.org/x/oauth2/google: a JWT signed with the account's RSA key,
// exchanged at the file's token_uri, cached until it expires.
type FCM struct {
	url    string // .../v1/projects/{project}/messages:send
	tokens oauth2.TokenSource
	client *http.Client
}

// FCMOptions configure NewFCM.
type FCMOptions struct {
	// CredentialsJSON is the service account's key file's content.
	CredentialsJSON []byte
	// ProjectID overrides the file's project_id.
	ProjectID string
	// Endpoint is the API's base URL; default https://fcm.googleapis.com.
	Endpoint string
	// Client makes the requests (the token exchange too); default a client
	// with a 10 s timeout.
	Client *http.Client
}

// NewFCM reads the service account.
func NewFCM(o FCMOptions) (*FCM, error) {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Endpoint == "" {
		o.Endpoint = "https://fcm.googleapis.com"
	}
	var file struct {
		Type      string `json:"type"`
		ProjectID string `json:"project_id"`
	}
	if err := json.Unmarshal(o.CredentialsJSON, &file); err != nil || file.Type != "service_account" {
		return nil, fmt.Errorf("FCM: the credentials are not a service account's JSON key file")
	}
	if o.ProjectID == "" {
		o.ProjectID = file.ProjectID
	}
	if o.ProjectID == "" {
		return nil, fmt.Errorf("FCM: no project id (the key file has none: set PARLEY_FCM_PROJECT_ID)")
	}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, o.Client)
	creds, err := google.CredentialsFromJSONWithType(ctx, o.CredentialsJSON, google.ServiceAccount, FCMScope)
	if err != nil {
		return nil, fmt.Errorf("FCM: %w", err)
	}
	return &FCM{
		url:    strings.TrimRight(o.Endpoint, "/") + "/v1/projects/" + o.ProjectID + "/messages:send",
		tokens: creds.TokenSource, client: o.Client,
	}, nil
}

// Platform is "fcm".
func (f *FCM) Platform() string { return persistence.PlatformFCM }

// fcmMessage is the HTTP v1 API's request body.
type fcmMessage struct {
	Message struct {
		Token        string            `json:"token"`
		Notification fcmNotification   `json:"notification"`
		Data         map[string]string `json:"data"`
		Android      fcmAndroid        `json:"android"`
	} `json:"message"`
}

type fcmNotification struct {
	Title string `json:"title"`
	Body  string `json:"body"`
}

type fcmAndroid struct {
	CollapseKey  string `json:"collapse_key"`
	Priority     string `json:"priority"`
	Notification struct {
		Tag               string `json:"tag"`
		NotificationCount int    `json:"notification_count"`
	} `json:"notification"`
}

// FCMBody is the request body for one device: the notification (title,
// text), the data the app opens the matter with, the badge as Android's
// notification_count, the matter as collapse key and tag.
func FCMBody(token string, n Notification) ([]byte, error) {
	var m fcmMessage
	m.Message.Token = token
	m.Message.Notification = fcmNotification{Title: n.Title, Body: n.Body()}
	m.Message.Data = n.Data()
	m.Message.Android.CollapseKey = n.CollapseID()
	m.Message.Android.Priority = "high"
	m.Message.Android.Notification.Tag = n.CollapseID()
	m.Message.Android.Notification.NotificationCount = n.Badge
	return json.Marshal(m)
}

// Send posts the message; the provider's errors are classified: a token
// UNREGISTERED (404) is dead, 429 and 5xx are retried, anything else is
// rejected.
func (f *FCM) Send(ctx context.Context, d persistence.Device, n Notification) error {
	body, err := FCMBody(d.Token, n)
	if err != nil {
		return err
	}
	tok, err := f.tokens.Token()
	if err != nil {
		return &Failure{Class: Rejected, Reason: "OAuth token: " + err.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	tok.SetAuthHeader(req)
	res, err := f.client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if res.StatusCode == http.StatusOK {
		return nil
	}
	return fcmFailure(res, raw)
}

// fcmFailure reads the API's error: {"error": {"code", "message", "status",
// "details": [{"@type": "...FcmError", "errorCode": "UNREGISTERED"}]}}.
func fcmFailure(res *http.Response, raw []byte) *Failure {
	var e struct {
		Error struct {
			Message string `json:"message"`
			Status  string `json:"status"`
			Details []struct {
				ErrorCode string `json:"errorCode"`
			} `json:"details"`
		} `json:"error"`
	}
	_ = json.Unmarshal(raw, &e)
	reason := e.Error.Status
	for _, d := range e.Error.Details {
		if d.ErrorCode != "" {
			reason = d.ErrorCode
		}
	}
	dead := reason == "UNREGISTERED" || res.StatusCode == http.StatusNotFound
	return failure(res.StatusCode, strings.TrimSpace(reason+" "+e.Error.Message), retryAfter(res), dead)
}

// retryAfter is a Retry-After header in seconds, or 0.
func retryAfter(res *http.Response) time.Duration {
	if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}
