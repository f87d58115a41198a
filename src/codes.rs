//! The embedded store's code registry: the state of every scanned code (`Kind::Code`) as of
//! the last checkpoint, in sorted runs on disk, so that a billion codes fit this machine's
//! disk and a lookup reads one block.
//!
//! Why not `states.redb` like the other kinds: a code's state is a few dozen bytes, and the
//! B-tree held it at 280-400 B a code (JSON, key, half-full pages after random inserts), with
//! a write rate that fell as the tree grew (BENCHMARKS.md, "Code registry lookup"). Codes are
//! written once (their first scan) and rarely again, and read by key: the shape an LSM tree
//! is for. This one is small and specific:
//!
//! - A **run** is one file of records `(code, packed state)` sorted by `(hash(code), code)` in
//!   fixed-size blocks of [`BLOCK`] bytes, each with a checksum; after the blocks, the first
//!   hash of every block (the index: 8 bytes a block, kept in memory) and a Bloom filter of
//!   the run's codes (about 10 bits a code, kept in memory), then a trailer. A lookup asks
//!   the filter, finds the block by the index, reads that block (one `pread`) and scans it.
//! - A state is stored **packed** (about 36 bytes: the first scanner's member id as 8 bytes
//!   when it has the engine's `m` + 16 hex digits form, time, event id, counts), not as the
//!   engine's JSON (about 120 bytes); it is converted at this boundary both ways, exactly.
//! - Each checkpoint with code states writes one **level-0 run** over all codes. When
//!   [`FANOUT`] level-0 runs exist they are merged into level-1 runs, one per hash
//!   **partition** ([`PARTS`] of them, by the top bits of the hash); in each partition,
//!   [`FANOUT`] runs of a level are merged into one of the next level. Partitions keep every
//!   merge, and the disk space it needs while both old and new runs exist, to a fraction of
//!   the whole. A lookup reads the runs newest first (level 0, then its partition's levels)
//!   and takes the first it finds: a newer state wins.
//! - **Atomicity**: the list of live runs (the manifest) is stored in `states.redb`'s
//!   checkpoint table, in the same transaction as the rest of the checkpoint; a run file is
//!   written and synced before that transaction, and one no manifest names is deleted on
//!   open (a crash between the two). A merge changes no state, only where it lives, so it
//!   commits its manifest in a transaction of its own and deletes the runs it replaced.
//!
//! Merges run on the checkpoint writer's thread after the checkpoint is durable: a large
//! one delays the next checkpoint, not the engine (BENCHMARKS.md gives what they cost).

use omnistream_actors::cold;
use omnistream_actors::fraud::code::Code;
use omnistream_actors::fraud::filter::{hash, CodeFilter};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// Bytes in a block, the unit a lookup reads.
pub const BLOCK: usize = 8192;
/// Hash partitions of the runs of level 1 and up.
pub const PARTS: usize = 32;
/// Runs of one level merged into one of the next.
pub const FANOUT: usize = 8;
const PART_SHIFT: u32 = 64 - PARTS.trailing_zeros();
/// False-positive rate of a run's filter.
const RUN_FPR: f64 = 0.01;
const MAGIC: [u8; 8] = *b"OSCODES1";
/// Block header: records in it (u16), checksum of the rest (u32).
const HEADER: usize = 6;
/// blocks, records, filter bytes (u64 each), part (u16), level (u8), 5 spare, footer
/// checksum (u64), magic.
const TRAILER: usize = 48;
/// A partition number that means "all": level-0 runs.
const ALL: u16 = u16::MAX;
/// Blocks read at once by a merge.
const CHUNK_BLOCKS: usize = 32;

/// The partition of a code's hash.
fn part_of(h: u64) -> usize {
    (h >> PART_SHIFT) as usize
}

/// The hash a run's filter uses: the order hash's top bits are the partition, the same for
/// every code of a run, so the filter gets a remixed one (splitmix64's finaliser, a bijection).
fn filter_hash(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn put_varint(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push((v as u8) | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

fn get_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let x = *b.get(*pos)?;
        *pos += 1;
        if shift > 63 {
            return None;
        }
        v |= u64::from(x & 0x7f) << shift;
        if x < 0x80 {
            return Some(v);
        }
        shift += 7;
    }
}

/// The 64 bits of an engine member id (`m` + 16 lower-case hex digits), if it is one.
fn hex_member(s: &str) -> Option<u64> {
    let h = s.strip_prefix('m')?;
    if h.len() == 16
        && h.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        u64::from_str_radix(h, 16).ok()
    } else {
        None
    }
}

/// A code's state, packed: first scanner (tag 0 none, 1 an engine member id in 8 bytes,
/// 2 any other id with its length), time and event id of the first scan, scans, others.
pub fn pack(c: &Code, out: &mut Vec<u8>) {
    // every field, so that a field added to `Code` fails here until it is stored
    let Code {
        first,
        at,
        event,
        scans,
        others,
    } = c;
    match hex_member(first) {
        Some(x) => {
            out.push(1);
            out.extend_from_slice(&x.to_le_bytes());
        }
        None if first.is_empty() => out.push(0),
        None => {
            out.push(2);
            put_varint(out, first.len() as u64);
            out.extend_from_slice(first.as_bytes());
        }
    }
    out.extend_from_slice(&at.to_le_bytes());
    out.extend_from_slice(&event.to_le_bytes());
    put_varint(out, u64::from(*scans));
    put_varint(out, u64::from(*others));
}

