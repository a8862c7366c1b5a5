//! The shell as a psql or DuckDB user meets it, typed into at a real
//! terminal (a pseudo-terminal of a known size): expanded display, NULL
//! display, row limits, `\watch`, `\chart` and the `bar` format, `\o`, `\e`,
//! `\conninfo`, the pager and a live query's status line; and scripts that
//! stop at their first error. Needs root (sysql loads its kernel programs).

mod common;

use common::{TempDir, Typist};
use std::io::Write;
use std::process::{Command, Stdio};

fn sysql() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sysql"));
    c.env_remove("SYSQL_BTF_PATH").env_remove("COLUMNS").env_remove("LINES").env("PAGER", "");
    c.args(["--embedded", "--no-history"]);
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What the shell says on stderr besides the line that says capture is complete.
fn said(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| !l.starts_with("sysql: capturing since ")).collect()
}

#[test]
fn display_commands_at_a_terminal() {
    let dir = TempDir::new("shell-display");
    let file = dir.join("out.txt");
    let mut cmd = sysql();
    // An "editor" that changes 41 into 42.
    cmd.env("EDITOR", "sed -i s/41/42/");
    let mut shell = Typist::spawn_sized(cmd, 60, 24);
    shell.expect(&format!(
        "sysql {}: SQL over live Linux syscalls. \\? for help, \\q to quit.\n",
        env!("CARGO_PKG_VERSION")
    ));

    shell.line("\\pset pager off");
    shell.expect("Pager usage is off.\n");
    shell.line("\\x auto");
    shell.expect("Expanded display is used automatically.\n");
    // Narrower than the terminal: across, with no timing (off by default).
    shell.line("SELECT 1 AS a;");
    shell.expect("+---+\n| a |\n+---+\n| 1 |\n+---+\n1 row(s) fetched.\n");
    // Wider than 60 columns: a record.
    shell.line("SELECT repeat('x', 70) AS wide, 2 AS n;");
    shell.expect(&format!("-[ RECORD 1 ]{}\nwide | {}\nn    | 2\n1 row(s) fetched.\n", "-".repeat(64), "x".repeat(70)));
    shell.line("\\x off");
    shell.expect("Expanded display is off.\n");

    shell.line("\\pset null '(null)'");
    shell.expect("Null display is \"(null)\".\n");
    shell.line("SELECT NULL AS nothing;");
    shell.expect("| (null)  |\n");

    shell.line("\\maxrows 2");
    shell.expect("Row limit is 2.\n");
    shell.line("SELECT * FROM (VALUES (1), (2), (3)) AS t(v);");
    shell.expect("| 1 |\n| 2 |\n+---+\n(1 more row not shown, 3 in all)\n3 row(s) fetched.\n");

    shell.line("\\conninfo");
    shell.expect("Connection: in this process (embedded), capturing since ");
    shell.expect("Events lost: ");

    // \d+ adds each column's description, from the tables' one column list
    // (as docs/tables/opens.md); \d leaves it out.
    shell.line("\\d+ opens");
    shell.expect("| flags_text  ");
    shell.expect(
        " | the flags by name: `O_RDONLY|O_CLOEXEC` (`O_SYNC` and `O_TMPFILE` named as such; unnamed bits in hex) ",
    );
    shell.line("\\d opens");
    shell.expect("| column ");
    shell.line("\\dt");
    shell.expect("| live.opens ");

    // \o sends results to a file until \o alone.
    shell.line(&format!("\\o {}", file.display()));
    shell.line("SELECT 'to the file' AS s;");
    shell.line("\\o");
    shell.line("SELECT 'to the screen' AS s;");
    shell.expect("| to the screen |");

    // \e edits the last statement and runs what the editor left.
    shell.line("SELECT 41 AS answer;");
    shell.expect("| 41     |");
    shell.line("\\e");
    shell.expect("SELECT 42 AS answer;\n");
    shell.expect("| 42     |");

    // exit, without a backslash, as psql
    shell.line("exit");
    let (status, stdout, stderr) = shell.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(said(&stderr).is_empty(), "{stderr}");
    assert!(!stdout.contains("Elapsed"), "timing is off by default: {stdout}");
    assert!(!stdout.contains("| to the file |"), "{stdout}");
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        written,
        "+-------------+\n| s           |\n+-------------+\n| to the file |\n+-------------+\n1 row(s) fetched.\n\n"
    );
}

