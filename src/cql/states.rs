//! Checkpoints in the CQL store: the entity states the engine passivates or checkpoints, and
//! the blobs of its own state, so a bounded engine and a short restart work on ScyllaDB and
//! Cassandra as they do on the embedded store.
//!
//! Every checkpoint is a *generation*. Its states are rows `((key), gen)` of their kind's table
//! (`state_member`, `state_sku`, ... [`STATE_TABLES`], schema 3), newest first, its blobs rows
//! `((gen, name), chunk)` in chunks of [`BLOB_CHUNK`] bytes (far under the
//! mutation size limit), and it becomes the one a restart restores only when the row
//! `checkpoints[shard]` names it. CQL has no transaction over those rows, so:
//! - before writing anything, the generation joins the row's `unfinished` set; it leaves it
//!   in the same write that makes it durable. A checkpoint that failed or was cut short by a
//!   crash stays in `unfinished`, and its rows are never read: a state is the newest row with
//!   a generation at most the durable one that is not unfinished.
//! - a new generation is above every generation used before, finished or not, so it never
//!   mixes with the rows of one that failed.
//! - after the generation is durable, the older rows of each key it wrote and the previous
//!   generation's blobs are deleted (best effort: leftovers are ignored by the rule above).
//!
//! Schema 2 kept the states of every kind in one table, `states ((kind, key), gen)`;
//! `omnistream migrate` copies its rows into the kind tables ([`copy_v2_states`]) and this
//! binary neither reads nor writes it.

use super::cache::StateCache;
use super::{cql_err, prepare, retry, Inner, Rt, SHARD};
use crate::store::{CheckpointWrite, Checkpointer, StoreError, StoredCheckpoint};
use futures::StreamExt;
use omnistream_actors::cold::{Cold, Kind};
use omnistream_actors::Str;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

/// How many kinds of entity there are, so how many state tables.
pub(super) const KINDS: usize = Kind::ALL.len();

/// The state table of each kind (`state_` and [`Kind::name`]), in the order of [`Kind::ALL`];
/// `schemas/cql/003_kind_tables.cql` creates them (a unit test holds the two together).
pub(super) const STATE_TABLES: [&str; KINDS] = [
    "state_identity",
    "state_member",
    "state_order",
    "state_sku",
    "state_dealer",
    "state_store",
    "state_campaign",
    "state_code",
    "state_device",
    "state_ip",
    "state_net",
    "state_ring",
];

/// Where `kind` is in [`Kind::ALL`] and so in [`STATE_TABLES`] and `Inner::states`: its tag
/// byte less one (as `Kind::from_u8` reads it; a unit test checks every kind).
fn slot(kind: Kind) -> usize {
    usize::from(kind as u8).saturating_sub(1)
}

/// The state table of `kind`.
fn table(kind: Kind) -> &'static str {
    STATE_TABLES[slot(kind)]
}

/// The prepared statements of one kind's state table.
pub(super) struct KindStatements {
    /// `(key, gen, state)`.
    ins: PreparedStatement,
    /// The first [`FIRST_ROWS`] rows of a key at or below a generation, newest first.
    sel: PreparedStatement,
    /// All of them.
    sel_all: PreparedStatement,
    /// A key's rows below a generation.
    del_old: PreparedStatement,
    /// The whole table, `(key, gen, state)`.
    scan: PreparedStatement,
}

/// Prepares the statements of every kind's table, in the order of [`Kind::ALL`].
pub(super) async fn prepare_kinds(
    s: &Session,
    k: &str,
    r: Consistency,
    w: Consistency,
) -> Result<[KindStatements; KINDS], StoreError> {
    let mut out = Vec::with_capacity(KINDS);
    for t in STATE_TABLES {
        out.push(KindStatements {
            ins: prepare(
                s,
                k,
                t,
                format!("INSERT INTO {k}.{t} (key, gen, state) VALUES (?, ?, ?)"),
                w,
            )
            .await?,
            sel: prepare(
                s,
                k,
                t,
                format!(
                    "SELECT gen, state FROM {k}.{t} WHERE key = ? AND gen <= ? LIMIT {FIRST_ROWS}"
                ),
                r,
            )
            .await?,
            sel_all: prepare(
                s,
                k,
                t,
                format!("SELECT gen, state FROM {k}.{t} WHERE key = ? AND gen <= ?"),
                r,
            )
            .await?,
            del_old: prepare(
                s,
                k,
                t,
                format!("DELETE FROM {k}.{t} WHERE key = ? AND gen < ?"),
                w,
            )
            .await?,
            scan: prepare(s, k, t, format!("SELECT key, gen, state FROM {k}.{t}"), r).await?,
        });
    }
    match out.try_into() {
        Ok(a) => Ok(a),
        Err(_) => unreachable!("one set of statements per table"),
    }
}

