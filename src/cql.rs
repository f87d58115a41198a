//! The CQL store: [`Store`] over ScyllaDB or Cassandra with the `scylla` driver, plus the
//! schema migration (`omnistream migrate`) and the connection probe of `check-config`.
//!
//! Design: the engine is a deterministic function of its input log, so what is stored is that
//! log (accepted events, personal values already hashed), the outputs, a per-member ledger
//! index and source positions; a restart replays the log after the last checkpoint, whose
//! entity states and blobs are kept as generations of rows (a table per entity kind,
//! `state_member` and so on, see the `states` module). One commit is one atomic group even
//! though CQL has no multi-partition transactions: the data rows are written first (unlogged
//! batches, one per partition, many in flight), and only then the commit marker, a single
//! partition write in `positions` that moves `next_seq`/`next_output` forward together with
//! the positions. Readers stop at the marker, so rows of a commit that failed half-way are
//! never replayed or served, and the next commit overwrites them (same seq, same row: every
//! write is idempotent, which is why retrying it is safe). Ledger rows are keyed by member, not
//! by seq, so a commit first records their keys as `pending` in the marker partition; a failed
//! commit's ledger rows are deleted before the next replay or commit (also after a crash).
//! One process writes a keyspace: it holds the writer lease (the `lease` module, the only
//! conditional writes), and every write it sends checks first that the lease is still its own.
//!
//! The `Store` trait is synchronous and called from the shard's actor thread, which is itself
//! inside a tokio runtime; the store therefore owns a small runtime of its own and hands every
//! call to it, blocking the caller until the answer (as a disk write would). Commits come from
//! the shard's commit thread ([`Committer`]), so the shard applies the next batch meanwhile;
//! one commit is written at a time.

use crate::config::CqlConfig;
use crate::store::{Batch, Checkpointer, Committer, Store, StoreError, StoredCheckpoint};
use futures::{SinkExt, StreamExt};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch as CqlBatch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The schema version this binary writes and reads.
pub const SCHEMA_VERSION: i32 = 4;

/// Schema files in order: `(version, CQL)`; `migrate` applies those above the recorded one.
pub const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../schemas/cql/001_init.cql")),
    (2, include_str!("../schemas/cql/002_checkpoints.cql")),
    (3, include_str!("../schemas/cql/003_kind_tables.cql")),
    (4, include_str!("../schemas/cql/004_writer_lease.cql")),
];

mod cache;
mod lease;
mod states;

pub use lease::{exit_when_fenced, EXIT_FENCED};

/// `seq >> EVENT_BUCKET_BITS` is the partition of an event or output (65536 rows each).
pub const EVENT_BUCKET_BITS: u32 = 16;
/// `entry seq >> LEDGER_BUCKET_BITS` is the partition of a member's ledger entry (4096 each).
pub const LEDGER_BUCKET_BITS: u32 = 12;

/// The shard whose marker and positions this store writes (one shard today).
const SHARD: i32 = 0;
/// An unlogged batch stays under ScyllaDB's 128 KiB batch warning.
const MAX_BATCH_BYTES: usize = 96 * 1024;
/// Rows per unlogged batch at most.
const MAX_BATCH_ROWS: usize = 256;
/// The component name in `schema_version`.
const COMPONENT: &str = "omnistream";

fn consistency(name: &str) -> Consistency {
    match name.to_ascii_uppercase().as_str() {
        "ANY" => Consistency::Any,
        "ONE" => Consistency::One,
        "TWO" => Consistency::Two,
        "THREE" => Consistency::Three,
        "QUORUM" => Consistency::Quorum,
        "ALL" => Consistency::All,
        "EACH_QUORUM" => Consistency::EachQuorum,
        "LOCAL_ONE" => Consistency::LocalOne,
        // the configuration is checked before we get here; LOCAL_QUORUM is the default
        _ => Consistency::LocalQuorum,
    }
}

/// A small tokio runtime owned by a store; shut down without blocking when dropped, because
/// the store may be dropped on an actor thread inside another runtime.
struct Rt(Option<tokio::runtime::Runtime>);

impl Rt {
    fn new() -> std::io::Result<Rt> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("omnistream-cql")
            .enable_all()
            .build()?;
        Ok(Rt(Some(rt)))
    }

    /// Runs `fut` on the store's runtime and waits for it on this thread. Works inside and
    /// outside another runtime (tokio's own `block_on` refuses to nest).
    ///
    /// The wait is `unconstrained`: called from a task of another runtime (the shard's actix
    /// arbiter), polling a tokio `JoinHandle` spends that task's cooperative budget, and
    /// once it is spent tokio defers the wake-up until the task yields, which a thread
    /// blocked here never does: it parked for good after about 128 loads in one message (a
    /// restart replaying the log with a resident bound hit it; `tests/crash.rs` on CQL).
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let Some(rt) = &self.0 else {
            return Err(db_err("-", "the store's runtime has stopped"));
        };
        futures::executor::block_on(tokio::task::unconstrained(rt.spawn(fut)))
            .map_err(|e| db_err("-", format!("cql task failed: {e}")))?
    }

    /// Runs the future `make` gives, which may borrow, on the store's runtime from a thread of its own (tokio
    /// refuses to block inside another runtime) and waits for it.
    fn block_on_borrowed<T: Send, Fut: Future<Output = Result<T, StoreError>>>(
        &self,
        make: impl FnOnce() -> Fut + Send,
    ) -> Result<T, StoreError> {
        let Some(rt) = &self.0 else {
            return Err(db_err("-", "the store's runtime has stopped"));
        };
        std::thread::scope(|s| {
            s.spawn(|| rt.block_on(make()))
                .join()
                .unwrap_or_else(|_| Err(db_err("-", "a cql task panicked")))
        })
    }

    /// Starts `fut` on the store's runtime without waiting for it; None once stopped.
    fn spawn(
        &self,
        fut: impl Future<Output = ()> + Send + 'static,
    ) -> Option<tokio::task::JoinHandle<()>> {
        self.0.as_ref().map(|rt| rt.spawn(fut))
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

fn db_err(keyspace: &str, why: impl Into<String>) -> StoreError {
    StoreError::Database {
        keyspace: keyspace.to_string(),
        why: why.into(),
    }
}

fn cql_err(
    op: &'static str,
    table: &'static str,
    key: impl Into<String>,
) -> impl Fn(String) -> StoreError {
    let key = key.into();
    move |why| StoreError::Cql {
        op,
        table,
        key: key.clone(),
        why,
    }
}

/// Opens a session to the cluster with the configured nodes, datacenter, credentials, TLS and
/// timeouts; token-aware routing is the driver's default policy.
async fn connect(cfg: &CqlConfig) -> Result<Session, StoreError> {
    let timeout = Duration::from_millis(cfg.request_timeout_ms);
    let profile = ExecutionProfile::builder()
        .request_timeout(Some(timeout))
        .consistency(consistency(&cfg.write_consistency))
        .build();
    let mut b = SessionBuilder::new()
        .known_nodes(cfg.contact_points.iter())
        .connection_timeout(timeout)
        .default_execution_profile_handle(profile.into_handle());
    if let Some(dc) = &cfg.local_datacenter {
        b = b.prefer_datacenter(dc.clone());
    }
    if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
        b = b.user(u, p);
    }
    let tls = cfg
        .tls_keys()
        .client_config()
        .map_err(|e| db_err(&cfg.keyspace, format!("{}: {}", e.key, e.why)))?;
    if let Some(tls) = tls {
        b = b.tls_context(Some(tls));
    }
    b.build().await.map_err(|e| StoreError::Unreachable {
        keyspace: cfg.keyspace.clone(),
        why: format!("cannot connect to {}: {e}", cfg.contact_points.join(", ")),
    })
}

