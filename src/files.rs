//! JSON-lines files as a source of `omnistream run` (`--input FILE`), exactly once.
//!
//! A backfill into the live service, or a feed that lands as files: each file is read from
//! its stored position (source `file:<absolute path>`, a byte offset just after the last
//! line taken) to its end, in the order given, the last one then followed for appended lines
//! (unless the service is to stop at the end). One thread reads and decodes the next batches
//! while the shard applies the last ones; a batch's position is committed with its events, so
//! after a crash the file is read again from the last durable batch, and the event ids make
//! whatever was applied twice a no-op. A few batches are in flight, each naming the position
//! it follows: after a failed commit the shard fails what was applied behind it and rebuilds,
//! and refuses a batch that does not follow its source's position as applied, so none is
//! committed past the failed one's events; the files are then read again from their durable
//! positions.
//!
//! A watched directory (`--input-dir`) is the same list, growing: its files in name order,
//! the newest followed, and files that appear later taken as they appear (a later name ends
//! the followed one: daily files, rotated logs). A `.gz` file is read through gzip, its
//! positions counting decompressed bytes, and is never followed.

use crate::shard::{Ingest, Item, Outcome, Read, Shard};
use actix::Addr;
use omnistream_actors::sharded::Sharded;
use omnistream_schemas::{Decoder, Pii};
use omnistream_streams::jsonl::{read_line_part, DEFAULT_LINE_LIMIT as LINE_LIMIT};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufReader, Read as _, Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often the followed file is looked at again once its end is reached.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

/// How many of a file's first bytes (decompressed, for a `.gz` file) its fingerprint covers:
/// what tells it from another file that took its name, or its inode number, or that was
/// written over it ([`head_source`]).
const HEAD: usize = 1024;

/// What `run --input` asks for.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The files, read in this order.
    pub files: Vec<PathBuf>,
    /// A directory whose files ([`listed`]) are taken in name order and as they appear
    /// (instead of `files`).
    pub dir: Option<PathBuf>,
    /// Most lines a batch (one commit's worth at most).
    pub batch: usize,
    /// Stop the service (gracefully, with the final checkpoint) once every file is read to
    /// its end and durable, instead of following the last one.
    pub stop_at_end: bool,
}

/// A file to read and where from.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The path as given.
    pub path: PathBuf,
    /// The name its position is stored under.
    pub source: Arc<str>,
    /// The name the inode of the file at that position is stored under
    /// ([`identity_source`]).
    pub identity: Arc<str>,
    /// The name the fingerprint of its first bytes is stored under ([`head_source`]).
    pub head: Arc<str>,
    /// Where to read from: the stored position (0 when none), or 0 when the file under
    /// the name is not the one that position is in.
    pub from: u64,
    /// The source's position in the store (0 when none): what its first batch follows.
    pub stored: u64,
    /// The file's inode when planned: opened later and found another, it is read from its
    /// start (it was rotated in between).
    pub inode: Option<u64>,
    /// Its size when planned (none for a `.gz` file: its decompressed size is not known).
    pub len: Option<u64>,
    /// Read to its end before start-up: not read again (see [`skip_done`]).
    pub done: bool,
    /// A `.gz` file the store says was read to its end: the compressed size stored when it
    /// was ([`gz_done_source`]) is its size now, and its inode the one stored, if any (its
    /// decompressed size, what its position counts, is not known without reading it).
    pub complete: bool,
    /// The file the one read before was renamed to (found in the same directory by its
    /// name, inode and first bytes), and that inode, when the name now holds another: read
    /// from `stored` to its end first, then this file from its start.
    pub tail: Option<(PathBuf, u64)>,
}

impl Inputs {
    /// Whether any file or directory is to be read.
    pub fn any(&self) -> bool {
        !self.files.is_empty() || self.dir.is_some()
    }

    /// The files to plan at start-up: those given, or the directory's as they are now.
    pub fn at_start(&self) -> Result<Vec<PathBuf>, String> {
        match &self.dir {
            Some(dir) => listed(dir),
            None => Ok(self.files.clone()),
        }
    }
}

/// Whether `path` is read through gzip (its name ends in `.gz`).
pub fn gzipped(path: &Path) -> bool {
    path.extension() == Some(OsStr::new("gz"))
}

/// Whether `--input-dir` takes a file of this name: `*.jsonl` and `*.jsonl.gz`, but not a
/// name starting with a dot (a file being written under a hidden name, to be renamed in
/// when complete).
pub fn taken(name: &OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| !n.starts_with('.') && (n.ends_with(".jsonl") || n.ends_with(".jsonl.gz")))
}

/// The files of `dir` that `--input-dir` takes ([`taken`], regular files), sorted by name.
pub fn listed(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let err = |e: std::io::Error| format!("--input-dir {}: {e}", dir.display());
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        let path = entry.path();
        if taken(&entry.file_name()) && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Opens a file of events: its bytes, decompressed when it is a `.gz` file (several gzip
/// members one after the other are read as one stream).
pub fn open_events(path: &Path) -> std::io::Result<Box<dyn std::io::Read + Send>> {
    let f = File::open(path)?;
    Ok(if gzipped(path) {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(f)))
    } else {
        Box::new(f)
    })
}

/// In a watched directory, marks the files read to their end before start-up (stored
/// position = size, or a `.gz` file [`Planned::complete`]) as done, so a restart does not
/// open them again; the newest plain file stays when it is to be followed (lines may be
/// appended to it).
pub fn skip_done(planned: &mut [Planned], follow: bool) {
    let newest = if follow {
        planned.len().checked_sub(1)
    } else {
        None
    };
    for (i, p) in planned.iter_mut().enumerate() {
        // a .gz file is never followed, the newest or not
        // (one with the rest of a renamed file to read is not, empty or not)
        p.done = p.tail.is_none() && ((p.len == Some(p.from) && Some(i) != newest) || p.complete);
    }
}

/// The name a file's position is stored under: `file:` and its absolute path (a file moved
/// elsewhere is read from its start again; the event ids make the repeat a no-op).
pub fn source_name(path: &Path) -> std::io::Result<String> {
    let abs = std::fs::canonicalize(path)?;
    Ok(format!("file:{}", abs.display()))
}

/// Checks every file before the service starts: it can be opened, and it is not shorter than
/// the position stored for it (a file replaced by a shorter one would otherwise be read from
/// the middle of a line; a `.gz` file is checked when it is read). `stored` gives a source's
/// stored position.
pub fn plan(
    files: &[PathBuf],
    dir: Option<&Path>,
    mut stored: impl FnMut(&str) -> Result<Option<u64>, String>,
) -> Result<Vec<Planned>, String> {
    let mut out = Vec::new();
    for path in files {
        let name = named(path, dir);
        let source = source_name(path).map_err(|e| format!("{name}: {e}"))?;
        let identity = identity_source(&source);
        let head = head_source(&source);
        let (file, meta) = File::open(path)
            .and_then(|f| f.metadata().map(|m| (f, m)))
            .map_err(|e| format!("{name}: {e}"))?;
        let len = (!gzipped(path)).then_some(meta.len());
        let ino = inode(&meta);
        let mut stored = |key: &str| {
            stored(key).map_err(|e| format!("{name}: reading its stored position: {e}"))
        };
        let at = stored(&source)?.unwrap_or(0);
        let mut from = at;
        let was = stored(&identity)?;
        // the first bytes read before are not the file's (none stored: cannot tell; the file
        // unreadable: its reading says why)
        let stored_head = stored(&head)?;
        let other_head = match stored_head {
            Some(h) if at > 0 => {
                read_head(&file, len.is_none()).is_ok_and(|b| fingerprint(&b, at) != h)
            }
            _ => false,
        };
        let complete = len.is_none()
            && stored(&gz_done_source(&source))? == Some(meta.len())
            && (was.is_none() || was == ino)
            && !other_head;
        let mut tail = None;
        match (was, ino) {
            (Some(was), Some(now)) if was != now && from > 0 => {
                tail = len
                    .and_then(|_| renamed_to(path, dir.is_some(), was, at, stored_head))
                    .map(|old| (old, was));
                match &tail {
                    Some((old, _)) => {
                        tracing::warn!(file = %path.display(), renamed_to = %old.display(), position = from, "the file read before was rotated (renamed) while the service was stopped: reading the rest of it, then the new file from its start (a file rotated in between, if any, is not read)")
                    }
                    None => {
                        tracing::warn!(file = %path.display(), was, now, position = from, "another file than the one read before has this name (rotated or replaced), and the old one is not beside it: read from its start")
                    }
                }
                from = 0;
            }
            (Some(was), Some(now)) if was == now && len.is_some_and(|l| from > l) => {
                tracing::warn!(file = %path.display(), size = ?len, position = from, "the file is shorter than the position read to (cut in place: copytruncate?): read again from its start");
                from = 0;
            }
            _ if other_head && from > 0 => {
                tracing::warn!(file = %path.display(), position = from, "the file's first bytes are not those read before (replaced, or written over): read from its start");
                from = 0;
            }
            _ => {}
        }
        // a store from before inodes were kept: the file cannot be told from another
        if let Some(len) = len.filter(|&len| from > len) {
            return Err(format!(
                "{name}: the store holds position {from} for it, past its end ({len} bytes): \
                 was it replaced or cut? Give a new file another name"
            ));
        }
        out.push(Planned {
            path: path.clone(),
            source: source.into(),
            identity: identity.into(),
            head: head.into(),
            from,
            stored: at,
            inode: ino,
            len,
            done: false,
            complete,
            tail,
        });
    }
    Ok(out)
}

