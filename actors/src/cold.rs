//! Passivation: entities nobody has touched for a while leave memory and come back from a
//! cold tier (the store's table of entity states) when a command needs them, so the engine
//! holds a bounded number of entities however many exist.
//!
//! Determinism is untouched: an entity's state is the same whether it stayed resident or
//! went to disk and came back (the encoding round-trips exactly, property-tested in the
//! engine), so which entities are resident changes speed, never results.
//!
//! Consistency with the store: the cold tier holds the states of the last *checkpoint* only.
//! An entity changed since then is *dirty*; evicting it keeps its encoded state in memory
//! (`spilled`, far smaller than the live state) until the next [`crate::Engine::checkpoint`]
//! hands every dirty and spilled state to the caller, who writes them atomically with the log
//! position they reflect. A restart restores the checkpoint and replays the log after it.

use crate::fraud::filter::CodeFilter;
use compact_str::CompactString as Str;
use griddle::hash_map::Entry;
use serde::{de::DeserializeOwned, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

type HashMap<K, V> = crate::GrowMap<K, V>;

/// The encoding version of a stored entity state: the first byte of every stored value. A
/// state with a version this binary does not know is refused, never misread.
///
/// - 1: JSON, as the API shows states (written until session 20, still read);
/// - 2: postcard (serde's compact binary form: varints, no field names), every field
///   present: about a quarter of the bytes of JSON (BENCHMARKS.md);
/// - 3: the same, with the order's `placed_at` (when and in which offset it was placed)
///   and `cancel_detail` appended;
/// - 4: the same, with the member's `offset_min` appended;
/// - 5: the same, with the dealer's `booked` (each payment reference's amount) and the
///   store's newest event's `offset_min` (in `latest`) appended;
/// - 6: the same, with the order's `refused_unstocked` appended;
/// - 7: the same, with the store's `sales_waiting` appended, and its KPI buckets'
///   `member_visit_seconds` and `timed_member_visits`; the order's `rejection`; a stashed
///   visit's `channel`;
/// - 8: the same, with a SKU's stock movements since its latest count (`moves`) appended;
/// - 9: the same layout, with new enum variants an older build would misread as damage: a
///   member's stash may hold `HasPoints` and `Via` commands, an order may be in phase
///   `CheckingPoints` (encoding 8 reads as is; 9 tells an older build to refuse the store);
/// - 10: the same layout; a member's stash may hold `Phones` and `MergeRefused` commands
///   (a merge of three or more members), an order may be in phase `CheckingStock`
///   (encoding 9 reads as is);
/// - 11: the same, with an identity's `released` (how many times a member gave it up) and
///   an order's `member_unknown` (placed under a `member_id` never issued) appended, and a
///   resolution's `first_released`; a member's stash may hold `Given` commands (an event
///   naming its member by `member_id`, which is asked first whether it exists) and
///   `ReplacePhone` and `PhoneClaimed` (a person's replacement of its phone);
/// - 12: the same layout; a member's stash may hold `Join` commands (a person's merge of two
///   members; encoding 11 reads as is);
/// - 13: the same, with a person's blocks appended to a device's, address's and prefix's
///   counts and to a member's scan profile, and the block a scan met to its features and to
///   what it scanned (the scan's decision); a member's stash may hold `Block` commands;
/// - 14: the same, with the dealer's `info_at` (the time of the `dealer` event in effect)
///   and the member's `grace_since` (when it stopped qualifying for its tier) appended;
/// - 15: the same, with the lots a member's order redeemed and has not had back (`taken`)
///   appended to the order's points bookkeeping, a scan's `sku_mismatch` to its features,
///   the time of each prefix's `code_batch` (`batches_at`) to the reference data and the
///   timed rep visits (`timed_rep_visits`) to a store's KPI buckets; a decision may name
///   the reason `sku_mismatch`;
/// - 16: the same, with the time an order's points were credited (`earned_at`) appended to
///   the order's points bookkeeping (a return takes them back from that lot first).
///
/// Without field names a layout cannot grow the way JSON did (a new field with
/// `#[serde(default)]`): adding, removing, reordering or retyping a field of a stored state
/// makes the states already stored unreadable. Such a change bumps this version and reads
/// the layout before it: a field added at the end carries `deserialize_with`
/// [`since`]`::<V, _, _>` with the encoding `V` that added it, which reads nothing and gives
/// the default while [`decode`] reads an older encoding, wherever the type sits (a member
/// inside another member's stash too). `member::tests::the_stored_layout_is_pinned` (a full
/// member) and `tests::the_stored_layout_of_every_kind_is_pinned` (every kind's empty state:
/// fields added or removed) fail until then.
pub const STATE_VERSION: u8 = 16;

/// The oldest encoding version this binary still reads.
pub const OLDEST_VERSION: u8 = 1;

thread_local! {
    /// Set while [`encode`] runs on this thread: fields are then never left out.
    static COMPACT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Where [`encode`] writes before copying out exactly the bytes written: a state's
    /// encoding then grows no vector of its own, and keeps no spare capacity while it
    /// waits in memory for a checkpoint.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The encoding [`decode`] is reading on this thread; the current one otherwise (JSON of
    /// any age, commands between processes).
    static READING: std::cell::Cell<u8> = const { std::cell::Cell::new(STATE_VERSION) };
}

/// `deserialize_with` of a field encoding `V` added (`"crate::cold::since::<5, _, _>"`):
/// read when the state was stored in encoding `V` or later; in an older one its bytes are
/// not there, so nothing is read and it takes its default.
pub(crate) fn since<'de, const V: u8, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    if READING.with(std::cell::Cell::get) < V {
        Ok(T::default())
    } else {
        T::deserialize(d)
    }
}

/// `skip_serializing_if` of a state's field that is usually empty: JSON (the API's views,
/// `replay`'s files, encoding version 1) leaves it out when it holds its default. The stored
/// encoding keeps it: postcard has no field names, so a field left out would shift the rest.
pub(crate) fn omit<T: Default + PartialEq>(v: &T) -> bool {
    !COMPACT.with(std::cell::Cell::get) && *v == T::default()
}

