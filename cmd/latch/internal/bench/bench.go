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
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/internal/etcdproc"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
	"github.com/latchauth/latch/tokens"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
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
	// Scale lists database sizes (stored live sessions) for the scale rows;
	// empty skips them.
	Scale []int
	// Rounds is how many turns each row of an interleaved group takes
	// (see interleave); 0 is one per second of Duration, at most 5.
	Rounds int
	// SweepRows is how many expired sessions the sweep rows' sweeper
	// deletes while they run; 0 skips them.
	SweepRows int
	// Hydra, when set, is an Ory Hydra binary (built with SQLite support)
	// to run as a peer: its token issue and introspection rows are
	// measured in the same run, interleaved with Refresh and Introspect.
	Hydra string
	// Etcd runs the etcd rows instead of the bbolt ones: Latch replicas on
	// an etcd cluster, started from EtcdBinary in a temporary directory
	// unless EtcdEndpoints (http:// client URLs) names one.
	Etcd          bool
	EtcdBinary    string
	EtcdEndpoints []string
	// LagRevocations is how many revocations the etcd mode's lag
	// percentiles are taken over.
	LagRevocations int
	// Progress receives a line as each row starts and ends.
	Progress io.Writer
}

// Report is the outcome of a run.
type Report struct {
	Machine     string   `json:"machine"`
	Cores       int      `json:"cores"`
	Duration    string   `json:"duration"`
	Concurrency int      `json:"concurrency"`
	Sessions    int      `json:"sessions"`
	IdleRSSMiB  float64  `json:"server_idle_rss_mib"`
	DBSizeMiB   float64  `json:"db_size_mib"`
	Rows        []Result `json:"rows"`
	// Rounds is how many stretches each row of an interleaved group ran
	// in (1: every row ran in one piece).
	Rounds int `json:"rounds"`
	// SweepRows expired sessions were stored for the sweep rows, and
	// SweptDuringRows of them were deleted while those rows ran.
	SweepRows       int `json:"sweep_rows,omitempty"`
	SweptDuringRows int `json:"swept_during_rows,omitempty"`
	// FloodBoundMiB is the stated peak-RSS bound under a login flood.
	FloodBoundMiB float64 `json:"login_flood_rss_bound_mib,omitempty"`
	// Etcd says which etcd cluster the etcd mode ran on; empty for bbolt.
	Etcd string `json:"etcd,omitempty"`
	// Lags are the etcd mode's revocation lags across replicas.
	Lags    []Lag     `json:"revocation_lags,omitempty"`
	Ratios  []Ratio   `json:"ratios"`
	Started time.Time `json:"started"`
}

// Ratio compares a scenario with its limit.
type Ratio struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Of    string  `json:"of"`
}

const (
	benchIssuer = "http://latch.bench"
	// loginUsers is how many accounts the Login rows share out.
	loginUsers    = 64
	benchAudience = "bench"
	benchPassword = "bench-password-1"
)

// fixture is the state prepared in the database before the server starts.
type fixture struct {
	access  []string // one live access token per session
	refresh []string // one refresh token per session
	caller  string   // access token with role introspect
	orders  string   // access token with role orders:read
	expired []string // ids of the expired sessions, in expiry order
	// sessions are the ids of the live sessions of access and refresh.
	sessions []string
	signer   *tokens.Signer // the server's signing key
}

// mint returns a fresh access token and its jti for the bench audience in
// live session sid, signed with the server's key.
func (fx *fixture) mint(sid string) (tok, jti string, err error) {
	if jti, err = tokens.NewID(rand.Reader); err != nil {
		return "", "", err
	}
	now := time.Now().UTC()
	tok, err = fx.signer.Sign(tokens.Claims{Issuer: benchIssuer, Subject: "u-bench", Audience: []string{benchAudience},
		IssuedAt: now, NotBefore: now, ExpiresAt: now.Add(time.Hour), ID: jti, SessionID: sid, Roles: []string{"orders:read"}})
	return tok, jti, err
}

