package server_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/certs"
	"github.com/latchauth/latch/internal/certs/certstest"
	"github.com/latchauth/latch/server"
)

// TestHTTPPublicRoutesUnderMutualTLS: with a client CA, the HTTP port
// serves the public documents and probes (JWKS, discovery, /healthz,
// /readyz) to clients without a certificate, over real TLS, while
// /metrics needs a verified client certificate, and a certificate from
// another CA fails the handshake.
func TestHTTPPublicRoutesUnderMutualTLS(t *testing.T) {
	dir := t.TempDir()
	serverCA, clientCA, otherCA := certstest.NewCA(t, "server CA"), certstest.NewCA(t, "client CA"), certstest.NewCA(t, "other CA")
	certFile, keyFile := serverCA.Server(t).WriteFiles(t, dir, "server")
	caFile := dir + "/clients.pem"
	certstest.WriteFile(t, caFile, clientCA.PEM)
	r, err := certs.New(certFile, keyFile, certs.WithClientCA(caFile))
	if err != nil {
		t.Fatal(err)
	}
	e := newOpsEnv(t, opsConfig{srvOpts: []server.Option{server.WithMetrics(server.NewMetrics())}})
	hs := httptest.NewUnstartedServer(e.srv.HTTPHandler(server.WithClientCertRequired()))
	hs.TLS = r.VerifyIfGivenConfig("h2", "http/1.1")
	hs.StartTLS()
	t.Cleanup(hs.Close)

	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: serverCA.Pool(), ServerName: "localhost", Certificates: certs}}}
	}
	get := func(c *http.Client, path string) (int, string, error) {
		resp, err := c.Get(hs.URL + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	noCert := client()
	withCert := client(clientCA.Client(t, "prometheus", "").TLSCertificate(t))
	// GetClientCertificate presents the foreign certificate whatever CAs
	// the server asks for (Certificates would send nothing instead).
	foreignCert := otherCA.Client(t, "intruder", "").TLSCertificate(t)
	foreign := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: serverCA.Pool(), ServerName: "localhost",
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreignCert, nil }}}}

	for _, path := range []string{server.JWKSPath, server.DiscoveryPath, "/healthz", "/readyz"} {
		for name, c := range map[string]*http.Client{"no certificate": noCert, "client certificate": withCert} {
			if code, body, err := get(c, path); err != nil || code != http.StatusOK {
				t.Errorf("%s with %s = %d %q %v, want 200", path, name, code, body, err)
			}
		}
	}
	if code, body, err := get(noCert, server.MetricsPath); err != nil || code != http.StatusForbidden {
		t.Errorf("%s without a client certificate = %d %q %v, want 403", server.MetricsPath, code, body, err)
	}
	if code, _, err := get(noCert, "/no-such-route"); err != nil || code != http.StatusForbidden {
		t.Errorf("an unknown route without a client certificate = %d %v, want 403 (only the public routes are open)", code, err)
	}
	if code, _, err := get(withCert, server.MetricsPath); err != nil || code != http.StatusOK {
		t.Errorf("%s with a client certificate = %d %v, want 200", server.MetricsPath, code, err)
	}
	if _, _, err := get(foreign, server.JWKSPath); err == nil {
		t.Errorf("a certificate from another CA was accepted; want a failed handshake")
	}
}
