package certs_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/certs"
	"github.com/latchauth/latch/internal/certs/certstest"
)

// tlsServer accepts TLS connections on a real loopback port with cfg and
// completes each handshake, each on its own goroutine.
func tlsServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { lis.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { // handshakes run concurrently, as in a real server
				defer wg.Done()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	return lis.Addr().String()
}

// handshake dials addr and returns the server's leaf certificate.
func handshake(t *testing.T, addr string, cfg *tls.Config) (*x509.Certificate, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// With TLS 1.3 a refused client certificate shows up at the first read.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != nil && !isEOF(err) {
		return nil, err
	}
	return c.ConnectionState().PeerCertificates[0], nil
}

func isEOF(err error) bool { return err != nil && strings.Contains(err.Error(), "EOF") }

// bump gives path a modification time distinct from any earlier write, so
// that a reload never depends on the file system's time resolution.
func bump(t *testing.T, path string, n int) {
	t.Helper()
	ts := time.Date(2030, 1, 1, 0, 0, n, 0, time.UTC)
	if err := os.Chtimes(path, ts, ts); err != nil {
		t.Fatal(err)
	}
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func TestReloadOnChange(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, "test CA")
	a, b, c := ca.Server(t), ca.Server(t), ca.Server(t)
	certFile, keyFile := a.WriteFiles(t, dir, "tls")
	logs := &logBuf{}
	r, err := certs.New(certFile, keyFile, certs.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsServer(t, r.ServerConfig("h2"))
	client := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", NextProtos: []string{"h2"}}
	want := func(step string, leaf certstest.Leaf) {
		t.Helper()
		got, err := handshake(t, addr, client)
		if err != nil {
			t.Fatalf("%s: handshake: %v", step, err)
		}
		if got.SerialNumber.Cmp(leaf.Cert.SerialNumber) != 0 {
			t.Fatalf("%s: served serial %v, want %v", step, got.SerialNumber, leaf.Cert.SerialNumber)
		}
	}
	want("initial", a)

	// Renewal in place: the next handshake serves the new certificate.
	b.WriteFiles(t, dir, "tls")
	bump(t, certFile, 1)
	bump(t, keyFile, 1)
	want("after renewal", b)
	if !strings.Contains(logs.String(), `"event":"tls_reloaded"`) {
		t.Errorf("reload not logged:\n%s", logs)
	}

	// A half-done renewal (new certificate, old key) keeps the last good
	// pair serving and is logged once.
	certstest.WriteFile(t, certFile, c.CertPEM)
	bump(t, certFile, 2)
	want("mismatched pair, first handshake", b)
	want("mismatched pair, second handshake", b)
	if n := strings.Count(logs.String(), `"event":"tls_reload_failed"`); n != 1 {
		t.Errorf("reload failure logged %d times, want once:\n%s", n, logs)
	}
	// The renewal completes: the new pair is served.
	certstest.WriteFile(t, keyFile, c.KeyPEM)
	bump(t, keyFile, 3)
	want("completed renewal", c)
	if got := r.Leaf().SerialNumber; got.Cmp(c.Cert.SerialNumber) != 0 {
		t.Errorf("Leaf serial %v, want %v", got, c.Cert.SerialNumber)
	}

	// A vanished file (mid-rename) is no reason to stop serving.
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	want("key file gone", c)

	// The key never appears in a log record.
	if strings.Contains(logs.String(), "PRIVATE KEY") {
		t.Errorf("log holds key material")
	}
}

func TestMinVersionTLS12(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, "test CA")
	certFile, keyFile := ca.Server(t).WriteFiles(t, dir, "tls")
	r, err := certs.New(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsServer(t, r.ServerConfig("h2"))
	old := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	if _, err := handshake(t, addr, old); err == nil {
		t.Errorf("TLS 1.1 handshake succeeded; want refusal")
	}
	tls12 := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", MaxVersion: tls.VersionTLS12}
	if _, err := handshake(t, addr, tls12); err != nil {
		t.Errorf("TLS 1.2 handshake: %v", err)
	}
}

func TestClientCAReload(t *testing.T) {
	dir := t.TempDir()
	ca1, ca2 := certstest.NewCA(t, "CA one"), certstest.NewCA(t, "CA two")
	certFile, keyFile := ca1.Server(t).WriteFiles(t, dir, "tls")
	caFile := filepath.Join(dir, "clients.pem")
	certstest.WriteFile(t, caFile, ca1.PEM)
	r, err := certs.New(certFile, keyFile, certs.WithClientCA(caFile))
	if err != nil {
		t.Fatal(err)
	}
	if !r.MutualTLS() {
		t.Fatal("MutualTLS() = false with a client CA")
	}
	addr := tlsServer(t, r.ServerConfig("h2"))
	dial := func(client *certstest.Leaf) error {
		cfg := &tls.Config{RootCAs: ca1.Pool(), ServerName: "localhost"}
		if client != nil {
			cfg.Certificates = []tls.Certificate{client.TLSCertificate(t)}
		}
		_, err := handshake(t, addr, cfg)
		return err
	}
	c1, c2 := ca1.Client(t, "one", ""), ca2.Client(t, "two", "")
	if err := dial(nil); err == nil {
		t.Errorf("no client certificate: handshake succeeded")
	}
	if err := dial(&c2); err == nil {
		t.Errorf("client certificate from another CA: handshake succeeded")
	}
	if err := dial(&c1); err != nil {
		t.Errorf("client certificate from the client CA: %v", err)
	}
	// The CA bundle is replaced: CA two's clients get in, CA one's no more.
	certstest.WriteFile(t, caFile, ca2.PEM)
	bump(t, caFile, 1)
	if err := dial(&c2); err != nil {
		t.Errorf("after CA reload, CA two's client: %v", err)
	}
	if err := dial(&c1); err == nil {
		t.Errorf("after CA reload, CA one's client still accepted")
	}
}

func TestNewRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, "test CA")
	a, b := ca.Server(t), ca.Server(t)
	certFile, keyFile := a.WriteFiles(t, dir, "a")
	_, otherKey := b.WriteFiles(t, dir, "b")
	empty := filepath.Join(dir, "empty.pem")
	certstest.WriteFile(t, empty, []byte("no pem here\n"))
	cases := []struct {
		name                string
		cert, key, clientCA string
	}{
		{"missing cert", filepath.Join(dir, "nope.crt"), keyFile, ""},
		{"missing key", certFile, filepath.Join(dir, "nope.key"), ""},
		{"key of another certificate", certFile, otherKey, ""},
		{"empty names", "", "", ""},
		{"client CA without a certificate", certFile, keyFile, empty},
		{"missing client CA", certFile, keyFile, filepath.Join(dir, "nope.pem")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var opts []certs.Option
			if tc.clientCA != "" {
				opts = append(opts, certs.WithClientCA(tc.clientCA))
			}
			r, err := certs.New(tc.cert, tc.key, opts...)
			if err == nil || r != nil {
				t.Fatalf("New = %v, %v; want an error", r, err)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Errorf("error holds key material: %v", err)
			}
		})
	}
}

