package config

import "crypto/tls"

// TLS reports whether serve should speak HTTPS and wss://.
func (c *Config) TLS() bool { return c.TLSCert != "" || c.TLSKey != "" }

// validateTLS checks that the certificate and key come together and load
// as a pair, so a typo is reported at start, not at the first handshake.
func validateTLS(cfg *Config, bad func(string, ...any)) {
	switch {
	case cfg.TLSCert == "" && cfg.TLSKey == "":
		return
	case cfg.TLSCert == "":
		bad("PARLEY_TLS_KEY/--tls-key is set without PARLEY_TLS_CERT/--tls-cert")
		return
	case cfg.TLSKey == "":
		bad("PARLEY_TLS_CERT/--tls-cert is set without PARLEY_TLS_KEY/--tls-key")
		return
	}
	if _, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey); err != nil {
		bad("PARLEY_TLS_CERT/PARLEY_TLS_KEY: %v", err)
	}
}
