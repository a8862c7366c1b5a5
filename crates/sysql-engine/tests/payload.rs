//! The payload tables over synthetic records: payload records built byte for
//! byte as the kernel writes them go through the decoder, the connection
//! tracking and the parsers, and the rows are checked exactly: HTTP
//! keep-alive and pipelining, bodies split over syscalls, requests with no
//! response, PostgreSQL simple and extended protocol (named statements),
//! truncated statements, MySQL, DNS, redaction, and live streams.

use bytes::BytesMut;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;
use pgwire::messages::extendedquery::{Bind, Execute, Parse, Sync as PgSync};
use pgwire::messages::response::{CommandComplete, ErrorResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::Startup;
use pgwire::messages::Message;
use std::time::Duration;
use sysql_engine::payload::PayloadConfig;
use sysql_engine::{Engine, EngineConfig, Ingest};
use sysql_events::*;

const MS: i64 = 1_000_000;

struct Conn {
    pid: u32,
    sock: u64,
    comm: &'static str,
    lport: u16,
    rport: u16,
    proto: u8,
}

/// One payload record: `ret` bytes moved, of which `data` were captured.
fn record(c: &Conn, at_ms: i64, syscall: u32, data: &[u8], ret: usize) -> Vec<u8> {
    let mut e: PayloadEvent = zeroed();
    e.h.kind = KIND_PAYLOAD;
    e.h.syscall = syscall;
    e.h.ts_boot_ns = (at_ms * MS) as u64;
    e.h.ret = ret as i64;
    e.h.pid = c.pid;
    e.h.tid = c.pid;
    e.h.comm[..c.comm.len()].copy_from_slice(c.comm.as_bytes());
    if data.len() < ret {
        e.h.flags |= F_DATA_TRUNCATED;
    }
    e.sock_id = c.sock;
    e.fd = 7;
    e.sk_family = 2;
    e.sk_type = if c.proto == PROTO_DNS { 2 } else { 1 };
    e.protocol = c.proto;
    e.lport = c.lport;
    e.rport = c.rport;
    e.laddr[..4].copy_from_slice(&[127, 0, 0, 1]);
    e.raddr[..4].copy_from_slice(&[127, 0, 0, 2]);
    e.data_len = data.len() as u32;
    let mut bytes = as_bytes(&e).to_vec();
    bytes.extend_from_slice(data);
    bytes
}

/// Hands a record to the writer 8-byte aligned, as the ring buffer does.
fn push(ingest: &mut Ingest, record: Vec<u8>) {
    let mut buf = vec![0u8; record.len() + 8];
    let off = buf.as_ptr().align_offset(8);
    buf[off..off + record.len()].copy_from_slice(&record);
    ingest.push(&buf[off..off + record.len()]);
}

fn engine(redact: bool) -> Engine {
    Engine::new(EngineConfig {
        flush_interval: Duration::ZERO,
        payload: PayloadConfig { redact },
        ..EngineConfig::default()
    })
}

fn rows(ctx: &SessionContext, sql: &str) -> Vec<Vec<String>> {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let batches = rt.block_on(async { ctx.sql(sql).await?.collect().await }).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in &batches {
        let f: Vec<_> = b.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap()).collect();
        for r in 0..b.num_rows() {
            out.push(f.iter().map(|x| x.value(r).to_string()).collect());
        }
    }
    out
}

