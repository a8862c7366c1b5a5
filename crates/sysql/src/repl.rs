//! The interactive shell: statements that span lines, history, tab completion and backslash
//! commands driven by one table that serves both dispatch and `\?`.

use std::fs::{self, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{anyhow, bail, Context as _, Result};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use futures::StreamExt;
use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::config::{CompletionType, Config};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::Validator;
use rustyline::{Editor, Helper};
use tokio::runtime::Runtime;

use crate::backend::Backend;
use crate::exec::{self, ExecError, RunOptions};
use crate::print::{Format, Printer};
use crate::signals::Signals;

const PROMPT: &str = "sysql> ";
const CONTINUATION: &str = "   -> ";
/// How deep `\i` may nest before we suspect a file includes itself.
const MAX_INCLUDE_DEPTH: usize = 16;

/// How the shell starts.
#[derive(Debug, Clone)]
pub struct ReplOptions {
    /// The history file; `None` means [`default_history_path`], an empty path means no history.
    pub history_path: Option<PathBuf>,
    /// The initial output format and timing; `\format` and `\timing` change them.
    pub printer: Printer,
}

/// `$HOME/.sysql_history`, or `None` when `HOME` is unset.
pub fn default_history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|home| !home.is_empty()).map(|home| PathBuf::from(home).join(".sysql_history"))
}

