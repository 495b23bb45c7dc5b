package server_test

import (
	"testing"
	"time"

	"github.com/latchauth/latch/server"
)

// BenchmarkSyncSigningKeysIdle measures one key-manager tick when nothing is
// due (what every replica does every --key-reload-interval): compare it
// with BenchmarkListSigningKeys, the bare storage read it is built on.
func BenchmarkSyncSigningKeysIdle(b *testing.B) {
	e := newEnv(b, keyConfig())
	ctx := ctxT(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := e.srv.SyncSigningKeys(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkListSigningKeys is the baseline of BenchmarkSyncSigningKeysIdle.
func BenchmarkListSigningKeys(b *testing.B) {
	e := newEnv(b, keyConfig())
	ctx := ctxT(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.store.ListSigningKeys(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRotateSigningKey measures one on-demand immediate rotation: key
// generation, one fsynced transaction and the key-ring swap (with and
// without sealing).
func BenchmarkRotateSigningKey(b *testing.B) {
	for _, sealed := range []bool{false, true} {
		name := "plain"
		var opts []server.Option
		if sealed {
			name = "sealed"
			opts = append(opts, server.WithKeySealer(newKEKB(b)))
		}
		b.Run(name, func(b *testing.B) {
			e := newEnv(b, keyConfig())
			srv, err := server.New(ctxT(b), e.store, e.hasher, keyConfig(), append(opts, server.WithClock(e.clock.Now))...)
			if err != nil {
				b.Fatal(err)
			}
			ctx := ctxT(b)
			window := srv.Config().KeyReloadInterval + srv.Config().AccessTTL + srv.Config().Leeway
			b.ReportAllocs()
			for b.Loop() {
				e.clock.Advance(window + time.Second) // the last retired key goes, as it would in real time
				if _, err := srv.RotateSigningKey(ctx, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
