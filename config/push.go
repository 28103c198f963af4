package config

import (
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Push is how Parley sends push notifications to members who are not
// connected (docs/push.md). A provider is on when its credentials are
// given; Web Push is on unless turned off, with VAPID keys generated once
// and kept in the data directory when not given.
type Push struct {
	// Window: at most one push per device and matter per window; later
	// messages within it are pushed together when it ends, with the latest
	// text and the current count (PARLEY_PUSH_WINDOW).
	Window time.Duration
	// TextLength is the longest message text a push carries, in
	// characters; 0 sends no text at all (PARLEY_PUSH_TEXT_LENGTH).
	TextLength int
	// Queue bounds the pushes waiting for a provider on this node; past
	// it a push is dropped (PARLEY_PUSH_QUEUE).
	Queue int
	// Concurrency is how many pushes are sent at once (PARLEY_PUSH_CONCURRENCY).
	Concurrency int

	// FCM: a service account's JSON key file, the Firebase project (default:
	// the file's project_id) and the API's base URL.
	FCMCredentials, FCMProjectID, FCMEndpoint string
	// APNs: the .p8 key, its id, the team id, the app's bundle id (the
	// topic), production or sandbox, and an endpoint overriding both.
	APNsKeyFile, APNsKeyID, APNsTeamID, APNsTopic, APNsEndpoint string
	APNsProduction                                              bool
	// Web Push: on or off, the VAPID keys (base64url; generated when both
	// are empty) and the subject (a mailto: or https: contact).
	WebPush                                       bool
	VAPIDPublicKey, VAPIDPrivateKey, VAPIDSubject string
}

// VAPIDFile is where generated VAPID keys are kept, beside the generated
// app credentials.
func (c *Config) VAPIDFile() string { return filepath.Join(c.DataDir, "vapid.json") }

func pushSettings(p *pending) []Setting {
	const g = "Push notifications"
	return []Setting{
		{Group: g, Env: env("PARLEY_PUSH_WINDOW"), Default: "3s",
			Help: "at most one push per device and matter per window; later messages are pushed together when it ends, with the latest text and count", value: duration(&p.Push.Window, positiveDuration, nil)},
		{Group: g, Env: env("PARLEY_PUSH_TEXT_LENGTH"), Default: "120",
			Help: "longest message text a push carries, in characters; 0 = no text (privacy: the title and the sender's name only)", value: number(&p.Push.TextLength, atLeast(0, "must be 0 (no text) or more"))},
		{Group: g, Env: env("PARLEY_PUSH_QUEUE"), Default: "10000",
			Help: "pushes waiting for a provider on this node; past it a push is dropped (message delivery never waits)", value: number(&p.Push.Queue, atLeast(1, "must be at least 1"))},
		{Group: g, Env: env("PARLEY_PUSH_CONCURRENCY"), Default: "8",
			Help: "pushes sent at once", value: number(&p.Push.Concurrency, atLeast(1, "must be at least 1"))},
		{Group: g, Env: env("PARLEY_FCM_CREDENTIALS"), Shown: "none: FCM off", Arg: "FILE",
			Help: "FCM: the Firebase service account's JSON key file; setting it turns FCM on", value: text(&p.Push.FCMCredentials, fileExists)},
		{Group: g, Env: env("PARLEY_FCM_PROJECT_ID"), Shown: "the key file's `project_id`",
			Help: "FCM: the Firebase project", value: text(&p.Push.FCMProjectID, nil)},
		{Group: g, Env: env("PARLEY_FCM_ENDPOINT"), Default: "https://fcm.googleapis.com",
			Help: "FCM: the HTTP v1 API's base URL", value: text(&p.Push.FCMEndpoint, httpURL)},
		{Group: g, Env: env("PARLEY_APNS_KEY_FILE"), Shown: "none: APNs off", Arg: "FILE",
			Help: "APNs: the `.p8` token signing key; setting it turns APNs on (with the key id, team id and topic)", value: text(&p.Push.APNsKeyFile, fileExists)},
		{Group: g, Env: env("PARLEY_APNS_KEY_ID"), Shown: "none",
			Help: "APNs: the key's id", value: text(&p.Push.APNsKeyID, nil)},
		{Group: g, Env: env("PARLEY_APNS_TEAM_ID"), Shown: "none",
			Help: "APNs: the Apple developer team id", value: text(&p.Push.APNsTeamID, nil)},
		{Group: g, Env: env("PARLEY_APNS_TOPIC"), Shown: "none",
			Help: "APNs: the app's bundle id", value: text(&p.Push.APNsTopic, nil)},
		{Group: g, Env: env("PARLEY_APNS_PRODUCTION"), Default: "false",
			Help: "APNs: the production service (`false`: the sandbox, for development builds)", value: boolean(&p.Push.APNsProduction)},
		{Group: g, Env: env("PARLEY_APNS_ENDPOINT"), Shown: "Apple's, by `PARLEY_APNS_PRODUCTION`",
			Help: "APNs: a base URL instead of Apple's", value: text(&p.Push.APNsEndpoint, httpURL)},
		{Group: g, Env: env("PARLEY_WEBPUSH"), Default: "true",
			Help: "Web Push to browsers", value: boolean(&p.Push.WebPush)},
		{Group: g, Env: env("PARLEY_VAPID_PUBLIC_KEY"), Shown: "generated once, kept in the data directory's `vapid.json`",
			Help: "Web Push: the VAPID public key, base64url (every node of a cluster needs the same keys)", value: text(&p.Push.VAPIDPublicKey, nil)},
		{Group: g, Env: env("PARLEY_VAPID_PRIVATE_KEY"), Shown: "generated with the public key", Secret: true,
			Help: "Web Push: the VAPID private key, base64url", value: text(&p.Push.VAPIDPrivateKey, nil)},
		{Group: g, Env: env("PARLEY_VAPID_SUBJECT"), Default: "mailto:push@parley.invalid",
			Help: "Web Push: who runs this server, a `mailto:` or `https:` URL push services may contact", value: text(&p.Push.VAPIDSubject, nil)},
	}
}

// validatePush checks what one setting alone cannot.
func validatePush(c *Config, bad func(string, ...any)) {
	p := &c.Push
	if p.APNsKeyFile != "" && (p.APNsKeyID == "" || p.APNsTeamID == "" || p.APNsTopic == "") {
		bad("PARLEY_APNS_KEY_FILE needs PARLEY_APNS_KEY_ID, PARLEY_APNS_TEAM_ID and PARLEY_APNS_TOPIC")
	}
	if (p.VAPIDPublicKey == "") != (p.VAPIDPrivateKey == "") {
		bad("PARLEY_VAPID_PUBLIC_KEY and PARLEY_VAPID_PRIVATE_KEY go together (or neither: generated)")
	}
}

func fileExists(path string) string {
	if _, err := os.Stat(path); path != "" && err != nil {
		return "cannot be read: " + strconv.Quote(path)
	}
	return ""
}

func httpURL(s string) string {
	if u, err := url.Parse(s); s != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
		return "is not an http:// or https:// URL"
	}
	return ""
}
