//! HTTP/1.x: request and response heads parsed by `httparse`; responses are
//! paired with requests in FIFO order (keep-alive and pipelining).
//!
//! The kernel copies only message heads (a send or receive that starts with
//! a request line or `HTTP/`); the bytes of the rest (bodies) are counted.

use super::{latency, redact, Chunk, HttpRow, Role, MAX_PENDING, REQUEST_TIMEOUT_NS, RESPONSE_QUIET_NS};
use std::collections::VecDeque;

const MAX_HEADERS: usize = 64;

/// A response whose body is still coming.
#[derive(Debug)]
struct Open {
    row: HttpRow,
    sent: bool,
    /// Total bytes (head and body) when known from Content-Length.
    expected: Option<u64>,
    last_at: i64,
}

#[derive(Debug)]
struct Request {
    row: HttpRow,
    sent: bool,
    at: i64,
}

/// One connection's exchanges in flight.
#[derive(Debug, Default)]
pub struct Conn {
    pending: VecDeque<Request>,
    open: Option<Open>,
}

fn header<'a>(headers: &'a [httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
}

fn content_length(headers: &[httparse::Header<'_>]) -> Option<u64> {
    std::str::from_utf8(header(headers, "content-length")?).ok()?.trim().parse().ok()
}

impl Conn {
    pub fn oldest(&self) -> Option<i64> {
        let open = self.open.as_ref().map(|o| o.row.meta.header.ts_boot_ns as i64);
        let waiting = self.pending.front().map(|r| r.row.meta.header.ts_boot_ns as i64);
        match (open, waiting) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn push(&mut self, c: &Chunk<'_>, redact: bool, out: &mut Vec<HttpRow>) {
        if c.data.is_empty() {
            self.more(c, out);
            return;
        }
        // One send may carry several messages (pipelining): each is parsed
        // while the previous one's length is known and within the capture.
        let mut off = 0;
        while off < c.data.len() {
            let part = &c.data[off..];
            let left = c.bytes.saturating_sub(off as u64);
            let used = if part.starts_with(b"HTTP/") {
                self.response(c, part, left, out)
            } else {
                self.request(c, part, left, redact, out)
            };
            match used {
                Some(n) if n > 0 => off += n,
                _ => break,
            }
        }
    }

    /// Bytes of a message already started (a body).
    fn more(&mut self, c: &Chunk<'_>, out: &mut Vec<HttpRow>) {
        if let Some(open) = self.open.as_mut().filter(|o| o.sent == c.sent) {
            let got = open.row.response_bytes.get_or_insert(0);
            *got += c.bytes;
            open.last_at = c.at;
            if open.expected.is_some_and(|e| *got >= e) {
                out.push(self.open.take().expect("open").row);
            }
        } else if let Some(req) = self.pending.back_mut().filter(|r| r.sent == c.sent) {
            req.row.request_bytes += c.bytes; // a request body
        }
    }

    /// Parses a request head at the start of `part`; returns the request's
    /// length if it is known and captured whole.
    fn request(
        &mut self,
        c: &Chunk<'_>,
        part: &[u8],
        left: u64,
        redact: bool,
        out: &mut Vec<HttpRow>,
    ) -> Option<usize> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        // A partial head (the capture was cut short) still names the method and path.
        let head_len = match req.parse(part) {
            Ok(httparse::Status::Complete(n)) => Some(n),
            _ => None,
        };
        let (Some(method), Some(path)) = (req.method, req.path) else {
            return None; // not a request after all
        };
        // A request without Content-Length has no body (chunked bodies are counted later).
        let len = head_len.map(|h| h as u64 + content_length(req.headers).unwrap_or(0));
        let text = |v: &[u8]| super::lossy(v);
        let mut row = HttpRow {
            meta: c.meta,
            role: Role::of_request(c.sent),
            method: method.to_string(),
            path: if redact { redact::query_string(path) } else { path.to_string() },
            version: req.version,
            host: header(req.headers, "host").map(text),
            user_agent: header(req.headers, "user-agent").map(text),
            status: None,
            latency_ns: None,
            request_bytes: len.map_or(left, |l| l.min(left)),
            response_bytes: None,
            truncated: c.truncated && head_len.is_none(),
        };
        if redact {
            row.host = row.host.map(|_| redact::MASK.to_string());
            row.user_agent = row.user_agent.map(|_| redact::MASK.to_string());
        }
        row.meta.header.ts_boot_ns = c.at as u64;
        if self.pending.len() >= MAX_PENDING {
            out.push(self.pending.pop_front().expect("full").row);
        }
        self.pending.push_back(Request { row, sent: c.sent, at: c.at });
        len.and_then(|l| usize::try_from(l).ok()).filter(|&l| l <= part.len())
    }

    /// Parses a response head at the start of `part` and pairs it with the
    /// oldest request sent the other way; returns the response's length if
    /// it is known and captured whole.
    fn response(&mut self, c: &Chunk<'_>, part: &[u8], left: u64, out: &mut Vec<HttpRow>) -> Option<usize> {
        if let Some(open) = self.open.take() {
            out.push(open.row);
        }
        let pos = self.pending.iter().position(|r| r.sent != c.sent)?; // else: a request sysql did not see
        let req = self.pending.remove(pos).expect("found");
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let head_len = match resp.parse(part) {
            Ok(httparse::Status::Complete(n)) => Some(n as u64),
            _ => None,
        };
        let mut row = req.row;
        row.status = resp.code;
        row.latency_ns = Some(latency(req.at, c.at));
        let no_body = row.method == "HEAD" || matches!(row.status, Some(100..=199 | 204 | 304));
        let expected =
            head_len.and_then(|h| if no_body { Some(h) } else { content_length(resp.headers).map(|l| h + l) });
        match expected {
            Some(e) if left >= e => {
                row.response_bytes = Some(e);
                out.push(row);
                usize::try_from(e).ok().filter(|&e| e <= part.len())
            }
            _ => {
                row.response_bytes = Some(left);
                self.open = Some(Open { row, sent: c.sent, expected, last_at: c.at });
                None
            }
        }
    }

    /// Closes a quiet response and requests overdue for theirs.
    pub fn expire(&mut self, now: i64, force: bool, out: &mut Vec<HttpRow>) {
        if self.open.as_ref().is_some_and(|o| force || now.saturating_sub(o.last_at) > RESPONSE_QUIET_NS) {
            out.push(self.open.take().expect("open").row);
        }
        while self.pending.front().is_some_and(|r| force || now.saturating_sub(r.at) > REQUEST_TIMEOUT_NS) {
            out.push(self.pending.pop_front().expect("front").row);
        }
    }
}