#[test]
fn watch_repeats_until_ctrl_c() {
    let dir = TempDir::new("shell-watch");
    let marker = dir.join("watched");
    let mut shell = Typist::spawn(sysql());
    shell.line(&format!("SELECT count(*) AS n FROM opens WHERE path = '{}';", marker.display()));
    shell.expect("| 0 |\n");
    shell.line("\\watch 1");
    shell.expect(" (every 1s)\n");
    shell.expect("| 0 |\n");
    // An open between two runs: a later run counts it.
    let _ = std::fs::File::open(&marker);
    shell.expect("| 1 |\n");
    let runs = String::from_utf8_lossy(&shell.seen).matches(" (every 1s)\n").count();
    assert!(runs >= 2, "{runs} runs");
    shell.interrupt();
    shell.line("SELECT 'after' AS s;");
    shell.expect("| after |");
    let (status, stdout, stderr) = shell.quit();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(said(&stderr).is_empty(), "Ctrl-C stops \\watch without an error: {stderr}");
    let after = stdout.split("| after |").nth(1).unwrap();
    assert!(!after.contains("(every 1s)"), "\\watch stopped: {after}");
}

#[test]
fn chart_and_bars_of_counted_opens() {
    let dir = TempDir::new("shell-chart");
    let d = dir.path().display().to_string();
    let mut shell = Typist::spawn(sysql());
    shell.line("\\pset pager off");
    shell.expect("Pager usage is off.\n");
    for (name, times) in [("a", 4), ("b", 2), ("c", 1)] {
        for _ in 0..times {
            let _ = std::fs::File::open(dir.join(name));
        }
    }
    shell.line(&format!(
        "SELECT replace(path, '{d}/', '') AS file, count(*) AS n FROM opens \
         WHERE path LIKE '{d}/%' GROUP BY path ORDER BY n DESC;"
    ));
    shell.expect("3 row(s) fetched.\n");
    shell.line("\\chart");
    // 80 columns: the longest bar is 50 wide, the others in proportion (eighths of a column).
    let expected = format!("a  {} 4\nb  {} 2\nc  {}▌ 1\n", "█".repeat(50), "█".repeat(25), "█".repeat(12));
    shell.expect(&expected);

    // The bar format draws the same bars for every result, with its footer.
    shell.line("\\pset format bar");
    shell.expect("Output format is bar.\n");
    shell.line(&format!(
        "SELECT replace(path, '{d}/', '') AS file, count(*) AS n FROM opens \
         WHERE path LIKE '{d}/%' GROUP BY path ORDER BY n DESC;"
    ));
    shell.expect(&format!("{expected}3 row(s) fetched.\n"));
    // Nothing to label the bars with: a table, and a line on stderr says why.
    shell.line("SELECT 7 AS n;");
    shell.expect("+---+\n| n |\n+---+\n| 7 |\n+---+\n1 row(s) fetched.\n");
    let (status, _, stderr) = shell.quit();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        said(&stderr),
        ["sysql: the bar format needs a text column and a number column, and the result has n Int64; shown as a table"]
    );

    // --format bar, from the command line, fits 80 columns without a terminal.
    let out = sysql()
        .args(["-q", "--format", "bar", "-c", "SELECT * FROM (VALUES ('x', 2), ('y', 1)) AS t(k, n)"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("x  {} 2\ny  {} 1\n", "█".repeat(50), "█".repeat(25)));
}

/// At a terminal of 24 rows, a result taller than the screen goes through
/// `$PAGER`, exactly as it would have been printed, and a shorter one
/// straight to the screen.
#[test]
fn pager_shows_what_is_taller_than_the_screen() {
    let dir = TempDir::new("shell-pager");
    let d = dir.path().display().to_string();
    let paged = dir.join("paged");
    let mut cmd = sysql();
    // A pager that keeps everything it is given.
    cmd.env("PAGER", format!("cat >> '{}'", paged.display()));
    let mut shell = Typist::spawn_terminal(cmd, 80, 24);
    // On by default; once it says so, capture is running.
    shell.line("\\pset pager on");
    shell.expect("Pager usage is on.\n");
    for i in 1..=30 {
        let _ = std::fs::File::open(dir.join(&format!("f{i:02}")));
    }
    let query = format!("SELECT replace(path, '{d}/', '') AS file FROM opens WHERE path LIKE '{d}/f%' ORDER BY file");
    let table = |n: usize| {
        let rows: String = (1..=n).map(|i| format!("| f{i:02}  |\n")).collect();
        format!("+------+\n| file |\n+------+\n{rows}+------+\n")
    };

    // 7 lines fit above the prompt.
    shell.line(&format!("{query} LIMIT 3;"));
    shell.expect(&format!("{}3 row(s) fetched.\n", table(3)));
    assert!(!paged.exists(), "a short result went through the pager");

    // 34 lines do not: the pager has them, the screen only the footer.
    shell.line(&format!("{query};"));
    shell.expect("30 row(s) fetched.\n");
    assert_eq!(std::fs::read_to_string(&paged).unwrap_or_default(), table(30), "what the pager got");
    assert!(!text(&shell.seen).contains("| f30  |"), "the screen shows the paged rows");
    let (status, stdout, _) = shell.quit();
    assert_eq!(status.code(), Some(0), "{stdout}");
}

