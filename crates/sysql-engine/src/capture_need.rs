//! What running live queries need captured, when nothing else needs events.
//!
//! With history off (`--history 0`) the only readers of events are the live
//! queries that run, so the kernel need copy nothing else. Each live scan
//! reads what its WHERE clause allows ([`Need::from_filters`]: `comm = 'x'`,
//! `pid IN (...)`, `path LIKE '/etc/%'`, ...) and holds a registration while
//! it runs ([`CaptureNeeds::register`]). What all running scans need
//! together ([`narrowing`]) is handed to the capture as `--capture-only`
//! terms, which the kernel then applies; a scan that needs more widens the
//! filter before it subscribes, so it misses nothing from its start.
//!
//! A scan also needs only the syscalls that feed its table (an open's
//! `openat`, not a socket's `read`), unless its WHERE names some of them.
//!
//! The narrowing is conservative: a condition it cannot read (a function, a
//! range, an `OR` across columns) constrains nothing, and a column is
//! narrowed only when every running scan constrains it.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Like, Operator};
use futures::future::BoxFuture;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock};
use sysql_events::Table;

/// A column the kernel can filter on, by the name of its capture-filter key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Comm,
    Pid,
    Uid,
    Cgroup,
    Path,
    Syscall,
}

impl Key {
    /// The key as `--capture-only` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Key::Comm => "comm",
            Key::Pid => "pid",
            Key::Uid => "uid",
            Key::Cgroup => "cgroup",
            Key::Path => "path",
            Key::Syscall => "syscall",
        }
    }

    /// The key a column of `table` stands for, where the kernel sees the
    /// same value the column holds: an exec's `comm` is the new program's
    /// (the kernel filters on the caller's), a path exists only for opens,
    /// the payload tables are left whole.
    fn of_column(table: Table, column: &str) -> Option<Key> {
        let syscall_table = matches!(table, Table::Opens | Table::Connects | Table::Accepts | Table::Execs);
        if !syscall_table && table != Table::Exits {
            return None;
        }
        match column {
            "comm" if table != Table::Execs => Some(Key::Comm),
            "pid" => Some(Key::Pid),
            "uid" => Some(Key::Uid),
            "cgroup_id" => Some(Key::Cgroup),
            "path" if table == Table::Opens => Some(Key::Path),
            "syscall" if syscall_table => Some(Key::Syscall),
            _ => None,
        }
    }
}

/// Per key, the values one of which an event must have (prefixes, for
/// paths); keys not named are not constrained. Empty: everything.
pub type Terms = BTreeMap<Key, BTreeSet<String>>;

/// What one live scan needs captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub table: Table,
    pub terms: Terms,
}

impl Need {
    /// Every event of `table`: the syscalls that feed it, with no condition.
    pub fn whole(table: Table) -> Need {
        Need::from_filters(table, &[])
    }

    /// What a scan of `table` with these conjuncts of its WHERE clause
    /// needs: the syscalls that feed the table (or those the WHERE names),
    /// and each conjunct the kernel can apply constrains its key.
    pub fn from_filters(table: Table, filters: &[Expr]) -> Need {
        let own = table.syscalls().iter().map(|s| s.to_string()).collect();
        let mut terms = Terms::from([(Key::Syscall, own)]);
        for conjunct in filters.iter().flat_map(split_and) {
            if let Some((key, values)) = alternatives(table, conjunct) {
                // two conditions on one key: both hold, so what both allow
                let both = match terms.remove(&key) {
                    Some(have) => have.intersection(&values).cloned().collect(),
                    None => values,
                };
                terms.insert(key, both);
            }
        }
        Need { table, terms }
    }

    /// One line, as EXPLAIN shows it: `comm=cat, pid=1 or pid=2`.
    pub fn describe(&self) -> String {
        describe(&self.terms)
    }
}

