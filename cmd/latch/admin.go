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
	"net"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/internal/password"
	"golang.org/x/term"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// adminTokenEnv holds an access token with role admin, for scripts.
const adminTokenEnv = "LATCH_ADMIN_TOKEN"

// adminEnvPrefix prefixes the environment form of the connection flags:
// --addr is LATCH_ADMIN_ADDR, --email is LATCH_ADMIN_EMAIL, ...
const adminEnvPrefix = "LATCH_ADMIN_"

const adminUsage = `Usage: latch admin <command> [arguments] [flags]

Administers a running Latch through its AdminService (gRPC). Every command
needs an access token with role admin: from $LATCH_ADMIN_TOKEN, or by logging
in with --email (the password is prompted on a terminal, else read as one line
from standard input). A login made by the command is revoked when it ends.

Users:
  latch admin users list [--page-size N]
  latch admin users get ID|EMAIL
  latch admin users create EMAIL [--role R ...] [--disabled]    new password prompted or on stdin
  latch admin users update ID [--role R ... | --no-roles] [--set-email E]
  latch admin users disable ID          also revokes every session of the user
  latch admin users enable ID
  latch admin users set-password ID [--keep-sessions]          new password prompted or on stdin
  latch admin users delete ID           also revokes every session of the user
Sessions:
  latch admin sessions list USER_ID
  latch admin sessions revoke SESSION_ID
  latch admin sessions revoke-all USER_ID                      "log out everywhere"
Signing keys:
  latch admin keys list
  latch admin keys rotate [--immediate]

Passwords are never flag values. Without a terminal, standard input holds one
line per password: the admin's (with --email) first, then the new one.

Connection and output flags (every command; environment variable in brackets):
  --addr HOST:PORT        [LATCH_ADMIN_ADDR] Latch's gRPC address (default 127.0.0.1:7300)
  --tls-ca FILE           [LATCH_ADMIN_TLS_CA] PEM CA bundle that signs Latch's certificate (default: system roots)
  --tls-server-name NAME  [LATCH_ADMIN_TLS_SERVER_NAME] expected name in Latch's certificate
  --tls-cert, --tls-key   [LATCH_ADMIN_TLS_CERT, LATCH_ADMIN_TLS_KEY] client certificate for mTLS
  --insecure              [LATCH_ADMIN_INSECURE] plaintext, allowed only to a loopback address
  --email E               [LATCH_ADMIN_EMAIL] log in as this admin (instead of $LATCH_ADMIN_TOKEN)
  --issuer URL            [LATCH_ADMIN_ISSUER] Latch's --issuer; --email logs in for it, the audience
                          Latch's own APIs accept (default http://127.0.0.1:7301, as latch serve)
  --audience A            [LATCH_ADMIN_AUDIENCE] audience to log in for instead of --issuer
  --timeout D             [LATCH_ADMIN_TIMEOUT] bound on the whole command (default 30s)
  --json                  print the response as JSON (protobuf JSON mapping) for scripts

Example:
  latch admin --insecure --email root@example.com users create alice@example.com --role user`

// connFlags are the connection, credential and output flags every admin
// command takes.
type connFlags struct {
	addr, tlsCA, tlsServerName, tlsCert, tlsKey string
	email, issuer, audience                     string
	insecure, json                              bool
	timeout                                     time.Duration
}

// connFlagNames are the flags that have a LATCH_ADMIN_* environment form.
var connFlagNames = []string{"addr", "tls-ca", "tls-server-name", "tls-cert", "tls-key", "insecure", "email", "issuer", "audience", "timeout"}

func (c *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", "127.0.0.1:7300", "Latch's gRPC address")
	fs.StringVar(&c.tlsCA, "tls-ca", "", "PEM CA bundle that signs Latch's certificate (default: system roots)")
	fs.StringVar(&c.tlsServerName, "tls-server-name", "", "name expected in Latch's certificate (default: the host of --addr)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "client certificate (PEM) for mTLS")
	fs.StringVar(&c.tlsKey, "tls-key", "", "client key (PEM) for mTLS")
	fs.BoolVar(&c.insecure, "insecure", false, "plaintext gRPC; allowed only to a loopback address")
	fs.StringVar(&c.email, "email", "", "log in as this admin (password prompted); default: the token in "+adminTokenEnv)
	fs.StringVar(&c.issuer, "issuer", "http://127.0.0.1:7301", "Latch's --issuer: the audience --email logs in for, which Latch's own APIs accept")
	fs.StringVar(&c.audience, "audience", "", "audience to log in for (default: --issuer)")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "bound on the whole command")
	fs.BoolVar(&c.json, "json", false, "print the response as JSON")
}

