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
#include <linux/netlink.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
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

/* ---- sends that name a destination ---- */

static socklen_t inet_addr_of(const char *addr, int port, struct sockaddr_in *in)
{
	*in = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, addr, &in->sin_addr);
	return sizeof(*in);
}

/* Sends "PAYLOAD" with sendto or sendmsg (@how) from a socket of @type to @sa. */
static int try_send(const char *how, int domain, int type, const struct sockaddr *sa, socklen_t len,
		    const char *payload)
{
	int s = socket(domain, type | SOCK_CLOEXEC, 0);
	ssize_t n;
	if (s < 0)
		return blocked("socket");
	if (strcmp(how, "sendto") == 0) {
		n = sendto(s, payload, strlen(payload), 0, sa, len);
	} else {
		struct iovec iov = { .iov_base = (void *)payload, .iov_len = strlen(payload) };
		struct msghdr m = {
			.msg_name = (void *)sa, .msg_namelen = len, .msg_iov = &iov, .msg_iovlen = 1
		};
		n = sendmsg(s, &m, 0);
	}
	if (n < 0)
		return blocked(how);
	return escaped(how);
}

/* An AF_UNIX name longer than sockaddr_un (up to sockaddr_storage): the kernel's EINVAL, for
 * connect and for sendto; the supervisor must not copy it into a sun_path-sized buffer. */
static int try_long_unix_name(void)
{
	struct sockaddr_storage ss;
	memset(&ss, 'a', sizeof(ss));
	ss.ss_family = AF_UNIX;
	memcpy((char *)&ss + offsetof(struct sockaddr_un, sun_path), "/tmp/", 5);
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return blocked("socket");
	if (connect(s, (struct sockaddr *)&ss, sizeof(ss)) == 0)
		return escaped("connect with an overlong name");
	if (errno != EINVAL)
		return printf("FAIL connect: %s\n", strerror(errno)), 1;
	if (sendto(s, "x", 1, 0, (struct sockaddr *)&ss, sizeof(ss)) >= 0)
		return escaped("sendto with an overlong name");
	if (errno != EINVAL)
		return printf("FAIL sendto: %s\n", strerror(errno)), 1;
	return blocked("overlong AF_UNIX name");
}

/* Two datagrams in one sendmmsg, to @port1 then @port2: refused if either is forbidden. */
static int try_sendmmsg(const char *addr, int port1, int port2)
{
	struct sockaddr_in a1, a2;
	char p1[] = "mmsg-1", p2[] = "mmsg-2";
	struct iovec v1 = { p1, strlen(p1) }, v2 = { p2, strlen(p2) };
	struct mmsghdr mm[2] = {
		{ .msg_hdr = { .msg_name = &a1,
			       .msg_namelen = inet_addr_of(addr, port1, &a1),
			       .msg_iov = &v1,
			       .msg_iovlen = 1 } },
		{ .msg_hdr = { .msg_name = &a2,
			       .msg_namelen = inet_addr_of(addr, port2, &a2),
			       .msg_iov = &v2,
			       .msg_iovlen = 1 } },
	};
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return blocked("socket");
	int n = sendmmsg(s, mm, 2, 0);
	if (n < 0)
		return blocked("sendmmsg");
	printf("sent %d, msg_len %u %u\n", n, mm[0].msg_len, mm[1].msg_len);
	return n == 2 ? escaped("sendmmsg") : blocked("sendmmsg (partial)");
}

/* TCP Fast Open: sendto with MSG_FASTOPEN connects to the address and sends. */
static int try_fastopen(const char *addr, int port)
{
	struct sockaddr_in in;
	socklen_t len = inet_addr_of(addr, port, &in);
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return blocked("socket");
	if (sendto(s, "tfo", 3, MSG_FASTOPEN, (struct sockaddr *)&in, len) < 0)
		return blocked("sendto MSG_FASTOPEN");
	return escaped("fast open");
}

/* SCM_CREDENTIALS through the supervisor would carry its pid: refused. */
static int try_creds(void)
{
	int sv[2];
	struct ucred cr = { .pid = getpid(), .uid = getuid(), .gid = getgid() };
	union {
		char b[CMSG_SPACE(sizeof(cr))];
		struct cmsghdr align;
	} cb = {};
	struct iovec iov = { .iov_base = (char *)"c", .iov_len = 1 };
	struct msghdr m = { .msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cb.b,
			    .msg_controllen = sizeof(cb.b) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_CREDENTIALS;
	cm->cmsg_len = CMSG_LEN(sizeof(cr));
	memcpy(CMSG_DATA(cm), &cr, sizeof(cr));
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) < 0)
		return blocked("socketpair");
	if (sendmsg(sv[0], &m, 0) < 0)
		return blocked("sendmsg SCM_CREDENTIALS");
	return escaped("SCM_CREDENTIALS");
}

/* A datagram to an rtnetlink multicast group, which only CAP_NET_ADMIN may send to. */
static int try_netlink_multicast(void)
{
	struct sockaddr_nl nl = { .nl_family = AF_NETLINK, .nl_groups = 1 };
	return try_send("sendto", AF_NETLINK, SOCK_RAW, (struct sockaddr *)&nl, sizeof(nl), "nl");
}

/*
 * A blocking sendmsg on a full AF_UNIX datagram socketpair waits in the supervisor's event
 * loop, not in the supervisor: while it waits, other trapped calls of the same sandbox are
 * served, and it completes once the receiver reads. Prints "OK stall ..." or "FAIL ...".
 */