// TestReloadUnderConcurrentHandshakes renews the files again and again,
// written in place and non-atomically (certificate, then key), while
// clients keep handshaking: no handshake fails (a half-written or
// mismatched pair keeps the last good one serving), each serves a
// certificate that was on disk, and the last renewal is what is served at
// the end. Under -race it also checks the reload's locking.
func TestReloadUnderConcurrentHandshakes(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, "test CA")
	leaves := []certstest.Leaf{ca.Server(t)}
	certFile, keyFile := leaves[0].WriteFiles(t, dir, "tls")
	r, err := certs.New(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsServer(t, r.ServerConfig("h2"))
	client := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", NextProtos: []string{"h2"}}
	const renewals = 8
	for range renewals {
		leaves = append(leaves, ca.Server(t))
	}
	known := map[string]bool{}
	for _, l := range leaves {
		known[l.Cert.SerialNumber.String()] = true
	}

	stop := make(chan struct{})
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				got, err := handshake(t, addr, client)
				if err != nil {
					errs <- err
					return
				}
				if !known[got.SerialNumber.String()] {
					errs <- errors.New("served a certificate that was never on disk: serial " + got.SerialNumber.String())
					return
				}
			}
		})
	}
	for i, l := range leaves[1:] {
		certstest.WriteFile(t, certFile, l.CertPEM)
		bump(t, certFile, 2*i+10)
		if _, err := handshake(t, addr, client); err != nil { // a handshake between the two writes
			t.Errorf("renewal %d, certificate written but not its key: handshake: %v", i, err)
		}
		certstest.WriteFile(t, keyFile, l.KeyPEM)
		bump(t, keyFile, 2*i+11)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent handshake: %v", err)
		}
	}
	got, err := handshake(t, addr, client)
	if err != nil {
		t.Fatal(err)
	}
	if last := leaves[len(leaves)-1]; got.SerialNumber.Cmp(last.Cert.SerialNumber) != 0 {
		t.Errorf("after the renewals: serial %v served, want the last one %v", got.SerialNumber, last.Cert.SerialNumber)
	}
}

// TestClientCAReloadEndsResumption: a client whose CA is dropped from the
// client-CA file cannot get back in by resuming a TLS session it had
// before the reload (session tickets outlive the configuration that
// issued them; resumption must not skip the new client-CA check).
func TestClientCAReloadEndsResumption(t *testing.T) {
	dir := t.TempDir()
	ca1, ca2 := certstest.NewCA(t, "CA one"), certstest.NewCA(t, "CA two")
	certFile, keyFile := ca1.Server(t).WriteFiles(t, dir, "tls")
	caFile := filepath.Join(dir, "clients.pem")
	certstest.WriteFile(t, caFile, ca1.PEM)
	r, err := certs.New(certFile, keyFile, certs.WithClientCA(caFile))
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsServer(t, r.ServerConfig("h2"))
	c1 := ca1.Client(t, "one", "")
	cfg := &tls.Config{RootCAs: ca1.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{c1.TLSCertificate(t)},
		ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	dial := func() (resumed bool, err error) {
		d := &net.Dialer{Timeout: 10 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
		if err != nil {
			return false, err
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		// The first read takes the session ticket, or the refusal.
		if _, err := c.Read(make([]byte, 1)); err != nil && !isEOF(err) {
			return false, err
		}
		return c.ConnectionState().DidResume, nil
	}
	if _, err := dial(); err != nil {
		t.Fatalf("first handshake: %v", err)
	}
	// Control: without a reload the session does resume, so the check
	// below is about resumption.
	if resumed, err := dial(); err != nil || !resumed {
		t.Fatalf("second handshake: resumed=%v err=%v, want a resumed session", resumed, err)
	}
	certstest.WriteFile(t, caFile, ca2.PEM)
	bump(t, caFile, 1)
	if resumed, err := dial(); err == nil {
		t.Errorf("after CA one was dropped, its client got in (resumed=%v)", resumed)
	}
}
