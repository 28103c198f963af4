package push

import (
	"fmt"
	"os"

	"github.com/parley-chat/parley/config"
)

// Setup is what the configuration turns on.
type Setup struct {
	Providers []Provider
	// VAPID are the Web Push keys (empty with Web Push off); Generated
	// says they were made now and saved in the data directory.
	VAPID     VAPIDKeys
	Generated bool
}

// FromConfig makes the providers the settings turn on: FCM with a service
// account file, APNs with a .p8 key, Web Push unless turned off (its VAPID
// keys generated once and kept beside the app credentials when not given).
func FromConfig(cfg *config.Config) (Setup, error) {
	p := cfg.Push
	var s Setup
	if p.FCMCredentials != "" {
		raw, err := os.ReadFile(p.FCMCredentials)
		if err != nil {
			return s, fmt.Errorf("PARLEY_FCM_CREDENTIALS: %w", err)
		}
		f, err := NewFCM(FCMOptions{CredentialsJSON: raw, ProjectID: p.FCMProjectID, Endpoint: p.FCMEndpoint})
		if err != nil {
			return s, err
		}
		s.Providers = append(s.Providers, f)
	}
	if p.APNsKeyFile != "" {
		raw, err := os.ReadFile(p.APNsKeyFile)
		if err != nil {
			return s, fmt.Errorf("PARLEY_APNS_KEY_FILE: %w", err)
		}
		a, err := NewAPNs(APNsOptions{Key: raw, KeyID: p.APNsKeyID, TeamID: p.APNsTeamID, Topic: p.APNsTopic,
			Production: p.APNsProduction, Endpoint: p.APNsEndpoint})
		if err != nil {
			return s, err
		}
		s.Providers = append(s.Providers, a)
	}
	if p.WebPush {
		s.VAPID = VAPIDKeys{Public: p.VAPIDPublicKey, Private: p.VAPIDPrivateKey}
		if s.VAPID.Public == "" {
			var err error
			if s.VAPID, s.Generated, err = LoadOrCreateVAPID(cfg.VAPIDFile()); err != nil {
				return s, err
			}
		} else if err := CheckVAPID(s.VAPID); err != nil {
			return s, fmt.Errorf("PARLEY_VAPID_PRIVATE_KEY: %w", err)
		}
		s.Providers = append(s.Providers, NewWebPush(s.VAPID, p.VAPIDSubject, nil))
	}
	return s, nil
}
