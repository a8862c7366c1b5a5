//! What a Postgres client sends, sorted: the statements the endpoint answers
//! itself (transactions, cursors, Postgres settings), and those that go down
//! the engine's statement path (everything else, refusals included: the
//! policy decides there, on the plan).
//!
//! Text is parsed as Postgres SQL and rewritten where psql, Grafana and
//! drivers use what DataFusion lacks (`datafusion-pg-catalog`'s rules:
//! `::regclass`, `OPERATOR(pg_catalog.~)`, ...).

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    CloseCursor, CopyTarget, FetchDirection, Ident, Query, Set, Statement as Sql, TableAlias, TableFactor, Value,
    ValueWithSpan, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use std::ops::ControlFlow;
use sysql_engine::query::{ErrorKind, Policy, QueryError};

/// One statement, sorted.
#[derive(Debug, Clone)]
pub enum Command {
    /// Planned and run by the session (queries, EXPLAIN, SET, and whatever
    /// the policy refuses).
    Query(Box<DfStatement>),
    Begin,
    Commit,
    Rollback,
    /// SAVEPOINT, RELEASE, SET TRANSACTION, DISCARD, DEALLOCATE: accepted,
    /// nothing to do in a read-only session. The tag to answer.
    Nothing(&'static str),
    Declare {
        name: String,
        query: Box<DfStatement>,
    },
    /// FETCH `count` rows (`None`: all) from a cursor.
    Fetch {
        name: String,
        count: Option<usize>,
    },
    /// CLOSE a cursor (`None`: all).
    Close(Option<String>),
    /// SHOW of a Postgres setting, answered here.
    Show {
        name: String,
        value: String,
    },
}

fn syntax(message: String) -> QueryError {
    QueryError::new(ErrorKind::Syntax, message)
}

/// Parses `sql` as Postgres SQL, within `policy`'s size limit.
pub fn parse(parser: &PostgresCompatibilityParser, policy: &Policy, sql: &str) -> Result<Vec<Command>, QueryError> {
    policy.check_text(sql)?;
    let mut statements = parser.parse(sql).map_err(|e| syntax(super::one_line(&e.to_string())))?;
    let mut columns = PgColumns::new();
    for s in &mut statements {
        let _ = s.visit(&mut columns);
    }
    statements.into_iter().map(sort).collect()
}

/// `information_schema.columns` as Postgres clients read it: `data_type`
/// in Postgres's words (`timestamp with time zone`, `bigint`, `text`), which
/// is what Grafana's query builder goes by.
struct PgColumns(Box<Query>);

const PG_COLUMNS: &str = "SELECT table_catalog, table_schema, table_name, column_name, ordinal_position, \
     column_default, is_nullable, pg_type_name(data_type) AS data_type, character_maximum_length, \
     character_octet_length, numeric_precision, numeric_precision_radix, numeric_scale, datetime_precision, \
     interval_type FROM information_schema.columns";

impl PgColumns {
    fn new() -> PgColumns {
        let parsed = datafusion::sql::sqlparser::parser::Parser::parse_sql(&PostgreSqlDialect {}, PG_COLUMNS);
        match parsed.ok().and_then(|mut v| v.pop()) {
            Some(Sql::Query(q)) => PgColumns(q),
            _ => unreachable!("PG_COLUMNS is a query"),
        }
    }
}

impl VisitorMut for PgColumns {
    type Break = ();

    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, alias, args: None, .. } = factor {
            let parts: Vec<String> =
                name.0.iter().filter_map(|p| p.as_ident()).map(|i| i.value.to_ascii_lowercase()).collect();
            if parts.len() >= 2 && parts[parts.len() - 2..] == ["information_schema", "columns"] {
                let alias = alias.take().unwrap_or(TableAlias {
                    explicit: true,
                    name: Ident::new("columns"),
                    columns: vec![],
                    at: None,
                });
                *factor =
                    TableFactor::Derived { lateral: false, subquery: self.0.clone(), alias: Some(alias), sample: None };
            }
        }
        ControlFlow::Continue(())
    }
}

fn query(s: Sql) -> Command {
    Command::Query(Box::new(DfStatement::Statement(Box::new(s))))
}

fn count(v: &ValueWithSpan) -> Result<usize, QueryError> {
    match &v.value {
        Value::Number(n, _) => n.parse().map_err(|_| syntax(format!("FETCH {n}: a row count is a whole number"))),
        other => Err(syntax(format!("FETCH {other}: a row count is a whole number"))),
    }
}

