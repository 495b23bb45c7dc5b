package bench

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
	"google.golang.org/grpc/metadata"
)

// workload drives Refresh (one rotation chain per worker) and Introspect
// (distinct live tokens) against one server.
type workload struct {
	clients []latchv1.AuthServiceClient
	chains  []string // the current refresh token of each worker's chain
	access  []string // tokens to introspect
	caller  metadata.MD
}

// newWorkload starts conc rotation chains from fx's refresh tokens
// chainsFrom onwards and introspects the access tokens from accessFrom on.
// A rotation cut off at the end of a row may have committed without its
// reply, so a later row must not reuse these chains (reuse detection would
// revoke their sessions): give it other offsets.
func newWorkload(fx *fixture, clients []latchv1.AuthServiceClient, conc, chainsFrom, accessFrom int) *workload {
	w := &workload{clients: clients, chains: make([]string, conc), access: fx.access[min(accessFrom, len(fx.access)-1):],
		caller: metadata.Pairs("authorization", "Bearer "+fx.caller)}
	copy(w.chains, fx.refresh[min(chainsFrom, len(fx.refresh)):])
	return w
}

func (wl *workload) refresh(ctx context.Context, w, _ int) error {
	if wl.chains[w] == "" {
		return errors.New("fewer sessions than workers")
	}
	resp, err := wl.clients[w%len(wl.clients)].Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: wl.chains[w]})
	if err != nil {
		return err
	}
	wl.chains[w] = resp.GetTokens().GetRefreshToken()
	return nil
}

// introspect introspects the workload's tokens in turn, each worker
// starting at its own place.
func (wl *workload) introspect(ctx context.Context, w, i int) error {
	return wl.introspectToken(ctx, w, wl.access[(w*7919+i)%len(wl.access)])
}

// introspectToken introspects tok; an inactive answer is an error (every
// token the rows present is live).
func (wl *workload) introspectToken(ctx context.Context, w int, tok string) error {
	resp, err := wl.clients[w%len(wl.clients)].Introspect(metadata.NewOutgoingContext(ctx, wl.caller),
		&latchv1.IntrospectRequest{Token: tok, TokenTypeHint: latchv1.TokenTypeHint_TOKEN_TYPE_HINT_ACCESS_TOKEN})
	if err == nil && !resp.GetActive() {
		return errors.New("token inactive")
	}
	return err
}

// scale measures Refresh and Introspect on databases holding each of sizes
// live sessions (the workload touches cfg.Sessions of them, spread over the
// whole key space since ids are random), and reports each database's size
// on disk. Every size gets its own server, all running at once, so that the
// sizes' rows of one RPC are interleaved (see interleave); then, with the
// servers stopped, the disk's scattered-rewrite baseline on each file.
func (b *runner) scale(ctx context.Context, dir string, sizes []int) {
	if len(sizes) == 0 || !b.want("stored sessions") {
		return
	}
	type scaleDB struct {
		sessions int
		path     string
		sizeMiB  float64
		srv      *server
		wl       *workload
	}
	var dbs []scaleDB
	var servers cleanup
	defer func() {
		servers.run()
		for _, d := range dbs {
			_ = os.Remove(d.path)
		}
	}()
	for _, n := range sizes {
		path := filepath.Join(dir, fmt.Sprintf("scale-%d.db", n))
		live := min(b.cfg.Sessions, n)
		progress(b.cfg, "scale: importing %d sessions", n)
		t0 := time.Now()
		fx, err := prepare(ctx, path, population{live: live, filler: n - live})
		if err != nil {
			progress(b.cfg, "scale %d: prepare: %v", n, err)
			return
		}
		sizeMiB := fileMiB(path)
		progress(b.cfg, "scale: %d sessions imported in %v (db %.1f MiB)", n, time.Since(t0).Round(time.Millisecond), sizeMiB)
		srv, err := startServer(ctx, b.cfg.Binary, path)
		if err != nil {
			progress(b.cfg, "scale %d: %v", n, err)
			return
		}
		servers = append(servers, srv.stop)
		clients, closeClients, err := dial(srv.addr, 4, latchv1.NewAuthServiceClient)
		if err != nil {
			return
		}
		servers = append(servers, closeClients)
		dbs = append(dbs, scaleDB{sessions: n, path: path, sizeMiB: sizeMiB, srv: srv,
			wl: newWorkload(fx, clients, b.cfg.Concurrency, 0, b.cfg.Concurrency)})
	}
	for _, rpc := range []string{"Refresh", "Introspect"} {
		var rows []row
		for _, d := range dbs {
			fn := d.wl.refresh
			if rpc == "Introspect" {
				fn = d.wl.introspect
			}
			rows = append(rows, row{kind: "scale", name: fmt.Sprintf("%s, %d stored sessions (db %.0f MiB)", rpc, d.sessions, d.sizeMiB),
				conc: b.cfg.Concurrency, fn: fn, srv: d.srv, sessions: d.sessions, dbMiB: d.sizeMiB})
		}
		b.interleave(ctx, rows...)
	}
	servers.run() // the scatter rows need the files to themselves
	servers = nil
	var rows []row
	for _, d := range dbs {
		r, closeFile := b.scatterRow(d.path, d.sessions, d.sizeMiB)
		defer closeFile()
		rows = append(rows, r)
	}
	b.interleave(ctx, rows...)
}

