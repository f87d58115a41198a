//! The real transport: the `fluvio` 0.50 client, over TLS when `fluvio.tls` is set (rustls
//! with the client configuration of [`crate::tls`], the one CQL uses, handed to fluvio as a
//! connector: fluvio 0.50.1's own `rustls` feature only reads files and always sends a client
//! certificate). Connecting is bounded by `connect-timeout-ms`;
//! consumers use manual offset management under the configured consumer id; producers use
//! [`OwnershipPartitioner`], so a record lands in the partition [`partition_of`] names.

use super::log::{LogError, Record};
use super::mapping::{event_key, partition_of, raw_key, raw_stream, Sink, Stream};
use super::sink::RecordSink;
use super::source::RecordStream;
use super::Transport;
use crate::config::FluvioConfig;
use ::fluvio::consumer::{ConsumerConfigExtBuilder, ConsumerStream, OffsetManagementStrategy};
use ::fluvio::metadata::topic::TopicSpec;
use ::fluvio::{
    Fluvio, FluvioClusterConfig, Isolation, Offset, Partitioner, PartitionerConfig, ProduceOutput,
    TopicProducerConfigBuilder, TopicProducerPool,
};
use fluvio_future::net::{DefaultDomainConnector, DomainConnector};
use fluvio_future::rust_tls::{TlsConnector, TlsDomainConnector};
use futures_util::StreamExt;
use omnistream_schemas::{Decoder, Pii};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A failure to reach or use the cluster, naming the endpoint or topic.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer within the connect timeout.
    #[error("fluvio {endpoint}: no connection within {ms} ms (is the cluster running there? the address is fluvio.endpoint, OMNISTREAM_FLUVIO__ENDPOINT)")]
    Timeout {
        /// The endpoint tried.
        endpoint: String,
        /// The timeout.
        ms: u64,
    },
    /// The connection was refused or failed.
    #[error("fluvio {endpoint}: cannot connect (is the cluster running there? the address is fluvio.endpoint, OMNISTREAM_FLUVIO__ENDPOINT): {why}")]
    Connect {
        /// The endpoint tried.
        endpoint: String,
        /// Why.
        why: String,
    },
    /// A topic operation failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// An input file could not be read.
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
}

/// Connects to `cfg.endpoint`, over TLS when `tls` is set, giving up after
/// `connect-timeout-ms`.
pub async fn connect(cfg: &FluvioConfig) -> Result<Fluvio, ClientError> {
    let cluster = FluvioClusterConfig::new(cfg.endpoint.clone());
    let connector = connector(cfg).map_err(|why| ClientError::Connect {
        endpoint: cfg.endpoint.clone(),
        why,
    })?;
    // connecting is not a consumer stream: cancelling it on timeout is harmless
    match tokio::time::timeout(
        Duration::from_millis(cfg.connect_timeout_ms),
        Fluvio::connect_with_connector(connector, &cluster),
    )
    .await
    {
        Err(_) => Err(ClientError::Timeout {
            endpoint: cfg.endpoint.clone(),
            ms: cfg.connect_timeout_ms,
        }),
        Ok(Err(e)) => Err(ClientError::Connect {
            endpoint: cfg.endpoint.clone(),
            why: format!("{e:#}"),
        }),
        Ok(Ok(f)) => Ok(f),
    }
}

/// How long one call to the SC may take: one sent as the SC went away is never answered.
const SC_CALL: Duration = Duration::from_secs(5);

/// How long a failed renewal answers for itself: users that asked meanwhile (waiting
/// behind it) get its error at once instead of each trying again.
const RENEW_PAUSE: Duration = Duration::from_secs(1);

/// A value that those who share it replace as a whole when it fails, once for all of them:
/// each use names the generation it had ([`Renewable::current`]), and a renewal asked for
/// an older generation than the current one gets the current one, without making another.
pub struct Renewable<T> {
    current: std::sync::Mutex<(Arc<T>, u64)>,
    renewing: tokio::sync::Mutex<Option<Failed>>,
}

/// The last renewal that failed: of which generation, when, why.
struct Failed {
    generation: u64,
    at: tokio::time::Instant,
    why: String,
}

impl<T> Renewable<T> {
    /// `t` as generation 0.
    pub fn new(t: T) -> Self {
        Renewable {
            current: std::sync::Mutex::new((Arc::new(t), 0)),
            renewing: tokio::sync::Mutex::new(None),
        }
    }

    /// The value now, and its generation.
    pub fn current(&self) -> (Arc<T>, u64) {
        let g = self.current.lock().unwrap_or_else(|p| p.into_inner());
        (g.0.clone(), g.1)
    }

    /// Replaces generation `seen` by what `make` gives; when another user replaced it
    /// already (or does while this one waits), the value that one made. A failed `make`
    /// leaves the value as it was, and for [`RENEW_PAUSE`] its error is the answer to
    /// renewing the same generation, without making again.
    pub async fn renew<E: std::fmt::Display>(
        &self,
        seen: u64,
        make: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<(Arc<T>, u64), String> {
        let mut last = self.renewing.lock().await;
        let now = self.current();
        if now.1 != seen {
            return Ok(now);
        }
        if let Some(f) = last.as_ref().filter(|f| f.generation == seen) {
            let ago = f.at.elapsed();
            if ago < RENEW_PAUSE {
                return Err(format!("{} ({} ms ago)", f.why, ago.as_millis()));
            }
        }
        match make.await {
            Ok(t) => {
                let made = (Arc::new(t), seen + 1);
                *self.current.lock().unwrap_or_else(|p| p.into_inner()) = made.clone();
                *last = None;
                Ok(made)
            }
            Err(e) => {
                let why = e.to_string();
                *last = Some(Failed {
                    generation: seen,
                    at: tokio::time::Instant::now(),
                    why: why.clone(),
                });
                Err(why)
            }
        }
    }
}

/// The process's client of the cluster, shared by its transport, streams and sinks.
///
/// fluvio 0.50.1's client opens its connection to the SC once: after the SC restarted,
/// every admin call of that client fails ("Broken pipe", seen for as long as the client
/// lives) and the first one sent as the SC went away is never answered. The partitions'
/// ends could then not be known again, and a stream that lost a batch at the end of a
/// backlog (see [`FluvioStream::next`]) or a cluster's sequencer waiting for one would wait
/// for good (seen: a backfill stopped 30 records short after an SC restart). So every call
/// to the SC is bounded, and one that fails connects anew, once for every user
/// ([`Renewable`]): later streams and producers use the new client, streams and producers
/// already open go on over their own connections (fluvio gives each its own SPU pool).
#[derive(Clone)]
pub struct Client {
    cfg: FluvioConfig,
    fluvio: Arc<Renewable<Fluvio>>,
}

impl Client {
    /// Connects (see [`connect`]).
    pub async fn connect(cfg: &FluvioConfig) -> Result<Client, ClientError> {
        Ok(Client {
            cfg: cfg.clone(),
            fluvio: Arc::new(Renewable::new(connect(cfg).await?)),
        })
    }

