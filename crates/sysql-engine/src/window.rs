//! Windowed aggregation over a live table, evaluated a window at a time.
//!
//! A query whose GROUP BY holds `tumble(ts, width)`, `hop(ts, slide, width)`
//! or `date_bin(width, ts)` over one `live.<table>` is rewritten to read a
//! table `__window` holding one window's rows plus three columns:
//! `window_start`, `window_end` and `window_lost` (events of this table lost,
//! late or dropped while the window was open: 0 means the window is
//! complete). Rows arrive in `ts` order from the reorder buffer; when the
//! watermark passes a window's end, the rewritten query runs over exactly that
//! window's rows as an ordinary bounded query, so every aggregate, HAVING,
//! ORDER BY and LIMIT works, and applies within the window. The watermark
//! moves with the wall clock, so a window is emitted `lateness` after it
//! closes even if no later event arrives. Windows with no rows emit nothing.
//! The first window also takes the rows it holds from history, so it is
//! complete when sysql was already running.

use crate::live::{LiveHub, LiveItem};
use crate::live_table::now_ns;
use crate::query::{PRIVATE_CATALOG, PRIVATE_SCHEMA};
use crate::{event_tables, Engine};
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, TimestampNanosecondArray, UInt64Array};
use datafusion::arrow::compute::and;
use datafusion::arrow::compute::kernels::cmp::{gt_eq, lt};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::TableReference;
use datafusion::common::{plan_err, DataFusionError, Result, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    visit_expressions_mut, visit_relations_mut, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    Ident, ObjectName, SetExpr, Statement, TableFactor,
};
use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use sysql_events::Table;

/// The window kinds, sizes in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowKind {
    Tumble {
        width: i64,
    },
    Hop {
        slide: i64,
        width: i64,
    },
    /// Per key (the other GROUP BY expressions): a session ends after `gap`
    /// with no event; `window_end` is its last event plus the gap.
    Session {
        gap: i64,
    },
}

/// A live windowed query, ready to run.
#[derive(Debug, Clone)]
pub struct WindowQuery {
    pub table: Table,
    pub kind: WindowKind,
    /// The statement over `__window`.
    pub sql: String,
    /// The other GROUP BY expressions (the session key), as SQL.
    pub keys: Vec<String>,
}

/// The table holding one window's rows, in the statement's private schema
/// (see [`crate::query`]).
pub const WINDOW_TABLE: &str = "__window";
/// Session windows' buffered rows, in the same schema.
const SESSION_BUFFER: &str = "__session_buffer";

/// A private table's name, as SQL.
fn private_name(table: &str) -> ObjectName {
    ObjectName::from(vec![Ident::new(PRIVATE_CATALOG), Ident::new(PRIVATE_SCHEMA), Ident::new(table)])
}

fn private_ref(table: &str) -> TableReference {
    TableReference::full(PRIVATE_CATALOG, PRIVATE_SCHEMA, table)
}

fn ident_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(i.value.to_lowercase()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.to_lowercase()),
        _ => None,
    }
}

