//! `live.opens`, `live.connects`, `live.execs`: unbounded tables, from now on.
//!
//! Each scan is a DataFusion `StreamingTableExec` over a partition that
//! subscribes to the [`LiveHub`] when executed. By default the stream is
//! ordered by `ts` (through the reorder buffer; the declared order is true);
//! [`prepare_live`] switches a plan that does not depend on order (filters and
//! projections) to the raw stream, which has no reorder delay, and makes its
//! filters emit every match at once instead of coalescing a batch.

use crate::capture_need::{CaptureNeeds, Need};
use crate::live::{LiveHub, LiveItem};
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{plan_err, JoinSide, Result};
use datafusion::datasource::TableType;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::SymmetricHashJoinExec;
use datafusion::physical_plan::limit::{GlobalLimitExec, LocalLimitExec};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use datafusion::prelude::SessionConfig;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use sysql_events::Table;

/// Session extension: the hub a statement over a recording replays into
/// (its live scans subscribe to it instead of the capture's).
#[derive(Debug, Clone)]
pub struct ReplayHub(pub Arc<LiveHub>);

/// How a live scan subscribes: set on the session config of the task that
/// executes the plan (see [`prepare_live`]).
#[derive(Debug, Clone, Copy)]
pub struct LiveMode {
    pub ordered: bool,
}

pub(crate) fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

#[derive(Debug)]
struct LivePartition {
    table: Table,
    schema: SchemaRef,
    hub: Arc<LiveHub>,
    needs: Arc<CaptureNeeds>,
    /// What the scan's WHERE clause lets the kernel skip.
    need: Need,
}

impl PartitionStream for LivePartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let ordered = ctx.session_config().get_extension::<LiveMode>().is_none_or(|m| m.ordered);
        // A statement over a recording subscribes to its own replay.
        let hub = ctx.session_config().get_extension::<ReplayHub>().map(|r| r.0.clone()).unwrap_or(self.hub.clone());
        let items = self.subscribe(hub, ordered);
        // A watermark becomes an empty batch: a heartbeat that lets operators
        // downstream (joins) run and emit what they hold while the table is
        // idle. It carries the watermark in its schema's metadata, for the
        // live join (`crate::join`).
        let schema = self.schema.clone();
        let stream = items.map(move |item| match item {
            LiveItem::Rows(b) => Ok(b),
            LiveItem::Watermark(wm) => {
                let meta = HashMap::from([(WATERMARK_KEY.to_string(), wm.to_string())]);
                Ok(RecordBatch::new_empty(Arc::new(schema.as_ref().clone().with_metadata(meta))))
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

impl LivePartition {
    /// The scan's items. When running scans narrow the capture, the scan
    /// subscribes once the kernel's filter covers what it needs (so it
    /// misses nothing from its start) and keeps its registration while it
    /// runs; otherwise at once.
    fn subscribe(&self, hub: Arc<LiveHub>, ordered: bool) -> futures::stream::BoxStream<'static, LiveItem> {
        let table = self.table;
        if !self.needs.active() {
            let (rx, _) = hub.subscribe(table, ordered, now_ns());
            return Box::pin(tokio_stream_from(rx));
        }
        let (guard, applied) = self.needs.register(self.need.clone());
        let subscribed = futures::stream::once(async move {
            applied.await;
            let (rx, _) = hub.subscribe(table, ordered, now_ns());
            (rx, guard)
        });
        Box::pin(subscribed.flat_map(|(rx, guard)| {
            tokio_stream_from(rx).map(move |item| {
                let _registered = &guard;
                item
            })
        }))
    }
}

/// Schema metadata key of a heartbeat's watermark (UTC nanoseconds).
const WATERMARK_KEY: &str = "sysql.watermark";

/// The watermark a heartbeat batch of an ordered live scan carries: no row
/// with a `ts` at or below it follows on that stream.
pub fn heartbeat_watermark(batch: &RecordBatch) -> Option<i64> {
    if batch.num_rows() > 0 {
        return None;
    }
    batch.schema_ref().metadata().get(WATERMARK_KEY)?.parse().ok()
}

fn tokio_stream_from(mut rx: tokio::sync::mpsc::Receiver<LiveItem>) -> impl futures::Stream<Item = LiveItem> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// One live table.
#[derive(Debug)]
pub struct LiveTable {
    table: Table,
    schema: SchemaRef,
    hub: Arc<LiveHub>,
    needs: Arc<CaptureNeeds>,
}

impl LiveTable {
    pub fn new(table: Table, schema: SchemaRef, hub: Arc<LiveHub>, needs: Arc<CaptureNeeds>) -> Self {
        LiveTable { table, schema, hub, needs }
    }
}

#[async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    /// Every condition comes to the scan, which reads what the kernel could
    /// skip from it ([`Need::from_filters`]); the filter above the scan still
    /// applies each one.
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let partition: Arc<dyn PartitionStream> = Arc::new(LivePartition {
            table: self.table,
            schema: self.schema.clone(),
            hub: self.hub.clone(),
            needs: self.needs.clone(),
            need: Need::from_filters(self.table, filters),
        });
        // `ts` is column 0; the ordering is declared only if it is projected.
        let ts_at = match projection {
            None => Some(0),
            Some(p) => p.iter().position(|&i| i == 0),
        };
        let ordering: Vec<LexOrdering> = ts_at
            .and_then(|i| LexOrdering::new([PhysicalSortExpr::new_default(Arc::new(Column::new("ts", i)))]))
            .into_iter()
            .collect();
        Ok(Arc::new(StreamingTableExec::try_new(
            self.schema.clone(),
            vec![partition],
            projection,
            ordering,
            true,
            limit,
        )?))
    }
}

