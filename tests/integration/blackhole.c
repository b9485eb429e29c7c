/* SPDX-License-Identifier: MIT */
/*
 * blackhole [ADDR [PORT [SECONDS]]]: a TCP listener that accepts connections and never answers,
 * the peer of k2ps's timeout tests. Listens on ADDR (default 127.0.0.1) and PORT (default 0, an
 * ephemeral port), prints the bound port on stdout, keeps every accepted connection open without
 * reading it, and exits after SECONDS (default 60) so a failed test leaves nothing behind.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char *argv[])
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	const char *addr = argc > 1 ? argv[1] : "127.0.0.1";
	long port = argc > 2 ? strtol(argv[2], NULL, 10) : 0;
	long seconds = argc > 3 ? strtol(argv[3], NULL, 10) : 60;
	socklen_t len = sizeof(a);
	time_t end;
	int one = 1, fd;

	if (port < 0 || port > 65535 || seconds <= 0 ||
	    inet_pton(AF_INET, addr, &a.sin_addr) != 1) {
		fprintf(stderr, "usage: blackhole [ADDR [PORT [SECONDS]]]\n");
		return 2;
	}
	a.sin_port = htons((unsigned short)port);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 128) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
		perror("blackhole");
		return 1;
	}
	printf("%u\n", ntohs(a.sin_port));
	fflush(stdout);
	end = time(NULL) + seconds;
	while (time(NULL) < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		/* The accepted fds are leaked on purpose: they stay open, unread, until exit. */
		if (poll(&p, 1, 500) > 0)
			(void)accept4(fd, NULL, NULL, SOCK_CLOEXEC);
	}
	return 0;
}
