/* SPDX-License-Identifier: MIT */
/*
 * connect and bind, checked against the network policy and performed by the supervisor on
 * the program's own socket (pidfd_getfd), with the address copied once.
 *
 * AF_UNIX paths are resolved beneath the sandbox's root like file opens and reached through
 * /proc/self/fd of the supervisor, so the supervisor never looks a sandbox path up in its own
 * root. A blocking connect is started non-blocking and answered when it completes, so the
 * loop never waits for a remote peer.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "sandbox/syscall/handlers/handlers.h"
#include "sandbox/syscall/policy.h"

#define CONNECT_TIMEOUT_MS (120 * 1000)

static void describe(struct sbx_call *c, const struct sockaddr *sa, size_t len)
{
	char a[INET6_ADDRSTRLEN] = "?";
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
		snprintf(c->detail, sizeof(c->detail), "%s:%u", a, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a));
		snprintf(c->detail, sizeof(c->detail), "[%s]:%u", a, ntohs(in6->sin6_port));
	} else
		snprintf(c->detail, sizeof(c->detail), "family %u", sa->sa_family);
}

/* connect(2) on the supervisor's copy of the socket; blocking sockets complete later. */
static int do_connect(struct sbx_call *c, int fd, const struct sockaddr *sa, socklen_t len)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -errno;
	if (fl & O_NONBLOCK)
		return connect(fd, sa, len) < 0 ? -errno : 0;
	/* The file description is shared with the program: O_NONBLOCK is set only around the
	 * call and restored before anything else can observe the socket. */
	if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	int r = connect(fd, sa, len) < 0 ? -errno : 0;
	if (fcntl(fd, F_SETFL, fl) < 0 && r == 0)
		r = -errno;
	return r;
}

static int unix_path(struct sbx_call *c, int sfd, const struct sockaddr_un *un, size_t len,
		     bool is_bind)
{
	char path[sizeof(un->sun_path) + 1];
	size_t plen = len - offsetof(struct sockaddr_un, sun_path);
	memcpy(path, un->sun_path, plen);
	path[plen] = '\0';
	struct sockaddr_un via = { .sun_family = AF_UNIX };
	_cleanup_free_ char *canon = NULL;
	_cleanup_free_ char *name = NULL;
	_cleanup_close_ int fd = -EBADF;
	int r;

	if (is_bind) {
		fd = sbx_resolve_parent(c, AT_FDCWD, path, &name, &canon);
		if (fd == -ELOOP)
			return sbx_deny(c, EACCES, "magic link or symlink loop");
		if (fd < 0)
			return fd;
		if (policy_access_for(c->policy, canon) != POLICY_RW)
			return sbx_deny(c, EACCES, "socket path not writable");
		if (snprintf(via.sun_path, sizeof(via.sun_path), "/proc/self/fd/%d/%s", fd, name) >=
		    (int)sizeof(via.sun_path))
			return -ENAMETOOLONG;
		if ((r = sbx_load_status(c)) < 0)
			return r;
		/* The socket file gets the program's umask, as if it had bound it itself. */
		mode_t old = umask(c->umask);
		r = bind(sfd, (struct sockaddr *)&via, sizeof(via)) < 0 ? -errno : 0;
		umask(old);
		return r;
	}
	fd = sbx_resolve(c, AT_FDCWD, path, false, &canon);
	if (fd == -ELOOP)
		return sbx_deny(c, EACCES, "magic link or symlink loop");
	if (fd < 0)
		return fd;
	/* Connecting to a socket needs write permission on it. */
	if (canon[0] != '/' || policy_access_for(c->policy, canon) != POLICY_RW)
		return sbx_deny(c, EACCES, "socket path not writable");
	snprintf(via.sun_path, sizeof(via.sun_path), "/proc/self/fd/%d", fd);
	return do_connect(c, sfd, (struct sockaddr *)&via, sizeof(via));
}

int sbx_handle_net(struct sbx_call *c)
{
	const __u64 *a = c->n->data.args;
	bool is_bind = c->n->data.nr == SYS_bind;
	struct sockaddr_storage ss = {};
	size_t len = a[2];
	int r;

	c->verdict = SBX_REPLY;
	c->val = 0;
	if (len > sizeof(ss))
		return -EINVAL;
	if (len < sizeof(sa_family_t))
		return -EINVAL;
	r = sbx_read_mem(c, a[1], &ss, len);
	if (r < 0)
		return r;
	_cleanup_close_ int sfd = sbx_get_fd(c, (int)a[0]);
	if (sfd < 0)
		return sfd;
	int domain;
	socklen_t dl = sizeof(domain);
	if (getsockopt(sfd, SOL_SOCKET, SO_DOMAIN, &domain, &dl) < 0)
		return -errno; /* ENOTSOCK */
	const struct sockaddr *sa = (const struct sockaddr *)&ss;
	describe(c, sa, len);

	switch (ss.ss_family) {
	case AF_INET:
	case AF_INET6:
		if (!policy_net_allowed(c->policy, is_bind, sa, len))
			return sbx_deny(c, EACCES,
					is_bind ? "bind address not allowed" :
						  "connect address not allowed");
		break;
	case AF_UNIX: {
		const struct sockaddr_un *un = (const void *)&ss;
		if (domain != AF_UNIX)
			return -EINVAL;
		if (len == sizeof(sa_family_t)) {
			/* bind() with no name: autobind to an abstract address. */
			if (!is_bind)
				return -EINVAL;
			if (c->policy->net != POLICY_NET_NONE)
				return sbx_deny(c, EACCES, "abstract socket in the host namespace");
			break;
		}
		if (un->sun_path[0] == '\0') {
			snprintf(c->detail, sizeof(c->detail), "@%.*s", (int)(len - 3),
				 un->sun_path + 1);
			/* Abstract names live in the network namespace: private with "net none",
			 * the host's otherwise. */
			if (c->policy->net != POLICY_NET_NONE)
				return sbx_deny(c, EACCES, "abstract socket in the host namespace");
			break;
		}
		return unix_path(c, sfd, un, len, is_bind);
	}
	case AF_UNSPEC:
		/* connect(AF_UNSPEC) dissolves an association; it reaches nobody. */
		if (is_bind)
			return sbx_deny(c, EACCES, "address family not allowed");
		break;
	case AF_NETLINK:
		/* Netlink reaches the kernel of the sandbox's own network namespace. */
		break;
	default:
		return sbx_deny(c, EACCES, "address family not allowed");
	}

	if (is_bind)
		return bind(sfd, sa, (socklen_t)len) < 0 ? -errno : 0;
	r = do_connect(c, sfd, sa, (socklen_t)len);
	if (r == -EINPROGRESS) {
		int fl = fcntl(sfd, F_GETFL);
		if (fl >= 0 && !(fl & O_NONBLOCK))
			/* A blocking connect: answer when it completes. */
			return sbx_pending_connect(c, TAKE_FD(sfd), CONNECT_TIMEOUT_MS);
	}
	return r;
}
