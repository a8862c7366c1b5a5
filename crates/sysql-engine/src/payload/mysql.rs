//! MySQL/MariaDB client/server protocol: statements (COM_QUERY, and prepared
//! statements of the binary protocol: COM_STMT_PREPARE, then COM_STMT_EXECUTE
//! by statement id) and the first packet of their response (OK, ERR, or a
//! result set). No small, maintained crate decodes single MySQL packets, and
//! these shapes are a few bytes each.
//!
//! Packet: 3-byte little-endian payload length, 1-byte sequence id, payload.
//! Packets are reassembled per direction: servers read a packet's 4-byte
//! header and its payload with two syscalls (MariaDB does), and a send or
//! receive may hold several packets or part of one. A packet longer than
//! what was captured is cut (the row says `truncated`) and its uncaptured
//! rest skipped; when bytes are missing beyond the packet under way, the
//! framing is lost and the next send or receive is taken to start a packet.

use super::{latency, lossy, redact, Chunk, DbRow, Role, MAX_PENDING, REQUEST_TIMEOUT_NS};
use std::collections::{HashMap, VecDeque};

const COM_QUIT: u8 = 0x01;
const COM_INIT_DB: u8 = 0x02;
const COM_QUERY: u8 = 0x03;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;
const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
const COM_STMT_CLOSE: u8 = 0x19;
/// MariaDB's bulk execution of a prepared statement.
const COM_STMT_BULK_EXECUTE: u8 = 0xfa;
/// MariaDB: "the statement prepared last" as a statement id.
const LAST_PREPARED: u32 = u32::MAX;
const GREETING: u8 = 0x0a;
const OK: u8 = 0x00;
const ERR: u8 = 0xff;
/// Payload bytes kept of one packet (the kernel copies at most 4 KiB per
/// syscall anyway).
const KEEP: usize = 4096;
/// Prepared statements remembered per connection.
const MAX_STATEMENTS: usize = 1024;

/// What a pending command makes of its response.
#[derive(Debug)]
enum Waiting {
    /// A statement: a row (COM_QUERY, COM_STMT_EXECUTE).
    Statement,
    /// COM_STMT_PREPARE: its OK carries the statement id; an error is a row.
    Prepare(String),
    /// COM_INIT_DB: its OK changes the database.
    InitDb(String),
    /// Any other command with a response (ping, reset, ...): no row.
    Other,
}

#[derive(Debug)]
struct Pending {
    row: DbRow,
    at: i64,
    waiting: Waiting,
}

/// One direction's bytes, reassembled into packets.
#[derive(Debug, Default)]
struct Stream {
    /// A packet under way: its header and the payload bytes seen so far.
    partial: Vec<u8>,
    /// Uncaptured bytes of a packet that was cut, still to come.
    skip: u64,
    /// The packet under way was cut short.
    cut: bool,
}

fn packet_len(header: &[u8]) -> usize {
    u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize
}

impl Stream {
    /// Feeds one send or receive (`data` captured of `moved` bytes) and
    /// hands out each packet it completes: (sequence id, payload, cut).
    fn feed(&mut self, data: &[u8], moved: u64, out: &mut Vec<(u8, Vec<u8>, bool)>) {
        let mut input = data;
        let mut uncaptured = moved.saturating_sub(data.len() as u64);
        if self.skip > 0 {
            let n = (self.skip as usize).min(input.len());
            input = &input[n..];
            self.skip -= n as u64;
            let m = self.skip.min(uncaptured);
            self.skip -= m;
            uncaptured -= m;
        }
        for &byte in input {
            if self.skip > 0 {
                // (a packet cut at KEEP bytes, its rest in this capture)
                self.skip -= 1;
                continue;
            }
            self.partial.push(byte);
            if self.partial.len() < 4 {
                continue;
            }
            let total = 4 + packet_len(&self.partial);
            if self.partial.len() == total {
                self.emit(out);
            } else if self.partial.len() == 4 + KEEP {
                self.skip = (total - self.partial.len()) as u64;
                self.cut = true;
                self.emit(out);
            }
        }
        if self.partial.len() >= 4 && self.partial.len() == 4 + packet_len(&self.partial) {
            self.emit(out); // an empty payload
        }
        if uncaptured == 0 {
            return;
        }
        if self.skip > 0 {
            let m = self.skip.min(uncaptured);
            self.skip -= m;
            uncaptured -= m;
        } else if self.partial.len() >= 4 {
            // the packet under way goes on in the uncaptured bytes
            let rest = (4 + packet_len(&self.partial) - self.partial.len()) as u64;
            self.cut = true;
            self.emit(out);
            let m = rest.min(uncaptured);
            self.skip = rest - m;
            uncaptured -= m;
        }
        if uncaptured > 0 {
            // bytes of packets never seen: the framing is lost
            self.partial.clear();
            self.skip = 0;
        }
    }

