/* SPDX-License-Identifier: MIT */
#include "k2i/server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "k2i/config.h"
#include "k2i/conn.h"
#include "k2i/events.h"
#include "k2i/routes.h"
#include "libcommon/cleanup.h"
#include "libcommon/http.h"
#include "libcommon/log.h"
#include "libcommon/netaddr.h"
#include "libcommon/tls.h"

/* Stop reading pipelined HTTP/1.1 requests while this much output is queued. */
#define H1_OUTPUT_HIGH_WATER (256 * 1024)
#define LISTEN_BACKLOG 511

struct k2i_server {
	struct event_base *base;
	const struct k2i_config *cfg;
	SSL_CTX *ssl_ctx;
	struct routes *routes;
	struct k2i_metrics *metrics;
	struct evconnlistener **listeners;
	size_t n_listeners;
	struct conn *conns; /* every open connection, for teardown */
};

static void conn_event_cb(struct bufferevent *bev, short events, void *userdata);
static void h1_read_cb(struct bufferevent *bev, void *userdata);
static void h1_write_cb(struct bufferevent *bev, void *userdata);
static void h2_read_cb(struct bufferevent *bev, void *userdata);
static void h2_write_cb(struct bufferevent *bev, void *userdata);

void conn_free(struct conn *c)
{
	if (!c)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else if (c->srv->conns == c)
		c->srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	event_sub_free(c->sub);
	k2i_deferred_cancel(c->deferred);
	h2_session_free(c);
	/* BEV_OPT_CLOSE_ON_FREE: this also frees the SSL and closes the socket. */
	if (c->bev)
		bufferevent_free(c->bev);
	free(c->peer_identity);
	c->metrics->connections_active--;
	free(c);
}

void conn_request_init(const struct conn *c, struct k2i_request *req)
{
	*req = (struct k2i_request){
		.peer = c->peer,
		.peer_identity = c->peer_identity,
		.proto = c->proto,
	};
}

static size_t h1_stream_queued(void *ctx)
{
	struct conn *c = ctx;

	return evbuffer_get_length(bufferevent_get_output(c->bev));
}

static int h1_stream_write(void *ctx, const char *data, size_t len)
{
	struct conn *c = ctx;
	struct evbuffer *out = bufferevent_get_output(c->bev);

	if (c->chunked && evbuffer_add_printf(out, "%zx\r\n", len) < 0)
		return -ENOMEM;
	if (evbuffer_add(out, data, len) < 0)
		return -ENOMEM;
	if (c->chunked && evbuffer_add(out, "\r\n", 2) < 0)
		return -ENOMEM;
	return 0;
}

static void h1_stream_finish(void *ctx, const char *data, size_t len)
{
	struct conn *c = ctx;
	struct timeval grace = { .tv_sec = 10 };

	(void)h1_stream_write(c, data, len);
	if (c->chunked)
		(void)evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
	/* Close once this is written; a client that reads nothing more is dropped after the
	 * grace period instead of holding the connection. */
	c->closing = true;
	bufferevent_set_timeouts(c->bev, NULL, &grace);
}

static const struct event_sub_ops h1_stream_ops = {
	.queued = h1_stream_queued,
	.write = h1_stream_write,
	.finish = h1_stream_finish,
};

/* Turns the connection into an event stream after its response headers were queued. */
static void h1_start_stream(struct conn *c, struct k2i_response *resp, bool http10)
{
	struct timeval idle = { .tv_sec = c->cfg->idle_timeout_s };

	c->sub = TAKE_PTR(resp->stream);
	c->chunked = !http10;
	/* The client sends nothing while it listens: only a stalled write times out. */
	bufferevent_set_timeouts(c->bev, NULL, &idle);
	event_hub_attach(routes_event_hub(c->routes), c->sub, &h1_stream_ops, c);
}

