/* SPDX-License-Identifier: MIT */
/*
 * The sandbox's init: namespaces, the pivot_root'ed root, privileges, the seccomp filter, and
 * the program. Everything in child_*() runs in the cloned init, which has every capability in
 * its new user namespace and none outside it; it reports setup errors to the launcher as text
 * and exits. The root is built like bubblewrap's: a private tmpfs becomes the root, the host's
 * tree is reachable at /oldroot while the new root is assembled at /newroot, then /oldroot is
 * detached and /newroot becomes "/".
 */
#include "sandbox/syscall/launch.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <limits.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>

#include "libcommon/cleanup.h"
#include "libcommon/fdutil.h"
#include "libcommon/log.h"
#include "libcommon/strutil.h"
#include "sandbox/syscall/policy.h"

#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)
#endif

#define MSG_MAX 512
#define BASE "/tmp" /* where the private base tmpfs is mounted before the first pivot_root */

/* The messages of the launcher/init protocol (one byte each, errors carry text after 'E'). */
#define MSG_GO 'G'
#define MSG_FD 'F'
#define MSG_ERR 'E'

struct child_err {
	char msg[MSG_MAX];
};

/* Records the first error of the init; returns -1 so callers can "return fail(...)". */
__attribute__((format(printf, 2, 3))) static int fail(struct child_err *e, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	if (e->msg[0])
		return -1;
	va_start(ap, fmt);
	errno = saved;
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return -1;
}

static int write_at(const char *path, const char *data)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	return loop_write(fd, data, strlen(data));
}

/* Creates @path (and its parents) as a directory, or as an empty file for @is_file. */
static int ensure_node(const char *path, bool is_file)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *s = strchr(buf + 1, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return negative_errno();
		*s = '/';
	}
	if (is_file) {
		int fd = open(buf, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
		if (fd < 0)
			return errno == EISDIR ? 0 : negative_errno();
		close(fd);
		return 0;
	}
	if (mkdir(buf, 0755) < 0 && errno != EEXIST)
		return negative_errno();
	return 0;
}

/* Sets the flags of the mount at @path (and, with @recursive, of every mount beneath). Only
 * restrictions are added, so flags locked by the host's mounts never get in the way. */
static int set_mount_flags(const char *path, bool ro, bool exec, bool dev, bool recursive)
{
	struct mount_attr a = { .attr_set = MOUNT_ATTR_NOSUID };
	if (ro)
		a.attr_set |= MOUNT_ATTR_RDONLY;
	if (!exec)
		a.attr_set |= MOUNT_ATTR_NOEXEC;
	if (!dev)
		a.attr_set |= MOUNT_ATTR_NODEV;
	return RET_NERRNO(
		mount_setattr(AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, &a, sizeof(a)));
}

/* Bind-mounts the host's @src (under /oldroot) to @dst (under /newroot). */
static int bind_path(const struct policy *p, const char *src, const char *dst, bool ro,
		     struct child_err *e)
{
	char s[PATH_MAX], d[PATH_MAX];
	struct stat st;
	if (snprintf(s, sizeof(s), "/oldroot%s", src) >= (int)sizeof(s) ||
	    snprintf(d, sizeof(d), "/newroot%s", dst) >= (int)sizeof(d))
		return fail(e, "path too long: '%s'", src);
	if (stat(s, &st) < 0)
		return fail(e, "cannot bind '%s': %m", src);
	int r = ensure_node(d, !S_ISDIR(st.st_mode));
	if (r < 0) {
		errno = -r;
		return fail(e, "cannot create mount point '%s': %m", dst);
	}
	if (mount(s, d, NULL, MS_BIND | MS_REC, NULL) < 0)
		return fail(e, "cannot bind '%s' to '%s': %m", src, dst);
	/* Device nodes only work where the host's mount allowed them; never add new ones. */
	r = set_mount_flags(d, ro, policy_exec_for(p, dst), true, true);
	if (r < 0) {
		errno = -r;
		return fail(e, "cannot set the flags of '%s': %m", dst);
	}
	return 0;
}

