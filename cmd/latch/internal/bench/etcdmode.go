package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/internal/etcdproc"
	latchserver "github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/metadata"
)

// etcdMembers is the size of the cluster the bench starts itself.
const etcdMembers = 3

// etcdReplicas is how many `latch serve` processes share the cluster.
const etcdReplicas = 3

// Lag is the distribution of one kind of delay after a Revoke, over
// Count revocations made one after another.
type Lag struct {
	Name  string  `json:"name"`
	Count int     `json:"count"`
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// ActiveAfterAck, for a lag measured by asking again until the answer
	// changed (nil for the others), counts the revocations whose token was
	// still answered active at least once after the Revoke's reply: 0 when
	// every check reads what every acknowledged write wrote.
	ActiveAfterAck *int `json:"active_after_ack,omitempty"`
}

// runEtcd is Run's etcd mode: Latch replicas on an etcd cluster (its own,
// or cfg.EtcdEndpoints), the Refresh, Introspect and Revoke rows on one
// replica and on three next to a raw etcd Txn of each one's shape, then
// the revocation lag across replicas.
func runEtcd(ctx context.Context, cfg Config) (*Report, error) {
	dir, err := os.MkdirTemp("", "latch-bench-etcd")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	r := &Report{Machine: runtime.GOOS + "/" + runtime.GOARCH, Cores: runtime.NumCPU(), Duration: cfg.Duration.String(),
		Concurrency: cfg.Concurrency, Sessions: cfg.Sessions, Started: time.Now().UTC()}
	endpoints := cfg.EtcdEndpoints
	if len(endpoints) == 0 {
		progress(cfg, "starting a %d-member etcd cluster (%s) in %s", etcdMembers, cfg.EtcdBinary, dir)
		cluster, err := etcdproc.Start(ctx, etcdproc.Config{Bin: cfg.EtcdBinary, Dir: dir, Members: etcdMembers,
			Args: []string{"--log-level", "warn"}})
		if err != nil {
			return nil, fmt.Errorf("etcd cluster: %w", err)
		}
		defer cluster.Stop()
		endpoints = cluster.Endpoints()
		r.Etcd = fmt.Sprintf("a %d-member etcd cluster started by the bench on loopback, data in a temporary directory", etcdMembers)
	} else {
		r.Etcd = "the etcd cluster at " + strings.Join(endpoints, ",")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), Context: ctx})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	defer cli.Close()

	// Every key of the run lies under two fresh prefixes, deleted at the
	// end, so that a cluster lent to the bench is left as it was.
	id := make([]byte, 6)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	prefix := "/latch-bench-" + hex.EncodeToString(id) + "/"
	rawPrefix := strings.TrimSuffix(prefix, "/") + "-raw/"
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := removeKeys(cctx, cli, prefix, rawPrefix); err != nil {
			progress(cfg, "could not remove the bench's keys under %s and %s: %v", prefix, rawPrefix, err)
		}
	}()

	progress(cfg, "preparing %d sessions in etcd under %s", cfg.Sessions, prefix)
	fx, err := prepareEtcd(ctx, endpoints, prefix, cfg.Sessions)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	reps := make([]*server, 0, etcdReplicas)
	defer func() {
		for _, s := range reps {
			s.stop()
		}
	}()
	settings := []string{"LATCH_STORAGE=etcd", "LATCH_ETCD_ENDPOINTS=" + strings.Join(endpoints, ","), "LATCH_ETCD_PREFIX=" + prefix,
		"LATCH_ETCD_ALLOW_PLAINTEXT=true"} // the bench's data are synthetic
	for i := range etcdReplicas {
		s, err := startLatch(ctx, cfg.Binary, nil, settings...)
		if err != nil {
			return nil, fmt.Errorf("replica %d: %w", i, err)
		}
		reps = append(reps, s)
	}
	if kib, err := memKiB(reps[0].cmd.Process.Pid, "VmRSS"); err == nil {
		r.IdleRSSMiB = kib / 1024
	}

	b := &runner{cfg: cfg, report: r, srv: reps[0]}
	raw, err := newRawEtcd(ctx, cli, prefix, rawPrefix, fx, cfg.Concurrency)
	if err != nil {
		return nil, err
	}
	defer raw.close()
	if err := b.etcdRows(ctx, fx, reps, raw); err != nil {
		return nil, err
	}
	if b.want(lagRowPrefix) {
		lags, err := revocationLag(ctx, fx, reps, cfg.LagRevocations, cfg.Progress)
		if err != nil {
			return nil, fmt.Errorf("revocation lag: %w", err)
		}
		r.Lags = lags
	}
	b.etcdRatios()
	return r, nil
}