// parseAdminFlags parses flags placed anywhere among the arguments, fills
// connection flags not given from LATCH_ADMIN_*, and returns the positional
// arguments.
func parseAdminFlags(fs *flag.FlagSet, args []string, getenv func(string) string) ([]string, error) {
	args = markDashIDs(fs, args)
	var pos []string
	for {
		if err := parseFlagSet(fs, args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return pos, setFromEnv(fs, getenv, adminEnvName)
}

// markDashIDs lets a positional argument begin with '-', as a user or
// session id may (ids are base64url): an argument with one leading dash that
// names no flag of fs is preceded by "--", so that fs.Parse hands it back as
// positional instead of refusing it as an unknown flag. A value of a flag
// that takes one is left alone; a misspelt "--flag" is still refused.
func markDashIDs(fs *flag.FlagSet, args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			// The next argument is positional whatever it looks like.
			out = append(out, args[i:min(i+2, len(args))]...)
			i++
			continue
		}
		if len(a) < 2 || a[0] != '-' {
			out = append(out, a)
			continue
		}
		name, hasValue := strings.TrimLeft(a, "-"), false
		if j := strings.IndexByte(name, '='); j >= 0 {
			name, hasValue = name[:j], true
		}
		f := fs.Lookup(name)
		if f == nil {
			if a[1] != '-' && name != "h" && name != "help" {
				out = append(out, "--")
			}
			out = append(out, a)
			continue
		}
		out = append(out, a)
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !hasValue && !(ok && b.IsBoolFlag()) && i+1 < len(args) {
			i++
			out = append(out, args[i]) // the flag's value, whatever it looks like
		}
	}
	return out
}