    fn emit(&mut self, out: &mut Vec<(u8, Vec<u8>, bool)>) {
        let seq = self.partial[3];
        let payload = self.partial.split_off(4);
        self.partial.clear();
        out.push((seq, payload, std::mem::take(&mut self.cut)));
    }

    /// Forgets a packet under way (the other side started a new exchange).
    fn reset(&mut self) {
        self.partial.clear();
        self.skip = 0;
        self.cut = false;
    }
}

#[derive(Debug, Default)]
pub struct Conn {
    /// Direction of the client's packets, once known.
    client_sent: Option<bool>,
    user: Option<String>,
    database: Option<String>,
    pending: VecDeque<Pending>,
    /// Prepared statements by id, and the last one prepared.
    statements: HashMap<u32, String>,
    last_prepared: Option<u32>,
    from_client: Stream,
    from_server: Stream,
}

/// A NUL-terminated string at the start of `b`, and the rest.
fn c_string(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&x| x == 0) {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl Conn {
    pub fn oldest(&self) -> Option<i64> {
        self.pending.front().map(|p| p.row.meta.header.ts_boot_ns as i64)
    }

    pub fn push(&mut self, c: &Chunk<'_>, redact: bool, out: &mut Vec<DbRow>) {
        if self.client_sent.is_none() {
            // The side is known from a packet that only one side sends
            // first: the server's greeting, or a client's command. Until
            // then nothing is kept (a connection followed mid-way).
            let (seq, first) = match c.data {
                [a, b, d, s, first, ..] if packet_len(&[*a, *b, *d]) > 0 => (*s, *first),
                _ => return,
            };
            match first {
                COM_QUERY | COM_STMT_PREPARE if seq == 0 => self.client_sent = Some(c.sent),
                GREETING if seq == 0 => self.client_sent = Some(!c.sent),
                _ => return,
            }
        }
        let mut packets = Vec::new();
        if Some(c.sent) == self.client_sent {
            self.from_client.feed(c.data, c.bytes, &mut packets);
            for (seq, payload, cut) in packets {
                self.client(c, seq, &payload, cut || c.truncated, redact, out);
            }
        } else {
            self.from_server.feed(c.data, c.bytes, &mut packets);
            for (seq, payload, _) in packets {
                self.server(c, seq, &payload, out);
            }
        }
    }

    fn client(&mut self, c: &Chunk<'_>, seq: u8, payload: &[u8], cut: bool, redact: bool, out: &mut Vec<DbRow>) {
        if seq == 1 && payload.len() > 32 && self.user.is_none() {
            self.handshake_response(payload);
            return;
        }
        if seq != 0 {
            return; // auth exchange, long data
        }
        let Some((&command, body)) = payload.split_first() else { return };
        let (query, waiting) = match command {
            COM_QUERY => (lossy(body), Waiting::Statement),
            COM_STMT_PREPARE => {
                let text = lossy(body);
                (text.clone(), Waiting::Prepare(text))
            }
            COM_STMT_EXECUTE | COM_STMT_BULK_EXECUTE => {
                let id = u32_at(payload, 1).unwrap_or(0);
                let id = if id == LAST_PREPARED { self.last_prepared.unwrap_or(id) } else { id };
                let text = self.statements.get(&id).cloned().unwrap_or_else(|| format!("(prepared statement {id})"));
                (text, Waiting::Statement)
            }
            COM_STMT_CLOSE => {
                if let Some(id) = u32_at(payload, 1) {
                    self.statements.remove(&id);
                }
                return;
            }
            COM_QUIT | COM_STMT_SEND_LONG_DATA => return, // no response
            COM_INIT_DB => (String::new(), Waiting::InitDb(lossy(body))),
            _ => (String::new(), Waiting::Other),
        };
        // A new command: whatever the server was in the middle of is over.
        self.from_server.reset();
        let mut row = DbRow {
            meta: c.meta,
            role: Role::of_request(c.sent),
            protocol: "mysql",
            user: self.user.clone(),
            database: self.database.clone(),
            query: if redact { redact::sql(&query, true) } else { query },
            outcome: None,
            error: None,
            tag: None,
            latency_ns: None,
            truncated: cut,
        };
        row.meta.header.ts_boot_ns = c.at as u64;
        if self.pending.len() >= MAX_PENDING {
            let p = self.pending.pop_front().expect("full");
            if makes_row(&p.waiting) {
                out.push(p.row);
            }
        }
        self.pending.push_back(Pending { row, at: c.at, waiting });
    }

    /// HandshakeResponse41: flags(4) max_packet(4) charset(1) reserved(23)
    /// user\0 auth [database\0] ...
    fn handshake_response(&mut self, payload: &[u8]) {
        let flags = u32_at(payload, 0).unwrap_or(0);
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
    }

    fn server(&mut self, c: &Chunk<'_>, seq: u8, payload: &[u8], out: &mut Vec<DbRow>) {
        // A response starts at sequence 1; the rest of a result set follows.
        if seq != 1 {
            return;
        }
        let Some(mut p) = self.pending.pop_front() else { return };
        let first = payload.first().copied();
        match first {
            Some(ERR) => {
                p.row.outcome = Some("error");
                // code(2) then, in protocol 4.1, '#' and a 5-character SQL state
                let msg = payload.get(3..).unwrap_or(&[]);
                let msg = if msg.first() == Some(&b'#') { msg.get(6..).unwrap_or(&[]) } else { msg };
                p.row.error = Some(lossy(msg));
            }
            Some(OK) => {
                p.row.outcome = Some("ok");
                p.row.tag = payload.get(1).filter(|&&n| n < 0xfb).map(|n| format!("OK {n}"));
            }
            _ => {
                p.row.outcome = Some("ok");
                p.row.tag = Some("RESULTSET".into());
            }
        }
        p.row.latency_ns = Some(latency(p.at, c.at));
        match p.waiting {
            Waiting::Statement => out.push(p.row),
            Waiting::Prepare(text) if first == Some(OK) => {
                // COM_STMT_PREPARE_OK: status(1) statement_id(4) ...
                if let Some(id) = u32_at(payload, 1) {
                    if self.statements.len() >= MAX_STATEMENTS {
                        self.statements.clear();
                    }
                    self.statements.insert(id, text);
                    self.last_prepared = Some(id);
                }
            }
            // a statement that failed to prepare is a failed statement
            Waiting::Prepare(_) => out.push(p.row),
            Waiting::InitDb(db) if first == Some(OK) => self.database = Some(db).filter(|d| !d.is_empty()),
            Waiting::InitDb(_) | Waiting::Other => {}
        }
    }

    pub fn expire(&mut self, now: i64, force: bool, out: &mut Vec<DbRow>) {
        while self.pending.front().is_some_and(|p| force || now.saturating_sub(p.at) > REQUEST_TIMEOUT_NS) {
            let p = self.pending.pop_front().expect("front");
            if makes_row(&p.waiting) {
                out.push(p.row);
            }
        }
    }
}

/// Whether a command is a row of its own (when its response never comes, too).
fn makes_row(w: &Waiting) -> bool {
    matches!(w, Waiting::Statement | Waiting::Prepare(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        p.push(seq);
        p.extend_from_slice(payload);
        p
    }

    fn feed(s: &mut Stream, data: &[u8], moved: usize) -> Vec<(u8, Vec<u8>, bool)> {
        let mut out = Vec::new();
        s.feed(data, moved as u64, &mut out);
        out
    }

    #[test]
    fn packets_split_over_syscalls_and_many_in_one() {
        let mut s = Stream::default();
        let q = packet(0, b"\x03SELECT 1");
        // a server reads the header, then the payload
        assert!(feed(&mut s, &q[..4], 4).is_empty());
        assert_eq!(feed(&mut s, &q[4..], q.len() - 4), vec![(0, b"\x03SELECT 1".to_vec(), false)]);
        // two packets and the start of a third in one read
        let mut bytes = packet(1, &[1]);
        bytes.extend(packet(2, b"abc"));
        bytes.extend(&packet(3, b"xyz")[..5]);
        let got = feed(&mut s, &bytes, bytes.len());
        assert_eq!(got, vec![(1, vec![1], false), (2, b"abc".to_vec(), false)]);
        assert_eq!(feed(&mut s, b"yz", 2), vec![(3, b"xyz".to_vec(), false)]);
        // an empty payload
        assert_eq!(feed(&mut s, &packet(4, b""), 4), vec![(4, Vec::new(), false)]);
    }

    #[test]
    fn a_packet_longer_than_captured_is_cut_and_its_rest_skipped() {
        let mut s = Stream::default();
        let long = packet(0, &[b'a'; 10_000]);
        // 4 KiB captured of 10 004 bytes moved
        let got = feed(&mut s, &long[..4096], long.len());
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].0, got[0].1.len(), got[0].2), (0, 4092, true));
        // the next packet is read whole
        assert_eq!(feed(&mut s, &packet(1, b"ok"), 6), vec![(1, b"ok".to_vec(), false)]);
        // cut inside one syscall's capture: KEEP bytes kept, the rest skipped
        let mut bytes = packet(0, &[b'b'; 5000]);
        bytes.extend(packet(1, b"next"));
        let got = feed(&mut s, &bytes, bytes.len());
        assert_eq!(got.iter().map(|p| (p.0, p.1.len(), p.2)).collect::<Vec<_>>(), vec![(0, KEEP, true), (1, 4, false)]);
    }

    #[test]
    fn lost_framing_starts_again_at_the_next_syscall() {
        let mut s = Stream::default();
        // two packets moved, only part of the first captured
        let mut bytes = packet(0, &[b'a'; 100]);
        bytes.extend(packet(1, b"lost"));
        let got = feed(&mut s, &bytes[..50], bytes.len());
        assert_eq!(got.len(), 1);
        assert!(got[0].2, "cut");
        assert_eq!(feed(&mut s, &packet(0, b"\x03SELECT 2"), 13), vec![(0, b"\x03SELECT 2".to_vec(), false)]);
    }
}
