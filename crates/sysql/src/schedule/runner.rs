//! Runs saved queries on their schedules and hands their results to sinks.
//!
//! A history query (`every <interval>`) is prepared afresh at each run, so
//! `now()` is the run's, and its result goes out whole (`snapshot`) or as the
//! rows added and removed since the previous run (`diff`). A live query runs
//! continuously; every row it emits (a windowed query's rows as each window
//! closes) is `added`. Both run through the engine's statement path
//! (`sysql_engine::query`), with its policy: a saved query is one read-only
//! statement.
//!
//! Each query is a task of its own, prepared once when loaded so that bad SQL
//! is one error line at load time and nothing else is affected; a run that
//! fails later is reported once (until it succeeds again). The runner takes
//! its sessions from a factory, so tests drive it with an `Engine` fed
//! synthetic events instead of a capture.

use super::diff::Diff;
use super::library::{Library, Results, SavedQuery, Schedule};
use super::sink::{Action, Actions, Output, Sink, SinkQueue, SinkSpec, Target};
use crate::app::now_ns;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sysql_engine::query::{Kind, QueryError, QuerySession};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// The running queries' stats by name, shared with the Prometheus endpoint.
pub type Registry = Arc<Mutex<BTreeMap<String, Arc<QueryStats>>>>;

/// A fresh session over the capture (or, in tests, a synthetic engine).
pub type Sessions = Arc<dyn Fn() -> Result<QuerySession, QueryError> + Send + Sync>;

/// How long a live query that failed waits before it starts again.
const LIVE_RETRY: Duration = Duration::from_secs(10);

/// Choices the command line makes for every query whose header does not.
#[derive(Debug, Clone)]
pub struct Settings {
    pub sink: SinkSpec,
    pub results: Results,
    /// When a history query first runs; by default one interval after start
    /// (history is empty when sysql starts).
    pub first_run: Option<Duration>,
    /// Rows a sink may hold queued before results are dropped (and counted).
    pub queue_rows: usize,
    /// Keep each history query's latest result (for the Prometheus endpoint).
    pub keep_latest: bool,
}

/// What one query has done so far.
#[derive(Debug, Default)]
pub struct QueryStats {
    /// Runs of a history query; windows or batches of a live one.
    pub runs: AtomicU64,
    /// Rows handed to the sink.
    pub rows: AtomicU64,
    /// Rows the sink had no room for.
    pub dropped: AtomicU64,
    /// Runs that failed.
    pub errors: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Whether to keep the latest result of a history query (for Prometheus).
    keep_latest: bool,
    latest: Mutex<Option<RecordBatch>>,
}

impl QueryStats {
    /// Stats that also keep the latest result of a history query.
    pub fn keeping_latest() -> Self {
        QueryStats { keep_latest: true, ..QueryStats::default() }
    }

    /// Takes `batch` as the latest result.
    pub fn set_latest(&self, batch: RecordBatch) {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(batch);
    }

    /// The latest result of a history query, if kept.
    pub fn latest(&self) -> Option<RecordBatch> {
        self.latest.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Counts a failure; says it on stderr unless it is the one said last.
    fn failed(&self, name: &str, message: String) {
        self.errors.fetch_add(1, Relaxed);
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() != Some(message.as_str()) {
            eprintln!("sysql: schedule: {name}: {message}");
            *last = Some(message);
        }
    }

    fn succeeded(&self, name: &str) {
        if self.last_error.lock().unwrap_or_else(|e| e.into_inner()).take().is_some() {
            eprintln!("sysql: schedule: {name}: running again");
        }
    }

    /// The last failure, while it is not followed by a success.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn deliver(&self, queue: &SinkQueue, out: Output) -> bool {
        let rows = out.batch.num_rows() as u64;
        let sent = queue.send(out);
        if sent {
            self.rows.fetch_add(rows, Relaxed);
        } else {
            self.dropped.fetch_add(rows, Relaxed);
        }
        sent
    }
}

/// How a query runs, decided when it is loaded.
#[derive(Debug, Clone)]
pub enum Plan {
    History { period: Duration },
    Live,
}

/// Prepares a saved query without running it: the error is one line.
pub async fn check(session: &QuerySession, query: &SavedQuery) -> Result<Plan, String> {
    let statements = session.parse(&query.sql).map_err(|e| e.message)?;
    let [statement] = <[_; 1]>::try_from(statements)
        .map_err(|s: Vec<_>| format!("a saved query is one statement; this file has {}", s.len()))?;
    let prepared = session.prepare(statement).await.map_err(|e| e.message)?;
    match (query.schedule, prepared.kind()) {
        (_, Kind::Command) => Err("a saved query is a query; this one changes the session".into()),
        (Schedule::Every(period), Kind::Bounded) => Ok(Plan::History { period }),
        (Schedule::Every(_), Kind::Live | Kind::Window) => Err("it reads a live table, which never ends: make it \
                                                                  '-- schedule: live', or read the history table \
                                                                  (opens instead of live.opens)"
            .into()),
        (Schedule::Live, Kind::Live | Kind::Window) => Ok(Plan::Live),
        (Schedule::Live, Kind::Bounded) => Err("'-- schedule: live', but it reads no live table: read live.opens, \
                                                live.connects or live.execs, or schedule it 'every 1m'"
            .into()),
    }
}

