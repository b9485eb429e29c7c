/* SPDX-License-Identifier: MIT */
/*
 * Escape attempts run inside the sandbox by tests/integration/sandbox_escape.sh. Each
 * subcommand tries one thing and prints "ESCAPED ..." and exits 3 if it worked, or "BLOCKED
 * <errno name>" and exits 0 if it was refused. "ok" subcommands print "OK"/"FAIL" for things
 * that must work.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

static int blocked(const char *what)
{
	printf("BLOCKED %s: %s\n", what, strerrorname_np(errno) ? strerrorname_np(errno) : "?");
	return 0;
}

static int escaped(const char *what)
{
	printf("ESCAPED %s\n", what);
	return 3;
}

static int try_open(const char *path, int flags)
{
	int fd = open(path, flags);
	if (fd < 0)
		return blocked(path);
	char buf[64] = "";
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	printf("read %zd bytes: %s\n", n, n > 0 ? buf : "");
	return escaped(path);
}

static int try_opath_reopen(const char *path, int flags)
{
	char p[64];
	int fd = open(path, O_PATH);
	if (fd < 0)
		return blocked("O_PATH open");
	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	int fd2 = open(p, flags);
	if (fd2 < 0)
		return blocked("reopen through /proc/self/fd");
	if (flags != O_RDONLY && write(fd2, "x", 1) != 1)
		return blocked("write after reopen");
	return escaped("O_PATH reopen");
}

/* The path buffer flips between an allowed and a hidden file while the main thread opens it:
 * the supervisor must decide on its own copy, so every successful open is the allowed file. */
static char race_buf[4096];
static const char *race_ok, *race_bad;
static atomic_int race_stop;

static void *flipper(void *arg)
{
	(void)arg;
	size_t lo = strlen(race_ok), lb = strlen(race_bad);
	while (!atomic_load(&race_stop)) {
		memcpy(race_buf, race_bad, lb + 1);
		memcpy(race_buf, race_ok, lo + 1);
	}
	return NULL;
}

static int race(const char *ok, const char *bad, double seconds)
{
	struct stat okst, st;
	pthread_t t;
	long opens = 0, fails = 0, leaks = 0;
	if (stat(ok, &okst) < 0) {
		perror("stat ok");
		return 2;
	}
	race_ok = ok;
	race_bad = bad;
	strcpy(race_buf, ok);
	pthread_create(&t, NULL, flipper, NULL);
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	do {
		int fd = open(race_buf, O_RDONLY);
		if (fd < 0) {
			fails++;
		} else {
			opens++;
			if (fstat(fd, &st) < 0 || st.st_ino != okst.st_ino ||
			    st.st_dev != okst.st_dev)
				leaks++;
			close(fd);
		}
		clock_gettime(CLOCK_MONOTONIC, &b);
	} while ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9 < seconds);
	atomic_store(&race_stop, 1);
	pthread_join(t, NULL);
	printf("opens %ld refused %ld leaks %ld\n", opens, fails, leaks);
	return leaks ? escaped("race") : 0;
}

static int try_connect(const char *addr, int port)
{
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return blocked("socket");
	inet_pton(AF_INET, addr, &in.sin_addr);
	if (connect(s, (struct sockaddr *)&in, sizeof(in)) < 0)
		return blocked("connect");
	return escaped("connect");
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	const char *cmd = argv[1];
	setvbuf(stdout, NULL, _IONBF, 0);
	if (strcmp(cmd, "open") == 0 && argc == 3)
		return try_open(argv[2], O_RDONLY);
	if (strcmp(cmd, "write") == 0 && argc == 3) {
		int fd = open(argv[2], O_WRONLY | O_APPEND);
		if (fd < 0)
			return blocked("open for writing");
		return write(fd, "x", 1) == 1 ? escaped("write") : blocked("write");
	}
	if (strcmp(cmd, "opath") == 0 && argc == 3)
		return try_opath_reopen(argv[2], O_RDONLY);
	if (strcmp(cmd, "opath-write") == 0 && argc == 3)
		return try_opath_reopen(argv[2], O_WRONLY | O_APPEND);
	if (strcmp(cmd, "symlink") == 0 && argc == 4) {
		/* argv[3]: where to create the link to argv[2] */
		if (symlink(argv[2], argv[3]) < 0)
			return blocked("symlink creation");
		return try_open(argv[3], O_RDONLY);
	}
	if (strcmp(cmd, "race") == 0 && argc == 5)
		return race(argv[2], argv[3], atof(argv[4]));
	if (strcmp(cmd, "io_uring") == 0) {
		struct io_uring_params p = {};
		if (syscall(SYS_io_uring_setup, 4, &p) < 0)
			return blocked("io_uring_setup");
		return escaped("io_uring_setup");
	}
	if (strcmp(cmd, "ptrace") == 0 && argc == 3) {
		pid_t pid = atoi(argv[2]);
		if (ptrace(PTRACE_ATTACH, pid, NULL, NULL) < 0)
			return blocked("ptrace attach");
		return escaped("ptrace");
	}
	if (strcmp(cmd, "kill") == 0 && argc == 3) {
		if (kill(atoi(argv[2]), 0) < 0)
			return blocked("signal");
		return escaped("signal");
	}
	if (strcmp(cmd, "mount") == 0) {
		if (mount("none", "/tmp", "tmpfs", 0, NULL) == 0)
			return escaped("mount");
		blocked("mount");
		if (syscall(SYS_fsopen, "tmpfs", 0) >= 0)
			return escaped("fsopen");
		blocked("fsopen");
		if (syscall(SYS_open_tree, AT_FDCWD, "/tmp", 1 /* OPEN_TREE_CLONE */) >= 0)
			return escaped("open_tree");
		return blocked("open_tree");
	}
	if (strcmp(cmd, "unshare") == 0) {
		if (unshare(CLONE_NEWUSER) == 0)
			return escaped("unshare");
		blocked("unshare");
		if (unshare(CLONE_NEWNS) == 0)
			return escaped("unshare mount");
		blocked("unshare mount");
		long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, NULL);
		if (pid == 0)
			_exit(0);
		if (pid > 0) {
			waitpid((pid_t)pid, NULL, 0);
			return escaped("clone(CLONE_NEWUSER)");
		}
		return blocked("clone(CLONE_NEWUSER)");
	}
	if (strcmp(cmd, "bpf") == 0) {
		union bpf_attr a = { .map_type = BPF_MAP_TYPE_ARRAY,
				     .key_size = 4,
				     .value_size = 4,
				     .max_entries = 1 };
		if (syscall(SYS_bpf, BPF_MAP_CREATE, &a, sizeof(a)) >= 0)
			return escaped("bpf");
		return blocked("bpf");
	}
	if (strcmp(cmd, "connect") == 0 && argc == 4)
		return try_connect(argv[2], atoi(argv[3]));
	if (strcmp(cmd, "x32") == 0) {
		/* getpid through the x32 ABI: the filter kills the process. */
		syscall(0x40000000 | 39);
		return escaped("x32 syscall returned");
	}
	if (strcmp(cmd, "exec") == 0 && argc >= 3) {
		execv(argv[2], argv + 2);
		return blocked("exec");
	}
	return 2;
}
