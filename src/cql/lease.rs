//! The writer lease: one process writes a keyspace.
//!
//! Two processes writing one keyspace would give the same log seqs to different events and
//! overwrite each other's commit marker and checkpoints: the log would be corrupt, in
//! silence. So a process takes the row `leases['writer']` before it writes anything, with a
//! lightweight transaction (`INSERT ... IF NOT EXISTS USING TTL lease-s`), and renews it every
//! fifth of the TTL (`UPDATE ... USING TTL lease-s ... IF owner = <itself>`). Its owner value
//! is unique to the run: its place (host name, boot id, network namespace), listen address,
//! pid and start time. A graceful stop deletes the row once the attempts under way are
//! answered.
//!
//! **Writes stop in time.** A renewal sent at `t` keeps the row alive until at least
//! `t + lease-s` (less a second: TTLs count whole seconds), and this process writes only until
//! `t + 0.6 × lease-s` ([`VALID`]): every write attempt checks that first ([`Lease::begin`]
//! gives the time left) and stops waiting for its answer at that instant, so no attempt is
//! sent, or retried by the driver, later. Another process can take the row only after it
//! expired. The two never write at once unless a request already sent stays in the network
//! (or a node's queue) for longer than the remaining `0.4 × lease-s - 1 s` (3 s by default),
//! the process stalls that long between the check and the send, or the database nodes'
//! clocks disagree by as much (the TTL is stamped by one node and judged by others). The
//! data writes carry no fencing token.
//!
//! **Taking it again.** When the node does not answer for longer than that (an outage), this
//! process stops writing. When the node answers again and the row has expired, the process
//! takes it again, but writes only after it checked that nobody else held it meanwhile: every
//! process that takes the lease first records its owner value in the row
//! `leases['last-writer']` (never expiring, written with a lightweight transaction and read
//! with SERIAL consistency), so if that row still names this run, no other process can have
//! written anything. Otherwise this process's state is stale and it is fenced: it never
//! writes again, and the service exits ([`exit_when_fenced`]) so that its supervisor starts
//! it afresh, replaying the log the other process wrote.
//!
//! **A crashed run in the same place.** Whoever may hold the lease also holds a host-local
//! lock: an abstract Unix socket named after the keyspace and the cluster's name, which the
//! kernel releases when the process dies; abstract sockets are per network namespace, so the
//! place an owner names is host name, boot id and network namespace. A process that gets the
//! lock therefore knows that no live process of its place may hold the lease, so a row owned
//! by a run of its place is a dead run's (a crash): it takes it over, and writes after the
//! margin (the crashed run's last requests), instead of waiting for the TTL. Host names must
//! be unique among the hosts that write a keyspace.

use super::{prepare, Inner};
use crate::store::StoreError;
use scylla::client::session::Session;
use scylla::response::query_result::QueryResult;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

/// The lease's row.
const WRITER: &str = "writer";
/// The row naming the run that took the lease last.
const LAST: &str = "last-writer";
/// The share of the TTL after a renewal is sent during which this process writes.
pub const VALID: f64 = 0.6;
/// The share of the TTL between two renewals.
pub const RENEW: f64 = 0.2;
/// The exit status of a process that lost its lease to another.
pub const EXIT_FENCED: i32 = 3;

static EXIT_WHEN_FENCED: AtomicBool = AtomicBool::new(false);

/// Makes a fenced store end the process (with [`EXIT_FENCED`]) instead of only refusing to
/// write: for the service and cluster processes, whose state is stale once another process
/// wrote the log. Tests that open stores in their own process leave it off.
pub fn exit_when_fenced() {
    EXIT_WHEN_FENCED.store(true, Ordering::SeqCst);
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many
    // bytes and we read up to the first NUL within it
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).replace(' ', "_");
    if name.is_empty() {
        "unknown-host".into()
    } else {
        name
    }
}