fn sort(s: Sql) -> Result<Command, QueryError> {
    Ok(match s {
        Sql::StartTransaction { .. } => Command::Begin,
        Sql::Commit { .. } => Command::Commit,
        Sql::Rollback { savepoint: None, .. } => Command::Rollback,
        Sql::Rollback { savepoint: Some(_), .. } => Command::Nothing("ROLLBACK"),
        Sql::Savepoint { .. } => Command::Nothing("SAVEPOINT"),
        Sql::ReleaseSavepoint { .. } => Command::Nothing("RELEASE"),
        Sql::Set(Set::SetTransaction { .. }) => Command::Nothing("SET"),
        Sql::Discard { .. } => Command::Nothing("DISCARD ALL"),
        Sql::Deallocate { .. } => Command::Nothing("DEALLOCATE"),
        Sql::Declare { stmts } => {
            let [declare] = <[_; 1]>::try_from(stmts).map_err(|_| syntax("DECLARE one cursor at a time".into()))?;
            let (Some(q), [name]) = (declare.for_query, declare.names.as_slice()) else {
                return Err(syntax("DECLARE declares a cursor: DECLARE name CURSOR FOR query".into()));
            };
            if declare.binary == Some(true) {
                return Err(QueryError::new(ErrorKind::Plan, "binary cursors are not supported".to_string()));
            }
            let query = DfStatement::Statement(Box::new(Sql::Query(q)));
            Command::Declare { name: name.value.clone(), query: Box::new(query) }
        }
        Sql::Fetch { name, direction, into: None, .. } => {
            let count = match &direction {
                FetchDirection::Next => Some(1),
                FetchDirection::Count { limit } => Some(count(limit)?),
                FetchDirection::Forward { limit: Some(limit) } => Some(count(limit)?),
                FetchDirection::Forward { limit: None } => Some(1),
                FetchDirection::All | FetchDirection::ForwardAll => None,
                other => {
                    return Err(QueryError::new(
                        ErrorKind::Plan,
                        format!("FETCH {other}: sysql's cursors only go forward"),
                    ))
                }
            };
            Command::Fetch { name: name.value, count }
        }
        Sql::Close { cursor } => match cursor {
            CloseCursor::All => Command::Close(None),
            CloseCursor::Specific { name } => Command::Close(Some(name.value)),
        },
        Sql::Copy { to: true, target: CopyTarget::Stdout, .. } => {
            return Err(QueryError::new(
                ErrorKind::Privilege,
                "COPY is not available over sysql's Postgres endpoint; run the query as SELECT".to_string(),
            ))
        }
        Sql::ShowVariable { variable } => {
            let name = variable.iter().map(|i| i.value.as_str()).collect::<Vec<_>>().join(" ");
            match super::catalog::setting(&name) {
                Some(value) => Command::Show { name, value: value.to_string() },
                None => query(Sql::ShowVariable { variable }),
            }
        }
        s => query(s),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Command {
        let parser = PostgresCompatibilityParser::new();
        let mut v = parse(&parser, &Policy::default(), sql).unwrap();
        assert_eq!(v.len(), 1, "{sql}");
        v.remove(0)
    }

    #[test]
    fn what_psql_sends_for_fetch_count() {
        assert!(matches!(one("BEGIN"), Command::Begin));
        match one("DECLARE _psql_cursor NO SCROLL CURSOR FOR SELECT 1") {
            Command::Declare { name, .. } => assert_eq!(name, "_psql_cursor"),
            other => panic!("{other:?}"),
        }
        match one("FETCH FORWARD 100 FROM _psql_cursor") {
            Command::Fetch { name, count } => assert_eq!((name.as_str(), count), ("_psql_cursor", Some(100))),
            other => panic!("{other:?}"),
        }
        assert!(matches!(one("FETCH ALL FROM c"), Command::Fetch { count: None, .. }));
        assert!(matches!(one("CLOSE _psql_cursor"), Command::Close(Some(_))));
        assert!(matches!(one("COMMIT"), Command::Commit));
        assert!(matches!(one("ROLLBACK"), Command::Rollback));
    }

    #[test]
    fn copy_to_stdout_is_refused() {
        let parser = PostgresCompatibilityParser::new();
        let e = parse(&parser, &Policy::default(), "COPY (SELECT 1) TO STDOUT").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Privilege);
    }

    #[test]
    fn postgres_settings_are_answered_here() {
        match one("SHOW transaction_isolation") {
            Command::Show { value, .. } => assert_eq!(value, "read committed"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(one("SHOW datafusion.execution.batch_size"), Command::Query(_)));
    }
}
