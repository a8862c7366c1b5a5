//! DataFusion tables over recent history, and the `sysql_stats` table.
//!
//! History scans take a snapshot of the table's batches; predicates on `ts`
//! against constants (`ts > now() - INTERVAL '1 hour'` arrives here already
//! folded to a literal) skip batches outside the range. The filter is
//! `Inexact`: DataFusion still applies it row by row above the scan.

use crate::event::columns::ColumnDef;
use crate::history::History;
use crate::stats::Stats;
use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use sysql_events::Table;

/// One event table's recent history.
#[derive(Debug)]
pub struct HistoryTable {
    table: Table,
    schema: SchemaRef,
    history: Arc<History>,
}

impl HistoryTable {
    pub fn new(table: Table, schema: SchemaRef, history: Arc<History>) -> Self {
        HistoryTable { table, schema, history }
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
        let batches = self.history.snapshot(self.table, lo, hi);
        let partitions = split_even(batches, state.config().target_partitions());
        Ok(MemorySourceConfig::try_new_exec(&partitions, self.schema.clone(), projection.cloned())?)
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
        late: UInt64, not null, "events that reached the live reorder buffer after the watermark had passed them (a syscall slower than the 200 ms lateness): left out of ordered live streams and windows, still in history";
        history_rows: UInt64, not null, "events held in history now";
        history_bytes: UInt64, not null, "memory held by those events";
        oldest: Ts, null, "`ts` of the oldest event held, `NULL` if none";
        newest: Ts, null, "`ts` of the newest event held, `NULL` if none";
    }
}

/// `sysql_stats`: one row per table, built at scan time from the counters.
#[derive(Debug)]
pub struct StatsTable {
    schema: SchemaRef,
    stats: Arc<Stats>,
    history: Arc<History>,
}

impl StatsTable {
    pub fn new(stats: Arc<Stats>, history: Arc<History>) -> Self {
        StatsTable { schema: Self::table_schema(), stats, history }
    }

    pub fn table_schema() -> SchemaRef {
        Arc::new(Schema::new(StatsColumns::COLUMNS.iter().map(ColumnDef::field).collect::<Vec<_>>()))
    }

    fn batch(&self) -> Result<RecordBatch> {
        let mut c = StatsColumns::new(Table::ALL.len() + 1);
        let mut rows = 0;
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
            c.history_rows.append_value(u.rows);
            c.history_bytes.append_value(u.bytes);
            c.oldest.append_option(u.oldest);
            c.newest.append_option(u.newest);
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
                &mut c.history_rows,
                &mut c.history_bytes,
            ] {
                b.append_value(0);
            }
            c.decode_errors.append_value(unknown);
            c.oldest.append_null();
            c.newest.append_null();
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
    for col in ColumnsColumns::COLUMNS {
        add("sysql_columns", col);
    }
    let batch = RecordBatch::try_new(schema.clone(), c.finish(rows))?;
    datafusion::datasource::MemTable::try_new(schema, vec![vec![batch]])
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
