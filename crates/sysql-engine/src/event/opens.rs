//! The `opens` table: open, openat, openat2 and creat.

use super::{append_errno, common_fields, finish_bool, finish_prim, finish_str, finish_view, text, Batch, Common};
use crate::names::write_open_flags;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Int32Builder, Int64Builder, StringBuilder, StringViewBuilder, UInt32Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use std::sync::Arc;
use sysql_events::{OpenEvent, F_PATH_TRUNCATED, F_USER_FAULT, SYS_CREAT, SYS_OPEN, SYS_OPENAT, SYS_OPENAT2};

pub fn schema() -> SchemaRef {
    let mut fields = common_fields();
    fields.extend([
        Field::new("syscall", DataType::Utf8View, false),
        Field::new("dfd", DataType::Int32, false),
        Field::new("path", DataType::Utf8, true),
        Field::new("path_truncated", DataType::Boolean, false),
        Field::new("flags", DataType::Int64, false),
        Field::new("flags_text", DataType::Utf8, false),
        Field::new("mode", DataType::UInt32, false),
        Field::new("ret", DataType::Int64, false),
        Field::new("errno", DataType::Utf8View, true),
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
    syscall: StringViewBuilder,
    dfd: Int32Builder,
    path: StringBuilder,
    path_truncated: BooleanBuilder,
    flags: Int64Builder,
    flags_text: StringBuilder,
    mode: UInt32Builder,
    ret: Int64Builder,
    errno: StringViewBuilder,
    errno_text: String,
    latency_ns: Int64Builder,
    /// `flags_text` of recent `flags` values (programs open with a few flag
    /// sets), so most rows copy it instead of spelling it out again.
    flags_cache: [(Option<u64>, String); FLAGS_CACHE],
}

const FLAGS_CACHE: usize = 16;

impl OpensBuilder {
    pub fn with_capacity(rows: usize) -> Self {
        OpensBuilder {
            schema: schema(),
            common: Common::with_capacity(rows),
            syscall: StringViewBuilder::with_capacity(rows),
            dfd: Int32Builder::with_capacity(rows),
            path: StringBuilder::with_capacity(rows, rows * 32),
            path_truncated: BooleanBuilder::with_capacity(rows),
            flags: Int64Builder::with_capacity(rows),
            flags_text: StringBuilder::with_capacity(rows, rows * 20),
            mode: UInt32Builder::with_capacity(rows),
            ret: Int64Builder::with_capacity(rows),
            errno: StringViewBuilder::with_capacity(rows),
            errno_text: String::new(),
            latency_ns: Int64Builder::with_capacity(rows),
            flags_cache: Default::default(),
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
        let slot = &mut self.flags_cache[(e.flags ^ (e.flags >> 17)) as usize % FLAGS_CACHE];
        if slot.0 != Some(e.flags) {
            slot.1.clear();
            let _ = write_open_flags(&mut slot.1, e.flags);
            slot.0 = Some(e.flags);
        }
        self.flags_text.append_value(&slot.1);
        self.mode.append_value(e.mode);
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
        arrays.extend::<[ArrayRef; 10]>([
            finish_view(&mut self.syscall, rows),
            finish_prim(&mut self.dfd, rows),
            finish_str(&mut self.path, rows),
            finish_bool(&mut self.path_truncated, rows),
            finish_prim(&mut self.flags, rows),
            finish_str(&mut self.flags_text, rows),
            finish_prim(&mut self.mode, rows),
            finish_prim(&mut self.ret, rows),
            finish_view(&mut self.errno, rows),
            finish_prim(&mut self.latency_ns, rows),
        ]);
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).expect("opens schema matches its builder");
        Batch { batch, min_ts, max_ts }
    }
}
