/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The local relay: accepts connections on a Unix socket, speaks the frames of
 * docs/middlecon-protocol.md with each one, and routes REQUEST/REPLY, PUBLISH and CANCEL between
 * them. Everything runs on the caller's event_base, on one thread.
 */

struct event_base;
struct middlecon_config;
struct relay;

/*
 * Creates the relay and starts listening on cfg->socket (its directory is created 0755, the
 * socket is 0666: who may do what is decided per frame from SO_PEERCRED, not by the file mode).
 * @base and @cfg are borrowed and must outlive the relay. A socket file left behind by a dead
 * relay is replaced; a live one is not.
 *
 * Returns 0 and the relay in *ret, -EADDRINUSE if another relay answers on the socket,
 * -ENOMEM, or another -errno from creating the socket.
 */
int relay_new(struct event_base *base, const struct middlecon_config *cfg, struct relay **ret);

/* Closes every connection and the listener and removes the socket file. Accepts NULL; returns
 * NULL. */
struct relay *relay_free(struct relay *r);
