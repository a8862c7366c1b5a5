//! DNS over UDP (port 53), decoded with `simple-dns`; questions are paired
//! with answers by message id.

use super::{latency, Chunk, DnsRow, Role, MAX_PENDING, REQUEST_TIMEOUT_NS};
use simple_dns::rdata::RData;
use simple_dns::{Packet, PacketFlag, QTYPE};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug)]
struct Pending {
    row: DnsRow,
    at: i64,
    sent: bool,
}

#[derive(Debug, Default)]
pub struct Conn {
    pending: VecDeque<Pending>,
}

fn qtype_name(t: QTYPE) -> String {
    match t {
        QTYPE::TYPE(t) => format!("{t:?}"),
        other => format!("{other:?}"),
    }
}

fn rcode_name(p: &Packet<'_>) -> String {
    match p.rcode() {
        simple_dns::RCODE::NoError => "NOERROR".into(),
        simple_dns::RCODE::FormatError => "FORMERR".into(),
        simple_dns::RCODE::ServerFailure => "SERVFAIL".into(),
        simple_dns::RCODE::NameError => "NXDOMAIN".into(),
        simple_dns::RCODE::NotImplemented => "NOTIMP".into(),
        simple_dns::RCODE::Refused => "REFUSED".into(),
        other => format!("{other:?}").to_uppercase(),
    }
}

/// The answers as text: addresses, names, or the record type.
fn answers(p: &Packet<'_>) -> String {
    let parts: Vec<String> = p
        .answers
        .iter()
        .map(|rr| match &rr.rdata {
            RData::A(a) => Ipv4Addr::from(a.address).to_string(),
            RData::AAAA(a) => Ipv6Addr::from(a.address).to_string(),
            RData::CNAME(n) => n.0.to_string(),
            RData::PTR(n) => n.0.to_string(),
            other => format!("{:?}", other.type_code()),
        })
        .collect();
    parts.join(", ")
}

impl Conn {
    pub fn oldest(&self) -> Option<i64> {
        self.pending.iter().map(|p| p.row.meta.header.ts_boot_ns as i64).min()
    }

    pub fn push(&mut self, c: &Chunk<'_>, out: &mut Vec<DnsRow>) {
        let Ok(packet) = Packet::parse(c.data) else {
            return;
        };
        let Some(q) = packet.questions.first() else {
            return;
        };
        let id = packet.id();
        if !packet.has_flags(PacketFlag::RESPONSE) {
            let mut row = DnsRow {
                meta: c.meta,
                role: Role::of_request(c.sent),
                id,
                name: q.qname.to_string(),
                qtype: qtype_name(q.qtype),
                rcode: None,
                answers: None,
                latency_ns: None,
            };
            row.meta.header.ts_boot_ns = c.at as u64;
            if self.pending.len() >= MAX_PENDING {
                out.push(self.pending.pop_front().expect("full").row);
            }
            self.pending.push_back(Pending { row, at: c.at, sent: c.sent });
            return;
        }
        let found = self.pending.iter().position(|p| p.row.id == id && p.sent != c.sent);
        let (mut row, latency_ns) = match found {
            Some(i) => {
                let p = self.pending.remove(i).expect("found");
                (p.row, Some(latency(p.at, c.at)))
            }
            // An answer to a question sysql did not see (e.g. sent by sendmmsg).
            None => {
                let mut row = DnsRow {
                    meta: c.meta,
                    role: Role::of_request(!c.sent),
                    id,
                    name: q.qname.to_string(),
                    qtype: qtype_name(q.qtype),
                    rcode: None,
                    answers: None,
                    latency_ns: None,
                };
                row.meta.header.ts_boot_ns = c.at as u64;
                (row, None)
            }
        };
        row.rcode = Some(rcode_name(&packet));
        row.answers = Some(answers(&packet));
        row.latency_ns = latency_ns;
        out.push(row);
    }

    pub fn expire(&mut self, now: i64, force: bool, out: &mut Vec<DnsRow>) {
        while self.pending.front().is_some_and(|p| force || now.saturating_sub(p.at) > REQUEST_TIMEOUT_NS) {
            out.push(self.pending.pop_front().expect("front").row);
        }
    }
}
