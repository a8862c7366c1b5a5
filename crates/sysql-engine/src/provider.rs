//! DataFusion tables over recent history, and the `sysql_stats` table.
//!
//! History scans take a snapshot of the table's batches; predicates on `ts`
//! against constants (`ts > now() - INTERVAL '1 hour'` arrives here already
//! folded to a literal) skip batches outside the range. The filter is
//! `Inexact`: DataFusion still applies it row by row above the scan.

use crate::history::History;
use crate::stats::Stats;
use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, StringBuilder, TimestampNanosecondBuilder, UInt64Builder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
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
        let ts = crate::event::ts_type();
        let count = |name| Field::new(name, DataType::UInt64, false);
        Arc::new(Schema::new(vec![
            Field::new("table_name", DataType::Utf8, false),
            count("captured"),
            count("lost_kernel"),
            count("lost_user"),
            count("decode_errors"),
            count("truncated"),
            count("evicted"),
            count("expired"),
            count("late"),
            count("history_rows"),
            count("history_bytes"),
            Field::new("oldest", ts.clone(), true),
            Field::new("newest", ts, true),
        ]))
    }

    fn batch(&self) -> Result<RecordBatch> {
        let mut name = StringBuilder::new();
        let mut counts: Vec<UInt64Builder> = (0..10).map(|_| UInt64Builder::new()).collect();
        let mut oldest = TimestampNanosecondBuilder::new().with_timezone("UTC");
        let mut newest = TimestampNanosecondBuilder::new().with_timezone("UTC");
        for t in Table::ALL {
            let s = self.stats.table(t);
            let u = self.history.usage(t);
            name.append_value(t.name());
            let values = [
                s.captured.load(Relaxed),
                s.lost_kernel.load(Relaxed),
                s.lost_user.load(Relaxed),
                s.decode_errors.load(Relaxed),
                s.truncated.load(Relaxed),
                s.evicted.load(Relaxed),
                s.expired.load(Relaxed),
                s.late.load(Relaxed),
                u.rows,
                u.bytes,
            ];
            for (b, v) in counts.iter_mut().zip(values) {
                b.append_value(v);
            }
            oldest.append_option(u.oldest);
            newest.append_option(u.newest);
        }
        let unknown = self.stats.unknown_records.load(Relaxed);
        if unknown > 0 {
            // records too garbled to say which table they were for
            name.append_value("(unknown)");
            for (i, b) in counts.iter_mut().enumerate() {
                b.append_value(if i == 3 { unknown } else { 0 });
            }
            oldest.append_null();
            newest.append_null();
        }
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(name.finish())];
        arrays.extend(counts.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        arrays.push(Arc::new(oldest.finish()));
        arrays.push(Arc::new(newest.finish()));
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
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
    use datafusion::arrow::array::Int64Array;

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