/// `terms` as one line: `comm=cat, syscall in (open, openat)` (empty when
/// there are none).
pub fn describe(terms: &Terms) -> String {
    let one = |(k, values): (&Key, &BTreeSet<String>)| match values.len() {
        1 => format!("{}={}", k.name(), values.first().expect("one value")),
        _ => format!("{} in ({})", k.name(), values.iter().cloned().collect::<Vec<_>>().join(", ")),
    };
    terms.iter().map(one).collect::<Vec<_>>().join(", ")
}

/// What a set of scans needs together: a key stays only if every scan
/// constrains it (its values, united); no scans need nothing, which is
/// returned as `None` (the capture keeps its own filter).
pub fn narrowing<'a>(needs: impl IntoIterator<Item = &'a Need>) -> Option<Terms> {
    let mut out: Option<Terms> = None;
    for need in needs {
        out = Some(match out {
            None => need.terms.clone(),
            Some(mut acc) => {
                acc.retain(|k, _| need.terms.contains_key(k));
                for (k, values) in acc.iter_mut() {
                    values.extend(need.terms[k].iter().cloned());
                }
                acc
            }
        });
    }
    out
}

fn split_and(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => {
            let mut out = split_and(left);
            out.extend(split_and(right));
            out
        }
        other => vec![other],
    }
}

/// The column a (possibly cast) expression names.
fn column(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        Expr::Cast(c) => column(&c.expr),
        Expr::TryCast(c) => column(&c.expr),
        _ => None,
    }
}

/// A literal as the capture filter writes it: a non-negative integer or a
/// string.
fn literal(e: &Expr) -> Option<String> {
    match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => {
                Some(s.clone())
            }
            ScalarValue::Int8(Some(_))
            | ScalarValue::Int16(Some(_))
            | ScalarValue::Int32(Some(_))
            | ScalarValue::Int64(Some(_))
            | ScalarValue::UInt8(Some(_))
            | ScalarValue::UInt16(Some(_))
            | ScalarValue::UInt32(Some(_))
            | ScalarValue::UInt64(Some(_)) => {
                let text = v.to_string();
                text.parse::<u64>().is_ok().then_some(text)
            }
            _ => None,
        },
        Expr::Cast(c) => literal(&c.expr),
        Expr::TryCast(c) => literal(&c.expr),
        _ => None,
    }
}

/// The key one conjunct constrains and the values it allows.
fn alternatives(table: Table, e: &Expr) -> Option<(Key, BTreeSet<String>)> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => {
            let (col, value) = match (column(left), column(right)) {
                (Some(c), None) => (c, literal(right)?),
                (None, Some(c)) => (c, literal(left)?),
                _ => return None,
            };
            Some((Key::of_column(table, col)?, BTreeSet::from([value])))
        }
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => {
            let (k1, mut v1) = alternatives(table, left)?;
            let (k2, v2) = alternatives(table, right)?;
            (k1 == k2).then(|| {
                v1.extend(v2);
                (k1, v1)
            })
        }
        Expr::InList(list) if !list.negated => {
            let key = Key::of_column(table, column(&list.expr)?)?;
            let values = list.list.iter().map(literal).collect::<Option<BTreeSet<_>>>()?;
            Some((key, values))
        }
        // the literal start of a LIKE pattern is a prefix every match has
        Expr::Like(Like { negated: false, expr, pattern, escape_char: None, case_insensitive: false }) => {
            let key = Key::of_column(table, column(expr)?)?;
            let pattern = literal(pattern)?;
            let prefix: String = pattern.chars().take_while(|c| !matches!(c, '%' | '_' | '\\')).collect();
            (key == Key::Path && !prefix.is_empty()).then(|| (key, BTreeSet::from([prefix])))
        }
        Expr::ScalarFunction(f) if f.func.name() == "starts_with" && f.args.len() == 2 => {
            let key = Key::of_column(table, column(&f.args[0])?)?;
            let prefix = literal(&f.args[1])?;
            (key == Key::Path && !prefix.is_empty()).then(|| (key, BTreeSet::from([prefix])))
        }
        _ => None,
    }
}

