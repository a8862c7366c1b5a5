//! Names for the numbers syscalls carry: errno, open flags, socket families,
//! types and protocols, signals (x86-64 / generic Linux values).

use std::fmt::Write;

/// The symbolic name of a positive errno value, as in `errno(3)`.
pub fn errno_name(errno: i64) -> Option<&'static str> {
    const NAMES: [&str; 134] = [
        "",
        "EPERM",
        "ENOENT",
        "ESRCH",
        "EINTR",
        "EIO",
        "ENXIO",
        "E2BIG",
        "ENOEXEC",
        "EBADF",
        "ECHILD",
        "EAGAIN",
        "ENOMEM",
        "EACCES",
        "EFAULT",
        "ENOTBLK",
        "EBUSY",
        "EEXIST",
        "EXDEV",
        "ENODEV",
        "ENOTDIR",
        "EISDIR",
        "EINVAL",
        "ENFILE",
        "EMFILE",
        "ENOTTY",
        "ETXTBSY",
        "EFBIG",
        "ENOSPC",
        "ESPIPE",
        "EROFS",
        "EMLINK",
        "EPIPE",
        "EDOM",
        "ERANGE",
        "EDEADLK",
        "ENAMETOOLONG",
        "ENOLCK",
        "ENOSYS",
        "ENOTEMPTY",
        "ELOOP",
        "",
        "ENOMSG",
        "EIDRM",
        "ECHRNG",
        "EL2NSYNC",
        "EL3HLT",
        "EL3RST",
        "ELNRNG",
        "EUNATCH",
        "ENOCSI",
        "EL2HLT",
        "EBADE",
        "EBADR",
        "EXFULL",
        "ENOANO",
        "EBADRQC",
        "EBADSLT",
        "",
        "EBFONT",
        "ENOSTR",
        "ENODATA",
        "ETIME",
        "ENOSR",
        "ENONET",
        "ENOPKG",
        "EREMOTE",
        "ENOLINK",
        "EADV",
        "ESRMNT",
        "ECOMM",
        "EPROTO",
        "EMULTIHOP",
        "EDOTDOT",
        "EBADMSG",
        "EOVERFLOW",
        "ENOTUNIQ",
        "EBADFD",
        "EREMCHG",
        "ELIBACC",
        "ELIBBAD",
        "ELIBSCN",
        "ELIBMAX",
        "ELIBEXEC",
        "EILSEQ",
        "ERESTART",
        "ESTRPIPE",
        "EUSERS",
        "ENOTSOCK",
        "EDESTADDRREQ",
        "EMSGSIZE",
        "EPROTOTYPE",
        "ENOPROTOOPT",
        "EPROTONOSUPPORT",
        "ESOCKTNOSUPPORT",
        "EOPNOTSUPP",
        "EPFNOSUPPORT",
        "EAFNOSUPPORT",
        "EADDRINUSE",
        "EADDRNOTAVAIL",
        "ENETDOWN",
        "ENETUNREACH",
        "ENETRESET",
        "ECONNABORTED",
        "ECONNRESET",
        "ENOBUFS",
        "EISCONN",
        "ENOTCONN",
        "ESHUTDOWN",
        "ETOOMANYREFS",
        "ETIMEDOUT",
        "ECONNREFUSED",
        "EHOSTDOWN",
        "EHOSTUNREACH",
        "EALREADY",
        "EINPROGRESS",
        "ESTALE",
        "EUCLEAN",
        "ENOTNAM",
        "ENAVAIL",
        "EISNAM",
        "EREMOTEIO",
        "EDQUOT",
        "ENOMEDIUM",
        "EMEDIUMTYPE",
        "ECANCELED",
        "ENOKEY",
        "EKEYEXPIRED",
        "EKEYREVOKED",
        "EKEYREJECTED",
        "EOWNERDEAD",
        "ENOTRECOVERABLE",
        "ERFKILL",
        "EHWPOISON",
    ];
    match errno {
        // kernel-internal codes that can leak to tracepoints
        512 => Some("ERESTARTSYS"),
        513 => Some("ERESTARTNOINTR"),
        514 => Some("ERESTARTNOHAND"),
        516 => Some("ERESTART_RESTARTBLOCK"),
        n => NAMES.get(usize::try_from(n).ok()?).copied().filter(|s| !s.is_empty()),
    }
}

/// Writes a syscall return value's errno name: `-2` -> `ENOENT`. Returns
/// false (writing nothing) for a success or an unknown code.
pub fn write_errno(out: &mut impl Write, ret: i64) -> bool {
    if ret >= 0 {
        return false;
    }
    match errno_name(-ret) {
        Some(name) => out.write_str(name).is_ok(),
        None => write!(out, "E{}", -ret).is_ok(),
    }
}