/// Where this process runs, as far as the host-local lock reaches: the host name, the boot
/// (a restarted or cloned machine is another) and the network namespace (abstract Unix
/// sockets are per namespace: two containers are two places). `/?` when unknown: then no
/// row is ever taken over.
fn locality() -> String {
    use std::os::unix::fs::MetadataExt;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().chars().take(8).collect::<String>())
        .unwrap_or_default();
    let netns = std::fs::metadata("/proc/self/ns/net").map_or(0, |m| m.ino());
    if boot.is_empty() || netns == 0 {
        return format!("{}/?", host_name());
    }
    format!("{}/{boot}/{netns}", host_name())
}

/// Whether a row owned by `owner` may be taken over (after the margin, not the TTL) by a
/// process at `mine` that holds the host-local lock: a run of the same place, which the
/// lock proves gone.
fn same_place(mine: &str, owner: &str) -> bool {
    !mine.ends_with("/?") && host_of(owner) == mine
}

/// The owner value of this run: place, `label` (the listen address), pid and start time.
fn owner_value(host: &str, label: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{host} {label} run {}.{nanos}.{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// What other processes are shown of this run beside its owner value: pid and start.
fn run_info() -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    format!(
        "pid {}, since {}",
        std::process::id(),
        omnistream_schemas::EventTime::from_unix_ms(now_ms)
    )
}

/// The place an owner value names (its first word).
fn host_of(owner: &str) -> &str {
    owner.split(' ').next().unwrap_or("")
}

/// Takes the host-local lock of keyspace `ks` of the cluster named `cluster`: the listener
/// while held, none when another process in this network namespace (or another store in
/// this one) holds it. Named after what the lease guards, not after how the nodes are
/// reached (two spellings of the contact points are one keyspace).
fn local_lock(ks: &str, cluster: &str) -> std::io::Result<Option<UnixListener>> {
    use std::os::linux::net::SocketAddrExt;
    let tag = crate::fluvio::mapping::stable_hash(cluster.as_bytes());
    let name = format!("omnistream-writer:{ks}:{tag:016x}");
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    match UnixListener::bind_addr(&addr) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Ok(None),
        Err(e) => Err(e),
    }
}

/// What this process knows of its lease, on its own clock (pure: times are given).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Term {
    /// Writes are allowed before this instant (none: never held yet).
    until: Option<Instant>,
    /// The last renewal that the node applied was sent then.
    renewed: Option<Instant>,
    /// Nothing is written until the `last-writer` row is checked (just taken, or taken again
    /// after it lapsed).
    verify: bool,
    /// Why this process writes nothing more (fenced, or released).
    ended: Option<String>,
}

impl Term {
    /// The node applied an acquisition or renewal sent at `sent`.
    pub fn renewed(&mut self, sent: Instant, ttl: Duration) {
        if self.ended.is_none() {
            self.until = Some(sent + ttl.mul_f64(VALID));
            self.renewed = Some(sent);
        }
    }

    /// The row expired, or was just taken: writes wait for the check of `last-writer`.
    pub fn check_first(&mut self) {
        self.verify = true;
    }

    /// `last-writer` names this run: writes may go on.
    pub fn verified(&mut self) {
        self.verify = false;
    }

    /// This process must write nothing more.
    pub fn end(&mut self, why: String) {
        if self.ended.is_none() {
            self.ended = Some(why);
        }
    }

    /// Whether a write may be sent at `now`, and for how long; the reason when not.
    pub fn writable(&self, now: Instant, ttl: Duration) -> Result<Duration, String> {
        if let Some(why) = &self.ended {
            return Err(why.clone());
        }
        if self.verify {
            return Err(
                "the writer lease was taken again after it lapsed; writing waits until \
                        the keyspace's last writer is checked"
                    .into(),
            );
        }
        match (self.until, self.renewed) {
            (Some(until), _) if now < until => Ok(until - now),
            (Some(_), Some(at)) => Err(format!(
                "the writer lease was last renewed {:.1} s ago (the node does not answer in time); \
                 nothing is written until it is renewed (lease-s = {})",
                now.saturating_duration_since(at).as_secs_f64(),
                ttl.as_secs()
            )),
            _ => Err("the writer lease is not held".into()),
        }
    }

