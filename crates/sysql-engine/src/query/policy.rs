//! What a statement may do, checked on the one statement path so that no
//! front end can forget it. sysql runs as root on a host being traced: its
//! tables are read-only, statements that read or write files need
//! `--allow-file-access`, settings are an allow-list, and text is bounded in
//! size and in expression depth (planning walks expressions recursively).
//!
//! Checks run twice, on the syntax tree (what DataFusion would not even plan,
//! such as INSTALL or ATTACH, and file access, also under EXPLAIN) and on the
//! logical plan (DDL, DML and statements, with DataFusion's `SQLOptions`,
//! which also looks inside EXPLAIN and subqueries).

use super::error::{ErrorKind, QueryError};
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::{DdlStatement, LogicalPlan, Statement as PlanStatement};
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{visit_expressions, Expr, Statement as Sql};
use std::ops::ControlFlow;

/// The most SQL text run at once.
pub const MAX_SQL_BYTES: usize = 1 << 20;

/// The deepest expression tree sysql plans (an `a AND b AND ...` chain of
/// N terms is N deep). Planning time grows faster than linearly with depth.
pub const MAX_EXPR_DEPTH: usize = 1000;

/// Settings a session may change, with the values each accepts. Everything
/// else is refused: `datafusion.runtime.*` would lift the memory cap or
/// choose where temporary files go, and others change how much work one
/// statement may ask of the host.
const SETTINGS: &[(&str, Allowed)] = &[
    ("datafusion.execution.time_zone", Allowed::Any),
    ("datafusion.execution.batch_size", Allowed::Range(1, 65536)),
    ("datafusion.execution.target_partitions", Allowed::Range(1, 64)),
    ("datafusion.sql_parser.dialect", Allowed::Any),
    ("datafusion.sql_parser.enable_ident_normalization", Allowed::Any),
];

/// Prefixes of settings a session may change to any value: how EXPLAIN and
/// values are shown.
const SETTING_PREFIXES: &[&str] = &["datafusion.explain.", "datafusion.format."];

/// Client settings Postgres drivers send at connection start; they are
/// accepted and have no effect (sysql's text is UTF-8, its dates ISO).
const CLIENT_SETTINGS: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "extra_float_digits",
    "intervalstyle",
    "search_path",
    "standard_conforming_strings",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
];

#[derive(Debug, Clone, Copy)]
enum Allowed {
    Any,
    Range(u64, u64),
}

/// The rules one session's statements follow.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Statements may read or write files (COPY TO, CREATE EXTERNAL TABLE):
    /// `--allow-file-access`.
    pub file_access: bool,
    /// The switch that permits file access, named in the refusal (the
    /// shell's `--allow-file-access`); a client of a server has none.
    pub files_switch: Option<&'static str>,
    /// The session may define its own views (CREATE VIEW, DROP VIEW); they
    /// live in the session only. The shell's sessions do; servers' do not.
    pub session_views: bool,
    pub max_sql_bytes: usize,
    pub max_expr_depth: usize,
}

impl Default for Policy {
    /// Read-only, no files, no views: what a server gives a client.
    fn default() -> Self {
        Policy {
            file_access: false,
            files_switch: None,
            session_views: false,
            max_sql_bytes: MAX_SQL_BYTES,
            max_expr_depth: MAX_EXPR_DEPTH,
        }
    }
}

/// What a SET statement does once allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetEffect {
    /// Changes the session's setting.
    Apply,
    /// A client setting that is accepted and ignored.
    Ignore,
}

fn refused(kind: ErrorKind, message: String) -> QueryError {
    QueryError::new(kind, message)
}

impl Policy {
    /// The shell's policy: views allowed, files only with `--allow-file-access`.
    pub fn shell(file_access: bool) -> Self {
        Policy { file_access, files_switch: Some("--allow-file-access"), session_views: true, ..Policy::default() }
    }

    /// Checks the size of a text before it is parsed.
    pub fn check_text(&self, sql: &str) -> Result<(), QueryError> {
        if sql.len() > self.max_sql_bytes {
            return Err(refused(
                ErrorKind::Privilege,
                format!(
                    "statement text is {} bytes; sysql accepts at most {} KiB at a time",
                    sql.len(),
                    self.max_sql_bytes >> 10
                ),
            ));
        }
        Ok(())
    }

