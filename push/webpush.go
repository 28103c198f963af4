package push

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	webpush "github.com/SherClockHolmes/webpush-go"
	"github.com/parley-chat/parley/persistence"
)

// WebPush sends to browsers' push services: the payload encrypted for the
// subscription (RFC 8291, aes128gcm) and the request signed with the
// server's VAPID key (RFC 8292), by webpush-go.
type WebPush struct {
	keys    VAPIDKeys
	subject string
	client  *http.Client
}

// VAPIDKeys are a server's application server keys, base64url as browsers
// take the public one (applicationServerKey).
type VAPIDKeys struct {
	Public  string `json:"public_key"`
	Private string `json:"private_key"`
}

// NewWebPush makes the provider. client may be nil (a 10 s timeout).
func NewWebPush(keys VAPIDKeys, subject string, client *http.Client) *WebPush {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	// webpush-go writes "mailto:" before any subject that is not an https: URL.
	return &WebPush{keys: keys, subject: strings.TrimPrefix(subject, "mailto:"), client: client}
}

// Platform is "webpush".
func (w *WebPush) Platform() string { return persistence.PlatformWebPush }

// WebPushPayload is the JSON the service worker receives: what to show
// and what to open.
func WebPushPayload(n Notification) ([]byte, error) {
	return json.Marshal(map[string]any{
		"title": n.Title, "body": n.Body(), "tag": n.CollapseID(), "badge": n.Badge,
		"matter_id": n.MatterID, "message_id": n.MessageID, "sender_id": n.SenderID, "sender_name": n.SenderName,
	})
}

// Send posts the encrypted payload. 404 and 410 mean the subscription is
// gone; 429 and 5xx are retried; anything else is rejected.
func (w *WebPush) Send(ctx context.Context, d persistence.Device, n Notification) error {
	body, err := WebPushPayload(n)
	if err != nil {
		return err
	}
	res, err := webpush.SendNotificationWithContext(ctx, body, &webpush.Subscription{Endpoint: d.Token, Keys: webpush.Keys{P256dh: d.P256dh, Auth: d.Auth}},
		&webpush.Options{HTTPClient: w.client, Subscriber: w.subject, VAPIDPublicKey: w.keys.Public, VAPIDPrivateKey: w.keys.Private,
			TTL: 24 * 3600, Urgency: webpush.UrgencyHigh, Topic: n.CollapseID()})
	if err != nil {
		return err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 4<<10))
	if res.StatusCode >= 200 && res.StatusCode < 300 {
		return nil
	}
	dead := res.StatusCode == http.StatusNotFound || res.StatusCode == http.StatusGone
	return failure(res.StatusCode, string(raw), retryAfter(res), dead)
}

// LoadOrCreateVAPID returns the keys kept in path, generating and saving
// them (0600) the first time, as the generated app credentials are.
func LoadOrCreateVAPID(path string) (keys VAPIDKeys, generated bool, err error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if json.Unmarshal(b, &keys) != nil || CheckVAPID(keys) != nil {
			return VAPIDKeys{}, false, fmt.Errorf("%s is damaged; delete it to generate new VAPID keys (browsers then subscribe again)", path)
		}
		return keys, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return VAPIDKeys{}, false, fmt.Errorf("read %s: %w", path, err)
	}
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return VAPIDKeys{}, false, err
	}
	keys = VAPIDKeys{Public: base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()), Private: base64.RawURLEncoding.EncodeToString(key.Bytes())}
	out, _ := json.MarshalIndent(keys, "", "  ")
	// The data directory may not exist yet: with PostgreSQL and the app's
	// credentials in the environment nothing else writes to it.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return VAPIDKeys{}, false, fmt.Errorf("save generated VAPID keys: %w", err)
	}
	if err := os.WriteFile(path, append(out, '\n'), 0o600); err != nil {
		return VAPIDKeys{}, false, fmt.Errorf("save generated VAPID keys: %w", err)
	}
	return keys, true, nil
}

// CheckVAPID says whether the keys are a P-256 pair, base64url.
func CheckVAPID(k VAPIDKeys) error {
	priv, err := base64.RawURLEncoding.DecodeString(k.Private)
	if err != nil {
		return errors.New("the VAPID private key is not base64url")
	}
	key, err := ecdh.P256().NewPrivateKey(priv)
	if err != nil {
		return errors.New("the VAPID private key is not a P-256 key")
	}
	if base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()) != k.Public {
		return errors.New("the VAPID public key is not the private key's")
	}
	return nil
}
