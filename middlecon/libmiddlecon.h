/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * libmiddlecon: the C client library of the middlecon relay, for container runtimes, sandboxes,
 * microVM monitors and other middleware written in C.
 *
 * A client is one connection to the local relay's Unix socket (<rundir>/middlecon.sock). Over it
 * a program can
 *   - call a named service and wait for the reply (mc_call), or be called back when the reply
 *     arrives (mc_call_async, inside the caller's libevent loop);
 *   - answer requests for names or patterns it registers (mc_register + mc_respond);
 *   - publish messages and subscribe to them (mc_publish, mc_subscribe).
 * The protocol is described in docs/middlecon-protocol.md; this library hides the framing and
 * the HELLO negotiation.
 *
 * Building against it: link $(B)/lib/libmiddlecon.a, then `pkg-config --libs libprotobuf-c
 * libevent`. A complete example, a responder and a caller on one event base, is
 * middlecon/examples/echo.c.
 *
 * Threads: a client is not thread-safe. Use it from one thread, or serialise every call on it.
 * Different clients are independent.
 *
 * Driving the connection: every function that waits (mc_connect, mc_register, mc_subscribe,
 * mc_call, mc_serve) reads the socket itself, and while it waits it also dispatches whatever
 * else arrives (requests to handlers, messages to subscribers, replies to async calls). A program
 * with its own loop either polls mc_client_fd() for POLLIN (plus POLLOUT while
 * mc_client_want_write() is true) and calls mc_client_process(), or, with libevent, calls
 * mc_client_attach_event_base() once and lets the base do it.
 *
 * Frames are written as soon as they are complete; there is no batching timer. When the socket
 * buffer is full, the rest is queued in the client and written when the socket is writable.
 *
 * Errors: functions return -errno for local failures (-ECONNRESET when the relay closed the
 * connection, -EPROTO when it spoke nonsense, -ENOMEM, -EINVAL for bad arguments), and a call's
 * outcome as a non-negative enum mc_status.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct mc_client;

/* The statuses of a reply, with the values of Frame.Status in proto/middlecon.proto. */
enum mc_status {
	MC_STATUS_OK = 0,
	MC_STATUS_NO_RESPONDERS = 1, /* nobody registered the name; answered at once */
	MC_STATUS_DEADLINE_EXCEEDED = 2, /* the deadline passed before a reply */
	MC_STATUS_PEER_GONE = 3, /* the responder disconnected with the request in flight */
	MC_STATUS_TOO_LARGE = 4, /* over the relay's maximum frame size */
	MC_STATUS_DENIED = 5, /* the relay's ACL refused the call or the registration */
	MC_STATUS_BAD_REQUEST = 6, /* malformed name or frame; also a responder's failure */
	MC_STATUS_OVERLOADED = 7, /* too many requests in flight, or a slow responder */
	MC_STATUS_CANCELLED = 8, /* the request was cancelled */
	_MC_STATUS_MAX,
};

/*
 * Returns the name of @status ("NO_RESPONDERS"), or NULL for a value this version does not know
 * (a newer relay may pass such a status through). The string is static.
 */
const char *mc_status_to_string(int status);

/*
 * Returns whether the dot-separated @name matches @pattern, where a `*` token matches exactly
 * one token and a final `>` token one or more tokens (docs/middlecon-protocol.md "Names"). Both
 * strings are borrowed. Used to route incoming requests and messages to the right callback.
 */
bool mc_name_match(const char *pattern, const char *name);

/* The largest frame this library accepts from the relay, announced in HELLO. */
#define MC_CLIENT_MAX_FRAME (64u * 1024 * 1024)

/*
 * Connects to the relay listening on @socket_path (borrowed), blocking, and negotiates the
 * protocol (HELLO) within 5 seconds. @client_name (borrowed, may be NULL) shows in the relay's
 * listings and logs. On success stores a new client in *ret (owned by the caller, freed with
 * mc_client_free()).
 *
 * Returns 0, -EINVAL (a path too long for a Unix socket), -ETIMEDOUT (no HELLO answer),
 * -EPROTONOSUPPORT (no common protocol version, or the relay refused the HELLO), -EPROTO (a
 * malformed answer), -ECONNRESET, or the -errno of socket()/connect() (-ENOENT, -ECONNREFUSED,
 * -EACCES, ...). *ret is untouched on failure.
 */
int mc_connect(const char *socket_path, const char *client_name, struct mc_client **ret);

/*
 * Closes the connection and frees the client. Calls still in flight complete first: their async
 * callbacks run with -ECANCELED and a NULL reply. Detaches from the event base. Accepts NULL;
 * returns NULL. Must not be called from inside one of the client's callbacks.
 */
struct mc_client *mc_client_free(struct mc_client *c);

/* The relay's maximum frame size (bytes on the wire, prefix included) learnt from HELLO. */
size_t mc_client_max_frame(const struct mc_client *c);

/*
 * The largest request body that fits in one frame to @service with @method (both borrowed, may
 * be NULL): mc_call() refuses larger ones locally with MC_STATUS_TOO_LARGE.
 */
size_t mc_client_max_body(const struct mc_client *c, const char *service, const char *method);

/* A reply: owned by whoever receives it from mc_call(), freed with mc_reply_free(). */
struct mc_reply {
	int status; /* enum mc_status, or an unknown value a newer peer passed through */
	char *error; /* the peer's detail for a non-OK status, "" when none; never NULL */
	void *body; /* owned by the reply; NUL-terminated one byte past len for convenience */
	size_t len;
};

/* Frees a reply and its body. Accepts NULL; returns NULL. */
struct mc_reply *mc_reply_free(struct mc_reply *r);

/*
 * Calls @method (borrowed, may be NULL or "") of the service @name (borrowed) with @body (@len
 * bytes, borrowed, may be NULL when @len is 0) and waits for the reply, dispatching other
 * traffic meanwhile. @timeout_ms > 0 sets the request's absolute deadline to now + timeout_ms,
 * which the relay enforces (DEADLINE_EXCEEDED); 0 leaves the relay's default (30 s). If the relay
 * does not answer 1 s after the deadline, the call is cancelled locally and returns
 * MC_STATUS_DEADLINE_EXCEEDED.
 *
 * Returns the reply's status (>= 0: MC_STATUS_OK or another status) and, when @ret is not NULL,
 * stores the reply in *ret (owned by the caller; for a status decided locally, such as
 * TOO_LARGE for a body over mc_client_max_body(), a reply with an empty body and an error text).
 * Returns -EINVAL (bad arguments, @timeout_ms < 0), -ENOMEM, -ECONNRESET or -EPROTO (the
 * connection is then unusable) on a local failure, leaving *ret untouched.
 */
int mc_call(struct mc_client *c, const char *name, const char *method, const void *body, size_t len,
	    int timeout_ms, struct mc_reply **ret);

/*
 * The completion of an async call. @status is the reply's status (>= 0), or -errno when the call
 * failed locally (-ECONNRESET: the connection died; -ECANCELED: the client was freed). @reply is
 * NULL when @status < 0, otherwise borrowed: valid only during the callback (copy what you keep).
 * The callback may start new calls on @c, but must not free @c.
 */
typedef void (*mc_reply_cb_t)(struct mc_client *c, int status, const struct mc_reply *reply,
			      void *userdata);

/*
 * Makes @c part of @base (borrowed; must outlive the client or mc_client_free() must come first):
 * the client's socket is then read and written by the base, and async replies, requests and
 * messages are dispatched from it. Call at most once per client.
 * Returns 0, -EBUSY (already attached) or -ENOMEM.
 */
int mc_client_attach_event_base(struct mc_client *c, struct event_base *base);

/*
 * Starts a call like mc_call() without waiting: @cb runs with @userdata (borrowed, opaque) when
 * the reply arrives, from the event base (mc_client_attach_event_base() is required, so that a
 * local deadline can be enforced) or from any function of this client that reads the socket.
 * The request is written before this returns, unless the socket buffer is full.
 *
 * Returns 0 when the request is on its way (@cb then runs exactly once, never from inside this
 * function), MC_STATUS_TOO_LARGE when the body is over mc_client_max_body() (@cb does not run),
 * or -EINVAL (no event base, bad arguments), -ENOMEM, -ECONNRESET.
 */
int mc_call_async(struct mc_client *c, const char *name, const char *method, const void *body,
		  size_t len, int timeout_ms, mc_reply_cb_t cb, void *userdata);

/* One key/value header of a request or message; both pointers are borrowed from the frame. */
struct mc_header {
	const char *key;
	const void *value;
	size_t len;
};

/*
 * An incoming request, borrowed for the duration of the handler call (copy what you keep, except
 * @token, which is a plain number).
 */
struct mc_request {
	uint64_t token; /* pass to mc_respond() */
	const char *name; /* the service name called, which matched the handler's pattern */
	const char *method; /* "" when none */
	uint64_t deadline_ns; /* absolute CLOCK_REALTIME deadline in ns, 0 when none */
	const struct mc_header *headers; /* the caller's headers plus the relay's caller-* ones */
	size_t n_headers;
	int64_t caller_uid; /* from the relay's caller-uid header (SO_PEERCRED); -1 if absent */
	int64_t caller_gid;
	int64_t caller_pid;
	const void *body;
	size_t len;
};

/*
 * A request handler: called for each request whose name matches the pattern it was registered
 * with (when several of the client's patterns match, the first registered wins). The handler
 * answers with mc_respond(c, req->token, ...), from inside the call or later (after returning;
 * for instance when a child process finishes). Every request must be answered exactly once
 * unless the relay has already given up on it (deadline): a late answer is dropped by the relay.
 */
typedef void (*mc_handler_cb_t)(struct mc_client *c, const struct mc_request *req, void *userdata);

/*
 * Registers @pattern (borrowed; a name, or a pattern with `*`/`>` tokens) at the relay and waits
 * for its answer; requests for matching names are then passed to @cb with @userdata (borrowed).
 * Returns 0, the relay's refusal as a positive status (MC_STATUS_DENIED, MC_STATUS_BAD_REQUEST),
 * -EINVAL, -ENOMEM, -ECONNRESET, -EPROTO or -ETIMEDOUT (no answer within 5 s).
 */
int mc_register(struct mc_client *c, const char *pattern, mc_handler_cb_t cb, void *userdata);

/*
 * Answers the request @token with @status and @body (@len bytes, borrowed, may be NULL when @len
 * is 0). A reply over the relay's maximum frame size is replaced by MC_STATUS_TOO_LARGE with an
 * empty body. Returns 0, -EINVAL, -ENOMEM or -ECONNRESET.
 */
int mc_respond(struct mc_client *c, uint64_t token, int status, const void *body, size_t len);

/*
 * Like mc_respond() with a non-OK @status and a human-readable @error (borrowed) instead of a
 * body.
 */
int mc_respond_error(struct mc_client *c, uint64_t token, int status, const char *error);

/*
 * A published message, borrowed for the duration of the callback. @name is the name it was
 * published under, which matched the subscription's pattern.
 */
typedef void (*mc_message_cb_t)(struct mc_client *c, const char *name,
				const struct mc_header *headers, size_t n_headers, const void *body,
				size_t len, void *userdata);

/*
 * Subscribes to @pattern (borrowed) and waits for the relay's answer; messages published under a
 * matching name are then passed to @cb with @userdata (borrowed). A message that matches several
 * of the client's subscriptions is passed to each once. Returns as mc_register() does.
 */
int mc_subscribe(struct mc_client *c, const char *pattern, mc_message_cb_t cb, void *userdata);

/*
 * Publishes @body (@len bytes, borrowed) under @name (borrowed) to every current subscriber; there
 * is no answer. Returns 0 once the message is written or queued, MC_STATUS_TOO_LARGE, -EINVAL,
 * -ENOMEM or -ECONNRESET.
 */
int mc_publish(struct mc_client *c, const char *name, const void *body, size_t len);

/*
 * Writes out whatever is queued, waiting up to @timeout_ms (< 0: forever) and dispatching what
 * arrives meanwhile. Returns 0, -ETIMEDOUT, or a connection error. Useful before exiting after
 * mc_publish() or mc_respond().
 */
int mc_client_flush(struct mc_client *c, int timeout_ms);

/* The client's socket, for a caller's own poll loop (borrowed: do not close it). */
int mc_client_fd(const struct mc_client *c);

/* Whether output is queued, so the caller's loop should also poll the socket for POLLOUT. */
bool mc_client_want_write(const struct mc_client *c);

/*
 * Reads and writes what the socket allows without blocking, and dispatches every complete frame
 * (handlers, subscriptions, async replies). Call it when mc_client_fd() is readable (or writable
 * while mc_client_want_write()). Returns 0, or -ECONNRESET / -EPROTO / -ENOMEM when the
 * connection is finished (async calls in flight have then been completed with that error).
 */
int mc_client_process(struct mc_client *c);

/*
 * Serves requests and messages until the connection ends: blocks in poll() and calls
 * mc_client_process(). Returns the error that ended it (-ECONNRESET when the relay went away).
 */
int mc_serve(struct mc_client *c);
