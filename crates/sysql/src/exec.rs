//! Runs SQL text: plans each statement, collects bounded results, streams unbounded (live) ones,
//! and lets Ctrl-C cancel the running query rather than the process.

use std::fmt;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{collect, execute_stream, ExecutionPlan, ExecutionPlanProperties};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion::sql::sqlparser::dialect::dialect_from_str;
use datafusion::sql::sqlparser::parser::ParserError;
use futures::StreamExt;
use sysql_engine::live_table::prepare_live;
use sysql_engine::window;

use crate::print::{Printer, StreamPrinter};
use crate::status::StatusLine;

/// Session extension: a live statement ends cleanly at this instant (`--for`
/// in one-shot use) instead of running until Ctrl-C.
#[derive(Debug, Clone, Copy)]
pub struct StopAt(pub Instant);

/// Session extension: called before each statement, so that it sees every
/// event captured up to then (the capture's sync).
pub struct BeforeStatement(pub Box<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>);

/// The most SQL text run at once. With [`STACK_BYTES`] of stack, even text
/// that is one long operator chain (a deep expression tree, which planning
/// walks recursively) fits.
pub const MAX_SQL_BYTES: usize = 1 << 20;

/// Stack for threads that plan and run statements (reserved, not used
/// until touched).
pub const STACK_BYTES: usize = 1 << 30;

/// The deepest expression tree sysql plans (an `a AND b AND ...` chain of
/// N terms is N deep). Planning time grows faster than linearly with depth.
pub const MAX_EXPR_DEPTH: usize = 1000;

/// Depth of an expression tree, measured without recursion (the tree may be
/// deeper than the stack), following operators, which is how trees get deep.
fn expr_depth(root: &datafusion::sql::sqlparser::ast::Expr) -> usize {
    use datafusion::sql::sqlparser::ast::Expr;
    let mut deepest = 0;
    let mut stack = vec![(root, 1usize)];
    while let Some((e, d)) = stack.pop() {
        deepest = deepest.max(d);
        if deepest > MAX_EXPR_DEPTH {
            break;
        }
        match e {
            Expr::BinaryOp { left, right, .. } => {
                stack.push((left, d + 1));
                stack.push((right, d + 1));
            }
            Expr::UnaryOp { expr, .. } | Expr::Nested(expr) | Expr::Cast { expr, .. } => stack.push((expr, d + 1)),
            Expr::IsNull(expr) | Expr::IsNotNull(expr) | Expr::IsTrue(expr) | Expr::IsFalse(expr) => {
                stack.push((expr, d + 1))
            }
            _ => {}
        }
    }
    deepest
}

/// True if any expression of the statement is deeper than [`MAX_EXPR_DEPTH`].
/// The visitor stops at the first such root, before it would recurse into it.
fn too_deep(statement: &Statement) -> bool {
    use datafusion::sql::sqlparser::ast::visit_expressions;
    use std::ops::ControlFlow;
    match statement {
        Statement::Statement(s) => visit_expressions(s.as_ref(), |e| {
            if expr_depth(e) > MAX_EXPR_DEPTH {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .is_break(),
        Statement::Explain(e) => too_deep(&e.statement),
        _ => false,
    }
}

/// Session extension: statements that read or write files are allowed
/// (`--allow-file-access`). Without it they are refused: sysql runs as root.
#[derive(Debug, Clone, Copy)]
pub struct AllowFileAccess;

/// What a statement does to files, if anything: COPY, CREATE EXTERNAL TABLE.
fn file_access(statement: &Statement) -> Option<&'static str> {
    use datafusion::sql::sqlparser::ast::Statement as Sql;
    match statement {
        Statement::CopyTo(_) => Some("COPY TO"),
        Statement::CreateExternalTable(_) => Some("CREATE EXTERNAL TABLE"),
        Statement::Explain(e) => file_access(&e.statement),
        Statement::Statement(s) => match s.as_ref() {
            Sql::Copy { .. } | Sql::CopyIntoSnowflake { .. } => Some("COPY"),
            Sql::Unload { .. } => Some("UNLOAD"),
            Sql::Install { .. } | Sql::Load { .. } | Sql::LoadData { .. } => Some("INSTALL/LOAD"),
            Sql::AttachDatabase { .. } | Sql::AttachDuckDBDatabase { .. } => Some("ATTACH"),
            _ => None,
        },
        _ => None,
    }
}

fn extension<T: Send + Sync + 'static>(ctx: &SessionContext) -> Option<Arc<T>> {
    ctx.state().config().get_extension::<T>()
}

/// Resolves at the session's [`StopAt`], or never.
async fn deadline(ctx: &SessionContext) {
    match extension::<StopAt>(ctx) {
        Some(stop) => tokio::time::sleep_until(stop.0.into()).await,
        None => std::future::pending().await,
    }
}

/// Why a statement did not complete.
#[derive(Debug)]
pub enum ExecError {
    /// The statement failed to parse, plan or execute; the message is one line.
    Sql(String),
    /// Ctrl-C cancelled the query. Rows already streamed have been printed, with their footer.
    Cancelled,
    /// Writing the result failed, e.g. with [`std::io::ErrorKind::BrokenPipe`].
    Output(std::io::Error),
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::Sql(message) => f.write_str(message),
            ExecError::Cancelled => f.write_str("query cancelled"),
            ExecError::Output(e) => write!(f, "cannot write output: {e}"),
        }
    }
}