    /// The configuration it connected with.
    pub fn cfg(&self) -> &FluvioConfig {
        &self.cfg
    }

    /// The client now, and its generation.
    pub fn current(&self) -> (Arc<Fluvio>, u64) {
        self.fluvio.current()
    }

    /// Connects anew, for the reason `why`, unless another user did since generation `seen`.
    pub async fn renew(&self, seen: u64, why: &str) -> Result<(Arc<Fluvio>, u64), String> {
        // logged by the one user that connects, not by those who then find its client
        let connected = async {
            let f = connect(&self.cfg).await?;
            tracing::warn!(endpoint = %self.cfg.endpoint, generation = seen + 1, why,
                "connected to the fluvio cluster anew");
            Ok::<_, ClientError>(f)
        };
        self.fluvio.renew(seen, connected).await
    }

    /// `call` with an admin of the current client, within [`SC_CALL`]; when it fails, once
    /// more on a client connected anew.
    pub async fn admin<T, E, F>(
        &self,
        call: impl Fn(::fluvio::FluvioAdmin) -> F,
    ) -> Result<T, String>
    where
        E: std::fmt::Display,
        F: std::future::Future<Output = Result<T, E>>,
    {
        let once =
            async |fluvio: &Fluvio| match tokio::time::timeout(SC_CALL, call(fluvio.admin().await))
                .await
            {
                Ok(Ok(t)) => Ok(t),
                Ok(Err(e)) => Err(format!("{e:#}")),
                Err(_) => Err(format!("the SC gave no answer within {SC_CALL:?}")),
            };
        let (fluvio, generation) = self.current();
        let first = match once(&fluvio).await {
            Ok(t) => return Ok(t),
            Err(e) => e,
        };
        let (fluvio, _) = self
            .renew(generation, &first)
            .await
            .map_err(|e| format!("{first}; connecting anew: {e}"))?;
        once(&fluvio).await
    }
}

/// How fluvio opens its connections (to the SC and to every SPU): plain TCP, or TLS with our
/// client configuration, the server checked under [`FluvioConfig::tls_name`].
pub fn connector(cfg: &FluvioConfig) -> Result<DomainConnector, String> {
    match cfg
        .tls_keys()
        .client_config()
        .map_err(|e| format!("{}: {}", e.key, e.why))?
    {
        None => Ok(Box::new(DefaultDomainConnector::new())),
        Some(tls) => Ok(Box::new(TlsDomainConnector::new(
            TlsConnector::from(tls),
            cfg.tls_name(),
        ))),
    }
}

/// Fluvio's partitioner replaced by ours: `partition_of(key, partition count)`, the function
/// that decides ownership; keyless records go to partition 0.
#[derive(Debug, Default)]
pub struct OwnershipPartitioner;

impl Partitioner for OwnershipPartitioner {
    fn partition(&self, config: &PartitionerConfig, key: Option<&[u8]>, _value: &[u8]) -> u32 {
        let key = key.map(String::from_utf8_lossy).unwrap_or_default();
        partition_of(&key, config.partition_count)
    }
}

fn failed(topic: &str, why: impl std::fmt::Display) -> LogError {
    LogError::Failed {
        topic: topic.to_string(),
        why: why.to_string(),
    }
}

/// What to do with a record at `got` when the stream should be at `expected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// The record is the next one: yield it.
    Yield,
    /// Already yielded (a re-opened stream repeats it): drop it.
    Skip,
    /// Records `expected..got` were not delivered: re-open the stream at `expected`.
    Reopen,
}

/// Fluvio offsets are contiguous within a partition, so a record beyond `expected` means the
/// client lost records. It does, with fluvio 0.50.1 against a 0.18.1 (0.50.1) SPU: the SPU
/// cuts each fetch at `max_bytes` (1 MB) in the middle of a batch, the client decodes the cut
/// batch as whole, moves its position past it and never yields its records (seen: one
/// producer batch lost at every ~1 MB of a backlog). A gap is re-read once from `expected`;
/// if the re-opened stream shows the same gap (the records are gone: evicted), it is accepted.
pub fn on_offset(expected: u64, got: u64, reopened_at: Option<(u64, u64)>) -> Gap {
    if got < expected {
        Gap::Skip
    } else if got == expected || reopened_at == Some((expected, got)) {
        Gap::Yield
    } else {
        Gap::Reopen
    }
}

/// The partition's high watermark (what consumers can read up to) and log end offset, as the
/// SC reports them for its leader (the SPU updates them every few seconds: they may be
/// behind, never ahead).
async fn partition_end(
    client: &Client,
    topic: &str,
    partition: u32,
) -> Result<(u64, u64), LogError> {
    use ::fluvio::metadata::partition::PartitionSpec;
    let name = format!("{topic}-{partition}");
    let failed = |why: String| LogError::Failed {
        topic: topic.to_string(),
        why,
    };
    let found = client
        .admin(|admin| {
            let name = name.clone();
            async move { admin.list::<PartitionSpec, _>(vec![name]).await }
        })
        .await
        .map_err(|e| failed(format!("listing partition {name}: {e}")))?;
    let leader = found
        .iter()
        .find(|m| m.name == name)
        .map(|m| m.status.leader.clone())
        .ok_or_else(|| failed(format!("partition {name} not found")))?;
    // no leader yet: nothing readable
    let hw = u64::try_from(leader.hw).unwrap_or(0);
    let leo = u64::try_from(leader.leo)
        .map_err(|_| failed(format!("partition {name} has no leader yet")))?;
    Ok((hw, leo))
}