// Run executes the benchmark.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Concurrency < 1 || cfg.Duration <= 0 || cfg.Sessions < 1 || cfg.Rounds < 0 {
		return nil, errors.New("duration, concurrency and sessions must be positive, rounds not negative")
	}
	if cfg.Etcd {
		if cfg.LagRevocations < 1 || (cfg.EtcdBinary == "" && len(cfg.EtcdEndpoints) == 0) {
			return nil, errors.New("the etcd mode needs an etcd binary or endpoints, and at least one revocation for the lag")
		}
		// Each of the two Refresh rows has a chain per worker.
		cfg.Sessions = max(cfg.Sessions, 2*cfg.Concurrency)
		return runEtcd(ctx, cfg)
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
	fx, err := prepare(ctx, db, population{live: cfg.Sessions})
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	srv, err := startServer(ctx, cfg.Binary, db)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	r.DBSizeMiB = fileMiB(db)
	if kib, err := memKiB(srv.cmd.Process.Pid, "VmRSS"); err == nil {
		r.IdleRSSMiB = kib / 1024
	}

	b := &runner{cfg: cfg, report: r, srv: srv}
	var peers peerRows
	if cfg.Hydra != "" && (b.want(hydraIssueRow) || b.want(hydraIntrospectRow)) {
		progress(cfg, "starting the Ory Hydra peer (%s)", cfg.Hydra)
		h, err := startHydra(ctx, cfg.Hydra, dir, cfg.Concurrency)
		if err != nil {
			return nil, fmt.Errorf("--hydra: %w", err)
		}
		defer h.stop()
		peers.hydraIssue, peers.hydraIntrospect = h.rows(cfg.Concurrency)
	}
	raw, closeRaw := b.baselines(dir)
	b.scenarios(ctx, dir, fx, raw, peers)
	closeRaw()
	srv.stop()
	b.scale(ctx, dir, cfg.Scale)
	b.sweep(ctx, dir, cfg.SweepRows)
	b.ratios()
	return r, nil
}

func progress(cfg Config, format string, args ...any) {
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, "latch bench: "+format+"\n", args...)
	}
}

// population is what prepare stores besides the users and the key.
type population struct {
	live    int // sessions with a minted access token and a known refresh token
	filler  int // further live sessions, stored only (scale rows)
	expired int // sessions already expired, in increasing expiry order (sweep rows)
}

// importChunk is how many sessions one bulk-import transaction holds.
const importChunk = 20000

// prepare fills db with users, a signing key and sessions (imported in
// large transactions, not through RPCs, so that a million take seconds),
// and mints an access token for each live session with that key.
func prepare(ctx context.Context, db string, pop population) (*fixture, error) {
	st, err := bolt.Open(db)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return populate(ctx, st, pop, func(ctx context.Context, chunk []storage.Session) error {
		// In key order, bbolt's nodes take the inserts at their ends.
		slices.SortFunc(chunk, func(a, b storage.Session) int { return strings.Compare(a.ID, b.ID) })
		return st.ImportSessions(ctx, chunk)
	})
}

// fixtureStore is what populate writes besides the sessions.
type fixtureStore interface {
	CreateUser(ctx context.Context, u storage.User) error
	InitSigningKey(ctx context.Context, candidate storage.SigningKey) (storage.SigningKey, error)
	UpdateRefreshKeys(ctx context.Context, fn func([]storage.RefreshKey) ([]storage.RefreshKey, error)) ([]storage.RefreshKey, error)
}

