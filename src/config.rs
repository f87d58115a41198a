//! Configuration: embedded defaults, then a TOML file, then `OMNISTREAM_*` environment
//! variables. Unknown keys are errors that name the key, so a typo never falls back silently.

use omnistream_actors::Rules;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Whether `var` is one of the variables Kubernetes gives every pod for a Service named
/// `omnistream` (`OMNISTREAM_SERVICE_HOST`, `OMNISTREAM_SERVICE_PORT[_NAME]`,
/// `OMNISTREAM_PORT[_8080_TCP[_ADDR|_PORT|_PROTO]]`): no key is named so, and taken for keys
/// they would stop start-up in such a pod.
fn service_link(var: &str) -> bool {
    let Some(rest) = var.strip_prefix("OMNISTREAM_") else {
        return false;
    };
    ["SERVICE_HOST", "SERVICE_PORT", "PORT"]
        .iter()
        .any(|p| rest == *p || rest.strip_prefix(p).is_some_and(|r| r.starts_with('_')))
}

/// Environment variables that are not configuration keys (secrets, logging, and the test and
/// benchmark switches of ops/test-all.sh, which the service under test inherits); any
/// `OMNISTREAM_TEST_*` variable belongs to the test suite too.
const NOT_KEYS: &[&str] = &[
    "OMNISTREAM_PII_KEY",
    "OMNISTREAM_PII_KEY_FILE",
    "OMNISTREAM_LOG",
    "OMNISTREAM_LOG_FORMAT",
    "OMNISTREAM_TEST_CQL",
    "OMNISTREAM_NO_CASSANDRA",
    "OMNISTREAM_BENCH_EVENTS",
    "OMNISTREAM_BENCH_CODES",
    "OMNISTREAM_BENCH_DIR",
    "OMNISTREAM_FUZZ_SECS",
    "OMNISTREAM_FLUVIO_ENDPOINT",
    // the benchmark scripts' port (ops/bench-http.sh, ops/bench-sweep.sh), inherited by the
    // service they start
    "OMNISTREAM_BENCH_PORT",
];

/// Environment variables under this prefix hold access tokens (named by `token-env`), not keys.
pub const TOKEN_ENV_PREFIX: &str = "OMNISTREAM_TOKEN_";

/// The scopes a token can carry.
pub const SCOPES: &[&str] = &["ingest", "read", "review", "points", "members", "admin"];

/// Shortest accepted token, in bytes.
pub const MIN_TOKEN_LEN: usize = 16;

/// Everything the service reads at start-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct Config {
    /// Address the HTTP API listens on (port 0 picks a free port).
    pub listen: String,
    /// Which store keeps the log: `embedded` (redb under data-dir) or `cql`.
    pub store: StoreKind,
    /// Directory of the embedded store.
    pub data_dir: PathBuf,
    /// The embedded store's page cache, in MiB.
    pub store_cache_mb: usize,
    /// Group commit: 0 (the default) writes as soon as the shard has no request waiting, so
    /// batches grow with the load; a positive value waits this many milliseconds first...
    pub group_commit_ms: u64,
    /// ...or as soon as this many events wait.
    pub group_commit_events: usize,
    /// Commit from a thread of its own (the embedded store), so the shard applies the next
    /// batch while one is written and synced; false commits on the shard's thread.
    pub commit_thread: bool,
    /// Events accepted but not yet durable, at most; beyond, ingest answers 429.
    pub max_inflight_events: usize,
    /// Most entities (members, identities, orders, SKUs, codes, ...) held in memory; beyond,
    /// the least recently used are passivated to the store and load back when an event
    /// needs them, and a checkpoint is written whenever half the bound waits to be. 0 (the
    /// default): no bound. Works with both stores (entities passivate to `states.redb` or
    /// the CQL `states` table). What checkpoints cost: BENCHMARKS.md.
    pub resident_entities: usize,
    /// Write a checkpoint (changed entity states, timers, board) with the commit after this
    /// many events, and drop the log before it: a restart after a crash replays at most this
    /// many events. 0 (the default): only at shutdown, so a crash replays the log since the
    /// last graceful stop. A checkpoint encodes every entity changed since the previous one on
    /// the shard and writes them (to `states.redb`, or the CQL `states` table) from a thread of
    /// its own; every 100,000 events it cost about 30% of the throughput and most of a second
    /// on the tail here (BENCHMARKS.md).
    pub checkpoint_every_events: u64,
    /// Threads the entities run on, each owning the keys that hash to it (1 to 64; default
    /// 1). With two or more, each ingest request's events run together as one *epoch* on all
    /// shards (see the README's design section), and the state is the same for any number of
    /// them; with one, each event runs alone. The number may change between restarts: a
    /// restart replays the logged epochs as they ran.
    pub shards: usize,
    /// Codes the code registry's Bloom filter is sized for (1% false positives, about 1.2
    /// bytes a code): a scan of a code never scanned, most scans, then reads nothing from
    /// the store. More codes only raise the rate. Embedded store only.
    pub code_filter_codes: u64,
    /// Largest request body in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Most events in one ingest request (413 beyond).
    pub max_batch_events: usize,
    /// The CQL store (ScyllaDB or Cassandra), used when `store = "cql"`.
    pub cql: CqlConfig,
    /// Live ingest refuses events stamped more than this many seconds ahead of the server's
    /// clock (reason `future_timestamp`); 0 accepts any time. In `omnistream cluster`,
    /// process 0's value and clock, carried in each cut, count for every process.
    pub max_future_s: u64,
    /// At start-up, how long `run` keeps trying to reach a CQL store that does not answer
    /// (a node still booting, a restart of the cluster) before it gives up; 0 gives up at
    /// once. Other store errors (not migrated, a damaged file) stop start-up at once.
    pub store_wait_s: u64,
    /// Prometheus metrics and the latency windows of `/v1/stats`; `false` turns both off
    /// (`/metrics` then answers 404), to measure what they cost.
    pub metrics: bool,
    /// Fluvio topics as source and sinks (`[fluvio]`, off unless `enabled = true`).
    pub fluvio: FluvioConfig,
    /// Bearer-token access control of the HTTP API (`[auth]`, off unless `enabled = true`).
    pub auth: AuthConfig,
    /// TLS on the HTTP API (`[http]`, off unless `tls = true`).
    pub http: HttpConfig,
    /// Several processes dividing the shards over Fluvio (`[cluster]`, used by `omnistream
    /// cluster`; see the README's scale-out section).
    pub cluster: crate::cluster::ClusterConfig,
    /// Business rules.
    pub rules: Rules,
    /// The brand's stores by id (`[stores.ID]`): their name, region and kind beside their
    /// KPIs, and each listed before its first event (a store no rep ever visited shows as
    /// unvisited). Stores not named here are listed once they have events.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub stores: std::collections::BTreeMap<String, StoreRef>,
}