// removeKeys deletes every key under the prefixes, and first revokes the
// leases whose attached keys all lie under them (which deletes those keys
// too), so that no lease of the run outlives it; a lease that also holds
// someone else's key is left alone.
func removeKeys(ctx context.Context, cli *clientv3.Client, prefixes ...string) error {
	ours := func(key []byte) bool {
		return slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(string(key), p) })
	}
	leases, err := cli.Leases(ctx)
	if err != nil {
		return fmt.Errorf("list leases: %w", err)
	}
	for _, l := range leases.Leases {
		ttl, err := cli.TimeToLive(ctx, l.ID, clientv3.WithAttachedKeys())
		if err != nil {
			return fmt.Errorf("lease %x: %w", l.ID, err)
		}
		if len(ttl.Keys) > 0 && !slices.ContainsFunc(ttl.Keys, func(k []byte) bool { return !ours(k) }) {
			if _, err := cli.Revoke(ctx, l.ID); err != nil {
				return fmt.Errorf("revoke lease %x: %w", l.ID, err)
			}
		}
	}
	for _, p := range prefixes {
		if _, err := cli.Delete(ctx, p, clientv3.WithPrefix()); err != nil {
			return fmt.Errorf("delete %s: %w", p, err)
		}
	}
	return nil
}

// prepareEtcd stores the fixture in etcd under prefix through the etcd
// store itself: sessions are created as Login creates them, many at once.
func prepareEtcd(ctx context.Context, endpoints []string, prefix string, sessions int) (*fixture, error) {
	st, err := etcd.Open(ctx, etcd.Config{Endpoints: endpoints, Prefix: prefix})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return populate(ctx, st, population{live: sessions}, func(ctx context.Context, chunk []storage.Session) error {
		const workers = 16
		errs := make([]error, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < len(chunk) && errs[w] == nil; i += workers {
					errs[w] = st.CreateSession(ctx, chunk[i])
				}
			})
		}
		wg.Wait()
		return errors.Join(errs...)
	})
}

// dialReplicas returns perReplica clients of each replica, in turns (A B C
// A B C ...), so that worker w's calls go to replica w mod len(reps).
func dialReplicas(reps []*server, perReplica int) ([]latchv1.AuthServiceClient, func(), error) {
	var closers cleanup
	out := make([]latchv1.AuthServiceClient, 0, len(reps)*perReplica)
	per := make([][]latchv1.AuthServiceClient, len(reps))
	for i, s := range reps {
		clients, closeAll, err := dial(s.addr, perReplica, latchv1.NewAuthServiceClient)
		if err != nil {
			closers.run()
			return nil, nil, err
		}
		closers = append(closers, closeAll)
		per[i] = clients
	}
	for j := range perReplica {
		for i := range reps {
			out = append(out, per[i][j])
		}
	}
	return out, closers.run, nil
}

