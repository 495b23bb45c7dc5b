package main

import (
	"bufio"
	"cmp"
	"context"
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
// arguments. A positional argument may begin with '-', as a user or session
// id may (ids are base64url): one with a single leading dash that names no
// flag of fs is positional, and so is whatever follows "--". A value of a
// flag that takes one is the flag's whatever it looks like; a misspelt
// "--flag" is refused.
func parseAdminFlags(fs *flag.FlagSet, args []string, getenv func(string) string) ([]string, error) {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		switch {
		case a == "--":
			if i++; i < len(args) {
				pos = append(pos, args[i])
			}
		case len(a) < 2 || a[0] != '-' || (f == nil && a[1] != '-' && name != "h" && name != "help"):
			pos = append(pos, a)
		default:
			flags = append(flags, a)
			if f != nil && !hasValue && !isBoolFlag(f) && i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
		}
	}
	if err := parseFlagSet(fs, flags); err != nil {
		return nil, err
	}
	return pos, setFromEnv(fs, getenv, adminEnvName)
}

// adminEnvName is the LATCH_ADMIN_* variable of a connection flag (--addr
// is LATCH_ADMIN_ADDR, --email is LATCH_ADMIN_EMAIL, ...), and "" for a
// command's own flags, which have none.
func adminEnvName(flagName string) string {
	if !slices.Contains(connFlagNames, flagName) {
		return ""
	}
	return envName("admin-" + flagName)
}

// adminCommand is one `latch admin <group> <verb>`: its positional
// arguments, its own flags, and run, which makes the call with the admin
// credential already on ctx and returns the response (printed with --json)
// and its human form.
type adminCommand struct {
	args  []string
	flags func(*flag.FlagSet, *adminOpts)
	run   func(ctx context.Context, s *adminSession, o *adminOpts, arg string) (proto.Message, func(io.Writer), error)
}

// adminOpts are the command-specific flags.
type adminOpts struct {
	roles                                      stringList
	noRoles, disabled, keepSessions, immediate bool
	setEmail                                   string
	pageSize                                   int
}

// reply turns a call's outcome into run's results: the response and human
// printing it, or the call's status as "Code: message".
func reply[R proto.Message](human func(io.Writer, R)) func(R, error) (proto.Message, func(io.Writer), error) {
	return func(resp R, err error) (proto.Message, func(io.Writer), error) {
		if err != nil {
			return nil, nil, rpcError(err)
		}
		return resp, func(w io.Writer) { human(w, resp) }, nil
	}
}