/// A store as the brand describes it (`[stores.ID]`); every key optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct StoreRef {
    /// Its name, as people know it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its region (`/v1/stores?region=` lists and totals a region's stores).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `own` (the brand's) or `partner` (a retailer's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// Fluvio as a source (input topics) and as sinks (output topics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct FluvioConfig {
    /// Consume the input topics and produce outputs when true; HTTP ingest keeps working.
    pub enabled: bool,
    /// `host:port` of the Fluvio SC.
    pub endpoint: String,
    /// Encrypt the connections to the SC and the SPUs with TLS (rustls), verifying the
    /// cluster's certificates against `tls-ca-file` for the name `tls-domain`.
    pub tls: bool,
    /// The DNS name the cluster's certificates are issued for; default: the host of
    /// `endpoint`. The SC is checked under this name and each SPU under
    /// `<SPU name>.<tls-domain>` (Fluvio's convention: certificates carry the name and `*.`
    /// the name), so it cannot be an IP address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_domain: Option<String>,
    /// PEM file of the certificate authorities to trust; needed with `tls = true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM file of this client's certificate chain, for a cluster that authenticates its
    /// clients (Fluvio's own TLS set-up does); with `tls-key-file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM file of the private key of `tls-cert-file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
    /// Milliseconds to wait for a connection before start-up fails naming the endpoint.
    pub connect_timeout_ms: u64,
    /// Offset-consumer id under which this process commits its consumer offsets in Fluvio.
    pub consumer: String,
    /// Partitions of every input topic (what `topics create` makes, and what keys hash over).
    pub partitions: u32,
    /// Partitions this process consumes (static assignment); empty: all of them.
    pub own_partitions: Vec<u32>,
    /// Replication factor `topics create` asks for.
    pub replication: u32,
    /// Records per batch handed to the shard at most.
    pub max_batch_records: usize,
    /// Records read but not yet handed to the shard, per partition, at most (backpressure).
    pub channel_records: usize,
    /// Commit the consumer offset to Fluvio after this many records (once durable). Each
    /// such commit stops the partition's reader until the store has caught up with it, so
    /// the batches in flight drain: not too often.
    pub commit_every_records: u64,
    /// ...or after this many milliseconds, whichever comes first.
    pub commit_every_ms: u64,
    /// Event-time alignment of the input partitions: a partition hands over a batch only when
    /// its first event is at most this many seconds ahead of every other partition that
    /// still has records (a backlog or a backfill in one topic then does not run the
    /// watermark ahead of the others, whose events would be refused as `too_late`); 0 turns
    /// it off.
    pub max_skew_s: u64,
    /// A partition without a record for this many milliseconds holds the others back no
    /// longer (a quiet topic; one with nothing to read at start-up holds nothing back).
    /// Keep it above the 5 s after which a stream that gives nothing is checked against
    /// the partition's end (the client can hold records back; see the README).
    pub idle_ms: u64,
    /// Produce durable outputs to the sink topics.
    pub sinks: bool,
    /// Producer linger in milliseconds.
    pub linger_ms: u64,
    /// Producer batch size in bytes.
    pub batch_bytes: usize,
    /// Milliseconds a produce (the sinks', `produce`'s) waits for the cluster to take and
    /// acknowledge its records before it opens its producers again and sends what is not
    /// acknowledged again: a producer whose partition leader stopped can otherwise wait
    /// for it for good.
    pub ack_timeout_ms: u64,
    /// When a record counts as written, for the sinks and `produce` (acknowledged) and for
    /// the source (readable): `read-committed` once every in-sync replica holds it, or
    /// `read-uncommitted` once the partition's leader does (faster with `replication` > 1,
    /// but a leader lost before its follower copied a record loses it). The same with one
    /// replica.
    pub isolation: FluvioIsolation,
    /// Topic names.
    pub topics: FluvioTopics,
}

impl Default for FluvioConfig {
    fn default() -> Self {
        FluvioConfig {
            enabled: false,
            endpoint: "127.0.0.1:9003".into(),
            tls: false,
            tls_domain: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            connect_timeout_ms: 5_000,
            consumer: "omnistream".into(),
            partitions: 1,
            own_partitions: Vec::new(),
            replication: 1,
            max_batch_records: 1_000,
            channel_records: 4_096,
            commit_every_records: 10_000,
            commit_every_ms: 1_000,
            max_skew_s: 21_600,
            idle_ms: 10_000,
            sinks: true,
            linger_ms: 10,
            batch_bytes: 64 << 10,
            ack_timeout_ms: 10_000,
            isolation: FluvioIsolation::ReadCommitted,
            topics: FluvioTopics::default(),
        }
    }
}

/// Names of the input and output topics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct FluvioTopics {
    /// `scan` events.
    pub scans: String,
    /// `click` events.
    pub clicks: String,
    /// `order` events.
    pub orders: String,
    /// `visit` events.
    pub visits: String,
    /// Every other event type.
    pub ops: String,
    /// Scan decisions and review resolutions.
    pub decisions: String,
    /// Points ledger, pending points, points debt.
    pub points: String,
    /// Member tags, tiers, merges, caps and campaign budgets.
    pub members: String,
    /// Order results.
    pub order_updates: String,
    /// Stock levels and alerts.
    pub stock: String,
    /// Dealer credit.
    pub credit: String,
    /// Diversions and flagged rings.
    pub alerts: String,
    /// Rejected input.
    pub dead_letter: String,
}

/// Why `name` cannot name a Fluvio topic, if it cannot.
pub fn not_a_topic_name(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    (!ok).then(|| {
        format!("`{name}` is not a topic name (lowercase letters, digits, `-`; at most 63)")
    })
}

impl FluvioTopics {
    /// Every topic name, inputs first.
    pub fn all(&self) -> [&String; 13] {
        [
            &self.scans,
            &self.clicks,
            &self.orders,
            &self.visits,
            &self.ops,
            &self.decisions,
            &self.points,
            &self.members,
            &self.order_updates,
            &self.stock,
            &self.credit,
            &self.alerts,
            &self.dead_letter,
        ]
    }
}

impl Default for FluvioTopics {
    fn default() -> Self {
        let s = |n: &str| n.to_string();
        FluvioTopics {
            scans: s("scans"),
            clicks: s("clicks"),
            orders: s("orders"),
            visits: s("visits"),
            ops: s("ops"),
            decisions: s("decisions"),
            points: s("points"),
            members: s("members"),
            order_updates: s("order-updates"),
            stock: s("stock"),
            credit: s("credit"),
            alerts: s("alerts"),
            dead_letter: s("dead-letter"),
        }
    }
}

impl FluvioConfig {
    /// The TLS keys of this section.
    pub fn tls_keys(&self) -> crate::tls::TlsKeys<'_> {
        crate::tls::TlsKeys {
            section: "fluvio",
            enabled: self.tls,
            ca: self.tls_ca_file.as_ref(),
            cert: self.tls_cert_file.as_ref(),
            key: self.tls_key_file.as_ref(),
        }
    }

    /// The name the cluster's certificates must carry: `tls-domain`, else the endpoint's
    /// host (without the brackets of an IPv6 address).
    pub fn tls_name(&self) -> String {
        match &self.tls_domain {
            Some(d) => d.clone(),
            None => {
                let host = self.endpoint.rsplit_once(':').map_or("", |(h, _)| h);
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string()
            }
        }
    }

    /// Checks values serde cannot; keys are reported as `fluvio.<key>`.
    pub fn check(&self) -> Result<(), ConfigError> {
        let ep = self.endpoint.rsplit_once(':');
        if !ep.is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) {
            return Err(err(
                "fluvio.endpoint",
                format!("`{}` is not a host:port address", self.endpoint),
            ));
        }
        self.tls_keys().client_config().map_err(tls_err)?;
        if self.tls {
            let name = self.tls_name();
            match rustls::pki_types::ServerName::try_from(name.as_str()) {
                Ok(rustls::pki_types::ServerName::DnsName(_)) => {}
                Ok(_) => {
                    return Err(err(
                        "fluvio.tls-domain",
                        format!(
                            "`{name}` is an IP address, but Fluvio checks each SPU's certificate \
                             for `<SPU name>.<tls-domain>`: set the DNS name the cluster's \
                             certificates carry (as `fluvio.local` with `*.fluvio.local`)"
                        ),
                    ))
                }
                Err(_) => {
                    return Err(err(
                        "fluvio.tls-domain",
                        format!("`{name}` is not a DNS name"),
                    ))
                }
            }
        } else if self.tls_domain.is_some() {
            return Err(err(
                "fluvio.tls-domain",
                "set without tls = true: connections would not be encrypted",
            ));
        }
        if self.consumer.is_empty() {
            return Err(err("fluvio.consumer", "must not be empty"));
        }
        if self.partitions == 0 {
            return Err(err("fluvio.partitions", "must be > 0"));
        }
        if let Some((i, p)) = self
            .own_partitions
            .iter()
            .enumerate()
            .find(|(i, p)| self.own_partitions[..*i].contains(p))
        {
            return Err(err(
                "fluvio.own-partitions",
                format!("partition {p} is listed twice (entry {i})"),
            ));
        }
        if let Some(p) = self.own_partitions.iter().find(|p| **p >= self.partitions) {
            return Err(err(
                "fluvio.own-partitions",
                format!(
                    "partition {p} does not exist (partitions = {})",
                    self.partitions
                ),
            ));
        }
        for (key, v) in [
            ("fluvio.connect-timeout-ms", self.connect_timeout_ms),
            ("fluvio.replication", u64::from(self.replication)),
            ("fluvio.max-batch-records", self.max_batch_records as u64),
            ("fluvio.channel-records", self.channel_records as u64),
            ("fluvio.commit-every-records", self.commit_every_records),
            ("fluvio.commit-every-ms", self.commit_every_ms),
            ("fluvio.idle-ms", self.idle_ms),
            ("fluvio.batch-bytes", self.batch_bytes as u64),
            ("fluvio.ack-timeout-ms", self.ack_timeout_ms),
        ] {
            if v == 0 {
                return Err(err(key, "must be > 0"));
            }
        }
        if self.idle_ms < 5_000 {
            return Err(err(
                "fluvio.idle-ms",
                "must be at least 5000: a stream silent for 5 s is first checked for records held \
                 back, and a partition must not count as idle before that",
            ));
        }
        if self.ack_timeout_ms > 600_000 {
            return Err(err(
                "fluvio.ack-timeout-ms",
                "must be at most 600000 (10 minutes)",
            ));
        }
        let names = self.topics.all();
        for (i, n) in names.iter().enumerate() {
            if let Some(why) = not_a_topic_name(n) {
                return Err(err("fluvio.topics", why));
            }
            if names[..i].contains(n) {
                return Err(err("fluvio.topics", format!("`{n}` is named twice")));
            }
        }
        Ok(())
    }

    /// The partitions this process consumes.
    pub fn owned(&self) -> Vec<u32> {
        if self.own_partitions.is_empty() {
            (0..self.partitions).collect()
        } else {
            self.own_partitions.clone()
        }
    }
}

