package main

// The configuration of `latch serve`: one YAML file (--config) whose keys
// map one-to-one onto the fields below, a LATCH_* environment variable for
// every key, and a handful of flags. Precedence: flag > environment > file
// > default.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/server/extauthz"
	"github.com/latchauth/latch/storage/etcd"
)

// config is everything `latch serve` can be told. Each leaf field carries
// its YAML key (yaml), its environment variable (env) and one line of
// documentation (doc), which the example configuration, the error messages
// and the documentation check all read.
type config struct {
	Issuer         string          `yaml:"issuer" env:"LATCH_ISSUER" doc:"iss claim of every token: the URL clients and verifiers know Latch by (e.g. https://auth.example.com). Required outside dev mode"`
	Audiences      []string        `yaml:"audiences" env:"LATCH_AUDIENCE" doc:"audiences a Login may ask for; the first is the default; never the issuer (Latch's own audience)"`
	Dev            bool            `yaml:"dev" env:"LATCH_DEV" doc:"first-try mode: on an empty database create a demo user and a service user and print grpcurl commands; the issuer defaults to http:// and the HTTP address"`
	IntrospectOpen bool            `yaml:"introspect_open" env:"LATCH_INTROSPECT_OPEN" doc:"let anyone call Introspect without a credential (development only; warns at start)"`
	Listen         listenConfig    `yaml:"listen"`
	Log            logConfig       `yaml:"log"`
	Storage        storageConfig   `yaml:"storage"`
	Tokens         tokenConfig     `yaml:"tokens"`
	Keys           keyConfig       `yaml:"keys"`
	Limits         limitConfig     `yaml:"limits"`
	TLS            tlsConfig       `yaml:"tls"`
	GRPC           grpcConfig      `yaml:"grpc"`
	Metrics        metricsConfig   `yaml:"metrics"`
	Shutdown       shutdownConfig  `yaml:"shutdown"`
	ExtAuthz       extAuthzConfig  `yaml:"ext_authz"`
	BootstrapAdmin bootstrapConfig `yaml:"bootstrap_admin"`
}

type listenConfig struct {
	GRPC     string `yaml:"grpc" env:"LATCH_GRPC_ADDR" doc:"gRPC listen address: AuthService, AdminService, grpc.health.v1 and reflection"`
	HTTP     string `yaml:"http" env:"LATCH_HTTP_ADDR" doc:"HTTP listen address: /.well-known/jwks.json, /.well-known/openid-configuration, /healthz, /readyz and /metrics"`
	Insecure bool   `yaml:"insecure" env:"LATCH_INSECURE_LISTEN" doc:"allow plaintext on non-loopback addresses (a proxy in front of Latch terminates TLS); no effect with tls.cert_file"`
}

type logConfig struct {
	Format string `yaml:"format" env:"LATCH_LOG_FORMAT" doc:"log format: json or text"`
	Level  string `yaml:"level" env:"LATCH_LOG_LEVEL" doc:"log level: debug, info, warn or error"`
	// AccessSample is N of "one access record in every N calls".
	AccessSample int `yaml:"access_sample" env:"LATCH_ACCESS_LOG_SAMPLE" doc:"write a finished-call record for one in every N calls that end OK or with a client mistake (0 = none; warnings and errors are always logged)"`
}

type storageConfig struct {
	Backend       string        `yaml:"backend" env:"LATCH_STORAGE" doc:"bbolt (one process, the file in storage.db) or etcd (several replicas sharing storage.etcd)"`
	DB            string        `yaml:"db" env:"LATCH_DB" doc:"bbolt database file, created if missing (backend bbolt only)"`
	SweepInterval time.Duration `yaml:"sweep_interval" env:"LATCH_SWEEP_INTERVAL" doc:"how often expired sessions and revocations are deleted (backend bbolt only; etcd deletes them through leases)"`
	Etcd          etcdConfig    `yaml:"etcd"`
}

