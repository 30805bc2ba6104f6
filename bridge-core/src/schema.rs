//! The SQL schema and statements of a replica's store, as plain SQLite text.
//!
//! The native host runs them through rusqlite on its database file and the edge worker's
//! Durable Object runs the very same text on its SQLite-backed storage, so both stores have
//! one layout and one meaning. Nothing here executes anything: these are constants.
//!
//! Conventions:
//! - Parameters are numbered (`?1`, `?2`, ...) and documented on each statement; a statement
//!   may use one parameter twice ([`TRIM_CHANNEL`]), so bind by number.
//! - JSON columns hold the `serde_json` form of the named `bridge-core` type
//!   ([`crate::VersionVector`], [`crate::Stamp`], [`crate::Message`]).
//! - `docs.state` holds a [`crate::DocState`] in one of two forms, told apart by the SQL type
//!   of the value: a BLOB is the compact binary form ([`crate::codec::encode_state`], written
//!   since schema 3), TEXT the `serde_json` form of schema 1 and 2. Migration 3 cannot
//!   produce the binary form in SQL, so it leaves old rows as they are (**lazy migration**):
//!   readers accept both ([`crate::codec::StateColumn`]) and a row is rewritten as a BLOB
//!   when its document is next written. On top of that, a host that has just run migration
//!   3 on an existing store may rewrite every old row at once, in pages of bounded size
//!   ([`SELECT_STATES_PAGE`], [`UPDATE_STATE`]): the native host does, then `VACUUM`s, so an
//!   upgraded database is as compact as a new one; the Durable Object does not (a request's
//!   CPU time is limited), its old rows shrink as they are written. A rewrite cut short
//!   (a crash) leaves the rest to the lazy path: nothing depends on it having finished.
//! - Spaces and replicas are small integers inside `docs` and `dots`: `spaces.sid` (one per
//!   space, from 1) and `replicas.rid` (one per replica id per space, from 1). Statements
//!   take the space id (read once with [`SELECT_SPACE_ID`]) and a replica's 16-hex-digit
//!   text, which they map with a subquery; [`ENSURE_REPLICA`] gives a replica its number
//!   before a dot of it is stored. `meta` and `messages` stay keyed by the space's name.
//! - Connection settings (WAL, `synchronous=FULL`) are the host's business and are not here:
//!   a Durable Object may not set them, and does not need to.
//! - Several spaces share one database (the native host); a Durable Object holds one.
//!
//! Migrating: run [`CREATE_MIGRATIONS_TABLE`], read [`SELECT_SCHEMA_VERSION`], refuse a
//! version above [`SCHEMA_VERSION`] (a newer build wrote it), then for each entry of
//! [`MIGRATIONS`] past the stored version run it and [`INSERT_MIGRATION`] in one transaction.