    /// Checks a parsed statement: depth, and what the plan would not show.
    pub fn check_statement(&self, statement: &Statement) -> Result<(), QueryError> {
        if too_deep(statement, self.max_expr_depth) {
            return Err(refused(
                ErrorKind::Privilege,
                format!(
                    "expression nested more than {} deep; sysql refuses it rather than spend minutes planning it",
                    self.max_expr_depth
                ),
            ));
        }
        if let Some(what) = file_access(statement) {
            if !self.file_access {
                let message = match self.files_switch {
                    Some(switch) => format!(
                        "{what} reads or writes files, which sysql refuses by default since it runs as root; \
                         start sysql with {switch} to permit it"
                    ),
                    None => format!("{what} reads or writes files, which a client of sysql may not do"),
                };
                return Err(refused(ErrorKind::Privilege, message));
            }
        }
        if let Some(what) = never(statement) {
            return Err(refused(ErrorKind::ReadOnly, format!("{what} is refused: sysql is read-only")));
        }
        Ok(())
    }

    /// Checks a logical plan: what it writes, defines or sets.
    pub fn check_plan(&self, plan: &LogicalPlan) -> Result<Option<SetEffect>, QueryError> {
        match plan {
            LogicalPlan::Statement(PlanStatement::SetVariable(set)) => {
                return self.check_setting(&set.variable, Some(&set.value)).map(Some);
            }
            LogicalPlan::Statement(PlanStatement::ResetVariable(reset)) => {
                return self.check_setting(&reset.variable, None).map(Some);
            }
            LogicalPlan::Ddl(ddl) => {
                let allowed = match ddl {
                    DdlStatement::CreateView(_) | DdlStatement::DropView(_) => self.session_views,
                    DdlStatement::CreateExternalTable(_) => self.file_access,
                    _ => false,
                };
                if !allowed {
                    let what = ddl_words(ddl);
                    let hint = if self.session_views { " (CREATE VIEW makes a view for this session)" } else { "" };
                    return Err(refused(ErrorKind::ReadOnly, format!("{what} is refused: sysql is read-only{hint}")));
                }
                return Ok(None);
            }
            _ => {}
        }
        // Anywhere else (under EXPLAIN, in a subquery), nothing may write,
        // define or set.
        let options =
            SQLOptions::new().with_allow_ddl(false).with_allow_dml(self.file_access).with_allow_statements(false);
        options.verify_plan(plan).map_err(|e| {
            let text = e.to_string();
            let what = if text.contains("COPY") {
                "COPY".to_string()
            } else if let Some(rest) = text.split("not supported: ").nth(1) {
                rest.split_whitespace().next().unwrap_or("the statement").to_string()
            } else {
                "the statement".to_string()
            };
            refused(ErrorKind::ReadOnly, format!("{what} is refused: sysql is read-only"))
        })?;
        Ok(None)
    }

    /// Whether a setting may be changed (to `value`; `None` resets it).
    pub fn check_setting(&self, variable: &str, value: Option<&str>) -> Result<SetEffect, QueryError> {
        let name = variable.to_ascii_lowercase();
        if CLIENT_SETTINGS.contains(&name.as_str()) {
            return Ok(SetEffect::Ignore);
        }
        let allowed = SETTINGS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a).or_else(|| {
            SETTING_PREFIXES.iter().any(|p| name.starts_with(p) && name.len() > p.len()).then_some(Allowed::Any)
        });
        match (allowed, value) {
            (None, _) => Err(refused(
                ErrorKind::Privilege,
                format!(
                    "SET {variable} is refused: a session may change only {}, and datafusion.explain.* and \
                     datafusion.format.*",
                    SETTINGS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ),
            )),
            (Some(Allowed::Range(lo, hi)), Some(v)) => match v.trim().trim_matches('\'').parse::<u64>() {
                Ok(n) if (lo..=hi).contains(&n) => Ok(SetEffect::Apply),
                _ => Err(refused(
                    ErrorKind::Privilege,
                    format!("SET {variable} takes a whole number from {lo} to {hi}, not {v}"),
                )),
            },
            (Some(_), _) => Ok(SetEffect::Apply),
        }
    }
}