type etcdConfig struct {
	Endpoints      []string      `yaml:"endpoints" env:"LATCH_ETCD_ENDPOINTS" doc:"etcd client URLs, all http:// or all https:// (required with backend etcd)"`
	Prefix         string        `yaml:"prefix" env:"LATCH_ETCD_PREFIX" doc:"key prefix of this deployment in etcd; a prefix holding other data is refused"`
	CAFile         string        `yaml:"ca_file" env:"LATCH_ETCD_CA" doc:"PEM file of the CA that signed etcd's server certificates (default: the system's roots)"`
	CertFile       string        `yaml:"cert_file" env:"LATCH_ETCD_CERT" doc:"PEM client certificate for etcd (with key_file)"`
	KeyFile        string        `yaml:"key_file" env:"LATCH_ETCD_KEY" doc:"PEM private key of cert_file"`
	Username       string        `yaml:"username" env:"LATCH_ETCD_USERNAME" doc:"etcd user when etcd auth is on; its password comes from password_file or LATCH_ETCD_PASSWORD"`
	PasswordFile   string        `yaml:"password_file" env:"LATCH_ETCD_PASSWORD_FILE" doc:"file whose first line is the password of username; or put the password in LATCH_ETCD_PASSWORD"`
	AllowPlaintext bool          `yaml:"allow_plaintext" env:"LATCH_ETCD_ALLOW_PLAINTEXT" doc:"allow http:// endpoints off loopback (password hashes, refresh-token digests and unsealed private keys then cross the network in clear)"`
	DialTimeout    time.Duration `yaml:"dial_timeout" env:"LATCH_ETCD_DIAL_TIMEOUT" doc:"how long to wait for etcd at start (connection, schema check, revocation feed)"`
	RequestTimeout time.Duration `yaml:"request_timeout" env:"LATCH_ETCD_REQUEST_TIMEOUT" doc:"bound on each etcd request (a client's earlier deadline wins); past it the RPC fails with UNAVAILABLE"`
	MaxTxnOps      int           `yaml:"max_txn_ops" env:"LATCH_ETCD_MAX_TXN_OPS" doc:"etcd's --max-txn-ops; revoking all of a user's sessions is one transaction up to a quarter of it"`
}

type tokenConfig struct {
	AccessTTL               time.Duration `yaml:"access_ttl" env:"LATCH_ACCESS_TTL" doc:"access-token lifetime (at most 24h)"`
	RefreshTTL              time.Duration `yaml:"refresh_ttl" env:"LATCH_REFRESH_TTL" doc:"refresh-token idle lifetime, renewed by each refresh; at least access_ttl + 30s"`
	RefreshMaxAge           time.Duration `yaml:"refresh_max_age" env:"LATCH_REFRESH_MAX_AGE" doc:"absolute session lifetime"`
	RefreshReuseGrace       time.Duration `yaml:"refresh_reuse_grace" env:"LATCH_REFRESH_REUSE_GRACE" doc:"window in which a client may retry its last refresh with the same token after a lost reply (0 = none; at most 1m)"`
	RevokedSessionRetention time.Duration `yaml:"revoked_session_retention" env:"LATCH_REVOKED_SESSION_RETENTION" doc:"how long a revoked session is kept before it is deleted (0 = access_ttl + 30s, the least allowed); after lowering access_ttl, keep the old value here until tokens minted under it have expired"`
	VerifyCache             int           `yaml:"verify_cache" env:"LATCH_VERIFY_CACHE" doc:"access tokens remembered as verified, so hot tokens skip ECDSA (revocation is always checked); 0 disables"`
}

type keyConfig struct {
	Rotation          time.Duration `yaml:"rotation" env:"LATCH_KEY_ROTATION" doc:"how long a signing key signs before the published next key takes over; 0 disables scheduled rotation (on demand only)"`
	PublishLead       time.Duration `yaml:"publish_lead" env:"LATCH_KEY_PUBLISH_LEAD" doc:"how long a new key is in the JWKS before it signs: at least the JWKS max-age (5m) and the refresh interval of any verifier that does not refetch on an unknown kid"`
	ReloadInterval    time.Duration `yaml:"reload_interval" env:"LATCH_KEY_RELOAD_INTERVAL" doc:"how often the key ring is reloaded from storage and due key transitions applied (100ms to 10m)"`
	EncryptionKeyFile string        `yaml:"encryption_key_file" env:"LATCH_KEY_ENCRYPTION_KEY_FILE" doc:"file holding the key-encryption key (32 random bytes, standard base64) that seals private signing keys at rest; or put the key itself in LATCH_KEY_ENCRYPTION_KEY"`
}