/// How long a stream may give nothing before the partition's end is asked for: when the
/// SC says records are there past the next expected offset, the client is holding them
/// back (see [`FluvioStream::next`]).
const STALL_CHECK: Duration = Duration::from_secs(5);

/// What a stream that gives nothing does, by the partition's readable end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stall {
    /// Nothing to read past the expected offset, or this gap was re-read already.
    Wait,
    /// Re-open the stream at the expected offset.
    Reopen,
    /// A re-opened stream gave nothing either: connect a new client, then re-open.
    Reconnect,
}

/// The decision for a stream at `expected` that gave nothing while the partition is
/// readable up to `readable`, and the stall record to keep: `last` is the expected offset
/// of the stalls before and how many checks found it stalled. The first stall at an offset
/// re-opens the stream; later ones connect anew, on the 2nd, 4th, 8th, ... check (5 s
/// apart), so a partition that stays stuck (records the stream cannot give) is not asked
/// for in a tight loop.
fn on_stall(expected: u64, readable: u64, last: Option<(u64, u32)>) -> (Stall, Option<(u64, u32)>) {
    if readable <= expected {
        return (Stall::Wait, last);
    }
    let checks = match last {
        Some((e, n)) if e == expected => n.saturating_add(1),
        _ => 0,
    };
    let stall = if checks == 0 {
        Stall::Reopen
    } else if checks.is_power_of_two() {
        Stall::Reconnect
    } else {
        Stall::Wait
    };
    (stall, Some((expected, checks)))
}

/// How long a consumer-offset commit may take before the stream is opened anew.
const COMMIT_WAIT: Duration = Duration::from_secs(10);

/// A consumer stream of one partition, owned by its reader task. Re-opens itself when the
/// client skipped records (see [`on_offset`]).
pub struct FluvioStream {
    topic: String,
    partition: u32,
    /// The process's client (its configuration: the consumer id and isolation to open
    /// with), connected anew on [`Stall::Reconnect`].
    client: Client,
    /// The generation of the client the stream was opened on.
    generation: u64,
    /// The offset of the next record to yield.
    expected: u64,
    /// The gap (expected, got) the last re-open was for.
    reopened_at: Option<(u64, u64)>,
    /// A commit failed, or a re-open did: re-open before reading on.
    stale: bool,
    /// The expected offset the stream last stalled at, and how many checks found it
    /// stalled there (see [`on_stall`]).
    stalled_at: Option<(u64, u32)>,
    inner: Box<dyn ConsumerStream>,
}

impl FluvioStream {
    /// Replaces the client's stream by a new one from the next expected offset.
    async fn reopen(&mut self) -> Result<(), LogError> {
        (self.inner, self.generation) =
            FluvioStream::open(&self.client, &self.topic, self.partition, self.expected).await?;
        Ok(())
    }

    /// A consumer stream from `from` on the client's current connection, and that
    /// connection's generation.
    async fn open(
        client: &Client,
        topic: &str,
        partition: u32,
        from: u64,
    ) -> Result<(Box<dyn ConsumerStream>, u64), LogError> {
        let (fluvio, generation) = client.current();
        let cfg = client.cfg();
        let start = Offset::absolute(i64::try_from(from).unwrap_or(i64::MAX))
            .map_err(|e| failed(topic, e))?;
        let config = ConsumerConfigExtBuilder::default()
            .topic(topic)
            .partition(partition)
            .offset_consumer(cfg.consumer.clone())
            .offset_start(start)
            .offset_strategy(OffsetManagementStrategy::Manual)
            // with read-committed (the default) only records every in-sync replica holds, so
            // one the leader took and lost in a failover before a follower copied it is
            // never applied
            .isolation(isolation_of(cfg.isolation))
            .build()
            .map_err(|e| failed(topic, format!("{e:#}")))?;
        let s = fluvio
            .consumer_with_config(config)
            .await
            .map_err(|e| failed(topic, format!("{e:#}")))?;
        Ok((Box::new(s), generation))
    }
}

