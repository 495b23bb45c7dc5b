package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
)

const sessionsUsage = `Usage: latch sessions revoke --before TIME [--db PATH | --storage etcd --etcd-endpoints URLS]

Revokes every live session, of every user, created before TIME (RFC 3339,
e.g. 2026-01-02T15:04:05Z), with reason "restored". Run it after restoring a
backup and before serving from it: the backup does not know what was revoked
after it was taken, so every session it holds is ended, and with it every
refresh token and (for Introspect and verifiers that follow revocations)
every access token issued before the restore. Sessions created at or after
TIME are kept, so repeating the command with the same TIME is safe; it
prints TIME in UTC, with the numbers revoked and kept, for that purpose.
TIME may not be more than a minute in the future: a restore's time is in
the past, and a later one would also end the sessions created since. With
bbolt the server must not be running on the same database file; with etcd
it may be.

A revoked session stays in the revocation list that verifiers start from
until its own expiry, unless --revoked-session-retention says otherwise
(give it the servers' tokens.revoked_session_retention: the access-token
lifetime plus 30 s, 15m30s by default).

Example:
  latch sessions revoke --db latch.db --before "$(date -u +%Y-%m-%dT%H:%M:%SZ)"`

// sessionsCmd runs `latch sessions`.
func sessionsCmd(ctx context.Context, args []string, e env) error {
	if len(args) == 0 || args[0] != "revoke" {
		io.WriteString(e.stderr, sessionsUsage+"\n")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return nil
		}
		return errUsage
	}
	fs := flag.NewFlagSet("latch sessions revoke", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var before string
	var retention time.Duration
	var sf storageFlags // --storage, --db, --etcd-* (serve_storage.go)
	sf.register(fs)
	fs.StringVar(&before, "before", "", "revoke the sessions created before this time, RFC 3339 (required)")
	fs.DurationVar(&retention, "revoked-session-retention", 0, "keep each revoked session (and its entry in the revocation list) this long, as tokens.revoked_session_retention does for serve; 0 keeps it until the session's own expiry. Set it to the servers' value (access TTL plus 30 s) to keep the revocation list short; never shorter")
	fs.Usage = usageWithEnv(fs, sessionsUsage, envName)
	if err := parseFlags(fs, args[1:], e.getenv, envName); err != nil {
		return err
	}
	errs := sf.checkFlags(fs, e.getenv, e.stderr)
	now := time.Now()
	var cutoff time.Time
	future := false
	if before == "" {
		errs = append(errs, errors.New("--before is required: the time the backup was restored (every session created earlier is revoked)"))
	} else if t, err := time.Parse(time.RFC3339Nano, before); err != nil {
		errs = append(errs, fmt.Errorf("--before %q is not an RFC 3339 time such as 2026-01-02T15:04:05Z", before))
	} else if t.After(now.Add(maxCutoffAhead)) {
		// A restore's cutoff lies between the backup and the restore, in the
		// past; a future one would also end every session created since.
		future = true
		errs = append(errs, fmt.Errorf("--before %s is in the future (now is %s): give a time after the backup was taken and before any replica served from the restored store",
			formatCutoff(t), formatCutoff(now.Truncate(time.Second))))
	} else {
		cutoff = t
	}
	// A revoked session deleted while its access tokens still verify drops
	// out of the revocation list verifiers start from: refuse a retention
	// shorter than the default access-token lifetime plus leeway, the
	// least any server keeps them.
	if least := (server.Config{}).RevokedSessionRetention(); retention < 0 {
		errs = append(errs, errors.New("--revoked-session-retention must not be negative"))
	} else if retention > 0 && retention < least {
		errs = append(errs, fmt.Errorf("--revoked-session-retention %v is shorter than an access token can verify (%v with the default access TTL): give the servers' tokens.revoked_session_retention, or 0", retention, least))
	}
	if future {
		fmt.Fprintf(e.stderr, "latch sessions revoke: %v\n", errors.Join(errs...))
		return errUsage
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	store, err := sf.open(ctx, slog.New(slog.DiscardHandler), retention)
	if err != nil {
		return err
	}
	defer store.Close()
	res, err := revokeSessionsBefore(ctx, store, cutoff, now)
	if err != nil {
		return fmt.Errorf("revoked %d sessions, then: %w (run the command again with --before %s to finish)", res.revoked, err, formatCutoff(cutoff))
	}
	fmt.Fprintf(e.stdout, "revoked %d sessions of %d users created before %s; kept %d live sessions created at or after it\n",
		res.revoked, res.users, formatCutoff(cutoff), res.kept)
	return nil
}

// maxCutoffAhead is how far ahead of this machine's clock --before may be,
// for a cutoff read from a clock a little ahead of it.
const maxCutoffAhead = time.Minute

// formatCutoff writes t as RFC 3339 in UTC, with the fraction of a second
// only if t has one, so that the printed cutoff given back as --before is
// the same instant.
func formatCutoff(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// sessionsStore is what revokeSessionsBefore needs of a store.
type sessionsStore interface {
	ListUsers(ctx context.Context, afterID string, limit int) ([]storage.User, error)
	ListUserSessions(ctx context.Context, userID string) ([]storage.Session, error)
	RevokeSession(ctx context.Context, id, reason string, now time.Time) (storage.Session, bool, error)
}

// revokeResult counts what revokeSessionsBefore did.
type revokeResult struct {
	revoked int // sessions it revoked
	users   int // users with at least one revoked session
	kept    int // sessions live at now and created at or after the cutoff
}

// revokeSessionsBefore revokes, with storage.ReasonRestored, every session
// live at now and created before cutoff, of every user, and counts, in the
// same walk, the live sessions it keeps. Each revocation is its own
// transaction: stopped part-way, it can be run again, and what it returns
// counts what it had done.
func revokeSessionsBefore(ctx context.Context, store sessionsStore, cutoff, now time.Time) (revokeResult, error) {
	const page = 500
	var res revokeResult
	after := ""
	for {
		us, err := store.ListUsers(ctx, after, page)
		if err != nil {
			return res, fmt.Errorf("list users: %w", err)
		}
		for _, u := range us {
			ss, err := store.ListUserSessions(ctx, u.ID)
			if err != nil {
				return res, fmt.Errorf("list sessions of user %s: %w", u.ID, err)
			}
			counted := false
			for _, s := range ss {
				if !s.Live(now) {
					continue
				}
				if !s.CreatedAt.Before(cutoff) {
					res.kept++
					continue
				}
				_, changed, err := store.RevokeSession(ctx, s.ID, storage.ReasonRestored, now)
				if err != nil && !errors.Is(err, storage.ErrNotFound) { // gone meanwhile: nothing to revoke
					return res, fmt.Errorf("revoke session %s: %w", s.ID, err)
				}
				if changed {
					res.revoked++
					if !counted {
						res.users, counted = res.users+1, true
					}
				}
			}
		}
		if len(us) < page {
			return res, nil
		}
		after = us[len(us)-1].ID
	}
}
