/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sysql event layouts: the one home of every record the kernel programs put
 * in the ring buffer. The Rust mirror is crates/sysql-events/src/lib.rs; its
 * build script compiles crates/sysql-events/layout.c against this header and
 * fails the build if a size or an offset differs, so the two cannot drift.
 *
 * Rules: fixed-width integers only, explicit padding, every struct a multiple
 * of 8 bytes (ring buffer records are 8-byte aligned, so the decoder can read
 * them in place).
 *
 * The includer provides __u8/__u16/__u32/__u64/__s32/__s64: vmlinux.h on the
 * kernel side, <linux/types.h> on the host.
 */
#ifndef SYSQL_EVENTS_H
#define SYSQL_EVENTS_H

#define SYSQL_COMM_LEN 16
#define SYSQL_PATH_LEN 256
#define SYSQL_FILENAME_LEN 256
#define SYSQL_ARG_LEN 256   /* one argument, with its NUL */
#define SYSQL_ARGV_LEN 2048 /* all arguments, NUL-separated */
#define SYSQL_MAX_ARGS 32
#define SYSQL_SOCKADDR_LEN 112 /* >= sizeof(struct sockaddr_un) == 110 */
#define SYSQL_SNAP_MAX 4096    /* most payload bytes one record carries */

/* sysql_header.kind */
#define SYSQL_KIND_OPEN 1
#define SYSQL_KIND_CONNECT 2
#define SYSQL_KIND_EXEC 3
#define SYSQL_KIND_PAYLOAD 4
#define SYSQL_KIND_CONNECT_DONE 5 /* the outcome of a TCP connect */
#define SYSQL_KIND_ACCEPT 6
#define SYSQL_KIND_EXIT 7

/* Index of a table in the per-CPU loss counters (sysql_lost). */
#define SYSQL_TABLE_OPENS 0
#define SYSQL_TABLE_CONNECTS 1
#define SYSQL_TABLE_EXECS 2
#define SYSQL_TABLE_HTTP 3 /* http_requests */
#define SYSQL_TABLE_DB 4   /* db_queries */
#define SYSQL_TABLE_DNS 5  /* dns_queries */
#define SYSQL_TABLE_ACCEPTS 6
#define SYSQL_TABLE_EXITS 7
#define SYSQL_TABLE_COUNT 8

/* Handlers of the syscall table (sysql_syscalls: syscall number -> handler),
 * used by the tp_btf sys_enter / sys_exit pair; 0 is "not traced". */
/* The capture filter's dimensions (struct sysql_filter's masks) and the
 * marks of a value in a dimension's map. */
#define SYSQL_FILTER_COMM 1
#define SYSQL_FILTER_PID 2
#define SYSQL_FILTER_UID 4
#define SYSQL_FILTER_CGROUP 8
#define SYSQL_FILTER_PATH 16
#define SYSQL_MARK_ONLY 1
#define SYSQL_MARK_EXCLUDE 2
#define SYSQL_FILTER_VALUES 1024 /* values per dimension */
#define SYSQL_NR_MAX 1024
#define SYSQL_H_OPEN 1
#define SYSQL_H_OPENAT 2
#define SYSQL_H_OPENAT2 3
#define SYSQL_H_CREAT 4
#define SYSQL_H_CONNECT 5
#define SYSQL_H_ACCEPT 6
#define SYSQL_H_ACCEPT4 7
#define SYSQL_H_EXECVE 8
#define SYSQL_H_EXECVEAT 9
#define SYSQL_H_READ 10
#define SYSQL_H_WRITE 11
#define SYSQL_H_RECVFROM 12
#define SYSQL_H_SENDTO 13
#define SYSQL_H_RECVMSG 14
#define SYSQL_H_SENDMSG 15
#define SYSQL_H_READV 16
#define SYSQL_H_WRITEV 17

