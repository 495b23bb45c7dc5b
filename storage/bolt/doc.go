// Package bolt implements storage.Store on a single bbolt file: the embedded
// default backend of Latch, for one node.
//
// # Layout
//
// Every bucket is created at Open, in one transaction:
//
//	meta         "schema" → schema version ("5")
//	users        user id → user record
//	emails       normalised email → user id
//	sessions     session id → session record, which holds the digests of
//	             the session's current refresh token and of the one before
//	             it: a session's rows do not grow with its rotations (older
//	             tokens are recognised by the generation they carry)
//	denied       jti → expiry (8 bytes, big-endian unix nanoseconds)
//	expiry       expiry (8 bytes), kind ('s' session, 'j' jti), id → empty:
//	             the sweeper's index, scanned in time order; one entry
//	             per session. A live session's entry is a lower bound of
//	             its expiry (filed at creation; rotations do not move it):
//	             the sweeper re-files a session that ends later instead of
//	             deleting it. Its revocation files it again, at the time
//	             it may be deleted (WithRevokedSessionRetention)
//	keys         key id → signing-key record
//	refreshkeys  key id → refresh-token MAC secret record
//	sessstate    session id → session summary record (revoked-at, idle and
//	             absolute expiry): what the per-request revocation check
//	             reads, without the session record. Written at creation and revocation
//	             (and by the sweeper's re-filing), not by rotations:
//	             revoked-at and absolute expiry are exact, the idle expiry
//	             is a lower bound
//	usersessions user id, 0x00, session id → empty: every stored session of
//	             a user, for administration (list, log out everywhere,
//	             delete); written with the session, deleted when it is swept
//
// So a refresh rotation writes one row, the session record: one leaf page
// of a large file, and no new key.
//
// Open refuses a file whose schema version is not "5", with an error that
// names both versions; it never rewrites another layout.
//
// Records (users, sessions, session summaries, signing keys, refresh-token
// secrets) are encoded by storage/internal/record, the one encoding
// storage/etcd writes too.
//
// # Durability
//
// Every write commits with fsync before its method returns; there is no
// option to turn that off. Writes that arrive together (refresh rotations,
// session creations, revocations) share one commit through the group
// committer (storage/bolt/groupcommit), whose functions are written to be
// safely re-run.
package bolt