fn args(f: &datafusion::sql::sqlparser::ast::Function) -> Vec<Expr> {
    let FunctionArguments::List(list) = &f.args else { return vec![] };
    list.args
        .iter()
        .filter_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// A window call in GROUP BY: the expression, its kind's name and its
/// interval arguments (slide before width for hop).
fn window_call(e: &Expr) -> Option<(String, Vec<Expr>)> {
    let Expr::Function(f) = e else { return None };
    let name = f.name.to_string().to_lowercase();
    let a = args(f);
    let is_ts = |e: &Expr| ident_name(e).as_deref() == Some("ts");
    match (name.as_str(), a.as_slice()) {
        ("tumble", [ts, width]) if is_ts(ts) => Some((name, vec![width.clone()])),
        ("hop", [ts, slide, width]) if is_ts(ts) => Some((name, vec![slide.clone(), width.clone()])),
        ("date_bin", [width, ts]) if is_ts(ts) => Some(("tumble".into(), vec![width.clone()])),
        ("session", [ts, gap]) if is_ts(ts) => Some((name, vec![gap.clone()])),
        _ => None,
    }
}

/// The live table a statement reads, if it reads exactly one and nothing else.
fn live_table(select: &datafusion::sql::sqlparser::ast::Select) -> Option<Table> {
    let [from] = select.from.as_slice() else { return None };
    if !from.joins.is_empty() {
        return None;
    }
    let TableFactor::Table { name, .. } = &from.relation else { return None };
    let parts: Vec<String> = name.0.iter().map(|p| p.to_string().to_lowercase()).collect();
    let [schema, table] = parts.as_slice() else { return None };
    if schema != "live" {
        return None;
    }
    event_tables().into_iter().map(|(t, _)| t).find(|t| t.name() == table)
}

/// Recognises a live windowed query: a SELECT from one live table whose
/// GROUP BY holds a window call. `Ok(None)`: not one (run it as usual).
pub async fn plan(ctx: &SessionContext, statement: &DFStatement) -> Result<Option<WindowQuery>> {
    let DFStatement::Statement(stmt) = statement else { return Ok(None) };
    let mut stmt = stmt.as_ref().clone();
    let Statement::Query(query) = &stmt else { return Ok(None) };
    let SetExpr::Select(select) = query.body.as_ref() else { return Ok(None) };
    let Some(table) = live_table(select) else { return Ok(None) };
    let GroupByExpr::Expressions(keys, _) = &select.group_by else { return Ok(None) };
    let Some((window_expr, (kind, intervals))) = keys.iter().find_map(|k| window_call(k).map(|w| (k.clone(), w)))
    else {
        return Ok(None);
    };
    let kind = match kind.as_str() {
        "tumble" => WindowKind::Tumble { width: interval_ns(ctx, &intervals[0]).await? },
        "hop" => {
            let (slide, width) = (interval_ns(ctx, &intervals[0]).await?, interval_ns(ctx, &intervals[1]).await?);
            if width < slide {
                return plan_err!("hop(ts, slide, width): the width must be at least the slide");
            }
            WindowKind::Hop { slide, width }
        }
        _ => WindowKind::Session { gap: interval_ns(ctx, &intervals[0]).await? },
    };
    let other_keys: Vec<String> = keys.iter().filter(|k| **k != window_expr).map(|k| k.to_string()).collect();

    // Rewrite: the window call becomes the window columns, the table __window.
    let start = Expr::Identifier(Ident::new("window_start"));
    let _ = visit_expressions_mut(&mut stmt, |e| {
        if *e == window_expr {
            *e = start.clone();
        }
        ControlFlow::<()>::Continue(())
    });
    // Only the live table becomes the window: other relations (a view in
    // a subquery) stay what they are.
    let _ = visit_relations_mut(&mut stmt, |name| {
        let parts: Vec<String> = name.0.iter().map(|p| p.to_string().to_lowercase()).collect();
        if parts == ["live", table.name()] {
            *name = private_name(WINDOW_TABLE);
        }
        ControlFlow::<()>::Continue(())
    });
    if let Statement::Query(q) = &mut stmt {
        if let SetExpr::Select(s) = q.body.as_mut() {
            if let GroupByExpr::Expressions(keys, _) = &mut s.group_by {
                for extra in ["window_end", "window_lost"] {
                    keys.push(Expr::Identifier(Ident::new(extra)));
                }
            }
        }
    }
    Ok(Some(WindowQuery { table, kind, sql: stmt.to_string(), keys: other_keys }))
}

/// Evaluates an interval expression to nanoseconds (no months: their length
/// varies).
async fn interval_ns(ctx: &SessionContext, e: &Expr) -> Result<i64> {
    let batches = ctx.sql(&format!("SELECT {e}")).await?.collect().await?;
    let v = batches.first().filter(|b| b.num_rows() == 1).map(|b| ScalarValue::try_from_array(b.column(0), 0));
    let ns = match v {
        Some(Ok(ScalarValue::IntervalMonthDayNano(Some(v)))) if v.months == 0 => {
            Some(v.days as i64 * 86_400_000_000_000 + v.nanoseconds)
        }
        Some(Ok(ScalarValue::IntervalDayTime(Some(v)))) => {
            Some(v.days as i64 * 86_400_000_000_000 + v.milliseconds as i64 * 1_000_000)
        }
        _ => None,
    };
    match ns {
        Some(ns) if ns > 0 => Ok(ns),
        _ => plan_err!("window size {e} must be a positive interval of days or less, like INTERVAL '10 seconds'"),
    }
}

/// The schema of `__window`: the table's columns and the window columns.
pub fn window_schema(table: Table) -> SchemaRef {
    let ts = crate::event::ts_type();
    let schema = crate::event::schema(table);
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("window_start", ts.clone(), false));
    fields.push(Field::new("window_end", ts, false));
    fields.push(Field::new("window_lost", DataType::UInt64, false));
    Arc::new(Schema::new(fields))
}