impl Inner {
    /// The statements of `kind`'s state table.
    fn kind(&self, kind: Kind) -> &KindStatements {
        &self.states[slot(kind)]
    }
}

/// Copies the rows of schema 2's single `states` table into the kind tables: a paged scan,
/// each row inserted as it is into its kind's table, `concurrency` at a time, each retried up
/// to `attempts` times. Idempotent (rows are keyed by key and generation), so a copy cut short
/// is simply run again. Answers the rows copied; a row of a kind this binary does not know
/// stops the copy, naming the row (and so the upgrade: nothing is recorded).
pub(super) async fn copy_v2_states(
    session: &Session,
    ks: &str,
    r: Consistency,
    w: Consistency,
    attempts: u32,
    concurrency: usize,
) -> Result<u64, StoreError> {
    let mut ins = Vec::with_capacity(KINDS);
    for t in STATE_TABLES {
        ins.push(
            prepare(
                session,
                ks,
                t,
                format!("INSERT INTO {ks}.{t} (key, gen, state) VALUES (?, ?, ?)"),
                w,
            )
            .await?,
        );
    }
    let scan = prepare(
        session,
        ks,
        "states",
        format!("SELECT kind, key, gen, state FROM {ks}.states"),
        r,
    )
    .await?;
    let err = cql_err("copy", "states", ks);
    let rows = session
        .execute_iter(scan, ())
        .await
        .map_err(|e| err(e.to_string()))?
        .rows_stream::<(i8, String, i64, Vec<u8>)>()
        .map_err(|e| err(e.to_string()))?;
    let ins = &ins;
    let mut copies = rows
        .map(|row| async move {
            let (tag, key, gen, state) =
                row.map_err(|e| cql_err("copy", "states", ks)(e.to_string()))?;
            let Some(kind) = u8::try_from(tag).ok().and_then(Kind::from_u8) else {
                return Err(cql_err(
                    "copy",
                    "states",
                    format!("kind {tag} {key} gen {gen}"),
                )(
                    "not a kind of entity this binary knows: nothing of it is copied".into(),
                ));
            };
            retry(attempts, || {
                session.execute_unpaged(&ins[slot(kind)], (key.as_str(), gen, state.as_slice()))
            })
            .await
            .map(drop)
            .map_err(cql_err(
                "copy",
                table(kind),
                format!("{kind:?} {key} gen {gen}"),
            ))
        })
        .buffer_unordered(concurrency.max(1));
    let mut copied = 0u64;
    while let Some(r) = copies.next().await {
        r?;
        copied += 1;
    }
    Ok(copied)
}

/// Rows a load reads first: the newest durable one is almost always the first (only a
/// generation that did not finish comes before it); past these, the load reads them all.
const FIRST_ROWS: usize = 4;

/// A checkpoint's state rows are independent single-row writes, off the commit path: they go
/// this many times `max-concurrent-requests` at a time. Measured on the local node with
/// ~100,000 events' changes (BENCHMARKS.md): 32 in flight took 37 s and 19 s, 256 took 20 s and
/// 13 s.
const CHECKPOINT_FANOUT: usize = 8;

/// Bytes per blob row.
pub(super) const BLOB_CHUNK: usize = 1 << 20;

/// The blobs of a checkpoint, by row name.
const BLOBS: [&str; 4] = ["global", "seen", "codes_filter", "extras"];

/// Which generations count.
#[derive(Debug, Default, Clone)]
pub(super) struct Gens {
    /// The durable checkpoint (0: none).
    pub durable: i64,
    /// The log seq it reflects.
    pub seq: u64,
    /// Generations begun and not finished.
    pub unfinished: BTreeSet<i64>,
}