/* sysql_header.syscall, per kind */
#define SYSQL_SYS_OPEN 0
#define SYSQL_SYS_OPENAT 1
#define SYSQL_SYS_OPENAT2 2
#define SYSQL_SYS_CREAT 3
#define SYSQL_SYS_CONNECT 0
#define SYSQL_SYS_EXECVE 0
#define SYSQL_SYS_EXECVEAT 1
#define SYSQL_SYS_ACCEPT 0
#define SYSQL_SYS_ACCEPT4 1
#define SYSQL_SYS_EXIT 0
/* payload syscalls: odd numbers send (egress), even ones receive (ingress) */
#define SYSQL_SYS_READ 0
#define SYSQL_SYS_WRITE 1
#define SYSQL_SYS_RECVFROM 2
#define SYSQL_SYS_SENDTO 3
#define SYSQL_SYS_RECVMSG 4
#define SYSQL_SYS_SENDMSG 5
#define SYSQL_SYS_READV 6
#define SYSQL_SYS_WRITEV 7

/* sysql_payload_event.protocol: what the first bytes (or the connection) look like */
#define SYSQL_PROTO_HTTP 1
#define SYSQL_PROTO_PGSQL 2
#define SYSQL_PROTO_MYSQL 3
#define SYSQL_PROTO_DNS 4

/* sysql_header.flags */
#define SYSQL_F_PATH_TRUNCATED (1u << 0)     /* path / filename longer than its buffer */
#define SYSQL_F_ARGV_TRUNCATED (1u << 1)     /* more arguments or bytes than captured */
#define SYSQL_F_USER_FAULT (1u << 2)         /* a user pointer could not be read */
#define SYSQL_F_ADDR_TRUNCATED (1u << 3)     /* addrlen larger than the captured address */
#define SYSQL_F_DATA_TRUNCATED (1u << 4)     /* more payload bytes moved than captured */

/* Common to every record. 80 bytes. */
struct sysql_header {
	__u32 kind;            /* SYSQL_KIND_* */
	__u32 syscall;         /* SYSQL_SYS_*: which syscall of the kind */
	__u64 ts_boot_ns;      /* bpf_ktime_get_boot_ns() at syscall entry */
	__u64 latency_ns;      /* exit (or sched_process_exec) minus entry */
	__u64 cgroup_id;       /* bpf_get_current_cgroup_id() */
	__s64 ret;             /* syscall return value: >= 0 or -errno */
	__u32 pid;             /* tgid, initial PID namespace */
	__u32 tid;
	__u32 ppid;            /* real_parent->tgid */
	__u32 uid;
	__u32 gid;
	__u32 flags;           /* SYSQL_F_* */
	char comm[SYSQL_COMM_LEN];
};

/* open, openat, openat2, creat. 360 bytes as built; sent at its exact length:
 * up to the path, then path_len bytes of path and its NUL (104 + path_len + 1). */
struct sysql_open_event {
	struct sysql_header h;
	__u64 flags;           /* O_* flags (64-bit for openat2) */
	__s32 dfd;             /* directory fd, -100 is AT_FDCWD */
	__u32 mode;
	__u32 path_len;        /* bytes of path, without the NUL */
	__u32 _pad;
	char path[SYSQL_PATH_LEN];
};

/* connect. 240 bytes. */
struct sysql_connect_event {
	struct sysql_header h;
	__s32 fd;
	__u32 addrlen;         /* as passed by the caller */
	__u16 sk_family;       /* from the socket: AF_* */
	__u16 sk_type;         /* SOCK_* */
	__u16 sk_protocol;     /* IPPROTO_* */
	__u16 sport;           /* the socket's local port at exit, host order (0 if none) */
	__u64 sock_id;         /* the kernel socket (struct sock *): pairs a
				* sysql_connect_done_event with its connect; 0 if fd is no socket */
	__u32 netns;           /* the socket's network namespace (inode number); the task's if no socket */
	__u32 _pad;
	__u8 saddr[16];        /* the socket's local address at exit: IPv4 in the first 4 bytes, or IPv6 */
	__u8 addr[SYSQL_SOCKADDR_LEN]; /* the sockaddr as passed, min(addrlen, 112) bytes */
};

