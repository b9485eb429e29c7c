/* SPDX-License-Identifier: MIT */
/*
 * File opens and path mutations, performed by the supervisor beneath the sandbox's root.
 *
 * Opens: the path is resolved by the kernel to an O_PATH descriptor (RESOLVE_IN_ROOT, no magic
 * links), judged by its canonical path, and reopened with the program's flags through
 * /proc/self/fd of the supervisor, so the object judged is the object opened. A new file is
 * created by name in its resolved parent directory with O_NOFOLLOW. The descriptor is injected
 * with SECCOMP_IOCTL_NOTIF_ADDFD.
 *
 * Mutations resolve the parent directory the same way and call the *at() variant on it, or,
 * for calls on the object itself (chmod, truncate), act on the resolved descriptor.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/openat2.h>

#include "libcommon/cleanup.h"
#include "sandbox/syscall/handlers/handlers.h"
#include "sandbox/syscall/policy.h"

/* Access of a resolved name. Names that are not paths ("pipe:[…]", "socket:[…]") are objects
 * the program already holds through its own descriptors: reopening them grants nothing new. */
static enum policy_access access_of(struct sbx_call *c, const char *canon)
{
	if (canon[0] != '/')
		return POLICY_RW;
	return policy_access_for(c->policy, canon);
}

static int check_access(struct sbx_call *c, const char *canon, bool write)
{
	enum policy_access a = access_of(c, canon);
	if (a == POLICY_HIDE)
		return sbx_deny(c, EACCES, "hidden path");
	if (write && a != POLICY_RW)
		return sbx_deny(c, EACCES, "read-only path");
	return 0;
}

/* Errors of the resolution that mean the policy refused, not that the file is missing. */
static int resolution_error(struct sbx_call *c, int r)
{
	if (r == -ELOOP)
		return sbx_deny(c, EACCES, "magic link or symlink loop");
	if (r == -EXDEV)
		return sbx_deny(c, EACCES, "path escapes the sandbox root");
	return r;
}

static int read_path_arg(struct sbx_call *c, int idx, char *buf)
{
	int r = sbx_read_string(c, c->n->data.args[idx], buf, PATH_MAX);
	return r < 0 ? r : 0;
}

static int open_tmpfile(struct sbx_call *c, int dirfd, const char *path, int flags, mode_t mode)
{
	_cleanup_free_ char *canon = NULL;
	_cleanup_close_ int dfd = sbx_resolve(c, dirfd, path, false, &canon);
	if (dfd < 0)
		return resolution_error(c, dfd);
	int r = check_access(c, canon, true);
	if (r < 0)
		return r;
	if ((r = sbx_load_status(c)) < 0)
		return r;
	int fd = openat(dfd, ".", flags | O_CLOEXEC | O_NOCTTY, mode & ~c->umask);
	if (fd < 0)
		return -errno;
	c->fd = fd;
	c->verdict = SBX_ADDFD;
	return 0;
}

static int open_create(struct sbx_call *c, int dirfd, const char *path, int flags, mode_t mode)
{
	_cleanup_free_ char *name = NULL;
	_cleanup_free_ char *canon = NULL;
	_cleanup_close_ int pfd = sbx_resolve_parent(c, dirfd, path, &name, &canon);
	if (pfd < 0)
		return resolution_error(c, pfd);
	int r = check_access(c, canon, true);
	if (r < 0)
		return r;
	if ((r = sbx_load_status(c)) < 0)
		return r;
	/* O_NOFOLLOW: a symlink planted at the name after our check is refused (ELOOP), never
	 * followed to a place that was not judged. */
	int fd = openat(pfd, name, flags | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, mode & ~c->umask);
	if (fd < 0)
		return -errno;
	c->fd = fd;
	c->verdict = SBX_ADDFD;
	return 0;
}

