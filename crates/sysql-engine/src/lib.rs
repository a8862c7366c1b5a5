//! sysql's engine: decoded syscall events as Arrow batches, kept as recent
//! history and queried as DataFusion tables.
//!
//! Data path: [`Ingest`] (one writer) decodes ring buffer records into
//! per-table column builders and flushes batches into [`History`]; the
//! [`Engine`] hands out a DataFusion `SessionContext` whose tables read
//! snapshots of that history, plus `sysql_stats`.

pub mod event;
pub mod history;
pub mod ingest;
pub mod names;
pub mod provider;
pub mod stats;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::prelude::{SessionConfig, SessionContext};
use history::History;
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
    /// Memory for history, all tables together; the oldest batch is evicted
    /// first when it is exceeded.
    pub memory_cap_bytes: usize,
    /// A table's rows are published as a batch at this many rows...
    pub flush_rows: usize,
    /// ...or after this long, whichever comes first.
    pub flush_interval: Duration,
    /// Added to the kernel's boot-time clock to get UTC (see
    /// `sysql_capture::clock_offset_ns`).
    pub clock_offset_ns: i64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            retention: Duration::from_secs(3600),
            memory_cap_bytes: 1 << 30,
            flush_rows: 4096,
            flush_interval: Duration::from_millis(100),
            clock_offset_ns: 0,
        }
    }
}

/// The event tables and their schemas.
pub fn event_tables() -> [(Table, SchemaRef); 3] {
    [
        (Table::Opens, event::opens::schema()),
        (Table::Connects, event::connects::schema()),
        (Table::Execs, event::execs::schema()),
    ]
}

/// Shared state behind the tables; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    config: EngineConfig,
    history: Arc<History>,
    stats: Arc<Stats>,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        let stats = Arc::new(Stats::default());
        let retention = i64::try_from(config.retention.as_nanos()).unwrap_or(i64::MAX);
        let history = Arc::new(History::new(retention, config.memory_cap_bytes, stats.clone()));
        Engine { config, history, stats }
    }

    /// The writer that feeds this engine. Use one at a time.
    pub fn ingest(&self) -> Ingest {
        Ingest::new(
            self.history.clone(),
            self.stats.clone(),
            self.config.clock_offset_ns,
            self.config.flush_rows,
            self.config.flush_interval,
        )
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    pub fn history(&self) -> &Arc<History> {
        &self.history
    }

    /// A SQL session with every table registered.
    pub fn session(&self) -> datafusion::error::Result<SessionContext> {
        let config = SessionConfig::new().with_information_schema(true);
        let ctx = SessionContext::new_with_config(config);
        for (table, schema) in event_tables() {
            ctx.register_table(table.name(), Arc::new(HistoryTable::new(table, schema, self.history.clone())))?;
        }
        ctx.register_table("sysql_stats", Arc::new(StatsTable::new(self.stats.clone(), self.history.clone())))?;
        Ok(ctx)
    }
}