// populate stores users, a signing key, a refresh-token key and pop's
// sessions in st (the sessions through store, up to importChunk at a
// time), and mints an access token for each live session with that key.
func populate(ctx context.Context, st fixtureStore, pop population, store func(context.Context, []storage.Session) error) (*fixture, error) {
	hasher, err := password.NewHasher(password.DefaultParams(), runtime.GOMAXPROCS(0))
	if err != nil {
		return nil, err
	}
	hash, err := hasher.Hash(ctx, benchPassword)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	users := []storage.User{
		{ID: "u-bench", Email: "bench@example.com", PasswordHash: hash, Roles: []string{"orders:read"}},
		{ID: "u-svc", Email: "svc@example.com", PasswordHash: hash, Roles: []string{"introspect"}},
	}
	// The Login rows log in as loginUsers service accounts in turn, so that
	// they measure hashing, not the per-account login rate.
	for i := range loginUsers {
		users = append(users, storage.User{ID: fmt.Sprintf("u-login-%d", i), Email: loginEmail(i), PasswordHash: hash, Roles: []string{"service"}})
	}
	for _, u := range users {
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
	// The refresh-token MAC secret the server will load and mint with; the
	// fixture's sessions hold tokens minted with it.
	refreshKey, err := tokens.NewRefreshKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if _, err := st.UpdateRefreshKeys(ctx, func([]storage.RefreshKey) ([]storage.RefreshKey, error) {
		return []storage.RefreshKey{{ID: refreshKey.ID, Secret: refreshKey.Secret, State: storage.KeyActive, CreatedAt: now, ActivatedAt: now}}, nil
	}); err != nil {
		return nil, err
	}

	chunk := make([]storage.Session, 0, importChunk)
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		err := store(ctx, chunk)
		chunk = chunk[:0]
		return err
	}
	// Sessions 0..live-1 are the workload's, live the introspect caller's
	// and live+1 the orders caller's, each with an access token; then the
	// filler, and the expired sessions, each expiring a microsecond after
	// the previous one (the sweeper deletes them in this order).
	withToken, firstExpired := pop.live+2, pop.live+2+pop.filler
	for i := range firstExpired + pop.expired {
		user, roles, aud, expires := "u-bench", []string{"orders:read"}, benchAudience, now.Add(7*24*time.Hour)
		if i == pop.live { // the introspect caller holds a token for Latch's own audience
			user, roles, aud = "u-svc", []string{"introspect"}, benchIssuer
		}
		if i >= firstExpired {
			expires = now.Add(-time.Hour).Add(time.Duration(i-firstExpired) * time.Microsecond)
		}
		sid, err := tokens.NewID(rand.Reader)
		if err != nil {
			return nil, err
		}
		rt, minted, err := tokens.NewRefreshToken(rand.Reader, refreshKey, sid, 0)
		if err != nil {
			return nil, err
		}
		created := now
		if expires.Add(-time.Hour).Before(now) {
			created = expires.Add(-time.Hour)
		}
		chunk = append(chunk, storage.Session{ID: sid, UserID: user, Audience: aud, CurrentHash: minted.Digest,
			CreatedAt: created, LastRotatedAt: created, IdleExpiresAt: expires, AbsoluteExpiresAt: expires})
		if len(chunk) == importChunk {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		switch {
		case i >= firstExpired:
			fx.expired = append(fx.expired, sid)
			continue
		case i >= withToken:
			continue
		}
		jti, _ := tokens.NewID(rand.Reader)
		at, err := signer.Sign(tokens.Claims{Issuer: benchIssuer, Subject: user, Audience: []string{aud},
			IssuedAt: now, NotBefore: now, ExpiresAt: now.Add(time.Hour), ID: jti, SessionID: sid, Roles: roles})
		if err != nil {
			return nil, err
		}
		switch i {
		case pop.live:
			fx.caller = at
		case pop.live + 1:
			fx.orders = at
		default:
			fx.access, fx.refresh, fx.sessions = append(fx.access, at), append(fx.refresh, rt), append(fx.sessions, sid)
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return fx, nil
}

// server is the latch child process.
type server struct {
	cmd      *exec.Cmd
	exited   chan struct{} // closed once the process has ended; waitErr is then set
	waitErr  error
	addr     string
	httpAddr string // its metrics: /metrics
	conn     *grpc.ClientConn
	stopOnce sync.Once
}

// hashConcurrency is the server's default bound: all cores but one.
func hashConcurrency() int { return max(1, runtime.NumCPU()-1) }

// startServer runs `latch serve` on db and two free loopback ports and
// waits until it reports healthy, or fails at once if it exits first.
// The server's settings are bench's (a high login and probe budget, an
// hourly sweep, only error logs) then settings, LATCH_* assignments that override
// them; variables of the caller's environment that configure Latch are not
// passed on, so that they cannot change what is measured.
func startServer(ctx context.Context, bin, db string, settings ...string) (*server, error) {
	return startLatch(ctx, bin, []string{"--db", db}, append([]string{"LATCH_SWEEP_INTERVAL=1h"}, settings...)...)
}

// startLatch is startServer with serve's flags args in place of --db,
// and without the sweep setting, which applies to bbolt only: the storage
// is what args and settings select.
func startLatch(ctx context.Context, bin string, args []string, settings ...string) (*server, error) {
	gaddr, err := etcdproc.FreePort()
	if err != nil {
		return nil, err
	}
	haddr, err := etcdproc.FreePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, append(append([]string{"serve"}, args...), "--grpc-addr", gaddr, "--http-addr", haddr,
		"--issuer", benchIssuer, "--log-level", "error")...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LATCH_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "LATCH_AUDIENCE="+benchAudience, "LATCH_PROBE_BURST=100000000", "LATCH_LOGIN_ADDRESS_BURST=100000000",
		"LATCH_HASH_CONCURRENCY="+strconv.Itoa(hashConcurrency()))
	cmd.Env = append(cmd.Env, settings...) // the last assignment of a variable wins
	s, err := start(cmd)
	if err != nil {
		return nil, fmt.Errorf("start latch: %w", err)
	}
	s.addr, s.httpAddr = gaddr, haddr
	if s.conn, err = grpc.NewClient(gaddr, grpc.WithTransportCredentials(insecure.NewCredentials())); err == nil {
		err = s.waitReady(ctx, func(ctx context.Context) error {
			_, err := healthpb.NewHealthClient(s.conn).Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		})
	}
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("latch serve: %w", err)
	}
	return s, nil
}

// start runs cmd as a child whose end closes exited; its output goes to
// cmd.Stderr when set, else to this process's stderr.
func start(cmd *exec.Cmd) (*server, error) {
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, exited: make(chan struct{})}
	go func() { s.waitErr = cmd.Wait(); close(s.exited) }()
	return s, nil
}