// etcdRows measures Refresh, Introspect and Revoke on replica A alone and
// spread over all three, each group interleaved with the raw Txn of its
// shape. In the one-replica rows the other replicas keep running (idle,
// following the revocation feed); only A's CPU is counted then, and all
// three's in the three-replica rows.
func (b *runner) etcdRows(ctx context.Context, fx *fixture, reps []*server, raw *rawEtcd) error {
	conc := b.cfg.Concurrency
	one, closeOne, err := dialReplicas(reps[:1], 4)
	if err != nil {
		return err
	}
	defer closeOne()
	all, closeAll, err := dialReplicas(reps, 2)
	if err != nil {
		return err
	}
	defer closeAll()
	// Separate refresh chains for each row; the same access tokens.
	wl1, wl3 := newWorkload(fx, one, conc, 0, 0), newWorkload(fx, all, conc, conc, 0)
	pair := func(name string, fn1, fn3 loadFn) (row, row) {
		r1 := b.row("scenario", name+" (etcd, 1 replica)", conc, fn1)
		r3 := b.row("scenario", fmt.Sprintf("%s (etcd, %d replicas)", name, len(reps)), conc, fn3)
		r3.also = reps[1:]
		return r1, r3
	}
	r1, r3 := pair("Refresh", wl1.refresh, wl3.refresh)
	b.interleave(ctx, b.row("baseline", "raw etcd Txn, Refresh shape", conc, raw.refresh), r1, r3)
	r1, r3 = pair("Introspect", wl1.introspect, wl3.introspect)
	if b.want("Introspect (etcd") {
		// Every replica verifies each token once and then answers it from
		// its verify cache, as replicas serving the same callers do; with
		// cold caches the rows would measure ECDSA (three times over on
		// three replicas), not the cost of sharing the store.
		progress(b.cfg, "warming every replica's verify cache with the %d tokens the Introspect rows present", len(fx.access))
		if err := warmVerifyCaches(ctx, fx, reps, conc); err != nil {
			return err
		}
	}
	// The CPU a call costs falls as a process's load rises (more calls
	// share each wakeup, syscall and write), so the cost of sharing the
	// store is measured with every replica as loaded as the lone one: the
	// same concurrency per replica, not the same total.
	each := b.row("scenario", fmt.Sprintf("%s (etcd, %d replicas, %d calls each)", "Introspect", len(reps), conc),
		conc*len(reps), newWorkload(fx, all, conc*len(reps), 0, 0).introspect)
	each.also = reps[1:]
	b.interleave(ctx, b.row("baseline", "raw etcd Txn, Introspect shape", conc, raw.introspect), r1, r3, each)
	// Revoke denies a fresh token per call (minted here, in a live
	// session), so the rows never run out of tokens and never revoke the
	// ones the other rows present.
	revoke := func(clients []latchv1.AuthServiceClient) loadFn {
		return func(ctx context.Context, w, i int) error {
			tok, _, err := fx.mint(fx.sessions[(w*7919+i)%len(fx.sessions)])
			if err != nil {
				return err
			}
			_, err = clients[w%len(clients)].Revoke(ctx, &latchv1.RevokeRequest{Token: tok,
				TokenTypeHint: latchv1.TokenTypeHint_TOKEN_TYPE_HINT_ACCESS_TOKEN})
			return err
		}
	}
	r1, r3 = pair("Revoke", revoke(one), revoke(all))
	b.interleave(ctx, b.row("baseline", "raw etcd Txn, Revoke shape", conc, raw.revoke), r1, r3)
	return nil
}

