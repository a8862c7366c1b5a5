//! Keeps docs/ true: every column of every table is documented, and every
//! documented column exists.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use sysql_engine::{event, event_tables, provider::StatsTable};

/// The documented columns of a page: name and type (as written in the
/// type cell, when it is one).
fn documented_types(page: &str) -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs").join(page);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |"))
        .map(|(name, rest)| {
            let ty = rest.trim_start().strip_prefix('`').and_then(|t| t.split_once('`')).map(|(t, _)| t.to_string());
            (name.to_string(), ty.unwrap_or_default())
        })
        .collect()
}

fn documented(page: &str) -> BTreeSet<String> {
    documented_types(page).into_keys().collect()
}

/// A type as the docs write it.
fn doc_type(ty: &DataType) -> String {
    match ty {
        DataType::Timestamp(TimeUnit::Nanosecond, Some(tz)) => format!("Timestamp(ns, {tz})"),
        other => other.to_string(),
    }
}

#[test]
fn every_documented_type_is_the_schema_type() {
    let mut pages = vec![("tables.md".to_string(), event::common_fields())];
    for (t, s) in event_tables() {
        pages.push((format!("tables/{}.md", t.name()), s.fields().iter().map(|f| f.as_ref().clone()).collect()));
    }
    for (page, fields) in pages {
        let docs = documented_types(&page);
        for f in fields {
            if let Some(ty) = docs.get(f.name()) {
                assert_eq!(ty, &doc_type(f.data_type()), "docs/{page}: type of {}", f.name());
            }
        }
    }
}

#[test]
fn every_column_is_documented_and_every_documented_column_exists() {
    let common: BTreeSet<String> = event::common_fields().iter().map(|f| f.name().clone()).collect();
    let index = documented("tables.md");
    assert!(common.is_subset(&index), "common columns missing from docs/tables.md: {:?}", common.difference(&index));

    let mut tables: Vec<(String, BTreeSet<String>)> = event_tables()
        .iter()
        .map(|(t, s)| {
            let own = s.fields().iter().map(|f| f.name().clone()).filter(|n| !common.contains(n)).collect();
            (t.name().to_string(), own)
        })
        .collect();
    tables.push(("sysql_stats".into(), StatsTable::table_schema().fields().iter().map(|f| f.name().clone()).collect()));

    for (name, columns) in tables {
        assert!(index.contains(&name), "docs/tables.md does not list table {name}");
        let page = documented(&format!("tables/{name}.md"));
        assert_eq!(columns, page, "docs/tables/{name}.md columns differ from the schema");
    }
}