fn r(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

const SERVER: Conn = Conn { pid: 10, sock: 0xa, comm: "nginx", lport: 80, rport: 40000, proto: PROTO_HTTP };
const CLIENT: Conn = Conn { pid: 20, sock: 0xb, comm: "curl", lport: 40000, rport: 80, proto: PROTO_HTTP };

#[test]
fn http_keep_alive_pipelining_and_split_bodies() {
    let e = engine(false);
    let mut ing = e.ingest();
    // Byte counts: request heads 46 and 52+5, 28, 29, 22; responses 38+2,
    // 46+1000 (body in two sends), 45+3, 39 (HEAD: no body).
    // Server side: two pipelined requests in one receive...
    let two = b"GET /a HTTP/1.1\r\nHost: h\r\nUser-Agent: ua/1\r\n\r\nPOST /b?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
    push(&mut ing, record(&SERVER, 1000, SYS_RECVFROM, two, two.len()));
    // ...answered in one send each; the second's body comes in a later send.
    let r1 = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    push(&mut ing, record(&SERVER, 1003, SYS_SENDTO, r1, r1.len()));
    let r2 = b"HTTP/1.1 201 Created\r\nContent-Length: 1000\r\n\r\n";
    push(&mut ing, record(&SERVER, 1010, SYS_WRITEV, r2, r2.len()));
    push(&mut ing, record(&SERVER, 1011, SYS_WRITE, b"", 600)); // body: counted, not copied
    push(&mut ing, record(&SERVER, 1012, SYS_WRITE, b"", 400));
    // Keep-alive: a third request later, with both responses in one receive on the client.
    let q3 = b"GET /c HTTP/1.1\r\nHost: h\r\n\r\n";
    push(&mut ing, record(&CLIENT, 2000, SYS_SENDTO, q3, q3.len()));
    let q4 = b"HEAD /d HTTP/1.1\r\nHost: h\r\n\r\n";
    push(&mut ing, record(&CLIENT, 2001, SYS_SENDTO, q4, q4.len()));
    let both = b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n";
    push(&mut ing, record(&CLIENT, 2005, SYS_RECVFROM, both, both.len()));
    // A request never answered.
    let q5 = b"GET /lost HTTP/1.1\r\n\r\n";
    push(&mut ing, record(&CLIENT, 3000, SYS_SENDTO, q5, q5.len()));
    ing.finish_payloads();

    let ctx = e.session().unwrap();
    let got = rows(
        &ctx,
        "SELECT comm, role, method, path, host, user_agent, status, latency_ns, request_bytes, response_bytes,
                local_port, remote_addr, version, truncated
         FROM http_requests ORDER BY ts",
    );
    assert_eq!(
        got,
        vec![
            r(&[
                "nginx",
                "server",
                "GET",
                "/a",
                "h",
                "ua/1",
                "200",
                "3000000",
                "46",
                "40",
                "80",
                "127.0.0.2",
                "HTTP/1.1",
                "false"
            ]),
            r(&[
                "nginx",
                "server",
                "POST",
                "/b?x=1",
                "h",
                "NULL",
                "201",
                "10000000",
                "57",
                "1046",
                "80",
                "127.0.0.2",
                "HTTP/1.1",
                "false"
            ]),
            r(&[
                "curl",
                "client",
                "GET",
                "/c",
                "h",
                "NULL",
                "404",
                "5000000",
                "28",
                "48",
                "40000",
                "127.0.0.2",
                "HTTP/1.1",
                "false"
            ]),
            r(&[
                "curl",
                "client",
                "HEAD",
                "/d",
                "h",
                "NULL",
                "200",
                "4000000",
                "29",
                "39",
                "40000",
                "127.0.0.2",
                "HTTP/1.1",
                "false"
            ]),
            r(&[
                "curl",
                "client",
                "GET",
                "/lost",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "22",
                "NULL",
                "40000",
                "127.0.0.2",
                "HTTP/1.1",
                "false"
            ]),
        ]
    );
    let stats = rows(&ctx, "SELECT captured, truncated FROM sysql_stats WHERE table_name = 'http_requests'");
    assert_eq!(stats, vec![r(&["5", "0"])]);
}

#[test]
fn a_request_with_no_response_is_a_row_after_its_timeout() {
    let e = engine(false);
    let mut ing = e.ingest();
    let q = b"GET /slow HTTP/1.1\r\n\r\n";
    push(&mut ing, record(&CLIENT, 1000, SYS_SENDTO, q, q.len()));
    ing.tick(5_000 * MS);
    let ctx = e.session().unwrap();
    assert_eq!(rows(&ctx, "SELECT count(*) FROM http_requests"), vec![r(&["0"])], "still waiting at 5 s");
    ing.tick(11_001 * MS);
    assert_eq!(rows(&ctx, "SELECT path, status FROM http_requests"), vec![r(&["/slow", "NULL"])]);
}

fn pg(msgs: &[&dyn Fn(&mut BytesMut)]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    for m in msgs {
        m(&mut buf);
    }
    buf.to_vec()
}

const PG_CLIENT: Conn = Conn { pid: 30, sock: 0xc, comm: "psql", lport: 50000, rport: 5432, proto: PROTO_PGSQL };
const PG_SERVER: Conn = Conn { pid: 31, sock: 0xd, comm: "postgres", lport: 5432, rport: 50000, proto: PROTO_PGSQL };

fn startup() -> Vec<u8> {
    let mut s = Startup::default();
    s.parameters.insert("user".into(), "alice".into());
    s.parameters.insert("database".into(), "shop".into());
    pg(&[&|b| s.encode(b).unwrap()])
}

fn ready() -> impl Fn(&mut BytesMut) {
    |b| ReadyForQuery::new(TransactionStatus::Idle).encode(b).unwrap()
}

#[test]
fn postgres_simple_extended_named_statements_and_errors() {
    let e = engine(false);
    let mut ing = e.ingest();
    let c = &PG_CLIENT;
    push(&mut ing, {
        let s = startup();
        record(c, 1, SYS_SENDTO, &s, s.len())
    });
    // simple query with two statements: one row, finished by ReadyForQuery
    let q = pg(&[&|b| Query::new("SELECT 1; SELECT 2".into()).encode(b).unwrap()]);
    push(&mut ing, record(c, 100, SYS_SENDTO, &q, q.len()));
    let resp = pg(&[
        &|b| CommandComplete::new("SELECT 1".into()).encode(b).unwrap(),
        &|b| CommandComplete::new("SELECT 1".into()).encode(b).unwrap(),
        &ready(),
    ]);
    push(&mut ing, record(c, 102, SYS_RECVFROM, &resp, resp.len()));
    // extended: a named statement parsed and executed...
    let ext = pg(&[
        &|b| Parse::new(Some("s1".into()), "SELECT * FROM orders WHERE id = $1".into(), vec![]).encode(b).unwrap(),
        &|b| Bind::new(None, Some("s1".into()), vec![], vec![Some("7".into())], vec![]).encode(b).unwrap(),
        &|b| Execute::new(None, 0).encode(b).unwrap(),
        &|b| PgSync::new().encode(b).unwrap(),
    ]);
    push(&mut ing, record(c, 200, SYS_SENDTO, &ext, ext.len()));
    let ok = pg(&[&|b| CommandComplete::new("SELECT 1".into()).encode(b).unwrap(), &ready()]);
    push(&mut ing, record(c, 204, SYS_RECVFROM, &ok, ok.len()));
    // ...then executed again by name alone, and failing
    let again = pg(&[
        &|b| Bind::new(None, Some("s1".into()), vec![], vec![Some("8".into())], vec![]).encode(b).unwrap(),
        &|b| Execute::new(None, 0).encode(b).unwrap(),
        &|b| PgSync::new().encode(b).unwrap(),
    ]);
    push(&mut ing, record(c, 300, SYS_SENDTO, &again, again.len()));
    let err = pg(&[
        &|b| {
            ErrorResponse::new(vec![(b'S', "ERROR".into()), (b'C', "42P01".into()), (b'M', "no such table".into())])
                .encode(b)
                .unwrap()
        },
        &ready(),
    ]);
    // the error arrives in two receives: ReadyForQuery alone is 6 bytes
    let split = err.len() - 6;
    push(&mut ing, record(c, 301, SYS_RECVFROM, &err[..split], split));
    push(&mut ing, record(c, 303, SYS_RECVFROM, &err[split..], 6));
    // a statement longer than the capture: its start is kept, flagged
    let long = format!("SELECT '{}'", "x".repeat(5000));
    let big = pg(&[&|b| Query::new(long.clone()).encode(b).unwrap()]);
    push(&mut ing, record(c, 400, SYS_SENDTO, &big[..SNAP_MAX], big.len()));
    // the server's side of the first query
    let s = &PG_SERVER;
    push(&mut ing, {
        let st = startup();
        record(s, 1, SYS_RECVFROM, &st, st.len())
    });
    push(&mut ing, record(s, 100, SYS_RECVFROM, &q, q.len()));
    push(&mut ing, record(s, 101, SYS_SENDTO, &resp, resp.len()));
    ing.finish_payloads();

    let ctx = e.session().unwrap();
    let got = rows(
        &ctx,
        "SELECT comm, role, protocol, user, database, query, outcome, error, tag, latency_ns, truncated,
                client_port, server_port
         FROM db_queries ORDER BY ts, role",
    );
    let prefix: String = long.chars().take(SNAP_MAX - 5).collect();
    assert_eq!(
        got,
        vec![
            r(&[
                "psql",
                "client",
                "postgres",
                "alice",
                "shop",
                "SELECT 1; SELECT 2",
                "ok",
                "NULL",
                "SELECT 1",
                "2000000",
                "false",
                "50000",
                "5432"
            ]),
            r(&[
                "postgres",
                "server",
                "postgres",
                "alice",
                "shop",
                "SELECT 1; SELECT 2",
                "ok",
                "NULL",
                "SELECT 1",
                "1000000",
                "false",
                "50000",
                "5432"
            ]),
            r(&[
                "psql",
                "client",
                "postgres",
                "alice",
                "shop",
                "SELECT * FROM orders WHERE id = $1",
                "ok",
                "NULL",
                "SELECT 1",
                "4000000",
                "false",
                "50000",
                "5432"
            ]),
            r(&[
                "psql",
                "client",
                "postgres",
                "alice",
                "shop",
                "SELECT * FROM orders WHERE id = $1",
                "error",
                "no such table",
                "NULL",
                "1000000",
                "false",
                "50000",
                "5432"
            ]),
            r(&[
                "psql", "client", "postgres", "alice", "shop", &prefix, "NULL", "NULL", "NULL", "NULL", "true",
                "50000", "5432"
            ]),
        ]
    );
    let stats = rows(&ctx, "SELECT captured, truncated FROM sysql_stats WHERE table_name = 'db_queries'");
    assert_eq!(stats, vec![r(&["5", "1"])]);
}

fn mysql_packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut p = vec![len as u8, (len >> 8) as u8, (len >> 16) as u8, seq];
    p.extend_from_slice(payload);
    p
}