/// Runs a live windowed query until `out` returns an error or the stream
/// ends, handing each window's result to `out`.
pub async fn run(
    engine: &Engine,
    hub: &Arc<LiveHub>,
    ctx: &SessionContext,
    q: &WindowQuery,
    mut out: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let schema = crate::event::schema(q.table);
    let wschema = window_schema(q.table);
    let (slide, width) = match q.kind {
        WindowKind::Tumble { width } => (width, width),
        WindowKind::Hop { slide, width } => (slide, width),
        WindowKind::Session { gap } => return run_sessions(engine, hub, ctx, q, &schema, &wschema, gap, out).await,
    };
    let _registered = whole_capture(engine, q.table).await;
    let (mut rx, wm0) = hub.subscribe(q.table, true, now_ns());
    // The first windows that are still open take their earlier rows from history.
    let mut next = (wm0 - width).div_euclid(slide) * slide + slide;
    let mut buffer: Vec<RecordBatch> = engine.history().snapshot(q.table, Some(next), Some(wm0));
    buffer = buffer.iter().map(|b| rows_in(b, next, wm0 + 1)).collect::<Result<_>>()?;
    let mut losses = LossClock::new(engine, q.table, wm0);
    while let Some(wm) = next_watermark(&mut rx, &mut buffer, &mut losses).await {
        while next + width <= wm {
            let (start, end) = (next, next + width);
            let rows: Vec<RecordBatch> = buffer.iter().map(|b| rows_in(b, start, end)).collect::<Result<_>>()?;
            let n: usize = rows.iter().map(|b| b.num_rows()).sum();
            if n > 0 {
                let lost = losses.between(start, end);
                let window = with_window_columns(&schema, &wschema, &rows, start, end, lost)?;
                evaluate(ctx, &wschema, window, &q.sql, &mut out).await?;
            }
            next += slide;
            // rows before the next window's start are no longer needed
            buffer = buffer.iter().map(|b| rows_in(b, next, i64::MAX)).collect::<Result<Vec<_>>>()?;
            buffer.retain(|b| b.num_rows() > 0);
            if buffer.is_empty() && next + width <= wm {
                // skip empty windows in one step
                next = next.max((wm - width).div_euclid(slide) * slide);
            }
        }
    }
    Ok(())
}

/// A window reads every event of its table: when running scans narrow the
/// capture, it registers so, and subscribes once the kernel captures them.
async fn whole_capture(engine: &Engine, table: Table) -> crate::capture_need::NeedGuard {
    let (guard, applied) = engine.capture_needs().register(crate::capture_need::Need::whole(table));
    applied.await;
    guard
}

