//! Keeps docs/ true: every column of every table is documented, and every
//! documented column exists.

use std::collections::BTreeSet;
use std::path::Path;
use sysql_engine::{event, event_tables, provider::StatsTable};

fn documented(page: &str) -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs").join(page);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |"))
        .map(|(name, _)| name.to_string())
        .collect()
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
