//! The `omnistream` command: parses arguments and hands over to the library.

use clap::{Parser, Subcommand};
use omnistream::cli;
use omnistream::config::{Config, StoreKind};
use std::path::PathBuf;
use std::process::ExitCode;

/// omnistream: a real-time, actor-based stream processor for omnichannel consumer brands.
#[derive(Parser)]
#[command(name = "omnistream", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check JSON-lines feeds against the event contract: a summary per reason code; exit 1
    /// when any line is rejected.
    Validate {
        /// Files of JSON lines to check; `-` reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Write every rejected line with its reasons to this file (JSON lines; personal
        /// values in the copied line are hashed).
        #[arg(long, value_name = "OUT")]
        rejects: Option<PathBuf>,
        /// Print the summary as one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// The configuration `run` uses (its `max-future-s` says which events are too far
        /// ahead of the clock; `OMNISTREAM_*` variables apply as for `run`).
        #[command(flatten)]
        cfg: ConfigOpts,
    },
    /// Compare two `replay` output directories of the same input (the current rules, then
    /// the what-if ones): the rules that differ, members' tiers, tags and points in sum and
    /// member by member, scan decisions, refused orders, and the SKUs, dealers and stores that
    /// came out differently. Exit 0 when the two are the same, 1 when they differ, 2 when a
    /// directory cannot be read.
    Diff {
        /// The first replay's directory (the base).
        base: PathBuf,
        /// The second replay's directory (the what-if).
        what_if: PathBuf,
        /// How many changed members (and SKUs, dealers, stores) to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Write every changed member to this file, one JSON line each.
        #[arg(long, value_name = "OUT")]
        changes: Option<PathBuf>,
        /// Print the report as one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of the event contract.
    Schema,
    /// Run the service: HTTP API over the configured store (embedded by default: no servers).
    Run {
        #[command(flatten)]
        opts: ServiceOpts,
        #[command(flatten)]
        input: InputOpts,
    },
    /// Run the service and feed it generated traffic (the load tool's scenario) at a modest
    /// rate: open the printed address to watch the live board.
    Demo {
        #[command(flatten)]
        opts: ServiceOpts,
        /// Built-in scenario (smoke, default, double11, fraud-heavy) or a TOML file.
        #[arg(long, default_value = "smoke")]
        scenario: String,
        /// Events per second to send (at least 1).
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
        rate: u64,
        /// Rounds of the scenario to send, each with new consumers and later event time; 0
        /// sends until the service stops.
        #[arg(long, default_value_t = 0)]
        rounds: u64,
    },
    /// Load the configuration (defaults, file, OMNISTREAM_* variables), check it, open the
    /// store, and print the effective configuration.
    CheckConfig {
        #[command(flatten)]
        opts: ServiceOpts,
        /// On `store = "cql"`, check the keyspaces of every `omnistream cluster` process
        /// instead (`{keyspace}_p0` … `{keyspace}_p{processes-1}`).
        #[arg(long)]
        cluster: bool,
    },
    /// Create or upgrade the CQL schema (`store = "cql"`): idempotent, records the schema
    /// version; refuses a keyspace whose schema is newer than this binary.
    Migrate {
        #[command(flatten)]
        opts: ConfigOpts,
        /// Migrate the keyspaces of every `omnistream cluster` process instead
        /// (`{keyspace}_p0` … `{keyspace}_p{processes-1}`).
        #[arg(long)]
        cluster: bool,
    },
    /// Produce JSON-lines files to Fluvio as records keyed by the entity that owns each
    /// event (the `[fluvio]` section names the cluster and topics).
    Produce {
        #[command(flatten)]
        opts: ConfigOpts,
        /// Files of JSON lines; `-` reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Topic to produce to; `auto` picks each event type's topic (scans, clicks, orders,
        /// visits, ops).
        #[arg(long, default_value = "auto")]
        topic: String,
    },
    /// Run one process of a cluster that divides the shards over Fluvio (the `[cluster]`
    /// section: `processes`, this `process`, `shards`): it applies every epoch process 0
    /// cuts from the input topics, with its own shards, trading commands with the other
    /// processes through the exchange topic, and produces its outputs to the sink topics.
    /// Serves /healthz, /readyz and /metrics on `listen` (one port per process). Stops with a
    /// checkpoint on SIGINT or SIGTERM and prints what it did.
    Cluster {
        #[command(flatten)]
        opts: ServiceOpts,
    },
    /// Manage the Fluvio topics the configuration names.
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// Process JSON-lines files to the end through the entity logic; write final states and
    /// every output as JSON lines into a directory.
    Replay {
        /// Input files of events (JSON lines); `-` reads standard input.
        #[arg(long = "input", short = 'i', required = true, num_args = 1..)]
        inputs: Vec<PathBuf>,
        /// Directory for outputs.jsonl, ledger.jsonl, dead-letter.jsonl, members.jsonl,
        /// skus.jsonl, dealers.jsonl, stores.jsonl, state.json and rules.toml (the rules it
        /// ran under, whole).
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Business rules (TOML): a rules file or a configuration file; defaults when not
        /// given. Repeatable: each is laid over the ones before, key by key (the service's
        /// configuration, then a what-if file of the few keys it changes).
        #[arg(long)]
        rules: Vec<PathBuf>,
        /// After the input, move event time to this instant (RFC 3339) so timers fire
        /// (dormant tags, points expiry).
        #[arg(long)]
        until: Option<String>,
        /// Hold at most this many entities in memory; the rest are passivated to an
        /// embedded store under OUT/spill (deleted at the end). 0: hold everything.
        #[arg(long, default_value_t = 0)]
        resident: usize,
        /// Run the entities on this many shards (threads), each owning the keys that hash to
        /// it. The result does not depend on it: N shards give the state and outputs of one.
        #[arg(long, default_value_t = 1)]
        shards: usize,
        /// Events the shards run together in one epoch. 1 is the single engine's order,
        /// event by event; more trades that order within an epoch for throughput (see the
        /// README's design section). The result is a function of the input and this number.
        #[arg(long = "epoch-events", default_value_t = 1)]
        epoch_events: usize,
        /// Read every input first and replay the events in event-time order (ties in the
        /// order read): for exports made one per channel, each in its own order. Holds the
        /// whole input in memory.
        #[arg(long = "sort-by-time")]
        sort_by_time: bool,
        /// Exit with status 1 when any line was rejected (after writing everything, the
        /// dead letters included), for a scheduled backfill that must not pass short.
        #[arg(long)]
        strict: bool,
    },
}

