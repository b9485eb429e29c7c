/* SPDX-License-Identifier: MIT */
/*
 * The notify loop and the helpers every handler uses.
 *
 * Safety rules (docs/sandbox.md "Security design"):
 * - Calls are performed by the supervisor, never continued, except an allowed exec (the
 *   kernel cannot exec for another process; the mount view enforces what may run).
 * - Memory of the program is read once per argument, and the notification is re-validated with
 *   SECCOMP_IOCTL_NOTIF_ID_VALID after every read and after every /proc or pidfd lookup that
 *   names the target by pid, so a recycled pid is caught before its data is used.
 * - Paths are resolved by the kernel beneath the sandbox's root (RESOLVE_IN_ROOT, magic links
 *   refused) and judged by the canonical path the kernel reports for the descriptor.
 * - Every failure answers with an error; nothing on an error path lets the call through.
 */
#include "sandbox/syscall/supervisor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>
#include <linux/audit.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <seccomp.h>

#include "libcommon/cleanup.h"
#include "libcommon/ctlsock.h"
#include "libcommon/fdutil.h"
#include "libcommon/instance.h"
#include "libcommon/log.h"
#include "libcommon/strutil.h"
#include "libcommon/supervise.h"
#include "sandbox/syscall/handlers/handlers.h"
#include "sandbox/syscall/policy.h"

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif

#define NR_MAX 512 /* x86-64 syscall numbers are below this */

struct counter {
	uint64_t trapped, allowed, denied;
};

struct denial {
	uint64_t time_ns;
	pid_t pid;
	int nr;
	uint64_t args[6];
	int error;
	const char *reason;
	char detail[256];
};

/* A notification answered later: a blocking connect in progress, a blocking FIFO open done
 * by a helper process, or a call a handler resumes (sbx_pending_call(): a send on a full
 * socket). The loop itself never blocks. */
struct pending {
	struct supervisor *sv;
	struct pending *next;
	uint64_t id;
	int fd; /* the socket, or our end of the helper's socketpair */
	pid_t child; /* the helper, or 0 */
	bool cloexec;
	struct event *ev;
	/* sbx_pending_call() */
	sbx_resume_t resume;
	void (*free_data)(void *);
	void *data;
	pid_t tgid, tid; /* the calling thread, for a signal after the answer */
	unsigned retry_ms; /* backoff while the socket polls writable but cannot take the call */
};

/* The tick that interrupts a waiting NOTIF_RECV, and how long without a notification before the
 * supervisor waits in the event loop instead (supervisor_run()). */
#define SUPERVISOR_TICK_US 10000
#define SUPERVISOR_IDLE_MS 1000

struct supervisor {
	const struct policy *policy;
	struct event_base *base;
	struct event *pidfd_ev, *sig_evs[3];
	struct ctl_server *ctl;
	struct supervise *svc; /* sandbox.<id> on middlecon, or NULL */
	bool paused; /* every process of the sandbox was sent SIGSTOP */
	int notify_fd;
	int root_fd; /* O_PATH: the sandbox's root, through /proc/<init>/root */
	int proc_fd; /* the host's /proc */
	int audit_fd;
	pid_t init_pid;
	int init_pidfd;
	char *id;
	uint64_t started_ns;
	bool exited;
	int exit_status;
	bool addfd_send; /* SECCOMP_ADDFD_FLAG_SEND works */
	bool have_self_mask;
	cpu_set_t self_mask; /* the supervisor's own CPU affinity, restored after each ADDFD */
	struct seccomp_notif_sizes sizes;
	struct seccomp_notif *req;
	struct seccomp_notif_resp *resp;
	struct counter counters[NR_MAX];
	struct denial ring[SUPERVISOR_RING];
	size_t ring_next, ring_len;
	struct pending *pending;
};

static uint64_t now_ns(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void format_time(uint64_t ns, char *buf, size_t size)
{
	time_t s = (time_t)(ns / 1000000000ULL);
	struct tm tm;
	gmtime_r(&s, &tm);
	size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, size - n, ".%03uZ", (unsigned)((ns / 1000000ULL) % 1000));
}

static const char *syscall_name(int nr, char *buf, size_t size)
{
	char *s = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
	snprintf(buf, size, "%s", s ? s : "unknown");
	if (!s)
		snprintf(buf, size, "syscall_%d", nr);
	free(s);
	return buf;
}

/* ---- helpers for handlers ---- */

int sbx_deny(struct sbx_call *c, int err, const char *reason)
{
	c->denied = true;
	c->reason = reason;
	return -err;
}

int sbx_valid(struct sbx_call *c)
{
	uint64_t id = c->n->id;
	if (ioctl(c->notify_fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) < 0)
		return -ENOENT;
	return 0;
}

int sbx_proc_fd(struct sbx_call *c)
{
	return c->sv->proc_fd;
}

/* One process_vm_readv() per page: a read that crosses into an unmapped page fails as a whole,
 * and a string may end right before one. */
static ssize_t read_chunk(pid_t pid, uint64_t addr, void *buf, size_t len)
{
	struct iovec local = { .iov_base = buf, .iov_len = len };
	struct iovec remote = { .iov_base = (void *)(uintptr_t)addr, .iov_len = len };
	ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
	return n < 0 ? -EFAULT : n;
}

int sbx_read_mem(struct sbx_call *c, uint64_t addr, void *buf, size_t len)
{
	size_t done = 0;
	if (addr == 0 && len > 0)
		return -EFAULT;
	while (done < len) {
		size_t in_page = 4096 - ((addr + done) & 4095);
		size_t want = MIN(in_page, len - done);
		ssize_t n = read_chunk(c->n->pid, addr + done, (char *)buf + done, want);
		if (n <= 0)
			return -EFAULT;
		done += (size_t)n;
	}
	return sbx_valid(c);
}

int sbx_read_string(struct sbx_call *c, uint64_t addr, char *buf, size_t size)
{
	size_t done = 0;
	if (addr == 0)
		return -EFAULT;
	while (done < size) {
		size_t in_page = 4096 - ((addr + done) & 4095);
		size_t want = MIN(in_page, size - done);
		ssize_t n = read_chunk(c->n->pid, addr + done, buf + done, want);
		if (n <= 0)
			return -EFAULT;
		char *nul = memchr(buf + done, '\0', (size_t)n);
		if (nul) {
			int r = sbx_valid(c);
			return r < 0 ? r : (int)(nul - buf);
		}
		done += (size_t)n;
	}
	return -ENAMETOOLONG;
}