impl Gens {
    /// Whether rows of generation `g` are part of the durable state.
    fn counts(&self, g: i64) -> bool {
        g <= self.durable && !self.unfinished.contains(&g)
    }

    /// The next generation: above every one used.
    fn next(&self) -> i64 {
        self.durable
            .max(self.unfinished.last().copied().unwrap_or(0))
            + 1
    }
}

/// The generations, shared by the store, its cold tier and its checkpoint writer.
pub(super) type SharedGens = Arc<Mutex<Gens>>;

fn lock(g: &SharedGens) -> std::sync::MutexGuard<'_, Gens> {
    g.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads the checkpoint row.
pub(super) async fn read_gens(inner: &Inner) -> Result<Gens, StoreError> {
    let err = cql_err("read", "checkpoints", format!("shard {SHARD}"));
    let rows = inner
        .session
        .execute_unpaged(&inner.sel_ckpt, (SHARD,))
        .await
        .map_err(|e| err(e.to_string()))?
        .into_rows_result()
        .map_err(|e| err(e.to_string()))?;
    let row = rows
        .maybe_first_row::<(Option<i64>, Option<i64>, Option<Vec<i64>>)>()
        .map_err(|e| err(e.to_string()))?;
    let (gen, seq, unfinished) = row.unwrap_or((None, None, None));
    Ok(Gens {
        durable: gen.unwrap_or(0),
        seq: seq.unwrap_or(0) as u64,
        unfinished: unfinished.unwrap_or_default().into_iter().collect(),
    })
}

/// Writes a checkpoint as generation `gen`; with `finish` false it stops before making it
/// durable (what a crash in the middle leaves; for tests).
async fn write(
    inner: &Inner,
    cp: &CheckpointWrite,
    gen: i64,
    finish: bool,
) -> Result<(), StoreError> {
    let key = format!("shard {SHARD}");
    super::write(inner, || {
        inner
            .session
            .execute_unpaged(&inner.add_unfinished, (vec![gen], SHARD))
    })
    .await
    .map_err(cql_err("write", "checkpoints", key.clone()))?;
    let mut states = futures::stream::iter(cp.states.iter())
        .map(|(kind, k, state)| async move {
            super::write(inner, || {
                inner
                    .session
                    .execute_unpaged(&inner.kind(*kind).ins, (k.as_str(), gen, state.as_slice()))
            })
            .await
            .map_err(cql_err(
                "write",
                table(*kind),
                format!("{kind:?} {k} gen {gen}"),
            ))
        })
        .buffer_unordered(inner.concurrency * CHECKPOINT_FANOUT);
    while let Some(r) = states.next().await {
        r?;
    }
    drop(states);
    for (name, blob) in BLOBS
        .into_iter()
        .zip([&cp.global, &cp.seen, &cp.filter, &cp.extras])
    {
        for (i, chunk) in blob.chunks(BLOB_CHUNK).enumerate() {
            super::write(inner, || {
                inner
                    .session
                    .execute_unpaged(&inner.ins_blob, (gen, name, i as i32, chunk))
            })
            .await
            .map_err(cql_err(
                "write",
                "checkpoint_blobs",
                format!("{name} gen {gen}"),
            ))?;
        }
    }
    if !finish {
        return Ok(());
    }
    // the commit point of the checkpoint: one row
    super::write(inner, || {
        inner
            .session
            .execute_unpaged(&inner.set_ckpt, (gen, cp.seq as i64, vec![gen], SHARD))
    })
    .await
    .map(drop)
    .map_err(cql_err("write", "checkpoints", key))
}

/// The background cleanup of the last durable checkpoint (see [`CqlStates::write_gen`]).
pub(super) type Cleaning = Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>;

