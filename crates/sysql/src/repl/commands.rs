//! The backslash commands: one table (name, arguments, choices, what it does, the function that
//! does it) drives dispatch, `\?` and completion, as in DuckDB's shell.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context as _, Result};
use datafusion::arrow::array::{ArrayRef, StringArray, UInt64Array};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::lex::is_blank;
use super::{Flow, Shell};
use crate::exec::ExecError;
use crate::print::Expanded;
use crate::signals::Sig;

/// How deep `\i` may nest before we suspect a file includes itself.
const MAX_INCLUDE_DEPTH: usize = 16;
/// `\watch` without an interval: psql's default.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// One backslash command: its name without the backslash, its argument synopsis, the words its
/// argument may be (for completion), what it does, and the function that does it.
pub struct Command {
    pub name: &'static str,
    pub args: &'static str,
    pub choices: &'static [&'static str],
    pub description: &'static str,
    pub handler: fn(&mut Shell<'_>, &str) -> Result<Flow>,
}

/// Every backslash command; `\?` prints this table in this order.
#[rustfmt::skip]
pub const COMMANDS: &[Command] = &[
    Command { name: "?", args: "", choices: &[], description: "show this help", handler: cmd_help },
    Command { name: "q", args: "", choices: &[], description: "quit (so do quit, exit and Ctrl-D)", handler: cmd_quit },
    Command {
        name: "conninfo", args: "", choices: &[],
        description: "where statements run, since when history is held, events lost", handler: cmd_conninfo,
    },
    Command { name: "dt", args: "", choices: &[], description: "list tables", handler: cmd_tables },
    Command {
        name: "d", args: "[table]", choices: &[], description: "list tables, or the columns of one",
        handler: cmd_describe,
    },
    Command {
        name: "d+", args: "<table>", choices: &[], description: "the columns of a table, with what each holds",
        handler: cmd_describe_more,
    },
    Command {
        name: "x", args: "[on|off|auto]", choices: &["on", "off", "auto"],
        description: "show rows as records (auto: when a row is wider than the terminal)", handler: cmd_expanded,
    },
    Command {
        name: "pset", args: "null|pager|format <value>", choices: &["null", "pager", "format"],
        description: "how NULL shows; whether a long result goes through $PAGER (on|off); \\format",
        handler: cmd_pset,
    },
    Command {
        name: "maxrows", args: "[N|off]", choices: &["off"],
        description: "show at most N rows of a table result (40 by default)", handler: cmd_maxrows,
    },
    Command {
        name: "timing", args: "[on|off]", choices: &["on", "off"], description: "toggle or set showing the elapsed time",
        handler: cmd_timing,
    },
    Command {
        name: "format", args: "[table|csv|json|ndjson|bar]", choices: &["table", "csv", "json", "ndjson", "bar"],
        description: "show or set the output format", handler: cmd_format,
    },
    Command {
        name: "o", args: "[file]", choices: &[], description: "send results to a file, or back to the screen",
        handler: cmd_output,
    },
    Command {
        name: "watch", args: "[interval]", choices: &[],
        description: "run the last query again every interval (2s) until Ctrl-C", handler: cmd_watch,
    },
    Command {
        name: "chart", args: "", choices: &[],
        description: "draw the last result's first text column against its first number column",
        handler: cmd_chart,
    },
    Command {
        name: "e", args: "[file]", choices: &[], description: "edit the last statement in $EDITOR, then run it",
        handler: cmd_edit,
    },
    Command { name: "i", args: "<file>", choices: &[], description: "run the statements in a file", handler: cmd_include },
    Command {
        name: "l", args: "[dir]", choices: &[], description: "list the saved queries in a directory (default sql-examples)",
        handler: cmd_library,
    },
];

/// Finds a command by name, or says which one was probably meant.
pub fn find_command(name: &str) -> Result<&'static Command, String> {
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

fn cmd_conninfo(shell: &mut Shell<'_>, _args: &str) -> Result<Flow> {
    let sql = "SELECT min(coalesce(disk_oldest, oldest)), sum(lost_kernel), sum(lost_user), sum(evicted), \
               sum(disk_unwritten) FROM sysql_stats";
    let batches = shell.query(sql)?;
    let options = FormatOptions::new().with_null("none");
    let mut values = Vec::new();
    if let Some(b) = batches.iter().find(|b| b.num_rows() > 0) {
        for column in b.columns() {
            values.push(ArrayFormatter::try_new(column.as_ref(), &options)?.value(0).to_string());
        }
    }
    let [oldest, kernel, behind, evicted, unwritten] = values.as_slice() else {
        bail!("sysql_stats answered no row");
    };
    let text = format!(
        "Connection: {}\nOldest event held: {oldest}\nEvents lost: {kernel} in the kernel (ring buffer full), \
         {behind} by live queries that fell behind, {evicted} evicted from memory, {unwritten} never written to disk\n",
        shell.connection
    );
    print!("{text}");
    Ok(Flow::Continue)
}

