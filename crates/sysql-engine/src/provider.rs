//! DataFusion tables over history (memory, and the store on disk when there
//! is one), and the `sysql_stats`, `sysql_columns` and `sysql_gaps` tables.
//!
//! History scans take a snapshot of the table's batches in memory and of
//! the store's files below them (see [`crate::store`]); predicates on `ts`
//! against constants (`ts > now() - INTERVAL '1 hour'` arrives here already
//! folded to a literal) skip batches, files and row groups outside the
//! range. The filter is `Inexact`: DataFusion still applies it row by row
//! above the scan.

use crate::event::columns::ColumnDef;
use crate::history::History;
use crate::stats::Stats;
use crate::store::{read, Store};
use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::ExecutionPlan;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use sysql_events::Table;

/// One event table's history.
#[derive(Debug)]
pub struct HistoryTable {
    table: Table,
    schema: SchemaRef,
    history: Arc<History>,
    store: Option<Arc<Store>>,
}

impl HistoryTable {
    pub fn new(table: Table, schema: SchemaRef, history: Arc<History>, store: Option<Arc<Store>>) -> Self {
        HistoryTable { table, schema, history, store }
    }
}

/// A timestamp literal in nanoseconds.
fn ts_literal(e: &Expr) -> Option<i64> {
    let Expr::Literal(v, _) = e else { return None };
    match v {
        ScalarValue::TimestampNanosecond(Some(n), _) => Some(*n),
        ScalarValue::TimestampMicrosecond(Some(n), _) => n.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(n), _) => n.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(n), _) => n.checked_mul(1_000_000_000),
        _ => None,
    }
}

fn is_ts(e: &Expr) -> bool {
    matches!(e, Expr::Column(c) if c.name == "ts")
}

/// The `[lo, hi]` range (inclusive) a predicate keeps `ts` in, if it is a
/// comparison of `ts` with a timestamp constant.
pub fn ts_bounds(e: &Expr) -> Option<(Option<i64>, Option<i64>)> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (op, v) = if is_ts(left) {
                (*op, ts_literal(right)?)
            } else if is_ts(right) {
                (op.swap()?, ts_literal(left)?)
            } else {
                return None;
            };
            match op {
                Operator::Gt | Operator::GtEq => Some((Some(v), None)),
                Operator::Lt | Operator::LtEq => Some((None, Some(v))),
                Operator::Eq => Some((Some(v), Some(v))),
                _ => None,
            }
        }
        Expr::Between(Between { expr, negated: false, low, high }) if is_ts(expr) => {
            Some((Some(ts_literal(low)?), Some(ts_literal(high)?)))
        }
        _ => None,
    }
}

#[async_trait]
impl TableProvider for HistoryTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match ts_bounds(f) {
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (mut lo, mut hi) = (None::<i64>, None::<i64>);
        for (l, h) in filters.iter().filter_map(ts_bounds) {
            lo = lo.max(l);
            hi = match (hi, h) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let memory = self.history.snapshot_ids(self.table, lo, hi);
        let n = state.config().target_partitions();
        let Some(store) = &self.store else {
            let partitions = split_even(memory.batches, n);
            return Ok(MemorySourceConfig::try_new_exec(&partitions, self.schema.clone(), projection.cloned())?);
        };
        let disk = store.snapshot(self.table, lo.unwrap_or(i64::MIN), hi.unwrap_or(i64::MAX), memory.first_id);
        // written-pending entries are older than memory's: they go first
        let mut batches = disk.pending;
        batches.extend(memory.batches);
        let in_memory =
            MemorySourceConfig::try_new_exec(&split_even(batches, n), self.schema.clone(), projection.cloned())?;
        if disk.files.is_empty() {
            return Ok(in_memory);
        }
        let parts: Vec<Arc<dyn PartitionStream>> = read::partitions(disk.files, n)
            .into_iter()
            .map(|files| {
                Arc::new(read::DiskPartition::new(self.schema.clone(), projection.cloned(), files))
                    as Arc<dyn PartitionStream>
            })
            .collect();
        let projected = read::project_schema(&self.schema, projection.map(Vec::as_slice));
        let on_disk = Arc::new(StreamingTableExec::try_new(projected, parts, None, Vec::new(), false, None)?);
        UnionExec::try_new(vec![in_memory, on_disk])
    }
}

