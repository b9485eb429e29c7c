/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Supervision through middlecon (ARCHITECTURE.md "Launchers and supervision"): a running sandbox
 * or microVM instance registers its name (sandbox.<id>, vm.<id>) with the host's relay and
 * answers calls on it (state, pause, resume, stop, stats), so that any runtime in the datacenter
 * can reach it, across hosts too (vm.<id>@<node>).
 *
 * The relay is optional: when its socket is missing or it goes away, the instance keeps running
 * and tries again every few seconds, registering once the relay is back. Everything runs on the
 * caller's libevent base, on one thread; the connection is a small speaker of the middlecon
 * protocol (proto/middlecon.proto, docs/middlecon-protocol.md) over libcommon/proto_io.
 *
 * A call names its method in one of three ways, first match wins: the frame's method
 * ("mcctl -m pause call vm.ID"), a last name token ("vm.ID.pause": both NAME and NAME.* are
 * registered), or the body ("mcctl call vm.ID pause"). The answer is the handler's JSON.
 */

#include <stddef.h>

struct event_base;
struct supervise;

/*
 * Answers @method (NUL-terminated, 1..64 bytes of [a-z0-9_-]; the dispatcher refuses others
 * with BAD_REQUEST) with @body (@len bytes, the request's body; may be empty). On success
 * returns 0 and may store a malloc'ed JSON text in *ret_body (taken over; NULL for "{}").
 * Errors become the reply's status: -ENOTSUP/-EOPNOTSUPP "unknown method" and -EINVAL are
 * BAD_REQUEST, -EBUSY and -EAGAIN OVERLOADED, anything else BAD_REQUEST with strerror().
 * *ret_error (may be set, malloc'ed) replaces the default error text.
 */
typedef int (*supervise_handler_cb_t)(const char *method, const void *body, size_t len,
				      char **ret_body, char **ret_error, void *userdata);

/*
 * Starts answering calls to @name (e.g. "vm.abc123"; borrowed) through the relay at
 * @socket_path (borrowed), dispatching them to @cb. Connects at once if the relay is there,
 * otherwise keeps trying. Returns 0 and the handle in *ret, -EINVAL for a name middlecon would
 * refuse, or -ENOMEM.
 */
int supervise_start(struct event_base *base, const char *socket_path, const char *name,
		    supervise_handler_cb_t cb, void *userdata, struct supervise **ret);

/* Whether the name is registered with a relay right now. */
int supervise_registered(const struct supervise *s);

/*
 * Closes the connection, which unregisters the name at once (the relay answers further calls
 * NO_RESPONDERS, and PEER_GONE to any in flight), and frees @s. Accepts NULL; returns NULL.
 */
struct supervise *supervise_free(struct supervise *s);
