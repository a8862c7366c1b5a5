//! The `opens` table: open, openat, openat2 and creat.

use super::{common_fields, text, Batch, Common};
use crate::names::{write_errno, write_open_flags};
use datafusion::arrow::array::{ArrayRef, BooleanBuilder, Int32Builder, Int64Builder, StringBuilder, UInt32Builder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use std::sync::Arc;
use sysql_events::{OpenEvent, F_PATH_TRUNCATED, F_USER_FAULT, SYS_CREAT, SYS_OPEN, SYS_OPENAT, SYS_OPENAT2};

pub fn schema() -> SchemaRef {
    let mut fields = common_fields();
    fields.extend([
        Field::new("syscall", DataType::Utf8, false),
        Field::new("dfd", DataType::Int32, false),
        Field::new("path", DataType::Utf8, true),
        Field::new("path_truncated", DataType::Boolean, false),
        Field::new("flags", DataType::Int64, false),
        Field::new("flags_text", DataType::Utf8, false),
        Field::new("mode", DataType::UInt32, false),
        Field::new("ret", DataType::Int64, false),
        Field::new("errno", DataType::Utf8, true),
        Field::new("latency_ns", DataType::Int64, false),
    ]);
    Arc::new(Schema::new(fields))
}

pub fn syscall_name(syscall: u32) -> &'static str {
    match syscall {
        SYS_OPEN => "open",
        SYS_OPENAT => "openat",
        SYS_OPENAT2 => "openat2",
        SYS_CREAT => "creat",
        _ => "unknown",
    }
}

pub struct OpensBuilder {
    schema: SchemaRef,
    common: Common,
    syscall: StringBuilder,
    dfd: Int32Builder,
    path: StringBuilder,
    path_truncated: BooleanBuilder,
    flags: Int64Builder,
    flags_text: StringBuilder,
    mode: UInt32Builder,
    ret: Int64Builder,
    errno: StringBuilder,
    latency_ns: Int64Builder,
}

impl OpensBuilder {
    pub fn with_capacity(rows: usize) -> Self {
        OpensBuilder {
            schema: schema(),
            common: Common::with_capacity(rows),
            syscall: StringBuilder::with_capacity(rows, rows * 6),
            dfd: Int32Builder::with_capacity(rows),
            path: StringBuilder::with_capacity(rows, rows * 32),
            path_truncated: BooleanBuilder::with_capacity(rows),
            flags: Int64Builder::with_capacity(rows),
            flags_text: StringBuilder::with_capacity(rows, rows * 20),
            mode: UInt32Builder::with_capacity(rows),
            ret: Int64Builder::with_capacity(rows),
            errno: StringBuilder::with_capacity(rows, rows),
            latency_ns: Int64Builder::with_capacity(rows),
        }
    }

    /// Appends one event. Returns true if a field was truncated.
    pub fn append(&mut self, e: &OpenEvent, clock_offset_ns: i64) -> bool {
        self.common.append(&e.h, clock_offset_ns);
        self.syscall.append_value(syscall_name(e.h.syscall));
        self.dfd.append_value(e.dfd);
        let path = e.path();
        if path.is_empty() && e.h.flags & F_USER_FAULT != 0 {
            self.path.append_null();
        } else {
            self.path.append_value(text(path));
        }
        let truncated = e.h.flags & F_PATH_TRUNCATED != 0;
        self.path_truncated.append_value(truncated);
        self.flags.append_value(e.flags as i64);
        let _ = write_open_flags(&mut self.flags_text, e.flags);
        self.flags_text.append_value("");
        self.mode.append_value(e.mode);
        self.ret.append_value(e.h.ret);
        if write_errno(&mut self.errno, e.h.ret) {
            self.errno.append_value("");
        } else {
            self.errno.append_null();
        }
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
        let (mut arrays, min_ts, max_ts) = self.common.finish();
        arrays.extend::<[ArrayRef; 10]>([
            Arc::new(self.syscall.finish()),
            Arc::new(self.dfd.finish()),
            Arc::new(self.path.finish()),
            Arc::new(self.path_truncated.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.flags_text.finish()),
            Arc::new(self.mode.finish()),
            Arc::new(self.ret.finish()),
            Arc::new(self.errno.finish()),
            Arc::new(self.latency_ns.finish()),
        ]);
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).expect("opens schema matches its builder");
        Batch { batch, min_ts, max_ts }
    }
}
