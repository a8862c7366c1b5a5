// SPDX-License-Identifier: GPL-2.0
/*
 * sysql kernel programs: syscall tracepoints (enter + exit) for the opens,
 * connects, accepts and execs tables, sched/sched_process_exec and
 * sched/sched_process_exit, and the BTF tracepoint inet_sock_set_state for
 * the outcome of TCP connects.
 *
 * Shape: the enter program stashes the raw arguments in the thread's task
 * storage (no hash table, no lock; a stash that cannot be made is counted as
 * lost); the exit program reads the user memory the
 * kernel has just copied (so it is resident), fills a record in place in the
 * ring buffer and submits it. A failed reserve is counted per CPU and table in
 * sysql_lost: nothing is dropped silently.
 *
 * Needs: Linux 5.11+ (ring buffer, task storage and BTF task pointers in
 * tracing programs), BTF (CO-RE), syscall tracepoints.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "sysql_events.h"

char LICENSE[] SEC("license") = "GPL";

#define AT_FDCWD -100
#define O_WRONLY 01
#define O_CREAT 0100
#define O_TRUNC 01000
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define SOCK_DGRAM 2
#define IPPROTO_TCP 6
#define EINPROGRESS 115
#define ECONNABORTED 103
#define SIGNAL_GROUP_EXIT 0x00000004

/* Set by the loader. */
const volatile __u32 sysql_self_tgid = 0;       /* never trace sysql itself */
const volatile __u64 sysql_wakeup_bytes = 262144; /* wake the reader past this backlog */
const volatile __u32 sysql_snap_len = SYSQL_SNAP_MAX; /* payload bytes copied per syscall */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20); /* resized by the loader */
} sysql_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SYSQL_TABLE_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} sysql_lost SEC(".maps");

/* Arguments of an open or connect in flight. */
struct args_stash {
	__u64 ts;
	__u64 args[4];
	__u64 sk;   /* payloads: the socket, found at entry */
	__u64 ino;  /* payloads: its inode number (a socket's identity) */
	__u32 syscall;
	__u32 kind; /* SYSQL_KIND_*: an exit only completes its own kind */
};

/* Per-thread task storage: no hash, no lock, freed with the thread. kind 0
 * means no syscall of ours is in flight. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct args_stash);
} sysql_args SEC(".maps");

/* An exec in flight: its argv must be read before the old mm is gone. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct sysql_exec_event);
} sysql_execs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sysql_exec_event);
} sysql_exec_scratch SEC(".maps");

static __always_inline void count_lost(__u32 table)
{
	__u64 *n = bpf_map_lookup_elem(&sysql_lost, &table);
	if (n)
		*n += 1; /* per-CPU slot: no atomic needed */
}

/* Wake-ups are batched: the reader polls on a short timer and is woken only
 * when the backlog crosses sysql_wakeup_bytes. Once, at the crossing: a
 * forced wake-up raises an interrupt (on a VM, an exit to the hypervisor,
 * about 5 us), and forcing one for every record while the reader catches up
 * made each record 15 times dearer. Each record takes 8 bytes of header. */

/* For a record already reserved (counted in the backlog). */
static __always_inline __u64 wake_reserved(__u64 size)
{
	__u64 avail = bpf_ringbuf_query(&sysql_events, BPF_RB_AVAIL_DATA);
	return avail >= sysql_wakeup_bytes && avail - (size + 8) < sysql_wakeup_bytes ? BPF_RB_FORCE_WAKEUP
										    : BPF_RB_NO_WAKEUP;
}

/* For a record about to be copied in with bpf_ringbuf_output. */
static __always_inline __u64 wake_output(__u64 size)
{
	__u64 avail = bpf_ringbuf_query(&sysql_events, BPF_RB_AVAIL_DATA);
	return avail < sysql_wakeup_bytes && avail + size + 8 >= sysql_wakeup_bytes ? BPF_RB_FORCE_WAKEUP
										     : BPF_RB_NO_WAKEUP;
}

static __always_inline bool is_self(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == sysql_self_tgid;
}

/* ---- the capture filter ------------------------------------------------------
 *
 * Set by the loader from --capture-only / --capture-exclude, changed in place
 * (never reloaded). Per dimension, a map of values, each marked ONLY and/or
 * EXCLUDE. An event is skipped when, for a dimension in filter.only, its
 * value is not marked ONLY, or for one in filter.exclude, it is marked
 * EXCLUDE. Skipped events are counted per table in sysql_filtered. With no
 * filter, one array lookup. */

struct sysql_filter {
	__u32 only;    /* SYSQL_FILTER_* dimensions with an allow list */
	__u32 exclude; /* SYSQL_FILTER_* dimensions with a deny list */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sysql_filter);
} sysql_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SYSQL_FILTER_VALUES);
	__type(key, char[SYSQL_COMM_LEN]);
	__type(value, __u32);
} sysql_filter_comm SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SYSQL_FILTER_VALUES);
	__type(key, __u32);
	__type(value, __u32);
} sysql_filter_pid SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SYSQL_FILTER_VALUES);
	__type(key, __u32);
	__type(value, __u32);
} sysql_filter_uid SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SYSQL_FILTER_VALUES);
	__type(key, __u64);
	__type(value, __u32);
} sysql_filter_cgroup SEC(".maps");

/* Path prefixes, longest match first: the key is a prefix length in bits
 * and the bytes. */
struct path_key {
	__u32 prefixlen;
	char path[SYSQL_PATH_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SYSQL_FILTER_VALUES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct path_key);
	__type(value, __u32);
} sysql_filter_path SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SYSQL_TABLE_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} sysql_filtered SEC(".maps");

static __always_inline void count_filtered(__u32 table)
{
	__u64 *n = bpf_map_lookup_elem(&sysql_filtered, &table);
	if (n)
		*n += 1;
}

static __always_inline struct sysql_filter *filter_now(void)
{
	__u32 zero = 0;
	struct sysql_filter *f = bpf_map_lookup_elem(&sysql_filter, &zero);
	return f && (f->only | f->exclude) ? f : 0;
}

/* Whether a value's marks (NULL: not in the map) keep the event. */
static __always_inline bool keeps(struct sysql_filter *f, __u32 dim, __u32 *mark)
{
	__u32 m = mark ? *mark : 0;
	if ((f->only & dim) && !(m & SYSQL_MARK_ONLY))
		return false;
	if ((f->exclude & dim) && (m & SYSQL_MARK_EXCLUDE))
		return false;
	return true;
}