/// The state [`pack`] wrote.
pub fn unpack(b: &[u8]) -> Result<Code, String> {
    let bad = || "a packed code state is damaged".to_string();
    let mut pos = 1;
    let first = match b.first() {
        Some(0) => Default::default(),
        Some(1) => {
            let x = b.get(1..9).ok_or_else(bad)?;
            pos = 9;
            let x = u64::from_le_bytes(x.try_into().map_err(|_| bad())?);
            omnistream_actors::Str::from(format!("m{x:016x}"))
        }
        Some(2) => {
            let n = usize::try_from(get_varint(b, &mut pos).ok_or_else(bad)?).map_err(|_| bad())?;
            let s = b.get(pos..pos + n).ok_or_else(bad)?;
            pos += n;
            std::str::from_utf8(s).map_err(|_| bad())?.into()
        }
        _ => return Err(bad()),
    };
    let at = b.get(pos..pos + 8).ok_or_else(bad)?;
    let at = i64::from_le_bytes(at.try_into().map_err(|_| bad())?);
    let event = b.get(pos + 8..pos + 24).ok_or_else(bad)?;
    let event = u128::from_le_bytes(event.try_into().map_err(|_| bad())?);
    pos += 24;
    let mut count = || -> Result<u32, String> {
        u32::try_from(get_varint(b, &mut pos).ok_or_else(bad)?).map_err(|_| bad())
    };
    let (scans, others) = (count()?, count()?);
    if pos != b.len() {
        return Err(bad());
    }
    Ok(Code {
        first,
        at,
        event,
        scans,
        others,
    })
}

/// The records of one block: `(code, packed state)`.
fn records(block: &[u8]) -> impl Iterator<Item = Option<(&[u8], &[u8])>> {
    let n = u16::from_le_bytes([block[0], block[1]]);
    let mut pos = HEADER;
    (0..n).map(move |_| {
        let k = usize::try_from(get_varint(block, &mut pos)?).ok()?;
        let key = block.get(pos..pos + k)?;
        pos += k;
        let v = usize::try_from(get_varint(block, &mut pos)?).ok()?;
        let val = block.get(pos..pos + v)?;
        pos += v;
        Some((key, val))
    })
}

fn block_check(block: &[u8]) -> u32 {
    hash(&block[HEADER..]) as u32
}

/// One run file, open, with its index and filter in memory.
#[derive(Debug)]
pub(crate) struct Run {
    id: u64,
    path: PathBuf,
    /// [`ALL`] for level 0.
    part: u16,
    level: u8,
    file: File,
    /// The first order hash of each block.
    first: Vec<u64>,
    filter: CodeFilter,
    records: u64,
    bytes: u64,
}

fn run_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}.run"))
}

impl Run {
    /// Opens a run file, checking its trailer and footer.
    fn open(dir: &Path, id: u64) -> Result<Run, String> {
        let path = run_path(dir, id);
        let err = |why: String| format!("code run {}: {why}", path.display());
        let file = File::open(&path).map_err(|e| err(e.to_string()))?;
        let bytes = file.metadata().map_err(|e| err(e.to_string()))?.len();
        let mut t = [0u8; TRAILER];
        if bytes < TRAILER as u64 {
            return Err(err("shorter than its trailer".into()));
        }
        file.read_exact_at(&mut t, bytes - TRAILER as u64)
            .map_err(|e| err(e.to_string()))?;
        let u64_at = |i: usize| u64::from_le_bytes(t[i..i + 8].try_into().unwrap_or([0; 8]));
        if t[40..48] != MAGIC {
            return Err(err("not a code run (bad magic)".into()));
        }
        let (blocks, records, filter_len) = (u64_at(0), u64_at(8), u64_at(16));
        let part = u16::from_le_bytes([t[24], t[25]]);
        let level = t[26];
        let footer_len = blocks
            .checked_mul(8)
            .and_then(|x| x.checked_add(filter_len))
            .ok_or_else(|| err("damaged trailer".into()))?;
        let footer_at = blocks * BLOCK as u64;
        if footer_at
            .checked_add(footer_len)
            .and_then(|x| x.checked_add(TRAILER as u64))
            != Some(bytes)
        {
            return Err(err("its length does not match its trailer".into()));
        }
        let mut footer = vec![0u8; usize::try_from(footer_len).map_err(|e| err(e.to_string()))?];
        file.read_exact_at(&mut footer, footer_at)
            .map_err(|e| err(e.to_string()))?;
        if hash(&footer) != u64_at(32) {
            return Err(err("its index or filter is damaged (checksum)".into()));
        }
        let (index, filter) = footer.split_at(blocks as usize * 8);
        let first = index
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        let filter =
            CodeFilter::from_bytes(filter).ok_or_else(|| err("its filter is damaged".into()))?;
        Ok(Run {
            id,
            path,
            part,
            level,
            file,
            first,
            filter,
            records,
            bytes,
        })
    }

