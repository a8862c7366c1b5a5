//! Event layouts shared by sysql's kernel programs and its user side.
//!
//! The C header `ebpf/include/sysql_events.h` is the one home of these layouts;
//! the structs below mirror it field for field, and the build script checks
//! every size and offset against the C compiler's answer, so a change on one
//! side that is not made on the other fails the build.
//!
//! Reading records out of ring buffer bytes is [`decode`]: it never panics on
//! short, garbled or misaligned input and says what was wrong instead.
//! Reading them out of the kernel's ring is [`ring`]. These two modules hold
//! sysql's only `unsafe`.

mod decode;
pub mod ring;

pub use decode::{as_bytes, decode, zeroed, DecodeError, Pod, Record, Widen};

/// Sizes, offsets and `#define`s as the C compiler sees them (build.rs).
pub mod c_layout {
    include!(concat!(env!("OUT_DIR"), "/c_layout.rs"));
}

/// Which table a record feeds; also the index into the kernel's loss counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Table {
    Opens = 0,
    Connects = 1,
    Execs = 2,
    /// HTTP/1.x exchanges, from socket payloads.
    HttpRequests = 3,
    /// PostgreSQL and MySQL queries, from socket payloads.
    DbQueries = 4,
    /// DNS queries and answers, from socket payloads.
    DnsQueries = 5,
    Accepts = 6,
    /// Process exits.
    Exits = 7,
}

impl Table {
    /// Every table fed by the kernel, in loss-counter order.
    pub const ALL: [Table; TABLE_COUNT] = [
        Table::Opens,
        Table::Connects,
        Table::Execs,
        Table::HttpRequests,
        Table::DbQueries,
        Table::DnsQueries,
        Table::Accepts,
        Table::Exits,
    ];

    /// The traced syscalls whose events feed the table, by name (`exits`
    /// come from the scheduler, no syscall).
    pub fn syscalls(self) -> &'static [&'static str] {
        match self {
            Table::Opens => &["open", "openat", "openat2", "creat"],
            Table::Connects => &["connect"],
            Table::Accepts => &["accept", "accept4"],
            Table::Execs => &["execve", "execveat"],
            Table::Exits => &[],
            Table::HttpRequests | Table::DbQueries | Table::DnsQueries => {
                &["read", "write", "recvfrom", "sendto", "recvmsg", "sendmsg", "readv", "writev"]
            }
        }
    }

    /// The SQL name of the table.
    pub fn name(self) -> &'static str {
        match self {
            Table::Opens => "opens",
            Table::Connects => "connects",
            Table::Execs => "execs",
            Table::HttpRequests => "http_requests",
            Table::DbQueries => "db_queries",
            Table::DnsQueries => "dns_queries",
            Table::Accepts => "accepts",
            Table::Exits => "exits",
        }
    }
}

pub const COMM_LEN: usize = 16;
pub const PATH_LEN: usize = 256;
pub const FILENAME_LEN: usize = 256;
pub const ARG_LEN: usize = 256;
pub const ARGV_LEN: usize = 2048;
pub const MAX_ARGS: usize = 32;
pub const SOCKADDR_LEN: usize = 112;
pub const TABLE_COUNT: usize = 8;
/// The most payload bytes one record carries.
pub const SNAP_MAX: usize = 4096;

pub const KIND_OPEN: u32 = 1;
pub const KIND_CONNECT: u32 = 2;
pub const KIND_EXEC: u32 = 3;
pub const KIND_PAYLOAD: u32 = 4;
/// The outcome of a TCP connect (it left SYN_SENT).
pub const KIND_CONNECT_DONE: u32 = 5;
pub const KIND_ACCEPT: u32 = 6;
pub const KIND_EXIT: u32 = 7;