/// Deletes what generation `gen` made obsolete: older rows of the keys it wrote, and the
/// blobs of generation `prev`. Failures are only logged: the rows are ignored anyway.
async fn clean(inner: Arc<Inner>, keys: Vec<(Kind, Str)>, gen: i64, prev: i64) {
    let fanout = inner.concurrency * CHECKPOINT_FANOUT;
    let mut dels = futures::stream::iter(keys)
        .map(|(kind, k)| {
            let inner = Arc::clone(&inner);
            async move {
                // each delete only while this process holds the writer lease
                super::write(&inner, || {
                    inner
                        .session
                        .execute_unpaged(&inner.kind(kind).del_old, (k.as_str(), gen))
                })
                .await
                .map(drop)
            }
        })
        .buffer_unordered(fanout);
    let mut failed = 0usize;
    while let Some(r) = dels.next().await {
        failed += usize::from(r.is_err());
    }
    drop(dels);
    if prev > 0 {
        for name in BLOBS {
            let r = super::write(&inner, || {
                inner.session.execute_unpaged(&inner.del_blob, (prev, name))
            })
            .await;
            failed += usize::from(r.is_err());
        }
    }
    if failed > 0 {
        tracing::warn!(
            gen,
            failed,
            "could not delete rows an older checkpoint left; they are ignored"
        );
    }
}

/// Reads one blob of generation `gen`, its chunks in order.
async fn read_blob(inner: &Inner, gen: i64, name: &'static str) -> Result<Vec<u8>, StoreError> {
    let err = cql_err("read", "checkpoint_blobs", format!("{name} gen {gen}"));
    let mut rows = inner
        .session
        .execute_iter(inner.sel_blob.clone(), (gen, name))
        .await
        .map_err(|e| err(e.to_string()))?
        .rows_stream::<(Vec<u8>,)>()
        .map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().await {
        out.extend_from_slice(&row.map_err(|e| err(e.to_string()))?.0);
    }
    Ok(out)
}

/// The durable checkpoint, if any; refreshes the shared generations.
pub(super) fn last_checkpoint(
    inner: &Arc<Inner>,
    rt: &Rt,
    gens: &SharedGens,
) -> Result<Option<StoredCheckpoint>, StoreError> {
    let inner = Arc::clone(inner);
    let read = rt.run(async move {
        let g = read_gens(&inner).await?;
        if g.durable == 0 {
            return Ok((g, None));
        }
        let mut blobs = Vec::with_capacity(BLOBS.len());
        for name in BLOBS {
            blobs.push(read_blob(&inner, g.durable, name).await?);
        }
        Ok((g, Some(blobs)))
    })?;
    let (g, blobs) = read;
    let seq = g.seq;
    *lock(gens) = g;
    Ok(blobs.map(|b| {
        let [global, seen, filter, extras]: [Vec<u8>; 4] = b
            .try_into()
            .unwrap_or_else(|_| unreachable!("four blobs read"));
        StoredCheckpoint {
            seq,
            global,
            seen,
            filter,
            extras,
        }
    }))
}

/// The state tables as the engine and the shard use them: the engine's cold tier (loads,
/// scans) and the checkpoint writer (from the shard's checkpoint thread, or at shutdown).
pub(super) struct CqlStates {
    // first: dropped before the runtime
    pub inner: Arc<Inner>,
    pub gens: SharedGens,
    /// Durable states recently read or written (see `cache.rs`).
    pub cache: Option<Arc<StateCache>>,
    /// The cleanup of the last durable checkpoint.
    pub cleaning: Cleaning,
    pub rt: Arc<Rt>,
}

impl CqlStates {
    /// Writes `cp` as the next generation; with `finish` false it is left unfinished.
    pub(super) fn write_gen(&self, cp: &CheckpointWrite, finish: bool) -> Result<(), StoreError> {
        let (gen, prev) = {
            let mut g = lock(&self.gens);
            let gen = g.next();
            // readers skip it from now on, durable or not
            g.unfinished.insert(gen);
            (gen, g.durable)
        };
        let inner = &self.inner;
        let r = self
            .rt
            .block_on_borrowed(|| async move { write(inner, cp, gen, finish).await });
        if r.is_ok() && finish {
            // durable now: the cache learns the new states before the shard stops reading
            // them from the checkpoint in flight
            if let Some(c) = &self.cache {
                for (kind, key, state) in &cp.states {
                    c.put(*kind, key, Some(state));
                }
            }
            {
                let mut g = lock(&self.gens);
                g.durable = gen;
                g.seq = cp.seq;
                g.unfinished.remove(&gen);
            }
            // the rows it made obsolete go in the background: readers ignore them already,
            // and a crash before they are gone leaves rows that stay ignored. One cleanup at
            // a time, in order, so they never pile up
            let keys: Vec<(Kind, Str)> = cp
                .states
                .iter()
                .map(|(k, key, _)| (*k, key.clone()))
                .collect();
            let inner = Arc::clone(&self.inner);
            let mut slot = self.cleaning.lock().unwrap_or_else(PoisonError::into_inner);
            let before = slot.take();
            *slot = self.rt.spawn(async move {
                if let Some(b) = before {
                    let _ = b.await;
                }
                clean(inner, keys, gen, prev).await;
            });
        }
        r
    }

