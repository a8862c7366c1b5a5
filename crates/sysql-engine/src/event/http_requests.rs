//! The `http_requests` table: HTTP/1.x exchanges seen on sockets, one row per
//! request, with its response when seen (see `crate::payload::http`).

use super::{append_endpoint, append_opt, Batch, Common};
use crate::payload::HttpRow;
use datafusion::arrow::datatypes::SchemaRef;
use sysql_events::Table;

columns! {
    /// The columns of `http_requests` after the common ones.
    pub struct HttpColumns {
        fd: Int32, not null, "the socket fd in the process";
        role: Utf8, not null, "`server` if the process received the request, `client` if it sent it";
        local_addr: Utf8, null, "this end's IP address; `NULL` for unix sockets";
        local_port: UInt16, null, "this end's port; `NULL` for unix sockets";
        remote_addr: Utf8, null, "the peer's IP address (IPv4-mapped IPv6 shown as IPv4)";
        remote_port: UInt16, null, "the peer's port";
        method: Utf8, not null, "`GET`, `POST`, ...";
        path: Utf8, not null, "request target, with its query string (`***` values with `--redact-payload`)";
        version: Utf8, null, "`HTTP/1.0` or `HTTP/1.1`; `NULL` if the request line was cut short";
        host: Utf8, null, "`Host` header";
        user_agent: Utf8, null, "`User-Agent` header";
        status: UInt16, null, "response status code; `NULL` if no response was seen";
        latency_ns: Int64, null, "from the request to the first bytes of its response";
        request_bytes: UInt64, not null, "bytes of the request (head and body)";
        response_bytes: UInt64, null, "bytes of the response (head and body); `NULL` if none";
        truncated: Boolean, not null, "the request head was longer than `--snap-len` and was cut";
    }
}

pub struct HttpRequestsBuilder {
    schema: SchemaRef,
    common: Common,
    cols: HttpColumns,
}

impl HttpRequestsBuilder {
    pub fn new() -> Self {
        HttpRequestsBuilder {
            schema: super::schema(Table::HttpRequests),
            common: Common::with_capacity(16),
            cols: HttpColumns::new(16),
        }
    }

    /// Appends one row. Returns true if its message was cut short.
    pub fn append(&mut self, r: HttpRow, clock_offset_ns: i64) -> bool {
        self.common.append(&r.meta.header, clock_offset_ns);
        let c = &mut self.cols;
        c.fd.append_value(r.meta.fd);
        c.role.append_value(r.role.name());
        append_endpoint(&mut c.local_addr, &mut c.local_port, r.meta.local);
        append_endpoint(&mut c.remote_addr, &mut c.remote_port, r.meta.remote);
        c.method.append_value(&r.method);
        c.path.append_value(&r.path);
        append_opt(
            &mut c.version,
            r.version.map(|v| match v {
                0 => "HTTP/1.0",
                _ => "HTTP/1.1",
            }),
        );
        append_opt(&mut c.host, r.host.as_deref());
        append_opt(&mut c.user_agent, r.user_agent.as_deref());
        c.status.append_option(r.status);
        c.latency_ns.append_option(r.latency_ns);
        c.request_bytes.append_value(r.request_bytes);
        c.response_bytes.append_option(r.response_bytes);
        c.truncated.append_value(r.truncated);
        r.truncated
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

impl Default for HttpRequestsBuilder {
    fn default() -> Self {
        Self::new()
    }
}
