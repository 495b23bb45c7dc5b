// Package bolt implements storage.Store on a single bbolt file: the embedded
// default backend of Latch, for one node.
//
// # Layout
//
// Every bucket is created at Open, in one transaction:
//
//	meta         "schema" → schema version ("2")
//	users        user id → user record
//	emails       normalised email → user id
//	sessions     session id → session record
//	refresh      refresh-token digest (32 bytes) → session id, for every
//	             digest a session ever issued (so reuse is recognised)
//	sessdigests  session id, 0x00, digest → empty (to delete a session's
//	             digests when it is swept)
//	denied       jti → expiry (8 bytes, big-endian unix nanoseconds)
//	expiry       expiry (8 bytes), kind ('s' session, 'j' jti), id → empty:
//	             the sweeper's index, scanned in time order
//	keys         key id → signing-key record
//	sessstate    session id → revoked-at, idle and absolute expiry (24 bytes):
//	             what the per-request revocation check reads, without
//	             decoding the whole session record
//	usersessions user id, 0x00, session id → empty: every stored session of
//	             a user, for administration (list, log out everywhere,
//	             delete); written with the session, deleted when it is swept
//
// Open upgrades an older layout in its one transaction (migrate.go): schema
// "1" files get the usersessions index built from the sessions bucket. An
// older Latch refuses a file at a newer schema version.
//
// Records are encoded by storage/internal/record (one version byte, then
// JSON; shared with storage/etcd), so that the encoding can evolve without
// a migration of old rows.
//
// # Durability
//
// Every write commits with fsync before its method returns; there is no
// option to turn that off. Writes that arrive together (refresh rotations,
// session creations, revocations) share one commit through bbolt's Batch,
// whose functions are written to be safely re-run.
package bolt