impl std::error::Error for ExecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ExecError::Output(e) => Some(e),
            _ => None,
        }
    }
}

impl From<anyhow::Error> for ExecError {
    /// Printing errors: an I/O error stays one, anything else (an Arrow encoding error) is
    /// reported like a query error.
    fn from(err: anyhow::Error) -> Self {
        match err.downcast::<std::io::Error>() {
            Ok(io) => ExecError::Output(io),
            Err(other) => ExecError::Sql(one_line(&other.to_string())),
        }
    }
}

/// Runs every `;`-separated statement of `sql` in order and prints each result with `printer`.
///
/// Returns the number of rows of all results together. The whole text is parsed before anything
/// runs, so a syntax error in a later statement runs nothing. Text that holds only whitespace and
/// comments is a no-op returning `Ok(0)`. The first failing statement stops the rest.
pub async fn run_sql(
    ctx: &SessionContext,
    sql: &str,
    printer: &Printer,
    out: &mut (dyn Write + Send),
) -> Result<usize, ExecError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(ExecError::Sql(format!(
            "statement text is {} bytes; sysql accepts at most {} KiB at a time",
            sql.len(),
            MAX_SQL_BYTES >> 10
        )));
    }
    let qualifier = default_qualifier(ctx);
    let statements = parse(ctx, sql).map_err(|e| sql_error(&e, &qualifier))?;
    if statements.iter().any(too_deep) {
        return Err(ExecError::Sql(format!(
            "expression nested more than {MAX_EXPR_DEPTH} deep; sysql refuses it rather than spend minutes planning it"
        )));
    }
    let mut rows = 0;
    for statement in statements {
        rows += run_statement(ctx, statement, printer, out).await.map_err(|e| match e {
            Failure::DataFusion(e) => sql_error(&e, &qualifier),
            Failure::Exec(e) => e,
        })?;
    }
    Ok(rows)
}

/// Errors inside one statement, before they are turned into a message.
enum Failure {
    DataFusion(DataFusionError),
    Exec(ExecError),
}

impl From<DataFusionError> for Failure {
    fn from(e: DataFusionError) -> Self {
        Failure::DataFusion(e)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Exec(e.into())
    }
}

fn parse(ctx: &SessionContext, sql: &str) -> datafusion::error::Result<Vec<Statement>> {
    let state = ctx.state();
    let options = state.config().options();
    let dialect_name = options.sql_parser.dialect;
    let dialect = dialect_from_str(dialect_name)
        .ok_or_else(|| DataFusionError::Configuration(format!("unsupported SQL dialect {dialect_name}")))?;
    let statements = DFParserBuilder::new(sql)
        .with_dialect(dialect.as_ref())
        .with_recursion_limit(options.sql_parser.recursion_limit.get())
        .build()?
        .parse_statements()?;
    Ok(statements.into())
}

async fn run_statement(
    ctx: &SessionContext,
    statement: Statement,
    printer: &Printer,
    out: &mut (dyn Write + Send),
) -> Result<usize, Failure> {
    let start = Instant::now();
    if let Some(what) = file_access(&statement) {
        if extension::<AllowFileAccess>(ctx).is_none() {
            return Err(Failure::Exec(ExecError::Sql(format!(
                "{what} reads or writes files, which sysql refuses by default since it runs as root; \
                 start sysql with --allow-file-access to permit it"
            ))));
        }
    }
    if let Some(before) = extension::<BeforeStatement>(ctx) {
        (before.0)().await;
    }
    if let Some(engine) = extension::<sysql_engine::Engine>(ctx) {
        if let Some(query) = window::plan(ctx, &statement.to_string()).await? {
            return run_window(ctx, &engine, &query, printer, out, start).await;
        }
    }
    // Planning can take a while too (a live table may probe the kernel), so it is cancellable.
    let plan = tokio::select! {
        plan = plan(ctx, statement) => plan?,
        _ = interrupted() => return Err(Failure::Exec(ExecError::Cancelled)),
    };
    let task = ctx.task_ctx();
    if plan.boundedness().is_unbounded() {
        let (plan, task) = prepare_live(plan, task)?;
        return stream(ctx, plan, task, printer, out, start).await;
    }
    let schema = plan.schema();
    let batches = tokio::select! {
        batches = collect(plan, task) => batches?,
        _ = interrupted() => return Err(Failure::Exec(ExecError::Cancelled)),
        _ = deadline(ctx) => return Err(Failure::Exec(ExecError::Cancelled)),
    };
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    printer.print_batches(out, &schema, &batches)?;
    printer.print_footer(out, rows, start.elapsed())?;
    Ok(rows)
}

