package redact

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestRedactsSecretsAtAnyDepth(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(NewHandler(slog.NewJSONHandler(&buf, nil)))
	log = log.With("Authorization", "Bearer s3cret-with")
	log.WithGroup("req").Info("m",
		"password", "s3cret-pw", "user_id", "u1",
		slog.Group("grpc", "refresh_token", "s3cret-rt", "method", "Login"),
		slog.Any("token", "s3cret-tok"))
	out := buf.String()
	if strings.Contains(out, "s3cret") {
		t.Errorf("log holds a secret: %s", out)
	}
	for _, want := range []string{`"user_id":"u1"`, `"method":"Login"`, Redacted} {
		if !strings.Contains(out, want) {
			t.Errorf("log %s lacks %s", out, want)
		}
	}
}

func TestIsSecretKey(t *testing.T) {
	for key, want := range map[string]bool{"PASSWORD": true, "refresh_token": true, "jti": false, "session_id": false} {
		if got := IsSecretKey(key); got != want {
			t.Errorf("IsSecretKey(%q) = %v, want %v", key, got, want)
		}
	}
}