async fn prepare(
    session: &Session,
    ks: &str,
    table: &'static str,
    cql: String,
    cl: Consistency,
) -> Result<PreparedStatement, StoreError> {
    let mut p = session
        .prepare(cql.clone())
        .await
        .map_err(|e| cql_err("prepare", table, ks)(format!("{cql}: {e}")))?;
    p.set_consistency(cl);
    p.set_is_idempotent(true);
    Ok(p)
}

/// Tables of `keyspace`, empty when it does not exist.
async fn tables(session: &Session, ks: &str) -> Result<Vec<String>, StoreError> {
    let p = prepare(
        session,
        ks,
        "system_schema.tables",
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?".into(),
        Consistency::One,
    )
    .await?;
    let rows = session
        .execute_unpaged(&p, (ks,))
        .await
        .map_err(|e| cql_err("read", "system_schema.tables", ks)(e.to_string()))?
        .into_rows_result()
        .map_err(|e| cql_err("read", "system_schema.tables", ks)(e.to_string()))?;
    let names = rows
        .rows::<(String,)>()
        .map_err(|e| cql_err("read", "system_schema.tables", ks)(e.to_string()))?
        .filter_map(|r| r.ok().map(|(n,)| n))
        .collect();
    Ok(names)
}

/// The schema version recorded in `keyspace`; `None` when it was never migrated.
async fn recorded_version(session: &Session, ks: &str) -> Result<Option<i32>, StoreError> {
    if !tables(session, ks)
        .await?
        .iter()
        .any(|t| t == "schema_version")
    {
        return Ok(None);
    }
    let p = prepare(
        session,
        ks,
        "schema_version",
        format!("SELECT version FROM {ks}.schema_version WHERE component = ?"),
        Consistency::One,
    )
    .await?;
    let rows = session
        .execute_unpaged(&p, (COMPONENT,))
        .await
        .map_err(|e| cql_err("read", "schema_version", COMPONENT)(e.to_string()))?
        .into_rows_result()
        .map_err(|e| cql_err("read", "schema_version", COMPONENT)(e.to_string()))?;
    let v = rows
        .maybe_first_row::<(Option<i32>,)>()
        .map_err(|e| cql_err("read", "schema_version", COMPONENT)(e.to_string()))?;
    Ok(v.and_then(|(v,)| v))
}

fn newer_schema(ks: &str, v: i32) -> StoreError {
    db_err(
        ks,
        format!(
            "the database has schema version {v}, newer than this binary's {SCHEMA_VERSION}: \
             upgrade omnistream before running it against this keyspace"
        ),
    )
}

/// Records `version` as the keyspace's schema version (what `migrate` does last).
async fn record_version(session: &Session, ks: &str, version: i32) -> Result<(), StoreError> {
    let p = prepare(
        session,
        ks,
        "schema_version",
        format!(
            "INSERT INTO {ks}.schema_version (component, version, applied_at, applied_by) \
             VALUES (?, ?, toTimestamp(now()), ?)"
        ),
        Consistency::Quorum,
    )
    .await?;
    let by = format!("omnistream {}", env!("CARGO_PKG_VERSION"));
    session
        .execute_unpaged(&p, (COMPONENT, version, by))
        .await
        .map_err(|e| cql_err("write", "schema_version", COMPONENT)(e.to_string()))?;
    Ok(())
}

/// Splits a schema file into statements: `--` comments dropped, `;`-terminated.
fn statements(text: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    code.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The version found before (`None`: a fresh keyspace).
    pub from: Option<i32>,
    /// The version recorded now.
    pub to: i32,
    /// Statements executed.
    pub statements: usize,
    /// Entity states copied from schema 2's `states` table into the table of their kind
    /// (schema 3); 0 unless the keyspace was at schema 2.
    pub states_copied: u64,
}

/// Applies the schema idempotently (every statement `IF NOT EXISTS`) and records its version;
/// refuses a keyspace whose recorded version is newer than this binary's. From schema 2 it
/// also copies the entity states into their kind's table (see the `states` module).
pub fn migrate(cfg: &CqlConfig) -> Result<Migrated, StoreError> {
    migrate_to(cfg, SCHEMA_VERSION)
}

/// [`migrate`] up to schema `target` only (at most this binary's), recording `target` (or
/// the version found, if higher): for tests that need a keyspace as an older binary left it.
#[doc(hidden)]
pub fn migrate_to(cfg: &CqlConfig, target: i32) -> Result<Migrated, StoreError> {
    let rt = Rt::new().map_err(|e| db_err(&cfg.keyspace, format!("runtime: {e}")))?;
    let cfg = cfg.clone();
    let target = target.min(SCHEMA_VERSION);
    rt.run(async move {
        let ks = cfg.keyspace.as_str();
        let session = connect(&cfg).await?;
        let from = recorded_version(&session, ks).await?;
        if let Some(v) = from.filter(|v| *v > SCHEMA_VERSION) {
            return Err(newer_schema(ks, v));
        }
        let mut n = 0;
        for (version, text) in MIGRATIONS {
            if from.is_some_and(|f| f >= *version) || *version > target {
                continue;
            }
            for stmt in statements(text) {
                let stmt = stmt
                    .replace("{{keyspace}}", ks)
                    .replace("{{replication}}", cfg.replication.trim());
                session
                    .query_unpaged(stmt.clone(), &[])
                    .await
                    .map_err(|e| db_err(ks, format!("schema {version}: {e}\n{stmt}")))?;
                n += 1;
            }
        }
        session
            .await_schema_agreement()
            .await
            .map_err(|e| db_err(ks, format!("schema agreement: {e}")))?;
        // schema 3 moved the entity states of schema 2's one `states` table into a table per
        // kind: copy them before recording 3 (a copy cut short is redone by the next migrate)
        let mut states_copied = 0;
        if from == Some(2) && target >= 3 {
            states_copied = states::copy_v2_states(
                &session,
                ks,
                consistency(&cfg.read_consistency),
                consistency(&cfg.write_consistency),
                cfg.write_attempts,
                cfg.max_concurrent_requests,
            )
            .await?;
            tracing::info!(
                keyspace = ks,
                rows = states_copied,
                "copied the entity states of schema 2 into their kinds' tables"
            );
        }
        let to = from.map_or(target, |f| f.max(target));
        record_version(&session, ks, to).await?;
        Ok(Migrated {
            from,
            to,
            statements: n,
            states_copied,
        })
    })
}

