//! sysql's engine: decoded syscall events as Arrow batches, kept as recent
//! history and queried as DataFusion tables.
//!
//! Data path: [`Ingest`] (one writer) decodes ring buffer records into
//! per-table column builders and flushes batches into [`History`]; the
//! [`Engine`] hands out a DataFusion `SessionContext` whose tables read
//! snapshots of that history, plus `sysql_stats`.

pub mod capture_need;
pub mod containers;
pub mod event;
pub mod history;
pub mod ingest;
pub mod join;
pub mod like;
pub mod live;
pub mod live_table;
pub mod names;
pub mod payload;
pub mod provider;
pub mod query;
pub mod redact;
pub mod stats;
pub mod store;
pub mod window;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use history::History;
use live::LiveHub;
use live_table::LiveTable;
use provider::{HistoryTable, StatsTable};
use std::sync::Arc;
use std::time::Duration;
use sysql_events::Table;

pub use ingest::Ingest;
pub use stats::Stats;

/// How much history to keep and how often to publish it.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Events older than this are dropped from history.
    pub retention: Duration,
    /// Memory for history, all tables together; past it, the oldest batch of
    /// the table holding the most memory is evicted.
    pub memory_cap_bytes: usize,
    /// A table's rows are published as a batch at this many rows...
    pub flush_rows: usize,
    /// ...or after this long, whichever comes first.
    pub flush_interval: Duration,
    /// Added to the kernel's boot-time clock to get UTC (see
    /// `sysql_capture::clock_offset_ns`).
    pub clock_offset_ns: i64,
    /// While live queries run, batches are flushed this often.
    pub live_flush_interval: Duration,
    /// How long ordered live streams (windows, joins) wait for stragglers:
    /// a syscall slower than this reaches them late and is counted as such.
    pub lateness: Duration,
    /// Memory one statement may use (operator state, values its functions
    /// build, results its front end holds); a statement that needs more
    /// fails with "resources exhausted" (see [`query::memory`]).
    pub query_memory_bytes: usize,
    /// Memory all running statements share.
    pub queries_memory_bytes: usize,
    /// Patterns whose matches in `execs.argv` are stored as `***`.
    pub redact_argv: Arc<redact::ArgvRedaction>,
    /// What is kept of socket payloads (redaction).
    pub payload: payload::PayloadConfig,
    /// Where cgroups are, for `containers` and every row's `container_id`
    /// (none by default: the binary asks the host, tests give a tree).
    pub containers: containers::ContainersConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            retention: Duration::from_secs(3600),
            memory_cap_bytes: 1 << 30,
            flush_rows: 4096,
            flush_interval: Duration::from_millis(100),
            clock_offset_ns: 0,
            live_flush_interval: Duration::from_millis(10),
            lateness: Duration::from_millis(200),
            query_memory_bytes: 2 << 30,
            queries_memory_bytes: 4 << 30,
            redact_argv: Arc::new(redact::ArgvRedaction::defaults()),
            payload: payload::PayloadConfig::default(),
            containers: containers::ContainersConfig::default(),
        }
    }
}

/// The event tables and their schemas.
pub fn event_tables() -> [(Table, SchemaRef); sysql_events::TABLE_COUNT] {
    Table::ALL.map(|t| (t, event::schema(t)))
}