// scatterPages is how many pages the scatter baseline rewrites per commit:
// about what one group commit of 16 rotations writes (storage/bolt's
// BenchmarkRotateAtScale: 36 pages at 10k sessions, 46 at 1M).
const scatterPages = 48

// scatterRow returns the disk's own limit for the scale rows on db: commits
// that each rewrite scatterPages random pages of the scale database file
// (each page read and written back unchanged), fdatasync, then rewrite its
// first page and fdatasync again, as a bbolt commit does with its meta
// page. bbolt never writes a page in place: a commit writes to free pages,
// and on a large file those lie far apart, so this is what the same
// commit costs on a file of each size. On disks whose cost per fsync grows
// with the distance between the pages (virtual and network disks), the
// rate falls with the file's size whatever the store does above it. No
// server may have db open while the row runs. close closes the file.
func (b *runner) scatterRow(db string, sessions int, sizeMiB float64) (row, func()) {
	name := fmt.Sprintf("raw durable rewrite of %d scattered pages, %d stored sessions (db %.0f MiB)", scatterPages, sessions, sizeMiB)
	if !b.want(name) {
		return row{}, func() {}
	}
	f, err := os.OpenFile(db, os.O_RDWR, 0)
	if err != nil {
		progress(b.cfg, "scale %d: scatter baseline: %v", sessions, err)
		return row{}, func() {}
	}
	st, err := f.Stat()
	const page = 4096
	if err != nil || st.Size() < 4*page {
		f.Close()
		return row{}, func() {}
	}
	pages := st.Size() / page
	rng := mrand.New(mrand.NewPCG(uint64(sessions), uint64(pages)))
	buf := make([]byte, page)
	rewrite := func(off int64) error {
		if _, err := f.ReadAt(buf, off); err != nil {
			return err
		}
		_, err := f.WriteAt(buf, off)
		return err
	}
	r := b.row("baseline", name, 1, func(context.Context, int, int) error {
		for range scatterPages {
			if err := rewrite((2 + rng.Int64N(pages-2)) * page); err != nil {
				return err
			}
		}
		if err := f.Sync(); err != nil {
			return err
		}
		if err := rewrite(0); err != nil {
			return err
		}
		return f.Sync()
	})
	r.sessions, r.dbMiB = sessions, sizeMiB
	return r, func() { f.Close() }
}

// sweep measures Refresh and Introspect p99 (run together, half the
// concurrency each) on a database holding `expired` expired sessions: first
// with the sweeper off, then on a restarted server whose sweeper starts
// deleting them all just before the rows start. After the rows it counts
// how many the sweeper deleted while they ran (the sweeper deletes in expiry
// order, so the deleted ones are a prefix).
func (b *runner) sweep(ctx context.Context, dir string, expired int) {
	if expired <= 0 || !b.want("sweep") {
		return
	}
	db := filepath.Join(dir, "sweep.db")
	progress(b.cfg, "sweep: importing %d expired sessions", expired)
	half := max(b.cfg.Concurrency/2, 1)
	fx, err := prepare(ctx, db, population{live: max(b.cfg.Sessions, 2*half+1), expired: expired})
	if err != nil {
		progress(b.cfg, "sweep: prepare: %v", err)
		return
	}
	// pair runs the two rows side by side on a server started with
	// settings, the sweep's first tick (when settings turn it on) just
	// before them.
	pair := func(label string, wl *workload, settings ...string) bool {
		started := time.Now()
		srv, err := startServer(ctx, b.cfg.Binary, db, settings...)
		if err != nil {
			progress(b.cfg, "sweep: %v", err)
			return false
		}
		defer srv.stop()
		b.srv = srv
		clients, closeClients, err := dial(srv.addr, 4, latchv1.NewAuthServiceClient)
		if err != nil {
			return false
		}
		defer closeClients()
		wl.clients = clients
		if len(settings) > 0 {
			time.Sleep(time.Until(started.Add(sweepTick + 50*time.Millisecond)))
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			b.measure(ctx, "sweep", "Introspect, "+label, half, wl.introspect)
		}()
		b.measure(ctx, "sweep", "Refresh, "+label, half, wl.refresh)
		<-done
		return true
	}
	label := fmt.Sprintf("during a sweep of %d expired sessions", expired)
	if !pair("sweeper off", newWorkload(fx, nil, half, 0, 2*half)) ||
		!pair(label, newWorkload(fx, nil, half, half, 2*half), "LATCH_SWEEP_INTERVAL="+sweepTick.String()) {
		return
	}
	swept, err := countSwept(ctx, db, fx.expired)
	if err != nil {
		progress(b.cfg, "sweep: count: %v", err)
		return
	}
	b.report.SweptDuringRows, b.report.SweepRows = swept, expired
	_ = os.Remove(db)
}

// sweepTick is the sweeper interval of the sweep rows' server.
const sweepTick = 300 * time.Millisecond

// countSwept returns how many of ids (in the sweeper's order) are gone.
func countSwept(ctx context.Context, db string, ids []string) (int, error) {
	st, err := bolt.Open(db)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	var lookupErr error
	n := sort.Search(len(ids), func(i int) bool {
		_, err := st.GetSession(ctx, ids[i])
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			lookupErr = err
		}
		return err == nil // still there: the sweep stopped before i
	})
	return n, lookupErr
}

func fileMiB(path string) float64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return float64(st.Size()) / (1 << 20)
}