var adminCommands = map[string]adminCommand{
	"users list": {flags: func(fs *flag.FlagSet, o *adminOpts) {
		fs.IntVar(&o.pageSize, "page-size", 100, "users fetched per call (every page is listed)")
	}, run: runListUsers},
	"users get": {args: []string{"ID|EMAIL"}, run: func(ctx context.Context, s *adminSession, _ *adminOpts, arg string) (proto.Message, func(io.Writer), error) {
		req := &latchv1.GetUserRequest{Lookup: &latchv1.GetUserRequest_UserId{UserId: arg}}
		if strings.Contains(arg, "@") {
			req.Lookup = &latchv1.GetUserRequest_Email{Email: arg}
		}
		return reply(func(w io.Writer, r *latchv1.GetUserResponse) { printUser(w, "", r.GetUser()) })(s.admin.GetUser(ctx, req))
	}},
	"users create": {args: []string{"EMAIL"}, flags: func(fs *flag.FlagSet, o *adminOpts) {
		fs.Var(&o.roles, "role", "a role of the user (repeatable)")
		fs.BoolVar(&o.disabled, "disabled", false, "create the user disabled")
	}, run: func(ctx context.Context, s *adminSession, o *adminOpts, arg string) (proto.Message, func(io.Writer), error) {
		pw, err := s.prompt.secret("new password of "+arg, true)
		if err != nil {
			return nil, nil, err
		}
		return reply(func(w io.Writer, r *latchv1.CreateUserResponse) { printUser(w, "created user:", r.GetUser()) })(
			s.admin.CreateUser(ctx, &latchv1.CreateUserRequest{Email: arg, Password: pw, Roles: o.roles.vals, Disabled: o.disabled}))
	}},
	"users update": {args: []string{"ID"}, flags: func(fs *flag.FlagSet, o *adminOpts) {
		fs.Var(&o.roles, "role", "replace the user's roles with these (repeatable)")
		fs.BoolVar(&o.noRoles, "no-roles", false, "remove every role")
		fs.StringVar(&o.setEmail, "set-email", "", "change the user's email")
	}, run: runUpdateUser},
	"users disable": {args: []string{"ID"}, run: runSetDisabled(true)},
	"users enable":  {args: []string{"ID"}, run: runSetDisabled(false)},
	"users set-password": {args: []string{"ID"}, flags: func(fs *flag.FlagSet, o *adminOpts) {
		fs.BoolVar(&o.keepSessions, "keep-sessions", false, "keep the user's sessions (by default they are revoked)")
	}, run: func(ctx context.Context, s *adminSession, o *adminOpts, arg string) (proto.Message, func(io.Writer), error) {
		pw, err := s.prompt.secret("new password", true)
		if err != nil {
			return nil, nil, err
		}
		return reply(func(w io.Writer, r *latchv1.SetPasswordResponse) {
			fmt.Fprintf(w, "password of user %s set; revoked %d session(s)\n", arg, r.GetRevokedSessions())
		})(s.admin.SetPassword(ctx, &latchv1.SetPasswordRequest{UserId: arg, Password: pw, KeepSessions: o.keepSessions}))
	}},
	"users delete": {args: []string{"ID"}, run: func(ctx context.Context, s *adminSession, _ *adminOpts, arg string) (proto.Message, func(io.Writer), error) {
		return reply(func(w io.Writer, r *latchv1.DeleteUserResponse) {
			fmt.Fprintf(w, "deleted user %s; revoked %d session(s)\n", arg, r.GetRevokedSessions())
		})(s.admin.DeleteUser(ctx, &latchv1.DeleteUserRequest{UserId: arg}))
	}},
	"sessions list": {args: []string{"USER_ID"}, run: func(ctx context.Context, s *adminSession, _ *adminOpts, arg string) (proto.Message, func(io.Writer), error) {
		return reply(func(w io.Writer, r *latchv1.ListSessionsResponse) {
			printSessions(w, r.GetSessions())
			if n := len(r.GetSessions()); int(r.GetTotal()) > n {
				fmt.Fprintf(w, "the %d newest of %d session(s)\n", n, r.GetTotal())
			} else {
				fmt.Fprintf(w, "%d session(s)\n", n)
			}
		})(s.admin.ListSessions(ctx, &latchv1.ListSessionsRequest{UserId: arg}))
	}},
	"sessions revoke": {args: []string{"SESSION_ID"}, run: func(ctx context.Context, s *adminSession, _ *adminOpts, arg string) (proto.Message, func(io.Writer), error) {
		return reply(func(w io.Writer, r *latchv1.RevokeSessionResponse) {
			fmt.Fprintf(w, "session %s revoked (reason %s)\n", arg, r.GetSession().GetRevokeReason())
		})(s.admin.RevokeSession(ctx, &latchv1.RevokeSessionRequest{SessionId: arg}))
	}},
	"sessions revoke-all": {args: []string{"USER_ID"}, run: func(ctx context.Context, s *adminSession, _ *adminOpts, arg string) (proto.Message, func(io.Writer), error) {
		return reply(func(w io.Writer, r *latchv1.RevokeUserSessionsResponse) {
			fmt.Fprintf(w, "revoked %d session(s) of user %s\n", len(r.GetRevoked()), arg)
			if len(r.GetRevoked()) > 0 {
				printSessions(w, r.GetRevoked())
			}
		})(s.admin.RevokeUserSessions(ctx, &latchv1.RevokeUserSessionsRequest{UserId: arg}))
	}},
	"keys list": {run: func(ctx context.Context, s *adminSession, _ *adminOpts, _ string) (proto.Message, func(io.Writer), error) {
		return reply(func(w io.Writer, r *latchv1.ListSigningKeysResponse) { printKeys(w, "", r.GetKeys()) })(
			s.admin.ListSigningKeys(ctx, &latchv1.ListSigningKeysRequest{}))
	}},
	"keys rotate": {flags: func(fs *flag.FlagSet, o *adminOpts) {
		fs.BoolVar(&o.immediate, "immediate", false, "a fresh key signs at once (for a compromised key), instead of activating the published next key")
	}, run: func(ctx context.Context, s *adminSession, o *adminOpts, _ string) (proto.Message, func(io.Writer), error) {
		return reply(func(w io.Writer, r *latchv1.RotateSigningKeyResponse) {
			printKeys(w, "rotation done; keys now:", r.GetKeys())
		})(
			s.admin.RotateSigningKey(ctx, &latchv1.RotateSigningKeyRequest{Immediate: o.immediate}))
	}},
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
	resp, human, err := cmd.run(sess.ctx(ctx), sess, &o, strings.Join(pos, ""))
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
	return f == nil || !isBoolFlag(f) // not a connection flag: parsing refuses it
}