pub const SYS_OPEN: u32 = 0;
pub const SYS_OPENAT: u32 = 1;
pub const SYS_OPENAT2: u32 = 2;
pub const SYS_CREAT: u32 = 3;
pub const SYS_CONNECT: u32 = 0;
pub const SYS_EXECVE: u32 = 0;
pub const SYS_EXECVEAT: u32 = 1;
pub const SYS_ACCEPT: u32 = 0;
pub const SYS_ACCEPT4: u32 = 1;
pub const SYS_EXIT: u32 = 0;
/// Payload syscalls: odd numbers send, even ones receive.
pub const SYS_READ: u32 = 0;
pub const SYS_WRITE: u32 = 1;
pub const SYS_RECVFROM: u32 = 2;
pub const SYS_SENDTO: u32 = 3;
pub const SYS_RECVMSG: u32 = 4;
pub const SYS_SENDMSG: u32 = 5;
pub const SYS_READV: u32 = 6;
pub const SYS_WRITEV: u32 = 7;

pub const PROTO_HTTP: u8 = 1;
pub const PROTO_PGSQL: u8 = 2;
pub const PROTO_MYSQL: u8 = 3;
pub const PROTO_DNS: u8 = 4;

/// The capture filter: dimensions (`struct sysql_filter`'s masks), the marks
/// of a value in a dimension's map, and how many values a dimension holds.
pub mod filter {
    pub const COMM: u32 = 1;
    pub const PID: u32 = 2;
    pub const UID: u32 = 4;
    pub const CGROUP: u32 = 8;
    pub const PATH: u32 = 16;
    pub const MARK_ONLY: u32 = 1;
    pub const MARK_EXCLUDE: u32 = 2;
    pub const VALUES: u32 = 1024;
}

/// Handlers of the kernel's syscall table (`sysql_syscalls`: syscall number
/// to handler), read by the `sys_enter` / `sys_exit` pair; 0 is "not traced".
pub mod handler {
    /// Syscall numbers below this have a slot in the table.
    pub const NR_MAX: u32 = 1024;
    pub const OPEN: u32 = 1;
    pub const OPENAT: u32 = 2;
    pub const OPENAT2: u32 = 3;
    pub const CREAT: u32 = 4;
    pub const CONNECT: u32 = 5;
    pub const ACCEPT: u32 = 6;
    pub const ACCEPT4: u32 = 7;
    pub const EXECVE: u32 = 8;
    pub const EXECVEAT: u32 = 9;
    pub const READ: u32 = 10;
    pub const WRITE: u32 = 11;
    pub const RECVFROM: u32 = 12;
    pub const SENDTO: u32 = 13;
    pub const RECVMSG: u32 = 14;
    pub const SENDMSG: u32 = 15;
    pub const READV: u32 = 16;
    pub const WRITEV: u32 = 17;
}

/// Header flag: the path or filename was longer than its buffer.
pub const F_PATH_TRUNCATED: u32 = 1 << 0;
/// Header flag: more arguments or argument bytes than were captured.
pub const F_ARGV_TRUNCATED: u32 = 1 << 1;
/// Header flag: a user-space pointer could not be read.
pub const F_USER_FAULT: u32 = 1 << 2;
/// Header flag: the caller's addrlen was larger than the captured address.
pub const F_ADDR_TRUNCATED: u32 = 1 << 3;
/// Header flag: the syscall moved more payload bytes than were captured.
pub const F_DATA_TRUNCATED: u32 = 1 << 4;

/// Common to every record (`struct sysql_header`).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct Header {
    pub kind: u32,
    pub syscall: u32,
    pub ts_boot_ns: u64,
    pub latency_ns: u64,
    pub cgroup_id: u64,
    pub ret: i64,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub flags: u32,
    pub comm: [u8; COMM_LEN],
}

/// open, openat, openat2, creat (`struct sysql_open_event`).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct OpenEvent {
    pub h: Header,
    pub flags: u64,
    pub dfd: i32,
    pub mode: u32,
    pub path_len: u32,
    pub _pad: u32,
    pub path: [u8; PATH_LEN],
}

/// connect (`struct sysql_connect_event`).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct ConnectEvent {
    pub h: Header,
    pub fd: i32,
    pub addrlen: u32,
    pub sk_family: u16,
    pub sk_type: u16,
    pub sk_protocol: u16,
    /// The socket's local port at exit, host order (0 if none).
    pub sport: u16,
    /// The kernel socket: pairs a [`ConnectDoneEvent`] with its connect.
    pub sock_id: u64,
    /// Network namespace (inode number) of the socket, or of the task.
    pub netns: u32,
    pub _pad: u32,
    /// The socket's local address at exit (IPv4 in the first 4 bytes).
    pub saddr: [u8; 16],
    pub addr: [u8; SOCKADDR_LEN],
}

