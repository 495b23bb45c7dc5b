// Package bolt implements storage.Store on a single bbolt file: the embedded
// default backend of Latch, for one node.
//
// # Layout
//
// Every bucket is created at Open, in one transaction:
//
//	meta         "schema" → schema version ("3")
//	users        user id → user record
//	emails       normalised email → user id
//	sessions     session id → session record
//	refresh      refresh-token digest (32 bytes) → session id [0x00, the
//	             digest that was current when this one was issued], for
//	             every digest a session ever issued (so reuse is
//	             recognised); the links chain a session's digests from its
//	             current one, so deleting the session deletes them all
//	             (at most 256 per sweeper call; see DeleteExpired)
//	sessdigests  session id, 0x00, digest → empty: schema 2's list of a
//	             session's digests; schema 3 writes none, and deletes a
//	             session's entries with it
//	denied       jti → expiry (8 bytes, big-endian unix nanoseconds)
//	expiry       expiry (8 bytes), kind ('s' session, 'j' jti), id → empty:
//	             the sweeper's index, scanned in time order. A session's
//	             entry is a lower bound of its expiry (filed at creation;
//	             rotations do not move it): the sweeper re-files a session
//	             that ends later instead of deleting it
//	keys         key id → signing-key record
//	sessstate    session id → revoked-at, idle and absolute expiry (24 bytes):
//	             what the per-request revocation check reads, without
//	             the session record. Written at creation and revocation
//	             (and by the sweeper's re-filing), not by rotations:
//	             revoked-at and absolute expiry are exact, the idle expiry
//	             is a lower bound
//	usersessions user id, 0x00, session id → empty: every stored session of
//	             a user, for administration (list, log out everywhere,
//	             delete); written with the session, deleted when it is swept
//
// So a refresh rotation writes two rows, the session record and its new
// digest's refresh entry: two leaf pages of a large file, where schema 2
// wrote five rows (a sessdigests entry, the summary and an expiry move
// besides).
//
// Open upgrades an older layout in its one transaction (migrate.go): schema
// "1" files get the usersessions index built from the sessions bucket;
// schema "2" → "3" rewrites nothing (schema 2's exact summaries and expiry
// entries are valid lower bounds, its unlinked refresh entries are still
// found through sessdigests). An older Latch refuses a file at a newer
// schema version.
//
// Records are encoded by storage/internal/record (one version byte; shared
// with storage/etcd): sessions as the compact binary version 2 (~150 bytes
// against ~460 as JSON), users and keys as JSON. Session records written
// as JSON by schemas 1 and 2 stay readable and become version 2 when next
// written, so the upgrade rewrites no rows.
//
// # Durability
//
// Every write commits with fsync before its method returns; there is no
// option to turn that off. Writes that arrive together (refresh rotations,
// session creations, revocations) share one commit through the group
// committer (storage/bolt/groupcommit), whose functions are written to be
// safely re-run.
package bolt
