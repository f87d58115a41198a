//! Durable storage behind one trait, so the embedded store and the CQL store (issue #6) are
//! interchangeable. What is stored is the input log (each accepted event, personal values
//! already hashed, in processing order), the outputs it produced, the ledger index and source
//! positions, each group of events in one atomic commit. Because the entity logic is a
//! deterministic function of the log, state is rebuilt by replaying it: a crash between two
//! commits loses only events nobody was told were accepted.
//!
//! `open` picks the store the configuration names: [`RedbStore`] or [`crate::cql::CqlStore`].

use crate::codes::CodeRuns;
use omnistream_actors::cold::{Cold, Kind};
use omnistream_actors::engine::Emitted;
use omnistream_actors::{Output, Str};
use omnistream_schemas::Event;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Log sequence number → event JSON.
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Output sequence number → output JSON.
const OUTPUTS: TableDefinition<u64, &[u8]> = TableDefinition::new("outputs");
/// `member \0 seq` (seq big-endian) → ledger entry JSON.
const LEDGER: TableDefinition<&[u8], &[u8]> = TableDefinition::new("ledger");
/// Source name → position (offset or line) committed with the batch.
const POSITIONS: TableDefinition<&str, u64> = TableDefinition::new("positions");
/// Format version and other facts about the store.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// In `states.redb`: `kind tag ‖ key` → entity state as of the last checkpoint (see
/// [`omnistream_actors::cold`]).
const STATES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("states");
/// In `states.redb`: the last checkpoint's `seq` (8 bytes LE), `global`, `seen`,
/// `codes_filter` and `extras` blobs.
const CHECKPOINT: TableDefinition<&str, &[u8]> = TableDefinition::new("checkpoint");

/// The embedded store's page cache unless configured (`store-cache-mb`).
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;

/// The on-disk format this binary writes. Format 2 added entity checkpoints, kept in a
/// second file, `states.redb`, so that writing one never holds the log's single writer; a
/// format-1 store is read as one without a checkpoint and upgraded in place on open.
pub const FORMAT_VERSION: u64 = 2;

/// A store failure: what was being done, where, and why.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be opened: missing, damaged, or written by a newer version.
    #[error("store {path}: {why}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A CQL request failed for good (after its retries): which table and key.
    #[error("cql {op} {table} {key}: {why}")]
    Cql {
        /// What was being done.
        op: &'static str,
        /// The table.
        table: &'static str,
        /// The partition or row key.
        key: String,
        /// Why (the driver's error, with the attempts made).
        why: String,
    },
    /// The CQL database cannot be used: unreachable, not migrated, or a newer schema.
    #[error("cql keyspace {keyspace}: {why}")]
    Database {
        /// The keyspace.
        keyspace: String,
        /// Why.
        why: String,
    },
    /// No CQL node could be reached (refused, timed out, TLS handshake): the database may
    /// come back, unlike the errors above.
    #[error("cql keyspace {keyspace}: {why}")]
    Unreachable {
        /// The keyspace.
        keyspace: String,
        /// Why.
        why: String,
    },
    /// Another process writes the CQL keyspace (it holds the writer lease); it may stop, or
    /// its lease expire, so start-up waits for it (`store-wait-s`).
    #[error(
        "cql keyspace {keyspace}: another process writes it: {owner}; its writer lease ends in \
         {} unless that process renews it (two writers would corrupt the log)",
        seconds_left.map_or("a few seconds".to_string(), |s| format!("{s} s"))
    )]
    Held {
        /// The keyspace.
        keyspace: String,
        /// The lease's owner (place, listen address, run) and its pid and start.
        owner: String,
        /// Seconds its row has left on the node.
        seconds_left: Option<i32>,
    },
    /// The personal-data key is not the one the store was written with.
    #[error(
        "OMNISTREAM_PII_KEY: not the key this store was written with: personal values would \
         hash differently and no longer find their members; start with the store's key (keep \
         it in a file, OMNISTREAM_PII_KEY_FILE), or with a new data directory or keyspace for \
         a new key"
    )]
    PiiKey,
    /// A read or write failed.
    #[error("store {op} ({table}): {why}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The table.
        table: &'static str,
        /// Why.
        why: String,
    },
    /// The embedded store refuses every write after an earlier one failed on the disk (a
    /// full disk, an I/O error) until it is opened again: only a new start does that.
    #[error(
        "store {op} ({table}): {why}: the embedded store must be opened again after a write \
         failed on the disk (a full disk?)"
    )]
    Reopen {
        /// What was being done.
        op: &'static str,
        /// The table.
        table: &'static str,
        /// Why.
        why: String,
    },
}

impl StoreError {
    /// Whether only opening the store again (a new start of the process) can make it write.
    pub fn needs_reopen(&self) -> bool {
        matches!(self, StoreError::Reopen { .. })
    }

    /// A read or write that failed: [`StoreError::Reopen`] when the store refuses until it
    /// is opened again (`lost`), else [`StoreError::Io`].
    fn failed(op: &'static str, table: &'static str, why: String, lost: bool) -> StoreError {
        if lost {
            StoreError::Reopen { op, table, why }
        } else {
            StoreError::Io { op, table, why }
        }
    }
}

/// A state that failed to load from the store (the engine's cold tier, which reports text):
/// [`StoreError::Reopen`] when the text is redb's "previous I/O error" (a write failed on
/// the disk before), which only opening the store again clears.
pub fn load_error(why: String) -> StoreError {
    let lost = why.contains(&redb::Error::PreviousIo.to_string());
    StoreError::failed("load", "states", why, lost)
}

fn io(op: &'static str, table: &'static str) -> impl Fn(redb::Error) -> StoreError {
    // redb's PreviousIo: its own word for "a write failed on the disk before: close and
    // re-open"
    move |e| {
        StoreError::failed(
            op,
            table,
            e.to_string(),
            matches!(e, redb::Error::PreviousIo),
        )
    }
}

/// Table `def` of `db` in a read transaction of its own (named `name` in errors): readers
/// see the last commit, beside the writer.
fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    db: &Database,
    def: TableDefinition<K, V>,
    name: &'static str,
) -> Result<redb::ReadOnlyTable<K, V>, StoreError> {
    let tx = db.begin_read().map_err(|e| io("read", name)(e.into()))?;
    tx.open_table(def).map_err(|e| io("open", name)(e.into()))
}

/// The position row that holds a keyed fingerprint of the personal-data key.
pub const PII_KEY_CHECK: &str = "omnistream.pii-key-check";

/// A fingerprint of the personal-data key: a hash of a constant hashed with the key, so it
/// tells keys apart without revealing them (never 0).
pub fn pii_key_fingerprint(key: &[u8]) -> u64 {
    let h = omnistream_schemas::Pii::new(key)
        .hash(&omnistream_schemas::IdKind::MemberId, "pii-key-check");
    crate::fluvio::mapping::stable_hash(h.as_bytes()).max(1)
}

/// Checks that `key` is the personal-data key `store` was written with: a store's log and
/// states hold hashes, so another key would split every member from the identities already
/// known, in silence. On a store that holds no fingerprint yet (new, or written before the
/// check existed), the row to record with the next commit.
pub fn pii_key_unrecorded(
    store: &dyn Store,
    key: &[u8],
) -> Result<Option<(String, u64)>, StoreError> {
    key_against(store.position(PII_KEY_CHECK)?, key)
}

/// [`pii_key_unrecorded`] against the fingerprint a store holds (`stored`, None: none).
fn key_against(stored: Option<u64>, key: &[u8]) -> Result<Option<(String, u64)>, StoreError> {
    let fp = pii_key_fingerprint(key);
    match stored {
        Some(stored) if stored == fp => Ok(None),
        Some(_) => Err(StoreError::PiiKey),
        None => Ok(Some((PII_KEY_CHECK.to_string(), fp))),
    }
}

