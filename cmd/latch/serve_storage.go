package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
	"github.com/latchauth/latch/storage/etcd"
)

// etcdPasswordEnv carries the etcd user's password (never a flag or a
// value in the file).
const etcdPasswordEnv = "LATCH_ETCD_PASSWORD"

// Storage backends selectable with storage.backend (serve) or --storage
// (latch user add).
const (
	storageBolt = "bbolt"
	storageEtcd = "etcd"
)

// storageFlags select and configure the storage backend, for serve and user.
type storageFlags struct {
	kind         string
	db           string
	endpoints    stringList
	prefix       string
	ca           string
	cert         string
	key          string
	username     string
	passwordFile string
	password     string // from passwordFile or LATCH_ETCD_PASSWORD, resolved by resolvePassword; never logged
	plaintext    bool
	dialTimeout  time.Duration
	reqTimeout   time.Duration
	maxTxnOps    int
	set          map[string]bool // settings given (by flag id, e.g. "etcd-endpoints")
	name         namer           // how messages name a setting
}

// register adds the storage flags to fs.
func (f *storageFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.kind, "storage", storageBolt, "storage backend: bbolt (one process, the file in --db) or etcd (several replicas sharing --etcd-endpoints)")
	fs.StringVar(&f.db, "db", "./latch.db", "bbolt database file (created if missing; --storage bbolt only)")
	fs.Var(&f.endpoints, "etcd-endpoints", "etcd client URLs, comma-separated or repeated, e.g. https://10.0.0.1:2379 (--storage etcd)")
	fs.StringVar(&f.prefix, "etcd-prefix", etcd.DefaultPrefix, "key prefix of this Latch deployment in etcd (--storage etcd)")
	fs.StringVar(&f.ca, "etcd-ca", "", "PEM file of the CA that signed etcd's server certificates (default: the system's roots); https:// endpoints use TLS")
	fs.StringVar(&f.cert, "etcd-cert", "", "PEM client certificate for etcd (with --etcd-key); enables TLS to etcd")
	fs.StringVar(&f.key, "etcd-key", "", "PEM private key of --etcd-cert")
	fs.StringVar(&f.username, "etcd-username", "", "etcd user, when etcd auth is enabled; its password is read from --etcd-password-file or LATCH_ETCD_PASSWORD")
	fs.StringVar(&f.passwordFile, "etcd-password-file", "", "file whose first line is the password of --etcd-username (or put the password in LATCH_ETCD_PASSWORD)")
	fs.BoolVar(&f.plaintext, "etcd-allow-plaintext", false, "allow http:// etcd endpoints that are not on loopback (password hashes, refresh-token digests and, without a key-encryption key, private signing keys then cross the network unencrypted)")
	fs.DurationVar(&f.dialTimeout, "etcd-dial-timeout", 5*time.Second, "how long to wait for etcd at start (connection, schema check, revocation feed)")
	fs.DurationVar(&f.reqTimeout, "etcd-request-timeout", 5*time.Second, "bound on each etcd request (a client's earlier deadline wins); past it the RPC fails with UNAVAILABLE")
	fs.IntVar(&f.maxTxnOps, "etcd-max-txn-ops", etcd.DefaultMaxTxnOps, "etcd's --max-txn-ops (operations per transaction); revoking all of a user's sessions is one transaction up to a quarter of it")
}

