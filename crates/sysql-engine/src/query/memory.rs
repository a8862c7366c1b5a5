//! Memory that holds: every statement has its own cap (`--query-memory`,
//! 2 GiB by default), and all running statements together share one budget,
//! so a hostile or careless query fails with one line instead of taking the
//! host's memory, and with it the events sysql holds.
//!
//! Three things hold memory while a statement runs, and each is charged:
//! - operator state (hash tables, sorts, join buffers): DataFusion reserves
//!   it from the statement's [`StatementPool`];
//! - values built by functions (`repeat`, `lpad`, `replace`, `array_repeat`,
//!   `range`, ...): DataFusion does not count them, so those functions are
//!   wrapped ([`guard_functions`]) and each call first works out the bytes it
//!   would build from its arguments and fails if they do not fit what is left
//!   of the cap;
//! - results a front end holds (the shell's table printer, a saved query's
//!   diff): the front end reserves them from the same pool
//!   ([`super::QueryStream::reservation`]).
//!
//! Anything else is caught between batches: a running statement's stream
//! reads the process's resident memory (at most every 20 ms) and fails when
//! it passes the process limit ([`ProcessLimit`]).

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::memory_pool::{MemoryLimit, MemoryPool, MemoryReservation};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;
use std::any::Any;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

/// `1.5 GiB`, `512 MiB`, `64 KiB`, `100 B`.
pub fn human_bytes(n: usize) -> String {
    let units = [(1usize << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (scale, unit) in units {
        if n >= scale {
            let v = n as f64 / scale as f64;
            return if v.fract() == 0.0 { format!("{v:.0} {unit}") } else { format!("{v:.1} {unit}") };
        }
    }
    format!("{n} B")
}

/// Memory all running statements share.
#[derive(Debug)]
pub struct QueryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl QueryBudget {
    pub fn new(limit: usize) -> Self {
        QueryBudget { limit, used: AtomicUsize::new(0) }
    }

    /// Bytes reserved by all running statements.
    pub fn used(&self) -> usize {
        self.used.load(Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// One statement's memory: its own cap, within the shared budget.
pub struct StatementPool {
    budget: Arc<QueryBudget>,
    cap: usize,
    used: AtomicUsize,
}

impl StatementPool {
    pub fn new(budget: Arc<QueryBudget>, cap: usize) -> Self {
        StatementPool { budget, cap, used: AtomicUsize::new(0) }
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Bytes the statement holds now.
    pub fn used(&self) -> usize {
        self.used.load(Relaxed)
    }

    /// Bytes that fit before the statement reaches its cap or the budget runs out.
    pub fn available(&self) -> usize {
        let own = self.cap.saturating_sub(self.used.load(Relaxed));
        let shared = self.budget.limit.saturating_sub(self.budget.used());
        own.min(shared)
    }

    /// The error of a statement that needs `more` bytes than fit; `what`
    /// says what needs them ("repeat() would build 9.3 GiB").
    pub fn exhausted(&self, what: &str, more: usize) -> DataFusionError {
        let used = self.used.load(Relaxed);
        if self.cap.saturating_sub(used) < more {
            let holding = if used > 0 { format!(" while it holds {}", human_bytes(used)) } else { String::new() };
            DataFusionError::ResourcesExhausted(format!(
                "{what}{holding}, past the query's memory cap of {} (--query-memory)",
                human_bytes(self.cap)
            ))
        } else {
            DataFusionError::ResourcesExhausted(format!(
                "{what}, and the queries running now use {} of the {} all queries share; try again when they finish",
                human_bytes(self.budget.used()),
                human_bytes(self.budget.limit)
            ))
        }
    }
}

impl std::fmt::Debug for StatementPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StatementPool({} of {})", human_bytes(self.used()), human_bytes(self.cap))
    }
}

impl std::fmt::Display for StatementPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

impl Drop for StatementPool {
    fn drop(&mut self) {
        // Reservations give back what they hold when dropped; this only
        // matters if one outlived its pool's users.
        let left = self.used.load(Relaxed);
        self.budget.used.fetch_sub(left, Relaxed);
    }
}

impl MemoryPool for StatementPool {
    fn name(&self) -> &str {
        "sysql statement"
    }

    fn grow(&self, _reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Relaxed);
        self.budget.used.fetch_add(additional, Relaxed);
    }

    fn shrink(&self, _reservation: &MemoryReservation, shrink: usize) {
        self.used.fetch_sub(shrink, Relaxed);
        self.budget.used.fetch_sub(shrink, Relaxed);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let own = self.used.fetch_add(additional, Relaxed) + additional;
        if own > self.cap {
            self.used.fetch_sub(additional, Relaxed);
            return Err(self.exhausted(&grow_what(reservation, additional), additional));
        }
        let shared = self.budget.used.fetch_add(additional, Relaxed) + additional;
        if shared > self.budget.limit {
            self.budget.used.fetch_sub(additional, Relaxed);
            self.used.fetch_sub(additional, Relaxed);
            return Err(self.exhausted(&grow_what(reservation, additional), additional));
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        StatementPool::used(self)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.cap)
    }
}

fn grow_what(reservation: &MemoryReservation, additional: usize) -> String {
    format!("{} needs {} more", reservation.consumer().name(), human_bytes(additional))
}

/// Config extension carrying the running statement's pool to the function
/// guards (functions see the session's config options, not its runtime).
#[derive(Debug, Clone, Default)]
pub struct QueryMemory(pub Option<Arc<StatementPool>>);

impl ConfigExtension for QueryMemory {
    const PREFIX: &'static str = "sysql_statement_memory";
}

impl ExtensionOptions for QueryMemory {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, _value: &str) -> Result<()> {
        Err(DataFusionError::Configuration(format!("{key} cannot be set")))
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        Vec::new()
    }
}

/// The process's resident memory past which statements fail between
/// batches: what sysql holds at start, plus its history cap, plus what
/// all statements may use, plus slack.
#[derive(Debug)]
pub struct ProcessLimit {
    limit_bytes: usize,
    /// Milliseconds since `start` of the last reading, and the reading.
    last: AtomicI64,
    rss: AtomicUsize,
    start: Instant,
}

/// Slack over the sum of the caps: allocator overhead, the runtime, the
/// shell's own buffers.
const PROCESS_SLACK: usize = 512 << 20;
/// How often a statement may read /proc/self/statm.
const RSS_EVERY_MS: i64 = 20;

impl ProcessLimit {
    pub fn new(history_cap: usize, queries: usize) -> Self {
        let base = resident_bytes().unwrap_or(0);
        ProcessLimit {
            limit_bytes: base.saturating_add(history_cap).saturating_add(queries).saturating_add(PROCESS_SLACK),
            last: AtomicI64::new(i64::MIN),
            rss: AtomicUsize::new(base),
            start: Instant::now(),
        }
    }

    /// Fails if the process's resident memory is past the limit (read at
    /// most every 20 ms; between readings the last one stands).
    pub fn check(&self) -> Result<()> {
        let now = self.start.elapsed().as_millis() as i64;
        let last = self.last.load(Relaxed);
        if now.saturating_sub(last) >= RSS_EVERY_MS && self.last.compare_exchange(last, now, Relaxed, Relaxed).is_ok() {
            if let Some(rss) = resident_bytes() {
                self.rss.store(rss, Relaxed);
            }
        }
        let rss = self.rss.load(Relaxed);
        if rss > self.limit_bytes {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "sysql's memory reached {} (its limit is {}: history, every query's cap and slack); \
                 the query was stopped",
                human_bytes(rss),
                human_bytes(self.limit_bytes)
            )));
        }
        Ok(())
    }
}

