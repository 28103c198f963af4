package pushtest

import (
	"testing"

	"github.com/parley-chat/parley/push"
)

// Services are the three test services on one Recorder and a push provider
// of Parley's for each, aimed at them.
type Services struct {
	Rec  *Recorder
	FCM  *FCM
	APNs *APNs
	Web  *WebPush
	// Keys are the VAPID keys the Web Push provider signs with (Web
	// requires them).
	Keys push.VAPIDKeys
	// Providers are FCM's, APNs' and Web Push's, in that order.
	Providers []push.Provider
}

// StartServices starts the three test services and makes their providers.
func StartServices(t testing.TB) *Services {
	t.Helper()
	s := &Services{Rec: NewRecorder()}
	s.FCM, s.APNs, s.Web = NewFCM(t, s.Rec), NewAPNs(t, s.Rec), NewWebPush(t, s.Rec)
	fcm, err := push.NewFCM(push.FCMOptions{CredentialsJSON: s.FCM.CredentialsJSON, Endpoint: s.FCM.URL})
	if err != nil {
		t.Fatal(err)
	}
	apns, err := push.NewAPNs(push.APNsOptions{Key: s.APNs.KeyP8, KeyID: s.APNs.KeyID, TeamID: s.APNs.TeamID, Topic: s.APNs.Topic,
		Endpoint: s.APNs.URL, RootCAs: s.APNs.RootCAs})
	if err != nil {
		t.Fatal(err)
	}
	s.Keys, _, err = push.LoadOrCreateVAPID(t.TempDir() + "/vapid.json")
	if err != nil {
		t.Fatal(err)
	}
	s.Web.VAPIDPublic = s.Keys.Public
	s.Providers = []push.Provider{fcm, apns, push.NewWebPush(s.Keys, "mailto:ops@example.com", s.Web.Client())}
	return s
}