// isBoolFlag reports whether f takes no value.
func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
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
	s := &adminSession{conn: conn, admin: latchv1.NewAdminServiceClient(conn), auth: latchv1.NewAuthServiceClient(conn), token: token, prompt: p}
	if token != "" {
		return s, nil
	}
	pw, err := p.secret("password of "+cf.email, false)
	if err != nil {
		conn.Close()
		return nil, err
	}
	// Latch's own APIs accept only tokens for its own audience, its issuer.
	resp, err := s.auth.Login(ctx, &latchv1.LoginRequest{Email: cf.email, Password: pw, Audience: cmp.Or(cf.audience, cf.issuer)})
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
	if (cf.tlsCert == "") != (cf.tlsKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	cfg, err := clientTLS(cf.tlsCA, cf.tlsCert, cf.tlsKey, "--tls-ca", "--tls-cert/--tls-key")
	if err != nil {
		return nil, err
	}
	cfg.ServerName = cf.tlsServerName
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

func runListUsers(ctx context.Context, s *adminSession, o *adminOpts, _ string) (proto.Message, func(io.Writer), error) {
	if o.pageSize <= 0 {
		return nil, nil, errors.New("--page-size must be positive")
	}
	all := &latchv1.ListUsersResponse{}
	// A server that hands back a page token it already gave would have us
	// loop (and pile up users) until --timeout: stop at the first repeat.
	seen := map[string]bool{}
	for token := ""; ; {
		resp, err := s.admin.ListUsers(ctx, &latchv1.ListUsersRequest{PageSize: int32(min(o.pageSize, 500)), PageToken: token})
		if err != nil {
			return nil, nil, rpcError(err)
		}
		all.Users = append(all.Users, resp.GetUsers()...)
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
		if seen[token] {
			return nil, nil, fmt.Errorf("listing users: page %d's next-page token repeats an earlier one; the server's paging is broken, stopping rather than looping", len(seen)+1)
		}
		seen[token] = true
	}
	return reply(func(w io.Writer, r *latchv1.ListUsersResponse) {
		rows := []string{"ID\tEMAIL\tROLES\tDISABLED\tCREATED"}
		for _, u := range r.GetUsers() {
			rows = append(rows, fmt.Sprintf("%s\t%s\t%s\t%v\t%s", u.GetId(), u.GetEmail(), strings.Join(u.GetRoles(), ","), u.GetDisabled(), when(u.GetCreateTime())))
		}
		table(w, rows...)
		fmt.Fprintf(w, "%d user(s)\n", len(r.GetUsers()))
	})(all, nil)
}

func runUpdateUser(ctx context.Context, s *adminSession, o *adminOpts, arg string) (proto.Message, func(io.Writer), error) {
	req := &latchv1.UpdateUserRequest{UserId: arg}
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
	return reply(func(w io.Writer, r *latchv1.UpdateUserResponse) { printUser(w, "updated user:", r.GetUser()) })(s.admin.UpdateUser(ctx, req))
}

func runSetDisabled(disabled bool) func(context.Context, *adminSession, *adminOpts, string) (proto.Message, func(io.Writer), error) {
	return func(ctx context.Context, s *adminSession, _ *adminOpts, arg string) (proto.Message, func(io.Writer), error) {
		return reply(func(w io.Writer, r *latchv1.UpdateUserResponse) {
			if disabled {
				fmt.Fprintf(w, "disabled user %s; revoked %d session(s)\n", arg, r.GetRevokedSessions())
			} else {
				fmt.Fprintf(w, "enabled user %s\n", arg)
			}
		})(s.admin.UpdateUser(ctx, &latchv1.UpdateUserRequest{UserId: arg, Disabled: proto.Bool(disabled)}))
	}
}

// table writes tab-separated lines as aligned columns.
func table(w io.Writer, lines ...string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, l := range lines {
		fmt.Fprintln(tw, l)
	}
	tw.Flush()
}

// printUser prints u as "field: value" lines, after title unless it is "".
func printUser(w io.Writer, title string, u *latchv1.User) {
	if title != "" {
		fmt.Fprintln(w, title)
	}
	table(w, "id:\t"+u.GetId(), "email:\t"+u.GetEmail(), "roles:\t"+strings.Join(u.GetRoles(), ","),
		fmt.Sprintf("disabled:\t%v", u.GetDisabled()), "created:\t"+when(u.GetCreateTime()), "updated:\t"+when(u.GetUpdateTime()))
}

// printSessions prints ss as a table; an empty client detail prints as "-",
// so that no cell is blank.
func printSessions(w io.Writer, ss []*latchv1.Session) {
	rows := []string{"SESSION\tSTATE\tAUDIENCE\tCREATED\tEXPIRES\tREVOKED\tREASON\tDEVICE\tLAST ADDRESS\tUSER AGENT"}
	for _, s := range ss {
		rows = append(rows, strings.Join([]string{s.GetId(), enumName(s.GetState(), "SESSION_STATE_"), s.GetAudience(),
			when(s.GetCreateTime()), when(s.GetExpireTime()), when(s.GetRevokeTime()), s.GetRevokeReason(),
			cmp.Or(s.GetDeviceName(), "-"), cmp.Or(s.GetLastAddress(), "-"), cmp.Or(s.GetUserAgent(), "-")}, "\t"))
	}
	table(w, rows...)
}

func printKeys(w io.Writer, title string, keys []*latchv1.SigningKey) {
	if title != "" {
		fmt.Fprintln(w, title)
	}
	rows := []string{"KID\tSTATE\tCREATED\tACTIVATED\tRETIRED\tACTIVATES\tREMOVED AT"}
	for _, k := range keys {
		rows = append(rows, strings.Join([]string{k.GetKid(), enumName(k.GetState(), "SIGNING_KEY_STATE_"), when(k.GetCreateTime()),
			when(k.GetActivateTime()), when(k.GetRetireTime()), when(k.GetScheduledActivateTime()), when(k.GetRemoveTime())}, "\t"))
	}
	table(w, rows...)
}

// enumName is an enum value's name without its prefix, in lower case
// ("live", "active").
func enumName(v fmt.Stringer, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(v.String(), prefix))
}

// when formats a timestamp for tables ("-" when unset).
func when(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().UTC().Format(time.RFC3339)
}
