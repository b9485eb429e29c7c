/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * TCP addresses as the daemons take them on the command line and in config files
 * ("ADDR:PORT", "[V6]:PORT", ":PORT", and for peers "HOST" with a default port), listening
 * sockets, and printable socket addresses for logs.
 */

#include <stddef.h>
#include <sys/socket.h>

/*
 * Splits @spec into a malloc'ed host (*ret_host; NULL for ":PORT", meaning every address) and a
 * malloc'ed port (*ret_port). Accepted: "HOST:PORT", "[V6]:PORT", ":PORT", and, when
 * @default_port is not NULL, "HOST", "[V6]" and a bare IPv6 literal (two colons or more). The port
 * is 0..65535 in decimal (0 asks a listener for an ephemeral port). Returns 0, -EINVAL (malformed) or -ENOMEM; nothing is set on failure.
 */
int netaddr_split(const char *spec, const char *default_port, char **ret_host, char **ret_port);

/*
 * Creates a listening TCP socket (non-blocking, close-on-exec, SO_REUSEADDR) on @host (NULL: every
 * address, IPv6 with IPv4-mapped when the host has IPv6, else IPv4) and the numeric @port, with
 * @backlog. Writes the bound address (as netaddr_format() does) to @ret_addr (@addr_size bytes)
 * when not NULL: port 0 binds an ephemeral port, which is how callers learn it.
 * Returns 0 and the socket in *ret_fd, -EADDRNOTAVAIL (@host does not resolve) or a -errno.
 */
int netaddr_listen_tcp(const char *host, const char *port, int backlog, int *ret_fd, char *ret_addr,
		       size_t addr_size);

/* Writes "1.2.3.4:80" or "[::1]:80" (or "?" for other families) to @buf (@size bytes). */
void netaddr_format(const struct sockaddr *sa, char *buf, size_t size);