    /// Whether the lease has ended (fenced or released).
    pub fn is_ended(&self) -> bool {
        self.ended.is_some()
    }

    /// Whether writes wait for the check of `last-writer`.
    pub fn needs_verify(&self) -> bool {
        self.verify && self.ended.is_none()
    }
}

/// The answer to a conditional write.
#[derive(Debug, Clone, PartialEq)]
enum Lwt {
    Applied,
    /// Not applied: the row's owner as the node has it (none: no row).
    NotApplied {
        owner: Option<String>,
    },
}

/// Reads `[applied]` and the row's current `owner` from a conditional write's answer.
fn lwt(result: QueryResult) -> Result<Lwt, String> {
    let rows = result.into_rows_result().map_err(|e| e.to_string())?;
    let specs = rows.column_specs();
    let col = |name: &str| specs.get_by_name(name).map(|(i, _)| i);
    let (applied, owner) = (col("[applied]"), col("owner"));
    let row = rows
        .maybe_first_row::<scylla::value::Row>()
        .map_err(|e| e.to_string())?
        .ok_or("a conditional write answered no row")?;
    let value = |i: Option<usize>| i.and_then(|i| row.columns.get(i).cloned().flatten());
    let applied = value(applied)
        .and_then(|v| v.as_boolean())
        .ok_or("a conditional write answered without [applied]")?;
    Ok(if applied {
        Lwt::Applied
    } else {
        Lwt::NotApplied {
            owner: value(owner).and_then(|v| v.as_text().cloned()),
        }
    })
}

/// Why the `last-writer` check did not pass.
enum Check {
    /// Another run took the lease since: this one is stale.
    Stale(String),
    /// The check could not be made (the node); try again.
    Failed(String),
}

/// A write attempt under way ([`Lease::begin`]).
pub(super) struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `owner (info)` for messages, or the owner alone.
fn describe(owner: Option<String>, info: Option<String>) -> String {
    let owner = owner.unwrap_or_else(|| "?".into());
    match info {
        Some(info) => format!("{owner} ({info})"),
        None => owner,
    }
}