type limitConfig struct {
	LoginAddressBurst  int           `yaml:"login_address_burst" env:"LATCH_LOGIN_ADDRESS_BURST" doc:"login attempts (right or wrong) one client address may make at once; size it for the clients behind your largest NAT or proxy"`
	LoginAddressRefill time.Duration `yaml:"login_address_refill" env:"LATCH_LOGIN_ADDRESS_REFILL" doc:"one more login attempt per client address allowed per this period"`
	MaxSessions        int           `yaml:"max_sessions" env:"LATCH_MAX_SESSIONS" doc:"live sessions a person may hold; a login past it revokes the oldest"`
	ServiceRoles       []string      `yaml:"service_roles" env:"LATCH_SERVICE_ROLE" doc:"roles marking service accounts, which fleets share: login rate 600 then 10/s, 10,000 live sessions"`
	TrustedProxies     []string      `yaml:"trusted_proxies" env:"LATCH_TRUSTED_PROXY" doc:"networks (CIDR) of proxies in front of Latch whose x-forwarded-for is believed; the client is the right-most address not in them"`
	ProbeBurst         int           `yaml:"probe_burst" env:"LATCH_PROBE_BURST" doc:"invalid refresh tokens or caller credentials a client address may present before RESOURCE_EXHAUSTED"`
	ProbeRefill        time.Duration `yaml:"probe_refill" env:"LATCH_PROBE_REFILL" doc:"one more invalid token allowed per this period"`
	HashConcurrency    int           `yaml:"hash_concurrency" env:"LATCH_HASH_CONCURRENCY" doc:"password hashes computed at once (0 = all cores but one, at least 1, so a login flood cannot starve token checks); more wait up to 2s, then RESOURCE_EXHAUSTED"`
}

type tlsConfig struct {
	CertFile     string `yaml:"cert_file" env:"LATCH_TLS_CERT" doc:"PEM certificate chain: TLS 1.2+ on every port, reloaded when the file changes"`
	KeyFile      string `yaml:"key_file" env:"LATCH_TLS_KEY" doc:"PEM private key of cert_file"`
	ClientCAFile string `yaml:"client_ca_file" env:"LATCH_TLS_CLIENT_CA" doc:"PEM CA bundle: require and verify client certificates on every port (mutual TLS), ext_authz's too unless ext_authz.client_ca_file"`
}

type grpcConfig struct {
	Reflection            bool          `yaml:"reflection" env:"LATCH_REFLECTION" doc:"serve gRPC server reflection (for grpcurl)"`
	MaxConcurrentStreams  int           `yaml:"max_concurrent_streams" env:"LATCH_MAX_CONCURRENT_STREAMS" doc:"RPCs in flight per gRPC connection"`
	KeepaliveTime         time.Duration `yaml:"keepalive_time" env:"LATCH_KEEPALIVE_TIME" doc:"ping a client after this long without activity"`
	KeepaliveTimeout      time.Duration `yaml:"keepalive_timeout" env:"LATCH_KEEPALIVE_TIMEOUT" doc:"close a connection whose ping is not answered within this"`
	KeepaliveMinTime      time.Duration `yaml:"keepalive_min_time" env:"LATCH_KEEPALIVE_MIN_TIME" doc:"clients pinging more often are disconnected (too_many_pings)"`
	MaxConnectionIdle     time.Duration `yaml:"max_connection_idle" env:"LATCH_MAX_CONNECTION_IDLE" doc:"close connections without RPCs for this long (0 = never)"`
	MaxConnectionAge      time.Duration `yaml:"max_connection_age" env:"LATCH_MAX_CONNECTION_AGE" doc:"close connections this old, so clients rebalance (0 = never)"`
	MaxConnectionAgeGrace time.Duration `yaml:"max_connection_age_grace" env:"LATCH_MAX_CONNECTION_AGE_GRACE" doc:"RPCs still running at max_connection_age get this long before the connection closes (0 = forever)"`
}

type metricsConfig struct {
	Enabled bool `yaml:"enabled" env:"LATCH_METRICS" doc:"serve Prometheus metrics at /metrics on the HTTP port"`
}

type shutdownConfig struct {
	DrainDelay time.Duration `yaml:"drain_delay" env:"LATCH_DRAIN_DELAY" doc:"on SIGTERM or SIGINT, answer NOT_SERVING (and /readyz 503) for this long before refusing new connections"`
	Timeout    time.Duration `yaml:"timeout" env:"LATCH_SHUTDOWN_TIMEOUT" doc:"how long a graceful stop then waits for in-flight requests"`
}