impl RecordStream for FluvioStream {
    async fn next(&mut self) -> Result<Option<Record>, LogError> {
        if self.stale {
            // after the SPU restarted, fluvio 0.50.1's retrying stream reads on but every
            // offset flush fails ("sending into a closed channel"), likely because the stream
            // it re-creates outlives the client it made for it. A stream from our client
            // commits again.
            self.reopen().await?;
            self.stale = false;
        }
        loop {
            // The client also loses the records of a cut batch at the *end* of a backlog,
            // and then no later record shows the gap: the partition looks read to its end
            // while records wait past it (seen against a real cluster: 33 records of a
            // partition never read). So while the stream gives nothing, the SC is asked for
            // the partition's end every few seconds; when it is past the expected offset,
            // the stream is re-opened there. The pending `next()` is dropped only together
            // with its stream (a commit after a `next()` dropped mid-poll can hang: see the
            // source's module documentation), never to poll the same stream again.
            let mut stalled_at = self.stalled_at;
            let polled = {
                let (client, topic, partition, expected) =
                    (&self.client, &self.topic, self.partition, self.expected);
                let mut next = std::pin::pin!(self.inner.next());
                loop {
                    tokio::select! {
                        r = &mut next => break Ok(r),
                        () = tokio::time::sleep(STALL_CHECK) => {
                            // bounded by itself (the SC's answer may not come, and a new
                            // client may be needed): the stream waits on meanwhile
                            let end = partition_end(client, topic, partition).await;
                            if let Ok((readable, _)) = end {
                                let stall;
                                (stall, stalled_at) = on_stall(expected, readable, stalled_at);
                                if stall != Stall::Wait {
                                    break Err((readable, stall));
                                }
                            }
                        }
                    }
                }
            };
            self.stalled_at = stalled_at;
            let polled = match polled {
                Ok(polled) => polled,
                Err((readable, stall)) => {
                    // the old stream's next() was dropped: never poll or commit it again,
                    // even if what follows fails (the next call re-opens first)
                    self.stale = true;
                    if stall == Stall::Reconnect {
                        // seen after an SPU restart: re-opened streams of the same client
                        // still gave nothing, where a new process read on
                        tracing::warn!(
                            topic = %self.topic,
                            partition = self.partition,
                            expected = self.expected,
                            readable,
                            "a re-opened stream gave nothing either; connecting anew"
                        );
                        let why = "a stream re-opened at the same offset gave nothing either";
                        if let Err(e) = self.client.renew(self.generation, why).await {
                            return Err(failed(&self.topic, e));
                        }
                    }
                    tracing::info!(
                        topic = %self.topic,
                        partition = self.partition,
                        expected = self.expected,
                        readable,
                        "the fluvio client gives nothing while the partition holds records \
                         past the expected offset; re-reading from it"
                    );
                    self.reopen().await?;
                    self.stale = false;
                    continue;
                }
            };
            let r = match polled {
                None => return Ok(None),
                Some(Err(code)) => return Err(failed(&self.topic, format!("{code:?}"))),
                Some(Ok(r)) => r,
            };
            let got = u64::try_from(r.offset()).unwrap_or(0);
            match on_offset(self.expected, got, self.reopened_at) {
                Gap::Skip => continue,
                Gap::Reopen => {
                    tracing::info!(
                        topic = %self.topic,
                        partition = self.partition,
                        expected = self.expected,
                        got,
                        "the fluvio client skipped records; re-reading from the expected offset"
                    );
                    self.reopened_at = Some((self.expected, got));
                    // the old stream yielded nothing past `expected`, so nothing uncommitted
                    // is lost by dropping it; commits go through the new stream from now on
                    self.reopen().await?;
                    continue;
                }
                Gap::Yield => {}
            }
            self.expected = got + 1;
            return Ok(Some(Record {
                offset: got,
                key: r.key().map(<[u8]>::to_vec).unwrap_or_default(),
                value: r.value().to_vec(),
            }));
        }
    }

    async fn commit_yielded(&mut self) -> Result<(), LogError> {
        let commit = async {
            match self.inner.offset_commit().await {
                Err(c) => Err(failed(&self.topic, format!("offset commit: {c:?}"))),
                Ok(()) => self
                    .inner
                    .offset_flush()
                    .await
                    .map_err(|c| failed(&self.topic, format!("offset flush: {c:?}"))),
            }
        };
        // a commit can wait for good on a stream whose SPU went away: it is given up, and
        // the stream, which must not be used after a dropped call, is opened anew
        let done = match tokio::time::timeout(COMMIT_WAIT, commit).await {
            Ok(done) => done,
            Err(_) => Err(failed(
                &self.topic,
                format!(
                    "offset commit: no answer within {} s",
                    COMMIT_WAIT.as_secs()
                ),
            )),
        };
        // everything yielded is before `expected`: re-opening there loses and repeats nothing
        self.stale = done.is_err();
        done
    }
}

/// Fluvio's isolation for `fluvio.isolation`.
fn isolation_of(i: crate::config::FluvioIsolation) -> Isolation {
    match i {
        crate::config::FluvioIsolation::ReadCommitted => Isolation::ReadCommitted,
        crate::config::FluvioIsolation::ReadUncommitted => Isolation::ReadUncommitted,
    }
}

/// Producers of the sink topics, opened on first use.
pub struct FluvioSink {
    client: Client,
    /// After a failure: the client's connection to the SC is tried (and a client connected
    /// anew when it is lost) before producers are opened again, so that they learn where
    /// the partitions lead now. Best effort: with the SC down they open on the client there
    /// is, whose last known leaders are likely still right.
    check: bool,
    producers: HashMap<String, TopicProducerPool>,
    pending: Vec<(String, ProduceOutput)>,
}

impl FluvioSink {
    /// A sink over a connected client.
    pub fn new(client: Client) -> FluvioSink {
        FluvioSink {
            client,
            check: false,
            producers: HashMap::new(),
            pending: Vec::new(),
        }
    }

    /// `fluvio.ack-timeout-ms`.
    fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.client.cfg().ack_timeout_ms)
    }

    async fn producer(&mut self, topic: &str) -> Result<&TopicProducerPool, LogError> {
        if !self.producers.contains_key(topic) {
            let cfg = self.client.cfg();
            let config = TopicProducerConfigBuilder::default()
                .linger(Duration::from_millis(cfg.linger_ms))
                .batch_size(cfg.batch_bytes)
                .partitioner(Arc::new(OwnershipPartitioner))
                // with read-committed (the default) acknowledged once every in-sync replica
                // holds the records; with fluvio's default (the leader's own write) an SPU
                // killed before its follower copied them loses acknowledged outputs (seen
                // on a 2-SPU cluster)
                .isolation(isolation_of(cfg.isolation))
                // how long the SPU may take to have the records copied before it answers
                // with an error (fluvio's default, 1.5 s, fails and the client re-sends, each
                // copy lengthening the follower's catch-up after a restart); half of ours,
                // so its answer comes before our own deadline
                .timeout(self.ack_timeout() / 2)
                .build()
                .map_err(|e| failed(topic, e))?;
            let p = self
                .client
                .current()
                .0
                .topic_producer_with_config(topic, config)
                .await
                .map_err(|e| failed(topic, format!("{e:#}")))?;
            self.producers.insert(topic.to_string(), p);
        }
        self.producers
            .get(topic)
            .ok_or_else(|| failed(topic, "producer missing"))
    }
}

