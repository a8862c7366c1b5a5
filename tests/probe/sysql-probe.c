/*
 * sysql-probe: makes exactly the syscalls the capture tests assert on, in a
 * known order, from a process of its own (sysql never traces itself).
 *
 * usage: sysql-probe DIR TCP_PORT REFUSED_PORT TCP6_PORT UNIX_PATH
 * DIR holds a file named "exists". Ends by exec'ing /bin/true with a
 * distinctive argv, after a failed exec of DIR/missing-binary.
 *
 * usage: sysql-probe burst DIR N
 * N opens of DIR/burst-<i> (missing files), as fast as it can.
 *
 * usage: sysql-probe rate DIR N RATE
 * N opens of DIR/rate-<i> (missing files), RATE per second, open loop.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static char path_buf[4096];

static const char *in_dir(const char *dir, const char *name)
{
	snprintf(path_buf, sizeof(path_buf), "%s/%s", dir, name);
	return path_buf;
}

static void close_if(int fd)
{
	if (fd >= 0)
		close(fd);
}

static void connect_tcp(int family, int port)
{
	int s = socket(family, SOCK_STREAM, 0);
	if (family == AF_INET) {
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
		inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
		connect(s, (struct sockaddr *)&a, sizeof(a));
	} else {
		struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
		inet_pton(AF_INET6, "::1", &a.sin6_addr);
		connect(s, (struct sockaddr *)&a, sizeof(a));
	}
	close(s);
}

int main(int argc, char **argv)
{
	/* only fds 0-2, whatever the caller left open (a build lock, a pipe) */
	syscall(SYS_close_range, 3, ~0U, 0);
	if (argc == 4 && strcmp(argv[1], "burst") == 0) {
		long n = atol(argv[3]);
		for (long i = 0; i < n; i++) {
			char name[64];
			snprintf(name, sizeof(name), "burst-%ld", i);
			close_if(openat(AT_FDCWD, in_dir(argv[2], name), O_RDONLY));
		}
		return 0;
	}
	if (argc == 5 && strcmp(argv[1], "rate") == 0) {
		long n = atol(argv[3]);
		double rate = atof(argv[4]);
		struct timespec t0, now;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (long i = 0; i < n; i++) {
			/* open loop: event i is due at t0 + i / rate */
			double due = i / rate;
			for (;;) {
				clock_gettime(CLOCK_MONOTONIC, &now);
				double t = (now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9;
				if (t >= due)
					break;
				if (due - t > 0.0002) {
					struct timespec nap = {0, (long)((due - t) * 1e9 / 2)};
					nanosleep(&nap, NULL);
				}
			}
			char name[64];
			snprintf(name, sizeof(name), "rate-%ld", i);
			close_if(openat(AT_FDCWD, in_dir(argv[2], name), O_RDONLY));
		}
		return 0;
	}
	if (argc != 6) {
		fprintf(stderr, "usage: sysql-probe DIR TCP_PORT REFUSED_PORT TCP6_PORT UNIX_PATH\n");
		return 2;
	}
	const char *dir = argv[1];

	/* opens: fds 0-2 are open, so every successful open returns 3 */
	close_if(syscall(SYS_open, in_dir(dir, "exists"), O_RDONLY, 0));
	close_if(openat(AT_FDCWD, in_dir(dir, "missing"), O_RDONLY | O_CLOEXEC));
	struct open_how how = {.flags = O_RDONLY | O_CLOEXEC};
	close_if(syscall(SYS_openat2, AT_FDCWD, in_dir(dir, "exists"), &how, sizeof(how)));
	close_if(creat(in_dir(dir, "created"), 0640));

	/* connects */
	connect_tcp(AF_INET, atoi(argv[2]));
	connect_tcp(AF_INET, atoi(argv[3]));
	connect_tcp(AF_INET6, atoi(argv[4]));
	int u = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un ua = {.sun_family = AF_UNIX};
	strncpy(ua.sun_path, argv[5], sizeof(ua.sun_path) - 1);
	connect(u, (struct sockaddr *)&ua, sizeof(ua));
	close(u);
	int d = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in da = {.sin_family = AF_INET, .sin_port = htons(53)};
	inet_pton(AF_INET, "127.0.0.53", &da.sin_addr);
	connect(d, (struct sockaddr *)&da, sizeof(da));
	close(d);

	/* execs: one that fails, then one that succeeds */
	char *bad[] = {"missing-binary", "--sysql-probe=failed", NULL};
	execve(in_dir(dir, "missing-binary"), bad, NULL);
	char *good[] = {"/bin/true", "sysql-probe-exec", "two words", NULL};
	execve("/bin/true", good, NULL);
	return 1;
}