// warmVerifyCaches introspects each of fx's access tokens once on every
// replica, conc calls at a time.
func warmVerifyCaches(ctx context.Context, fx *fixture, reps []*server, conc int) error {
	clients, closeAll, err := dialReplicas(reps, 1)
	if err != nil {
		return err
	}
	defer closeAll()
	wl := newWorkload(fx, clients, 0, 0, 0)
	errs := make([]error, conc)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Go(func() {
			for i := w; i < len(clients)*len(fx.access) && errs[w] == nil; i += conc {
				errs[w] = wl.introspectToken(ctx, i%len(clients), fx.access[i/len(clients)])
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("warm the verify caches: %w", err)
	}
	return nil
}

// rawEtcd issues, from the bench's own etcd client, the Txns each RPC
// makes in storage/etcd, with values of the sizes the store wrote for the
// fixture, on keys of their own under rawPrefix. Each worker has its own
// session keys, so no compare fails for lack of a retry loop.
type rawEtcd struct {
	cli                    *clientv3.Client
	p                      string
	lease                  clientv3.LeaseID
	session, state, userV  string
	sessKeys, stateKeys    []string
	userKey, fenceKey, jti string
}

// newRawEtcd reads the sizes of a session's record and state row and of
// a user record that the store wrote under prefix, and writes a session
// of those sizes for each of conc workers under rawPrefix.
func newRawEtcd(ctx context.Context, cli *clientv3.Client, prefix, rawPrefix string, fx *fixture, conc int) (*rawEtcd, error) {
	size := func(key string) (int, error) {
		resp, err := cli.Get(ctx, key)
		if err != nil {
			return 0, err
		}
		if len(resp.Kvs) != 1 {
			return 0, fmt.Errorf("raw etcd rows: no %s in the store's layout; the raw rows mirror storage/etcd's keys and must follow it", key)
		}
		return len(resp.Kvs[0].Value), nil
	}
	sid := fx.sessions[0]
	var sizes [3]int
	for i, k := range []string{prefix + "sessions/" + sid, prefix + "sessstate/" + sid, prefix + "users/u-bench"} {
		n, err := size(k)
		if err != nil {
			return nil, err
		}
		sizes[i] = n
	}
	lease, err := cli.Grant(ctx, int64(time.Hour/time.Second))
	if err != nil {
		return nil, fmt.Errorf("raw etcd rows: lease: %w", err)
	}
	r := &rawEtcd{cli: cli, p: rawPrefix, lease: lease.ID, session: strings.Repeat("s", sizes[0]), state: strings.Repeat("t", sizes[1]),
		userV: strings.Repeat("u", sizes[2]), userKey: rawPrefix + "users/u", fenceKey: rawPrefix + "userfences/u", jti: rawPrefix + "revocations/jti/"}
	if _, err := cli.Put(ctx, r.userKey, r.userV); err != nil {
		return nil, err
	}
	for w := range conc {
		sk, tk := rawPrefix+"sessions/"+strconv.Itoa(w), rawPrefix+"sessstate/"+strconv.Itoa(w)
		if _, err := cli.Txn(ctx).Then(clientv3.OpPut(sk, r.session, clientv3.WithLease(r.lease)),
			clientv3.OpPut(tk, r.state, clientv3.WithLease(r.lease))).Commit(); err != nil {
			return nil, fmt.Errorf("raw etcd rows: %w", err)
		}
		r.sessKeys, r.stateKeys = append(r.sessKeys, sk), append(r.stateKeys, tk)
	}
	return r, nil
}

// close revokes the raw rows' lease, which deletes their keys.
func (r *rawEtcd) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = r.cli.Revoke(ctx, r.lease)
}

// refresh is RotateRefreshToken and GetUser: a Get of the session, a Txn
// comparing its revision and the owner's fence that puts the record and
// the state row (with a lease) or else reads both keys back, then a Get
// of the user.
func (r *rawEtcd) refresh(ctx context.Context, w, _ int) error {
	sk := r.sessKeys[w]
	g, err := r.cli.Get(ctx, sk)
	if err != nil {
		return err
	}
	if len(g.Kvs) != 1 {
		return errors.New("raw session missing")
	}
	t, err := r.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.ModRevision(sk), "=", g.Kvs[0].ModRevision),
		clientv3.Compare(clientv3.ModRevision(r.fenceKey), "<", g.Kvs[0].CreateRevision),
	).Then(
		clientv3.OpPut(sk, r.session, clientv3.WithLease(r.lease)),
		clientv3.OpPut(r.stateKeys[w], r.state, clientv3.WithLease(r.lease)),
	).Else(clientv3.OpGet(sk, clientv3.WithKeysOnly()), clientv3.OpGet(r.fenceKey)).Commit()
	if err != nil {
		return err
	}
	if !t.Succeeded {
		return errors.New("raw rotation compare failed")
	}
	_, err = r.cli.Get(ctx, r.userKey)
	return err
}