fn cmd_tables(shell: &mut Shell<'_>, _args: &str) -> Result<Flow> {
    shell.refresh_tables();
    let tables = &shell.tables;
    let counts = tables.iter().map(|t| t.columns.len() as u64);
    let listing = vec![
        ("table", strings(tables.iter().map(|t| &t.name))),
        ("columns", Arc::new(UInt64Array::from_iter_values(counts)) as ArrayRef),
    ];
    shell.print_listing(listing)?;
    Ok(Flow::Continue)
}

fn cmd_describe(shell: &mut Shell<'_>, args: &str) -> Result<Flow> {
    if args.is_empty() {
        return cmd_tables(shell, args);
    }
    describe(shell, args, false)
}

fn cmd_describe_more(shell: &mut Shell<'_>, args: &str) -> Result<Flow> {
    if args.is_empty() {
        return cmd_tables(shell, args);
    }
    describe(shell, args, true)
}

/// Lists the columns of a table: name, type, nullable, and with `more` what each holds.
fn describe(shell: &mut Shell<'_>, name: &str, more: bool) -> Result<Flow> {
    shell.refresh_tables();
    let Some(table) = shell.tables.iter().find(|t| t.name == name) else {
        bail!("table '{name}' not found; \\d lists the tables");
    };
    let columns = table.columns.clone();
    let nullable = |n: bool| if n { "YES" } else { "NO" };
    let mut listing = vec![
        ("column", strings(columns.iter().map(|c| &c.0))),
        ("type", strings(columns.iter().map(|c| &c.1))),
        ("nullable", strings(columns.iter().map(|c| nullable(c.2)))),
    ];
    if more {
        let descriptions = shell.descriptions(name);
        let of = |name: &str| descriptions.iter().find(|(c, _)| c == name).map(|(_, d)| d.clone()).unwrap_or_default();
        listing.push(("description", strings(columns.iter().map(|c| of(&c.0)))));
    }
    shell.print_listing(listing)?;
    Ok(Flow::Continue)
}

fn strings<S: AsRef<str>>(values: impl Iterator<Item = S>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

/// `on`, `off` or nothing (which flips `current`).
fn on_off(command: &str, args: &str, current: bool) -> Result<bool> {
    match args.to_ascii_lowercase().as_str() {
        "" => Ok(!current),
        "on" => Ok(true),
        "off" => Ok(false),
        other => bail!("\\{command} takes on or off, not '{other}'"),
    }
}

fn cmd_timing(shell: &mut Shell<'_>, args: &str) -> Result<Flow> {
    shell.printer.timing = on_off("timing", args, shell.printer.timing)?;
    let state = if shell.printer.timing { "on" } else { "off" };
    println!("Timing is {state}.");
    Ok(Flow::Continue)
}

fn cmd_expanded(shell: &mut Shell<'_>, args: &str) -> Result<Flow> {
    shell.printer.expanded = match args.to_ascii_lowercase().as_str() {
        "" if shell.printer.expanded == Expanded::Off => Expanded::On,
        "" => Expanded::Off,
        "on" => Expanded::On,
        "off" => Expanded::Off,
        "auto" => Expanded::Auto,
        other => bail!("\\x takes on, off or auto, not '{other}'"),
    };
    match shell.printer.expanded {
        Expanded::Auto => println!("Expanded display is used automatically."),
        state => println!("Expanded display is {state}."),
    }
    Ok(Flow::Continue)
}

fn cmd_pset(shell: &mut Shell<'_>, args: &str) -> Result<Flow> {
    let (what, value) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
    match what {
        "null" => {
            if !value.trim().is_empty() {
                shell.printer.null = unquote(value.trim());
            }
            println!("Null display is \"{}\".", shell.printer.null);
        }
        "pager" => {
            shell.pager = on_off("pset pager", value.trim(), shell.pager)?;
            println!("Pager usage is {}.", if shell.pager { "on" } else { "off" });
        }
        // psql's spelling of \format
        "format" => return cmd_format(shell, value.trim()),
        _ => bail!("\\pset takes null <text>, pager [on|off] or format <table|csv|json|ndjson|bar>"),
    }
    Ok(Flow::Continue)
}

/// `'(null)'` as `(null)`, a doubled quote inside as one; other text as it is.
fn unquote(text: &str) -> String {
    match text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        Some(inner) => inner.replace("''", "'"),
        None => text.to_string(),
    }
}

fn cmd_maxrows(shell: &mut Shell<'_>, args: &str) -> Result<Flow> {
    match args.to_ascii_lowercase().as_str() {
        "" => {}
        "off" | "0" => shell.printer.maxrows = None,
        n => {
            let n = n.parse::<usize>().map_err(|_| anyhow!("\\maxrows takes a number of rows or off, not '{n}'"))?;
            shell.printer.maxrows = Some(n);
        }
    }
    match shell.printer.maxrows {
        Some(n) => println!("Row limit is {n}."),
        None => println!("Row limit is off: every row is shown."),
    }
    Ok(Flow::Continue)
}