/// Overwrites the recorded schema version: for tests of the refusal and for repair by hand.
pub fn force_schema_version(cfg: &CqlConfig, version: i32) -> Result<(), StoreError> {
    let rt = Rt::new().map_err(|e| db_err(&cfg.keyspace, format!("runtime: {e}")))?;
    let cfg = cfg.clone();
    rt.run(async move {
        let session = connect(&cfg).await?;
        record_version(&session, &cfg.keyspace, version).await
    })
}

/// What `check-config` reports about the cluster.
#[derive(Debug, Clone)]
pub struct Probe {
    /// `cluster_name` of the node answering.
    pub cluster_name: String,
    /// Its release version (Cassandra's or ScyllaDB's compatible one).
    pub release_version: String,
    /// Whether the keyspace exists.
    pub keyspace_present: bool,
    /// The schema version recorded in it.
    pub schema_version: Option<i32>,
    /// The process that writes it now (its writer lease's owner, pid and start) and the
    /// seconds its lease has left; none when no process does (or before schema 4).
    pub writer: Option<(String, Option<i32>)>,
    /// The fingerprint of the personal-data key the keyspace was written with
    /// ([`crate::store::pii_key_fingerprint`]); none before the first run records it.
    pub pii_key_check: Option<u64>,
}

/// Connects and reads the cluster's name and version, the keyspace's schema version and who
/// writes it.
pub fn probe(cfg: &CqlConfig) -> Result<Probe, StoreError> {
    let rt = Rt::new().map_err(|e| db_err(&cfg.keyspace, format!("runtime: {e}")))?;
    let cfg = cfg.clone();
    rt.run(async move {
        let ks = cfg.keyspace.as_str();
        let session = connect(&cfg).await?;
        let p = prepare(
            &session,
            ks,
            "system.local",
            "SELECT cluster_name, release_version FROM system.local".into(),
            Consistency::One,
        )
        .await?;
        let rows = session
            .execute_unpaged(&p, &[])
            .await
            .map_err(|e| cql_err("read", "system.local", "local")(e.to_string()))?
            .into_rows_result()
            .map_err(|e| cql_err("read", "system.local", "local")(e.to_string()))?;
        let (cluster_name, release_version) = rows
            .first_row::<(Option<String>, Option<String>)>()
            .map_err(|e| cql_err("read", "system.local", "local")(e.to_string()))?;
        let keyspace_present = session.get_cluster_state().get_keyspace(ks).is_some()
            || !tables(&session, ks).await?.is_empty();
        let schema_version = recorded_version(&session, ks).await?;
        let pii_key_check = match schema_version {
            Some(_) => {
                let source = crate::store::PII_KEY_CHECK;
                let r = session
                    .query_unpaged(select_position(ks), (SHARD, source))
                    .await;
                position_of(r, source)?
            }
            None => None,
        };
        let writer = if schema_version.is_some_and(|v| v >= 4) {
            lease::holder_of(&session, ks)
                .await
                .map_err(cql_err("read", "leases", ks))?
        } else {
            None
        };
        Ok(Probe {
            cluster_name: cluster_name.unwrap_or_default(),
            release_version: release_version.unwrap_or_default(),
            keyspace_present,
            schema_version,
            writer,
            pii_key_check,
        })
    })
}

/// The read of one source position of keyspace `ks`, bound to `(shard, source)`.
fn select_position(ks: &str) -> String {
    format!("SELECT position FROM {ks}.positions WHERE shard = ? AND source = ?")
}

/// The position a [`select_position`] read answered for `source`, if it is stored.
fn position_of(
    r: Result<scylla::response::query_result::QueryResult, scylla::errors::ExecutionError>,
    source: &str,
) -> Result<Option<u64>, StoreError> {
    let err = cql_err("read", "positions", source);
    let row = r
        .map_err(|e| err(e.to_string()))?
        .into_rows_result()
        .map_err(|e| err(e.to_string()))?
        .maybe_first_row::<(Option<i64>,)>()
        .map_err(|e| err(e.to_string()))?;
    Ok(row.and_then(|(p,)| p).map(|p| p as u64))
}

/// The prepared statements and settings every call shares.
struct Inner {
    session: Session,
    keyspace: String,
    attempts: u32,
    concurrency: usize,
    ins_event: PreparedStatement,
    ins_output: PreparedStatement,
    ins_ledger: PreparedStatement,
    del_ledger: PreparedStatement,
    set_pending: PreparedStatement,
    clear_pending: PreparedStatement,
    set_marker: PreparedStatement,
    set_marker_at: PreparedStatement,
    sel_marker: PreparedStatement,
    sel_events: PreparedStatement,
    sel_outputs: PreparedStatement,
    sel_ledger: PreparedStatement,
    sel_position: PreparedStatement,
    del_events_bucket: PreparedStatement,
    del_events_below: PreparedStatement,
    sel_ckpt: PreparedStatement,
    add_unfinished: PreparedStatement,
    set_ckpt: PreparedStatement,
    /// The statements of each kind's state table, in the order of `Kind::ALL`.
    states: [states::KindStatements; states::KINDS],
    ins_blob: PreparedStatement,
    sel_blob: PreparedStatement,
    del_blob: PreparedStatement,
    /// The writer lease every write checks.
    lease: lease::Lease,
}

