//! The `exits` table: one row per process that ended, from
//! `sched_process_exit` when its last thread exits.

use super::{Batch, Common};
use crate::names::signal_name;
use datafusion::arrow::datatypes::SchemaRef;
use sysql_events::{ExitEvent, Table};

columns! {
    /// The columns of `exits` after the common ones.
    pub struct ExitsColumns {
        exit_code: Int32, null, "the status the process passed to `exit` (0-255); `NULL` if a signal killed it";
        signal: Utf8View, null, "the signal that killed it (`SIGKILL`, `SIGSEGV`, ...); `NULL` if it exited";
        core_dumped: Boolean, not null, "it dumped core";
        lifetime_ns: Int64, not null, "nanoseconds from the process's start (fork or clone) to its exit";
    }
}

pub struct ExitsBuilder {
    schema: SchemaRef,
    common: Common,
    cols: ExitsColumns,
}

impl ExitsBuilder {
    pub fn with_capacity(rows: usize) -> Self {
        ExitsBuilder {
            schema: super::schema(Table::Exits),
            common: Common::with_capacity(rows),
            cols: ExitsColumns::new(rows),
        }
    }

    /// Appends one event. Returns false (nothing is truncated in an exit).
    pub fn append(&mut self, e: &ExitEvent, clock_offset_ns: i64) -> bool {
        self.common.append(&e.h, clock_offset_ns);
        let c = &mut self.cols;
        // A wait status: the signal in the low 7 bits, 0x80 for a core dump,
        // the exit status in the next byte.
        let signal = e.exit_code & 0x7f;
        if signal == 0 {
            c.exit_code.append_value(((e.exit_code >> 8) & 0xff) as i32);
            c.signal.append_null();
        } else {
            c.exit_code.append_null();
            match signal_name(signal) {
                Some(name) => c.signal.append_value(name),
                None => c.signal.append_value(format!("SIG{signal}")),
            }
        }
        c.core_dumped.append_value(e.exit_code & 0x80 != 0);
        c.lifetime_ns.append_value(e.h.ts_boot_ns.saturating_sub(e.start_boot_ns) as i64);
        false
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

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use sysql_events::{zeroed, KIND_EXIT};

    #[test]
    fn wait_statuses_read_as_code_signal_and_core() {
        let mut b = ExitsBuilder::with_capacity(4);
        for code in [3 << 8, 9, 11 | 0x80] {
            let mut e: ExitEvent = zeroed();
            e.h.kind = KIND_EXIT;
            e.h.ts_boot_ns = 5_000;
            e.start_boot_ns = 1_000;
            e.exit_code = code;
            b.append(&e, 0);
        }
        let batch = b.finish().batch;
        let text = pretty_format_batches(&[batch.project(&[9, 10, 11, 12]).unwrap()]).unwrap().to_string();
        let want = "\
+-----------+---------+-------------+-------------+
| exit_code | signal  | core_dumped | lifetime_ns |
+-----------+---------+-------------+-------------+
| 3         |         | false       | 4000        |
|           | SIGKILL | false       | 4000        |
|           | SIGSEGV | true        | 4000        |
+-----------+---------+-------------+-------------+";
        assert_eq!(text, want);
    }
}