// checkFlags, after parseFlags, records which storage flags fs was given
// (messages then name flags) and reports every problem with them, the etcd
// password's included (its warnings go to stderr).
func (f *storageFlags) checkFlags(fs *flag.FlagSet, getenv func(string) string, stderr io.Writer) []error {
	f.set = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	f.name = flagName
	errs := f.validate()
	if err := f.resolvePassword(getenv, slog.New(slog.NewTextHandler(stderr, nil))); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// validate reports every problem with the storage flags.
func (f *storageFlags) validate() []error {
	n := f.name
	var errs []error
	etcdOnly := []string{"etcd-endpoints", "etcd-prefix", "etcd-ca", "etcd-cert", "etcd-key", "etcd-username", "etcd-password-file", "etcd-dial-timeout", "etcd-request-timeout", "etcd-max-txn-ops", "etcd-allow-plaintext"}
	switch f.kind {
	case storageBolt:
		if f.db == "" {
			errs = append(errs, fmt.Errorf("%s is required with %s bbolt", n("db"), n("storage")))
		}
		for _, name := range etcdOnly {
			if f.set[name] {
				errs = append(errs, fmt.Errorf("%s applies only to %s etcd (the storage is bbolt)", n(name), n("storage")))
			}
		}
	case storageEtcd:
		if f.set["db"] {
			errs = append(errs, fmt.Errorf("%s applies only to %s bbolt; with %s etcd the data is in etcd", n("db"), n("storage"), n("storage")))
		}
		if f.set["sweep-interval"] {
			errs = append(errs, fmt.Errorf("%s applies only to %s bbolt; etcd deletes expired rows through leases", n("sweep-interval"), n("storage")))
		}
		if len(f.endpoints.vals) == 0 {
			errs = append(errs, fmt.Errorf("%s is required with %s etcd (e.g. https://10.0.0.1:2379,https://10.0.0.2:2379)", n("etcd-endpoints"), n("storage")))
		}
		tlsWanted := f.ca != "" || f.cert != "" || f.key != ""
		schemes := map[string]bool{}
		for _, ep := range f.endpoints.vals {
			u, err := url.Parse(ep)
			switch {
			case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
				errs = append(errs, fmt.Errorf("%s %q: want http://host:port or https://host:port", n("etcd-endpoints"), ep))
			case u.Scheme == "http" && tlsWanted:
				errs = append(errs, fmt.Errorf("%s %q is http:// but TLS options are set; use https://", n("etcd-endpoints"), ep))
			case u.Scheme == "http" && !f.plaintext && !isLoopbackHost(u.Hostname()):
				errs = append(errs, fmt.Errorf("%s %q is plaintext over the network: use https:// with %s (and %s, %s), or %s on a network you trust", n("etcd-endpoints"), ep, n("etcd-ca"), n("etcd-cert"), n("etcd-key"), n("etcd-allow-plaintext")))
			default:
				schemes[u.Scheme] = true
			}
		}
		if len(schemes) > 1 {
			errs = append(errs, fmt.Errorf("%s mixes http:// and https://; use https:// for all", n("etcd-endpoints")))
		}
		if (f.cert == "") != (f.key == "") {
			errs = append(errs, fmt.Errorf("%s and %s go together", n("etcd-cert"), n("etcd-key")))
		}
		if !strings.HasPrefix(f.prefix, "/") || strings.ContainsRune(f.prefix, 0) {
			errs = append(errs, fmt.Errorf("%s %q must start with '/' (e.g. /latch/)", n("etcd-prefix"), f.prefix))
		}
		if f.dialTimeout <= 0 {
			errs = append(errs, fmt.Errorf("%s %v must be positive", n("etcd-dial-timeout"), f.dialTimeout))
		}
		if f.reqTimeout <= 0 {
			errs = append(errs, fmt.Errorf("%s %v must be positive", n("etcd-request-timeout"), f.reqTimeout))
		}
		if f.maxTxnOps < 16 {
			errs = append(errs, fmt.Errorf("%s %d: want at least 16 (etcd's default is %d)", n("etcd-max-txn-ops"), f.maxTxnOps, etcd.DefaultMaxTxnOps))
		}
	default:
		errs = append(errs, fmt.Errorf("%s %q: want bbolt or etcd", n("storage"), f.kind))
	}
	return errs
}

// resolvePassword reads the etcd user's password from the file or from
// LATCH_ETCD_PASSWORD (readSecret) and reports what is wrong without ever
// repeating it; log takes the warning about a file others may read.
func (f *storageFlags) resolvePassword(getenv func(string) string, log *slog.Logger) error {
	if f.kind != storageEtcd {
		return nil
	}
	pw, _, err := readSecret("etcd password", f.passwordFile, f.name("etcd-password-file"), etcdPasswordEnv, getenv, log)
	if err == nil && f.passwordFile != "" && f.username == "" {
		err = fmt.Errorf("%s is given without %s", f.name("etcd-password-file"), f.name("etcd-username"))
	}
	f.password = pw
	return err
}

// readSecret reads the secret what from the file path, which the setting
// fileName names, or else from the environment variable env; given both
// ways it is an error. from is fileName or env, whichever it came from;
// given neither way, everything is empty.
func readSecret(what, path, fileName, env string, getenv func(string) string, log *slog.Logger) (secret, from string, err error) {
	envValue := getenv(env)
	switch {
	case path != "" && envValue != "":
		return "", "", fmt.Errorf("give the %s once: %s or %s, not both", what, env, fileName)
	case path != "":
		secret, err = readSecretFile(path, fileName, log)
		return secret, fileName, err
	case envValue != "":
		return envValue, env, nil
	}
	return "", "", nil
}

// maxSecretLine is the longest secret read from a file.
const maxSecretLine = 1024

// readSecretFile reads the secret that the file path holds for the setting
// name: its first line without the line ending, the way orchestrators
// mount one. It warns on log when users other than the file's owner may
// read it. An empty or overlong line is an error. When the file cannot be
// opened the error does not repeat the path: an operator who put the
// secret itself where its file's name belongs must not see it echoed into
// a terminal or a log.
func readSecretFile(path, name string, log *slog.Logger) (string, error) {
	file, err := os.Open(path)
	if err != nil {
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Errorf("%s: cannot open the file it names: %w", name, err)
	}
	defer file.Close()
	if st, err := file.Stat(); err == nil && st.Mode().Perm()&0o077 != 0 {
		log.Warn("a secret file is readable by other users; chmod 600 it", "event", "secret_file_mode",
			"setting", name, "path", path, "mode", st.Mode().Perm().String())
	}
	line, err := readSecretLine(bufio.NewReaderSize(file, secretLineBuffer))
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("%s: read %s: %w", name, path, err)
	}
	switch {
	case line == "":
		return "", fmt.Errorf("%s: %s is empty", name, path)
	case len(line) > maxSecretLine:
		return "", fmt.Errorf("%s: the first line of %s is longer than %d bytes", name, path, maxSecretLine)
	}
	return line, nil
}

