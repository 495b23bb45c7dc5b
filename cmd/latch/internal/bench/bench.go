// Package bench is `latch bench`: it starts Latch (the real binary, on a
// temporary database and loopback listeners), drives each RPC scenario for a
// set duration and concurrency, measures the raw limits the scenarios are
// bounded by in the same run (ECDSA, golang-jwt, argon2id, bbolt, a trivial
// gRPC echo), and prints every scenario with its ratio to its limit.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server/password"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
	"github.com/latchauth/latch/tokens"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// Config is what one run measures.
type Config struct {
	// Binary is the latch executable to start as the server.
	Binary string
	// Duration and Concurrency apply to every scenario and baseline.
	Duration    time.Duration
	Concurrency int
	// Sessions is the number of distinct live sessions (and access tokens)
	// stored before the run.
	Sessions int
	// Only, when non-empty, restricts the run to rows whose name contains
	// one of these strings.
	Only []string
	// Progress receives a line as each row starts and ends.
	Progress io.Writer
}

// Report is the outcome of a run.
type Report struct {
	Machine     string    `json:"machine"`
	Cores       int       `json:"cores"`
	Duration    string    `json:"duration"`
	Concurrency int       `json:"concurrency"`
	Sessions    int       `json:"sessions"`
	IdleRSSMiB  float64   `json:"server_idle_rss_mib"`
	DBSizeMiB   float64   `json:"db_size_mib"`
	Rows        []Result  `json:"rows"`
	Ratios      []Ratio   `json:"ratios"`
	Started     time.Time `json:"started"`
}

// Ratio compares a scenario with its limit.
type Ratio struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Of    string  `json:"of"`
}

const (
	benchIssuer   = "http://latch.bench"
	benchAudience = "bench"
	benchPassword = "bench-password-1"
)

// fixture is the state prepared in the database before the server starts.
type fixture struct {
	signer  *tokens.Signer
	access  []string // one live access token per session
	refresh []string // one refresh token per session
	caller  string   // access token with role introspect
	orders  string   // access token with role orders:read
}

// Run executes the benchmark.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Concurrency < 1 || cfg.Duration <= 0 || cfg.Sessions < 1 {
		return nil, errors.New("duration, concurrency and sessions must be positive")
	}
	dir, err := os.MkdirTemp("", "latch-bench")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	db := filepath.Join(dir, "latch.db")
	r := &Report{Machine: runtime.GOOS + "/" + runtime.GOARCH, Cores: runtime.NumCPU(), Duration: cfg.Duration.String(),
		Concurrency: cfg.Concurrency, Sessions: cfg.Sessions, Started: time.Now().UTC()}
	progress(cfg, "preparing %d sessions in %s", cfg.Sessions, db)
	fx, err := prepare(ctx, db, cfg.Sessions)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	srv, err := startServer(ctx, cfg.Binary, db)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	if st, err := os.Stat(db); err == nil {
		r.DBSizeMiB = float64(st.Size()) / (1 << 20)
	}
	if kib, err := memKiB(srv.cmd.Process.Pid, "VmRSS"); err == nil {
		r.IdleRSSMiB = kib / 1024
	}

	b := &runner{cfg: cfg, report: r, srv: srv}
	b.baselines(ctx, dir)
	b.scenarios(ctx, fx)
	srv.stop()
	b.uncached(ctx, dir)
	b.ratios()
	return r, nil
}

func progress(cfg Config, format string, args ...any) {
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, "latch bench: "+format+"\n", args...)
	}
}