/// The HTTP API's transport: plain HTTP (the default), or HTTPS with the service's
/// certificate, and optionally client certificates required (mutual TLS). The same keys as
/// the `cql` and `fluvio` sections, seen from the server's side: `tls-ca-file` names whom to
/// trust, here the clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct HttpConfig {
    /// Serve HTTPS (rustls, TLS 1.2 and 1.3) instead of plain HTTP on `listen`; needs
    /// `tls-cert-file` and `tls-key-file`. Applies to `run` and to `cluster` processes.
    pub tls: bool,
    /// PEM file of the certificate chain the service presents (its own certificate first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM file of the private key of `tls-cert-file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM file of the certificate authorities that sign clients' certificates: when set,
    /// every connection must present one (mutual TLS), before any request or token is read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// Every this many seconds the certificate and key files are checked, and read again when
    /// they changed (a renewal takes no restart; a pair that does not work leaves the one in
    /// use and is logged). 0: read once at start-up. The clients' CA file is read once.
    pub tls_reload_s: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            tls: false,
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_file: None,
            tls_reload_s: 10,
        }
    }
}

impl HttpConfig {
    /// The TLS keys of this section.
    pub fn tls_keys(&self) -> crate::tls::TlsKeys<'_> {
        crate::tls::TlsKeys {
            section: "http",
            enabled: self.tls,
            ca: self.tls_ca_file.as_ref(),
            cert: self.tls_cert_file.as_ref(),
            key: self.tls_key_file.as_ref(),
        }
    }

    /// `https` or `http`, for the addresses the service prints.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}

/// Bearer-token access control of the HTTP API. Secrets never live in the configuration:
/// each token names an environment variable or a file holding it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct AuthConfig {
    /// Require a token on every route (except the open ones below) when true.
    pub enabled: bool,
    /// `/metrics` answers without a token; when false it needs `read` or `admin`.
    pub open_metrics: bool,
    /// `/healthz` and `/readyz` answer without a token; when false they need any valid token.
    pub open_health: bool,
    /// The board routes (`/`, `/v1/board`, `/v1/board/stream`) also take the token as a
    /// `?token=` query parameter on GET, because a browser's EventSource cannot send headers.
    pub board_query_token: bool,
    /// The tokens: `{ name, scopes, token-env | token-file }`.
    pub tokens: Vec<TokenConfig>,
    /// Digests of the tokens read at load time (never serialized, never printed).
    #[serde(skip)]
    pub credentials: Vec<Credential>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: false,
            open_metrics: true,
            open_health: true,
            board_query_token: true,
            tokens: Vec::new(),
            credentials: Vec::new(),
        }
    }
}

/// One configured token: who it is, what it may do, and where its secret is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TokenConfig {
    /// A name for logs and `check-config` (the secret itself is never shown).
    pub name: String,
    /// Any of `ingest`, `read`, `review`, `admin`.
    pub scopes: Vec<String>,
    /// Environment variable holding the token (if it starts with `OMNISTREAM_`, it must start
    /// with `OMNISTREAM_TOKEN_`, which is not read as a configuration key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// File holding the token (surrounding whitespace trimmed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

/// A token as the service holds it: the SHA-256 digest of the secret, never the secret.
#[derive(Clone, PartialEq)]
pub struct Credential {
    /// The token's configured name.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// SHA-256 of the secret.
    pub digest: [u8; 32],
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// SHA-256 of a presented or configured token.
pub fn token_digest(token: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token).into()
}

impl AuthConfig {
    /// Checks the token list; keys are reported as `auth.<key>` or `auth.tokens.<name>.<key>`.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.enabled && self.tokens.is_empty() {
            return Err(err(
                "auth.tokens",
                "auth is enabled but no tokens are configured",
            ));
        }
        for (i, t) in self.tokens.iter().enumerate() {
            let at = format!(
                "auth.tokens.{}",
                if t.name.is_empty() {
                    i.to_string()
                } else {
                    t.name.clone()
                }
            );
            if t.name.is_empty() {
                return Err(err(format!("{at}.name"), "must not be empty"));
            }
            if self.tokens[..i].iter().any(|o| o.name == t.name) {
                return Err(err(format!("{at}.name"), "is used twice"));
            }
            if t.scopes.is_empty() {
                return Err(err(format!("{at}.scopes"), "needs at least one scope"));
            }
            if let Some(s) = t.scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
                return Err(err(
                    format!("{at}.scopes"),
                    format!("`{s}` is not a scope (one of {})", SCOPES.join(", ")),
                ));
            }
            match (&t.token_env, &t.token_file) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(err(&at, "needs exactly one of token-env and token-file"))
                }
                (Some(v), None)
                    if v.starts_with("OMNISTREAM_") && !v.starts_with(TOKEN_ENV_PREFIX) =>
                {
                    return Err(err(
                        format!("{at}.token-env"),
                        format!("`{v}` would be read as a configuration key; name it {TOKEN_ENV_PREFIX}..."),
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads every token's secret (from `env` or its file) into a digest; an unset variable,
    /// an unreadable file or a token shorter than 16 bytes is an error naming the key.
    pub fn resolve(&self, env: &[(String, String)]) -> Result<Vec<Credential>, ConfigError> {
        let mut out = Vec::new();
        for t in &self.tokens {
            let (key, secret) = match (&t.token_env, &t.token_file) {
                (Some(var), _) => {
                    let key = format!("auth.tokens.{}.token-env", t.name);
                    let v = env
                        .iter()
                        .rev()
                        .find(|(k, _)| k == var)
                        .map(|(_, v)| v.clone());
                    let Some(v) = v else {
                        return Err(err(key, format!("environment variable {var} is not set")));
                    };
                    (key, v)
                }
                (None, Some(path)) => {
                    let key = format!("auth.tokens.{}.token-file", t.name);
                    let v = std::fs::read_to_string(path)
                        .map_err(|e| err(&key, format!("cannot read {}: {e}", path.display())))?;
                    (key, v.trim().to_string())
                }
                (None, None) => return Err(err(format!("auth.tokens.{}", t.name), "no secret")),
            };
            if secret.len() < MIN_TOKEN_LEN {
                return Err(err(
                    key,
                    format!("the token is shorter than {MIN_TOKEN_LEN} characters"),
                ));
            }
            out.push(Credential {
                name: t.name.clone(),
                scopes: t.scopes.clone(),
                digest: token_digest(secret.as_bytes()),
            });
        }
        Ok(out)
    }
}

/// When a Fluvio record counts as written (`fluvio.isolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FluvioIsolation {
    /// A record is written once every in-sync replica holds it.
    ReadCommitted,
    /// A record is written once the partition's leader holds it.
    ReadUncommitted,
}

/// Where the service persists its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One redb file under `data-dir`; no servers.
    Embedded,
    /// A ScyllaDB or Cassandra cluster over CQL (`[cql]`).
    Cql,
}