// waitReady calls ready until it succeeds, and fails when the process
// ends first or 30 s pass.
func (s *server) waitReady(ctx context.Context, ready func(context.Context) error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err := ready(cctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("ended before it was ready (%v); its output is above", s.waitErr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after 30 s: %w", err)
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
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// dial returns n clients of addr, made by newClient from a connection
// each: several connections spread the load the way separate clients
// would. close closes the connections.
func dial[C any](addr string, n int, newClient func(grpc.ClientConnInterface) C) (clients []C, closeAll func(), err error) {
	var conns cleanup
	for range n {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			conns.run()
			return nil, nil, err
		}
		conns = append(conns, func() { c.Close() })
		clients = append(clients, newClient(c))
	}
	return clients, conns.run, nil
}

// Print writes the report as a table.
func (r *Report) Print(w io.Writer) {
	if r.Etcd != "" {
		fmt.Fprintf(w, "latch bench: %s, %d cores, %s per row at concurrency %d, %d sessions stored in etcd, server idle RSS %.1f MiB\n",
			r.Machine, r.Cores, r.Duration, r.Concurrency, r.Sessions, r.IdleRSSMiB)
		fmt.Fprintf(w, "storage: %s; %d latch serve replicas on it, each given every endpoint\n", r.Etcd, etcdReplicas)
	} else {
		fmt.Fprintf(w, "latch bench: %s, %d cores, %s per row at concurrency %d, %d sessions stored (db %.1f MiB), server idle RSS %.1f MiB\n",
			r.Machine, r.Cores, r.Duration, r.Concurrency, r.Sessions, r.DBSizeMiB, r.IdleRSSMiB)
	}
	switch {
	case r.Rounds > 1 && r.Etcd != "":
		fmt.Fprintf(w, "rows compared with each other ran interleaved, %d turns each: every RPC on one replica and on three with its raw etcd Txn\n", r.Rounds)
	case r.Rounds > 1:
		fmt.Fprintf(w, "rows compared with each other ran interleaved, %d turns each: every scenario with its raw limits and peers, Introspect during the login flood with Introspect unloaded, every scale row with its other sizes\n", r.Rounds)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kind\tname\treq/s\tp50 µs\tp99 µs\terrors\tserver CPU\tbench CPU\tserver peak RSS MiB\t")
	ifSet := func(format string, v float64) string { // blank for what a row did not measure
		if v > 0 {
			return fmt.Sprintf(format, v)
		}
		return ""
	}
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.0f\t%d\t%s\t%s\t%s\t\n", row.Kind, row.Name, row.PerSecond, row.P50Micros, row.P99Micros,
			row.Errors, ifSet("%.2f cores", row.ServerCores), ifSet("%.2f cores", row.ClientCores), ifSet("%.1f", row.ServerPeakMiB))
	}
	tw.Flush()
	if len(r.Lags) > 0 {
		fmt.Fprintln(w, "\nrevocation lag, from the Revoke's reply on replica A (revocations one after another):")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "\trevocations\tp50 ms\tp99 ms\tmax ms\tanswered active after the reply\t")
		for _, l := range r.Lags {
			active := ""
			if l.ActiveAfterAck != nil {
				active = strconv.Itoa(*l.ActiveAfterAck)
			}
			fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\t%s\t\n", l.Name, l.Count, l.P50Ms, l.P99Ms, l.MaxMs, active)
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "\nratios (same run):")
	for _, q := range r.Ratios {
		fmt.Fprintf(w, "  %-58s %7.3f   (%s)\n", q.Name, q.Value, q.Of)
	}
	if r.SweepRows > 0 {
		fmt.Fprintf(w, "  sweep rows: the sweeper deleted %d of %d expired sessions while they ran", r.SweptDuringRows, r.SweepRows)
		if r.SweptDuringRows < r.SweepRows {
			fmt.Fprintln(w, " (still sweeping at the end: the whole row ran during the sweep)")
		} else {
			fmt.Fprintln(w, " (the sweep finished before the rows ended: only part of them ran during it)")
		}
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

// uncached returns the row of Introspect with the server's
// verified-token cache off (every call runs ECDSA), on a second database
// and server in dir; close stops that server. The row is empty when it is
// not wanted or its server could not start.
func (b *runner) uncached(ctx context.Context, dir string) (row, func()) {
	const name = "Introspect (verify cache off"
	if !b.want(name) {
		return row{}, func() {}
	}
	db := filepath.Join(dir, "uncached.db")
	fx, err := prepare(ctx, db, population{live: b.cfg.Sessions})
	if err != nil {
		progress(b.cfg, "prepare uncached: %v", err)
		return row{}, func() {}
	}
	srv, err := startServer(ctx, b.cfg.Binary, db, "LATCH_VERIFY_CACHE=0")
	if err != nil {
		progress(b.cfg, "start uncached: %v", err)
		return row{}, func() {}
	}
	clients, closeClients, err := dial(srv.addr, 4, latchv1.NewAuthServiceClient)
	if err != nil {
		srv.stop()
		return row{}, func() {}
	}
	stop := func() {
		closeClients()
		srv.stop()
	}
	return row{kind: "scenario", name: fmt.Sprintf("%s, %d distinct tokens)", name, len(fx.access)), conc: b.cfg.Concurrency, srv: srv,
		fn: newWorkload(fx, clients, 0, 0, 0).introspect}, stop
}

// loginEmail is the email of the i-th Login row account.
func loginEmail(i int) string { return fmt.Sprintf("login-%d@example.com", i%loginUsers) }