#[test]
fn mysql_queries_and_redaction() {
    let e = engine(true);
    let mut ing = e.ingest();
    let c = Conn { pid: 40, sock: 0xe, comm: "mysqld", lport: 3306, rport: 51000, proto: PROTO_MYSQL };
    let mut q = vec![0x03];
    q.extend_from_slice(b"SELECT * FROM users WHERE name = 'bob' OR 1=1");
    let q = mysql_packet(0, &q);
    push(&mut ing, record(&c, 10, SYS_READ, &q, q.len()));
    let mut err = vec![0xff, 0x7a, 0x04, b'#'];
    err.extend_from_slice(b"42S02Table 'users' doesn't exist");
    let err = mysql_packet(1, &err);
    push(&mut ing, record(&c, 12, SYS_WRITE, &err, err.len()));
    let mut q2 = vec![0x03];
    q2.extend_from_slice(b"UPDATE t SET a = 5");
    let q2 = mysql_packet(0, &q2);
    push(&mut ing, record(&c, 20, SYS_READ, &q2, q2.len()));
    let ok = mysql_packet(1, &[0x00, 0x02, 0x00, 0x02, 0x00, 0x00, 0x00]);
    push(&mut ing, record(&c, 21, SYS_WRITE, &ok, ok.len()));
    ing.finish_payloads();
    let ctx = e.session().unwrap();
    assert_eq!(
        rows(
            &ctx,
            "SELECT role, protocol, query, outcome, error, tag, client_port, latency_ns FROM db_queries ORDER BY ts"
        ),
        vec![
            r(&[
                "server",
                "mysql",
                "SELECT * FROM users WHERE name = ? OR ?=?",
                "error",
                "Table 'users' doesn't exist",
                "NULL",
                "51000",
                "2000000"
            ]),
            r(&["server", "mysql", "UPDATE t SET a = ?", "ok", "NULL", "OK 2", "51000", "1000000"]),
        ]
    );
}