/// The durable log in a CQL keyspace; see the module documentation for the commit protocol.
pub struct CqlStore {
    inner: Arc<Inner>,
    /// Where the committed log ends, shared with the committer.
    marks: Arc<Marks>,
    /// The checkpoint generations (see `states`).
    gens: states::SharedGens,
    /// The read cache of states (`cql.cache-mb`; None when 0).
    cache: Option<Arc<cache::StateCache>>,
    /// The cleanup of the last durable checkpoint, running in the background.
    cleaning: states::Cleaning,
    // last: dropped after `inner`, so the session goes before its runtime
    rt: Arc<Rt>,
}

/// What this process knows of the committed log.
struct Marks {
    /// The committed marker: next log seq and next output seq.
    next_seq: AtomicU64,
    next_output: AtomicU64,
    /// A commit failed: clean up its rows and reread the marker before going on.
    dirty: AtomicBool,
    /// The log below this seq is deleted already (in this process).
    truncated: AtomicU64,
}

/// Commits from the shard's commit thread; the same writes as [`CqlStore::commit`].
struct CqlCommitter {
    // first: dropped before the runtime
    inner: Arc<Inner>,
    marks: Arc<Marks>,
    states: states::CqlStates,
    rt: Arc<Rt>,
}

impl Committer for CqlCommitter {
    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        batch.check_encoded()?;
        commit_batch(&self.inner, &self.rt, &self.marks, batch)?;
        write_checkpoint(&self.states, batch)
    }
}

/// The batch's checkpoint, if it carries one, written after the batch (as the embedded
/// store does): the service hands its checkpoints to a checkpointer of their own, but a
/// cluster process checkpoints in its commits.
fn write_checkpoint(states: &states::CqlStates, batch: &Batch) -> Result<(), StoreError> {
    match &batch.checkpoint {
        Some(cp) => states.write(cp),
        None => Ok(()),
    }
}

/// Writes a batch after cleaning up a failed one; moves the marks on success.
fn commit_batch(
    inner: &Arc<Inner>,
    rt: &Rt,
    marks: &Marks,
    batch: &Batch,
) -> Result<(), StoreError> {
    recover(inner, rt, marks)?;
    let next_seq = batch
        .events
        .last()
        .map_or(marks.next_seq.load(Ordering::SeqCst), |(s, _)| s + 1);
    let next_output = batch
        .outputs
        .last()
        .map_or(marks.next_output.load(Ordering::SeqCst), |(s, _)| s + 1);
    let r = rt.run(commit(
        inner.clone(),
        batch.clone(),
        next_seq,
        next_output,
        marks.truncated.load(Ordering::SeqCst),
    ));
    match r {
        Ok(()) => {
            marks.next_seq.store(next_seq, Ordering::SeqCst);
            marks.next_output.store(next_output, Ordering::SeqCst);
            if let Some(below) = batch.truncate_below {
                marks.truncated.fetch_max(below, Ordering::SeqCst);
            }
            Ok(())
        }
        Err(e) => {
            marks.dirty.store(true, Ordering::SeqCst);
            Err(e)
        }
    }
}

/// The committed state read from the marker partition.
struct Marker {
    next_seq: u64,
    next_output: u64,
    pending: Option<Vec<u8>>,
}

impl CqlStore {
    /// [`CqlStore::open_as`] for a store that serves no address (tools, tests).
    pub fn open(cfg: &CqlConfig) -> Result<CqlStore, StoreError> {
        CqlStore::open_as(cfg, "in-process")
    }

    /// Connects, refuses a keyspace that is not migrated or has a newer schema, prepares every
    /// statement, takes the writer lease for this run, named by `label` (the listen
    /// address; [`StoreError::Held`] while another process holds it), and finishes (cleans
    /// up) a commit a crash left half-written.
    pub fn open_as(cfg: &CqlConfig, label: &str) -> Result<CqlStore, StoreError> {
        let rt = Rt::new().map_err(|e| db_err(&cfg.keyspace, format!("runtime: {e}")))?;
        let c = cfg.clone();
        let label = label.to_string();
        let inner = rt.run(async move {
            let ks = c.keyspace.clone();
            let session = connect(&c).await?;
            match recorded_version(&session, &ks).await? {
                None => {
                    return Err(db_err(
                        &ks,
                        "no omnistream schema in this keyspace: run `omnistream migrate` first",
                    ))
                }
                Some(v) if v > SCHEMA_VERSION => return Err(newer_schema(&ks, v)),
                Some(v) if v < SCHEMA_VERSION => {
                    return Err(db_err(
                        &ks,
                        format!("schema version {v} is older than this binary's {SCHEMA_VERSION}: run `omnistream migrate`"),
                    ))
                }
                Some(_) => {}
            }
            let w = consistency(&c.write_consistency);
            let r = consistency(&c.read_consistency);
            let s = &session;
            let k = ks.as_str();
            Ok(Inner {
                ins_event: prepare(s, k, "events", format!("INSERT INTO {k}.events (bucket, seq, body) VALUES (?, ?, ?)"), w).await?,
                ins_output: prepare(s, k, "outputs", format!("INSERT INTO {k}.outputs (bucket, seq, body) VALUES (?, ?, ?) USING TTL {}", c.outputs_ttl_s), w).await?,
                ins_ledger: prepare(s, k, "ledger", format!("INSERT INTO {k}.ledger (member, bucket, seq, body) VALUES (?, ?, ?, ?)"), w).await?,
                del_ledger: prepare(s, k, "ledger", format!("DELETE FROM {k}.ledger WHERE member = ? AND bucket = ? AND seq = ?"), w).await?,
                set_pending: prepare(s, k, "positions", format!("UPDATE {k}.positions SET pending = ? WHERE shard = ?"), w).await?,
                clear_pending: prepare(s, k, "positions", format!("UPDATE {k}.positions SET pending = null WHERE shard = ?"), w).await?,
                set_marker: prepare(s, k, "positions", format!("UPDATE {k}.positions SET next_seq = ?, next_output = ?, pending = null WHERE shard = ?"), w).await?,
                set_marker_at: prepare(s, k, "positions", format!("UPDATE {k}.positions SET next_seq = ?, next_output = ?, pending = null, position = ? WHERE shard = ? AND source = ?"), w).await?,
                sel_marker: prepare(s, k, "positions", format!("SELECT next_seq, next_output, pending FROM {k}.positions WHERE shard = ? LIMIT 1"), r).await?,
                sel_events: prepare(s, k, "events", format!("SELECT seq, body FROM {k}.events WHERE bucket = ? AND seq >= ? AND seq < ?"), r).await?,
                sel_outputs: prepare(s, k, "outputs", format!("SELECT seq, body FROM {k}.outputs WHERE bucket = ? AND seq >= ? AND seq < ? LIMIT ?"), r).await?,
                sel_ledger: prepare(s, k, "ledger", format!("SELECT seq, body FROM {k}.ledger WHERE member = ? AND bucket = ? AND seq >= ? LIMIT ?"), r).await?,
                sel_position: prepare(s, k, "positions", select_position(k), r).await?,
                del_events_bucket: prepare(s, k, "events", format!("DELETE FROM {k}.events WHERE bucket = ?"), w).await?,
                del_events_below: prepare(s, k, "events", format!("DELETE FROM {k}.events WHERE bucket = ? AND seq < ?"), w).await?,
                sel_ckpt: prepare(s, k, "checkpoints", format!("SELECT gen, seq, unfinished FROM {k}.checkpoints WHERE shard = ?"), r).await?,
                add_unfinished: prepare(s, k, "checkpoints", format!("UPDATE {k}.checkpoints SET unfinished = unfinished + ? WHERE shard = ?"), w).await?,
                set_ckpt: prepare(s, k, "checkpoints", format!("UPDATE {k}.checkpoints SET gen = ?, seq = ?, unfinished = unfinished - ? WHERE shard = ?"), w).await?,
                states: states::prepare_kinds(s, k, r, w).await?,
                ins_blob: prepare(s, k, "checkpoint_blobs", format!("INSERT INTO {k}.checkpoint_blobs (gen, name, chunk, data) VALUES (?, ?, ?, ?)"), w).await?,
                sel_blob: prepare(s, k, "checkpoint_blobs", format!("SELECT data FROM {k}.checkpoint_blobs WHERE gen = ? AND name = ?"), r).await?,
                del_blob: prepare(s, k, "checkpoint_blobs", format!("DELETE FROM {k}.checkpoint_blobs WHERE gen = ? AND name = ?"), w).await?,
                lease: lease::Lease::prepare(s, &c, &label).await?,
                session,
                keyspace: ks,
                attempts: c.write_attempts,
                concurrency: c.max_concurrent_requests,
            })
        })?;
        let store = CqlStore {
            inner: Arc::new(inner),
            marks: Arc::new(Marks {
                next_seq: AtomicU64::new(0),
                next_output: AtomicU64::new(0),
                dirty: AtomicBool::new(true),
                truncated: AtomicU64::new(0),
            }),
            gens: Default::default(),
            cache: cache::StateCache::new(cfg.cache_mb.saturating_mul(1 << 20)),
            cleaning: Default::default(),
            rt: Arc::new(rt),
        };
        // nothing is written before the lease is this process's; dropped (an error below),
        // the store releases it
        let inner = Arc::clone(&store.inner);
        store
            .rt
            .run(async move { inner.lease.acquire(&inner.session).await })?;
        store.rt.spawn(lease::keep(Arc::downgrade(&store.inner)));
        recover(&store.inner, &store.rt, &store.marks)?;
        let inner = Arc::clone(&store.inner);
        *store
            .gens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = store
            .rt
            .run(async move { states::read_gens(&inner).await })?;
        Ok(store)
    }

