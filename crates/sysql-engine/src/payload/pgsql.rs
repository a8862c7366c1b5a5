//! PostgreSQL wire protocol (v3), decoded with `pgwire`'s message codecs.
//!
//! A simple query (`Q`) is one row, finished by ReadyForQuery; each Execute of
//! the extended protocol is one row, finished by its CommandComplete or
//! ErrorResponse, with the text of the statement it runs (Parse in the same
//! send, or the named statement parsed earlier on the connection).

use super::{guarded, latency, lossy, redact, Chunk, DbRow, Role, MAX_PENDING, REQUEST_TIMEOUT_NS, RESPONSE_QUIET_NS};
use pgwire::messages::{DecodeContext, PgWireBackendMessage, PgWireFrontendMessage, ProtocolVersion};
use std::collections::{HashMap, VecDeque};

const STARTUP_CODES: [u32; 3] = [0x0003_0000, 80877103, 80877104];
const MAX_STATEMENTS: usize = 1024;

#[derive(Debug)]
struct Pending {
    row: DbRow,
    at: i64,
    sent: bool,
    /// A simple query ends at ReadyForQuery; an Execute at its CommandComplete.
    simple: bool,
    /// Time of the first response bytes, when the end was not captured.
    answered_at: Option<i64>,
}

#[derive(Debug, Default)]
pub struct Conn {
    /// Direction of the client's messages, once known.
    frontend_sent: Option<bool>,
    user: Option<String>,
    database: Option<String>,
    statements: HashMap<String, String>,
    unnamed: Option<String>,
    pending: VecDeque<Pending>,
    /// Messages the decoder could not read (counted as decode errors).
    pub malformed: u64,
}

fn startup_code(data: &[u8]) -> Option<u32> {
    let code = u32::from_be_bytes(data.get(4..8)?.try_into().ok()?);
    STARTUP_CODES.contains(&code).then_some(code)
}

fn looks_like_startup(data: &[u8]) -> bool {
    startup_code(data).is_some()
}

/// What the decoder expects first: an SSL or GSS request, a startup
/// message, or ordinary messages.
fn context(data: &[u8]) -> DecodeContext {
    let mut ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
    let code = startup_code(data);
    ctx.awaiting_frontend_ssl = code.is_some_and(|c| c != STARTUP_CODES[0]);
    ctx.awaiting_frontend_startup = code == Some(STARTUP_CODES[0]);
    ctx
}

/// The text of a `Q` or `P` message cut short by the snap length.
fn truncated_text(data: &[u8]) -> Option<String> {
    let body = match data.first()? {
        b'Q' => data.get(5..)?,
        b'P' => {
            let rest = data.get(5..)?;
            let name_end = rest.iter().position(|&b| b == 0)?;
            rest.get(name_end + 1..)?
        }
        _ => return None,
    };
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    Some(lossy(&body[..end]))
}

impl Conn {
    pub fn oldest(&self) -> Option<i64> {
        self.pending.iter().map(|p| p.row.meta.header.ts_boot_ns as i64).min()
    }

    pub fn push(&mut self, c: &Chunk<'_>, redact: bool, out: &mut Vec<DbRow>) {
        if self.frontend_sent.is_none() {
            let first = c.data.first().copied();
            if looks_like_startup(c.data) || matches!(first, Some(b'Q' | b'P')) {
                self.frontend_sent = Some(c.sent);
            } else {
                return;
            }
        }
        if Some(c.sent) == self.frontend_sent {
            self.frontend(c, redact, out);
        } else {
            self.backend(c, out);
        }
    }

    fn query(
        &mut self,
        c: &Chunk<'_>,
        text: String,
        simple: bool,
        truncated: bool,
        redact: bool,
        out: &mut Vec<DbRow>,
    ) {
        let mut row = DbRow {
            meta: c.meta,
            role: Role::of_request(c.sent),
            protocol: "postgres",
            user: self.user.clone(),
            database: self.database.clone(),
            query: if redact { redact::sql(&text, false) } else { text },
            outcome: None,
            error: None,
            tag: None,
            latency_ns: None,
            truncated,
        };
        row.meta.header.ts_boot_ns = c.at as u64;
        if self.pending.len() >= MAX_PENDING {
            out.push(self.pending.pop_front().expect("full").row);
        }
        self.pending.push_back(Pending { row, at: c.at, sent: c.sent, simple, answered_at: None });
    }

