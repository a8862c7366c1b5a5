//! The library of saved queries: `.sql` files whose first comment lines name
//! them, say what they answer and when they run.
//!
//! ```sql
//! -- name: top-files-opened
//! -- description: The 20 files opened most in the past hour
//! -- schedule: every 5m
//! -- sink: file:/var/log/sysql/{name}.csv     (optional)
//! -- results: snapshot                        (optional; diff by default)
//! SELECT path, count(*) AS opens FROM opens ...
//! ```
//!
//! The header is the run of `--` lines (and blank lines) before the first
//! line of SQL. A line `-- key: value` whose key is one of the five above sets
//! it; any other comment is prose and is ignored.

use super::sink::SinkSpec;
use crate::cli::parse_duration;
use datafusion::arrow::array::{ArrayRef, StringArray};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// The shortest interval `every` takes: a history query is a full scan.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// When a saved query runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// A history query, run once per interval.
    Every(Duration),
    /// A query over live tables, run continuously.
    Live,
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("live") {
            return Ok(Schedule::Live);
        }
        let Some(interval) = s.strip_prefix("every").filter(|rest| rest.starts_with(char::is_whitespace)) else {
            return Err(format!("invalid schedule '{s}': expected 'every <interval>' (e.g. every 1m) or 'live'"));
        };
        let interval = parse_duration(interval)?;
        if interval < MIN_INTERVAL {
            return Err(format!("invalid schedule '{s}': the interval must be at least 1s"));
        }
        Ok(Schedule::Every(interval))
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Live => f.write_str("live"),
            Schedule::Every(d) => write!(f, "every {}", short_duration(*d)),
        }
    }
}

/// `90s` as `90s`, `300s` as `5m`, `3600s` as `1h`, `1.5s` as `1500ms`.
fn short_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let whole = |unit: u128| ms / unit * unit == ms;
    match ms {
        _ if whole(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if whole(60_000) => format!("{}m", ms / 60_000),
        _ if whole(1000) => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

/// What each run of a history query emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Results {
    /// The rows added and removed since the previous run, each marked.
    #[default]
    Diff,
    /// Every row of every run.
    Snapshot,
}

impl FromStr for Results {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "diff" | "differential" => Ok(Results::Diff),
            "snapshot" => Ok(Results::Snapshot),
            _ => Err(format!("invalid results '{s}': expected diff or snapshot")),
        }
    }
}

impl fmt::Display for Results {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Results::Diff => "diff",
            Results::Snapshot => "snapshot",
        })
    }
}

/// One saved query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedQuery {
    /// Unique in a library; letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// One line: the question the query answers.
    pub description: String,
    pub schedule: Schedule,
    /// Where results go, if the file says; otherwise the command line decides.
    pub sink: Option<SinkSpec>,
    /// Diff or snapshot, if the file says; otherwise the command line decides.
    pub results: Option<Results>,
    /// The file it came from.
    pub path: PathBuf,
    /// The whole file, header included (comments are SQL comments).
    pub sql: String,
}

/// A file that is not a usable saved query, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// Parses a saved query file's text.
pub fn parse(path: &Path, text: &str) -> Result<SavedQuery, String> {
    let mut fields: [Option<&str>; 5] = [None; 5];
    const KEYS: [&str; 5] = ["name", "description", "schedule", "sink", "results"];
    let mut has_sql = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some(comment) = line.strip_prefix("--") else {
            has_sql = true;
            break;
        };
        let Some((key, value)) = comment.split_once(':') else { continue };
        let key = key.trim().to_ascii_lowercase();
        let Some(i) = KEYS.iter().position(|k| *k == key) else { continue };
        if fields[i].is_some() {
            return Err(format!("more than one '-- {key}:' line"));
        }
        fields[i] = Some(value.trim());
    }
    let [name, description, schedule, sink, results] = fields;
    let required = |value: Option<&str>, key: &str| match value {
        Some(v) if !v.is_empty() => Ok(v.to_string()),
        _ => Err(format!("no '-- {key}:' line in the header")),
    };
    let name = required(name, "name")?;
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(format!("invalid name '{name}': use letters, digits, '-', '_' and '.'"));
    }
    let description = required(description, "description")?;
    let schedule = required(schedule, "schedule")?.parse()?;
    let sink = sink.map(str::parse).transpose()?;
    let results = results.map(str::parse).transpose()?;
    if !has_sql {
        return Err("no SQL after the header".to_string());
    }
    Ok(SavedQuery { name, description, schedule, sink, results, path: path.to_path_buf(), sql: text.to_string() })
}

/// The saved queries found under some paths, and the files that are not.
#[derive(Debug, Default)]
pub struct Library {
    pub queries: Vec<SavedQuery>,
    pub errors: Vec<LoadError>,
}

/// The `.sql` files a path names: itself if it is a file, else the `.sql`
/// files directly in the directory, sorted.
pub fn files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        std::fs::metadata(path)?;
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let p = entry?.path();
        if p.extension().is_some_and(|e| e == "sql") && p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads every saved query under `paths`. A name already taken by an earlier
/// file is an error for the later one.
pub fn load(paths: &[PathBuf]) -> Library {
    let mut library = Library::default();
    for path in paths {
        let files = match files(path) {
            Ok(files) => files,
            Err(e) => {
                library.errors.push(LoadError { path: path.clone(), message: format!("cannot read: {e}") });
                continue;
            }
        };
        for file in files {
            let parsed = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read: {e}"))
                .and_then(|text| parse(&file, &text));
            match parsed {
                Ok(q) => match library.queries.iter().find(|other| other.name == q.name) {
                    Some(other) => library.errors.push(LoadError {
                        path: file,
                        message: format!("the name '{}' is taken by {}", q.name, other.path.display()),
                    }),
                    None => library.queries.push(q),
                },
                Err(message) => library.errors.push(LoadError { path: file, message }),
            }
        }
    }
    library
}