async fn plan(ctx: &SessionContext, statement: Statement) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    let live = statement.to_string().to_lowercase().contains("live.");
    let logical = ctx.state().statement_to_plan(statement).await?;
    // `execute_logical_plan` also performs DDL (CREATE VIEW, SET, ...) against the context.
    let frame = ctx.execute_logical_plan(logical).await?;
    if live {
        // On endless input, more than one partition puts an order-preserving
        // merge in front of ordered operators, which then waits for a full
        // batch from every partition: live plans run in one.
        let (mut state, logical) = frame.into_parts();
        state.config_mut().options_mut().execution.target_partitions = 1;
        let _ = state.config_mut().options_mut().set("datafusion.execution.batch_size", "1");
        return datafusion::dataframe::DataFrame::new(state, logical).create_physical_plan().await;
    }
    frame.create_physical_plan().await
}

/// Runs a live windowed query: each window's rows are printed as it closes,
/// until Ctrl-C or the session's deadline.
async fn run_window(
    ctx: &SessionContext,
    engine: &sysql_engine::Engine,
    query: &window::WindowQuery,
    printer: &Printer,
    out: &mut (dyn Write + Send),
    start: Instant,
) -> Result<usize, Failure> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let window_ctx = engine.session()?;
    let (e, q) = (engine.clone(), query.clone());
    let runner = tokio::spawn(async move {
        window::run(&e, &window_ctx, &q, |b| tx.send(b).map_err(|_| DataFusionError::Execution("output closed".into())))
            .await
    });
    let mut printer_state: Option<StreamPrinter> = None;
    let mut status = StatusLine::new(Some(engine.clone()));
    let interrupt = interrupted();
    tokio::pin!(interrupt);
    let stop = deadline(ctx);
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    let outcome = loop {
        tokio::select! {
            next = rx.recv() => match next {
                Some(batch) => {
                    status.clear();
                    let p = printer_state.get_or_insert_with(|| StreamPrinter::new(printer, batch.schema()));
                    p.push(out, &batch)?;
                    status.rows(batch.num_rows());
                }
                None => break Ok(()),
            },
            _ = tick.tick() => status.show(),
            _ = &mut interrupt => break Err(Failure::Exec(ExecError::Cancelled)),
            _ = &mut stop => break Ok(()),
        }
    };
    status.clear();
    runner.abort();
    let failed = match runner.await {
        Ok(Err(e)) => Some(e),
        _ => None,
    };
    let rows = match printer_state.as_mut() {
        Some(p) => {
            p.finish(out)?;
            p.rows()
        }
        None => 0,
    };
    printer.print_footer(out, rows, start.elapsed())?;
    if let Some(e) = failed {
        return Err(Failure::DataFusion(e));
    }
    outcome.map(|()| rows)
}

/// Prints an unbounded result batch by batch until it ends, fails or Ctrl-C is pressed.
async fn stream(
    ctx: &SessionContext,
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
    printer: &Printer,
    out: &mut (dyn Write + Send),
    start: Instant,
) -> Result<usize, Failure> {
    let mut printer_state = StreamPrinter::new(printer, plan.schema());
    let mut batches = execute_stream(plan, task)?;
    let mut status = StatusLine::new(extension::<sysql_engine::Engine>(ctx).map(|e| (*e).clone()));
    let interrupt = interrupted();
    tokio::pin!(interrupt);
    let stop = deadline(ctx);
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    let outcome = loop {
        tokio::select! {
            next = batches.next() => match next {
                Some(Ok(batch)) => {
                    status.clear();
                    printer_state.push(out, &batch)?;
                    status.rows(batch.num_rows());
                }
                Some(Err(e)) => break Err(Failure::DataFusion(e)),
                None => break Ok(()),
            },
            _ = tick.tick() => status.show(),
            _ = &mut interrupt => break Err(Failure::Exec(ExecError::Cancelled)),
            _ = &mut stop => break Ok(()),
        }
    };
    status.clear();
    // Stop the sources before printing the footer.
    drop(batches);
    printer_state.finish(out)?;
    let rows = printer_state.rows();
    printer.print_footer(out, rows, start.elapsed())?;
    outcome.map(|()| rows)
}