/// Applies a narrowing to the kernel's filter: `None` lifts it. The future
/// completes once the kernel applies it.
pub type NarrowFn = Box<dyn Fn(Option<Terms>) -> BoxFuture<'static, ()> + Send + Sync>;

/// The registrations of running live scans.
#[derive(Default)]
pub struct CaptureNeeds {
    narrow: OnceLock<NarrowFn>,
    running: Mutex<Running>,
}

#[derive(Default)]
struct Running {
    next: u64,
    needs: BTreeMap<u64, Need>,
}

impl std::fmt::Debug for CaptureNeeds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureNeeds").field("active", &self.active()).finish()
    }
}

impl CaptureNeeds {
    /// Makes the kernel's filter follow the running scans (set once, by a
    /// front end whose engine keeps no history).
    pub fn activate(&self, narrow: NarrowFn) {
        let _ = self.narrow.set(narrow);
    }

    /// Whether running scans narrow the capture.
    pub fn active(&self) -> bool {
        self.narrow.get().is_some()
    }

    /// Registers a scan's need; the filter covers it once the returned
    /// future completes, and until the guard is dropped.
    pub fn register(self: &Arc<Self>, need: Need) -> (NeedGuard, BoxFuture<'static, ()>) {
        let Some(narrow) = self.narrow.get() else {
            return (NeedGuard { needs: None, id: 0 }, Box::pin(async {}));
        };
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let id = running.next;
        running.next += 1;
        running.needs.insert(id, need);
        // applied in the order the registrations change (under the lock)
        let applied = narrow(narrowing(running.needs.values()));
        (NeedGuard { needs: Some(self.clone()), id }, applied)
    }

    fn release(&self, id: u64) {
        let Some(narrow) = self.narrow.get() else { return };
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.needs.remove(&id).is_some() {
            // nobody waits for a narrowing to apply
            drop(narrow(narrowing(running.needs.values())));
        }
    }
}

/// A running scan's registration: dropped with the scan.
pub struct NeedGuard {
    needs: Option<Arc<CaptureNeeds>>,
    id: u64,
}