/* Whether the filter skips the current task (comm, pid, uid, cgroup). */
static __always_inline bool task_filtered(void)
{
	struct sysql_filter *f = filter_now();
	if (!f)
		return false;
	__u32 dims = f->only | f->exclude;
	if (dims & SYSQL_FILTER_PID) {
		__u32 pid = bpf_get_current_pid_tgid() >> 32;
		if (!keeps(f, SYSQL_FILTER_PID, bpf_map_lookup_elem(&sysql_filter_pid, &pid)))
			return true;
	}
	if (dims & SYSQL_FILTER_UID) {
		__u32 uid = (__u32)bpf_get_current_uid_gid();
		if (!keeps(f, SYSQL_FILTER_UID, bpf_map_lookup_elem(&sysql_filter_uid, &uid)))
			return true;
	}
	if (dims & SYSQL_FILTER_CGROUP) {
		__u64 cg = bpf_get_current_cgroup_id();
		if (!keeps(f, SYSQL_FILTER_CGROUP, bpf_map_lookup_elem(&sysql_filter_cgroup, &cg)))
			return true;
	}
	if (dims & SYSQL_FILTER_COMM) {
		char comm[SYSQL_COMM_LEN] = {};
		bpf_get_current_comm(comm, sizeof(comm));
		if (!keeps(f, SYSQL_FILTER_COMM, bpf_map_lookup_elem(&sysql_filter_comm, comm)))
			return true;
	}
	return false;
}

/* Whether the filter skips an open of this path (len bytes, in the record
 * being made). The record's own bytes are the key: the 4 bytes before the
 * path (its padding) hold the prefix length for the lookup. */
static __always_inline bool path_filtered(__u32 *pad_before_path, __u32 len)
{
	struct sysql_filter *f = filter_now();
	if (!f || !((f->only | f->exclude) & SYSQL_FILTER_PATH))
		return false;
	*pad_before_path = len * 8;
	__u32 *mark = bpf_map_lookup_elem(&sysql_filter_path, pad_before_path);
	*pad_before_path = 0;
	return !keeps(f, SYSQL_FILTER_PATH, mark);
}

/* Who is running now. ts and latency are the caller's. The task's fields are
 * read through its BTF pointer: plain loads, no helper calls. */
static __always_inline void fill_header(struct sysql_header *h, __u32 kind, __u32 syscall,
					__u64 ts, __s64 ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 ug = bpf_get_current_uid_gid();
	struct task_struct *task = bpf_get_current_task_btf();

	h->kind = kind;
	h->syscall = syscall;
	h->ts_boot_ns = ts;
	h->latency_ns = bpf_ktime_get_boot_ns() - ts;
	h->cgroup_id = bpf_get_current_cgroup_id();
	h->ret = ret;
	h->pid = id >> 32;
	h->tid = (__u32)id;
	h->ppid = task->real_parent->tgid;
	h->uid = (__u32)ug;
	h->gid = ug >> 32;
	h->flags = 0;
	/* comm is NUL-terminated within its 16 bytes; two loads copy it */
	__u64 *comm = (__u64 *)h->comm;
	comm[0] = *(__u64 *)&task->comm[0];
	comm[1] = *(__u64 *)&task->comm[8];
}

/* Makes this thread's stash for a syscall in flight (sk and ino zero), or
 * returns NULL: no memory, or a program nested on this CPU holds the
 * storage. The caller counts that as a loss. */
static __always_inline struct args_stash *stash_new(__u32 kind, __u32 syscall, __u64 a0, __u64 a1, __u64 a2,
						    __u64 a3)
{
	struct args_stash *s = bpf_task_storage_get(&sysql_args, bpf_get_current_task_btf(), 0,
						    BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s)
		return 0;
	s->ts = bpf_ktime_get_boot_ns();
	s->args[0] = a0;
	s->args[1] = a1;
	s->args[2] = a2;
	s->args[3] = a3;
	s->sk = 0;
	s->ino = 0;
	s->syscall = syscall;
	s->kind = kind;
	return s;
}

static __always_inline int stash_args(__u32 kind, __u32 syscall, __u64 a0, __u64 a1, __u64 a2, __u64 a3)
{
	if (is_self())
		return 0;
	__u32 table = kind == SYSQL_KIND_OPEN ? SYSQL_TABLE_OPENS
		      : kind == SYSQL_KIND_ACCEPT ? SYSQL_TABLE_ACCEPTS
						  : SYSQL_TABLE_CONNECTS;
	if (task_filtered()) {
		count_filtered(table);
		return 0;
	}
	if (!stash_new(kind, syscall, a0, a1, a2, a3))
		count_lost(table);
	return 0;
}

/* The stashed arguments of this thread's syscall in flight, if of this kind. */
static __always_inline struct args_stash *stashed(__u32 kind)
{
	struct args_stash *s = bpf_task_storage_get(&sysql_args, bpf_get_current_task_btf(), 0, 0);
	if (!s)
		return 0;
	if (s->kind != kind) {
		/* left over from a syscall whose exit we did not see */
		s->kind = 0;
		return 0;
	}
	return s;
}

/* This thread's syscall is done with its stash. */
static __always_inline void unstash(struct args_stash *s)
{
	s->kind = 0;
}

/* Reads a user string into buf; returns its length without the NUL and sets
 * truncation / fault flags. */
static __always_inline __u32 read_user_str(char *buf, __u32 size, const char *src, __u32 *flags)
{
	long n = bpf_probe_read_user_str(buf, size, src);
	if (n <= 0) {
		buf[0] = 0;
		*flags |= SYSQL_F_USER_FAULT;
		return 0;
	}
	if (n == size) {
		char next = 0;
		if (bpf_probe_read_user(&next, 1, src + size - 1) == 0 && next != 0)
			*flags |= SYSQL_F_PATH_TRUNCATED;
	}
	return (__u32)(n - 1) & (size - 1);
}

/* ---- opens ---------------------------------------------------------------- */