type extAuthzConfig struct {
	Addr                        string        `yaml:"addr" env:"LATCH_EXT_AUTHZ_ADDR" doc:"listen address of the Envoy ext_authz gRPC service (envoy.service.auth.v3.Authorization); off when empty"`
	PolicyFile                  string        `yaml:"policy_file" env:"LATCH_EXT_AUTHZ_POLICY" doc:"route policy file (YAML or JSON): audiences, path/prefix/grpc rules to roles or public; unmatched requests are denied; reread on SIGHUP"`
	ClientCAFile                string        `yaml:"client_ca_file" env:"LATCH_EXT_AUTHZ_CLIENT_CA" doc:"PEM CA bundle: require and verify client certificates (Envoy's) on ext_authz.addr only, with tls.cert_file (default: tls.client_ca_file)"`
	AllowUnauthenticatedClients bool          `yaml:"allow_unauthenticated_clients" env:"LATCH_EXT_AUTHZ_ALLOW_UNAUTHENTICATED_CLIENTS" doc:"serve ext_authz.addr beyond loopback without client certificates. RISK: anyone who can reach the port can test tokens and read their subject, session and roles"`
	SubHeader                   string        `yaml:"sub_header" env:"LATCH_EXT_AUTHZ_SUB_HEADER" doc:"header carrying the token's subject to the upstream"`
	SidHeader                   string        `yaml:"sid_header" env:"LATCH_EXT_AUTHZ_SID_HEADER" doc:"header carrying the token's session id to the upstream"`
	RolesHeader                 string        `yaml:"roles_header" env:"LATCH_EXT_AUTHZ_ROLES_HEADER" doc:"header carrying the token's roles (comma-separated) to the upstream"`
	KeepAuthorization           bool          `yaml:"keep_authorization" env:"LATCH_EXT_AUTHZ_KEEP_AUTHORIZATION" doc:"forward the authorization header to the upstream (default: removed from every allowed request)"`
	Cache                       int           `yaml:"cache" env:"LATCH_EXT_AUTHZ_CACHE" doc:"tokens remembered as verified by ext_authz (revocation is checked on every request); 0 disables"`
	HealthInterval              time.Duration `yaml:"health_interval" env:"LATCH_EXT_AUTHZ_HEALTH_INTERVAL" doc:"how often the latch.verifier health status is updated"`
}

type bootstrapConfig struct {
	Email        string `yaml:"email" env:"LATCH_BOOTSTRAP_ADMIN" doc:"create this email as the first administrator (role admin) at start, only if no enabled admin exists"`
	PasswordFile string `yaml:"password_file" env:"LATCH_BOOTSTRAP_ADMIN_PASSWORD_FILE" doc:"file whose first line is that administrator's password; or put the password in LATCH_BOOTSTRAP_ADMIN_PASSWORD"`
}

// secretEnv are the variables that carry secrets themselves, with where
// else each secret may come from (alt). They are never keys of the file nor
// flags: a file is copied and committed, and a flag shows in the process
// list.
var secretEnv = []struct{ env, doc, alt string }{
	{envKEK, "the key-encryption key itself (instead of keys.encryption_key_file)", " or the file keys.encryption_key_file names"},
	{etcdPasswordEnv, "the password of storage.etcd.username (instead of storage.etcd.password_file)", " or the file storage.etcd.password_file names"},
	{bootstrapPasswordEnv, "the first administrator's password (instead of bootstrap_admin.password_file)", " or the file bootstrap_admin.password_file names"},
}