// introspect is two AccessTokenRevoked checks (the caller's and the
// target's): each a Txn of a count of the jti's deny row and a Get of the
// session's state row.
func (r *rawEtcd) introspect(ctx context.Context, w, i int) error {
	for range 2 {
		t, err := r.cli.Txn(ctx).Then(
			clientv3.OpGet(r.jti+strconv.Itoa(w)+"-"+strconv.Itoa(i), clientv3.WithCountOnly()),
			clientv3.OpGet(r.stateKeys[w]),
		).Commit()
		if err != nil {
			return err
		}
		if len(t.Responses[1].GetResponseRange().Kvs) != 1 {
			return errors.New("raw state row missing")
		}
	}
	return nil
}

// revoke is DenyAccessToken: a Get of the jti's deny row, then a Txn that
// puts it (8 bytes, with a lease) if it is still absent.
func (r *rawEtcd) revoke(ctx context.Context, w, i int) error {
	key := r.jti + strconv.Itoa(w) + "-" + strconv.Itoa(i)
	if _, err := r.cli.Get(ctx, key); err != nil {
		return err
	}
	t, err := r.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, "12345678", clientv3.WithLease(r.lease))).Commit()
	if err != nil {
		return err
	}
	if !t.Succeeded {
		return errors.New("raw deny compare failed")
	}
	return nil
}

// lagRowPrefix starts the names of the lag lines (what --only matches).
const lagRowPrefix = "Revoke on A →"

// revocationLag revokes n fresh access tokens one after another on
// replica A and measures, from each Revoke's reply, how long until
// Introspect on replica B answers inactive (B is asked again at once until
// it does) and until the revocation's event reaches a WatchRevocations
// stream of replica C. Each token is first seen active on B.
func revocationLag(ctx context.Context, fx *fixture, reps []*server, n int, progressTo io.Writer) ([]Lag, error) {
	if len(reps) < 3 {
		return nil, errors.New("needs three replicas")
	}
	clients := make([]latchv1.AuthServiceClient, 3)
	for i := range clients {
		c, closeAll, err := dial(reps[i].addr, 1, latchv1.NewAuthServiceClient)
		if err != nil {
			return nil, err
		}
		defer closeAll()
		clients[i] = c[0]
	}
	a, bRep, c := clients[0], clients[1], clients[2]
	caller := metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+fx.caller))

	watchCtx, stopWatch := context.WithCancel(caller)
	defer stopWatch()
	stream, err := c.WatchRevocations(watchCtx, &latchv1.WatchRevocationsRequest{})
	if err != nil {
		return nil, fmt.Errorf("WatchRevocations on C: %w", err)
	}
	hdr, err := stream.Header()
	if err != nil {
		return nil, fmt.Errorf("WatchRevocations on C: %w", err)
	}
	snapshot := 0
	if v := hdr.Get(latchserver.SnapshotSizeHeader); len(v) == 1 {
		snapshot, _ = strconv.Atoi(v[0])
	}
	// The snapshot (every revocation of the rows before) is read before
	// the first Revoke, so that no event measured waits behind it.
	for range snapshot {
		if _, err := stream.Recv(); err != nil {
			return nil, fmt.Errorf("WatchRevocations on C: snapshot: %w", err)
		}
	}
	type arrival struct {
		jti string
		at  time.Time
	}
	events := make(chan arrival, 1024)
	streamErr := make(chan error, 1)
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				streamErr <- err
				return
			}
			if ev.GetJti() != "" {
				select {
				case events <- arrival{ev.GetJti(), time.Now()}:
				case <-watchCtx.Done():
					return
				}
			}
		}
	}()

	introspect := func(tok string) (bool, error) {
		resp, err := bRep.Introspect(caller, &latchv1.IntrospectRequest{Token: tok, TokenTypeHint: latchv1.TokenTypeHint_TOKEN_TYPE_HINT_ACCESS_TOKEN})
		return resp.GetActive(), err
	}
	const wait = 10 * time.Second
	refusal, event := make([]time.Duration, 0, n), make([]time.Duration, 0, n)
	activeAfterAck := 0
	for i := range n {
		tok, jti, err := fx.mint(fx.sessions[i%len(fx.sessions)])
		if err != nil {
			return nil, err
		}
		if active, err := introspect(tok); err != nil || !active {
			return nil, fmt.Errorf("introspect on B before the revoke: active %v, %v; want active", active, err)
		}
		if _, err := a.Revoke(ctx, &latchv1.RevokeRequest{Token: tok, TokenTypeHint: latchv1.TokenTypeHint_TOKEN_TYPE_HINT_ACCESS_TOKEN}); err != nil {
			return nil, fmt.Errorf("revoke on A: %w", err)
		}
		acked := time.Now()
		for asked := 0; ; asked++ {
			active, err := introspect(tok)
			if err != nil {
				return nil, fmt.Errorf("introspect on B after the revoke: %w", err)
			}
			if !active {
				refusal = append(refusal, time.Since(acked))
				if asked > 0 {
					activeAfterAck++
				}
				break
			}
			if time.Since(acked) > wait {
				return nil, fmt.Errorf("introspect on B still answers active %v after the revoke on A was acknowledged", wait)
			}
		}
		deadline := time.NewTimer(wait)
	await:
		for {
			select {
			case ev := <-events:
				if ev.jti == jti {
					// An event that arrives before the reply counts as no lag.
					event = append(event, max(ev.at.Sub(acked), 0))
					break await
				}
			case err := <-streamErr:
				deadline.Stop()
				return nil, fmt.Errorf("WatchRevocations on C ended: %w", err)
			case <-deadline.C:
				return nil, fmt.Errorf("no WatchRevocations event on C %v after the Revoke on A was acknowledged", wait)
			case <-ctx.Done():
				deadline.Stop()
				return nil, ctx.Err()
			}
		}
		deadline.Stop()
		if (i+1)%500 == 0 && progressTo != nil {
			fmt.Fprintf(progressTo, "latch bench: revocation lag: %d of %d revocations\n", i+1, n)
		}
	}
	refused := lagOf(lagRowPrefix+" Introspect inactive on B", refusal)
	refused.ActiveAfterAck = &activeAfterAck
	return []Lag{
		refused,
		lagOf(lagRowPrefix+" WatchRevocations event on C", event),
	}, nil
}