/// The file beside `path` (the file it names, if a link) that is the one read to position
/// `at` under `path` before: named after it (`feed.jsonl.1`, `feed.jsonl-20261203`), its
/// inode `ino`, at least `at` bytes long, and its first bytes those read (when their
/// fingerprint `head` is known). What logrotate's default does while the service is
/// stopped: `feed.jsonl` renamed to `feed.jsonl.1` and a new `feed.jsonl` created. A plain
/// file only (one compressed since is another file); in a `watched` directory, not a file
/// it takes anyway (that one is read from its start under its own name).
fn renamed_to(path: &Path, watched: bool, ino: u64, at: u64, head: Option<u64>) -> Option<PathBuf> {
    let real = std::fs::canonicalize(path).ok()?;
    let (dir, name) = (real.parent()?, real.file_name()?.as_encoded_bytes());
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let n = e.file_name();
        if !n.as_encoded_bytes().starts_with(name) || (watched && taken(&n)) {
            return None;
        }
        let meta = e.metadata().ok()?;
        let ours = meta.is_file() && inode(&meta) == Some(ino) && meta.len() >= at;
        let p = e.path();
        let same = ours
            && head.is_none_or(|h| {
                File::open(&p)
                    .and_then(|f| read_head(&f, false))
                    .is_ok_and(|b| fingerprint(&b, at) == h)
            });
        same.then_some(p)
    })
}

/// How an error names an input file: after the option that gave it.
fn named(path: &Path, dir: Option<&Path>) -> String {
    match dir {
        Some(d) => format!("--input-dir {}: {}", d.display(), path.display()),
        None => format!("--input {}", path.display()),
    }
}

/// Reads a file's lines from a byte position: each complete line with the position just
/// after it. Blank lines are skipped (their bytes still move the position).
pub struct LineReader<R> {
    inner: BufReader<R>,
    /// Position after the last line returned.
    pos: u64,
    /// The line being read (cut at [`LINE_LIMIT`]), and its full length so far.
    line: Vec<u8>,
    len: u64,
}

/// One line read.
#[derive(Debug, PartialEq, Eq)]
pub struct Line {
    /// Its bytes without the terminator (`\n`, `\r\n`), cut at the limit.
    pub bytes: Vec<u8>,
    /// The position just after it.
    pub end: u64,
}

/// A file being read, plain or decompressed.
pub type FileLines = LineReader<Box<dyn std::io::Read + Send>>;

impl FileLines {
    /// Opens `path` at byte `from` (of its decompressed bytes for a `.gz` file, which are
    /// read and dropped up to there).
    pub fn open(path: &Path, from: u64) -> std::io::Result<FileLines> {
        Ok(open_input(path, from, None)?.lines)
    }
}

/// The inode of a file, where the platform has them: what tells a file renamed away (and
/// another created under its name) from the one that was read.
#[cfg(unix)]
pub fn inode(meta: &std::fs::Metadata) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    Some(meta.ino())
}

/// The inode of a file, where the platform has them (not here).
#[cfg(not(unix))]
pub fn inode(_meta: &std::fs::Metadata) -> Option<u64> {
    None
}

/// The name a file's inode is stored under, beside its position (committed with it).
pub fn identity_source(source: &str) -> String {
    format!("{source}#inode")
}

/// The name the fingerprint of a file's first bytes is stored under, beside its position
/// (committed with it): a file replaced while the service was stopped by one that got the
/// same inode number, or written over in place, is told from the one read by its first
/// bytes.
pub fn head_source(source: &str) -> String {
    format!("{source}#head")
}

/// The fingerprint of a file's first `upto` bytes ([`HEAD`] at most), `head` being its first
/// bytes as far as they are known: the first 62 bits of their SHA-256 (a stored position
/// fits a signed 64-bit column).
fn fingerprint(head: &[u8], upto: u64) -> u64 {
    use sha2::Digest as _;
    let n = usize::try_from(upto)
        .map_or(HEAD, |u| u.min(HEAD))
        .min(head.len());
    let d = sha2::Sha256::digest(&head[..n]);
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first) >> 2
}

/// A file's first [`HEAD`] bytes (fewer if it is shorter; decompressed when `gz`), read
/// without moving the offset `f` shares with its clones.
#[cfg(unix)]
fn read_head(f: &File, gz: bool) -> std::io::Result<Vec<u8>> {
    struct At<'a>(&'a File, u64);
    impl std::io::Read for At<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            use std::os::unix::fs::FileExt as _;
            let n = self.0.read_at(buf, self.1)?;
            self.1 += n as u64;
            Ok(n)
        }
    }
    let mut out = Vec::with_capacity(HEAD);
    let limit = HEAD as u64;
    if gz {
        flate2::read::MultiGzDecoder::new(BufReader::new(At(f, 0)))
            .take(limit)
            .read_to_end(&mut out)?;
    } else {
        At(f, 0).take(limit).read_to_end(&mut out)?;
    }
    Ok(out)
}

/// A file's first bytes: not read where there are no positional reads (every file then has
/// the fingerprint of no bytes).
#[cfg(not(unix))]
fn read_head(_f: &File, _gz: bool) -> std::io::Result<Vec<u8>> {
    Ok(Vec::new())
}

/// The name a `.gz` file's compressed size is stored under once it is read to its end
/// (committed with its last lines), so a restart need not decompress it again.
pub fn gz_done_source(source: &str) -> String {
    format!("{source}#gz-size")
}

/// Every name [`plan`] may read for a file stored under `source`.
fn stored_names(source: &str) -> [String; 4] {
    [
        identity_source(source),
        head_source(source),
        gz_done_source(source),
        source.to_string(),
    ]
}

/// An input file opened.
struct Opened {
    lines: FileLines,
    /// A plain file: a second handle on the same open file, to look at its size and first
    /// bytes while following it, whatever its name is now; a `.gz` file: its compressed size.
    handle: Result<File, u64>,
    inode: Option<u64>,
    /// Its first bytes as far as [`HEAD`] (what it held of them when opened); none when
    /// they could not be read (no fingerprint is then committed).
    head: Option<Vec<u8>>,
}

/// Opens a file as [`FileLines::open`] does, with what [`Opened`] adds; from its start
/// instead of `from` when it is not the file `planned` (an inode seen when its position was
/// planned: it was rotated since).
fn open_input(path: &Path, from: u64, planned: Option<u64>) -> std::io::Result<Opened> {
    let mut f = File::open(path)?;
    let meta = f.metadata()?;
    let ino = inode(&meta);
    let mut from = from;
    if from > 0 && planned.is_some_and(|was| ino.is_some_and(|now| now != was)) {
        tracing::warn!(file = %path.display(), position = from, "another file than the one planned has this name (rotated since): read from its start");
        from = 0;
    }
    let gz = gzipped(path);
    // unreadable as gzip: the lines' reading says so
    let head = read_head(&f, gz).ok();
    if !gz {
        let handle = f.try_clone()?;
        f.seek(SeekFrom::Start(from))?;
        return Ok(Opened {
            lines: LineReader::new(Box::new(f), from),
            handle: Ok(handle),
            inode: ino,
            head,
        });
    }
    let mut r: Box<dyn std::io::Read + Send> =
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(f)));
    let skipped = std::io::copy(&mut (&mut r).take(from), &mut std::io::sink())?;
    if skipped < from {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the store holds position {from} for it, past the end of its decompressed \
                 bytes ({skipped}): was it replaced? Give a new file another name"
            ),
        ));
    }
    Ok(Opened {
        lines: LineReader::new(r, from),
        handle: Err(meta.len()),
        inode: ino,
        head,
    })
}

impl<R: std::io::Read> LineReader<R> {
    /// Reads `r`, whose first byte is at position `pos`.
    pub fn new(r: R, pos: u64) -> LineReader<R> {
        LineReader {
            inner: BufReader::with_capacity(1 << 16, r),
            pos,
            line: Vec::new(),
            len: 0,
        }
    }

    /// The position after the last line returned.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next non-blank line. At the end of what is there so far, a line without its
    /// terminator is returned when `last` (the file is complete) and otherwise kept for the
    /// next call, which reads what was appended since.
    pub fn next_line(&mut self, last: bool) -> std::io::Result<Option<Line>> {
        loop {
            let (read, ended) = read_line_part(&mut self.inner, &mut self.line, LINE_LIMIT)?;
            self.len += read as u64;
            if !ended {
                return Ok(if last && self.len > 0 {
                    self.take(0)
                } else {
                    None
                });
            }
            if let Some(l) = self.take(1) {
                return Ok(Some(l));
            }
        }
    }

    /// Ends the line being read (with a terminator of `term` bytes): the line, or None when
    /// it was blank.
    fn take(&mut self, term: u64) -> Option<Line> {
        self.pos += self.len + term;
        self.len = 0;
        let mut bytes = std::mem::take(&mut self.line);
        if bytes.last() == Some(&b'\r') && bytes.len() < LINE_LIMIT {
            bytes.pop();
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        Some(Line {
            bytes,
            end: self.pos,
        })
    }
}

/// Lines of one file on their way to the shard, decoded on the reading thread.
struct Batch {
    file: usize,
    /// The lines read (blank lines aside).
    lines: usize,
    items: Vec<Item>,
    /// The file's position after the last line.
    position: u64,
    /// The inode of the file read (committed beside the position).
    inode: Option<u64>,
    /// The fingerprint of its bytes up to `position` (the first [`HEAD`] at most; committed
    /// beside the position, [`head_source`]).
    head: Option<u64>,
    /// A `.gz` file's compressed size, on the batch that ends it (committed beside the
    /// position, [`gz_done_source`]).
    gz_done: Option<u64>,
    /// The last batch of a file read to its end.
    end: bool,
}

impl Batch {
    /// A batch of no lines that commits file `file`'s `position` (and `inode`), and with
    /// `end` says it is read to its end.
    fn mark(file: usize, position: u64, inode: Option<u64>, end: bool) -> Batch {
        Batch {
            file,
            lines: 0,
            items: Vec::new(),
            position,
            inode,
            head: None,
            gz_done: None,
            end,
        }
    }
}

/// What the reading thread hands over.
enum Message {
    Batch(Batch),
    /// A file that appeared in the watched directory: the next index, before its batches.
    Found(Planned),
}

/// What was taken from one file (`/v1/stats` lists them under `inputs`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FileSummary {
    /// The file as given.
    pub file: String,
    /// The byte position it was read from at start-up.
    pub from: u64,
    /// The byte position durable now (after the last line taken).
    pub position: u64,
    /// Read to its end and durable (a followed file never is).
    pub done: bool,
    /// Lines taken since start-up (blank lines aside).
    pub lines: u64,
    /// Applied.
    pub accepted: u64,
    /// Already seen.
    pub duplicates: u64,
    /// Refused (in the dead letters).
    pub rejected: u64,
    /// The file this one was renamed to while the service was stopped, whose rest is read
    /// first; until it is read, `position` counts in it (from `rest_of.from`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rest_of: Option<RestOf>,
}