/// Session windows: on each watermark, the buffered rows are split into
/// sessions per key (a gap of more than `gap` starts a new one) by a query
/// over the buffer; sessions whose end (last event + gap) the watermark has
/// passed are evaluated and dropped, the others stay buffered.
#[allow(clippy::too_many_arguments)]
async fn run_sessions(
    engine: &Engine,
    hub: &Arc<LiveHub>,
    ctx: &SessionContext,
    q: &WindowQuery,
    schema: &SchemaRef,
    wschema: &SchemaRef,
    gap: i64,
    mut out: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let _registered = whole_capture(engine, q.table).await;
    let (mut rx, wm0) = hub.subscribe(q.table, true, now_ns());
    let mut losses = LossClock::new(engine, q.table, wm0);
    let mut buffer: Vec<RecordBatch> = Vec::new();
    // (A named WINDOW clause would be shorter, but DataFusion 55 drops its
    // PARTITION BY for lag(): the spec is spelled out.)
    let partition = if q.keys.is_empty() { String::new() } else { format!("PARTITION BY {}", q.keys.join(", ")) };
    let columns: Vec<String> = schema.fields().iter().map(|f| format!("\"{}\"", f.name())).collect();
    let columns = columns.join(", ");
    let sessions_sql = format!(
        "WITH marked AS (SELECT *, CASE WHEN lag(ts) OVER ({partition} ORDER BY ts) IS NULL \
                 OR ts > lag(ts) OVER ({partition} ORDER BY ts) + arrow_cast({gap}, 'Duration(Nanosecond)') \
                 THEN 1 ELSE 0 END AS __new FROM {buffer}), \
              numbered AS (SELECT *, sum(__new) OVER ({partition} ORDER BY ts ROWS UNBOUNDED PRECEDING) AS __sid FROM marked) \
         SELECT {columns}, \
                min(ts) OVER ({p2} __sid) AS window_start, \
                max(ts) OVER ({p2} __sid) + arrow_cast({gap}, 'Duration(Nanosecond)') AS window_end \
         FROM numbered",
        buffer = private_name(SESSION_BUFFER),
        p2 = if q.keys.is_empty() { "PARTITION BY".to_string() } else { format!("PARTITION BY {},", q.keys.join(", ")) },
    );
    while let Some(wm) = next_watermark(&mut rx, &mut buffer, &mut losses).await {
        if buffer.iter().all(|b| b.num_rows() == 0) {
            buffer.clear();
            continue;
        }
        // the oldest buffered row's session cannot end before row + gap
        let oldest = buffer.iter().filter(|b| b.num_rows() > 0).map(|b| ts_of(b).value(0)).min().unwrap_or(i64::MAX);
        if oldest.saturating_add(gap) > wm {
            continue;
        }
        let all = concat_batches(schema, &buffer)?;
        ctx.deregister_table(private_ref(SESSION_BUFFER))?;
        ctx.register_table(private_ref(SESSION_BUFFER), Arc::new(MemTable::try_new(schema.clone(), vec![vec![all]])?))?;
        let split = ctx.sql(&sessions_sql).await?.collect().await?;
        let mut closed = Vec::new();
        buffer.clear();
        for b in &split {
            let ends = b.column(b.num_columns() - 1).as_any().downcast_ref::<TimestampNanosecondArray>();
            let Some(ends) = ends else { return plan_err!("session end is not a timestamp") };
            let cut = datafusion::arrow::array::Scalar::new(
                TimestampNanosecondArray::new_scalar(wm)
                    .into_inner()
                    .with_timezone_opt(ends.timezone().map(str::to_string)),
            );
            let done = datafusion::arrow::compute::kernels::cmp::lt_eq(ends, &cut)?;
            let open = datafusion::arrow::compute::not(&done)?;
            let keep = filter_record_batch(b, &open)?;
            buffer.push(RecordBatch::try_new(schema.clone(), keep.columns()[..schema.fields().len()].to_vec())?);
            closed.push(filter_record_batch(b, &done)?);
        }
        let n: usize = closed.iter().map(|b| b.num_rows()).sum();
        if n == 0 {
            continue;
        }
        // window_lost: losses between the oldest closed session's start and now
        let closed_all = concat_batches(&closed[0].schema(), &closed)?;
        let start_col = closed_all.column(closed_all.num_columns() - 2).clone();
        let first = start_col
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .map(|a| a.values().iter().copied().min().unwrap_or(wm));
        let lost = losses.between(first.unwrap_or(wm), wm);
        let mut cols = closed_all.columns().to_vec();
        cols.push(Arc::new(UInt64Array::from(vec![lost; closed_all.num_rows()])));
        let cols: Vec<ArrayRef> = cols
            .into_iter()
            .zip(wschema.fields())
            .map(|(c, f)| datafusion::arrow::compute::cast(&c, f.data_type()))
            .collect::<std::result::Result<_, _>>()?;
        let window = RecordBatch::try_new(wschema.clone(), cols)?;
        evaluate(ctx, wschema, window, &q.sql, &mut out).await?;
    }
    Ok(())
}

