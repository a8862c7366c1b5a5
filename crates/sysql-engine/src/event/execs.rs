//! The `execs` table: execve and execveat, failed ones included. A successful
//! exec is reported from `sched_process_exec`, so `comm` is the new program's.

use super::{append_errno, common_fields, finish_bool, finish_prim, finish_str, finish_view, text, Batch, Common};
use crate::redact::ArgvRedaction;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Int64Builder, StringBuilder, StringViewBuilder, UInt32Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use std::fmt::Write;
use std::sync::Arc;
use sysql_events::{ExecEvent, F_ARGV_TRUNCATED, F_PATH_TRUNCATED, F_USER_FAULT, SYS_EXECVE, SYS_EXECVEAT};

pub fn schema() -> SchemaRef {
    let mut fields = common_fields();
    fields.extend([
        Field::new("syscall", DataType::Utf8View, false),
        Field::new("filename", DataType::Utf8, true),
        Field::new("argv", DataType::Utf8, false),
        Field::new("argc", DataType::UInt32, false),
        Field::new("argv_truncated", DataType::Boolean, false),
        Field::new("ret", DataType::Int64, false),
        Field::new("errno", DataType::Utf8View, true),
        Field::new("latency_ns", DataType::Int64, false),
    ]);
    Arc::new(Schema::new(fields))
}

/// Writes NUL-separated arguments separated by spaces.
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
    syscall: StringViewBuilder,
    filename: StringBuilder,
    argv: StringBuilder,
    argc: UInt32Builder,
    argv_truncated: BooleanBuilder,
    ret: Int64Builder,
    errno: StringViewBuilder,
    errno_text: String,
    latency_ns: Int64Builder,
    /// Patterns masked in argv, if any (then argv is assembled in `scratch`).
    redaction: Option<Arc<ArgvRedaction>>,
    scratch: String,
}

impl ExecsBuilder {
    pub fn with_capacity(rows: usize) -> Self {
        ExecsBuilder {
            schema: schema(),
            common: Common::with_capacity(rows),
            syscall: StringViewBuilder::with_capacity(rows),
            filename: StringBuilder::with_capacity(rows, rows * 16),
            argv: StringBuilder::with_capacity(rows, rows * 32),
            argc: UInt32Builder::with_capacity(rows),
            argv_truncated: BooleanBuilder::with_capacity(rows),
            ret: Int64Builder::with_capacity(rows),
            errno: StringViewBuilder::with_capacity(rows),
            errno_text: String::new(),
            latency_ns: Int64Builder::with_capacity(rows),
            redaction: None,
            scratch: String::new(),
        }
    }

    /// Masks what `redaction` matches in each argv before it is stored.
    pub fn redacting(mut self, redaction: Arc<ArgvRedaction>) -> Self {
        self.redaction = (!redaction.is_empty()).then_some(redaction);
        self
    }

    /// Appends one event. Returns true if the filename or argv was truncated.
    pub fn append(&mut self, e: &ExecEvent, clock_offset_ns: i64) -> bool {
        self.common.append(&e.h, clock_offset_ns);
        self.syscall.append_value(match e.h.syscall {
            SYS_EXECVE => "execve",
            SYS_EXECVEAT => "execveat",
            _ => "unknown",
        });
        let filename = e.filename();
        if filename.is_empty() && e.h.flags & F_USER_FAULT != 0 {
            self.filename.append_null();
        } else {
            self.filename.append_value(text(filename));
        }
        // The arguments are contiguous, one NUL apart: validate and copy
        // them as one text with NULs turned into spaces.
        let (mut argc, mut end) = (0u32, 0usize);
        for arg in e.args() {
            argc += 1;
            end += arg.len() + 1;
        }
        let joined = text(&e.argv[..end.saturating_sub(1)]);
        if let Some(redaction) = &self.redaction {
            // Assembled in a reused buffer, so only a match allocates.
            self.scratch.clear();
            join_args(&mut self.scratch, &joined);
            self.argv.append_value(redaction.apply(&self.scratch));
        } else {
            join_args(&mut self.argv, &joined);
            self.argv.append_value("");
        }
        self.argc.append_value(argc);
        let truncated = e.h.flags & (F_ARGV_TRUNCATED | F_PATH_TRUNCATED) != 0;
        self.argv_truncated.append_value(e.h.flags & F_ARGV_TRUNCATED != 0);
        self.ret.append_value(e.h.ret);
        append_errno(&mut self.errno, e.h.ret, &mut self.errno_text);
        self.latency_ns.append_value(e.h.latency_ns as i64);
        truncated
    }

    pub fn len(&self) -> usize {
        self.common.len()
    }

    pub fn is_empty(&self) -> bool {
        self.common.is_empty()
    }

    pub fn finish(&mut self) -> Batch {
        let rows = self.len();
        let (mut arrays, min_ts, max_ts) = self.common.finish();
        arrays.extend::<[ArrayRef; 8]>([
            finish_view(&mut self.syscall, rows),
            finish_str(&mut self.filename, rows),
            finish_str(&mut self.argv, rows),
            finish_prim(&mut self.argc, rows),
            finish_bool(&mut self.argv_truncated, rows),
            finish_prim(&mut self.ret, rows),
            finish_view(&mut self.errno, rows),
            finish_prim(&mut self.latency_ns, rows),
        ]);
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).expect("execs schema matches its builder");
        Batch { batch, min_ts, max_ts }
    }
}
