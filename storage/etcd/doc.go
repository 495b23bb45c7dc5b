// Package etcd implements storage.Store on an etcd v3 cluster, so that
// several Latch processes share users, sessions, revocations and signing
// keys. It also implements storage.RevocationFeed: an etcd watch tells every
// process of the revocations the others commit; and storage.SharedLimits,
// so that per-account login budgets hold across processes.
//
// # Layout
//
// Every key lives under a prefix (default "/latch/"); ids are stored as
// given (they may not contain NUL, which separates composite keys):
//
//	meta/schema                  schema version ("3"; Open refuses any
//	                             other)
//	meta/keyset                  guard of the signing-key set: every change
//	                             of the set rewrites it, and every change
//	                             compares its revision (so two processes
//	                             never activate two keys)
//	users/<id>                   user record
//	emails/<email>               user id (unique index, same Txn as the user)
//	sessions/<id>                session record                          [L]
//	sessstate/<id>               session summary record (revoked-at, idle
//	                             and absolute expiry), written with the
//	                             session record: what the per-request
//	                             revocation check and CountLiveSessions
//	                             read                                    [L]
//	usersessions/<uid>\0<sid>    empty (a user's sessions)          [A, L]
//	revocations/session/<sid>    expiry of a revoked session             [L]
//	revocations/jti/<jti>        expiry of a denied access token         [L]
//	keys/<kid>                   signing-key record
//	meta/refreshkeyset           guard of the refresh-key set, as
//	                             meta/keyset is of the signing keys
//	refreshkeys/<id>             refresh-token MAC secret record
//	userfences/<uid>             see "Revoking every session of a user"  [L]
//	limits/<digest>              a shared token bucket (storage.SharedLimits):
//	                             the time it is full again; the key is the
//	                             SHA-256 of the bucket's name, base64url,
//	                             so no email is stored for it; the lease
//	                             ends after that time                    [L]
//
// Records are encoded by storage/internal/record, the one encoding
// storage/bolt writes too. Expiries are 8 bytes, big-endian unix
// nanoseconds.
//
// # Consistency
//
// Every read is linearizable and every write is one etcd Txn, committed by
// a quorum (etcd fsyncs its log before it acknowledges). Read-modify-write
// operations (refresh rotation, revocation, user updates, key-set changes)
// read, decide, and commit with a Txn that compares the ModRevision of what
// they read; when another process got there first the Txn fails and the
// operation starts again from a fresh read. So of any number of concurrent
// rotations of one refresh token, across any number of processes, exactly
// one succeeds, and a reuse detection's revocation is committed before
// ErrRefreshTokenReused is returned.
//
// # Expiry
//
// Logical expiry is always judged by the now the caller passes (or the time
// carried by the row, such as a rotation's Now), never by etcd. Leases are
// only the garbage collector: rows marked [L] above are attached to a lease
// that ends after the row's expiry, rows marked [A] to one that ends after
// the session's absolute expiry (which never moves, so rotations never
// re-attach them). A revocation moves every key of the session (record,
// state row, revocation row and user index entry, [A, L]) in its own Txn
// to one lease, which ends after the session's retention
// (WithRevokedSessionRetention; see "Revoked sessions" in package
// storage): a revoked session is gone that long after its revocation,
// whatever revoked it, not when it would have expired. A session's keys do not grow with its rotations: the
// record holds the digests of its current and previous refresh tokens, and
// older tokens are recognised by the generation they carry. A lease's TTL is the row's
// remaining life judged against the operation's time, plus a slack that
// covers clock skew between processes, rounded up to a bucket so that rows
// expiring together share one lease. Because of the leases, `latch serve`
// runs no sweeper on etcd; DeleteExpired still deletes what expired before
// now (it scans, so it is meant for tests and tools, not for every minute).
//
// # Revoking every session of a user
//
// etcd refuses a Txn with more than --max-txn-ops operations (128 by
// default; tell the store with WithMaxTxnOps). Revoking a session costs 4.
// RevokeUserSessions and DeleteUser are one Txn whenever the user's live
// sessions fit (32 and 31 at the default), exactly as the storage contract
// says. For a user with more, they first commit the user's fence
//
//	userfences/<uid>             revocation time and reason: sessions
//	                             created before its ModRevision are being
//	                             revoked                                [L]
//
// and then revoke the sessions a Txn-full at a time (DeleteUser deletes the
// user, its email index and the fence with the last one). The fence is what
// keeps the guarantee: from its commit on, RotateRefreshToken refuses every
// session created before it (its Txn compares the fence's ModRevision with
// the session's CreateRevision, at no extra read) and revokes it with the
// fence's time and reason. What differs from one Txn: until the call
// returns, access tokens of sessions not yet reached pass
// AccessTokenRevoked (which reads no fence); when it returns nil, every
// session live at now is revoked; if it fails part-way, refreshes stay
// refused and repeating the call finishes the work (DeleteUser keeps the
// user until its last Txn, so it can be repeated).
package etcd