    fn states(&self) -> states::CqlStates {
        states::CqlStates {
            inner: Arc::clone(&self.inner),
            gens: Arc::clone(&self.gens),
            cache: self.cache.clone(),
            cleaning: Arc::clone(&self.cleaning),
            rt: Arc::clone(&self.rt),
        }
    }

    /// Writes the states and blobs of a checkpoint without making it durable, as a crash in
    /// the middle of a checkpoint leaves them (for tests: they must never be read).
    #[doc(hidden)]
    pub fn write_unfinished_checkpoint(
        &self,
        cp: &crate::store::CheckpointWrite,
    ) -> Result<(), StoreError> {
        self.states().write_gen(cp, false)
    }

    /// The keyspace this store writes.
    pub fn keyspace(&self) -> &str {
        &self.inner.keyspace
    }

    fn recover(&self) -> Result<(), StoreError> {
        recover(&self.inner, &self.rt, &self.marks)
    }
}

/// Rereads the marker and deletes the ledger rows of a commit that did not finish.
fn recover(inner: &Arc<Inner>, rt: &Rt, marks: &Marks) -> Result<(), StoreError> {
    if !marks.dirty.load(Ordering::SeqCst) {
        return Ok(());
    }
    let inner = inner.clone();
    let (seq, out) = rt.run(async move {
        let m = read_marker(&inner).await?;
        if let Some(p) = m.pending {
            let keys: Vec<(String, u64)> = serde_json::from_slice(&p).map_err(|e| {
                cql_err("read", "positions", "pending")(format!("unreadable pending keys: {e}"))
            })?;
            tracing::warn!(
                keyspace = %inner.keyspace,
                rows = keys.len(),
                "removing the ledger rows of a commit that did not finish"
            );
            let inner2 = inner.clone();
            let results: Vec<Result<(), StoreError>> = futures::stream::iter(keys)
                .map(|(member, seq)| {
                    let inner = inner2.clone();
                    async move {
                        let key = format!("{member}/{seq}");
                        let bucket = (seq >> LEDGER_BUCKET_BITS) as i64;
                        write(&inner, || {
                            inner.session.execute_unpaged(
                                &inner.del_ledger,
                                (member.as_str(), bucket, seq as i64),
                            )
                        })
                        .await
                        .map(drop)
                        .map_err(cql_err("delete", "ledger", key))
                    }
                })
                .buffer_unordered(inner.concurrency)
                .collect()
                .await;
            results.into_iter().collect::<Result<Vec<()>, _>>()?;
            write(&inner, || {
                inner
                    .session
                    .execute_unpaged(&inner.clear_pending, (SHARD,))
            })
            .await
            .map_err(cql_err("write", "positions", "pending"))?;
        }
        Ok((m.next_seq, m.next_output))
    })?;
    marks.next_seq.store(seq, Ordering::SeqCst);
    marks.next_output.store(out, Ordering::SeqCst);
    marks.dirty.store(false, Ordering::SeqCst);
    Ok(())
}

async fn read_marker(inner: &Inner) -> Result<Marker, StoreError> {
    let key = format!("shard {SHARD}");
    let rows = inner
        .session
        .execute_unpaged(&inner.sel_marker, (SHARD,))
        .await
        .map_err(|e| cql_err("read", "positions", key.clone())(e.to_string()))?
        .into_rows_result()
        .map_err(|e| cql_err("read", "positions", key.clone())(e.to_string()))?;
    let row = rows
        .maybe_first_row::<(Option<i64>, Option<i64>, Option<Vec<u8>>)>()
        .map_err(|e| cql_err("read", "positions", key)(e.to_string()))?;
    let (s, o, pending) = row.unwrap_or((None, None, None));
    Ok(Marker {
        next_seq: s.unwrap_or(0) as u64,
        next_output: o.unwrap_or(0) as u64,
        pending,
    })
}