// adminEnvName is the LATCH_ADMIN_* variable of a connection flag, and ""
// for a command's own flags, which have none.
func adminEnvName(flagName string) string {
	if !slices.Contains(connFlagNames, flagName) {
		return ""
	}
	return adminEnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// adminCommand is one `latch admin <group> <verb>`.
type adminCommand struct {
	args  []string // names of the positional arguments
	flags func(*flag.FlagSet, *adminOpts)
	run   func(ctx context.Context, c *adminSession, o *adminOpts, pos []string) (proto.Message, func(io.Writer), error)
}

// adminOpts are the command-specific flags.
type adminOpts struct {
	roles                                      stringList
	noRoles, disabled, keepSessions, immediate bool
	setEmail                                   string
	pageSize                                   int
}

var adminCommands = map[string]adminCommand{
	"users list": {flags: func(fs *flag.FlagSet, o *adminOpts) {
		fs.IntVar(&o.pageSize, "page-size", 100, "users fetched per call (every page is listed)")
	}, run: runListUsers},
	"users get":    {args: []string{"ID|EMAIL"}, run: runGetUser},
	"users create": {args: []string{"EMAIL"}, flags: roleFlags(true), run: runCreateUser},
	"users update": {args: []string{"ID"}, flags: func(fs *flag.FlagSet, o *adminOpts) {
		roleFlags(false)(fs, o)
		fs.BoolVar(&o.noRoles, "no-roles", false, "remove every role")
		fs.StringVar(&o.setEmail, "set-email", "", "change the user's email")
	}, run: runUpdateUser},
	"users disable": {args: []string{"ID"}, run: runSetDisabled(true)},
	"users enable":  {args: []string{"ID"}, run: runSetDisabled(false)},
	"users set-password": {args: []string{"ID"}, flags: func(fs *flag.FlagSet, o *adminOpts) {
		fs.BoolVar(&o.keepSessions, "keep-sessions", false, "keep the user's sessions (by default they are revoked)")
	}, run: runSetPassword},
	"users delete":        {args: []string{"ID"}, run: runDeleteUser},
	"sessions list":       {args: []string{"USER_ID"}, run: runListSessions},
	"sessions revoke":     {args: []string{"SESSION_ID"}, run: runRevokeSession},
	"sessions revoke-all": {args: []string{"USER_ID"}, run: runRevokeUserSessions},
	"keys list":           {run: runListKeys},
	"keys rotate": {flags: func(fs *flag.FlagSet, o *adminOpts) {
		fs.BoolVar(&o.immediate, "immediate", false, "a fresh key signs at once (for a compromised key), instead of activating the published next key")
	}, run: runRotateKey},
}

func roleFlags(create bool) func(*flag.FlagSet, *adminOpts) {
	return func(fs *flag.FlagSet, o *adminOpts) {
		if create {
			fs.Var(&o.roles, "role", "a role of the user (repeatable)")
			fs.BoolVar(&o.disabled, "disabled", false, "create the user disabled")
			return
		}
		fs.Var(&o.roles, "role", "replace the user's roles with these (repeatable)")
	}
}

func admin(ctx context.Context, args []string, e env) error {
	// Connection flags may come before the command: split them off.
	var lead []string
	for len(args) > 0 && strings.HasPrefix(args[0], "-") && args[0] != "-h" && args[0] != "--help" {
		lead = append(lead, args[0])
		args = args[1:]
		if len(args) > 0 && !strings.Contains(lead[len(lead)-1], "=") && flagTakesValue(lead[len(lead)-1]) {
			lead = append(lead, args[0])
			args = args[1:]
		}
	}
	if len(args) < 2 {
		io.WriteString(e.stderr, adminUsage+"\n")
		if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return nil
		}
		return errUsage
	}
	name := args[0] + " " + args[1]
	cmd, ok := adminCommands[name]
	if !ok {
		fmt.Fprintf(e.stderr, "latch admin: unknown command %q\n\n%s\n", name, adminUsage)
		return errUsage
	}
	fs := flag.NewFlagSet("latch admin "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var cf connFlags
	cf.register(fs)
	var o adminOpts
	if cmd.flags != nil {
		cmd.flags(fs, &o)
	}
	fs.Usage = usageWithEnv(fs, fmt.Sprintf("Usage: latch admin %s %s [flags]\n\n(latch admin --help lists every command)", name, strings.Join(cmd.args, " ")), adminEnvName)
	pos, err := parseAdminFlags(fs, append(lead, args[2:]...), e.getenv)
	if err != nil {
		return err
	}
	if len(pos) != len(cmd.args) {
		fmt.Fprintf(e.stderr, "latch admin %s: want %d argument(s) (%s), got %d\n", name, len(cmd.args), strings.Join(cmd.args, " "), len(pos))
		fs.Usage()
		return errUsage
	}
	if cf.timeout <= 0 {
		return errors.New("--timeout must be positive")
	}
	ctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	p := newPrompter(e)
	sess, err := openAdminSession(ctx, cf, e, p)
	if err != nil {
		return err
	}
	defer sess.close(e)
	sess.prompt = p
	resp, human, err := cmd.run(ctx, sess, &o, pos)
	if err != nil {
		return err
	}
	if cf.json {
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: true}.Marshal(resp)
		if err != nil {
			return fmt.Errorf("encode JSON: %w", err)
		}
		_, err = fmt.Fprintln(e.stdout, string(b))
		return err
	}
	human(e.stdout)
	return nil
}

// flagTakesValue reports whether a connection flag given before the
// command consumes the next argument: every one but the boolean ones, as
// connFlags registers them.
func flagTakesValue(arg string) bool {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	f := fs.Lookup(strings.TrimLeft(arg, "-"))
	if f == nil {
		return true // not a connection flag: parsing refuses it
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return !ok || !b.IsBoolFlag()
}

// --- credentials and connection ---

// prompter reads secrets: from the terminal without echo when standard
// input is one, else one line at a time from standard input.
type prompter struct {
	out io.Writer
	fd  int
	tty bool
	br  *bufio.Reader
}

func newPrompter(e env) *prompter {
	p := &prompter{out: e.stderr, br: bufio.NewReaderSize(e.stdin, secretLineBuffer)}
	if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.fd, p.tty = int(f.Fd()), true
	}
	return p
}