/* An open is built here and copied into the ring at its exact length: most
 * paths are far shorter than the 256 bytes a record can hold, and a ring of
 * short records holds more of them. Programs on syscall tracepoints run with
 * preemption disabled and never nest on a CPU, so the slot is this one's. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sysql_open_event);
} sysql_open_scratch SEC(".maps");

static __always_inline int open_exit(long ret)
{
	struct args_stash *s = stashed(SYSQL_KIND_OPEN);
	if (!s)
		return 0;

	__u32 zero = 0;
	struct sysql_open_event *e = bpf_map_lookup_elem(&sysql_open_scratch, &zero);
	if (!e) {
		unstash(s);
		return 0;
	}
	fill_header(&e->h, SYSQL_KIND_OPEN, s->syscall, s->ts, ret);

	const char *path = 0;
	e->_pad = 0;
	switch (s->syscall) {
	case SYSQL_SYS_OPEN:
		path = (const char *)s->args[0];
		e->dfd = AT_FDCWD;
		e->flags = s->args[1];
		e->mode = (__u32)s->args[2];
		break;
	case SYSQL_SYS_OPENAT:
		e->dfd = (__s32)s->args[0];
		path = (const char *)s->args[1];
		e->flags = (__u32)s->args[2];
		e->mode = (__u32)s->args[3];
		break;
	case SYSQL_SYS_OPENAT2: {
		struct open_how how = {};
		e->dfd = (__s32)s->args[0];
		path = (const char *)s->args[1];
		if (bpf_probe_read_user(&how, sizeof(how), (void *)s->args[2]))
			e->h.flags |= SYSQL_F_USER_FAULT;
		e->flags = how.flags;
		e->mode = (__u32)how.mode;
		break;
	}
	default: /* SYSQL_SYS_CREAT */
		path = (const char *)s->args[0];
		e->dfd = AT_FDCWD;
		e->flags = O_CREAT | O_WRONLY | O_TRUNC;
		e->mode = (__u32)s->args[1];
		break;
	}
	e->path_len = read_user_str(e->path, SYSQL_PATH_LEN, path, &e->h.flags);
	unstash(s);
	if (path_filtered(&e->_pad, e->path_len)) {
		count_filtered(SYSQL_TABLE_OPENS);
		return 0;
	}
	/* read_user_str keeps path_len below SYSQL_PATH_LEN: the NUL fits */
	__u64 size = offsetof(struct sysql_open_event, path) + (e->path_len & (SYSQL_PATH_LEN - 1)) + 1;
	if (bpf_ringbuf_output(&sysql_events, e, size, wake_output(size)))
		count_lost(SYSQL_TABLE_OPENS);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_open")
int sys_enter_open(struct trace_event_raw_sys_enter *ctx)
{
	return stash_args(SYSQL_KIND_OPEN, SYSQL_SYS_OPEN, ctx->args[0], ctx->args[1], ctx->args[2], 0);
}

SEC("tracepoint/syscalls/sys_enter_openat")
int sys_enter_openat(struct trace_event_raw_sys_enter *ctx)
{
	return stash_args(SYSQL_KIND_OPEN, SYSQL_SYS_OPENAT, ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3]);
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int sys_enter_openat2(struct trace_event_raw_sys_enter *ctx)
{
	return stash_args(SYSQL_KIND_OPEN, SYSQL_SYS_OPENAT2, ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3]);
}

SEC("tracepoint/syscalls/sys_enter_creat")
int sys_enter_creat(struct trace_event_raw_sys_enter *ctx)
{
	return stash_args(SYSQL_KIND_OPEN, SYSQL_SYS_CREAT, ctx->args[0], ctx->args[1], 0, 0);
}

/* One exit program serves all four open syscalls: the stash says which. */
SEC("tracepoint/syscalls/sys_exit_open")
int sys_exit_open(struct trace_event_raw_sys_exit *ctx)
{
	return open_exit(ctx->ret);
}

/* ---- connects ------------------------------------------------------------- */

/* The socket behind fd in the current task, or NULL if fd is not a socket;
 * its inode number in *ino if ino is not NULL. */
