/* SPDX-License-Identifier: MIT */
/*
 * connect, bind and the sends that name a destination (sendto with an address, sendmsg,
 * sendmmsg), checked against the network policy and performed by the supervisor on the
 * program's own socket (pidfd_getfd), with the address copied once.
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
#include <netinet/udp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <linux/netlink.h>

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

/*
 * Resolves the socket file @path that a connect or a send names, and checks that the policy
 * makes it writable: reaching a socket needs write permission on it, and a read-only bind
 * does not give that (the kernel ignores MS_RDONLY for sockets). Returns an O_PATH descriptor
 * that *ret_via names (/proc/self/fd/N of the supervisor), or -errno.
 */
static int unix_dest(struct sbx_call *c, const char *path, struct sockaddr_un *ret_via)
{
	_cleanup_free_ char *canon = NULL;
	_cleanup_close_ int fd = sbx_resolve(c, AT_FDCWD, path, false, &canon);
	if (fd == -ELOOP)
		return sbx_deny(c, EACCES, "magic link or symlink loop");
	if (fd < 0)
		return fd;
	if (canon[0] != '/' || policy_access_for(c->policy, canon) != POLICY_RW)
		return sbx_deny(c, EACCES, "socket path not writable");
	*ret_via = (struct sockaddr_un){ .sun_family = AF_UNIX };
	snprintf(ret_via->sun_path, sizeof(ret_via->sun_path), "/proc/self/fd/%d", fd);
	return TAKE_FD(fd);
}