// secret reads one password (8 to 1024 bytes); on a terminal with confirm it
// asks twice.
func (p *prompter) secret(what string, confirm bool) (string, error) {
	read := func(prompt string) (string, error) {
		if !p.tty {
			line, err := readSecretLine(p.br)
			if errors.Is(err, io.EOF) && line == "" {
				return "", fmt.Errorf("%s: standard input is empty; pipe the %s in as one line, e.g. with printf '%%s\\n' \"$PASSWORD\"", what, what)
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return "", fmt.Errorf("read %s from standard input: %w", what, err)
			}
			return line, nil
		}
		fmt.Fprint(p.out, prompt)
		b, err := term.ReadPassword(p.fd)
		fmt.Fprintln(p.out)
		if err != nil {
			return "", fmt.Errorf("read %s: %w", what, err)
		}
		return string(b), nil
	}
	pw, err := read(what + ": ")
	if err != nil {
		return "", err
	}
	if pw == "" {
		return "", fmt.Errorf("%s is empty; it must be 8 to 1024 bytes", what)
	}
	if err := password.CheckLength(pw); err != nil {
		return "", fmt.Errorf("%s must be 8 to 1024 bytes", what)
	}
	if confirm && p.tty {
		again, err := read("again: ")
		if err != nil {
			return "", err
		}
		if again != pw {
			return "", fmt.Errorf("the two %ss differ", what)
		}
	}
	return pw, nil
}

// adminSession is a connection to Latch with an admin credential.
type adminSession struct {
	conn    *grpc.ClientConn
	admin   latchv1.AdminServiceClient
	auth    latchv1.AuthServiceClient
	token   string
	refresh string // set when this command logged in; revoked at close
	prompt  *prompter
}

func openAdminSession(ctx context.Context, cf connFlags, e env, p *prompter) (*adminSession, error) {
	token := e.getenv(adminTokenEnv)
	if token == "" && cf.email == "" {
		return nil, fmt.Errorf("no credential: set %s to an access token with role admin, or give --email to log in", adminTokenEnv)
	}
	creds, err := transportCredentials(cf)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(cf.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cf.addr, err)
	}
	s := &adminSession{conn: conn, admin: latchv1.NewAdminServiceClient(conn), auth: latchv1.NewAuthServiceClient(conn), token: token}
	if token != "" {
		return s, nil
	}
	pw, err := p.secret("password of "+cf.email, false)
	if err != nil {
		conn.Close()
		return nil, err
	}
	// Latch's own APIs accept only tokens for its own audience, its issuer.
	aud := cf.audience
	if aud == "" {
		aud = cf.issuer
	}
	resp, err := s.auth.Login(ctx, &latchv1.LoginRequest{Email: cf.email, Password: pw, Audience: aud})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("log in as %s: %w", cf.email, rpcError(err))
	}
	s.token, s.refresh = resp.GetTokens().GetAccessToken(), resp.GetTokens().GetRefreshToken()
	return s, nil
}

// close revokes the session this command logged in with, so that no
// session outlives the command, and closes the connection.
func (s *adminSession) close(e env) {
	if s.refresh != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := s.auth.Revoke(ctx, &latchv1.RevokeRequest{Token: s.refresh,
			TokenTypeHint: latchv1.TokenTypeHint_TOKEN_TYPE_HINT_REFRESH_TOKEN}); err != nil {
			fmt.Fprintf(e.stderr, "latch admin: warning: could not end the login session: %v\n", rpcError(err))
		}
	}
	s.conn.Close()
}

// ctx attaches the admin credential to a call.
func (s *adminSession) ctx(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+s.token)
}