// defaultConfig is the configuration before any file, variable or flag.
func defaultConfig() config {
	t := server.DefaultTransport()
	return config{
		Audiences: []string{"latch"},
		Listen:    listenConfig{GRPC: "127.0.0.1:7300", HTTP: "127.0.0.1:7301"},
		Log:       logConfig{Format: "json", Level: "info"},
		Storage: storageConfig{Backend: storageBolt, DB: "./latch.db", SweepInterval: time.Minute,
			Etcd: etcdConfig{Endpoints: []string{}, Prefix: etcd.DefaultPrefix, DialTimeout: 5 * time.Second,
				RequestTimeout: 5 * time.Second, MaxTxnOps: etcd.DefaultMaxTxnOps}},
		Tokens: tokenConfig{AccessTTL: 15 * time.Minute, RefreshTTL: 168 * time.Hour, RefreshMaxAge: 720 * time.Hour,
			RefreshReuseGrace: server.DefaultRefreshReuseGrace, VerifyCache: 50000},
		Keys: keyConfig{Rotation: server.DefaultKeyRotation, PublishLead: server.Config{}.Defaults().KeyPublishLead,
			ReloadInterval: server.DefaultKeyReloadInterval},
		Limits: limitConfig{LoginAddressBurst: 300, LoginAddressRefill: time.Second, MaxSessions: 50,
			ServiceRoles: []string{"service", server.RoleIntrospect}, TrustedProxies: []string{}, ProbeBurst: 30, ProbeRefill: time.Second},
		GRPC: grpcConfig{Reflection: true, MaxConcurrentStreams: int(t.MaxConcurrentStreams),
			KeepaliveTime: t.Keepalive.Time, KeepaliveTimeout: t.Keepalive.Timeout, KeepaliveMinTime: t.Enforcement.MinTime,
			MaxConnectionIdle: t.Keepalive.MaxConnectionIdle, MaxConnectionAgeGrace: t.Keepalive.MaxConnectionAgeGrace},
		Metrics:  metricsConfig{Enabled: true},
		Shutdown: shutdownConfig{Timeout: 10 * time.Second},
		ExtAuthz: extAuthzConfig{SubHeader: extauthz.DefaultSubjectHeader, SidHeader: extauthz.DefaultSessionHeader,
			RolesHeader: extauthz.DefaultRolesHeader, Cache: 50000, HealthInterval: 5 * time.Second},
	}
}

// setting is one leaf of config: its dotted key, environment variable,
// documentation and value.
type setting struct {
	key, env, doc string
	v             reflect.Value
}

// settings lists the leaves of c in declaration order; their values are
// addressable, so that they can be set.
func settings(c *config) []setting {
	var out []setting
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			key := prefix + f.Tag.Get("yaml")
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
				walk(v.Field(i), key+".")
				continue
			}
			out = append(out, setting{key: key, env: f.Tag.Get("env"), doc: f.Tag.Get("doc"), v: v.Field(i)})
		}
	}
	walk(reflect.ValueOf(c).Elem(), "")
	return out
}

// durationType is the type whose values are written as Go durations.
var durationType = reflect.TypeFor[time.Duration]()

// setFromString sets a leaf from its environment form: durations as Go
// durations (90s, 15m, 720h), booleans as strconv.ParseBool reads them,
// lists comma-separated.
func setFromString(v reflect.Value, s string) error {
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return errors.New("not a duration (e.g. 90s, 15m, 720h)")
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return errors.New("want true or false")
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return errors.New("not a whole number")
		}
		v.SetInt(int64(n))
	case v.Kind() == reflect.Slice:
		vals := []string{}
		for _, part := range strings.Split(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				vals = append(vals, part)
			}
		}
		v.Set(reflect.ValueOf(vals))
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}

// applyEnv overrides every key whose LATCH_* variable is set and not empty,
// reporting every bad value at once.
func applyEnv(c *config, getenv func(string) string) error {
	var errs []error
	for _, s := range settings(c) {
		val := getenv(s.env)
		if val == "" {
			continue
		}
		if err := setFromString(s.v, val); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", s.env, val, err))
		}
	}
	return errors.Join(errs...)
}

// maxConfigFile bounds the configuration file: a real one is a few KiB.
const maxConfigFile = 1 << 20

// secretKeys are keys an operator may try to put a secret under; the file
// refuses them with the way to give the secret instead.
var secretKeys = map[string]string{
	"password":       "secrets are never read from the file: use bootstrap_admin.password_file or " + bootstrapPasswordEnv + ", or for etcd storage.etcd.password_file or " + etcdPasswordEnv,
	"encryption_key": "secrets are never read from the file: use keys.encryption_key_file or " + envKEK,
}

// loadConfigFile decodes the YAML file at path over c, strictly: an unknown
// key or a value of the wrong type is an error, each with its line, all
// reported at once.
func loadConfigFile(path string, c *config) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if len(raw) > maxConfigFile {
		return fmt.Errorf("config file %s: larger than %d bytes", path, maxConfigFile)
	}
	return decodeConfig(path, raw, c)
}