/// Under a live window query at a terminal, the status line draws the
/// events of each window: bursts of 1, 2 and 4 opens, each in a window of
/// its own, are `▁▃█`.
#[test]
fn live_status_line_draws_events_per_window() {
    let dir = TempDir::new("shell-spark");
    let d = dir.path().display().to_string();
    let mut shell = Typist::spawn_terminal(sysql(), 80, 24);
    shell.line(&format!(
        "SELECT window_start, count(*) AS n FROM live.opens WHERE path LIKE '{d}/%' \
         GROUP BY tumble(ts, INTERVAL '1 second');"
    ));
    // The status line is redrawn every half second from the loop that reads
    // the rows: by its second drawing the query reads them.
    shell.expect("-- live: ");
    shell.expect("-- live: ");
    for (burst, n) in [1, 2, 4].into_iter().enumerate() {
        for i in 0..n {
            let _ = std::fs::File::open(dir.join(&format!("{burst}-{i}")));
        }
        // Its window closed: the next burst is in a later one.
        shell.expect(&format!(" | {n} |\n"));
    }
    shell.expect(", 3 rows out, ");
    shell.expect("per window ▁▃█ (Ctrl-C stops)");
    shell.interrupt();
    shell.expect("3 row(s) fetched.\n");
    let (status, stdout, _) = shell.quit();
    assert_eq!(status.code(), Some(0), "{stdout}");
}

/// A live table's rows line up with the header above them, over 100 rows
/// whose paths grow longer than the first ones.
#[test]
fn live_rows_stay_aligned() {
    use std::io::BufRead;
    let dir = TempDir::new("shell-live");
    let d = dir.path().display().to_string();
    let probe = common::compile_probe(&dir);
    let q = format!("SELECT path, errno FROM live.opens WHERE path LIKE '{d}/%'");
    let mut child = sysql().args(["-c", &q, "--for", "12s"]).stdout(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    // Opens of `ready` until the live query shows one: it is listening.
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !lines.iter().any(|l: &String| l.contains("/ready ")) {
        assert!(std::time::Instant::now() < deadline, "the live query never showed an open: {lines:?}");
        let _ = std::fs::File::open(dir.join("ready"));
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(100)) {
            lines.push(line);
        }
    }
    let status = Command::new(probe).args(["rate", &d, "100", "200"]).status().unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    let rows: Vec<&String> = lines.iter().filter(|l| l.contains("/rate-")).collect();
    assert_eq!(rows.len(), 100, "{lines:#?}");
    // Every row has its bars where the border above it has its corners.
    let mut border: Option<&String> = None;
    for line in &lines {
        if line.starts_with('+') {
            border = Some(line);
        } else if line.starts_with('|') {
            let border = border.expect("a border above every row");
            let corners: Vec<usize> = border.match_indices('+').map(|(i, _)| i).collect();
            let bars: Vec<usize> = line.match_indices('|').map(|(i, _)| i).collect();
            assert_eq!(bars, corners, "{line}\nunder\n{border}");
        }
    }
}

#[test]
fn scripts_stop_at_the_first_error() {
    let script = "SELECT 1 AS one;\nSELECT * FROM nope;\nSELECT 3 AS three;\n";
    let run = |args: &[&str]| {
        let mut child =
            sysql().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    // -f - reads standard input; piped into the shell, the same.
    for args in [&["-f", "-", "--format", "csv"][..], &["--format", "csv"][..]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "one\n1\n", "{args:?}");
        let stderr = text(&out.stderr);
        let said: Vec<&str> = said(&stderr).into_iter().filter(|l| !l.contains("row(s) fetched")).collect();
        assert!(said.len() == 1 && said[0].starts_with("sysql: table 'nope' not found"), "{args:?}: {said:?}");
    }

    // -c and -f in the order given; -q leaves out the footers.
    let dir = TempDir::new("shell-scripts");
    let file = dir.join("two.sql");
    std::fs::write(&file, "SELECT 2 AS b;").unwrap();
    let out = sysql()
        .args(["-q", "-c", "SELECT 1 AS a", "-f", file.to_str().unwrap(), "-c", "SELECT 3 AS c"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let expected =
        "+---+\n| a |\n+---+\n| 1 |\n+---+\n+---+\n| b |\n+---+\n| 2 |\n+---+\n+---+\n| c |\n+---+\n| 3 |\n+---+\n";
    assert_eq!(text(&out.stdout), expected);

    // One-shot runs print no timing.
    let out = sysql().args(["-c", "SELECT 1 AS a"]).output().unwrap();
    assert!(text(&out.stdout).ends_with("| 1 |\n+---+\n1 row(s) fetched.\n\n"), "{}", text(&out.stdout));
}