/// The refusal of a store whose `meta.format` this binary cannot read, if it is one.
fn newer_format(version: Option<u64>) -> Option<String> {
    version.filter(|v| *v > FORMAT_VERSION).map(|v| {
        format!(
            "written by a newer omnistream (format {v}, this binary reads up to {FORMAT_VERSION})"
        )
    })
}

/// What an embedded store holds, read without writing to it (`check-config`: opening it
/// for writing would create its other files and upgrade an older format, one way) but for
/// redb's own recovery of a file not closed cleanly, which any open makes.
#[derive(Debug, PartialEq, Eq)]
pub enum Inspected {
    /// A running service holds it.
    Held,
    /// Its format, and whether it records the personal-data key (the one given: another is
    /// refused as `run` refuses it).
    Read {
        /// `meta.format` (1: a store of format 1, which has none).
        format: u64,
        /// It records the key already (else the next `run` records it).
        key_recorded: bool,
    },
}

/// Reads `dir/omnistream.redb`'s format and personal-data key check without writing to it;
/// refuses a newer format and another key than `key`, as opening it for `run` does.
pub fn inspect_embedded(dir: &Path, key: &[u8]) -> Result<Inspected, StoreError> {
    let path = dir.join("omnistream.redb");
    let open_err = |why: String| StoreError::Open {
        path: path.clone(),
        why,
    };
    use redb::ReadableDatabase;
    // each kept open while it is read (dropping one closes the file under its readers)
    let (ro, rw);
    let tx = match redb::ReadOnlyDatabase::open(&path) {
        Ok(db) => {
            ro = db;
            ro.begin_read()
        }
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Ok(Inspected::Held),
        // not closed cleanly: redb recovers it as it opens it to write, as `run` would, and
        // nothing else is written
        Err(redb::DatabaseError::RepairAborted) => match redb::Database::create(&path) {
            Ok(db) => {
                rw = db;
                rw.begin_read()
            }
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Ok(Inspected::Held),
            Err(e) => return Err(open_err(format!("cannot open: {e}"))),
        },
        Err(e) => return Err(open_err(format!("cannot open: {e}"))),
    }
    .map_err(|e| open_err(format!("cannot read: {e}")))?;
    let read = |def: TableDefinition<&str, u64>, k: &str| -> Result<Option<u64>, StoreError> {
        match tx.open_table(def) {
            Ok(t) => Ok(t
                .get(k)
                .map_err(|e| open_err(format!("cannot read: {e}")))?
                .map(|v| v.value())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(open_err(format!("cannot read: {e}"))),
        }
    };
    let format = read(META, "format")?;
    if let Some(why) = newer_format(format) {
        return Err(open_err(why));
    }
    let key_recorded = key_against(read(POSITIONS, PII_KEY_CHECK)?, key)?.is_none();
    Ok(Inspected::Read {
        format: format.unwrap_or(1),
        key_recorded,
    })
}

/// [`pii_key_unrecorded`], recording the fingerprint at once when the store has none.
pub fn check_pii_key(store: &mut dyn Store, key: &[u8]) -> Result<(), StoreError> {
    match pii_key_unrecorded(store, key)? {
        None => Ok(()),
        Some(row) => store.commit(&Batch {
            positions: vec![row],
            ..Batch::default()
        }),
    }
}

/// One atomic commit.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// Accepted events as `(log seq, event JSON)`.
    pub events: Vec<(u64, Vec<u8>)>,
    /// Outputs as `(output seq, JSON)`.
    pub outputs: Vec<(u64, Vec<u8>)>,
    /// Ledger entries as `(member, entry seq, JSON)`.
    pub ledger: Vec<(String, u64, Vec<u8>)>,
    /// Source positions reached.
    pub positions: Vec<(String, u64)>,
    /// An engine checkpoint as of the batch's last event, written (synchronously) after it.
    pub checkpoint: Option<CheckpointWrite>,
    /// Drop the log before this seq: a durable checkpoint reflects it.
    pub truncate_below: Option<u64>,
    /// Accepted events and outputs still to be encoded into `events`, `outputs` and
    /// `ledger`: the thread that commits the batch encodes them ([`Batch::encode`]), so the
    /// shard's thread goes on applying meanwhile. A store refuses a batch that holds any.
    pub unencoded: Unencoded,
}

/// Events and outputs of a [`Batch`] as values, before their JSON is made.
#[derive(Debug, Default, Clone)]
pub struct Unencoded {
    /// Accepted events as `(log seq, event)`.
    pub events: Vec<(u64, Box<Event>)>,
    /// Outputs as `(output seq, output)`.
    pub outputs: Vec<(u64, Emitted)>,
}

impl Batch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.event_count() == 0 && self.output_count() == 0 && self.positions.is_empty()
    }

    /// Entries in the log, encoded or not.
    pub fn event_count(&self) -> usize {
        self.events.len() + self.unencoded.events.len()
    }

    /// Outputs, encoded or not.
    pub fn output_count(&self) -> usize {
        self.outputs.len() + self.unencoded.outputs.len()
    }

    /// Encodes the events and outputs held as values into JSON rows, each in seq order with
    /// those encoded already, and a ledger row for each ledger output.
    pub fn encode(&mut self) {
        let Unencoded { events, outputs } = std::mem::take(&mut self.unencoded);
        let sort_events = !self.events.is_empty() && !events.is_empty();
        let sort_outputs = !self.outputs.is_empty() && !outputs.is_empty();
        self.events.reserve(events.len());
        for (seq, ev) in events {
            self.events
                .push((seq, serde_json::to_vec(&ev).unwrap_or_default()));
        }
        self.outputs.reserve(outputs.len());
        for (seq, e) in outputs {
            let json = serde_json::to_vec(&e).unwrap_or_default();
            if let Output::Ledger { member, seq, .. } = &e.output {
                self.ledger.push((member.to_string(), *seq, json.clone()));
            }
            self.outputs.push((seq, json));
        }
        if sort_events {
            self.events.sort_by_key(|r| r.0);
        }
        if sort_outputs {
            self.outputs.sort_by_key(|r| r.0);
        }
    }

    /// A store's check that the batch was encoded: rows left as values would be lost.
    pub fn check_encoded(&self) -> Result<(), StoreError> {
        if self.unencoded.events.is_empty() && self.unencoded.outputs.is_empty() {
            return Ok(());
        }
        Err(StoreError::Io {
            op: "commit",
            table: "all",
            why: "the batch holds events or outputs not encoded (Batch::encode was not called)"
                .into(),
        })
    }
}

/// Writes checkpoints, from any thread: the service's shard hands each to a thread of its
/// own so the commits it answers requests with never wait for one.
pub trait Checkpointer: Send + Sync {
    /// Writes the checkpoint's states and blobs atomically and durably.
    fn write(&self, cp: &CheckpointWrite) -> Result<(), StoreError>;
}

/// Commits batches from a thread of its own, so the shard applies the next batch while the
/// last one is written and synced (the store's reads go on meanwhile).
pub trait Committer: Send + Sync {
    /// Writes a batch atomically and durably, like [`Store::commit`].
    fn commit(&self, batch: &Batch) -> Result<(), StoreError>;
}

/// A checkpoint being written: its states stay readable here until they are durable.
#[derive(Debug)]
pub struct InFlight {
    /// The checkpoint.
    pub cp: CheckpointWrite,
    /// Its states' runs of one kind each, sorted by key.
    runs: Vec<(Kind, std::ops::Range<usize>)>,
}