/// Connection and consistency settings of the CQL store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct CqlConfig {
    /// `host:port` of nodes to discover the cluster from.
    pub contact_points: Vec<String>,
    /// Datacenter whose nodes are preferred (the one this service runs in); unset: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_datacenter: Option<String>,
    /// Keyspace holding omnistream's tables (letters, digits, `_`; at most 48).
    pub keyspace: String,
    /// Replication map `migrate` creates the keyspace with (CQL map literal).
    pub replication: String,
    /// User name for password authentication; unset: no authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password for `username`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// A file holding the password (a mounted secret), read at start-up instead of
    /// `password`; its trailing newline is not part of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Encrypt connections to the nodes with TLS (rustls), verifying each node's certificate
    /// against `tls-ca-file` by the node's IP address (the driver connects by address, so
    /// node certificates need their addresses as IP subject-alternative names).
    pub tls: bool,
    /// PEM file of the certificate authorities (or self-signed node certificates) to trust;
    /// needed with `tls = true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM file of this client's certificate chain, for nodes that require client
    /// certificates (`require_client_auth`); with `tls-key-file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM file of the private key of `tls-cert-file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
    /// Consistency level of reads (`ONE`, `LOCAL_ONE`, `QUORUM`, `LOCAL_QUORUM`, `ALL`...).
    pub read_consistency: String,
    /// Consistency level of writes.
    pub write_consistency: String,
    /// Client-side timeout of one request, in milliseconds.
    pub request_timeout_ms: u64,
    /// Attempts per write before a commit fails (writes are idempotent: same seq, same row).
    pub write_attempts: u32,
    /// Requests one commit keeps in flight at most.
    pub max_concurrent_requests: usize,
    /// Seconds an output row (the outbox: ledger entries, alerts, decisions, dead letters) is
    /// kept before the database expires it (`USING TTL`); 0 keeps them. Default 30 days. A
    /// sink that falls further behind than this loses the outputs that expired.
    pub outputs_ttl_s: u32,
    /// MiB of the read cache (moka) in front of the stored states: the states the engine
    /// loads back after passivating them, and the keys known to have none. 0 turns it off.
    pub cache_mb: u64,
    /// Seconds of the writer lease: one process writes a keyspace, and holds a lease row
    /// (a lightweight transaction) that it renews every fifth of this. It writes nothing once
    /// its last renewal is older than six tenths of this (a node that does not answer); the
    /// rest, less a second, is the margin for requests still under way. A process that
    /// stopped without releasing it (a crash) holds it this long, unless a process is started
    /// in the same place (host, boot, network namespace), which takes it over after the
    /// margin. 5 to 600.
    pub lease_s: u32,
}

impl Default for CqlConfig {
    fn default() -> Self {
        CqlConfig {
            contact_points: vec!["127.0.0.1:9042".into()],
            local_datacenter: None,
            keyspace: "omnistream".into(),
            replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
            username: None,
            password: None,
            password_file: None,
            tls: false,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            read_consistency: "LOCAL_QUORUM".into(),
            write_consistency: "LOCAL_QUORUM".into(),
            request_timeout_ms: 5_000,
            write_attempts: 3,
            max_concurrent_requests: 32,
            cache_mb: 64,
            outputs_ttl_s: DEFAULT_OUTPUTS_TTL_S,
            lease_s: 10,
        }
    }
}

/// How long output rows live in the CQL store by default: 30 days.
pub const DEFAULT_OUTPUTS_TTL_S: u32 = 30 * 86_400;

/// The longest TTL Cassandra and ScyllaDB accept: 20 years.
pub const MAX_CQL_TTL_S: u32 = 630_720_000;

/// The names the configuration accepts for consistency levels.
pub const CONSISTENCIES: &[&str] = &[
    "ANY",
    "ONE",
    "TWO",
    "THREE",
    "QUORUM",
    "ALL",
    "LOCAL_QUORUM",
    "EACH_QUORUM",
    "LOCAL_ONE",
];

impl CqlConfig {
    /// The TLS keys of this section.
    pub fn tls_keys(&self) -> crate::tls::TlsKeys<'_> {
        crate::tls::TlsKeys {
            section: "cql",
            enabled: self.tls,
            ca: self.tls_ca_file.as_ref(),
            cert: self.tls_cert_file.as_ref(),
            key: self.tls_key_file.as_ref(),
        }
    }

    /// Checks values serde cannot; keys are reported as `cql.<key>`.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.contact_points.is_empty() {
            return Err(err("cql.contact-points", "needs at least one host:port"));
        }
        let ks = &self.keyspace;
        let ok = !ks.is_empty()
            && ks.len() <= 48
            && ks.starts_with(|c: char| c.is_ascii_alphabetic())
            && ks.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(err(
                "cql.keyspace",
                format!("`{ks}` is not a keyspace name (a letter, then letters, digits or `_`; at most 48)"),
            ));
        }
        let r = self.replication.trim();
        if !(r.starts_with('{') && r.ends_with('}')) || r.contains(';') {
            return Err(err(
                "cql.replication",
                "must be a CQL map such as {'class': 'SimpleStrategy', 'replication_factor': 1}",
            ));
        }
        for (key, v) in [
            ("cql.read-consistency", &self.read_consistency),
            ("cql.write-consistency", &self.write_consistency),
        ] {
            if !CONSISTENCIES.contains(&v.to_ascii_uppercase().as_str()) {
                return Err(err(
                    key,
                    format!("`{v}` is not one of {}", CONSISTENCIES.join(", ")),
                ));
            }
        }
        if self.read_consistency.eq_ignore_ascii_case("ANY") {
            return Err(err("cql.read-consistency", "ANY applies to writes only"));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(err(
                "cql.password",
                "username and password are set together or not at all",
            ));
        }
        self.tls_keys().client_config().map_err(tls_err)?;
        if self.outputs_ttl_s > MAX_CQL_TTL_S {
            return Err(err(
                "cql.outputs-ttl-s",
                format!(
                    "at most {MAX_CQL_TTL_S} (20 years, the database's limit); 0 keeps outputs"
                ),
            ));
        }
        if self.request_timeout_ms == 0 {
            return Err(err("cql.request-timeout-ms", "must be > 0"));
        }
        // below 5 s the margin (0.4 × lease-s - 1 s) would be under a second
        if !(5..=600).contains(&self.lease_s) {
            return Err(err(
                "cql.lease-s",
                format!("{} is not between 5 and 600 seconds", self.lease_s),
            ));
        }
        if self.write_attempts == 0 {
            return Err(err("cql.write-attempts", "must be > 0"));
        }
        if self.max_concurrent_requests == 0 {
            return Err(err("cql.max-concurrent-requests", "must be > 0"));
        }
        Ok(())
    }

    /// A copy fit to print: the password replaced.
    pub fn redacted(&self) -> CqlConfig {
        let mut c = self.clone();
        if c.password.is_some() {
            c.password = Some("<redacted>".into());
        }
        c
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            store: StoreKind::Embedded,
            data_dir: PathBuf::from("omnistream-data"),
            store_cache_mb: 256,
            group_commit_ms: 0,
            group_commit_events: 2048,
            commit_thread: true,
            max_inflight_events: 50_000,
            resident_entities: 0,
            checkpoint_every_events: 0,
            shards: 1,
            code_filter_codes: 10_000_000,
            max_body_bytes: 8 << 20,
            max_batch_events: 10_000,
            cql: CqlConfig::default(),
            max_future_s: 300,
            store_wait_s: 60,
            metrics: true,
            fluvio: FluvioConfig::default(),
            auth: AuthConfig::default(),
            http: HttpConfig::default(),
            cluster: crate::cluster::ClusterConfig::default(),
            rules: Rules::default(),
            stores: Default::default(),
        }
    }
}

