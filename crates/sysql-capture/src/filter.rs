//! The capture filter: which events the kernel programs skip before
//! anything is copied (by comm, pid, uid, cgroup, path prefix and syscall),
//! from `--capture-only` / `--capture-exclude`. It lives in BPF maps and is
//! changed in place ([`crate::Capture::set_filter`]), never by reloading.
//!
//! Terms of one dimension in `only` are alternatives (any may match);
//! dimensions are combined with AND; any `exclude` term that matches skips
//! the event. What the kernel skipped is counted per table.

use crate::syscalls::SYSCALLS;
use std::fmt;
use std::path::{Path, PathBuf};
use sysql_events::{filter, Table, COMM_LEN, PATH_LEN, TABLE_COUNT};

/// One condition on an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// The thread's name, as in the `comm` column (at most 15 bytes).
    Comm(String),
    /// The process id (`pid`, the thread group).
    Pid(u32),
    Uid(u32),
    /// A cgroup v2 directory, by its id (its inode number, as in
    /// `containers.cgroup_id`) or its path.
    Cgroup(CgroupRef),
    /// A prefix of the path an open was given (as the program passed it,
    /// not resolved): opens only.
    Path(String),
    /// A syscall by name (`openat`, `connect`, ...).
    Syscall(String),
}

/// A cgroup as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupRef {
    Id(u64),
    Path(String),
}

impl Term {
    /// Parses `comm=NAME`, `pid=N`, `uid=N`, `cgroup=ID|PATH`,
    /// `path=PREFIX` or `syscall=NAME`.
    pub fn parse(text: &str) -> Result<Term, String> {
        let (key, value) = text.split_once('=').ok_or_else(|| {
            format!("capture filter {text:?}: expected KEY=VALUE with KEY one of comm, pid, uid, cgroup, path, syscall")
        })?;
        let number =
            |what: &str| value.parse::<u32>().map_err(|_| format!("capture filter {text:?}: {what} is a number"));
        if value.is_empty() {
            return Err(format!("capture filter {text:?}: the value is empty"));
        }
        match key {
            "comm" if value.len() >= COMM_LEN => Err(format!(
                "capture filter {text:?}: a comm is at most {} bytes (the kernel keeps no more)",
                COMM_LEN - 1
            )),
            "comm" => Ok(Term::Comm(value.to_string())),
            "pid" => number("a pid").map(Term::Pid),
            "uid" => number("a uid").map(Term::Uid),
            "cgroup" => Ok(Term::Cgroup(match value.parse::<u64>() {
                Ok(id) => CgroupRef::Id(id),
                Err(_) => CgroupRef::Path(value.to_string()),
            })),
            "path" if value.len() >= PATH_LEN => {
                Err(format!("capture filter {text:?}: a path prefix is at most {} bytes", PATH_LEN - 1))
            }
            "path" => Ok(Term::Path(value.to_string())),
            "syscall" if SYSCALLS.iter().any(|s| s.name == value) => Ok(Term::Syscall(value.to_string())),
            "syscall" => Err(format!(
                "capture filter {text:?}: sysql traces no syscall {value:?}; it traces {}",
                SYSCALLS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
            )),
            other => Err(format!(
                "capture filter {text:?}: unknown key {other:?}; use comm, pid, uid, cgroup, path or syscall"
            )),
        }
    }

    /// The dimension's bit (`sysql_events::filter`), 0 for syscalls (they
    /// are filtered by the syscall table).
    fn dimension(&self) -> u32 {
        match self {
            Term::Comm(_) => filter::COMM,
            Term::Pid(_) => filter::PID,
            Term::Uid(_) => filter::UID,
            Term::Cgroup(_) => filter::CGROUP,
            Term::Path(_) => filter::PATH,
            Term::Syscall(_) => 0,
        }
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Term::Comm(v) => write!(f, "comm={v}"),
            Term::Pid(v) => write!(f, "pid={v}"),
            Term::Uid(v) => write!(f, "uid={v}"),
            Term::Cgroup(CgroupRef::Id(v)) => write!(f, "cgroup={v}"),
            Term::Cgroup(CgroupRef::Path(v)) => write!(f, "cgroup={v}"),
            Term::Path(v) => write!(f, "path={v}"),
            Term::Syscall(v) => write!(f, "syscall={v}"),
        }
    }
}