int sbx_load_status(struct sbx_call *c)
{
	char path[64];
	_cleanup_free_ char *text = NULL;
	if (c->have_status)
		return 0;
	snprintf(path, sizeof(path), "%d/status", c->n->pid);
	int r = read_full_file_at(c->sv->proc_fd, path, 64 * 1024, &text, NULL);
	if (r < 0)
		return -ENOENT;
	r = sbx_valid(c);
	if (r < 0)
		return r;
	bool got_tgid = false, got_nstgid = false, got_nspid = false, got_umask = false;
	for (char *line = text; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		const char *v;
		int32_t x;
		if ((v = startswith(line, "Tgid:")) && safe_atoi(skip_blanks(v), &x) >= 0) {
			c->tgid = x;
			got_tgid = true;
		} else if ((v = startswith(line, "NStgid:")) || (v = startswith(line, "NSpid:"))) {
			/* The last number is the id in the innermost namespace: the sandbox's. */
			const char *last = strrchr(v, '\t');
			last = last ? last + 1 : skip_blanks(v);
			if (safe_atoi(last, &x) >= 0) {
				if (line[2] == 't') {
					c->ns_tgid = x;
					got_nstgid = true;
				} else {
					c->ns_tid = x;
					got_nspid = true;
				}
			}
		} else if ((v = startswith(line, "Umask:"))) {
			c->umask = (mode_t)strtoul(skip_blanks(v), NULL, 8) & 0777;
			got_umask = true;
		}
		line = nl ? nl + 1 : NULL;
	}
	if (!got_tgid || !got_nstgid || !got_nspid)
		return -ENOENT;
	if (!got_umask)
		c->umask = 022;
	c->have_status = true;
	return 0;
}

/* A pidfd for the thread itself (Linux 6.9); older kernels know only process pidfds. */
#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif
static bool pidfd_thread_missing;

int sbx_get_fd(struct sbx_call *c, int fd)
{
	_cleanup_close_ int pidfd = -EBADF;
	int r;

	/*
	 * The calling thread's pidfd reaches its descriptor table directly; without
	 * PIDFD_THREAD, its process is found through the Tgid of /proc/<tid>/status (a third
	 * of the cost of a trapped send).
	 */
	if (!pidfd_thread_missing) {
		pidfd = pidfd_open((pid_t)c->n->pid, PIDFD_THREAD);
		if (pidfd < 0 && errno == EINVAL)
			pidfd_thread_missing = true;
		else if (pidfd < 0)
			return -ENOENT;
	}
	if (pidfd_thread_missing) {
		r = sbx_load_status(c);
		if (r < 0)
			return r;
		pidfd = pidfd_open(c->tgid, 0);
		if (pidfd < 0)
			return -ENOENT;
	}
	/* The pidfd pins the process we looked up by number; it is the target only if the
	 * notification is still pending. */
	r = sbx_valid(c);
	if (r < 0)
		return r;
	int nfd = pidfd_getfd(pidfd, fd, 0);
	if (nfd < 0)
		return errno == EBADF ? -EBADF : negative_errno();
	return nfd;
}

int sbx_fd_path(struct sbx_call *c, int fd, char **ret)
{
	char link[64];
	char buf[PATH_MAX + 1];
	snprintf(link, sizeof(link), "self/fd/%d", fd);
	ssize_t n = readlinkat(c->sv->proc_fd, link, buf, sizeof(buf) - 1);
	if (n < 0)
		return negative_errno();
	if ((size_t)n >= sizeof(buf) - 1)
		return -ENAMETOOLONG;
	buf[n] = '\0';
	if (buf[0] == '/') {
		/* A deleted file, or a path the kernel cannot express: no decision possible. */
		if (endswith(buf, " (deleted)"))
			return -ENOENT;
		if (!policy_path_is_canonical(buf))
			return -EACCES;
	}
	char *s = strdup(buf);
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

int sbx_reopen(struct sbx_call *c, int fd, int flags)
{
	char link[64];
	snprintf(link, sizeof(link), "self/fd/%d", fd);
	/* Callers never pass a blocking FIFO open here (see sbx_pending_open()): the loop must
	 * never wait for another process. */
	int nfd = openat(c->sv->proc_fd, link, flags | O_CLOEXEC | O_NOCTTY);
	return nfd < 0 ? negative_errno() : nfd;
}

/* The directory a relative path starts from, as a canonical path. */
static int start_dir(struct sbx_call *c, int dirfd, char **ret)
{
	if (dirfd == AT_FDCWD) {
		char link[64], buf[PATH_MAX + 1];
		snprintf(link, sizeof(link), "%d/cwd", c->n->pid);
		ssize_t n = readlinkat(c->sv->proc_fd, link, buf, sizeof(buf) - 1);
		if (n < 0)
			return -ENOENT;
		int r = sbx_valid(c);
		if (r < 0)
			return r;
		if ((size_t)n >= sizeof(buf) - 1)
			return -ENAMETOOLONG;
		buf[n] = '\0';
		if (buf[0] != '/' || endswith(buf, " (deleted)") || !policy_path_is_canonical(buf))
			return -ENOENT;
		char *s = strdup(buf);
		if (!s)
			return -ENOMEM;
		*ret = s;
		return 0;
	}
	_cleanup_close_ int fd = sbx_get_fd(c, dirfd);
	struct stat st;
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0)
		return negative_errno();
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	_cleanup_free_ char *p = NULL;
	int r = sbx_fd_path(c, fd, &p);
	if (r < 0)
		return r;
	if (p[0] != '/')
		return -ENOENT;
	*ret = TAKE_PTR(p);
	return 0;
}

/*
 * Builds the absolute path the program meant and rewrites what only makes sense from inside:
 * /proc/self and /proc/thread-self name the supervisor when it looks them up, and /dev/std*
 * and /dev/fd are symlinks to /proc/self/fd.
 */
static int absolute_path(struct sbx_call *c, int dirfd, const char *path, char **ret)
{
	_cleanup_free_ char *dir = NULL;
	_cleanup_free_ char *abs = NULL;
	const char *rest;
	int r;

	if (path[0] == '\0')
		return -ENOENT;
	if (path[0] != '/') {
		r = start_dir(c, dirfd, &dir);
		if (r < 0)
			return r;
		if (asprintf(&abs, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, path) < 0)
			return -ENOMEM;
	} else if (!(abs = strdup(path)))
		return -ENOMEM;

	static const char *const std_links[][2] = {
		{ "/dev/stdin", "/proc/self/fd/0" },
		{ "/dev/stdout", "/proc/self/fd/1" },
		{ "/dev/stderr", "/proc/self/fd/2" },
	};
	for (size_t i = 0; i < ELEMENTSOF(std_links); i++)
		if (strcmp(abs, std_links[i][0]) == 0) {
			free(abs);
			if (!(abs = strdup(std_links[i][1])))
				return -ENOMEM;
		}
	if ((rest = startswith(abs, "/dev/fd/"))) {
		char *n;
		if (asprintf(&n, "/proc/self/fd/%s", rest) < 0)
			return -ENOMEM;
		free(abs);
		abs = n;
	}
	bool thread = false;
	if ((rest = startswith(abs, "/proc/self")) ||
	    ((rest = startswith(abs, "/proc/thread-self")) && (thread = true))) {
		if (*rest == '/' || *rest == '\0') {
			char *n;
			r = sbx_load_status(c);
			if (r < 0)
				return r;
			if (thread)
				r = asprintf(&n, "/proc/%d/task/%d%s", c->ns_tgid, c->ns_tid, rest);
			else
				r = asprintf(&n, "/proc/%d%s", c->ns_tgid, rest);
			if (r < 0)
				return -ENOMEM;
			free(abs);
			abs = n;
		}
	}
	if (strlen(abs) >= PATH_MAX)
		return -ENAMETOOLONG;
	*ret = TAKE_PTR(abs);
	return 0;
}