/// Resolves on Ctrl-C. If the handler cannot be installed, never resolves: the query then simply
/// cannot be cancelled, which beats failing it.
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The `catalog.schema.` prefix DataFusion puts in front of unqualified table names.
pub fn default_qualifier(ctx: &SessionContext) -> String {
    let state = ctx.state();
    let catalog = &state.config().options().catalog;
    format!("{}.{}.", catalog.default_catalog, catalog.default_schema)
}

fn sql_error(err: &DataFusionError, qualifier: &str) -> ExecError {
    ExecError::Sql(error_message(err, qualifier))
}

/// Turns a DataFusion error into one readable line.
///
/// Wrappers (context, diagnostics, shared and external errors) are unwrapped down to the error
/// that says what went wrong, its category prefix ("Error during planning: ") is dropped where the
/// message speaks for itself, a backtrace or bug-report boilerplate is cut, the default
/// `qualifier` (`datafusion.public.`) is removed from table names, and what remains is joined onto
/// one line.
pub fn error_message(err: &DataFusionError, qualifier: &str) -> String {
    let mut contexts = Vec::new();
    let mut err = err;
    loop {
        err = match err {
            DataFusionError::Context(context, inner) => {
                contexts.push(context.as_str());
                inner
            }
            DataFusionError::Diagnostic(_, inner) => inner,
            DataFusionError::Shared(inner) => inner,
            DataFusionError::Collection(errors) if !errors.is_empty() => &errors[0],
            DataFusionError::External(inner) => match inner.downcast_ref::<DataFusionError>() {
                Some(inner) => inner,
                None => break,
            },
            DataFusionError::ArrowError(arrow, _) => match arrow.as_ref() {
                ArrowError::ExternalError(inner) => match inner.downcast_ref::<DataFusionError>() {
                    Some(inner) => inner,
                    None => break,
                },
                _ => break,
            },
            _ => break,
        };
    }
    let message = match err {
        DataFusionError::SQL(parser, _) => match parser.as_ref() {
            ParserError::ParserError(s) | ParserError::TokenizerError(s) => {
                format!("syntax error: {s}")
            }
            ParserError::RecursionLimitExceeded => "syntax error: nested too deeply".to_string(),
        },
        DataFusionError::Plan(m) | DataFusionError::Execution(m) => m.clone(),
        DataFusionError::Configuration(m) => format!("invalid configuration: {m}"),
        DataFusionError::NotImplemented(m) => format!("not supported: {m}"),
        DataFusionError::Internal(m) => format!("internal error: {m}"),
        DataFusionError::ResourcesExhausted(m) => format!("resources exhausted: {m}"),
        DataFusionError::SchemaError(e, _) => e.to_string(),
        DataFusionError::ArrowError(e, _) => e.to_string(),
        DataFusionError::IoError(e) => e.to_string(),
        DataFusionError::External(e) => e.to_string(),
        other => other.to_string(),
    };
    if message.contains("pipeline breaking") || message.contains("infinite input") {
        return UNBOUNDED.to_string();
    }
    let message = message
        .split(DataFusionError::BACK_TRACE_SEP)
        .next()
        .unwrap_or_default()
        .replace(&format!("'{qualifier}"), "'");
    let mut line = String::new();
    for context in contexts {
        line.push_str(context);
        line.push_str(": ");
    }
    line.push_str(&message);
    one_line(&line)
}

/// What a query that needs the whole of an endless stream is told.
pub const UNBOUNDED: &str = "this query needs all of a live stream before it can answer (a GROUP BY without a window, \
ORDER BY, DISTINCT, or a join without a time bound), and a live stream never ends: group by a window, \
e.g. GROUP BY tumble(ts, INTERVAL '10 seconds'), bound the join by time \
(ON ... AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '5 seconds'), or query the history table (opens instead of live.opens)";

