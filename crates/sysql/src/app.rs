//! Wiring: the capture feeds the engine on a reader task; the shell and
//! one-shot commands query the engine's tables.

use anyhow::Context;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use sysql_capture::{Capture, CaptureConfig, CaptureFilter, Hooks, Links, SetupError};
use sysql_engine::query::{Policy, QueryError, QuerySession};
use sysql_engine::redact::ArgvRedaction;
use sysql_engine::{Engine, EngineConfig, Ingest};
use tokio::sync::{mpsc, oneshot};

/// How long the reader waits for the kernel's wake-up before it looks at the
/// ring anyway (the kernel batches wake-ups): bounds syscall-to-table delay.
const POLL: Duration = Duration::from_millis(10);
/// Records handed over per read, so flush and sync requests are not starved.
const READ_BATCH: usize = 65536;
/// How often the kernel's loss counters are copied into `sysql_stats`.
const LOSS_REFRESH: Duration = Duration::from_millis(250);

/// A running capture.
pub struct Running {
    pub engine: Engine,
    /// When every program was attached.
    pub since: SystemTime,
    /// Tracepoints attached.
    pub tracepoints: usize,
    /// Syscalls traced (by the syscall table; with per-syscall
    /// tracepoints, 0).
    pub syscalls: usize,
    /// The capture filter, one line (empty: none).
    pub filter: String,
    requester: mpsc::Sender<Request>,
    /// The programs' attachments: dropped with the capture (all detached at
    /// once, in about one RCU grace period), while the reader reads on.
    _links: Option<Links>,
}

/// What the reader is asked: read what the ring holds, then reply.
struct Request {
    reply: oneshot::Sender<()>,
    /// Also make the rows still waiting for a later record (a clean stop).
    finish: bool,
}

/// What running live queries read, for the kernel's filter (history off):
/// `KEY=VALUE` terms, each an alternative of its key (none: the capture
/// filter alone). Replied to once the kernel applies it.
struct Narrowing {
    terms: Vec<String>,
    reply: oneshot::Sender<()>,
}

impl Running {
    /// A session over the capture, under `policy`.
    pub fn session(&self, policy: Policy) -> Result<QuerySession, QueryError> {
        QuerySession::new(&self.engine, policy)
    }

    /// Returns once every event the kernel had produced when it was called is
    /// in the tables (and the loss counters are current).
    pub async fn sync(&self) {
        self.engine.sync().await
    }

    /// At a clean stop: [`sync`](Self::sync), then the rows still waiting
    /// for a later record are made with what is known (a request without
    /// its response, a connect without its outcome: `NULL`), so that history
    /// holds them.
    pub async fn finish(&self) {
        let (reply, rx) = oneshot::channel();
        if self.requester.send(Request { reply, finish: true }).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// The line that tells a user (and a script) that capture is complete.
    pub fn capturing_line(&self) -> String {
        let syscalls = match self.syscalls {
            0 => String::new(),
            n => format!(", {n} syscalls"),
        };
        let filter = match self.filter.as_str() {
            "" => String::new(),
            f => format!("; kernel filter: {f}"),
        };
        format!("capturing since {} ({} tracepoints{syscalls}){filter}", clock_text(self.since), self.tracepoints)
    }
}

/// `HH:MM:SS.mmm UTC` of a wall-clock time.
pub fn clock_text(t: SystemTime) -> String {
    let ms = t.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let day_ms = (ms % 86_400_000) as u64;
    format!("{:02}:{:02}:{:02}.{:03} UTC", day_ms / 3_600_000, day_ms / 60_000 % 60, day_ms / 1000 % 60, day_ms % 1000)
}

pub fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// The engine's settings from the command line.
pub fn engine_config(args: &crate::cli::Args) -> Result<EngineConfig, String> {
    let redact_argv = ArgvRedaction::new(&args.redact_argv, !args.no_redact_argv)?;
    Ok(EngineConfig {
        retention: args.history,
        memory_cap_bytes: usize::try_from(args.history_memory).unwrap_or(usize::MAX),
        query_memory_bytes: usize::try_from(args.query_memory).unwrap_or(usize::MAX),
        queries_memory_bytes: usize::try_from(args.query_memory.saturating_mul(2)).unwrap_or(usize::MAX),
        payload: sysql_engine::payload::PayloadConfig { redact: args.redact_payload },
        clock_offset_ns: sysql_capture::clock_offset_ns(),
        redact_argv: std::sync::Arc::new(redact_argv),
        containers: sysql_engine::containers::ContainersConfig::host(),
        ..EngineConfig::default()
    })
}

/// Loads the kernel programs and starts the reader task on the runtime.
pub fn start(rt: &tokio::runtime::Runtime, args: &crate::cli::Args) -> Result<Running, SetupError> {
    start_with(rt, args, None)
}

/// [`start`], keeping history also in `store` (the agent).
pub fn start_with(
    rt: &tokio::runtime::Runtime,
    args: &crate::cli::Args,
    store: Option<std::sync::Arc<sysql_engine::store::Store>>,
) -> Result<Running, SetupError> {
    let ring_size = args.ring_size;
    let engine_config = engine_config(args).map_err(SetupError::Config)?;
    let ring_bytes = u32::try_from(ring_size)
        .map_err(|_| SetupError::Config(format!("ring buffer size {ring_size} is larger than 2 GiB")))?;
    let snap_len = u32::try_from(args.snap_len).unwrap_or(u32::MAX);
    let filter = CaptureFilter::parse(&args.capture_only, &args.capture_exclude).map_err(SetupError::Config)?;
    let config = CaptureConfig {
        ring_bytes,
        payloads: !args.no_payload,
        snap_len,
        filter: filter.clone(),
        ..CaptureConfig::default()
    };
    // AsyncFd registration needs the runtime's reactor.
    let mut capture = rt.block_on(async { Capture::start(&config) })?;
    let links = capture.take_links();
    let engine = match store {
        Some(store) => Engine::with_store(engine_config, store),
        None => Engine::new(engine_config),
    };
    engine.stats().set_kernel_filter(filter.describe_tables());
    // With no history kept, the kernel need capture only what running live
    // queries read (sysql_engine::capture_need).
    let (narrower, narrowings) = mpsc::unbounded_channel::<Narrowing>();
    if args.history.is_zero() && engine.store().is_none() {
        engine.capture_needs().activate(Box::new(move |terms| {
            let terms = terms
                .iter()
                .flatten()
                .flat_map(|(key, values)| values.iter().map(move |v| format!("{}={v}", key.name())))
                .collect();
            let (reply, applied) = oneshot::channel();
            let _ = narrower.send(Narrowing { terms, reply });
            Box::pin(async move {
                let _ = applied.await;
            })
        }));
    }
    let (requester, requests) = mpsc::channel(16);
    let syncs = requester.clone();
    engine.set_sync(Box::new(move || {
        let requester = syncs.clone();
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            if requester.send(Request { reply, finish: false }).await.is_ok() {
                let _ = rx.await;
            }
        })
    }));
    let tracepoints = capture.tracepoints().len();
    let syscalls = capture.syscalls_traced().len();
    let since = SystemTime::now();
    let ingest = engine.ingest();
    let narrowing = (filter.clone(), narrowings);
    rt.spawn(async move {
        if let Err(e) = read_loop(capture, ingest, requests, narrowing).await {
            eprintln!("sysql: capture stopped: {e:#}");
        }
    });
    Ok(Running { engine, since, tracepoints, syscalls, filter: filter.describe(), requester, _links: links })
}