/// Resident set size of this process, from /proc/self/statm.
pub fn resident_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Fails if the literals of an (optimized) plan, copied into every row of a
/// batch, would not fit the statement's memory: a projection of a literal
/// makes a column of as many copies of it as its input has rows in a batch.
pub fn check_literals(
    plan: &datafusion::logical_expr::LogicalPlan,
    batch_size: usize,
    pool: &StatementPool,
) -> Result<()> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut copies = 0usize;
    let mut literal_bytes = 0usize;
    plan.apply_with_subqueries(|node| {
        let mut bytes = 0usize;
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::Literal(v, _) = e {
                    bytes = bytes.saturating_add(v.size());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        let rows = node.inputs().iter().map(|i| rows_at_most(i, batch_size)).max().unwrap_or(1);
        literal_bytes = literal_bytes.saturating_add(bytes);
        copies = copies.saturating_add(bytes.saturating_mul(rows));
        Ok(TreeNodeRecursion::Continue)
    })?;
    if copies > pool.available() {
        let what = format!(
            "its literals ({}) copied into every row of a batch would take {}",
            human_bytes(literal_bytes),
            human_bytes(copies)
        );
        return Err(pool.exhausted(&what, copies));
    }
    Ok(())
}

/// The most rows a plan gives in one batch: known for constant inputs, a
/// batch otherwise.
fn rows_at_most(plan: &datafusion::logical_expr::LogicalPlan, batch_size: usize) -> usize {
    use datafusion::logical_expr::LogicalPlan as P;
    match plan {
        P::EmptyRelation(e) => usize::from(e.produce_one_row),
        P::Values(v) => v.values.len().min(batch_size),
        P::Aggregate(a) if a.group_expr.is_empty() => 1,
        P::Projection(_) | P::Filter(_) | P::Sort(_) | P::SubqueryAlias(_) | P::Limit(_) => {
            plan.inputs().first().map(|i| rows_at_most(i, batch_size)).unwrap_or(batch_size)
        }
        _ => batch_size,
    }
}