var (
	yamlUnknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type \S+$`)
	yamlTypeError    = regexp.MustCompile(`^line (\d+): cannot unmarshal !!(\w+)(?: (.*))? into (\S+)$`)
)

// decodeConfig decodes raw (the file named name) over c; see loadConfigFile.
func decodeConfig(name string, raw []byte, c *config) error {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	err := dec.Decode(c)
	if errors.Is(err, io.EOF) {
		return nil // an empty file: every default
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		if err != nil {
			return fmt.Errorf("config file %s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
		}
		if err := dec.Decode(new(yaml.Node)); !errors.Is(err, io.EOF) {
			return fmt.Errorf("config file %s: holds more than one YAML document", name)
		}
		return nil
	}
	errs := make([]error, 0, len(te.Errors))
	for _, msg := range te.Errors {
		if m := yamlUnknownField.FindStringSubmatch(msg); m != nil {
			hint := secretKeys[m[2]]
			if hint == "" {
				hint = "see `latch config example` for every key"
			}
			errs = append(errs, fmt.Errorf("config file %s line %s: unknown key %q (%s)", name, m[1], m[2], hint))
			continue
		}
		if m := yamlTypeError.FindStringSubmatch(msg); m != nil {
			want, got := m[4], m[3]
			if got == "" || strings.HasPrefix(want, "main.") || strings.HasPrefix(want, "[]") {
				// A scalar where a section or a list belongs may be a
				// secret written under the wrong key: never repeated.
				got = "a " + strings.TrimPrefix(strings.Replace(m[2], "str", "string", 1), "!!")
			}
			switch {
			case want == "int":
				want = "a whole number"
			case want == "bool":
				want = "true or false"
			case want == "string":
				want = "a string"
			case want == "time.Duration":
				want = "a duration (e.g. 90s, 15m, 720h)"
			case strings.HasPrefix(want, "[]"):
				want = "a list"
			case strings.HasPrefix(want, "main."):
				want = "a mapping of keys"
			}
			errs = append(errs, fmt.Errorf("config file %s line %s: %s is not %s", name, m[1], got, want))
			continue
		}
		errs = append(errs, fmt.Errorf("config file %s: %s", name, msg))
	}
	return errors.Join(errs...)
}

// exampleConfig writes c as a complete YAML file with every key, each
// commented with its documentation and its environment variable.
func exampleConfig(w io.Writer, c config) error {
	root := &yaml.Node{Kind: yaml.MappingNode}
	sections := map[string]*yaml.Node{"": root}
	for _, s := range settings(&c) {
		parent := root
		path := strings.Split(s.key, ".")
		for i := range len(path) - 1 {
			sec := strings.Join(path[:i+1], ".")
			n, ok := sections[sec]
			if !ok {
				n = &yaml.Node{Kind: yaml.MappingNode}
				parent.Content = append(parent.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: path[i]}, n)
				sections[sec] = n
			}
			parent = n
		}
		val := &yaml.Node{}
		switch {
		case s.v.Type() == durationType:
			val.SetString(time.Duration(s.v.Int()).String())
		case s.v.Kind() == reflect.Slice:
			if err := val.Encode(s.v.Interface()); err != nil {
				return err
			}
			val.Style = yaml.FlowStyle
		default:
			if err := val.Encode(s.v.Interface()); err != nil {
				return err
			}
		}
		if val.Kind == yaml.ScalarNode && val.Value == "" {
			val.Style = yaml.DoubleQuotedStyle
		}
		key := &yaml.Node{Kind: yaml.ScalarNode, Value: path[len(path)-1],
			HeadComment: s.doc + " [" + s.env + "]"}
		parent.Content = append(parent.Content, key, val)
	}
	fmt.Fprint(w, "# Latch configuration (latch serve --config FILE). Every key has a LATCH_*\n"+
		"# environment variable, named in brackets; precedence is flag > environment >\n"+
		"# file > default. Durations are Go durations (90s, 15m, 720h). Secrets are never\n"+
		"# values here: the file names a file holding them, or they come from\n"+
		"# "+envKEK+", "+etcdPasswordEnv+" and "+bootstrapPasswordEnv+".\n"+
		"# This file holds every default; issuer has none and is required outside dev mode.\n\n")
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return fmt.Errorf("encode example configuration: %w", err)
	}
	return enc.Close()
}

// keyNames maps each environment variable of a key to its key, for
// messages.
func keyNames() map[string]string {
	c := defaultConfig()
	m := map[string]string{}
	for _, s := range settings(&c) {
		m[s.env] = s.key
	}
	return m
}