/// Splits batches (oldest first) into at most `n` runs of consecutive batches
/// holding about the same number of rows, so a history scan runs on every
/// core the session allows.
fn split_even(batches: Vec<RecordBatch>, n: usize) -> Vec<Vec<RecordBatch>> {
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    let n = n.clamp(1, batches.len().max(1));
    let per = total.div_ceil(n).max(1);
    let mut out: Vec<Vec<RecordBatch>> = Vec::with_capacity(n);
    let mut current = Vec::new();
    let mut rows = 0;
    for batch in batches {
        rows += batch.num_rows();
        current.push(batch);
        if rows >= per && out.len() + 1 < n {
            out.push(std::mem::take(&mut current));
            rows = 0;
        }
    }
    out.push(current);
    out
}

crate::columns! {
    /// The columns of `sysql_stats`.
    pub struct StatsColumns {
        table_name: Utf8, not null, "`opens`, `connects`, `execs`, `http_requests`, `db_queries`, `dns_queries`, `accepts`, `exits`";
        captured: UInt64, not null, "events decoded into the table";
        lost_kernel: UInt64, not null, "events the kernel programs could not put in the ring buffer (it was full)";
        lost_user: UInt64, not null, "rows a live query did not get because it fell behind (its queue of 1024 batches was full); history still has them";
        decode_errors: UInt64, not null, "records too short for their kind";
        truncated: UInt64, not null, "events with a truncated field (path, argv, address)";
        evicted: UInt64, not null, "events removed from history because of the memory cap";
        expired: UInt64, not null, "events removed from history because they were older than the retention period";
        filtered_kernel: UInt64, not null, "events the capture filter (`--capture-only`, `--capture-exclude`) skipped in the kernel: never captured, by choice";
        kernel_filter: Utf8, null, "the filter the kernel applies to the table now, as `only comm=nginx; exclude path=/proc/`: the capture filter, narrowed to what running live queries read when history is off (`--history 0`); `NULL` when its capture is whole";
        late: UInt64, not null, "events that reached the live reorder buffer after the watermark had passed them (a syscall slower than the 200 ms lateness): left out of ordered live streams and windows, still in history";
        live_queries: UInt64, not null, "live subscriptions to the table now (a live query, window or join side each)";
        history_rows: UInt64, not null, "events held in history now";
        history_bytes: UInt64, not null, "memory held by those events";
        oldest: Ts, null, "`ts` of the oldest event held in memory, `NULL` if none";
        newest: Ts, null, "`ts` of the newest event held in memory, `NULL` if none";
        disk_rows: UInt64, not null, "events in the agent's files on disk (0 without a state directory)";
        disk_bytes: UInt64, not null, "bytes of those files";
        disk_oldest: Ts, null, "`ts` of the oldest event on disk, `NULL` if none";
        disk_waiting: UInt64, not null, "events not written to disk yet: they grow while the disk is full (or slower than the capture) and fall back once writes succeed";
        disk_removed: UInt64, not null, "events removed from disk by retention (`--retain`) or the disk cap (`--disk-cap`)";
        disk_unwritten: UInt64, not null, "events that left memory before they could be written (a full disk, a storm faster than the disk): lost for good";
        gap_start: Ts, null, "start of the latest gap in capture (the agent was stopped, or killed and the last flush interval lost), `NULL` if none; all gaps are in `sysql_gaps`";
        gap_end: Ts, null, "end of that gap: when the agent started again";
    }
}

/// `sysql_stats`: one row per table, built at scan time from the counters.
#[derive(Debug)]
pub struct StatsTable {
    schema: SchemaRef,
    stats: Arc<Stats>,
    history: Arc<History>,
    live: Arc<crate::live::LiveHub>,
    store: Option<Arc<Store>>,
}

impl StatsTable {
    pub fn new(
        stats: Arc<Stats>,
        history: Arc<History>,
        live: Arc<crate::live::LiveHub>,
        store: Option<Arc<Store>>,
    ) -> Self {
        StatsTable { schema: Self::table_schema(), stats, history, live, store }
    }

    pub fn table_schema() -> SchemaRef {
        Arc::new(Schema::new(StatsColumns::COLUMNS.iter().map(ColumnDef::field).collect::<Vec<_>>()))
    }

