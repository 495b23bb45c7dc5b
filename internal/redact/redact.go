// Package redact is a slog.Handler wrapper that replaces the value of any
// attribute whose key names a secret (password, token, authorization, ...)
// before it reaches the log, at any depth of groups. It is the last line of
// defence: code should not log secrets in the first place.
package redact

import (
	"context"
	"log/slog"
	"strings"
)

// Redacted is what a secret attribute's value becomes.
const Redacted = "[REDACTED]"

// IsSecretKey reports whether an attribute with this key (any case) is
// redacted.
func IsSecretKey(key string) bool {
	switch strings.ToLower(key) {
	case "password", "passwd", "secret", "token", "access_token", "refresh_token",
		"id_token", "authorization", "cookie", "private_key", "password_hash", "token_hash":
		return true
	}
	return false
}

// Handler redacts secret attributes and passes records on to the wrapped
// handler.
type Handler struct {
	next slog.Handler
}

// NewHandler wraps next.
func NewHandler(next slog.Handler) *Handler { return &Handler{next: next} }

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle implements slog.Handler.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = redactAttr(a)
	}
	return &Handler{next: h.next.WithAttrs(red)}
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name)}
}

func redactAttr(a slog.Attr) slog.Attr {
	if IsSecretKey(a.Key) {
		return slog.String(a.Key, Redacted)
	}
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		g := v.Group()
		red := make([]any, len(g))
		for i, ga := range g {
			red[i] = redactAttr(ga)
		}
		return slog.Group(a.Key, red...)
	}
	return slog.Attr{Key: a.Key, Value: v}
}
