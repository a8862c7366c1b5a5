//! The `execs` table: execve and execveat, failed ones included. A successful
//! exec is reported from `sched_process_exec`, so `comm` is the new program's.

use super::{append_errno, text, Batch, Common};
use crate::redact::ArgvRedaction;
use datafusion::arrow::datatypes::SchemaRef;
use std::fmt::Write;
use std::sync::Arc;
use sysql_events::{ExecEvent, Table, F_ARGV_TRUNCATED, F_PATH_TRUNCATED, F_USER_FAULT, SYS_EXECVE, SYS_EXECVEAT};

columns! {
    /// The columns of `execs` after the common ones.
    pub struct ExecsColumns {
        syscall: Utf8View, not null, "`execve` or `execveat`";
        filename: Utf8, null, "the program path as passed (for `execveat`, relative to its dirfd); at most 255 bytes; `NULL` if unreadable";
        argv: Utf8, not null, "the command line: arguments joined by single spaces, secrets masked as `***` (see [Redaction](#redaction))";
        argc: UInt32, not null, "arguments captured";
        argv_truncated: Boolean, not null, "there were more arguments or bytes than captured";
        ret: Int64, not null, "`0`, or `-errno` for a failed exec";
        errno: Utf8View, null, "error name (`ENOENT`, `EACCES`, `ENOEXEC`, ...), `NULL` on success";
        latency_ns: Int64, not null, "nanoseconds from syscall entry until the new image was in place (or the failure returned)";
    }
}

fn join_args(out: &mut impl Write, joined: &str) {
    for (i, arg) in joined.split('\0').enumerate() {
        if i > 0 {
            let _ = out.write_char(' ');
        }
        let _ = out.write_str(arg);
    }
}

pub struct ExecsBuilder {
    schema: SchemaRef,
    common: Common,
    cols: ExecsColumns,
    errno_text: String,
    redaction: Option<Arc<ArgvRedaction>>,
    scratch: String,
}

impl ExecsBuilder {
    pub fn with_capacity(rows: usize) -> Self {
        ExecsBuilder {
            schema: super::schema(Table::Execs),
            common: Common::with_capacity(rows),
            cols: ExecsColumns::new(rows),
            errno_text: String::new(),
            redaction: None,
            scratch: String::new(),
        }
    }

    /// Masks what `redaction` matches in `argv`.
    pub fn redacting(mut self, redaction: Arc<ArgvRedaction>) -> Self {
        self.redaction = (!redaction.is_empty()).then_some(redaction);
        self
    }

    /// Appends one event. Returns true if a field was truncated.
    pub fn append(&mut self, e: &ExecEvent, clock_offset_ns: i64) -> bool {
        self.common.append(&e.h, clock_offset_ns);
        let c = &mut self.cols;
        c.syscall.append_value(match e.h.syscall {
            SYS_EXECVE => "execve",
            SYS_EXECVEAT => "execveat",
            _ => "unknown",
        });
        let filename = e.filename();
        if filename.is_empty() && e.h.flags & F_USER_FAULT != 0 {
            c.filename.append_null();
        } else {
            c.filename.append_value(text(filename));
        }
        let (mut argc, mut end) = (0u32, 0usize);
        for arg in e.args() {
            argc += 1;
            end += arg.len() + 1;
        }
        let joined = text(&e.argv[..end.saturating_sub(1)]);
        if let Some(redaction) = &self.redaction {
            self.scratch.clear();
            join_args(&mut self.scratch, &joined);
            c.argv.append_value(redaction.apply(&self.scratch));
        } else {
            join_args(&mut c.argv, &joined);
            c.argv.append_value("");
        }
        c.argc.append_value(argc);
        let truncated = e.h.flags & (F_ARGV_TRUNCATED | F_PATH_TRUNCATED) != 0;
        c.argv_truncated.append_value(e.h.flags & F_ARGV_TRUNCATED != 0);
        c.ret.append_value(e.h.ret);
        append_errno(&mut c.errno, e.h.ret, &mut self.errno_text);
        c.latency_ns.append_value(e.h.latency_ns as i64);
        truncated
    }

    /// Fills `container_id` from these cgroups.
    pub fn attribute(&mut self, containers: std::sync::Arc<crate::containers::Containers>) {
        self.common.attribute(containers);
    }

    pub fn len(&self) -> usize {
        self.common.len()
    }

    pub fn is_empty(&self) -> bool {
        self.common.is_empty()
    }

    pub fn finish(&mut self) -> Batch {
        let own = self.cols.finish(self.len());
        self.common.batch(&self.schema, own)
    }
}