/// Runs a history query once, through the statement path (which first
/// syncs with the capture), and collects its result; what it holds counts
/// towards the query's memory.
async fn run_once(session: &QuerySession, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>), String> {
    let mut stream = session.run(sql).await.map_err(|e| e.message)?;
    let schema = stream.schema().clone();
    let held = stream.reservation("saved query result");
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| e.message)?;
        held.try_grow(batch.get_array_memory_size()).map_err(|e| stream.error(&e).message)?;
        batches.push(batch);
    }
    Ok((schema, batches))
}

/// What a scheduled query needs to run.
pub struct Job {
    pub session: QuerySession,
    pub name: Arc<str>,
    pub sql: String,
    pub queue: SinkQueue,
    pub stats: Arc<QueryStats>,
}

/// History queries run one at a time: the memory a schedule needs at its peak
/// is that of its largest query, not the sum of all those due at once.
static HISTORY_RUNS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Runs a history query every `period`, the first time after `first`, forever.
pub async fn run_history(job: Job, period: Duration, first: Duration, results: Results) {
    let mut ticks = tokio::time::interval_at(Instant::now() + first, period);
    // A run that overruns its interval delays the next rather than bunching.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut diff = Diff::new();
    loop {
        ticks.tick().await;
        let time_ns = now_ns();
        job.stats.runs.fetch_add(1, Relaxed);
        let permit = HISTORY_RUNS.acquire().await;
        let result = run_once(&job.session, &job.sql).await;
        drop(permit);
        let (schema, batches) = match result {
            Ok(result) => result,
            Err(message) => {
                job.stats.failed(&job.name, message);
                continue;
            }
        };
        if job.stats.keep_latest {
            if let Ok(all) = concat_batches(&schema, &batches) {
                job.stats.set_latest(all);
            }
        }
        let out = |actions, batch| Output { query: job.name.clone(), time_ns, actions, batch };
        let delivered = match results {
            Results::Snapshot => concat_batches(&schema, &batches)
                .map(|all| job.stats.deliver(&job.queue, out(Actions::All(Action::Snapshot), all))),
            Results::Diff => diff.changes(&schema, &batches).map(|changes| {
                // Changes the sink had no room for are reported again by the next run.
                if job.stats.deliver(&job.queue, out(changes.actions.clone(), changes.batch.clone())) {
                    diff.commit(changes);
                }
                true
            }),
        };
        match delivered {
            Ok(_) => job.stats.succeeded(&job.name),
            Err(e) => job.stats.failed(&job.name, e.to_string()),
        }
    }
}

/// Runs a live query until it ends (a LIMIT); after a failure, starts it
/// again after a pause.
pub async fn run_live(job: Job) {
    loop {
        match live(&job).await {
            Ok(()) => {
                eprintln!("sysql: schedule: {}: the live query ended", job.name);
                return;
            }
            Err(message) => job.stats.failed(&job.name, message),
        }
        tokio::time::sleep(LIVE_RETRY).await;
    }
}

fn emit(job: &Job, batch: RecordBatch) {
    if batch.num_rows() == 0 {
        return;
    }
    job.stats.runs.fetch_add(1, Relaxed);
    let out = Output { query: job.name.clone(), time_ns: now_ns(), actions: Actions::All(Action::Added), batch };
    job.stats.deliver(&job.queue, out);
    job.stats.succeeded(&job.name);
}

async fn live(job: &Job) -> Result<(), String> {
    let mut stream = job.session.run(&job.sql).await.map_err(|e| e.message)?;
    while let Some(batch) = stream.next().await {
        emit(job, batch.map_err(|e| e.message)?);
    }
    Ok(())
}

/// A query that is running.
struct Running {
    query: SavedQuery,
    results: Results,
    target: Target,
    task: JoinHandle<()>,
    stats: Arc<QueryStats>,
}

/// An open sink, and the query that owns it if it is CSV (CSV files have
/// one query's columns).
struct OpenSink {
    sink: Sink,
    target: Target,
    csv_owner: Option<String>,
}

/// The running queries and their sinks.
pub struct Scheduler {
    sessions: Sessions,
    settings: Settings,
    /// Notified when stdout is closed.
    closed: Arc<Notify>,
    jobs: BTreeMap<String, Running>,
    /// By path; `None` is stdout.
    sinks: BTreeMap<Option<PathBuf>, OpenSink>,
    registry: Registry,
}

impl Scheduler {
    pub fn new(sessions: Sessions, settings: Settings, closed: Arc<Notify>) -> Self {
        let registry = Registry::default();
        Scheduler { sessions, settings, closed, jobs: BTreeMap::new(), sinks: BTreeMap::new(), registry }
    }