/* Queues one HTTP/1.1 response. Returns 0 or -ENOMEM. */
static int h1_send_response(struct conn *c, struct k2i_response *resp, bool keep_alive, bool http10)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t len = resp->body ? evbuffer_get_length(resp->body) : 0;
	char length[64];

	if (resp->stream)
		/* A stream has no length: chunked for HTTP/1.1, ended by closing for 1.0. */
		snprintf(length, sizeof(length), "%s",
			 http10 ? "" : "Transfer-Encoding: chunked\r\n");
	else
		snprintf(length, sizeof(length), "Content-Length: %zu\r\n", len);

	if (evbuffer_add_printf(
		    out,
		    "HTTP/1.1 %d %s\r\n"
		    "Server: k2i\r\n"
		    "Content-Type: %s\r\n"
		    "%s"
		    "Cache-Control: no-store\r\n"
		    "Connection: %s\r\n"
		    "%s%s%s"
		    "%s%s%s"
		    "\r\n",
		    resp->status, http_status_reason(resp->status),
		    resp->content_type ? resp->content_type : "application/json", length,
		    keep_alive && !(resp->stream && http10) ? "keep-alive" : "close",
		    resp->allow ? "Allow: " : "", resp->allow ? resp->allow : "",
		    resp->allow ? "\r\n" : "", resp->www_authenticate ? "WWW-Authenticate: " : "",
		    resp->www_authenticate ? resp->www_authenticate : "",
		    resp->www_authenticate ? "\r\n" : "") < 0)
		return -ENOMEM;
	/* evbuffer_add_buffer() moves the body's chains without copying the bytes. */
	if (!resp->head && len > 0 && evbuffer_add_buffer(out, resp->body) < 0)
		return -ENOMEM;
	if (resp->stream)
		h1_start_stream(c, resp, http10);
	return 0;
}

/* Answers a request the front end refuses before routing, then closes the connection. */
static int h1_refuse(struct conn *c, int status, const char *message)
{
	struct k2i_request req;
	struct k2i_response resp = { 0 };
	int r;

	conn_request_init(c, &req);
	req.refuse_status = status;
	req.refuse_message = message;
	routes_handle(c->routes, &req, &resp);
	r = h1_send_response(c, &resp, false, false);
	k2i_response_done(&resp);
	c->closing = true;
	return r;
}

/* Finds the end of the request head in @in. Returns its length, or 0 if it is not complete. */
static size_t h1_head_length(struct evbuffer *in)
{
	struct evbuffer_ptr crlf = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	struct evbuffer_ptr lf = evbuffer_search(in, "\n\n", 2, NULL);
	size_t a = crlf.pos >= 0 ? (size_t)crlf.pos + 4 : 0;
	size_t b = lf.pos >= 0 ? (size_t)lf.pos + 2 : 0;

	if (a && b)
		return MIN(a, b);
	return a ? a : b;
}