func transportCredentials(cf connFlags) (credentials.TransportCredentials, error) {
	if cf.insecure {
		if cf.tlsCA != "" || cf.tlsCert != "" || cf.tlsKey != "" || cf.tlsServerName != "" {
			return nil, errors.New("--insecure cannot be combined with --tls-* flags")
		}
		host, _, err := net.SplitHostPort(cf.addr)
		if err != nil {
			return nil, fmt.Errorf("--addr %q: %w", cf.addr, err)
		}
		if !isLoopbackHost(host) {
			return nil, fmt.Errorf("--insecure sends the admin credential in plaintext: allowed only to a loopback address, not %s; use TLS (--tls-ca)", host)
		}
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cf.tlsServerName}
	if cf.tlsCA != "" {
		pem, err := os.ReadFile(cf.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", cf.tlsCA)
		}
		cfg.RootCAs = pool
	}
	if (cf.tlsCert == "") != (cf.tlsKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if cf.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(cf.tlsCert, cf.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(cfg), nil
}

// rpcError turns a gRPC status into "Code: message".
func rpcError(err error) error {
	if st, ok := status.FromError(err); ok {
		if st.Code() == codes.Unavailable && strings.Contains(st.Message(), plaintextAnswer) {
			return fmt.Errorf("%s: %s\nThe server answered in plaintext, not TLS: a `latch serve` without --tls-cert on this machine speaks plaintext; add --insecure (allowed to loopback addresses only)", st.Code(), st.Message())
		}
		return fmt.Errorf("%s: %s", st.Code(), st.Message())
	}
	return err
}

// plaintextAnswer is what crypto/tls reports, through gRPC, when the server
// answers a TLS handshake in plaintext.
const plaintextAnswer = "first record does not look like a TLS handshake"

// --- commands ---

func runListUsers(ctx context.Context, s *adminSession, o *adminOpts, _ []string) (proto.Message, func(io.Writer), error) {
	if o.pageSize <= 0 {
		return nil, nil, errors.New("--page-size must be positive")
	}
	all := &latchv1.ListUsersResponse{}
	token := ""
	// A server that hands back a page token it already gave would have us
	// loop (and pile up users) until --timeout: stop at the first repeat.
	seen := map[string]bool{}
	for pages := 1; ; pages++ {
		resp, err := s.admin.ListUsers(s.ctx(ctx), &latchv1.ListUsersRequest{PageSize: int32(min(o.pageSize, 500)), PageToken: token})
		if err != nil {
			return nil, nil, rpcError(err)
		}
		all.Users = append(all.Users, resp.GetUsers()...)
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
		if seen[token] {
			return nil, nil, fmt.Errorf("listing users: page %d's next-page token repeats an earlier one; the server's paging is broken, stopping rather than looping", pages)
		}
		seen[token] = true
	}
	return all, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tEMAIL\tROLES\tDISABLED\tCREATED")
		for _, u := range all.GetUsers() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", u.GetId(), u.GetEmail(), strings.Join(u.GetRoles(), ","), u.GetDisabled(), when(u.GetCreateTime()))
		}
		tw.Flush()
		fmt.Fprintf(w, "%d user(s)\n", len(all.GetUsers()))
	}, nil
}

func printUser(w io.Writer, u *latchv1.User) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\nemail:\t%s\nroles:\t%s\ndisabled:\t%v\ncreated:\t%s\nupdated:\t%s\n", u.GetId(), u.GetEmail(),
		strings.Join(u.GetRoles(), ","), u.GetDisabled(), when(u.GetCreateTime()), when(u.GetUpdateTime()))
	tw.Flush()
}

func runGetUser(ctx context.Context, s *adminSession, _ *adminOpts, pos []string) (proto.Message, func(io.Writer), error) {
	req := &latchv1.GetUserRequest{Lookup: &latchv1.GetUserRequest_UserId{UserId: pos[0]}}
	if strings.Contains(pos[0], "@") {
		req.Lookup = &latchv1.GetUserRequest_Email{Email: pos[0]}
	}
	resp, err := s.admin.GetUser(s.ctx(ctx), req)
	if err != nil {
		return nil, nil, rpcError(err)
	}
	return resp, func(w io.Writer) { printUser(w, resp.GetUser()) }, nil
}