static int unix_path(struct sbx_call *c, int sfd, const struct sockaddr_un *un, size_t len,
		     bool is_bind)
{
	char path[sizeof(un->sun_path) + 1];
	size_t plen = len - offsetof(struct sockaddr_un, sun_path);
	/* A name longer than sockaddr_un is the kernel's EINVAL (and would not fit here). */
	if (len > sizeof(*un))
		return -EINVAL;
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
	fd = unix_dest(c, path, &via);
	if (fd < 0)
		return fd;
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

/*
 * ---- sends with a destination: sendto(addr != NULL), sendmsg, sendmmsg ----
 *
 * The destination and the ancillary data live in the program's memory, which another thread
 * may rewrite at any time, and the descriptor number may be re-pointed with dup2(); letting
 * the kernel run the call (CONTINUE) would re-read all of it. So the supervisor performs the
 * whole send on its pidfd_getfd() copy of the socket: the message header, the iovecs, the
 * name and the control data are copied once, the name is judged as connect() would judge it
 * (and an AF_UNIX path replaced by the resolved /proc/self/fd/N), the control messages are
 * rebuilt from an allow-list with SCM_RIGHTS descriptors fetched from the program, and the
 * data is sent from the copy.
 *
 * The supervisor always sends with MSG_DONTWAIT | MSG_NOSIGNAL. When the program's own call
 * would have blocked (no MSG_DONTWAIT, no O_NONBLOCK) and the socket is full, the call is
 * finished later from the event loop (sbx_pending_call()), honouring SO_SNDTIMEO. EPIPE
 * raises SIGPIPE in the calling thread unless the program passed MSG_NOSIGNAL, right after
 * the answer.
 */

#define SEND_STREAM_CHUNK (256u << 10) /* bytes of one stream send taken per call */
#define SEND_DGRAM_MAX (4u << 20) /* larger datagrams (and sendmmsg batches) get EMSGSIZE */
#define SEND_CONTROL_MAX (64u << 10) /* control data per message; more is ENOBUFS */
#define SEND_IOV_MAX 1024 /* UIO_MAXIOV */
#define SEND_MMSG_MAX 1024 /* UIO_MAXIOV: the kernel's own cap on sendmmsg's vlen */
#define SEND_FDS_MAX 253 /* SCM_MAX_FD */
#define SEND_PENDING_MAX (64u << 20) /* bytes held by every waiting send together */

/* Bytes held by waiting sends (the supervisor is single-threaded). */
static size_t pending_bytes;

struct send_msg {
	struct sockaddr_storage name; /* as judged; an AF_UNIX path replaced by /proc/self/fd/N */
	socklen_t namelen;
	int path_fd; /* O_PATH of the AF_UNIX destination that name refers to, or -1 */
	char *data; /* the copied payload */
	size_t len, done;
	char *control; /* rebuilt control messages, or NULL */
	size_t controllen;
	int fds[SEND_FDS_MAX]; /* our copies of the SCM_RIGHTS descriptors */
	size_t n_fds;
};

struct send_job {
	int nr; /* SYS_sendto, SYS_sendmsg or SYS_sendmmsg */
	int flags; /* the program's flags */
	bool sendto_name; /* sendto with an address, even of length 0: sendto's own semantics */
	bool blocking_known, blocking;
	bool stream; /* a send took part of a message: a stream socket */
	uint64_t deadline_ns; /* SO_SNDTIMEO of a waiting send; 0: none */
	struct send_msg *msgs;
	size_t n_msgs, cur;
	uint64_t vec; /* sendmmsg: the program's mmsghdr array, for msg_len */
	int mem_fd; /* sendmmsg: /proc/<tid>/mem, opened while the notification was valid */
	size_t held; /* bytes counted in pending_bytes */
};

static void send_job_free(void *data)
{
	struct send_job *j = data;
	if (!j)
		return;
	for (size_t i = 0; i < j->n_msgs; i++) {
		struct send_msg *m = &j->msgs[i];
		free(m->data);
		free(m->control);
		for (size_t k = 0; k < m->n_fds; k++)
			close(m->fds[k]);
		if (m->path_fd >= 0)
			close(m->path_fd);
	}
	free(j->msgs);
	if (j->mem_fd >= 0)
		close(j->mem_fd);
	pending_bytes -= j->held;
	free(j);
}

DEFINE_CLEANUP_FUNC(struct send_job, send_job_free)

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Copies @len bytes gathered from the program's iovecs @riov (@n, trimmed to @len) into
 * @buf with one process_vm_readv(), then re-validates the notification. */
static int read_iov(struct sbx_call *c, const struct iovec *riov, size_t n, void *buf, size_t len)
{
	struct iovec local = { .iov_base = buf, .iov_len = len };
	if (len == 0)
		return 0;
	ssize_t r = process_vm_readv(c->n->pid, &local, 1, riov, n, 0);
	if (r < 0 || (size_t)r != len)
		return -EFAULT;
	return sbx_valid(c);
}

static int sock_int_opt(int fd, int opt, int *ret)
{
	socklen_t l = sizeof(*ret);
	return getsockopt(fd, SOL_SOCKET, opt, ret, &l) < 0 ? -errno : 0;
}

/*
 * Judges a destination as connect() would and rewrites it into what the supervisor sends
 * to. The family of the name decides, since that is what the protocols act on; AF_UNSPEC is
 * refused, because UDP over IPv4 treats it as an IPv4 address.
 */
static int judge_name(struct sbx_call *c, int sfd, struct send_msg *m)
{
	const struct sockaddr *sa = (const struct sockaddr *)&m->name;
	size_t len = m->namelen;
	int domain = -1, r;

	if (len < sizeof(sa_family_t))
		return -EINVAL;
	describe(c, sa, len);
	if (sa->sa_family == AF_UNIX || sa->sa_family == AF_NETLINK) {
		/* Names the supervisor rewrites or trusts must be for a socket of their family. */
		r = sock_int_opt(sfd, SO_DOMAIN, &domain);
		if (r < 0)
			return r;
		if (domain != sa->sa_family)
			return -EAFNOSUPPORT;
	}
	switch (sa->sa_family) {
	case AF_INET:
	case AF_INET6:
		if (!policy_net_allowed(c->policy, false, sa, len))
			return sbx_deny(c, EACCES, "destination address not allowed");
		return 0;
	case AF_UNIX: {
		const struct sockaddr_un *un = (const void *)&m->name;
		char path[sizeof(un->sun_path) + 1];
		size_t plen = len - offsetof(struct sockaddr_un, sun_path);

		if (len <= offsetof(struct sockaddr_un, sun_path) || len > sizeof(*un))
			return -EINVAL;
		if (un->sun_path[0] == '\0') {
			snprintf(c->detail, sizeof(c->detail), "@%.*s", (int)(plen - 1),
				 un->sun_path + 1);
			/* As for connect: abstract names are the host's with "net host". */
			if (c->policy->net != POLICY_NET_NONE)
				return sbx_deny(c, EACCES, "abstract socket in the host namespace");
			return 0;
		}
		memcpy(path, un->sun_path, plen);
		path[plen] = '\0';
		struct sockaddr_un via;
		int fd = unix_dest(c, path, &via);
		if (fd < 0)
			return fd;
		m->path_fd = fd;
		memcpy(&m->name, &via, sizeof(via));
		m->namelen = sizeof(via);
		return 0;
	}
	case AF_NETLINK: {
		const struct sockaddr_nl *nl = (const void *)&m->name;
		if (len < sizeof(*nl))
			return -EINVAL;
		snprintf(c->detail, sizeof(c->detail), "netlink pid %u groups %#x", nl->nl_pid,
			 nl->nl_groups);
		/*
		 * The kernel takes the sender's credentials from the task that sends, here the
		 * supervisor: another process's socket or a multicast group would receive them
		 * (udev trusts uevents from uid 0). Requests to the kernel itself are checked
		 * against the capabilities of the socket's opener as well, the program's.
		 */
		if (nl->nl_pid != 0 || nl->nl_groups != 0)
			return sbx_deny(c, EACCES, "netlink destination other than the kernel");
		return 0;
	}
	default:
		return sbx_deny(c, EACCES, "address family not allowed");
	}
}

/* Whether a control message may be forwarded. SOL_SOCKET ones are checked by the caller;
 * these only tune the packet. Source routes (IP_RETOPTS, IPV6_RTHDR) would change where it
 * goes, and some options are checked against the sender's capabilities, the supervisor's. */
static bool cmsg_allowed(int level, int type)
{
	switch (level) {
	case SOL_IP:
		return type == IP_TOS || type == IP_TTL || type == IP_PKTINFO;
	case SOL_IPV6:
		return type == IPV6_PKTINFO || type == IPV6_HOPLIMIT || type == IPV6_TCLASS ||
		       type == IPV6_DONTFRAG;
	case SOL_UDP:
		return type == UDP_SEGMENT;
	default:
		return false;
	}
}

/*
 * Rebuilds the control messages @ctl (@len bytes, a copy) into m->control, walking them as
 * the kernel does (__scm_send(): a malformed header is EINVAL), so what is forwarded is what
 * was judged. SCM_RIGHTS descriptors are fetched from the program and replaced by ours.
 */
static int rebuild_control(struct sbx_call *c, struct send_msg *m, const char *ctl, size_t len)
{
	size_t off = 0, out = 0;

	if (len < sizeof(struct cmsghdr))
		return 0; /* no header fits: the kernel sees no control messages either */
	m->control = calloc(1, len + CMSG_ALIGN(1));
	if (!m->control)
		return -ENOMEM;
	while (off + sizeof(struct cmsghdr) <= len) {
		struct cmsghdr h;
		memcpy(&h, ctl + off, sizeof(h));
		if (h.cmsg_len < sizeof(h) || h.cmsg_len > len - off)
			return -EINVAL;
		const char *payload = ctl + off + CMSG_LEN(0);
		size_t plen = h.cmsg_len - CMSG_LEN(0);
		struct cmsghdr *o = (struct cmsghdr *)(m->control + out);

		snprintf(c->detail, sizeof(c->detail), "control message level %d type %d",
			 h.cmsg_level, h.cmsg_type);
		if (h.cmsg_level == SOL_SOCKET && h.cmsg_type == SCM_RIGHTS) {
			size_t n = plen / sizeof(int);
			if (m->n_fds + n > SEND_FDS_MAX)
				return -EINVAL;
			o->cmsg_level = SOL_SOCKET;
			o->cmsg_type = SCM_RIGHTS;
			o->cmsg_len = CMSG_LEN(n * sizeof(int));
			for (size_t i = 0; i < n; i++) {
				int pfd;
				memcpy(&pfd, payload + i * sizeof(int), sizeof(int));
				int fd = sbx_get_fd(c, pfd);
				if (fd < 0)
					return fd;
				m->fds[m->n_fds++] = fd;
				memcpy(CMSG_DATA(o) + i * sizeof(int), &fd, sizeof(int));
			}
		} else if (h.cmsg_level == SOL_SOCKET && h.cmsg_type == SCM_CREDENTIALS) {
			/* The kernel checks the claimed pid and ids against the sender, which would
			 * be the supervisor: forwarding cannot be made right, so it is refused. */
			return sbx_deny(c, EPERM, "SCM_CREDENTIALS cannot be forwarded");
		} else if ((h.cmsg_level == SOL_SOCKET &&
			    (h.cmsg_type == SO_TIMESTAMPING_OLD || h.cmsg_type == SCM_TXTIME)) ||
			   cmsg_allowed(h.cmsg_level, h.cmsg_type)) {
			memcpy(o, ctl + off, h.cmsg_len);
		} else
			return sbx_deny(c, EACCES, "control message not allowed");
		out += CMSG_ALIGN(o->cmsg_len);
		off += CMSG_ALIGN(h.cmsg_len);
	}
	c->detail[0] = '\0';
	m->controllen = out;
	return 0;
}

/*
 * Copies one message: the name (@name_addr, @namelen as the call passed them), the payload
 * described by the program's iovec array (@iov_addr, @iovlen entries), and the control
 * data. @room is how many payload bytes this call may still take (sendmmsg shares it between
 * its messages); returns 0 with m->len bytes copied, 1 if the message does not fit in @room
 * and is not the first of the call, or -errno.
 */
static int copy_msg(struct sbx_call *c, int sfd, int *type, struct send_msg *m, uint64_t name_addr,
		    int namelen, bool clamp_name, uint64_t iov_addr, size_t iovlen,
		    uint64_t ctl_addr, size_t ctllen, size_t room, bool first)
{
	_cleanup_free_ struct iovec *iov = NULL;
	_cleanup_free_ char *ctl = NULL;
	size_t total = 0, want, n = 0;
	int r;

	if (namelen < 0)
		return -EINVAL;
	if ((size_t)namelen > sizeof(m->name)) {
		/* sendmsg clamps an overlong name, sendto refuses it */
		if (!clamp_name)
			return -EINVAL;
		namelen = sizeof(m->name);
	}
	if (iovlen > SEND_IOV_MAX)
		return -EMSGSIZE;
	if (iovlen > 0) {
		iov = calloc(iovlen, sizeof(*iov));
		if (!iov)
			return -ENOMEM;
		r = sbx_read_mem(c, iov_addr, iov, iovlen * sizeof(*iov));
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < iovlen; i++) {
		if ((ssize_t)iov[i].iov_len < 0 || iov[i].iov_len > SSIZE_MAX - total)
			return -EINVAL;
		total += iov[i].iov_len;
	}
	want = total;
	if (total > SEND_STREAM_CHUNK) {
		if (*type < 0 && (r = sock_int_opt(sfd, SO_TYPE, type)) < 0)
			return r;
		/* A stream takes part of the data, like a signal after a partial send; a datagram
		 * is all or nothing. */
		if (*type == SOCK_STREAM)
			want = SEND_STREAM_CHUNK;
		else if (total > SEND_DGRAM_MAX)
			return -EMSGSIZE;
	}
	if (want > room)
		return first ? -EMSGSIZE : 1;

	/* The name, exactly as long as the program said (a short one is the kernel's EINVAL). */
	if (name_addr != 0 && namelen > 0) {
		r = sbx_read_mem(c, name_addr, &m->name, (size_t)namelen);
		if (r < 0)
			return r;
	}
	m->namelen = name_addr != 0 ? (socklen_t)namelen : 0;

	if (ctl_addr != 0 && ctllen > 0) {
		if (ctllen > SEND_CONTROL_MAX)
			return -ENOBUFS; /* the kernel's answer beyond its optmem limit */
		ctl = malloc(ctllen);
		if (!ctl)
			return -ENOMEM;
		r = sbx_read_mem(c, ctl_addr, ctl, ctllen);
		if (r < 0)
			return r;
	}

	/* The payload: the iovecs trimmed to @want bytes, read in one go. */
	for (size_t i = 0, left = want; i < iovlen && left > 0; i++) {
		if (iov[i].iov_len == 0)
			continue;
		iov[n].iov_base = iov[i].iov_base;
		iov[n].iov_len = MIN(iov[i].iov_len, left);
		left -= iov[n].iov_len;
		n++;
	}
	m->data = malloc(MAX(want, (size_t)1));
	if (!m->data)
		return -ENOMEM;
	m->len = want;
	r = read_iov(c, iov, n, m->data, want);
	if (r < 0)
		return r;
	if (m->namelen > 0 && (r = judge_name(c, sfd, m)) < 0)
		return r;
	if (ctl && (r = rebuild_control(c, m, ctl, ctllen)) < 0)
		return r;
	return 0;
}

/* What the call has achieved so far: bytes of the one message, or sendmmsg's count of
 * messages (one partly sent counts, as in the kernel). */
static int64_t send_progress(const struct send_job *j)
{
	if (j->nr != SYS_sendmmsg)
		return (int64_t)j->msgs[0].done;
	return (int64_t)(j->cur + (j->cur < j->n_msgs && j->msgs[j->cur].done > 0 ? 1 : 0));
}

/* sendmmsg reports each message's length in the program's array. */
static void write_msg_lens(struct send_job *j, size_t count)
{
	for (size_t i = 0; i < count && j->mem_fd >= 0; i++) {
		unsigned int len = (unsigned int)j->msgs[i].done;
		uint64_t at =
			j->vec + i * sizeof(struct mmsghdr) + offsetof(struct mmsghdr, msg_len);
		/* A read-only array: the kernel would stop there too; the data is sent already. */
		if (pwrite(j->mem_fd, &len, sizeof(len), (off_t)at) != (ssize_t)sizeof(len))
			break;
	}
}

/* The answer once the call cannot go on: what was sent, or the error. */
static int send_finish(struct send_job *j, int err, int64_t *ret_val, int *ret_signal)
{
	int64_t progress = send_progress(j);
	if (progress > 0 || err == 0) {
		if (j->nr == SYS_sendmmsg)
			write_msg_lens(j, (size_t)progress);
		*ret_val = progress;
		return 0;
	}
	/* The kernel raises SIGPIPE in the thread that wrote to a closed stream. */
	if (err == EPIPE && !(j->flags & MSG_NOSIGNAL))
		*ret_signal = SIGPIPE;
	return -err;
}

/* Whether the program's own call would have waited: no MSG_DONTWAIT, no O_NONBLOCK. */
static bool send_blocking(struct send_job *j, int fd)
{
	if (!j->blocking_known) {
		int fl = fcntl(fd, F_GETFL);
		j->blocking = !(j->flags & MSG_DONTWAIT) && fl >= 0 && !(fl & O_NONBLOCK);
		j->blocking_known = true;
	}
	return j->blocking;
}

/*
 * Sends what is left of the job without ever blocking. Returns SBX_RESUME_WAIT if the
 * program's call would still be blocked, or the answer (send_finish()).
 */
static int send_run(struct send_job *j, int fd, int64_t *ret_val, int *ret_signal)
{
	while (j->cur < j->n_msgs) {
		struct send_msg *m = &j->msgs[j->cur];
		int flags = (j->flags & ~MSG_ZEROCOPY) | MSG_DONTWAIT | MSG_NOSIGNAL;
		struct iovec iov = { .iov_base = m->data + m->done, .iov_len = m->len - m->done };
		struct msghdr mh = { .msg_name = m->namelen ? &m->name : NULL,
				     .msg_namelen = m->namelen,
				     .msg_iov = &iov,
				     .msg_iovlen = 1,
				     .msg_control = m->controllen ? m->control : NULL,
				     .msg_controllen = m->controllen };
		ssize_t n;

		if (j->sendto_name)
			/* sendto keeps its own rule for a non-NULL address of length 0 */
			n = sendto(fd, iov.iov_base, iov.iov_len, flags,
				   (struct sockaddr *)&m->name, m->namelen);
		else
			n = sendmsg(fd, &mh, flags);
		if (n >= 0) {
			m->done += (size_t)n;
			if (m->done < m->len) {
				/* Part of a stream message went: the rest goes to the same peer with
				 * no name, no control data (sent with the first bytes) and no new
				 * fast-open connect. */
				j->stream = true;
				m->namelen = 0;
				j->sendto_name = false;
				m->controllen = 0;
				j->flags &= ~MSG_FASTOPEN;
				if (send_blocking(j, fd))
					continue;
			}
			j->cur++;
			continue;
		}
		int err = errno;
		if (err == EINTR)
			continue;
		if (err == EINPROGRESS) {
			/* TCP Fast Open (MSG_FASTOPEN, or TCP_FASTOPEN_CONNECT and connect()) without
			 * a cookie: the connect is under way, the data follows once it completes (or
			 * fails, which the next send reports). */
			m->namelen = 0;
			j->sendto_name = false;
			j->flags &= ~MSG_FASTOPEN;
			if (!send_blocking(j, fd))
				return send_finish(j, err, ret_val, ret_signal);
			return SBX_RESUME_WAIT;
		}
		if (err == EAGAIN && send_blocking(j, fd)) {
			if (j->deadline_ns == 0) {
				/* SO_SNDTIMEO bounds the wait as it would bound the program's. */
				struct timeval tv = {};
				socklen_t l = sizeof(tv);
				if (getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, &l) == 0 &&
				    (tv.tv_sec > 0 || tv.tv_usec > 0))
					j->deadline_ns = mono_ns() +
							 (uint64_t)tv.tv_sec * 1000000000ULL +
							 (uint64_t)tv.tv_usec * 1000ULL;
				else
					j->deadline_ns = UINT64_MAX;
			}
			if (mono_ns() < j->deadline_ns)
				return SBX_RESUME_WAIT;
		}
		return send_finish(j, err, ret_val, ret_signal);
	}
	return send_finish(j, 0, ret_val, ret_signal);
}