/// How many bytes a call would build, from its arguments.
type Estimate = fn(&[ColumnarValue], usize) -> usize;

/// Wraps the functions that build values from small inputs so that each
/// call checks what it would build against the statement's memory first.
pub fn guard_functions(ctx: &SessionContext) {
    let guarded: [(&str, Estimate); 11] = [
        ("repeat", estimate_repeat),
        ("lpad", estimate_pad),
        ("rpad", estimate_pad),
        ("replace", estimate_replace),
        ("regexp_replace", estimate_regexp_replace),
        ("concat", estimate_concat),
        ("concat_ws", estimate_concat),
        ("array_repeat", estimate_array_repeat),
        ("array_resize", estimate_array_resize),
        ("range", estimate_range),
        ("generate_series", estimate_range),
    ];
    let state = ctx.state();
    let functions = state.scalar_functions();
    for (name, estimate) in guarded {
        if let Some(inner) = functions.get(name) {
            // Volatile, so that the optimizer does not fold a call on
            // constants into one literal, which a projection would then copy
            // into every row unchecked: each call runs per batch, and its
            // estimate counts the batch's rows.
            let mut signature = inner.signature().clone();
            signature.volatility = datafusion::logical_expr::Volatility::Volatile;
            let udf = ScalarUDF::new_from_impl(Guarded { inner: inner.as_ref().clone(), signature, estimate });
            ctx.register_udf(udf);
        }
    }
}

/// A function whose calls first check the bytes they would build.
#[derive(Debug)]
struct Guarded {
    inner: ScalarUDF,
    signature: Signature,
    estimate: Estimate,
}

/// Two guards are the same if they guard the same function (each function
/// has one estimate).
impl PartialEq for Guarded {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}

impl Eq for Guarded {}

impl std::hash::Hash for Guarded {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.hash(state)
    }
}

impl Guarded {
    fn check(&self, args: &ScalarFunctionArgs) -> Result<()> {
        let Some(pool) = args.config_options.extensions.get::<QueryMemory>().and_then(|m| m.0.clone()) else {
            return Ok(());
        };
        let bytes = (self.estimate)(&args.args, args.number_rows.max(1));
        if bytes > pool.available() {
            let what = format!("{}() would build {}", self.inner.name(), human_bytes(bytes));
            return Err(pool.exhausted(&what, bytes));
        }
        Ok(())
    }
}

impl ScalarUDFImpl for Guarded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.inner().return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<datafusion::arrow::datatypes::FieldRef> {
        self.inner.inner().return_field_from_args(args)
    }

    fn is_strict(&self) -> bool {
        self.inner.inner().is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.check(&args)?;
        self.inner.inner().invoke_with_args(args)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.inner().simplify(args, info)
    }

    fn short_circuits(&self) -> bool {
        self.inner.inner().short_circuits()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.inner().coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
        self.inner.inner().documentation()
    }
}

/// Per-row values of an argument: one value for a scalar (it stands for
/// every row, see [`expand`]).
fn per_row<T>(
    arg: &ColumnarValue,
    scalar: impl Fn(&ScalarValue) -> T,
    array: impl Fn(&ArrayRef, usize) -> T,
) -> Vec<T> {
    match arg {
        ColumnarValue::Scalar(s) => vec![scalar(s)],
        ColumnarValue::Array(a) => (0..a.len()).map(|i| array(a, i)).collect(),
    }
}

/// Length in bytes of a string value (0 for NULL or not a string).
fn scalar_len(s: &ScalarValue) -> usize {
    match s {
        ScalarValue::Utf8(Some(v)) | ScalarValue::LargeUtf8(Some(v)) | ScalarValue::Utf8View(Some(v)) => v.len(),
        _ => 0,
    }
}

