//! The writer lease: one process writes a keyspace.
//!
//! Two processes writing one keyspace would give the same log seqs to different events and
//! overwrite each other's commit marker: the log would be corrupt, in silence. So a process
//! takes the row `leases[name = 'writer']` before it writes anything, with a lightweight
//! transaction (`INSERT ... IF NOT EXISTS USING TTL lease-s`), and renews it every fifth of
//! the TTL (`UPDATE ... USING TTL lease-s ... IF owner = <itself>`).
//!
//! Safety rests on this process's own clock only: a renewal sent at `t` keeps the row alive
//! on the node until at least `t + lease-s` (less a second: CQL counts TTLs in whole seconds),
//! and this process writes only until `t + 0.7 × lease-s` ([`VALID`]), checked before every
//! request it sends ([`Lease::writable`]). Another process can take the row only after it
//! expired, so the two never write at the same time unless a request of the first stays in
//! the network for longer than the remaining `0.3 × lease-s` (a margin, not a proof).
//!
//! When the node does not answer for longer than that (an outage), this process stops
//! writing. When it can renew again and finds the row expired and free, it takes it again,
//! but writes only after checking that the log's commit marker is still where this process
//! left it (or where its last, failed, commit would have put it): otherwise another process
//! wrote meanwhile, this one's state is stale, and it is fenced. Fenced (the row held by
//! another process), a process never writes again; the service exits ([`exit_when_fenced`])
//! so that its supervisor starts it afresh, replaying the log the other process wrote.
//!
//! The owner is the host name and the listen address: two processes on one host cannot
//! listen on the same address, so a process that finds the row held by its own name is the
//! same service started again after a crash, and takes the row over at once instead of
//! waiting for the TTL.

use super::{prepare, Inner, Marks};
use crate::store::StoreError;
use scylla::client::session::Session;
use scylla::response::query_result::QueryResult;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The lease's row.
const NAME: &str = "writer";
/// The share of the TTL after a renewal is sent during which this process writes.
pub const VALID: f64 = 0.7;
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

