/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The control sockets of the launchers (ARCHITECTURE.md "Launchers and supervision"): a small
 * HTTP/1.1 server on a Unix socket that speaks JSON, modelled on Firecracker's API, and the
 * clients k2i, tests and tools use to call it: blocking (ctl_call()) or on a libevent loop
 * (ctl_call_start()).
 *
 * Server: runs on the caller's libevent base, one thread. Requests are parsed with
 * http_request_parse() (libcommon/http.h); keep-alive and pipelining are honoured, one request
 * is handled at a time per connection. Bodies are read whole (Content-Length only; chunked is
 * refused with 411/400) up to CTL_MAX_BODY bytes (413 above). A malformed request gets a 400
 * JSON error {"fault_message": "..."} and the connection is closed; the handler is never called
 * with a malformed request. The peer's SO_PEERCRED is read at accept.
 *
 * Every answer carries "Content-Type: application/json" when it has a body; 204 has none.
 * The server writes with libevent, which does not suppress SIGPIPE: the process ignores SIGPIPE
 * (as every daemon here does). The clients need no such care (they send with MSG_NOSIGNAL).
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#define CTL_MAX_BODY (64 * 1024)
#define CTL_MAX_HEAD (16 * 1024)
#define CTL_MAX_CONNECTIONS 64
#define CTL_TIMEOUT_MS 30000 /* default: a connection silent this long is closed */

struct event_base;
struct ctl_server;
typedef struct json_t json_t;

struct ctl_request {
	const char *method; /* "GET", "PUT", "PATCH", ... as sent */
	const char *path; /* percent-decoded path, starts with '/' (http_target_split()) */
	const char *query; /* raw query after '?', or NULL */
	const char *body; /* NUL-terminated copy of the body ("" when none); a body holding a NUL
			   * byte is refused with 400 before the handler runs */
	size_t body_len;
	struct ucred peer; /* SO_PEERCRED of the connection */
};

struct ctl_response {
	int status; /* set by the handler; 204 if it sets nothing */
	json_t *body; /* set by the handler (a reference it hands over), or NULL for no body */
};

/*
 * Called once per well-formed request. Fills @resp; the server owns resp->body afterwards.
 * Helper: ctl_response_error() for a {"fault_message"} error. The request's strings are borrowed
 * for the duration of the call. A status outside 200..599 is answered as 500. The handler runs
 * on the event loop and must not call ctl_server_free() (stop the loop and free afterwards).
 */
typedef void (*ctl_handler_t)(const struct ctl_request *req, struct ctl_response *resp,
			      void *userdata);

/*
 * Listens on @path (mode 0600 unless @mode says otherwise; the directory must exist), replacing
 * a stale socket file (one nothing answers on) and refusing a live one with -EADDRINUSE.
 * @mode 0 means 0600. A path that exists and is not a socket is left alone: -EEXIST.
 * Returns 0 and the server in *ret, or a -errno (-ENAMETOOLONG for a path over sun_path).
 */
int ctl_server_new(struct event_base *base, const char *path, mode_t mode, ctl_handler_t handler,
		   void *userdata, struct ctl_server **ret);

/* Closes every connection and the listener and unlinks the socket file. Accepts NULL; returns
 * NULL. */
struct ctl_server *ctl_server_free(struct ctl_server *s);