#[derive(Subcommand)]
enum TopicsAction {
    /// Create every input and output topic with `fluvio.partitions` partitions, and the
    /// control topic (1 partition) and exchange topic (`cluster.processes` partitions) of
    /// `omnistream cluster` (existing topics are left as they are).
    Create {
        #[command(flatten)]
        opts: ConfigOpts,
    },
}

/// Runs a Fluvio client command on a small runtime of its own.
fn with_fluvio<T>(
    opts: &ConfigOpts,
    f: impl AsyncFnOnce(
        omnistream::fluvio::client::Client,
        Config,
    ) -> Result<T, omnistream::fluvio::client::ClientError>,
) -> anyhow::Result<T> {
    let cfg = opts.load()?;
    cfg.fluvio.check()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(async move {
        let client = omnistream::fluvio::client::Client::connect(&cfg.fluvio).await?;
        f(client, cfg).await
    })?)
}

/// The configuration's options of the commands that run no service (`migrate`, `produce`,
/// `topics`): `--listen` and `--data-dir` would do nothing there, so they are refused.
#[derive(clap::Args)]
struct ConfigOpts {
    /// Configuration file (TOML); every key has a default.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
}

impl ConfigOpts {
    fn load(&self) -> anyhow::Result<Config> {
        load_config(self.config.as_deref(), None, None)
    }
}