static int mount_tmpfs(const struct policy *p, const char *dst, const char *opts,
		       struct child_err *e)
{
	char d[PATH_MAX];
	if (snprintf(d, sizeof(d), "/newroot%s", dst) >= (int)sizeof(d))
		return fail(e, "path too long: '%s'", dst);
	int r = ensure_node(d, false);
	if (r < 0) {
		errno = -r;
		return fail(e, "cannot create mount point '%s': %m", dst);
	}
	unsigned long fl = MS_NOSUID | MS_NODEV | (policy_exec_for(p, dst) ? 0 : MS_NOEXEC);
	if (mount("tmpfs", d, "tmpfs", fl, opts) < 0)
		return fail(e, "cannot mount a tmpfs on '%s': %m", dst);
	return 0;
}

/* The host's system directories, each bound read-only (or recreated as the symlink it is). */
static int default_root(const struct policy *p, struct child_err *e)
{
	static const char *const dirs[] = { "/usr",   "/bin",	"/sbin",   "/lib",
					    "/lib32", "/lib64", "/libx32", "/etc" };
	for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
		char s[64], d[64], target[PATH_MAX];
		struct stat st;
		snprintf(s, sizeof(s), "/oldroot%s", dirs[i]);
		snprintf(d, sizeof(d), "/newroot%s", dirs[i]);
		if (lstat(s, &st) < 0)
			continue; /* e.g. no /libx32 on this host */
		if (S_ISLNK(st.st_mode)) {
			ssize_t n = readlink(s, target, sizeof(target) - 1);
			if (n < 0)
				return fail(e, "cannot read the link '%s': %m", dirs[i]);
			target[n] = '\0';
			if (symlink(target, d) < 0)
				return fail(e, "cannot create the link '%s': %m", dirs[i]);
		} else if (S_ISDIR(st.st_mode)) {
			if (bind_path(p, dirs[i], dirs[i], true, e) < 0)
				return -1;
		}
	}
	return 0;
}

static int setup_dev(const struct policy *p, struct child_err *e)
{
	static const char *const devs[] = { "null", "zero", "full", "random", "urandom", "tty" };
	static const char *const links[][2] = {
		{ "fd", "/proc/self/fd" },	 { "stdin", "/proc/self/fd/0" },
		{ "stdout", "/proc/self/fd/1" }, { "stderr", "/proc/self/fd/2" },
		{ "ptmx", "pts/ptmx" },
	};
	if (mount_tmpfs(p, "/dev", "mode=0755,size=64k", e) < 0)
		return -1;
	for (size_t i = 0; i < ELEMENTSOF(devs); i++) {
		char s[64], d[64];
		snprintf(s, sizeof(s), "/oldroot/dev/%s", devs[i]);
		snprintf(d, sizeof(d), "/newroot/dev/%s", devs[i]);
		if (ensure_node(d, true) < 0 || mount(s, d, NULL, MS_BIND, NULL) < 0)
			return fail(e, "cannot bind /dev/%s: %m", devs[i]);
	}
	for (size_t i = 0; i < ELEMENTSOF(links); i++) {
		char d[64];
		snprintf(d, sizeof(d), "/newroot/dev/%s", links[i][0]);
		if (symlink(links[i][1], d) < 0)
			return fail(e, "cannot create /dev/%s: %m", links[i][0]);
	}
	if (mount_tmpfs(p, "/dev/shm", "mode=1777", e) < 0)
		return -1;
	if (ensure_node("/newroot/dev/pts", false) < 0 ||
	    mount("devpts", "/newroot/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
		  "newinstance,ptmxmode=0666,mode=620") < 0)
		return fail(e, "cannot mount /dev/pts: %m");
	return 0;
}

/* Masks one existing path: an empty read-only tmpfs over a directory, the empty base file
 * over anything else. */
static int mask_one(const char *path, struct child_err *e)
{
	struct stat st;
	if (lstat(path, &st) < 0 || S_ISLNK(st.st_mode))
		return 0; /* a symlink is resolved again when opened, and checked then */
	if (S_ISDIR(st.st_mode)) {
		if (mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
			  "mode=000,size=4k") < 0)
			return fail(e, "cannot hide '%s': %m", path + strlen("/newroot"));
	} else if (mount("/empty", path, NULL, MS_BIND, NULL) < 0 ||
		   set_mount_flags(path, true, false, false, false) < 0)
		return fail(e, "cannot hide '%s': %m", path + strlen("/newroot"));
	return 0;
}