/// True if no operator in the plan depends on row order or holds state
/// across rows: then the raw (unordered, undelayed) stream gives the same
/// rows, sooner.
fn order_free(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let p: &dyn ExecutionPlan = plan.as_ref();
    let stateless = p.is::<StreamingTableExec>()
        || p.is::<FilterExec>()
        || p.is::<ProjectionExec>()
        || p.is::<CoalescePartitionsExec>()
        || p.is::<RepartitionExec>()
        || p.is::<GlobalLimitExec>()
        || p.is::<LocalLimitExec>()
        || plan.name() == "CoalesceBatchesExec"
        || plan.name() == "CooperativeExec";
    stateless && plan.children().iter().all(|c| order_free(c))
}

/// A join of two live streams keeps every row of both unless a time bound
/// lets it forget: refuse one without.
fn check_joins(plan: &Arc<dyn ExecutionPlan>) -> Result<()> {
    if let Some(join) = plan.as_ref().downcast_ref::<SymmetricHashJoinExec>() {
        let bounded = join.filter().is_some_and(|f| {
            let cols = f.column_indices();
            let uses_ts = |side| {
                cols.iter().any(|c| {
                    c.side == side && {
                        let schema = if side == JoinSide::Left { join.left().schema() } else { join.right().schema() };
                        schema.field(c.index).name() == "ts"
                    }
                })
            };
            uses_ts(JoinSide::Left) && uses_ts(JoinSide::Right)
        });
        if !bounded {
            return plan_err!(
                "a join of two live tables needs a time bound, or it would keep every event of both forever: \
                 add one to ON, e.g. AND c.ts BETWEEN e.ts AND e.ts + INTERVAL '5 seconds'"
            );
        }
    }
    plan.children().iter().try_for_each(|c| check_joins(c))
}

/// Readies an unbounded plan for a live run: picks the stream kind, and makes
/// filters emit matches at once. Returns the plan and the task to run it in.
pub fn prepare_live(
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
) -> Result<(Arc<dyn ExecutionPlan>, Arc<TaskContext>)> {
    check_joins(&plan)?;
    let ordered = !order_free(&plan);
    let plan = plan
        .transform_up(|node| {
            if let Some(f) = node.as_ref().downcast_ref::<FilterExec>() {
                if f.batch_size() > 1 {
                    return Ok(Transformed::yes(Arc::new(f.with_batch_size(1)?) as Arc<dyn ExecutionPlan>));
                }
            }
            Ok(Transformed::no(node))
        })?
        .data;
    // Joins of two live streams bounded by time run as sysql's own operator,
    // which emits each match at once (planning does this already in a
    // session from `Engine::session`; this covers plans from elsewhere).
    let plan = crate::join::rewrite_live_joins(plan)?;
    // Operators that coalesce their output (joins, filters) would hold rows
    // back until a full batch: on a live stream, every row goes out at once.
    let config: SessionConfig =
        task.session_config().clone().with_batch_size(1).with_extension(Arc::new(LiveMode { ordered }));
    let task = Arc::new(TaskContext::new(
        task.task_id(),
        task.session_id(),
        config,
        task.scalar_functions().clone(),
        task.higher_order_functions().clone(),
        task.aggregate_functions().clone(),
        task.window_functions().clone(),
        task.runtime_env(),
    ));
    Ok((plan, task))
}
