//! Helpers shared by the integration tests.
#![allow(dead_code)]

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use sysql_engine::query::{Policy, QuerySession};

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("sysql-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Compiles tests/probe/sysql-probe.c into `dir` (named sysql-probe, so its
/// comm is known).
pub fn compile_probe(dir: &TempDir) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/probe/sysql-probe.c");
    let exe = dir.join("sysql-probe");
    let status = Command::new("cc").args(["-O1", "-o"]).arg(&exe).arg(&src).status().expect("cc runs");
    assert!(status.success(), "compiling the probe failed");
    exe
}

/// A session over a running capture, with the shell's policy.
pub fn session(running: &sysql::app::Running) -> QuerySession {
    running.session(Policy::shell(false)).unwrap()
}

/// Runs one bounded statement through the statement path and returns its batches.
pub fn batches(rt: &tokio::runtime::Runtime, session: &QuerySession, sql: &str) -> Vec<RecordBatch> {
    rt.block_on(async {
        let mut stream = session.run(sql).await?;
        let mut out = Vec::new();
        while let Some(b) = stream.next().await {
            out.push(b?);
        }
        Ok::<_, sysql_engine::query::QueryError>(out)
    })
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Runs SQL and returns every row as strings (NULL for nulls).
pub fn query(rt: &tokio::runtime::Runtime, session: &QuerySession, sql: &str) -> Vec<Vec<String>> {
    rows(&batches(rt, session, sql))
}

/// Every row of some batches as strings (NULL for nulls).
pub fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for b in batches {
        let fmts: Vec<_> = b.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap()).collect();
        for r in 0..b.num_rows() {
            rows.push(fmts.iter().map(|f| f.value(r).to_string()).collect());
        }
    }
    rows
}