static int do_open(struct sbx_call *c, int dirfd, const char *path, int flags, mode_t mode)
{
	int acc = flags & O_ACCMODE;
	bool write = acc != O_RDONLY || (flags & O_TRUNC);
	struct stat st;
	int r;

	if (acc == O_ACCMODE && !(flags & O_PATH))
		return -EINVAL;
	if ((flags & O_TMPFILE) == O_TMPFILE)
		return open_tmpfile(c, dirfd, path, flags, mode);
	bool excl = (flags & O_CREAT) && (flags & O_EXCL);
	_cleanup_free_ char *canon = NULL;
	_cleanup_close_ int fd = sbx_resolve(c, dirfd, path, (flags & O_NOFOLLOW) || excl, &canon);
	if (fd == -ENOENT && (flags & O_CREAT))
		return open_create(c, dirfd, path, flags, mode);
	if (fd < 0)
		return resolution_error(c, fd);
	r = check_access(c, canon, write);
	if (r < 0)
		return r;
	if (excl)
		return -EEXIST;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISLNK(st.st_mode) && !(flags & O_PATH))
		return -ELOOP; /* O_NOFOLLOW on a symlink */
	if ((flags & O_DIRECTORY) && !S_ISDIR(st.st_mode))
		return -ENOTDIR;
	if (flags & O_PATH) {
		/* SECCOMP_IOCTL_NOTIF_ADDFD cannot install O_PATH files (the kernel's fget() skips
		 * them), so an O_PATH open becomes a read-only open of the same object, as syd
		 * does; a symlink cannot be handed over that way. This widens the descriptor's
		 * access to reading, which the policy allowed for this path anyway. */
		if (S_ISLNK(st.st_mode))
			/* glibc's lchmod() opens the link like this and reports EOPNOTSUPP for a
			 * symlink itself; answering the same keeps tar and cp -a working. */
			return -EOPNOTSUPP;
		flags = O_RDONLY | (flags & O_DIRECTORY) | (S_ISREG(st.st_mode) ? 0 : O_NONBLOCK);
	}
	int rflags = flags & ~(O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC);
	if (S_ISFIFO(st.st_mode) && !(flags & O_NONBLOCK) && (flags & O_ACCMODE) != O_RDWR)
		/* A blocking FIFO open waits for the other end: done by a helper process and
		 * answered when it returns. */
		return sbx_pending_open(c, TAKE_FD(fd), rflags);
	int nfd = sbx_reopen(c, fd, rflags);
	if (nfd < 0)
		return nfd;
	c->fd = nfd;
	c->verdict = SBX_ADDFD;
	return 0;
}

int sbx_handle_open(struct sbx_call *c)
{
	const __u64 *a = c->n->data.args;
	char path[PATH_MAX];
	int dirfd = AT_FDCWD, flags, r;
	mode_t mode = 0;

	switch (c->n->data.nr) {
	case SYS_open:
		r = read_path_arg(c, 0, path);
		flags = (int)a[1];
		mode = (mode_t)a[2] & 07777;
		break;
	case SYS_creat:
		r = read_path_arg(c, 0, path);
		flags = O_CREAT | O_WRONLY | O_TRUNC;
		mode = (mode_t)a[1] & 07777;
		break;
	case SYS_openat:
		dirfd = (int)a[0];
		r = read_path_arg(c, 1, path);
		flags = (int)a[2];
		mode = (mode_t)a[3] & 07777;
		break;
	case SYS_openat2: {
		struct open_how how;
		size_t size = a[3];
		dirfd = (int)a[0];
		if (size < sizeof(how))
			return -EINVAL;
		if (size > sizeof(how))
			return -E2BIG; /* no extension is known to us */
		r = sbx_read_mem(c, a[2], &how, sizeof(how));
		if (r < 0)
			return r;
		if (how.flags > INT_MAX || how.mode > 07777)
			return -EINVAL;
		/* Scoped resolution relative to the program's dirfd is not emulated. */
		if (how.resolve & ~(uint64_t)RESOLVE_NO_MAGICLINKS)
			return sbx_deny(c, ENOSYS, "unsupported openat2 resolve flags");
		flags = (int)how.flags;
		mode = (mode_t)how.mode;
		r = read_path_arg(c, 1, path);
		break;
	}
	default:
		return -ENOSYS;
	}
	if (r < 0)
		return r;
	sbx_set_detail(c, path);
	c->fd_cloexec = flags & O_CLOEXEC;
	return do_open(c, dirfd, path, flags, mode);
}

/* ---- mutations ---- */