fn dns_message(id: u16, flags: u16, answer: Option<[u8; 4]>) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, answer.is_some() as u8, 0, 0, 0, 0]);
    for label in ["example", "org"] {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    if let Some(ip) = answer {
        m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        m.extend_from_slice(&ip);
    }
    m
}

#[test]
fn dns_questions_paired_by_id() {
    let e = engine(false);
    let mut ing = e.ingest();
    let c = Conn { pid: 50, sock: 0xf, comm: "resolver", lport: 45000, rport: 53, proto: PROTO_DNS };
    let q1 = dns_message(0x1111, 0x0100, None);
    let q2 = dns_message(0x2222, 0x0100, None);
    push(&mut ing, record(&c, 10, SYS_SENDTO, &q1, q1.len()));
    push(&mut ing, record(&c, 11, SYS_SENDTO, &q2, q2.len()));
    // answers out of order; one NXDOMAIN
    let a2 = dns_message(0x2222, 0x8183, None);
    push(&mut ing, record(&c, 15, SYS_RECVFROM, &a2, a2.len()));
    let a1 = dns_message(0x1111, 0x8180, Some([93, 184, 216, 34]));
    push(&mut ing, record(&c, 17, SYS_RECVFROM, &a1, a1.len()));
    // garbage on port 53 is ignored, not a row and not a panic
    push(&mut ing, record(&c, 18, SYS_RECVFROM, b"\x00\x01garbage", 9));
    ing.finish_payloads();
    let ctx = e.session().unwrap();
    assert_eq!(
        rows(&ctx, "SELECT role, id, name, type, rcode, answers, latency_ns, server_port FROM dns_queries ORDER BY ts"),
        vec![
            r(&["client", "4369", "example.org", "A", "NOERROR", "93.184.216.34", "7000000", "53"]),
            r(&["client", "8738", "example.org", "A", "NXDOMAIN", "", "4000000", "53"]),
        ]
    );
}

