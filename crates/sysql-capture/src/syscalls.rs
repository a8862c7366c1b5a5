//! The syscalls sysql traces, by this architecture's numbers: what the
//! loader writes into the kernel's syscall table (`sysql_syscalls`), which
//! the `sys_enter` / `sys_exit` pair reads to pick a handler.

use sysql_events::handler;

/// One traced syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syscall {
    pub name: &'static str,
    /// Its number on this architecture.
    pub nr: u32,
    /// Its handler in the kernel programs (`sysql_events::handler`).
    pub handler: u32,
    /// Socket I/O: traced only when payloads are captured.
    pub payload: bool,
}

const fn sc(name: &'static str, nr: u32, handler: u32, payload: bool) -> Syscall {
    Syscall { name, nr, handler, payload }
}

/// x86-64 (arch/x86/entry/syscalls/syscall_64.tbl).
#[cfg(target_arch = "x86_64")]
pub const SYSCALLS: &[Syscall] = &[
    sc("open", 2, handler::OPEN, false),
    sc("openat", 257, handler::OPENAT, false),
    sc("openat2", 437, handler::OPENAT2, false),
    sc("creat", 85, handler::CREAT, false),
    sc("connect", 42, handler::CONNECT, false),
    sc("accept", 43, handler::ACCEPT, false),
    sc("accept4", 288, handler::ACCEPT4, false),
    sc("execve", 59, handler::EXECVE, false),
    sc("execveat", 322, handler::EXECVEAT, false),
    sc("read", 0, handler::READ, true),
    sc("write", 1, handler::WRITE, true),
    sc("recvfrom", 45, handler::RECVFROM, true),
    sc("sendto", 44, handler::SENDTO, true),
    sc("recvmsg", 47, handler::RECVMSG, true),
    sc("sendmsg", 46, handler::SENDMSG, true),
    sc("readv", 19, handler::READV, true),
    sc("writev", 20, handler::WRITEV, true),
];

/// arm64 (the generic table, include/uapi/asm-generic/unistd.h): no open,
/// no creat.
#[cfg(target_arch = "aarch64")]
pub const SYSCALLS: &[Syscall] = &[
    sc("openat", 56, handler::OPENAT, false),
    sc("openat2", 437, handler::OPENAT2, false),
    sc("connect", 203, handler::CONNECT, false),
    sc("accept", 202, handler::ACCEPT, false),
    sc("accept4", 242, handler::ACCEPT4, false),
    sc("execve", 221, handler::EXECVE, false),
    sc("execveat", 281, handler::EXECVEAT, false),
    sc("read", 63, handler::READ, true),
    sc("write", 64, handler::WRITE, true),
    sc("recvfrom", 207, handler::RECVFROM, true),
    sc("sendto", 206, handler::SENDTO, true),
    sc("recvmsg", 212, handler::RECVMSG, true),
    sc("sendmsg", 211, handler::SENDMSG, true),
    sc("readv", 65, handler::READV, true),
    sc("writev", 66, handler::WRITEV, true),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_handlers_are_distinct_and_in_range() {
        for (i, a) in SYSCALLS.iter().enumerate() {
            assert!(a.nr < handler::NR_MAX && a.handler > 0, "{a:?}");
            for b in &SYSCALLS[i + 1..] {
                assert!(a.nr != b.nr && a.handler != b.handler && a.name != b.name, "{a:?} {b:?}");
            }
        }
    }
}