/// `what` on `topic`, given up with an error at `deadline`, `limit` after the send or the
/// flush began (the producer may be waiting for a leader that does not come back).
async fn bounded<T, E: std::fmt::Display>(
    topic: &str,
    deadline: tokio::time::Instant,
    limit: Duration,
    what: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, LogError> {
    within(topic, deadline, limit, what)
        .await?
        .map_err(|e| failed(topic, format!("{e:#}")))
}

/// `what`'s output, or an error naming `fluvio.ack-timeout-ms` at `deadline`.
async fn within<F: std::future::Future>(
    topic: &str,
    deadline: tokio::time::Instant,
    limit: Duration,
    what: F,
) -> Result<F::Output, LogError> {
    tokio::time::timeout_at(deadline, what).await.map_err(|_| {
        failed(
            topic,
            format!(
                "no acknowledgement within {} ms (fluvio.ack-timeout-ms)",
                limit.as_millis()
            ),
        )
    })
}

impl RecordSink for FluvioSink {
    async fn send(&mut self, topic: &str, key: &[u8], value: &[u8]) -> Result<(), LogError> {
        if std::mem::take(&mut self.check) {
            use ::fluvio::metadata::topic::TopicSpec;
            let asked = self
                .client
                .admin(|admin| {
                    let topic = topic.to_string();
                    async move { admin.list::<TopicSpec, _>(vec![topic]).await }
                })
                .await;
            if let Err(e) = asked {
                tracing::warn!(topic, error = %e,
                    "the fluvio SC does not answer; producers open on what the client knows");
            }
        }
        let limit = self.ack_timeout();
        let deadline = tokio::time::Instant::now() + limit;
        // opening one asks the cluster where the partitions lead: bounded as well
        let producer = within(topic, deadline, limit, self.producer(topic)).await??;
        // a send waits when the producer's queue is full, i.e. while it cannot deliver
        let sent = producer.send(key.to_vec(), value.to_vec());
        let out = bounded(topic, deadline, limit, sent).await?;
        self.pending.push((topic.to_string(), out));
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), LogError> {
        let pending = std::mem::take(&mut self.pending);
        let limit = self.ack_timeout();
        let deadline = tokio::time::Instant::now() + limit;
        for (topic, p) in &self.producers {
            bounded(topic, deadline, limit, p.flush()).await?;
        }
        for (topic, out) in pending {
            bounded(&topic, deadline, limit, out.wait()).await?;
        }
        Ok(())
    }

    /// Drops the producers: a producer keeps sending to the leader it first found, so after
    /// a leader moved (an SPU stopped, its replica took over) only a new one reaches it.
    fn reopen(&mut self) {
        self.pending.clear();
        self.producers.clear();
        self.check = true;
    }
}

/// A connected cluster as the service's transport.
#[derive(Clone)]
pub struct FluvioTransport {
    /// The client.
    pub client: Client,
}

impl Transport for FluvioTransport {
    type Stream = FluvioStream;
    type Sink = FluvioSink;

    async fn open_stream(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
    ) -> Result<FluvioStream, LogError> {
        let (inner, generation) = FluvioStream::open(&self.client, topic, partition, from).await?;
        Ok(FluvioStream {
            topic: topic.to_string(),
            partition,
            client: self.client.clone(),
            generation,
            expected: from,
            reopened_at: None,
            stale: false,
            stalled_at: None,
            inner,
        })
    }

    async fn open_sink(&self) -> Result<FluvioSink, LogError> {
        Ok(FluvioSink::new(self.client.clone()))
    }

    /// The partition's log end offset as the SC reports it (its leader's `leo`, which the
    /// SPU updates every few seconds): good for a lag gauge, not for reading.
    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        partition_end(&self.client, topic, partition)
            .await
            .map(|(_, leo)| leo)
    }

    /// Counts the partitions the SC lists for the topic (`<topic>-<n>`).
    async fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        use ::fluvio::metadata::partition::PartitionSpec;
        let all = self
            .client
            .admin(
                |admin| async move { admin.list::<PartitionSpec, _>(Vec::<String>::new()).await },
            )
            .await
            .map_err(|e| failed(topic, format!("listing partitions: {e}")))?;
        let n = all
            .iter()
            .filter(|m| {
                m.name
                    .strip_prefix(topic)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|p| p.parse::<u32>().is_ok())
            })
            .count();
        if n == 0 {
            return Err(LogError::NoTopic(topic.to_string()));
        }
        u32::try_from(n).map_err(|_| failed(topic, "too many partitions"))
    }
}

/// Every topic the configuration names: the inputs, then the sinks.
pub fn all_topics(cfg: &FluvioConfig) -> Vec<String> {
    Stream::ALL
        .iter()
        .map(|s| s.topic(&cfg.topics).to_string())
        .chain(Sink::ALL.iter().map(|s| s.topic(&cfg.topics).to_string()))
        .collect()
}

/// Creates every topic with `partitions` partitions and `replication` replicas, and the
/// cluster's: the control topic with one partition, the exchange topic with one per process;
/// returns each topic with `created` or `exists`.
pub async fn create_topics(
    client: &Client,
    cluster: &crate::cluster::ClusterConfig,
) -> Result<Vec<(String, &'static str)>, ClientError> {
    let cfg = client.cfg();
    let mut out = Vec::new();
    let topics = all_topics(cfg)
        .into_iter()
        .map(|t| (t, cfg.partitions))
        .chain([
            (cluster.control_topic.clone(), 1),
            (cluster.exchange_topic.clone(), cluster.processes),
        ]);
    for (topic, partitions) in topics {
        let spec = TopicSpec::new_computed(partitions, cfg.replication, None);
        let created = client
            .admin(|admin| {
                let (topic, spec) = (topic.clone(), spec.clone());
                async move { admin.create(topic, false, spec).await }
            })
            .await;
        match created {
            Ok(()) => out.push((topic, "created")),
            // also when a create the SC did answer is asked again on a new client
            Err(e) if e.contains("TopicAlreadyExists") || e.contains("already exists") => {
                out.push((topic, "exists"))
            }
            Err(e) => return Err(failed(&topic, e).into()),
        }
    }
    Ok(out)
}