    fn read_block(&self, i: usize, buf: &mut [u8]) -> Result<(), String> {
        self.file
            .read_exact_at(buf, (i * BLOCK) as u64)
            .map_err(|e| format!("code run {}: {e}", self.path.display()))?;
        check_block(buf).map_err(|why| format!("code run {} block {i}: {why}", self.path.display()))
    }

    /// The packed state of `key` (whose order hash is `h`) in this run. `buf` is made a
    /// block long here, once a run's filter says the code may be in it.
    fn get(&self, key: &[u8], h: u64, buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, String> {
        if !self.filter.contains_hash(filter_hash(h)) {
            return Ok(None);
        }
        // the last block starting at or before h; records of one hash may also end the
        // blocks before it (codes whose hashes collide, cut by a block boundary)
        let Some(mut i) = self.first.partition_point(|&x| x <= h).checked_sub(1) else {
            return Ok(None);
        };
        buf.resize(BLOCK, 0);
        loop {
            self.read_block(i, buf)?;
            for r in records(buf) {
                let (k, v) = r.ok_or_else(|| {
                    format!("code run {}: damaged block {i}", self.path.display())
                })?;
                if k == key {
                    return Ok(Some(v.to_vec()));
                }
            }
            if self.first[i] != h || i == 0 {
                return Ok(None);
            }
            i -= 1;
        }
    }
}

fn check_block(buf: &[u8]) -> Result<(), String> {
    let want = u32::from_le_bytes([buf[2], buf[3], buf[4], buf[5]]);
    if block_check(buf) == want {
        Ok(())
    } else {
        Err("damaged (checksum)".into())
    }
}

/// Writes one run file.
struct Writer {
    dir: PathBuf,
    id: u64,
    part: u16,
    level: u8,
    out: Option<BufWriter<File>>,
    block: Vec<u8>,
    count: u16,
    first: Vec<u64>,
    hashes: Vec<u64>,
}

impl Writer {
    fn new(dir: &Path, id: u64, part: u16, level: u8) -> Writer {
        let mut block = Vec::with_capacity(BLOCK);
        block.resize(HEADER, 0);
        Writer {
            dir: dir.to_path_buf(),
            id,
            part,
            level,
            out: None,
            block,
            count: 0,
            first: Vec::new(),
            hashes: Vec::new(),
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> String {
        format!("code run {}: {e}", run_path(&self.dir, self.id).display())
    }

    fn push(&mut self, h: u64, key: &[u8], val: &[u8]) -> Result<(), String> {
        let vlen = |n: usize| (usize::BITS - (n | 1).leading_zeros()).div_ceil(7) as usize;
        let len = vlen(key.len()) + key.len() + vlen(val.len()) + val.len();
        if HEADER + len > BLOCK {
            return Err(self.err(format!(
                "a code of {} bytes does not fit a block",
                key.len()
            )));
        }
        if self.block.len() + len > BLOCK || self.count == u16::MAX {
            self.flush_block()?;
        }
        if self.count == 0 {
            self.first.push(h);
        }
        put_varint(&mut self.block, key.len() as u64);
        self.block.extend_from_slice(key);
        put_varint(&mut self.block, val.len() as u64);
        self.block.extend_from_slice(val);
        self.count += 1;
        self.hashes.push(filter_hash(h));
        Ok(())
    }

    fn out(&mut self) -> Result<&mut BufWriter<File>, String> {
        if self.out.is_none() {
            let path = run_path(&self.dir, self.id);
            let f = File::create(&path).map_err(|e| self.err(e))?;
            self.out = Some(BufWriter::with_capacity(1 << 20, f));
        }
        self.out.as_mut().ok_or_else(|| "unreachable".to_string())
    }

    fn flush_block(&mut self) -> Result<(), String> {
        if self.count == 0 {
            return Ok(());
        }
        self.block.resize(BLOCK, 0);
        self.block[0..2].copy_from_slice(&self.count.to_le_bytes());
        let c = block_check(&self.block);
        self.block[2..6].copy_from_slice(&c.to_le_bytes());
        let block = std::mem::take(&mut self.block);
        let r = self.out()?.write_all(&block).map_err(|e| e.to_string());
        r.map_err(|e| self.err(e))?;
        self.block = block;
        self.block.truncate(HEADER);
        self.block[..HEADER].fill(0);
        self.count = 0;
        Ok(())
    }

    /// Writes the footer and trailer, syncs the file, and opens it as a run; None when no
    /// record was pushed (no file is made).
    fn finish(mut self) -> Result<Option<Run>, String> {
        self.flush_block()?;
        if self.out.is_none() {
            return Ok(None);
        }
        let mut filter =
            CodeFilter::for_rate(self.hashes.len() as u64, RUN_FPR).map_err(|e| self.err(e))?;
        for h in &self.hashes {
            filter.insert_hash(*h);
        }
        let mut footer = Vec::with_capacity(self.first.len() * 8 + filter.memory_bytes());
        for h in &self.first {
            footer.extend_from_slice(&h.to_le_bytes());
        }
        footer.extend_from_slice(&filter.to_bytes());
        let mut t = Vec::with_capacity(TRAILER);
        for x in [
            self.first.len() as u64,
            self.hashes.len() as u64,
            filter.memory_bytes() as u64,
        ] {
            t.extend_from_slice(&x.to_le_bytes());
        }
        t.extend_from_slice(&self.part.to_le_bytes());
        t.push(self.level);
        t.extend_from_slice(&[0; 5]);
        t.extend_from_slice(&hash(&footer).to_le_bytes());
        t.extend_from_slice(&MAGIC);
        let out = self.out()?;
        let r = out
            .write_all(&footer)
            .and_then(|()| out.write_all(&t))
            .and_then(|()| out.flush());
        r.map_err(|e| self.err(e))?;
        let f = self.out.take().ok_or_else(|| "unreachable".to_string())?;
        f.get_ref().sync_data().map_err(|e| self.err(e))?;
        drop(f);
        Run::open(&self.dir, self.id).map(Some)
    }
}

/// Reads a run's records in order, optionally from the first of one partition.
struct Cursor<'a> {
    run: &'a Run,
    /// The next block to read into `buf`.
    next: usize,
    buf: Vec<u8>,
    /// Blocks in `buf`, the one being read, the position in it and records left in it.
    in_buf: usize,
    cur: usize,
    pos: usize,
    left: u16,
    /// The current record: order hash, key and value ranges in `buf`.
    head: Option<(u64, std::ops::Range<usize>, std::ops::Range<usize>)>,
}

impl<'a> Cursor<'a> {
    /// A cursor at the first record whose hash is at least `from`.
    fn new(run: &'a Run, from: u64) -> Result<Cursor<'a>, String> {
        let start = run.first.partition_point(|&x| x < from).saturating_sub(1);
        let mut c = Cursor {
            run,
            next: start,
            buf: Vec::new(),
            in_buf: 0,
            cur: 0,
            pos: 0,
            left: 0,
            head: None,
        };
        c.advance()?;
        while c.head.as_ref().is_some_and(|h| h.0 < from) {
            c.advance()?;
        }
        Ok(c)
    }

    fn key(&self) -> Option<(u64, &[u8], &[u8])> {
        self.head
            .as_ref()
            .map(|(h, k, v)| (*h, &self.buf[k.clone()], &self.buf[v.clone()]))
    }

    fn advance(&mut self) -> Result<(), String> {
        let dmg = |run: &Run| format!("code run {}: damaged block", run.path.display());
        while self.left == 0 {
            self.cur += 1;
            if self.cur >= self.in_buf {
                let n =
                    CHUNK_BLOCKS.min(self.run.first.len() - self.next.min(self.run.first.len()));
                if n == 0 {
                    self.head = None;
                    return Ok(());
                }
                self.buf.resize(n * BLOCK, 0);
                self.run
                    .file
                    .read_exact_at(&mut self.buf, (self.next * BLOCK) as u64)
                    .map_err(|e| format!("code run {}: {e}", self.run.path.display()))?;
                for b in self.buf.chunks_exact(BLOCK) {
                    check_block(b)
                        .map_err(|why| format!("code run {}: {why}", self.run.path.display()))?;
                }
                self.next += n;
                self.in_buf = n;
                self.cur = 0;
            }
            let b = &self.buf[self.cur * BLOCK..];
            self.left = u16::from_le_bytes([b[0], b[1]]);
            self.pos = self.cur * BLOCK + HEADER;
        }
        let base = self.cur * BLOCK;
        let block = &self.buf[base..base + BLOCK];
        let mut p = self.pos - base;
        let k = get_varint(block, &mut p).ok_or_else(|| dmg(self.run))? as usize;
        let key = base + p..base + p + k;
        p += k;
        let v = get_varint(block, &mut p).ok_or_else(|| dmg(self.run))? as usize;
        let val = base + p..base + p + v;
        p += v;
        if p > BLOCK {
            return Err(dmg(self.run));
        }
        self.pos = base + p;
        self.left -= 1;
        let h = hash(&self.buf[key.clone()]);
        self.head = Some((h, key, val));
        Ok(())
    }
}

/// Takes merged records: order hash, code, packed state.
type Sink<'a> = dyn FnMut(u64, &[u8], &[u8]) -> Result<(), String> + 'a;

/// Merges cursors (newest first) in order, one record a code (the newest), while `keep`
/// takes its hash; calls `f` with each.
fn merge(
    cursors: &mut [Cursor<'_>],
    keep: &dyn Fn(u64) -> bool,
    f: &mut Sink<'_>,
) -> Result<(), String> {
    loop {
        let mut best: Option<usize> = None;
        for i in 0..cursors.len() {
            let Some((h, k, _)) = cursors[i].key() else {
                continue;
            };
            if !keep(h) {
                continue;
            }
            let better = match best.and_then(|b| cursors[b].key()) {
                None => true,
                Some((bh, bk, _)) => (h, k) < (bh, bk),
            };
            if better {
                best = Some(i);
            }
        }
        let Some(b) = best else { return Ok(()) };
        let (h, key) = match cursors[b].key() {
            Some((h, k, v)) => {
                f(h, k, v)?;
                (h, k.to_vec())
            }
            None => return Ok(()),
        };
        for c in cursors.iter_mut() {
            while c
                .key()
                .is_some_and(|(ch, ck, _)| ch == h && ck == key.as_slice())
            {
                c.advance()?;
            }
        }
    }
}

/// The live runs, newest first: level 0, and each partition's (levels ascending, so newest
/// first too).
#[derive(Debug, Default, Clone)]
struct Runs {
    l0: Vec<Arc<Run>>,
    parts: Vec<Vec<Arc<Run>>>,
}

impl Runs {
    fn manifest(&self) -> Vec<u8> {
        let ids = |v: &[Arc<Run>]| v.iter().map(|r| r.id).collect::<Vec<_>>();
        let m = (
            ids(&self.l0),
            self.parts.iter().map(|p| ids(p)).collect::<Vec<_>>(),
        );
        serde_json::to_vec(&m).unwrap_or_default()
    }

    fn all(&self) -> impl Iterator<Item = &Arc<Run>> {
        self.l0.iter().chain(self.parts.iter().flatten())
    }
}

/// What the code registry holds and costs, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CodeStats {
    /// Live runs.
    pub runs: u64,
    /// Records in them (a code rewritten since its last merge counts once per run).
    pub records: u64,
    /// Their files' bytes.
    pub disk_bytes: u64,
    /// Memory their indexes and filters take.
    pub memory_bytes: u64,
}

/// The code registry of one embedded store.
#[derive(Debug)]
pub struct CodeRuns {
    dir: PathBuf,
    live: Mutex<Arc<Runs>>,
    next_id: Mutex<u64>,
    /// Held by a checkpoint's writer from its run to its merges: two checkpoints written at
    /// once would each store a manifest without the other's run.
    writing: Mutex<()>,
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("code runs {}: {e}", dir.display()))
}

impl CodeRuns {
    /// Opens the runs a manifest names in `dir` (none when `manifest` is None), and deletes
    /// run files it does not name (left by a crash before their checkpoint committed, or
    /// after a merge committed).
    pub fn open(dir: &Path, manifest: Option<&[u8]>) -> Result<CodeRuns, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("code runs {}: {e}", dir.display()))?;
        let (l0, parts): (Vec<u64>, Vec<Vec<u64>>) = match manifest {
            Some(m) => serde_json::from_slice(m)
                .map_err(|e| format!("code runs: the manifest is damaged: {e}"))?,
            None => (Vec::new(), vec![Vec::new(); PARTS]),
        };
        if parts.len() != PARTS {
            return Err(format!(
                "code runs: the manifest has {} partitions, this binary uses {PARTS}",
                parts.len()
            ));
        }
        let open = |ids: &[u64], part: u16| -> Result<Vec<Arc<Run>>, String> {
            ids.iter()
                .map(|&id| {
                    let r = Run::open(dir, id)?;
                    if r.part != part {
                        return Err(format!(
                            "code run {}: of partition {}, named in {part}'s list",
                            r.path.display(),
                            r.part
                        ));
                    }
                    Ok(Arc::new(r))
                })
                .collect()
        };
        let runs = Runs {
            l0: open(&l0, ALL)?,
            parts: (0..PARTS)
                .map(|p| open(&parts[p], p as u16))
                .collect::<Result<_, _>>()?,
        };
        let named: std::collections::HashSet<u64> = runs.all().map(|r| r.id).collect();
        let mut next = runs.all().map(|r| r.id + 1).max().unwrap_or(1);
        for e in std::fs::read_dir(dir).map_err(|e| format!("code runs {}: {e}", dir.display()))? {
            let p = e
                .map_err(|e| format!("code runs {}: {e}", dir.display()))?
                .path();
            let id = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".run"))
                .and_then(|n| u64::from_str_radix(n, 16).ok());
            if let Some(id) = id.filter(|id| !named.contains(id)) {
                next = next.max(id + 1);
                std::fs::remove_file(&p).map_err(|e| format!("code run {}: {e}", p.display()))?;
            }
        }
        Ok(CodeRuns {
            dir: dir.to_path_buf(),
            live: Mutex::new(Arc::new(runs)),
            next_id: Mutex::new(next),
            writing: Mutex::new(()),
        })
    }

    /// Excludes other writers of runs and manifests until dropped.
    pub fn writer(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn live(&self) -> Arc<Runs> {
        Arc::clone(&self.live.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn id(&self) -> u64 {
        let mut n = self.next_id.lock().unwrap_or_else(PoisonError::into_inner);
        *n += 1;
        *n - 1
    }

    /// Whether no run is live.
    pub fn is_empty(&self) -> bool {
        self.live().all().next().is_none()
    }

    /// What the live runs hold and cost.
    pub fn stats(&self) -> CodeStats {
        let live = self.live();
        let mut s = CodeStats::default();
        for r in live.all() {
            s.runs += 1;
            s.records += r.records;
            s.disk_bytes += r.bytes;
            s.memory_bytes += (r.first.len() * 8 + r.filter.memory_bytes()) as u64;
        }
        s
    }

    /// A code's state as the engine stores it (its JSON encoding), if a run holds it.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let live = self.live();
        let h = hash(key.as_bytes());
        let mut buf = Vec::new();
        let part = live
            .parts
            .get(part_of(h))
            .map(Vec::as_slice)
            .unwrap_or_default();
        for r in live.l0.iter().chain(part) {
            if let Some(v) = r.get(key.as_bytes(), h, &mut buf)? {
                return cold::encode(&unpack(&v)?).map(Some);
            }
        }
        Ok(None)
    }

    /// Calls `f` with every code and its state (JSON), one record a code (the newest).
    pub fn scan(&self, f: &mut dyn FnMut(&str, &[u8])) -> Result<(), String> {
        let live = self.live();
        for (p, runs) in live.parts.iter().enumerate() {
            let from = (p as u64) << PART_SHIFT;
            let mut cursors = live
                .l0
                .iter()
                .chain(runs)
                .map(|r| Cursor::new(r, from))
                .collect::<Result<Vec<_>, _>>()?;
            merge(&mut cursors, &|h| part_of(h) == p, &mut |_, k, v| {
                let key = std::str::from_utf8(k)
                    .map_err(|e| format!("code runs: a code is not UTF-8: {e}"))?;
                f(key, &cold::encode(&unpack(v)?)?);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Writes the code states of a checkpoint (JSON, as the engine encodes them) as a new
    /// level-0 run, synced; it becomes live with [`CodeRuns::commit_with`]. None when
    /// `states` is empty.
    pub fn write(&self, states: &[(&str, &[u8])]) -> Result<Option<NewRun>, String> {
        if states.is_empty() {
            return Ok(None);
        }
        let mut recs: Vec<(u64, &str, Vec<u8>)> = Vec::with_capacity(states.len());
        for (k, json) in states {
            let c: Code = cold::decode(json).map_err(|e| format!("code {k}: {e}"))?;
            let mut v = Vec::with_capacity(40);
            pack(&c, &mut v);
            recs.push((hash(k.as_bytes()), k, v));
        }
        recs.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        // a checkpoint names each entity once; should one come twice, the last is newest
        let mut w = Writer::new(&self.dir, self.id(), ALL, 0);
        for (i, (h, k, v)) in recs.iter().enumerate() {
            if recs.get(i + 1).is_some_and(|n| n.1 == *k) {
                continue;
            }
            w.push(*h, k.as_bytes(), v)?;
        }
        let run = w
            .finish()?
            .ok_or_else(|| "code runs: an empty run".to_string())?;
        sync_dir(&self.dir)?;
        Ok(Some(NewRun(Arc::new(run))))
    }

    /// The manifest naming the live runs and `new` (to store with its checkpoint).
    pub fn manifest_with(&self, new: Option<&NewRun>) -> Vec<u8> {
        let mut runs = (*self.live()).clone();
        if let Some(n) = new {
            runs.l0.insert(0, Arc::clone(&n.0));
        }
        runs.manifest()
    }

    /// Makes `new` live: its checkpoint, with [`CodeRuns::manifest_with`], is durable.
    pub fn installed(&self, new: NewRun) {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let mut runs = (**live).clone();
        runs.l0.insert(0, new.0);
        *live = Arc::new(runs);
    }

    /// Deletes a run whose checkpoint did not commit.
    pub fn discard(&self, new: NewRun) {
        let _ = std::fs::remove_file(&new.0.path);
    }

    /// Merges runs while some level holds [`FANOUT`] of them, committing each merge's
    /// manifest with `commit` before its old runs are deleted.
    pub fn compact(
        &self,
        commit: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            let live = self.live();
            let mut next = (*live).clone();
            let old: Vec<Arc<Run>>;
            if live.l0.len() >= FANOUT {
                old = live.l0.clone();
                let mut cursors = old
                    .iter()
                    .map(|r| Cursor::new(r, 0))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut out: Option<(usize, Writer)> = None;
                let mut made: Vec<(usize, Run)> = Vec::new();
                merge(&mut cursors, &|_| true, &mut |h, k, v| {
                    let p = part_of(h);
                    if out.as_ref().is_none_or(|(q, _)| *q != p) {
                        if let Some((q, w)) = out.take() {
                            made.extend(w.finish()?.map(|r| (q, r)));
                        }
                        out = Some((p, Writer::new(&self.dir, self.id(), p as u16, 1)));
                    }
                    match out.as_mut() {
                        Some((_, w)) => w.push(h, k, v),
                        None => Ok(()),
                    }
                })?;
                if let Some((q, w)) = out.take() {
                    made.extend(w.finish()?.map(|r| (q, r)));
                }
                next.l0.clear();
                for (p, r) in made {
                    next.parts[p].insert(0, Arc::new(r));
                }
            } else {
                // the lowest level of any partition holding FANOUT runs
                let mut found = None;
                'parts: for (p, runs) in live.parts.iter().enumerate() {
                    let mut i = 0;
                    while i < runs.len() {
                        let level = runs[i].level;
                        let n = runs[i..].iter().take_while(|r| r.level == level).count();
                        if n >= FANOUT {
                            found = Some((p, i, n, level));
                            break 'parts;
                        }
                        i += n;
                    }
                }
                let Some((p, i, n, level)) = found else {
                    return Ok(());
                };
                old = live.parts[p][i..i + n].to_vec();
                let mut cursors = old
                    .iter()
                    .map(|r| Cursor::new(r, 0))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut w = Writer::new(&self.dir, self.id(), p as u16, level.saturating_add(1));
                merge(&mut cursors, &|_| true, &mut |h, k, v| w.push(h, k, v))?;
                let made = w.finish()?;
                next.parts[p].splice(i..i + n, made.map(Arc::new));
            }
            sync_dir(&self.dir)?;
            commit(&next.manifest())?;
            *self.live.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
            for r in old {
                std::fs::remove_file(&r.path)
                    .map_err(|e| format!("code run {}: {e}", r.path.display()))?;
            }
        }
    }
}

/// A level-0 run written, not yet named by a committed manifest.
#[derive(Debug)]
pub struct NewRun(Arc<Run>);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn code(i: u64) -> Code {
        Code {
            first: if i.is_multiple_of(7) {
                format!("member-{i}").into()
            } else {
                format!("m{:016x}", filter_hash(i)).into()
            },
            at: 1_764_000_000_000_000 + i as i64,
            event: u128::from(filter_hash(i ^ 9)) << 64 | u128::from(i),
            scans: (i % 3) as u32 + 1,
            others: (i % 5) as u32,
        }
    }

    fn key(i: u64) -> String {
        format!("B{:05}{:014}", i % 97, filter_hash(i) % 100_000_000_000_000)
    }

    #[test]
    fn packing_round_trips_every_form_of_member_id() {
        for c in [
            code(1),
            code(7),
            Code::default(),
            Code {
                first: "m0123456789ABCDEF".into(), // upper case: not the engine's form
                ..code(3)
            },
            Code {
                first: "m0123".into(),
                scans: u32::MAX,
                others: u32::MAX,
                at: i64::MIN,
                ..code(4)
            },
        ] {
            let mut b = Vec::new();
            pack(&c, &mut b);
            assert_eq!(unpack(&b).unwrap(), c);
        }
        let mut b = Vec::new();
        pack(&code(1), &mut b);
        assert_eq!(
            b.len(),
            1 + 8 + 8 + 16 + 1 + 1,
            "an engine member id packs in 8 bytes"
        );
        assert!(unpack(&b[..b.len() - 1]).is_err());
        b.push(0);
        assert!(unpack(&b).is_err(), "trailing bytes are damage");
    }

    fn json(c: &Code) -> Vec<u8> {
        cold::encode(c).unwrap()
    }

    /// Writes `keys` with `ver` as a checkpoint would, and makes the run live.
    fn checkpoint(runs: &CodeRuns, keys: &[u64], ver: u32, model: &mut BTreeMap<String, Code>) {
        let states: Vec<(String, Vec<u8>)> = keys
            .iter()
            .map(|&i| {
                let c = Code {
                    scans: ver,
                    ..code(i)
                };
                model.insert(key(i), c.clone());
                (key(i), json(&c))
            })
            .collect();
        let refs: Vec<(&str, &[u8])> = states
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        if let Some(n) = runs.write(&refs).unwrap() {
            runs.installed(n);
        }
    }

    fn check(runs: &CodeRuns, model: &BTreeMap<String, Code>, absent: &[u64]) {
        for (k, c) in model {
            let got = runs
                .get(k)
                .unwrap()
                .unwrap_or_else(|| panic!("{k} missing"));
            assert_eq!(cold::decode::<Code>(&got).unwrap(), *c, "{k}");
        }
        for i in absent {
            assert_eq!(runs.get(&key(*i)).unwrap(), None);
        }
        let mut seen = BTreeMap::new();
        runs.scan(&mut |k, v| {
            assert!(
                seen.insert(k.to_string(), cold::decode::<Code>(v).unwrap())
                    .is_none(),
                "{k} twice"
            );
        })
        .unwrap();
        assert_eq!(&seen, model);
    }

    #[test]
    fn newest_state_wins_through_merges_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut model = BTreeMap::new();
        let mut manifest = None;
        let runs = CodeRuns::open(dir.path(), None).unwrap();
        let mut rng = 1u64;
        // enough checkpoints for level 0, 1 and 2 merges; blocks filled past one
        for round in 0..80u32 {
            let n = 50 + (round as u64 * 37) % 400;
            let keys: Vec<u64> = (0..n)
                .map(|_| {
                    rng = filter_hash(rng);
                    rng % 6_000
                })
                .collect();
            checkpoint(&runs, &keys, round + 1, &mut model);
            let mut m = None;
            runs.compact(&mut |b| {
                m = Some(b.to_vec());
                Ok(())
            })
            .unwrap();
            // the store keeps the manifest of each checkpoint, then each merge's
            let now = runs.manifest_with(None);
            if let Some(m) = m {
                assert_eq!(m, now, "a merge commits the runs it leaves live");
            }
            manifest = Some(now);
            if round % 10 == 0 {
                check(&runs, &model, &[6_000, 6_001, 99_999]);
            }
        }
        check(&runs, &model, &[6_000, 6_001]);
        let st = runs.stats();
        let live = runs.live();
        assert!(live.l0.len() < FANOUT);
        for p in &live.parts {
            for level in 1..8 {
                let n = p.iter().filter(|r| r.level == level).count();
                assert!(
                    n < FANOUT,
                    "merges leave fewer than {FANOUT} runs a level: {n}"
                );
            }
            assert!(
                p.windows(2).all(|w| w[0].level <= w[1].level),
                "newest (lowest level) first"
            );
        }
        drop(live);
        let files = std::fs::read_dir(dir.path()).unwrap().count() as u64;
        assert_eq!(files, st.runs, "replaced runs are deleted");
        let levels: std::collections::BTreeSet<u8> = runs.live().all().map(|r| r.level).collect();
        assert!(
            levels.last().is_some_and(|l| *l >= 2),
            "merges of merged runs ran: {levels:?}"
        );
        drop(runs);
        let again = CodeRuns::open(dir.path(), Some(&manifest.clone().unwrap())).unwrap();
        check(&again, &model, &[6_000]);
    }

    #[test]
    fn a_run_no_manifest_names_is_deleted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut model = BTreeMap::new();
        let runs = CodeRuns::open(dir.path(), None).unwrap();
        checkpoint(&runs, &[1, 2, 3], 1, &mut model);
        let manifest = runs.manifest_with(None);
        // a second checkpoint's run is written, and the process dies before its commit
        let states = [(key(4), json(&code(4)))];
        let refs: Vec<(&str, &[u8])> = states
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        let n = runs.write(&refs).unwrap().unwrap();
        assert!(n.0.path.exists());
        let orphan = n.0.path.clone();
        drop((n, runs));
        let again = CodeRuns::open(dir.path(), Some(&manifest)).unwrap();
        assert!(!orphan.exists());
        check(&again, &model, &[4]);
        // and a new run does not reuse its id
        checkpoint(&again, &[5], 1, &mut model);
        check(&again, &model, &[4]);
    }

    #[test]
    fn damage_is_reported_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let mut model = BTreeMap::new();
        let runs = CodeRuns::open(dir.path(), None).unwrap();
        checkpoint(&runs, &(0..500).collect::<Vec<_>>(), 1, &mut model);
        let path = runs.live().l0[0].path.clone();
        let manifest = runs.manifest_with(None);
        drop(runs);
        let mut b = std::fs::read(&path).unwrap();
        b[HEADER + 3] ^= 0x40; // inside the first block's first record
        std::fs::write(&path, &b).unwrap();
        let runs = CodeRuns::open(dir.path(), Some(&manifest)).unwrap();
        let errs = model
            .keys()
            .filter_map(|k| runs.get(k).err())
            .collect::<Vec<_>>();
        assert!(!errs.is_empty() && errs[0].contains("checksum"), "{errs:?}");
        let n = b.len();
        b[n - 1] ^= 1; // the magic
        std::fs::write(&path, &b).unwrap();
        let e = CodeRuns::open(dir.path(), Some(&manifest)).unwrap_err();
        assert!(e.contains("bad magic"), "{e}");
        std::fs::remove_file(&path).unwrap();
        let e = CodeRuns::open(dir.path(), Some(&manifest)).unwrap_err();
        assert!(e.contains(&path.display().to_string()), "{e}");
    }

    #[test]
    fn a_hash_shared_by_codes_across_a_block_boundary_is_found() {
        // records with one hash that a block boundary cuts: pushed through the writer with a
        // forced hash, then looked up as `Run::get` is (the hash passed in)
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::new(dir.path(), 1, ALL, 0);
        let val = vec![7u8; 200];
        let mut keys = Vec::new();
        for i in 0..120u32 {
            let k = format!("k{i:04}");
            let h = if (30..50).contains(&i) {
                1000
            } else if i < 30 {
                u64::from(i)
            } else {
                2000 + u64::from(i)
            };
            w.push(h, k.as_bytes(), &val).unwrap();
            keys.push((h, k));
        }
        let run = w.finish().unwrap().unwrap();
        assert!(run.first.len() >= 3);
        assert!(
            run.first.contains(&1000),
            "a block starts inside the group of equal hashes"
        );
        let mut buf = Vec::new();
        for (h, k) in &keys {
            assert!(
                run.get(k.as_bytes(), *h, &mut buf).unwrap().is_some(),
                "{k}"
            );
        }
        assert!(run.get(b"zz", 1000, &mut buf).unwrap().is_none());
    }
}