/// Runs an idempotent request up to `attempts` times, backing off 50 ms, 100 ms, ...
async fn retry<T, E: std::fmt::Display, Fut: Future<Output = Result<T, E>>>(
    attempts: u32,
    f: impl FnMut() -> Fut,
) -> Result<T, String> {
    retry_gated(attempts, None, f).await
}

/// A write of this process's log: [`retry`], each attempt sent only while the writer lease
/// is this process's (see the `lease` module).
async fn write<T, E: std::fmt::Display, Fut: Future<Output = Result<T, E>>>(
    inner: &Inner,
    f: impl FnMut() -> Fut,
) -> Result<T, String> {
    retry_gated(inner.attempts, Some(&inner.lease), f).await
}

async fn retry_gated<T, E: std::fmt::Display, Fut: Future<Output = Result<T, E>>>(
    attempts: u32,
    gate: Option<&lease::Lease>,
    mut f: impl FnMut() -> Fut,
) -> Result<T, String> {
    let mut last = String::new();
    for i in 0..attempts {
        let attempt = match gate {
            // no attempt is sent, or retried by the driver, after the lease's time is up
            Some(lease) => {
                let (left, _under_way) = lease.begin()?;
                match tokio::time::timeout(left, f()).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err("the writer lease's time ran out during the write".into()),
                }
            }
            None => f().await.map_err(|e| e.to_string()),
        };
        match attempt {
            Ok(v) => return Ok(v),
            Err(e) => {
                last = e;
                if i + 1 < attempts {
                    tracing::warn!(attempt = i + 1, error = %last, "cql write failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50u64 << i.min(6))).await;
                }
            }
        }
    }
    Err(format!("{last} (after {attempts} attempts)"))
}