const O_ACCMODE: u64 = 0o3;
const O_TMPFILE_BIT: u64 = 0o20000000;
const O_SYNC_BIT: u64 = 0o4000000;
const O_DSYNC: u64 = 0o10000;
const O_DIRECTORY: u64 = 0o200000;

const OPEN_FLAGS: [(u64, &str); 16] = [
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (O_DSYNC, "O_DSYNC"),
    (0o20000, "O_ASYNC"),
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (O_DIRECTORY, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (O_SYNC_BIT, "O_SYNC"),
    (0o10000000, "O_PATH"),
];

/// Writes open flags as text: `0o2000000` -> `O_RDONLY|O_CLOEXEC`. O_SYNC
/// and O_TMPFILE are shown as such, not as the bits they are made of; any bit
/// without a name is shown in hex at the end.
pub fn write_open_flags(out: &mut impl Write, flags: u64) -> std::fmt::Result {
    out.write_str(match flags & O_ACCMODE {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    })?;
    let mut rest = flags & !O_ACCMODE;
    if rest & O_SYNC_BIT != 0 {
        rest &= !O_DSYNC; // O_SYNC is __O_SYNC|O_DSYNC
    }
    if rest & O_TMPFILE_BIT != 0 {
        rest &= !(O_TMPFILE_BIT | O_DIRECTORY);
        out.write_str("|O_TMPFILE")?;
    }
    for (bit, name) in OPEN_FLAGS {
        if rest & bit != 0 {
            out.write_char('|')?;
            out.write_str(name)?;
            rest &= !bit;
        }
    }
    if rest != 0 {
        write!(out, "|{rest:#x}")?;
    }
    Ok(())
}

/// Address family names (`AF_*`).
pub fn family_name(family: u16) -> Option<&'static str> {
    Some(match family {
        0 => "unspec",
        1 => "unix",
        2 => "inet",
        10 => "inet6",
        16 => "netlink",
        17 => "packet",
        40 => "vsock",
        _ => return None,
    })
}

/// Socket type names (`SOCK_*`, without the CLOEXEC/NONBLOCK bits).
pub fn sock_type_name(sock_type: u16) -> Option<&'static str> {
    Some(match sock_type & 0xf {
        1 => "stream",
        2 => "dgram",
        3 => "raw",
        4 => "rdm",
        5 => "seqpacket",
        10 => "packet",
        _ => return None,
    })
}

/// IP protocol names (`IPPROTO_*`), for inet and inet6 sockets.
pub fn ip_protocol_name(protocol: u16) -> Option<&'static str> {
    Some(match protocol {
        1 => "icmp",
        6 => "tcp",
        17 => "udp",
        58 => "icmpv6",
        132 => "sctp",
        136 => "udplite",
        255 => "raw",
        262 => "mptcp",
        _ => return None,
    })
}

/// Signal names (`SIGKILL`); real-time signals as `SIGRTMIN+n`.
pub fn signal_name(signal: u32) -> Option<std::borrow::Cow<'static, str>> {
    const NAMES: [&str; 32] = [
        "",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    match signal {
        1..=31 => Some(NAMES[signal as usize].into()),
        32..=64 => Some(format!("SIGRTMIN+{}", signal - 32).into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(f: u64) -> String {
        let mut s = String::new();
        write_open_flags(&mut s, f).unwrap();
        s
    }

    #[test]
    fn open_flags_read_like_the_man_page() {
        assert_eq!(flags(0), "O_RDONLY");
        assert_eq!(flags(0o2000000), "O_RDONLY|O_CLOEXEC");
        assert_eq!(flags(0o1101), "O_WRONLY|O_CREAT|O_TRUNC");
        assert_eq!(flags(0o2 | 0o4010000), "O_RDWR|O_SYNC");
        assert_eq!(flags(0o20200000 | 2), "O_RDWR|O_TMPFILE");
        assert_eq!(flags(1 << 40), "O_RDONLY|0x10000000000");
    }

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(9).as_deref(), Some("SIGKILL"));
        assert_eq!(signal_name(15).as_deref(), Some("SIGTERM"));
        assert_eq!(signal_name(31).as_deref(), Some("SIGSYS"));
        assert_eq!(signal_name(34).as_deref(), Some("SIGRTMIN+2"));
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_name(65), None);
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(2), Some("ENOENT"));
        assert_eq!(errno_name(111), Some("ECONNREFUSED"));
        assert_eq!(errno_name(115), Some("EINPROGRESS"));
        assert_eq!(errno_name(133), Some("EHWPOISON"));
        assert_eq!(errno_name(41), None);
        assert_eq!(errno_name(-1), None);
        let mut s = String::new();
        assert!(!write_errno(&mut s, 3));
        assert!(write_errno(&mut s, -13));
        assert_eq!(s, "EACCES");
        let mut s = String::new();
        assert!(write_errno(&mut s, -999));
        assert_eq!(s, "E999");
    }
}
