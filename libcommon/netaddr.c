/* SPDX-License-Identifier: MIT */
#include "libcommon/netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/fdutil.h"

static bool port_valid(const char *p)
{
	size_t n = strlen(p);
	unsigned long v;

	if (n == 0 || n > 5 || strspn(p, "0123456789") != n)
		return false;
	v = strtoul(p, NULL, 10);
	return v <= 65535;
}

int netaddr_split(const char *spec, const char *default_port, char **ret_host, char **ret_port)
{
	_cleanup_free_ char *host = NULL;
	_cleanup_free_ char *port = NULL;
	const char *colon, *p = NULL;

	if (spec[0] == '[') {
		const char *end = strchr(spec, ']');

		if (!end || end == spec + 1)
			return -EINVAL;
		if (end[1] == ':')
			p = end + 2;
		else if (end[1] || !default_port)
			return -EINVAL;
		host = strndup(spec + 1, (size_t)(end - spec - 1));
		if (!host)
			return -ENOMEM;
	} else if ((colon = strrchr(spec, ':')) && colon == strchr(spec, ':')) {
		/* One colon: HOST:PORT or :PORT. */
		if (colon != spec) {
			host = strndup(spec, (size_t)(colon - spec));
			if (!host)
				return -ENOMEM;
		}
		p = colon + 1;
	} else if (default_port && *spec) {
		/* No colon (a name or IPv4 literal), or a bare IPv6 literal. */
		host = strdup(spec);
		if (!host)
			return -ENOMEM;
	} else {
		return -EINVAL;
	}
	if (p && !port_valid(p))
		return -EINVAL;
	port = strdup(p ? p : default_port);
	if (!port)
		return -ENOMEM;
	*ret_host = TAKE_PTR(host);
	*ret_port = TAKE_PTR(port);
	return 0;
}

void netaddr_format(const struct sockaddr *sa, char *buf, size_t size)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, size, "%s:%u", host, (unsigned)ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, size, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
	} else {
		snprintf(buf, size, "?");
	}
}

DEFINE_CLEANUP_FUNC(struct addrinfo, freeaddrinfo)

int netaddr_listen_tcp(const char *host, const char *port, int backlog, int *ret_fd, char *ret_addr,
		       size_t addr_size)
{
	struct addrinfo hints = {
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
		.ai_family = host ? AF_UNSPEC : AF_INET6,
	};
	_cleanup_(freeaddrinfop) struct addrinfo *res = NULL;
	_cleanup_close_ int fd = -EBADF;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int one = 1, zero = 0, r;

	r = getaddrinfo(host, port, &hints, &res);
	if (r != 0 && !host) {
		hints.ai_family = AF_INET; /* no IPv6 on this host */
		r = getaddrinfo(NULL, port, &hints, &res);
	}
	if (r != 0)
		return r == EAI_SYSTEM ? negative_errno() : -EADDRNOTAVAIL;

	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 && !host && res->ai_family == AF_INET6) {
		/* IPv6 compiled out or disabled: the wildcard falls back to IPv4. */
		freeaddrinfo(TAKE_PTR(res));
		hints.ai_family = AF_INET;
		if (getaddrinfo(NULL, port, &hints, &res) != 0)
			return -EADDRNOTAVAIL;
		fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	}
	if (fd < 0)
		return negative_errno();
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (!host && res->ai_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	r = RET_NERRNO(bind(fd, res->ai_addr, res->ai_addrlen));
	if (r < 0)
		return r;
	r = RET_NERRNO(listen(fd, backlog));
	if (r < 0)
		return r;
	if (ret_addr && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		netaddr_format((struct sockaddr *)&ss, ret_addr, addr_size);
	*ret_fd = TAKE_FD(fd);
	return 0;
}