/// The outcome of a TCP connect (`struct sysql_connect_done_event`): the
/// header's `ts_boot_ns`, `pid` and `tid` are the connect's, `latency_ns`
/// runs to the outcome, `ret` is 0 (established) or -errno.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct ConnectDoneEvent {
    pub h: Header,
    pub sock_id: u64,
    pub sport: u16,
    pub _pad0: u16,
    pub _pad1: u32,
    pub saddr: [u8; 16],
}

/// accept, accept4 (`struct sysql_accept_event`).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct AcceptEvent {
    pub h: Header,
    pub fd: i32,
    pub flags: u32,
    pub sk_family: u16,
    pub sk_type: u16,
    pub sk_protocol: u16,
    pub lport: u16,
    pub rport: u16,
    pub _pad0: u16,
    pub netns: u32,
    pub laddr: [u8; 16],
    pub raddr: [u8; 16],
}

/// A process's end (`struct sysql_exit_event`).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct ExitEvent {
    pub h: Header,
    /// When the process started (boot clock).
    pub start_boot_ns: u64,
    /// The wait status: exit status << 8, or the signal (| 0x80 with a core dump).
    pub exit_code: u32,
    pub _pad: u32,
}

/// execve, execveat (`struct sysql_exec_event`).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct ExecEvent {
    pub h: Header,
    pub filename_len: u32,
    pub argv_len: u32,
    pub argc: u32,
    pub dfd: i32,
    pub filename: [u8; FILENAME_LEN],
    pub argv: [u8; ARGV_LEN],
}

/// Socket payload (`struct sysql_payload_event`): this fixed part, then
/// `data_len` bytes, which [`decode`] hands out next to it.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct PayloadEvent {
    pub h: Header,
    pub sock_id: u64,
    pub fd: i32,
    pub sk_family: u16,
    pub sk_type: u16,
    pub protocol: u8,
    pub _pad0: u8,
    pub lport: u16,
    pub rport: u16,
    pub _pad1: u16,
    pub data_len: u32,
    pub _pad2: u32,
    pub laddr: [u8; 16],
    pub raddr: [u8; 16],
}

impl PayloadEvent {
    /// True if the syscall sent the bytes (write, sendto, sendmsg, writev).
    pub fn is_send(&self) -> bool {
        self.h.syscall & 1 == 1
    }
}

/// Bytes up to the first NUL, at most `len` of them.
fn c_str(buf: &[u8], len: usize) -> &[u8] {
    let buf = &buf[..len.min(buf.len())];
    match buf.iter().position(|&b| b == 0) {
        Some(end) => &buf[..end],
        None => buf,
    }
}

impl Header {
    /// The task's command name, without the trailing NULs.
    pub fn comm(&self) -> &[u8] {
        c_str(&self.comm, COMM_LEN)
    }
}

impl OpenEvent {
    /// The path as passed to the syscall (possibly truncated, see the flags).
    pub fn path(&self) -> &[u8] {
        c_str(&self.path, self.path_len as usize)
    }
}

impl ExecEvent {
    /// The filename as passed to the syscall.
    pub fn filename(&self) -> &[u8] {
        c_str(&self.filename, self.filename_len as usize)
    }

    /// The captured arguments, in order.
    pub fn args(&self) -> impl Iterator<Item = &[u8]> {
        let used = (self.argv_len as usize).min(ARGV_LEN);
        let mut rest = &self.argv[..used];
        let mut left = self.argc as usize;
        std::iter::from_fn(move || {
            if left == 0 || rest.is_empty() {
                return None;
            }
            left -= 1;
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            let arg = &rest[..end];
            rest = rest.get(end + 1..).unwrap_or(&[]);
            Some(arg)
        })
    }
}

impl ConnectEvent {
    /// The captured part of the sockaddr.
    pub fn addr(&self) -> &[u8] {
        &self.addr[..(self.addrlen as usize).min(SOCKADDR_LEN)]
    }
}

/// Compile-time proof that the Rust mirror matches the C header.
mod layout_check {
    use super::c_layout::*;
    use super::*;
    use core::mem::{offset_of, size_of};