func runCreateUser(ctx context.Context, s *adminSession, o *adminOpts, pos []string) (proto.Message, func(io.Writer), error) {
	pw, err := s.prompt.secret("new password of "+pos[0], true)
	if err != nil {
		return nil, nil, err
	}
	resp, err := s.admin.CreateUser(s.ctx(ctx), &latchv1.CreateUserRequest{Email: pos[0], Password: pw, Roles: o.roles.vals, Disabled: o.disabled})
	if err != nil {
		return nil, nil, rpcError(err)
	}
	return resp, func(w io.Writer) {
		fmt.Fprintln(w, "created user:")
		printUser(w, resp.GetUser())
	}, nil
}

func runUpdateUser(ctx context.Context, s *adminSession, o *adminOpts, pos []string) (proto.Message, func(io.Writer), error) {
	req := &latchv1.UpdateUserRequest{UserId: pos[0]}
	switch {
	case o.noRoles && o.roles.isSet:
		return nil, nil, errors.New("give --role or --no-roles, not both")
	case o.noRoles:
		req.Roles = &latchv1.RoleList{}
	case o.roles.isSet:
		req.Roles = &latchv1.RoleList{Roles: o.roles.vals}
	}
	if o.setEmail != "" {
		req.Email = proto.String(o.setEmail)
	}
	if req.Roles == nil && req.Email == nil {
		return nil, nil, errors.New("nothing to change: give --role, --no-roles or --set-email")
	}
	resp, err := s.admin.UpdateUser(s.ctx(ctx), req)
	if err != nil {
		return nil, nil, rpcError(err)
	}
	return resp, func(w io.Writer) {
		fmt.Fprintln(w, "updated user:")
		printUser(w, resp.GetUser())
	}, nil
}

func runSetDisabled(disabled bool) func(context.Context, *adminSession, *adminOpts, []string) (proto.Message, func(io.Writer), error) {
	return func(ctx context.Context, s *adminSession, _ *adminOpts, pos []string) (proto.Message, func(io.Writer), error) {
		resp, err := s.admin.UpdateUser(s.ctx(ctx), &latchv1.UpdateUserRequest{UserId: pos[0], Disabled: proto.Bool(disabled)})
		if err != nil {
			return nil, nil, rpcError(err)
		}
		return resp, func(w io.Writer) {
			if disabled {
				fmt.Fprintf(w, "disabled user %s; revoked %d session(s)\n", pos[0], resp.GetRevokedSessions())
				return
			}
			fmt.Fprintf(w, "enabled user %s\n", pos[0])
		}, nil
	}
}

func runSetPassword(ctx context.Context, s *adminSession, o *adminOpts, pos []string) (proto.Message, func(io.Writer), error) {
	pw, err := s.prompt.secret("new password", true)
	if err != nil {
		return nil, nil, err
	}
	resp, err := s.admin.SetPassword(s.ctx(ctx), &latchv1.SetPasswordRequest{UserId: pos[0], Password: pw, KeepSessions: o.keepSessions})
	if err != nil {
		return nil, nil, rpcError(err)
	}
	return resp, func(w io.Writer) {
		fmt.Fprintf(w, "password of user %s set; revoked %d session(s)\n", pos[0], resp.GetRevokedSessions())
	}, nil
}

func runDeleteUser(ctx context.Context, s *adminSession, _ *adminOpts, pos []string) (proto.Message, func(io.Writer), error) {
	resp, err := s.admin.DeleteUser(s.ctx(ctx), &latchv1.DeleteUserRequest{UserId: pos[0]})
	if err != nil {
		return nil, nil, rpcError(err)
	}
	return resp, func(w io.Writer) {
		fmt.Fprintf(w, "deleted user %s; revoked %d session(s)\n", pos[0], resp.GetRevokedSessions())
	}, nil
}

var sessionStates = map[latchv1.SessionState]string{
	latchv1.SessionState_SESSION_STATE_LIVE:    "live",
	latchv1.SessionState_SESSION_STATE_REVOKED: "revoked",
	latchv1.SessionState_SESSION_STATE_EXPIRED: "expired",
}