/// A configuration problem: the key (or file) and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("config {key}: {problem}")]
pub struct ConfigError {
    /// The key, environment variable or file.
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

fn tls_err(e: crate::tls::TlsError) -> ConfigError {
    err(e.key, e.why)
}

fn err(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        problem: problem.into(),
    }
}

impl Config {
    /// The keys that have no default and are not set: `check-config` prints the effective
    /// configuration as TOML, which cannot show an unset value, so it names these apart.
    pub fn unset_keys(&self) -> Vec<&'static str> {
        let (f, c) = (&self.fluvio, &self.cql);
        [
            ("fluvio.tls-domain", f.tls_domain.is_none()),
            ("fluvio.tls-ca-file", f.tls_ca_file.is_none()),
            ("fluvio.tls-cert-file", f.tls_cert_file.is_none()),
            ("fluvio.tls-key-file", f.tls_key_file.is_none()),
            ("cql.local-datacenter", c.local_datacenter.is_none()),
            ("cql.username", c.username.is_none()),
            ("cql.password", c.password.is_none()),
            ("cql.password-file", c.password_file.is_none()),
            ("cql.tls-ca-file", c.tls_ca_file.is_none()),
            ("cql.tls-cert-file", c.tls_cert_file.is_none()),
            ("cql.tls-key-file", c.tls_key_file.is_none()),
            ("http.tls-cert-file", self.http.tls_cert_file.is_none()),
            ("http.tls-key-file", self.http.tls_key_file.is_none()),
            ("http.tls-ca-file", self.http.tls_ca_file.is_none()),
            (
                "rules.store.utc-offset-minutes",
                self.rules.store.utc_offset_minutes.is_none(),
            ),
        ]
        .into_iter()
        .filter_map(|(k, unset)| unset.then_some(k))
        .collect()
    }

    /// Loads defaults, then the file if given, then the environment; checks values.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut value =
            toml::Value::try_from(Config::default()).map_err(|e| err("defaults", e.to_string()))?;
        if let Some(p) = file {
            let text = std::fs::read_to_string(p)
                .map_err(|e| err(p.display().to_string(), e.to_string()))?;
            let from_file: toml::Value =
                toml::from_str(&text).map_err(|e| err(p.display().to_string(), e.to_string()))?;
            merge(&mut value, from_file);
            // parse once here so an unknown key in the file is reported against the file
            Config::deserialize(value.clone())
                .map_err(|e| err(p.display().to_string(), e.to_string()))?;
        }
        let env: Vec<(String, String)> = env.into_iter().collect();
        let mut vars: Vec<(String, String)> = env
            .iter()
            .filter(|(k, _)| {
                k.starts_with("OMNISTREAM_")
                    && !k.starts_with("OMNISTREAM_TEST_")
                    && !k.starts_with(TOKEN_ENV_PREFIX)
                    && !NOT_KEYS.contains(&k.as_str())
                    && !service_link(k)
            })
            .cloned()
            .collect();
        vars.sort();
        for (var, raw) in vars {
            let path: Vec<String> = var["OMNISTREAM_".len()..]
                .split("__")
                .map(|p| p.to_ascii_lowercase().replace('_', "-"))
                .collect();
            set(&mut value, &path, parse_scalar(&raw)).map_err(|p| err(&var, p))?;
            Config::deserialize(value.clone()).map_err(|e| err(&var, e.to_string()))?;
        }
        if let Some(toml::Value::Table(rules)) = value.get_mut("rules") {
            inherit_default_campaign(rules);
        }
        let mut cfg = Config::deserialize(value).map_err(|e| err("config", e.to_string()))?;
        if let Some(f) = cfg.cql.password_file.take() {
            if cfg.cql.password.is_some() {
                return Err(err(
                    "cql.password-file",
                    "set together with cql.password: set one",
                ));
            }
            let text = std::fs::read_to_string(&f).map_err(|e| {
                err(
                    "cql.password-file",
                    format!("cannot read {}: {e}", f.display()),
                )
            })?;
            cfg.cql.password = Some(text.trim_end_matches(['\n', '\r']).to_string());
        }
        cfg.check()?;
        if cfg.auth.enabled {
            cfg.auth.credentials = cfg.auth.resolve(&env)?;
        }
        Ok(cfg)
    }

    /// Checks values serde cannot.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(err(
                "listen",
                format!("`{}` is not an ip:port address", self.listen),
            ));
        }
        if self.group_commit_events == 0 {
            return Err(err("group-commit-events", "must be > 0"));
        }
        let line = omnistream_schemas::decode::MAX_EVENT_BYTES;
        if self.max_body_bytes < line {
            return Err(err(
                "max-body-bytes",
                format!(
                    "{} is under one event's limit ({line} bytes): some valid events could never be sent",
                    self.max_body_bytes
                ),
            ));
        }
        if self.max_batch_events == 0 {
            return Err(err(
                "max-batch-events",
                "must be at least 1 (0 would refuse every request)",
            ));
        }
        if !(1..=64).contains(&self.shards) {
            return Err(err(
                "shards",
                format!("{} is not between 1 and 64", self.shards),
            ));
        }
        if self.max_inflight_events < self.max_batch_events {
            return Err(err(
                "max-inflight-events",
                "must be at least max-batch-events",
            ));
        }
        if self.store == StoreKind::Cql {
            self.cql.check()?;
        }
        // whether or not `run` consumes it: `topics create`, `produce` and `cluster` read the
        // section too, and check-config should not pass what they refuse
        self.fluvio.check()?;
        self.auth.check()?;
        self.http.tls_keys().server_config().map_err(tls_err)?;
        if let Err(crate::cluster::ClusterError::Config { key, why }) = self.cluster.check() {
            return Err(err(format!("cluster.{key}"), why));
        }
        for (key, name) in [
            ("cluster.control-topic", &self.cluster.control_topic),
            ("cluster.exchange-topic", &self.cluster.exchange_topic),
        ] {
            if self.fluvio.topics.all().contains(&name) {
                return Err(err(
                    key,
                    format!(
                        "`{name}` is one of fluvio.topics: the cluster needs topics of its own"
                    ),
                ));
            }
        }
        for (id, s) in &self.stores {
            let key = |k: &str| format!("stores.{id}.{k}");
            if id.is_empty() || id.len() > omnistream_schemas::decode::MAX_STR {
                return Err(err(format!("stores.{id}"), "a store id is 1 to 256 bytes"));
            }
            if omnistream_schemas::control_char(id).is_some() || id.trim() != id {
                return Err(err(
                    format!("stores.{id:?}"),
                    "a store id has no control character and no white space at an end (events \
                     could never name it)",
                ));
            }
            if let Some(k) = s
                .kind
                .as_deref()
                .filter(|k| !["own", "partner"].contains(k))
            {
                return Err(err(key("kind"), format!("`{k}` is not own or partner")));
            }
            for (k, v) in [("name", &s.name), ("region", &s.region)] {
                if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
                    return Err(err(key(k), "is empty: leave it out instead"));
                }
            }
        }
        self.rules
            .check()
            .map_err(|(k, why)| err(format!("rules.{k}"), why))
    }
}