/// Options shared by `run`, `demo`, `cluster` and `check-config`.
#[derive(clap::Args)]
struct ServiceOpts {
    /// Configuration file (TOML); every key has a default.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Listen address, overriding the configuration (port 0 picks a free port).
    #[arg(long)]
    listen: Option<String>,
    /// Data directory, overriding the configuration.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// JSON-lines files for `run` to take in besides HTTP (and Fluvio).
#[derive(clap::Args, Debug)]
struct InputOpts {
    /// A JSON-lines file of events to take in, exactly once: read from the position stored
    /// for it (none: its start) to its end; several are read in the order given, and the last
    /// one is then followed for lines appended to it. Repeatable.
    #[arg(long = "input", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// A directory of JSON-lines files (`*.jsonl`, `*.jsonl.gz`; names starting with a dot
    /// are left alone) to take in, exactly once, in name order: each read to its end but the
    /// newest, which is followed; files that appear later are taken as they appear, a later
    /// name ending the followed file (daily files, rotated logs). `.gz` files are
    /// decompressed (also with `--input`), and never followed.
    #[arg(long = "input-dir", value_name = "DIR", conflicts_with = "files")]
    dir: Option<PathBuf>,
    /// Lines of an input file handed to the entities at a time (each batch is durable, with
    /// the file's position, before the next one goes).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    input_batch: u64,
    /// Stop gracefully (final checkpoint) once every input file (with `--input-dir`, those
    /// there at start-up) is read to its end and durable, instead of following the last one:
    /// a backfill into the service's store.
    #[arg(long)]
    stop_after_input: bool,
}

impl ServiceOpts {
    fn load(&self) -> anyhow::Result<Config> {
        load_config(
            self.config.as_deref(),
            self.listen.as_deref(),
            self.data_dir.as_deref(),
        )
    }
}

/// The configuration: defaults, the file, `OMNISTREAM_*` variables, then the flags.
fn load_config(
    config: Option<&std::path::Path>,
    listen: Option<&str>,
    data_dir: Option<&std::path::Path>,
) -> anyhow::Result<Config> {
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    // a flag wins over the variable of its key: the variable is dropped, not merely
    // outnumbered (the loader orders variables, and which of two copies came last
    // depended on their values)
    let mut flag = |key: &str, value: String| {
        env.retain(|(k, _)| k != key);
        env.push((key.into(), toml::Value::String(value).to_string()));
    };
    if let Some(l) = listen {
        flag("OMNISTREAM_LISTEN", l.to_string());
    }
    if let Some(d) = data_dir {
        flag("OMNISTREAM_DATA_DIR", d.display().to_string());
    }
    let cfg = omnistream::config::Config::load(config, env)?;
    // the test suite's variable, one underscore short of the key: easy to set by mistake
    if std::env::var_os("OMNISTREAM_FLUVIO_ENDPOINT").is_some()
        && std::env::var_os("OMNISTREAM_FLUVIO__ENDPOINT").is_none()
    {
        tracing::warn!(
            endpoint = %cfg.fluvio.endpoint,
            "OMNISTREAM_FLUVIO_ENDPOINT is read by the test suite only; the service's key is \
             fluvio.endpoint, OMNISTREAM_FLUVIO__ENDPOINT (two underscores)"
        );
    }
    for w in cfg.rules.warnings() {
        tracing::warn!("config rules.{w}");
    }
    Ok(cfg)
}

impl TryFrom<InputOpts> for omnistream::files::Inputs {
    type Error = anyhow::Error;