/// A renamed file whose rest is read before the file now under the name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RestOf {
    /// The file it was renamed to.
    pub file: String,
    /// The durable position in it at start-up.
    pub from: u64,
}

impl FileSummary {
    fn of(p: &Planned) -> FileSummary {
        let rest_of = p.tail.as_ref().map(|(old, _)| RestOf {
            file: old.display().to_string(),
            from: p.stored,
        });
        FileSummary {
            file: p.path.display().to_string(),
            from: p.from,
            position: rest_of.as_ref().map_or(p.from, |r| r.from),
            done: p.done,
            rest_of,
            ..FileSummary::default()
        }
    }
}

/// Batches handed to the shard and not yet durable, at most.
const IN_FLIGHT: usize = 8;

/// Why a pass over the files stopped.
enum Stop {
    /// A batch was not made durable: read again from the durable positions.
    Retry(String),
    /// The shard is gone, or a file cannot be read.
    Fatal(String),
}

/// The progress of every input file, shared with `/v1/stats`.
pub type Progress = Arc<std::sync::Mutex<Vec<FileSummary>>>;

/// The progress of `planned` before anything is read.
pub fn progress(planned: &[Planned]) -> Progress {
    Arc::new(std::sync::Mutex::new(
        planned.iter().map(FileSummary::of).collect(),
    ))
}

/// Reads the planned files on a thread of its own and hands their lines to the shard, a few
/// batches in flight, each naming the position it follows. When one is not made durable
/// (the store refused it; the shard then refuses those behind it too), the files are read
/// again from their durable positions. Returns when every file is read and durable
/// (`stop_at_end`), or with the error that stopped it; never while a file is followed or a
/// directory watched.
pub async fn ingest(
    shard: Addr<Shard>,
    mut planned: Vec<Planned>,
    inputs: &Inputs,
    progress: Progress,
    pii_key: &[u8],
    max_future_s: u64,
) -> Result<(), String> {
    let pii = Pii::new(pii_key);
    let mut run = Pass {
        decoder: Decoder::new(pii.clone()),
        pii,
        max_future_s,
        batch: inputs.batch.max(1),
        follow: !inputs.stop_at_end,
        dir: inputs.dir.clone(),
        summaries: progress,
        began: Vec::new(),
    };
    let mut backoff = Duration::from_millis(50);
    loop {
        match run.pass(&shard, &mut planned).await {
            Ok(()) => return Ok(()),
            Err(Stop::Fatal(e)) => return Err(e),
            Err(Stop::Retry(e)) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "an input batch was not made durable; reading again from the durable positions");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                let mut open: Vec<usize> = run.open(planned.len());
                if run.dir.is_some() {
                    // a file of the watched directory gone meanwhile has nothing more to give
                    open.retain(|&i| {
                        let here = planned[i].path.exists();
                        if !here {
                            tracing::warn!(file = %planned[i].path.display(), "an input file went before it was read to its end; passed over");
                            run.pass_over(i);
                        }
                        here
                    });
                }
                let paths: Vec<PathBuf> = open.iter().map(|&i| planned[i].path.clone()).collect();
                let again = stored_positions(&shard, &paths, run.dir.as_deref()).await?;
                for (i, p) in open.into_iter().zip(again) {
                    planned[i] = p;
                }
            }
        }
    }
}

/// A batch handed over, until its answer.
struct Sent {
    file: usize,
    lines: usize,
    position: u64,
    end: bool,
    answer: tokio::sync::oneshot::Receiver<Result<Vec<Outcome>, crate::shard::ShardError>>,
}

/// The reading of the files, over one or more passes.
struct Pass {
    decoder: Decoder,
    pii: Pii,
    max_future_s: u64,
    batch: usize,
    follow: bool,
    dir: Option<PathBuf>,
    summaries: Progress,
    /// When each file's first batch was handed over.
    began: Vec<Option<Instant>>,
}

impl Pass {
    /// The files not yet read to their end and durable, by index.
    /// Counts file `i` as read to its end without reading it (it is gone).
    fn pass_over(&self, i: usize) {
        let mut all = self
            .summaries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = all.get_mut(i) {
            s.done = true;
        }
    }

    fn open(&self, files: usize) -> Vec<usize> {
        let all = self
            .summaries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (0..files)
            .filter(|&i| all.get(i).is_none_or(|s| !s.done))
            .collect()
    }

    /// The file to follow once the others are read: the last given, or in a directory the
    /// newest by name (a `.gz` file is read to its end instead).
    fn followed(&self, planned: &[Planned], open: &[usize]) -> Option<usize> {
        if !self.follow {
            return None;
        }
        let last = if self.dir.is_some() {
            (0..planned.len()).max_by(|&a, &b| planned[a].path.cmp(&planned[b].path))?
        } else {
            planned.len().checked_sub(1)?
        };
        (open.contains(&last) && !gzipped(&planned[last].path)).then_some(last)
    }

    /// Reads the files not done from their planned positions, and the files that appear in
    /// the watched directory; adds those to `planned` and to the progress.
    async fn pass(&mut self, shard: &Addr<Shard>, planned: &mut Vec<Planned>) -> Result<(), Stop> {
        let (tx, mut rx) = mpsc::channel::<Result<Message, String>>(IN_FLIGHT);
        let open = self.open(planned.len());
        let followed = self.followed(planned, &open);
        let mut todo: Vec<(usize, PathBuf, u64)> = open
            .iter()
            .map(|&i| (i, planned[i].path.clone(), planned[i].from))
            .collect();
        if self.dir.is_some() {
            // files found while reading were indexed as found: read again by name
            todo.sort_by(|a, b| a.1.cmp(&b.1));
        }
        let watch = match (&self.dir, self.follow) {
            (Some(dir), true) => Some(Watch::new(dir.clone(), planned)),
            _ => None,
        };
        {
            let reader = Reader {
                planned: planned.iter().map(|p| p.inode).collect(),
                tails: planned
                    .iter()
                    .map(|p| p.tail.clone().map(|(old, ino)| (old, p.stored, ino)))
                    .collect(),
                watched: self.dir.clone(),
                decoder: self.decoder.clone(),
                pii: self.pii.clone(),
                batch: self.batch,
                max_future_s: self.max_future_s,
                tx,
            };
            std::thread::Builder::new()
                .name("omnistream-input".into())
                .spawn(move || reader.run(todo, followed, watch))
                .map_err(|e| Stop::Fatal(format!("starting the input thread: {e}")))?;
        }
        self.began.resize(planned.len(), None);
        // the position each file's next batch follows
        let mut after: Vec<u64> = planned.iter().map(|p| p.stored).collect();
        let mut inflight = std::collections::VecDeque::<Sent>::new();
        let mut reading = true;
        loop {
            // hand over what is read, without waiting while answers are due
            while reading && inflight.len() < IN_FLIGHT {
                let next = if inflight.is_empty() {
                    rx.recv().await
                } else {
                    match rx.try_recv() {
                        Ok(b) => Some(b),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => None,
                    }
                };
                let b = match next.transpose().map_err(Stop::Fatal)? {
                    None => {
                        reading = false;
                        break;
                    }
                    Some(Message::Found(p)) => {
                        tracing::info!(file = %p.path.display(), "input file found in the watched directory");
                        after.push(p.stored);
                        self.began.push(None);
                        self.summaries
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(FileSummary::of(&p));
                        planned.push(p);
                        continue;
                    }
                    Some(Message::Batch(b)) => b,
                };
                let (reply, answer) = tokio::sync::oneshot::channel();
                let msg = Ingest {
                    source: planned[b.file].source.clone(),
                    position: Some(b.position),
                    after: Some(after[b.file]),
                    also: {
                        let p = &planned[b.file];
                        let mut also = Vec::new();
                        if let Some(i) = b.inode {
                            also.push((p.identity.clone(), i));
                        }
                        if let Some(h) = b.head {
                            also.push((p.head.clone(), h));
                        }
                        if let Some(size) = b.gz_done {
                            also.push((gz_done_source(&p.source).into(), size));
                        }
                        also
                    },
                    items: b.items,
                    reply,
                    received: Instant::now(),
                };
                shard
                    .send(msg)
                    .await
                    .map_err(|_| Stop::Fatal("the shard stopped".into()))?;
                after[b.file] = b.position;
                self.began[b.file].get_or_insert_with(Instant::now);
                inflight.push_back(Sent {
                    file: b.file,
                    lines: b.lines,
                    position: b.position,
                    end: b.end,
                    answer,
                });
            }
            let Some(mut s) = inflight.pop_front() else {
                return Ok(());
            };
            match (&mut s.answer).await {
                Ok(Ok(outcomes)) => self.durable(&planned[s.file], &s, &outcomes),
                Ok(Err(e)) => {
                    // those behind it are refused too, or were applied after the rebuild:
                    // either way they are read again (the ids make a repeat a no-op)
                    for rest in inflight.drain(..) {
                        let _ = rest.answer.await;
                    }
                    return Err(Stop::Retry(format!(
                        "{}: {e}",
                        planned[s.file].path.display()
                    )));
                }
                Err(_) => return Err(Stop::Fatal("the shard stopped".into())),
            }
        }
    }