/// What a bounded statement waits for before it runs: every event captured
/// up to now in the tables (the capture's sync).
pub type SyncFn = Box<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// Shared state behind the tables; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    config: Arc<EngineConfig>,
    history: Arc<History>,
    live: Arc<LiveHub>,
    stats: Arc<Stats>,
    containers: Arc<containers::Containers>,
    budget: Arc<query::memory::QueryBudget>,
    process_limit: Arc<query::memory::ProcessLimit>,
    sync: Arc<std::sync::OnceLock<SyncFn>>,
    /// Durable history, when the engine keeps one (the agent) or reads one
    /// (a recording).
    store: Option<Arc<store::Store>>,
    /// A recording: live tables replay the store (at this pace, or as
    /// fast as a statement takes rows).
    replay: Option<Option<f64>>,
    /// What running live scans need captured (see [`capture_need`]).
    needs: Arc<capture_need::CaptureNeeds>,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        let stats = Arc::new(Stats::default());
        let retention = i64::try_from(config.retention.as_nanos()).unwrap_or(i64::MAX);
        let history = Arc::new(History::new(retention, config.memory_cap_bytes, stats.clone()));
        let lateness = i64::try_from(config.lateness.as_nanos()).unwrap_or(i64::MAX);
        let live = Arc::new(LiveHub::new(lateness, stats.clone()));
        let budget = Arc::new(query::memory::QueryBudget::new(config.queries_memory_bytes));
        let process_limit =
            Arc::new(query::memory::ProcessLimit::new(config.memory_cap_bytes, config.queries_memory_bytes));
        let containers = Arc::new(containers::Containers::new(config.containers.clone()));
        Engine {
            config: Arc::new(config),
            history,
            live,
            stats,
            containers,
            budget,
            process_limit,
            sync: Arc::new(std::sync::OnceLock::new()),
            store: None,
            replay: None,
            needs: Arc::default(),
        }
    }

    /// An engine over a recording (a state directory, read only): its live
    /// tables replay it in event time, at `pace` times the recorded pace, or
    /// as fast as a statement takes rows.
    pub fn recording(config: EngineConfig, store: Arc<store::Store>, pace: Option<f64>) -> Self {
        let mut engine = Engine::with_store(config, store);
        engine.replay = Some(pace);
        engine
    }

    /// The pace of a recording's replay, if this engine reads a recording.
    pub fn replay_pace(&self) -> Option<Option<f64>> {
        self.replay
    }

    /// An engine whose history is also on disk in `store`: entries that
    /// leave memory unwritten go to the store, and queries read both.
    pub fn with_store(config: EngineConfig, store: Arc<store::Store>) -> Self {
        let mut engine = Engine::new(config);
        engine.history.attach_spill(store.clone(), store.next_ids());
        engine.store = Some(store);
        engine
    }

    /// The durable history, if any.
    pub fn store(&self) -> Option<&Arc<store::Store>> {
        self.store.as_ref()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Memory all running statements share.
    pub fn budget(&self) -> &Arc<query::memory::QueryBudget> {
        &self.budget
    }

    /// The process's memory limit, checked between a statement's batches.
    pub fn process_limit(&self) -> &query::memory::ProcessLimit {
        &self.process_limit
    }

    /// Sets what bounded statements wait for before they run (once).
    pub fn set_sync(&self, sync: SyncFn) {
        let _ = self.sync.set(sync);
    }

    /// Waits until every event captured up to now is in the tables (at once
    /// if nothing feeds the engine).
    pub async fn sync(&self) {
        if let Some(sync) = self.sync.get() {
            sync().await;
        }
    }

    /// What running live scans need captured. A front end whose engine
    /// keeps no history activates it, so the kernel skips what no running
    /// live query reads.
    pub fn capture_needs(&self) -> &Arc<capture_need::CaptureNeeds> {
        &self.needs
    }

    /// The writer that feeds this engine. Use one at a time.
    pub fn ingest(&self) -> Ingest {
        Ingest::new(self.history.clone(), self.live.clone(), self.stats.clone(), self.containers.clone(), &self.config)
    }

    /// The cgroups seen (the `containers` table).
    pub fn containers(&self) -> &Arc<containers::Containers> {
        &self.containers
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    pub fn history(&self) -> &Arc<History> {
        &self.history
    }

    pub fn live(&self) -> &Arc<LiveHub> {
        &self.live
    }

    /// A SQL session with every table registered.
    pub fn session(&self) -> datafusion::error::Result<SessionContext> {
        // The engine rides along, so the shell can reach live streams.
        let mut config = SessionConfig::new().with_information_schema(true).with_extension(Arc::new(self.clone()));
        config.options_mut().extensions.insert(query::memory::QueryMemory::default());
        // No spilling to temporary files: sysql runs as root and writes no
        // files of its own accord; a query past its memory fails instead.
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.config.query_memory_bytes, 1.0)
            .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
            .build_arc()?;
        // Joins of two live tables bounded by time plan as sysql's own
        // operator (`join.rs`), so EXPLAIN shows what runs.
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(join::LiveJoinRule))
            .build();
        let ctx = SessionContext::new_with_state(state);
        // Functions that build values check them against the statement's memory.
        query::memory::guard_functions(&ctx);
        // `%`-only LIKE patterns in WHERE clauses match segment by segment (like.rs).
        let like = like::SegmentLike::udf();
        ctx.register_udf(like.as_ref().clone());
        ctx.add_optimizer_rule(Arc::new(like::SegmentLikeRule::new(like)));
        for (table, schema) in event_tables() {
            let history = HistoryTable::new(table, schema, self.history.clone(), self.store.clone());
            ctx.register_table(table.name(), Arc::new(history))?;
        }
        let stats = StatsTable::new(self.stats.clone(), self.history.clone(), self.live.clone(), self.store.clone());
        ctx.register_table("sysql_stats", Arc::new(stats))?;
        ctx.register_table("sysql_gaps", Arc::new(provider::GapsTable::new(self.store.clone())))?;
        ctx.register_table("sysql_columns", Arc::new(provider::columns_table()?))?;
        ctx.register_table("containers", Arc::new(containers::ContainersTable::new(self.containers.clone())))?;
        let catalog = ctx.catalog("datafusion").expect("the default catalog exists");
        catalog.register_schema("live", Arc::new(MemorySchemaProvider::new()))?;
        for (table, schema) in event_tables() {
            let live = LiveTable::new(table, schema, self.live.clone(), self.needs.clone());
            ctx.register_table(format!("live.{}", table.name()), Arc::new(live))?;
        }
        Ok(ctx)
    }
}