/// Collapses all whitespace runs, newlines included, into single spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::print::Format;
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use datafusion::catalog::streaming::StreamingTable;
    use datafusion::datasource::MemTable;
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use datafusion::physical_plan::streaming::PartitionStream;
    use datafusion::physical_plan::SendableRecordBatchStream;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("pid", DataType::Int64, false),
            Field::new("comm", DataType::Utf8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(vec![1, 2, 3])), Arc::new(StringArray::from(vec!["init", "bash", "cat"]))],
        )
        .unwrap()
    }

    fn context() -> SessionContext {
        let ctx = SessionContext::new();
        let b = batch();
        let table = MemTable::try_new(b.schema(), vec![vec![b]]).unwrap();
        ctx.register_table("procs", Arc::new(table)).unwrap();
        ctx
    }

    fn csv_printer() -> Printer {
        Printer { format: Format::Csv, maxrows: None, timing: false }
    }

    async fn run(ctx: &SessionContext, sql: &str) -> (Result<usize, ExecError>, String) {
        let mut out = Vec::new();
        let result = run_sql(ctx, sql, &csv_printer(), &mut out).await;
        (result, String::from_utf8(out).unwrap())
    }

    #[tokio::test]
    async fn counts_rows() {
        let ctx = context();
        let (rows, out) = run(&ctx, "SELECT pid, comm FROM procs WHERE pid > 1").await;
        assert_eq!(rows.unwrap(), 2);
        assert_eq!(out, "pid,comm\n2,bash\n3,cat\n");
    }

    #[tokio::test]
    async fn runs_statements_in_order() {
        let ctx = context();
        let sql = "CREATE VIEW v AS SELECT pid FROM procs; -- a view\n\
                   SELECT count(*) AS n FROM v; SELECT 'a;b' AS s;";
        let (rows, out) = run(&ctx, sql).await;
        assert_eq!(rows.unwrap(), 2);
        assert_eq!(out, "n\n3\ns\na;b\n");
    }

    #[tokio::test]
    async fn empty_statement_is_a_no_op() {
        let ctx = context();
        let (rows, out) = run(&ctx, "  -- nothing here\n /* or here */ ;; ").await;
        assert_eq!(rows.unwrap(), 0);
        assert_eq!(out, "");
    }

    #[tokio::test]
    async fn errors_are_one_line() {
        let ctx = context();
        let cases = [
            ("SELECT * FROM nope", "table 'nope' not found"),
            ("SELEC 1", "syntax error: Expected: an SQL statement, found: SELEC"),
            ("SELECT nope FROM procs", "No field named nope"),
            ("SELECT 1; SELECT * FROM nope", "table 'nope' not found"),
        ];
        for (sql, needle) in cases {
            let (result, _) = run(&ctx, sql).await;
            let Err(ExecError::Sql(message)) = result else {
                panic!("{sql}: expected an SQL error, got {result:?}");
            };
            assert!(message.contains(needle), "{sql}: {message}");
            assert!(!message.contains('\n'), "{sql}: {message}");
            assert!(!message.starts_with("Error during planning"), "{message}");
        }
    }

    #[test]
    fn unwraps_context_and_external_errors() {
        let inner = DataFusionError::Plan("table 'datafusion.public.foo' not found".into());
        let wrapped =
            DataFusionError::External(Box::new(DataFusionError::Context("opening live table".into(), Box::new(inner))));
        assert_eq!(error_message(&wrapped, "datafusion.public."), "opening live table: table 'foo' not found");
        let internal = DataFusionError::Internal("bad\nthing".into());
        assert_eq!(error_message(&internal, ""), "internal error: bad thing");
    }

    #[derive(Debug)]
    struct Replay(RecordBatch);

    impl PartitionStream for Replay {
        fn schema(&self) -> &SchemaRef {
            self.0.schema_ref()
        }

        fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
            let batches = vec![Ok(self.0.clone()), Ok(self.0.clone())];
            Box::pin(RecordBatchStreamAdapter::new(self.0.schema(), futures::stream::iter(batches)))
        }
    }

    #[tokio::test]
    async fn streams_unbounded_tables() {
        let ctx = SessionContext::new();
        let b = batch();
        let table = StreamingTable::try_new(b.schema(), vec![Arc::new(Replay(b))]).unwrap().with_infinite_table(true);
        ctx.register_table("live", Arc::new(table)).unwrap();
        let (rows, out) = run(&ctx, "SELECT comm FROM live WHERE pid <> 2").await;
        assert_eq!(rows.unwrap(), 4);
        assert_eq!(out, "comm\ninit\ncat\ninit\ncat\n");

        let mut out = Vec::new();
        let table = Printer { format: Format::Table, maxrows: None, timing: false };
        let rows = run_sql(&ctx, "SELECT pid FROM live LIMIT 1", &table, &mut out).await;
        assert_eq!(rows.unwrap(), 1);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "+-----+\n| pid |\n+-----+\n| 1   |\n+-----+\n1 row(s) fetched.\n\n"
        );
    }
}