/* Every "hide" rule is enforced by the mount view too: the supervisor's refusal is then the
 * second barrier, not the only one. Patterns are expanded with glob(3). */
static int hide_paths(const struct policy *p, struct child_err *e)
{
	for (size_t i = 0; i < p->n_rules; i++) {
		const struct policy_path_rule *r = &p->rules[i];
		char pat[PATH_MAX] = "/newroot";
		size_t len = strlen(pat);
		if (r->is_exec || r->access != POLICY_HIDE || r->n_components == 0)
			continue;
		for (size_t c = 0; c < r->n_components; c++) {
			int n = snprintf(pat + len, sizeof(pat) - len, "/%s", r->components[c]);
			if (n < 0 || (size_t)n >= sizeof(pat) - len)
				return fail(e, "hidden path too long");
			len += (size_t)n;
		}
		glob_t g = {};
		int gr = glob(pat, GLOB_NOSORT | GLOB_NOESCAPE, NULL, &g);
		if (gr == GLOB_NOMATCH) {
			globfree(&g);
			continue;
		}
		if (gr != 0) {
			globfree(&g);
			return fail(e, "cannot expand the hidden path '%s'", pat + 8);
		}
		for (size_t k = 0; k < g.gl_pathc; k++)
			if (mask_one(g.gl_pathv[k], e) < 0) {
				globfree(&g);
				return -1;
			}
		globfree(&g);
	}
	return 0;
}