/// Environment values: TOML scalars when they parse (numbers, booleans), else strings.
fn parse_scalar(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn set(root: &mut toml::Value, path: &[String], v: toml::Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key".into());
    };
    let mut cur = root;
    for p in parents {
        let table = cur
            .as_table_mut()
            .ok_or_else(|| format!("`{p}` is not a section"))?;
        cur = table
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    let table = cur
        .as_table_mut()
        .ok_or_else(|| format!("`{last}` has no parent section"))?;
    table.insert(last.clone(), v);
    Ok(())
}

/// Each campaign of `rules.campaigns` takes the keys it does not set from
/// `rules.default-campaign` (its `[fraud]` table key by key too): a campaign that sets only its
/// points keeps the brand's own thresholds, not the built-in ones. `rules` is the `[rules]`
/// table (or a rules file of `replay --rules`).
pub fn inherit_default_campaign(rules: &mut toml::Table) {
    let Some(base) = rules.get("default-campaign").cloned() else {
        return;
    };
    let Some(toml::Value::Table(campaigns)) = rules.get_mut("campaigns") else {
        return;
    };
    for (_, campaign) in campaigns.iter_mut() {
        if campaign.is_table() {
            // the default campaign, with the campaign's own keys over it
            let own = std::mem::replace(campaign, base.clone());
            merge(campaign, own);
        }
    }
}

/// Lays `over` on `base` key by key (tables merge; any other value, a list too, replaces).
pub fn merge_toml(base: &mut toml::Value, over: toml::Value) {
    merge(base, over);
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_table() && v.is_table() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

#[cfg(test)]
mod tests {
    /// Every optional key of the sections `check-config` prints is in `unset_keys`: the
    /// fields TOML leaves out when unset are those marked `skip_serializing_if`, two of
    /// them belong to `[auth]` tokens (an array of tables, shown as given) and three to
    /// `[stores.ID]` (a table per store, shown as given).
    #[test]
    fn unset_keys_names_every_optional_key() {
        let marked = include_str!("config.rs")
            .matches(concat!("skip_serializing_if = ", "\"Option::is_none\""))
            .count();
        let unset = super::Config::default().unset_keys();
        // and one of the rules' (marked in the actors crate)
        assert_eq!(unset.len(), marked - 2 - 3 + 1, "{unset:?}");
        let toml = toml::to_string(&super::Config::default()).unwrap();
        for key in unset {
            let name = key.split_once('.').unwrap().1;
            assert!(
                !toml.contains(&format!("\n{name} =")),
                "{key} has a default"
            );
        }
    }

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_then_file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "listen = \"127.0.0.1:9000\"\n[rules.points]\nfen-per-point = 50\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&f),
            env(&[
                ("OMNISTREAM_GROUP_COMMIT_MS", "20"),
                ("OMNISTREAM_RULES__STOCK__LOW_STOCK_ATP", "3"),
                ("OMNISTREAM_PII_KEY", "secret"),
                ("OMNISTREAM_TEST_CQL", "127.0.0.1:9042"),
                ("HOME", "/root"),
                // what Kubernetes sets for a Service named omnistream: not keys
                ("OMNISTREAM_SERVICE_HOST", "10.0.0.1"),
                ("OMNISTREAM_SERVICE_PORT", "8080"),
                ("OMNISTREAM_SERVICE_PORT_HTTP", "8080"),
                ("OMNISTREAM_PORT", "tcp://10.0.0.1:8080"),
                ("OMNISTREAM_PORT_8080_TCP_ADDR", "10.0.0.1"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:9000");
        assert_eq!(c.rules.points.fen_per_point, 50);
        assert_eq!(c.group_commit_ms, 20);
        assert_eq!(c.rules.stock.low_stock_atp, 3);
        assert_eq!(c.rules.points.expiry_days, 365, "untouched defaults stay");
    }

    /// A campaign takes what it does not set from the default campaign (the file's and the
    /// environment's), not from the built-in defaults.
    #[test]
    fn a_campaign_takes_what_it_does_not_set_from_the_default_campaign() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[rules.default-campaign]\npoints = 20\n[rules.default-campaign.fraud]\nreview-at = 30\n\
             [rules.campaigns.cny.fraud]\nblock-at = 90\n[rules.campaigns.mid]\npoints = 5\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&f),
            env(&[("OMNISTREAM_RULES__DEFAULT_CAMPAIGN__DAILY_CAP", "7")]),
        )
        .unwrap();
        let cny = &c.rules.campaigns["cny"];
        assert_eq!((cny.points, cny.daily_cap), (20, 7));
        assert_eq!((cny.fraud.review_at, cny.fraud.block_at), (30, 90));
        let mid = &c.rules.campaigns["mid"];
        assert_eq!((mid.points, mid.fraud.review_at), (5, 30));
        assert_eq!(
            mid.fraud.block_at, c.rules.default_campaign.fraud.block_at,
            "a key neither sets is the built-in default"
        );
        // a misspelt key in a campaign is still refused
        std::fs::write(&f, "[rules.campaigns.cny.fraud]\nreveiw-at = 30\n").unwrap();
        let e = Config::load(Some(&f), env(&[])).unwrap_err();
        assert!(e.to_string().contains("reveiw-at"), "{e}");
        // a bad value names the campaign's key as the file spells it
        for (toml, key) in [
            (
                "[rules.campaigns.x.fraud]\nreview-at = 80\nblock-at = 50\n",
                "rules.campaigns.x.fraud.review-at",
            ),
            (
                "[rules.campaigns.x]\npoints = -5\n",
                "rules.campaigns.x.points",
            ),
            (
                "[rules.campaigns.x]\nbudget = -1\n",
                "rules.campaigns.x.budget",
            ),
            (
                "[rules.default-campaign]\npoints = -5\n",
                "rules.default-campaign.points",
            ),
        ] {
            std::fs::write(&f, toml).unwrap();
            let e = Config::load(Some(&f), env(&[])).unwrap_err();
            assert!(e.to_string().contains(&format!("{key}:")), "{toml}: {e}");
        }
    }

    #[test]
    fn the_cluster_section_is_read_and_a_bad_value_names_its_key() {
        let c = Config::load(
            None,
            env(&[
                ("OMNISTREAM_CLUSTER__PROCESSES", "3"),
                ("OMNISTREAM_CLUSTER__PROCESS", "2"),
                ("OMNISTREAM_CLUSTER__SHARDS", "7"),
            ]),
        )
        .unwrap();
        assert_eq!(c.cluster.hosted(), vec![2, 5]);
        assert_eq!(c.cluster.epoch_records, 512, "untouched defaults stay");
        for (var, value, key) in [
            ("OMNISTREAM_CLUSTER__PROCESS", "3", "cluster.process"),
            ("OMNISTREAM_CLUSTER__SHARDS", "2", "cluster.shards"),
            (
                "OMNISTREAM_CLUSTER__EPOCH_RECORDS",
                "0",
                "cluster.epoch-records",
            ),
            (
                "OMNISTREAM_CLUSTER__EXCHANGE_TOPIC",
                "omnistream-epochs",
                "cluster.exchange-topic",
            ),
            (
                "OMNISTREAM_CLUSTER__EXCHANGE_TOPIC",
                "",
                "cluster.exchange-topic",
            ),
            (
                "OMNISTREAM_CLUSTER__EXCHANGE_TOPIC",
                "Bad!",
                "cluster.exchange-topic",
            ),
            (
                "OMNISTREAM_CLUSTER__CONTROL_TOPIC",
                "scans",
                "cluster.control-topic",
            ),
        ] {
            let e = Config::load(
                None,
                env(&[("OMNISTREAM_CLUSTER__PROCESSES", "3"), (var, value)]),
            )
            .unwrap_err();
            assert_eq!(e.key, key, "{e}");
        }
        let e = Config::load(None, env(&[("OMNISTREAM_CLUSTER__PROCESES", "3")])).unwrap_err();
        assert_eq!(e.key, "OMNISTREAM_CLUSTER__PROCESES");
        assert!(e.problem.contains("unknown field"), "{e}");
    }

    #[test]
    fn the_database_store_is_chosen_and_checked_through_the_environment() {
        let c = Config::load(
            None,
            env(&[
                ("OMNISTREAM_STORE", "cql"),
                (
                    "OMNISTREAM_CQL__CONTACT_POINTS",
                    "[\"10.0.0.1:9042\", \"10.0.0.2:9042\"]",
                ),
                ("OMNISTREAM_CQL__KEYSPACE", "brand_a"),
                ("OMNISTREAM_CQL__WRITE_CONSISTENCY", "local_one"),
            ]),
        )
        .unwrap();
        assert_eq!(c.store, StoreKind::Cql);
        assert_eq!(c.cql.contact_points, ["10.0.0.1:9042", "10.0.0.2:9042"]);
        assert_eq!(c.cql.keyspace, "brand_a");
        assert_eq!(c.cql.read_consistency, "LOCAL_QUORUM", "default kept");
        let e = Config::load(
            None,
            env(&[("OMNISTREAM_STORE", "cql"), ("OMNISTREAM_CQL__TLS", "true")]),
        )
        .unwrap_err();
        assert_eq!(e.key, "cql.tls-ca-file");
        assert!(e.problem.contains("PEM"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ca.pem");
        let tls_with = |f: &Path| {
            Config::load(
                None,
                env(&[
                    ("OMNISTREAM_STORE", "cql"),
                    ("OMNISTREAM_CQL__TLS", "true"),
                    ("OMNISTREAM_CQL__TLS_CA_FILE", f.to_str().unwrap()),
                ]),
            )
        };
        let e = tls_with(&missing).unwrap_err();
        assert_eq!(e.key, "cql.tls-ca-file");
        assert!(e.problem.contains("ca.pem"), "names the file: {e}");
        std::fs::write(&missing, "not a certificate\n").unwrap();
        let e = tls_with(&missing).unwrap_err();
        assert!(e.problem.contains("no certificate"), "{e}");
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        std::fs::write(&missing, pem).unwrap();
        let e = tls_with(&missing).unwrap_err();
        assert_eq!(
            e.key, "cql.tls-ca-file",
            "a certificate that does not parse: {e}"
        );
        let e = Config::load(
            None,
            env(&[
                ("OMNISTREAM_STORE", "cql"),
                ("OMNISTREAM_CQL__OUTPUTS_TTL_S", "700000000"),
            ]),
        )
        .unwrap_err();
        assert_eq!(e.key, "cql.outputs-ttl-s");
        assert!(e.problem.contains("20 years"), "{e}");
        for bad in ["4", "601"] {
            let e = Config::load(
                None,
                env(&[
                    ("OMNISTREAM_STORE", "cql"),
                    ("OMNISTREAM_CQL__LEASE_S", bad),
                ]),
            )
            .unwrap_err();
            assert_eq!(e.key, "cql.lease-s");
            assert!(e.problem.contains("between 5 and 600"), "{e}");
        }
        // the password from a file (a mounted secret), never with `password` too
        let pw = dir.path().join("cql.password");
        std::fs::write(&pw, "s3cret-from-a-file\n").unwrap();
        let with_file = |extra: &[(&str, &str)]| {
            let mut vars = vec![
                ("OMNISTREAM_STORE", "cql"),
                ("OMNISTREAM_CQL__USERNAME", "omni"),
                ("OMNISTREAM_CQL__PASSWORD_FILE", pw.to_str().unwrap()),
            ];
            vars.extend_from_slice(extra);
            Config::load(None, env(&vars))
        };
        let c = with_file(&[]).unwrap();
        assert_eq!(c.cql.password.as_deref(), Some("s3cret-from-a-file"));
        assert_eq!(c.cql.redacted().password.as_deref(), Some("<redacted>"));
        let e = with_file(&[("OMNISTREAM_CQL__PASSWORD", "x")]).unwrap_err();
        assert_eq!(e.key, "cql.password-file");
        std::fs::remove_file(&pw).unwrap();
        let e = with_file(&[]).unwrap_err();
        assert_eq!(e.key, "cql.password-file");
        assert!(e.problem.contains("cql.password"), "names the file: {e}");
        let e = Config::load(
            None,
            env(&[
                ("OMNISTREAM_STORE", "cql"),
                ("OMNISTREAM_CQL__KEYSPACE", "x; DROP KEYSPACE y"),
            ]),
        )
        .unwrap_err();
        assert_eq!(e.key, "cql.keyspace");
        let e = Config::load(
            None,
            env(&[
                ("OMNISTREAM_STORE", "cql"),
                ("OMNISTREAM_CQL__READ_CONSISTENCY", "MOST"),
            ]),
        )
        .unwrap_err();
        assert_eq!(e.key, "cql.read-consistency");
        let e = Config::load(None, env(&[("OMNISTREAM_STORE", "scylla")])).unwrap_err();
        assert!(e.problem.contains("scylla"), "{e}");
    }

    #[test]
    fn the_fluvio_section_is_read_checked_and_overridden() {
        // checked whether or not `run` consumes it (`topics create`, `produce` and `cluster`
        // read it too)
        for (pairs, key) in [
            (
                &[("OMNISTREAM_FLUVIO__PARTITIONS", "0")][..],
                "fluvio.partitions",
            ),
            (
                &[
                    ("OMNISTREAM_FLUVIO__PARTITIONS", "4"),
                    ("OMNISTREAM_FLUVIO__OWN_PARTITIONS", "[0, 0]"),
                ][..],
                "fluvio.own-partitions",
            ),
            (
                &[("OMNISTREAM_FLUVIO__IDLE_MS", "1000")][..],
                "fluvio.idle-ms",
            ),
            (
                &[("OMNISTREAM_FLUVIO__COMMIT_EVERY_MS", "0")][..],
                "fluvio.commit-every-ms",
            ),
        ] {
            let e = Config::load(None, env(pairs)).unwrap_err();
            assert_eq!(e.key, key, "{e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[fluvio]\nenabled = true\npartitions = 4\nown-partitions = [1, 3]\n[fluvio.topics]\nscans = \"scans-b\"\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&f),
            env(&[
                ("OMNISTREAM_FLUVIO__ENDPOINT", "10.0.0.5:9003"),
                ("OMNISTREAM_FLUVIO__LINGER_MS", "50"),
                ("OMNISTREAM_FLUVIO_ENDPOINT", "127.0.0.1:9003"),
            ]),
        )
        .unwrap();
        assert!(c.fluvio.enabled);
        assert_eq!(c.fluvio.endpoint, "10.0.0.5:9003");
        assert_eq!(c.fluvio.linger_ms, 50);
        assert_eq!(c.fluvio.owned(), [1, 3]);
        assert_eq!(c.fluvio.topics.scans, "scans-b");
        assert_eq!(c.fluvio.topics.clicks, "clicks", "default kept");
        assert_eq!(Config::default().fluvio.owned(), [0]);
        assert_eq!(c.fluvio.isolation, FluvioIsolation::ReadCommitted);
        assert_eq!(c.fluvio.ack_timeout_ms, 10_000);
        let iso = |v| env(&[("OMNISTREAM_FLUVIO__ISOLATION", v)]);
        let c = Config::load(None, iso("read-uncommitted")).unwrap();
        assert_eq!(c.fluvio.isolation, FluvioIsolation::ReadUncommitted);
        let e = Config::load(None, iso("committed")).unwrap_err();
        assert_eq!(e.key, "OMNISTREAM_FLUVIO__ISOLATION", "{e}");
        assert!(e.problem.contains("`committed`"), "{e}");
        let zero = ("OMNISTREAM_FLUVIO__ACK_TIMEOUT_MS", "0");
        let e =
            Config::load(None, env(&[("OMNISTREAM_FLUVIO__ENABLED", "true"), zero])).unwrap_err();
        assert_eq!(e.key, "fluvio.ack-timeout-ms");
        let huge = ("OMNISTREAM_FLUVIO__ACK_TIMEOUT_MS", "700000");
        let e =
            Config::load(None, env(&[("OMNISTREAM_FLUVIO__ENABLED", "true"), huge])).unwrap_err();
        assert_eq!(e.key, "fluvio.ack-timeout-ms");
        assert!(e.problem.contains("600000"), "{e}");

        std::fs::write(&f, "[fluvio]\nendpont = \"x:1\"\n").unwrap();
        let e = Config::load(Some(&f), env(&[])).unwrap_err();
        assert!(e.problem.contains("endpont"), "{e}");
        let e = Config::load(None, env(&[("OMNISTREAM_FLUVIO__LINGER", "5")])).unwrap_err();
        assert_eq!(e.key, "OMNISTREAM_FLUVIO__LINGER");
        assert!(e.problem.contains("linger"), "{e}");
        let e = Config::load(None, env(&[("OMNISTREAM_FLUVIO__TOPICS__SCAN", "s")])).unwrap_err();
        assert!(e.problem.contains("scan"), "{e}");
        let on = ("OMNISTREAM_FLUVIO__ENABLED", "true");
        let e =
            Config::load(None, env(&[on, ("OMNISTREAM_FLUVIO__ENDPOINT", "nohost")])).unwrap_err();
        assert_eq!(e.key, "fluvio.endpoint");
        let e = Config::load(
            None,
            env(&[on, ("OMNISTREAM_FLUVIO__OWN_PARTITIONS", "[2]")]),
        )
        .unwrap_err();
        assert_eq!(e.key, "fluvio.own-partitions");
        let e = Config::load(
            None,
            env(&[on, ("OMNISTREAM_FLUVIO__TOPICS__CLICKS", "scans")]),
        )
        .unwrap_err();
        assert_eq!(e.key, "fluvio.topics");
        assert!(e.problem.contains("twice"), "{e}");
        // TLS: the shared rules (src/tls.rs), the name checked
        let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
        let ca = tls.join("ca.pem");
        let ca = ca.to_str().unwrap();
        let c = Config::load(
            None,
            env(&[
                on,
                ("OMNISTREAM_FLUVIO__ENDPOINT", "fluvio.local:9003"),
                ("OMNISTREAM_FLUVIO__TLS", "true"),
                ("OMNISTREAM_FLUVIO__TLS_CA_FILE", ca),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.fluvio.tls_name(),
            "fluvio.local",
            "the endpoint's host by default"
        );
        // an IP address cannot name the SPUs (`<SPU name>.<tls-domain>`), given or defaulted
        for (endpoint, domain, ip) in [
            ("[::1]:9003", None, "::1"),
            ("127.0.0.1:9003", None, "127.0.0.1"),
            ("fluvio.local:9003", Some("10.0.0.7"), "10.0.0.7"),
        ] {
            let mut vars = vec![
                on,
                ("OMNISTREAM_FLUVIO__ENDPOINT", endpoint),
                ("OMNISTREAM_FLUVIO__TLS", "true"),
                ("OMNISTREAM_FLUVIO__TLS_CA_FILE", ca),
            ];
            vars.extend(domain.map(|d| ("OMNISTREAM_FLUVIO__TLS_DOMAIN", d)));
            let e = Config::load(None, env(&vars)).unwrap_err();
            assert_eq!(e.key, "fluvio.tls-domain");
            assert!(
                e.problem.contains(&format!("`{ip}` is an IP address")),
                "{e}"
            );
        }
        let e = Config::load(None, env(&[on, ("OMNISTREAM_FLUVIO__TLS", "true")])).unwrap_err();
        assert_eq!(e.key, "fluvio.tls-ca-file");
        let e = Config::load(None, env(&[on, ("OMNISTREAM_FLUVIO__TLS_CA_FILE", ca)])).unwrap_err();
        assert_eq!(e.key, "fluvio.tls-ca-file");
        assert!(e.problem.contains("without tls = true"), "{e}");
        let e = Config::load(
            None,
            env(&[
                on,
                ("OMNISTREAM_FLUVIO__TLS", "true"),
                ("OMNISTREAM_FLUVIO__TLS_CA_FILE", ca),
                ("OMNISTREAM_FLUVIO__TLS_DOMAIN", "not a name"),
            ]),
        )
        .unwrap_err();
        assert_eq!(e.key, "fluvio.tls-domain");
        let e = Config::load(
            None,
            env(&[on, ("OMNISTREAM_FLUVIO__TLS_DOMAIN", "f.example")]),
        )
        .unwrap_err();
        assert_eq!(e.key, "fluvio.tls-domain");
    }

    #[test]
    fn auth_tokens_are_read_from_the_environment_or_files_as_digests() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        let secret_file = dir.path().join("ops.token");
        std::fs::write(&secret_file, "  file-token-0123456789\n").unwrap();
        std::fs::write(
            &f,
            format!(
                "[auth]\nenabled = true\nopen-metrics = false\ntokens = [\n  {{ name = \"pos\", scopes = [\"ingest\"], token-env = \"OMNISTREAM_TOKEN_POS\" }},\n  {{ name = \"ops\", scopes = [\"read\", \"review\"], token-file = {:?} }},\n]\n",
                secret_file.display().to_string()
            ),
        )
        .unwrap();
        let c = Config::load(
            Some(&f),
            env(&[("OMNISTREAM_TOKEN_POS", "env-token-0123456789")]),
        )
        .unwrap();
        assert!(c.auth.enabled && !c.auth.open_metrics && c.auth.open_health);
        let creds = &c.auth.credentials;
        assert_eq!(creds.len(), 2);
        assert_eq!(creds[0].digest, token_digest(b"env-token-0123456789"));
        assert_eq!(creds[1].digest, token_digest(b"file-token-0123456789"));
        assert_eq!(creds[1].scopes, ["read", "review"]);
        let shown = format!("{c:?}{}", toml::to_string(&c).unwrap());
        assert!(
            !shown.contains("env-token") && !shown.contains("file-token"),
            "{shown}"
        );
        // keys under [auth] are checked like any other
        let e = Config::load(None, env(&[("OMNISTREAM_AUTH__OPEN_METRIC", "false")])).unwrap_err();
        assert!(
            e.problem.contains("open_metric") || e.problem.contains("open-metric"),
            "{e}"
        );
        let e = Config::load(
            None,
            env(&[(
                "OMNISTREAM_AUTH__TOKENS",
                r#"[{name = "x", scopes = ["read"], token-env = "OMNISTREAM_SECRET"}]"#,
            )]),
        )
        .unwrap_err();
        assert_eq!(e.key, "auth.tokens.x.token-env");
        let e = Config::load(
            None,
            env(&[(
                "OMNISTREAM_AUTH__TOKENS",
                r#"[{name = "x", scopes = ["read"], token-env = "A", token-file = "/b"}]"#,
            )]),
        )
        .unwrap_err();
        assert_eq!(e.key, "auth.tokens.x");
        // disabled: tokens are checked but no secret is read
        let c = Config::load(
            None,
            env(&[(
                "OMNISTREAM_AUTH__TOKENS",
                r#"[{name = "x", scopes = ["read"], token-env = "UNSET_VAR"}]"#,
            )]),
        )
        .unwrap();
        assert!(c.auth.credentials.is_empty());
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = Config::load(None, env(&[("OMNISTREAM_GROUP_COMIT_MS", "20")])).unwrap_err();
        assert_eq!(e.key, "OMNISTREAM_GROUP_COMIT_MS");
        assert!(e.problem.contains("unknown field"), "{e}");
        let e = Config::load(None, env(&[("OMNISTREAM_LISTEN", "localhost")])).unwrap_err();
        assert_eq!(e.key, "listen");
        // variables of the scripts around the service are not keys
        Config::load(None, env(&[("OMNISTREAM_BENCH_PORT", "18181")])).unwrap();
        // limits that would refuse every request
        for (var, key) in [
            ("OMNISTREAM_MAX_BODY_BYTES", "max-body-bytes"),
            ("OMNISTREAM_MAX_BATCH_EVENTS", "max-batch-events"),
        ] {
            let e = Config::load(None, env(&[(var, "0")])).unwrap_err();
            assert_eq!(e.key, key, "{e}");
        }
        let e = Config::load(
            None,
            env(&[("OMNISTREAM_RULES__POINTS__FEN_PER_POINT", "0")]),
        )
        .unwrap_err();
        assert_eq!(e.key, "rules.points.fen-per-point");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "lisen = \"x\"\n").unwrap();
        let e = Config::load(Some(&f), env(&[])).unwrap_err();
        assert!(
            e.key.ends_with("c.toml") && e.problem.contains("lisen"),
            "{e}"
        );
    }
}