/// Schema migrations, applied in order; migration `i` (0-based) brings the schema to
/// version `i + 1`. Never edit a released entry: append a new one.
pub const MIGRATIONS: &[&str] = &[
    // 1: spaces with their replica ids, sync metadata, documents, retained messages.
    "CREATE TABLE spaces (
        space TEXT PRIMARY KEY,
        replica TEXT NOT NULL,
        created_ms INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE meta (
        space TEXT PRIMARY KEY REFERENCES spaces(space),
        vector TEXT NOT NULL,
        clock TEXT NOT NULL,
        message_seen TEXT NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE docs (
        space TEXT NOT NULL,
        collection TEXT NOT NULL,
        id TEXT NOT NULL,
        state TEXT NOT NULL,
        PRIMARY KEY (space, collection, id)
     ) WITHOUT ROWID;
     CREATE TABLE messages (
        space TEXT NOT NULL,
        offset INTEGER NOT NULL,
        channel TEXT NOT NULL,
        message TEXT NOT NULL,
        PRIMARY KEY (space, offset)
     ) WITHOUT ROWID;
     CREATE INDEX messages_by_channel ON messages (space, channel, offset);",
    // 2: the store is the replica's durable layer. The live-dot index (every sibling's dot,
    // to its document: what a peer at a vector lacks is a range scan per replica) and each
    // document's sibling count (open conflicts by a partial index), filled from the stored
    // states. Replica ids are the 16-hex-digit text of `ReplicaId`, as in the state JSON.
    "CREATE TABLE dots (
        space TEXT NOT NULL,
        replica TEXT NOT NULL,
        counter INTEGER NOT NULL,
        collection TEXT NOT NULL,
        id TEXT NOT NULL,
        PRIMARY KEY (space, replica, counter)
     ) WITHOUT ROWID;
     CREATE INDEX dots_by_doc ON dots (space, collection, id);
     ALTER TABLE docs ADD COLUMN siblings INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX docs_in_conflict ON docs (space, collection, id) WHERE siblings > 1;
     INSERT INTO dots (space, replica, counter, collection, id)
        SELECT d.space, json_extract(s.value, '$.dot.replica'),
               json_extract(s.value, '$.dot.counter'), d.collection, d.id
        FROM docs d, json_each(d.state, '$.siblings') s;
     UPDATE docs SET siblings = json_array_length(state, '$.siblings');",
    // 3: compact states. Each space gets a small integer (`spaces.sid`) and each replica
    // a small integer per space (`replicas`); `docs` and `dots` are keyed by them. `dots`
    // loses `dots_by_doc`: a host drops a document's old dots by reading them from the state
    // it replaces. `docs.state` becomes a BLOB column: the rows copied here keep their JSON
    // TEXT, which readers still understand, and each is rewritten in the binary form
    // (`codec::encode_state`) when its document is next written.
    "ALTER TABLE spaces ADD COLUMN sid INTEGER;
     UPDATE spaces SET sid = (SELECT COUNT(*) FROM spaces AS s WHERE s.space <= spaces.space);
     CREATE UNIQUE INDEX spaces_by_sid ON spaces (sid);
     CREATE TABLE replicas (
        sid INTEGER NOT NULL,
        replica TEXT NOT NULL,
        rid INTEGER NOT NULL,
        PRIMARY KEY (sid, replica)
     ) WITHOUT ROWID;
     CREATE UNIQUE INDEX replicas_by_rid ON replicas (sid, rid);
     INSERT INTO replicas (sid, replica, rid)
        SELECT s.sid, d.replica, ROW_NUMBER() OVER (PARTITION BY s.sid ORDER BY d.replica)
        FROM (SELECT DISTINCT space, replica FROM dots) AS d JOIN spaces AS s USING (space);
     CREATE TABLE docs_v3 (
        sid INTEGER NOT NULL,
        collection TEXT NOT NULL,
        id TEXT NOT NULL,
        state BLOB NOT NULL,
        siblings INTEGER NOT NULL,
        PRIMARY KEY (sid, collection, id)
     ) WITHOUT ROWID;
     INSERT INTO docs_v3 (sid, collection, id, state, siblings)
        SELECT s.sid, d.collection, d.id, d.state, d.siblings
        FROM docs AS d JOIN spaces AS s USING (space) ORDER BY s.sid, d.collection, d.id;
     DROP INDEX docs_in_conflict;
     DROP TABLE docs;
     ALTER TABLE docs_v3 RENAME TO docs;
     CREATE INDEX docs_in_conflict ON docs (sid, collection, id) WHERE siblings > 1;
     CREATE TABLE dots_v3 (
        sid INTEGER NOT NULL,
        rid INTEGER NOT NULL,
        counter INTEGER NOT NULL,
        collection TEXT NOT NULL,
        id TEXT NOT NULL,
        PRIMARY KEY (sid, rid, counter)
     ) WITHOUT ROWID;
     INSERT INTO dots_v3 (sid, rid, counter, collection, id)
        SELECT r.sid, r.rid, d.counter, d.collection, d.id
        FROM dots AS d JOIN spaces AS s USING (space)
        JOIN replicas AS r ON r.sid = s.sid AND r.replica = d.replica
        ORDER BY r.sid, r.rid, d.counter;
     DROP INDEX dots_by_doc;
     DROP TABLE dots;
     ALTER TABLE dots_v3 RENAME TO dots;",
    // 4: the stable horizon and the table of peers that dialed this replica, per space
    // (`replica::Stability` as JSON): a peer that once dialed holds the horizon back until
    // it reports again, across restarts.
    "CREATE TABLE stability (
        sid INTEGER PRIMARY KEY,
        record TEXT NOT NULL
     );",
    // 5: tombstone collection. `docs.dead` is 1 when every sibling of the state is a
    // tombstone; the partial index lists those documents, the only ones collection may
    // remove. Rows written before keep 0 until their document is next written (a host may
    // set it at once with [`SELECT_STATES_PAGE`] and [`UPDATE_DEAD`]).
    "ALTER TABLE docs ADD COLUMN dead INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX docs_dead ON docs (sid, collection, id) WHERE dead = 1;",
    // 6: partial replication. `spaces.collections` is the JSON array of the collection
    // patterns the space's replica replicates (NULL: the whole space), fixed when the space
    // is created: its vector is complete for those only.
    "ALTER TABLE spaces ADD COLUMN collections TEXT;",
    // 7: the number of documents of each space, kept by triggers as rows come and go, so a
    // count ([`COUNT_SPACE_DOCS`]: status, metrics, a host's start) reads one row instead of
    // every document. The count of the rows already there is taken once, here.
    "ALTER TABLE spaces ADD COLUMN docs INTEGER NOT NULL DEFAULT 0;
     UPDATE spaces SET docs = (SELECT COUNT(*) FROM docs WHERE docs.sid = spaces.sid);
     CREATE TRIGGER docs_counted_in AFTER INSERT ON docs BEGIN
        UPDATE spaces SET docs = docs + 1 WHERE sid = NEW.sid;
     END;
     CREATE TRIGGER docs_counted_out AFTER DELETE ON docs BEGIN
        UPDATE spaces SET docs = docs - 1 WHERE sid = OLD.sid;
     END;",
];