    fn try_from(o: InputOpts) -> anyhow::Result<Self> {
        let inputs = omnistream::files::Inputs {
            files: o.files,
            dir: o.dir,
            batch: o.input_batch as usize,
            stop_at_end: o.stop_after_input,
        };
        if inputs.stop_at_end && !inputs.any() {
            anyhow::bail!("--stop-after-input needs --input FILE or --input-dir DIR");
        }
        Ok(inputs)
    }
}

fn run_service(
    opts: &ServiceOpts,
    demo: Option<(String, u64, u64)>,
    inputs: omnistream::files::Inputs,
) -> anyhow::Result<ExitCode> {
    let mut cfg = opts.load()?;
    if demo.is_some() && cfg.http.tls {
        anyhow::bail!(
            "config http.tls: `demo` feeds its generator's events to itself over plain HTTP; \
             run it without [http] tls, or try HTTPS with `omnistream run`"
        );
    }
    if cfg.cluster.processes > 1 {
        tracing::warn!(
            processes = cfg.cluster.processes,
            "cluster.processes is read by `omnistream cluster` only: `run` is one process \
             holding every shard"
        );
    }
    // a fresh store each time, removed when the demo stops: the generator's ids are
    // deterministic, and a second demo into the same store would only meet duplicates
    let demo_store = (demo.is_some() && opts.data_dir.is_none())
        .then(|| std::env::temp_dir().join(format!("omnistream-demo-{}", std::process::id())));
    if let Some(dir) = &demo_store {
        cfg.data_dir = dir.clone();
        cli::note(format_args!(
            "demo: its store is {} (removed when it stops; --data-dir DIR keeps one)",
            dir.display()
        ));
    }
    let (key, keyed) = cli::pii_key_from_env()?;
    if !keyed {
        tracing::warn!("OMNISTREAM_PII_KEY is not set: personal data is hashed with the public development key");
    }
    let listener = std::net::TcpListener::bind(&cfg.listen)
        .map_err(|e| anyhow::anyhow!("config listen: cannot bind {}: {e}", cfg.listen))?;
    if let Some((scenario, rate, rounds)) = demo {
        let addr = listener.local_addr()?.to_string();
        std::thread::spawn(move || {
            if let Err(e) = cli::demo::feed(addr, scenario, rate, rounds) {
                cli::note(format_args!("demo: feeding stopped: {e:#}"));
            }
        });
    }
    // SIGHUP and POST /v1/admin/reload read the configuration again, as it was read here
    let data_dir = cfg.data_dir.clone();
    let (config, listen, flag_dir) = (
        opts.config.clone(),
        opts.listen.clone(),
        opts.data_dir.clone(),
    );
    let reload: omnistream::http::Reloader = std::sync::Arc::new(move || {
        let mut c = load_config(config.as_deref(), listen.as_deref(), flag_dir.as_deref())?;
        // a demo's own store stays its store
        c.data_dir = data_dir.clone();
        Ok(c)
    });
    let serving = omnistream::http::serve(cfg, listener, key, inputs, reload);
    actix_web::rt::System::new().block_on(serving)?;
    if let Some(dir) = demo_store {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => cli::note(format_args!("demo: removed its store {}", dir.display())),
            Err(e) => cli::note(format_args!(
                "demo: could not remove its store {}: {e}",
                dir.display()
            )),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `omnistream cluster`: one process of the cluster, on Fluvio, until a signal.
fn run_cluster(opts: &ServiceOpts) -> anyhow::Result<ExitCode> {
    use omnistream::cluster::{run_process, Setup, Stop};
    let cfg = opts.load()?;
    cfg.fluvio.check()?;
    let (key, keyed) = cli::pii_key_from_env()?;
    if !keyed {
        tracing::warn!("OMNISTREAM_PII_KEY is not set: personal data is hashed with the public development key");
    }
    let mut cfg = cfg;
    if cfg.store == StoreKind::Cql {
        // a keyspace per process, as a data-dir per process on the embedded store
        cfg.cql.keyspace =
            omnistream::cluster::process_keyspace(&cfg.cql.keyspace, cfg.cluster.process);
        // the derived name must still be one (at most 48 characters)
        cfg.cql.check()?;
        tracing::info!(keyspace = %cfg.cql.keyspace, "this process's keyspace");
    }
    let listener = std::net::TcpListener::bind(&cfg.listen).map_err(|e| {
        anyhow::anyhow!(
            "config listen: cannot bind {}: {e} (each cluster process on a host needs a \
             port of its own for /metrics: --listen or OMNISTREAM_LISTEN; port 0 picks a free one)",
            cfg.listen
        )
    })?;
    let metrics = std::sync::Arc::new(
        omnistream::metrics::Metrics::new(cfg.metrics)
            .with_campaigns(cfg.rules.campaigns.keys().map(|c| c.as_str())),
    );
    let addr = listener.local_addr()?;
    let http = omnistream::http::serve_cluster(&cfg, listener, metrics.clone())?;
    // the client's own tasks run on this runtime for as long as the process runs
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    // SIGTERM is taken before the process says it listens: a stop sent from then on, while
    // the store opens or Fluvio connects too, is a stop (the store closed, its CQL lease
    // given back), not the default action (the process killed)
    let term = {
        let _in = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok()
    };
    // a cluster process does not reload its rules: SIGHUP says so instead of ending the
    // process, its default action
    {
        let _in = rt.enter();
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(mut hup) => drop(rt.spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::warn!(
                        "SIGHUP: a cluster process does not reload its configuration; \
                         restart the processes with the new one"
                    );
                }
            })),
            Err(e) => tracing::warn!(error = %e, "SIGHUP cannot be taken"),
        }
    }
    let (stop, mut stop_rx) = tokio::sync::watch::channel(Stop::Run);
    // set once the process applies epochs: a stop before then has nothing to drain
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let runs = running.clone();
    rt.spawn(async move {
        let mut term = term;
        for mode in [Stop::Drain, Stop::Abandon] {
            // as before the helper: a failed wait (a signal that cannot be had) counts too
            let _ = omnistream::next_stop_signal(&mut term).await;
            let ran = runs.load(std::sync::atomic::Ordering::SeqCst);
            match mode {
                _ if !ran => tracing::info!("stopping before the process runs"),
                Stop::Drain => tracing::info!(
                    "stopping: the epoch under way finishes on every process, then a \
                     checkpoint (signal again to stop at once)"
                ),
                _ => tracing::warn!("stopping at once, without a checkpoint"),
            }
            let _ = stop.send(mode);
        }
    });
    let stopped_early = |http: actix_web::dev::ServerHandle, rt: &tokio::runtime::Runtime| {
        rt.block_on(http.stop(true));
        cli::note(format_args!(
            "omnistream cluster process {} stopped before it ran",
            cfg.cluster.process
        ));
        Ok(ExitCode::SUCCESS)
    };
    // standard error: standard output is the process's report, as JSON, when it stops
    cli::note(format_args!(
        "omnistream cluster process {} listening on {}://{addr} (/healthz, /readyz, /metrics)",
        cfg.cluster.process,
        cfg.http.scheme()
    ));
    let stopping = || *stop_rx.borrow() != Stop::Run;
    let store = omnistream::store::wait_for_unless(cfg.store_wait_s, &stopping, || {
        omnistream::store::open(&cfg, addr)
    })
    .map_err(|e| {
        let hint = if cfg.store == StoreKind::Cql {
            " (`omnistream migrate --cluster` creates every process's keyspace)"
        } else {
            ""
        };
        anyhow::anyhow!("{e}{hint}")
    })?;
    let Some(mut store) = store else {
        return stopped_early(http, &rt);
    };
    omnistream::store::check_pii_key(&mut *store, &key)?;
    if stopping() {
        store.close();
        return stopped_early(http, &rt);
    }
    let connected = rt.block_on(async {
        tokio::select! {
            c = omnistream::fluvio::client::Client::connect(&cfg.fluvio) => Some(c),
            _ = stop_rx.changed() => None,
        }
    });
    let Some(client) = connected else {
        store.close();
        return stopped_early(http, &rt);
    };
    let transport = omnistream::fluvio::client::FluvioTransport { client: client? };
    let setup = Setup {
        rules: cfg.rules.clone(),
        pii_key: key,
        topics: cfg.fluvio.topics.clone(),
        partitions: cfg.fluvio.partitions,
        cluster: cfg.cluster.clone(),
        codes: cfg.code_filter_codes,
        resident: cfg.resident_entities,
        sinks: cfg.fluvio.sinks,
        metrics: Some(metrics.clone()),
        align: omnistream::cluster::sequencer::Aligning {
            max_skew_s: cfg.fluvio.max_skew_s,
            idle: std::time::Duration::from_millis(cfg.fluvio.idle_ms),
            max_future_s: cfg.max_future_s,
        },
    };
    tracing::info!(
        process = cfg.cluster.process,
        processes = cfg.cluster.processes,
        shards = ?cfg.cluster.hosted(),
        "cluster process starts"
    );
    running.store(true, std::sync::atomic::Ordering::SeqCst);
    let report = run_process(transport, store, &setup, stop_rx, None);
    rt.block_on(http.stop(true));
    println!("{}", serde_json::to_string(&report?)?);
    drop(rt);
    Ok(ExitCode::SUCCESS)
}