/// Runs the shell until `\q` or Ctrl-D. Statement errors are printed as `sysql: <message>` and the
/// shell goes on; only a broken terminal ends it with an error.
pub fn run(rt: &Runtime, backend: Backend, opts: ReplOptions, signals: &Signals) -> Result<()> {
    let config = Config::builder()
        .max_history_size(10_000)?
        .history_ignore_space(true)
        .completion_type(CompletionType::List)
        .build();
    let mut editor: Editor<SqlHelper, FileHistory> = Editor::with_config(config)?;
    // History is what a person typed: none when input is a pipe or a file,
    // and only in a regular file (never a device such as /dev/null).
    let history = match opts.history_path {
        Some(path) if path.as_os_str().is_empty() => None,
        Some(path) => Some(path),
        None => default_history_path(),
    }
    .filter(|_| std::io::IsTerminal::is_terminal(&std::io::stdin()))
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
    };
    shell.refresh_tables();
    editor.set_helper(Some(SqlHelper { vocabulary: shell.vocabulary.clone(), files: FilenameCompleter::new() }));

    let mut buffer = String::new();
    let ended = loop {
        let prompt = if is_blank(&buffer) { PROMPT } else { CONTINUATION };
        let input = match editor.readline(prompt) {
            Ok(input) => input,
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break Ok(()),
            Err(e) => break Err(anyhow!(e).context("cannot read input")),
        };
        // A paste may bring several lines at once; take them one by one.
        let mut flow = Flow::Continue;
        for line in input.lines() {
            flow = shell.feed(&mut buffer, line).unwrap_or_else(|e| {
                eprintln!("sysql: {e:#}");
                Flow::Continue
            });
            if flow == Flow::Quit {
                break;
            }
        }
        for entry in shell.history.drain(..) {
            // A full or duplicate history is no reason to stop.
            let _ = editor.add_history_entry(entry);
        }
        if flow == Flow::Quit {
            break Ok(());
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
}

impl Shell<'_> {
    /// Takes one input line: a backslash command when no statement is pending, otherwise more of
    /// the pending statement; runs whatever statements the line completes.
    fn feed(&mut self, buffer: &mut String, line: &str) -> Result<Flow> {
        if is_blank(buffer) && line.trim_start().starts_with('\\') {
            buffer.clear();
            self.remember(line.trim());
            return self.command(line.trim());
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
        let mut out = io::stdout();
        let opts = RunOptions::interactive(self.signals);
        let result = self.rt.block_on(exec::run_sql(&self.backend, sql, &self.printer, &mut out, &opts));
        let first = sql.split_whitespace().next().unwrap_or_default();
        if ["create", "drop"].iter().any(|w| first.eq_ignore_ascii_case(w)) {
            self.refresh_tables();
        }
        match result {
            Ok(_) => Ok(()),
            Err(ExecError::Sql(e)) => Err(anyhow!(e.message)),
            Err(e) => Err(e.into()),
        }
    }

    fn command(&mut self, line: &str) -> Result<Flow> {
        let line = line.strip_prefix('\\').unwrap_or(line);
        let (name, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let command = find_command(name).map_err(|message| anyhow!(message))?;
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

    /// Each column's description, for sysql's own tables.
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
    fn print_listing(&self, columns: Vec<(&str, ArrayRef)>) -> Result<()> {
        let batch = RecordBatch::try_from_iter(columns)?;
        let printer = Printer { format: Format::Table, maxrows: None, timing: false };
        printer.print_batches(&mut io::stdout(), &batch.schema(), &[batch])
    }
}

/// One backslash command: its name without the backslash, its argument synopsis, what it does,
/// and the function that does it.
struct Command {
    name: &'static str,
    args: &'static str,
    description: &'static str,
    handler: fn(&mut Shell<'_>, &str) -> Result<Flow>,
}

/// Every backslash command; `\?` prints this table in this order.
#[rustfmt::skip]
const COMMANDS: &[Command] = &[
    Command { name: "?", args: "", description: "show this help", handler: cmd_help },
    Command { name: "q", args: "", description: "quit (so does Ctrl-D)", handler: cmd_quit },
    Command {
        name: "d", args: "[table]", description: "list tables, or describe the columns of one",
        handler: cmd_describe,
    },
    Command {
        name: "timing", args: "[on|off]", description: "toggle or set showing the elapsed time",
        handler: cmd_timing,
    },
    Command {
        name: "format", args: "[table|csv|json|ndjson]", description: "show or set the output format",
        handler: cmd_format,
    },
    Command {
        name: "i", args: "<file>", description: "run the statements in a file",
        handler: cmd_include,
    },
    Command {
        name: "l", args: "[dir]", description: "list the saved queries in a directory (default sql-examples)",
        handler: cmd_library,
    },
];

/// Finds a command by name, or says which one was probably meant.
fn find_command(name: &str) -> Result<&'static Command, String> {
    if let Some(command) = COMMANDS.iter().find(|c| c.name == name) {
        return Ok(command);
    }
    let nearest = COMMANDS
        .iter()
        .map(|c| (edit_distance(name, c.name), c.name))
        .min()
        .filter(|&(distance, _)| distance <= 2 && distance < name.chars().count());
    Err(match nearest {
        Some((_, suggestion)) => {
            format!("unknown command \\{name}; did you mean \\{suggestion}?")
        }
        None => format!("unknown command \\{name}; try \\?"),
    })
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

fn help_text() -> String {
    let width = COMMANDS.iter().map(|c| c.name.len() + c.args.len() + 2).max().unwrap_or(0);
    let mut text = String::new();
    for c in COMMANDS {
        let usage = format!("\\{} {}", c.name, c.args);
        text.push_str(&format!("{usage:width$}  {}\n", c.description));
    }
    text.push_str("Statements end with ';' and may span lines; Ctrl-C cancels a running query.\n");
    text
}

fn cmd_help(_shell: &mut Shell<'_>, _args: &str) -> Result<Flow> {
    print!("{}", help_text());
    Ok(Flow::Continue)
}

fn cmd_quit(_shell: &mut Shell<'_>, _args: &str) -> Result<Flow> {
    Ok(Flow::Quit)
}

fn cmd_describe(shell: &mut Shell<'_>, args: &str) -> Result<Flow> {
    shell.refresh_tables();
    if args.is_empty() {
        let tables = &shell.tables;
        let counts = tables.iter().map(|t| t.columns.len() as u64);
        shell.print_listing(vec![
            ("table", strings(tables.iter().map(|t| &t.name))),
            ("columns", Arc::new(UInt64Array::from_iter_values(counts))),
        ])?;
        return Ok(Flow::Continue);
    }
    let Some(table) = shell.tables.iter().find(|t| t.name == args) else {
        bail!("table '{args}' not found; \\d lists the tables");
    };
    let columns = table.columns.clone();
    let descriptions = shell.descriptions(args);
    let nullable = |n: bool| if n { "YES" } else { "NO" };
    let mut listing = vec![
        ("column", strings(columns.iter().map(|c| &c.0))),
        ("type", strings(columns.iter().map(|c| &c.1))),
        ("nullable", strings(columns.iter().map(|c| nullable(c.2)))),
    ];
    if !descriptions.is_empty() {
        let of = |name: &str| descriptions.iter().find(|(c, _)| c == name).map(|(_, d)| d.clone()).unwrap_or_default();
        listing.push(("description", strings(columns.iter().map(|c| of(&c.0)))));
    }
    shell.print_listing(listing)?;
    Ok(Flow::Continue)
}

fn strings<S: AsRef<str>>(values: impl Iterator<Item = S>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn cmd_timing(shell: &mut Shell<'_>, args: &str) -> Result<Flow> {
    shell.printer.timing = match args.to_ascii_lowercase().as_str() {
        "" => !shell.printer.timing,
        "on" => true,
        "off" => false,
        other => bail!("\\timing takes on or off, not '{other}'"),
    };
    let state = if shell.printer.timing { "on" } else { "off" };
    println!("Timing is {state}.");
    Ok(Flow::Continue)
}

fn cmd_format(shell: &mut Shell<'_>, args: &str) -> Result<Flow> {
    if !args.is_empty() {
        shell.printer.format = args.parse()?;
    }
    println!("Output format is {}.", shell.printer.format);
    Ok(Flow::Continue)
}

fn cmd_library(shell: &mut Shell<'_>, args: &str) -> Result<Flow> {
    use crate::schedule::library;
    let dir = if args.is_empty() { library::DEFAULT_DIR } else { args };
    let (columns, errors) = library::listing(Path::new(dir)).map_err(|e| anyhow!("{e}; \\l takes the directory"))?;
    shell.print_listing(columns)?;
    for e in errors {
        eprintln!("sysql: {e}");
    }
    Ok(Flow::Continue)
}

fn cmd_include(shell: &mut Shell<'_>, args: &str) -> Result<Flow> {
    if args.is_empty() {
        bail!("\\i needs a file name");
    }
    if shell.depth >= MAX_INCLUDE_DEPTH {
        bail!("\\i nested more than {MAX_INCLUDE_DEPTH} deep; does a file include itself?");
    }
    let text = fs::read_to_string(args).with_context(|| format!("cannot read {args}"))?;
    shell.depth += 1;
    let result = run_lines(shell, args, &text);
    shell.depth -= 1;
    result
}

/// Runs a file's lines as if typed, stopping at the first error. A last statement without `;`
/// runs too.
fn run_lines(shell: &mut Shell<'_>, file: &str, text: &str) -> Result<Flow> {
    let mut buffer = String::new();
    for (number, line) in text.lines().enumerate() {
        let flow = shell.feed(&mut buffer, line).with_context(|| format!("{file}:{}", number + 1))?;
        if flow == Flow::Quit {
            return Ok(Flow::Quit);
        }
    }
    if !is_blank(&buffer) {
        shell.run_sql(&buffer).with_context(|| format!("{file}: at end"))?;
    }
    Ok(Flow::Continue)
}

/// Where the scanner is within SQL text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Code,
    /// Inside '...'; a doubled '' leaves and re-enters, which needs no special case.
    Single,
    /// Inside "..." (a quoted identifier).
    Double,
    /// After `--`, up to the end of the line.
    LineComment,
    /// Inside `/* */`, which nest.
    BlockComment(usize),
}

/// Splits `text` at the semicolons that end statements (not those inside string literals, quoted
/// identifiers or comments).
///
/// Returns the complete statements, trimmed and with their `;`, skipping empty ones, and the
/// unfinished rest, which is empty when it holds only whitespace and comments. A statement is
/// complete when the rest is empty.
pub fn split_statements(text: &str) -> (Vec<String>, String) {
    let mut statements = Vec::new();
    let mut start = 0;
    scan(text, |i, c| {
        if c == ';' {
            if !is_blank(&text[start..i]) {
                statements.push(text[start..=i].trim().to_string());
            }
            start = i + 1;
        }
        true
    });
    let rest = &text[start..];
    let rest = if is_blank(rest) { "" } else { rest };
    (statements, rest.trim_start().to_string())
}

/// Whether `text` holds nothing but whitespace and comments.
fn is_blank(text: &str) -> bool {
    let mut blank = true;
    scan(text, |_, c| {
        blank = c.is_whitespace();
        blank
    });
    blank
}

/// Walks SQL text and calls `code` with the byte offset of each char outside comments, string
/// literals and quoted identifiers (the opening quote included), until `code` returns false.
fn scan(text: &str, mut code: impl FnMut(usize, char) -> bool) {
    let mut lex = Lex::Code;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        lex = match (lex, c, next) {
            (Lex::Code, '-', Some('-')) => {
                chars.next();
                Lex::LineComment
            }
            (Lex::Code, '/', Some('*')) => {
                chars.next();
                Lex::BlockComment(1)
            }
            // Every char of code reaches `code` exactly once, here, before the arms below.
            (Lex::Code, _, _) if !code(i, c) => return,
            (Lex::Code, '\'', _) => Lex::Single,
            (Lex::Code, '"', _) => Lex::Double,
            (Lex::Single, '\'', _) | (Lex::Double, '"', _) | (Lex::LineComment, '\n', _) => Lex::Code,
            (Lex::BlockComment(1), '*', Some('/')) => {
                chars.next();
                Lex::Code
            }
            (Lex::BlockComment(depth), '*', Some('/')) => {
                chars.next();
                Lex::BlockComment(depth - 1)
            }
            (Lex::BlockComment(depth), '/', Some('*')) => {
                chars.next();
                Lex::BlockComment(depth + 1)
            }
            (lex, _, _) => lex,
        };
    }
}

/// SQL words offered by tab completion next to table and column names.
#[rustfmt::skip]
const KEYWORDS: &[&str] = &[
    "ALL", "AND", "AS", "ASC", "AVG", "BETWEEN", "BY", "CASE", "CAST", "COUNT", "CREATE", "CROSS",
    "DESC", "DESCRIBE", "DISTINCT", "DROP", "ELSE", "END", "EXCEPT", "EXISTS", "EXPLAIN", "FALSE",
    "FIRST", "FROM", "FULL", "GROUP", "HAVING", "ILIKE", "IN", "INNER", "INTERSECT", "INTERVAL",
    "IS", "JOIN", "LAST", "LEFT", "LIKE", "LIMIT", "MAX", "MIN", "NOT", "NULL", "NULLS", "OFFSET",
    "ON", "OR", "ORDER", "OUTER", "OVER", "PARTITION", "RIGHT", "SELECT", "SET", "SHOW", "SUM",
    "TABLE", "TABLES", "THEN", "TRUE", "UNION", "USING", "VALUES", "VIEW", "WHEN", "WHERE",
    "WINDOW", "WITH",
];

/// Tab completion for the editor: commands after a leading backslash, file names after `\i`,
/// formats after `\format`, otherwise tables, columns and keywords.
struct SqlHelper {
    vocabulary: Arc<RwLock<Vec<String>>>,
    files: FilenameCompleter,
}

impl SqlHelper {
    fn candidates(&self, line: &str, start: usize, word: &str) -> Vec<String> {
        let lower = word.to_lowercase();
        let matches = |candidate: &str| candidate.to_lowercase().starts_with(&lower);
        let head = line.trim_start();
        if let Some(command) = head.strip_prefix('\\') {
            let before = &line[..start];
            if before.trim_start() == "\\" {
                return COMMANDS
                    .iter()
                    .filter(|c| c.name.starts_with(command.trim_end()))
                    .map(|c| c.name.to_string())
                    .collect();
            }
            if command.starts_with("format") {
                return ["table", "csv", "json", "ndjson"]
                    .into_iter()
                    .filter(|f| matches(f))
                    .map(str::to_string)
                    .collect();
            }
        }
        let vocabulary = self.vocabulary.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<String> = vocabulary.iter().filter(|w| matches(w)).cloned().collect();
        if !head.starts_with('\\') {
            // Keywords follow the case the user types in.
            let upper = word.chars().any(char::is_uppercase);
            out.extend(KEYWORDS.iter().filter(|k| matches(k)).map(|k| {
                if upper {
                    k.to_string()
                } else {
                    k.to_lowercase()
                }
            }));
        }
        out
    }
}

impl Completer for SqlHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, ctx: &rustyline::Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let head = &line[..pos];
        if head.trim_start().starts_with("\\i ") {
            return self.files.complete(line, pos, ctx);
        }
        let start = head
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '?'))
            .map_or(0, |i| i + head[i..].chars().next().map_or(1, char::len_utf8));
        let word = &head[start..];
        let pairs = self
            .candidates(line, start, word)
            .into_iter()
            .map(|c| Pair { display: c.clone(), replacement: c })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for SqlHelper {
    type Hint = String;
}

impl Highlighter for SqlHelper {}

impl Validator for SqlHelper {}

impl Helper for SqlHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements() {
        // (input, complete statements, unfinished rest)
        let cases: &[(&str, &[&str], &str)] = &[
            ("select 1;", &["select 1;"], ""),
            ("select 1; select\n2;  select 3", &["select 1;", "select\n2;"], "select 3"),
            ("select 1", &[], "select 1"),
            (";; ;", &[], ""),
            // Semicolons in literals, quoted identifiers and comments don't count.
            ("select ';' as a; ", &["select ';' as a;"], ""),
            ("select 'it''s;' ;", &["select 'it''s;' ;"], ""),
            ("select \"a;b\";", &["select \"a;b\";"], ""),
            ("select '--';", &["select '--';"], ""),
            ("select 1 -- done;\n", &[], "select 1 -- done;\n"),
            ("select 1 -- done;\n;", &["select 1 -- done;\n;"], ""),
            ("select /* a; /* b; */ c; */ 1;", &["select /* a; /* b; */ c; */ 1;"], ""),
            // An open quote keeps the statement open across lines.
            ("select 'a;\nb", &[], "select 'a;\nb"),
            // Comments alone are no statement.
            ("select 1; -- bye", &["select 1;"], ""),
            ("-- one\n/* two */\n", &[], ""),
        ];
        for &(input, statements, rest) in cases {
            let (got, got_rest) = split_statements(input);
            assert_eq!(got, statements, "{input:?}");
            assert_eq!(got_rest, rest, "{input:?}");
        }
    }

    #[test]
    fn blank_is_whitespace_and_comments() {
        assert!(is_blank("  -- x\n /* y */ "));
        assert!(is_blank(""));
        assert!(!is_blank("-- x\nselect"));
        assert!(!is_blank("/* x */ ;"));
        assert!(!is_blank("''"));
    }

    #[test]
    fn finds_commands() {
        assert_eq!(find_command("d").unwrap().name, "d");
        assert_eq!(find_command("?").unwrap().name, "?");
        assert_eq!(find_command("timng").err().unwrap(), "unknown command \\timng; did you mean \\timing?");
        assert_eq!(find_command("fromat").err().unwrap(), "unknown command \\fromat; did you mean \\format?");
        assert_eq!(find_command("x").err().unwrap(), "unknown command \\x; try \\?");
        assert_eq!(find_command("explain").err().unwrap(), "unknown command \\explain; try \\?");
    }

    #[test]
    fn every_command_has_help() {
        let help = help_text();
        for c in COMMANDS {
            assert!(help.contains(&format!("\\{} {}", c.name, c.args).trim_end().to_string()));
            assert!(help.contains(c.description));
        }
        assert_eq!(help.lines().count(), COMMANDS.len() + 1);
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("timing", "timing"), 0);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    fn helper(words: &[&str]) -> SqlHelper {
        SqlHelper {
            vocabulary: Arc::new(RwLock::new(words.iter().map(|w| w.to_string()).collect())),
            files: FilenameCompleter::new(),
        }
    }

    fn complete(helper: &SqlHelper, line: &str) -> (usize, Vec<String>) {
        let history = FileHistory::new();
        let ctx = rustyline::Context::new(&history);
        let (start, pairs) = helper.complete(line, line.len(), &ctx).unwrap();
        (start, pairs.into_iter().map(|p| p.replacement).collect())
    }

    #[test]
    fn completes_names_keywords_and_commands() {
        let h = helper(&["opens", "live.opens", "pid", "path"]);
        assert_eq!(complete(&h, "select * from op"), (14, vec!["opens".into()]));
        assert_eq!(complete(&h, "select * from live.o"), (14, vec!["live.opens".into()]));
        assert_eq!(complete(&h, "sel"), (0, vec!["select".into()]));
        assert_eq!(complete(&h, "SEL"), (0, vec!["SELECT".into()]));
        assert_eq!(complete(&h, "select p"), (7, vec!["pid".into(), "path".into(), "partition".into()]));
        assert_eq!(complete(&h, "\\ti"), (1, vec!["timing".into()]));
        assert_eq!(complete(&h, "\\format nd"), (8, vec!["ndjson".into()]));
        assert_eq!(complete(&h, "\\d op"), (3, vec!["opens".into()]));
    }

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