/// The kinds of entity, with the byte that tags their stored states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Kind {
    /// Identity → member.
    Identity = 1,
    /// Member.
    Member = 2,
    /// Order coordinator.
    Order = 3,
    /// SKU stock pool.
    Sku = 4,
    /// Dealer credit.
    Dealer = 5,
    /// Store KPIs.
    Store = 6,
    /// Scan campaign.
    Campaign = 7,
    /// Code registry entry.
    Code = 8,
    /// Device.
    Device = 9,
    /// IP address.
    Ip = 10,
    /// Network prefix.
    Net = 11,
    /// Ring of linked members.
    Ring = 12,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 12] = [
        Kind::Identity,
        Kind::Member,
        Kind::Order,
        Kind::Sku,
        Kind::Dealer,
        Kind::Store,
        Kind::Campaign,
        Kind::Code,
        Kind::Device,
        Kind::Ip,
        Kind::Net,
        Kind::Ring,
    ];

    /// The short name used in metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Identity => "identity",
            Kind::Member => "member",
            Kind::Order => "order",
            Kind::Sku => "sku",
            Kind::Dealer => "dealer",
            Kind::Store => "store",
            Kind::Campaign => "campaign",
            Kind::Code => "code",
            Kind::Device => "device",
            Kind::Ip => "ip",
            Kind::Net => "net",
            Kind::Ring => "ring",
        }
    }

    /// The kind a stored tag byte names.
    pub fn from_u8(b: u8) -> Option<Kind> {
        Kind::ALL.get(usize::from(b).checked_sub(1)?).copied()
    }
}

/// Where passivated entity states live: the states of the last checkpoint, by kind and key.
/// Implemented by the service's stores; reads only (the engine's owner writes checkpoints).
/// Shared between threads: the final states are read and written on several.
pub trait Cold: Send + Sync {
    /// The stored state of one entity, if any.
    fn load(&self, kind: Kind, key: &str) -> Result<Option<Vec<u8>>, String>;
    /// Calls `f` with every stored state of one kind (for full snapshots).
    fn scan(&self, kind: Kind, f: &mut dyn FnMut(&str, &[u8])) -> Result<(), String>;

    /// Whether any state of this kind may be stored. When not, the engine reads nothing for
    /// the keys it creates until its own checkpoints have written states of the kind: on a
    /// new store, every first command of an entity would otherwise be a read that finds
    /// nothing. True unless the store knows better.
    fn holds(&self, _kind: Kind) -> Result<bool, String> {
        Ok(true)
    }
}

/// The length a packed list's serializer is given: counted (a pass over the packed bytes)
/// for the stored form, whose sequences start with their length, and not for JSON, which
/// writes none.
fn length_for<S: serde::Serializer>(s: &S, count: impl FnOnce() -> usize) -> Option<usize> {
    (!s.is_human_readable()).then(count)
}

/// The error when a list yielded another number of items than it counted.
fn miscounted<E: serde::ser::Error>(len: Option<usize>, n: usize) -> Result<(), E> {
    match len {
        Some(len) if len != n => Err(E::custom(format!("{n} items where {len} were counted"))),
        _ => Ok(()),
    }
}

/// Serializes `items` as a sequence; `count` says how many there are, when the format needs
/// the length first ([`length_for`]): a packed state's iterator does not know it.
pub(crate) fn seq<S: serde::Serializer, T: Serialize>(
    s: S,
    count: impl FnOnce() -> usize,
    items: impl Iterator<Item = T>,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let len = length_for(&s, count);
    let mut q = s.serialize_seq(len)?;
    let mut n = 0;
    for i in items {
        q.serialize_element(&i)?;
        n += 1;
    }
    miscounted(len, n)?;
    q.end()
}

/// [`seq`] for a map of `(key, value)` pairs.
pub(crate) fn map<S: serde::Serializer, K: Serialize, V: Serialize>(
    s: S,
    count: impl FnOnce() -> usize,
    items: impl Iterator<Item = (K, V)>,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let len = length_for(&s, count);
    let mut q = s.serialize_map(len)?;
    let mut n = 0;
    for (k, v) in items {
        q.serialize_entry(&k, &v)?;
        n += 1;
    }
    miscounted(len, n)?;
    q.end()
}

/// An entity state as stored: [`STATE_VERSION`], then its postcard encoding.
pub fn encode<V: Serialize>(v: &V) -> Result<Vec<u8>, String> {
    /// Clears [`COMPACT`] however the encoding ends.
    struct Compact;
    impl Drop for Compact {
        fn drop(&mut self) {
            COMPACT.with(|c| c.set(false));
        }
    }
    COMPACT.with(|c| c.set(true));
    let _reset = Compact;
    let mut b = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    b.clear();
    b.push(STATE_VERSION);
    let b = postcard::to_extend(v, b).map_err(|e| format!("encoding an entity state: {e}"))?;
    let out = b.as_slice().to_vec();
    // a rare huge state does not keep its buffer
    if b.capacity() <= 1 << 20 {
        SCRATCH.with(|s| *s.borrow_mut() = b);
    }
    Ok(out)
}

/// Fewest states worth a thread of their own when encoding a checkpoint.
const ENCODE_PER_THREAD: usize = 4096;

