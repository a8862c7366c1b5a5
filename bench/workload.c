/*
 * sysql-bench: the workload generator of the benchmark suite (scripts/bench).
 * It makes one kind of syscall, open loop at a fixed rate per thread (or as
 * fast as it can), and prints a one-line JSON summary on stdout.
 *
 * usage: sysql-bench MODE [--threads N] [--rate R] [--ops N] [--duration S]
 *                         [--prefix P] [--path F] [--port N]
 *
 * MODE
 *   open-miss         openat(P<thread>-<seq>): P names a directory that does
 *                     not exist, so every call fails with ENOENT after one
 *                     lookup, and every path is unique: a tracer's output is
 *                     counted exactly by its sequence numbers.
 *   open-hit          openat(F) + close: F is an existing, cached file.
 *   connect-refused   socket + connect(127.0.0.1:PORT) + close, nothing listens.
 *   connect-listener  the same against a listener of its own on PORT, accepted
 *                     and closed by a thread of its own; the client closes
 *                     with SO_LINGER 0 so no TIME_WAIT piles up.
 *   exec              posix_spawn of itself with argv "--exit P<thread>-<seq>"
 *                     (the child exits at once), then waitpid.
 *
 * --rate R is per thread, in operations per second; 0 (the default) is as fast
 * as possible. Operation i of a thread is due at start + i/R: a late thread
 * catches up without sleeping, so the rate does not slip (open loop).
 * The run ends after --ops N operations per thread or --duration S seconds,
 * whichever comes first (at least one must be given).
 *
 * The summary: mode, threads, rate_per_thread, ops (all threads), failed
 * (operations whose result was not the expected one), wall_s (from the common
 * start to the last thread's end), user_s and sys_s (this process and its
 * reaped children), rate (ops / wall_s), pid.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum mode { OPEN_MISS, OPEN_HIT, CONNECT_REFUSED, CONNECT_LISTENER, EXEC };

static const char *mode_names[] = {"open-miss", "open-hit", "connect-refused", "connect-listener", "exec"};

static struct {
	enum mode mode;
	int threads;
	double rate;
	uint64_t ops;
	double duration;
	const char *prefix;
	const char *path;
	int port;
	char self[4096];
} cfg = {.threads = 1, .prefix = "/tmp/sysql-bench.missing/", .port = 0};

struct worker {
	pthread_t thread;
	int index;
	uint64_t done;
	uint64_t failed;
	uint64_t end_ns;
};

static pthread_barrier_t start_barrier;
static uint64_t start_ns;
extern char **environ;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "sysql-bench: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* Writes the decimal of v at p, returns the end; cheaper than snprintf per op. */
static char *put_u64(char *p, uint64_t v)
{
	char tmp[24];
	int n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

static struct sockaddr_in loopback(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

/* One operation; returns 1 if its result was the expected one. `tag` is the
 * buffer holding prefix + "<thread>-", `seq_at` where the sequence goes. */
static int one_op(char *tag, char *seq_at, uint64_t seq)
{
	switch (cfg.mode) {
	case OPEN_MISS: {
		*put_u64(seq_at, seq) = 0;
		int fd = openat(AT_FDCWD, tag, O_RDONLY);
		if (fd >= 0) {
			close(fd);
			return 0;
		}
		return errno == ENOENT;
	}
	case OPEN_HIT: {
		int fd = openat(AT_FDCWD, cfg.path, O_RDONLY);
		if (fd < 0)
			return 0;
		close(fd);
		return 1;
	}
	case CONNECT_REFUSED:
	case CONNECT_LISTENER: {
		struct sockaddr_in a = loopback(cfg.port);
		int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s < 0)
			return 0;
		int r = connect(s, (struct sockaddr *)&a, sizeof(a));
		int e = errno;
		if (r == 0) {
			struct linger l = {.l_onoff = 1, .l_linger = 0};
			setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		}
		close(s);
		return cfg.mode == CONNECT_LISTENER ? r == 0 : (r < 0 && e == ECONNREFUSED);
	}
	case EXEC: {
		*put_u64(seq_at, seq) = 0;
		char *argv[] = {cfg.self, "--exit", tag, NULL};
		pid_t pid;
		if (posix_spawn(&pid, cfg.self, NULL, NULL, argv, environ) != 0)
			return 0;
		int status;
		if (waitpid(pid, &status, 0) < 0)
			return 0;
		return WIFEXITED(status) && WEXITSTATUS(status) == 0;
	}
	}
	return 0;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	char tag[512];
	int n = snprintf(tag, sizeof(tag), "%s%d-", cfg.prefix, w->index);
	if (n < 0 || n > (int)sizeof(tag) - 24) {
		fprintf(stderr, "sysql-bench: prefix too long\n");
		exit(2);
	}
	char *seq_at = tag + n;
	uint64_t limit = cfg.ops ? cfg.ops : UINT64_MAX;
	uint64_t stop = cfg.duration > 0 ? (uint64_t)(cfg.duration * 1e9) : UINT64_MAX;
	double interval = cfg.rate > 0 ? 1e9 / cfg.rate : 0;

	pthread_barrier_wait(&start_barrier);
	uint64_t t0 = start_ns;
	while (w->done < limit) {
		uint64_t elapsed = now_ns() - t0;
		if (elapsed >= stop)
			break;
		uint64_t due = limit;
		if (interval > 0) {
			/* Operations due by now (the first is due at once). */
			due = (uint64_t)((double)elapsed / interval) + 1;
			if (due > limit)
				due = limit;
			if (w->done >= due) {
				uint64_t next = t0 + (uint64_t)((double)w->done * interval);
				struct timespec ts = {.tv_sec = (time_t)(next / 1000000000u),
						      .tv_nsec = (long)(next % 1000000000u)};
				clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
				continue;
			}
		}
		/* Do what is due, checking the clock every 64 ops (every exec). */
		uint64_t batch = due - w->done;
		uint64_t cap = cfg.mode == EXEC ? 1 : 64;
		if (batch > cap)
			batch = cap;
		for (uint64_t i = 0; i < batch; i++) {
			if (!one_op(tag, seq_at, w->done))
				w->failed++;
			w->done++;
		}
	}
	w->end_ns = now_ns();
	return NULL;
}

static void *listener(void *arg)
{
	int ls = *(int *)arg;
	for (;;) {
		int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
		if (c >= 0)
			close(c);
		else if (errno != EINTR && errno != ECONNABORTED)
			return NULL;
	}
}

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void usage(void)
{
	fprintf(stderr, "usage: sysql-bench open-miss|open-hit|connect-refused|connect-listener|exec\n"
			"         [--threads N] [--rate R] [--ops N] [--duration S] [--prefix P] [--path F] [--port N]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	/* The child of an exec operation: exit at once. */
	if (argc >= 2 && strcmp(argv[1], "--exit") == 0)
		_exit(0);
	if (argc < 2)
		usage();
	int found = 0;
	for (int m = 0; m <= EXEC; m++)
		if (strcmp(argv[1], mode_names[m]) == 0) {
			cfg.mode = (enum mode)m;
			found = 1;
		}
	if (!found)
		usage();
	for (int i = 2; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage();
		if (strcmp(argv[i], "--threads") == 0)
			cfg.threads = atoi(v);
		else if (strcmp(argv[i], "--rate") == 0)
			cfg.rate = atof(v);
		else if (strcmp(argv[i], "--ops") == 0)
			cfg.ops = strtoull(v, NULL, 10);
		else if (strcmp(argv[i], "--duration") == 0)
			cfg.duration = atof(v);
		else if (strcmp(argv[i], "--prefix") == 0)
			cfg.prefix = v;
		else if (strcmp(argv[i], "--path") == 0)
			cfg.path = v;
		else if (strcmp(argv[i], "--port") == 0)
			cfg.port = atoi(v);
		else
			usage();
		i++;
	}
	if (cfg.threads < 1 || (cfg.ops == 0 && cfg.duration <= 0))
		usage();
	if (cfg.mode == OPEN_HIT && !cfg.path)
		usage();
	if ((cfg.mode == CONNECT_REFUSED || cfg.mode == CONNECT_LISTENER) && cfg.port <= 0)
		usage();
	ssize_t n = readlink("/proc/self/exe", cfg.self, sizeof(cfg.self) - 1);
	if (n < 0)
		die("readlink /proc/self/exe");
	cfg.self[n] = 0;
	/* Sleeps of a rate-limited run should end on time. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

	if (cfg.mode == CONNECT_LISTENER) {
		static int ls;
		ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int one = 1;
		setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		struct sockaddr_in a = loopback(cfg.port);
		if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 4096) < 0)
			die("listening on 127.0.0.1");
		pthread_t t;
		if (pthread_create(&t, NULL, listener, &ls) != 0)
			die("starting the listener thread");
	}

	struct worker *ws = calloc((size_t)cfg.threads, sizeof(*ws));
	pthread_barrier_init(&start_barrier, NULL, (unsigned)cfg.threads + 1);
	for (int i = 0; i < cfg.threads; i++) {
		ws[i].index = i;
		if (pthread_create(&ws[i].thread, NULL, work, &ws[i]) != 0)
			die("starting a thread");
	}
	struct rusage r0, c0;
	getrusage(RUSAGE_SELF, &r0);
	getrusage(RUSAGE_CHILDREN, &c0);
	start_ns = now_ns();
	pthread_barrier_wait(&start_barrier);
	uint64_t done = 0, failed = 0, end = start_ns;
	for (int i = 0; i < cfg.threads; i++) {
		pthread_join(ws[i].thread, NULL);
		done += ws[i].done;
		failed += ws[i].failed;
		if (ws[i].end_ns > end)
			end = ws[i].end_ns;
	}
	struct rusage r1, c1;
	getrusage(RUSAGE_SELF, &r1);
	getrusage(RUSAGE_CHILDREN, &c1);
	double wall = (double)(end - start_ns) / 1e9;
	double user = tv_s(r1.ru_utime) - tv_s(r0.ru_utime) + tv_s(c1.ru_utime) - tv_s(c0.ru_utime);
	double sys = tv_s(r1.ru_stime) - tv_s(r0.ru_stime) + tv_s(c1.ru_stime) - tv_s(c0.ru_stime);
	printf("{\"mode\":\"%s\",\"threads\":%d,\"rate_per_thread\":%.0f,\"ops\":%llu,\"failed\":%llu,"
	       "\"wall_s\":%.6f,\"user_s\":%.6f,\"sys_s\":%.6f,\"rate\":%.1f,\"pid\":%d}\n",
	       mode_names[cfg.mode], cfg.threads, cfg.rate, (unsigned long long)done, (unsigned long long)failed,
	       wall, user, sys, wall > 0 ? (double)done / wall : 0.0, (int)getpid());
	fflush(stdout);
	/* The listener thread is still in accept: leave without joining it. */
	_exit(0);
}
