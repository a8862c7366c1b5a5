//! MySQL client/server protocol: COM_QUERY statements and the first packet of
//! their response (OK, ERR, or a result set). No small, maintained crate
//! decodes single MySQL packets, and these shapes are a few bytes each.
//!
//! Packet: 3-byte little-endian payload length, 1-byte sequence id, payload.

use super::{latency, lossy, redact, Chunk, DbRow, Role, MAX_PENDING, REQUEST_TIMEOUT_NS};
use std::collections::VecDeque;

const COM_QUERY: u8 = 0x03;
const GREETING: u8 = 0x0a;
const OK: u8 = 0x00;
const ERR: u8 = 0xff;

#[derive(Debug)]
struct Pending {
    row: DbRow,
    at: i64,
}

#[derive(Debug, Default)]
pub struct Conn {
    /// Direction of the client's packets, once known.
    client_sent: Option<bool>,
    user: Option<String>,
    database: Option<String>,
    pending: VecDeque<Pending>,
}

/// Each (sequence id, payload) in the captured bytes; the last may be cut short.
fn packets(mut data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let len = u32::from_le_bytes([data[0], data[1], data[2], 0]) as usize;
        let seq = data[3];
        let end = (4 + len).min(data.len());
        let payload = &data[4..end];
        data = &data[end..];
        Some((seq, payload))
    })
}

/// A NUL-terminated string at the start of `b`, and the rest.
fn c_string(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&x| x == 0) {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

impl Conn {
    pub fn oldest(&self) -> Option<i64> {
        self.pending.front().map(|p| p.row.meta.header.ts_boot_ns as i64)
    }

    pub fn push(&mut self, c: &Chunk<'_>, redact: bool, out: &mut Vec<DbRow>) {
        let Some((seq, first)) = packets(c.data).next() else {
            return;
        };
        if self.client_sent.is_none() {
            match first.first() {
                Some(&COM_QUERY) if seq == 0 => self.client_sent = Some(c.sent),
                Some(&GREETING) if seq == 0 => self.client_sent = Some(!c.sent),
                _ => return,
            }
        }
        if Some(c.sent) == self.client_sent {
            self.client(c, redact, out);
        } else {
            self.server(c, out);
        }
    }

    fn client(&mut self, c: &Chunk<'_>, redact: bool, out: &mut Vec<DbRow>) {
        for (seq, payload) in packets(c.data) {
            if seq == 1 && payload.len() > 32 && self.user.is_none() {
                // HandshakeResponse41: flags(4) max_packet(4) charset(1) reserved(23) user\0 ...
                let flags = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]);
                let (user, rest) = c_string(&payload[32..]);
                self.user = Some(lossy(user));
                const CONNECT_WITH_DB: u32 = 0x8;
                const SECURE_CONNECTION: u32 = 0x8000;
                const PLUGIN_AUTH_LENENC: u32 = 0x20_0000;
                if flags & CONNECT_WITH_DB != 0 && flags & (SECURE_CONNECTION | PLUGIN_AUTH_LENENC) != 0 {
                    // auth data: length-prefixed (one byte for the usual sizes)
                    if let Some((&n, rest)) = rest.split_first() {
                        if n < 0xfb {
                            if let Some(rest) = rest.get(n as usize..) {
                                let (db, _) = c_string(rest);
                                self.database = Some(lossy(db)).filter(|d| !d.is_empty());
                            }
                        }
                    }
                }
                continue;
            }
            if seq != 0 || payload.first() != Some(&COM_QUERY) {
                continue;
            }
            let text = lossy(&payload[1..]);
            let mut row = DbRow {
                meta: c.meta,
                role: Role::of_request(c.sent),
                protocol: "mysql",
                user: self.user.clone(),
                database: self.database.clone(),
                query: if redact { redact::sql(&text, true) } else { text },
                outcome: None,
                error: None,
                tag: None,
                latency_ns: None,
                truncated: c.truncated,
            };
            row.meta.header.ts_boot_ns = c.at as u64;
            if self.pending.len() >= MAX_PENDING {
                out.push(self.pending.pop_front().expect("full").row);
            }
            self.pending.push_back(Pending { row, at: c.at });
        }
    }

    fn server(&mut self, c: &Chunk<'_>, out: &mut Vec<DbRow>) {
        let Some((seq, payload)) = packets(c.data).next() else {
            return;
        };
        // Replies to a command start at sequence 1.
        if seq != 1 || self.pending.is_empty() {
            return;
        }
        let mut p = self.pending.pop_front().expect("not empty");
        match payload.first() {
            Some(&ERR) => {
                p.row.outcome = Some("error");
                // code(2) then, in protocol 4.1, '#' and a 5-character SQL state
                let msg = payload.get(3..).unwrap_or(&[]);
                let msg = if msg.first() == Some(&b'#') { msg.get(6..).unwrap_or(&[]) } else { msg };
                p.row.error = Some(lossy(msg));
            }
            Some(&OK) => {
                p.row.outcome = Some("ok");
                p.row.tag = payload.get(1).filter(|&&n| n < 0xfb).map(|n| format!("OK {n}"));
            }
            _ => {
                p.row.outcome = Some("ok");
                p.row.tag = Some("RESULTSET".into());
            }
        }
        p.row.latency_ns = Some(latency(p.at, c.at));
        out.push(p.row);
    }

    pub fn expire(&mut self, now: i64, force: bool, out: &mut Vec<DbRow>) {
        while self.pending.front().is_some_and(|p| force || now.saturating_sub(p.at) > REQUEST_TIMEOUT_NS) {
            out.push(self.pending.pop_front().expect("front").row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_split_and_stop_at_short_input() {
        let data = [3, 0, 0, 0, COM_QUERY, b'a', b'b', 1, 0, 0, 1, 0xff, 9];
        let got: Vec<_> = packets(&data).collect();
        assert_eq!(got, vec![(0u8, &[COM_QUERY, b'a', b'b'][..]), (1u8, &[0xffu8][..])]);
        assert_eq!(packets(&[1, 0]).count(), 0);
    }
}
