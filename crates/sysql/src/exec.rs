//! Runs SQL text for the shell and `-c`/`-f`: each statement goes through
//! the backend's statement path (the engine's, in this process or in the
//! agent), and its rows are printed as they come. What stays here is the
//! front end's part: the `--for` wait, Ctrl-C (which cancels the running
//! statement, not the shell), and output.

use std::fmt;
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::StreamExt;
use sysql_engine::query::{ErrorKind, Kind, QueryError};

use crate::backend::{Backend, Rows};
use crate::print::{Format, Printer, StreamPrinter};
use crate::signals::{Counts, Sig, Signals};
use crate::status::StatusLine;
use crate::terminal::Pager;

/// Stack for threads that plan and run statements (reserved, not used
/// until touched): even text that is one long operator chain fits.
pub const STACK_BYTES: usize = 1 << 30;

/// Why a statement did not complete.
#[derive(Debug)]
pub enum ExecError {
    /// The statement failed to parse, was refused, or failed to plan or run.
    Sql(QueryError),
    /// Ctrl-C cancelled the query. Rows already streamed have been printed, with their footer.
    Cancelled,
    /// Writing the result failed, e.g. with [`std::io::ErrorKind::BrokenPipe`].
    Output(std::io::Error),
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::Sql(e) => f.write_str(&e.message),
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

impl From<QueryError> for ExecError {
    fn from(e: QueryError) -> Self {
        ExecError::Sql(e)
    }
}

impl From<anyhow::Error> for ExecError {
    /// Printing errors: an I/O error stays one, anything else (an Arrow encoding error) is
    /// reported like a query error.
    fn from(err: anyhow::Error) -> Self {
        match err.downcast::<std::io::Error>() {
            Ok(io) => ExecError::Output(io),
            Err(other) => ExecError::Sql(QueryError::new(ErrorKind::Execution, other.to_string())),
        }
    }
}

/// How statements run, besides their text.
pub struct RunOptions<'a> {
    pub signals: &'a Signals,
    /// `--for`: live statements stream until this instant; bounded ones
    /// wait for it first, so they see what was captured until then (a
    /// SIGINT ends the wait early).
    pub until: Option<Instant>,
    /// The signal counts the `--for` wait counts from (sysql's start: a
    /// SIGINT sent while it was still starting ends the wait too).
    pub since: Counts,
    /// The signals that cancel a running statement.
    pub cancel_on: &'a [Sig],
    /// Shows a `table` result taller than the screen (the shell at a terminal).
    pub pager: Option<&'a Pager>,
    /// Where the last bounded result is kept (the shell's `\chart` and `\watch`).
    pub keep: Option<&'a Mutex<Option<Kept>>>,
}

/// A bounded result, kept after it was printed.
#[derive(Debug, Clone)]
pub struct Kept {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl<'a> RunOptions<'a> {
    /// No deadline; Ctrl-C cancels the running statement.
    pub fn interactive(signals: &'a Signals) -> Self {
        RunOptions { signals, until: None, since: signals.now(), cancel_on: &[Sig::Interrupt], pager: None, keep: None }
    }
}

/// Runs every `;`-separated statement of `sql` in order and prints each result with `printer`.
///
/// Returns the number of rows of all results together. The whole text is parsed before anything
/// runs, so a syntax error in a later statement runs nothing. Text that holds only whitespace and
/// comments is a no-op returning `Ok(0)`. The first failing statement stops the rest.
pub async fn run_sql(
    backend: &Backend,
    sql: &str,
    printer: &Printer,
    out: &mut (dyn Write + Send),
    opts: &RunOptions<'_>,
) -> Result<usize, ExecError> {
    let statements = backend.parse(sql)?;
    let mut rows = 0;
    for statement in statements {
        rows += run_statement(backend, statement, printer, out, opts).await?;
    }
    Ok(rows)
}

async fn run_statement(
    backend: &Backend,
    statement: datafusion::sql::parser::Statement,
    printer: &Printer,
    out: &mut (dyn Write + Send),
    opts: &RunOptions<'_>,
) -> Result<usize, ExecError> {
    let signals = opts.signals;
    // Planning can take a while too, so it is cancellable.
    let since = signals.now();
    let pending = tokio::select! {
        p = backend.prepare(statement) => p?,
        _ = signals.after(since, opts.cancel_on) => return Err(ExecError::Cancelled),
    };
    for notice in pending.notices() {
        eprintln!("sysql: warning: {notice}");
    }
    let bounded = matches!(pending.kind(), Kind::Bounded);
    if let (true, Some(until)) = (bounded, opts.until) {
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => {}
            _ = signals.stop_after(opts.since) => {}
        }
    }
    let since = signals.now();
    let start = Instant::now();
    let rows = tokio::select! {
        rows = backend.execute(pending) => rows?,
        _ = signals.after(since, opts.cancel_on) => return Err(ExecError::Cancelled),
    };
    match rows.kind {
        Kind::Command => Ok(0),
        Kind::Bounded => bounded_result(rows, printer, out, opts, since, start).await,
        Kind::Live | Kind::Window => stream(backend, rows, printer, out, opts, since, start).await,
    }
}

