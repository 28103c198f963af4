package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// selfSigned makes a certificate for 127.0.0.1 with the given serial and
// writes it and its key as PEM files.
func selfSigned(t *testing.T, serial int64, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "parley test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Written beside and renamed, as certificate tools do, so a reload never
	// sees half a file.
	write := func(path string, block *pem.Block) {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(keyFile, &pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	write(certFile, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// servedSerial is the serial of the certificate a new handshake gets.
func servedSerial(t *testing.T, n *procNode) int64 {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", n.url[len("https://"):], &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	defer c.Close()
	if p := c.ConnectionState().NegotiatedProtocol; p != "" && p != "http/1.1" {
		t.Fatalf("negotiated %q; a WebSocket upgrade needs HTTP/1.1", p)
	}
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestTLS: with --tls-cert/--tls-key the port speaks HTTPS and wss:// (the
// HTTP API and sockets alike); SIGHUP loads a renewed certificate for new
// handshakes while open sockets keep working; a broken renewal keeps the
// certificate in use.
func TestTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and starts a parley process")
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := selfSigned(t, 1, certFile, keyFile)

	n := newProcNode(t, "tls", "--tls-cert="+certFile, "--tls-key="+keyFile)
	roots := x509.NewCertPool()
	roots.AddCert(first)
	n.useTLS(&tls.Config{RootCAs: roots})
	n.start()
	if !strings.Contains(n.allLogs(), "scheme=https") {
		t.Fatalf("the start-up log does not say https:\n%s", tail(n.allLogs(), 20))
	}

	w := dial(t, n, "wss-client")
	w.mustSubscribe("news", "")
	n.trigger(t, "news", "greeting", `{"n":1}`)
	if f := w.Expect("greeting"); f.Data != `{"n":1}` {
		t.Fatalf("event over wss: %q", f.Data)
	}

	// Plain HTTP on the TLS port is refused, not answered in clear.
	if status, err := plainGet("http://127.0.0.1:" + strconv.Itoa(n.httpPort) + "/up"); err == nil && status == 200 {
		t.Fatal("plain HTTP answered 200 on the TLS port")
	}

	// Renewal: new files, SIGHUP; new handshakes get the new certificate.
	second := selfSigned(t, 2, certFile, keyFile)
	n.signal(syscall.SIGHUP)
	eventually(t, 10*time.Second, "the renewed certificate is served", func() string {
		if s := servedSerial(t, n); s != 2 {
			return "still serial " + big.NewInt(s).String()
		}
		return ""
	})
	// The socket opened before the renewal still gets events.
	n.tlsRT.CloseIdleConnections()
	roots.AddCert(second)
	n.trigger(t, "news", "greeting", `{"n":2}`)
	if f := w.Expect("greeting"); f.Data != `{"n":2}` {
		t.Fatalf("event on the pre-renewal socket: %q", f.Data)
	}
	w2 := dial(t, n, "wss-client-2")
	w2.mustSubscribe("news", "")

	// A broken renewal: the reload fails, is logged, and serial 2 stays.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	n.signal(syscall.SIGHUP)
	eventually(t, 10*time.Second, "the failed reload is logged", func() string {
		if !strings.Contains(n.allLogs(), "TLS reload failed") {
			return "no log line yet"
		}
		return ""
	})
	if s := servedSerial(t, n); s != 2 {
		t.Fatalf("after a failed reload the served serial is %d, want 2", s)
	}
}

// plainGet does one plain-HTTP GET with a short timeout.
func plainGet(u string) (int, error) {
	c := &http.Client{Timeout: 3 * time.Second}
	res, err := c.Get(u)
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	return res.StatusCode, nil
}

// TestSIGHUPWithoutTLS: SIGHUP (systemctl reload, a closed terminal) never
// stops a server that has no certificate to reload.
func TestSIGHUPWithoutTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and starts a parley process")
	}
	n := newProcNode(t, "plain")
	n.start()
	w := dial(t, n, "client")
	w.mustSubscribe("news", "")
	n.signal(syscall.SIGHUP)
	eventually(t, 10*time.Second, "the SIGHUP is logged", func() string {
		if !strings.Contains(n.allLogs(), "SIGHUP: nothing to reload") {
			return "no log line yet"
		}
		return ""
	})
	n.trigger(t, "news", "after-hup", `{}`)
	w.Expect("after-hup")
}