/// Who holds the writer lease of keyspace `ks` (at schema 4 or later) now, and the seconds
/// its row has left on the node; none when nobody does.
pub(super) async fn holder_of(
    s: &Session,
    ks: &str,
) -> Result<Option<(String, Option<i32>)>, String> {
    let r = s
        .query_unpaged(
            format!("{HOLDER} FROM {ks}.leases WHERE name = ?"),
            (WRITER,),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(holder_row(r)?
        .filter(|(owner, _, _)| owner.is_some())
        .map(|(owner, info, left)| (describe(owner, info), left)))
}

/// What is read of the writer's row: `owner`, `info` and the seconds it has left.
const HOLDER: &str = "SELECT owner, info, TTL(owner)";
type HolderRow = (Option<String>, Option<String>, Option<i32>);

/// The row of a [`HOLDER`] read, if there is one.
fn holder_row(r: QueryResult) -> Result<Option<HolderRow>, String> {
    r.into_rows_result()
        .map_err(|e| e.to_string())?
        .maybe_first_row::<HolderRow>()
        .map_err(|e| e.to_string())
}

/// The lease of one store: its statements, its owner and its [`Term`].
pub(super) struct Lease {
    keyspace: String,
    /// The cluster's name (`system.local`), for the host-local lock.
    cluster: String,
    /// This process's place ([`locality`]).
    host: String,
    owner: String,
    info: String,
    ttl: Duration,
    term: Mutex<Term>,
    /// The host-local lock, while this store may hold the lease.
    lock: Mutex<Option<UnixListener>>,
    /// Write attempts under way (a graceful release waits for them).
    inflight: std::sync::atomic::AtomicUsize,
    acquire: PreparedStatement,
    /// Renewal, and taking over a dead run's row: `IF owner = ?`.
    renew: PreparedStatement,
    release: PreparedStatement,
    holder: PreparedStatement,
    last_read: PreparedStatement,
    last_insert: PreparedStatement,
    last_update: PreparedStatement,
}

impl Lease {
    /// Prepares the lease's statements for this run, named by `label` (the listen address).
    pub async fn prepare(
        s: &Session,
        cfg: &crate::config::CqlConfig,
        label: &str,
    ) -> Result<Lease, StoreError> {
        let ks = cfg.keyspace.as_str();
        let ttl = cfg.lease_s.max(1);
        let host = locality();
        let cluster = s
            .query_unpaged("SELECT cluster_name FROM system.local", ())
            .await
            .ok()
            .and_then(|r| r.into_rows_result().ok())
            .and_then(|r| r.maybe_first_row::<(Option<String>,)>().ok().flatten())
            .and_then(|r| r.0)
            .unwrap_or_default();
        // conditional writes decide in their serial phase: SERIAL, so that processes that
        // prefer different datacenters still agree; a conditional write is never retried by
        // the driver (this module retries, knowing what an earlier attempt may have done)
        let lwt = async |table: &'static str, cql: String| {
            let mut p = prepare(s, ks, table, cql, Consistency::Quorum).await?;
            p.set_serial_consistency(Some(SerialConsistency::Serial));
            p.set_is_idempotent(false);
            Ok::<_, StoreError>(p)
        };
        let read = async |cql: String| {
            // SERIAL: sees every conditional write decided before it
            prepare(s, ks, "leases", cql, Consistency::Serial).await
        };
        Ok(Lease {
            acquire: lwt("leases", format!("INSERT INTO {ks}.leases (name, owner, info) VALUES (?, ?, ?) IF NOT EXISTS USING TTL {ttl}")).await?,
            renew: lwt("leases", format!("UPDATE {ks}.leases USING TTL {ttl} SET owner = ?, info = ? WHERE name = ? IF owner = ?")).await?,
            release: lwt("leases", format!("DELETE FROM {ks}.leases WHERE name = ? IF owner = ?")).await?,
            last_insert: lwt("leases", format!("INSERT INTO {ks}.leases (name, owner, info) VALUES (?, ?, ?) IF NOT EXISTS")).await?,
            last_update: lwt("leases", format!("UPDATE {ks}.leases SET owner = ?, info = ? WHERE name = ? IF owner = ?")).await?,
            holder: read(format!("{HOLDER} FROM {ks}.leases WHERE name = ?")).await?,
            last_read: read(format!("SELECT owner FROM {ks}.leases WHERE name = ?")).await?,
            keyspace: ks.to_string(),
            cluster,
            owner: owner_value(&host, label),
            host,
            info: run_info(),
            ttl: Duration::from_secs(u64::from(ttl)),
            term: Mutex::new(Term::default()),
            lock: Mutex::new(None),
            inflight: Default::default(),
        })
    }

    fn term(&self) -> std::sync::MutexGuard<'_, Term> {
        self.term
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The TTL (`lease-s`).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether a write may be sent now, and the time it has before writes stop; why not,
    /// naming the keyspace, otherwise.
    pub fn writable(&self) -> Result<Duration, String> {
        self.term()
            .writable(Instant::now(), self.ttl)
            .map_err(|why| format!("keyspace {}: {why}", self.keyspace))
    }

    /// A write attempt about to be sent: [`Lease::writable`], and the attempt counted until
    /// the guard is dropped, so that a release waits for it.
    pub fn begin(&self) -> Result<(Duration, InFlight<'_>), String> {
        // counted before the check: a release that ends the term and then sees no attempt
        // under way cannot miss one that passes the check
        self.inflight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(&self.inflight);
        Ok((self.writable()?, guard))
    }

    /// The margin: the part of the TTL after writes stop, less the second the TTL's whole
    /// seconds may cost.
    fn margin(&self) -> Duration {
        self.ttl
            .mul_f64(1.0 - VALID)
            .saturating_sub(Duration::from_secs(1))
    }

    async fn try_acquire(&self, s: &Session) -> Result<Lwt, String> {
        let r = s
            .execute_unpaged(&self.acquire, (WRITER, &self.owner, &self.info))
            .await
            .map_err(|e| e.to_string())?;
        lwt(r)
    }

    /// `UPDATE ... IF owner = <from>`: a renewal (`from` this run) or a takeover.
    async fn try_renew(&self, s: &Session, from: &str) -> Result<Lwt, String> {
        let r = s
            .execute_unpaged(&self.renew, (&self.owner, &self.info, WRITER, from))
            .await
            .map_err(|e| e.to_string())?;
        lwt(r)
    }

    /// Who holds the row, for messages: `owner (info)` as read now (a conditional write
    /// that was not applied answers only the columns of its condition), or as `seen` when
    /// it cannot be read; and the seconds the row has left.
    async fn holder(&self, s: &Session, seen: Option<String>) -> (String, Option<i32>) {
        let read = s.execute_unpaged(&self.holder, (WRITER,)).await.ok();
        let (owner, info, left) = read
            .and_then(|r| holder_row(r).ok().flatten())
            .unwrap_or((seen, None, None));
        (describe(owner, info), left)
    }

    async fn held(&self, s: &Session, seen: Option<String>) -> StoreError {
        let (owner, seconds_left) = self.holder(s, seen).await;
        StoreError::Held {
            keyspace: self.keyspace.clone(),
            owner,
            seconds_left,
        }
    }

    /// Takes the lease at start-up: free, or held by a dead run on this host (a crash).
    /// Held by another: [`StoreError::Held`].
    pub async fn acquire(&self, s: &Session) -> Result<(), StoreError> {
        let err = |why: String| StoreError::Unreachable {
            keyspace: self.keyspace.clone(),
            why: format!("taking the writer lease: {why}"),
        };
        let lock = local_lock(&self.keyspace, &self.cluster).map_err(|e| StoreError::Database {
            keyspace: self.keyspace.clone(),
            why: format!("the host-local lock of the writer lease: {e}"),
        })?;
        let Some(lock) = lock else {
            // another process on this host holds the lease, or is taking it
            let (owner, seconds_left) = self.holder(s, None).await;
            let owner = if owner == "?" {
                "a process on this host that holds the keyspace's host-local lock".into()
            } else {
                owner
            };
            return Err(StoreError::Held {
                keyspace: self.keyspace.clone(),
                owner,
                seconds_left,
            });
        };
        *self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(lock);
        let mut sent = Instant::now();
        let mut taken_over = false;
        match self.try_acquire(s).await.map_err(err)? {
            Lwt::Applied => {}
            // an earlier attempt of this call was applied
            Lwt::NotApplied { owner: Some(o) } if o == self.owner => {}
            // a run of this place, which cannot be alive (this process has its lock)
            Lwt::NotApplied { owner: Some(o) } if same_place(&self.host, &o) => {
                sent = Instant::now();
                match self.try_renew(s, &o).await.map_err(err)? {
                    Lwt::Applied => {
                        tracing::info!(keyspace = %self.keyspace, previous = %o, "took over the writer lease a crashed run on this host left");
                        taken_over = true;
                    }
                    Lwt::NotApplied { owner } => return Err(self.held(s, owner).await),
                }
            }
            Lwt::NotApplied { owner } => return Err(self.held(s, owner).await),
        }
        {
            let mut t = self.term();
            t.renewed(sent, self.ttl);
            t.check_first();
        }
        if taken_over {
            // requests the crashed run sent may still sit in a node's queue: they get the
            // margin an expiry would have given them
            let wait = self.margin();
            tracing::info!(keyspace = %self.keyspace, wait_ms = wait.as_millis() as u64, "waiting for the crashed run's last requests before writing");
            tokio::time::sleep(wait).await;
            let again = Instant::now();
            match self.try_renew(s, &self.owner).await.map_err(err)? {
                Lwt::Applied => self.term().renewed(again, self.ttl),
                Lwt::NotApplied { owner } => return Err(self.held(s, owner).await),
            }
        }
        // recorded before anything is written, so a run that lapses can tell if another
        // took the lease meanwhile; a failure here drops the store, which releases the row
        let budget = self.ttl.mul_f64(VALID - RENEW);
        match within(budget, async { Ok(self.claim_last(s, false).await) }).await {
            Ok(Ok(())) => self.term().verified(),
            Ok(Err(Check::Stale(why) | Check::Failed(why))) | Err(why) => return Err(err(why)),
        }
        // too slow to have any time left: start-up tries again (store-wait-s)
        self.writable().map(drop).map_err(err)
    }

    /// Records this run in `last-writer`; with `retake`, only when it still names this run
    /// (taken again after a lapse), stale otherwise.
    async fn claim_last(&self, s: &Session, retake: bool) -> Result<(), Check> {
        let failed = |e: String| Check::Failed(format!("the last-writer row: {e}"));
        let prev = s
            .execute_unpaged(&self.last_read, (LAST,))
            .await
            .map_err(|e| failed(e.to_string()))?
            .into_rows_result()
            .map_err(|e| failed(e.to_string()))?
            .maybe_first_row::<(Option<String>,)>()
            .map_err(|e| failed(e.to_string()))?
            .and_then(|r| r.0);
        if prev.as_deref() == Some(self.owner.as_str()) {
            return Ok(());
        }
        let stale = |other: Option<String>| {
            Check::Stale(format!(
                "another process took the writer lease of keyspace {} while this one's had \
                 lapsed ({}): this process's state is stale",
                self.keyspace,
                other.as_deref().unwrap_or("?")
            ))
        };
        if retake {
            return Err(stale(prev));
        }
        let r = match &prev {
            None => {
                s.execute_unpaged(&self.last_insert, (LAST, &self.owner, &self.info))
                    .await
            }
            Some(p) => {
                s.execute_unpaged(&self.last_update, (&self.owner, &self.info, LAST, p))
                    .await
            }
        };
        match lwt(r.map_err(|e| failed(e.to_string()))?).map_err(failed)? {
            Lwt::Applied => Ok(()),
            Lwt::NotApplied { owner } if owner.as_deref() == Some(self.owner.as_str()) => Ok(()),
            Lwt::NotApplied { owner } => Err(failed(format!(
                "changed to {} while this process was taking the lease",
                owner.as_deref().unwrap_or("nothing")
            ))),
        }
    }

    /// Ends the lease for good and logs why; exits the process when asked to.
    fn fence(&self, why: String) {
        tracing::error!(keyspace = %self.keyspace, owner = %self.owner, "{why}: this process writes nothing more");
        self.term().end(why);
        if EXIT_WHEN_FENCED.load(Ordering::SeqCst) {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "omnistream: lost the writer lease of keyspace {}; exiting (status {EXIT_FENCED})",
                self.keyspace
            );
            std::process::exit(EXIT_FENCED);
        }
    }

    /// [`Lease::fence`]: another process holds the row (`seen` as the node answered).
    async fn fence_held_by(&self, s: &Session, seen: Option<String>) {
        let (who, _) = self.holder(s, seen).await;
        self.fence(format!(
            "another process holds the writer lease of keyspace {}: {who}",
            self.keyspace
        ));
    }

    /// Releases the lease (a graceful stop): nothing is written after this.
    pub async fn release(&self, s: &Session) {
        let held = {
            let mut t = self.term();
            let held = !t.is_ended() && t.until.is_some();
            t.end("the store is closed (writer lease released)".into());
            held
        };
        if held {
            // attempts already sent finish first (bounded by the margin)
            let deadline = Instant::now() + self.margin();
            while self.inflight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let r = tokio::time::timeout(
                Duration::from_secs(2),
                s.execute_unpaged(&self.release, (WRITER, &self.owner)),
            )
            .await;
            match r {
                Ok(Ok(_)) => tracing::debug!(keyspace = %self.keyspace, "writer lease released"),
                Ok(Err(e)) => {
                    tracing::warn!(keyspace = %self.keyspace, error = %e, "could not release the writer lease; it expires by itself")
                }
                Err(_) => {
                    tracing::warn!(keyspace = %self.keyspace, "releasing the writer lease timed out; it expires by itself")
                }
            }
        }
        // after the row: a process on this host waiting for the lock finds it free
        *self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// One turn of [`keep`]: renew, or take the expired row again; then the check of
    /// `last-writer` when it is due. `Err`: the node did not answer (try again soon);
    /// `Ok(false)`: fenced, stop.
    async fn turn(&self, s: &Session, budget: Duration) -> Result<bool, String> {
        let sent = Instant::now();
        match within(budget, self.try_renew(s, &self.owner)).await? {
            Lwt::Applied => self.term().renewed(sent, self.ttl),
            Lwt::NotApplied { owner: None } => {
                // expired on the node: nothing is written from now until the check below
                {
                    let mut t = self.term();
                    if t.is_ended() {
                        return Ok(false);
                    }
                    t.check_first();
                }
                let sent = Instant::now();
                match within(budget, self.try_acquire(s)).await? {
                    Lwt::Applied if self.term().is_ended() => {
                        // released meanwhile (the store is closing): give the row back
                        let give_back = async {
                            s.execute_unpaged(&self.release, (WRITER, &self.owner))
                                .await
                                .map(drop)
                                .map_err(|e| e.to_string())
                        };
                        let _ = within(budget, give_back).await;
                        return Ok(false);
                    }
                    Lwt::Applied => {
                        tracing::warn!(keyspace = %self.keyspace, "the writer lease had expired; taken again, checking the last writer before writing");
                    }
                    Lwt::NotApplied { owner: Some(o) } if o == self.owner => {}
                    Lwt::NotApplied { owner } => {
                        self.fence_held_by(s, owner).await;
                        return Ok(false);
                    }
                }
                self.term().renewed(sent, self.ttl);
            }
            Lwt::NotApplied { owner } => {
                self.fence_held_by(s, owner).await;
                return Ok(false);
            }
        }
        if self.term().needs_verify() {
            match within(budget, async { Ok(self.claim_last(s, true).await) }).await? {
                Ok(()) => {
                    tracing::info!(keyspace = %self.keyspace, "no other process took the lease meanwhile: writing again");
                    self.term().verified();
                }
                Err(Check::Stale(why)) => {
                    self.fence(why);
                    return Ok(false);
                }
                Err(Check::Failed(why)) => return Err(why),
            }
        }
        Ok(true)
    }
}