    macro_rules! same {
        ($a:expr, $b:expr) => {
            const _: () = assert!($a == $b, "sysql_events.h and sysql-events disagree");
        };
    }

    same!(size_of::<Header>(), HEADER_SIZE);
    same!(offset_of!(Header, syscall), HEADER_SYSCALL);
    same!(offset_of!(Header, ts_boot_ns), HEADER_TS);
    same!(offset_of!(Header, latency_ns), HEADER_LATENCY);
    same!(offset_of!(Header, cgroup_id), HEADER_CGROUP);
    same!(offset_of!(Header, ret), HEADER_RET);
    same!(offset_of!(Header, pid), HEADER_PID);
    same!(offset_of!(Header, tid), HEADER_TID);
    same!(offset_of!(Header, ppid), HEADER_PPID);
    same!(offset_of!(Header, uid), HEADER_UID);
    same!(offset_of!(Header, gid), HEADER_GID);
    same!(offset_of!(Header, flags), HEADER_FLAGS);
    same!(offset_of!(Header, comm), HEADER_COMM);

    same!(size_of::<OpenEvent>(), OPEN_SIZE);
    same!(offset_of!(OpenEvent, flags), OPEN_FLAGS);
    same!(offset_of!(OpenEvent, dfd), OPEN_DFD);
    same!(offset_of!(OpenEvent, mode), OPEN_MODE);
    same!(offset_of!(OpenEvent, path_len), OPEN_PATH_LEN);
    same!(offset_of!(OpenEvent, path), OPEN_PATH);

    same!(size_of::<ConnectEvent>(), CONNECT_SIZE);
    same!(offset_of!(ConnectEvent, fd), CONNECT_FD);
    same!(offset_of!(ConnectEvent, addrlen), CONNECT_ADDRLEN);
    same!(offset_of!(ConnectEvent, sk_family), CONNECT_SK_FAMILY);
    same!(offset_of!(ConnectEvent, sk_type), CONNECT_SK_TYPE);
    same!(offset_of!(ConnectEvent, sk_protocol), CONNECT_SK_PROTOCOL);
    same!(offset_of!(ConnectEvent, sport), CONNECT_SPORT);
    same!(offset_of!(ConnectEvent, sock_id), CONNECT_SOCK_ID);
    same!(offset_of!(ConnectEvent, netns), CONNECT_NETNS);
    same!(offset_of!(ConnectEvent, saddr), CONNECT_SADDR);
    same!(offset_of!(ConnectEvent, addr), CONNECT_ADDR);

    same!(size_of::<ConnectDoneEvent>(), CONNECT_DONE_SIZE);
    same!(offset_of!(ConnectDoneEvent, sock_id), CONNECT_DONE_SOCK_ID);
    same!(offset_of!(ConnectDoneEvent, sport), CONNECT_DONE_SPORT);
    same!(offset_of!(ConnectDoneEvent, saddr), CONNECT_DONE_SADDR);

    same!(size_of::<AcceptEvent>(), ACCEPT_SIZE);
    same!(offset_of!(AcceptEvent, fd), ACCEPT_FD);
    same!(offset_of!(AcceptEvent, flags), ACCEPT_FLAGS);
    same!(offset_of!(AcceptEvent, sk_family), ACCEPT_SK_FAMILY);
    same!(offset_of!(AcceptEvent, sk_type), ACCEPT_SK_TYPE);
    same!(offset_of!(AcceptEvent, sk_protocol), ACCEPT_SK_PROTOCOL);
    same!(offset_of!(AcceptEvent, lport), ACCEPT_LPORT);
    same!(offset_of!(AcceptEvent, rport), ACCEPT_RPORT);
    same!(offset_of!(AcceptEvent, netns), ACCEPT_NETNS);
    same!(offset_of!(AcceptEvent, laddr), ACCEPT_LADDR);
    same!(offset_of!(AcceptEvent, raddr), ACCEPT_RADDR);

    same!(size_of::<ExitEvent>(), EXIT_SIZE);
    same!(offset_of!(ExitEvent, start_boot_ns), EXIT_START);
    same!(offset_of!(ExitEvent, exit_code), EXIT_CODE);