fn array_len(a: &ArrayRef, i: usize) -> usize {
    if a.is_null(i) {
        return 0;
    }
    match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().value(i).len(),
        DataType::LargeUtf8 => a.as_string::<i64>().value(i).len(),
        DataType::Utf8View => a.as_string_view().value(i).len(),
        _ => 0,
    }
}

fn scalar_int(s: &ScalarValue) -> i64 {
    match s {
        ScalarValue::Int64(Some(v)) => *v,
        ScalarValue::Int32(Some(v)) => i64::from(*v),
        ScalarValue::Int16(Some(v)) => i64::from(*v),
        ScalarValue::Int8(Some(v)) => i64::from(*v),
        ScalarValue::UInt64(Some(v)) => i64::try_from(*v).unwrap_or(i64::MAX),
        ScalarValue::UInt32(Some(v)) => i64::from(*v),
        ScalarValue::UInt16(Some(v)) => i64::from(*v),
        ScalarValue::UInt8(Some(v)) => i64::from(*v),
        ScalarValue::TimestampNanosecond(Some(v), _) => *v,
        ScalarValue::TimestampMicrosecond(Some(v), _) => v.saturating_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.saturating_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.saturating_mul(1_000_000_000),
        ScalarValue::Date32(Some(v)) => i64::from(*v).saturating_mul(86_400_000_000_000),
        ScalarValue::IntervalMonthDayNano(Some(v)) => (i64::from(v.months) * 30 + i64::from(v.days))
            .saturating_mul(86_400_000_000_000)
            .saturating_add(v.nanoseconds),
        ScalarValue::IntervalDayTime(Some(v)) => {
            i64::from(v.days).saturating_mul(86_400_000_000_000).saturating_add(i64::from(v.milliseconds) * 1_000_000)
        }
        ScalarValue::IntervalYearMonth(Some(v)) => i64::from(*v).saturating_mul(30 * 86_400_000_000_000),
        _ => 0,
    }
}

fn array_int(a: &ArrayRef, i: usize) -> i64 {
    if a.is_null(i) {
        return 0;
    }
    ScalarValue::try_from_array(a, i).map(|s| scalar_int(&s)).unwrap_or(0)
}

/// Per-row lengths of a string argument.
fn lens(arg: &ColumnarValue, rows: usize) -> Vec<usize> {
    expand(per_row(arg, scalar_len, array_len), rows)
}

/// Per-row values of an integer (or time) argument.
fn ints(arg: &ColumnarValue, rows: usize) -> Vec<i64> {
    expand(per_row(arg, scalar_int, array_int), rows)
}

/// A scalar's single value stands for every row.
fn expand<T: Clone>(values: Vec<T>, rows: usize) -> Vec<T> {
    if values.len() == 1 && rows > 1 {
        vec![values[0].clone(); rows]
    } else {
        values
    }
}

fn rows_of(args: &[ColumnarValue], rows: usize) -> usize {
    args.iter()
        .find_map(|a| match a {
            ColumnarValue::Array(a) => Some(a.len()),
            ColumnarValue::Scalar(_) => None,
        })
        .unwrap_or(if rows == 0 { 1 } else { rows })
}

/// Bytes of `n` string rows holding `bytes` value bytes (offsets included).
fn strings(rows: usize, bytes: u128) -> usize {
    usize::try_from(bytes.saturating_add(8 * rows as u128 + 8)).unwrap_or(usize::MAX)
}

fn estimate_repeat(args: &[ColumnarValue], rows: usize) -> usize {
    let rows = rows_of(args, rows);
    let [s, n, ..] = args else { return 0 };
    let total: u128 = lens(s, rows).iter().zip(ints(n, rows)).map(|(l, n)| *l as u128 * n.max(0) as u128).sum();
    strings(rows, total)
}

fn estimate_pad(args: &[ColumnarValue], rows: usize) -> usize {
    let rows = rows_of(args, rows);
    let [s, n, ..] = args else { return 0 };
    // n characters of at most 4 bytes each
    let total: u128 =
        lens(s, rows).iter().zip(ints(n, rows)).map(|(l, n)| (*l as u128).max(n.max(0) as u128 * 4)).sum();
    strings(rows, total)
}

fn estimate_replace(args: &[ColumnarValue], rows: usize) -> usize {
    let rows = rows_of(args, rows);
    let [s, from, to, ..] = args else { return 0 };
    let (s, from, to) = (lens(s, rows), lens(from, rows), lens(to, rows));
    let total: u128 = (0..rows)
        .map(|i| {
            let (s, from, to) = (s[i] as u128, from[i] as u128, to[i] as u128);
            let matches = s.checked_div(from).unwrap_or(s + 1);
            s + matches * to
        })
        .sum();
    strings(rows, total)
}