    /// Counts a durable batch; at a file's end, says what was taken from it.
    fn durable(&mut self, p: &Planned, s: &Sent, outcomes: &[Outcome]) {
        let mut all = self
            .summaries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(sum) = all.get_mut(s.file) else {
            return;
        };
        if sum.rest_of.is_some() && s.position < sum.position {
            // the renamed file's rest is read (its positions are past the stored one, never
            // 0) and the new file's start committed
            sum.rest_of = None;
        }
        sum.position = s.position;
        sum.done = s.end;
        sum.lines += s.lines as u64;
        for o in outcomes {
            match o {
                Outcome::Accepted { .. } => sum.accepted += 1,
                Outcome::Duplicate { .. } => sum.duplicates += 1,
                _ => sum.rejected += 1,
            }
        }
        if !s.end {
            return;
        }
        let secs = self
            .began
            .get(s.file)
            .copied()
            .flatten()
            .map_or(0.0, |t| t.elapsed().as_secs_f64());
        tracing::info!(
            file = %p.path.display(), from = p.from, to = s.position, lines = sum.lines,
            accepted = sum.accepted, duplicates = sum.duplicates, rejected = sum.rejected,
            seconds = secs, "input file read to its end, durable"
        );
        // not println!: a service whose standard output was closed goes on
        let _ = writeln!(
            std::io::stdout(),
            "input {}: {} lines to byte {} in {:.2} s ({:.0} lines/s): {} accepted, {} duplicates, {} rejected",
            p.path.display(),
            sum.lines,
            s.position,
            secs,
            sum.lines as f64 / secs.max(1e-9),
            sum.accepted,
            sum.duplicates,
            sum.rejected
        );
    }
}

/// The watched directory, as the reading thread knows it.
struct Watch {
    dir: PathBuf,
    /// Every file planned or found (a file is taken once, by its path).
    known: std::collections::HashSet<PathBuf>,
    /// The greatest name known.
    newest: Option<PathBuf>,
    /// The index the next file found gets.
    next: usize,
    /// The last look failed (warned once until one succeeds).
    failing: bool,
    /// Files listed but not taken yet: a file read to its end at once is taken only when it
    /// has stopped changing (see [`Watch::look`]).
    waiting: std::collections::HashMap<PathBuf, Quiet>,
}

/// A file's size and modification time, to tell whether it is still being written.
type Stamp = (u64, Option<std::time::SystemTime>);

fn stamp(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path).ok().as_ref().map(stamp_of)
}

fn stamp_of(m: &std::fs::Metadata) -> Stamp {
    (m.len(), m.modified().ok())
}

/// Whether a file has stopped changing: the same [`Stamp`] at two looks at least
/// [`FOLLOW_EVERY`] apart (or the file gone).
struct Quiet {
    last: Option<Stamp>,
    at: Instant,
}

impl Quiet {
    fn new(last: Option<Stamp>, at: Instant) -> Quiet {
        Quiet { last, at }
    }

    /// Whether the file, found as `now` at `at`, has stopped changing.
    fn after(&mut self, now: Option<Stamp>, at: Instant) -> bool {
        if now.is_none() {
            return true;
        }
        if at.duration_since(self.at) < FOLLOW_EVERY {
            return false;
        }
        let same = now == self.last;
        self.last = now;
        self.at = at;
        same
    }
}

impl Watch {
    fn new(dir: PathBuf, planned: &[Planned]) -> Watch {
        Watch {
            dir,
            known: planned.iter().map(|p| p.path.clone()).collect(),
            newest: planned.iter().map(|p| p.path.clone()).max(),
            next: planned.len(),
            failing: false,
            waiting: Default::default(),
        }
    }

    /// The files to take now (at `now`) of those that appeared since they were last taken,
    /// by name. The greatest name, when it sorts after every file known and is not a `.gz`
    /// file, is taken at once: it is followed, so a line still being written waits for its
    /// end. Any other file is read to its end as soon as it is taken, so it is taken only once
    /// it is [`Quiet`] (the same size and modification time at looks 0.2 s apart): a file
    /// still being written in place (a late earlier name, a `.gz` file being compressed) waits
    /// until its writer stops. A file gone before it is taken is forgotten.
    fn look(&mut self, now: Instant) -> Vec<PathBuf> {
        match listed(&self.dir) {
            Ok(all) => {
                self.failing = false;
                let greatest = all.last().cloned();
                let mut waiting = std::collections::HashMap::new();
                let mut take = Vec::new();
                for p in all {
                    if self.known.contains(&p) {
                        continue;
                    }
                    let followed = Some(&p) == greatest.as_ref()
                        && self.newest.as_ref().is_none_or(|n| &p > n)
                        && !gzipped(&p);
                    if !followed {
                        let Some(s) = stamp(&p) else { continue };
                        let Some(mut q) = self.waiting.remove(&p) else {
                            waiting.insert(p, Quiet::new(Some(s), now));
                            continue;
                        };
                        if !q.after(Some(s), now) {
                            waiting.insert(p, q);
                            continue;
                        }
                    }
                    self.known.insert(p.clone());
                    take.push(p);
                }
                // what was waiting and is not listed now is gone
                self.waiting = waiting;
                take
            }
            Err(e) => {
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(error = %e, "cannot list the watched input directory; trying again");
                }
                Vec::new()
            }
        }
    }
}

/// The reading thread's side: decodes lines and hands them over in batches.
struct Reader {
    /// The inode each file had when planned, by index.
    planned: Vec<Option<u64>>,
    /// By index: the file the one read before was renamed to, the position to read it
    /// from, and its inode ([`Planned::tail`]).
    tails: Vec<Option<(PathBuf, u64, u64)>>,
    /// The watched directory, if the files are its (errors name it; a file of it that is
    /// gone before it is opened is passed over, not an error).
    watched: Option<PathBuf>,
    decoder: Decoder,
    pii: Pii,
    batch: usize,
    max_future_s: u64,
    tx: mpsc::Sender<Result<Message, String>>,
}

/// The receiver is gone, or a file could not be read (the error was handed over).
struct Gone;

/// A file open on the reading thread.
struct Open {
    /// Its index among the files.
    file: usize,
    path: PathBuf,
    lines: FileLines,
    /// The same open file, to look at whatever its name is now; a `.gz` file's compressed
    /// size instead.
    handle: Result<File, u64>,
    /// Its inode when opened.
    inode: Option<u64>,
    /// Its first bytes as far as [`HEAD`], as far as they are known (none: unreadable).
    head: Option<Vec<u8>>,
    /// Followed, and renamed away: since when it is read on until its writer stops.
    moved: Option<Quiet>,
}

impl Open {
    fn new(file: usize, path: &Path, o: Opened) -> Open {
        Open {
            file,
            path: path.to_path_buf(),
            lines: o.lines,
            handle: o.handle,
            inode: o.inode,
            head: o.head,
            moved: None,
        }
    }

    /// Its size and modification time now: of the open file itself when there is a handle
    /// (a file renamed or removed still has them), else of its path.
    fn stamp(&self) -> Option<Stamp> {
        match &self.handle {
            Ok(h) => h.metadata().ok().as_ref().map(stamp_of),
            Err(_) => stamp(&self.path),
        }
    }

    /// The fingerprint of its bytes up to `pos` (the first [`HEAD`] at most): of a plain
    /// file that was shorter than that when its first bytes were read, read them again.
    fn head_at(&mut self, pos: u64) -> Option<u64> {
        let head = self.head.as_mut()?;
        if head.len() < HEAD && (head.len() as u64) < pos {
            if let Ok(Ok(b)) = self.handle.as_ref().map(|h| read_head(h, false)) {
                *head = b;
            }
        }
        Some(fingerprint(head, pos))
    }

    /// Whether its first bytes are no longer those read before (a plain file cut and
    /// written again in place, faster than its size could show it).
    fn written_over(&self) -> bool {
        let (Ok(h), Some(head)) = (&self.handle, &self.head) else {
            return false;
        };
        let Ok(now) = read_head(h, false) else {
            return false;
        };
        let n = now.len().min(head.len());
        now[..n] != head[..n]
    }
}

impl Reader {
    /// The inode file `file` had when planned (none for a file found later).
    fn planned_inode(&self, file: usize) -> Option<u64> {
        self.planned.get(file).copied().flatten()
    }

    fn send(&self, m: Result<Message, String>) -> Result<(), Gone> {
        self.tx.blocking_send(m).map_err(|_| Gone)
    }

    fn fail(&self, path: &Path, e: impl std::fmt::Display) -> Gone {
        let name = named(path, self.watched.as_deref());
        let _ = self.send(Err(format!("{name}: {e}")));
        Gone
    }