fn cmd_format(shell: &mut Shell<'_>, args: &str) -> Result<Flow> {
    if !args.is_empty() {
        shell.printer.format = args.parse()?;
    }
    println!("Output format is {}.", shell.printer.format);
    Ok(Flow::Continue)
}

fn cmd_output(shell: &mut Shell<'_>, args: &str) -> Result<Flow> {
    if let Some((_, mut file)) = shell.output.take() {
        file.flush()?;
    }
    if !args.is_empty() {
        let file = fs::File::create(args).with_context(|| format!("cannot write {args}"))?;
        shell.output = Some((args.to_string(), file));
    }
    Ok(Flow::Continue)
}

fn cmd_watch(shell: &mut Shell<'_>, args: &str) -> Result<Flow> {
    let every =
        if args.is_empty() { WATCH_INTERVAL } else { crate::cli::parse_duration(args).map_err(|e| anyhow!(e))? };
    if every.is_zero() {
        bail!("\\watch needs an interval longer than zero");
    }
    let Some(sql) = shell.last_bounded.clone() else {
        bail!("\\watch runs the last query again, and none has run yet");
    };
    let every_text = duration_text(every);
    loop {
        let since = shell.signals.now();
        let title = format!("{} (every {every_text})\n\n", crate::app::clock_text(SystemTime::now()));
        shell.write_out(title.as_bytes())?;
        match shell.execute(&sql) {
            Ok(()) => {}
            Err(ExecError::Cancelled) => return Ok(Flow::Continue),
            Err(ExecError::Sql(e)) => return Err(anyhow!(e.message)),
            Err(e) => return Err(e.into()),
        }
        let signals = shell.signals;
        let stopped = shell.rt.block_on(async {
            tokio::select! {
                _ = tokio::time::sleep(every) => false,
                _ = signals.after(since, &[Sig::Interrupt]) => true,
            }
        });
        if stopped {
            return Ok(Flow::Continue);
        }
    }
}

/// `2s`, `500ms`.
fn duration_text(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn cmd_chart(shell: &mut Shell<'_>, _args: &str) -> Result<Flow> {
    let kept = shell.kept.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(kept) = kept else {
        bail!("\\chart draws the last query's result, and none was kept (a live query's rows are not)");
    };
    let width = crate::terminal::size().map_or(crate::chart::DEFAULT_WIDTH, |(columns, _)| columns);
    let text = crate::chart::bars(&kept.schema, &kept.batches, width, shell.printer.maxrows, &shell.printer.null)
        .map_err(|e| anyhow!("\\chart {e}"))?;
    shell.write_out(text.as_bytes())?;
    Ok(Flow::Continue)
}

fn cmd_edit(shell: &mut Shell<'_>, args: &str) -> Result<Flow> {
    let text = if args.is_empty() {
        shell.last_statement.clone().unwrap_or_default()
    } else {
        fs::read_to_string(args).with_context(|| format!("cannot read {args}"))?
    };
    let path = std::env::temp_dir().join(format!("sysql-edit-{}.sql", std::process::id()));
    let _ = fs::remove_file(&path);
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
    writeln!(file, "{}", text.trim_end())?;
    drop(file);
    let editor = ["VISUAL", "EDITOR"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|e| !e.trim().is_empty()))
        .unwrap_or_else(|| "vi".to_string());
    let status =
        std::process::Command::new("sh").arg("-c").arg(format!("{editor} \"$1\"")).arg("sh").arg(&path).status();
    let edited = fs::read_to_string(&path);
    let _ = fs::remove_file(&path);
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => bail!("the editor ({editor}) ended with {status}; nothing was run"),
        Err(e) => bail!("cannot start the editor ({editor}): {e}"),
    }
    let edited = edited?;
    if is_blank(&edited) {
        return Ok(Flow::Continue);
    }
    println!("{}", edited.trim_end());
    shell.remember(edited.trim());
    shell.depth += 1;
    let result = run_lines(shell, "(edited)", &edited);
    shell.depth -= 1;
    result
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
        if flow != Flow::Continue {
            return Ok(flow);
        }
    }
    if !is_blank(&buffer) {
        shell.run_sql(&buffer).with_context(|| format!("{file}: at end"))?;
    }
    Ok(Flow::Continue)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_commands() {
        assert_eq!(find_command("d").unwrap().name, "d");
        assert_eq!(find_command("?").unwrap().name, "?");
        assert_eq!(find_command("timng").err().unwrap(), "unknown command \\timng; did you mean \\timing?");
        assert_eq!(find_command("fromat").err().unwrap(), "unknown command \\fromat; did you mean \\format?");
        assert_eq!(find_command("d+").unwrap().name, "d+");
        assert_eq!(find_command("zzz").err().unwrap(), "unknown command \\zzz; try \\?");
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

    #[test]
    fn unquotes_pset_values() {
        assert_eq!(unquote("'(null)'"), "(null)");
        assert_eq!(unquote("'it''s'"), "it's");
        assert_eq!(unquote("-"), "-");
    }
}