/// Prints a bounded result: tables are aligned over all rows and bars scaled
/// to the largest value, so they are held (and count towards the statement's
/// memory) until the end; the machine formats are printed batch by batch.
async fn bounded_result(
    mut rows: Rows,
    printer: &Printer,
    out: &mut (dyn Write + Send),
    opts: &RunOptions<'_>,
    since: Counts,
    start: Instant,
) -> Result<usize, ExecError> {
    let whole = printer.format.for_people();
    let hold = whole || opts.keep.is_some();
    let mut held: Vec<RecordBatch> = Vec::new();
    let mut streamed = StreamPrinter::new(printer, rows.schema.clone());
    let mut count = 0;
    loop {
        let next = tokio::select! {
            next = rows.stream.next() => next,
            _ = opts.signals.after(since, opts.cancel_on) => return Err(ExecError::Cancelled),
        };
        let Some(batch) = next else { break };
        let batch = batch?;
        count += batch.num_rows();
        if hold {
            if let Some(r) = rows.reservation.as_mut() {
                r.try_grow(batch.get_array_memory_size()).map_err(|e| QueryError::from_datafusion(&e, ""))?;
            }
            held.push(batch.clone());
        }
        if !whole {
            streamed.push(out, &batch)?;
        }
    }
    if whole {
        let text = printer.render(&rows.schema, &held)?;
        match opts.pager {
            Some(pager) if pager.needed(&text) => pager.show(&text, out).map_err(ExecError::Output)?,
            _ => out.write_all(&text).and_then(|()| out.flush()).map_err(ExecError::Output)?,
        }
    } else {
        streamed.finish(out)?;
    }
    printer.print_footer(out, count, start.elapsed())?;
    if let Some(keep) = opts.keep {
        *keep.lock().unwrap_or_else(|e| e.into_inner()) = Some(Kept { schema: rows.schema.clone(), batches: held });
    }
    Ok(count)
}