/* "/proc/<own pid>/fd/N" or "/proc/<own pid>/task/<tid>/fd/N": the program names one of its
 * own descriptors. Returns N, or -1. */
static int own_fd_reference(struct sbx_call *c, const char *abs)
{
	char pfx[64];
	const char *rest;
	if (!startswith(abs, "/proc/"))
		return -1;
	if (sbx_load_status(c) < 0)
		return -1;
	snprintf(pfx, sizeof(pfx), "/proc/%d/", c->ns_tgid);
	if (!(rest = startswith(abs, pfx)))
		return -1;
	if (startswith(rest, "task/")) {
		rest = strchr(rest + 5, '/');
		if (!rest)
			return -1;
		rest++;
	}
	if (!(rest = startswith(rest, "fd/")))
		return -1;
	uint32_t n;
	if (safe_atou32_range(rest, 0, INT_MAX, &n) < 0)
		return -1;
	return (int)n;
}

static int open_beneath(struct sbx_call *c, const char *abs, uint64_t flags)
{
	struct open_how how = {
		.flags = flags | O_PATH | O_CLOEXEC,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	for (int i = 0; i < 8; i++) {
		long fd = syscall(SYS_openat2, c->sv->root_fd, abs, &how, sizeof(how));
		if (fd >= 0)
			return (int)fd;
		/* EAGAIN: a concurrent rename raced with ".." resolution; the kernel asks to retry. */
		if (errno != EAGAIN)
			return negative_errno();
	}
	return -EAGAIN;
}

int sbx_resolve(struct sbx_call *c, int dirfd, const char *path, bool nofollow, char **ret_canon)
{
	_cleanup_free_ char *abs = NULL;
	_cleanup_free_ char *canon = NULL;
	int r = absolute_path(c, dirfd, path, &abs);
	if (r < 0)
		return r;
	sbx_set_detail(c, abs);

	/* The program's own descriptors are the objects it already holds, not names to look up
	 * again; that is what the magic link means to the kernel too. */
	int own = own_fd_reference(c, abs);
	_cleanup_close_ int fd = -EBADF;
	if (own >= 0)
		fd = sbx_get_fd(c, own);
	else
		fd = open_beneath(c, abs, nofollow ? O_NOFOLLOW : 0);
	if (fd < 0)
		return fd == -EBADF && own >= 0 ? -ENOENT : fd;
	r = sbx_fd_path(c, fd, &canon);
	if (r < 0)
		return r;
	sbx_set_detail(c, canon);
	*ret_canon = TAKE_PTR(canon);
	return TAKE_FD(fd);
}

int sbx_resolve_parent(struct sbx_call *c, int dirfd, const char *path, char **ret_name,
		       char **ret_canon)
{
	_cleanup_free_ char *abs = NULL;
	_cleanup_free_ char *pcanon = NULL;
	_cleanup_free_ char *name = NULL;
	int r = absolute_path(c, dirfd, path, &abs);
	if (r < 0)
		return r;
	sbx_set_detail(c, abs);
	/* Trailing slashes do not change the name (mkdir("a/")). */
	size_t len = strlen(abs);
	while (len > 1 && abs[len - 1] == '/')
		abs[--len] = '\0';
	char *slash = strrchr(abs, '/');
	if (!slash || slash[1] == '\0')
		return -EBUSY; /* "/" itself */
	if (strcmp(slash + 1, ".") == 0 || strcmp(slash + 1, "..") == 0)
		return -EINVAL;
	if (!(name = strdup(slash + 1)))
		return -ENOMEM;
	if (slash == abs)
		slash[1] = '\0';
	else
		*slash = '\0';
	if (own_fd_reference(c, abs) >= 0)
		return -ENOTDIR;
	_cleanup_close_ int fd = open_beneath(c, abs, O_DIRECTORY);
	if (fd < 0)
		return fd;
	r = sbx_fd_path(c, fd, &pcanon);
	if (r < 0)
		return r;
	if (pcanon[0] != '/')
		return -ENOTDIR;
	char *canon;
	if (asprintf(&canon, "%s/%s", strcmp(pcanon, "/") == 0 ? "" : pcanon, name) < 0)
		return -ENOMEM;
	if (strlen(canon) >= PATH_MAX || !policy_path_is_canonical(canon)) {
		free(canon);
		return -ENAMETOOLONG;
	}
	sbx_set_detail(c, canon);
	*ret_canon = canon;
	*ret_name = TAKE_PTR(name);
	return TAKE_FD(fd);
}

/* ---- answers ---- */

static void send_resp(struct supervisor *sv, uint64_t id, int64_t val, int error, uint32_t flags)
{
	memset(sv->resp, 0, sv->sizes.seccomp_notif_resp);
	sv->resp->id = id;
	sv->resp->val = val;
	sv->resp->error = error;
	sv->resp->flags = flags;
	/* ENOENT: the target was killed or its call interrupted meanwhile; nothing to answer. */
	if (ioctl(sv->notify_fd, SECCOMP_IOCTL_NOTIF_SEND, sv->resp) < 0 && errno != ENOENT)
		log_debug_errno(errno, "NOTIF_SEND failed: %m");
}

/*
 * SECCOMP_IOCTL_NOTIF_ADDFD wakes the target to install the descriptor, and the target wakes
 * the supervisor back, both with ordinary wake-ups. The scheduler sends each to an idle CPU if
 * there is one, and waking a halted virtual CPU costs tens of microseconds, several times the
 * whole call (65-75 us instead of 12 us per open on an idle 2-vCPU VM). For the duration of the
 * ioctl both tasks are therefore kept on the CPU the supervisor runs on (where the synchronous
 * wake-up brought it, next to the target), and their affinities are restored right after. A
 * target whose own affinity excludes this CPU is left alone. The target's tid is re-validated
 * (NOTIF_ID_VALID) after its mask is read and before it is changed: while the notification is
 * pending the thread is blocked in the call and its tid cannot be reused. Returns whether the
 * masks must be restored.
 */
static bool affine_begin(struct supervisor *sv, uint64_t id, pid_t tid, cpu_set_t *saved)
{
	int cpu = sched_getcpu();
	cpu_set_t one;
	if (!sv->have_self_mask || cpu < 0 || sched_getaffinity(tid, sizeof(*saved), saved) < 0 ||
	    !CPU_ISSET(cpu, saved) || !CPU_ISSET(cpu, &sv->self_mask))
		return false;
	if (ioctl(sv->notify_fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) < 0)
		return false;
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	if (sched_setaffinity(tid, sizeof(one), &one) < 0)
		return false;
	if (sched_setaffinity(0, sizeof(one), &one) < 0) {
		sched_setaffinity(tid, sizeof(*saved), saved);
		return false;
	}
	return true;
}

static void affine_end(struct supervisor *sv, pid_t tid, const cpu_set_t *saved)
{
	/* The target may have been killed meanwhile (ESRCH): nothing to restore then. */
	sched_setaffinity(tid, sizeof(*saved), saved);
	sched_setaffinity(0, sizeof(sv->self_mask), &sv->self_mask);
}

/* Injects @fd into the target as the result of the call. Returns 0 or -errno (the answer was
 * not sent). */
static int send_fd(struct supervisor *sv, uint64_t id, pid_t tid, int fd, bool cloexec)
{
	struct seccomp_notif_addfd a = {
		.id = id,
		.flags = sv->addfd_send ? SECCOMP_ADDFD_FLAG_SEND : 0,
		.srcfd = (uint32_t)fd,
		.newfd = 0,
		.newfd_flags = cloexec ? O_CLOEXEC : 0,
	};
	cpu_set_t saved;
	bool affine = tid > 0 && affine_begin(sv, id, tid, &saved);
	int r = ioctl(sv->notify_fd, SECCOMP_IOCTL_NOTIF_ADDFD, &a);
	int e = errno;
	if (affine)
		affine_end(sv, tid, &saved);
	errno = e;
	if (r < 0 && errno == EINVAL && sv->addfd_send) {
		/* Before 5.14: add, then answer with the number in a second step. */
		sv->addfd_send = false;
		a.flags = 0;
		r = ioctl(sv->notify_fd, SECCOMP_IOCTL_NOTIF_ADDFD, &a);
	}
	if (r < 0)
		return negative_errno();
	if (!sv->addfd_send)
		send_resp(sv, id, r, 0, 0);
	return 0;
}

static void record_denial(struct supervisor *sv, const struct seccomp_notif *n, int error,
			  const char *reason, const char *detail)
{
	struct denial *d = &sv->ring[sv->ring_next];
	*d = (struct denial){ .time_ns = now_ns(CLOCK_REALTIME),
			      .pid = (pid_t)n->pid,
			      .nr = n->data.nr,
			      .error = error,
			      .reason = reason ? reason : "denied" };
	memcpy(d->args, n->data.args, sizeof(d->args));
	size_t dl = strnlen(detail, sizeof(d->detail) - 1);
	memcpy(d->detail, detail, dl);
	d->detail[dl] = '\0';
	sv->ring_next = (sv->ring_next + 1) % SUPERVISOR_RING;
	if (sv->ring_len < SUPERVISOR_RING)
		sv->ring_len++;
}

static json_t *denial_json(const struct supervisor *sv, const struct denial *d)
{
	char t[40], name[64];
	format_time(d->time_ns, t, sizeof(t));
	json_t *args = json_array();
	if (!args)
		return NULL;
	for (int i = 0; i < 6; i++) {
		char a[24];
		snprintf(a, sizeof(a), "0x%" PRIx64, d->args[i]);
		json_array_append_new(args, json_string(a));
	}
	return json_pack("{s:s, s:s, s:i, s:s, s:o, s:s, s:i, s:s}", "time", t, "id", sv->id, "pid",
			 (int)d->pid, "syscall", syscall_name(d->nr, name, sizeof(name)), "args",
			 args, "detail", d->detail, "errno", d->error, "reason", d->reason);
}

static void audit(struct supervisor *sv, const struct denial *d)
{
	if (sv->audit_fd < 0)
		return;
	json_auto_t *j = denial_json(sv, d);
	if (!j)
		return;
	_cleanup_free_ char *s = json_dumps(j, JSON_COMPACT);
	if (!s)
		return;
	size_t len = strlen(s);
	_cleanup_free_ char *line = malloc(len + 2);
	if (!line)
		return;
	memcpy(line, s, len);
	line[len] = '\n';
	/* One write per line on an O_APPEND descriptor: lines never interleave. */
	if (loop_write(sv->audit_fd, line, len + 1) < 0)
		log_debug("Writing the audit log failed.");
}

static sbx_handler_t handler_for(int nr)
{
	switch (nr) {
	case SYS_open:
	case SYS_openat:
	case SYS_openat2:
	case SYS_creat:
		return sbx_handle_open;
	case SYS_execve:
	case SYS_execveat:
		return sbx_handle_exec;
	case SYS_connect:
	case SYS_bind:
		return sbx_handle_net;
	case SYS_sendto:
	case SYS_sendmsg:
	case SYS_sendmmsg:
		return sbx_handle_send;
	case SYS_unlink:
	case SYS_unlinkat:
	case SYS_rename:
	case SYS_renameat:
	case SYS_renameat2:
	case SYS_mkdir:
	case SYS_mkdirat:
	case SYS_rmdir:
	case SYS_symlink:
	case SYS_symlinkat:
	case SYS_link:
	case SYS_linkat:
	case SYS_chmod:
	case SYS_fchmodat:
	case SYS_truncate:
		return sbx_handle_path_mutation;
	default:
		return NULL;
	}
}

static void count(struct supervisor *sv, int nr, bool denied)
{
	if (nr < 0 || nr >= NR_MAX)
		return;
	if (denied)
		sv->counters[nr].denied++;
	else
		sv->counters[nr].allowed++;
}

/* After the answer, the signal the kernel would have raised in the call (SIGPIPE). tgkill
 * checks that @tid still belongs to @tgid. */
static void signal_thread(pid_t tgid, pid_t tid, int sig)
{
	if (syscall(SYS_tgkill, tgid, tid, sig) < 0)
		log_debug_errno(errno, "Signal %d to thread %d failed: %m", sig, (int)tid);
}

static void handle_one(struct supervisor *sv, const struct seccomp_notif *n)
{
	struct sbx_call c = {
		.sv = sv,
		.n = n,
		.policy = sv->policy,
		.notify_fd = sv->notify_fd,
		.fd = -EBADF,
	};
	int nr = n->data.nr;
	int r;

	if (nr >= 0 && nr < NR_MAX)
		sv->counters[nr].trapped++;
	sbx_handler_t h = n->data.arch == AUDIT_ARCH_X86_64 ? handler_for(nr) : NULL;
	if (!h)
		r = sbx_deny(&c, ENOSYS, "no handler");
	else
		r = h(&c);

	if (r >= 0 && c.verdict == SBX_PENDING) {
		count(sv, nr, false);
		return;
	}
	if (r >= 0 && c.verdict == SBX_CONTINUE) {
		count(sv, nr, false);
		send_resp(sv, n->id, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE);
		return;
	}
	if (r >= 0 && c.verdict == SBX_ADDFD) {
		r = send_fd(sv, n->id, (pid_t)n->pid, c.fd, c.fd_cloexec);
		close(c.fd);
		c.fd = -EBADF;
		if (r >= 0) {
			count(sv, nr, false);
			return;
		}
		/* Injection failed (e.g. EMFILE in the target): the call fails, never continues. */
		if (r == -ENOENT)
			return;
	}
	if (c.fd >= 0)
		close(c.fd);
	count(sv, nr, c.denied);
	if (c.denied) {
		record_denial(sv, n, -r, c.reason, c.detail);
		audit(sv, &sv->ring[(sv->ring_next + SUPERVISOR_RING - 1) % SUPERVISOR_RING]);
	}
	/* The signal goes to the thread by tgid and tid; the tgid is read while the
	 * notification is still pending (after the answer, the tid could be reused). */
	if (c.signal_after > 0 && sbx_load_status(&c) < 0)
		c.signal_after = 0;
	if (r < 0)
		send_resp(sv, n->id, 0, r, 0);
	else
		send_resp(sv, n->id, c.val, 0, 0);
	if (c.signal_after > 0)
		signal_thread(c.tgid, (pid_t)n->pid, c.signal_after);
}

/* ---- asynchronous connect ---- */

static void pending_free(struct pending *p)
{
	struct supervisor *sv = p->sv;
	for (struct pending **pp = &sv->pending; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	if (p->ev)
		event_free(p->ev);
	if (p->free_data)
		p->free_data(p->data);
	if (p->fd >= 0)
		close(p->fd);
	free(p);
}

static void on_connect_done(evutil_socket_t fd, short what, void *userdata)
{
	struct pending *p = userdata;
	int err = ETIMEDOUT;
	if (what & EV_WRITE) {
		socklen_t len = sizeof(err);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
	}
	send_resp(p->sv, p->id, 0, err ? -err : 0, 0);
	pending_free(p);
}

int sbx_pending_connect(struct sbx_call *c, int fd, int timeout_ms)
{
	struct supervisor *sv = c->sv;
	struct pending *p = calloc(1, sizeof(*p));
	if (!p) {
		close(fd);
		return -ENOMEM;
	}
	*p = (struct pending){ .sv = sv, .id = c->n->id, .fd = fd };
	p->ev = event_new(sv->base, fd, EV_WRITE, on_connect_done, p);
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	if (!p->ev || event_add(p->ev, &tv) < 0) {
		if (p->ev)
			event_free(p->ev);
		close(fd);
		free(p);
		return -ENOMEM;
	}
	p->next = sv->pending;
	sv->pending = p;
	c->verdict = SBX_PENDING;
	return 0;
}

#define PENDING_TICK_MS 50u

static void on_pending_call(evutil_socket_t fd, short what, void *userdata);

/* Waits for the socket again: for writability with a tick, or, while it keeps polling
 * writable without taking the call, for a backoff timer only (no busy loop). */
static int pending_call_arm(struct pending *p, bool backoff)
{
	unsigned ms = PENDING_TICK_MS;
	if (backoff) {
		p->retry_ms = p->retry_ms ? MIN(p->retry_ms * 2, PENDING_TICK_MS) : 1;
		ms = p->retry_ms;
	}
	struct timeval tv = { .tv_sec = 0, .tv_usec = (suseconds_t)ms * 1000 };
	if (event_assign(p->ev, p->sv->base, backoff ? -1 : p->fd, backoff ? 0 : EV_WRITE,
			 on_pending_call, p) < 0 ||
	    event_add(p->ev, &tv) < 0)
		return -ENOMEM;
	return 0;
}

static void on_pending_call(evutil_socket_t fd, short what, void *userdata)
{
	struct pending *p = userdata;
	struct supervisor *sv = p->sv;
	uint64_t id = p->id;
	int64_t val = 0;
	int sig = 0, r;
	bool ready = what & EV_WRITE;

	/* The program was killed (or, before 5.19, interrupted): nothing more is done for it. */
	if (ioctl(sv->notify_fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) < 0) {
		pending_free(p);
		return;
	}
	r = p->resume(p->data, p->fd, ready, &val, &sig);
	if (r == SBX_RESUME_WAIT) {
		/* Writable but refused again: the obstacle is elsewhere (the queue of an
		 * unconnected datagram's receiver), which no poll reports; from then on retry on
		 * a backoff timer. */
		r = pending_call_arm(p, ready || p->retry_ms);
		if (r >= 0)
			return;
	}
	send_resp(sv, id, r < 0 ? 0 : val, r < 0 ? r : 0, 0);
	if (sig > 0)
		signal_thread(p->tgid, p->tid, sig);
	pending_free(p);
}

int sbx_pending_call(struct sbx_call *c, int fd, sbx_resume_t resume, void (*free_data)(void *),
		     void *data)
{
	struct supervisor *sv = c->sv;
	int r = sbx_load_status(c);
	struct pending *p = r < 0 ? NULL : calloc(1, sizeof(*p));
	if (!p) {
		if (free_data)
			free_data(data);
		close(fd);
		return r < 0 ? r : -ENOMEM;
	}
	*p = (struct pending){ .sv = sv,
			       .id = c->n->id,
			       .fd = fd,
			       .resume = resume,
			       .free_data = free_data,
			       .data = data,
			       .tgid = c->tgid,
			       .tid = (pid_t)c->n->pid };
	p->ev = event_new(sv->base, -1, 0, on_pending_call, p);
	if (!p->ev || pending_call_arm(p, false) < 0) {
		pending_free(p); /* not linked yet; frees @data and closes @fd */
		return -ENOMEM;
	}
	p->next = sv->pending;
	sv->pending = p;
	c->verdict = SBX_PENDING;
	return 0;
}

/* The helper of a blocking open: opens @fd (its inherited O_PATH copy) with @flags, which
 * may wait for the other end of a FIFO, and sends the result back. Never returns. */
static _Noreturn void blocking_open_child(int proc_fd, int fd, int flags, int sock)
{
	char link[64];
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cbuf = {};
	/* Never outlive the supervisor, even when the other end of the FIFO never comes. */
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	snprintf(link, sizeof(link), "self/fd/%d", fd);
	int nfd = openat(proc_fd, link, flags | O_CLOEXEC | O_NOCTTY);
	int err = nfd < 0 ? errno : 0;
	struct iovec iov = { .iov_base = &err, .iov_len = sizeof(err) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (nfd >= 0) {
		m.msg_control = cbuf.b;
		m.msg_controllen = sizeof(cbuf.b);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &nfd, sizeof(int));
	}
	_exit(sendmsg(sock, &m, MSG_NOSIGNAL) < 0 ? 1 : 0);
}

static void pending_reap(struct pending *p)
{
	if (p->child > 0) {
		kill(p->child, SIGKILL);
		waitpid(p->child, NULL, 0);
		p->child = 0;
	}
}

static void on_blocking_open(evutil_socket_t sock, short what, void *userdata)
{
	struct pending *p = userdata;
	struct supervisor *sv = p->sv;
	uint64_t id = p->id;

	if (!(what & EV_READ)) {
		/* Periodic check: is the program still waiting? */
		if (ioctl(sv->notify_fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0)
			return;
		pending_reap(p);
		pending_free(p);
		return;
	}
	int err = EIO, fd = -1;
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { .iov_base = &err, .iov_len = sizeof(err) };
	struct msghdr m = { .msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cbuf.b,
			    .msg_controllen = sizeof(cbuf.b) };
	ssize_t n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n == (ssize_t)sizeof(err))
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
			    cm->cmsg_len == CMSG_LEN(sizeof(int)))
				memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	if (n != (ssize_t)sizeof(err))
		err = EIO;
	if (fd >= 0) {
		if (send_fd(sv, p->id, 0, fd, p->cloexec) < 0)
			send_resp(sv, p->id, 0, -EIO, 0);
		close(fd);
	} else
		send_resp(sv, p->id, 0, -(err ? err : EIO), 0);
	pending_reap(p);
	pending_free(p);
}

int sbx_pending_open(struct sbx_call *c, int fd, int flags)
{
	struct supervisor *sv = c->sv;
	struct timeval tv = { 0, 50000 };
	int sp[2];
	struct pending *p = calloc(1, sizeof(*p));
	if (!p || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
		free(p);
		close(fd);
		return -ENOMEM;
	}
	/* A short-lived process, not a thread: it only opens and sends the descriptor back. */
	pid_t pid = fork();
	if (pid == 0) {
		close(sp[0]);
		blocking_open_child(sv->proc_fd, fd, flags, sp[1]);
	}
	close(sp[1]);
	close(fd);
	if (pid < 0) {
		close(sp[0]);
		free(p);
		return -EAGAIN;
	}
	*p = (struct pending){
		.sv = sv, .id = c->n->id, .fd = sp[0], .child = pid, .cloexec = c->fd_cloexec
	};
	p->ev = event_new(sv->base, sp[0], EV_READ | EV_PERSIST, on_blocking_open, p);
	if (!p->ev || event_add(p->ev, &tv) < 0) {
		pending_reap(p);
		if (p->ev)
			event_free(p->ev);
		close(sp[0]);
		free(p);
		return -ENOMEM;
	}
	p->next = sv->pending;
	sv->pending = p;
	c->verdict = SBX_PENDING;
	return 0;
}

/* ---- the init and signals ---- */

static void on_init_exit(evutil_socket_t fd, short what, void *userdata)
{
	struct supervisor *sv = userdata;
	siginfo_t si = {};
	if (waitid((idtype_t)P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
		return;
	sv->exited = true;
	sv->exit_status = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
	event_base_loopbreak(sv->base);
}

static void on_signal(evutil_socket_t sig, short what, void *userdata)
{
	struct supervisor *sv = userdata;
	/* The init forwards it to the program. */
	if (pidfd_send_signal(sv->init_pidfd, (int)sig, NULL, 0) < 0)
		log_debug_errno(errno, "Forwarding signal %d failed: %m", (int)sig);
}

/* ---- control socket ---- */

static json_t *state_json(const struct supervisor *sv)
{
	char t[40], name[64];
	uint64_t tt = 0, ta = 0, td = 0;
	format_time(sv->started_ns, t, sizeof(t));
	json_t *counters = json_object();
	json_t *last = json_array();
	if (!counters || !last) {
		json_decref(counters);
		json_decref(last);
		return NULL;
	}
	for (int nr = 0; nr < NR_MAX; nr++) {
		const struct counter *k = &sv->counters[nr];
		if (!k->trapped)
			continue;
		tt += k->trapped;
		ta += k->allowed;
		td += k->denied;
		json_object_set_new(counters, syscall_name(nr, name, sizeof(name)),
				    json_pack("{s:I, s:I, s:I}", "trapped", (json_int_t)k->trapped,
					      "allowed", (json_int_t)k->allowed, "denied",
					      (json_int_t)k->denied));
	}
	/* Oldest first. */
	for (size_t i = 0; i < sv->ring_len; i++) {
		size_t idx = (sv->ring_next + SUPERVISOR_RING - sv->ring_len + i) % SUPERVISOR_RING;
		json_t *d = denial_json(sv, &sv->ring[idx]);
		if (d)
			json_array_append_new(last, d);
	}
	return json_pack("{s:s, s:s, s:i, s:s, s:o, s:s, s:{s:I, s:I, s:I}, s:o, s:o}", "id",
			 sv->id, "kind", "sandbox", "pid", (int)sv->init_pid, "state",
			 sv->exited ? "exited" :
			 sv->paused ? "paused" :
				      "running",
			 "exit_status", sv->exited ? json_integer(sv->exit_status) : json_null(),
			 "started_at", t, "totals", "trapped", (json_int_t)tt, "allowed",
			 (json_int_t)ta, "denied", (json_int_t)td, "counters", counters,
			 "last_denied", last);
}

static void on_ctl(const struct ctl_request *req, struct ctl_response *resp, void *userdata)
{
	struct supervisor *sv = userdata;
	if (strcmp(req->path, "/") == 0) {
		if (strcmp(req->method, "GET") != 0)
			return ctl_response_error(resp, 405, "Method '%s' not allowed on '/'",
						  req->method);
		resp->body = state_json(sv);
		resp->status = resp->body ? 200 : 500;
		if (!resp->body)
			ctl_response_error(resp, 500, "Out of memory");
		return;
	}
	if (strcmp(req->path, "/actions") != 0)
		return ctl_response_error(resp, 404, "No such resource: '%s'", req->path);
	if (strcmp(req->method, "PUT") != 0)
		return ctl_response_error(resp, 405, "Method '%s' not allowed on '/actions'",
					  req->method);
	json_error_t jerr;
	json_auto_t *body = json_loadb(req->body, req->body_len, 0, &jerr);
	const char *action = NULL;
	if (!body || !json_is_object(body) || !json_is_string(json_object_get(body, "action_type")))
		return ctl_response_error(resp, 400,
					  "Expected a JSON object with a string 'action_type'");
	action = json_string_value(json_object_get(body, "action_type"));
	int sig;
	if (strcmp(action, "Kill") == 0)
		sig = SIGKILL;
	else if (strcmp(action, "SendSignal") == 0) {
		json_t *s = json_object_get(body, "signal");
		if (!json_is_integer(s) || json_integer_value(s) < 1 ||
		    json_integer_value(s) > SIGRTMAX)
			return ctl_response_error(resp, 400,
						  "SendSignal needs an integer 'signal' in 1..%d",
						  SIGRTMAX);
		sig = (int)json_integer_value(s);
	} else
		return ctl_response_error(resp, 400, "Unknown action_type '%s'", action);
	if (sv->exited)
		return ctl_response_error(resp, 400, "The sandbox has exited");
	if (pidfd_send_signal(sv->init_pidfd, sig, NULL, 0) < 0)
		return ctl_response_error(resp, 400, "Signalling the sandbox failed: %s",
					  strerror(errno));
	resp->status = 204;
}

/* ---- supervision through middlecon ---- */

/*
 * Sends @sig to every process of the sandbox: those in the init's PID namespace, found in /proc
 * by that namespace's inode. A process can fork between two passes, so passes repeat until one
 * finds nobody new (for SIGSTOP; one pass for SIGCONT). The init is signalled from the parent
 * namespace, where SIGSTOP reaches even a namespace's init. Returns the number signalled or
 * -errno.
 */
/* Whether /proc/<pid>/stat (@path under @proc_fd) says the process is stopped (T or t). */
static bool proc_stopped(int proc_fd, const char *path)
{
	char buf[512];
	const char *paren;
	ssize_t n;
	int fd = openat(proc_fd, path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	/* The state follows the last ')': comm may hold parentheses and spaces. */
	paren = strrchr(buf, ')');
	return paren && paren[1] == ' ' && (paren[2] == 'T' || paren[2] == 't');
}

DEFINE_CLEANUP_FUNC(DIR, closedir)
DEFINE_CLEANUP_FUNC(struct event, event_free)

static int signal_sandbox(struct supervisor *sv, int sig)
{
	char path[64];
	struct stat ns;
	int total = 0;

	snprintf(path, sizeof(path), "%d/ns/pid", (int)sv->init_pid);
	if (fstatat(sv->proc_fd, path, &ns, 0) < 0)
		return -errno;
	for (int pass = 0; pass < 8; pass++) {
		_cleanup_(closedirp) DIR *d = NULL;
		int fd = openat(sv->proc_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		struct dirent *de;
		int fresh = 0;

		if (fd < 0)
			return -errno;
		d = fdopendir(fd);
		if (!d) {
			close(fd);
			return -errno;
		}
		while ((de = readdir(d))) {
			struct stat st;
			char *end;
			long pid = strtol(de->d_name, &end, 10);

			if (*end || pid <= 0)
				continue;
			snprintf(path, sizeof(path), "%ld/ns/pid", pid);
			if (fstatat(sv->proc_fd, path, &st, 0) < 0 || st.st_ino != ns.st_ino ||
			    st.st_dev != ns.st_dev)
				continue;
			snprintf(path, sizeof(path), "%ld/stat", pid);
			if (sig == SIGSTOP && proc_stopped(sv->proc_fd, path))
				continue;
			if (kill((pid_t)pid, sig) == 0) {
				fresh++;
				total++;
			}
		}
		/* SIGSTOP until a pass finds nobody running: a fork may race with a pass. */
		if (sig != SIGSTOP || fresh == 0)
			break;
	}
	return total;
}

static int on_supervise(const char *method, const void *body, size_t len, char **ret_body,
			char **ret_error, void *userdata)
{
	struct supervisor *sv = userdata;
	json_auto_t *j = NULL;
	int r;

	if (strcmp(method, "state") == 0 || strcmp(method, "stats") == 0) {
		j = state_json(sv);
	} else if (strcmp(method, "pause") == 0 || strcmp(method, "resume") == 0) {
		bool pause = method[0] == 'p';

		if (sv->exited) {
			*ret_error = strdup("the sandbox has exited");
			return -EINVAL;
		}
		if (pause == sv->paused) {
			*ret_error = strdup(pause ? "already paused" : "not paused");
			return -EBUSY;
		}
		r = signal_sandbox(sv, pause ? SIGSTOP : SIGCONT);
		if (r < 0)
			return r;
		sv->paused = pause;
		log_info("Sandbox %s %s (%d processes)", sv->id, pause ? "paused" : "resumed", r);
		j = state_json(sv);
	} else if (strcmp(method, "stop") == 0) {
		if (!sv->exited) {
			/* A paused sandbox is killed as it is: SIGKILL needs no SIGCONT. */
			if (pidfd_send_signal(sv->init_pidfd, SIGKILL, NULL, 0) < 0)
				return -errno;
		}
		j = json_pack("{s:s, s:s}", "id", sv->id, "state", "stopping");
	} else {
		return -EOPNOTSUPP;
	}
	*ret_body = j ? json_dumps(j, JSON_COMPACT) : NULL;
	return *ret_body ? 0 : -ENOMEM;
}

/* ---- lifecycle ---- */

int supervisor_new(const struct supervisor_params *sp, struct supervisor **ret)
{
	char path[64];
	int r;
	struct supervisor *sv = calloc(1, sizeof(*sv));
	if (!sv) {
		close(sp->notify_fd);
		if (sp->audit_fd >= 0)
			close(sp->audit_fd);
		return -ENOMEM;
	}
	sv->policy = sp->policy;
	sv->notify_fd = sp->notify_fd;
	sv->audit_fd = sp->audit_fd;
	sv->init_pid = sp->init_pid;
	sv->init_pidfd = sp->init_pidfd;
	sv->root_fd = sv->proc_fd = -EBADF;
	sv->addfd_send = true;
	sv->started_ns = now_ns(CLOCK_REALTIME);
	*ret = sv; /* the caller frees it on failure too */

	if (!(sv->id = strdup(sp->id)))
		return -ENOMEM;
	sv->have_self_mask = sched_getaffinity(0, sizeof(sv->self_mask), &sv->self_mask) == 0;
	sv->proc_fd = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (sv->proc_fd < 0)
		return log_err_errno(errno, "Failed to open /proc: %m");
	/* The init has pivoted into the new root; this is the sandbox's "/" for every lookup. */
	snprintf(path, sizeof(path), "%d/root", sp->init_pid);
	sv->root_fd = openat(sv->proc_fd, path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (sv->root_fd < 0)
		return log_err_errno(errno, "Failed to open the sandbox's root: %m");
	if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sv->sizes) < 0)
		return log_err_errno(errno, "SECCOMP_GET_NOTIF_SIZES failed: %m");
	sv->req = calloc(1, MAX(sv->sizes.seccomp_notif, sizeof(struct seccomp_notif)));
	sv->resp = calloc(1, MAX(sv->sizes.seccomp_notif_resp, sizeof(struct seccomp_notif_resp)));
	if (!sv->req || !sv->resp)
		return log_oom();
	sv->sizes.seccomp_notif =
		(uint16_t)MAX(sv->sizes.seccomp_notif, sizeof(struct seccomp_notif));
	sv->sizes.seccomp_notif_resp =
		(uint16_t)MAX(sv->sizes.seccomp_notif_resp, sizeof(struct seccomp_notif_resp));
	/* Wake the supervisor on the CPU of the target (6.6+): a notified call then costs about
	 * as much as two context switches. Older kernels refuse the ioctl; that is only slower. */
	uint64_t fl = SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP;
	if (ioctl(sv->notify_fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, fl) < 0)
		log_debug_errno(errno, "Synchronous wake-up not available: %m");

	if (!(sv->base = event_base_new()))
		return log_oom();
	sv->pidfd_ev = event_new(sv->base, sv->init_pidfd, EV_READ | EV_PERSIST, on_init_exit, sv);
	if (!sv->pidfd_ev || event_add(sv->pidfd_ev, NULL) < 0)
		return log_oom();
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
	for (size_t i = 0; i < ELEMENTSOF(sigs); i++) {
		sv->sig_evs[i] = evsignal_new(sv->base, sigs[i], on_signal, sv);
		if (!sv->sig_evs[i] || event_add(sv->sig_evs[i], NULL) < 0)
			return log_oom();
	}
	if (sp->api_socket) {
		r = ctl_server_new(sv->base, sp->api_socket, 0600, on_ctl, sv, &sv->ctl);
		if (r < 0)
			return log_err_errno(r, "Failed to listen on '%s': %m", sp->api_socket);
		r = instance_socket_share(sp->api_socket);
		if (r < 0)
			log_warn_errno(r, "Cannot give group %s access to '%s', ignoring: %m",
				       INSTANCE_GROUP, sp->api_socket);
	}
	if (sp->relay_socket) {
		_cleanup_free_ char *name = NULL;

		/* Under supervision: sandbox.<id> on the host's relay, whenever one runs. */
		if (asprintf(&name, "sandbox.%s", sv->id) < 0)
			return log_oom();
		r = supervise_start(sv->base, sp->relay_socket, name, on_supervise, sv, &sv->svc);
		if (r < 0)
			return log_err_errno(r, "Cannot register '%s' with middlecon: %m", name);
	}
	return 0;
}

/* SIGALRM only interrupts a waiting NOTIF_RECV; the handler does nothing. */
static void on_tick(int sig)
{
	(void)sig;
}

/*
 * The loop waits in SECCOMP_IOCTL_NOTIF_RECV itself rather than in epoll: the kernel's
 * synchronous wake-up (SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) reaches a task waiting in RECV, but
 * epoll's own wake-up would move the supervisor to another CPU and double the cost of every
 * notified call. The other sources (the init's pidfd, the control socket, the forwarded
 * signals, pending connects) are served by libevent without blocking whenever a 10 ms
 * interval timer interrupts the wait, and after every 64 notifications. SIGALRM is blocked outside
 * the wait, so no handler ever sees EINTR.
 */
/* The notify fd became readable while the loop waited in epoll (idle mode, below). */
static void on_notify_ready(evutil_socket_t fd, short what, void *userdata)
{
	bool *ready = userdata;

	*ready = true;
}

/* Arms (10 ms) or disarms the tick that interrupts a waiting NOTIF_RECV. */
static int set_tick(bool on)
{
	struct itimerval tick = { .it_interval = { 0, on ? SUPERVISOR_TICK_US : 0 },
				  .it_value = { 0, on ? SUPERVISOR_TICK_US : 0 } };

	return RET_NERRNO(setitimer(ITIMER_REAL, &tick, NULL));
}

static uint64_t now_mono_ms(void)
{
	return now_ns(CLOCK_MONOTONIC) / 1000000u;
}

/*
 * Two ways of waiting. While the program makes trapped calls, the supervisor waits in
 * SECCOMP_IOCTL_NOTIF_RECV itself: only a task waiting there gets the kernel's synchronous
 * wake-up on the target's CPU, which is most of a notification's round trip on a VM. A 10 ms
 * tick interrupts that wait to serve the other events (control socket, middlecon, signals).
 * After SUPERVISOR_IDLE_MS without a notification, the supervisor waits in the event loop
 * instead, with the notify fd as one more event and no tick: an idle sandbox costs no wake-ups,
 * and its first trapped call after a pause pays one ordinary wake-up before the fast wait
 * resumes.
 */
int supervisor_run(struct supervisor *sv)
{
	struct sigaction sa = { .sa_handler = on_tick }; /* no SA_RESTART: RECV returns EINTR */
	_cleanup_(event_freep) struct event *notify_ev = NULL;
	sigset_t alrm;
	bool notify_alive = true, idle = false, notify_ready = false;
	unsigned since_events = 0;
	uint64_t last_notif = now_mono_ms();
	int r;

	/* Files the supervisor creates for the program get the program's umask applied by hand. */
	umask(0);
	sigemptyset(&sa.sa_mask);
	sigemptyset(&alrm);
	sigaddset(&alrm, SIGALRM);
	if (sigprocmask(SIG_BLOCK, &alrm, NULL) < 0 || sigaction(SIGALRM, &sa, NULL) < 0)
		return negative_errno();
	r = set_tick(true);
	if (r < 0)
		return r;
	notify_ev = event_new(sv->base, sv->notify_fd, EV_READ | EV_PERSIST, on_notify_ready,
			      &notify_ready);
	if (!notify_ev)
		return -ENOMEM;
	while (!sv->exited) {
		if (!notify_alive) {
			/* No task uses the filter any more: only the init's exit is left. */
			if (event_base_loop(sv->base, EVLOOP_ONCE) < 0)
				return -EIO;
			continue;
		}
		if (idle) {
			notify_ready = false;
			if (event_base_loop(sv->base, EVLOOP_ONCE) < 0)
				return -EIO;
			if (!notify_ready)
				continue;
			/* A notification is pending: back to the fast wait, which receives it. */
			idle = false;
			event_del(notify_ev);
			last_notif = now_mono_ms();
			r = set_tick(true);
			if (r < 0)
				return r;
		}
		memset(sv->req, 0, sv->sizes.seccomp_notif);
		sigprocmask(SIG_UNBLOCK, &alrm, NULL);
		r = ioctl(sv->notify_fd, SECCOMP_IOCTL_NOTIF_RECV, sv->req);
		int e = errno;
		sigprocmask(SIG_BLOCK, &alrm, NULL);
		if (r == 0) {
			handle_one(sv, sv->req);
			last_notif = now_mono_ms();
		} else if (e != EINTR) {
			struct pollfd p = { .fd = sv->notify_fd, .events = POLLIN };
			/* ENOENT: the target died between wake-up and receive. */
			if (poll(&p, 1, 0) == 1 && (p.revents & POLLHUP))
				notify_alive = false;
		}
		/* Other events after every wait that ended without a notification, and after every
		 * 64 notifications, so a program that never pauses cannot starve them. */
		if (r == 0 && ++since_events < 64)
			continue;
		since_events = 0;
		if (event_base_loop(sv->base, EVLOOP_NONBLOCK) < 0)
			return -EIO;
		if (notify_alive && !sv->exited &&
		    now_mono_ms() - last_notif > SUPERVISOR_IDLE_MS) {
			idle = true;
			r = set_tick(false);
			if (r < 0 || event_add(notify_ev, NULL) < 0)
				return r < 0 ? r : -ENOMEM;
		}
	}
	(void)set_tick(false);
	return sv->exit_status;
}

struct supervisor *supervisor_free(struct supervisor *sv)
{
	if (!sv)
		return NULL;
	while (sv->pending) {
		pending_reap(sv->pending);
		pending_free(sv->pending);
	}
	/* Unregister first: callers learn at once that the sandbox is gone. */
	supervise_free(sv->svc);
	ctl_server_free(sv->ctl);
	for (size_t i = 0; i < ELEMENTSOF(sv->sig_evs); i++)
		if (sv->sig_evs[i])
			event_free(sv->sig_evs[i]);
	if (sv->pidfd_ev)
		event_free(sv->pidfd_ev);
	if (sv->base)
		event_base_free(sv->base);
	if (sv->notify_fd >= 0)
		close(sv->notify_fd);
	if (sv->root_fd >= 0)
		close(sv->root_fd);
	if (sv->proc_fd >= 0)
		close(sv->proc_fd);
	if (sv->audit_fd >= 0)
		close(sv->audit_fd);
	free(sv->req);
	free(sv->resp);
	free(sv->id);
	free(sv);
	return NULL;
}
