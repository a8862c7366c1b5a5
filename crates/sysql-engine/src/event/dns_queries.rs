//! The `dns_queries` table: DNS questions over UDP and their answers (see
//! `crate::payload::dns`).

use super::{append_endpoint, append_opt, Batch, Common};
use crate::payload::{DnsRow, Role};
use datafusion::arrow::datatypes::SchemaRef;
use sysql_events::Table;

columns! {
    /// The columns of `dns_queries` after the common ones.
    pub struct DnsColumns {
        fd: Int32, not null, "the socket fd in the process";
        role: Utf8, not null, "`client` (the process asked) or `server` (it answered)";
        server_addr: Utf8, null, "the DNS server's IP address";
        server_port: UInt16, null, "the DNS server's port (53)";
        id: UInt16, not null, "DNS message id";
        name: Utf8, not null, "the name asked for";
        qtype as "type": Utf8, not null, "record type asked for: `A`, `AAAA`, `PTR`, ...";
        rcode: Utf8, null, "`NOERROR`, `NXDOMAIN`, `SERVFAIL`, ...; `NULL` if no answer was seen";
        answers: Utf8, null, "answer records, comma-separated: addresses, names, or the record type";
        latency_ns: Int64, null, "from question to answer; `NULL` if only the answer was seen";
    }
}

pub struct DnsQueriesBuilder {
    schema: SchemaRef,
    common: Common,
    cols: DnsColumns,
}

impl DnsQueriesBuilder {
    pub fn new() -> Self {
        DnsQueriesBuilder {
            schema: super::schema(Table::DnsQueries),
            common: Common::with_capacity(16),
            cols: DnsColumns::new(16),
        }
    }

    /// Appends one row. DNS rows are never cut short: returns false.
    pub fn append(&mut self, r: DnsRow, clock_offset_ns: i64) -> bool {
        self.common.append(&r.meta.header, clock_offset_ns);
        let c = &mut self.cols;
        let server = if r.role == Role::Server { r.meta.local } else { r.meta.remote };
        c.fd.append_value(r.meta.fd);
        c.role.append_value(r.role.name());
        append_endpoint(&mut c.server_addr, &mut c.server_port, server);
        c.id.append_value(r.id);
        c.name.append_value(&r.name);
        c.qtype.append_value(&r.qtype);
        append_opt(&mut c.rcode, r.rcode.as_deref());
        append_opt(&mut c.answers, r.answers.as_deref());
        c.latency_ns.append_option(r.latency_ns);
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

impl Default for DnsQueriesBuilder {
    fn default() -> Self {
        Self::new()
    }
}