/// The whole filter: an allow list and a deny list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureFilter {
    pub only: Vec<Term>,
    pub exclude: Vec<Term>,
}

impl CaptureFilter {
    /// From the options' texts.
    pub fn parse(only: &[String], exclude: &[String]) -> Result<CaptureFilter, String> {
        let parse = |texts: &[String]| texts.iter().map(|t| Term::parse(t)).collect::<Result<Vec<_>, _>>();
        let f = CaptureFilter { only: parse(only)?, exclude: parse(exclude)? };
        for dim in [filter::COMM, filter::PID, filter::UID, filter::CGROUP, filter::PATH] {
            let n = f.only.iter().chain(&f.exclude).filter(|t| t.dimension() == dim).count();
            if n > filter::VALUES as usize {
                return Err(format!("capture filter: more than {} values of one kind", filter::VALUES));
            }
        }
        Ok(f)
    }

    pub fn is_empty(&self) -> bool {
        self.only.is_empty() && self.exclude.is_empty()
    }

    /// This filter, further restricted to `terms` (`KEY=VALUE`; terms of
    /// one key are its alternatives) on each key it does not restrict
    /// itself: what running live queries read when history is off. A key
    /// is taken whole or not at all: with a value that does not parse, more
    /// values than a map holds, or syscalls when `syscalls` is false (the
    /// per-syscall tracepoints have no syscall table), it is left out, which
    /// captures more, never less.
    pub fn narrowed(&self, terms: &[String], syscalls: bool) -> CaptureFilter {
        let mut out = self.clone();
        let mut keys: Vec<&str> = Vec::new();
        for key in terms.iter().filter_map(|t| t.split_once('=').map(|(k, _)| k)) {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        for key in keys {
            let of_key = terms.iter().filter(|t| t.split_once('=').is_some_and(|(k, _)| k == key));
            let Ok(parsed) = of_key.map(|t| Term::parse(t)).collect::<Result<Vec<Term>, String>>() else { continue };
            let Some(first) = parsed.first() else { continue };
            let restricted = self.only.iter().any(|t| std::mem::discriminant(t) == std::mem::discriminant(first));
            let fits = parsed.len() + self.exclude.len() <= filter::VALUES as usize;
            let allowed = syscalls || !matches!(first, Term::Syscall(_));
            if !restricted && fits && allowed {
                out.only.extend(parsed);
            }
        }
        out
    }

    /// One line, as the capture line shows it: `only comm=nginx,
    /// comm=curl; exclude path=/proc/`.
    pub fn describe(&self) -> String {
        describe(&self.only, &self.exclude)
    }

    /// The terms that can skip events of each table, one line per table
    /// (as EXPLAIN, `sysql_stats` and the warnings show them); `None` for a
    /// table whose capture is whole.
    pub fn describe_tables(&self) -> [Option<String>; TABLE_COUNT] {
        let tables = self.tables();
        // an allow list of syscalls skips every table it does not name
        let only_skips = |table: Table| {
            let only_any = self.only.iter().any(|t| matches!(t, Term::Syscall(_)));
            only_any && !self.only.iter().any(|t| matches!(t, Term::Syscall(s) if syscall_tables(s).contains(&table)))
        };
        let applies = |t: &Term, table: Table, only: bool| match t {
            Term::Path(_) => table == Table::Opens,
            Term::Syscall(_) if only => only_skips(table),
            Term::Syscall(s) => syscall_tables(s).contains(&table),
            _ => true,
        };
        Table::ALL.map(|table| {
            let only: Vec<Term> = self.only.iter().filter(|t| applies(t, table, true)).cloned().collect();
            let exclude: Vec<Term> = self.exclude.iter().filter(|t| applies(t, table, false)).cloned().collect();
            tables[table as usize].then(|| describe(&only, &exclude))
        })
    }

    /// The tables whose capture this filter can skip events of: a path
    /// filters opens only, a syscall its own table, the others every table.
    pub fn tables(&self) -> [bool; TABLE_COUNT] {
        let mut out = [false; TABLE_COUNT];
        // An allow list of syscalls also skips every table it does not name.
        let only_syscalls: Vec<&str> = self
            .only
            .iter()
            .filter_map(|t| match t {
                Term::Syscall(s) => Some(s.as_str()),
                _ => None,
            })
            .collect();
        for (t, only) in self.only.iter().map(|t| (t, true)).chain(self.exclude.iter().map(|t| (t, false))) {
            match t {
                Term::Path(_) => out[Table::Opens as usize] = true,
                // (an allowed syscall skips nothing of its own table)
                Term::Syscall(_) if only => {}
                Term::Syscall(name) => {
                    for table in syscall_tables(name) {
                        out[table as usize] = true;
                    }
                }
                _ => out = [true; TABLE_COUNT],
            }
        }
        if !only_syscalls.is_empty() {
            for sc in SYSCALLS {
                if !only_syscalls.contains(&sc.name) {
                    for table in syscall_tables(sc.name) {
                        out[table as usize] = true;
                    }
                }
            }
        }
        out
    }

    /// Whether a traced syscall stays in the syscall table.
    pub(crate) fn keeps_syscall(&self, name: &str) -> bool {
        let named = |terms: &[Term]| terms.iter().any(|t| matches!(t, Term::Syscall(s) if s == name));
        let only_any = self.only.iter().any(|t| matches!(t, Term::Syscall(_)));
        (!only_any || named(&self.only)) && !named(&self.exclude)
    }

    pub(crate) fn has_syscalls(&self) -> bool {
        self.only.iter().chain(&self.exclude).any(|t| matches!(t, Term::Syscall(_)))
    }

    /// The masks of `struct sysql_filter`: dimensions with an allow list,
    /// dimensions with a deny list.
    pub(crate) fn masks(&self) -> [u32; 2] {
        let mask = |terms: &[Term]| terms.iter().fold(0, |m, t| m | t.dimension());
        [mask(&self.only), mask(&self.exclude)]
    }

    /// Every value with its marks.
    pub(crate) fn marked(&self) -> Vec<(&Term, u32)> {
        let mut out: Vec<(&Term, u32)> = Vec::new();
        for (terms, mark) in [(&self.only, filter::MARK_ONLY), (&self.exclude, filter::MARK_EXCLUDE)] {
            for t in terms.iter().filter(|t| t.dimension() != 0) {
                match out.iter_mut().find(|(u, _)| *u == t) {
                    Some((_, m)) => *m |= mark,
                    None => out.push((t, mark)),
                }
            }
        }
        out
    }
}

fn describe(only: &[Term], exclude: &[Term]) -> String {
    let list = |terms: &[Term]| terms.iter().map(Term::to_string).collect::<Vec<_>>().join(", ");
    match (only.is_empty(), exclude.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!("only {}", list(only)),
        (true, false) => format!("exclude {}", list(exclude)),
        (false, false) => format!("only {}; exclude {}", list(only), list(exclude)),
    }
}

/// The tables a syscall's events go to.
fn syscall_tables(name: &str) -> Vec<Table> {
    Table::ALL.into_iter().filter(|t| t.syscalls().contains(&name)).collect()
}

/// The id of a cgroup v2 directory given by path: absolute in the cgroup2
/// hierarchy (`/system.slice/x.service`) or in the file system.
pub(crate) fn cgroup_id(path: &str) -> Result<u64, String> {
    use std::os::unix::fs::MetadataExt;
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(root) = cgroup2_root() {
        candidates.push(root.join(path.trim_start_matches('/')));
    }
    candidates.push(PathBuf::from(path));
    for c in &candidates {
        if let Ok(m) = std::fs::metadata(c) {
            if m.is_dir() {
                return Ok(m.ino());
            }
        }
    }
    Err(format!("capture filter cgroup={path}: no such cgroup v2 directory (looked at {})", show(&candidates)))
}

fn show(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and ")
}

fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, dir, kind) = (f.next(), f.next(), f.next());
        if kind == Some("cgroup2") {
            dir.map(|d| Path::new(d).to_path_buf())
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {

    use super::*;

    fn f(only: &[&str], exclude: &[&str]) -> Result<CaptureFilter, String> {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        CaptureFilter::parse(&s(only), &s(exclude))
    }

    #[test]
    fn terms_parse_and_print_back() {
        for text in ["comm=nginx", "pid=42", "uid=0", "cgroup=7", "cgroup=/docker/x", "path=/etc/", "syscall=openat"] {
            assert_eq!(Term::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn bad_terms_say_why_in_one_line() {
        for (text, says) in [
            ("nginx", "expected KEY=VALUE"),
            ("comm=", "empty"),
            ("comm=a-name-of-16-chars", "at most 15 bytes"),
            ("pid=abc", "a pid is a number"),
            ("syscall=getpid", "traces no syscall"),
            ("port=80", "unknown key"),
        ] {
            let e = Term::parse(text).unwrap_err();
            assert!(e.contains(says) && !e.contains('\n'), "{text}: {e}");
        }
    }

    #[test]
    fn describe_masks_and_marks() {
        let filter = f(&["comm=curl", "comm=nginx", "path=/etc/"], &["comm=nginx", "uid=0"]).unwrap();
        assert_eq!(filter.describe(), "only comm=curl, comm=nginx, path=/etc/; exclude comm=nginx, uid=0");
        assert_eq!(filter.masks(), [filter::COMM | filter::PATH, filter::COMM | filter::UID]);
        let nginx = filter.marked().into_iter().find(|(t, _)| **t == Term::Comm("nginx".into())).unwrap();
        assert_eq!(nginx.1, filter::MARK_ONLY | filter::MARK_EXCLUDE);
    }

    #[test]
    fn tables_a_filter_touches() {
        let path = f(&[], &["path=/proc/"]).unwrap().tables();
        assert_eq!(path.iter().filter(|t| **t).count(), 1);
        assert!(path[Table::Opens as usize]);
        let only_connect = f(&["syscall=connect"], &[]).unwrap();
        let t = only_connect.tables();
        assert!(!t[Table::Connects as usize] && t[Table::Opens as usize] && t[Table::Execs as usize]);
        assert!(!t[Table::Exits as usize], "exits come from no syscall");
        assert!(only_connect.keeps_syscall("connect") && !only_connect.keeps_syscall("openat"));
        assert!(f(&["uid=0"], &[]).unwrap().tables().iter().all(|t| *t));
    }

    #[test]
    fn each_table_names_only_its_own_terms() {
        let d = f(&["comm=cat"], &["path=/proc/", "syscall=connect"]).unwrap().describe_tables();
        assert_eq!(d[Table::Opens as usize].as_deref(), Some("only comm=cat; exclude path=/proc/"));
        assert_eq!(d[Table::Connects as usize].as_deref(), Some("only comm=cat; exclude syscall=connect"));
        assert_eq!(d[Table::Execs as usize].as_deref(), Some("only comm=cat"));
        let none = f(&[], &["path=/proc/"]).unwrap().describe_tables();
        assert_eq!(none[Table::Execs as usize], None);
    }

    #[test]
    fn narrowing_adds_keys_the_filter_leaves_free_whole_or_not_at_all() {
        let terms = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let base = CaptureFilter::parse(&["comm=nginx".into()], &["path=/proc/".into()]).unwrap();
        let n = base.narrowed(&terms(&["comm=cat", "pid=7", "pid=8", "syscall=openat"]), true);
        assert_eq!(n.describe(), "only comm=nginx, pid=7, pid=8, syscall=openat; exclude path=/proc/");
        // no syscall table; a comm the kernel cannot hold takes its key out
        let n = base.narrowed(&terms(&["syscall=openat", "uid=0", "path=/a", "path=/b"]), false);
        assert_eq!(n.describe(), "only comm=nginx, uid=0, path=/a, path=/b; exclude path=/proc/");
        let free = CaptureFilter::default();
        assert_eq!(free.narrowed(&terms(&["comm=a", "comm=0123456789abcdefg"]), true), free);
        assert_eq!(free.narrowed(&[], true), free);
    }

    #[test]
    fn every_traced_syscall_feeds_a_table() {
        for sc in SYSCALLS {
            assert!(!syscall_tables(sc.name).is_empty(), "{} feeds no table", sc.name);
        }
    }
}