/// [`encode`] of every state, in order, on up to `threads` threads (scoped: all have ended
/// when it returns). A checkpoint at shutdown encodes every entity, 1.5 million of them after
/// the `default` scenario: about 4.8 s on one thread (BENCHMARKS.md).
fn encode_all<V: Serialize + Sync>(
    items: &[(&Str, &V)],
    threads: usize,
) -> Vec<Result<Vec<u8>, String>> {
    let threads = threads.min(items.len() / ENCODE_PER_THREAD).max(1);
    if threads == 1 {
        return items.iter().map(|(_, v)| encode(*v)).collect();
    }
    let per = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = items
            .chunks(per)
            .map(|c| s.spawn(move || c.iter().map(|(_, v)| encode(*v)).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// The postcard of one value and nothing after it, in the layout of encoding `version`.
fn postcard_exactly<V: DeserializeOwned>(version: u8, b: &[u8]) -> Result<V, String> {
    /// Puts back the encoding read before, however the decoding ends.
    struct Reading(u8);
    impl Drop for Reading {
        fn drop(&mut self) {
            READING.with(|r| r.set(self.0));
        }
    }
    let _back = Reading(READING.with(|r| r.replace(version)));
    match postcard::take_from_bytes(b) {
        Ok((v, [])) => Ok(v),
        Ok((_, left)) => Err(format!("{} bytes after its end", left.len())),
        Err(e) => Err(e.to_string()),
    }
}

/// Reads a stored entity state of any version this binary knows; refuses others.
pub fn decode<V: DeserializeOwned>(b: &[u8]) -> Result<V, String> {
    let bad = |e: &dyn std::fmt::Display| format!("decoding an entity state: {e}");
    match b.split_first() {
        Some((&v, rest)) if (2..=STATE_VERSION).contains(&v) => {
            postcard_exactly(v, rest).map_err(|e| bad(&e))
        }
        Some((1, json)) => serde_json::from_slice(json).map_err(|e| bad(&e)),
        Some((v, _)) => Err(format!(
            "entity state encoding {v} is not one this binary reads (it reads \
             {OLDEST_VERSION} to {STATE_VERSION})"
        )),
        None => Err("empty entity state".into()),
    }
}

/// Keeps an encoded state for a begun checkpoint, or reports why it could not be encoded.
fn stage(
    staged: &mut BTreeMap<Str, Vec<u8>>,
    kind: Kind,
    k: Str,
    b: Result<Vec<u8>, String>,
    err: &mut Option<String>,
) {
    match b {
        Ok(b) => {
            staged.insert(k, b);
        }
        Err(e) => {
            err.get_or_insert(format!("{} {k}: {e}", kind.name()));
        }
    }
}

/// One resident entity.
#[derive(Debug)]
pub(crate) struct Slot<V> {
    pub(crate) v: V,
    /// The engine clock at the last command: the least recently used leave first.
    touched: u64,
    /// Changed since a checkpoint last took its state.
    dirty: bool,
    /// The table's [`Table::epoch`] when it last changed. Dirty in an earlier epoch than
    /// the table's means *pending*: changed before the checkpoint begun last and not yet
    /// encoded for it, so its state is encoded (into [`Table::staged`]) before anything
    /// changes it or it leaves memory.
    epoch: u32,
}

impl<V> Slot<V> {
    fn pending(&self, epoch: u32) -> bool {
        self.dirty && self.epoch != epoch
    }
}

/// Keys of entities changed in the current epoch, so a checkpoint begins without a pass over
/// every resident entity (62 ms at 1.47 M, BENCHMARKS.md). Bounded: past a quarter of the
/// resident entities (plus a floor) the list is dropped and the next checkpoint makes that
/// pass instead, so a host that rarely checkpoints keeps no list as long as its entities.
#[derive(Debug, Default)]
struct Changed {
    keys: Vec<Str>,
    dropped: bool,
}

impl Changed {
    const FLOOR: usize = 4_096;

    fn note(&mut self, key: &Str, resident: usize) {
        if self.dropped {
            return;
        }
        if self.keys.len() >= resident / 4 + Self::FLOOR {
            self.keys = Vec::new();
            self.dropped = true;
            return;
        }
        self.keys.push(key.clone());
    }
}

/// What a table needs from the engine to load an entity: the cold tier, the clock, and where
/// to report a failure.
pub(crate) struct Io<'a> {
    pub(crate) cold: Option<&'a dyn Cold>,
    pub(crate) clock: u64,
    pub(crate) err: &'a mut Option<String>,
}

/// An entity as [`Table::listed`] lists it: its key as shown, its key, and its state when
/// resident.
pub(crate) type Listed<'a, V> = (Cow<'a, str>, &'a str, Option<&'a V>);

/// The entities of one kind: resident ones, and evicted dirty ones awaiting a checkpoint.
#[derive(Debug)]
pub(crate) struct Table<V> {
    pub(crate) kind: Kind,
    /// Boxed: the map's growth then moves a pointer per entity, not its whole state (a member
    /// is several hundred bytes), and the old and new arrays of a growing map are small.
    pub(crate) live: HashMap<Str, Box<Slot<V>>>,
    spilled: HashMap<Str, Vec<u8>>,
    /// The current epoch: one more each time a checkpoint begins.
    epoch: u32,
    /// The entities changed in this epoch.
    changed: Changed,
    /// The keys of a begun checkpoint's states still to encode (their slots are pending,
    /// unless a change or an eviction encoded them first).
    todo: Vec<Str>,
    /// A begun checkpoint's states encoded so far, and the spilled ones it took: readable
    /// (after `spilled`, before the cold tier) until the checkpoint is complete. In key order,
    /// so the checkpoint hands its states over sorted (see [`Table::complete`]).
    staged: BTreeMap<Str, Vec<u8>>,
    /// Every key ever created, as a Bloom filter: a key it has never seen is new without a
    /// read of the cold tier (the code registry: most scans are of codes never scanned).
    pub(crate) filter: Option<CodeFilter>,
    /// Whether the cold tier may hold states of this kind: false while it held none when
    /// the engine got it and no checkpoint of this table has written any since, so a key
    /// that is neither resident nor spilled is new.
    pub(crate) cold_holds: bool,
    /// Reads of the cold tier.
    pub(crate) loads: u64,
    /// Cold reads the filter, or a cold tier without states of the kind, saved.
    pub(crate) skipped: u64,
}

impl<V: Default + Clone + Serialize + DeserializeOwned> Table<V> {
    pub(crate) fn new(kind: Kind) -> Self {
        Table {
            kind,
            live: HashMap::default(),
            spilled: HashMap::default(),
            epoch: 0,
            changed: Changed::default(),
            todo: Vec::new(),
            staged: BTreeMap::new(),
            filter: None,
            cold_holds: true,
            loads: 0,
            skipped: 0,
        }
    }

    /// The entity for a command, made resident: from memory, the spilled states, the cold
    /// tier, or new when `create`. Marks it used and dirty. A failed load is reported
    /// through `io.err` (the owner must then discard the engine) and treated as absent.
    pub(crate) fn get_mut(&mut self, key: Str, create: bool, io: &mut Io<'_>) -> Option<&mut V> {
        let (epoch, resident) = (self.epoch, self.live.len());
        match self.live.entry(key) {
            Entry::Occupied(o) => {
                if o.get().pending(epoch) {
                    // the begun checkpoint takes the state before this change
                    let b = encode(&o.get().v);
                    stage(&mut self.staged, self.kind, o.key().clone(), b, io.err);
                }
                if !(o.get().dirty && o.get().epoch == epoch) {
                    self.changed.note(o.key(), resident);
                }
                let s = o.into_mut();
                s.touched = io.clock;
                s.dirty = true;
                s.epoch = epoch;
                Some(&mut s.v)
            }
            Entry::Vacant(slot) => {
                let never = !self.cold_holds
                    || self
                        .filter
                        .as_ref()
                        .is_some_and(|f| !f.contains(slot.key().as_bytes()));
                // what the begun checkpoint holds stays there: it is written with it
                let newer = self.spilled.remove(slot.key());
                let stored = match newer.or_else(|| self.staged.get(slot.key()).cloned()) {
                    Some(b) => Some(b),
                    None if never => {
                        self.skipped += 1;
                        None
                    }
                    // after a failed load the engine is discarded whatever follows: asking a
                    // store that does not answer again would only hold its owner longer
                    None if io.err.is_some() => None,
                    None => match io.cold.map(|c| {
                        self.loads += 1;
                        c.load(self.kind, slot.key())
                    }) {
                        Some(Ok(b)) => b,
                        Some(Err(e)) => {
                            io.err.get_or_insert(e);
                            None
                        }
                        None => None,
                    },
                };
                let v = match stored.map(|b| decode::<V>(&b)) {
                    Some(Ok(v)) => v,
                    Some(Err(e)) => {
                        io.err
                            .get_or_insert(format!("{} {}: {e}", self.kind.name(), slot.key()));
                        V::default()
                    }
                    None if create => {
                        if let Some(f) = &mut self.filter {
                            f.insert(slot.key().as_bytes());
                        }
                        V::default()
                    }
                    None => return None,
                };
                self.changed.note(slot.key(), resident);
                let s = slot.insert(Box::new(Slot {
                    v,
                    touched: io.clock,
                    dirty: true,
                    epoch,
                }));
                Some(&mut s.v)
            }
        }
    }

    /// An entity's state for reading, wherever it is; nothing becomes resident.
    pub(crate) fn get(&self, key: &str, cold: Option<&dyn Cold>) -> Option<Cow<'_, V>> {
        if let Some(s) = self.live.get(key) {
            return Some(Cow::Borrowed(&s.v));
        }
        let b = match self.spilled.get(key).or_else(|| self.staged.get(key)) {
            Some(b) => b.clone(),
            None if !self.cold_holds
                || self
                    .filter
                    .as_ref()
                    .is_some_and(|f| !f.contains(key.as_bytes())) =>
            {
                return None
            }
            None => cold?.load(self.kind, key).ok()??,
        };
        decode(&b).ok().map(Cow::Owned)
    }

    /// Resident entities.
    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    /// Evicted dirty states awaiting a checkpoint.
    pub(crate) fn spilled(&self) -> usize {
        self.spilled.len()
    }

    /// Appends the last-use stamps of the resident entities.
    pub(crate) fn stamps(&self, out: &mut Vec<u64>) {
        out.extend(self.live.values().map(|s| s.touched));
    }

    /// Evicts every resident entity last used at or before `cutoff`; dirty ones are encoded
    /// and kept until the next checkpoint (pending ones: in the begun one). Returns how many
    /// left.
    pub(crate) fn evict(&mut self, cutoff: u64, err: &mut Option<String>) -> usize {
        let before = self.live.len();
        let (spilled, staged, kind, epoch) =
            (&mut self.spilled, &mut self.staged, self.kind, self.epoch);
        self.live.retain(|k, s| {
            if s.touched > cutoff {
                return true;
            }
            if !s.dirty {
                return false;
            }
            match encode(&s.v) {
                // pending: unchanged since the checkpoint began, so its state is that one's
                Ok(b) if s.pending(epoch) => {
                    staged.insert(k.clone(), b);
                }
                Ok(b) => {
                    spilled.insert(k.clone(), b);
                }
                Err(e) => {
                    err.get_or_insert(format!("{} {k}: {e}", kind.name()));
                    return true;
                }
            }
            false
        });
        before - self.live.len()
    }

    /// Begins a checkpoint: every state changed since the last one belongs to it, as it is
    /// now. Spilled states are taken at once (they are encoded); resident ones become
    /// pending (a new epoch begins), to be encoded by [`Table::advance`] a slice at a time
    /// or, if that comes first, just before a command changes them or they are evicted.
    /// Beginning again before a checkpoint completes makes one checkpoint of both, as of the
    /// later beginning.
    pub(crate) fn begin(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        let changed = std::mem::take(&mut self.changed);
        if changed.dropped {
            self.todo.extend(
                self.live
                    .iter()
                    .filter(|(_, s)| s.dirty)
                    .map(|(k, _)| k.clone()),
            );
        } else {
            self.todo.extend(changed.keys);
        }
        self.staged.extend(self.spilled.drain());
    }

    /// Encodes up to `budget` of the begun checkpoint's pending states, on up to `threads`
    /// threads; returns how many keys it went through (0: nothing is left to encode).
    pub(crate) fn advance(
        &mut self,
        budget: usize,
        err: &mut Option<String>,
        threads: usize,
    ) -> usize
    where
        V: Sync,
    {
        let n = budget.min(self.todo.len());
        let keys = self.todo.split_off(self.todo.len() - n);
        let epoch = self.epoch;
        let pending: Vec<(&Str, &V)> = keys
            .iter()
            .filter_map(|k| self.live.get_key_value(k))
            .filter(|(_, s)| s.pending(epoch))
            .map(|(k, s)| (k, &s.v))
            .collect();
        let encoded: Vec<(Str, Result<Vec<u8>, String>)> = pending
            .iter()
            .map(|(k, _)| (*k).clone())
            .zip(encode_all(&pending, threads))
            .collect();
        drop(pending);
        for (k, b) in encoded {
            if let Some(s) = self.live.get_mut(&k) {
                // what could not be encoded stays dirty (and the owner is told, through `err`)
                s.dirty = b.is_err();
            }
            stage(&mut self.staged, self.kind, k, b, err);
        }
        n
    }

    /// Whether the begun checkpoint has states left to encode.
    pub(crate) fn encoding(&self) -> bool {
        !self.todo.is_empty()
    }

    /// Hands the begun checkpoint's states to `out` once all are encoded: one run of this
    /// kind, sorted by key (a host can then find a state in it without an index).
    pub(crate) fn complete(&mut self, out: &mut Vec<(Kind, Str, Vec<u8>)>) {
        debug_assert!(
            self.todo.is_empty(),
            "a checkpoint completed before its states were encoded"
        );
        let before = out.len();
        let staged = std::mem::take(&mut self.staged);
        out.extend(staged.into_iter().map(|(k, b)| (self.kind, k, b)));
        // what the owner writes next is read back from there
        self.cold_holds |= out.len() > before;
    }

    /// Hands every state changed since the last checkpoint to `out` and marks them clean, all
    /// at once. Straight into `out`, unsorted: the staged map of a spread checkpoint costs
    /// a sorted insert per state, which the final checkpoint of 1.5 M states should not pay
    /// (its writer sorts them anyway). A checkpoint begun and not complete is taken in.
    pub(crate) fn checkpoint(
        &mut self,
        out: &mut Vec<(Kind, Str, Vec<u8>)>,
        err: &mut Option<String>,
        threads: usize,
    ) where
        V: Sync,
    {
        if !self.staged.is_empty() || !self.todo.is_empty() {
            self.begin();
            self.advance(usize::MAX, err, threads);
            self.complete(out);
            return;
        }
        let before = out.len();
        // one pass over the resident entities finds every changed one, each once (the list
        // of changed keys is for a checkpoint begun, whose beginning must be short)
        self.epoch = self.epoch.wrapping_add(1);
        self.changed = Changed::default();
        let dirty: Vec<(&Str, &V)> = self
            .live
            .iter()
            .filter(|(_, s)| s.dirty)
            .map(|(k, s)| (k, &s.v))
            .collect();
        let mut failed = Vec::new();
        for ((k, _), b) in dirty.iter().zip(encode_all(&dirty, threads)) {
            match b {
                Ok(b) => out.push((self.kind, (*k).clone(), b)),
                Err(e) => {
                    err.get_or_insert(format!("{} {k}: {e}", self.kind.name()));
                    failed.push((*k).clone());
                }
            }
        }
        drop(dirty);
        // what could not be encoded stays dirty (and the owner is told, through `err`)
        for (k, s) in self.live.iter_mut() {
            s.dirty = s.dirty && failed.contains(k);
        }
        out.extend(self.spilled.drain().map(|(k, b)| (self.kind, k, b)));
        // what the owner writes next is read back from there
        self.cold_holds |= out.len() > before;
    }

    /// Visits every entity of this kind once, in no order, of the keys `keep` takes, holding
    /// one stored state at a time (where [`Table::all`] gathers them all): resident ones,
    /// then staged and spilled ones not resident, then stored ones in neither.
    pub(crate) fn each(
        &self,
        cold: Option<&dyn Cold>,
        keep: &dyn Fn(Kind, &str) -> bool,
        f: &mut dyn FnMut(&str, &V),
    ) -> Result<(), String> {
        for (k, s) in self.live.iter().filter(|(k, _)| keep(self.kind, k)) {
            f(k, &s.v);
        }
        let newer = |k: &str| self.live.contains_key(k);
        // spilled states are newer than staged ones: a key in both is visited as spilled
        let staged = self
            .staged
            .iter()
            .filter(|(k, _)| !self.spilled.contains_key(k.as_str()));
        for (k, b) in staged
            .chain(self.spilled.iter())
            .filter(|(k, _)| keep(self.kind, k) && !newer(k))
        {
            f(k, &decode(b)?);
        }
        let mut bad = None;
        if let Some(c) = cold {
            c.scan(self.kind, &mut |k, b| {
                if !keep(self.kind, k)
                    || newer(k)
                    || self.staged.contains_key(k)
                    || self.spilled.contains_key(k)
                {
                    return;
                }
                match decode::<V>(b) {
                    Ok(v) => f(k, &v),
                    Err(e) => {
                        bad.get_or_insert(format!("{} {k}: {e}", self.kind.name()));
                    }
                }
            })?;
        }
        bad.map_or(Ok(()), Err)
    }

    /// Every entity of this kind, sorted by key: stored, then spilled, then resident ones
    /// (each later source newer than the one before), of the keys `keep` takes: stored states
    /// of other keys are skipped before they are decoded (a shard reading a cold tier shared
    /// with others).
    pub(crate) fn all(
        &self,
        cold: Option<&dyn Cold>,
        keep: &dyn Fn(Kind, &str) -> bool,
    ) -> Result<BTreeMap<Str, V>, String> {
        let mut m = BTreeMap::new();
        let mut bad = None;
        if let Some(c) = cold {
            c.scan(self.kind, &mut |k, b| {
                if !keep(self.kind, k) {
                    return;
                }
                match decode(b) {
                    Ok(v) => {
                        m.insert(Str::from(k), v);
                    }
                    Err(e) => {
                        bad.get_or_insert(format!("{} {k}: {e}", self.kind.name()));
                    }
                }
            })?;
        }
        // a begun checkpoint's states are newer than the stored ones, the spilled newer still
        for (k, b) in self
            .staged
            .iter()
            .chain(self.spilled.iter())
            .filter(|(k, _)| keep(self.kind, k))
        {
            m.insert(k.clone(), decode(b)?);
        }
        for (k, s) in self.live.iter().filter(|(k, _)| keep(self.kind, k)) {
            m.insert(k.clone(), s.v.clone());
        }
        match bad {
            Some(e) => Err(e),
            None => Ok(m),
        }
    }

    /// Every entity of this kind, resident or not, sorted by key as `shown` shows it (then by
    /// the key itself): the keys only, with a resident state's reference; a stored or spilled
    /// state is read and decoded by [`Table::state_of`] when its turn comes, so a state far
    /// larger than memory can be written out (what [`Table::all`] would collect whole). The
    /// store's scan may come in any order; its keys are kept in `stored`.
    pub(crate) fn listed<'a>(
        &'a self,
        cold: Option<&dyn Cold>,
        shown: fn(&str) -> Cow<'_, str>,
        stored: &'a mut Vec<Str>,
    ) -> Result<Vec<Listed<'a, V>>, String> {
        if let Some(c) = cold {
            c.scan(self.kind, &mut |k, _| stored.push(Str::from(k)))?;
        }
        let stored: &'a [Str] = stored;
        let mut keys: Vec<Listed<'a, V>> =
            Vec::with_capacity(stored.len() + self.spilled.len() + self.live.len());
        // resident first: a key also spilled or stored keeps its resident state below
        keys.extend(
            self.live
                .iter()
                .map(|(k, s)| (shown(k), k.as_str(), Some(&s.v))),
        );
        let others = self.spilled.keys().chain(self.staged.keys()).chain(stored);
        keys.extend(others.map(|k| (shown(k), k.as_str(), None)));
        // stable, so of equal keys the resident one stays first and is the one kept
        keys.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        keys.dedup_by(|later, earlier| later.1 == earlier.1);
        Ok(keys)
    }

    /// The state of a listed entity: the resident one, else the spilled or stored one decoded.
    pub(crate) fn state_of<'a>(
        &self,
        cold: Option<&dyn Cold>,
        (_, k, v): &Listed<'a, V>,
    ) -> Result<Cow<'a, V>, String> {
        if let Some(v) = v {
            return Ok(Cow::Borrowed(*v));
        }
        let named = |e: String| format!("{} {k}: {e}", self.kind.name());
        let b = match self.spilled.get(*k).or_else(|| self.staged.get(*k)) {
            Some(b) => Cow::Borrowed(b.as_slice()),
            // listed by the scan, so a store without it now has failed
            None => match cold.map(|c| c.load(self.kind, k)).transpose()?.flatten() {
                Some(b) => Cow::Owned(b),
                None => return Err(named("listed by the store but not found".into())),
            },
        };
        decode(&b).map(Cow::Owned).map_err(named)
    }

    /// The resident entities.
    pub(crate) fn resident(&self) -> impl Iterator<Item = (&Str, &V)> {
        self.live.iter().map(|(k, s)| (k, &s.v))
    }
}

