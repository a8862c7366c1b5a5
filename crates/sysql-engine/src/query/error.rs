//! Query errors: what went wrong, as one line a person can act on, and of
//! which kind (front ends map kinds to exit statuses and SQLSTATEs).

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;

/// What kind of failure a [`QueryError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The text does not parse.
    Syntax,
    /// The policy refuses the statement: it would write (tables, files).
    ReadOnly,
    /// The policy refuses the statement: it needs a right this session lacks
    /// (file access, a setting outside the allow-list).
    Privilege,
    /// Planning failed: no such table or column, a type error, a live query
    /// that needs the whole stream.
    Plan,
    /// The query ran out of its memory (or all queries' memory).
    Resources,
    /// The statement was cancelled (Ctrl-C, a client that went away, a
    /// statement timeout).
    Cancelled,
    /// Execution failed.
    Execution,
}

/// Why a statement did not run: a kind and one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    pub kind: ErrorKind,
    pub message: String,
}

impl QueryError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        QueryError { kind, message: one_line(&message.into()) }
    }

    /// A DataFusion error as one line; `qualifier` is the default
    /// `catalog.schema.` prefix, removed from table names.
    pub fn from_datafusion(err: &DataFusionError, qualifier: &str) -> Self {
        QueryError { kind: kind_of(err), message: error_message(err, qualifier) }
    }
}

/// The innermost error that says what went wrong, and the contexts it was
/// wrapped in, outermost first.
fn unwrap(mut err: &DataFusionError) -> (Vec<&str>, &DataFusionError) {
    let mut contexts = Vec::new();
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
                None => return (contexts, err),
            },
            DataFusionError::ArrowError(arrow, _) => match arrow.as_ref() {
                ArrowError::ExternalError(inner) => match inner.downcast_ref::<DataFusionError>() {
                    Some(inner) => inner,
                    None => return (contexts, err),
                },
                _ => return (contexts, err),
            },
            _ => return (contexts, err),
        };
    }
}

fn kind_of(err: &DataFusionError) -> ErrorKind {
    match unwrap(err).1 {
        DataFusionError::SQL(..) => ErrorKind::Syntax,
        DataFusionError::ResourcesExhausted(_) => ErrorKind::Resources,
        DataFusionError::Plan(_) | DataFusionError::SchemaError(..) | DataFusionError::NotImplemented(_) => {
            ErrorKind::Plan
        }
        DataFusionError::External(e) if e.downcast_ref::<QueryError>().is_some() => {
            e.downcast_ref::<QueryError>().map(|q| q.kind).unwrap_or(ErrorKind::Execution)
        }
        _ => ErrorKind::Execution,
    }
}

/// Turns a DataFusion error into one readable line.
///
/// Wrappers (context, diagnostics, shared and external errors) are unwrapped down to the error
/// that says what went wrong, its category prefix ("Error during planning: ") is dropped where the
/// message speaks for itself, a backtrace or bug-report boilerplate is cut, the default
/// `qualifier` (`datafusion.public.`) is removed from table names, and what remains is joined onto
/// one line.
pub fn error_message(err: &DataFusionError, qualifier: &str) -> String {
    let (contexts, err) = unwrap(err);
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
        DataFusionError::External(e) => match e.downcast_ref::<QueryError>() {
            Some(q) => q.message.clone(),
            None => e.to_string(),
        },
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
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