static int setup_root(const struct policy *p, struct child_err *e)
{
	/* Nothing mounted here propagates back to the host. */
	if (mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) < 0)
		return fail(e, "cannot make the mounts private: %m");
	if (mount("tmpfs", BASE, "tmpfs", MS_NODEV | MS_NOSUID | MS_NOEXEC, "mode=0755") < 0)
		return fail(e, "cannot mount the base tmpfs: %m");
	if (chdir(BASE) < 0 || mkdir("newroot", 0755) < 0 || mkdir("oldroot", 0755) < 0)
		return fail(e, "cannot prepare the base tmpfs: %m");
	int fd = open("empty", O_WRONLY | O_CREAT | O_CLOEXEC, 0);
	if (fd < 0)
		return fail(e, "cannot prepare the base tmpfs: %m");
	close(fd);
	if (syscall(SYS_pivot_root, BASE, BASE "/oldroot") < 0)
		return fail(e, "pivot_root to the base failed: %m");
	if (chdir("/") < 0)
		return fail(e, "chdir: %m");

	if (p->rootfs) {
		char s[PATH_MAX];
		if (snprintf(s, sizeof(s), "/oldroot%s", p->rootfs) >= (int)sizeof(s))
			return fail(e, "rootfs path too long");
		if (mount(s, "/newroot", NULL, MS_BIND | MS_REC, NULL) < 0)
			return fail(e, "cannot bind the rootfs '%s': %m", p->rootfs);
		/* A rootfs is one mount holding its binaries: it stays executable, and the exec
		 * rules inside it are enforced by the trapped execve check (docs/sandbox.md). */
		if (set_mount_flags("/newroot", false, true, false, false) < 0)
			return fail(e, "cannot set the rootfs' flags: %m");
	} else if (mount("tmpfs", "/newroot", "tmpfs", MS_NODEV | MS_NOSUID, "mode=0755") < 0)
		return fail(e, "cannot mount the new root: %m");
	else if (default_root(p, e) < 0)
		return -1;

	if (ensure_node("/newroot/proc", false) < 0 ||
	    mount("proc", "/newroot/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return fail(e, "cannot mount /proc: %m");
	if (setup_dev(p, e) < 0)
		return -1;
	if (mount_tmpfs(p, "/tmp", "mode=1777", e) < 0)
		return -1;
	for (size_t i = 0; i < p->n_mounts; i++) {
		const struct policy_mount *m = &p->mounts[i];
		int r = m->kind == POLICY_MOUNT_TMPFS ?
				mount_tmpfs(p, m->dest, "mode=0755", e) :
				bind_path(p, m->source, m->dest, m->kind == POLICY_MOUNT_RO_BIND,
					  e);
		if (r < 0)
			return -1;
	}
	if (hide_paths(p, e) < 0)
		return -1;
	/* The root's own directory (mount points, symlinks) is read-only too. */
	if (set_mount_flags("/newroot", true, p->rootfs || policy_exec_for(p, "/"),
			    p->rootfs != NULL, false) < 0)
		return fail(e, "cannot make the root read-only: %m");
	if (umount2("/oldroot", MNT_DETACH) < 0)
		return fail(e, "cannot detach the host's root: %m");
	/* pivot_root(".", ".") stacks the base under the new root; detaching "." drops it. */
	if (chdir("/newroot") < 0 || syscall(SYS_pivot_root, ".", ".") < 0 ||
	    umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
		return fail(e, "pivot_root to the new root failed: %m");
	return 0;
}

static int loopback_up(struct child_err *e)
{
	_cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = {};
	if (s < 0)
		return fail(e, "socket: %m");
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return fail(e, "cannot read the flags of lo: %m");
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		return fail(e, "cannot bring lo up: %m");
	return 0;
}

/* Empties every capability set for good: bounding, ambient, inheritable, permitted, effective,
 * and locks the securebits so uid 0 inside never regains any on exec. */
static int drop_privileges(struct child_err *e)
{
	for (int c = 0; c <= CAP_LAST_CAP; c++)
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
			return fail(e, "cannot drop capability %d from the bounding set: %m", c);
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return fail(e, "cannot clear the ambient capabilities: %m");
	if (prctl(PR_SET_SECUREBITS,
		  SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
			  SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
			  SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
		  0, 0, 0) < 0)
		return fail(e, "cannot set the securebits: %m");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return fail(e, "cannot set no_new_privs: %m");
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2] = {};
	if (syscall(SYS_capset, &h, d) < 0)
		return fail(e, "cannot drop the capabilities: %m");
	return 0;
}

static int send_msg(int sock, char kind, const char *text, int fd)
{
	char buf[MSG_MAX + 1];
	size_t n = 1;
	buf[0] = kind;
	if (text) {
		size_t l = strnlen(text, MSG_MAX);
		memcpy(buf + 1, text, l);
		n += l;
	}
	struct iovec iov = { .iov_base = buf, .iov_len = n };
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} c = {};
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (fd >= 0) {
		m.msg_control = c.b;
		m.msg_controllen = sizeof(c.b);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	return RET_NERRNO(sendmsg(sock, &m, MSG_NOSIGNAL));
}

/* Receives one message; *ret_fd gets a passed descriptor or -EBADF. Returns its length, 0 at
 * EOF, or -errno. */
static ssize_t recv_msg(int sock, char *buf, size_t size, int *ret_fd)
{
	struct iovec iov = { .iov_base = buf, .iov_len = size - 1 };
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} c;
	struct msghdr m = {
		.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.b, .msg_controllen = sizeof(c.b)
	};
	*ret_fd = -EBADF;
	ssize_t n;
	do
		n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return negative_errno();
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
		    cm->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(ret_fd, CMSG_DATA(cm), sizeof(int));
	buf[n] = '\0';
	return n;
}

static int wait_go(int sock)
{
	char buf[8];
	int fd;
	ssize_t n = recv_msg(sock, buf, sizeof(buf), &fd);
	if (fd >= 0)
		close(fd);
	return n == 1 && buf[0] == MSG_GO ? 0 : -1;
}

static int install_filter(const struct launch_params *lp, int *ret_fd, struct child_err *e)
{
	struct sock_fprog prog = { .len = (unsigned short)lp->filter_len,
				   .filter = (struct sock_filter *)lp->filter };
	unsigned long flags =
		SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
	long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
	if (fd < 0 && errno == EINVAL) {
		/* Before 5.19: signals may interrupt a notified call; still correct, since an
		 * interrupted call is never performed (the reply to a dead id fails). */
		flags &= ~SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
		fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
	}
	if (fd < 0)
		return fail(e, "cannot install the seccomp filter: %m");
	*ret_fd = (int)fd;
	return (flags & SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV) ? 1 : 0;
}