/// Rows of one partition, cut into unlogged batches under the size limits.
fn chunks<R>(rows: Vec<(R, usize)>) -> Vec<Vec<R>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = 0;
    for (r, size) in rows {
        if !cur.is_empty() && (cur.len() >= MAX_BATCH_ROWS || bytes + size > MAX_BATCH_BYTES) {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += size;
        cur.push(r);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Writes `rows` (all of one partition) with `stmt`: a single row as itself, more as an
/// unlogged batch of the same prepared statement.
async fn write_rows<R: SerializeRow>(
    inner: &Inner,
    stmt: &PreparedStatement,
    rows: &[R],
) -> Result<(), String> {
    if let [row] = rows {
        return write(inner, || inner.session.execute_unpaged(stmt, row))
            .await
            .map(drop);
    }
    let mut b = CqlBatch::new(BatchType::Unlogged);
    for _ in rows {
        b.append_statement(stmt.clone());
    }
    if let Some(cl) = stmt.get_consistency() {
        b.set_consistency(cl);
    }
    b.set_is_idempotent(true);
    write(inner, || inner.session.batch(&b, rows))
        .await
        .map(drop)
}

type LogRow = (i64, i64, Vec<u8>);
type LedgerRow = (String, i64, i64, Vec<u8>);

/// One unit of work of a commit: a batch for one partition of one table.
enum Unit {
    Log(&'static str, i64, Vec<LogRow>),
    Ledger(String, i64, Vec<LedgerRow>),
    /// Delete a bucket of the log, or its seqs below the second value.
    Truncate(i64, Option<i64>),
}

fn log_units(table: &'static str, rows: &[(u64, Vec<u8>)], out: &mut Vec<Unit>) {
    let mut by_bucket: std::collections::BTreeMap<i64, Vec<(LogRow, usize)>> = Default::default();
    for (seq, body) in rows {
        let bucket = (*seq >> EVENT_BUCKET_BITS) as i64;
        by_bucket
            .entry(bucket)
            .or_default()
            .push(((bucket, *seq as i64, body.clone()), body.len() + 32));
    }
    for (bucket, rows) in by_bucket {
        for c in chunks(rows) {
            out.push(Unit::Log(table, bucket, c));
        }
    }
}

async fn commit(
    inner: Arc<Inner>,
    b: Batch,
    next_seq: u64,
    next_output: u64,
    truncated: u64,
) -> Result<(), StoreError> {
    if !b.ledger.is_empty() {
        let keys: Vec<(&str, u64)> = b.ledger.iter().map(|(m, s, _)| (m.as_str(), *s)).collect();
        let pending = serde_json::to_vec(&keys).unwrap_or_default();
        write(&inner, || {
            inner
                .session
                .execute_unpaged(&inner.set_pending, (&pending, SHARD))
        })
        .await
        .map_err(cql_err("write", "positions", "pending"))?;
    }
    let mut units = Vec::new();
    if let Some(below) = b.truncate_below.filter(|b| *b > truncated) {
        // the log before a durable checkpoint is reflected in it: whole buckets go as
        // partitions, the last one up to the checkpoint's seq
        for bucket in (truncated >> EVENT_BUCKET_BITS)..(below >> EVENT_BUCKET_BITS) {
            units.push(Unit::Truncate(bucket as i64, None));
        }
        units.push(Unit::Truncate(
            (below >> EVENT_BUCKET_BITS) as i64,
            Some(below as i64),
        ));
    }
    log_units("events", &b.events, &mut units);
    log_units("outputs", &b.outputs, &mut units);
    let mut by_member: std::collections::BTreeMap<(&str, i64), Vec<(LedgerRow, usize)>> =
        Default::default();
    for (m, seq, body) in &b.ledger {
        let bucket = (*seq >> LEDGER_BUCKET_BITS) as i64;
        by_member.entry((m, bucket)).or_default().push((
            (m.clone(), bucket, *seq as i64, body.clone()),
            body.len() + m.len() + 32,
        ));
    }
    for ((m, bucket), rows) in by_member {
        for c in chunks(rows) {
            units.push(Unit::Ledger(m.to_string(), bucket, c));
        }
    }
    let inner_ref = &inner;
    let mut results = futures::stream::iter(units)
        .map(|u| async move {
            match u {
                Unit::Log(table, bucket, rows) => {
                    let stmt = if table == "events" {
                        &inner_ref.ins_event
                    } else {
                        &inner_ref.ins_output
                    };
                    let first = rows.first().map_or(0, |r| r.1);
                    write_rows(inner_ref, stmt, &rows).await.map_err(cql_err(
                        "write",
                        table,
                        format!("bucket {bucket} seq {first}..+{}", rows.len()),
                    ))
                }
                Unit::Ledger(member, bucket, rows) => {
                    write_rows(inner_ref, &inner_ref.ins_ledger, &rows)
                        .await
                        .map_err(cql_err(
                            "write",
                            "ledger",
                            format!("member {member} bucket {bucket}"),
                        ))
                }
                Unit::Truncate(bucket, below) => {
                    let s = &inner_ref.session;
                    write(inner_ref, || async move {
                        match below {
                            None => {
                                s.execute_unpaged(&inner_ref.del_events_bucket, (bucket,))
                                    .await
                            }
                            Some(seq) => {
                                s.execute_unpaged(&inner_ref.del_events_below, (bucket, seq))
                                    .await
                            }
                        }
                    })
                    .await
                    .map(drop)
                    .map_err(cql_err(
                        "truncate",
                        "events",
                        format!("bucket {bucket}"),
                    ))
                }
            }
        })
        .buffer_unordered(inner.concurrency);
    while let Some(r) = results.next().await {
        r?;
    }
    drop(results);
    // the commit point: one partition, so the marker and positions change together
    let (s, o) = (next_seq as i64, next_output as i64);
    let marker_key = format!("shard {SHARD}");
    if b.positions.is_empty() {
        write(&inner, || {
            inner
                .session
                .execute_unpaged(&inner.set_marker, (s, o, SHARD))
        })
        .await
        .map(drop)
        .map_err(cql_err("write", "positions", marker_key))
    } else {
        let rows: Vec<(i64, i64, i64, i32, &str)> = b
            .positions
            .iter()
            .map(|(src, p)| (s, o, *p as i64, SHARD, src.as_str()))
            .collect();
        write_rows(&inner, &inner.set_marker_at, &rows)
            .await
            .map_err(cql_err("write", "positions", marker_key))
    }
}

/// Rows of a log table in seq order, as the scanning task hands them to the caller.
type Chunk = Result<Vec<(u64, Vec<u8>)>, StoreError>;

/// Reads `[lo, hi)` of a bucketed log table (events or outputs), at most `limit` rows, bucket
/// after bucket, each paged in clustering order; sends them in chunks to `tx`.
async fn scan_log(
    inner: Arc<Inner>,
    table: &'static str,
    lo: u64,
    hi: u64,
    limit: usize,
    mut tx: futures::channel::mpsc::Sender<Chunk>,
) {
    let mut left = limit;
    let mut bucket = lo >> EVENT_BUCKET_BITS;
    while left > 0 && hi > 0 && bucket <= (hi - 1) >> EVENT_BUCKET_BITS {
        let from = lo.max(bucket << EVENT_BUCKET_BITS) as i64;
        let to = hi.min((bucket + 1) << EVENT_BUCKET_BITS) as i64;
        let key = format!("bucket {bucket}");
        let err = cql_err("scan", table, key);
        let pager = if table == "events" {
            inner
                .session
                .execute_iter(inner.sel_events.clone(), (bucket as i64, from, to))
                .await
        } else {
            let n = left.min(i32::MAX as usize) as i32;
            inner
                .session
                .execute_iter(inner.sel_outputs.clone(), (bucket as i64, from, to, n))
                .await
        };
        let mut rows = match pager
            .map_err(|e| e.to_string())
            .and_then(|p| p.rows_stream::<(i64, Vec<u8>)>().map_err(|e| e.to_string()))
        {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Err(err(e))).await;
                return;
            }
        };
        let mut chunk = Vec::with_capacity(1024);
        while let Some(row) = rows.next().await {
            match row {
                Ok((seq, body)) => {
                    chunk.push((seq as u64, body));
                    left -= 1;
                    if chunk.len() == 1024 && tx.send(Ok(std::mem::take(&mut chunk))).await.is_err()
                    {
                        return;
                    }
                    if left == 0 {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(err(e.to_string()))).await;
                    return;
                }
            }
        }
        if !chunk.is_empty() && tx.send(Ok(chunk)).await.is_err() {
            return;
        }
        bucket += 1;
    }
}

impl CqlStore {
    /// Streams `[lo, hi)` of `table` to `f` on the calling thread, at most `limit` rows.
    fn scan(
        &self,
        table: &'static str,
        lo: u64,
        hi: u64,
        limit: usize,
        f: &mut dyn FnMut(u64, Vec<u8>),
    ) -> Result<(), StoreError> {
        let Some(rt) = &self.rt.0 else {
            return Err(db_err(
                &self.inner.keyspace,
                "the store's runtime has stopped",
            ));
        };
        let (tx, mut rx) = futures::channel::mpsc::channel(4);
        rt.spawn(scan_log(self.inner.clone(), table, lo, hi, limit, tx));
        while let Some(chunk) = futures::executor::block_on(rx.next()) {
            for (seq, body) in chunk? {
                f(seq, body);
            }
        }
        Ok(())
    }
}

impl CqlStore {
    /// Releases the writer lease: the next process need not wait for it to expire. Nothing
    /// is written after this, by a committer still holding the store's parts either.
    fn release(&self) {
        let inner = Arc::clone(&self.inner);
        // the cleanup after the last checkpoint deletes while the lease is held: it finishes
        // first (it is short; bounded all the same)
        let cleaning = self
            .cleaning
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let _ = self.rt.run(async move {
            if let Some(task) = cleaning {
                let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
            }
            inner.lease.release(&inner.session).await;
            Ok(())
        });
    }
}

impl Drop for CqlStore {
    fn drop(&mut self) {
        self.release();
    }
}

impl Store for CqlStore {
    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError> {
        batch.check_encoded()?;
        commit_batch(&self.inner, &self.rt, &self.marks, batch)?;
        write_checkpoint(&self.states(), batch)
    }

    fn close(&mut self) {
        self.release();
    }

    fn read_cache(&self) -> Option<crate::store::ReadCache> {
        self.cache.as_ref().map(|c| c.stats())
    }

    fn committer(&self) -> Option<Arc<dyn Committer>> {
        Some(Arc::new(CqlCommitter {
            inner: Arc::clone(&self.inner),
            marks: Arc::clone(&self.marks),
            states: self.states(),
            rt: Arc::clone(&self.rt),
        }))
    }

    fn replay(&self, from: u64, f: &mut dyn FnMut(u64, &[u8])) -> Result<u64, StoreError> {
        // a rebuild after an outage replays: while the lease is not this process's again the
        // shard stays not ready, rather than say ready and fail its next commit
        self.inner
            .lease
            .writable()
            .map_err(cql_err("replay", "leases", "writer"))?;
        self.recover()?;
        let end = self.marks.next_seq.load(Ordering::SeqCst);
        let mut expected = from;
        let mut gap = None;
        self.scan("events", from, end, usize::MAX, &mut |seq, body| {
            if seq != expected && gap.is_none() {
                gap = Some(expected);
            }
            expected = seq + 1;
            f(seq, &body);
        })?;
        if expected < end && gap.is_none() {
            gap = Some(expected);
        }
        if let Some(missing) = gap {
            return Err(StoreError::Cql {
                op: "replay",
                table: "events",
                key: format!("seq {missing}"),
                why: format!("missing below the commit marker {end}: the log has a hole"),
            });
        }
        Ok(end.max(from))
    }

    fn next_output(&self) -> Result<u64, StoreError> {
        self.recover()?;
        Ok(self.marks.next_output.load(Ordering::SeqCst))
    }

    fn cold(&self) -> Option<Box<dyn omnistream_actors::cold::Cold>> {
        Some(Box::new(self.states()))
    }

    fn last_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        states::last_checkpoint(&self.inner, &self.rt, &self.gens)
    }

    fn checkpointer(&self) -> Option<Arc<dyn Checkpointer>> {
        Some(Arc::new(self.states()))
    }

    fn ledger(&self, member: &str, from: u64, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let inner = self.inner.clone();
        let member = member.to_string();
        self.rt.run(async move {
            let mut out = Vec::new();
            let mut bucket = from >> LEDGER_BUCKET_BITS;
            // entry numbers are dense per member, so the first empty bucket is the end
            while out.len() < limit {
                let lo = from.max(bucket << LEDGER_BUCKET_BITS) as i64;
                let n = (limit - out.len()).min(i32::MAX as usize) as i32;
                let err = cql_err("read", "ledger", format!("member {member} bucket {bucket}"));
                let mut rows = inner
                    .session
                    .execute_iter(
                        inner.sel_ledger.clone(),
                        (member.as_str(), bucket as i64, lo, n),
                    )
                    .await
                    .map_err(|e| err(e.to_string()))?
                    .rows_stream::<(i64, Vec<u8>)>()
                    .map_err(|e| err(e.to_string()))?;
                let before = out.len();
                while let Some(row) = rows.next().await {
                    let (_, body) = row.map_err(|e| err(e.to_string()))?;
                    out.push(body);
                    if out.len() >= limit {
                        break;
                    }
                }
                if out.len() == before {
                    break;
                }
                bucket += 1;
            }
            Ok(out)
        })
    }

    fn outputs(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.recover()?;
        let mut out = Vec::new();
        self.scan(
            "outputs",
            from,
            self.marks.next_output.load(Ordering::SeqCst),
            limit,
            &mut |s, b| out.push((s, b)),
        )?;
        Ok(out)
    }

    fn position(&self, source: &str) -> Result<Option<u64>, StoreError> {
        let inner = self.inner.clone();
        let source = source.to_string();
        self.rt.run(async move {
            let r = inner
                .session
                .execute_unpaged(&inner.sel_position, (SHARD, source.as_str()))
                .await;
            position_of(r, &source)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_splits_into_if_not_exists_statements_with_placeholders() {
        let (v, text) = MIGRATIONS[0];
        assert_eq!(v, 1);
        let s = statements(text);
        assert_eq!(s.len(), 6, "{s:#?}");
        assert!(s.iter().all(|x| x.contains("IF NOT EXISTS")), "{s:#?}");
        assert!(s.iter().all(|x| x.contains("{{keyspace}}")));
        assert!(s[0].contains("{{replication}}"));
        assert!(s.iter().all(|x| !x.contains("--")));
    }

    #[test]
    fn the_versions_run_one_to_the_binarys_and_schema_3_has_a_table_per_kind() {
        let versions: Vec<i32> = MIGRATIONS.iter().map(|(v, _)| *v).collect();
        assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
        let (v, text) = MIGRATIONS[2];
        assert_eq!(v, 3);
        let s = statements(text);
        assert_eq!(s.len(), states::KINDS, "{s:#?}");
        for (stmt, table) in s.iter().zip(states::STATE_TABLES) {
            let head = format!("CREATE TABLE IF NOT EXISTS {{{{keyspace}}}}.{table} (");
            assert!(stmt.starts_with(&head), "{stmt}");
            let cols: String = stmt.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                cols.ends_with(
                    "key text, gen bigint, state blob, PRIMARY KEY ((key), gen) ) \
                     WITH CLUSTERING ORDER BY (gen DESC)"
                ),
                "{cols}"
            );
        }
    }

    #[test]
    fn batches_stay_under_the_row_and_byte_limits_and_keep_order() {
        let rows: Vec<(usize, usize)> = (0..1000).map(|i| (i, 1000)).collect();
        let c = chunks(rows);
        assert!(
            c.iter().all(|b| b.len() * 1000 <= MAX_BATCH_BYTES),
            "{}",
            c[0].len()
        );
        let flat: Vec<usize> = c.into_iter().flatten().collect();
        assert_eq!(flat, (0..1000).collect::<Vec<_>>());
        // one row bigger than the limit still goes, alone
        let c = chunks(vec![(1, 10), (2, MAX_BATCH_BYTES * 2), (3, 10)]);
        assert_eq!(c, vec![vec![1], vec![2], vec![3]]);
        let c = chunks((0..600).map(|i| (i, 1)).collect());
        assert_eq!(c.iter().map(Vec::len).collect::<Vec<_>>(), [256, 256, 88]);
    }

    /// The shard calls the store from inside a task of another runtime (actix) and may make
    /// hundreds of calls before that task yields: the waits must not spend its cooperative
    /// budget, or the thread parks for good once it is spent.
    #[test]
    fn many_calls_from_inside_another_runtime_task_never_park_for_good() {
        let rt = Rt::new().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let outer = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let sum = outer.block_on(async {
                let mut sum = 0u64;
                for i in 0..1_000u64 {
                    sum += rt.run(async move { Ok(i) }).unwrap();
                }
                sum
            });
            let _ = tx.send(sum);
        });
        let sum = rx.recv_timeout(Duration::from_secs(60));
        assert_eq!(sum, Ok(499_500), "1,000 calls in one poll of an outer task");
    }
}
