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
	OFF(sysql_connect_event, sport, "CONNECT_SPORT");
	OFF(sysql_connect_event, sock_id, "CONNECT_SOCK_ID");
	OFF(sysql_connect_event, netns, "CONNECT_NETNS");
	OFF(sysql_connect_event, saddr, "CONNECT_SADDR");
	OFF(sysql_connect_event, addr, "CONNECT_ADDR");

	SIZE(sysql_connect_done_event, "CONNECT_DONE_SIZE");
	OFF(sysql_connect_done_event, sock_id, "CONNECT_DONE_SOCK_ID");
	OFF(sysql_connect_done_event, sport, "CONNECT_DONE_SPORT");
	OFF(sysql_connect_done_event, saddr, "CONNECT_DONE_SADDR");

	SIZE(sysql_accept_event, "ACCEPT_SIZE");
	OFF(sysql_accept_event, fd, "ACCEPT_FD");
	OFF(sysql_accept_event, flags, "ACCEPT_FLAGS");
	OFF(sysql_accept_event, sk_family, "ACCEPT_SK_FAMILY");
	OFF(sysql_accept_event, sk_type, "ACCEPT_SK_TYPE");
	OFF(sysql_accept_event, sk_protocol, "ACCEPT_SK_PROTOCOL");
	OFF(sysql_accept_event, lport, "ACCEPT_LPORT");
	OFF(sysql_accept_event, rport, "ACCEPT_RPORT");
	OFF(sysql_accept_event, netns, "ACCEPT_NETNS");
	OFF(sysql_accept_event, laddr, "ACCEPT_LADDR");
	OFF(sysql_accept_event, raddr, "ACCEPT_RADDR");

	SIZE(sysql_exit_event, "EXIT_SIZE");
	OFF(sysql_exit_event, start_boot_ns, "EXIT_START");
	OFF(sysql_exit_event, exit_code, "EXIT_CODE");

	SIZE(sysql_exec_event, "EXEC_SIZE");
	OFF(sysql_exec_event, filename_len, "EXEC_FILENAME_LEN");
	OFF(sysql_exec_event, argv_len, "EXEC_ARGV_LEN");
	OFF(sysql_exec_event, argc, "EXEC_ARGC");
	OFF(sysql_exec_event, dfd, "EXEC_DFD");
	OFF(sysql_exec_event, filename, "EXEC_FILENAME");
	OFF(sysql_exec_event, argv, "EXEC_ARGV");

	SIZE(sysql_payload_event, "PAYLOAD_SIZE");
	OFF(sysql_payload_event, sock_id, "PAYLOAD_SOCK_ID");
	OFF(sysql_payload_event, fd, "PAYLOAD_FD");
	OFF(sysql_payload_event, sk_family, "PAYLOAD_SK_FAMILY");
	OFF(sysql_payload_event, sk_type, "PAYLOAD_SK_TYPE");
	OFF(sysql_payload_event, protocol, "PAYLOAD_PROTOCOL");
	OFF(sysql_payload_event, lport, "PAYLOAD_LPORT");
	OFF(sysql_payload_event, rport, "PAYLOAD_RPORT");
	OFF(sysql_payload_event, data_len, "PAYLOAD_DATA_LEN");
	OFF(sysql_payload_event, laddr, "PAYLOAD_LADDR");
	OFF(sysql_payload_event, raddr, "PAYLOAD_RADDR");
	OFF(sysql_payload_event, data, "PAYLOAD_DATA");

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
	DEF(SYSQL_KIND_CONNECT_DONE);
	DEF(SYSQL_KIND_ACCEPT);
	DEF(SYSQL_KIND_EXIT);
	DEF(SYSQL_TABLE_ACCEPTS);
	DEF(SYSQL_TABLE_EXITS);
	DEF(SYSQL_SYS_ACCEPT);
	DEF(SYSQL_SYS_ACCEPT4);
	DEF(SYSQL_SYS_EXIT);
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
	DEF(SYSQL_F_DATA_TRUNCATED);
	DEF(SYSQL_SNAP_MAX);
	DEF(SYSQL_KIND_PAYLOAD);
	DEF(SYSQL_TABLE_HTTP);
	DEF(SYSQL_TABLE_DB);
	DEF(SYSQL_TABLE_DNS);
	DEF(SYSQL_SYS_READ);
	DEF(SYSQL_SYS_WRITE);
	DEF(SYSQL_SYS_RECVFROM);
	DEF(SYSQL_SYS_SENDTO);
	DEF(SYSQL_SYS_RECVMSG);
	DEF(SYSQL_SYS_SENDMSG);
	DEF(SYSQL_SYS_READV);
	DEF(SYSQL_SYS_WRITEV);
	DEF(SYSQL_PROTO_HTTP);
	DEF(SYSQL_PROTO_PGSQL);
	DEF(SYSQL_PROTO_MYSQL);
	DEF(SYSQL_PROTO_DNS);
	DEF(SYSQL_NR_MAX);
	DEF(SYSQL_FILTER_COMM);
	DEF(SYSQL_FILTER_PID);
	DEF(SYSQL_FILTER_UID);
	DEF(SYSQL_FILTER_CGROUP);
	DEF(SYSQL_FILTER_PATH);
	DEF(SYSQL_MARK_ONLY);
	DEF(SYSQL_MARK_EXCLUDE);
	DEF(SYSQL_FILTER_VALUES);
	DEF(SYSQL_H_OPEN);
	DEF(SYSQL_H_OPENAT);
	DEF(SYSQL_H_OPENAT2);
	DEF(SYSQL_H_CREAT);
	DEF(SYSQL_H_CONNECT);
	DEF(SYSQL_H_ACCEPT);
	DEF(SYSQL_H_ACCEPT4);
	DEF(SYSQL_H_EXECVE);
	DEF(SYSQL_H_EXECVEAT);
	DEF(SYSQL_H_READ);
	DEF(SYSQL_H_WRITE);
	DEF(SYSQL_H_RECVFROM);
	DEF(SYSQL_H_SENDTO);
	DEF(SYSQL_H_RECVMSG);
	DEF(SYSQL_H_SENDMSG);
	DEF(SYSQL_H_READV);
	DEF(SYSQL_H_WRITEV);
	return 0;
}