func printSessions(w io.Writer, ss []*latchv1.Session) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tSTATE\tAUDIENCE\tCREATED\tEXPIRES\tREVOKED\tREASON")
	for _, s := range ss {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.GetId(), sessionStates[s.GetState()], s.GetAudience(),
			when(s.GetCreateTime()), when(s.GetExpireTime()), when(s.GetRevokeTime()), s.GetRevokeReason())
	}
	tw.Flush()
}

func runListSessions(ctx context.Context, s *adminSession, _ *adminOpts, pos []string) (proto.Message, func(io.Writer), error) {
	resp, err := s.admin.ListSessions(s.ctx(ctx), &latchv1.ListSessionsRequest{UserId: pos[0]})
	if err != nil {
		return nil, nil, rpcError(err)
	}
	return resp, func(w io.Writer) {
		printSessions(w, resp.GetSessions())
		if int(resp.GetTotal()) > len(resp.GetSessions()) {
			fmt.Fprintf(w, "the %d newest of %d session(s)\n", len(resp.GetSessions()), resp.GetTotal())
			return
		}
		fmt.Fprintf(w, "%d session(s)\n", len(resp.GetSessions()))
	}, nil
}

func runRevokeSession(ctx context.Context, s *adminSession, _ *adminOpts, pos []string) (proto.Message, func(io.Writer), error) {
	resp, err := s.admin.RevokeSession(s.ctx(ctx), &latchv1.RevokeSessionRequest{SessionId: pos[0]})
	if err != nil {
		return nil, nil, rpcError(err)
	}
	return resp, func(w io.Writer) {
		fmt.Fprintf(w, "session %s revoked (reason %s)\n", pos[0], resp.GetSession().GetRevokeReason())
	}, nil
}

func runRevokeUserSessions(ctx context.Context, s *adminSession, _ *adminOpts, pos []string) (proto.Message, func(io.Writer), error) {
	resp, err := s.admin.RevokeUserSessions(s.ctx(ctx), &latchv1.RevokeUserSessionsRequest{UserId: pos[0]})
	if err != nil {
		return nil, nil, rpcError(err)
	}
	return resp, func(w io.Writer) {
		fmt.Fprintf(w, "revoked %d session(s) of user %s\n", len(resp.GetRevoked()), pos[0])
		if len(resp.GetRevoked()) > 0 {
			printSessions(w, resp.GetRevoked())
		}
	}, nil
}

var keyStates = map[latchv1.SigningKeyState]string{
	latchv1.SigningKeyState_SIGNING_KEY_STATE_NEXT:    "next",
	latchv1.SigningKeyState_SIGNING_KEY_STATE_ACTIVE:  "active",
	latchv1.SigningKeyState_SIGNING_KEY_STATE_RETIRED: "retired",
}

func printKeys(w io.Writer, keys []*latchv1.SigningKey) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tSTATE\tCREATED\tACTIVATED\tRETIRED\tACTIVATES\tREMOVED AT")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.GetKid(), keyStates[k.GetState()], when(k.GetCreateTime()),
			when(k.GetActivateTime()), when(k.GetRetireTime()), when(k.GetScheduledActivateTime()), when(k.GetRemoveTime()))
	}
	tw.Flush()
}

func runListKeys(ctx context.Context, s *adminSession, _ *adminOpts, _ []string) (proto.Message, func(io.Writer), error) {
	resp, err := s.admin.ListSigningKeys(s.ctx(ctx), &latchv1.ListSigningKeysRequest{})
	if err != nil {
		return nil, nil, rpcError(err)
	}
	return resp, func(w io.Writer) { printKeys(w, resp.GetKeys()) }, nil
}

func runRotateKey(ctx context.Context, s *adminSession, o *adminOpts, _ []string) (proto.Message, func(io.Writer), error) {
	resp, err := s.admin.RotateSigningKey(s.ctx(ctx), &latchv1.RotateSigningKeyRequest{Immediate: o.immediate})
	if err != nil {
		return nil, nil, rpcError(err)
	}
	return resp, func(w io.Writer) {
		fmt.Fprintln(w, "rotation done; keys now:")
		printKeys(w, resp.GetKeys())
	}, nil
}

// when formats a timestamp for tables ("-" when unset).
func when(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().UTC().Format(time.RFC3339)
}
