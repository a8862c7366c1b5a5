//! `IntervalJoinExec`: sysql's join of two live streams bounded by time.
//!
//! DataFusion plans a join of two unbounded inputs as `SymmetricHashJoinExec`,
//! which pulls its inputs strictly in turn: when one side is idle it holds the
//! newest matches until a row arrives on the other side. This operator polls
//! whichever input is ready instead. Each side's rows are kept in arrival
//! order (which is `ts` order: the live streams are ordered), hashed by the
//! equi-join keys, and every arriving row probes the other side at once, so a
//! match goes out as soon as its second row is in.
//!
//! State stays bounded by the time bound found in the join filter,
//! `right.ts - left.ts` in `[lo, hi]`, and each side's watermark (no later row
//! of that side has a `ts` at or below it): a left row is dropped once the
//! right watermark reaches `ts + hi`, a right row once the left watermark
//! reaches `ts - lo`. In a left (right, full) outer join, a row of the outer
//! side that never matched is emitted with NULLs when it is dropped.
//!
//! A side's watermark is the larger of the newest `ts` it delivered (minus
//! one: equal `ts` may follow) and the last heartbeat of the live scan under
//! it. Heartbeats are empty batches that carry the watermark in their schema
//! metadata (see [`crate::live_table`]); filters drop them and projections
//! strip the metadata, so the scan is wrapped in a `WatermarkTap` that
//! records each one as it passes. That is exact only if nothing between the scan and the join holds
//! rows back, so only filters (emitting every row at once) and projections of
//! the `ts` column are accepted in between; any other shape joins with the
//! `ts`-seen watermark alone.

use crate::live_table::heartbeat_watermark;
use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, BooleanArray, RecordBatch, TimestampNanosecondArray, UInt32Array,
};
use datafusion::arrow::compute::{filter_record_batch, interleave, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{JoinSide, JoinType, NullEquality, Result, ScalarValue};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_expr::{split_conjunction, EquivalenceProperties, PhysicalExpr, PhysicalExprRef};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::utils::JoinFilter;
use datafusion::physical_plan::joins::SymmetricHashJoinExec;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::metrics::{BaselineMetrics, Count, ExecutionPlanMetricsSet, Gauge, MetricBuilder};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{
    replace_children_if_necessary, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, RecordBatchStream, ReplaceChildrenOptions, SendableRecordBatchStream,
};
use futures::{Stream, StreamExt};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

const LEFT: usize = 0;
const RIGHT: usize = 1;

/// Every pair the join filter accepts has `right.ts - left.ts` in
/// `[lo, hi]` nanoseconds (strict comparisons are widened to inclusive: the
/// filter still decides each pair, the bound only says what to keep).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBound {
    pub lo: i64,
    pub hi: i64,
}

/// A join of two live streams by equal keys within a time bound.
#[derive(Debug)]
pub struct IntervalJoinExec {
    inputs: [Arc<dyn ExecutionPlan>; 2],
    on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
    filter: JoinFilter,
    join_type: JoinType,
    null_equality: NullEquality,
    /// The `ts` column of each input.
    ts: [usize; 2],
    bound: TimeBound,
    /// Heartbeat watermarks of the live scans, where they could be tapped.
    taps: [Option<Arc<AtomicI64>>; 2],
    /// Rows held in join state by the running stream (for EXPLAIN and tests).
    held: Arc<AtomicUsize>,
    metrics: ExecutionPlanMetricsSet,
    properties: Arc<PlanProperties>,
}

impl IntervalJoinExec {
    /// The time bound the join keeps its state by.
    pub fn bound(&self) -> TimeBound {
        self.bound
    }

    /// Rows of both inputs held in join state right now.
    pub fn held_rows(&self) -> usize {
        self.held.load(Relaxed)
    }

    /// True if both inputs' watermarks come from the live scans' heartbeats.
    pub fn heartbeats(&self) -> bool {
        self.taps.iter().all(Option::is_some)
    }

