/* SPDX-License-Identifier: MIT */
/*
 * Micro-benchmarks run inside and outside the sandboxes by tests/bench/bench_sandbox.sh:
 *   sbx_bench getppid N        ns per getppid() (a syscall no filter traps)
 *   sbx_bench openclose N PATH ns per open()+close() pair of PATH (trapped by our supervisor)
 * Prints one number (nanoseconds per operation).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
	} else
		return 2;
	printf("%.1f\n", (now() - t0) / (double)n);
	return 0;
}