/* The deferred answer of the connection's current request is ready: send it, then go on. */
static void h1_deferred_done(void *ctx, struct k2i_response *resp)
{
	struct conn *c = ctx;
	struct evbuffer *in = bufferevent_get_input(c->bev);

	c->deferred = NULL;
	if (h1_send_response(c, resp, c->deferred_keep_alive, c->deferred_http10) < 0) {
		conn_free(c);
		return;
	}
	if (!c->deferred_keep_alive)
		c->closing = true;
	else if (evbuffer_get_length(in) > 0)
		/* Pipelined requests waited for this one: the read callback takes them up. */
		bufferevent_trigger(c->bev, EV_READ,
				    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

/*
 * Handles every complete request in the input buffer. Returns 0, or a negative errno after
 * which the connection is freed.
 */
static int h1_process(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer *out = bufferevent_get_output(c->bev);

	while (!c->closing && !c->sub && !c->deferred &&
	       evbuffer_get_length(out) < H1_OUTPUT_HIGH_WATER) {
		_cleanup_free_ char *head = NULL;
		struct http_request_head h;
		struct k2i_request req;
		struct k2i_response resp = { 0 };
		size_t len = h1_head_length(in);
		int r;

		if (len == 0) {
			if (evbuffer_get_length(in) > c->cfg->max_header_bytes)
				return h1_refuse(c, 400, "request header too large");
			return 0;
		}
		if (len > c->cfg->max_header_bytes)
			return h1_refuse(c, 400, "request header too large");
		head = malloc(len + 1);
		if (!head)
			return -ENOMEM;
		if (evbuffer_remove(in, head, len) != (int)len)
			return -EIO;
		head[len] = '\0';

		r = http_request_parse(head, len, &h);
		if (r == -EPROTONOSUPPORT)
			return h1_refuse(c, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
		if (r == -E2BIG)
			return h1_refuse(c, 400, "too many request headers");
		if (r < 0)
			return h1_refuse(c, 400, "malformed request");
		if (h.chunked || h.content_length > 0)
			/* No route takes a body; refusing here (and closing) means we never have
			 * to find where an unwanted body ends. */
			return h1_refuse(c, 413, "request bodies are not accepted");

		conn_request_init(c, &req);
		req.method = h.method;
		req.target = h.target;
		req.authorization = http_header_get(&h, "authorization");
		req.accept = http_header_get(&h, "accept");
		routes_handle(c->routes, &req, &resp);
		if (resp.deferred) {
			c->deferred = TAKE_PTR(resp.deferred);
			c->deferred_keep_alive = h.keep_alive;
			c->deferred_http10 = h.version_minor == 0;
			k2i_deferred_wait(c->deferred, h1_deferred_done, c);
			k2i_response_done(&resp);
			return 0;
		}
		r = h1_send_response(c, &resp, h.keep_alive, h.version_minor == 0);
		k2i_response_done(&resp);
		if (r < 0)
			return r;
		if (!h.keep_alive)
			c->closing = true;
	}
	return 0;
}

static void h1_read_cb(struct bufferevent *bev, void *userdata)
{
	struct conn *c = userdata;

	if (c->closing || c->sub) {
		/* Ignore anything sent after a request we answered with Connection: close, or
		 * on a connection that became an event stream. */
		evbuffer_drain(bufferevent_get_input(bev),
			       evbuffer_get_length(bufferevent_get_input(bev)));
		return;
	}
	if (h1_process(c) < 0)
		conn_free(c);
}

static void h1_write_cb(struct bufferevent *bev, void *userdata)
{
	struct conn *c = userdata;

	if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		return;
	if (c->closing) {
		conn_free(c);
		return;
	}
	/* Output drained: resume pipelined requests that waited for room. */
	if (evbuffer_get_length(bufferevent_get_input(bev)) > 0 && h1_process(c) < 0)
		conn_free(c);
}

static void h2_read_cb(struct bufferevent *bev, void *userdata)
{
	struct conn *c = userdata;

	if (h2_on_read(c) < 0)
		conn_free(c);
}

static void h2_write_cb(struct bufferevent *bev, void *userdata)
{
	struct conn *c = userdata;

	if (h2_on_write(c) < 0)
		conn_free(c);
}

static void conn_handshake_done(struct conn *c)
{
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	const unsigned char *alpn = NULL;
	unsigned alpn_len = 0;
	int r;

	c->handshake_done = true;
	SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
	c->proto = alpn_len == 2 && memcmp(alpn, "h2", 2) == 0 ? K2I_PROTO_H2 : K2I_PROTO_HTTP1;
	r = tls_peer_check(ssl, c->cfg->allowed_sans, &c->peer_identity);
	/* Fail closed: a check that could not run counts as an untrusted certificate. */
	c->peer = r < 0 ? TLS_PEER_UNTRUSTED : r;
	c->metrics->connections_total[c->proto]++;
	log_debug("%s: TLS established (%s, %s), client %s '%s'", c->addr, SSL_get_version(ssl),
		  c->proto == K2I_PROTO_H2 ? "h2" : "http/1.1", tls_peer_status_to_string(c->peer),
		  c->peer_identity ? c->peer_identity : "");

	if (c->proto == K2I_PROTO_H2) {
		bufferevent_setcb(c->bev, h2_read_cb, h2_write_cb, conn_event_cb, c);
		r = h2_session_start(c);
		if (r < 0) {
			log_debug_errno(r, "%s: cannot start HTTP/2 session: %m", c->addr);
			conn_free(c);
			return;
		}
		if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
			h2_read_cb(c->bev, c);
		return;
	}
	bufferevent_setcb(c->bev, h1_read_cb, h1_write_cb, conn_event_cb, c);
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
		h1_read_cb(c->bev, c);
}

static void conn_event_cb(struct bufferevent *bev, short events, void *userdata)
{
	struct conn *c = userdata;

	if (events & BEV_EVENT_CONNECTED) {
		conn_handshake_done(c);
		return;
	}
	if (!c->handshake_done &&
	    (events & (BEV_EVENT_ERROR | BEV_EVENT_EOF | BEV_EVENT_TIMEOUT))) {
		unsigned long e = bufferevent_get_openssl_error(bev);
		char buf[256] = "connection closed";

		if (e)
			ERR_error_string_n(e, buf, sizeof(buf));
		c->metrics->tls_handshake_failures++;
		log_debug("%s: TLS handshake failed: %s", c->addr, buf);
	} else if (events & BEV_EVENT_TIMEOUT) {
		log_debug("%s: idle timeout", c->addr);
	}
	if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		conn_free(c);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int socklen, void *userdata)
{
	struct k2i_server *s = userdata;
	struct conn *c = NULL;
	SSL *ssl = NULL;
	struct timeval idle = { .tv_sec = s->cfg->idle_timeout_s };
	int one = 1;

	if (s->metrics->connections_active >= s->cfg->max_connections) {
		s->metrics->connections_refused++;
		log_debug("Too many connections, closing a new one");
		close(fd);
		return;
	}
	/* Responses are written whole; without Nagle the last segment is not held back. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	c = calloc(1, sizeof(*c));
	ssl = c ? SSL_new(s->ssl_ctx) : NULL;
	if (!ssl) {
		free(c);
		close(fd);
		log_debug("Out of memory accepting a connection");
		return;
	}
	c->srv = s;
	c->cfg = s->cfg;
	c->routes = s->routes;
	c->metrics = s->metrics;
	netaddr_format(sa, c->addr, sizeof(c->addr));
	c->bev = bufferevent_openssl_socket_new(s->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
						BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (!c->bev) {
		SSL_free(ssl);
		free(c);
		close(fd);
		return;
	}
	s->metrics->connections_active++;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	/* Clients often close without close_notify; that is not an error worth reporting. */
	bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
	bufferevent_setcb(c->bev, NULL, NULL, conn_event_cb, c);
	/* The same timeouts bound the handshake, so a silent client cannot hold a slot. */
	bufferevent_set_timeouts(c->bev, &idle, &idle);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void accept_error_cb(struct evconnlistener *l, void *userdata)
{
	int e = EVUTIL_SOCKET_ERROR();

	/* EMFILE and friends: keep serving the connections we have; accept resumes later. */
	log_warn_errno(e, "accept() failed: %m, ignoring");
}

int server_new(struct event_base *base, const struct k2i_config *cfg, SSL_CTX *ssl_ctx,
	       struct routes *routes, struct k2i_metrics *metrics, struct k2i_server **ret)
{
	struct k2i_server *s = NULL;
	size_t n = 0;
	int r = 0;

	for (char **l = cfg->listen; l && *l; l++)
		n++;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	*s = (struct k2i_server){
		.base = base, .cfg = cfg, .ssl_ctx = ssl_ctx, .routes = routes, .metrics = metrics
	};
	s->listeners = calloc(n ? n : 1, sizeof(*s->listeners));
	if (!s->listeners) {
		free(s);
		return -ENOMEM;
	}

	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *host = NULL;
		_cleanup_free_ char *port = NULL;
		char addr[64] = "?";
		int fd = -EBADF;

		/* No default port: k2i's listen addresses always name one. */
		r = netaddr_split(cfg->listen[i], NULL, &host, &port);
		if (r < 0) {
			log_err_errno(r,
				      "Invalid listen address '%s' (expected ADDR:PORT, "
				      "[V6ADDR]:PORT or :PORT)",
				      cfg->listen[i]);
			break;
		}
		r = netaddr_listen_tcp(host, port, LISTEN_BACKLOG, &fd, addr, sizeof(addr));
		if (r < 0) {
			log_err_errno(r, "Cannot listen on '%s': %m", cfg->listen[i]);
			break;
		}
		s->listeners[i] = evconnlistener_new(
			base, accept_cb, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
		if (!s->listeners[i]) {
			close(fd);
			r = -ENOMEM;
			break;
		}
		s->n_listeners++;
		evconnlistener_set_error_cb(s->listeners[i], accept_error_cb);
		log_info("Listening on https://%s/ (h2, http/1.1)", addr);
	}
	if (r < 0) {
		server_free(s);
		return r;
	}
	*ret = s;
	return 0;
}

struct k2i_server *server_free(struct k2i_server *s)
{
	if (!s)
		return NULL;
	while (s->conns)
		conn_free(s->conns);
	for (size_t i = 0; i < s->n_listeners; i++)
		evconnlistener_free(s->listeners[i]);
	free(s->listeners);
	free(s);
	return NULL;
}