async fn read_loop(
    mut capture: Capture,
    mut ingest: Ingest,
    mut requests: mpsc::Receiver<Request>,
    (filter, mut narrowings): (CaptureFilter, mpsc::UnboundedReceiver<Narrowing>),
) -> anyhow::Result<()> {
    let stats = ingest_stats(&ingest);
    let mut last_loss = std::time::Instant::now();
    loop {
        // When the ring was last found empty, every event submitted before
        // then has been read: the live watermark never passes that, so a
        // reader that falls behind holds windows back instead of declaring
        // events late.
        let started = now_ns();
        tokio::select! {
            n = async { capture.read(POLL, READ_BATCH, &mut |rec| ingest.push(rec)).await } => {
                if n.context("reading the ring buffer")? < READ_BATCH {
                    ingest.drained_at(started);
                }
            }
            Some(request) = requests.recv() => {
                // A live query that ended before this request lifted its
                // narrowing: the request sees the filter without it.
                if let Ok(first) = narrowings.try_recv() {
                    apply_narrowings(&mut capture, &filter, first, &mut narrowings, &stats);
                }
                // Read everything that was in the ring at the request (and no
                // more: a storm may refill it as fast as it is read), then publish.
                capture.catch_up(&mut |rec| ingest.push(rec));
                if request.finish {
                    ingest.finish_payloads();
                } else {
                    ingest.flush();
                }
                stats.set_kernel_lost(capture.kernel_lost()?);
                stats.set_kernel_filtered(capture.kernel_filtered()?);
                let _ = request.reply.send(());
            }
            Some(first) = narrowings.recv() => {
                apply_narrowings(&mut capture, &filter, first, &mut narrowings, &stats);
            }
        }
        ingest.tick(now_ns());
        if last_loss.elapsed() >= LOSS_REFRESH {
            stats.set_kernel_lost(capture.kernel_lost()?);
            stats.set_kernel_filtered(capture.kernel_filtered()?);
            last_loss = std::time::Instant::now();
        }
    }
}

/// Applies the latest of the narrowings waiting (`first` and those after
/// it) and answers them all.
fn apply_narrowings(
    capture: &mut Capture,
    filter: &CaptureFilter,
    first: Narrowing,
    waiting: &mut mpsc::UnboundedReceiver<Narrowing>,
    stats: &sysql_engine::Stats,
) {
    let mut latest = first;
    let mut replies = Vec::new();
    while let Ok(next) = waiting.try_recv() {
        replies.push(std::mem::replace(&mut latest, next).reply);
    }
    narrow(capture, filter, &latest.terms, stats);
    replies.push(latest.reply);
    for reply in replies {
        let _ = reply.send(());
    }
}

/// Sets the kernel's filter to the capture filter narrowed to `terms`; if
/// the kernel refuses it, keeps the capture filter (and says so).
fn narrow(capture: &mut Capture, filter: &CaptureFilter, terms: &[String], stats: &sysql_engine::Stats) {
    let mut applied = filter.narrowed(terms, capture.hooks() == Hooks::SyscallTable);
    if let Err(e) = capture.set_filter(&applied) {
        eprintln!("sysql: the kernel filter stays as it was given: narrowing it to what live queries read failed: {e}");
        applied = filter.clone();
        if let Err(e) = capture.set_filter(&applied) {
            eprintln!("sysql: restoring the capture filter: {e}");
        }
    }
    stats.set_kernel_filter_now(applied.describe_tables());
}

fn ingest_stats(ingest: &Ingest) -> std::sync::Arc<sysql_engine::Stats> {
    ingest.stats().clone()
}
