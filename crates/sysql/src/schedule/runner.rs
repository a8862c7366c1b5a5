//! Runs saved queries on their schedules and hands their results to sinks.
//!
//! A history query (`every <interval>`) is planned afresh at each run, so
//! `now()` is the run's, and its result goes out whole (`snapshot`) or as the
//! rows added and removed since the previous run (`diff`). A live query runs
//! continuously: a windowed one through `sysql_engine::window::run`, any
//! other as an unbounded stream (`sysql_engine::live_table::prepare_live`);
//! every row it emits is `added`.
//!
//! Each query is a task of its own, planned once when loaded so that bad SQL
//! is one error line at load time and nothing else is affected; a run that
//! fails later is reported once (until it succeeds again). The runner takes
//! its SQL sessions from a factory, so tests drive it with an `Engine` fed
//! synthetic events instead of a capture.

use super::diff::Diff;
use super::library::{Library, Results, SavedQuery, Schedule};
use super::sink::{Action, Actions, Output, Sink, SinkQueue, SinkSpec, Target};
use crate::app::now_ns;
use crate::exec::{default_qualifier, error_message, BeforeStatement};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::{collect, execute_stream, ExecutionPlan, ExecutionPlanProperties};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::DFParser;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sysql_engine::live_table::prepare_live;
use sysql_engine::window::{self, WindowQuery};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// The running queries' stats by name, shared with the Prometheus endpoint.
pub type Registry = Arc<Mutex<BTreeMap<String, Arc<QueryStats>>>>;

/// A fresh SQL session over the capture (or, in tests, a synthetic engine).
pub type Sessions = Arc<dyn Fn() -> datafusion::error::Result<SessionContext> + Send + Sync>;

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
    Window(Box<WindowQuery>),
    Stream,
}

/// Parses and plans a saved query without running it: the error is one line.
pub async fn check(ctx: &SessionContext, query: &SavedQuery) -> Result<Plan, String> {
    let qualifier = default_qualifier(ctx);
    let msg = |e: DataFusionError| error_message(&e, &qualifier);
    let statements = DFParser::parse_sql(&query.sql).map_err(msg)?;
    if statements.len() != 1 {
        return Err(format!("a saved query is one statement; this file has {}", statements.len()));
    }
    match query.schedule {
        Schedule::Every(period) => {
            let plan = ctx.sql(&query.sql).await.map_err(msg)?.create_physical_plan().await.map_err(msg)?;
            if plan.boundedness().is_unbounded() {
                return Err("it reads a live table, which never ends: make it '-- schedule: live', \
                            or read the history table (opens instead of live.opens)"
                    .into());
            }
            Ok(Plan::History { period })
        }
        Schedule::Live => {
            if let Some(w) = window::plan(ctx, &query.sql).await.map_err(msg)? {
                // Plan the per-window statement over an empty window.
                let schema = window_schema(&w)?;
                let empty = MemTable::try_new(schema, vec![vec![]]).map_err(msg)?;
                let check = ctx.clone();
                check.register_table("__window", Arc::new(empty)).map_err(msg)?;
                let planned = async { check.sql(&w.sql).await?.create_physical_plan().await };
                let planned = planned.await;
                check.deregister_table("__window").map_err(msg)?;
                planned.map_err(msg)?;
                return Ok(Plan::Window(Box::new(w)));
            }
            let plan = live_plan(ctx, &query.sql).await.map_err(msg)?;
            if !plan.boundedness().is_unbounded() {
                return Err("'-- schedule: live', but it reads no live table: read live.opens, live.connects \
                            or live.execs, or schedule it 'every 1m'"
                    .into());
            }
            prepare_live(plan, ctx.task_ctx()).map_err(msg)?;
            Ok(Plan::Stream)
        }
    }
}