/// Prints an unbounded result batch by batch until it ends, fails, the
/// `--for` deadline passes or Ctrl-C is pressed.
async fn stream(
    backend: &Backend,
    mut rows: Rows,
    printer: &Printer,
    out: &mut (dyn Write + Send),
    opts: &RunOptions<'_>,
    since: Counts,
    start: Instant,
) -> Result<usize, ExecError> {
    if printer.format == Format::Bar {
        eprintln!("sysql: bars are scaled to the largest value, which a live result never knows: shown as a table");
    }
    let mut printer_state = StreamPrinter::new(printer, rows.schema.clone());
    let mut status = StatusLine::new(backend.engine().cloned());
    let interrupt = opts.signals.after(since, opts.cancel_on);
    tokio::pin!(interrupt);
    let stop = async {
        match opts.until {
            Some(until) => tokio::time::sleep_until(until.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    let outcome = loop {
        tokio::select! {
            next = rows.stream.next() => match next {
                Some(Ok(batch)) => {
                    status.clear();
                    printer_state.push(out, &batch)?;
                    status.rows(batch.num_rows());
                    if rows.kind == Kind::Window {
                        window_events(&batch).into_iter().for_each(|n| status.window(n));
                    }
                }
                Some(Err(e)) => break Err(ExecError::Sql(e)),
                None => break Ok(()),
            },
            _ = tick.tick() => status.show(),
            _ = &mut interrupt => break Err(ExecError::Cancelled),
            _ = &mut stop => break Ok(()),
        }
    };
    status.clear();
    // Stop the sources before printing the footer.
    drop(rows);
    printer_state.finish(out)?;
    let count = printer_state.rows();
    printer.print_footer(out, count, start.elapsed())?;
    outcome.map(|()| count)
}

/// The events a window query's batch counted, per window: the sum of its
/// first integer column (a `count(*)`) over the rows of each `window_start`;
/// nothing without such a column.
fn window_events(batch: &RecordBatch) -> Vec<u64> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{DataType, UInt64Type};
    let schema = batch.schema();
    let fields = schema.fields();
    let Some(count) = fields.iter().position(|f| f.data_type().is_integer() && f.name() != "window_lost") else {
        return Vec::new();
    };
    let Ok(counts) = datafusion::arrow::compute::cast(batch.column(count), &DataType::UInt64) else {
        return Vec::new();
    };
    let counts = counts.as_primitive::<UInt64Type>();
    let starts = schema.index_of("window_start").ok().map(|i| batch.column(i).clone());
    let mut out: Vec<u64> = Vec::new();
    for row in 0..batch.num_rows() {
        let n = if counts.is_null(row) { 0 } else { counts.value(row) };
        let same = row > 0 && starts.as_ref().is_some_and(|s| s.slice(row, 1) == s.slice(row - 1, 1));
        match out.last_mut() {
            Some(last) if same => *last += n,
            _ => out.push(n),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysql_engine::query::{Policy, QuerySession};
    use sysql_engine::{Engine, EngineConfig};

    /// A backend over an engine nothing feeds, with a view `procs` of three rows.
    async fn backend() -> Backend {
        let engine = Engine::new(EngineConfig::default());
        let session = QuerySession::new(&engine, Policy::shell(false)).unwrap();
        let view = "CREATE VIEW procs AS SELECT * FROM (VALUES (1, 'init'), (2, 'bash'), (3, 'cat')) AS t(pid, comm)";
        let backend = Backend::Embedded(session);
        let signals = Signals::none();
        run_sql(&backend, view, &csv_printer(), &mut Vec::new(), &RunOptions::interactive(&signals)).await.unwrap();
        backend
    }

    fn csv_printer() -> Printer {
        Printer { format: Format::Csv, ..Printer::default() }
    }

    async fn run(backend: &Backend, sql: &str) -> (Result<usize, ExecError>, String) {
        let mut out = Vec::new();
        let signals = Signals::none();
        let result = run_sql(backend, sql, &csv_printer(), &mut out, &RunOptions::interactive(&signals)).await;
        (result, String::from_utf8(out).unwrap())
    }

    #[tokio::test]
    async fn counts_rows() {
        let b = backend().await;
        let (rows, out) = run(&b, "SELECT pid, comm FROM procs WHERE pid > 1").await;
        assert_eq!(rows.unwrap(), 2);
        assert_eq!(out, "pid,comm\n2,bash\n3,cat\n");
    }

    #[tokio::test]
    async fn runs_statements_in_order() {
        let b = backend().await;
        let sql = "CREATE VIEW v AS SELECT pid FROM procs; -- a view\n\
                   SELECT count(*) AS n FROM v; SELECT 'a;b' AS s;";
        let (rows, out) = run(&b, sql).await;
        assert_eq!(rows.unwrap(), 2);
        assert_eq!(out, "n\n3\ns\na;b\n");
    }

    #[tokio::test]
    async fn empty_statement_is_a_no_op() {
        let b = backend().await;
        let (rows, out) = run(&b, "  -- nothing here\n /* or here */ ;; ").await;
        assert_eq!(rows.unwrap(), 0);
        assert_eq!(out, "");
    }

    #[tokio::test]
    async fn errors_are_one_line() {
        let b = backend().await;
        let cases = [
            ("SELECT * FROM nope", "table 'nope' not found"),
            ("SELEC 1", "syntax error: Expected: an SQL statement, found: SELEC"),
            ("SELECT nope FROM procs", "No field named nope"),
            ("SELECT 1; SELECT * FROM nope", "table 'nope' not found"),
        ];
        for (sql, needle) in cases {
            let (result, _) = run(&b, sql).await;
            let Err(ExecError::Sql(e)) = result else {
                panic!("{sql}: expected an SQL error, got {result:?}");
            };
            assert!(e.message.contains(needle), "{sql}: {}", e.message);
            assert!(!e.message.contains('\n'), "{sql}: {}", e.message);
            assert!(!e.message.starts_with("Error during planning"), "{}", e.message);
        }
    }

    #[tokio::test]
    async fn a_statement_after_a_failing_one_does_not_run() {
        let b = backend().await;
        let (result, out) = run(&b, "SELECT 1 AS a; SELECT * FROM nope; SELECT 2 AS b").await;
        assert!(result.is_err());
        assert_eq!(out, "a\n1\n");
    }
}
