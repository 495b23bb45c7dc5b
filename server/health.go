package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchauth/latch/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// LivenessService is the grpc.health.v1 service name that reports liveness:
// SERVING for as long as the process answers RPCs, whatever the store's
// reachability and also while draining, like GET /healthz. Point a gRPC
// liveness probe at it; a probe of "" or a registered service reports
// readiness, and a liveness probe on readiness would restart every replica
// during a storage outage.
const LivenessService = "latch.liveness"

// readyTimeout bounds one readiness check of the store.
const readyTimeout = 2 * time.Second

// Reasons a server is not ready, as Ready reports them (and /readyz says).
var (
	// ErrDraining: the server is stopping; load balancers should send
	// new work elsewhere.
	ErrDraining = errors.New("draining")
	// ErrNoSigningKey: no signing key is loaded.
	ErrNoSigningKey = errors.New("no signing key loaded")
	// ErrStorageUnavailable: the store did not answer a read.
	ErrStorageUnavailable = errors.New("storage unavailable")
	// ErrSigningKeysStale: the key set in the store did not load at the
	// last reload (for example a key sealed by a replica with another
	// key-encryption key), so this server may be signing with a key the
	// others have retired and does not publish their new keys.
	ErrSigningKeysStale = errors.New("stored signing keys do not load")
)

// readiness holds the draining flag and shares one store check among
// concurrent callers, so that a flood of probes costs one read at a time.
type readiness struct {
	mu       sync.Mutex
	draining bool
	inflight *readyCall
	last     error // result of the last check, to log changes only
	checked  bool
	// noSpace is set while the store refuses writes for lack of space, as
	// the last failed write or space check saw it.
	noSpace atomic.Bool
	// spaceChecked is when the store's space was last asked about (under
	// mu's callers' one-at-a-time check).
	spaceChecked time.Time
}

// spaceCheckInterval is how often readiness asks the store whether it is
// out of space. On etcd the question (the alarm list) is a proposal
// through the cluster's log, so readiness probes, which anyone can send,
// must not ask it on every check.
const spaceCheckInterval = 5 * time.Second

// noSpaceAdvice is what the log says an operator does about a store out
// of space.
const noSpaceAdvice = "etcd raised its NOSPACE alarm (the database reached --quota-backend-bytes) and refuses every write until it is disarmed: " +
	"free space (delete data or wait for leases to expire, then compact), defragment each member in turn (etcdctl defrag), " +
	"then run `etcdctl alarm disarm`; Latch resumes writes without a restart"

// setNoSpace records whether the store refuses writes for lack of space
// and logs each change: writes stop being possible, or become possible
// again.
func (s *Server) setNoSpace(full bool, attrs ...slog.Attr) (changed bool) {
	if s.ready.noSpace.Swap(full) == full {
		return false
	}
	if full {
		s.log.LogAttrs(context.Background(), slog.LevelError, "storage refuses writes: out of space",
			append([]slog.Attr{slog.String("event", "storage_no_space")}, append(attrs, slog.String("action", noSpaceAdvice))...)...)
	} else {
		s.log.Info("storage accepts writes again", "event", "storage_space_recovered")
	}
	return true
}

// checkSpace asks a store that can tell (storage.SpaceChecker) whether it
// refuses writes for lack of space. A check that cannot tell changes
// nothing: reachability is the read check's business.
func (s *Server) checkSpace(ctx context.Context) {
	sc, ok := s.store.(storage.SpaceChecker)
	if !ok {
		return
	}
	// Readiness checks run one at a time (checkReady), so this needs no
	// lock of its own.
	now := s.now()
	if now.Sub(s.ready.spaceChecked) < spaceCheckInterval {
		return
	}
	s.ready.spaceChecked = now
	switch err := sc.CheckSpace(ctx); {
	case err == nil:
		s.setNoSpace(false)
	case errors.Is(err, storage.ErrNoSpace):
		s.setNoSpace(true)
	}
}

type readyCall struct {
	done chan struct{}
	err  error
}

// Ready reports whether the server can do its work: nil when it is not
// draining, a signing key is loaded, the stored key set loaded at the last
// reload and the store answers a read within 2 s; otherwise ErrDraining,
// ErrNoSigningKey, ErrSigningKeysStale or ErrStorageUnavailable (the
// store's own error goes to the log only). /readyz and grpc.health.v1
// answer from it.
func (s *Server) Ready(ctx context.Context) error {
	s.ready.mu.Lock()
	if s.ready.draining {
		s.ready.mu.Unlock()
		return ErrDraining
	}
	c := s.ready.inflight
	if c == nil {
		c = &readyCall{done: make(chan struct{})}
		s.ready.inflight = c
		go s.checkReady(c)
	}
	s.ready.mu.Unlock()
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return fmt.Errorf("readiness check: %w", ctx.Err())
	}
}

func (s *Server) checkReady(c *readyCall) {
	var err error
	switch {
	case s.keys.signer() == nil:
		err = ErrNoSigningKey
	case s.keys.stale.Load() || s.refreshKeys.stale.Load():
		err = ErrSigningKeysStale
	default:
		ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
		_, serr := s.store.ListSigningKeys(ctx)
		if serr != nil {
			err = ErrStorageUnavailable
			s.log.Warn("readiness: storage did not answer", "event", "storage_unavailable", "error", serr.Error())
		} else {
			s.checkSpace(ctx)
		}
		cancel()
	}
	s.ready.mu.Lock()
	c.err = err
	s.ready.inflight = nil
	changed := !s.ready.checked || err != s.ready.last // err is nil or a sentinel
	s.ready.last, s.ready.checked = err, true
	s.ready.mu.Unlock()
	// The change is logged before the waiting callers are released, so
	// that whoever saw the new state also finds its record.
	if changed {
		if err != nil {
			s.log.Warn("not ready", "event", "readiness_changed", "ready", false, "reason", err.Error())
		} else {
			s.log.Info("ready", "event", "readiness_changed", "ready", true)
		}
	}
	close(c.done)
}