    fn batch(&self) -> Result<RecordBatch> {
        let mut c = StatsColumns::new(Table::ALL.len() + 1);
        let mut rows = 0;
        let gap = self.store.as_ref().and_then(|s| s.gaps().into_iter().max_by_key(|g| g.end_ns));
        for t in Table::ALL {
            let s = self.stats.table(t);
            let u = self.history.usage(t);
            c.table_name.append_value(t.name());
            c.captured.append_value(s.captured.load(Relaxed));
            c.lost_kernel.append_value(s.lost_kernel.load(Relaxed));
            c.lost_user.append_value(s.lost_user.load(Relaxed));
            c.decode_errors.append_value(s.decode_errors.load(Relaxed));
            c.truncated.append_value(s.truncated.load(Relaxed));
            c.evicted.append_value(s.evicted.load(Relaxed));
            c.expired.append_value(s.expired.load(Relaxed));
            c.late.append_value(s.late.load(Relaxed));
            c.filtered_kernel.append_value(s.filtered_kernel.load(Relaxed));
            c.kernel_filter.append_option(self.stats.kernel_filter_now(t).as_deref());
            c.live_queries.append_value(self.live.subscribers(t) as u64);
            c.history_rows.append_value(u.rows);
            c.history_bytes.append_value(u.bytes);
            c.oldest.append_option(u.oldest);
            c.newest.append_option(u.newest);
            let (disk_rows, disk_bytes) = self.store.as_ref().map(|s| s.usage(t)).unwrap_or((0, 0));
            c.disk_rows.append_value(disk_rows);
            c.disk_bytes.append_value(disk_bytes);
            c.disk_oldest.append_option(self.store.as_ref().and_then(|s| s.span(t)).map(|(min, _)| min));
            c.disk_waiting.append_value(self.store.as_ref().map(|s| s.waiting(t, &self.history)).unwrap_or(0));
            let disk = self.store.as_ref().map(|s| s.disk_stats(t));
            c.disk_removed.append_value(disk.map(|d| d.removed.load(Relaxed)).unwrap_or(0));
            c.disk_unwritten.append_value(disk.map(|d| d.unwritten.load(Relaxed)).unwrap_or(0));
            c.gap_start.append_option(gap.as_ref().map(|g| g.start_ns));
            c.gap_end.append_option(gap.as_ref().map(|g| g.end_ns));
            rows += 1;
        }
        let unknown = self.stats.unknown_records.load(Relaxed);
        if unknown > 0 {
            // records too garbled to say which table they were for
            c.table_name.append_value("(unknown)");
            for b in [
                &mut c.captured,
                &mut c.lost_kernel,
                &mut c.lost_user,
                &mut c.truncated,
                &mut c.evicted,
                &mut c.expired,
                &mut c.late,
                &mut c.filtered_kernel,
                &mut c.live_queries,
                &mut c.history_rows,
                &mut c.history_bytes,
                &mut c.disk_rows,
                &mut c.disk_bytes,
                &mut c.disk_waiting,
                &mut c.disk_removed,
                &mut c.disk_unwritten,
            ] {
                b.append_value(0);
            }
            c.decode_errors.append_value(unknown);
            for b in [&mut c.oldest, &mut c.newest, &mut c.disk_oldest, &mut c.gap_start, &mut c.gap_end] {
                b.append_null();
            }
            c.kernel_filter.append_null();
            rows += 1;
        }
        Ok(RecordBatch::try_new(self.schema.clone(), c.finish(rows))?)
    }
}

crate::columns! {
    /// The columns of `sysql_columns`.
    pub struct ColumnsColumns {
        table_name: Utf8, not null, "the table: `opens`, `live.opens`, `sysql_stats`, `containers`, ...";
        column_name: Utf8, not null, "the column";
        data_type: Utf8, not null, "its Arrow type";
        nullable: Boolean, not null, "whether it may be `NULL`";
        description: Utf8, not null, "what it holds (the same line as in docs/tables/)";
    }
}