// lagOf summarises ds.
func lagOf(name string, ds []time.Duration) Lag {
	l := Lag{Name: name, Count: len(ds)}
	if len(ds) == 0 {
		return l
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	l.P50Ms, l.P99Ms, l.MaxMs = ms(s[len(s)/2]), ms(s[len(s)*99/100]), ms(s[len(s)-1])
	return l
}

// etcdRatios compares each etcd row with its raw Txn, and the server CPU
// per Introspect of three replicas with one's.
func (b *runner) etcdRatios() {
	three := fmt.Sprintf("(etcd, %d replicas)", etcdReplicas)
	for _, rpc := range []string{"Refresh", "Introspect", "Revoke"} {
		raw, _ := b.find("raw etcd Txn, " + rpc + " shape")
		for _, on := range []string{"(etcd, 1 replica)", three} {
			r, _ := b.find(rpc + " " + on)
			b.addRatio(fmt.Sprintf("%s %s / raw etcd Txn", rpc, on), r.PerSecond, raw.PerSecond, "the same shape of Txn from the bench's own client, same concurrency")
		}
	}
	perCall := func(r Result) float64 {
		if r.Ops == 0 {
			return 0
		}
		return r.ServerCores * r.Seconds / float64(r.Ops)
	}
	i1, _ := b.find("Introspect (etcd, 1 replica)")
	i3, _ := b.find(fmt.Sprintf("Introspect (etcd, %d replicas, %d calls each)", etcdReplicas, b.cfg.Concurrency))
	c1, c3 := perCall(i1), perCall(i3)
	b.addRatio(fmt.Sprintf("server CPU per Introspect, %d replicas / 1, same load per replica", etcdReplicas), c3, c1,
		fmt.Sprintf("%.1f µs / %.1f µs of Latch CPU per call; target ≤ 1.3", c3*1e6, c1*1e6))
}