    /// Builds the operator in place of a symmetric hash join of two live
    /// streams, if its shape is one it handles: an inner or outer join of two
    /// single-partition inputs ordered by their `ts`, with a filter that
    /// bounds `right.ts - left.ts` from both sides. `None` leaves the join as
    /// it is.
    pub fn from_symmetric(join: &SymmetricHashJoinExec) -> Result<Option<Self>> {
        let join_type = *join.join_type();
        if !matches!(join_type, JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full) {
            return Ok(None);
        }
        let Some(filter) = join.filter() else { return Ok(None) };
        let (left, right) = (join.left(), join.right());
        let (Some(lts), Some(rts)) = (ordered_ts(left), ordered_ts(right)) else { return Ok(None) };
        let Some(bound) = time_bound(filter, lts, rts) else { return Ok(None) };
        let (ls, rs) = (left.schema(), right.schema());
        for (l, r) in join.on() {
            if l.data_type(&ls)? != r.data_type(&rs)? {
                return Ok(None);
            }
        }
        let (left, ltap) = match tap(left, lts)? {
            Some((plan, cell)) => (plan, Some(cell)),
            None => (left.clone(), None),
        };
        let (right, rtap) = match tap(right, rts)? {
            Some((plan, cell)) => (plan, Some(cell)),
            None => (right.clone(), None),
        };
        Ok(Some(IntervalJoinExec {
            properties: Arc::new(properties(join.schema())),
            inputs: [left, right],
            on: join.on().to_vec(),
            filter: filter.clone(),
            join_type,
            null_equality: join.null_equality(),
            ts: [lts, rts],
            bound,
            taps: [ltap, rtap],
            held: Arc::new(AtomicUsize::new(0)),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    fn outer(&self, side: usize) -> bool {
        match self.join_type {
            JoinType::Left => side == LEFT,
            JoinType::Right => side == RIGHT,
            JoinType::Full => true,
            _ => false,
        }
    }
}

fn properties(schema: SchemaRef) -> PlanProperties {
    PlanProperties::new(
        EquivalenceProperties::new(schema),
        Partitioning::UnknownPartitioning(1),
        EmissionType::Incremental,
        Boundedness::Unbounded { requires_infinite_memory: false },
    )
}

/// Replaces every symmetric hash join in `plan` that [`IntervalJoinExec`]
/// handles; leaves the others.
pub fn rewrite_live_joins(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    Ok(plan
        .transform_up(|node| {
            if let Some(join) = node.as_ref().downcast_ref::<SymmetricHashJoinExec>() {
                if let Some(ours) = IntervalJoinExec::from_symmetric(join)? {
                    return Ok(Transformed::yes(Arc::new(ours) as Arc<dyn ExecutionPlan>));
                }
            }
            Ok(Transformed::no(node))
        })?
        .data)
}

/// The physical optimizer rule that applies [`rewrite_live_joins`] when a
/// query is planned, so EXPLAIN shows the operator that will run.
#[derive(Debug, Default)]
pub struct LiveJoinRule;

impl PhysicalOptimizerRule for LiveJoinRule {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        rewrite_live_joins(plan)
    }

    fn name(&self) -> &str {
        "sysql_live_join"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The column `plan` is ordered by first, if it is a nanosecond timestamp
/// in ascending order and the plan has one partition.
fn ordered_ts(plan: &Arc<dyn ExecutionPlan>) -> Option<usize> {
    if plan.output_partitioning().partition_count() != 1 {
        return None;
    }
    let first = plan.output_ordering()?.first();
    let col = first.expr.downcast_ref::<Column>()?;
    let ty = plan.schema().field(col.index()).data_type().clone();
    (!first.options.descending && matches!(ty, DataType::Timestamp(TimeUnit::Nanosecond, _))).then_some(col.index())
}

/// `column + offset` in the filter's own columns, if `e` has that form.
fn term(e: &Arc<dyn PhysicalExpr>) -> Option<(usize, i64)> {
    if let Some(c) = e.downcast_ref::<Column>() {
        return Some((c.index(), 0));
    }
    let b = e.downcast_ref::<BinaryExpr>()?;
    let col = |x: &Arc<dyn PhysicalExpr>| x.downcast_ref::<Column>().map(Column::index);
    let lit = |x: &Arc<dyn PhysicalExpr>| x.downcast_ref::<Literal>().and_then(|l| nanos(l.value()));
    match b.op() {
        Operator::Plus => match (col(b.left()), col(b.right())) {
            (Some(c), None) => Some((c, lit(b.right())?)),
            (None, Some(c)) => Some((c, lit(b.left())?)),
            _ => None,
        },
        Operator::Minus => Some((col(b.left())?, lit(b.right())?.checked_neg()?)),
        _ => None,
    }
}

/// A fixed length of time in nanoseconds (months have no fixed length).
fn nanos(v: &ScalarValue) -> Option<i64> {
    const DAY: i64 = 86_400_000_000_000;
    match v {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            (v.days as i64).checked_mul(DAY)?.checked_add(v.nanoseconds)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            (v.days as i64).checked_mul(DAY)?.checked_add(v.milliseconds as i64 * 1_000_000)
        }
        ScalarValue::DurationSecond(Some(s)) => s.checked_mul(1_000_000_000),
        ScalarValue::DurationMillisecond(Some(ms)) => ms.checked_mul(1_000_000),
        ScalarValue::DurationMicrosecond(Some(us)) => us.checked_mul(1_000),
        ScalarValue::DurationNanosecond(Some(ns)) => Some(*ns),
        _ => None,
    }
}

/// The bound on `right.ts - left.ts` that the filter's conjuncts comparing
/// the two `ts` columns set, if they bound it from both sides.
fn time_bound(filter: &JoinFilter, lts: usize, rts: usize) -> Option<TimeBound> {
    let cols = filter.column_indices();
    // Which input's ts a filter column is, if either.
    let side = |i: usize| match cols.get(i) {
        Some(c) if c.side == JoinSide::Left && c.index == lts => Some(LEFT),
        Some(c) if c.side == JoinSide::Right && c.index == rts => Some(RIGHT),
        _ => None,
    };
    let (mut lo, mut hi) = (None::<i64>, None::<i64>);
    for conjunct in split_conjunction(filter.expression()) {
        let Some(b) = conjunct.downcast_ref::<BinaryExpr>() else { continue };
        let (Some((a, oa)), Some((c, oc))) = (term(b.left()), term(b.right())) else { continue };
        // r + or  OP  l + ol, with OP as if the right ts were written first
        let (op, or, ol) = match (side(a), side(c)) {
            (Some(RIGHT), Some(LEFT)) => (*b.op(), oa, oc),
            (Some(LEFT), Some(RIGHT)) => (b.op().swap()?, oc, oa),
            _ => continue,
        };
        // right.ts - left.ts  OP  ol - or
        let Some(d) = ol.checked_sub(or) else { continue };
        match op {
            Operator::Gt | Operator::GtEq => lo = Some(lo.map_or(d, |x| x.max(d))),
            Operator::Lt | Operator::LtEq => hi = Some(hi.map_or(d, |x| x.min(d))),
            Operator::Eq => {
                lo = Some(lo.map_or(d, |x| x.max(d)));
                hi = Some(hi.map_or(d, |x| x.min(d)));
            }
            _ => {}
        }
    }
    Some(TimeBound { lo: lo?, hi: hi? })
}

/// A plan with a [`WatermarkTap`] under it, and the tap's watermark.
type Tapped = (Arc<dyn ExecutionPlan>, Arc<AtomicI64>);

/// Puts a [`WatermarkTap`] under `plan`'s live scan, if the path from the
/// join down to it holds no rows back and carries `ts` (column `col` of
/// `plan`) unchanged from the scan's first column. Returns the new plan and
/// the tap's watermark.
fn tap(plan: &Arc<dyn ExecutionPlan>, col: usize) -> Result<Option<Tapped>> {
    let node = plan.as_ref();
    if let Some(scan) = node.downcast_ref::<StreamingTableExec>() {
        let source = scan.projection().as_ref().map_or(Some(col), |p| p.get(col).copied());
        if scan.partitions().len() != 1 || source != Some(0) || scan.partition_schema().field(0).name() != "ts" {
            return Ok(None);
        }
        let cell = Arc::new(AtomicI64::new(i64::MIN));
        let partition: Arc<dyn PartitionStream> =
            Arc::new(WatermarkTap { inner: scan.partitions()[0].clone(), watermark: cell.clone() });
        let projection = scan.projection().as_ref().map(|p| p.to_vec());
        let tapped = StreamingTableExec::try_new(
            scan.partition_schema().clone(),
            vec![partition],
            projection.as_ref(),
            scan.projected_output_ordering(),
            scan.is_infinite(),
            scan.limit(),
        )?;
        return Ok(Some((Arc::new(tapped), cell)));
    }
    let (below, child) = if let Some(p) = node.downcast_ref::<ProjectionExec>() {
        let Some(c) = p.expr().get(col).and_then(|e| e.expr.downcast_ref::<Column>()) else { return Ok(None) };
        (c.index(), p.input().clone())
    } else if let Some(f) = node.downcast_ref::<FilterExec>() {
        let Some(c) = f.projection().as_ref().map_or(Some(col), |p| p.get(col).copied()) else { return Ok(None) };
        let Some((child, cell)) = tap(f.input(), c)? else { return Ok(None) };
        // A filter that coalesced rows would hold them while a heartbeat
        // passes: this one emits every row at once (as on any live plan).
        let filter: Arc<dyn ExecutionPlan> = Arc::new(f.with_batch_size(1)?);
        return Ok(Some((replace_children_if_necessary(filter, vec![child])?, cell)));
    } else if node.name() == "CooperativeExec" {
        (col, plan.children()[0].clone())
    } else {
        return Ok(None);
    };
    let Some((child, cell)) = tap(&child, below)? else { return Ok(None) };
    Ok(Some((replace_children_if_necessary(plan.clone(), vec![child])?, cell)))
}

/// A live scan's partition, recording the watermark of every heartbeat that
/// passes (the highest so far). The cell belongs to the plan, so a plan is
/// executed once (as sysql does: every statement is planned anew).
#[derive(Debug)]
struct WatermarkTap {
    inner: Arc<dyn PartitionStream>,
    watermark: Arc<AtomicI64>,
}

impl PartitionStream for WatermarkTap {
    fn schema(&self) -> &SchemaRef {
        self.inner.schema()
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let stream = self.inner.execute(ctx);
        let schema = stream.schema();
        let cell = self.watermark.clone();
        let stream = stream.inspect(move |item| {
            if let Some(wm) = item.as_ref().ok().and_then(heartbeat_watermark) {
                cell.fetch_max(wm, Relaxed);
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, stream))
    }
}

fn fmt_ns(ns: i64) -> String {
    match ns {
        n if n % 1_000_000_000 == 0 => format!("{}s", n / 1_000_000_000),
        n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
        n => format!("{n}ns"),
    }
}

impl DisplayAs for IntervalJoinExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let on: Vec<String> = self.on.iter().map(|(l, r)| format!("({l}, {r})")).collect();
        let b = self.bound;
        let wm = if self.heartbeats() { "heartbeats" } else { "ts seen" };
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => write!(
                f,
                "IntervalJoinExec: join_type={}, on=[{}], bound=right.ts - left.ts in [{}, {}], filter={}, \
                 watermarks={wm}, held_rows={}",
                self.join_type,
                on.join(", "),
                fmt_ns(b.lo),
                fmt_ns(b.hi),
                self.filter.expression(),
                self.held_rows()
            ),
            DisplayFormatType::TreeRender => {
                writeln!(f, "join_type={}", self.join_type)?;
                writeln!(f, "on=[{}]", on.join(", "))?;
                writeln!(f, "bound=[{}, {}]", fmt_ns(b.lo), fmt_ns(b.hi))?;
                writeln!(f, "held_rows={}", self.held_rows())
            }
        }
    }
}

impl ExecutionPlan for IntervalJoinExec {
    fn name(&self) -> &str {
        "IntervalJoinExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.inputs[LEFT], &self.inputs[RIGHT]]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for e in self.on.iter().flat_map(|(l, r)| [l, r]).chain([self.filter.expression()]) {
            if f(e)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [left, right]: [Arc<dyn ExecutionPlan>; 2] = children
            .try_into()
            .map_err(|_| datafusion::common::DataFusionError::Internal("IntervalJoinExec has two inputs".into()))?;
        Ok(Arc::new(IntervalJoinExec {
            inputs: [left, right],
            on: self.on.clone(),
            filter: self.filter.clone(),
            join_type: self.join_type,
            null_equality: self.null_equality,
            ts: self.ts,
            bound: self.bound,
            taps: self.taps.clone(),
            held: Arc::new(AtomicUsize::new(0)),
            metrics: ExecutionPlanMetricsSet::new(),
            properties: self.properties.clone(),
        }))
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(datafusion::physical_plan::ChildrenPropertiesMode::Recompute),
        )
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(&self, partition: usize, ctx: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let inputs =
            [self.inputs[LEFT].execute(partition, ctx.clone())?, self.inputs[RIGHT].execute(partition, ctx.clone())?];
        let schema = self.schema();
        let fields = self.on.iter().map(|(l, _)| Ok(SortField::new(l.data_type(&self.inputs[LEFT].schema())?)));
        let converter = RowConverter::new(fields.collect::<Result<_>>()?)?;
        let reservation = MemoryConsumer::new(format!("IntervalJoinExec[{partition}]")).register(ctx.memory_pool());
        let side = |s: usize| Side {
            batches: VecDeque::new(),
            front: 0,
            next: 0,
            index: HashMap::new(),
            max_ts: i64::MIN,
            watermark: i64::MIN,
            done: false,
            outer: self.outer(s),
            bytes: 0,
        };
        Ok(Box::pin(JoinStream {
            schema,
            inputs,
            sides: [side(LEFT), side(RIGHT)],
            keys: [self.on.iter().map(|(l, _)| l.clone()).collect(), self.on.iter().map(|(_, r)| r.clone()).collect()],
            filter: self.filter.clone(),
            nulls_match: self.null_equality == NullEquality::NullEqualsNull,
            ts: self.ts,
            bound: self.bound,
            taps: self.taps.clone(),
            converter,
            output: VecDeque::new(),
            turn: LEFT,
            finished: false,
            held: self.held.clone(),
            held_rows: MetricBuilder::new(&self.metrics).gauge("held_rows", partition),
            dropped_rows: MetricBuilder::new(&self.metrics).counter("dropped_rows", partition),
            baseline: BaselineMetrics::new(&self.metrics, partition),
            reservation,
        }))
    }
}

/// One input's rows, in arrival order.
struct Stored {
    /// Id of the first row (ids count every row a side received).
    first: u64,
    batch: RecordBatch,
    ts: TimestampNanosecondArray,
    keys: Rows,
    /// Rows that can match at all (key and ts not null).
    live: Vec<bool>,
    /// Rows that matched (read for an outer side only).
    matched: Vec<bool>,
    /// Memory held, roughly: the batch, its keys and the index entries.
    size: usize,
}

struct Side {
    batches: VecDeque<Stored>,
    /// Id of the oldest row still held; `next` is the id of the next row.
    front: u64,
    next: u64,
    /// Ids of held rows by key, oldest first.
    index: HashMap<Box<[u8]>, VecDeque<u64>>,
    max_ts: i64,
    watermark: i64,
    done: bool,
    outer: bool,
    bytes: usize,
}

impl Side {
    /// Batch position and offset of a held row.
    fn locate(&self, id: u64) -> (usize, usize) {
        let pos = self.batches.partition_point(|b| b.first <= id) - 1;
        (pos, (id - self.batches[pos].first) as usize)
    }

    fn held(&self) -> usize {
        (self.next - self.front) as usize
    }
}

struct JoinStream {
    schema: SchemaRef,
    inputs: [SendableRecordBatchStream; 2],
    sides: [Side; 2],
    keys: [Vec<PhysicalExprRef>; 2],
    filter: JoinFilter,
    nulls_match: bool,
    ts: [usize; 2],
    bound: TimeBound,
    taps: [Option<Arc<AtomicI64>>; 2],
    converter: RowConverter,
    output: VecDeque<RecordBatch>,
    /// The input polled first next time (they take turns being first).
    turn: usize,
    finished: bool,
    held: Arc<AtomicUsize>,
    held_rows: Gauge,
    dropped_rows: Count,
    baseline: BaselineMetrics,
    reservation: MemoryReservation,
}

/// Gathers column `col` of held rows `ids` (at least one) of a side.
fn gather(side: &Side, ids: &[u64], col: usize) -> Result<ArrayRef> {
    let mut used: Vec<usize> = Vec::new();
    let mut at = Vec::with_capacity(ids.len());
    for &id in ids {
        let (pos, off) = side.locate(id);
        let k = match used.iter().position(|&p| p == pos) {
            Some(k) => k,
            None => {
                used.push(pos);
                used.len() - 1
            }
        };
        at.push((k, off));
    }
    let arrays: Vec<&dyn Array> = used.iter().map(|&p| side.batches[p].batch.column(col).as_ref()).collect();
    Ok(interleave(&arrays, &at)?)
}

impl JoinStream {
    /// Probes the other side with a batch of side `s`, emits the matches,
    /// and keeps the batch.
    fn on_batch(&mut self, s: usize, batch: RecordBatch) -> Result<()> {
        let o = 1 - s;
        let n = batch.num_rows();
        let Some(ts) = batch.column(self.ts[s]).as_any().downcast_ref::<TimestampNanosecondArray>().cloned() else {
            return datafusion::common::exec_err!("IntervalJoinExec: ts is not a nanosecond timestamp");
        };
        let key_cols = self.keys[s].iter().map(|k| k.evaluate(&batch)?.into_array(n)).collect::<Result<Vec<_>>>()?;
        let keys = self.converter.convert_columns(&key_cols)?;
        let live: Vec<bool> =
            (0..n).map(|i| ts.is_valid(i) && (self.nulls_match || key_cols.iter().all(|c| c.is_valid(i)))).collect();
        // candidate pairs: (row of this batch, held id of the other side)
        let (lo, hi) = (self.bound.lo as i128, self.bound.hi as i128);
        let (mut mine, mut theirs) = (Vec::new(), Vec::new());
        let other = &self.sides[o];
        for i in (0..n).filter(|&i| live[i]) {
            let Some(ids) = other.index.get(keys.row(i).as_ref()) else { continue };
            let t = ts.value(i) as i128;
            for &id in ids {
                let (pos, off) = other.locate(id);
                let u = other.batches[pos].ts.value(off) as i128;
                let d = if s == LEFT { u - t } else { t - u };
                if lo <= d && d <= hi {
                    mine.push(i as u32);
                    theirs.push(id);
                }
            }
        }
        let mut matched = vec![false; n];
        if !mine.is_empty() {
            let mine = UInt32Array::from(mine);
            let column = |side: usize, col: usize| -> Result<ArrayRef> {
                if side == s {
                    Ok(take(batch.column(col).as_ref(), &mine, None)?)
                } else {
                    gather(&self.sides[o], &theirs, col)
                }
            };
            // the join filter decides each candidate pair
            let cols = self
                .filter
                .column_indices()
                .iter()
                .map(|c| column(if c.side == JoinSide::Left { LEFT } else { RIGHT }, c.index))
                .collect::<Result<Vec<_>>>()?;
            let pairs = RecordBatch::try_new(self.filter.schema().clone(), cols)?;
            let keep = self.filter.expression().evaluate(&pairs)?.into_array(pairs.num_rows())?;
            let Some(keep) = keep.as_any().downcast_ref::<BooleanArray>() else {
                return datafusion::common::exec_err!("IntervalJoinExec: the join filter is not a boolean");
            };
            // NULL is not a match
            let keep: BooleanArray = keep.iter().map(|v| Some(v == Some(true))).collect();
            if keep.true_count() > 0 {
                let widths = [self.inputs[LEFT].schema().fields().len(), self.inputs[RIGHT].schema().fields().len()];
                let mut out = Vec::with_capacity(widths[0] + widths[1]);
                for side in [LEFT, RIGHT] {
                    for col in 0..widths[side] {
                        out.push(column(side, col)?);
                    }
                }
                let all = RecordBatch::try_new(self.schema.clone(), out)?;
                self.output.push_back(filter_record_batch(&all, &keep)?);
                for (k, yes) in keep.values().iter().enumerate() {
                    if yes {
                        matched[mine.value(k) as usize] = true;
                        if self.sides[o].outer {
                            let (pos, off) = self.sides[o].locate(theirs[k]);
                            self.sides[o].batches[pos].matched[off] = true;
                        }
                    }
                }
            }
        }
        // keep the batch for rows of the other side still to come
        let side = &mut self.sides[s];
        let first = side.next;
        for i in (0..n).filter(|&i| live[i]) {
            side.index.entry(keys.row(i).as_ref().into()).or_default().push_back(first + i as u64);
            side.max_ts = side.max_ts.max(ts.value(i));
        }
        let size = batch.get_array_memory_size() + 2 * keys.size() + n * 34;
        side.bytes += size;
        side.next += n as u64;
        side.batches.push_back(Stored { first, batch, ts, keys, live, matched, size });
        Ok(())
    }

    /// Moves both watermarks and drops what can no longer match.
    fn advance(&mut self) -> Result<()> {
        for s in [LEFT, RIGHT] {
            let side = &mut self.sides[s];
            let tapped = self.taps[s].as_ref().map_or(i64::MIN, |c| c.load(Relaxed));
            side.watermark = side.watermark.max(tapped).max(side.max_ts.saturating_sub(1));
            if side.done {
                side.watermark = i64::MAX;
            }
        }
        let (wl, wr) = (self.sides[LEFT].watermark, self.sides[RIGHT].watermark);
        // a left row l is done when no right row r <= l + hi can come; a
        // right row r when no left row l >= r - lo can
        let cut_left = if wr == i64::MAX { i64::MAX } else { wr.saturating_sub(self.bound.hi) };
        let cut_right = if wl == i64::MAX { i64::MAX } else { wl.saturating_add(self.bound.lo) };
        self.evict(LEFT, cut_left)?;
        self.evict(RIGHT, cut_right)?;
        let held = self.sides[LEFT].held() + self.sides[RIGHT].held();
        self.held.store(held, Relaxed);
        self.held_rows.set(held);
        let bytes = self.sides[LEFT].bytes + self.sides[RIGHT].bytes;
        self.reservation.try_resize(bytes)?;
        Ok(())
    }

    /// Drops side `s`'s rows with `ts <= cut` (a prefix: rows are in `ts`
    /// order); an outer side's unmatched ones go out with NULLs.
    fn evict(&mut self, s: usize, cut: i64) -> Result<()> {
        let side = &mut self.sides[s];
        let mut unmatched = Vec::new();
        let mut id = side.front;
        'scan: for b in side.batches.iter() {
            for off in (id - b.first) as usize..b.batch.num_rows() {
                if b.ts.is_valid(off) && b.ts.value(off) > cut {
                    break 'scan;
                }
                if b.live[off] {
                    let key = b.keys.row(off);
                    if let Some(ids) = side.index.get_mut(key.as_ref()) {
                        ids.pop_front();
                        if ids.is_empty() {
                            side.index.remove(key.as_ref());
                        }
                    }
                }
                if side.outer && !b.matched[off] {
                    unmatched.push(id);
                }
                id += 1;
            }
        }
        let dropped = (id - side.front) as usize;
        if dropped == 0 {
            return Ok(());
        }
        self.dropped_rows.add(dropped);
        if !unmatched.is_empty() {
            let widths = [self.inputs[LEFT].schema().fields().len(), self.inputs[RIGHT].schema().fields().len()];
            let mut out = Vec::new();
            for col_side in [LEFT, RIGHT] {
                for col in 0..widths[col_side] {
                    out.push(if col_side == s {
                        gather(&self.sides[s], &unmatched, col)?
                    } else {
                        let field = self.schema.field(if col_side == LEFT { col } else { widths[LEFT] + col });
                        new_null_array(field.data_type(), unmatched.len())
                    });
                }
            }
            self.output.push_back(RecordBatch::try_new(self.schema.clone(), out)?);
        }
        let side = &mut self.sides[s];
        side.front = id;
        while side.batches.front().is_some_and(|b| b.first + b.batch.num_rows() as u64 <= id) {
            let b = side.batches.pop_front().expect("checked");
            side.bytes -= b.size;
        }
        Ok(())
    }

    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<RecordBatch>>> {
        loop {
            if let Some(batch) = self.output.pop_front() {
                return Poll::Ready(Some(Ok(batch)));
            }
            if self.finished {
                return Poll::Ready(None);
            }
            let mut progress = false;
            for k in 0..2 {
                let s = (self.turn + k) % 2;
                if self.sides[s].done {
                    continue;
                }
                match self.inputs[s].poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(batch))) => {
                        progress = true;
                        if batch.num_rows() > 0 {
                            let elapsed = self.baseline.elapsed_compute().clone();
                            let timer = elapsed.timer();
                            let r = self.on_batch(s, batch);
                            timer.done();
                            if let Err(e) = r {
                                return Poll::Ready(Some(Err(e)));
                            }
                        }
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                    Poll::Ready(None) => {
                        progress = true;
                        self.sides[s].done = true;
                    }
                    Poll::Pending => {}
                }
            }
            self.turn = 1 - self.turn;
            // Heartbeats seen by the taps while polling move the watermarks too.
            if let Err(e) = self.advance() {
                return Poll::Ready(Some(Err(e)));
            }
            if self.sides[LEFT].done && self.sides[RIGHT].done {
                self.finished = true;
                continue;
            }
            if !progress && self.output.is_empty() {
                return Poll::Pending;
            }
        }
    }
}

impl Stream for JoinStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let poll = self.poll_inner(cx);
        self.baseline.record_poll(poll)
    }
}

impl RecordBatchStream for JoinStream {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}