/// The schema version this build writes: the number of [`MIGRATIONS`].
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The table that records which migrations ran.
pub const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS migrations (
    version INTEGER PRIMARY KEY,
    applied_ms INTEGER NOT NULL
 )";

/// → one row, one integer: the stored schema version (0 for a new database).
pub const SELECT_SCHEMA_VERSION: &str = "SELECT COALESCE(MAX(version), 0) FROM migrations";

/// ?1 version, ?2 applied_ms.
pub const INSERT_MIGRATION: &str = "INSERT INTO migrations (version, applied_ms) VALUES (?1, ?2)";

/// → (space, replica) for every space, by name.
pub const SELECT_SPACES: &str = "SELECT space, replica FROM spaces ORDER BY space";

/// ?1 space → (replica): the space's replica id (hex), if the space exists.
pub const SELECT_REPLICA: &str = "SELECT replica FROM spaces WHERE space = ?1";

/// ?1 space, ?2 replica (hex), ?3 created_ms; the space gets the next free space id.
pub const INSERT_SPACE: &str = "INSERT INTO spaces (space, replica, created_ms, sid)
 VALUES (?1, ?2, ?3, (SELECT COALESCE(MAX(sid), 0) + 1 FROM spaces))";

/// ?1 space → (collections): the JSON array of the collection patterns the space's replica
/// replicates (`spaces.collections`, NULL: the whole space).
pub const SELECT_SPACE_COLLECTIONS: &str = "SELECT collections FROM spaces WHERE space = ?1";

/// ?1 space, ?2 collections (a JSON array): set when the space is created.
pub const UPDATE_SPACE_COLLECTIONS: &str = "UPDATE spaces SET collections = ?2 WHERE space = ?1";

/// ?1 space → (sid): the space's integer id, which every statement on `docs` and `dots`
/// takes in place of its name.
pub const SELECT_SPACE_ID: &str = "SELECT sid FROM spaces WHERE space = ?1";