    /// The running queries' stats, kept current across reloads.
    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }

    fn publish(&self) {
        let running = self.jobs.iter().map(|(name, job)| (name.clone(), job.stats.clone())).collect();
        *self.registry.lock().unwrap_or_else(|e| e.into_inner()) = running;
    }

    /// Makes the running set match `library`: queries that are gone or
    /// changed stop, new and changed ones start, unchanged ones go on (and
    /// keep their previous results for diffs). Returns one line per file
    /// that could not be loaded or started.
    pub async fn apply(&mut self, library: &Library) -> Vec<String> {
        let mut errors: Vec<String> = library.errors.iter().map(ToString::to_string).collect();
        let wanted: BTreeMap<&str, (&SavedQuery, Results, Target)> = library
            .queries
            .iter()
            .map(|q| {
                let results = q.results.unwrap_or(self.settings.results);
                let target = q.sink.as_ref().unwrap_or(&self.settings.sink).target(&q.name);
                (q.name.as_str(), (q, results, target))
            })
            .collect();
        let stale: Vec<String> = self
            .jobs
            .iter()
            .filter(|(name, job)| wanted.get(name.as_str()) != Some(&(&job.query, job.results, job.target.clone())))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(job) = self.jobs.remove(&name) {
                job.task.abort();
                let _ = job.task.await;
            }
        }
        // A CSV file whose query is gone is free for another; sinks still
        // open are reused, so a restarted query never has two writers.
        for open in self.sinks.values_mut() {
            open.csv_owner = open.csv_owner.take().filter(|owner| self.jobs.contains_key(owner));
        }
        for (name, (query, results, target)) in wanted {
            if self.jobs.contains_key(name) {
                continue;
            }
            match self.start(query, results, target.clone()).await {
                Ok((task, stats)) => {
                    let job = Running { query: query.clone(), results, target, task, stats };
                    self.jobs.insert(name.to_string(), job);
                }
                Err(message) => errors.push(format!("{}: {message}", query.path.display())),
            }
        }
        self.close_unused();
        self.publish();
        errors
    }

    async fn start(
        &mut self,
        query: &SavedQuery,
        results: Results,
        target: Target,
    ) -> Result<(JoinHandle<()>, Arc<QueryStats>), String> {
        let session = (self.sessions)().map_err(|e| e.message)?;
        let plan = check(&session, query).await?;
        let queue = self.sink(&target, &query.name)?;
        let stats =
            Arc::new(if self.settings.keep_latest { QueryStats::keeping_latest() } else { QueryStats::default() });
        let job =
            Job { session, name: query.name.as_str().into(), sql: query.sql.clone(), queue, stats: stats.clone() };
        let task = match plan {
            Plan::History { period } => {
                let first = self.settings.first_run.unwrap_or(period);
                tokio::spawn(run_history(job, period, first, results))
            }
            Plan::Live => tokio::spawn(run_live(job)),
        };
        Ok((task, stats))
    }

    /// The queue of `target`'s sink, opening it if needed.
    fn sink(&mut self, target: &Target, query: &str) -> Result<SinkQueue, String> {
        let key = target.path().map(PathBuf::from);
        let csv = target.format() == super::sink::Format::Csv;
        if let Some(open) = self.sinks.get_mut(&key) {
            if open.target != *target {
                return Err(format!("{target} is already a sink with other max= or keep= settings"));
            }
            return match &open.csv_owner {
                Some(owner) if owner != query => Err(format!(
                    "{target} already holds the CSV results of {owner}: give each query its own CSV file, \
                     e.g. file:/var/log/sysql/{{name}}.csv"
                )),
                _ => Ok(open.sink.queue.clone()),
            };
        }
        let sink = Sink::open(target, self.settings.queue_rows, self.closed.clone())
            .map_err(|e| format!("cannot open the sink {target}: {e}"))?;
        let queue = sink.queue.clone();
        let csv_owner = csv.then(|| query.to_string());
        self.sinks.insert(key, OpenSink { sink, target: target.clone(), csv_owner });
        Ok(queue)
    }

    /// Closes sinks no running query writes to (their threads finish the
    /// queue in the background).
    fn close_unused(&mut self) {
        let used: Vec<Option<PathBuf>> = self.jobs.values().map(|j| j.target.path().map(PathBuf::from)).collect();
        let unused: Vec<_> = self.sinks.keys().filter(|k| !used.contains(k)).cloned().collect();
        for key in unused {
            if let Some(open) = self.sinks.remove(&key) {
                tokio::task::spawn_blocking(move || open.sink.close());
            }
        }
    }

    /// The running queries and what they have done, by name.
    pub fn queries(&self) -> impl Iterator<Item = (&SavedQuery, &Arc<QueryStats>)> {
        self.jobs.values().map(|j| (&j.query, &j.stats))
    }

    /// Stops every query and waits until the sinks have written what is queued.
    pub async fn shutdown(mut self) -> Vec<(String, Arc<QueryStats>)> {
        let mut stats = Vec::new();
        for (name, job) in std::mem::take(&mut self.jobs) {
            job.task.abort();
            let _ = job.task.await;
            stats.push((name, job.stats));
        }
        self.publish();
        for (_, open) in std::mem::take(&mut self.sinks) {
            let _ = tokio::task::spawn_blocking(move || open.sink.close()).await;
        }
        stats
    }
}