// prepare fills db with users, a signing key and live sessions, and mints
// an access token for each session with that key.
func prepare(ctx context.Context, db string, sessions int) (*fixture, error) {
	st, err := bolt.Open(db)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	hasher, err := password.NewHasher(password.DefaultParams(), runtime.GOMAXPROCS(0))
	if err != nil {
		return nil, err
	}
	hash, err := hasher.Hash(ctx, benchPassword)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	for _, u := range []storage.User{
		{ID: "u-bench", Email: "bench@example.com", PasswordHash: hash, Roles: []string{"orders:read"}},
		{ID: "u-svc", Email: "svc@example.com", PasswordHash: hash, Roles: []string{"introspect"}},
	} {
		u.CreatedAt, u.UpdatedAt = now, now
		if err := st.CreateUser(ctx, u); err != nil {
			return nil, err
		}
	}
	key, err := tokens.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	kid, _ := tokens.Thumbprint(&key.PublicKey)
	priv, _ := tokens.MarshalPrivateKey(key)
	pub, _ := tokens.MarshalPublicKey(&key.PublicKey)
	if _, err := st.InitSigningKey(ctx, storage.SigningKey{ID: kid, PrivateKey: priv, PublicKey: pub, CreatedAt: now}); err != nil {
		return nil, err
	}
	signer, err := tokens.NewSigner(key)
	if err != nil {
		return nil, err
	}
	fx := &fixture{signer: signer}
	mint := func(sub, sid string, roles []string) (string, error) {
		jti, _ := tokens.NewID(rand.Reader)
		return signer.Sign(tokens.Claims{Issuer: benchIssuer, Subject: sub, Audience: []string{benchAudience},
			IssuedAt: now, NotBefore: now, ExpiresAt: now.Add(time.Hour), ID: jti, SessionID: sid, Roles: roles})
	}
	results := make([]made, sessions+2)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range sessions + 2 {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i] = makeSession(ctx, st, i, sessions, now, mint)
		})
	}
	wg.Wait()
	for _, r := range results {
		if r.err != nil {
			return nil, r.err
		}
		switch r.i {
		case sessions:
			fx.caller = r.at
		case sessions + 1:
			fx.orders = r.at
		default:
			fx.access = append(fx.access, r.at)
			fx.refresh = append(fx.refresh, r.rt)
		}
	}
	return fx, nil
}

// made is one prepared session.
type made struct {
	i      int
	at, rt string
	err    error
}

// makeSession stores session i and mints its access token.
func makeSession(ctx context.Context, st *bolt.Store, i, sessions int, now time.Time, mint func(sub, sid string, roles []string) (string, error)) made {
	{
		sid, _ := tokens.NewID(rand.Reader)
		rt, digest, err := tokens.NewRefreshToken(rand.Reader)
		if err != nil {
			return made{err: err}
		}
		user := "u-bench"
		if i == sessions {
			user = "u-svc"
		}
		if err := st.CreateSession(ctx, storage.Session{ID: sid, UserID: user, Audience: benchAudience, CurrentHash: digest,
			CreatedAt: now, LastRotatedAt: now, IdleExpiresAt: now.Add(7 * 24 * time.Hour), AbsoluteExpiresAt: now.Add(30 * 24 * time.Hour)}); err != nil {
			return made{err: err}
		}
		roles := []string{"orders:read"}
		if i == sessions {
			roles = []string{"introspect"}
		}
		at, err := mint(user, sid, roles)
		return made{i: i, at: at, rt: rt, err: err}
	}
}

// server is the latch child process.
type server struct {
	cmd      *exec.Cmd
	addr     string
	conn     *grpc.ClientConn
	stopOnce sync.Once
}