/// ?1 space id, ?2 replica (hex): gives the replica the next free number in the space
/// unless it has one. Run it for each replica of a batch's dots before [`INSERT_DOT`].
pub const ENSURE_REPLICA: &str = "INSERT OR IGNORE INTO replicas (sid, replica, rid)
 VALUES (?1, ?2, (SELECT COALESCE(MAX(rid), 0) + 1 FROM replicas WHERE sid = ?1))";

/// ?1 space → (vector, clock, message_seen), all JSON.
pub const SELECT_META: &str = "SELECT vector, clock, message_seen FROM meta WHERE space = ?1";

/// ?1 space id → (collection, id, state) for every document of the space.
pub const SELECT_DOCS: &str = "SELECT collection, id, state FROM docs WHERE sid = ?1";

/// ?1 space → (offset, message JSON) for every retained message, oldest first.
pub const SELECT_MESSAGES: &str =
    "SELECT offset, message FROM messages WHERE space = ?1 ORDER BY offset";

/// ?1 space → one integer: the highest offset of a retained message (0 for none), all a
/// store-backed replica reads of its messages at start.
pub const SELECT_LAST_OFFSET: &str =
    "SELECT COALESCE(MAX(offset), 0) FROM messages WHERE space = ?1";

/// ?1 space id, ?2 channel, ?3 offset after which to start, ?4 last offset, ?5 limit →
/// (offset, message JSON): a page of one channel's retained messages, oldest first (a range
/// of `messages_by_channel`): a subscriber's replay from its cursor.
pub const SELECT_CHANNEL_AFTER: &str = "SELECT offset, message FROM messages
 WHERE space = (SELECT space FROM spaces WHERE sid = ?1) AND channel = ?2
   AND offset > ?3 AND offset <= ?4
 ORDER BY offset LIMIT ?5";

/// ?1 space id, ?2 offset after which to start, ?3 last offset, ?4 limit → (offset, message
/// JSON): a page of every channel's retained messages, oldest first: a peer's replay.
pub const SELECT_MESSAGES_AFTER: &str = "SELECT offset, message FROM messages
 WHERE space = (SELECT space FROM spaces WHERE sid = ?1) AND offset > ?2 AND offset <= ?3
 ORDER BY offset LIMIT ?4";

/// ?1 space id, ?2 collection, ?3 id, ?4 state (BLOB, [`crate::codec::encode_state`]),
/// ?5 number of siblings, ?6 1 when every sibling is a tombstone else 0
/// ([`crate::DocState::is_dead`]): insert or replace a document's state. In the same
/// transaction, before it: read the state it replaces ([`SELECT_DOC`]) and [`DELETE_DOT`]
/// each of that state's dots the new one no longer holds; after it, [`INSERT_DOT`] each new
/// dot.
pub const UPSERT_DOC: &str =
    "INSERT INTO docs (sid, collection, id, state, siblings, dead) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
 ON CONFLICT (sid, collection, id) DO UPDATE SET state = excluded.state,
    siblings = excluded.siblings, dead = excluded.dead";
/// ?1 space id, ?2 collection, ?3 id: removes a collected document
/// ([`crate::replica::PersistBatch::collected`]). In the same transaction, before it: read
/// its state ([`SELECT_DOC`]) and [`DELETE_DOT`] each of its dots.
pub const DELETE_DOC: &str = "DELETE FROM docs WHERE sid = ?1 AND collection = ?2 AND id = ?3";
/// ?1 space id, ?2 collection, ?3 id after which to start (both '' for the first), ?4 limit
/// → (collection, id, state): a page of the documents whose siblings are all tombstones
/// (`docs_dead`), in key order: what collection looks at. `INDEXED BY`: SQLite 3.50.2 (the
/// native host's) would otherwise walk the primary key, every document of the space, for a
/// page of a few.
pub const SELECT_DEAD: &str = "SELECT collection, id, state FROM docs INDEXED BY docs_dead
 WHERE sid = ?1 AND dead = 1 AND (collection, id) > (?2, ?3)
 ORDER BY collection, id LIMIT ?4";