// describe names the storage for the start-up log line.
func (f *storageFlags) describe() []any {
	if f.kind == storageEtcd {
		return []any{"storage", storageEtcd, "etcd_endpoints", strings.Join(f.endpoints.vals, ","), "etcd_prefix", f.prefix}
	}
	return []any{"storage", storageBolt, "db", f.db}
}

// revokedRetention is the store's revoked-session retention for serve:
// tokens.revoked_session_retention (flagValue) when set, else cfg's
// (server.Config.RevokedSessionRetention: the access-token lifetime plus
// leeway). It
// refuses a shorter one: a session deleted while its access tokens can
// still verify drops out of the revocation snapshot verifiers start from.
func revokedRetention(flagValue time.Duration, cfg server.Config, n namer) (time.Duration, error) {
	least := cfg.RevokedSessionRetention()
	switch {
	case flagValue == 0:
		return least, nil
	case flagValue < least:
		return 0, fmt.Errorf("%s %v must be at least %s plus the leeway (%v), or 0 for exactly that", n("revoked-session-retention"), flagValue, n("access-ttl"), least)
	}
	return flagValue, nil
}

// open opens the selected backend, which keeps a revoked session for
// retention after its revocation (0: until its expiry). The etcd password
// is the one resolvePassword found.
func (f *storageFlags) open(ctx context.Context, log *slog.Logger, retention time.Duration) (storage.Store, error) {
	if f.kind != storageEtcd {
		store, err := bolt.Open(f.db, bolt.WithRevokedSessionRetention(retention))
		if err != nil {
			return nil, explainOpen(f.db, err)
		}
		return store, nil
	}
	cfg := etcd.Config{Endpoints: f.endpoints.vals, Prefix: f.prefix, DialTimeout: f.dialTimeout,
		Username: f.username, Password: f.password}
	if f.ca != "" || f.cert != "" || strings.HasPrefix(f.endpoints.vals[0], "https://") {
		tc, err := clientTLS(f.ca, f.cert, f.key, f.name("etcd-ca"), f.name("etcd-cert")+", "+f.name("etcd-key"))
		if err != nil {
			return nil, err
		}
		cfg.TLS = tc
	}
	store, err := etcd.Open(ctx, cfg, etcd.WithLogger(log), etcd.WithOpTimeout(f.reqTimeout), etcd.WithMaxTxnOps(f.maxTxnOps),
		etcd.WithRevokedSessionRetention(retention))
	if err != nil {
		return nil, fmt.Errorf("open etcd storage: %w", err)
	}
	return store, nil
}

// clientTLS is the TLS configuration of a client that verifies the server
// with the CA bundle in caFile (the system's roots when it is empty) and,
// when certFile is given, presents that certificate and keyFile's key.
// caName and certName name the settings in errors.
func clientTLS(caFile, certFile, keyFile, caName, certName string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", caName, err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s %s: no PEM certificate in it", caName, caFile)
		}
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", certName, err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

// startRevocationFeed feeds revocations committed by other replicas into
// the server's WatchRevocations streams, when the store is shared (etcd),
// and returns once the feed is established (or after wait, with a warning),
// so that no stream served afterwards misses one.
func startRevocationFeed(ctx context.Context, srv *server.Server, log *slog.Logger, wait time.Duration) {
	ready := make(chan struct{})
	var once sync.Once
	go func() {
		err := srv.FollowRevocations(ctx, func() { once.Do(func() { close(ready) }) })
		if err != nil && ctx.Err() == nil {
			log.Error("revocation feed stopped; WatchRevocations streams will miss other replicas' revocations",
				"event", "revocation_feed_failed", "error", err.Error())
		}
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ready:
	case <-ctx.Done():
	case <-t.C:
		log.Warn("revocation feed not established yet; serving anyway (it keeps trying)", "event", "revocation_feed_slow")
	}
}