/* A TCP socket left SYN_SENT (sock:inet_sock_set_state): the outcome of the
 * connect that put it there. Sent for every connect that reached SYN_SENT,
 * whenever the outcome comes: for a blocking connect (and a non-blocking one
 * over loopback) that is before the connect's own record. 112 bytes.
 * Header: ts_boot_ns is the connect's entry (as in its record), latency_ns
 * the time from there to the outcome, ret 0 (established) or -errno, pid and
 * tid the connecting thread's; the other header fields are zero. */
struct sysql_connect_done_event {
	struct sysql_header h;
	__u64 sock_id;         /* as in the connect's record */
	__u16 sport;           /* local port, host byte order */
	__u16 _pad0;
	__u32 _pad1;
	__u8 saddr[16];        /* local address: IPv4 in the first 4 bytes, or IPv6 */
};

/* accept, accept4. 136 bytes. */
struct sysql_accept_event {
	struct sysql_header h; /* ret: the new fd, or -errno */
	__s32 fd;              /* the listening socket */
	__u32 flags;           /* accept4's flags (SOCK_NONBLOCK, SOCK_CLOEXEC), 0 for accept */
	__u16 sk_family;       /* the listening socket's AF_*, SOCK_*, IPPROTO_* */
	__u16 sk_type;
	__u16 sk_protocol;
	__u16 lport;           /* the new connection's local port, host order (0 if none) */
	__u16 rport;           /* the peer's port, host order (0 if none) */
	__u16 _pad0;
	__u32 netns;           /* the listening socket's network namespace (inode number) */
	__u8 laddr[16];        /* the new connection's local address: IPv4 in the first 4 bytes, or IPv6 */
	__u8 raddr[16];        /* the peer's address, the same way */
};

/* The end of a process: its last thread's exit (sched:sched_process_exit with
 * the thread group dead). 96 bytes. Header: ts_boot_ns is the exit, ret 0. */
struct sysql_exit_event {
	struct sysql_header h;
	__u64 start_boot_ns;   /* when the process started (its leader's start_boottime) */
	__u32 exit_code;       /* the wait status: exit status << 8, or the signal | 0x80 if it dumped core */
	__u32 _pad;
};

/* execve, execveat. 2400 bytes as built; sent at its exact length: up to
 * argv, then argv_len bytes of arguments (352 + argv_len). */
struct sysql_exec_event {
	struct sysql_header h;
	__u32 filename_len;    /* bytes, without the NUL */
	__u32 argv_len;        /* bytes used in argv, NUL-separated */
	__u32 argc;            /* arguments captured */
	__s32 dfd;             /* execveat's dirfd, -100 for execve */
	char filename[SYSQL_FILENAME_LEN];
	char argv[SYSQL_ARGV_LEN];
};

/* Bytes sent or received on a socket whose first bytes (or whose connection)
 * look like a protocol sysql parses. 144 bytes, followed by data_len payload
 * bytes: the record is exactly 144 + data_len bytes long. */
struct sysql_payload_event {
	struct sysql_header h; /* ret: bytes moved by the syscall */
	__u64 sock_id;         /* the socket's inode number (pairs requests with responses) */
	__s32 fd;
	__u16 sk_family;       /* AF_INET, AF_INET6, AF_UNIX */
	__u16 sk_type;         /* SOCK_STREAM, SOCK_DGRAM */
	__u8 protocol;         /* SYSQL_PROTO_* */
	__u8 _pad0;
	__u16 lport;           /* local port, host byte order (0 if none) */
	__u16 rport;           /* remote port, host byte order (0 if none) */
	__u16 _pad1;
	__u32 data_len;        /* payload bytes that follow */
	__u32 _pad2;
	__u8 laddr[16];        /* local address: IPv4 in the first 4 bytes, or IPv6 */
	__u8 raddr[16];        /* remote address, the same way */
	__u8 data[];           /* the first data_len bytes moved (one buffer or iovec) */
};

#endif /* SYSQL_EVENTS_H */