/// A cold tier in memory, for tests and benchmarks: what a checkpoint wrote, by kind and key.
#[derive(Debug, Default, Clone)]
pub struct MemCold(pub std::sync::Arc<std::sync::Mutex<Stored>>);

/// Stored states by `(kind tag, key)`.
pub type Stored = BTreeMap<(u8, Str), Vec<u8>>;

impl MemCold {
    /// Writes a checkpoint's states.
    pub fn write(&self, states: Vec<(Kind, Str, Vec<u8>)>) {
        let mut m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (kind, k, b) in states {
            m.insert((kind as u8, k), b);
        }
    }

    /// Stored states.
    pub fn len(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Cold for MemCold {
    fn load(&self, kind: Kind, key: &str) -> Result<Option<Vec<u8>>, String> {
        let m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(m.get(&(kind as u8, Str::from(key))).cloned())
    }

    fn scan(&self, kind: Kind, f: &mut dyn FnMut(&str, &[u8])) -> Result<(), String> {
        let m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for ((k, key), b) in m.iter() {
            if *k == kind as u8 {
                f(key, b);
            }
        }
        Ok(())
    }

    fn holds(&self, kind: Kind) -> Result<bool, String> {
        let m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(m.keys().any(|(k, _)| *k == kind as u8))
    }
}

/// `stored` as an older encoding wrote it: without the last `n` bytes of the encoding of
/// `part` within it (fields a later encoding appended to `part`'s type, at their default: zero
/// bytes, asserted), for tests that read older encodings back.
#[cfg(test)]
pub(crate) fn without_appended<T: Serialize>(stored: &[u8], part: &T, n: usize) -> Vec<u8> {
    without_last(stored, &encode(part).unwrap_or_default()[1..], n)
}

/// `stored` without the last `n` bytes of `body` within it (see [`without_appended`]). A
/// body of zeros only (a part at its default) is looked for from the end: such a part is not
/// found by its bytes, and the tests that use it give a state whose tail it is (a byte taken
/// from anywhere in a run of zeros leaves the same bytes).
#[cfg(test)]
pub(crate) fn without_last(stored: &[u8], body: &[u8], n: usize) -> Vec<u8> {
    assert!(
        body.len() >= n && body[body.len() - n..].iter().all(|b| *b == 0),
        "the appended fields at their default last"
    );
    let mut windows = stored.windows(body.len());
    let at = if body.iter().all(|b| *b == 0) {
        windows.rposition(|w| w == body)
    } else {
        windows.position(|w| w == body)
    }
    .unwrap_or_else(|| panic!("the part's bytes are not in the state"));
    let mut old = stored[..at + body.len() - n].to_vec();
    old.extend_from_slice(&stored[at + body.len()..]);
    old
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored layout of every kind's empty state, pinned: a field added to or removed
    /// from a stored type changes it (see [`STATE_VERSION`] for what such a change needs).
    /// A member's full layout is pinned in `member::tests`.
    #[test]
    fn the_stored_layout_of_every_kind_is_pinned() {
        fn hex<V: Default + Serialize>() -> String {
            encode(&V::default())
                .unwrap()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        }
        use crate::fraud::{code::Code, crowd::Crowd, ring::Ring};
        let got = [
            ("identity", hex::<crate::identity::Identity>()),
            ("member", hex::<crate::member::Member>()),
            ("order", hex::<crate::order::Order>()),
            ("sku", hex::<crate::sku::Sku>()),
            ("dealer", hex::<crate::dealer::Dealer>()),
            ("store", hex::<crate::store::Store>()),
            ("campaign", hex::<crate::campaign::Campaign>()),
            ("code", hex::<Code>()),
            ("crowd", hex::<Crowd>()),
            ("ring", hex::<Ring>()),
        ];
        let want = [
            ("identity", "100000"),
            (
                "member",
                "1000000000000000000000000000000000000000000000000000000000000000000000000000000000",
            ),
            ("order", "100000000000000000000000000000000000000000000000"),
            ("sku", "10000000000000"),
            ("dealer", "10000000000000000000000000000000"),
            ("store", "10000000000000000000"),
            ("campaign", "10000000000000000000000000000000"),
            ("code", "100000000000"),
            ("crowd", "10000000000000000000"),
            ("ring", "1000000000"),
        ];
        for ((kind, got), (_, want)) in got.iter().zip(want) {
            assert_eq!(got, want, "the stored layout of a {kind} changed");
        }
    }

    /// States stored in older encodings still read: the kinds they did not change as they
    /// were, an order (which encoding 3 gave `placed_at`) without the time it was placed, and
    /// (which encoding 6 gave `refused_unstocked`) as refused for stock, a member (which
    /// encoding 4 gave `offset_min`) without its offset, a dealer (which encoding 5 gave
    /// `booked`) without its payments' amounts.
    #[test]
    fn states_of_encoding_2_read_back() {
        // encodings 2 and 3 of a member: encoding 4 without its last byte (a `None`)
        let member = crate::member::Member {
            id: "m1".into(),
            tier: "member".into(),
            ..Default::default()
        };
        for version in [2, 3] {
            // (and without the blocks encoding 13 appended to its scan profile)
            let profile = crate::fraud::profile::ScanProfile::default();
            let mut b = without_appended(&encode(&member).unwrap(), &profile, 1);
            assert_eq!(b.pop(), Some(0), "grace_since (encoding 14) last");
            assert_eq!(b.pop(), Some(0));
            b[0] = version;
            assert_eq!(decode::<crate::member::Member>(&b).unwrap(), member);
        }
        let known = crate::member::Member {
            offset_min: Some(480),
            ..member
        };
        assert_eq!(
            decode::<crate::member::Member>(&encode(&known).unwrap()).unwrap(),
            known
        );
        // encodings 5 to 13 of a dealer: encoding 14 without its last byte (no `dealer`
        // event's time); 4: without the one before too (no amounts booked)
        let dealer = crate::dealer::Dealer {
            limit: 7,
            ..Default::default()
        };
        let mut b = encode(&dealer).unwrap();
        assert_eq!(b.pop(), Some(0), "info_at last");
        for version in 5..=13 {
            b[0] = version;
            assert_eq!(decode::<crate::dealer::Dealer>(&b).unwrap(), dealer);
        }
        assert_eq!(b.pop(), Some(0), "booked before it");
        for version in [2, 3, 4] {
            b[0] = version;
            assert_eq!(decode::<crate::dealer::Dealer>(&b).unwrap(), dealer);
        }
        // encoding 4 of a store that has seen an event: its `latest` (the first field, an
        // `Option`) without the offset encoding 5 appended to it, then the rest as it was
        let store = crate::store::Store {
            latest: Some(crate::store::Latest {
                us: 1_794_000_000_000_000,
                hour: 498_333,
                day: 20_763,
                offset_min: None,
            }),
            ..Default::default()
        };
        let mut b = encode(&store).unwrap();
        // encodings 5 and 6: without the sales waiting for a visit (an empty list's byte)
        assert_eq!(b.pop(), Some(0), "sales_waiting last");
        for version in [5, 6] {
            let mut old = b.clone();
            old[0] = version;
            assert_eq!(decode::<crate::store::Store>(&old).unwrap(), store);
        }
        // encoding 6 of a store with a day's KPIs: each bucket without the two visit-duration
        // counts encoding 7 appended to it (and the timed rep visits of 15)
        let kpi = crate::store::Kpi {
            member_visits: 3,
            rep_visits: 2,
            scans: 7,
            orders: 5,
            sales: 900,
            visitors: 3,
            ..Default::default()
        };
        let with_day = crate::store::Store {
            days: [(20_763, kpi)].into_iter().collect(),
            ..Default::default()
        };
        let mut v6 = without_appended(&encode(&with_day).unwrap(), &kpi, 3);
        assert_eq!(
            v6.pop(),
            Some(0),
            "and without the sales waiting for a visit"
        );
        v6[0] = 6;
        assert_eq!(decode::<crate::store::Store>(&v6).unwrap(), with_day);
        let latest = encode(&store.latest).unwrap();
        let end = latest.len(); // [version, Some] and the latest's fields: where it ends
        assert_eq!(
            (b[1], b[end - 1]),
            (1, 0),
            "Some, then the offset's None last"
        );
        let mut v4 = b[..end - 1].to_vec();
        v4.extend_from_slice(&b[end..]);
        v4[0] = 4;
        assert_eq!(decode::<crate::store::Store>(&v4).unwrap(), store);
        // encodings 2 to 7 of a SKU: encoding 8 without its last byte (no movements kept
        // since a count: an empty map)
        let mut sku = crate::sku::Sku::default();
        sku.locations.insert(
            "wh".into(),
            crate::sku::Loc {
                on_hand: 9,
                reserved: 2,
                safety: 1,
            },
        );
        let mut b = encode(&sku).unwrap();
        assert_eq!(b.pop(), Some(0), "moves last");
        for version in 2..=7 {
            b[0] = version;
            assert_eq!(decode::<crate::sku::Sku>(&b).unwrap(), sku, "{version}");
        }
        // encodings 2 to 10 of an identity: encoding 11 without its last byte (never given up)
        let identity = crate::identity::Identity {
            member: Some("m1".into()),
            released: 0,
        };
        let mut b = encode(&identity).unwrap();
        assert_eq!(b.pop(), Some(0), "released last");
        for version in 2..=10 {
            b[0] = version;
            assert_eq!(decode::<crate::identity::Identity>(&b).unwrap(), identity);
        }
        let mut order = crate::order::Order {
            channel: "mall".into(),
            location: "wh".into(),
            paid: true,
            points_redeemed: 5,
            ..Default::default()
        };
        // encodings 7 to 10 of that order: encoding 11 without its last byte (`false`)
        let mut b = encode(&order).unwrap();
        assert_eq!(b.pop(), Some(0), "member_unknown last");
        for version in 7..=10 {
            b[0] = version;
            assert_eq!(
                decode::<crate::order::Order>(&b).unwrap(),
                order,
                "{version}"
            );
        }
        // encoding 6: without the byte before it too (the rejection's `None`)
        assert_eq!(b.pop(), Some(0));
        b[0] = 6;
        assert_eq!(decode::<crate::order::Order>(&b).unwrap(), order);
        // encodings 3 to 5: encoding 6 without its last byte (`false`)
        assert_eq!(b.pop(), Some(0));
        for version in [3, 4, 5] {
            b[0] = version;
            assert_eq!(decode::<crate::order::Order>(&b).unwrap(), order);
        }
        // encoding 2: without the two before it too (`None`s)
        assert_eq!((b.pop(), b.pop()), (Some(0), Some(0)));
        b[0] = 2;
        assert_eq!(decode::<crate::order::Order>(&b).unwrap(), order);
        // today's orders keep the time; a v2 order one byte longer is refused
        order.placed_at = Some(omnistream_schemas::EventTime {
            unix_us: 1_794_000_000_000_000,
            offset_min: 480,
        });
        let stored = encode(&order).unwrap();
        assert_eq!(decode::<crate::order::Order>(&stored).unwrap(), order);
        let mut longer = b.clone();
        longer.push(0);
        assert!(decode::<crate::order::Order>(&longer).is_err());
    }

    /// Sets key `k{i}` of `t` to `v` at clock `clock`, as a command would.
    fn set(t: &mut Table<u64>, i: u64, v: u64, clock: u64, err: &mut Option<String>) {
        let mut io = Io {
            cold: None,
            clock,
            err,
        };
        *t.get_mut(Str::from(format!("k{i}")), true, &mut io)
            .unwrap() = v;
    }

    /// After a load fails the engine is discarded whatever follows, so no other key is asked
    /// of the store: one that does not answer holds its owner one timeout, not one a key.
    #[test]
    fn after_a_failed_load_the_store_is_not_asked_again() {
        struct Down(std::sync::atomic::AtomicUsize);
        impl Cold for Down {
            fn load(&self, _: Kind, _: &str) -> Result<Option<Vec<u8>>, String> {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Err("no answer".into())
            }
            fn scan(&self, _: Kind, _: &mut dyn FnMut(&str, &[u8])) -> Result<(), String> {
                Ok(())
            }
            fn holds(&self, _: Kind) -> Result<bool, String> {
                Ok(true)
            }
        }
        let down = Down(Default::default());
        let mut t: Table<u64> = Table::new(Kind::Member);
        let mut err = None;
        for i in 0..3 {
            let mut io = Io {
                cold: Some(&down),
                clock: i,
                err: &mut err,
            };
            let _ = t.get_mut(Str::from(format!("k{i}")), true, &mut io);
        }
        assert_eq!(err.as_deref(), Some("no answer"));
        assert_eq!(down.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// A checkpoint takes every state changed before it began, as it was then, whether the
    /// table listed the keys changed or dropped the list (too long) and makes a pass; its
    /// states are encoded a slice at a time while commands change some and others are
    /// evicted; what changed after the beginning goes to the next checkpoint.
    #[test]
    fn a_begun_checkpoint_takes_the_states_of_its_beginning() {
        for n in [100u64, 20_000] {
            let mut t: Table<u64> = Table::new(Kind::Member);
            let mut err = None;
            for i in 0..n {
                set(&mut t, i, i, i, &mut err);
            }
            assert_eq!(t.changed.dropped, n > 10_000, "{n}");
            t.begin();
            // the older half leaves memory; every third key changes, some before their slice
            assert_eq!(t.evict(n / 2 - 1, &mut err), (n / 2) as usize);
            let mut changed = 0;
            let mut i = 0;
            while t.advance(7, &mut err, 1) > 0 {
                if i < n {
                    set(&mut t, i, i + 1_000_000, n + i, &mut err);
                    changed += 1;
                }
                i += 3;
            }
            let mut out = Vec::new();
            t.complete(&mut out);
            assert_eq!(out.len(), n as usize, "{n}");
            for (_, k, b) in &out {
                let i: u64 = k[1..].parse().unwrap();
                assert_eq!(decode::<u64>(b).unwrap(), i, "{n} {k}");
            }
            assert!(out.windows(2).all(|w| w[0].1 < w[1].1), "sorted");
            // the next checkpoint holds the changed states, with their new values
            let mut next = Vec::new();
            t.checkpoint(&mut next, &mut err, 1);
            assert_eq!(next.len(), changed, "{n}");
            for (_, k, b) in &next {
                let i: u64 = k[1..].parse().unwrap();
                assert_eq!(decode::<u64>(b).unwrap(), i + 1_000_000, "{n} {k}");
            }
            let mut none = Vec::new();
            t.checkpoint(&mut none, &mut err, 1);
            assert!(none.is_empty());
            assert_eq!(err, None);
        }
    }

    #[test]
    fn encoding_on_threads_keeps_the_order_of_one() {
        let items: Vec<(Str, u64)> = (0..10_000u64)
            .map(|i| (Str::from(format!("key-{i}")), i * 7))
            .collect();
        let refs: Vec<(&Str, &u64)> = items.iter().map(|(k, v)| (k, v)).collect();
        let one = encode_all(&refs, 1);
        assert_eq!(one.len(), refs.len());
        assert_eq!(one[3], encode(&21u64));
        for threads in [2, 3, 8] {
            assert_eq!(encode_all(&refs, threads), one, "{threads} threads");
        }
        // below the share worth a thread, the calling thread encodes alone
        assert_eq!(encode_all(&refs[..10], 4), one[..10].to_vec());
        assert!(encode_all::<u64>(&[], 4).is_empty());
    }
}