static int send_resume(void *data, int fd, bool ready, int64_t *ret_val, int *ret_signal)
{
	(void)ready;
	return send_run(data, fd, ret_val, ret_signal);
}

int sbx_handle_send(struct sbx_call *c)
{
	const __u64 *a = c->n->data.args;
	int nr = c->n->data.nr;
	int type = -1, r;
	size_t vlen = 1, room = SEND_DGRAM_MAX;
	_cleanup_(send_job_freep) struct send_job *j = calloc(1, sizeof(*j));
	_cleanup_free_ struct mmsghdr *vec = NULL;

	c->verdict = SBX_REPLY;
	c->val = 0;
	if (!j)
		return -ENOMEM;
	j->nr = nr;
	j->mem_fd = -EBADF;
	if (nr == SYS_sendmmsg) {
		vlen = MIN((size_t)(unsigned int)a[2], (size_t)SEND_MMSG_MAX);
		if (vlen == 0)
			return 0;
	}
	j->flags = (int)(nr == SYS_sendmsg ? a[2] : a[3]);
	j->msgs = calloc(vlen, sizeof(*j->msgs));
	if (!j->msgs)
		return -ENOMEM;
	for (size_t i = 0; i < vlen; i++)
		j->msgs[i].path_fd = -EBADF;

	_cleanup_close_ int sfd = sbx_get_fd(c, (int)a[0]);
	if (sfd < 0)
		return sfd;

	if (nr == SYS_sendto) {
		/* The filter sends only sendto with an address; a NULL one is never notified. */
		struct iovec one = { .iov_base = (void *)(uintptr_t)a[1], .iov_len = a[2] };
		struct send_msg *m = &j->msgs[0];
		j->n_msgs = 1; /* send_job_free() frees what is copied below, also on failure */
		j->sendto_name = a[4] != 0;
		if (one.iov_len > INT_MAX)
			one.iov_len = INT_MAX; /* as the kernel does */
		int alen = (int)a[5];
		if (alen < 0 || (size_t)alen > sizeof(m->name))
			return -EINVAL;
		size_t want = one.iov_len;
		if (want > SEND_STREAM_CHUNK) {
			if ((r = sock_int_opt(sfd, SO_TYPE, &type)) < 0)
				return r;
			if (type == SOCK_STREAM)
				want = SEND_STREAM_CHUNK;
			else if (want > SEND_DGRAM_MAX)
				return -EMSGSIZE;
		}
		if (a[4] != 0 && alen > 0 &&
		    (r = sbx_read_mem(c, a[4], &m->name, (size_t)alen)) < 0)
			return r;
		m->namelen = (socklen_t)alen;
		m->data = malloc(MAX(want, (size_t)1));
		if (!m->data)
			return -ENOMEM;
		m->len = want;
		one.iov_len = want;
		if ((r = read_iov(c, &one, 1, m->data, want)) < 0)
			return r;
		if (m->namelen > 0 && (r = judge_name(c, sfd, m)) < 0)
			return r;
	} else {
		if (nr == SYS_sendmmsg) {
			vec = calloc(vlen, sizeof(*vec));
			if (!vec)
				return -ENOMEM;
			r = sbx_read_mem(c, a[1], vec, vlen * sizeof(*vec));
			if (r < 0)
				return r;
			j->vec = a[1];
		} else {
			vec = calloc(1, sizeof(*vec));
			if (!vec)
				return -ENOMEM;
			r = sbx_read_mem(c, a[1], &vec[0].msg_hdr, sizeof(vec[0].msg_hdr));
			if (r < 0)
				return r;
		}
		/* Every message of the batch is judged before any is sent: one refusal refuses
		 * the whole call. A batch larger than one call takes is cut short, as the kernel
		 * may cut it, and the program sends the rest in its next call. */
		for (size_t i = 0; i < vlen; i++) {
			const struct msghdr *h = &vec[i].msg_hdr;
			struct send_msg *m = &j->msgs[i];
			r = copy_msg(c, sfd, &type, m, (uint64_t)(uintptr_t)h->msg_name,
				     h->msg_name ? (int)h->msg_namelen : 0, true,
				     (uint64_t)(uintptr_t)h->msg_iov, h->msg_iovlen,
				     (uint64_t)(uintptr_t)h->msg_control, h->msg_controllen, room,
				     i == 0);
			j->n_msgs = i + 1; /* free what copy_msg() took, also on failure */
			if (r == 1) {
				j->n_msgs = i;
				break;
			}
			if (r < 0)
				return r;
			room -= m->len;
		}
		if (nr == SYS_sendmmsg) {
			/* Opened while the notification is valid: the descriptor pins the program's
			 * memory, so the msg_len written later can never reach another process. */
			char path[64];
			snprintf(path, sizeof(path), "%d/mem", c->n->pid);
			j->mem_fd = openat(sbx_proc_fd(c), path, O_WRONLY | O_CLOEXEC);
			if (j->mem_fd < 0)
				return -EFAULT;
			if ((r = sbx_valid(c)) < 0)
				return r;
		}
	}

	if (j->flags & MSG_ZEROCOPY) {
		/* The kernel would pin the supervisor's copy and report completions the program
		 * cannot match; with SO_ZEROCOPY off the flag means nothing anyway. */
		int zc = 0;
		if (sock_int_opt(sfd, SO_ZEROCOPY, &zc) == 0 && zc)
			return -ENOBUFS;
	}

	int64_t val = 0;
	r = send_run(j, sfd, &val, &c->signal_after);
	if (r != SBX_RESUME_WAIT) {
		c->val = val;
		return r;
	}
	/* The program's call would block: answer when the socket takes the data. */
	size_t held = 0;
	for (size_t i = 0; i < j->n_msgs; i++)
		held += j->msgs[i].len + j->msgs[i].controllen;
	if (held > SEND_PENDING_MAX - MIN(pending_bytes, (size_t)SEND_PENDING_MAX)) {
		r = send_finish(j, ENOBUFS, &val, &c->signal_after);
		c->val = val;
		return r;
	}
	j->held = held;
	pending_bytes += held;
	return sbx_pending_call(c, TAKE_FD(sfd), send_resume, send_job_free, TAKE_PTR(j));
}
