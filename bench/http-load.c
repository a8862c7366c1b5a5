/*
 * HTTP/1.1 keep-alive load over loopback, for measuring what payload capture
 * costs: N client threads each send GET requests on one connection to N
 * server threads (one per connection) that answer a fixed 200 response.
 * Every request is 4 socket syscalls (client write and read, server read and
 * write), each a payload record for sysql.
 *
 * usage: sysql-http-load [--conns N] [--duration S]
 * prints: {"requests": R, "seconds": S, "requests_per_s": X, "conns": N}
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int listener;
static double duration = 5.0;
static atomic_ulong total;
static const char RESPONSE[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *serve(void *arg)
{
	(void)arg;
	int fd = accept(listener, NULL, NULL);
	if (fd < 0)
		return NULL;
	char buf[4096];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		if (write(fd, RESPONSE, sizeof(RESPONSE) - 1) < 0)
			break;
	}
	close(fd);
	return NULL;
}

static void *client(void *arg)
{
	struct sockaddr_in *addr = arg;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)addr, sizeof(*addr)) < 0) {
		perror("connect");
		exit(1);
	}
	char req[256], buf[4096];
	unsigned long n = 0;
	double end = now() + duration;
	while (now() < end) {
		int len = snprintf(req, sizeof(req),
				   "GET /bench/%lu HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: sysql-http-load\r\n\r\n", n);
		if (write(fd, req, len) != len || read(fd, buf, sizeof(buf)) <= 0) {
			perror("request");
			exit(1);
		}
		n++;
	}
	close(fd);
	atomic_fetch_add(&total, n);
	return NULL;
}

int main(int argc, char **argv)
{
	int conns = 1;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--conns") == 0)
			conns = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--duration") == 0)
			duration = atof(argv[i + 1]);
		else {
			fprintf(stderr, "usage: sysql-http-load [--conns N] [--duration S]\n");
			return 2;
		}
	}
	if (conns < 1 || conns > 256 || duration <= 0) {
		fprintf(stderr, "usage: sysql-http-load [--conns N] [--duration S]\n");
		return 2;
	}
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	listener = socket(AF_INET, SOCK_STREAM, 0);
	socklen_t alen = sizeof(addr);
	if (bind(listener, (struct sockaddr *)&addr, sizeof(addr)) || listen(listener, 256) ||
	    getsockname(listener, (struct sockaddr *)&addr, &alen)) {
		perror("listen");
		return 1;
	}
	pthread_t servers[256], clients[256];
	for (int i = 0; i < conns; i++)
		pthread_create(&servers[i], NULL, serve, NULL);
	double start = now();
	for (int i = 0; i < conns; i++)
		pthread_create(&clients[i], NULL, client, &addr);
	for (int i = 0; i < conns; i++)
		pthread_join(clients[i], NULL);
	double secs = now() - start;
	for (int i = 0; i < conns; i++)
		pthread_join(servers[i], NULL);
	unsigned long r = atomic_load(&total);
	printf("{\"requests\": %lu, \"seconds\": %.3f, \"requests_per_s\": %.0f, \"conns\": %d}\n", r, secs, r / secs,
	       conns);
	return 0;
}