/// `f`, or an error once `budget` has passed.
async fn within<T>(
    budget: Duration,
    f: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match tokio::time::timeout(budget, f).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", budget.as_millis())),
    }
}

/// Renews the lease while the store is open (`inner` alive), takes it again after it
/// lapsed, and checks the last writer before writing again; see the module documentation.
/// Renewals are scheduled from when the last one was sent, each given at most a period.
pub(super) async fn keep(inner: Weak<Inner>) {
    let period = match inner.upgrade() {
        Some(i) => i.lease.ttl().mul_f64(RENEW),
        None => return,
    };
    let mut failing = false;
    let mut next = tokio::time::Instant::now() + period;
    loop {
        tokio::time::sleep_until(next).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let lease = &inner.lease;
        if lease.term().is_ended() {
            return;
        }
        let started = tokio::time::Instant::now();
        // a renewal's answer is good for its validity counted from when it was sent, so it
        // may take until the last renewal's validity would end
        let budget = lease.ttl().mul_f64(VALID - RENEW);
        match lease.turn(&inner.session, budget).await {
            Ok(true) => {
                if failing {
                    tracing::info!(keyspace = %lease.keyspace, "writer lease renewed again");
                    failing = false;
                }
                next = started + period;
            }
            Ok(false) => return,
            Err(e) => {
                if !failing {
                    tracing::warn!(keyspace = %lease.keyspace, error = %e, "could not renew the writer lease; trying again");
                    failing = true;
                }
                // while the node does not answer, try again soon: the moment it does, the
                // lease is taken again (a refused connection fails at once)
                next = started + period.min(Duration::from_millis(500));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    /// A term renewed now, and now.
    fn held() -> (Instant, Term) {
        let t0 = Instant::now();
        let mut t = Term::default();
        t.renewed(t0, TTL);
        (t0, t)
    }

    #[test]
    fn a_new_term_writes_nothing_until_the_lease_is_taken() {
        let t = Term::default();
        let e = t.writable(Instant::now(), TTL).unwrap_err();
        assert!(e.contains("not held"), "{e}");
    }

    #[test]
    fn writes_stop_at_six_tenths_of_the_ttl_after_the_renewal_was_sent() {
        let (t0, mut t) = held();
        assert_eq!(
            t.writable(t0 + Duration::from_millis(5_000), TTL),
            Ok(Duration::from_millis(1_000)),
            "the time left bounds each write"
        );
        let e = t
            .writable(t0 + Duration::from_millis(6_000), TTL)
            .unwrap_err();
        assert!(e.contains("last renewed 6.0 s ago"), "{e}");
        assert!(e.contains("lease-s = 10"), "{e}");
        // a renewal sent later moves the end on
        t.renewed(t0 + Duration::from_secs(2), TTL);
        assert!(t.writable(t0 + Duration::from_millis(7_999), TTL).is_ok());
    }

    #[test]
    fn a_lease_taken_again_writes_only_after_the_last_writer_is_checked() {
        let (t0, mut t) = held();
        t.check_first();
        t.renewed(t0 + Duration::from_secs(30), TTL);
        assert!(t.needs_verify(), "a renewal does not stand for the check");
        let e = t.writable(t0 + Duration::from_secs(31), TTL).unwrap_err();
        assert!(e.contains("last writer is checked"), "{e}");
        t.verified();
        assert!(t.writable(t0 + Duration::from_secs(31), TTL).is_ok());
    }

    #[test]
    fn an_ended_lease_never_writes_again_even_when_renewed() {
        let (t0, mut t) = held();
        t.end("fenced by b".into());
        t.renewed(t0 + Duration::from_secs(1), TTL);
        t.end("released".into());
        assert_eq!(
            t.writable(t0 + Duration::from_secs(1), TTL),
            Err("fenced by b".into())
        );
        assert!(t.is_ended());
        t.check_first();
        assert!(!t.needs_verify());
    }

    #[test]
    fn owner_values_are_unique_per_run_and_name_their_host() {
        let here = locality();
        let (a, b) = (
            owner_value(&here, "127.0.0.1:8080"),
            owner_value(&here, "127.0.0.1:8080"),
        );
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("{here} 127.0.0.1:8080 run ")), "{a}");
        assert!(!here.contains(' '));
        // host name, boot and network namespace on Linux
        assert_eq!(here.split('/').count(), 3, "{here}");
        assert!(same_place(&here, &a));
        let other_ns = format!("{}/12345 x run 1.1.1", here.rsplit_once('/').unwrap().0);
        assert!(!same_place(&here, &other_ns), "another network namespace");
        let name_only = format!("{} x run 1.1.1", host_name());
        assert!(!same_place(&here, &name_only), "the host name alone");
        assert!(
            !same_place("web-1/?", "web-1/? x run 1.1.1"),
            "an unknown place"
        );
    }

    #[test]
    fn the_host_lock_is_held_once_and_free_again_when_dropped() {
        let ks = format!("lock_test_{}", std::process::id());
        let first = local_lock(&ks, "Test Cluster").unwrap();
        assert!(first.is_some());
        assert!(
            local_lock(&ks, "Test Cluster").unwrap().is_none(),
            "held once"
        );
        // another keyspace, or another cluster: another lock
        assert!(local_lock(&format!("{ks}_b"), "Test Cluster")
            .unwrap()
            .is_some());
        assert!(local_lock(&ks, "Other").unwrap().is_some());
        drop(first);
        assert!(
            local_lock(&ks, "Test Cluster").unwrap().is_some(),
            "free again"
        );
    }
}