    same!(size_of::<ExecEvent>(), EXEC_SIZE);
    same!(offset_of!(ExecEvent, filename_len), EXEC_FILENAME_LEN);
    same!(offset_of!(ExecEvent, argv_len), EXEC_ARGV_LEN);
    same!(offset_of!(ExecEvent, argc), EXEC_ARGC);
    same!(offset_of!(ExecEvent, dfd), EXEC_DFD);
    same!(offset_of!(ExecEvent, filename), EXEC_FILENAME);
    same!(offset_of!(ExecEvent, argv), EXEC_ARGV);

    same!(size_of::<PayloadEvent>(), PAYLOAD_SIZE);
    same!(offset_of!(PayloadEvent, sock_id), PAYLOAD_SOCK_ID);
    same!(offset_of!(PayloadEvent, fd), PAYLOAD_FD);
    same!(offset_of!(PayloadEvent, sk_family), PAYLOAD_SK_FAMILY);
    same!(offset_of!(PayloadEvent, sk_type), PAYLOAD_SK_TYPE);
    same!(offset_of!(PayloadEvent, protocol), PAYLOAD_PROTOCOL);
    same!(offset_of!(PayloadEvent, lport), PAYLOAD_LPORT);
    same!(offset_of!(PayloadEvent, rport), PAYLOAD_RPORT);
    same!(offset_of!(PayloadEvent, data_len), PAYLOAD_DATA_LEN);
    same!(offset_of!(PayloadEvent, laddr), PAYLOAD_LADDR);
    same!(offset_of!(PayloadEvent, raddr), PAYLOAD_RADDR);
    same!(size_of::<PayloadEvent>(), PAYLOAD_DATA);