impl InFlight {
    /// Finds `cp`'s runs of states of one kind, and sorts any run not sorted by key (an
    /// engine hands them over sorted: this costs the shard a pass, not an index of every
    /// state, which stopped it for tens of milliseconds a checkpoint).
    pub fn new(mut cp: CheckpointWrite) -> InFlight {
        let mut runs: Vec<(Kind, std::ops::Range<usize>)> = Vec::new();
        for (i, (kind, ..)) in cp.states.iter().enumerate() {
            match runs.last_mut() {
                Some((k, r)) if k == kind => r.end = i + 1,
                _ => runs.push((*kind, i..i + 1)),
            }
        }
        for (_, r) in &runs {
            let run = &mut cp.states[r.clone()];
            if !run.is_sorted_by(|a, b| a.1 <= b.1) {
                run.sort_unstable_by(|a, b| a.1.cmp(&b.1));
            }
        }
        InFlight { cp, runs }
    }

    fn get(&self, kind: Kind, key: &str) -> Option<&[u8]> {
        self.runs
            .iter()
            .filter(|(k, _)| *k == kind)
            .find_map(|(_, r)| {
                let run = &self.cp.states[r.clone()];
                let i = run.binary_search_by(|s| s.1.as_str().cmp(key)).ok()?;
                Some(run[i].2.as_slice())
            })
    }
}

/// The checkpoint in flight, if any, shared by the shard and the engine's cold tier.
pub type InFlightSlot = Arc<std::sync::Mutex<Option<Arc<InFlight>>>>;

/// The engine's cold tier while checkpoints are written in the background: the states of
/// the checkpoint in flight first (the engine has marked them clean and may have evicted
/// them), then the store's.
pub struct Layered {
    /// The checkpoint in flight.
    pub inflight: InFlightSlot,
    /// The store's states.
    pub base: Box<dyn Cold>,
}

