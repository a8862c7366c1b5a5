//! The interactive shell: statements that span lines, history, tab completion and backslash
//! commands driven by one table that serves dispatch, `\?` and completion (`commands`).
//!
//! At a terminal a failing statement is said and the shell goes on; when input is a pipe or a
//! file (`sysql < script.sql`) the first failure stops it with status 1, as psql's
//! `ON_ERROR_STOP`, and no history is written.

mod commands;
mod complete;
mod lex;

use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, IsTerminal, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{anyhow, Result};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use futures::StreamExt;
use rustyline::completion::FilenameCompleter;
use rustyline::config::{CompletionType, Config};
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::Editor;
use tokio::runtime::Runtime;

use crate::backend::Backend;
use crate::exec::{self, ExecError, Kept, RunOptions};
use crate::print::{Format, Printer};
use crate::signals::Signals;
use crate::terminal::{self, Pager};
use complete::SqlHelper;
use lex::is_blank;
pub use lex::split_statements;

const PROMPT: &str = "sysql> ";
const CONTINUATION: &str = "   -> ";
/// How many rows of a result the shell shows in `table` format unless told (`\maxrows`), as
/// DuckDB's shell: a screenful, not a scroll through thousands.
pub const DEFAULT_MAXROWS: usize = 40;

/// How the shell starts.
#[derive(Debug, Clone)]
pub struct ReplOptions {
    /// The history file; `None` means [`default_history_path`], an empty path means no history.
    pub history_path: Option<PathBuf>,
    /// The initial output format and timing; `\format` and `\timing` change them.
    pub printer: Printer,
    /// No banner (`-q`; the printer leaves out footers).
    pub quiet: bool,
    /// Where statements run, as `\conninfo` says it.
    pub connection: String,
}

/// How the shell ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// `\q`, `quit`, `exit` or the end of input.
    Quit,
    /// A statement failed while input was not a terminal.
    Failed,
}

/// `$HOME/.sysql_history`, or `None` when `HOME` is unset.
pub fn default_history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|home| !home.is_empty()).map(|home| PathBuf::from(home).join(".sysql_history"))
}

/// Runs the shell until `\q` or Ctrl-D. At a terminal, statement errors are printed as
/// `sysql: <message>` and the shell goes on; otherwise the first one ends it ([`Ended::Failed`]).
/// Only a broken terminal ends it with an error.
pub fn run(rt: &Runtime, backend: Backend, opts: ReplOptions, signals: &Signals) -> Result<Ended> {
    let config = Config::builder()
        .max_history_size(10_000)?
        .history_ignore_space(true)
        .completion_type(CompletionType::List)
        .build();
    let mut editor: Editor<SqlHelper, FileHistory> = Editor::with_config(config)?;
    let interactive = io::stdin().is_terminal();
    // History is what a person typed: none when input is a pipe or a file,
    // and only in a regular file (never a device such as /dev/null).
    let history = match opts.history_path {
        Some(path) if path.as_os_str().is_empty() => None,
        Some(path) => Some(path),
        None => default_history_path(),
    }
    .filter(|_| interactive)
    .filter(|path| fs::symlink_metadata(path).map(|m| m.is_file()).unwrap_or(true));
    if let Some(path) = &history {
        let loaded = private_file(path).map_err(anyhow::Error::from).and_then(|()| Ok(editor.load_history(path)?));
        if let Err(e) = loaded {
            eprintln!("sysql: cannot read history {}: {e}", path.display());
        }
    }

    let mut shell = Shell {
        rt,
        backend,
        signals,
        printer: opts.printer,
        tables: Vec::new(),
        vocabulary: Arc::new(RwLock::new(Vec::new())),
        history: Vec::new(),
        depth: 0,
        output: None,
        pager: true,
        kept: Mutex::new(None),
        last_bounded: None,
        last_statement: None,
        connection: opts.connection,
    };
    shell.refresh_tables();
    editor.set_helper(Some(SqlHelper { vocabulary: shell.vocabulary.clone(), files: FilenameCompleter::new() }));
    if interactive && !opts.quiet {
        println!("sysql {}: SQL over live Linux syscalls. \\? for help, \\q to quit.", env!("CARGO_PKG_VERSION"));
    }

    let mut buffer = String::new();
    let ended = loop {
        let prompt = if is_blank(&buffer) { PROMPT } else { CONTINUATION };
        let input = match editor.readline(prompt) {
            Ok(input) => input,
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break Ok(Ended::Quit),
            Err(e) => break Err(anyhow!(e).context("cannot read input")),
        };
        // A paste may bring several lines at once; take them one by one.
        let mut flow = Flow::Continue;
        for line in input.lines() {
            flow = shell.feed(&mut buffer, line).unwrap_or_else(|e| {
                eprintln!("sysql: {e:#}");
                if interactive {
                    Flow::Continue
                } else {
                    Flow::Failed
                }
            });
            if flow != Flow::Continue {
                break;
            }
        }
        for entry in shell.history.drain(..) {
            // A full or duplicate history is no reason to stop.
            let _ = editor.add_history_entry(entry);
        }
        match flow {
            Flow::Continue => {}
            Flow::Quit => break Ok(Ended::Quit),
            Flow::Failed => break Ok(Ended::Failed),
        }
    };

    if let Some(path) = &history {
        let saved = editor
            .save_history(path)
            .map_err(anyhow::Error::from)
            .and_then(|()| Ok(fs::set_permissions(path, Permissions::from_mode(0o600))?));
        if let Err(e) = saved {
            eprintln!("sysql: cannot save history {}: {e}", path.display());
        }
    }
    ended
}