fn estimate_regexp_replace(args: &[ColumnarValue], rows: usize) -> usize {
    let rows = rows_of(args, rows);
    let [s, _pattern, replacement, ..] = args else { return 0 };
    let (s, r) = (lens(s, rows), lens(replacement, rows));
    // every position may match, and each group reference may copy the whole text
    let refs = match replacement {
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(t))) => t.matches(['\\', '$']).count() as u128,
        _ => 9,
    };
    let total: u128 = (0..rows).map(|i| s[i] as u128 + (s[i] as u128 + 1) * (r[i] as u128 + refs * s[i] as u128)).sum();
    strings(rows, total)
}

fn estimate_concat(args: &[ColumnarValue], rows: usize) -> usize {
    let rows = rows_of(args, rows);
    let per_arg: Vec<Vec<usize>> = args.iter().map(|a| lens(a, rows)).collect();
    // concat_ws puts its first argument between each pair of the others
    let total: u128 = per_arg.iter().map(|v| v.iter().map(|l| *l as u128 * args.len() as u128).sum::<u128>()).sum();
    strings(rows, total)
}

/// Bytes of one value of an argument (an element to repeat).
fn value_bytes(arg: &ColumnarValue, rows: usize) -> Vec<usize> {
    match arg {
        ColumnarValue::Scalar(s) => vec![s.size(); rows.max(1)],
        ColumnarValue::Array(a) => {
            let each = a.get_array_memory_size() / a.len().max(1);
            vec![each.max(1); a.len()]
        }
    }
}

fn estimate_array_repeat(args: &[ColumnarValue], rows: usize) -> usize {
    let rows = rows_of(args, rows);
    let [v, n, ..] = args else { return 0 };
    let total: u128 = value_bytes(v, rows).iter().zip(ints(n, rows)).map(|(b, n)| *b as u128 * n.max(0) as u128).sum();
    usize::try_from(total).unwrap_or(usize::MAX)
}

fn estimate_array_resize(args: &[ColumnarValue], rows: usize) -> usize {
    let rows = rows_of(args, rows);
    let [_array, n, ..] = args else { return 0 };
    let each = args.get(2).map(|v| value_bytes(v, rows)).unwrap_or_else(|| vec![16; rows]);
    let total: u128 = each.iter().zip(ints(n, rows)).map(|(b, n)| *b as u128 * n.max(0) as u128).sum();
    usize::try_from(total).unwrap_or(usize::MAX)
}

fn estimate_range(args: &[ColumnarValue], rows: usize) -> usize {
    let rows = rows_of(args, rows);
    let (start, stop, step) = match args {
        [stop] => (vec![0; rows], ints(stop, rows), vec![1; rows]),
        [start, stop] => (ints(start, rows), ints(stop, rows), vec![1; rows]),
        [start, stop, step, ..] => (ints(start, rows), ints(stop, rows), ints(step, rows)),
        [] => return 0,
    };
    let total: u128 = (0..rows)
        .map(|i| {
            let span = (i128::from(stop[i]) - i128::from(start[i])).unsigned_abs();
            let step = i128::from(step[i]).unsigned_abs().max(1);
            (span / step + 1) * 8
        })
        .sum();
    usize::try_from(total).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use crate::query::{Policy, QuerySession};
    use crate::{Engine, EngineConfig};
    use futures::StreamExt;

    async fn first_error(sql: &str) -> Option<String> {
        let engine = Engine::new(EngineConfig { query_memory_bytes: 64 << 20, ..EngineConfig::default() });
        let session = QuerySession::new(&engine, Policy::default()).unwrap();
        let mut stream = match session.run(sql).await {
            Ok(s) => s,
            Err(e) => return Some(e.message),
        };
        while let Some(b) = stream.next().await {
            if let Err(e) = b {
                return Some(e.message);
            }
        }
        None
    }

    #[tokio::test]
    async fn functions_that_build_values_check_them_first() {
        let err = first_error("SELECT length(repeat('x', 2147483647))").await;
        assert_eq!(
            err.as_deref(),
            Some("resources exhausted: repeat() would build 2.0 GiB, past the query's memory cap of 64 MiB (--query-memory)")
        );
        assert_eq!(first_error("SELECT length(repeat('x', 1000))").await, None);
    }
}