impl Layered {
    fn current(&self) -> Option<Arc<InFlight>> {
        self.inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Cold for Layered {
    fn load(&self, kind: Kind, key: &str) -> Result<Option<Vec<u8>>, String> {
        if let Some(f) = self.current() {
            if let Some(b) = f.get(kind, key) {
                return Ok(Some(b.to_vec()));
            }
        }
        self.base.load(kind, key)
    }

    fn holds(&self, kind: Kind) -> Result<bool, String> {
        let flight = self
            .current()
            .is_some_and(|f| f.cp.states.iter().any(|s| s.0 == kind));
        Ok(flight || self.base.holds(kind)?)
    }

    fn scan(&self, kind: Kind, f: &mut dyn FnMut(&str, &[u8])) -> Result<(), String> {
        let flight = self.current();
        self.base.scan(kind, &mut |k, b| {
            if flight.as_ref().is_none_or(|fl| fl.get(kind, k).is_none()) {
                f(k, b);
            }
        })?;
        if let Some(fl) = flight {
            for (_, key, b) in fl.cp.states.iter().filter(|s| s.0 == kind) {
                f(key, b);
            }
        }
        Ok(())
    }
}

/// An engine checkpoint for the store: the entity states changed since the previous one, the
/// engine's own state, and the shard's (board, pending reviews), valid for the log up to `seq`.
#[derive(Debug, Default, Clone)]
pub struct CheckpointWrite {
    /// Log entries before this seq are reflected; a restart replays from here.
    pub seq: u64,
    /// `(kind, key, state)`.
    pub states: Vec<(Kind, Str, Vec<u8>)>,
    /// The engine's own state.
    pub global: Vec<u8>,
    /// The event ids the engine remembers.
    pub seen: Vec<u8>,
    /// The code registry's Bloom filter (empty: none).
    pub filter: Vec<u8>,
    /// The shard's own state.
    pub extras: Vec<u8>,
}

/// The last checkpoint as read back.
#[derive(Debug, Default, Clone)]
pub struct StoredCheckpoint {
    /// The first log seq it does not reflect.
    pub seq: u64,
    /// The engine's own state.
    pub global: Vec<u8>,
    /// The event ids the engine remembers.
    pub seen: Vec<u8>,
    /// The code registry's Bloom filter (empty: none).
    pub filter: Vec<u8>,
    /// The shard's own state.
    pub extras: Vec<u8>,
}

/// Reads the durable outputs from any thread.
pub trait OutputRows: Send + Sync {
    /// The next output seq.
    fn next_output(&self) -> Result<u64, StoreError>;
    /// Outputs with seq >= `from`, at most `limit`.
    fn outputs(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
}

/// The outputs table of an embedded store, read in transactions of its own (redb readers
/// run beside the writer).
struct RedbOutputs(Arc<Database>);

impl OutputRows for RedbOutputs {
    fn next_output(&self) -> Result<u64, StoreError> {
        let t = read_table(&self.0, OUTPUTS, "outputs")?;
        let last = t.last().map_err(|e| io("scan", "outputs")(e.into()))?;
        Ok(last.map_or(0, |(k, _)| k.value() + 1))
    }

    fn outputs(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let t = read_table(&self.0, OUTPUTS, "outputs")?;
        let mut out = Vec::new();
        for row in t
            .range(from..)
            .map_err(|e| io("scan", "outputs")(e.into()))?
            .take(limit)
        {
            let (k, v) = row.map_err(|e| io("scan", "outputs")(e.into()))?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }
}

/// Where the service keeps what it must not lose.
pub trait Store: Send {
    /// Writes a batch atomically and durably.
    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError>;
    /// Calls `f` with every logged event from `from` on, in order; returns the next seq.
    fn replay(&self, from: u64, f: &mut dyn FnMut(u64, &[u8])) -> Result<u64, StoreError>;
    /// The next output seq.
    fn next_output(&self) -> Result<u64, StoreError>;
    /// A member's ledger entries with seq >= `from`, at most `limit`.
    fn ledger(&self, member: &str, from: u64, limit: usize) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Outputs with seq >= `from`, at most `limit`.
    fn outputs(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    /// A source's committed position.
    fn position(&self, source: &str) -> Result<Option<u64>, StoreError>;
    /// The entity states of the last checkpoint, for the engine to load passivated entities
    /// from; None when this store keeps no checkpoints (the engine then holds everything and
    /// a restart replays the whole log).
    fn cold(&self) -> Option<Box<dyn Cold>> {
        None
    }
    /// The last checkpoint, if any.
    fn last_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        Ok(None)
    }
    /// A writer of checkpoints usable from another thread; None when this store keeps none.
    fn checkpointer(&self) -> Option<Arc<dyn Checkpointer>> {
        None
    }
    /// A reader of the outputs usable from other threads (followers of the outputs read
    /// there, not on the shard's thread); None when only the shard reads them.
    fn output_rows(&self) -> Option<Arc<dyn OutputRows>> {
        None
    }
    /// A committer usable from another thread; None when commits must run on the shard's
    /// own thread (through [`Store::commit`]).
    fn committer(&self) -> Option<Arc<dyn Committer>> {
        None
    }
    /// The read cache in front of the stored states, if this store has one.
    fn read_cache(&self) -> Option<ReadCache> {
        None
    }
    /// A graceful stop: this process writes nothing more, and lets go of what keeps other
    /// processes out (the CQL writer lease), so the next one starts at once.
    fn close(&mut self) {}
    /// What the code registry's runs hold and cost, if this store keeps codes in them.
    fn code_registry(&self) -> Option<crate::codes::CodeStats> {
        None
    }
}

/// A read cache's counters since start and its size now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReadCache {
    /// Loads answered from the cache (a state, or the knowledge that there is none).
    pub hits: u64,
    /// Loads that went to the database.
    pub misses: u64,
    /// Entries held.
    pub entries: u64,
    /// Their weighed size in bytes.
    pub bytes: u64,
}

/// Opens the store the configuration names (`store = "embedded" | "cql"`) for the service
/// listening on `listen`: on CQL, that names the writer lease's owner with the host name
/// (see `src/cql/lease.rs`); the embedded store is locked by its file.
pub fn open(
    cfg: &crate::config::Config,
    listen: std::net::SocketAddr,
) -> Result<Box<dyn Store>, StoreError> {
    Ok(match cfg.store {
        crate::config::StoreKind::Embedded => Box::new(RedbStore::open_with_cache(
            &cfg.data_dir,
            cfg.store_cache_mb << 20,
        )?),
        crate::config::StoreKind::Cql => Box::new(crate::cql::CqlStore::open_as(
            &cfg.cql,
            &listen.to_string(),
        )?),
    })
}

/// Why an embedded store did not open: another process has it open.
const HELD_EMBEDDED: &str = "cannot open: another process holds it (an `omnistream run` on this \
     data directory? one process at a time opens the embedded store: stop it, or ask the \
     running service over HTTP)";

/// Runs `open` until it gives a store, waiting (backing off, at most 5 s a time) while it
/// fails in a way that passes: a CQL node that does not answer yet, or a writer lease that
/// another process holds (it may be stopping: a rolling restart), for `store-wait-s` at most.
/// Any other error stops start-up at once.
pub fn wait_for<T>(wait_s: u64, open: impl FnMut() -> Result<T, StoreError>) -> anyhow::Result<T> {
    wait_for_unless(wait_s, &|| false, open)?
        .ok_or_else(|| anyhow::anyhow!("stopped while waiting for the store"))
}

/// [`wait_for`], giving up with `None` as soon as `stopped` says so (a signal while it
/// waits: a rolling restart's SIGTERM must not wait out `store-wait-s`).
pub fn wait_for_unless<T>(
    wait_s: u64,
    stopped: &dyn Fn() -> bool,
    mut open: impl FnMut() -> Result<T, StoreError>,
) -> anyhow::Result<Option<T>> {
    let waited = std::time::Instant::now();
    let deadline = waited + std::time::Duration::from_secs(wait_s);
    let mut wait = std::time::Duration::from_millis(500);
    loop {
        if stopped() {
            return Ok(None);
        }
        match open() {
            Ok(v) => return Ok(Some(v)),
            Err(e @ (StoreError::Unreachable { .. } | StoreError::Held { .. })) => {
                let now = std::time::Instant::now();
                if now >= deadline {
                    return Err(anyhow::anyhow!(
                        "{e} (gave up after {:.1} s; store-wait-s = {wait_s})",
                        waited.elapsed().as_secs_f64(),
                    ));
                }
                // the last try is at the deadline itself, not a backoff step before it
                let pause = wait.min(deadline - now);
                let what = match e {
                    StoreError::Held { .. } => {
                        "the store's writer lease is held; waiting (store-wait-s)"
                    }
                    _ => "store not reachable yet; waiting (store-wait-s)",
                };
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, waited_s = waited.elapsed().as_secs(), "{what}");
                // in slices, so a stop is seen within 50 ms
                let until = std::time::Instant::now() + pause;
                while !stopped() {
                    let left = until.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    std::thread::sleep(left.min(std::time::Duration::from_millis(50)));
                }
                wait = (wait * 2).min(std::time::Duration::from_secs(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The embedded store: one redb file (a copy-on-write B-tree with checksummed pages and
/// durable commits), chosen over an LSM store because the log is append-only and read back
/// in order, commits must be atomic across tables, and it runs no background compaction
/// threads competing for the two cores the service has.
pub struct RedbStore {
    db: Arc<Database>,
    /// `states.redb`: entity states and the checkpoint blobs.
    states: Arc<Database>,
    /// `codes/`: the code registry's states (see [`crate::codes`]).
    codes: Arc<CodeRuns>,
}

impl RedbStore {
    /// Opens (or creates) `dir/omnistream.redb` with a page cache of [`DEFAULT_CACHE_BYTES`];
    /// refuses a damaged file or a newer format.
    pub fn open(dir: &Path) -> Result<RedbStore, StoreError> {
        RedbStore::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// [`RedbStore::open`] with a page cache of at most `cache_bytes` (redb's own default,
    /// 1 GiB, would count against the memory the resident bound is meant to cap).
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> Result<RedbStore, StoreError> {
        let path = dir.join("omnistream.redb");
        let open_err = |why: String| StoreError::Open {
            path: path.clone(),
            why,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| open_err(format!("creating {}: {e}", dir.display())))?;
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes / 2)
            .create(&path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => open_err(HELD_EMBEDDED.into()),
                e => open_err(format!("cannot open: {e}")),
            })?;
        let states_path = dir.join("states.redb");
        let states = redb::Builder::new()
            .set_cache_size(cache_bytes / 2)
            .create(&states_path)
            .map_err(|e| StoreError::Open {
                path: states_path.clone(),
                why: format!("cannot open: {e}"),
            })?;
        let manifest = {
            let err = |e: String| StoreError::Open {
                path: states_path.clone(),
                why: e,
            };
            let tx = states.begin_write().map_err(|e| err(e.to_string()))?;
            tx.open_table(STATES).map_err(|e| err(e.to_string()))?;
            let m = tx
                .open_table(CHECKPOINT)
                .map_err(|e| err(e.to_string()))?
                .get("code_runs")
                .map_err(|e| err(e.to_string()))?
                .map(|v| v.value().to_vec());
            tx.commit().map_err(|e| err(e.to_string()))?;
            m
        };
        let codes_dir = dir.join("codes");
        let codes =
            CodeRuns::open(&codes_dir, manifest.as_deref()).map_err(|why| StoreError::Open {
                path: codes_dir.clone(),
                why,
            })?;
        let store = RedbStore {
            db: Arc::new(db),
            states: Arc::new(states),
            codes: Arc::new(codes),
        };
        let version = store.meta("format")?;
        if let Some(why) = newer_format(version) {
            return Err(open_err(why));
        }
        match version {
            Some(FORMAT_VERSION) => {}
            // a new store, or format 1 (no checkpoint tables yet): create what is missing
            _ => {
                let tx = store
                    .db
                    .begin_write()
                    .map_err(|e| open_err(e.to_string()))?;
                {
                    let mut t = tx.open_table(META).map_err(|e| open_err(e.to_string()))?;
                    t.insert("format", FORMAT_VERSION)
                        .map_err(|e| open_err(e.to_string()))?;
                    for def in [EVENTS, OUTPUTS] {
                        tx.open_table(def).map_err(|e| open_err(e.to_string()))?;
                    }
                    tx.open_table(LEDGER).map_err(|e| open_err(e.to_string()))?;
                    tx.open_table(POSITIONS)
                        .map_err(|e| open_err(e.to_string()))?;
                }
                tx.commit().map_err(|e| open_err(e.to_string()))?;
            }
        }
        Ok(store)
    }

    fn meta(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let tx = self
            .db
            .begin_read()
            .map_err(|e| io("read", "meta")(e.into()))?;
        let t = match tx.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(io("read", "meta")(e.into())),
        };
        Ok(t.get(key)
            .map_err(|e| io("read", "meta")(e.into()))?
            .map(|v| v.value()))
    }
}

fn codes_err(why: String) -> StoreError {
    StoreError::Io {
        op: "write",
        table: "code runs",
        why,
    }
}

/// Writes a checkpoint durably: its code states as a new code run (see [`crate::codes`]),
/// then everything else and the manifest naming that run in one `states.redb` transaction;
/// then merges code runs if enough have gathered.
fn write_checkpoint(
    db: &Database,
    codes: &CodeRuns,
    cp: &CheckpointWrite,
) -> Result<(), StoreError> {
    let code_states: Vec<(&str, &[u8])> = cp
        .states
        .iter()
        .filter(|s| s.0 == Kind::Code)
        .map(|(_, k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let _writer = codes.writer();
    let new = codes.write(&code_states).map_err(codes_err)?;
    let written = write_states(db, cp, &codes.manifest_with(new.as_ref()));
    match (written, new) {
        (Ok(()), Some(n)) => codes.installed(n),
        (Err(e), Some(n)) => {
            codes.discard(n);
            return Err(e);
        }
        (r, None) => r?,
    }
    codes
        .compact(&mut |m| commit_manifest(db, m).map_err(|e| e.to_string()))
        .map_err(codes_err)
}

/// Stores the code runs' manifest after a merge (which changes no state, only where the
/// states live).
fn commit_manifest(db: &Database, manifest: &[u8]) -> Result<(), StoreError> {
    let tx = db
        .begin_write()
        .map_err(|e| io("begin", "checkpoint")(e.into()))?;
    {
        let mut t = tx
            .open_table(CHECKPOINT)
            .map_err(|e| io("open", "checkpoint")(e.into()))?;
        t.insert("code_runs", manifest)
            .map_err(|e| io("insert", "checkpoint")(e.into()))?;
    }
    tx.commit()
        .map_err(|e| io("commit", "checkpoint")(e.into()))
}

/// The checkpoint's states but codes, its blobs and the code runs' manifest, in one durable
/// transaction of `states.redb`.
fn write_states(db: &Database, cp: &CheckpointWrite, manifest: &[u8]) -> Result<(), StoreError> {
    let tx = db
        .begin_write()
        .map_err(|e| io("begin", "states")(e.into()))?;
    {
        let mut t = tx
            .open_table(STATES)
            .map_err(|e| io("open", "states")(e.into()))?;
        let mut k = Vec::new();
        // in key order: consecutive inserts land in the same B-tree pages, which the
        // transaction has already copied, instead of copying a page per state
        for (kind, key, state) in in_key_order(&cp.states) {
            state_key(&mut k, *kind, key);
            t.insert(k.as_slice(), state.as_slice())
                .map_err(|e| io("insert", "states")(e.into()))?;
        }
        let mut t = tx
            .open_table(CHECKPOINT)
            .map_err(|e| io("open", "checkpoint")(e.into()))?;
        let seq = cp.seq.to_le_bytes();
        for (name, blob) in [
            ("seq", &seq[..]),
            ("global", &cp.global),
            ("seen", &cp.seen),
            ("codes_filter", &cp.filter),
            ("extras", &cp.extras),
            ("code_runs", manifest),
        ] {
            t.insert(name, blob)
                .map_err(|e| io("insert", "checkpoint")(e.into()))?;
        }
    }
    tx.commit().map_err(|e| io("commit", "states")(e.into()))
}

/// The states but codes, in `(kind, key)` order. Each is sorted by its kind and the first 16
/// bytes of its key, held beside it, so a comparison chases no pointer (keys longer than 24
/// bytes live on the heap: sorting 1.5 M states by the keys themselves took about 2 s of a
/// shutdown, BENCHMARKS.md); equal prefixes are then ordered by the whole keys.
fn in_key_order(states: &[(Kind, Str, Vec<u8>)]) -> Vec<&(Kind, Str, Vec<u8>)> {
    let mut keyed: Vec<(u8, [u8; 16], usize)> = states
        .iter()
        .enumerate()
        .filter(|(_, s)| s.0 != Kind::Code)
        .map(|(i, (kind, key, _))| {
            let mut prefix = [0u8; 16];
            let n = key.len().min(16);
            prefix[..n].copy_from_slice(&key.as_bytes()[..n]);
            (*kind as u8, prefix, i)
        })
        .collect();
    keyed.sort_unstable_by(|a, b| {
        (a.0, a.1)
            .cmp(&(b.0, b.1))
            .then_with(|| states[a.2].1.cmp(&states[b.2].1))
    });
    keyed.into_iter().map(|(_, _, i)| &states[i]).collect()
}

/// The embedded store's checkpoint writer: `states.redb` has a writer of its own, so a
/// checkpoint written on another thread never holds up the log's commits.
struct RedbCheckpointer(Arc<Database>, Arc<CodeRuns>);

impl Checkpointer for RedbCheckpointer {
    fn write(&self, cp: &CheckpointWrite) -> Result<(), StoreError> {
        write_checkpoint(&self.0, &self.1, cp)
    }
}

/// `kind tag ‖ key`, into `k`.
fn state_key(k: &mut Vec<u8>, kind: Kind, key: &str) {
    k.clear();
    k.push(kind as u8);
    k.extend_from_slice(key.as_bytes());
}

/// The entity states of the embedded store's last checkpoint, read by the engine: codes
/// from the code runs (then `states.redb`, where a store written before them kept codes
/// too), every other kind from `states.redb`.
struct RedbCold(Arc<Database>, Arc<CodeRuns>);

impl RedbCold {
    fn states(&self) -> Result<redb::ReadOnlyTable<&'static [u8], &'static [u8]>, String> {
        let tx = self
            .0
            .begin_read()
            .map_err(|e| format!("store read: {e}"))?;
        tx.open_table(STATES)
            .map_err(|e| format!("store states: {e}"))
    }
}

impl Cold for RedbCold {
    fn load(&self, kind: Kind, key: &str) -> Result<Option<Vec<u8>>, String> {
        if kind == Kind::Code {
            if let Some(s) = self.1.get(key)? {
                return Ok(Some(s));
            }
        }
        let mut k = Vec::with_capacity(key.len() + 1);
        state_key(&mut k, kind, key);
        let t = self.states()?;
        Ok(t.get(k.as_slice())
            .map_err(|e| format!("store states: {e}"))?
            .map(|v| v.value().to_vec()))
    }

    fn scan(&self, kind: Kind, f: &mut dyn FnMut(&str, &[u8])) -> Result<(), String> {
        let runs = (kind == Kind::Code && !self.1.is_empty()).then_some(&self.1);
        let t = self.states()?;
        let (lo, hi) = ([kind as u8], [kind as u8 + 1]);
        for row in t
            .range(lo.as_slice()..hi.as_slice())
            .map_err(|e| format!("store states: {e}"))?
        {
            let (k, v) = row.map_err(|e| format!("store states: {e}"))?;
            let key = std::str::from_utf8(&k.value()[1..])
                .map_err(|e| format!("store states: a key is not UTF-8: {e}"))?;
            // a code the runs hold has a newer state there
            if runs.map_or(Ok(None), |r| r.get(key))?.is_none() {
                f(key, v.value());
            }
        }
        if let Some(r) = runs {
            r.scan(f)?;
        }
        Ok(())
    }

    fn holds(&self, kind: Kind) -> Result<bool, String> {
        if kind == Kind::Code && !self.1.is_empty() {
            return Ok(true);
        }
        let t = self.states()?;
        let (lo, hi) = ([kind as u8], [kind as u8 + 1]);
        let mut rows = t
            .range(lo.as_slice()..hi.as_slice())
            .map_err(|e| format!("store states: {e}"))?;
        Ok(rows.next().is_some())
    }
}

fn ledger_key(member: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(member.len() + 9);
    k.extend_from_slice(member.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The embedded store's committer: redb keeps one writer at a time and lets readers run
/// beside it, so commits from another thread need nothing but the two databases.
struct RedbCommitter {
    db: Arc<Database>,
    states: Arc<Database>,
    codes: Arc<CodeRuns>,
}

impl Committer for RedbCommitter {
    fn commit(&self, b: &Batch) -> Result<(), StoreError> {
        b.check_encoded()?;
        let tx = self
            .db
            .begin_write()
            .map_err(|e| io("begin", "all")(e.into()))?;
        {
            let mut t = tx
                .open_table(EVENTS)
                .map_err(|e| io("open", "events")(e.into()))?;
            for (seq, ev) in &b.events {
                t.insert(*seq, ev.as_slice())
                    .map_err(|e| io("insert", "events")(e.into()))?;
            }
            if let Some(seq) = b.truncate_below {
                // the log before a durable checkpoint is reflected in it: drop it
                t.retain_in(..seq, |_, _| false)
                    .map_err(|e| io("truncate", "events")(e.into()))?;
            }
            let mut t = tx
                .open_table(OUTPUTS)
                .map_err(|e| io("open", "outputs")(e.into()))?;
            for (seq, o) in &b.outputs {
                t.insert(*seq, o.as_slice())
                    .map_err(|e| io("insert", "outputs")(e.into()))?;
            }
            let mut t = tx
                .open_table(LEDGER)
                .map_err(|e| io("open", "ledger")(e.into()))?;
            for (m, seq, o) in &b.ledger {
                t.insert(ledger_key(m, *seq).as_slice(), o.as_slice())
                    .map_err(|e| io("insert", "ledger")(e.into()))?;
            }
            let mut t = tx
                .open_table(POSITIONS)
                .map_err(|e| io("open", "positions")(e.into()))?;
            for (s, p) in &b.positions {
                t.insert(s.as_str(), *p)
                    .map_err(|e| io("insert", "positions")(e.into()))?;
            }
        }
        tx.commit().map_err(|e| io("commit", "all")(e.into()))?;
        match &b.checkpoint {
            Some(cp) => write_checkpoint(&self.states, &self.codes, cp),
            None => Ok(()),
        }
    }
}

impl RedbStore {
    fn committer_of(&self) -> RedbCommitter {
        RedbCommitter {
            db: Arc::clone(&self.db),
            states: Arc::clone(&self.states),
            codes: Arc::clone(&self.codes),
        }
    }
}

impl Store for RedbStore {
    fn commit(&mut self, b: &Batch) -> Result<(), StoreError> {
        self.committer_of().commit(b)
    }

    fn committer(&self) -> Option<Arc<dyn Committer>> {
        Some(Arc::new(self.committer_of()))
    }

    fn cold(&self) -> Option<Box<dyn Cold>> {
        Some(Box::new(RedbCold(
            Arc::clone(&self.states),
            Arc::clone(&self.codes),
        )))
    }

    fn code_registry(&self) -> Option<crate::codes::CodeStats> {
        Some(self.codes.stats())
    }

    fn checkpointer(&self) -> Option<Arc<dyn Checkpointer>> {
        Some(Arc::new(RedbCheckpointer(
            Arc::clone(&self.states),
            Arc::clone(&self.codes),
        )))
    }

    fn last_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let t = read_table(&self.states, CHECKPOINT, "checkpoint")?;
        let blob = |name: &str| -> Result<Vec<u8>, StoreError> {
            Ok(t.get(name)
                .map_err(|e| io("read", "checkpoint")(e.into()))?
                .map(|v| v.value().to_vec())
                .unwrap_or_default())
        };
        let seq = blob("seq")?;
        let Ok(seq) = <[u8; 8]>::try_from(seq.as_slice()) else {
            return Ok(None);
        };
        Ok(Some(StoredCheckpoint {
            seq: u64::from_le_bytes(seq),
            global: blob("global")?,
            seen: blob("seen")?,
            filter: blob("codes_filter")?,
            extras: blob("extras")?,
        }))
    }

    fn replay(&self, from: u64, f: &mut dyn FnMut(u64, &[u8])) -> Result<u64, StoreError> {
        let t = read_table(&self.db, EVENTS, "events")?;
        let mut next = from;
        for row in t
            .range(from..)
            .map_err(|e| io("scan", "events")(e.into()))?
        {
            let (k, v) = row.map_err(|e| io("scan", "events")(e.into()))?;
            f(k.value(), v.value());
            next = k.value() + 1;
        }
        Ok(next)
    }

    fn next_output(&self) -> Result<u64, StoreError> {
        RedbOutputs(Arc::clone(&self.db)).next_output()
    }

    fn output_rows(&self) -> Option<Arc<dyn OutputRows>> {
        Some(Arc::new(RedbOutputs(Arc::clone(&self.db))))
    }

    fn ledger(&self, member: &str, from: u64, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let t = read_table(&self.db, LEDGER, "ledger")?;
        let lo = ledger_key(member, from);
        let hi = ledger_key(member, u64::MAX);
        let mut out = Vec::new();
        for row in t
            .range(lo.as_slice()..=hi.as_slice())
            .map_err(|e| io("scan", "ledger")(e.into()))?
        {
            if out.len() >= limit {
                break;
            }
            let (_, v) = row.map_err(|e| io("scan", "ledger")(e.into()))?;
            out.push(v.value().to_vec());
        }
        Ok(out)
    }

    fn outputs(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        RedbOutputs(Arc::clone(&self.db)).outputs(from, limit)
    }

    fn position(&self, source: &str) -> Result<Option<u64>, StoreError> {
        let t = read_table(&self.db, POSITIONS, "positions")?;
        Ok(t.get(source)
            .map_err(|e| io("read", "positions")(e.into()))?
            .map(|v| v.value()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state that failed to load because redb refuses until re-opened is told apart from
    /// other load failures, however the cold tier wrapped the text.
    #[test]
    fn a_load_failed_on_a_store_to_open_again_says_so() {
        let lost = format!(
            "state of sku S1: {}",
            io("read", "states")(redb::Error::PreviousIo)
        );
        assert!(load_error(lost).needs_reopen());
        assert!(!load_error("state of sku S1: does not decode".into()).needs_reopen());
    }

    /// A checkpoint in flight finds its states in runs of one kind, however they come: each
    /// run sorted (as an engine hands them over), a kind in several runs (one a shard), or a
    /// run out of order.
    #[test]
    fn a_checkpoint_in_flight_finds_every_state_of_its_runs() {
        let run = |kind: Kind, keys: &[&str]| -> Vec<(Kind, Str, Vec<u8>)> {
            keys.iter()
                .map(|k| {
                    (
                        kind,
                        Str::from(*k),
                        format!("{}:{k}", kind as u8).into_bytes(),
                    )
                })
                .collect()
        };
        let mut states = run(Kind::Member, &["a", "b", "m1", "m9"]);
        states.extend(run(Kind::Sku, &["s2", "s1", "s3", ""]));
        states.extend(run(Kind::Member, &["c", "z"]));
        states.extend(run(Kind::Identity, &["a"]));
        let f = InFlight::new(CheckpointWrite {
            states: states.clone(),
            ..CheckpointWrite::default()
        });
        for (kind, key, b) in &states {
            assert_eq!(f.get(*kind, key), Some(b.as_slice()), "{kind:?} {key}");
        }
        assert_eq!(f.get(Kind::Member, "s1"), None);
        assert_eq!(f.get(Kind::Identity, "b"), None);
        assert_eq!(f.get(Kind::Dealer, "a"), None);
        assert_eq!(f.get(Kind::Member, "m5"), None);
    }

    #[test]
    fn states_are_written_in_the_order_of_kind_and_whole_key() {
        // keys that tie on 16 bytes, hold zero bytes, are prefixes of others, or are long
        let keys = [
            "phone\0h0123456789abcdefXYZ",
            "phone\0h0123456789abcdefXY",
            "phone\0h0123456789abcdef",
            "phone\0h0123456789abcde",
            "phone\0h0123456789abcdeg",
            "ab",
            "ab\0",
            "ab\0\0c",
            "ab\0c",
            "a",
            "",
            "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
            "m0001",
            "m0001\0",
        ];
        let mut states = Vec::new();
        for kind in [Kind::Member, Kind::Code, Kind::Identity, Kind::Sku] {
            for k in keys.iter().rev() {
                states.push((kind, Str::from(*k), k.as_bytes().to_vec()));
            }
        }
        let mut want: Vec<&(Kind, Str, Vec<u8>)> =
            states.iter().filter(|s| s.0 != Kind::Code).collect();
        want.sort_by(|a, b| (a.0 as u8, &a.1).cmp(&(b.0 as u8, &b.1)));
        assert_eq!(in_key_order(&states), want);
        assert_eq!(want.len(), 3 * keys.len());
    }

    #[test]
    fn a_batch_encodes_its_values_in_seq_order_and_a_store_refuses_it_unencoded() {
        let decoder = omnistream_schemas::Decoder::new(omnistream_schemas::Pii::new(b"k"));
        let line = br#"{"id":"0e3c5bb6-4fd0-4c5e-9a7e-1f1e8f7c3d11","type":"click","ts":"2026-11-11T10:00:00+08:00","channel":"mall","member":{"openid":"o1"},"target":"ad1"}"#;
        let ev = Box::new(decoder.decode(line).unwrap());
        let at = ev.ts;
        let ledger = Emitted {
            event: ev.id,
            at,
            output: Output::Ledger {
                member: "m1".into(),
                seq: 7,
                delta: 5,
                balance: 5,
                reason: "earned".into(),
                about: None,
                debt_delta: 0,
                debt: 0,
            },
        };
        let mut b = Batch {
            events: vec![(4, b"mark".to_vec())],
            outputs: vec![(10, b"dead".to_vec())],
            ..Batch::default()
        };
        b.unencoded.events.push((3, ev.clone()));
        b.unencoded.outputs.push((9, ledger.clone()));
        b.unencoded.outputs.push((11, ledger.clone()));
        assert_eq!((b.event_count(), b.output_count()), (2, 3));
        assert!(!b.is_empty());
        let dir = tempfile::tempdir().unwrap();
        let mut s = RedbStore::open(dir.path()).unwrap();
        assert!(s.commit(&b).is_err(), "values would be lost");
        b.encode();
        assert_eq!((b.event_count(), b.output_count()), (2, 3));
        let seqs = |rows: &[(u64, Vec<u8>)]| rows.iter().map(|r| r.0).collect::<Vec<_>>();
        assert_eq!(seqs(&b.events), [3, 4]);
        assert_eq!(seqs(&b.outputs), [9, 10, 11]);
        assert_eq!(b.events[0].1, serde_json::to_vec(&ev).unwrap());
        assert_eq!(b.outputs[0].1, serde_json::to_vec(&ledger).unwrap());
        assert_eq!(b.ledger.len(), 2);
        assert_eq!((b.ledger[0].0.as_str(), b.ledger[0].1), ("m1", 7));
        s.commit(&b).unwrap();
    }

    #[test]
    fn commits_are_read_back_in_order_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = RedbStore::open(dir.path()).unwrap();
            let b = Batch {
                events: vec![(0, b"a".to_vec()), (1, b"b".to_vec())],
                outputs: vec![(0, b"o".to_vec())],
                ledger: vec![
                    ("m1".into(), 1, b"l1".to_vec()),
                    ("m1".into(), 2, b"l2".to_vec()),
                    ("m2".into(), 1, b"x".to_vec()),
                ],
                positions: vec![("http".into(), 2)],
                checkpoint: None,
                truncate_below: None,
                ..Batch::default()
            };
            s.commit(&b).unwrap();
        }
        let s = RedbStore::open(dir.path()).unwrap();
        let mut seen = Vec::new();
        let next = s.replay(0, &mut |k, v| seen.push((k, v.to_vec()))).unwrap();
        assert_eq!(next, 2);
        assert_eq!(seen, vec![(0, b"a".to_vec()), (1, b"b".to_vec())]);
        assert_eq!(s.next_output().unwrap(), 1);
        assert_eq!(
            s.ledger("m1", 0, 10).unwrap(),
            vec![b"l1".to_vec(), b"l2".to_vec()]
        );
        assert_eq!(s.ledger("m1", 2, 10).unwrap(), vec![b"l2".to_vec()]);
        assert_eq!(s.position("http").unwrap(), Some(2));
    }

    #[test]
    fn a_checkpoint_is_read_back_its_states_load_and_the_log_before_it_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RedbStore::open(dir.path()).unwrap();
        assert!(s.last_checkpoint().unwrap().is_none());
        let events = (0..5).map(|i| (i, vec![b'a' + i as u8])).collect();
        s.commit(&Batch {
            events,
            ..Batch::default()
        })
        .unwrap();
        s.commit(&Batch {
            events: vec![(5, b"f".to_vec())],
            truncate_below: Some(4),
            checkpoint: Some(CheckpointWrite {
                seq: 4,
                states: vec![
                    (Kind::Member, "m1".into(), b"\x01{}".to_vec()),
                    (Kind::Sku, "m1".into(), b"\x01[]".to_vec()),
                ],
                global: b"g".to_vec(),
                seen: b"s".to_vec(),
                filter: b"f".to_vec(),
                extras: b"x".to_vec(),
            }),
            ..Batch::default()
        })
        .unwrap();
        drop(s);
        let s = RedbStore::open(dir.path()).unwrap();
        let cp = s.last_checkpoint().unwrap().unwrap();
        assert_eq!(
            (cp.seq, cp.global, cp.seen, cp.extras),
            (4, b"g".to_vec(), b"s".to_vec(), b"x".to_vec())
        );
        assert_eq!(cp.filter, b"f".to_vec());
        let mut kept = Vec::new();
        assert_eq!(s.replay(0, &mut |k, _| kept.push(k)).unwrap(), 6);
        assert_eq!(kept, vec![4, 5], "the log before the checkpoint is dropped");
        let cold = s.cold().unwrap();
        assert_eq!(
            cold.load(Kind::Member, "m1").unwrap(),
            Some(b"\x01{}".to_vec())
        );
        assert_eq!(cold.load(Kind::Member, "m2").unwrap(), None);
        let mut skus = Vec::new();
        cold.scan(Kind::Sku, &mut |k, v| {
            skus.push((k.to_string(), v.to_vec()))
        })
        .unwrap();
        assert_eq!(skus, vec![("m1".to_string(), b"\x01[]".to_vec())]);
    }

    #[test]
    fn code_states_go_to_the_code_runs_and_read_back_over_older_ones_in_states_redb() {
        use omnistream_actors::cold;
        use omnistream_actors::fraud::code::Code;
        let dir = tempfile::tempdir().unwrap();
        let code = |first: &str, scans: u32| {
            cold::encode(&Code {
                first: first.into(),
                at: 1_764_000_000_000_000,
                event: 7,
                scans,
                others: 0,
            })
            .unwrap()
        };
        let cp = |seq: u64, states: Vec<(Kind, Str, Vec<u8>)>| CheckpointWrite {
            seq,
            states,
            ..CheckpointWrite::default()
        };
        let s = RedbStore::open(dir.path()).unwrap();
        // a store written before the code runs kept codes in states.redb: write one there
        write_states(&s.states, &cp(1, vec![]), &s.codes.manifest_with(None)).unwrap();
        {
            let tx = s.states.begin_write().unwrap();
            {
                let mut t = tx.open_table(STATES).unwrap();
                let mut k = Vec::new();
                for (key, c) in [("OLD", code("m1", 1)), ("BOTH", code("m1", 1))] {
                    state_key(&mut k, Kind::Code, key);
                    t.insert(k.as_slice(), c.as_slice()).unwrap();
                }
            }
            tx.commit().unwrap();
        }
        let w = s.checkpointer().unwrap();
        for i in 0..(crate::codes::FANOUT as u64 + 1) {
            w.write(&cp(
                2 + i,
                vec![
                    (Kind::Code, format!("C{i}").into(), code("m2", 1)),
                    (Kind::Code, "BOTH".into(), code("m2", 2 + i as u32)),
                    (Kind::Member, "m2".into(), b"\x01{}".to_vec()),
                ],
            ))
            .unwrap();
        }
        let mut raw = 0;
        {
            let tx = s.states.begin_read().unwrap();
            let t = tx.open_table(STATES).unwrap();
            for row in t.iter().unwrap() {
                raw += usize::from(row.unwrap().0.value()[0] == Kind::Code as u8);
            }
        }
        assert_eq!(raw, 2, "new code states are not written to states.redb");
        drop((w, s));
        let s = RedbStore::open(dir.path()).unwrap();
        let stats = s.codes.stats();
        assert!(stats.runs >= 2 && stats.records >= 6, "{stats:?}");
        let cold = s.cold().unwrap();
        let get = |k: &str| cold.load(Kind::Code, k).unwrap();
        assert_eq!(get("OLD"), Some(code("m1", 1)));
        assert_eq!(
            get("BOTH"),
            Some(code("m2", 2 + crate::codes::FANOUT as u32))
        );
        assert_eq!(get("C0"), Some(code("m2", 1)));
        assert_eq!(get("C9"), None);
        assert_eq!(
            cold.load(Kind::Member, "m2").unwrap(),
            Some(b"\x01{}".to_vec())
        );
        assert!(cold.holds(Kind::Code).unwrap());
        let mut all = std::collections::BTreeMap::new();
        cold.scan(Kind::Code, &mut |k, v| {
            assert!(all.insert(k.to_string(), v.to_vec()).is_none(), "{k} twice");
        })
        .unwrap();
        assert_eq!(all.len(), 2 + crate::codes::FANOUT + 1);
        assert_eq!(all["BOTH"], code("m2", 2 + crate::codes::FANOUT as u32));
    }

    /// A stop while the store's lease is held ends the wait within its 50 ms slices, not
    /// after `store-wait-s`; without one the wait goes on to the deadline.
    #[test]
    fn a_stop_ends_the_wait_for_a_held_store() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let held = || {
            Err::<(), _>(StoreError::Held {
                keyspace: "k".into(),
                owner: "another run".into(),
                seconds_left: Some(30),
            })
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(700));
            flag.store(true, Ordering::SeqCst);
        });
        let started = std::time::Instant::now();
        let r = wait_for_unless(60, &|| stop.load(Ordering::SeqCst), held).unwrap();
        assert!(r.is_none());
        let took = started.elapsed();
        assert!(took >= std::time::Duration::from_millis(700), "{took:?}");
        assert!(took < std::time::Duration::from_secs(5), "{took:?}");
        t.join().unwrap();
        let e = wait_for(1, held).unwrap_err().to_string();
        assert!(
            e.contains("another run") && e.contains("store-wait-s = 1"),
            "{e}"
        );
    }

    #[test]
    fn a_damaged_file_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        drop(RedbStore::open(dir.path()).unwrap());
        let f = dir.path().join("omnistream.redb");
        let mut bytes = std::fs::read(&f).unwrap();
        for b in bytes.iter_mut().take(64) {
            *b ^= 0xA5;
        }
        std::fs::write(&f, &bytes).unwrap();
        let e = RedbStore::open(dir.path()).err().unwrap().to_string();
        assert!(e.contains("omnistream.redb"), "{e}");
    }
}

/// A store for tests whose commits wait behind a gate and fail when told to, on the commit
/// thread and on the shard's own thread alike.
#[cfg(test)]
pub(crate) mod gated {
    use super::{Batch, Committer, RedbStore, Store, StoreError};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::Duration;

    /// Holds commits until opened, and fails the next one when told to.
    #[derive(Default)]
    pub(crate) struct Gate {
        open: Mutex<bool>,
        opened: Condvar,
        /// Fail the next commit that passes the gate.
        pub(crate) fail_next: AtomicBool,
        /// Fail every commit from the next on as a store that must be opened again.
        pub(crate) lost: AtomicBool,
        /// Commits that reached the gate.
        pub(crate) entered: AtomicUsize,
        /// Commits failed on purpose.
        pub(crate) failed: AtomicUsize,
    }

    impl Gate {
        /// A gate that lets every commit through.
        pub(crate) fn opened() -> Arc<Gate> {
            let g = Arc::new(Gate::default());
            g.set(true);
            g
        }

        pub(crate) fn set(&self, open: bool) {
            *self.open.lock().unwrap() = open;
            self.opened.notify_all();
        }

        /// Waits (at most 10 s) until `n` commits reached the gate.
        pub(crate) async fn entered(&self, n: usize) {
            for _ in 0..2000 {
                if self.entered.load(Ordering::SeqCst) >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("no commit reached the store");
        }

        fn pass(
            &self,
            batch: &Batch,
            commit: impl FnOnce(&Batch) -> Result<(), StoreError>,
        ) -> Result<(), StoreError> {
            self.entered.fetch_add(1, Ordering::SeqCst);
            let open = self.open.lock().unwrap();
            drop(self.opened.wait_while(open, |open| !*open).unwrap());
            if self.lost.load(Ordering::SeqCst) {
                return Err(super::io("begin", "all")(redb::Error::PreviousIo));
            }
            if self.fail_next.swap(false, Ordering::SeqCst) {
                self.failed.fetch_add(1, Ordering::SeqCst);
                return Err(StoreError::Io {
                    op: "commit",
                    table: "all",
                    why: "injected".into(),
                });
            }
            commit(batch)
        }
    }

    /// The embedded store, with its commits behind a [`Gate`].
    pub(crate) struct Gated(pub(crate) RedbStore, pub(crate) Arc<Gate>);

    struct GatedCommitter(Arc<dyn Committer>, Arc<Gate>);

    impl Committer for GatedCommitter {
        fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
            self.1.pass(batch, |b| self.0.commit(b))
        }
    }

    impl Store for Gated {
        fn commit(&mut self, batch: &Batch) -> Result<(), StoreError> {
            let gate = Arc::clone(&self.1);
            gate.pass(batch, |b| self.0.commit(b))
        }
        fn replay(&self, from: u64, f: &mut dyn FnMut(u64, &[u8])) -> Result<u64, StoreError> {
            self.0.replay(from, f)
        }
        fn next_output(&self) -> Result<u64, StoreError> {
            self.0.next_output()
        }
        fn ledger(&self, m: &str, from: u64, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
            self.0.ledger(m, from, limit)
        }
        fn outputs(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
            self.0.outputs(from, limit)
        }
        fn position(&self, source: &str) -> Result<Option<u64>, StoreError> {
            self.0.position(source)
        }
        fn committer(&self) -> Option<Arc<dyn Committer>> {
            let inner = self.0.committer()?;
            Some(Arc::new(GatedCommitter(inner, Arc::clone(&self.1))))
        }
    }
}