static int stall_fd;
static atomic_int stall_state; /* 0 waiting, 1 sent, 2 failed */

static void *stall_sender(void *arg)
{
	(void)arg;
	struct iovec iov = { .iov_base = (char *)"last", .iov_len = 4 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	atomic_store(&stall_state, sendmsg(stall_fd, &m, 0) == 4 ? 1 : 2);
	return NULL;
}

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int stall(const char *path)
{
	int sv[2], queued = 0;
	char buf[64];
	pthread_t t;
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) < 0)
		return printf("FAIL socketpair\n"), 1;
	stall_fd = sv[0];
	/* Fill the receiver's queue with trapped non-blocking sends. */
	for (int i = 0; i < 100000; i++) {
		struct iovec iov = { .iov_base = (char *)"fill", .iov_len = 4 };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
		if (sendmsg(sv[0], &m, MSG_DONTWAIT) < 0) {
			if (errno != EAGAIN)
				return printf("FAIL fill: %s\n", strerror(errno)), 1;
			break;
		}
		queued++;
	}
	pthread_create(&t, NULL, stall_sender, NULL);
	usleep(200 * 1000);
	if (atomic_load(&stall_state) != 0)
		return printf("FAIL the blocking send did not block (%d)\n", stall_state), 1;
	/* Other trapped calls go on meanwhile. */
	double t0 = mono_s();
	for (int i = 0; i < 20; i++) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return printf("FAIL open while a send waits: %s\n", strerror(errno)), 1;
		close(fd);
	}
	double opens = mono_s() - t0;
	if (atomic_load(&stall_state) != 0)
		return printf("FAIL the blocking send returned early\n"), 1;
	/* Make room: the waiting send completes. */
	for (int i = 0; i < queued + 1; i++) {
		if (recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT) < 0)
			break;
		if (atomic_load(&stall_state) != 0)
			break;
		usleep(1000);
	}
	for (int i = 0; i < 5000 && atomic_load(&stall_state) == 0; i++)
		usleep(1000);
	if (atomic_load(&stall_state) != 1)
		return printf("FAIL the blocking send did not complete (%d)\n", stall_state), 1;
	pthread_join(t, NULL);
	printf("OK stall: %d queued, 20 opens in %.1f ms while a send waited\n", queued,
	       opens * 1e3);
	return 0;
}

/* SIGPIPE reaches the sending thread after an EPIPE, unless MSG_NOSIGNAL. */
static atomic_int pipes;

static void on_pipe(int sig)
{
	(void)sig;
	atomic_fetch_add(&pipes, 1);
}

static int sigpipe_check(void)
{
	int sv[2];
	struct iovec iov = { .iov_base = (char *)"x", .iov_len = 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	signal(SIGPIPE, on_pipe);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return printf("FAIL socketpair\n"), 1;
	close(sv[1]);
	errno = 0;
	if (sendmsg(sv[0], &m, 0) >= 0 || errno != EPIPE)
		return printf("FAIL sendmsg on a closed stream: %s\n", strerror(errno)), 1;
	for (int i = 0; i < 1000 && atomic_load(&pipes) == 0; i++)
		usleep(1000);
	if (sendmsg(sv[0], &m, MSG_NOSIGNAL) >= 0 || errno != EPIPE)
		return printf("FAIL sendmsg MSG_NOSIGNAL: %s\n", strerror(errno)), 1;
	usleep(50 * 1000);
	printf("%s sigpipe %d\n", atomic_load(&pipes) == 1 ? "OK" : "FAIL", atomic_load(&pipes));
	return atomic_load(&pipes) == 1 ? 0 : 1;
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
	if ((strcmp(cmd, "udp-sendto") == 0 || strcmp(cmd, "udp-sendmsg") == 0) && argc == 5) {
		struct sockaddr_in in;
		socklen_t len = inet_addr_of(argv[2], atoi(argv[3]), &in);
		return try_send(cmd + 4, AF_INET, SOCK_DGRAM, (struct sockaddr *)&in, len, argv[4]);
	}
	if ((strcmp(cmd, "unix-sendto") == 0 || strcmp(cmd, "unix-sendmsg") == 0) && argc == 4) {
		/* argv[2]: a socket path, or @name for an abstract one */
		struct sockaddr_un un = { .sun_family = AF_UNIX };
		size_t l = strlen(argv[2]);
		if (l >= sizeof(un.sun_path))
			return 2;
		memcpy(un.sun_path, argv[2], l);
		if (argv[2][0] == '@')
			un.sun_path[0] = '\0';
		return try_send(cmd + 5, AF_UNIX, SOCK_DGRAM, (struct sockaddr *)&un,
				(socklen_t)(offsetof(struct sockaddr_un, sun_path) + l), argv[3]);
	}
	if (strcmp(cmd, "sendmmsg") == 0 && argc == 5)
		return try_sendmmsg(argv[2], atoi(argv[3]), atoi(argv[4]));
	if (strcmp(cmd, "fastopen") == 0 && argc == 4)
		return try_fastopen(argv[2], atoi(argv[3]));
	if (strcmp(cmd, "unix-long") == 0)
		return try_long_unix_name();
	if (strcmp(cmd, "creds") == 0)
		return try_creds();
	if (strcmp(cmd, "netlink-multicast") == 0)
		return try_netlink_multicast();
	if (strcmp(cmd, "stall") == 0 && argc == 3)
		return stall(argv[2]);
	if (strcmp(cmd, "sigpipe") == 0)
		return sigpipe_check();
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