/* Resolves a path argument to its parent and checks that the name may be written. */
static int writable_parent(struct sbx_call *c, int dirfd, const char *path, char **ret_name)
{
	_cleanup_free_ char *canon = NULL;
	int fd = sbx_resolve_parent(c, dirfd, path, ret_name, &canon);
	if (fd < 0)
		return resolution_error(c, fd);
	int r = check_access(c, canon, true);
	if (r < 0) {
		close(fd);
		free(*ret_name);
		*ret_name = NULL;
		return r;
	}
	return fd;
}

static int do_unlink(struct sbx_call *c, int dirfd, uint64_t patharg, int flags)
{
	char path[PATH_MAX];
	_cleanup_free_ char *name = NULL;
	int r = sbx_read_string(c, patharg, path, sizeof(path));
	if (r < 0)
		return r;
	_cleanup_close_ int pfd = writable_parent(c, dirfd, path, &name);
	if (pfd < 0)
		return pfd;
	return unlinkat(pfd, name, flags) < 0 ? -errno : 0;
}

static int do_mkdir(struct sbx_call *c, int dirfd, uint64_t patharg, mode_t mode)
{
	char path[PATH_MAX];
	_cleanup_free_ char *name = NULL;
	int r = sbx_read_string(c, patharg, path, sizeof(path));
	if (r < 0)
		return r;
	_cleanup_close_ int pfd = writable_parent(c, dirfd, path, &name);
	if (pfd < 0)
		return pfd;
	if ((r = sbx_load_status(c)) < 0)
		return r;
	return mkdirat(pfd, name, mode & 07777 & ~c->umask) < 0 ? -errno : 0;
}

static int do_symlink(struct sbx_call *c, uint64_t targetarg, int dirfd, uint64_t patharg)
{
	char target[PATH_MAX], path[PATH_MAX];
	_cleanup_free_ char *name = NULL;
	int r = sbx_read_string(c, targetarg, target, sizeof(target));
	if (r < 0)
		return r;
	r = sbx_read_string(c, patharg, path, sizeof(path));
	if (r < 0)
		return r;
	/* The target is only text: it is judged whenever something resolves the link. */
	_cleanup_close_ int pfd = writable_parent(c, dirfd, path, &name);
	if (pfd < 0)
		return pfd;
	return symlinkat(target, pfd, name) < 0 ? -errno : 0;
}

static int do_link(struct sbx_call *c, int olddirfd, uint64_t oldarg, int newdirfd, uint64_t newarg,
		   int flags)
{
	char oldp[PATH_MAX], newp[PATH_MAX], link[64];
	_cleanup_free_ char *oname = NULL;
	_cleanup_free_ char *nname = NULL;
	_cleanup_free_ char *ocanon = NULL;
	int r;

	if (flags & ~AT_SYMLINK_FOLLOW)
		return sbx_deny(c, EINVAL, "unsupported linkat flags");
	if ((r = sbx_read_string(c, oldarg, oldp, sizeof(oldp))) < 0 ||
	    (r = sbx_read_string(c, newarg, newp, sizeof(newp))) < 0)
		return r;
	_cleanup_close_ int ofd = -EBADF;
	if (flags & AT_SYMLINK_FOLLOW)
		ofd = sbx_resolve(c, olddirfd, oldp, false, &ocanon);
	else
		ofd = sbx_resolve_parent(c, olddirfd, oldp, &oname, &ocanon);
	if (ofd < 0)
		return resolution_error(c, ofd);
	/* A new name for a file is a way to reach it: the old name must be visible and in a
	 * writable place, as a hard link is a write to the file's link count. */
	if ((r = check_access(c, ocanon, true)) < 0)
		return r;
	_cleanup_close_ int npfd = writable_parent(c, newdirfd, newp, &nname);
	if (npfd < 0)
		return npfd;
	if (flags & AT_SYMLINK_FOLLOW) {
		snprintf(link, sizeof(link), "self/fd/%d", ofd);
		r = linkat(sbx_proc_fd(c), link, npfd, nname, AT_SYMLINK_FOLLOW);
	} else
		r = linkat(ofd, oname, npfd, nname, 0);
	return r < 0 ? -errno : 0;
}