// hashConcurrency is the server's default bound: all cores but one.
func hashConcurrency() int { return max(1, runtime.NumCPU()-1) }

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func startServer(ctx context.Context, bin, db string, extra ...string) (*server, error) {
	gaddr, err := freePort()
	if err != nil {
		return nil, err
	}
	haddr, err := freePort()
	if err != nil {
		return nil, err
	}
	args := append([]string{"serve", "--db", db, "--grpc-addr", gaddr, "--http-addr", haddr,
		"--issuer", benchIssuer, "--audience", benchAudience, "--log-level", "error",
		"--probe-burst", "100000000", "--sweep-interval", "1h", "--hash-concurrency", strconv.Itoa(hashConcurrency())}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start latch: %w", err)
	}
	s := &server{cmd: cmd, addr: gaddr}
	s.conn, err = grpc.NewClient(gaddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		s.stop()
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := healthpb.NewHealthClient(s.conn).Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("latch did not become healthy: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *server) stop() { s.stopOnce.Do(s.doStop) }

func (s *server) doStop() {
	if s.conn != nil {
		s.conn.Close()
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

// client returns an AuthService client; several connections spread the
// load the way separate clients would.
func (s *server) dial(n int) ([]latchv1.AuthServiceClient, func(), error) {
	var conns []*grpc.ClientConn
	var out []latchv1.AuthServiceClient
	for range n {
		c, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, nil, err
		}
		conns = append(conns, c)
		out = append(out, latchv1.NewAuthServiceClient(c))
	}
	return out, func() {
		for _, c := range conns {
			c.Close()
		}
	}, nil
}

// Print writes the report as a table.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "latch bench: %s, %d cores, %s per row at concurrency %d, %d sessions stored (db %.1f MiB), server idle RSS %.1f MiB\n\n",
		r.Machine, r.Cores, r.Duration, r.Concurrency, r.Sessions, r.DBSizeMiB, r.IdleRSSMiB)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kind\tname\treq/s\tp50 µs\tp99 µs\terrors\tserver CPU\tserver peak RSS MiB\t")
	for _, row := range r.Rows {
		cpu, rss := "", ""
		if row.ServerCores > 0 {
			cpu = fmt.Sprintf("%.2f cores", row.ServerCores)
		}
		if row.ServerPeakMiB > 0 {
			rss = fmt.Sprintf("%.1f", row.ServerPeakMiB)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.0f\t%d\t%s\t%s\t\n", row.Kind, row.Name, row.PerSecond, row.P50Micros, row.P99Micros, row.Errors, cpu, rss)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nratios (same run):")
	for _, q := range r.Ratios {
		fmt.Fprintf(w, "  %-58s %7.3f   (%s)\n", q.Name, q.Value, q.Of)
	}
	for _, row := range r.Rows {
		if row.Errors > 0 {
			fmt.Fprintf(w, "  note: %s had %d errors, first: %s\n", row.Name, row.Errors, strings.TrimSpace(row.FirstError))
		}
	}
}

// WriteJSON writes the report as JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// uncached measures Introspect with the server's verified-token cache off
// (every call runs ECDSA), on a second database and server.
func (b *runner) uncached(ctx context.Context, dir string) {
	const name = "Introspect (verify cache off"
	if !b.want(name) {
		return
	}
	db := filepath.Join(dir, "uncached.db")
	fx, err := prepare(ctx, db, b.cfg.Sessions)
	if err != nil {
		progress(b.cfg, "prepare uncached: %v", err)
		return
	}
	srv, err := startServer(ctx, b.cfg.Binary, db, "--verify-cache", "0")
	if err != nil {
		progress(b.cfg, "start uncached: %v", err)
		return
	}
	defer srv.stop()
	b.srv = srv
	clients, closeClients, err := srv.dial(4)
	if err != nil {
		return
	}
	defer closeClients()
	caller := metadata.Pairs("authorization", "Bearer "+fx.caller)
	n := len(fx.access)
	b.measure(ctx, "scenario", fmt.Sprintf("%s, %d distinct tokens)", name, n), b.cfg.Concurrency, func(ctx context.Context, w, i int) error {
		resp, err := clients[w%4].Introspect(metadata.NewOutgoingContext(ctx, caller), &latchv1.IntrospectRequest{Token: fx.access[(w*7919+i)%n],
			TokenTypeHint: latchv1.TokenTypeHint_TOKEN_TYPE_HINT_ACCESS_TOKEN})
		if err == nil && !resp.GetActive() {
			return fmt.Errorf("token inactive")
		}
		return err
	})
}
