package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/storage"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Fixed client-visible messages. Credential failures share one message per
// RPC so that the answer tells an attacker nothing (an unknown email and a
// wrong password are indistinguishable).
const (
	msgBadLogin       = "invalid email or password"
	msgBadRefresh     = "invalid refresh token"
	msgRateLimited    = "too many login attempts; retry later"
	msgProbeLimited   = "too many invalid tokens; retry later"
	msgBusy           = "server busy with password checks; retry later"
	msgInternal       = "internal error"
	msgBadCredential  = "invalid caller credential"
	msgCallerRevoked  = "caller credential revoked; reconnect with a valid access token"
	msgCallerExpired  = "caller credential expired; reconnect with a fresh access token"
	msgUnavailable    = "service unavailable; retry later"
	msgCanceled       = "request canceled"
	msgDeadline       = "deadline exceeded"
	msgTooLongInField = "is longer than allowed"
)

// noSpaceRetry is the retry hint of a write refused because the store is
// out of space: freeing it takes an operator, so retrying sooner only adds
// load.
const noSpaceRetry = 10 * time.Second

// unavailableRetry is the retry hint of an UNAVAILABLE answer: about the
// time an etcd cluster takes to elect a new leader.
const unavailableRetry = time.Second

// clientError is an expected failure whose code and message are safe to
// return as they are.
type clientError struct {
	code       codes.Code
	msg        string
	retryAfter time.Duration
}

func (e *clientError) Error() string { return e.code.String() + ": " + e.msg }

func failure(code codes.Code, msg string) error { return &clientError{code: code, msg: msg} }

func invalidArg(msg string) error { return failure(codes.InvalidArgument, msg) }

// reqField is one string field of a request, for checkUTF8.
type reqField struct{ name, value string }

// checkUTF8 refuses the first of fields that is not UTF-8 with
// INVALID_ARGUMENT naming it. The generated protobuf code does not check
// UTF-8 (proto/latch/v1 sets features.utf8_validation = NONE), so that such
// a request reaches its handler instead of being answered INTERNAL by the
// gRPC runtime; every string field of a request is checked here or by a
// stricter parser of its own. Tokens are not: a token that is not UTF-8 is
// malformed and answered as any malformed token.
func checkUTF8(fields ...reqField) error {
	for _, f := range fields {
		if !utf8.ValidString(f.value) {
			return invalidArg(f.name + " is not UTF-8")
		}
	}
	return nil
}

func rateLimited(retryAfter time.Duration) error {
	return &clientError{code: codes.ResourceExhausted, msg: msgRateLimited, retryAfter: retryAfter}
}

func probeLimited(retryAfter time.Duration) error {
	return &clientError{code: codes.ResourceExhausted, msg: msgProbeLimited, retryAfter: retryAfter}
}

// toStatus is the one place that turns an error from a handler into what the
// client sees. Expected failures keep their code and fixed message; anything
// else is logged with its detail and answered with a fixed INTERNAL message,
// so no inner error text, secret or panic value ever reaches a client.
func (s *Server) toStatus(ctx context.Context, method string, err error) error {
	if err == nil {
		return nil
	}
	var ce *clientError
	var notReady *KeyNotReadyError
	var tooMany *TooManyRetiredKeysError
	switch {
	case errors.As(err, &tooMany):
		return s.toStatus(ctx, method, &clientError{code: codes.FailedPrecondition, retryAfter: tooMany.RetryAt.Sub(s.now()),
			msg: fmt.Sprintf("%d retired signing keys are still published; the next rotation is possible after %s",
				MaxRetiredKeys, tooMany.RetryAt.UTC().Format(time.RFC3339))})
	case errors.As(err, &notReady):
		return s.toStatus(ctx, method, &clientError{code: codes.FailedPrecondition, retryAfter: notReady.ReadyAt.Sub(s.now()),
			msg: "the next signing key is not yet published long enough to sign; it may be activated from " +
				notReady.ReadyAt.UTC().Format(time.RFC3339) + " (rotate immediately only if the active key is compromised)"})
	case errors.As(err, &ce):
		st := status.New(ce.code, ce.msg)
		if ce.retryAfter > 0 {
			if d, derr := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(ce.retryAfter.Round(time.Second) + time.Second)}); derr == nil {
				st = d
			}
		}
		return st.Err()
	case errors.Is(err, password.ErrBusy):
		s.log.LogAttrs(ctx, slog.LevelWarn, "password work shed", slog.String("event", "hashing_busy"), slog.String("method", method))
		return s.toStatus(ctx, method, &clientError{code: codes.ResourceExhausted, msg: msgBusy, retryAfter: time.Second})
	case errors.Is(err, storage.ErrNoSpace):
		// Before ErrUnavailable, which it comes with: the cause needs an
		// operator, not just time.
		// The record with what to do is written once, when the state
		// changes; each refused write after it is one short warning.
		attrs := []slog.Attr{slog.String("method", method), slog.String("error", err.Error())}
		if !s.setNoSpace(true, attrs...) {
			s.log.LogAttrs(ctx, slog.LevelWarn, "write refused: out of space", append(attrs, slog.String("event", "storage_write_refused"))...)
		}
		return s.toStatus(ctx, method, &clientError{code: codes.Unavailable, msg: msgUnavailable, retryAfter: noSpaceRetry})
	case errors.Is(err, storage.ErrUnavailable):
		// Before the context cases: the store's own timeout is not the
		// client's deadline.
		s.log.LogAttrs(ctx, slog.LevelError, "storage unavailable", slog.String("event", "storage_unavailable"),
			slog.String("method", method), slog.String("error", err.Error()))
		// The same request may succeed on a retry (a new etcd leader is
		// usually elected within seconds), so the answer says when.
		st := status.New(codes.Unavailable, msgUnavailable)
		if d, derr := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(unavailableRetry)}); derr == nil {
			st = d
		}
		return st.Err()
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, msgCanceled)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, msgDeadline)
	}
	s.log.LogAttrs(ctx, slog.LevelError, "request failed",
		slog.String("event", "internal_error"), slog.String("method", method), slog.String("error", err.Error()))
	return status.Error(codes.Internal, msgInternal)
}