/// ?1 space id, ?2 collection, ?3 id, ?4 dead (1 or 0): sets one row's `dead` from its
/// state (a store brought to schema 5 whose rows were written before).
pub const UPDATE_DEAD: &str =
    "UPDATE docs SET dead = ?4 WHERE sid = ?1 AND collection = ?2 AND id = ?3";

/// ?1 space id, ?2 replica (hex), ?3 counter: drops one live dot (of a state being replaced).
/// A dot names one write, so it belongs to one document: no document key is needed.
pub const DELETE_DOT: &str = "DELETE FROM dots WHERE sid = ?1
 AND rid = (SELECT rid FROM replicas WHERE sid = ?1 AND replica = ?2) AND counter = ?3";

/// ?1 space id, ?2 replica (hex), ?3 counter, ?4 collection, ?5 id: one live dot of a
/// document. The replica must have its number ([`ENSURE_REPLICA`]); if not, the insert
/// fails (`rid` NULL) rather than losing the dot.
pub const INSERT_DOT: &str = "INSERT OR REPLACE INTO dots (sid, rid, counter, collection, id)
 VALUES (?1, (SELECT rid FROM replicas WHERE sid = ?1 AND replica = ?2), ?3, ?4, ?5)";

/// The schema version since which states are written as BLOBs (migration 3). A host that
/// has just brought an existing store to it may rewrite the older rows in batches
/// ([`SELECT_STATES_PAGE`], [`UPDATE_STATE`]) instead of waiting for their next write.
pub const BINARY_STATES_SINCE: i64 = 3;

/// The schema version since which `docs.dead` is written (migration 5). A host that has
/// just brought an existing store to it may set it for the older rows
/// ([`SELECT_STATES_PAGE`], [`UPDATE_DEAD`]); a row it does not set is collected only once
/// its document is next written.
pub const DEAD_SINCE: i64 = 5;
/// ?1 space id, ?2 collection, ?3 id after which to start (0, '', '' for the first), ?4 limit
/// → (sid, collection, id, state): a page of every space's documents in key order.
pub const SELECT_STATES_PAGE: &str = "SELECT sid, collection, id, state FROM docs
 WHERE (sid, collection, id) > (?1, ?2, ?3) ORDER BY sid, collection, id LIMIT ?4";

/// ?1 space id, ?2 collection, ?3 id, ?4 state (BLOB): rewrites one state in place (the
/// same state in the binary form; its dots and sibling count do not change).
pub const UPDATE_STATE: &str =
    "UPDATE docs SET state = ?4 WHERE sid = ?1 AND collection = ?2 AND id = ?3";

/// ?1 space id, ?2 collection, ?3 id → (state): one document (BLOB or, not yet rewritten
/// since schema 2, JSON TEXT).
pub const SELECT_DOC: &str =
    "SELECT state FROM docs WHERE sid = ?1 AND collection = ?2 AND id = ?3";

/// ?1 space id, ?2 collection, ?3 id after which to start ('' for the first), ?4 limit →
/// (id): a page of a collection's document ids (tombstones included), in order.
pub const SELECT_DOC_IDS: &str = "SELECT id FROM docs
 WHERE sid = ?1 AND collection = ?2 AND id > ?3 ORDER BY id LIMIT ?4";

/// ?1 space id, ?2 collection, ?3 id after which to start ('' for the first), ?4 limit →
/// (id, state): a page of a collection's documents with their states (tombstones
/// included), in id order: what an initial sync by key reads (`Replica::fill_page`).
pub const SELECT_DOC_STATES: &str = "SELECT id, state FROM docs
 WHERE sid = ?1 AND collection = ?2 AND id > ?3 ORDER BY id LIMIT ?4";

