/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The concurrent HTTPS fetcher of k2ps: one GET per request, each on its own connection, at
 * most a bounded number of connections in flight, over HTTP/2 (ALPN "h2", nghttp2 client
 * session) or, when the server does not pick h2, HTTP/1.1 (Content-Length, chunked or
 * read-until-close body).
 *
 * Every request runs under one deadline that covers name resolution, connect, the TLS handshake
 * and the whole response (for a streamed request, only until the response head arrives). The
 * server's certificate must verify against the SSL_CTX's CA and name the request's peer name.
 *
 * Names are resolved by libevent's evdns (bufferevent_socket_connect_hostname()), which reads
 * /etc/hosts and resolv.conf, answers IP literals at once, and never blocks the loop; only the
 * first address of a name is tried.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct ssl_ctx_st;
struct fetch_request;

/*
 * Called for each piece of a streamed response body (@data is borrowed, valid for the call).
 * Returning a negative value ends the request with that error.
 */
typedef int (*fetch_data_cb_t)(struct fetch_request *req, const char *data, size_t len);

/* Called once when @req (borrowed) has finished, its "out" fields set. */
typedef void (*fetch_done_cb_t)(struct fetch_request *req);

/* One GET. The caller fills the "in" fields; fetch_run() fills the "out" fields. */
struct fetch_request {
	/* in: all strings borrowed, they must outlive fetch_run() */
	const char *host; /* name or IP literal (IPv6 without brackets) to connect to */
	const char *peer_name; /* name the certificate must carry; NULL means @host */
	uint16_t port;
	const char *path; /* request target, e.g. "/v1/proc?sort=-cpu" */
	fetch_data_cb_t on_data; /* NULL: buffer the body in @body; else stream it */
	fetch_done_cb_t on_done; /* NULL, or told when the request has finished */
	void *userdata; /* for the caller, untouched */

	/* out: owned by the request, freed by fetch_request_done() */
	int status; /* HTTP status, 0 if no response head arrived */
	bool h2; /* the response came over HTTP/2 */
	char *body; /* NUL-terminated buffered body (not with on_data), or NULL */
	size_t body_len;
	char *error; /* why the request failed, e.g. "connection refused"; NULL on success */

	/* private */
	void *conn;
};

struct fetch_options {
	unsigned fanout; /* connections in flight at most (>= 1) */
	unsigned timeout_ms; /* per-request deadline (> 0) */
	size_t max_body; /* a larger body fails the request */
	bool http1_only; /* offer only "http/1.1" in ALPN (tests the fallback) */
};

/*
 * Runs every request of @reqs (@n of them, borrowed) on @base (borrowed), with TLS contexts
 * from @ctx (borrowed; its ALPN list is replaced by the one @o asks for on each connection),
 * and returns once all have finished or the loop was broken (event_base_loopbreak(), e.g. by a
 * SIGINT handler): requests still running then fail with "interrupted".
 *
 * A request succeeds (error == NULL) when a response arrived with a 2xx status. Any other
 * status sets error to "HTTP <status>: <message>", with the message of the server's JSON error
 * object when there is one. Network, TLS, protocol and size failures set error to a short
 * reason. Returns the number of failed requests (>= 0), or -ENOMEM / -EINVAL (bad options)
 * before any request started.
 */
int fetch_run(struct event_base *base, struct ssl_ctx_st *ctx, const struct fetch_options *o,
	      struct fetch_request *reqs, size_t n);

/* Frees the "out" fields of @r and resets them, so the request can run again. */
void fetch_request_done(struct fetch_request *r);