impl Drop for NeedGuard {
    fn drop(&mut self) {
        if let Some(needs) = self.needs.take() {
            needs.release(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, in_list, lit};

    /// The need's terms but the table's own syscalls (shown apart, below).
    fn need(table: Table, filters: Vec<Expr>) -> String {
        let mut terms = Need::from_filters(table, &filters).terms;
        let own: BTreeSet<String> = table.syscalls().iter().map(|s| s.to_string()).collect();
        if terms.get(&Key::Syscall) == Some(&own) {
            terms.remove(&Key::Syscall);
        }
        describe(&terms)
    }

    #[test]
    fn a_scan_needs_only_the_syscalls_of_its_table_or_those_it_names() {
        let syscalls = |table, filters: Vec<Expr>| describe(&Need::from_filters(table, &filters).terms);
        assert_eq!(syscalls(Table::Opens, vec![]), "syscall in (creat, open, openat, openat2)");
        assert_eq!(syscalls(Table::Connects, vec![]), "syscall=connect");
        assert_eq!(syscalls(Table::Opens, vec![col("syscall").eq(lit("openat"))]), "syscall=openat");
        // a syscall that does not feed the table: nothing can match
        assert_eq!(syscalls(Table::Opens, vec![col("syscall").eq(lit("connect"))]), "syscall in ()");
        assert_eq!(
            syscalls(Table::HttpRequests, vec![col("pid").eq(lit(1))]),
            "syscall in (read, readv, recvfrom, recvmsg, sendmsg, sendto, write, writev)"
        );
    }

    #[test]
    fn reads_the_conditions_the_kernel_can_apply() {
        assert_eq!(need(Table::Opens, vec![col("comm").eq(lit("cat"))]), "comm=cat");
        assert_eq!(need(Table::Opens, vec![lit(7u32).eq(col("pid"))]), "pid=7");
        assert_eq!(need(Table::Opens, vec![in_list(col("uid"), vec![lit(0), lit(1000)], false)]), "uid in (0, 1000)");
        assert_eq!(need(Table::Opens, vec![col("comm").eq(lit("a")).or(col("comm").eq(lit("b")))]), "comm in (a, b)");
        // two conditions on one key: what both allow
        let both = vec![in_list(col("pid"), vec![lit(1), lit(2)], false), col("pid").eq(lit(2))];
        assert_eq!(need(Table::Opens, both), "pid=2");
        assert_eq!(need(Table::Opens, vec![col("path").like(lit("/etc/%shadow"))]), "path=/etc/");
        assert_eq!(
            need(Table::Opens, vec![col("comm").eq(lit("cat")).and(col("cgroup_id").eq(lit(42u64)))]),
            "comm=cat, cgroup=42"
        );
    }

    #[test]
    fn leaves_alone_what_it_cannot_read_or_the_kernel_sees_otherwise() {
        // an OR across columns, a range, a negation, a pattern with no literal start
        assert_eq!(need(Table::Opens, vec![col("comm").eq(lit("a")).or(col("pid").eq(lit(1)))]), "");
        assert_eq!(need(Table::Opens, vec![col("pid").gt(lit(1))]), "");
        assert_eq!(need(Table::Opens, vec![in_list(col("pid"), vec![lit(1)], true)]), "");
        assert_eq!(need(Table::Opens, vec![col("path").like(lit("%shadow"))]), "");
        assert_eq!(need(Table::Opens, vec![col("pid").eq(lit(-1))]), "");
        // an exec's comm is the new program's; connects have no path; payload tables stay whole
        assert_eq!(need(Table::Execs, vec![col("comm").eq(lit("ls"))]), "");
        assert_eq!(need(Table::Connects, vec![col("path").eq(lit("/x"))]), "");
        assert_eq!(need(Table::HttpRequests, vec![col("pid").eq(lit(1))]), "");
    }

    #[test]
    fn scans_together_keep_only_what_each_constrains() {
        let a = Need::from_filters(Table::Opens, &[col("comm").eq(lit("a")), col("path").like(lit("/etc/%"))]);
        let b = Need::from_filters(Table::Connects, &[col("comm").eq(lit("b"))]);
        let opens = "syscall in (creat, open, openat, openat2)";
        assert_eq!(describe(&narrowing([&a]).unwrap()), format!("comm=a, path=/etc/, {opens}"));
        assert_eq!(
            describe(&narrowing([&a, &b]).unwrap()),
            "comm in (a, b), syscall in (connect, creat, open, openat, openat2)"
        );
        // a window reads its whole table; exits come from no syscall
        assert_eq!(
            describe(&narrowing([&a, &b, &Need::whole(Table::Exits)]).unwrap()),
            "syscall in (connect, creat, open, openat, openat2)"
        );
        assert_eq!(narrowing([]), None);
    }

    #[test]
    fn registrations_narrow_and_widen_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let needs = Arc::new(CaptureNeeds::default());
        let log = seen.clone();
        needs.activate(Box::new(move |terms| {
            log.lock().unwrap().push(terms.map(|t| describe(&t)));
            Box::pin(async {})
        }));
        let (a, _) = needs.register(Need::from_filters(Table::Opens, &[col("comm").eq(lit("a"))]));
        let (b, _) = needs.register(Need::from_filters(Table::Opens, &[col("comm").eq(lit("b"))]));
        drop(a);
        drop(b);
        let seen = seen.lock().unwrap().clone();
        let opens = "syscall in (creat, open, openat, openat2)";
        assert_eq!(
            seen,
            vec![
                Some(format!("comm=a, {opens}")),
                Some(format!("comm in (a, b), {opens}")),
                Some(format!("comm=b, {opens}")),
                None
            ]
        );
    }
}