    same!(COMM_LEN as u64, C_SYSQL_COMM_LEN);
    same!(PATH_LEN as u64, C_SYSQL_PATH_LEN);
    same!(FILENAME_LEN as u64, C_SYSQL_FILENAME_LEN);
    same!(ARG_LEN as u64, C_SYSQL_ARG_LEN);
    same!(ARGV_LEN as u64, C_SYSQL_ARGV_LEN);
    same!(MAX_ARGS as u64, C_SYSQL_MAX_ARGS);
    same!(SOCKADDR_LEN as u64, C_SYSQL_SOCKADDR_LEN);
    same!(KIND_OPEN as u64, C_SYSQL_KIND_OPEN);
    same!(KIND_CONNECT as u64, C_SYSQL_KIND_CONNECT);
    same!(KIND_EXEC as u64, C_SYSQL_KIND_EXEC);
    same!(KIND_CONNECT_DONE as u64, C_SYSQL_KIND_CONNECT_DONE);
    same!(KIND_ACCEPT as u64, C_SYSQL_KIND_ACCEPT);
    same!(KIND_EXIT as u64, C_SYSQL_KIND_EXIT);
    same!(Table::Accepts as u64, C_SYSQL_TABLE_ACCEPTS);
    same!(Table::Exits as u64, C_SYSQL_TABLE_EXITS);
    same!(SYS_ACCEPT as u64, C_SYSQL_SYS_ACCEPT);
    same!(SYS_ACCEPT4 as u64, C_SYSQL_SYS_ACCEPT4);
    same!(SYS_EXIT as u64, C_SYSQL_SYS_EXIT);
    same!(Table::Opens as u64, C_SYSQL_TABLE_OPENS);
    same!(Table::Connects as u64, C_SYSQL_TABLE_CONNECTS);
    same!(Table::Execs as u64, C_SYSQL_TABLE_EXECS);
    same!(TABLE_COUNT as u64, C_SYSQL_TABLE_COUNT);
    same!(SYS_OPEN as u64, C_SYSQL_SYS_OPEN);
    same!(SYS_OPENAT as u64, C_SYSQL_SYS_OPENAT);
    same!(SYS_OPENAT2 as u64, C_SYSQL_SYS_OPENAT2);
    same!(SYS_CREAT as u64, C_SYSQL_SYS_CREAT);
    same!(SYS_EXECVE as u64, C_SYSQL_SYS_EXECVE);
    same!(SYS_EXECVEAT as u64, C_SYSQL_SYS_EXECVEAT);
    same!(F_PATH_TRUNCATED as u64, C_SYSQL_F_PATH_TRUNCATED);
    same!(F_ARGV_TRUNCATED as u64, C_SYSQL_F_ARGV_TRUNCATED);
    same!(F_USER_FAULT as u64, C_SYSQL_F_USER_FAULT);
    same!(F_ADDR_TRUNCATED as u64, C_SYSQL_F_ADDR_TRUNCATED);
    same!(F_DATA_TRUNCATED as u64, C_SYSQL_F_DATA_TRUNCATED);
    same!(SNAP_MAX as u64, C_SYSQL_SNAP_MAX);
    same!(KIND_PAYLOAD as u64, C_SYSQL_KIND_PAYLOAD);
    same!(Table::HttpRequests as u64, C_SYSQL_TABLE_HTTP);
    same!(Table::DbQueries as u64, C_SYSQL_TABLE_DB);
    same!(Table::DnsQueries as u64, C_SYSQL_TABLE_DNS);
    same!(SYS_READ as u64, C_SYSQL_SYS_READ);
    same!(SYS_WRITE as u64, C_SYSQL_SYS_WRITE);
    same!(SYS_RECVFROM as u64, C_SYSQL_SYS_RECVFROM);
    same!(SYS_SENDTO as u64, C_SYSQL_SYS_SENDTO);
    same!(SYS_RECVMSG as u64, C_SYSQL_SYS_RECVMSG);
    same!(SYS_SENDMSG as u64, C_SYSQL_SYS_SENDMSG);
    same!(SYS_READV as u64, C_SYSQL_SYS_READV);
    same!(SYS_WRITEV as u64, C_SYSQL_SYS_WRITEV);
    same!(PROTO_HTTP as u64, C_SYSQL_PROTO_HTTP);
    same!(PROTO_PGSQL as u64, C_SYSQL_PROTO_PGSQL);
    same!(PROTO_MYSQL as u64, C_SYSQL_PROTO_MYSQL);
    same!(PROTO_DNS as u64, C_SYSQL_PROTO_DNS);
    same!(handler::NR_MAX as u64, C_SYSQL_NR_MAX);
    same!(filter::COMM as u64, C_SYSQL_FILTER_COMM);
    same!(filter::PID as u64, C_SYSQL_FILTER_PID);
    same!(filter::UID as u64, C_SYSQL_FILTER_UID);
    same!(filter::CGROUP as u64, C_SYSQL_FILTER_CGROUP);
    same!(filter::PATH as u64, C_SYSQL_FILTER_PATH);
    same!(filter::MARK_ONLY as u64, C_SYSQL_MARK_ONLY);
    same!(filter::MARK_EXCLUDE as u64, C_SYSQL_MARK_EXCLUDE);
    same!(filter::VALUES as u64, C_SYSQL_FILTER_VALUES);
    same!(handler::OPEN as u64, C_SYSQL_H_OPEN);
    same!(handler::OPENAT as u64, C_SYSQL_H_OPENAT);
    same!(handler::OPENAT2 as u64, C_SYSQL_H_OPENAT2);
    same!(handler::CREAT as u64, C_SYSQL_H_CREAT);
    same!(handler::CONNECT as u64, C_SYSQL_H_CONNECT);
    same!(handler::ACCEPT as u64, C_SYSQL_H_ACCEPT);
    same!(handler::ACCEPT4 as u64, C_SYSQL_H_ACCEPT4);
    same!(handler::EXECVE as u64, C_SYSQL_H_EXECVE);
    same!(handler::EXECVEAT as u64, C_SYSQL_H_EXECVEAT);
    same!(handler::READ as u64, C_SYSQL_H_READ);
    same!(handler::WRITE as u64, C_SYSQL_H_WRITE);
    same!(handler::RECVFROM as u64, C_SYSQL_H_RECVFROM);
    same!(handler::SENDTO as u64, C_SYSQL_H_SENDTO);
    same!(handler::RECVMSG as u64, C_SYSQL_H_RECVMSG);
    same!(handler::SENDMSG as u64, C_SYSQL_H_SENDMSG);
    same!(handler::READV as u64, C_SYSQL_H_READV);
    same!(handler::WRITEV as u64, C_SYSQL_H_WRITEV);
}