/// Creates `path` readable by its owner only, or narrows an existing file to that: history holds
/// whatever was typed, secrets included.
fn private_file(path: &Path) -> io::Result<()> {
    let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    if file.metadata()?.is_file() {
        file.set_permissions(Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// What the shell does after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
    /// A statement failed and input is not a terminal: stop.
    Failed,
}

/// A table as `\d` lists it and completion offers it.
#[derive(Debug, Clone)]
struct TableInfo {
    /// As it would be written in a query: bare in the default schema, `schema.table` elsewhere.
    name: String,
    /// Column name, type, nullable.
    columns: Vec<(String, String, bool)>,
}

struct Shell<'a> {
    rt: &'a Runtime,
    backend: Backend,
    signals: &'a Signals,
    printer: Printer,
    tables: Vec<TableInfo>,
    /// Table and column names, shared with the completer.
    vocabulary: Arc<RwLock<Vec<String>>>,
    /// Inputs to remember in the history file, drained by the read loop.
    history: Vec<String>,
    /// How many `\i` files deep we are.
    depth: usize,
    /// `\o`: the file results go to instead of stdout, and its name.
    output: Option<(String, fs::File)>,
    /// `\pset pager`: whether a result taller than the screen goes through the pager.
    pager: bool,
    /// The last bounded result (for `\chart`).
    kept: Mutex<Option<Kept>>,
    /// The last statement whose result was bounded (for `\watch`).
    last_bounded: Option<String>,
    /// The last statement run (for `\e`).
    last_statement: Option<String>,
    /// Where statements run, for `\conninfo`.
    connection: String,
}

impl Shell<'_> {
    /// Takes one input line: a backslash command (or `quit`, `exit`) when no statement is
    /// pending, otherwise more of the pending statement; runs whatever statements the line
    /// completes.
    fn feed(&mut self, buffer: &mut String, line: &str) -> Result<Flow> {
        if is_blank(buffer) && line.trim_start().starts_with('\\') {
            buffer.clear();
            self.remember(line.trim());
            return self.command(line.trim());
        }
        if is_blank(buffer) {
            let word = line.trim().trim_end_matches(';').trim_end();
            if word.eq_ignore_ascii_case("quit") || word.eq_ignore_ascii_case("exit") {
                buffer.clear();
                return Ok(Flow::Quit);
            }
        }
        if !buffer.is_empty() {
            buffer.push('\n');
        }
        buffer.push_str(line);
        let (statements, rest) = split_statements(buffer);
        *buffer = rest;
        for statement in statements {
            self.remember(&statement);
            self.run_sql(&statement)?;
        }
        Ok(Flow::Continue)
    }

    fn remember(&mut self, entry: &str) {
        if self.depth == 0 {
            self.history.push(entry.to_string());
        }
    }

    fn run_sql(&mut self, sql: &str) -> Result<()> {
        match self.execute(sql) {
            Ok(()) => Ok(()),
            Err(ExecError::Sql(e)) => Err(anyhow!(e.message)),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs statement text through the one statement path, printing to the screen (through the
    /// pager when the result is taller) or to the `\o` file, and keeps a bounded result.
    fn execute(&mut self, sql: &str) -> Result<(), ExecError> {
        let to_screen = self.output.is_none();
        self.printer.width = terminal::size().map(|(columns, _)| columns).filter(|_| to_screen);
        let pager = if self.pager && to_screen { Pager::for_stdout() } else { None };
        *self.kept.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let opts =
            RunOptions { pager: pager.as_ref(), keep: Some(&self.kept), ..RunOptions::interactive(self.signals) };
        let result = match &mut self.output {
            Some((_, file)) => self.rt.block_on(exec::run_sql(&self.backend, sql, &self.printer, file, &opts)),
            None => self.rt.block_on(exec::run_sql(&self.backend, sql, &self.printer, &mut io::stdout(), &opts)),
        };
        let first = sql.split_whitespace().next().unwrap_or_default();
        if ["create", "drop"].iter().any(|w| first.eq_ignore_ascii_case(w)) {
            self.refresh_tables();
        }
        self.last_statement = Some(sql.to_string());
        if result.is_ok() && self.kept.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
            self.last_bounded = Some(sql.to_string());
        }
        result.map(|_| ())
    }

    /// Writes text where results go: the `\o` file or stdout.
    fn write_out(&mut self, text: &[u8]) -> Result<()> {
        match &mut self.output {
            Some((_, file)) => file.write_all(text)?,
            None => {
                let mut out = io::stdout().lock();
                out.write_all(text)?;
                out.flush()?;
            }
        }
        Ok(())
    }

    fn command(&mut self, line: &str) -> Result<Flow> {
        let line = line.strip_prefix('\\').unwrap_or(line);
        let (name, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let command = commands::find_command(name).map_err(|message| anyhow!(message))?;
        (command.handler)(self, args.trim())
    }

    /// Runs a bounded statement of the shell's own (a listing) through the
    /// backend and returns its rows.
    fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        self.rt
            .block_on(async {
                let mut statements = self.backend.parse(sql)?;
                let pending = self.backend.prepare(statements.remove(0)).await?;
                let mut rows = self.backend.execute(pending).await?;
                let mut batches = Vec::new();
                while let Some(batch) = rows.stream.next().await {
                    batches.push(batch?);
                }
                Ok::<_, sysql_engine::query::QueryError>(batches)
            })
            .map_err(|e| anyhow!(e.message))
    }

    /// Reads every table's columns once, from `information_schema`; `\d` and DDL statements
    /// call this again.
    fn refresh_tables(&mut self) {
        let sql = "SELECT table_schema, table_name, column_name, data_type, is_nullable \
                   FROM information_schema.columns \
                   WHERE table_schema <> 'information_schema' \
                   ORDER BY table_schema, table_name, ordinal_position";
        let Ok(batches) = self.query(sql) else { return };
        let mut tables: Vec<TableInfo> = Vec::new();
        for b in &batches {
            let col = |i: usize| cast(b.column(i), &DataType::Utf8).ok();
            let (Some(schema), Some(table), Some(column), Some(ty), Some(nullable)) =
                (col(0), col(1), col(2), col(3), col(4))
            else {
                continue;
            };
            let (schema, table, column, ty, nullable) = (
                schema.as_string::<i32>(),
                table.as_string::<i32>(),
                column.as_string::<i32>(),
                ty.as_string::<i32>(),
                nullable.as_string::<i32>(),
            );
            for r in 0..b.num_rows() {
                let name = if schema.value(r) == "public" {
                    table.value(r).to_string()
                } else {
                    format!("{}.{}", schema.value(r), table.value(r))
                };
                if tables.last().is_none_or(|t| t.name != name) {
                    tables.push(TableInfo { name, columns: Vec::new() });
                }
                let info = tables.last_mut().expect("pushed");
                info.columns.push((column.value(r).to_string(), ty.value(r).to_string(), nullable.value(r) == "YES"));
            }
        }
        // Unqualified names first, then by schema.
        tables.sort_by(|a, b| (a.name.contains('.'), &a.name).cmp(&(b.name.contains('.'), &b.name)));
        let mut words: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
        words.extend(tables.iter().flat_map(|t| t.columns.iter().map(|c| c.0.clone())));
        words.sort();
        words.dedup();
        *self.vocabulary.write().unwrap_or_else(|e| e.into_inner()) = words;
        self.tables = tables;
    }

    /// Each column's description, for sysql's own tables: from `sysql_columns`, which the
    /// tables' column lists fill (the same lines as docs/tables/).
    fn descriptions(&self, table: &str) -> Vec<(String, String)> {
        let name = table.replace('\'', "''");
        let sql = format!("SELECT column_name, description FROM sysql_columns WHERE table_name = '{name}'");
        let Ok(batches) = self.query(&sql) else { return Vec::new() };
        let mut out = Vec::new();
        for b in &batches {
            let (Ok(c), Ok(d)) = (cast(b.column(0), &DataType::Utf8), cast(b.column(1), &DataType::Utf8)) else {
                continue;
            };
            let (c, d) = (c.as_string::<i32>(), d.as_string::<i32>());
            for r in 0..b.num_rows() {
                if !c.is_null(r) && !d.is_null(r) {
                    out.push((c.value(r).to_string(), d.value(r).to_string()));
                }
            }
        }
        out
    }

    /// Prints a small result as a table, whatever the current output format.
    fn print_listing(&mut self, columns: Vec<(&str, ArrayRef)>) -> Result<()> {
        let batch = RecordBatch::try_from_iter(columns)?;
        let printer = Printer { format: Format::Table, null: self.printer.null.clone(), ..Printer::default() };
        let text = printer.render(&batch.schema(), &[batch])?;
        self.write_out(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_file_is_private() {
        let dir = std::env::temp_dir().join(format!("sysql-repl-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history");
        fs::write(&path, "").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        private_file(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        fs::remove_dir_all(&dir).unwrap();
    }
}