static __always_inline struct sock *fd_sock_ino(int fd, __u64 *ino)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd < 0 || (__u32)fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = 0;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	if ((BPF_CORE_READ(inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	if (ino)
		*ino = BPF_CORE_READ(inode, i_ino);
	struct socket *sock = BPF_CORE_READ(file, private_data);
	return sock ? BPF_CORE_READ(sock, sk) : 0;
}

static __always_inline struct sock *fd_sock(int fd)
{
	return fd_sock_ino(fd, 0);
}

SEC("tracepoint/syscalls/sys_enter_connect")
int sys_enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	return stash_args(SYSQL_KIND_CONNECT, SYSQL_SYS_CONNECT, ctx->args[0], ctx->args[1], ctx->args[2], 0);
}

/* The network namespace of a socket (inode number of its net ns). */
static __always_inline __u32 sock_netns(struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/* The network namespace of the current task. */
static __always_inline __u32 task_netns(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	return BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
}

/* A socket's local address (16 bytes: IPv4 in the first 4) and port, host order. */
static __always_inline __u16 sock_local(struct sock *sk, __u16 family, __u8 *addr)
{
	if (family == AF_INET)
		bpf_core_read(addr, 4, &sk->__sk_common.skc_rcv_saddr);
	else if (family == AF_INET6)
		bpf_core_read(addr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
	else
		return 0;
	return BPF_CORE_READ(sk, __sk_common.skc_num);
}

/* A socket's peer address and port, host order. */
static __always_inline __u16 sock_remote(struct sock *sk, __u16 family, __u8 *addr)
{
	if (family == AF_INET)
		bpf_core_read(addr, 4, &sk->__sk_common.skc_daddr);
	else if (family == AF_INET6)
		bpf_core_read(addr, 16, &sk->__sk_common.skc_v6_daddr);
	else
		return 0;
	return bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
}

static __always_inline int connect_exit(long ret)
{
	struct args_stash *s = stashed(SYSQL_KIND_CONNECT);
	if (!s)
		return 0;

	struct sysql_connect_event *e = bpf_ringbuf_reserve(&sysql_events, sizeof(*e), 0);
	if (!e) {
		count_lost(SYSQL_TABLE_CONNECTS);
		unstash(s);
		return 0;
	}
	fill_header(&e->h, SYSQL_KIND_CONNECT, s->syscall, s->ts, ret);
	e->fd = (__s32)s->args[0];
	e->addrlen = (__u32)s->args[2];
	e->_pad = 0;

	struct sock *sk = fd_sock(e->fd);
	__builtin_memset(e->saddr, 0, sizeof(e->saddr));
	e->sock_id = (__u64)sk;
	if (sk) {
		e->sk_family = BPF_CORE_READ(sk, __sk_common.skc_family);
		e->sk_type = BPF_CORE_READ(sk, sk_type);
		e->sk_protocol = BPF_CORE_READ(sk, sk_protocol);
		e->sport = sock_local(sk, e->sk_family, e->saddr);
		e->netns = sock_netns(sk);
	} else {
		e->sk_family = 0;
		e->sk_type = 0;
		e->sk_protocol = 0;
		e->sport = 0;
		e->netns = task_netns();
	}

	__u32 len = e->addrlen;
	if (len > SYSQL_SOCKADDR_LEN) {
		len = SYSQL_SOCKADDR_LEN;
		e->h.flags |= SYSQL_F_ADDR_TRUNCATED;
	}
	__builtin_memset(e->addr, 0, sizeof(e->addr));
	if (len > 0 && bpf_probe_read_user(e->addr, len, (void *)s->args[1]))
		e->h.flags |= SYSQL_F_USER_FAULT;
	unstash(s);
	bpf_ringbuf_submit(e, wake_reserved(sizeof(*e)));
	return 0;
}

/* ---- connect outcomes ----------------------------------------------------- */

/* A TCP connect between SYN_SENT and its outcome, keyed by the socket
 * (struct sock *). An LRU hash: an entry whose outcome never comes ages out.
 * (Socket storage, BPF_MAP_TYPE_SK_STORAGE, was measured too: it allocates
 * per socket, and this program cost about 100 ns more per call with it, two
 * calls per connect, than with this preallocated hash.) */
struct connect_flight {
	__u64 ts;  /* the connect's entry, as in its record */
	__u32 pid;
	__u32 tid;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct connect_flight);
} sysql_connecting SEC(".maps");

/* Every TCP state change (BTF tracepoint sock/inet_sock_set_state; a BTF
 * tracepoint, not the classic one, because the classic one is skipped when it
 * fires in a softirq that interrupted another BPF program on this CPU, and an
 * outcome would be lost).
 *
 * CLOSE -> SYN_SENT happens inside connect(2), in the connecting thread, whose
 * task storage holds the connect's arguments: remember the socket. Leaving
 * SYN_SENT is the outcome: ESTABLISHED, or CLOSE with the error the kernel
 * set in sk_err before closing (ECONNREFUSED for a reset, ETIMEDOUT or the
 * ICMP error such as EHOSTUNREACH after the SYN retries; 0 when the program
 * closed the socket first, reported as ECONNABORTED as a blocking connect
 * would). One record per outcome; user space pairs it with the connect's row,
 * whichever comes first (see crates/sysql-engine/src/event/connects.rs). */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(inet_sock_set_state, struct sock *sk, int oldstate, int newstate)
{
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u64 key = (__u64)sk;
	if (newstate == TCP_SYN_SENT) {
		if (is_self())
			return 0;
		struct args_stash *s = bpf_task_storage_get(&sysql_args, bpf_get_current_task_btf(), 0, 0);
		if (!s || s->kind != SYSQL_KIND_CONNECT)
			return 0;
		__u64 id = bpf_get_current_pid_tgid();
		struct connect_flight f = {.ts = s->ts, .pid = id >> 32, .tid = (__u32)id};
		if (bpf_map_update_elem(&sysql_connecting, &key, &f, BPF_ANY))
			count_lost(SYSQL_TABLE_CONNECTS);
		return 0;
	}
	if (oldstate != TCP_SYN_SENT || (newstate != TCP_ESTABLISHED && newstate != TCP_CLOSE))
		return 0;
	struct connect_flight *f = bpf_map_lookup_elem(&sysql_connecting, &key);
	if (!f)
		return 0;
	struct connect_flight flight = *f;
	bpf_map_delete_elem(&sysql_connecting, &key);

	struct sysql_connect_done_event *e = bpf_ringbuf_reserve(&sysql_events, sizeof(*e), 0);
	if (!e) {
		count_lost(SYSQL_TABLE_CONNECTS);
		return 0;
	}
	__s64 ret = 0;
	if (newstate == TCP_CLOSE) {
		int err = sk->sk_err;
		ret = -(err ? err : ECONNABORTED);
	}
	__builtin_memset(&e->h, 0, sizeof(e->h));
	e->h.kind = SYSQL_KIND_CONNECT_DONE;
	e->h.ts_boot_ns = flight.ts;
	e->h.latency_ns = bpf_ktime_get_boot_ns() - flight.ts;
	e->h.ret = ret;
	e->h.pid = flight.pid;
	e->h.tid = flight.tid;
	e->sock_id = key;
	e->_pad0 = 0;
	e->_pad1 = 0;
	__builtin_memset(e->saddr, 0, sizeof(e->saddr));
	sock_local(sk, sk->__sk_common.skc_family, e->saddr);
	/* The tracepoint fires at the end of tcp_set_state(): on CLOSE an
	 * autobound port was already given back (skc_num is 0), but inet_sport
	 * still holds it. */
	e->sport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	bpf_ringbuf_submit(e, wake_reserved(sizeof(*e)));
	return 0;
}

/* ---- accepts -------------------------------------------------------------- */

SEC("tracepoint/syscalls/sys_enter_accept")
int sys_enter_accept(struct trace_event_raw_sys_enter *ctx)
{
	return stash_args(SYSQL_KIND_ACCEPT, SYSQL_SYS_ACCEPT, ctx->args[0], 0, 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_accept4")
int sys_enter_accept4(struct trace_event_raw_sys_enter *ctx)
{
	return stash_args(SYSQL_KIND_ACCEPT, SYSQL_SYS_ACCEPT4, ctx->args[0], ctx->args[3], 0, 0);
}

/* One exit program for accept and accept4: the stash says which. The
 * addresses are the new connection's, read from its socket (the new fd). */
static __always_inline int accept_exit(long ret)
{
	struct args_stash *s = stashed(SYSQL_KIND_ACCEPT);
	if (!s)
		return 0;

	struct sysql_accept_event *e = bpf_ringbuf_reserve(&sysql_events, sizeof(*e), 0);
	if (!e) {
		count_lost(SYSQL_TABLE_ACCEPTS);
		unstash(s);
		return 0;
	}
	fill_header(&e->h, SYSQL_KIND_ACCEPT, s->syscall, s->ts, ret);
	e->fd = (__s32)s->args[0];
	e->flags = (__u32)s->args[1];
	unstash(s);
	e->_pad0 = 0;
	__builtin_memset(e->laddr, 0, sizeof(e->laddr));
	__builtin_memset(e->raddr, 0, sizeof(e->raddr));
	e->lport = 0;
	e->rport = 0;

	/* The new socket has the listener's family, type, protocol and
	 * namespace: one fd walk in the usual case, the listener's only when the
	 * accept failed. */
	struct sock *sk = ret >= 0 ? fd_sock((int)ret) : fd_sock(e->fd);
	if (sk) {
		e->sk_family = BPF_CORE_READ(sk, __sk_common.skc_family);
		e->sk_type = BPF_CORE_READ(sk, sk_type);
		e->sk_protocol = BPF_CORE_READ(sk, sk_protocol);
		e->netns = sock_netns(sk);
	} else {
		e->sk_family = 0;
		e->sk_type = 0;
		e->sk_protocol = 0;
		e->netns = task_netns();
	}
	if (sk && ret >= 0) {
		e->lport = sock_local(sk, e->sk_family, e->laddr);
		e->rport = sock_remote(sk, e->sk_family, e->raddr);
	}
	bpf_ringbuf_submit(e, wake_reserved(sizeof(*e)));
	return 0;
}

/* ---- execs ---------------------------------------------------------------- */

static __always_inline int exec_enter(__u32 syscall, __s32 dfd, const char *filename,
				      const char *const *argv)
{
	if (is_self())
		return 0;
	if (task_filtered()) {
		count_filtered(SYSQL_TABLE_EXECS);
		return 0;
	}
	__u32 zero = 0;
	struct sysql_exec_event *e = bpf_map_lookup_elem(&sysql_exec_scratch, &zero);
	if (!e)
		return 0;

	e->h.kind = SYSQL_KIND_EXEC;
	e->h.syscall = syscall;
	e->h.ts_boot_ns = bpf_ktime_get_boot_ns();
	e->h.flags = 0;
	e->dfd = dfd;
	e->filename_len = read_user_str(e->filename, SYSQL_FILENAME_LEN, filename, &e->h.flags);

	__u32 off = 0, argc = 0;
	for (int i = 0; i < SYSQL_MAX_ARGS; i++) {
		const char *arg = 0;
		if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i])) {
			e->h.flags |= SYSQL_F_USER_FAULT;
			goto done;
		}
		if (!arg)
			goto done;
		if (off > SYSQL_ARGV_LEN - SYSQL_ARG_LEN) {
			e->h.flags |= SYSQL_F_ARGV_TRUNCATED;
			goto done;
		}
		long n = bpf_probe_read_user_str(&e->argv[off], SYSQL_ARG_LEN, arg);
		if (n <= 0 || n > SYSQL_ARG_LEN) {
			e->h.flags |= SYSQL_F_USER_FAULT;
			goto done;
		}
		if (n == SYSQL_ARG_LEN)
			e->h.flags |= SYSQL_F_ARGV_TRUNCATED;
		/* off + n <= SYSQL_ARGV_LEN, so the mask changes nothing; it gives
		 * the verifier the same bounds each time round the loop, which
		 * lets it prune: loading each exec program took 0.4-0.5 s
		 * without it, 5 ms with it. */
		off = (off + n) & (2 * SYSQL_ARGV_LEN - 1);
		argc++;
	}
	/* All SYSQL_MAX_ARGS slots used: truncated if there is one more. */
	{
		const char *more = 0;
		if (bpf_probe_read_user(&more, sizeof(more), &argv[SYSQL_MAX_ARGS]) == 0 && more)
			e->h.flags |= SYSQL_F_ARGV_TRUNCATED;
	}
done:
	e->argv_len = off;
	e->argc = argc;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	bpf_map_update_elem(&sysql_execs, &tid, e, BPF_ANY);
	return 0;
}

static __always_inline void exec_emit(__u32 key, __s64 ret)
{
	struct sysql_exec_event *e = bpf_map_lookup_elem(&sysql_execs, &key);
	if (!e)
		return;
	__u32 flags = e->h.flags;
	fill_header(&e->h, SYSQL_KIND_EXEC, e->h.syscall, e->h.ts_boot_ns, ret);
	e->h.flags = flags;
	/* sent at its exact length: the unused tail of argv stays behind */
	__u32 argv_len = e->argv_len;
	if (argv_len > SYSQL_ARGV_LEN)
		argv_len = SYSQL_ARGV_LEN;
	__u64 size = offsetof(struct sysql_exec_event, argv) + argv_len;
	if (bpf_ringbuf_output(&sysql_events, e, size, wake_output(size)))
		count_lost(SYSQL_TABLE_EXECS);
	bpf_map_delete_elem(&sysql_execs, &key);
}

SEC("tracepoint/syscalls/sys_enter_execve")
int sys_enter_execve(struct trace_event_raw_sys_enter *ctx)
{
	return exec_enter(SYSQL_SYS_EXECVE, AT_FDCWD, (const char *)ctx->args[0],
			  (const char *const *)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_execveat")
int sys_enter_execveat(struct trace_event_raw_sys_enter *ctx)
{
	return exec_enter(SYSQL_SYS_EXECVEAT, (__s32)ctx->args[0], (const char *)ctx->args[1],
			  (const char *const *)ctx->args[2]);
}

/* A successful exec: the new image is in place and comm is the new one. The
 * thread that called exec may have been a non-leader that now carries the
 * leader's pid: the stash is keyed by old_pid. */
SEC("tracepoint/sched/sched_process_exec")
int sched_process_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	exec_emit((__u32)ctx->old_pid, 0);
	return 0;
}

/* A failed exec returns here with the old image; a successful one was already
 * emitted by sched_process_exec, so the lookup finds nothing. */
SEC("tracepoint/syscalls/sys_exit_execve")
int sys_exit_execve(struct trace_event_raw_sys_exit *ctx)
{
	exec_emit((__u32)bpf_get_current_pid_tgid(), ctx->ret);
	return 0;
}

/* ---- exits ---------------------------------------------------------------- */

/* A thread's exit (sched/sched_process_exit, in the exiting thread). One
 * record per process: when its last thread exits (group_dead; on kernels
 * whose tracepoint lacks that field, when the group's live count is zero).
 * task->exit_code is set before the tracepoint fires; for a group exit
 * (exit_group, a fatal signal) every thread carries the group's code. */
SEC("tracepoint/sched/sched_process_exit")
int sched_process_exit(struct trace_event_raw_sched_process_exit *ctx)
{
	if (is_self())
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	bool group_dead;
	if (bpf_core_field_exists(ctx->group_dead))
		group_dead = BPF_CORE_READ(ctx, group_dead);
	else
		group_dead = BPF_CORE_READ(task, signal, live.counter) == 0;
	if (!group_dead)
		return 0;
	if (task_filtered()) {
		count_filtered(SYSQL_TABLE_EXITS);
		return 0;
	}

	struct sysql_exit_event *e = bpf_ringbuf_reserve(&sysql_events, sizeof(*e), 0);
	if (!e) {
		count_lost(SYSQL_TABLE_EXITS);
		return 0;
	}
	__u64 now = bpf_ktime_get_boot_ns();
	fill_header(&e->h, SYSQL_KIND_EXIT, SYSQL_SYS_EXIT, now, 0);
	e->h.latency_ns = 0;
	__u32 code = task->exit_code;
	struct signal_struct *sig = task->signal;
	if (sig->flags & SIGNAL_GROUP_EXIT)
		code = sig->group_exit_code;
	e->exit_code = code;
	e->start_boot_ns = task->group_leader->start_boottime;
	e->_pad = 0;
	bpf_ringbuf_submit(e, wake_reserved(sizeof(*e)));
	return 0;
}

/* ---- payloads ------------------------------------------------------------- */

/* Sockets whose traffic is followed after their first recognised message:
 * PostgreSQL and MySQL replies have no shape of their own, and HTTP bodies
 * are counted. Keyed by socket inode number (never reused while the socket
 * lives; LRU, so closed sockets age out). Value: SYSQL_PROTO_*. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u8);
} sysql_conns SEC(".maps");

/* A record being built: the fixed part, then room for twice the largest
 * payload (so that a mask can prove a read's bound to the verifier). */
struct payload_scratch {
	__u8 bytes[sizeof(struct sysql_payload_event) + SYSQL_SNAP_MAX * 2];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct payload_scratch);
} sysql_payload_scratch SEC(".maps");

/* The table a socket I/O syscall counts for when it is lost or filtered:
 * its protocol's when known; an unknown one is counted for dns_queries if it
 * is a datagram socket (DNS is the only datagram protocol read) and for
 * http_requests otherwise: an upper bound, never a silent drop. */
static __always_inline __u32 payload_table(struct sock *sk, __u64 ino)
{
	__u8 *proto = bpf_map_lookup_elem(&sysql_conns, &ino);
	__u8 p = proto ? *proto : 0;
	if (p == SYSQL_PROTO_PGSQL || p == SYSQL_PROTO_MYSQL)
		return SYSQL_TABLE_DB;
	if (p == SYSQL_PROTO_DNS || (p == 0 && BPF_CORE_READ(sk, sk_type) == SOCK_DGRAM))
		return SYSQL_TABLE_DNS;
	return SYSQL_TABLE_HTTP;
}

static __always_inline int io_enter(__u32 syscall, __u64 fd, __u64 a1, __u64 a2, __u64 a3)
{
	if (is_self())
		return 0;
	__u64 ino = 0;
	struct sock *sk = fd_sock_ino((int)fd, &ino);
	if (!sk)
		return 0;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6 && family != AF_UNIX)
		return 0;
	if (task_filtered()) {
		count_filtered(payload_table(sk, ino));
		return 0;
	}
	struct args_stash *s = stash_new(SYSQL_KIND_PAYLOAD, syscall, fd, a1, a2, a3);
	if (!s) {
		count_lost(payload_table(sk, ino));
		return 0;
	}
	s->sk = (__u64)sk;
	s->ino = ino;
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_read")
int sys_enter_read(struct trace_event_raw_sys_enter *ctx)
{
	return io_enter(SYSQL_SYS_READ, ctx->args[0], ctx->args[1], ctx->args[2], 0);
}

SEC("tracepoint/syscalls/sys_enter_write")
int sys_enter_write(struct trace_event_raw_sys_enter *ctx)
{
	return io_enter(SYSQL_SYS_WRITE, ctx->args[0], ctx->args[1], ctx->args[2], 0);
}

/* recvfrom / sendto: (fd, buf, len, flags, addr, addrlen) */
SEC("tracepoint/syscalls/sys_enter_recvfrom")
int sys_enter_recvfrom(struct trace_event_raw_sys_enter *ctx)
{
	return io_enter(SYSQL_SYS_RECVFROM, ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[4]);
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int sys_enter_sendto(struct trace_event_raw_sys_enter *ctx)
{
	return io_enter(SYSQL_SYS_SENDTO, ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[4]);
}

/* recvmsg / sendmsg: (fd, msghdr, flags) */
SEC("tracepoint/syscalls/sys_enter_recvmsg")
int sys_enter_recvmsg(struct trace_event_raw_sys_enter *ctx)
{
	return io_enter(SYSQL_SYS_RECVMSG, ctx->args[0], ctx->args[1], 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int sys_enter_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
	return io_enter(SYSQL_SYS_SENDMSG, ctx->args[0], ctx->args[1], 0, 0);
}

/* readv / writev: (fd, iov, iovcnt) */
SEC("tracepoint/syscalls/sys_enter_readv")
int sys_enter_readv(struct trace_event_raw_sys_enter *ctx)
{
	return io_enter(SYSQL_SYS_READV, ctx->args[0], ctx->args[1], ctx->args[2], 0);
}

SEC("tracepoint/syscalls/sys_enter_writev")
int sys_enter_writev(struct trace_event_raw_sys_enter *ctx)
{
	return io_enter(SYSQL_SYS_WRITEV, ctx->args[0], ctx->args[1], ctx->args[2], 0);
}

static __always_inline bool is_upper(__u8 c)
{
	return c >= 'A' && c <= 'Z';
}

/* An HTTP/1.x request line ("GET /", "POST /", ...) or a status line. */
static __always_inline bool http_start(const __u8 *p, __u32 n)
{
	if (n < 8)
		return false;
	if (p[0] == 'H' && p[1] == 'T' && p[2] == 'T' && p[3] == 'P' && p[4] == '/')
		return true;
	/* a method: 3 to 7 capitals then a space */
	if (!is_upper(p[0]) || !is_upper(p[1]) || !is_upper(p[2]))
		return false;
	for (int i = 3; i < 8; i++) {
		if (p[i] == ' ')
			return true;
		if (!is_upper(p[i]))
			return false;
	}
	return false;
}

static __always_inline __u32 be32(const __u8 *p)
{
	return ((__u32)p[0] << 24) | ((__u32)p[1] << 16) | ((__u32)p[2] << 8) | p[3];
}

/* A PostgreSQL client's first message (startup, SSL or GSS request) or a
 * simple ('Q') or extended ('P'arse) query. */
static __always_inline bool pgsql_start(const __u8 *p, __u32 n)
{
	if (n < 8)
		return false;
	__u32 code = be32(p + 4);
	if (be32(p) >= 8 && be32(p) < 10000 &&
	    (code == 0x00030000 || code == 80877103 || code == 80877104))
		return true;
	if (p[0] != 'Q' && p[0] != 'P')
		return false;
	__u32 len = be32(p + 1);
	return len >= 5 && len < (1u << 24);
}

/* A MySQL COM_QUERY or COM_STMT_PREPARE (sequence 0, command 3 or 0x16) or
 * a server greeting (protocol 10). A client writes a command's header and
 * payload at once; a server reads the 4-byte header alone, so on the server's
 * side a connection is found from the greeting it sends. */
static __always_inline bool mysql_start(const __u8 *p, __u32 n)
{
	if (n < 8)
		return false;
	__u32 len = p[0] | ((__u32)p[1] << 8) | ((__u32)p[2] << 16);
	return p[3] == 0 && len >= 1 && (p[4] == 0x03 || p[4] == 0x16 || (p[4] == 0x0a && len < 512));
}

/* Ports and addresses from a user sockaddr (unconnected UDP). */
static __always_inline __u16 user_sockaddr(const void *uaddr, __u8 *addr)
{
	struct sockaddr_in6 sa = {};
	if (!uaddr || bpf_probe_read_user(&sa, sizeof(sa), uaddr))
		return 0;
	if (sa.sin6_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&sa;
		__builtin_memcpy(addr, &in->sin_addr, 4);
		return bpf_ntohs(in->sin_port);
	}
	if (sa.sin6_family == AF_INET6) {
		__builtin_memcpy(addr, &sa.sin6_addr, 16);
		return bpf_ntohs(sa.sin6_port);
	}
	return 0;
}

/* The exit of the eight socket I/O syscalls: the stash says which. */
static __always_inline int sock_io_exit(long ret)
{
	struct args_stash *s = stashed(SYSQL_KIND_PAYLOAD);
	if (!s)
		return 0;
	__u32 syscall = s->syscall;
	__u64 ts = s->ts;
	struct sock *sk = (struct sock *)s->sk;
	__u64 key = s->ino;
	__u64 a1 = s->args[1], a3 = s->args[3];
	__s32 fd = (__s32)s->args[0];
	unstash(s);
	if (ret <= 0)
		return 0;

	/* Where the bytes are: one buffer, or the first iovec. */
	const __u8 *buf = (const __u8 *)a1;
	__u64 avail = ret;
	const void *uaddr = 0;
	if (syscall == SYSQL_SYS_RECVFROM || syscall == SYSQL_SYS_SENDTO)
		uaddr = (const void *)a3;
	if (syscall >= SYSQL_SYS_RECVMSG) {
		const struct iovec *iov = (const struct iovec *)a1;
		if (syscall == SYSQL_SYS_RECVMSG || syscall == SYSQL_SYS_SENDMSG) {
			struct user_msghdr msg = {};
			if (bpf_probe_read_user(&msg, sizeof(msg), (void *)a1))
				return 0;
			iov = msg.msg_iov;
			uaddr = msg.msg_name;
		}
		struct iovec first = {};
		if (bpf_probe_read_user(&first, sizeof(first), iov))
			return 0;
		buf = first.iov_base;
		if (first.iov_len < avail)
			avail = first.iov_len;
	}

	/* The first bytes say what this is. Shorter sends and receives (a
	 * PostgreSQL ReadyForQuery is 6 bytes) matter only on followed sockets. */
	__u8 peek[16] = {};
	__u32 peek_len = avail < 8 ? (__u32)avail : 8;
	if (bpf_probe_read_user(peek, peek_len & 15, buf))
		return 0;

	__u8 *tracked = bpf_map_lookup_elem(&sysql_conns, &key);
	__u8 proto = tracked ? *tracked : 0;
	bool start = false;
	__u16 sk_type = BPF_CORE_READ(sk, sk_type);
	if (proto == 0 || proto == SYSQL_PROTO_HTTP) {
		if (http_start(peek, peek_len)) {
			proto = SYSQL_PROTO_HTTP;
			start = true;
		}
	}
	if (proto == 0) {
		if (pgsql_start(peek, peek_len))
			proto = SYSQL_PROTO_PGSQL;
		else if (mysql_start(peek, peek_len))
			proto = SYSQL_PROTO_MYSQL;
	}

	__u32 zero = 0;
	struct payload_scratch *ps = bpf_map_lookup_elem(&sysql_payload_scratch, &zero);
	if (!ps)
		return 0;
	struct sysql_payload_event *e = (struct sysql_payload_event *)ps->bytes;
	__u8 *data = ps->bytes + sizeof(*e);
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	__builtin_memset(e->laddr, 0, sizeof(e->laddr));
	__builtin_memset(e->raddr, 0, sizeof(e->raddr));
	e->lport = 0;
	e->rport = 0;
	if (family == AF_INET) {
		bpf_core_read(e->laddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(e->raddr, 4, &sk->__sk_common.skc_daddr);
	} else if (family == AF_INET6) {
		bpf_core_read(e->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(e->raddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
	if (family != AF_UNIX) {
		e->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
		e->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
		if (e->rport == 0 && uaddr) /* unconnected datagram socket */
			e->rport = user_sockaddr(uaddr, e->raddr);
	}
	if (proto == 0 && sk_type == SOCK_DGRAM && (e->lport == 53 || e->rport == 53))
		proto = SYSQL_PROTO_DNS;
	if (proto == 0)
		return 0;
	if (!tracked && proto != SYSQL_PROTO_DNS)
		bpf_map_update_elem(&sysql_conns, &key, &proto, BPF_ANY);

	/* HTTP bodies are counted, not copied: only message heads are parsed. */
	__u32 n = avail < sysql_snap_len ? (__u32)avail : sysql_snap_len;
	if (proto == SYSQL_PROTO_HTTP && !start)
		n = 0;
	if (n > SYSQL_SNAP_MAX)
		n = SYSQL_SNAP_MAX;

	fill_header(&e->h, SYSQL_KIND_PAYLOAD, syscall, ts, ret);
	if (n < ret && !(proto == SYSQL_PROTO_HTTP && !start))
		e->h.flags |= SYSQL_F_DATA_TRUNCATED;
	e->sock_id = key;
	e->fd = fd;
	e->sk_family = family;
	e->sk_type = sk_type;
	e->protocol = proto;
	e->_pad0 = 0;
	e->_pad1 = 0;
	e->_pad2 = 0;
	e->data_len = 0;
	if (n > 0 && bpf_probe_read_user(data, n & (SYSQL_SNAP_MAX * 2 - 1), buf) == 0)
		e->data_len = n;
	else if (n > 0)
		e->h.flags |= SYSQL_F_USER_FAULT;

	__u32 table = proto == SYSQL_PROTO_HTTP ? SYSQL_TABLE_HTTP
		      : proto == SYSQL_PROTO_DNS ? SYSQL_TABLE_DNS
						 : SYSQL_TABLE_DB;
	__u64 size = sizeof(*e) + (e->data_len & (SYSQL_SNAP_MAX * 2 - 1));
	if (bpf_ringbuf_output(&sysql_events, ps, size, wake_output(size)))
		count_lost(table);
	return 0;
}

/* ---- per-syscall exit tracepoints ------------------------------------------ */

SEC("tracepoint/syscalls/sys_exit_connect")
int sys_exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	return connect_exit(ctx->ret);
}

/* One exit program for accept and accept4: the stash says which. */
SEC("tracepoint/syscalls/sys_exit_accept")
int sys_exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	return accept_exit(ctx->ret);
}

/* One exit program for the eight socket I/O syscalls: the stash says which. */
SEC("tracepoint/syscalls/sys_exit_read")
int sys_exit_sock_io(struct trace_event_raw_sys_exit *ctx)
{
	return sock_io_exit(ctx->ret);
}

/* ---- one pair for every syscall: tp_btf sys_enter / sys_exit ------------------
 *
 * The other way in: two BTF tracepoints that see every syscall, and a table
 * (sysql_syscalls, filled by the loader for this architecture's numbers)
 * that says which are traced and by which handler. It skips the perf trace
 * buffer each syscall tracepoint fills before it calls its program, and it
 * detaches at once, where each of the 37 syscall tracepoints waits for RCU
 * grace periods under a kernel mutex (about 35 ms each). The table is also
 * the kernel-side filter by syscall: the loader changes it without
 * reloading anything. */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SYSQL_NR_MAX);
	__type(key, __u32);
	__type(value, __u32); /* SYSQL_H_*, 0: not traced */
} sysql_syscalls SEC(".maps");

#if defined(__TARGET_ARCH_x86)
#define SYSCALL_ARG(regs, i)                                                                          \
	((i) == 0 ? (regs)->di : (i) == 1 ? (regs)->si : (i) == 2 ? (regs)->dx : (i) == 3 ? (regs)->r10 \
	 : (i) == 4 ? (regs)->r8 : (regs)->r9)
#define SYSCALL_NR(regs) ((regs)->orig_ax)
#define TS_COMPAT 0x0002
/* A 32-bit syscall on a 64-bit kernel has other numbers: the syscall
 * tracepoints ignore them, and so does the table. */
static __always_inline bool compat_syscall(void)
{
	return bpf_get_current_task_btf()->thread_info.status & TS_COMPAT;
}
#elif defined(__TARGET_ARCH_arm64)
#define SYSCALL_ARG(regs, i) ((i) == 0 ? (regs)->orig_x0 : (regs)->regs[i])
#define SYSCALL_NR(regs) ((regs)->syscallno)
static __always_inline bool compat_syscall(void)
{
	return false; /* 32-bit tasks on arm64 are not traced by number (TIF_32BIT) */
}
#else
#error "sysql: the syscall table needs this architecture's registers"
#endif

static __always_inline __u32 handler_of(long nr)
{
	if ((unsigned long)nr >= SYSQL_NR_MAX)
		return 0;
	__u32 key = (__u32)nr;
	__u32 *h = bpf_map_lookup_elem(&sysql_syscalls, &key);
	if (!h || !*h)
		return 0;
	return compat_syscall() ? 0 : *h;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sysql_sys_enter, struct pt_regs *regs, long id)
{
	__u32 h = handler_of(id);
	if (!h)
		return 0;
	__u64 a0 = SYSCALL_ARG(regs, 0), a1 = SYSCALL_ARG(regs, 1), a2 = SYSCALL_ARG(regs, 2);
	switch (h) {
	case SYSQL_H_OPEN:
		return stash_args(SYSQL_KIND_OPEN, SYSQL_SYS_OPEN, a0, a1, a2, 0);
	case SYSQL_H_OPENAT:
		return stash_args(SYSQL_KIND_OPEN, SYSQL_SYS_OPENAT, a0, a1, a2, SYSCALL_ARG(regs, 3));
	case SYSQL_H_OPENAT2:
		return stash_args(SYSQL_KIND_OPEN, SYSQL_SYS_OPENAT2, a0, a1, a2, SYSCALL_ARG(regs, 3));
	case SYSQL_H_CREAT:
		return stash_args(SYSQL_KIND_OPEN, SYSQL_SYS_CREAT, a0, a1, 0, 0);
	case SYSQL_H_CONNECT:
		return stash_args(SYSQL_KIND_CONNECT, SYSQL_SYS_CONNECT, a0, a1, a2, 0);
	case SYSQL_H_ACCEPT:
		return stash_args(SYSQL_KIND_ACCEPT, SYSQL_SYS_ACCEPT, a0, 0, 0, 0);
	case SYSQL_H_ACCEPT4:
		return stash_args(SYSQL_KIND_ACCEPT, SYSQL_SYS_ACCEPT4, a0, SYSCALL_ARG(regs, 3), 0, 0);
	case SYSQL_H_EXECVE:
		return exec_enter(SYSQL_SYS_EXECVE, AT_FDCWD, (const char *)a0, (const char *const *)a1);
	case SYSQL_H_EXECVEAT:
		return exec_enter(SYSQL_SYS_EXECVEAT, (__s32)a0, (const char *)a1, (const char *const *)a2);
	case SYSQL_H_READ:
		return io_enter(SYSQL_SYS_READ, a0, a1, a2, 0);
	case SYSQL_H_WRITE:
		return io_enter(SYSQL_SYS_WRITE, a0, a1, a2, 0);
	case SYSQL_H_RECVFROM:
		return io_enter(SYSQL_SYS_RECVFROM, a0, a1, a2, SYSCALL_ARG(regs, 4));
	case SYSQL_H_SENDTO:
		return io_enter(SYSQL_SYS_SENDTO, a0, a1, a2, SYSCALL_ARG(regs, 4));
	case SYSQL_H_RECVMSG:
		return io_enter(SYSQL_SYS_RECVMSG, a0, a1, 0, 0);
	case SYSQL_H_SENDMSG:
		return io_enter(SYSQL_SYS_SENDMSG, a0, a1, 0, 0);
	case SYSQL_H_READV:
		return io_enter(SYSQL_SYS_READV, a0, a1, a2, 0);
	case SYSQL_H_WRITEV:
		return io_enter(SYSQL_SYS_WRITEV, a0, a1, a2, 0);
	}
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(sysql_sys_exit, struct pt_regs *regs, long ret)
{
	__u32 h = handler_of(SYSCALL_NR(regs));
	if (!h)
		return 0;
	switch (h) {
	case SYSQL_H_OPEN:
	case SYSQL_H_OPENAT:
	case SYSQL_H_OPENAT2:
	case SYSQL_H_CREAT:
		return open_exit(ret);
	case SYSQL_H_CONNECT:
		return connect_exit(ret);
	case SYSQL_H_ACCEPT:
	case SYSQL_H_ACCEPT4:
		return accept_exit(ret);
	case SYSQL_H_EXECVE:
	case SYSQL_H_EXECVEAT:
		exec_emit((__u32)bpf_get_current_pid_tgid(), ret);
		return 0;
	default:
		return sock_io_exit(ret);
	}
}
