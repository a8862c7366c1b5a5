//! Keeps docs/ true: each table's page lists exactly the columns of the
//! table's column list, in order, with the list's type and doc line (the
//! same line `\d` shows), and docs/tables.md lists every table with the
//! line each table's definition gives.

use std::path::Path;
use sysql_engine::containers::ContainersColumns;
use sysql_engine::event::columns::ColumnDef;
use sysql_engine::event::{table_def, CommonColumns};
use sysql_engine::provider::{ColumnsColumns, GapsColumns, StatsColumns};
use sysql_events::Table;

fn page(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The rows of a page's column table: name, type, meaning (Markdown, with
/// `\|` unescaped).
fn documented(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<String> = split_cells(l);
            let name = cells[0].trim_matches('`').to_string();
            let ty = cells.get(1).map(|t| t.trim_matches('`').to_string()).unwrap_or_default();
            let meaning = cells.get(2).cloned().unwrap_or_default();
            (name, ty, meaning)
        })
        .collect()
}

/// Splits a Markdown table row at unescaped `|`.
fn split_cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cells.last_mut().unwrap().push('|');
                chars.next();
            }
            '|' => cells.push(String::new()),
            c => cells.last_mut().unwrap().push(c),
        }
    }
    cells.into_iter().map(|c| c.trim().to_string()).collect()
}

/// A type as the docs write it.
fn doc_type(c: &ColumnDef) -> String {
    match c.kind.data_type() {
        datafusion::arrow::datatypes::DataType::Timestamp(_, Some(tz)) => format!("Timestamp(ns, {tz})"),
        other => other.to_string(),
    }
}

fn check(page_name: &str, rows: Vec<(String, String, String)>, columns: &[ColumnDef]) {
    let want: Vec<(String, String, String)> =
        columns.iter().map(|c| (c.name.to_string(), doc_type(c), c.doc.to_string())).collect();
    let names = |v: &[(String, String, String)]| v.iter().map(|r| r.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&rows), names(&want), "docs/{page_name}: the columns differ from the table's column list");
    for (doc, list) in rows.iter().zip(&want) {
        assert_eq!(doc.1, list.1, "docs/{page_name}: type of {}", doc.0);
        assert_eq!(doc.2, list.2, "docs/{page_name}: meaning of {} differs from its doc line", doc.0);
    }
}

#[test]
fn every_page_matches_its_column_list() {
    // docs/tables.md: the list of tables (name, what a row is, its page),
    // then the columns every event table has.
    let index = page("tables.md");
    let (list, common) =
        index.split_once("## Columns every event table has").expect("docs/tables.md: the common columns");
    check("tables.md", documented(common), CommonColumns::COLUMNS);
    let rows: Vec<Vec<String>> = list.lines().filter(|l| l.starts_with("| `")).map(split_cells).collect();
    for t in Table::ALL {
        let def = table_def(t);
        let name = format!("`{}`", t.name());
        let line =
            rows.iter().find(|r| r[0] == name).unwrap_or_else(|| panic!("docs/tables.md does not list {}", t.name()));
        assert_eq!(line[1], def.doc, "docs/tables.md: the line of {}", t.name());
        check(&format!("tables/{}.md", t.name()), documented(&page(&format!("tables/{}.md", t.name()))), def.columns);
    }
    for (name, columns) in [
        ("sysql_stats", StatsColumns::COLUMNS),
        ("sysql_columns", ColumnsColumns::COLUMNS),
        ("containers", ContainersColumns::COLUMNS),
        ("sysql_gaps", GapsColumns::COLUMNS),
    ] {
        assert!(rows.iter().any(|r| r[0] == format!("`{name}`")), "docs/tables.md does not list {name}");
        check(&format!("tables/{name}.md"), documented(&page(&format!("tables/{name}.md"))), columns);
    }
}
