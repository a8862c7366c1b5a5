//! The `opens` table: open, openat, openat2 and creat.

use super::{append_errno, text, Batch, Common};
use crate::names::write_open_flags;
use datafusion::arrow::datatypes::SchemaRef;
use sysql_events::{OpenEvent, Table, F_PATH_TRUNCATED, F_USER_FAULT, SYS_CREAT, SYS_OPEN, SYS_OPENAT, SYS_OPENAT2};

columns! {
    /// The columns of `opens` after the common ones.
    pub struct OpensColumns {
        syscall: Utf8View, not null, "`open`, `openat`, `openat2` or `creat`";
        dfd: Int32, not null, "directory fd the path is relative to; `-100` is `AT_FDCWD`";
        path: Utf8, null, "the path as passed (relative paths stay relative); at most 255 bytes; `NULL` if the user pointer could not be read";
        path_truncated: Boolean, not null, "the path was longer than 255 bytes and is cut";
        flags: Int64, not null, "open flags as an integer";
        flags_text: Utf8, not null, "the flags by name: `O_RDONLY|O_CLOEXEC` (`O_SYNC` and `O_TMPFILE` named as such; unnamed bits in hex)";
        mode: UInt32, not null, "file mode argument (meaningful with `O_CREAT`/`O_TMPFILE`)";
        ret: Int64, not null, "the new fd, or `-errno`";
        errno: Utf8View, null, "error name (`ENOENT`, `EACCES`, ...), `NULL` on success";
        latency_ns: Int64, not null, "nanoseconds from syscall entry to exit";
    }
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
    cols: OpensColumns,
    errno_text: String,
    /// `flags_text` of recent `flags` values (programs open with a few flag
    /// sets), so most rows copy it instead of spelling it out again.
    flags_cache: [(Option<u64>, String); FLAGS_CACHE],
}

const FLAGS_CACHE: usize = 16;

impl OpensBuilder {
    pub fn with_capacity(rows: usize) -> Self {
        OpensBuilder {
            schema: super::schema(Table::Opens),
            common: Common::with_capacity(rows),
            cols: OpensColumns::new(rows),
            errno_text: String::new(),
            flags_cache: Default::default(),
        }
    }

    /// Appends one event. Returns true if a field was truncated.
    pub fn append(&mut self, e: &OpenEvent, clock_offset_ns: i64) -> bool {
        self.common.append(&e.h, clock_offset_ns);
        let c = &mut self.cols;
        c.syscall.append_value(syscall_name(e.h.syscall));
        c.dfd.append_value(e.dfd);
        let path = e.path();
        if path.is_empty() && e.h.flags & F_USER_FAULT != 0 {
            c.path.append_null();
        } else {
            c.path.append_value(text(path));
        }
        let truncated = e.h.flags & F_PATH_TRUNCATED != 0;
        c.path_truncated.append_value(truncated);
        c.flags.append_value(e.flags as i64);
        let slot = &mut self.flags_cache[(e.flags ^ (e.flags >> 17)) as usize % FLAGS_CACHE];
        if slot.0 != Some(e.flags) {
            slot.1.clear();
            let _ = write_open_flags(&mut slot.1, e.flags);
            slot.0 = Some(e.flags);
        }
        c.flags_text.append_value(&slot.1);
        c.mode.append_value(e.mode);
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