    /// Opens file `file` at `from`; a file of the watched directory that is gone by now is
    /// passed over (None): it is counted as read to its end, with nothing taken from it.
    fn open(&self, file: usize, path: &Path, from: u64) -> Result<Option<Open>, Gone> {
        match open_input(path, from, self.planned_inode(file)) {
            Ok(o) => Ok(Some(Open::new(file, path, o))),
            Err(e) if self.watched.is_some() && e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(file = %path.display(), "an input file went before it was read; passed over");
                self.send(Ok(Message::Batch(Batch::mark(file, from, None, true))))?;
                Ok(None)
            }
            Err(e) => Err(self.fail(path, e)),
        }
    }

    /// Reads the rest of the file the one read before as file `file` was renamed to, if
    /// planned: from its durable position to its end, under the same position name, once a
    /// look finds it unchanged 0.2 s on (its writer may not have reopened yet); then commits
    /// the start of the file that now has the name (its inode as planned), read next.
    fn tail(&self, file: usize) -> Result<(), Gone> {
        let Some((old, from, was)) = self.tails.get(file).and_then(Option::as_ref) else {
            return Ok(());
        };
        match open_input(old, *from, None) {
            Ok(o) if o.inode == Some(*was) => {
                let mut o = Open::new(file, old, o);
                let mut quiet = Quiet::new(o.stamp(), Instant::now());
                loop {
                    self.drain(&mut o, false, false)?;
                    if quiet.after(o.stamp(), Instant::now()) {
                        break;
                    }
                    std::thread::sleep(FOLLOW_EVERY / 4);
                }
                self.drain(&mut o, true, false)?;
            }
            Ok(_) => {
                tracing::warn!(file = %old.display(), "the file the input was renamed to was rotated again since: its lines after the durable position are not read");
            }
            Err(e) => {
                tracing::warn!(file = %old.display(), error = %e, "the file the input was renamed to could not be read: its lines after the durable position are not read");
            }
        }
        let inode = self.planned_inode(file);
        self.send(Ok(Message::Batch(Batch::mark(file, 0, inode, false))))
    }

    /// Hands over what `o` holds now, `batch` lines at a time. When `complete`, that is
    /// to its end, the last line even without its newline, and when also `ends`, the last
    /// batch (empty if need be) says the file is read to its end; otherwise a line without
    /// its end waits for the next call.
    fn drain(&self, o: &mut Open, complete: bool, ends: bool) -> Result<(), Gone> {
        let mut lines = Vec::with_capacity(self.batch);
        loop {
            let line = o
                .lines
                .next_line(complete)
                .map_err(|e| self.fail(&o.path, e))?;
            let end = line.is_none();
            if let Some(l) = line {
                lines.push(l.bytes);
            }
            if lines.len() == self.batch || (end && ((complete && ends) || !lines.is_empty())) {
                let position = o.lines.position();
                let b = Batch {
                    file: o.file,
                    items: decode(&lines, &self.decoder, &self.pii, self.max_future_s),
                    lines: lines.len(),
                    position,
                    inode: o.inode,
                    head: o.head_at(position),
                    gz_done: o
                        .handle
                        .as_ref()
                        .err()
                        .copied()
                        .filter(|_| end && complete && ends),
                    end: end && complete && ends,
                };
                lines.clear();
                self.send(Ok(Message::Batch(b)))?;
            }
            if end {
                return Ok(());
            }
        }
    }

    /// The followed file, read to what it holds now: whether its path still names it. Cut
    /// in place (shorter than what was read: `copytruncate`), it is read again from its
    /// start. Renamed away with another file created under its name (`logrotate`'s
    /// default), it is read on until a look finds it unchanged 0.2 s on (its writer may
    /// still be writing to it), completed, and the new file followed from its start, under
    /// the same name, its inode committed with its first lines. Found with other first bytes
    /// than it had (cut and written again before a look could see it shorter), it is read
    /// again from its start, nothing read from the old position.
    fn follow(&self, o: &mut Open) -> Result<(), Gone> {
        let over = o.written_over();
        if !over {
            self.drain(o, false, false)?;
        }
        let Some(now) = o.stamp() else { return Ok(()) };
        let at_path = std::fs::metadata(&o.path).ok().and_then(|m| inode(&m));
        if over {
            tracing::warn!(file = %o.path.display(), read_to = o.lines.position(), "the followed file's first bytes changed (cut and written again in place): reading it again from its start");
        } else if at_path.is_some() && at_path != o.inode {
            let quiet = o
                .moved
                .get_or_insert_with(|| Quiet::new(Some(now), Instant::now()));
            if !quiet.after(Some(now), Instant::now()) {
                return Ok(());
            }
            self.drain(o, true, false)?;
            tracing::info!(file = %o.path.display(), to = o.lines.position(), "the followed file was renamed away and another created under its name: following the new one from its start");
        } else if now.0 < o.lines.position() {
            tracing::warn!(file = %o.path.display(), size = now.0, read_to = o.lines.position(), "the followed file was cut (copytruncate?): reading it again from its start");
        } else {
            return Ok(());
        }
        if let Some(n) = self.open(o.file, &o.path.clone(), 0)? {
            *o = n;
            // commit the new start (and inode) at once: a restart before its first whole
            // line is durable must not read the new file from the old position
            self.send(Ok(Message::Batch(Batch::mark(o.file, 0, o.inode, false))))?;
        }
        Ok(())
    }

    /// Reads every file of `todo` (index, path, position) to its end in order, but
    /// `followed`, which is read last and then followed; with `watch`, takes the files that
    /// appear in the directory: each one read to its end, the newest followed instead (a
    /// later name ends the one followed before it). Returns when there is nothing left to
    /// read or follow, or the receiver is gone.
    fn run(
        self,
        todo: Vec<(usize, PathBuf, u64)>,
        followed: Option<usize>,
        mut watch: Option<Watch>,
    ) {
        let _ = self.read(todo, followed, &mut watch);
    }

    fn read(
        &self,
        todo: Vec<(usize, PathBuf, u64)>,
        followed: Option<usize>,
        watch: &mut Option<Watch>,
    ) -> Result<(), Gone> {
        let mut queue = std::collections::VecDeque::new();
        let mut follow: Option<Open> = None;
        // files followed until a later name came: read on until their writer stops
        let mut closing: Vec<(Open, Quiet)> = Vec::new();
        // the followed file's renamed predecessor, read in its turn: after the others
        let mut follow_tail = None;
        for (i, path, from) in todo {
            if Some(i) == followed {
                follow = self.open(i, &path, from)?;
                follow_tail = Some(i);
            } else {
                queue.push_back((i, path, from));
            }
        }
        loop {
            while let Some((i, path, from)) = queue.pop_front() {
                self.tail(i)?;
                if let Some(mut o) = self.open(i, &path, from)? {
                    self.drain(&mut o, true, true)?;
                }
            }
            if let Some(i) = follow_tail.take() {
                self.tail(i)?;
            }
            match (&mut follow, watch.is_some()) {
                (Some(o), _) => self.follow(o)?,
                (None, false) => return Ok(()),
                (None, true) => {}
            }
            let mut k = 0;
            while k < closing.len() {
                let (o, quiet) = &mut closing[k];
                self.drain(o, false, false)?;
                if quiet.after(o.stamp(), Instant::now()) {
                    self.drain(o, true, true)?;
                    closing.remove(k);
                } else {
                    k += 1;
                }
            }
            if let Some(w) = watch.as_mut() {
                let found = w.look(Instant::now());
                let before = w.newest.clone();
                for path in &found {
                    let source = match source_name(path) {
                        Ok(s) => s,
                        Err(e) if !path.exists() => {
                            tracing::warn!(file = %path.display(), error = %e, "an input file went before it was read; skipped");
                            continue;
                        }
                        Err(e) => return Err(self.fail(path, e)),
                    };
                    let p = Planned {
                        path: path.clone(),
                        identity: identity_source(&source).into(),
                        head: head_source(&source).into(),
                        source: source.into(),
                        from: 0,
                        stored: 0,
                        inode: None,
                        len: None,
                        done: false,
                        complete: false,
                        tail: None,
                    };
                    queue.push_back((w.next, path.clone(), 0));
                    w.next += 1;
                    self.send(Ok(Message::Found(p)))?;
                    if w.newest.as_ref().is_none_or(|n| path > n) {
                        w.newest = Some(path.clone());
                    }
                }
                if w.newest != before {
                    // a later name: the file followed so far is complete once its writer
                    // stops (it may not have written its last line out yet)
                    if let Some(o) = follow.take() {
                        let q = Quiet::new(o.stamp(), Instant::now());
                        closing.push((o, q));
                    }
                    if let Some(pos) = queue
                        .iter()
                        .position(|(_, p, _)| Some(p) == w.newest.as_ref() && !gzipped(p))
                    {
                        if let Some((i, path, from)) = queue.remove(pos) {
                            follow = self.open(i, &path, from)?;
                        }
                    }
                }
                if !found.is_empty() {
                    continue;
                }
            }
            if self.tx.is_closed() {
                return Ok(());
            }
            std::thread::sleep(FOLLOW_EVERY);
        }
    }
}

fn decode(lines: &[Vec<u8>], decoder: &Decoder, pii: &Pii, max_future_s: u64) -> Vec<Item> {
    let now = crate::shard::wall_clock_us();
    lines
        .iter()
        .map(|l| Item::decode(decoder, pii, l, now, max_future_s))
        .collect()
}