/// The columns a windowed query's per-window statement reads.
fn window_schema(w: &WindowQuery) -> Result<SchemaRef, String> {
    let (_, schema) = sysql_engine::event_tables()
        .into_iter()
        .find(|(t, _)| *t == w.table)
        .ok_or_else(|| format!("no table {}", w.table.name()))?;
    let ts = sysql_engine::event::ts_type();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("window_start", ts.clone(), false));
    fields.push(Field::new("window_end", ts, false));
    fields.push(Field::new("window_lost", DataType::UInt64, false));
    Ok(Arc::new(Schema::new(fields)))
}

/// Plans a live query as the shell does: one partition, and batches of one
/// row, so nothing waits for a batch to fill.
async fn live_plan(ctx: &SessionContext, sql: &str) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    let (mut state, logical) = ctx.sql(sql).await?.into_parts();
    state.config_mut().options_mut().execution.target_partitions = 1;
    state.config_mut().options_mut().set("datafusion.execution.batch_size", "1")?;
    DataFrame::new(state, logical).create_physical_plan().await
}

/// Runs a history query once: syncs the capture, plans, collects.
async fn run_once(ctx: &SessionContext, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>), String> {
    if let Some(before) = ctx.state().config().get_extension::<BeforeStatement>() {
        (before.0)().await;
    }
    let qualifier = default_qualifier(ctx);
    let msg = |e: DataFusionError| error_message(&e, &qualifier);
    let plan = ctx.sql(sql).await.map_err(msg)?.create_physical_plan().await.map_err(msg)?;
    let schema = plan.schema();
    let batches = collect(plan, ctx.task_ctx()).await.map_err(msg)?;
    Ok((schema, batches))
}

/// What a scheduled query needs to run.
pub struct Job {
    pub ctx: SessionContext,
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
        let result = run_once(&job.ctx, &job.sql).await;
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
pub async fn run_live(job: Job, window: Option<Box<WindowQuery>>) {
    loop {
        let result = match &window {
            Some(w) => live_window(&job, w).await,
            None => live_stream(&job).await,
        };
        match result {
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

async fn live_window(job: &Job, w: &WindowQuery) -> Result<(), String> {
    let qualifier = default_qualifier(&job.ctx);
    let msg = |e: DataFusionError| error_message(&e, &qualifier);
    let engine = job.ctx.state().config().get_extension::<sysql_engine::Engine>();
    let engine = engine.ok_or("the session has no engine for live windows")?;
    // window::run registers each window as a table: in a session of its own.
    let ctx = engine.session().map_err(msg)?;
    window::run(&engine, &ctx, w, |batch| {
        emit(job, batch);
        Ok(())
    })
    .await
    .map_err(msg)
}

async fn live_stream(job: &Job) -> Result<(), String> {
    let qualifier = default_qualifier(&job.ctx);
    let msg = |e: DataFusionError| error_message(&e, &qualifier);
    let plan = live_plan(&job.ctx, &job.sql).await.map_err(msg)?;
    let (plan, task) = prepare_live(plan, job.ctx.task_ctx()).map_err(msg)?;
    let mut batches = execute_stream(plan, task).map_err(msg)?;
    while let Some(batch) = batches.next().await {
        emit(job, batch.map_err(msg)?);
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
        let ctx = (self.sessions)().map_err(|e| e.to_string())?;
        let plan = check(&ctx, query).await?;
        let queue = self.sink(&target, &query.name)?;
        let stats =
            Arc::new(if self.settings.keep_latest { QueryStats::keeping_latest() } else { QueryStats::default() });
        let job = Job { ctx, name: query.name.as_str().into(), sql: query.sql.clone(), queue, stats: stats.clone() };
        let task = match plan {
            Plan::History { period } => {
                let first = self.settings.first_run.unwrap_or(period);
                tokio::spawn(run_history(job, period, first, results))
            }
            Plan::Window(w) => tokio::spawn(run_live(job, Some(w))),
            Plan::Stream => tokio::spawn(run_live(job, None)),
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