/// This process's name as a lease owner: the host name and the address it listens on.
pub fn owner_name(listen: std::net::SocketAddr) -> String {
    format!("{} {listen}", host_name())
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
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// What this process knows of its lease, on its own clock (pure: times are given).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Term {
    /// Writes are allowed before this instant (none: never held yet).
    until: Option<Instant>,
    /// The last renewal that the node applied was sent then.
    renewed: Option<Instant>,
    /// Taken again after it lapsed: nothing is written until the log is checked.
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

    /// The row was taken again, sent at `sent`, after it had expired.
    pub fn retaken(&mut self, sent: Instant, ttl: Duration) {
        self.renewed(sent, ttl);
        self.verify = true;
    }

    /// The log was checked after a retake: writes may go on.
    pub fn verified(&mut self) {
        self.verify = false;
    }

    /// This process must write nothing more.
    pub fn end(&mut self, why: String) {
        if self.ended.is_none() {
            self.ended = Some(why);
        }
    }

    /// Whether a write may be sent at `now`; the reason when not.
    pub fn writable(&self, now: Instant, ttl: Duration) -> Result<(), String> {
        if let Some(why) = &self.ended {
            return Err(why.clone());
        }
        if self.verify {
            return Err("the writer lease was taken again after it lapsed; writing waits until the log is checked".into());
        }
        match (self.until, self.renewed) {
            (Some(until), _) if now < until => Ok(()),
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

    /// Whether a retake waits for the log to be checked.
    pub fn needs_verify(&self) -> bool {
        self.verify && self.ended.is_none()
    }
}

/// The answer to a conditional write.
#[derive(Debug, Clone, PartialEq)]
pub enum Lwt {
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
    let text = |i: Option<usize>| {
        i.and_then(|i| row.columns.get(i).cloned().flatten())
            .and_then(|v| v.as_text().cloned())
    };
    let applied = applied
        .and_then(|i| row.columns.get(i).cloned().flatten())
        .and_then(|v| v.as_boolean())
        .ok_or("a conditional write answered without [applied]")?;
    Ok(if applied {
        Lwt::Applied
    } else {
        Lwt::NotApplied { owner: text(owner) }
    })
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
    let rows = s
        .query_unpaged(
            format!("SELECT owner, info, TTL(owner) FROM {ks}.leases WHERE name = '{NAME}'"),
            (),
        )
        .await
        .map_err(|e| e.to_string())?
        .into_rows_result()
        .map_err(|e| e.to_string())?;
    let row = rows
        .maybe_first_row::<(Option<String>, Option<String>, Option<i32>)>()
        .map_err(|e| e.to_string())?;
    Ok(row
        .filter(|(owner, _, _)| owner.is_some())
        .map(|(owner, info, left)| (describe(owner, info), left)))
}

/// The lease of one store: its statements, its owner and its [`Term`].
pub(super) struct Lease {
    keyspace: String,
    owner: String,
    info: String,
    ttl: Duration,
    term: Mutex<Term>,
    acquire: PreparedStatement,
    renew: PreparedStatement,
    release: PreparedStatement,
    holder: PreparedStatement,
}

impl Lease {
    /// Prepares the lease's statements for `owner` (`info`: shown to other processes).
    pub async fn prepare(
        s: &Session,
        ks: &str,
        owner: String,
        info: String,
        ttl_s: u32,
    ) -> Result<Lease, StoreError> {
        let ttl = ttl_s.max(1);
        // conditional writes: the serial consistency (LOCAL_SERIAL) decides; ONE would do
        // for the commit part on one node, QUORUM is what a cluster of several needs
        let q = Consistency::Quorum;
        Ok(Lease {
            acquire: prepare(s, ks, "leases", format!("INSERT INTO {ks}.leases (name, owner, info) VALUES (?, ?, ?) IF NOT EXISTS USING TTL {ttl}"), q).await?,
            renew: prepare(s, ks, "leases", format!("UPDATE {ks}.leases USING TTL {ttl} SET owner = ?, info = ? WHERE name = ? IF owner = ?"), q).await?,
            release: prepare(s, ks, "leases", format!("DELETE FROM {ks}.leases WHERE name = ? IF owner = ?"), q).await?,
            holder: prepare(s, ks, "leases", format!("SELECT owner, info, TTL(owner) FROM {ks}.leases WHERE name = ?"), q).await?,
            keyspace: ks.to_string(),
            owner,
            info,
            ttl: Duration::from_secs(u64::from(ttl)),
            term: Mutex::new(Term::default()),
        })
    }

    fn term(&self) -> std::sync::MutexGuard<'_, Term> {
        self.term
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a write may be sent now; why not, naming the keyspace, otherwise.
    pub fn writable(&self) -> Result<(), String> {
        self.term()
            .writable(Instant::now(), self.ttl)
            .map_err(|why| format!("keyspace {}: {why}", self.keyspace))
    }

    async fn try_acquire(&self, s: &Session) -> Result<Lwt, String> {
        let r = s
            .execute_unpaged(&self.acquire, (NAME, &self.owner, &self.info))
            .await
            .map_err(|e| e.to_string())?;
        lwt(r)
    }

    async fn try_renew(&self, s: &Session) -> Result<Lwt, String> {
        let r = s
            .execute_unpaged(&self.renew, (&self.owner, &self.info, NAME, &self.owner))
            .await
            .map_err(|e| e.to_string())?;
        lwt(r)
    }

    /// Who holds the row, for messages: `owner (info)` as read now (a conditional write
    /// that was not applied answers only the columns of its condition), or as `seen` when
    /// it cannot be read; and the seconds the row has left.
    async fn holder(&self, s: &Session, seen: Option<String>) -> (String, Option<i32>) {
        type Row = (Option<String>, Option<String>, Option<i32>);
        let read = async {
            let rows = s
                .execute_unpaged(&self.holder, (NAME,))
                .await
                .ok()?
                .into_rows_result()
                .ok()?;
            rows.maybe_first_row::<Row>().ok()?
        };
        let (owner, info, left) = read.await.unwrap_or((seen, None, None));
        (describe(owner, info), left)
    }

    /// Takes the lease at start-up: free, or held by this same owner (the same service
    /// started again after a crash). Held by another: [`StoreError::Held`].
    pub async fn acquire(&self, s: &Session) -> Result<(), StoreError> {
        let err = |why: String| StoreError::Unreachable {
            keyspace: self.keyspace.clone(),
            why: format!("taking the writer lease: {why}"),
        };
        let sent = Instant::now();
        match self.try_acquire(s).await.map_err(err)? {
            Lwt::Applied => {}
            Lwt::NotApplied { owner: Some(o), .. } if o == self.owner => {
                match self.try_renew(s).await.map_err(err)? {
                    Lwt::Applied => {
                        tracing::info!(keyspace = %self.keyspace, owner = %self.owner, "took over the writer lease a previous run of this service (same host and listen address) left")
                    }
                    Lwt::NotApplied { owner } => return Err(self.held(s, owner).await),
                }
            }
            Lwt::NotApplied { owner } => return Err(self.held(s, owner).await),
        }
        self.term().renewed(sent, self.ttl);
        Ok(())
    }

    async fn held(&self, s: &Session, seen: Option<String>) -> StoreError {
        let (owner, seconds_left) = self.holder(s, seen).await;
        StoreError::Held {
            keyspace: self.keyspace.clone(),
            owner,
            seconds_left,
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

    /// Releases the lease (a graceful stop): nothing is written after this.
    pub async fn release(&self, s: &Session) {
        let held = {
            let mut t = self.term();
            let held = !t.is_ended() && t.until.is_some();
            t.end("the store is closed (writer lease released)".into());
            held
        };
        if !held {
            return;
        }
        let r = tokio::time::timeout(
            Duration::from_secs(2),
            s.execute_unpaged(&self.release, (NAME, &self.owner)),
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
}

/// Renews the lease while the store is open (`inner` alive), takes it again after it
/// lapsed, and checks the log before writing again; see the module documentation.
pub(super) async fn keep(inner: Weak<Inner>, marks: Arc<Marks>) {
    let period = match inner.upgrade() {
        Some(i) => i.lease.ttl.mul_f64(RENEW),
        None => return,
    };
    let mut failing = false;
    loop {
        tokio::time::sleep(period).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let lease = &inner.lease;
        if lease.term().is_ended() {
            return;
        }
        let s = &inner.session;
        let sent = Instant::now();
        let r = match lease.try_renew(s).await {
            Ok(Lwt::NotApplied { owner: None, .. }) => {
                // expired on the node: nobody holds it, take it again
                match lease.try_acquire(s).await {
                    Ok(Lwt::Applied) => {
                        tracing::warn!(keyspace = %lease.keyspace, "the writer lease had expired; taken again, checking the log before writing");
                        lease.term().retaken(sent, lease.ttl);
                        Ok(Lwt::Applied)
                    }
                    other => other,
                }
            }
            other => other,
        };
        match r {
            Ok(Lwt::Applied) => {
                if failing {
                    tracing::info!(keyspace = %lease.keyspace, "writer lease renewed again");
                    failing = false;
                }
                lease.term().renewed(sent, lease.ttl);
            }
            Ok(Lwt::NotApplied { owner }) => {
                let (who, _) = lease.holder(s, owner).await;
                lease.fence(format!(
                    "another process holds the writer lease of keyspace {}: {who}",
                    lease.keyspace
                ));
                return;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(keyspace = %lease.keyspace, error = %e, "could not renew the writer lease; trying again");
                    failing = true;
                }
                continue;
            }
        }
        if lease.term().needs_verify() {
            match super::read_marker(&inner).await {
                Ok(m) => match marks.check_unmoved(m.next_seq, m.next_output) {
                    Ok(()) => {
                        tracing::info!(keyspace = %lease.keyspace, "the log is as this process left it: writing again");
                        lease.term().verified();
                    }
                    Err(why) => {
                        lease.fence(why);
                        return;
                    }
                },
                Err(e) => {
                    tracing::warn!(keyspace = %lease.keyspace, error = %e, "could not read the commit marker to check the log; trying again")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    #[test]
    fn a_new_term_writes_nothing_until_the_lease_is_taken() {
        let t = Term::default();
        let e = t.writable(Instant::now(), TTL).unwrap_err();
        assert!(e.contains("not held"), "{e}");
    }

    #[test]
    fn writes_stop_at_seven_tenths_of_the_ttl_after_the_renewal_was_sent() {
        let t0 = Instant::now();
        let mut t = Term::default();
        t.renewed(t0, TTL);
        assert!(t.writable(t0 + Duration::from_millis(6_999), TTL).is_ok());
        let e = t
            .writable(t0 + Duration::from_millis(7_000), TTL)
            .unwrap_err();
        assert!(e.contains("last renewed 7.0 s ago"), "{e}");
        assert!(e.contains("lease-s = 10"), "{e}");
        // a renewal sent later moves the end on
        t.renewed(t0 + Duration::from_secs(2), TTL);
        assert!(t.writable(t0 + Duration::from_millis(8_999), TTL).is_ok());
    }

    #[test]
    fn a_retaken_lease_writes_only_after_the_log_is_checked() {
        let t0 = Instant::now();
        let mut t = Term::default();
        t.renewed(t0, TTL);
        t.retaken(t0 + Duration::from_secs(30), TTL);
        assert!(t.needs_verify());
        let e = t.writable(t0 + Duration::from_secs(31), TTL).unwrap_err();
        assert!(e.contains("checked"), "{e}");
        t.verified();
        assert!(t.writable(t0 + Duration::from_secs(31), TTL).is_ok());
    }

    #[test]
    fn an_ended_lease_never_writes_again_even_when_renewed() {
        let t0 = Instant::now();
        let mut t = Term::default();
        t.renewed(t0, TTL);
        t.end("fenced by b".into());
        t.renewed(t0 + Duration::from_secs(1), TTL);
        t.end("released".into());
        assert_eq!(
            t.writable(t0 + Duration::from_secs(1), TTL),
            Err("fenced by b".into())
        );
        assert!(t.is_ended());
        t.retaken(t0, TTL);
        assert!(!t.needs_verify());
    }

    #[test]
    fn the_owner_names_the_host_and_the_address() {
        let o = owner_name("127.0.0.1:8080".parse().unwrap());
        assert!(o.ends_with(" 127.0.0.1:8080"), "{o}");
        assert!(o.len() > " 127.0.0.1:8080".len(), "{o}");
    }
}