#[test]
fn mysql_prepared_statements_as_a_server_reads_them() {
    let e = engine(false);
    let mut ing = e.ingest();
    let c = Conn { pid: 41, sock: 0xf, comm: "mariadbd", lport: 3306, rport: 52000, proto: PROTO_MYSQL };
    // MariaDB reads each packet's 4-byte header, then its payload
    let at = std::cell::Cell::new(0);
    let recv = |ing: &mut Ingest, packet: &[u8]| {
        at.set(at.get() + 1);
        push(ing, record(&c, at.get(), SYS_RECVFROM, &packet[..4], 4));
        push(ing, record(&c, at.get(), SYS_RECVFROM, &packet[4..], packet.len() - 4));
    };
    let send = |ing: &mut Ingest, at: i64, packet: &[u8]| push(ing, record(&c, at, SYS_SENDTO, packet, packet.len()));
    // the greeting says which side this is
    send(&mut ing, 0, &mysql_packet(0, b"\x0a10.11.19-MariaDB\0\x01\0\0\0"));
    let mut prepare = vec![0x16];
    prepare.extend_from_slice(b"SELECT name FROM users WHERE id = ?");
    recv(&mut ing, &mysql_packet(0, &prepare));
    // COM_STMT_PREPARE_OK: statement 7, one column, one parameter; then definitions
    let mut reply = mysql_packet(1, &[0x00, 7, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0]);
    reply.extend(mysql_packet(2, b"\x03def"));
    send(&mut ing, 3, &reply);
    for id in [7u32, u32::MAX] {
        let mut execute = vec![0x17];
        execute.extend_from_slice(&id.to_le_bytes());
        execute.extend_from_slice(&[0, 1, 0, 0, 0, 0, 1, 3, 0, 1, 0, 0, 0]);
        recv(&mut ing, &mysql_packet(0, &execute));
        let mut rows = mysql_packet(1, &[1]);
        rows.extend(mysql_packet(2, b"\x03def"));
        send(&mut ing, at.get() + 1, &rows);
    }
    // close (no response), then a statement that fails to prepare
    let mut close = vec![0x19];
    close.extend_from_slice(&7u32.to_le_bytes());
    recv(&mut ing, &mysql_packet(0, &close));
    let mut bad = vec![0x16];
    bad.extend_from_slice(b"SELECT nope FROM users");
    recv(&mut ing, &mysql_packet(0, &bad));
    let mut err = vec![0xff, 0x16, 0x04, b'#'];
    err.extend_from_slice(b"42S22Unknown column 'nope' in 'field list'");
    send(&mut ing, at.get() + 1, &mysql_packet(1, &err));
    // a ping: a response, no row
    recv(&mut ing, &mysql_packet(0, &[0x0e]));
    send(&mut ing, at.get() + 1, &mysql_packet(1, &[0, 0, 0, 2, 0, 0, 0]));
    ing.finish_payloads();
    let ctx = e.session().unwrap();
    assert_eq!(
        rows(&ctx, "SELECT role, query, outcome, error, tag, client_port, truncated FROM db_queries ORDER BY ts"),
        vec![
            r(&["server", "SELECT name FROM users WHERE id = ?", "ok", "NULL", "RESULTSET", "52000", "false"]),
            r(&["server", "SELECT name FROM users WHERE id = ?", "ok", "NULL", "RESULTSET", "52000", "false"]),
            r(&[
                "server",
                "SELECT nope FROM users",
                "error",
                "Unknown column 'nope' in 'field list'",
                "NULL",
                "52000",
                "false"
            ]),
        ]
    );
}