/// Where the shell's `\l` looks when given no directory.
pub const DEFAULT_DIR: &str = "sql-examples";

/// Named columns of a small table.
pub type Columns = Vec<(&'static str, ArrayRef)>;

/// The saved queries under `path` as table columns (name, schedule,
/// description, file), for the shell's `\l`; and the files that are not.
pub fn listing(path: &Path) -> Result<(Columns, Vec<LoadError>), String> {
    std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let library = load(&[path.to_path_buf()]);
    let q = &library.queries;
    let column = |values: Vec<String>| Arc::new(StringArray::from(values)) as ArrayRef;
    let columns = vec![
        ("name", column(q.iter().map(|q| q.name.clone()).collect())),
        ("schedule", column(q.iter().map(|q| q.schedule.to_string()).collect())),
        ("description", column(q.iter().map(|q| q.description.clone()).collect())),
        ("file", column(q.iter().map(|q| q.path.display().to_string()).collect())),
    ];
    Ok((columns, library.errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<SavedQuery, String> {
        parse(Path::new("q.sql"), text)
    }

    #[test]
    fn parses_a_header() {
        let q = p("-- name: top-files\n-- A comment: prose, ignored.\n-- description: The top files \n\
                   -- schedule: every 5m\n\n-- results: snapshot\nSELECT 1;\n-- sink: stdout\n")
        .unwrap();
        assert_eq!(q.name, "top-files");
        assert_eq!(q.description, "The top files");
        assert_eq!(q.schedule, Schedule::Every(Duration::from_secs(300)));
        assert_eq!(q.results, Some(Results::Snapshot));
        // The header ends at the first line of SQL.
        assert_eq!(q.sink, None);
        let live = p("-- name: l\n-- description: d\n-- schedule: LIVE\n-- sink: file:/tmp/x.csv\nSELECT 1").unwrap();
        assert_eq!(live.schedule, Schedule::Live);
        assert!(live.sink.is_some());
    }

    #[test]
    fn says_what_is_wrong() {
        let cases = [
            ("-- description: d\n-- schedule: live\nSELECT 1", "no '-- name:' line in the header"),
            ("-- name: a b\n-- description: d\n-- schedule: live\nSELECT 1", "invalid name 'a b'"),
            ("-- name: a\n-- description:\n-- schedule: live\nSELECT 1", "no '-- description:' line"),
            ("-- name: a\n-- description: d\nSELECT 1", "no '-- schedule:' line"),
            ("-- name: a\n-- description: d\n-- schedule: hourly\nSELECT 1", "invalid schedule 'hourly'"),
            ("-- name: a\n-- description: d\n-- schedule: every 10ms\nSELECT 1", "at least 1s"),
            ("-- name: a\n-- description: d\n-- schedule: every soon\nSELECT 1", "invalid duration"),
            ("-- name: a\n-- name: b\n-- description: d\n-- schedule: live\nSELECT 1", "more than one '-- name:'"),
            ("-- name: a\n-- description: d\n-- schedule: live\n-- results: some\nSELECT 1", "invalid results"),
            ("-- name: a\n-- description: d\n-- schedule: live\n-- sink: syslog\nSELECT 1", "invalid sink 'syslog'"),
            ("-- name: a\n-- description: d\n-- schedule: live\n", "no SQL after the header"),
        ];
        for (text, needle) in cases {
            let err = p(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn schedules_round_trip() {
        for s in ["live", "every 1m", "every 90s", "every 1h", "every 1500ms"] {
            assert_eq!(s.parse::<Schedule>().unwrap().to_string(), s);
        }
        assert_eq!("every 60s".parse::<Schedule>().unwrap().to_string(), "every 1m");
        assert!("every".parse::<Schedule>().is_err());
        assert!("every1m".parse::<Schedule>().is_err());
    }

    #[test]
    fn lists_the_library_for_the_shell() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql-examples");
        let (columns, errors) = listing(&dir).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["name", "schedule", "description", "file"]);
        assert_eq!(columns[0].1.len(), files(&dir).unwrap().len());
        let missing = listing(Path::new("/nonexistent")).unwrap_err();
        assert!(missing.starts_with("cannot read /nonexistent: "), "{missing}");
    }

    #[test]
    fn loads_directories_and_reports_bad_files_alone() {
        let dir = std::env::temp_dir().join(format!("sysql-library-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let good = "-- name: a\n-- description: d\n-- schedule: every 1m\nSELECT 1;\n";
        std::fs::write(dir.join("1.sql"), good).unwrap();
        std::fs::write(dir.join("2.sql"), good).unwrap();
        std::fs::write(dir.join("3.sql"), "SELECT 1;\n").unwrap();
        std::fs::write(dir.join("notes.txt"), "not a query").unwrap();
        let library = load(&[dir.clone(), dir.join("missing.sql")]);
        assert_eq!(library.queries.len(), 1);
        assert_eq!(library.queries[0].path, dir.join("1.sql"));
        let errors: Vec<String> = library.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        let taken = format!("2.sql: the name 'a' is taken by {}", dir.join("1.sql").display());
        assert!(errors[0].ends_with(&taken), "{}", errors[0]);
        assert!(errors[1].ends_with("3.sql: no '-- name:' line in the header"));
        assert!(errors[2].contains("missing.sql: cannot read: No such file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