// SetDraining marks the server as stopping: from now on Ready reports
// ErrDraining, so /readyz answers 503. GRPCServer.StartDrain calls it.
func (s *Server) SetDraining() {
	s.ready.mu.Lock()
	defer s.ready.mu.Unlock()
	if !s.ready.draining {
		s.ready.draining = true
		s.log.Info("draining: reporting not ready", "event", "draining")
	}
}

// serveReadyz answers 200 "ready" (saying so when the store refuses writes
// for lack of space) or 503 with the reason.
func (s *Server) serveReadyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := s.Ready(r.Context()); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintf(w, "not ready: %s\n", readyReason(err))
		return
	}
	if s.ready.noSpace.Load() {
		// Still ready: reads (Introspect, JWKS) work, and every replica
		// shares the store, so no other replica would write either.
		_, _ = w.Write([]byte("ready; writes refused: storage out of space\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// readyReason is the client-visible reason: one of the fixed sentinels.
func readyReason(err error) string {
	for _, known := range []error{ErrDraining, ErrNoSigningKey, ErrSigningKeysStale, ErrStorageUnavailable} {
		if errors.Is(err, known) {
			return known.Error()
		}
	}
	return "check did not finish"
}

// healthServer is grpc.health.v1 answering Check for the whole server ("")
// and every service registered on it (AuthService, and any added later)
// from Server.Ready at each call, and for LivenessService with SERVING. Watch follows the status that Check and
// the GRPCServer's periodic check last set.
type healthServer struct {
	*health.Server
	auth      *Server
	services  func() []string // registered services, "" included
	stopped   context.Context // done when Watch streams must end (drain)
	stopWatch context.CancelFunc
}

func newHealthServer(s *Server, services func() []string) *healthServer {
	stopped, stop := context.WithCancel(context.Background())
	h := &healthServer{Server: health.NewServer(), auth: s, services: services,
		stopped: stopped, stopWatch: stop}
	h.setAll(healthpb.HealthCheckResponse_SERVING)
	return h
}

func (h *healthServer) setAll(st healthpb.HealthCheckResponse_ServingStatus) {
	for _, svc := range h.services() {
		h.SetServingStatus(svc, st) // ignored after Shutdown (draining)
	}
}

// refresh sets every status from Ready and returns it.
func (h *healthServer) refresh(ctx context.Context) healthpb.HealthCheckResponse_ServingStatus {
	err := h.auth.Ready(ctx)
	if err != nil && ctx.Err() != nil {
		// The caller gave up; that says nothing about the server.
		return healthpb.HealthCheckResponse_NOT_SERVING
	}
	st := healthpb.HealthCheckResponse_SERVING
	if err != nil {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	h.setAll(st)
	return st
}

// Check implements healthpb.HealthServer.
func (h *healthServer) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if req.GetService() == LivenessService {
		return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
	}
	if !slices.Contains(h.services(), req.GetService()) {
		return h.Server.Check(ctx, req)
	}
	return &healthpb.HealthCheckResponse{Status: h.refresh(ctx)}, nil
}

// Watch implements healthpb.HealthServer. Streams end with UNAVAILABLE when
// the drain proper begins, so that a graceful stop does not wait for them.
func (h *healthServer) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	if req.GetService() == LivenessService {
		return h.watchLiveness(stream)
	}
	if slices.Contains(h.services(), req.GetService()) {
		// A service registered after start has no status yet: give it one
		// now rather than SERVICE_UNKNOWN until the next periodic check.
		h.refresh(stream.Context())
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	stop := context.AfterFunc(h.stopped, cancel)
	defer stop()
	err := h.Server.Watch(req, ctxStream{Health_WatchServer: stream, ctx: ctx})
	if h.stopped.Err() != nil {
		return status.Error(codes.Unavailable, "server draining; reconnect elsewhere")
	}
	return err
}

// watchLiveness sends SERVING once and holds the stream open until the
// client leaves or the drain proper begins (then UNAVAILABLE, as for the
// other names): the status never changes while the process runs.
func (h *healthServer) watchLiveness(stream healthpb.Health_WatchServer) error {
	if err := stream.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}); err != nil {
		return fmt.Errorf("send liveness: %w", err)
	}
	select {
	case <-stream.Context().Done():
		return status.FromContextError(stream.Context().Err()).Err()
	case <-h.stopped.Done():
		return status.Error(codes.Unavailable, "server draining; reconnect elsewhere")
	}
}

// ctxStream is a Watch stream with a context of our own.
type ctxStream struct {
	healthpb.Health_WatchServer
	ctx context.Context
}

func (s ctxStream) Context() context.Context { return s.ctx }

// watchReadiness refreshes the health statuses every interval until ctx
// ends, so that Watch streams follow the store's reachability.
func (h *healthServer) watchReadiness(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			cctx, cancel := context.WithTimeout(ctx, readyTimeout+time.Second)
			h.refresh(cctx)
			cancel()
		}
	}
}

var _ healthpb.HealthServer = (*healthServer)(nil)
