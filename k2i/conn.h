/* SPDX-License-Identifier: MIT */
#pragma once

/* One client connection; shared by server.c (TLS, HTTP/1.1) and h2.c. Internal to k2i. */

#include <stdbool.h>
#include <stddef.h>

#include "k2i/metrics.h"

struct bufferevent;
struct k2i_config;
struct k2i_deferred;
struct k2i_request;
struct k2i_response;
struct k2i_server;
struct nghttp2_session;
struct routes;

struct conn {
	struct k2i_server *srv;
	const struct k2i_config *cfg; /* borrowed from the server */
	struct routes *routes; /* borrowed */
	struct k2i_metrics *metrics; /* borrowed */
	struct bufferevent *bev; /* owns the socket and the SSL (BEV_OPT_CLOSE_ON_FREE) */
	struct nghttp2_session *h2; /* HTTP/2 session, or NULL for HTTP/1.1 */
	/* Every open HTTP/2 stream's state, freed with the session: nghttp2_session_del() does not
	 * call on_stream_close_callback for the streams still open. */
	struct h2_stream *h2_streams;
	enum k2i_proto proto;
	bool handshake_done;
	bool closing; /* answer sent with Connection: close; free once the output drains */
	bool chunked; /* HTTP/1.1 event stream: chunked transfer coding */
	struct event_sub *sub; /* HTTP/1.1 event stream, owned; NULL otherwise */
	/* HTTP/1.1: the answer being waited for (owned), and how to send it; later requests
	 * wait in the input buffer until it is sent */
	struct k2i_deferred *deferred;
	bool deferred_keep_alive, deferred_http10;
	int peer; /* enum tls_peer_status after the handshake */
	char *peer_identity;
	char addr[64]; /* printable peer address, for logs */
	struct conn *prev, *next;
};

/* Closes and frees @c (and its HTTP/2 session). */
void conn_free(struct conn *c);

/* Fills in the connection's part of a request (peer identity, protocol). */
void conn_request_init(const struct conn *c, struct k2i_request *req);

/* HTTP/2 (k2i/h2.c). Each returns 0, or a negative errno after which the caller frees @c. */
int h2_session_start(struct conn *c);
int h2_on_read(struct conn *c);
int h2_on_write(struct conn *c);
void h2_session_free(struct conn *c);
