package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/latchauth/latch/internal/etcdproc"
)

// Row names of the Ory Hydra peer (--hydra).
const (
	hydraIssueRow      = "Ory Hydra: client_credentials token (SQLite, ES256 JWT)"
	hydraIntrospectRow = "Ory Hydra: introspect (SQLite, ES256 JWT)"
)

// hydraTokens is how many distinct access tokens the Hydra introspect row
// cycles through (the Latch rows use --sessions distinct tokens).
const hydraTokens = 1000

// hydra is Ory Hydra run next to Latch as a peer, so that a ratio to it
// compares two rates measured in the same run: the binary named by --hydra
// (built with SQLite support; latch bench neither fetches nor builds it),
// on a SQLite file in the run's temporary directory, with JWT access tokens
// signed by an ES256 key, serving on loopback.
type hydra struct {
	srv           *server // the hydra process (no Latch metrics: store counts stay empty)
	public, admin string  // base URLs
	client        *http.Client
	id, secret    string   // the bench's OAuth2 client
	tokens        []string // access tokens to introspect
}

// startHydra migrates a fresh SQLite database in dir, starts `hydra serve
// all` on it, gives it an ES256 signing key for access tokens and an OAuth2
// client for the client_credentials grant, and issues hydraTokens access
// tokens, checking that they are ES256 JWTs.
func startHydra(ctx context.Context, bin, dir string, conc int) (*hydra, error) {
	pub, err := etcdproc.FreePort()
	if err != nil {
		return nil, err
	}
	adm, err := etcdproc.FreePort()
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	_, pubPort, _ := net.SplitHostPort(pub)
	_, admPort, _ := net.SplitHostPort(adm)
	env := append(os.Environ(),
		"DSN=sqlite://"+filepath.Join(dir, "hydra.sqlite")+"?_fk=true&mode=rwc",
		"SERVE_PUBLIC_HOST=127.0.0.1", "SERVE_PUBLIC_PORT="+pubPort,
		"SERVE_ADMIN_HOST=127.0.0.1", "SERVE_ADMIN_PORT="+admPort,
		"URLS_SELF_ISSUER=http://"+pub, "STRATEGIES_ACCESS_TOKEN=jwt",
		"SECRETS_SYSTEM="+hex.EncodeToString(secret), "LOG_LEVEL=error", "SQA_OPT_OUT=true")
	migrate := exec.CommandContext(ctx, bin, "migrate", "sql", "up", "--read-from-env", "--yes")
	migrate.Env = env
	if out, err := migrate.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("hydra migrate: %w: %s", err, lastLine(out))
	}
	cmd := exec.Command(bin, "serve", "all", "--dev", "--sqa-opt-out")
	cmd.Env = env
	srv, err := start(cmd)
	if err != nil {
		return nil, fmt.Errorf("start hydra: %w", err)
	}
	h := &hydra{srv: srv, public: "http://" + pub, admin: "http://" + adm,
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2 * conc, DisableCompression: true}}}
	if err := h.setUp(ctx); err != nil {
		h.stop()
		return nil, err
	}
	return h, nil
}

func (h *hydra) setUp(ctx context.Context) error {
	if err := h.srv.waitReady(ctx, func(ctx context.Context) error {
		return h.call(ctx, http.MethodGet, h.admin+"/health/ready", "", nil, nil)
	}); err != nil {
		return fmt.Errorf("hydra: %w", err)
	}
	// The key set Hydra signs JWT access tokens with: created before the
	// first token, so that Hydra does not generate its default RS256 one.
	if err := h.call(ctx, http.MethodPost, h.admin+"/admin/keys/hydra.jwt.access-token", "application/json",
		strings.NewReader(`{"alg":"ES256","use":"sig","kid":"latch-bench-es256"}`), nil); err != nil {
		return fmt.Errorf("hydra ES256 key: %w", err)
	}
	var cl struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	if err := h.call(ctx, http.MethodPost, h.admin+"/admin/clients", "application/json",
		strings.NewReader(`{"grant_types":["client_credentials"],"token_endpoint_auth_method":"client_secret_post","access_token_strategy":"jwt"}`), &cl); err != nil {
		return fmt.Errorf("hydra client: %w", err)
	}
	h.id, h.secret = cl.ID, cl.Secret
	for range hydraTokens {
		tok, err := h.issue(ctx)
		if err != nil {
			return err
		}
		h.tokens = append(h.tokens, tok)
	}
	if alg := jwtAlg(h.tokens[0]); alg != "ES256" {
		return fmt.Errorf("hydra issued a %q access token, want an ES256 JWT", alg)
	}
	return nil
}

// issue gets one access token with the client_credentials grant.
func (h *hydra) issue(ctx context.Context) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {h.id}, "client_secret": {h.secret}}
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := h.call(ctx, http.MethodPost, h.public+"/oauth2/token", "application/x-www-form-urlencoded",
		strings.NewReader(form.Encode()), &out); err != nil {
		return "", fmt.Errorf("hydra token: %w", err)
	}
	if out.AccessToken == "" {
		return "", errors.New("hydra token: no access_token in the answer")
	}
	return out.AccessToken, nil
}

// introspect asks Hydra's admin API about tok; an inactive answer is an
// error (every token the row presents is live).
func (h *hydra) introspect(ctx context.Context, tok string) error {
	var out struct {
		Active bool `json:"active"`
	}
	if err := h.call(ctx, http.MethodPost, h.admin+"/admin/oauth2/introspect", "application/x-www-form-urlencoded",
		strings.NewReader(url.Values{"token": {tok}}.Encode()), &out); err != nil {
		return fmt.Errorf("hydra introspect: %w", err)
	}
	if !out.Active {
		return errors.New("hydra introspect: token inactive")
	}
	return nil
}

// call sends one request and decodes a 2xx JSON answer into out (when not
// nil); any other status is an error carrying the start of the body.
func (h *hydra) call(ctx context.Context, method, u, contentType string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", resp.Status, lastLine(data))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// rows returns the peer rows: token issue (the client_credentials grant:
// a client secret check, a signature and a database write per token) and
// introspection of the issued tokens.
func (h *hydra) rows(conc int) (issue, introspect row) {
	issue = row{kind: "peer", name: hydraIssueRow, conc: conc, srv: h.srv, fn: func(ctx context.Context, _, _ int) error {
		_, err := h.issue(ctx)
		return err
	}}
	introspect = row{kind: "peer", name: hydraIntrospectRow, conc: conc, srv: h.srv, fn: func(ctx context.Context, w, i int) error {
		return h.introspect(ctx, h.tokens[(w*7919+i)%len(h.tokens)])
	}}
	return issue, introspect
}

func (h *hydra) stop() {
	h.client.CloseIdleConnections()
	h.srv.stop()
}

// jwtAlg returns the alg of a compact JWS's header, or "" when it has none.
func jwtAlg(tok string) string {
	t, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		return ""
	}
	alg, _ := t.Header["alg"].(string)
	return alg
}

// lastLine returns the last non-empty line of out, at most 300 bytes, for
// error messages.
func lastLine(out []byte) string {
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	last := string(lines[len(lines)-1])
	if len(last) > 300 {
		last = last[:300]
	}
	return last
}