fn check_config(cfg: &Config, cluster: bool) -> anyhow::Result<ExitCode> {
    let mut shown = cfg.clone();
    shown.cql = cfg.cql.redacted();
    println!("{}", toml::to_string_pretty(&shown)?);
    let unset = cfg.unset_keys();
    if !unset.is_empty() {
        println!("# not set (no default): {}", unset.join(", "));
    }
    // the personal-data key `run` would take, whatever the store: a key too short or a file
    // that cannot be read stops `run`, so it fails here too
    let (key, _) = cli::pii_key_from_env()?;
    match cfg.store {
        StoreKind::Embedded => {
            let dir = &cfg.data_dir;
            if dir.join("omnistream.redb").exists() {
                // read only: opening it to write would create its other files and upgrade an
                // older format (one way) before any `run` of this build was decided on
                use omnistream::store::Inspected;
                match omnistream::store::inspect_embedded(dir, &key)? {
                    // a config checked before a restart, the service still running on it
                    Inspected::Held => println!(
                        "# ok: configuration valid; store {} not opened: a running \
                         service holds it (`run` checks its personal-data key when it \
                         opens it)",
                        dir.display()
                    ),
                    // another key than the store's stops `run`, so it fails here too (an error
                    // of `inspect_embedded`)
                    Inspected::Read {
                        format,
                        key_recorded,
                    } => println!(
                        "# ok: configuration valid, store {} opens{}{}",
                        dir.display(),
                        if key_recorded {
                            ", written with this personal-data key"
                        } else {
                            " (its personal-data key is recorded by the next run)"
                        },
                        if format < omnistream::store::FORMAT_VERSION {
                            format!(
                                "; its format {format} is older: `run` upgrades it to {} (one \
                                 way: older builds cannot read it then)",
                                omnistream::store::FORMAT_VERSION
                            )
                        } else {
                            String::new()
                        }
                    ),
                }
            } else {
                // nothing is created here: `run` creates the directory, so its nearest
                // existing ancestor must be a directory
                let mut up = dir.as_path();
                while !up.exists() {
                    up = up.parent().unwrap_or(std::path::Path::new("."));
                    if up.as_os_str().is_empty() {
                        up = std::path::Path::new(".");
                    }
                }
                if !up.is_dir() {
                    anyhow::bail!(
                        "config data-dir: {} cannot be created: {} is not a directory",
                        dir.display(),
                        up.display()
                    );
                }
                println!(
                    "# ok: configuration valid; no store in {} yet (`run` creates it)",
                    dir.display()
                );
            }
        }
        StoreKind::Cql => {
            if !cluster && cfg.cluster.processes > 1 {
                println!(
                    "# cluster: `omnistream cluster` processes keep their states in {} … {} \
                     (`check-config --cluster` checks them); checked here: {}, what \
                     `omnistream run` uses",
                    omnistream::cluster::process_keyspace(&cfg.cql.keyspace, 0),
                    omnistream::cluster::process_keyspace(
                        &cfg.cql.keyspace,
                        cfg.cluster.processes - 1
                    ),
                    cfg.cql.keyspace
                );
            }
            let keyspaces = keyspaces(cfg, cluster);
            // another key than the keyspace's stops `run`, so it fails here too
            let fingerprint = omnistream::store::pii_key_fingerprint(&key);
            let migrate = if cluster {
                "omnistream migrate --cluster"
            } else {
                "omnistream migrate"
            };
            for ks in &keyspaces {
                let mut c = cfg.cql.clone();
                c.keyspace = ks.clone();
                let p = omnistream::cql::probe(&c)?;
                println!(
                    "# cql: cluster {:?}, release {}, keyspace {ks} {}, schema version {} (this binary: {})",
                    p.cluster_name,
                    p.release_version,
                    if p.keyspace_present { "present" } else { "absent" },
                    p.schema_version.map_or("none".to_string(), |v| v.to_string()),
                    omnistream::cql::SCHEMA_VERSION,
                );
                match &p.writer {
                    Some((who, left)) => println!(
                        "# cql: keyspace {ks} is written by {who}{} (a `run` on it now waits for that process)",
                        left.map_or(String::new(), |s| format!("; its writer lease ends in {s} s unless renewed"))
                    ),
                    None if p.schema_version.is_some() => {
                        println!("# cql: keyspace {ks}: no process writes it now")
                    }
                    None => {}
                }
                match p.schema_version {
                    Some(v) if v == omnistream::cql::SCHEMA_VERSION => {}
                    Some(v) if v > omnistream::cql::SCHEMA_VERSION => {
                        anyhow::bail!("keyspace {ks} has schema version {v}, newer than this binary: upgrade omnistream")
                    }
                    _ => anyhow::bail!("keyspace {ks} is not migrated: run `{migrate}`"),
                }
                match p.pii_key_check {
                    Some(fp) if fp == fingerprint => {
                        println!("# cql: keyspace {ks}: written with this personal-data key")
                    }
                    Some(_) => {
                        anyhow::bail!("keyspace {ks}: {}", omnistream::store::StoreError::PiiKey)
                    }
                    None => println!(
                        "# cql: keyspace {ks}: its personal-data key is recorded by the next run"
                    ),
                }
            }
            println!(
                "# ok: configuration valid, {} ready",
                if keyspaces.len() == 1 {
                    "keyspace".to_string()
                } else {
                    format!("{} keyspaces", keyspaces.len())
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The CQL keyspaces `migrate` and `check-config` work on: `run`'s, or with `--cluster` each
/// `omnistream cluster` process's.
fn keyspaces(cfg: &Config, cluster: bool) -> Vec<String> {
    if cluster {
        (0..cfg.cluster.processes)
            .map(|p| omnistream::cluster::process_keyspace(&cfg.cql.keyspace, p))
            .collect()
    } else {
        vec![cfg.cql.keyspace.clone()]
    }
}

fn migrate(cfg: &Config, cluster: bool) -> anyhow::Result<ExitCode> {
    if cfg.store != StoreKind::Cql {
        println!("store = \"embedded\": nothing to migrate (the embedded store upgrades itself)");
        return Ok(ExitCode::SUCCESS);
    }
    for keyspace in keyspaces(cfg, cluster) {
        let cql = omnistream::config::CqlConfig {
            keyspace,
            ..cfg.cql.clone()
        };
        // a derived name must still be a keyspace name (at most 48 characters)
        cql.check()?;
        let m = omnistream::cql::migrate(&cql)?;
        println!(
            "migrated keyspace {}: schema version {} -> {} ({} statements)",
            cql.keyspace,
            m.from.map_or("none".to_string(), |v| v.to_string()),
            m.to,
            m.statements
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `omnistream diff`: the report on standard output, every changed member to `changes`.
fn diff(
    base: &std::path::Path,
    what_if: &std::path::Path,
    limit: usize,
    changes: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let mut file = match changes {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let r = cli::diff::run(
        base,
        what_if,
        limit,
        file.as_mut().map(|f| f as &mut dyn std::io::Write),
    )?;
    if let Some(mut f) = file {
        std::io::Write::flush(&mut f)?;
    }
    if json {
        println!("{}", cli::diff::to_json(&r));
    } else {
        print!("{}", cli::diff::render(&r, base, what_if));
    }
    Ok(if cli::diff::same(&r) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn main() -> ExitCode {
    let filter = match std::env::var("OMNISTREAM_LOG") {
        Ok(v) if !v.trim().is_empty() => match tracing_subscriber::EnvFilter::try_new(&v) {
            Ok(f) => f,
            Err(e) => {
                cli::note(format_args!(
                    "config OMNISTREAM_LOG: `{v}` is not a log filter ({e}); e.g. `info`, `warn,omnistream=debug`"
                ));
                return ExitCode::from(2);
            }
        },
        _ => tracing_subscriber::EnvFilter::new("info,scylla=warn"),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // on a failed write it would report with eprintln!, which panics once standard
        // error is closed (`2>&1 | head`): the log line is lost, the service goes on
        .log_internal_errors(false)
        // colour only for a person at a terminal, not in files and pipes
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // OMNISTREAM_LOG_FORMAT=json: one JSON object per line, for log shippers
    let json_logs = match std::env::var("OMNISTREAM_LOG_FORMAT").as_deref() {
        Ok("json") => {
            logs.json().with_current_span(true).init();
            true
        }
        Ok("text") | Err(_) => {
            logs.init();
            false
        }
        Ok(other) => {
            cli::note(format_args!(
                "omnistream: error: config OMNISTREAM_LOG_FORMAT: `{other}` is not `json` or `text`"
            ));
            return ExitCode::from(2);
        }
    };
    let args = Cli::parse();
    if !matches!(
        args.command,
        Command::Run { .. } | Command::Demo { .. } | Command::Cluster { .. }
    ) {
        // a command whose output is read by another (`validate --json | head`) ends quietly
        // when the reader goes, as Unix filters do, instead of panicking on the failed write
        // (Rust ignores SIGPIPE). The service keeps ignoring it: it must outlive its stdout.
        // SAFETY: restores a default disposition before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    } else {
        // a service that lost its CQL writer lease to another process has a stale state:
        // it exits, and its supervisor starts it afresh from the log
        omnistream::cql::exit_when_fenced();
    }
    let result = match args.command {
        Command::Validate {
            files,
            rejects,
            json,
            cfg,
        } => cfg
            .load()
            .and_then(|c| cli::validate::run(&files, rejects.as_deref(), json, c.max_future_s)),
        Command::Replay {
            inputs,
            out,
            rules,
            until,
            resident,
            shards,
            epoch_events,
            sort_by_time,
            strict,
        } => {
            let parallel = cli::replay::Parallel {
                shards,
                epoch: epoch_events,
            };
            let replay = cli::replay::run(
                &inputs,
                &out,
                &rules,
                until.as_deref(),
                resident,
                parallel,
                sort_by_time,
            );
            replay.map(|s| {
                print!("{}", cli::replay::render(&s, &out));
                if strict && s.rejected > 0 {
                    eprintln!(
                        "omnistream: --strict: lines rejected: {} (see {})",
                        s.rejected,
                        out.join("dead-letter.jsonl").display()
                    );
                    return ExitCode::from(1);
                }
                ExitCode::SUCCESS
            })
        }
        Command::Diff {
            base,
            what_if,
            limit,
            changes,
            json,
        } => diff(&base, &what_if, limit, changes.as_deref(), json),
        Command::Run { opts, input } => input
            .try_into()
            .and_then(|input| run_service(&opts, None, input)),
        Command::Demo {
            opts,
            scenario,
            rate,
            rounds,
        } => run_service(&opts, Some((scenario, rate, rounds)), Default::default()),
        Command::CheckConfig { opts, cluster } => {
            opts.load().and_then(|cfg| check_config(&cfg, cluster))
        }
        Command::Migrate { opts, cluster } => opts.load().and_then(|cfg| migrate(&cfg, cluster)),
        Command::Produce { opts, files, topic } => cli::pii_from_env()
            .and_then(|(pii, _)| {
                with_fluvio(&opts, async |client, _| {
                    let topic = (topic != "auto").then_some(topic.as_str());
                    omnistream::fluvio::client::produce_files(client, &files, topic, pii.clone())
                        .await
                })
            })
            .map(|counts| {
                for (t, n) in counts {
                    println!("{t}: {n} records");
                }
                ExitCode::SUCCESS
            }),
        Command::Topics {
            action: TopicsAction::Create { opts },
        } => with_fluvio(&opts, async |client, cfg| {
            omnistream::fluvio::client::create_topics(&client, &cfg.cluster).await
        })
        .map(|topics| {
            for (t, what) in topics {
                println!("{t}: {what}");
            }
            ExitCode::SUCCESS
        }),
        Command::Cluster { opts } => run_cluster(&opts),
        Command::Schema => {
            print!("{}", omnistream_schemas::json_schema_text());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // a log shipper reading JSON lines gets why the process stopped as one of them
            // too (the plain line stays for a person)
            if json_logs {
                tracing::error!(error = format!("{e:#}"), "omnistream stopped on an error");
            }
            cli::note(format_args!("omnistream: error: {e:#}"));
            ExitCode::from(2)
        }
    }
}
