/* SPDX-License-Identifier: MIT */
/*
 * Micro-benchmarks run inside and outside the sandboxes by tests/bench/bench_sandbox.sh:
 *   sbx_bench getppid N        ns per getppid() (a syscall no filter traps)
 *   sbx_bench openclose N PATH ns per open()+close() pair of PATH (trapped by our supervisor)
 *   sbx_bench udpsend N        ns per sendto() of 32 bytes to a UDP address on 127.0.0.1 and
 *                              its recv() (the sendto, which names a destination, is trapped)
 * Prints one number (nanoseconds per operation).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	long n = atol(argv[2]);
	if (n <= 0)
		return 2;
	double t0 = now();
	if (strcmp(argv[1], "getppid") == 0) {
		for (long i = 0; i < n; i++)
			syscall(SYS_getppid);
	} else if (strcmp(argv[1], "openclose") == 0 && argc == 4) {
		for (long i = 0; i < n; i++) {
			int fd = open(argv[3], O_RDONLY | O_CLOEXEC);
			if (fd < 0) {
				perror("open");
				return 1;
			}
			close(fd);
		}
	} else if (strcmp(argv[1], "udpsend") == 0) {
		struct sockaddr_in a = { .sin_family = AF_INET,
					 .sin_addr.s_addr = htonl(0x7f000001) };
		socklen_t len = sizeof(a);
		int rx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		int tx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		char buf[64] = "";
		if (rx < 0 || tx < 0 || bind(rx, (struct sockaddr *)&a, sizeof(a)) < 0 ||
		    getsockname(rx, (struct sockaddr *)&a, &len) < 0) {
			perror("udp socket");
			return 1;
		}
		t0 = now();
		for (long i = 0; i < n; i++) {
			if (sendto(tx, buf, 32, 0, (struct sockaddr *)&a, sizeof(a)) != 32 ||
			    recv(rx, buf, sizeof(buf), 0) != 32) {
				perror("sendto/recv");
				return 1;
			}
		}
	} else
		return 2;
	printf("%.1f\n", (now() - t0) / (double)n);
	return 0;
}