/// Buffers rows until the next watermark, samples the loss counters at it,
/// and returns it (`None` when the stream ends).
async fn next_watermark(
    rx: &mut tokio::sync::mpsc::Receiver<LiveItem>,
    buffer: &mut Vec<RecordBatch>,
    losses: &mut LossClock<'_>,
) -> Option<i64> {
    loop {
        match rx.recv().await? {
            LiveItem::Rows(b) => buffer.push(b),
            LiveItem::Watermark(wm) => {
                losses.sample(wm);
                return Some(wm);
            }
        }
    }
}

/// Runs the rewritten query over one window's rows (as `__window`).
async fn evaluate(
    ctx: &SessionContext,
    wschema: &SchemaRef,
    window: RecordBatch,
    sql: &str,
    out: &mut impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    ctx.deregister_table(private_ref(WINDOW_TABLE))?;
    ctx.register_table(private_ref(WINDOW_TABLE), Arc::new(MemTable::try_new(wschema.clone(), vec![vec![window]])?))?;
    for b in ctx.sql(sql).await?.collect().await? {
        out(b)?;
    }
    Ok(())
}

fn ts_of(b: &RecordBatch) -> &TimestampNanosecondArray {
    b.column(0).as_any().downcast_ref().expect("ts is column 0")
}

/// The rows of `b` with `start <= ts < end`.
fn rows_in(b: &RecordBatch, start: i64, end: i64) -> Result<RecordBatch> {
    let ts = ts_of(b);
    let tz = ts.timezone().map(str::to_string);
    let s = TimestampNanosecondArray::new_scalar(start);
    let s = datafusion::arrow::array::Scalar::new(s.into_inner().with_timezone_opt(tz.clone()));
    let e = datafusion::arrow::array::Scalar::new(
        TimestampNanosecondArray::new_scalar(end).into_inner().with_timezone_opt(tz),
    );
    let keep = and(&gt_eq(ts, &s)?, &lt(ts, &e)?)?;
    Ok(filter_record_batch(b, &keep)?)
}

fn with_window_columns(
    schema: &SchemaRef,
    wschema: &SchemaRef,
    rows: &[RecordBatch],
    start: i64,
    end: i64,
    lost: u64,
) -> Result<RecordBatch> {
    let all = concat_batches(schema, rows)?;
    let n = all.num_rows();
    let mut cols: Vec<ArrayRef> = all.columns().to_vec();
    let ts = |v| Arc::new(TimestampNanosecondArray::from(vec![v; n]).with_timezone("UTC")) as ArrayRef;
    cols.push(ts(start));
    cols.push(ts(end));
    cols.push(Arc::new(UInt64Array::from(vec![lost; n])));
    RecordBatch::try_new(wschema.clone(), cols).map_err(DataFusionError::from)
}

/// When losses happened, at watermark granularity: samples of the table's
/// loss counters (kernel, user space, late) taken at each watermark.
struct LossClock<'a> {
    engine: &'a Engine,
    table: Table,
    samples: VecDeque<(i64, u64)>,
}

impl<'a> LossClock<'a> {
    fn new(engine: &'a Engine, table: Table, wm0: i64) -> Self {
        let mut c = LossClock { engine, table, samples: VecDeque::new() };
        c.sample(wm0);
        c
    }

    fn total(&self) -> u64 {
        let s = self.engine.stats().table(self.table);
        s.lost_kernel.load(Relaxed) + s.lost_user.load(Relaxed) + s.late.load(Relaxed)
    }

    fn sample(&mut self, wm: i64) {
        let v = self.total();
        self.samples.push_back((wm, v));
        // keep an hour of samples at most
        while self.samples.len() > 400_000 {
            self.samples.pop_front();
        }
    }

    /// The counter as of time `t`: the first sample at or after it.
    fn at(&self, t: i64) -> u64 {
        self.samples.iter().find(|(wm, _)| *wm >= t).or(self.samples.back()).map(|(_, v)| *v).unwrap_or(0)
    }

    fn between(&mut self, start: i64, end: i64) -> u64 {
        let v = self.at(end).saturating_sub(self.at(start));
        while self.samples.len() > 2 && self.samples[1].0 <= start {
            self.samples.pop_front();
        }
        v
    }
}