    /// The newest durable state of a key, from its kind's table.
    fn read(&self, kind: Kind, key: &str, g: Gens) -> Result<Option<Vec<u8>>, String> {
        let inner = Arc::clone(&self.inner);
        let key = key.to_string();
        self.rt
            .run(async move {
                let err = cql_err("read", table(kind), format!("{kind:?} {key}"));
                let stmts = inner.kind(kind);
                // the first rows, then (rarely, past unfinished generations) all of them
                for stmt in [&stmts.sel, &stmts.sel_all] {
                    let mut rows = inner
                        .session
                        .execute_iter(stmt.clone(), (key.as_str(), g.durable))
                        .await
                        .map_err(|e| err(e.to_string()))?
                        .rows_stream::<(i64, Vec<u8>)>()
                        .map_err(|e| err(e.to_string()))?;
                    let mut n = 0;
                    while let Some(row) = rows.next().await {
                        let (gen, state) = row.map_err(|e| err(e.to_string()))?;
                        if g.counts(gen) {
                            return Ok(Some(state));
                        }
                        n += 1;
                    }
                    if n < FIRST_ROWS {
                        break;
                    }
                }
                Ok(None)
            })
            .map_err(|e| e.to_string())
    }
}

impl Checkpointer for CqlStates {
    fn write(&self, cp: &CheckpointWrite) -> Result<(), StoreError> {
        self.write_gen(cp, true)
    }
}

impl Cold for CqlStates {
    fn load(&self, kind: Kind, key: &str) -> Result<Option<Vec<u8>>, String> {
        let g = lock(&self.gens).clone();
        if g.durable == 0 {
            return Ok(None);
        }
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(kind, key)) {
            return Ok(hit);
        }
        let found = self.read(kind, key, g)?;
        if let Some(c) = &self.cache {
            c.put(kind, key, found.as_deref());
        }
        Ok(found)
    }

    /// Nothing is stored before the first durable generation.
    fn holds(&self, _kind: Kind) -> Result<bool, String> {
        Ok(lock(&self.gens).durable != 0)
    }

    /// Reads the whole table of `kind`; used only to rebuild the code filter of a checkpoint
    /// saved without one.
    fn scan(&self, kind: Kind, f: &mut dyn FnMut(&str, &[u8])) -> Result<(), String> {
        let g = lock(&self.gens).clone();
        let inner = Arc::clone(&self.inner);
        let found = self
            .rt
            .run(async move {
                let err = cql_err("scan", table(kind), format!("{kind:?}"));
                let mut rows = inner
                    .session
                    .execute_iter(inner.kind(kind).scan.clone(), ())
                    .await
                    .map_err(|e| err(e.to_string()))?
                    .rows_stream::<(String, i64, Vec<u8>)>()
                    .map_err(|e| err(e.to_string()))?;
                // rows of one key come together, newest generation first
                let mut out: Vec<(String, Vec<u8>)> = Vec::new();
                let mut last: Option<String> = None;
                while let Some(row) = rows.next().await {
                    let (key, gen, state) = row.map_err(|e| err(e.to_string()))?;
                    if !g.counts(gen) || last.as_deref() == Some(key.as_str()) {
                        continue;
                    }
                    last = Some(key.clone());
                    out.push((key, state));
                }
                Ok(out)
            })
            .map_err(|e| e.to_string())?;
        for (key, state) in found {
            f(&key, &state);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_table_named_after_it() {
        for (i, kind) in Kind::ALL.into_iter().enumerate() {
            assert_eq!(slot(kind), i, "{kind:?}");
            assert_eq!(Kind::from_u8(kind as u8), Some(kind));
            assert_eq!(table(kind), format!("state_{}", kind.name()));
        }
        let mut names = STATE_TABLES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KINDS);
    }
}
