package main

import (
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/storage/etcd"
	"github.com/latchauth/latch/storage/etcd/etcdtest"
)

func parseStorageFlags(t *testing.T, args ...string) *storageFlags {
	t.Helper()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f storageFlags
	f.register(fs)
	if err := parseFlags(fs, args, func(string) string { return "" }); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	f.noteSet(fs)
	return &f
}

// TestEtcdRequestTimeoutIsNotTheDialTimeout: a long wait for etcd at start
// (--etcd-dial-timeout) does not make every request wait as long: each
// request is bounded by --etcd-request-timeout.
func TestEtcdRequestTimeoutIsNotTheDialTimeout(t *testing.T) {
	srv := etcdtest.Start(t)
	f := parseStorageFlags(t, "--storage", "etcd", "--etcd-endpoints", srv.Endpoint, "--etcd-prefix", "/timeouts/",
		"--etcd-dial-timeout", "45s", "--etcd-request-timeout", "2s")
	if errs := f.validate(); len(errs) != 0 {
		t.Fatal(errs)
	}
	store, err := f.open(t.Context(), slog.New(slog.DiscardHandler), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if got := store.(*etcd.Store).OpTimeout(); got != 2*time.Second {
		t.Fatalf("request bound = %v, want --etcd-request-timeout (2s), not --etcd-dial-timeout", got)
	}
}

// TestEtcdStorageFlagErrors: the new etcd flags are checked like the others.
func TestEtcdStorageFlagErrors(t *testing.T) {
	f := parseStorageFlags(t, "--storage", "etcd", "--etcd-endpoints", "http://127.0.0.1:2379",
		"--etcd-request-timeout", "0s", "--etcd-max-txn-ops", "8")
	var msgs []string
	for _, err := range f.validate() {
		msgs = append(msgs, err.Error())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{"--etcd-request-timeout 0s must be positive", "--etcd-max-txn-ops 8: want at least 16"} {
		if !strings.Contains(all, want) {
			t.Errorf("errors lack %q:\n%s", want, all)
		}
	}
	f = parseStorageFlags(t, "--etcd-request-timeout", "1s", "--etcd-max-txn-ops", "64")
	if errs := f.validate(); len(errs) != 2 {
		t.Errorf("etcd-only flags with bbolt: %v, want two errors", errs)
	}
}