/// ?1 space id, ?2 replica (hex), ?3 counter after which to start, ?4 last counter, ?5 limit
/// → (counter, collection, id): a page of live dots of one replica, in counter order.
pub const SELECT_DOTS: &str = "SELECT counter, collection, id FROM dots
 WHERE sid = ?1 AND rid = (SELECT rid FROM replicas WHERE sid = ?1 AND replica = ?2)
   AND counter > ?3 AND counter <= ?4
 ORDER BY counter LIMIT ?5";

/// ?1 space id, ?2 replica (hex), ?3 counter after which to start, ?4 last counter, ?5 limit
/// → (counter, collection, id, state or NULL): [`SELECT_DOTS`] with each dot's document
/// state (as [`SELECT_DOC`] reads it) in the same read, so a delta reads a page of states in
/// one statement instead of one per document. A dot whose document row is missing comes
/// with NULL (a `LEFT JOIN`: the page is as long as [`SELECT_DOTS`]' would be).
pub const SELECT_DOT_STATES: &str = "SELECT d.counter, d.collection, d.id, docs.state FROM dots d
 LEFT JOIN docs ON docs.sid = d.sid AND docs.collection = d.collection AND docs.id = d.id
 WHERE d.sid = ?1 AND d.rid = (SELECT rid FROM replicas WHERE sid = ?1 AND replica = ?2)
   AND d.counter > ?3 AND d.counter <= ?4
 ORDER BY d.counter LIMIT ?5";

/// ?1 space id, ?2 collection ('' for every collection), ?3 collection after which to
/// start, ?4 id after which to start (both '' for the first), ?5 limit → (collection, id): a
/// page of documents with more than one sibling, in key order (`docs_in_conflict`, named
/// for the reason given at [`SELECT_DEAD`]).
pub const SELECT_CONFLICTED: &str = "SELECT collection, id FROM docs INDEXED BY docs_in_conflict
 WHERE sid = ?1 AND siblings > 1 AND (?2 = '' OR collection = ?2)
   AND (collection > ?3 OR (collection = ?3 AND id > ?4))
 ORDER BY collection, id LIMIT ?5";

/// ?1 space id → one integer: the space's documents, tombstones included (the count the
/// triggers of migration 7 keep: one row read, whatever the space's size).
pub const COUNT_SPACE_DOCS: &str = "SELECT docs FROM spaces WHERE sid = ?1";

/// ?1 space id, ?2 collection ('' for the first) → (collection): the first collection above
/// ?2 holding a document (one index seek).
pub const SELECT_NEXT_COLLECTION: &str = "SELECT collection FROM docs
 WHERE sid = ?1 AND collection > ?2 ORDER BY collection LIMIT 1";

/// ?1 space id, ?2 collection → (id, state): every document of one collection (used for
/// the few `_config` entries a replica keeps in memory).
pub const SELECT_COLLECTION_DOCS: &str =
    "SELECT id, state FROM docs WHERE sid = ?1 AND collection = ?2 ORDER BY id";

/// ?1 space, ?2 vector JSON, ?3 clock JSON, ?4 message_seen JSON.
pub const UPSERT_META: &str =
    "INSERT INTO meta (space, vector, clock, message_seen) VALUES (?1, ?2, ?3, ?4)
 ON CONFLICT (space) DO UPDATE SET vector = excluded.vector,
    clock = excluded.clock, message_seen = excluded.message_seen";

/// ?1 space id, ?2 the space's `replica::Stability` as JSON: written with a batch that
/// carries one ([`crate::PersistBatch::stability`]).
pub const UPSERT_STABILITY: &str = "INSERT INTO stability (sid, record) VALUES (?1, ?2)
 ON CONFLICT (sid) DO UPDATE SET record = excluded.record";

/// ?1 space id → (record): the space's stability as last written, read at start.
pub const SELECT_STABILITY: &str = "SELECT record FROM stability WHERE sid = ?1";

/// ?1 space, ?2 offset, ?3 channel, ?4 message JSON.
pub const UPSERT_MESSAGE: &str = "INSERT OR REPLACE INTO messages (space, offset, channel, message)
 VALUES (?1, ?2, ?3, ?4)";