/// Where one JSON line goes: its topic (given, or by type) and its key (the mapping's).
pub fn route_line(
    line: &[u8],
    topic: Option<&str>,
    cfg: &FluvioConfig,
    decoder: &Decoder,
) -> (String, String) {
    let topic = topic.map_or_else(
        || raw_stream(line).topic(&cfg.topics).to_string(),
        str::to_string,
    );
    let key = match decoder.decode(line) {
        Ok(ev) => event_key(&ev),
        Err(_) => raw_key(line),
    };
    (topic, key)
}

/// Records `produce` sends between two waits for their acknowledgements.
const FLUSH_EVERY: usize = 10_000;

/// How long `produce` keeps sending again the records the cluster has not acknowledged (a
/// partition's leader stopped, its replica taking over; an SPU restarting) before it gives
/// up with the error.
const PRODUCE_RETRY: Duration = Duration::from_secs(120);

/// Records sent and not yet acknowledged: topic, key, line.
type Unacked = Vec<(String, String, Vec<u8>)>;

/// After `first` (a send or a flush that failed), opens the sink again and sends `batch`
/// again until it is acknowledged, backing off up to 5 s between tries; gives up with the
/// last error once `retry` has passed. Records acknowledged before the failure may go out
/// twice: the event ids make the copies duplicates to the service.
async fn resend<K: RecordSink>(
    sink: &mut K,
    batch: &Unacked,
    first: LogError,
    retry: Duration,
) -> Result<(), LogError> {
    let started = std::time::Instant::now();
    let mut backoff = Duration::from_millis(100);
    let mut error = first;
    loop {
        if started.elapsed() >= retry {
            return Err(error);
        }
        tracing::warn!(%error, records = batch.len(), "the cluster did not take a batch; sending it again");
        sink.reopen();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
        match send_all(sink, batch).await {
            Ok(()) => return Ok(()),
            Err(e) => error = e,
        }
    }
}

/// Sends every record of `batch` and waits for their acknowledgement.
async fn send_all<K: RecordSink>(sink: &mut K, batch: &Unacked) -> Result<(), LogError> {
    for (t, k, l) in batch {
        sink.send(t, k.as_bytes(), l).await?;
    }
    sink.flush().await
}

/// Waits for `batch`'s acknowledgement (sending it again after a failure, see [`resend`]),
/// then forgets it.
async fn settle<K: RecordSink>(
    sink: &mut K,
    batch: &mut Unacked,
    retry: Duration,
) -> Result<(), LogError> {
    if let Err(e) = sink.flush().await {
        resend(sink, batch, e, retry).await?;
    }
    batch.clear();
    Ok(())
}

/// How long `produce` waits for the next line before it waits for the acknowledgements of
/// what it sent: a paced pipe's records are confirmed while the pipe is quiet.
const IDLE_FLUSH: Duration = Duration::from_millis(200);

/// An input of `produce`, opened: its name and a file, or standard input (`None`).
type Input = (std::path::PathBuf, Option<std::fs::File>);

/// Reads the inputs' lines in order on a thread of its own and sends them, without their
/// line ends, to `tx`: a backfill is never all in memory, and a pipe's lines are produced as
/// they arrive. Blank lines are skipped.
fn read_lines(inputs: Vec<Input>, tx: tokio::sync::mpsc::Sender<Result<Vec<u8>, ClientError>>) {
    use std::io::BufRead;
    for (f, file) in inputs {
        let failed = |e: std::io::Error| ClientError::File {
            path: f.display().to_string(),
            why: e.to_string(),
        };
        let reader: Box<dyn BufRead> = match file {
            None => Box::new(std::io::stdin().lock()),
            Some(file) => Box::new(std::io::BufReader::with_capacity(1 << 16, file)),
        };
        for line in reader.split(b'\n') {
            let sent = match line {
                Ok(mut l) => {
                    if l.last() == Some(&b'\r') {
                        l.pop();
                    }
                    if l.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    tx.blocking_send(Ok(l))
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(failed(e)));
                    return;
                }
            };
            if sent.is_err() {
                return; // the producer stopped: nothing more to read for
            }
        }
    }
}