    fn frontend(&mut self, c: &Chunk<'_>, redact: bool, out: &mut Vec<DbRow>) {
        let mut buf = bytes::BytesMut::from(c.data);
        let ctx = context(c.data);
        let mut parsed: Option<String> = None;
        let mut bound: Option<String> = None;
        loop {
            let before = buf.len();
            let decoded = guarded(|| PgWireFrontendMessage::decode(&mut buf, &ctx));
            let Some(decoded) = decoded else {
                self.malformed += 1;
                break;
            };
            match decoded {
                Ok(Some(msg)) => match msg {
                    PgWireFrontendMessage::Startup(s) => {
                        self.user = s.parameters.get("user").cloned();
                        self.database = s.parameters.get("database").cloned().or_else(|| self.user.clone());
                    }
                    PgWireFrontendMessage::Query(q) => self.query(c, q.query, true, false, redact, out),
                    PgWireFrontendMessage::Parse(p) => {
                        match &p.name {
                            Some(name) if !name.is_empty() => {
                                if self.statements.len() < MAX_STATEMENTS {
                                    self.statements.insert(name.clone(), p.query.clone());
                                }
                            }
                            _ => self.unnamed = Some(p.query.clone()),
                        }
                        parsed = Some(p.query);
                    }
                    PgWireFrontendMessage::Bind(b) => {
                        bound = match b.statement_name.as_deref() {
                            Some(name) if !name.is_empty() => self.statements.get(name).cloned(),
                            _ => self.unnamed.clone(),
                        };
                    }
                    PgWireFrontendMessage::Execute(_) => {
                        let text = bound.clone().or_else(|| parsed.clone()).unwrap_or_default();
                        self.query(c, text, false, false, redact, out);
                    }
                    PgWireFrontendMessage::Close(_) | PgWireFrontendMessage::Terminate(_) => {}
                    _ => {}
                },
                Ok(None) | Err(_) => {
                    // Cut short by the snap length: keep what the query text shows.
                    if c.truncated {
                        if let Some(text) = truncated_text(&buf) {
                            let simple = buf.first() == Some(&b'Q');
                            self.query(c, text, simple, true, redact, out);
                        }
                    }
                    break;
                }
            }
            if buf.is_empty() || buf.len() == before {
                break;
            }
        }
    }

    fn backend(&mut self, c: &Chunk<'_>, out: &mut Vec<DbRow>) {
        let mut buf = bytes::BytesMut::from(c.data);
        let ctx = context(&[]);
        let mut decoded_any = false;
        loop {
            let before = buf.len();
            let Some(decoded) = guarded(|| PgWireBackendMessage::decode(&mut buf, &ctx)) else {
                self.malformed += 1;
                break;
            };
            let Ok(Some(msg)) = decoded else {
                break;
            };
            decoded_any = true;
            let Some(front) = self.pending.iter().position(|p| p.sent != c.sent) else {
                if buf.is_empty() || buf.len() == before {
                    break;
                }
                continue;
            };
            match msg {
                PgWireBackendMessage::CommandComplete(cc) => {
                    let p = &mut self.pending[front];
                    p.row.tag = Some(cc.tag);
                    p.row.outcome.get_or_insert("ok");
                    if !p.simple {
                        self.finish(front, c.at, out);
                    }
                }
                PgWireBackendMessage::EmptyQueryResponse(_) => {
                    let p = &mut self.pending[front];
                    p.row.outcome.get_or_insert("ok");
                    if !p.simple {
                        self.finish(front, c.at, out);
                    }
                }
                PgWireBackendMessage::ErrorResponse(e) => {
                    let p = &mut self.pending[front];
                    let message = e.fields.iter().find(|(k, _)| *k == b'M').map(|(_, v)| v.clone());
                    p.row.outcome = Some("error");
                    p.row.error = message.or_else(|| Some("error".into()));
                    if !p.simple {
                        self.finish(front, c.at, out);
                    }
                }
                PgWireBackendMessage::ReadyForQuery(_) if self.pending[front].simple => {
                    self.finish(front, c.at, out);
                }
                PgWireBackendMessage::RowDescription(_) | PgWireBackendMessage::DataRow(_) => {
                    let p = &mut self.pending[front];
                    p.answered_at.get_or_insert(c.at);
                }
                _ => {}
            }
            if buf.is_empty() || buf.len() == before {
                break;
            }
        }
        // The end of a large result was past the snap length: the statement
        // ran (errors come first), so it finishes when the connection goes quiet.
        if decoded_any {
            if let Some(p) = self.pending.iter_mut().find(|p| p.sent != c.sent) {
                if p.answered_at.is_some() {
                    p.answered_at = Some(c.at);
                }
            }
        }
    }

    fn finish(&mut self, index: usize, at: i64, out: &mut Vec<DbRow>) {
        let mut p = self.pending.remove(index).expect("index");
        p.row.latency_ns = Some(latency(p.at, at));
        out.push(p.row);
    }

    pub fn expire(&mut self, now: i64, force: bool, out: &mut Vec<DbRow>) {
        while let Some(p) = self.pending.front_mut() {
            if let Some(answered) = p.answered_at.filter(|a| force || now.saturating_sub(*a) > RESPONSE_QUIET_NS) {
                p.row.outcome.get_or_insert("ok");
                p.row.latency_ns.get_or_insert(latency(p.at, answered));
            } else if !(force || now.saturating_sub(p.at) > REQUEST_TIMEOUT_NS) {
                break;
            }
            out.push(self.pending.pop_front().expect("front").row);
        }
    }
}