/// `sysql_columns`: every column of sysql's own tables with its
/// description, from the tables' column lists (for `\d` and the Postgres
/// catalog's column comments).
pub fn columns_table() -> Result<datafusion::datasource::MemTable> {
    let schema = Arc::new(Schema::new(ColumnsColumns::COLUMNS.iter().map(ColumnDef::field).collect::<Vec<_>>()));
    let mut c = ColumnsColumns::new(256);
    let mut rows = 0;
    let mut add = |table: &str, col: &ColumnDef| {
        c.table_name.append_value(table);
        c.column_name.append_value(col.name);
        c.data_type.append_value(col.kind.data_type().to_string());
        c.nullable.append_value(col.nullable);
        c.description.append_value(col.doc);
        rows += 1;
    };
    for t in Table::ALL {
        let def = crate::event::table_def(t);
        for col in def.all_columns() {
            add(t.name(), col);
            add(&format!("live.{}", t.name()), col);
        }
    }
    for col in StatsColumns::COLUMNS {
        add("sysql_stats", col);
    }
    for col in crate::containers::ContainersColumns::COLUMNS {
        add("containers", col);
    }
    for col in GapsColumns::COLUMNS {
        add("sysql_gaps", col);
    }
    for col in ColumnsColumns::COLUMNS {
        add("sysql_columns", col);
    }
    let batch = RecordBatch::try_new(schema.clone(), c.finish(rows))?;
    datafusion::datasource::MemTable::try_new(schema, vec![vec![batch]])
}

crate::columns! {
    /// The columns of `sysql_gaps`.
    pub struct GapsColumns {
        start: Ts, not null, "when capture stopped (the agent's clean stop, or its last write before it was killed)";
        end: Ts, not null, "when capture started again";
        reason: Utf8, not null, "why: `the agent was stopped`, or `the agent ended without stopping (killed?): ...`";
    }
}

/// `sysql_gaps`: the times the agent did not capture, from its state directory.
#[derive(Debug)]
pub struct GapsTable {
    schema: SchemaRef,
    store: Option<Arc<Store>>,
}

impl GapsTable {
    pub fn new(store: Option<Arc<Store>>) -> Self {
        let schema = Arc::new(Schema::new(GapsColumns::COLUMNS.iter().map(ColumnDef::field).collect::<Vec<_>>()));
        GapsTable { schema, store }
    }
}

#[async_trait]
impl TableProvider for GapsTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let gaps = self.store.as_ref().map(|s| s.gaps()).unwrap_or_default();
        let mut c = GapsColumns::new(gaps.len());
        for g in &gaps {
            c.start.append_value(g.start_ns);
            c.end.append_value(g.end_ns);
            c.reason.append_value(&g.reason);
        }
        let batch = RecordBatch::try_new(self.schema.clone(), c.finish(gaps.len()))?;
        Ok(MemorySourceConfig::try_new_exec(&[vec![batch]], self.schema.clone(), projection.cloned())?)
    }
}

#[async_trait]
impl TableProvider for StatsTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(MemorySourceConfig::try_new_exec(&[vec![self.batch()?]], self.schema.clone(), projection.cloned())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, Int64Array};

    fn batch(first: i64, rows: i64) -> RecordBatch {
        let col: ArrayRef = Arc::new(Int64Array::from_iter_values(first..first + rows));
        RecordBatch::try_from_iter([("x", col)]).unwrap()
    }

    fn values(parts: &[Vec<RecordBatch>]) -> Vec<Vec<i64>> {
        parts
            .iter()
            .map(|p| {
                p.iter()
                    .flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn history_splits_into_even_runs_in_order() {
        let batches: Vec<_> = (0..6).map(|i| batch(i * 10, 10)).collect();
        let parts = split_even(batches.clone(), 2);
        assert_eq!(values(&parts), vec![(0..30).collect::<Vec<_>>(), (30..60).collect()]);
        // never more partitions than batches, never an empty one when there are rows
        let parts = split_even(batches[..1].to_vec(), 4);
        assert_eq!(values(&parts), vec![(0..10).collect::<Vec<_>>()]);
        assert_eq!(split_even(Vec::new(), 2).len(), 1);
        // uneven batches: the rows, not the batches, are shared out
        let parts = split_even(vec![batch(0, 100), batch(100, 1), batch(101, 1), batch(102, 98)], 2);
        assert_eq!(values(&parts), vec![(0..100).collect::<Vec<_>>(), (100..200).collect()]);
        let parts = split_even(batches, 3);
        assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2, 2]);
    }
}