fn ddl_words(ddl: &DdlStatement) -> &'static str {
    match ddl {
        DdlStatement::CreateExternalTable(_) => "CREATE EXTERNAL TABLE",
        DdlStatement::CreateMemoryTable(_) => "CREATE TABLE",
        DdlStatement::CreateView(_) => "CREATE VIEW",
        DdlStatement::CreateCatalogSchema(_) => "CREATE SCHEMA",
        DdlStatement::CreateCatalog(_) => "CREATE DATABASE",
        DdlStatement::CreateIndex(_) => "CREATE INDEX",
        DdlStatement::DropTable(_) => "DROP TABLE",
        DdlStatement::DropView(_) => "DROP VIEW",
        DdlStatement::DropCatalogSchema(_) => "DROP SCHEMA",
        DdlStatement::CreateFunction(_) => "CREATE FUNCTION",
        DdlStatement::DropFunction(_) => "DROP FUNCTION",
    }
}

/// What a statement does to files, if anything.
fn file_access(statement: &Statement) -> Option<&'static str> {
    match statement {
        Statement::CopyTo(_) => Some("COPY TO"),
        Statement::CreateExternalTable(_) => Some("CREATE EXTERNAL TABLE"),
        Statement::Explain(e) => file_access(&e.statement),
        Statement::Statement(s) => match s.as_ref() {
            Sql::Copy { .. } | Sql::CopyIntoSnowflake { .. } => Some("COPY"),
            Sql::Unload { .. } => Some("UNLOAD"),
            Sql::LoadData { .. } => Some("LOAD DATA"),
            _ => None,
        },
        _ => None,
    }
}

/// Statements refused whatever the switches: they install code, attach
/// databases or change data.
fn never(statement: &Statement) -> Option<&'static str> {
    match statement {
        Statement::Explain(e) => never(&e.statement),
        Statement::Statement(s) => match s.as_ref() {
            Sql::Install { .. } | Sql::Load { .. } => Some("INSTALL/LOAD"),
            Sql::AttachDatabase { .. } | Sql::AttachDuckDBDatabase { .. } | Sql::DetachDuckDBDatabase { .. } => {
                Some("ATTACH")
            }
            Sql::Insert(_) => Some("INSERT"),
            Sql::Update(_) => Some("UPDATE"),
            Sql::Delete(_) => Some("DELETE"),
            Sql::Merge(_) => Some("MERGE"),
            Sql::Truncate(_) => Some("TRUNCATE"),
            Sql::AlterTable(_) => Some("ALTER TABLE"),
            Sql::Grant(_) | Sql::Revoke(_) => Some("GRANT/REVOKE"),
            _ => None,
        },
        _ => None,
    }
}

/// Depth of an expression tree, measured without recursion (the tree may be
/// deeper than the stack), following operators, which is how trees get deep.
fn expr_depth(root: &Expr, limit: usize) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(root, 1usize)];
    while let Some((e, d)) = stack.pop() {
        deepest = deepest.max(d);
        if deepest > limit {
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

/// True if any expression of the statement is deeper than `limit`. The
/// visitor stops at the first such root, before it would recurse into it.
fn too_deep(statement: &Statement, limit: usize) -> bool {
    match statement {
        Statement::Statement(s) => visit_expressions(s.as_ref(), |e| {
            if expr_depth(e, limit) > limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .is_break(),
        Statement::Explain(e) => too_deep(&e.statement, limit),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_allow_list() {
        let p = Policy::default();
        assert_eq!(p.check_setting("datafusion.execution.time_zone", Some("+02:00")), Ok(SetEffect::Apply));
        assert_eq!(p.check_setting("DataFusion.Explain.Format", Some("tree")), Ok(SetEffect::Apply));
        assert_eq!(p.check_setting("application_name", Some("psql")), Ok(SetEffect::Ignore));
        assert!(p.check_setting("datafusion.execution.batch_size", Some("100000000")).is_err());
        assert!(p.check_setting("datafusion.execution.batch_size", Some("1024")).is_ok());
        let err = p.check_setting("datafusion.runtime.memory_limit", Some("100G")).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Privilege);
        assert!(err.message.starts_with("SET datafusion.runtime.memory_limit is refused"), "{}", err.message);
        assert!(p.check_setting("datafusion.explain.", Some("x")).is_err());
    }
}