/// ?1 space, ?2 channel, ?3 how many to keep: drops all but the newest messages of a channel.
/// Two range seeks on `messages_by_channel` (the newest offset to drop, then everything at or
/// below it), so trimming costs the rows removed, not the rows kept; with no more than ?3
/// messages the subquery is NULL and nothing is deleted.
pub const TRIM_CHANNEL: &str =
    "DELETE FROM messages WHERE space = ?1 AND channel = ?2 AND offset <=
   (SELECT offset FROM messages WHERE space = ?1 AND channel = ?2
    ORDER BY offset DESC LIMIT 1 OFFSET ?3)";

/// → one integer each: rows per table, for status and metrics.
pub const COUNT_SPACES: &str = "SELECT COUNT(*) FROM spaces";
/// The documents of every space, from the kept counts (schema 7 and later).
pub const SUM_SPACE_DOCS: &str = "SELECT COALESCE(SUM(docs), 0) FROM spaces";
/// Every row of `docs`, counted one by one: for checking a backup of any version, not for a
/// host that is serving (it reads the whole table; [`SUM_SPACE_DOCS`] reads the spaces).
pub const COUNT_DOCS: &str = "SELECT COUNT(*) FROM docs";
/// See [`COUNT_SPACES`].
pub const COUNT_MESSAGES: &str = "SELECT COUNT(*) FROM messages";

/// The tables a store must hold, each with the schema version that created it: a store of
/// version `v` holds those created at `v` or below (a restore checks them, so a backup
/// taken by an older build still restores, and is migrated when a host opens it).
pub const TABLES: &[(&str, i64)] = &[
    ("migrations", 1),
    ("spaces", 1),
    ("meta", 1),
    ("docs", 1),
    ("messages", 1),
    ("dots", 2),
    ("replicas", 3),
    ("stability", 4),
];

/// The replicas whose dots a batch writes: run [`ENSURE_REPLICA`] for each before the
/// batch's [`INSERT_DOT`]s.
pub fn batch_replicas(batch: &crate::PersistBatch) -> std::collections::BTreeSet<crate::ReplicaId> {
    batch
        .docs
        .iter()
        .flat_map(|(_, state)| state.siblings.iter().map(|s| s.dot.replica))
        .collect()
}

/// What writing `new` over a row whose state held the dots `old` does to the live-dot index:
/// the dots to [`DELETE_DOT`] (before [`UPSERT_DOC`]) and those to [`INSERT_DOT`] (after it).
pub fn dot_changes(
    old: &[crate::Dot],
    new: &crate::DocState,
) -> (Vec<crate::Dot>, Vec<crate::Dot>) {
    let dropped = old.iter().copied().filter(|d| !new.has_dot(*d)).collect();
    let added = new
        .siblings
        .iter()
        .map(|s| s.dot)
        .filter(|d| !old.contains(d))
        .collect();
    (dropped, added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_changes_drop_the_replaced_and_add_the_new() {
        use crate::doc::{DocState, Sibling};
        use crate::{Dot, ReplicaId, Stamp, Tier};
        let r = ReplicaId(7);
        let sib = |c| Sibling {
            dot: Dot::new(r, c),
            stamp: Stamp::default(),
            tier: Tier::Local,
            body: None,
        };
        let new = DocState {
            siblings: vec![sib(2), sib(3)],
            ..DocState::default()
        };
        let old = [Dot::new(r, 1), Dot::new(r, 2)];
        assert_eq!(
            dot_changes(&old, &new),
            (vec![Dot::new(r, 1)], vec![Dot::new(r, 3)])
        );
    }

    #[test]
    fn version_matches_migrations() {
        assert_eq!(SCHEMA_VERSION, 7);
        for (t, since) in TABLES.iter().filter(|(t, _)| *t != "migrations") {
            let created = MIGRATIONS
                .iter()
                .position(|m| m.contains(&format!("CREATE TABLE {t} ")));
            assert_eq!(created.map(|i| i as i64 + 1), Some(*since), "{t}");
        }
    }
}