static int do_rename(struct sbx_call *c, int olddirfd, uint64_t oldarg, int newdirfd,
		     uint64_t newarg, unsigned flags)
{
	char oldp[PATH_MAX], newp[PATH_MAX];
	_cleanup_free_ char *oname = NULL;
	_cleanup_free_ char *nname = NULL;
	int r;

	if ((r = sbx_read_string(c, oldarg, oldp, sizeof(oldp))) < 0 ||
	    (r = sbx_read_string(c, newarg, newp, sizeof(newp))) < 0)
		return r;
	_cleanup_close_ int opfd = writable_parent(c, olddirfd, oldp, &oname);
	if (opfd < 0)
		return opfd;
	_cleanup_close_ int npfd = writable_parent(c, newdirfd, newp, &nname);
	if (npfd < 0)
		return npfd;
	return syscall(SYS_renameat2, opfd, oname, npfd, nname, flags) < 0 ? -errno : 0;
}

/* chmod and truncate act on the object the path names (following symlinks). */
static int do_on_object(struct sbx_call *c, int dirfd, uint64_t patharg, bool is_chmod,
			uint64_t value)
{
	char path[PATH_MAX], link[64];
	_cleanup_free_ char *canon = NULL;
	int r = sbx_read_string(c, patharg, path, sizeof(path));
	if (r < 0)
		return r;
	_cleanup_close_ int fd = sbx_resolve(c, dirfd, path, false, &canon);
	if (fd < 0)
		return resolution_error(c, fd);
	if ((r = check_access(c, canon, true)) < 0)
		return r;
	if (is_chmod) {
		snprintf(link, sizeof(link), "self/fd/%d", fd);
		return fchmodat(sbx_proc_fd(c), link, (mode_t)value & 07777, 0) < 0 ? -errno : 0;
	}
	if ((int64_t)value < 0)
		return -EINVAL;
	_cleanup_close_ int wfd = sbx_reopen(c, fd, O_WRONLY | O_NONBLOCK);
	if (wfd < 0)
		return wfd;
	return ftruncate(wfd, (off_t)value) < 0 ? -errno : 0;
}

int sbx_handle_path_mutation(struct sbx_call *c)
{
	const __u64 *a = c->n->data.args;
	c->verdict = SBX_REPLY;
	c->val = 0;
	switch (c->n->data.nr) {
	case SYS_unlink:
		return do_unlink(c, AT_FDCWD, a[0], 0);
	case SYS_rmdir:
		return do_unlink(c, AT_FDCWD, a[0], AT_REMOVEDIR);
	case SYS_unlinkat:
		if ((int)a[2] & ~AT_REMOVEDIR)
			return -EINVAL;
		return do_unlink(c, (int)a[0], a[1], (int)a[2]);
	case SYS_mkdir:
		return do_mkdir(c, AT_FDCWD, a[0], (mode_t)a[1]);
	case SYS_mkdirat:
		return do_mkdir(c, (int)a[0], a[1], (mode_t)a[2]);
	case SYS_symlink:
		return do_symlink(c, a[0], AT_FDCWD, a[1]);
	case SYS_symlinkat:
		return do_symlink(c, a[0], (int)a[1], a[2]);
	case SYS_link:
		return do_link(c, AT_FDCWD, a[0], AT_FDCWD, a[1], 0);
	case SYS_linkat:
		return do_link(c, (int)a[0], a[1], (int)a[2], a[3], (int)a[4]);
	case SYS_rename:
		return do_rename(c, AT_FDCWD, a[0], AT_FDCWD, a[1], 0);
	case SYS_renameat:
		return do_rename(c, (int)a[0], a[1], (int)a[2], a[3], 0);
	case SYS_renameat2:
		return do_rename(c, (int)a[0], a[1], (int)a[2], a[3], (unsigned)a[4]);
	case SYS_chmod:
		return do_on_object(c, AT_FDCWD, a[0], true, a[1]);
	case SYS_fchmodat:
		return do_on_object(c, (int)a[0], a[1], true, a[2]);
	case SYS_truncate:
		return do_on_object(c, AT_FDCWD, a[0], false, a[1]);
	default:
		return -ENOSYS;
	}
}
