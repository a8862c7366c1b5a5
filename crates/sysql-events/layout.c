/* Prints the sizes and offsets of ebpf/include/sysql_events.h as Rust
 * constants; build.rs compiles and runs it, src/lib.rs asserts against them. */
#include <linux/types.h>
#include <stddef.h>
#include <stdio.h>
#include "sysql_events.h"

#define SIZE(s, name) printf("pub const %s: usize = %zu;\n", name, sizeof(struct s))
#define OFF(s, f, name) printf("pub const %s: usize = %zu;\n", name, offsetof(struct s, f))
#define DEF(d) printf("pub const C_%s: u64 = %llu;\n", #d, (unsigned long long)(d))

int main(void)
{
	SIZE(sysql_header, "HEADER_SIZE");
	OFF(sysql_header, syscall, "HEADER_SYSCALL");
	OFF(sysql_header, ts_boot_ns, "HEADER_TS");
	OFF(sysql_header, latency_ns, "HEADER_LATENCY");
	OFF(sysql_header, cgroup_id, "HEADER_CGROUP");
	OFF(sysql_header, ret, "HEADER_RET");
	OFF(sysql_header, pid, "HEADER_PID");
	OFF(sysql_header, tid, "HEADER_TID");
	OFF(sysql_header, ppid, "HEADER_PPID");
	OFF(sysql_header, uid, "HEADER_UID");
	OFF(sysql_header, gid, "HEADER_GID");
	OFF(sysql_header, flags, "HEADER_FLAGS");
	OFF(sysql_header, comm, "HEADER_COMM");

	SIZE(sysql_open_event, "OPEN_SIZE");
	OFF(sysql_open_event, flags, "OPEN_FLAGS");
	OFF(sysql_open_event, dfd, "OPEN_DFD");
	OFF(sysql_open_event, mode, "OPEN_MODE");
	OFF(sysql_open_event, path_len, "OPEN_PATH_LEN");
	OFF(sysql_open_event, path, "OPEN_PATH");

	SIZE(sysql_connect_event, "CONNECT_SIZE");
	OFF(sysql_connect_event, fd, "CONNECT_FD");
	OFF(sysql_connect_event, addrlen, "CONNECT_ADDRLEN");
	OFF(sysql_connect_event, sk_family, "CONNECT_SK_FAMILY");
	OFF(sysql_connect_event, sk_type, "CONNECT_SK_TYPE");
	OFF(sysql_connect_event, sk_protocol, "CONNECT_SK_PROTOCOL");
	OFF(sysql_connect_event, addr, "CONNECT_ADDR");

	SIZE(sysql_exec_event, "EXEC_SIZE");
	OFF(sysql_exec_event, filename_len, "EXEC_FILENAME_LEN");
	OFF(sysql_exec_event, argv_len, "EXEC_ARGV_LEN");
	OFF(sysql_exec_event, argc, "EXEC_ARGC");
	OFF(sysql_exec_event, dfd, "EXEC_DFD");
	OFF(sysql_exec_event, filename, "EXEC_FILENAME");
	OFF(sysql_exec_event, argv, "EXEC_ARGV");

	DEF(SYSQL_COMM_LEN);
	DEF(SYSQL_PATH_LEN);
	DEF(SYSQL_FILENAME_LEN);
	DEF(SYSQL_ARG_LEN);
	DEF(SYSQL_ARGV_LEN);
	DEF(SYSQL_MAX_ARGS);
	DEF(SYSQL_SOCKADDR_LEN);
	DEF(SYSQL_KIND_OPEN);
	DEF(SYSQL_KIND_CONNECT);
	DEF(SYSQL_KIND_EXEC);
	DEF(SYSQL_TABLE_OPENS);
	DEF(SYSQL_TABLE_CONNECTS);
	DEF(SYSQL_TABLE_EXECS);
	DEF(SYSQL_TABLE_COUNT);
	DEF(SYSQL_SYS_OPEN);
	DEF(SYSQL_SYS_OPENAT);
	DEF(SYSQL_SYS_OPENAT2);
	DEF(SYSQL_SYS_CREAT);
	DEF(SYSQL_SYS_EXECVE);
	DEF(SYSQL_SYS_EXECVEAT);
	DEF(SYSQL_F_PATH_TRUNCATED);
	DEF(SYSQL_F_ARGV_TRUNCATED);
	DEF(SYSQL_F_USER_FAULT);
	DEF(SYSQL_F_ADDR_TRUNCATED);
	return 0;
}