/// Produces JSON-lines files (`-` is standard input) as records keyed by the mapping, to
/// `topic` or (when `None`) to each event type's topic; returns the count per topic.
/// Lines are produced as they are read, so `loadtest stream --rate R | omnistream produce -`
/// feeds the topics at that rate.
pub async fn produce_files(
    client: Client,
    files: &[std::path::PathBuf],
    topic: Option<&str>,
    pii: Pii,
) -> Result<Vec<(String, u64)>, ClientError> {
    // every file opens before anything is produced: a wrong name is found at once
    let mut inputs: Vec<Input> = Vec::with_capacity(files.len());
    for f in files {
        let file = if f.as_os_str() == "-" {
            None
        } else {
            Some(std::fs::File::open(f).map_err(|e| ClientError::File {
                path: f.display().to_string(),
                why: e.to_string(),
            })?)
        };
        inputs.push((f.clone(), file));
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    let reader = std::thread::spawn(move || read_lines(inputs, tx));
    let cfg = client.cfg().clone();
    let mut sink = FluvioSink::new(client);
    let decoder = Decoder::new(pii);
    // on an error the reader is left behind (it may be blocked on a quiet standard input)
    let counts = produce_lines(rx, &mut sink, topic, &cfg, &decoder, PRODUCE_RETRY).await?;
    // a reader that panicked ended its channel as if the input had ended: not a success
    reader.join().map_err(|_| ClientError::File {
        path: "-".into(),
        why: "the reading thread failed".into(),
    })?;
    Ok(counts)
}

/// `produce`'s loop: routes each line read to its topic and key and sends it, waits for the
/// acknowledgements every [`FLUSH_EVERY`] records and whenever the input is quiet for
/// [`IDLE_FLUSH`], and keeps what is not acknowledged to send it again (see [`resend`]).
async fn produce_lines<K: RecordSink>(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, ClientError>>,
    sink: &mut K,
    topic: Option<&str>,
    cfg: &FluvioConfig,
    decoder: &Decoder,
    retry: Duration,
) -> Result<Vec<(String, u64)>, ClientError> {
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    // bounded memory for large backfills: at most FLUSH_EVERY records wait for their
    // acknowledgement
    let mut batch: Unacked = Vec::with_capacity(FLUSH_EVERY);
    loop {
        // a receive cut short by the timer loses nothing (the channel keeps the line)
        let line = match tokio::time::timeout(IDLE_FLUSH, rx.recv()).await {
            Err(_) => {
                if !batch.is_empty() {
                    settle(sink, &mut batch, retry).await?;
                }
                continue;
            }
            Ok(None) => break,
            Ok(Some(line)) => line?,
        };
        let (t, key) = route_line(&line, topic, cfg, decoder);
        let sent = sink.send(&t, key.as_bytes(), &line).await;
        match counts.get_mut(&t) {
            Some(n) => *n += 1,
            None => {
                counts.insert(t.clone(), 1);
            }
        }
        batch.push((t, key, line));
        if let Err(e) = sent {
            resend(sink, &batch, e, retry).await?;
            batch.clear();
        } else if batch.len() == FLUSH_EVERY {
            settle(sink, &mut batch, retry).await?;
        }
    }
    settle(sink, &mut batch, retry).await?;
    Ok(counts.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_of_one_failed_generation_renew_it_once() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = Renewable::new("first".to_string());
            let made = std::cell::Cell::new(0);
            let make = |v: &'static str| {
                let made = &made;
                async move {
                    made.set(made.get() + 1);
                    // a connect takes time: the other users come while it runs
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<_, String>(v.to_string())
                }
            };
            // three users saw generation 0 fail at once: one connection is made
            let (a, b, c) = tokio::join!(
                r.renew(0, make("second")),
                r.renew(0, make("other")),
                r.renew(0, make("another")),
            );
            assert_eq!(made.get(), 1);
            for got in [a, b, c] {
                let (v, g) = got.unwrap();
                assert_eq!((v.as_str(), g), ("second", 1));
            }
            // a user still on generation 0 gets the current one without a new connection
            let (v, g) = r.renew(0, make("late")).await.unwrap();
            assert_eq!((v.as_str(), g, made.get()), ("second", 1, 1));
            // a failed connection leaves the value; for a second, renewing the same
            // generation answers with its error without connecting (those queued behind
            // it do not each wait for a connection of their own); then it is tried again
            let failed = r.renew(1, async { Err::<String, _>("refused") }).await;
            assert_eq!(failed.err().as_deref(), Some("refused"));
            assert_eq!(r.current().1, 1);
            let again = r.renew(1, make("too soon")).await;
            assert!(again.is_err_and(|e| e.starts_with("refused (")));
            assert_eq!(made.get(), 1);
            tokio::time::sleep(RENEW_PAUSE).await;
            let (v, g) = r.renew(1, make("third")).await.unwrap();
            assert_eq!((v.as_str(), g, made.get()), ("third", 2, 2));
        });
    }

    #[test]
    fn the_partitioner_is_the_ownership_function() {
        let cfg = PartitionerConfig {
            partition_count: 6,
            available_partitions: vec![0, 1, 2, 3, 4, 5],
        };
        let p = OwnershipPartitioner;
        for key in ["sku/S1", "dealer/D-9", "order/tmall:T-1"] {
            assert_eq!(
                p.partition(&cfg, Some(key.as_bytes()), b""),
                partition_of(key, 6)
            );
        }
        assert_eq!(p.partition(&cfg, None, b""), partition_of("", 6));
    }

    #[test]
    fn a_stream_that_gives_nothing_is_reopened_then_connected_anew() {
        assert_eq!(
            on_stall(10, 10, None),
            (Stall::Wait, None),
            "nothing past it"
        );
        assert_eq!(on_stall(10, 9, Some((4, 3))), (Stall::Wait, Some((4, 3))));
        assert_eq!(on_stall(10, 15, None), (Stall::Reopen, Some((10, 0))));
        assert_eq!(
            on_stall(10, 15, Some((4, 5))).0,
            Stall::Reopen,
            "a new offset"
        );
        // stuck at 10, whether or not more records came: connect anew on the 1st, 2nd,
        // 4th, 8th ... check after the re-open, wait on the others
        let mut last = Some((10, 0));
        let mut got = Vec::new();
        for readable in [15, 15, 20, 20, 20, 20, 20, 20, 20] {
            let stall;
            (stall, last) = on_stall(10, readable, last);
            got.push(stall == Stall::Reconnect);
        }
        let expect = [true, true, false, true, false, false, false, true, false];
        assert_eq!(got, expect);
        assert_eq!(last, Some((10, 9)));
    }

    #[test]
    fn a_gap_in_offsets_is_read_again_once() {
        assert_eq!(on_offset(5, 5, None), Gap::Yield);
        assert_eq!(
            on_offset(5, 4, None),
            Gap::Skip,
            "repeated by a re-opened stream"
        );
        assert_eq!(on_offset(5, 9, None), Gap::Reopen, "records 5..9 skipped");
        assert_eq!(
            on_offset(5, 9, Some((5, 9))),
            Gap::Yield,
            "the same gap again: gone"
        );
        assert_eq!(on_offset(5, 9, Some((2, 4))), Gap::Reopen, "a new gap");
        assert_eq!(
            on_offset(0, 120, None),
            Gap::Reopen,
            "evicted start: re-read once"
        );
    }

    /// A sink that queues sends like a producer and fails its first `fail_flushes` flushes
    /// after delivering half of what was queued (acknowledged in part, as a leader that
    /// stopped mid-batch), or fails the send of the `fail_send`th record once.
    struct Flaky {
        log: super::super::log::MemLog,
        queued: Vec<(String, Vec<u8>, Vec<u8>)>,
        fail_flushes: u32,
        fail_send: Option<usize>,
        sends: usize,
        reopened: u32,
    }

    impl Flaky {
        fn new(fail_flushes: u32, fail_send: Option<usize>) -> Flaky {
            use super::super::log::PartitionedLog;
            let log = super::super::log::MemLog::new();
            log.create_topic("t", 1).unwrap();
            Flaky {
                log,
                queued: Vec::new(),
                fail_flushes,
                fail_send,
                sends: 0,
                reopened: 0,
            }
        }

        fn delivered(&self) -> Vec<String> {
            self.log
                .all("t")
                .into_iter()
                .map(|(_, r)| String::from_utf8(r.value).unwrap())
                .collect()
        }
    }

    impl RecordSink for Flaky {
        async fn send(&mut self, topic: &str, key: &[u8], value: &[u8]) -> Result<(), LogError> {
            self.sends += 1;
            if self.fail_send == Some(self.sends) {
                self.fail_send = None;
                return Err(failed(topic, "the given SPU is not the leader"));
            }
            self.queued
                .push((topic.into(), key.to_vec(), value.to_vec()));
            Ok(())
        }

        async fn flush(&mut self) -> Result<(), LogError> {
            use super::super::log::PartitionedLog;
            let queued = std::mem::take(&mut self.queued);
            let half = if self.fail_flushes > 0 {
                queued.len() / 2
            } else {
                queued.len()
            };
            for (t, k, v) in &queued[..half] {
                self.log.append(t, k, v)?;
            }
            if self.fail_flushes > 0 {
                self.fail_flushes -= 1;
                return Err(failed("t", "socket closed"));
            }
            Ok(())
        }

        fn reopen(&mut self) {
            self.queued.clear();
            self.reopened += 1;
        }
    }

    fn lines(n: usize) -> Vec<String> {
        (0..n).map(|i| format!(r#"{{"line":{i}}}"#)).collect()
    }

    /// Runs `produce`'s loop over `input` into `sink`, sending everything to topic `t`.
    fn produce_into(
        sink: &mut Flaky,
        input: &[String],
        retry: Duration,
    ) -> Result<Vec<(String, u64)>, ClientError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(input.len() + 1);
        for l in input {
            tx.try_send(Ok(l.clone().into_bytes())).unwrap();
        }
        drop(tx);
        let cfg = FluvioConfig::default();
        let d = Decoder::new(Pii::new(b"k"));
        rt.block_on(produce_lines(rx, sink, Some("t"), &cfg, &d, retry))
    }

    /// Every line is in the log at least once, and the first copies are in input order.
    fn assert_all_delivered_in_order(sink: &Flaky, input: &[String]) {
        let got = sink.delivered();
        let mut seen = std::collections::HashSet::new();
        let firsts: Vec<&String> = got.iter().filter(|l| seen.insert(*l)).collect();
        assert_eq!(firsts, input.iter().collect::<Vec<_>>());
    }

    #[test]
    fn a_batch_the_cluster_did_not_acknowledge_is_sent_again_through_new_producers() {
        let input = lines(40);
        let mut sink = Flaky::new(2, None);
        let counts = produce_into(&mut sink, &input, Duration::from_secs(30)).unwrap();
        assert_eq!(
            counts,
            vec![("t".to_string(), 40)],
            "each line counted once"
        );
        assert_eq!(sink.reopened, 2, "opened again after each failed flush");
        assert_all_delivered_in_order(&sink, &input);
        // the half delivered before the first failure went out again: duplicates, not losses
        assert_eq!(sink.delivered().len(), 20 + 20 + 40);
    }

    #[test]
    fn a_refused_send_sends_the_unacknowledged_batch_again() {
        let input = lines(12);
        let mut sink = Flaky::new(0, Some(5));
        let counts = produce_into(&mut sink, &input, Duration::from_secs(30)).unwrap();
        assert_eq!(counts, vec![("t".to_string(), 12)]);
        assert_eq!(sink.reopened, 1);
        assert_eq!(
            sink.delivered(),
            input,
            "the four queued before it were sent once"
        );
    }

    #[test]
    fn a_cluster_that_never_acknowledges_is_an_error_after_the_retry_window() {
        let mut sink = Flaky::new(u32::MAX, None);
        let started = std::time::Instant::now();
        let e = produce_into(&mut sink, &lines(3), Duration::from_millis(400))
            .unwrap_err()
            .to_string();
        assert!(e.contains("socket closed"), "{e}");
        assert!(sink.reopened >= 2, "{}", sink.reopened);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(400),
            "gave up before the window: {took:?}"
        );
        assert!(took < Duration::from_secs(10));
    }

    #[test]
    fn a_produce_that_gets_no_answer_is_an_error_naming_the_setting() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let limit = Duration::from_millis(50);
        let e = rt
            .block_on(async {
                let deadline = tokio::time::Instant::now() + limit;
                let never = std::future::pending::<Result<(), String>>();
                bounded("decisions", deadline, limit, never).await
            })
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("decisions") && e.contains("fluvio.ack-timeout-ms"),
            "{e}"
        );
        let ok = rt.block_on(async {
            let deadline = tokio::time::Instant::now() + limit;
            bounded("decisions", deadline, limit, async { Ok::<_, String>(7) }).await
        });
        assert_eq!(ok.unwrap(), 7);
    }

    #[test]
    fn lines_are_routed_by_type_or_to_the_given_topic() {
        let cfg = FluvioConfig::default();
        let d = Decoder::new(Pii::new(b"k"));
        let line = br#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e13","type":"stock","ts":"2026-11-11T20:15:03+08:00","sku":"S1","location":"WH-1","op":"receive","qty":5}"#;
        assert_eq!(
            route_line(line, None, &cfg, &d),
            ("ops".to_string(), "sku/S1".to_string())
        );
        assert_eq!(route_line(line, Some("backfill"), &cfg, &d).0, "backfill");
        assert_eq!(
            route_line(b"junk", None, &cfg, &d),
            ("ops".into(), String::new())
        );
        assert_eq!(all_topics(&cfg).len(), 13);
    }

    #[test]
    fn a_dead_endpoint_is_an_error_naming_it_not_a_hang() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // a port nothing listens on (bound then released)
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = FluvioConfig {
            endpoint: format!("127.0.0.1:{port}"),
            connect_timeout_ms: 3_000,
            ..FluvioConfig::default()
        };
        let started = std::time::Instant::now();
        let e = rt.block_on(connect(&cfg)).err().unwrap().to_string();
        assert!(e.contains(&cfg.endpoint), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10), "{e}");
    }
}