/* Sets @resp to @status with body {"fault_message": <formatted>}. */
void ctl_response_error(struct ctl_response *resp, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Blocking client: connects to @path, sends "@method @target HTTP/1.1" with @body (may be NULL)
 * as application/json, reads the answer, closes. The whole exchange (connect included) is bounded
 * by @timeout_ms. Returns 0 with the status in *ret_status and the body (malloc'ed,
 * NUL-terminated, "" when none) in *ret_body (if not NULL); -ETIMEDOUT, -ECONNREFUSED, -ENOENT
 * (no socket), -EBADMSG (malformed answer), -EMSGSIZE (answer over CTL_MAX_BODY) or a -errno.
 * Also: -EINVAL (@method not letters only, or @target not starting with '/' or holding spaces
 * or control characters: nothing is sent), -ENAMETOOLONG (@path over sun_path), -ECONNRESET
 * (the server closed without answering, e.g. at its connection limit). Any status, 4xx and 5xx
 * included, is a successful call. On failure *ret_status and *ret_body are left untouched.
 */
int ctl_call(const char *path, const char *method, const char *target, const char *body,
	     int timeout_ms, int *ret_status, char **ret_body);

/*
 * Called once when an asynchronous call ends: @r is 0 with the answer's @status and @body
 * (NUL-terminated, "" when none; borrowed for the duration of the call), or one of ctl_call()'s
 * -errno values with @status 0 and @body NULL. The call is freed after this returns.
 */
typedef void (*ctl_call_cb_t)(int r, int status, const char *body, void *userdata);

struct ctl_async_call;

/*
 * The same exchange as ctl_call(), on @base (borrowed) instead of blocking: connects, sends and
 * reads without waiting, bounded by @timeout_ms from now, and calls @cb with @userdata once
 * from the loop (never from within this function). Returns 0 and the call in *ret (owned by the
 * library until @cb has run; ctl_call_cancel() ends it earlier without calling @cb), or -EINVAL,
 * -ENAMETOOLONG, -ENOMEM, or the -errno of a connect that failed at once (-ENOENT: no socket,
 * -ECONNREFUSED: nothing listens); @cb is then never called.
 */
int ctl_call_start(struct event_base *base, const char *path, const char *method,
		   const char *target, const char *body, int timeout_ms, ctl_call_cb_t cb,
		   void *userdata, struct ctl_async_call **ret);

/* Ends @c (may be NULL) before its callback ran; the callback is never called. Never call it
 * from or after the callback. */
void ctl_call_cancel(struct ctl_async_call *c);

/*
 * Sets how long a connection may stay silent (idle between requests, or stalled in the middle of
 * one), how long one request may take to arrive whole, and how long an answer may wait for the
 * peer to read it, before the connection is closed. The default is CTL_TIMEOUT_MS; @ms <= 0
 * restores it. Applies to connections accepted afterwards (the whole-request bound: to every
 * request received afterwards).
 */
void ctl_server_set_timeout(struct ctl_server *s, int ms);

/* How the first request in a connection's input is delimited (ctl_request_frame()). */
struct ctl_frame {
	size_t head_len; /* bytes of the head, through the empty line that ends it */
	size_t body_len; /* bytes of the body that follows the head (Content-Length, or 0) */
	bool keep_alive; /* the connection stays open after the answer */
	bool expect_continue; /* "Expect: 100-continue" (curl sends it for bodies over 1 KiB) */
	int status; /* on refusal: the HTTP status to answer */
	const char *fault; /* on refusal: the fault_message of the answer (static string) */
};

/*
 * Request framing, the pure core of the server's input path (also the fuzz target's entry).
 * Looks at the @len bytes at @buf, the unread start of a connection's input, and decides where
 * its first request ends. The head is parsed with http_request_parse() on a private copy; @buf is
 * not modified. Returns:
 *   0  more bytes are needed; if the head is complete and only the body is missing,
 *      ret->head_len, body_len, keep_alive and expect_continue are already set (head_len is 0
 *      while the head is incomplete), so the server can answer "100 Continue";
 *   1  a whole request of ret->head_len + ret->body_len bytes starts at @buf (head_len is at most
 *      CTL_MAX_HEAD, body_len at most CTL_MAX_BODY, the body holds no NUL byte);
 *   <0 the request is refused; ret->status and ret->fault say how to answer before the
 *      connection is closed: -EBADMSG (400: malformed head, NUL in the body), -E2BIG (431: head
 *      over CTL_MAX_HEAD bytes or over HTTP_MAX_HEADERS headers), -EMSGSIZE (413: Content-Length
 *      over CTL_MAX_BODY), -ENOTSUP (411: chunked body), -EPROTONOSUPPORT (505), -ENOMEM (500).
 * The request target is not checked here: the server splits it with http_target_split() (400 on
 * failure).
 */
int ctl_request_frame(const char *buf, size_t len, struct ctl_frame *ret);