static int set_rlimits(const struct policy *p)
{
	static const int res[_POLICY_RLIMIT_MAX] = {
		[POLICY_RLIMIT_AS] = RLIMIT_AS,		[POLICY_RLIMIT_CORE] = RLIMIT_CORE,
		[POLICY_RLIMIT_CPU] = RLIMIT_CPU,	[POLICY_RLIMIT_FSIZE] = RLIMIT_FSIZE,
		[POLICY_RLIMIT_NOFILE] = RLIMIT_NOFILE, [POLICY_RLIMIT_NPROC] = RLIMIT_NPROC,
		[POLICY_RLIMIT_STACK] = RLIMIT_STACK,
	};
	for (int i = 0; i < _POLICY_RLIMIT_MAX; i++) {
		if (!p->rlimit_set[i])
			continue;
		rlim_t v = p->rlimits[i] == UINT64_MAX ? RLIM_INFINITY : (rlim_t)p->rlimits[i];
		struct rlimit rl = { v, v };
		if (setrlimit(res[i], &rl) < 0)
			return negative_errno();
	}
	return 0;
}

/* The program: runs in the init's namespaces with its filter; never returns. */
static _Noreturn void program_main(const struct launch_params *lp, sigset_t *oldmask)
{
	int r;
	signal(SIGPIPE, SIG_DFL);
	sigprocmask(SIG_SETMASK, oldmask, NULL);
	r = set_rlimits(lp->policy);
	if (r < 0) {
		fprintf(stderr, "sandbox: cannot set the resource limits: %s\n", strerror(-r));
		_exit(127);
	}
	if (chdir(lp->chdir ? lp->chdir : "/") < 0) {
		fprintf(stderr, "sandbox: cannot change to '%s': %m\n", lp->chdir);
		_exit(127);
	}
	environ = (char **)lp->envp;
	execvp(lp->argv[0], lp->argv);
	r = errno;
	fprintf(stderr, "sandbox: cannot run '%s': %s\n", lp->argv[0], strerror(r));
	_exit(r == ENOENT ? 127 : 126);
}

/* PID 1 of the sandbox after the program started: forwards signals, reaps orphans, and exits
 * with the program's status (128+N for signal N, as a shell reports it). */
static _Noreturn void init_loop(pid_t child, int sfd)
{
	for (;;) {
		struct signalfd_siginfo si;
		ssize_t n = read(sfd, &si, sizeof(si));
		if (n != sizeof(si)) {
			if (n < 0 && errno == EINTR)
				continue;
			_exit(127);
		}
		if (si.ssi_signo != SIGCHLD) {
			kill(child, (int)si.ssi_signo);
			continue;
		}
		for (;;) {
			int st;
			pid_t p = waitpid(-1, &st, WNOHANG);
			if (p <= 0)
				break;
			if (p != child)
				continue;
			_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
		}
	}
}

static _Noreturn void child_main(const struct launch_params *lp, int sock)
{
	struct child_err e = {};
	int notify_fd = -1, killable;
	sigset_t all, old;

	/* If the launcher dies, so does the sandbox: PID 1 takes every process with it. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		_exit(127);
	if (wait_go(sock) < 0)
		_exit(127);
	if (setup_root(lp->policy, &e) < 0)
		goto err;
	if (sethostname("sandbox", strlen("sandbox")) < 0) {
		fail(&e, "sethostname: %m");
		goto err;
	}
	if (lp->policy->net == POLICY_NET_NONE && loopback_up(&e) < 0)
		goto err;
	if (drop_privileges(&e) < 0)
		goto err;
	killable = install_filter(lp, &notify_fd, &e);
	if (killable < 0)
		goto err;
	/* The filter notifies sendmsg, and nobody serves the listener until the launcher has it:
	 * announce its number with send() (sendto without an address is never notified); the
	 * launcher fetches it with pidfd_getfd() before it answers GO. */
	char fdmsg[32];
	int fdlen =
		snprintf(fdmsg, sizeof(fdmsg), "%c%c%d", MSG_FD, killable ? 'K' : '-', notify_fd);
	if (send(sock, fdmsg, (size_t)fdlen, MSG_NOSIGNAL) != fdlen)
		_exit(127);
	if (wait_go(sock) < 0)
		_exit(127);
	close(notify_fd);

	/* Signals are collected through a signalfd from here on, not by handlers. */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	int sfd = signalfd(-1, &all, SFD_CLOEXEC);
	if (sfd < 0) {
		fail(&e, "signalfd: %m");
		goto err;
	}
	pid_t pid = fork();
	if (pid < 0) {
		fail(&e, "fork: %m");
		goto err;
	}
	if (pid == 0) {
		close(sfd);
		close(sock);
		program_main(lp, &old);
	}
	close(sock);
	init_loop(pid, sfd);

err:
	send_msg(sock, MSG_ERR, e.msg[0] ? e.msg : "setup failed", -1);
	_exit(127);
}

