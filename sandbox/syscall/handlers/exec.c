/* SPDX-License-Identifier: MIT */
/*
 * execve/execveat: an early, audited refusal of binaries outside the "exec" paths.
 *
 * This is the one place the supervisor answers CONTINUE: the kernel cannot run an exec on
 * another process's behalf. CONTINUE never enforces anything here; the barrier is the mount
 * view, where only the exec paths are mounted without MS_NOEXEC, so a path swapped after our
 * check still cannot run a binary from a noexec mount. The check on the copy catches honest
 * mistakes early and puts them in the audit log with the path.
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

#include "libcommon/cleanup.h"
#include "sandbox/syscall/handlers/handlers.h"
#include "sandbox/syscall/policy.h"

int sbx_handle_exec(struct sbx_call *c)
{
	const __u64 *a = c->n->data.args;
	char path[PATH_MAX];
	int dirfd = AT_FDCWD, flags = 0, r;
	uint64_t patharg;

	if (c->n->data.nr == SYS_execveat) {
		dirfd = (int)a[0];
		patharg = a[1];
		flags = (int)a[4];
		if (flags & ~(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
			return -EINVAL;
	} else
		patharg = a[0];
	r = sbx_read_string(c, patharg, path, sizeof(path));
	if (r < 0)
		return r;
	sbx_set_detail(c, path);

	_cleanup_free_ char *canon = NULL;
	_cleanup_close_ int fd = -EBADF;
	if (path[0] == '\0' && (flags & AT_EMPTY_PATH)) {
		/* fexecve(): the program's own descriptor names the binary. */
		fd = sbx_get_fd(c, dirfd);
		if (fd < 0)
			return fd;
		r = sbx_fd_path(c, fd, &canon);
		if (r < 0)
			return sbx_deny(c, EACCES, "binary without a path");
	} else {
		fd = sbx_resolve(c, dirfd, path, flags & AT_SYMLINK_NOFOLLOW, &canon);
		if (fd == -ELOOP)
			return sbx_deny(c, EACCES, "magic link or symlink loop");
		if (fd < 0)
			return fd;
	}
	sbx_set_detail(c, canon);
	if (canon[0] != '/' || policy_access_for(c->policy, canon) == POLICY_HIDE)
		return sbx_deny(c, EACCES, "hidden binary");
	if (!policy_exec_for(c->policy, canon))
		return sbx_deny(c, EACCES, "binary not in an exec path");
	/* Allowed, and enforced by the kernel through the mount flags: the documented CONTINUE. */
	c->verdict = SBX_CONTINUE;
	return 0;
}