/// `files` planned ([`plan`]) from the positions the shard's store holds.
///
/// The shard only reads the stored values (every name a file's plan may ask for); the plan
/// itself, which opens the files, reads their first bytes and may list a directory, runs on
/// a blocking thread, so HTTP ingest is not held up behind it (a retry re-plans while the
/// service serves).
pub async fn stored_positions(
    shard: &Addr<Shard>,
    files: &[PathBuf],
    dir: Option<&Path>,
) -> Result<Vec<Planned>, String> {
    let blocking = |what: &'static str| move |e: tokio::task::JoinError| format!("{what}: {e}");
    let files = Arc::new(files.to_vec());
    let dir = dir.map(Path::to_path_buf);
    let mut names: Vec<String> = {
        let files = files.clone();
        tokio::task::spawn_blocking(move || {
            // a file whose name cannot be made is left to the plan, which says why
            files
                .iter()
                .filter_map(|p| source_name(p).ok())
                .flat_map(|s| stored_names(&s))
                .collect()
        })
        .await
        .map_err(blocking("naming the input files"))?
    };
    let mut values = HashMap::new();
    // a name made again by the plan can differ (a link changed in between): read it too
    for _ in 0..3 {
        let read = shard
            .send(Read(move |_: &Sharded, s: &dyn crate::store::Store| {
                names
                    .into_iter()
                    .map(|n| match s.position(&n) {
                        Ok(v) => Ok((n, v)),
                        Err(e) => Err(format!("{n}: reading its stored position: {e}")),
                    })
                    .collect::<Result<Vec<_>, _>>()
            }))
            .await
            .map_err(|e| format!("the shard stopped: {e}"))??;
        values.extend(read);
        let (files, dir) = (files.clone(), dir.clone());
        let (planned, unread, had) = tokio::task::spawn_blocking(move || {
            let mut unread = Vec::new();
            let planned = plan(&files, dir.as_deref(), |name| match values.get(name) {
                Some(v) => Ok(*v),
                None => {
                    // a file's plan asks for its position first: read the rest with it
                    unread.extend(stored_names(name));
                    Err(format!("{name}: its stored position was not read"))
                }
            });
            (planned, unread, values)
        })
        .await
        .map_err(blocking("planning the input files"))?;
        if unread.is_empty() {
            return planned;
        }
        (names, values) = (unread, had);
    }
    Err("the input files' names kept changing while they were planned".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], from: u64, last: bool) -> Vec<(String, u64)> {
        let mut r = LineReader::new(input, from);
        let mut out = Vec::new();
        while let Some(l) = r.next_line(last).unwrap() {
            out.push((String::from_utf8(l.bytes).unwrap(), l.end));
        }
        out
    }

    #[test]
    fn lines_carry_the_position_after_them_and_blank_lines_move_it() {
        let got = all(b"{\"a\":1}\r\n\n  \n{\"b\":2}\n", 0, true);
        assert_eq!(got, vec![("{\"a\":1}".into(), 9), ("{\"b\":2}".into(), 21)]);
        // read from a stored position, positions go on from it
        let got = all(b"{\"b\":2}\n", 13, true);
        assert_eq!(got, vec![("{\"b\":2}".into(), 21)]);
    }

    #[test]
    fn a_line_without_its_end_waits_unless_the_file_is_complete() {
        assert_eq!(all(b"{}\n{\"c\"", 0, false), vec![("{}".into(), 3)]);
        assert_eq!(
            all(b"{}\n{\"c\"", 0, true),
            vec![("{}".into(), 3), ("{\"c\"".into(), 7)]
        );
    }

    #[test]
    fn a_followed_file_yields_what_is_appended_once_its_line_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed.jsonl");
        std::fs::write(&path, b"{\"a\":1}\n{\"b\"").unwrap();
        let mut r = LineReader::open(&path, 0).unwrap();
        assert_eq!(r.next_line(false).unwrap().unwrap().end, 8);
        assert_eq!(r.next_line(false).unwrap(), None);
        assert_eq!(r.position(), 8);
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b":2}\n").unwrap();
        let l = r.next_line(false).unwrap().unwrap();
        assert_eq!((l.bytes.as_slice(), l.end), (&b"{\"b\":2}"[..], 16));
    }

    #[test]
    fn an_oversized_line_is_cut_but_its_bytes_counted() {
        let mut input = vec![b'x'; LINE_LIMIT + 100];
        input.extend_from_slice(b"\n{}\n");
        let mut r = LineReader::new(&input[..], 0);
        let first = r.next_line(true).unwrap().unwrap();
        assert_eq!(first.bytes.len(), LINE_LIMIT);
        assert_eq!(first.end, LINE_LIMIT as u64 + 101);
        assert_eq!(r.next_line(true).unwrap().unwrap().end, input.len() as u64);
    }

    /// A file that grows while it is read: `read` gives what was appended so far.
    struct Growing(std::rc::Rc<std::cell::RefCell<Vec<u8>>>, usize);

    impl std::io::Read for Growing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let all = self.0.borrow();
            let n = buf.len().min(all.len() - self.1);
            buf[..n].copy_from_slice(&all[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }

    proptest::proptest! {
        /// However a file is appended to while it is followed, the lines and the positions
        /// after them are those of the whole file read at once, and every position is just
        /// after a newline (but the end of a complete file's unterminated last line).
        #[test]
        fn a_file_appended_in_any_pieces_gives_the_lines_of_the_whole(
            bytes in proptest::collection::vec(
                proptest::sample::select(vec![b'\n', b'\r', b' ', b'a', b'{']), 0..300),
            cuts in proptest::collection::vec(0usize..300, 0..8),
        ) {
            let whole = all(&bytes, 0, true);
            let grown = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let mut r = LineReader::new(Growing(grown.clone(), 0), 0);
            let mut got = Vec::new();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            cuts.push(bytes.len());
            let mut from = 0;
            for c in cuts {
                grown.borrow_mut().extend_from_slice(&bytes[from..c]);
                from = c;
                while let Some(l) = r.next_line(false).unwrap() {
                    got.push((String::from_utf8(l.bytes).unwrap(), l.end));
                }
                // what is taken so far ends at a newline (or is nothing)
                let p = r.position() as usize;
                proptest::prop_assert!(p == 0 || bytes[p - 1] == b'\n');
            }
            while let Some(l) = r.next_line(true).unwrap() {
                got.push((String::from_utf8(l.bytes).unwrap(), l.end));
            }
            proptest::prop_assert_eq!(&got, &whole);
            proptest::prop_assert_eq!(r.position(), bytes.len() as u64);
            for (line, end) in &whole {
                let end = *end as usize;
                proptest::prop_assert!(bytes[end - 1] == b'\n' || end == bytes.len());
                proptest::prop_assert!(!line.trim().is_empty());
            }
        }
    }

    #[test]
    fn a_position_past_the_end_of_its_file_stops_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, b"{}\n").unwrap();
        let inputs = Inputs {
            files: vec![path.clone()],
            dir: None,
            batch: 10,
            stop_at_end: true,
        };
        // a store from before inodes were kept holds positions only
        let at = |p: u64| move |k: &str| Ok((!k.contains('#')).then_some(p));
        let ok = plan(&inputs.files, None, at(3)).unwrap();
        assert_eq!(ok[0].from, 3);
        assert!(ok[0].source.starts_with("file:/"), "{}", ok[0].source);
        assert_eq!(&*ok[0].identity, format!("{}#inode", ok[0].source));
        let e = plan(&inputs.files, None, at(4)).unwrap_err();
        assert!(e.contains("position 4") && e.contains("3 bytes"), "{e}");
        let missing = Inputs {
            files: vec![dir.path().join("none.jsonl")],
            ..inputs
        };
        let e = plan(&missing.files, None, |_| Ok(None)).unwrap_err();
        assert!(e.starts_with("--input ") && e.contains("none.jsonl"), "{e}");
        assert_eq!(e.matches("none.jsonl").count(), 1, "{e}");
        let e = plan(&missing.files, Some(dir.path()), |_| Ok(None)).unwrap_err();
        assert!(
            e.starts_with("--input-dir ") && e.contains("none.jsonl"),
            "{e}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_stored_inode_tells_a_rotated_or_cut_file_from_the_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, b"{}\n{}\n").unwrap();
        let ino = inode(&std::fs::metadata(&path).unwrap()).unwrap();
        let files = std::slice::from_ref(&path);
        let stored = |pos: u64, was: u64| store_of(pos, was, None);
        // the same file: read on from the position; past its end it was cut: from its start
        assert_eq!(plan(files, None, stored(3, ino)).unwrap()[0].from, 3);
        assert_eq!(plan(files, None, stored(9, ino)).unwrap()[0].from, 0);
        // another file under the name: from its start, shorter or not
        assert_eq!(plan(files, None, stored(3, ino + 1)).unwrap()[0].from, 0);
        assert_eq!(plan(files, None, stored(9, ino + 1)).unwrap()[0].from, 0);
        // the first batch still follows the position the store holds
        assert_eq!(plan(files, None, stored(9, ino + 1)).unwrap()[0].stored, 9);
    }

    #[cfg(unix)]
    #[test]
    fn a_file_rotated_while_stopped_has_the_rest_of_the_old_one_read_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.jsonl");
        let old = dir.path().join("app.jsonl.1");
        // read to 8 under the name, two lines appended, renamed away; a new file created
        std::fs::write(&old, b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n").unwrap();
        std::fs::write(&path, b"{\"b\":1}\n").unwrap();
        let was = inode(&std::fs::metadata(&old).unwrap()).unwrap();
        let files = std::slice::from_ref(&path);
        let plan_at = |pos: u64, ino: u64, head: Option<u64>| {
            let p = plan(files, None, store_of(pos, ino, head)).unwrap();
            (p[0].from, p[0].stored, p[0].tail.clone())
        };
        let read = Some(fingerprint(b"{\"a\":1}\n", 8));
        let found = Some((std::fs::canonicalize(&old).unwrap(), was));
        assert_eq!(plan_at(8, was, read), (0, 8, found.clone()));
        // first bytes stored and not the old file's: not it; none stored: the inode decides
        assert_eq!(
            plan_at(8, was, Some(fingerprint(b"{\"x\":1}\n", 8))).2,
            None
        );
        assert_eq!(plan_at(8, was, None).2, found);
        // shorter than the position, or no file of that inode beside it: nothing to finish
        assert_eq!(plan_at(99, was, None).2, None);
        assert_eq!(plan_at(8, was + 1_000_000, None).2, None);
        // with a rest to read, even an empty new file is not done
        std::fs::write(&path, b"").unwrap();
        let mut p = plan(files, None, store_of(8, was, None)).unwrap();
        skip_done(&mut p, false);
        assert!(p[0].tail.is_some() && !p[0].done);
        // a file of that inode not named after the input is not taken for it
        std::fs::rename(&old, dir.path().join("other.jsonl.1")).unwrap();
        assert_eq!(plan_at(8, was, read).2, None);
        std::fs::rename(dir.path().join("other.jsonl.1"), &old).unwrap();
        std::fs::write(&path, b"{\"b\":1}\n").unwrap();

        // the reader takes the old file's rest in the file's turn (after the files before
        // it), commits the new file's start, then reads it
        let first = dir.path().join("first.jsonl");
        std::fs::write(&first, b"{}\n").unwrap();
        let (mut r, mut rx) = reader(None);
        let now = inode(&std::fs::metadata(&path).unwrap());
        r.planned = vec![None, now];
        r.tails = vec![None, Some((old.clone(), 8, was))];
        let todo = vec![(0, first.clone(), 0), (1, path.clone(), 0)];
        assert!(r.read(todo, None, &mut None).is_ok());
        let first_ino = inode(&std::fs::metadata(&first).unwrap());
        assert_eq!(
            batches(&mut rx),
            vec![
                (0, 1, 3, first_ino, true),
                (1, 2, 24, Some(was), false),
                (1, 0, 0, now, false),
                (1, 1, 8, now, true)
            ]
        );
        // the old file is not the planned one any more (rotated again): its rest is not
        // read, the new file's start is committed all the same
        let (mut r, mut rx) = reader(None);
        r.planned = vec![now];
        r.tails = vec![Some((old.clone(), 8, was + 1))];
        assert!(r.read(vec![(0, path.clone(), 0)], None, &mut None).is_ok());
        assert_eq!(
            batches(&mut rx),
            vec![(0, 0, 0, now, false), (0, 1, 8, now, true)]
        );
    }

    #[cfg(unix)]
    #[test]
    fn stored_first_bytes_tell_a_file_that_took_the_inode_or_was_written_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, b"{\"a\":1}\n{\"b\":2}\n").unwrap();
        let ino = inode(&std::fs::metadata(&path).unwrap()).unwrap();
        let files = std::slice::from_ref(&path);
        let stored = |pos: u64, head: Option<u64>| store_of(pos, ino, head);
        let from = |pos, head| plan(files, None, stored(pos, head)).unwrap()[0].from;
        // the bytes read to position 8 (the first line) are the file's: read on from there
        assert_eq!(from(8, Some(fingerprint(b"{\"a\":1}\n", 8))), 8);
        // a file of the same inode and at least as long, whose first bytes are others
        // (replaced, the number reused; or written over in place): from its start
        assert_eq!(from(8, Some(fingerprint(b"{\"z\":9}\n", 8))), 0);
        // none stored (a store from before): the inode alone decides
        assert_eq!(from(8, None), 8);
        // the fingerprint covers only the bytes up to the position: what was appended
        // after it does not change it
        assert_eq!(
            fingerprint(b"{\"a\":1}\n", 8),
            fingerprint(b"{\"a\":1}\n{\"b\":2}\n", 8)
        );
        // and past the first HEAD bytes, those alone
        let long = vec![b'x'; HEAD + 10];
        assert_eq!(
            fingerprint(&long, HEAD as u64 + 3),
            fingerprint(&long[..HEAD], 1 << 40)
        );
        assert!(fingerprint(&long, 1 << 40) < 1 << 62);
    }

    /// A store holding position `pos` for a file, its inode `ino` and the fingerprint `head`
    /// of its first bytes, and nothing else.
    fn store_of(
        pos: u64,
        ino: u64,
        head: Option<u64>,
    ) -> impl FnMut(&str) -> Result<Option<u64>, String> {
        move |k: &str| {
            Ok(match k.rsplit_once('#') {
                Some((_, "inode")) => Some(ino),
                Some((_, "head")) => head,
                Some(_) => None,
                None => Some(pos),
            })
        }
    }

    /// `dir/a.jsonl.gz` holding `bytes`, and its compressed size.
    fn gz_file(dir: &Path, bytes: &[u8]) -> (PathBuf, u64) {
        use std::io::Write;
        let path = dir.join("a.jsonl.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        (path, size)
    }

    #[cfg(unix)]
    #[test]
    fn a_gz_file_is_complete_when_its_stored_compressed_size_is_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let (path, size) = gz_file(dir.path(), b"{}\n{}\n");
        let ino = inode(&std::fs::metadata(&path).unwrap()).unwrap();
        let files = std::slice::from_ref(&path);
        let plan_with = |gz_size: Option<u64>, was: Option<u64>, head: Option<u64>| {
            let mut p = plan(files, Some(dir.path()), |k: &str| {
                Ok(if k.ends_with("#gz-size") {
                    gz_size
                } else if k.ends_with("#inode") {
                    was
                } else if k.ends_with("#head") {
                    head
                } else {
                    Some(6)
                })
            })
            .unwrap();
            // the newest, and in a followed directory: a .gz file is not followed
            skip_done(&mut p, true);
            (p[0].complete, p[0].done)
        };
        let head = fingerprint(b"{}\n{}\n", 6);
        assert_eq!(plan_with(Some(size), Some(ino), Some(head)), (true, true));
        // a store from before first bytes were kept: the inode and size
        assert_eq!(plan_with(Some(size), Some(ino), None), (true, true));
        // the batch that ended it carried no inode (one batch): the size alone
        assert_eq!(plan_with(Some(size), None, None), (true, true));
        // not read to its end, another size, another file: read (to its position) again
        assert_eq!(plan_with(None, Some(ino), Some(head)), (false, false));
        assert_eq!(
            plan_with(Some(size + 1), Some(ino), Some(head)),
            (false, false)
        );
        assert_eq!(
            plan_with(Some(size), Some(ino + 1), Some(head)),
            (false, false)
        );
        // the same inode and size, other first bytes: another file
        let other = fingerprint(b"[]\n{}\n", 6);
        assert_eq!(
            plan_with(Some(size), Some(ino), Some(other)),
            (false, false)
        );
    }

    #[test]
    fn the_batch_that_ends_a_gz_file_carries_its_compressed_size() {
        let dir = tempfile::tempdir().unwrap();
        let (path, size) = gz_file(dir.path(), b"{}\n{}\n{}");
        let (r, mut rx) = reader(Some(dir.path()));
        let mut o = r.open(0, &path, 0).ok().flatten().unwrap();
        assert!(r.drain(&mut o, true, true).is_ok());
        drop(r);
        let mut got = Vec::new();
        while let Ok(Ok(Message::Batch(b))) = rx.try_recv() {
            got.push((b.lines, b.position, b.end, b.gz_done));
        }
        assert_eq!(got, vec![(3, 8, true, Some(size))]);
    }

    #[test]
    fn a_directory_gives_its_json_lines_files_by_name_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "b.jsonl",
            "a.jsonl.gz",
            ".a.jsonl",
            "c.json",
            "c.jsonl.tmp",
            "a.jsonl",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        std::fs::create_dir(dir.path().join("d.jsonl")).unwrap();
        let names: Vec<String> = listed(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.jsonl", "a.jsonl.gz", "b.jsonl"]);
        let e = listed(&dir.path().join("none")).unwrap_err();
        assert!(e.starts_with("--input-dir ") && e.contains("none"), "{e}");
    }

    #[test]
    fn a_watch_takes_the_next_followed_name_at_once_and_other_files_once_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name);
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        std::fs::write(at("b.jsonl"), b"{}\n").unwrap();
        let planned = plan(&[at("b.jsonl")], Some(dir.path()), |_| Ok(None)).unwrap();
        let mut w = Watch::new(dir.path().to_path_buf(), &planned);
        let t0 = Instant::now();
        let at_ms = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(w.look(at_ms(0)).is_empty());
        // a late earlier name being written, a .gz after the newest, the next name
        std::fs::write(at("a.jsonl"), b"{}\n{").unwrap();
        std::fs::write(at("c.jsonl.gz"), b"\x1f").unwrap();
        std::fs::write(at("d.jsonl"), b"").unwrap();
        assert_eq!(names(w.look(at_ms(0))), ["d.jsonl"]);
        // looking again at once (as the reader does after a find) tells nothing yet
        assert!(w.look(at_ms(10)).is_empty());
        // a.jsonl grows between looks: it waits; the .gz did not change: taken
        std::fs::write(at("a.jsonl"), b"{}\n{}\n").unwrap();
        assert_eq!(names(w.look(at_ms(200))), ["c.jsonl.gz"]);
        assert_eq!(names(w.look(at_ms(400))), ["a.jsonl"]);
        // taken once; a file gone before it settled is forgotten
        std::fs::write(at("0.jsonl"), b"").unwrap();
        assert!(w.look(at_ms(600)).is_empty());
        std::fs::remove_file(at("0.jsonl")).unwrap();
        assert!(w.look(at_ms(800)).is_empty());
        assert!(w.waiting.is_empty());
        assert!(w.look(at_ms(1000)).is_empty());
    }

    #[test]
    fn a_file_is_quiet_once_two_looks_apart_find_it_unchanged_or_gone() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let s = |len: u64| Some((len, None));
        let mut q = Quiet::new(s(10), t0);
        assert!(!q.after(s(10), at(50)), "too soon to tell");
        assert!(!q.after(s(12), at(200)), "it grew");
        assert!(!q.after(s(12), at(300)), "too soon after the last change");
        assert!(q.after(s(12), at(400)));
        assert!(
            Quiet::new(s(1), t0).after(None, t0),
            "gone: nothing more to wait for"
        );
    }

    #[test]
    fn files_read_to_their_end_are_done_but_the_newest_when_followed() {
        let p = |name: &str, from: u64, len: Option<u64>| Planned {
            path: name.into(),
            source: name.into(),
            identity: name.into(),
            head: name.into(),
            from,
            stored: from,
            inode: None,
            len,
            done: false,
            complete: false,
            tail: None,
        };
        let mut planned = vec![
            p("a.jsonl", 10, Some(10)),
            p("b.jsonl", 5, Some(10)),
            p("c.jsonl.gz", 10, None),
            p("d.jsonl", 10, Some(10)),
        ];
        skip_done(&mut planned, true);
        let done: Vec<bool> = planned.iter().map(|p| p.done).collect();
        assert_eq!(done, [true, false, false, false]);
        skip_done(&mut planned, false);
        let done: Vec<bool> = planned.iter().map(|p| p.done).collect();
        assert_eq!(done, [true, false, false, true]);
    }

    #[test]
    fn a_gzip_file_is_read_in_decompressed_positions_and_checked_when_opened() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl.gz");
        // two gzip members one after the other are one stream
        let mut bytes = Vec::new();
        for part in [&b"{\"a\":1}\n"[..], &b"\n{\"b\":2}\n"[..]] {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(part).unwrap();
            bytes.extend(gz.finish().unwrap());
        }
        std::fs::write(&path, &bytes).unwrap();
        let mut r = FileLines::open(&path, 0).unwrap();
        assert_eq!(r.next_line(true).unwrap().unwrap().end, 8);
        let l = r.next_line(true).unwrap().unwrap();
        assert_eq!((l.bytes.as_slice(), l.end), (&b"{\"b\":2}"[..], 17));
        assert_eq!(r.next_line(true).unwrap(), None);
        let mut r = FileLines::open(&path, 9).unwrap();
        assert_eq!(r.next_line(true).unwrap().unwrap().end, 17);
        // no size is known to check at start-up; opening past the end says so
        let planned = plan(std::slice::from_ref(&path), None, |_| Ok(Some(18))).unwrap();
        assert_eq!(planned[0].len, None);
        let e = FileLines::open(&path, 18).err().unwrap().to_string();
        assert!(e.contains("position 18") && e.contains("(17)"), "{e}");
    }

    fn reader(watched: Option<&Path>) -> (Reader, mpsc::Receiver<Result<Message, String>>) {
        let (tx, rx) = mpsc::channel(16);
        let pii = Pii::new(b"k");
        let r = Reader {
            planned: Vec::new(),
            tails: Vec::new(),
            watched: watched.map(Path::to_path_buf),
            decoder: Decoder::new(pii.clone()),
            pii,
            batch: 10,
            max_future_s: 60,
            tx,
        };
        (r, rx)
    }

    #[test]
    fn a_watched_file_gone_before_it_is_opened_is_passed_over_and_the_next_read() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("a.jsonl");
        let here = dir.path().join("b.jsonl");
        std::fs::write(&here, b"{}\n").unwrap();
        let (r, mut rx) = reader(Some(dir.path()));
        let todo = vec![(0, gone.clone(), 5), (1, here.clone(), 0)];
        assert!(r.read(todo, None, &mut None).is_ok());
        drop(r);
        let mut got = Vec::new();
        while let Some(m) = rx.blocking_recv() {
            match m.unwrap() {
                Message::Batch(b) => got.push((b.file, b.lines, b.position, b.end)),
                Message::Found(p) => panic!("found {}", p.path.display()),
            }
        }
        // the gone file ends where it was, nothing taken; the next is read
        assert_eq!(got, vec![(0, 0, 5, true), (1, 1, 3, true)]);
    }

    #[test]
    fn a_given_file_gone_is_an_error_naming_it_once_and_its_flag() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("a.jsonl");
        let (r, mut rx) = reader(None);
        assert!(r.read(vec![(0, gone.clone(), 0)], None, &mut None).is_err());
        drop(r);
        let e = rx.blocking_recv().unwrap().err().unwrap();
        assert!(e.starts_with("--input "), "{e}");
        assert_eq!(e.matches("a.jsonl").count(), 1, "{e}");
        // a file the directory holds that cannot be read names the directory and the file
        let (r, mut rx) = reader(Some(dir.path()));
        let _ = r.fail(&gone, "denied");
        drop(r);
        let e = rx.blocking_recv().unwrap().err().unwrap();
        assert_eq!(
            e,
            format!(
                "--input-dir {}: {}: denied",
                dir.path().display(),
                gone.display()
            )
        );
    }

    /// The batches handed over so far: (file, lines, position, inode, end).
    fn batches(
        rx: &mut mpsc::Receiver<Result<Message, String>>,
    ) -> Vec<(usize, usize, u64, Option<u64>, bool)> {
        let mut got = Vec::new();
        while let Ok(m) = rx.try_recv() {
            if let Ok(Message::Batch(b)) = m {
                got.push((b.file, b.lines, b.position, b.inode, b.end));
            }
        }
        got
    }

    #[cfg(unix)]
    #[test]
    fn a_followed_file_renamed_away_is_read_on_until_quiet_then_the_new_one_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.jsonl");
        std::fs::write(&path, b"{}\n").unwrap();
        let ino = |p: &Path| inode(&std::fs::metadata(p).unwrap());
        let first = ino(&path);
        let (r, mut rx) = reader(None);
        let mut o = r.open(0, &path, 0).ok().flatten().unwrap();
        assert!(r.follow(&mut o).is_ok());
        assert_eq!(batches(&mut rx), vec![(0, 1, 3, first, false)]);
        // logrotate: renamed away, a last half line still written to it, a new file created
        let old = dir.path().join("app.jsonl.1");
        std::fs::rename(&path, &old).unwrap();
        use std::io::Write;
        let mut w = std::fs::OpenOptions::new().append(true).open(&old).unwrap();
        w.write_all(b"{\"x\"").unwrap();
        std::fs::write(&path, b"{}\n{}\n").unwrap();
        let second = ino(&path);
        assert_ne!(first, second);
        // the first look starts the wait for the old file's writer to stop
        assert!(r.follow(&mut o).is_ok());
        assert_eq!(batches(&mut rx), vec![]);
        w.write_all(b":1}").unwrap();
        std::thread::sleep(FOLLOW_EVERY + Duration::from_millis(50));
        // changed since: it waits again
        assert!(r.follow(&mut o).is_ok());
        assert_eq!(batches(&mut rx), vec![]);
        std::thread::sleep(FOLLOW_EVERY + Duration::from_millis(50));
        // unchanged: its last line (no newline) is taken, not as the end of the source,
        // and the new file is followed from its start
        assert!(r.follow(&mut o).is_ok());
        // the new start is committed at once, before any whole line of the new file
        assert_eq!(
            batches(&mut rx),
            vec![(0, 1, 10, first, false), (0, 0, 0, second, false)]
        );
        assert!(r.follow(&mut o).is_ok());
        assert_eq!(batches(&mut rx), vec![(0, 2, 6, second, false)]);
    }

    #[cfg(unix)]
    #[test]
    fn a_followed_file_cut_in_place_is_read_again_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.jsonl");
        std::fs::write(&path, b"{}\n{}\n{}\n").unwrap();
        let ino = inode(&std::fs::metadata(&path).unwrap());
        let (r, mut rx) = reader(None);
        let mut o = r.open(0, &path, 0).ok().flatten().unwrap();
        assert!(r.follow(&mut o).is_ok());
        assert_eq!(batches(&mut rx), vec![(0, 3, 9, ino, false)]);
        // copytruncate: the content copied away, the file cut, the writer goes on
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        use std::io::Write;
        let mut w = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        w.write_all(b"{\"n\":1}\n").unwrap();
        assert!(r.follow(&mut o).is_ok());
        assert!(r.follow(&mut o).is_ok());
        assert_eq!(
            batches(&mut rx),
            vec![(0, 0, 0, ino, false), (0, 1, 8, ino, false)]
        );
        // a file that only grows is read on
        w.write_all(b"{}\n").unwrap();
        assert!(r.follow(&mut o).is_ok());
        assert_eq!(batches(&mut rx), vec![(0, 1, 11, ino, false)]);
    }

    #[cfg(unix)]
    #[test]
    fn a_followed_file_written_over_past_its_position_is_read_again_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.jsonl");
        std::fs::write(&path, b"{\"n\":1}\n{\"n\":2}\n").unwrap();
        let (r, mut rx) = reader(None);
        let mut o = r.open(0, &path, 0).ok().flatten().unwrap();
        assert!(r.follow(&mut o).is_ok());
        let mut heads = Vec::new();
        while let Ok(Ok(Message::Batch(b))) = rx.try_recv() {
            heads.push((b.position, b.head, b.items.len()));
        }
        // each batch carries the fingerprint of the bytes up to its position
        let first = fingerprint(b"{\"n\":1}\n{\"n\":2}\n", 16);
        assert_eq!(heads, vec![(16, Some(first), 2)]);
        // cut and written again, longer, between two looks: what was at the old position
        // (the middle of a line) is not read; the file is read from its start
        std::fs::write(&path, b"{\"m\":10}\n{\"m\":20}\n{\"m\":30}\n").unwrap();
        assert!(r.follow(&mut o).is_ok());
        assert!(r.follow(&mut o).is_ok());
        let mut got = Vec::new();
        while let Ok(Ok(Message::Batch(b))) = rx.try_recv() {
            got.push((b.position, b.lines));
        }
        assert_eq!(got, vec![(0, 0), (27, 3)]);
        // appended to: read on, not taken for another rewrite
        append_to(&path, b"{\"m\":40}\n");
        assert!(r.follow(&mut o).is_ok());
        assert_eq!(batches(&mut rx), vec![(0, 1, 36, o.inode, false)]);
    }

    fn append_to(path: &Path, bytes: &[u8]) {
        use std::io::Write;
        let mut w = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        w.write_all(bytes).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_file_rotated_between_its_plan_and_its_opening_is_read_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.jsonl");
        std::fs::write(&path, b"{}\n{}\n").unwrap();
        let ino = inode(&std::fs::metadata(&path).unwrap());
        let (mut r, mut rx) = reader(None);
        // planned as another inode, at position 3: read from 0
        r.planned = vec![ino.map(|i| i + 1)];
        let mut o = r.open(0, &path, 3).ok().flatten().unwrap();
        assert!(r.drain(&mut o, true, true).is_ok());
        // planned as this inode: from its position
        r.planned = vec![ino];
        let mut o = r.open(0, &path, 3).ok().flatten().unwrap();
        assert!(r.drain(&mut o, true, true).is_ok());
        assert_eq!(
            batches(&mut rx),
            vec![(0, 2, 6, ino, true), (0, 1, 6, ino, true)]
        );
    }
}
