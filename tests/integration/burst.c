/* SPDX-License-Identifier: MIT */
/*
 * burst: a storm of short-lived processes for the process-event tests.
 *
 *   burst [-n COUNT] [-x PROGRAM]
 *   burst -T CODE
 *
 * Forks COUNT children (default 1000) as fast as it can; child i execs "PROGRAM CODE" (default
 * PROGRAM: exit_with beside this binary) with CODE = i % 256, which exits with CODE at once.
 * Children are reaped as they finish. Prints one line per child, in fork order, "PID CODE", and
 * on stderr how long the burst took. Exits 1 if a child's wait status is not exit(CODE), 2 on a
 * usage error.
 *
 * With -T, burst is itself a multi-threaded process that ends the hard way for an exit tracer:
 * it prints "PID CODE", starts four threads, and its leader leaves first with pthread_exit();
 * 20 ms later one thread calls exit(CODE), and exit_group() ends the three others at once.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/strutil.h"

struct child {
	pid_t pid;
	int code; /* expected exit code */
};

struct reaped {
	pid_t pid;
	int status;
};

static int child_cmp(const void *a, const void *b)
{
	const struct child *x = a, *y = b;

	return (x->pid > y->pid) - (x->pid < y->pid);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Checks a wait status against @by_pid (sorted). Returns 0, or -EBADMSG on a mismatch. */
static int check_status(const struct child *by_pid, size_t n, const struct reaped *r)
{
	struct child key = { .pid = r->pid };
	const struct child *c;

	c = bsearch(&key, by_pid, n, sizeof(*by_pid), child_cmp);
	if (!c || !WIFEXITED(r->status) || WEXITSTATUS(r->status) != c->code) {
		fprintf(stderr, "burst: child %d: wait status 0x%x, expected exit(%d)\n",
			(int)r->pid, (unsigned)r->status, c ? c->code : -1);
		return -EBADMSG;
	}
	return 0;
}

/* Reaps children, waiting (@block) or not. Returns how many it added to @out, or -errno. */
static int reap(struct reaped *out, size_t room, bool block)
{
	size_t n = 0;

	while (n < room) {
		int status;
		pid_t pid = waitpid(-1, &status, block ? 0 : WNOHANG);

		if (pid < 0 && errno == EINTR)
			continue;
		if (pid < 0)
			return errno == ECHILD ? (int)n : -errno;
		if (pid == 0)
			break;
		out[n++] = (struct reaped){ .pid = pid, .status = status };
	}
	return (int)n;
}

static void *thread_main(void *arg)
{
	long code = (long)arg;

	if (code >= 0) {
		usleep(20000);
		exit((int)code);
	}
	for (;;)
		pause();
	return NULL;
}

static int run_threaded(uint32_t code)
{
	pthread_t thread;
	int r;

	printf("%d %u\n", (int)getpid(), code);
	if (fflush(stdout) != 0)
		return 1;
	for (long i = 0; i < 4; i++) {
		r = pthread_create(&thread, NULL, thread_main, (void *)(i == 3 ? (long)code : -1L));
		if (r != 0) {
			fprintf(stderr, "burst: pthread_create: %s\n", strerror(r));
			return 1;
		}
	}
	pthread_exit(NULL);
}

int main(int argc, char **argv)
{
	_cleanup_free_ struct child *children = NULL;
	_cleanup_free_ struct child *by_pid = NULL;
	_cleanup_free_ struct reaped *results = NULL;
	_cleanup_free_ char *program = NULL;
	char codes[256][4];
	uint32_t count = 1000;
	size_t forked = 0, nreaped = 0;
	uint64_t start, elapsed;
	bool failed = false, threaded = false;
	uint32_t code = 0;
	int opt, r;

	while ((opt = getopt(argc, argv, "n:x:T:h")) >= 0) {
		switch (opt) {
		case 'T':
			if (safe_atou32_range(optarg, 0, 255, &code) < 0) {
				fprintf(stderr, "burst: invalid exit code '%s'\n", optarg);
				return 2;
			}
			threaded = true;
			break;
		case 'n':
			if (safe_atou32_range(optarg, 1, 100000, &count) < 0) {
				fprintf(stderr, "burst: invalid count '%s'\n", optarg);
				return 2;
			}
			break;
		case 'x':
			free(program);
			program = strdup(optarg);
			if (!program)
				return 1;
			break;
		default:
			fprintf(stderr, "usage: burst [-n COUNT] [-x PROGRAM] | -T CODE\n");
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "usage: burst [-n COUNT] [-x PROGRAM] | -T CODE\n");
		return 2;
	}
	if (threaded)
		return run_threaded(code);
	if (!program) {
		const char *slash = strrchr(argv[0], '/');

		if (asprintf(&program, "%.*s/exit_with", slash ? (int)(slash - argv[0]) : 1,
			     slash ? argv[0] : ".") < 0)
			return 1;
	}
	if (access(program, X_OK) < 0) {
		fprintf(stderr, "burst: '%s': %s\n", program, strerror(errno));
		return 1;
	}

	children = calloc(count, sizeof(*children));
	by_pid = calloc(count, sizeof(*by_pid));
	results = calloc(count, sizeof(*results));
	if (!children || !by_pid || !results)
		return 1;

	/* Pre-format the arguments so that a child does nothing between fork and exec. */
	for (int i = 0; i < 256; i++)
		snprintf(codes[i], sizeof(codes[i]), "%d", i);

	start = now_ns();
	for (; forked < count; forked++) {
		int child_code = (int)(forked % 256);
		pid_t pid = fork();

		if (pid < 0) {
			fprintf(stderr, "burst: fork: %s\n", strerror(errno));
			failed = true;
			break;
		}
		if (pid == 0) {
			execl(program, program, codes[child_code], (char *)NULL);
			_exit(127);
		}
		children[forked] = (struct child){ .pid = pid, .code = child_code };
		/* Reap the finished ones as we go, as a real parent would. */
		r = reap(results + nreaped, count - nreaped, false);
		if (r < 0) {
			fprintf(stderr, "burst: waitpid: %s\n", strerror(-r));
			return 1;
		}
		nreaped += (size_t)r;
	}
	r = reap(results + nreaped, count - nreaped, true);
	if (r < 0) {
		fprintf(stderr, "burst: waitpid: %s\n", strerror(-r));
		return 1;
	}
	nreaped += (size_t)r;
	if (nreaped != forked) {
		fprintf(stderr, "burst: reaped %zu of %zu children\n", nreaped, forked);
		failed = true;
	}

	memcpy(by_pid, children, forked * sizeof(*children));
	qsort(by_pid, forked, sizeof(*by_pid), child_cmp);
	for (size_t i = 0; i < nreaped; i++)
		if (check_status(by_pid, forked, &results[i]) < 0)
			failed = true;
	elapsed = now_ns() - start;

	for (size_t i = 0; i < forked; i++)
		printf("%d %d\n", (int)children[i].pid, children[i].code);
	fprintf(stderr, "burst: %zu children in %.1f ms\n", forked, (double)elapsed / 1e6);
	if (fflush(stdout) != 0)
		return 1;
	return failed ? 1 : 0;
}