int launch_spawn(const struct launch_params *lp, struct launch *ret)
{
	int sp[2];
	int pidfd = -1;
	unsigned long flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS |
			      CLONE_NEWIPC | CLONE_NEWCGROUP | CLONE_PIDFD | SIGCHLD;
	if (lp->policy->net == POLICY_NET_NONE)
		flags |= CLONE_NEWNET;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
		return negative_errno();
	/* A raw clone with a NULL stack behaves like fork(); the launcher is single-threaded, so
	 * the child may use malloc and stdio. */
	long pid = syscall(SYS_clone, flags, NULL, &pidfd, NULL, NULL);
	if (pid < 0) {
		int r = negative_errno();
		close(sp[0]);
		close(sp[1]);
		return r;
	}
	if (pid == 0) {
		close(sp[0]);
		child_main(lp, sp[1]);
	}
	close(sp[1]);
	*ret = (struct launch){ .pid = (pid_t)pid, .pidfd = pidfd, .sock = sp[0] };
	return 0;
}

int launch_configure(struct launch *l, int *ret_notify_fd, bool *ret_wait_killable)
{
	char path[64], map[64];
	int r;
	uid_t uid = geteuid();
	gid_t gid = getegid();

	/* The caller's ids map to themselves; setgroups must be denied before an unprivileged
	 * gid_map write, and is denied as root too so the sandbox can never drop groups. */
	snprintf(path, sizeof(path), "/proc/%d/setgroups", l->pid);
	r = write_at(path, "deny");
	if (r < 0 && r != -ENOENT)
		return log_err_errno(r, "Failed to write '%s': %m", path);
	snprintf(path, sizeof(path), "/proc/%d/uid_map", l->pid);
	snprintf(map, sizeof(map), "%u %u 1\n", uid, uid);
	r = write_at(path, map);
	if (r < 0)
		return log_err_errno(r, "Failed to write '%s': %m", path);
	snprintf(path, sizeof(path), "/proc/%d/gid_map", l->pid);
	snprintf(map, sizeof(map), "%u %u 1\n", gid, gid);
	r = write_at(path, map);
	if (r < 0)
		return log_err_errno(r, "Failed to write '%s': %m", path);

	r = send_msg(l->sock, MSG_GO, NULL, -1);
	if (r < 0)
		return log_err_errno(r, "Failed to talk to the sandbox's init: %m");
	char buf[MSG_MAX + 2];
	int fd;
	ssize_t n = recv_msg(l->sock, buf, sizeof(buf), &fd);
	if (n < 0)
		return log_err_errno((int)n, "Failed to talk to the sandbox's init: %m");
	if (n >= 3 && buf[0] == MSG_FD && fd < 0) {
		/* The init's listener, by number (see child_main()). */
		int num;
		if (safe_atoi(buf + 2, &num) < 0 || num < 0)
			return log_err_errno(-EPROTO,
					     "Malformed descriptor message from the init.");
		fd = (int)syscall(SYS_pidfd_getfd, l->pidfd, num, 0);
		if (fd < 0)
			return log_err_errno(errno, "Failed to fetch the seccomp listener: %m");
		*ret_notify_fd = fd;
		*ret_wait_killable = buf[1] == 'K';
		return 0;
	}
	if (fd >= 0)
		close(fd);
	if (n >= 1 && buf[0] == MSG_ERR)
		log_err("Failed to set up the sandbox: %s", buf + 1);
	else
		log_err("The sandbox's init exited during setup.");
	return -EIO;
}

int launch_start(struct launch *l)
{
	return send_msg(l->sock, MSG_GO, NULL, -1);
}

void launch_done(struct launch *l)
{
	if (l->pidfd >= 0)
		close(l->pidfd);
	if (l->sock >= 0)
		close(l->sock);
	l->pidfd = l->sock = -EBADF;
}
