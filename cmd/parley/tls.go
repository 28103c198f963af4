package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
)

// certReloader serves the certificate in certFile/keyFile and loads them
// again on SIGHUP. A reload that fails keeps the certificate in use, so a
// half-written renewal never takes the server down; sockets already open
// keep their session either way.
type certReloader struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) load() error {
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert.Store(&c)
	return nil
}

// onSIGHUP handles SIGHUP until the returned stop is called: it reloads
// the certificate when serving TLS and otherwise only logs, so that
// `systemctl reload` or a closed terminal never kills the server.
func onSIGHUP(r *certReloader, log *slog.Logger) (stop func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-sig:
				if r == nil {
					log.Info("SIGHUP: nothing to reload (no TLS certificate configured)")
					continue
				}
				if err := r.load(); err != nil {
					log.Error("TLS reload failed; the previous certificate stays in use", slog.Any("error", err))
					continue
				}
				log.Info("TLS certificate reloaded", "cert", r.certFile)
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(sig)
		close(done)
	}
}

func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// tlsListener wraps ln so that it speaks TLS with the reloader's
// certificate. Only HTTP/1.1 is offered: a WebSocket upgrade needs it
// (browsers that negotiated HTTP/2 would not send a classic upgrade).
func tlsListener(ln net.Listener, r *certReloader) net.Listener {
	return tls.NewListener(ln, &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: r.getCertificate,
	})
}
