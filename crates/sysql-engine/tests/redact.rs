//! argv redaction over synthetic exec records: what the execs table stores
//! with the default patterns, with extra ones, and with redaction off.

use datafusion::arrow::array::{Array, StringArray};
use std::sync::Arc;
use sysql_engine::redact::ArgvRedaction;
use sysql_engine::{Engine, EngineConfig};
use sysql_events::*;

fn exec(pid: u32, args: &[&str]) -> ExecEvent {
    let mut e: ExecEvent = zeroed();
    e.h.kind = KIND_EXEC;
    e.h.syscall = SYS_EXECVE;
    e.h.pid = pid;
    e.h.comm[..4].copy_from_slice(b"test");
    let filename = args[0].as_bytes();
    e.filename[..filename.len()].copy_from_slice(filename);
    e.filename_len = filename.len() as u32;
    let mut off = 0;
    for a in args {
        e.argv[off..off + a.len()].copy_from_slice(a.as_bytes());
        off += a.len() + 1;
    }
    e.argv_len = off as u32;
    e.argc = args.len() as u32;
    e
}

/// The argv column after ingesting `execs` with `redaction`.
fn stored(redaction: ArgvRedaction, execs: &[&[&str]]) -> Vec<String> {
    let engine = Engine::new(EngineConfig { redact_argv: Arc::new(redaction), ..EngineConfig::default() });
    let mut ingest = engine.ingest();
    for (i, args) in execs.iter().enumerate() {
        ingest.push(as_bytes(&exec(i as u32, args)));
    }
    ingest.flush();
    let mut out = Vec::new();
    for batch in engine.history().snapshot(Table::Execs, None, None) {
        let argv = batch.column_by_name("argv").unwrap();
        let argv = argv.as_any().downcast_ref::<StringArray>().unwrap();
        out.extend((0..argv.len()).map(|i| argv.value(i).to_string()));
    }
    out
}

const EXECS: &[&[&str]] = &[
    &["mysql", "--password=hunter2", "-u", "root"],
    &["deploy", "--api-key", "k-123", "--dry-run"],
    &["ls", "-l", "/tmp"],
    &["mysql", "-phunter2"],
];

#[test]
fn default_patterns_mask_password_and_token_values() {
    assert_eq!(
        stored(ArgvRedaction::defaults(), EXECS),
        ["mysql --password=*** -u root", "deploy --api-key *** --dry-run", "ls -l /tmp", "mysql -phunter2"]
    );
    // the default configuration is the default patterns
    assert_eq!(EngineConfig::default().redact_argv.apply("x --token=t"), "x --token=***");
}

#[test]
fn extra_patterns_add_to_the_defaults_and_off_stores_argv_as_is() {
    let mysql = ArgvRedaction::new(&[r"^mysql\b.*\s-p(\S+)".to_string()], true).unwrap();
    assert_eq!(
        stored(mysql, EXECS),
        ["mysql --password=*** -u root", "deploy --api-key *** --dry-run", "ls -l /tmp", "mysql -p***"]
    );
    assert_eq!(
        stored(ArgvRedaction::none(), EXECS),
        ["mysql --password=hunter2 -u root", "deploy --api-key k-123 --dry-run", "ls -l /tmp", "mysql -phunter2"]
    );
}
