/* SPDX-License-Identifier: MIT */
#include "k2i/fetch.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <jansson.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "libcommon/tls.h"

/* A response head larger than this is refused (k2i sends a few hundred bytes). */
#define H1_HEAD_MAX (64 * 1024)
/* Chunk-size and trailer lines are short; a longer one is a broken or hostile server. */
#define H1_LINE_MAX 1024
/* Receive windows large enough that a big process table needs no WINDOW_UPDATE round trips. */
#define H2_WINDOW (16 * 1024 * 1024)

DEFINE_CLEANUP_FUNC(nghttp2_session_callbacks, nghttp2_session_callbacks_del)

enum h1_state {
	H1_HEAD, /* waiting for the status line and headers */
	H1_LENGTH, /* Content-Length body, h1_remaining bytes to go */
	H1_CHUNK_SIZE, /* waiting for a chunk-size line */
	H1_CHUNK_DATA, /* inside a chunk, h1_remaining bytes to go */
	H1_CHUNK_END, /* waiting for the CRLF after a chunk */
	H1_TRAILERS, /* after the last chunk, until the empty line */
	H1_UNTIL_CLOSE, /* no length given: the body ends with the connection */
};

struct fetch_run_state {
	struct event_base *base; /* borrowed */
	SSL_CTX *ctx; /* borrowed */
	struct evdns_base *dns; /* owned */
	const struct fetch_options *o; /* borrowed */
	struct fetch_request *reqs; /* borrowed */
	size_t n, next, in_flight, failed;
	bool stopping; /* start nothing new (loop broken or tearing down) */
};

/*
 * One request's connection. Freed by conn_finish() only, and only from a libevent callback or
 * from fetch_run() itself, never from inside an nghttp2 callback: those just record the outcome
 * (conn_fail() or done = true) and the libevent callback that fed nghttp2 finishes afterwards.
 */
struct fetch_conn {
	struct fetch_run_state *run;
	struct fetch_request *req;
	struct bufferevent *bev; /* owns the socket and the SSL (BEV_OPT_CLOSE_ON_FREE) */
	struct event *timer;
	nghttp2_session *h2; /* NULL until ALPN picked h2 */
	int32_t stream_id;
	struct evbuffer *body; /* buffered body (error bodies too, even when streaming) */
	size_t received; /* body bytes so far, against max_body */
	char *error; /* first failure, malloc'ed */
	bool connected; /* TLS handshake done */
	bool done; /* the response is complete (or failed, see error) */
	enum h1_state h1_state;
	uint64_t h1_remaining;
};

static void run_start_more(struct fetch_run_state *run);

/* Records the first failure of @c; later ones are consequences and are dropped. */
static void conn_fail(struct fetch_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void conn_fail(struct fetch_conn *c, const char *fmt, ...)
{
	va_list ap;

	c->done = true;
	if (c->error)
		return;
	va_start(ap, fmt);
	if (vasprintf(&c->error, fmt, ap) < 0)
		c->error = NULL;
	va_end(ap);
	/* Out of memory for the message: still a failure, with a static-free fallback. */
	if (!c->error)
		c->error = strdup("out of memory");
}

static bool status_ok(int status)
{
	return status >= 200 && status < 300;
}

/* "HTTP 403: <message>" from the server's {"error":{"message":…}} body when it has one. */
static char *http_error_string(int status, const char *body, size_t len)
{
	json_auto_t *j = body ? json_loadb(body, len, 0, NULL) : NULL;
	const char *msg = NULL;
	char *s = NULL;

	if (j)
		msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
	if (asprintf(&s, "HTTP %d%s%s", status, msg ? ": " : "", msg ? msg : "") < 0)
		return NULL;
	return s;
}

static void conn_free(struct fetch_conn *c)
{
	if (!c)
		return;
	if (c->h2)
		nghttp2_session_del(c->h2);
	if (c->bev)
		bufferevent_free(c->bev);
	if (c->timer)
		event_free(c->timer);
	if (c->body)
		evbuffer_free(c->body);
	free(c->error);
	free(c);
}

/* Hands the outcome to the request, frees @c and starts the next request. */
static void conn_finish(struct fetch_conn *c)
{
	struct fetch_run_state *run = c->run;
	struct fetch_request *req = c->req;
	size_t len = evbuffer_get_length(c->body);

	if (!c->error && req->status == 0)
		conn_fail(c, "connection closed before a response");
	if (!c->error) {
		req->body = malloc(len + 1);
		if (req->body) {
			evbuffer_remove(c->body, req->body, len);
			req->body[len] = '\0';
			req->body_len = len;
		}
		if (!req->body)
			conn_fail(c, "out of memory");
		else if (!status_ok(req->status)) {
			req->error = http_error_string(req->status, req->body, req->body_len);
			if (!req->error)
				conn_fail(c, "out of memory");
		}
	}
	if (c->error)
		req->error = TAKE_PTR(c->error);
	if (req->error)
		run->failed++;
	req->conn = NULL;
	conn_free(c);
	if (req->on_done)
		req->on_done(req);
	run->in_flight--;
	run_start_more(run);
}

/* Finishes @c if a callback marked it done. */
static void conn_check(struct fetch_conn *c)
{
	if (c->done)
		conn_finish(c);
}

/* Adds response body bytes: streamed to the caller, or buffered, within max_body. */
static void conn_body(struct fetch_conn *c, const char *data, size_t len)
{
	struct fetch_request *req = c->req;
	int r;

	if (len == 0 || c->done)
		return;
	if (len > c->run->o->max_body - c->received) {
		conn_fail(c, "response larger than %zu bytes", c->run->o->max_body);
		return;
	}
	c->received += len;
	if (req->on_data && status_ok(req->status)) {
		r = req->on_data(req, data, len);
		if (r < 0)
			conn_fail(c, "%s", strerror(-r));
		return;
	}
	if (evbuffer_add(c->body, data, len) < 0)
		conn_fail(c, "out of memory");
}

/* The response head arrived: a streamed request is no longer under the deadline. */
static void conn_head_done(struct fetch_conn *c)
{
	if (c->req->on_data && status_ok(c->req->status))
		event_del(c->timer);
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fetch_conn *c = arg;

	conn_fail(c, "timed out after %g s", c->run->o->timeout_ms / 1000.0);
	conn_finish(c);
}

/* The Host header / :authority: IPv6 literals in brackets, the port always given. */
static char *authority(const struct fetch_request *req)
{
	char *s = NULL;
	bool v6 = strchr(req->host, ':') != NULL;

	if (asprintf(&s, "%s%s%s:%" PRIu16, v6 ? "[" : "", req->host, v6 ? "]" : "", req->port) < 0)
		return NULL;
	return s;
}

/* ---- HTTP/2 ---------------------------------------------------------------------------- */

static ssize_t h2_send_cb(nghttp2_session *session, const uint8_t *data, size_t length, int flags,
			  void *user_data)
{
	struct fetch_conn *c = user_data;

	if (evbuffer_add(bufferevent_get_output(c->bev), data, length) < 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	return (ssize_t)length;
}

static int h2_header_cb(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
			size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
			void *user_data)
{
	struct fetch_conn *c = user_data;
	int status = 0;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->hd.stream_id != c->stream_id ||
	    frame->headers.cat != NGHTTP2_HCAT_RESPONSE)
		return 0;
	if (namelen != 7 || memcmp(name, ":status", 7) != 0)
		return 0;
	/* nghttp2 has checked that :status is three digits. */
	for (size_t i = 0; i < valuelen && i < 3; i++)
		status = status * 10 + (value[i] - '0');
	c->req->status = status;
	conn_head_done(c);
	return 0;
}

static int h2_data_cb(nghttp2_session *session, uint8_t flags, int32_t stream_id,
		      const uint8_t *data, size_t len, void *user_data)
{
	struct fetch_conn *c = user_data;

	if (stream_id == c->stream_id)
		conn_body(c, (const char *)data, len);
	return 0;
}

static int h2_stream_close_cb(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
			      void *user_data)
{
	struct fetch_conn *c = user_data;

	if (stream_id != c->stream_id)
		return 0;
	if (error_code != NGHTTP2_NO_ERROR)
		conn_fail(c, "HTTP/2 stream reset: %s", nghttp2_http2_strerror(error_code));
	c->done = true;
	return 0;
}

static void h2_flush(struct fetch_conn *c)
{
	int r = nghttp2_session_send(c->h2);

	if (r != 0)
		conn_fail(c, "HTTP/2: %s", nghttp2_strerror(r));
}

static int h2_start(struct fetch_conn *c)
{
	_cleanup_(nghttp2_session_callbacks_delp) nghttp2_session_callbacks *cbs = NULL;
	_cleanup_free_ char *auth = authority(c->req);
	const nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_WINDOW },
	};
#define NV(n, v) { (uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE }
	nghttp2_nv hdrs[] = {
		NV(":method", "GET"),
		NV(":scheme", "https"),
		NV(":authority", auth ?: ""),
		NV(":path", c->req->path),
		NV("accept", "application/json"),
		NV("user-agent", "k2ps"),
	};
#undef NV
	int32_t id;

	if (!auth || nghttp2_session_callbacks_new(&cbs) != 0)
		return -ENOMEM;
	nghttp2_session_callbacks_set_send_callback(cbs, h2_send_cb);
	nghttp2_session_callbacks_set_on_header_callback(cbs, h2_header_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2_data_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h2_stream_close_cb);
	if (nghttp2_session_client_new(&c->h2, cbs, c) != 0)
		return -ENOMEM;
	if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, ELEMENTSOF(iv)) != 0 ||
	    nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, H2_WINDOW) != 0)
		return -EPROTO;
	id = nghttp2_submit_request(c->h2, NULL, hdrs, ELEMENTSOF(hdrs), NULL, c);
	if (id < 0)
		return id == NGHTTP2_ERR_NOMEM ? -ENOMEM : -EPROTO;
	c->stream_id = id;
	h2_flush(c);
	return 0;
}

static void h2_read(struct fetch_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t len = evbuffer_get_length(in);
	unsigned char *data = evbuffer_pullup(in, -1);
	ssize_t n;

	if (len == 0)
		return;
	n = nghttp2_session_mem_recv(c->h2, data, len);
	if (n < 0) {
		conn_fail(c, "HTTP/2: %s", nghttp2_strerror((int)n));
		return;
	}
	evbuffer_drain(in, (size_t)n);
	if (!c->done)
		h2_flush(c);
}

/* ---- HTTP/1.1 -------------------------------------------------------------------------- */

static int h1_start(struct fetch_conn *c)
{
	_cleanup_free_ char *auth = authority(c->req);

	if (!auth)
		return -ENOMEM;
	/* One request per connection: "Connection: close" lets a length-less body end at EOF. */
	if (evbuffer_add_printf(bufferevent_get_output(c->bev),
				"GET %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n"
				"User-Agent: k2ps\r\nConnection: close\r\n\r\n",
				c->req->path, auth) < 0)
		return -ENOMEM;
	return 0;
}

/* Parses the status line and the framing headers of @head (NUL-terminated, modified). */
static int h1_parse_head(struct fetch_conn *c, char *head)
{
	char *save = NULL, *line;
	bool chunked = false, have_length = false;
	uint64_t length = 0;
	int status;

	line = strtok_r(head, "\r\n", &save);
	if (!line || strncmp(line, "HTTP/1.", 7) != 0 || strlen(line) < 12 || line[8] != ' ' ||
	    !isdigit((unsigned char)line[9]) || !isdigit((unsigned char)line[10]) ||
	    !isdigit((unsigned char)line[11]))
		return -EBADMSG;
	status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
	while ((line = strtok_r(NULL, "\r\n", &save))) {
		char *colon = strchr(line, ':'), *v;

		if (!colon)
			return -EBADMSG;
		*colon = '\0';
		v = colon + 1;
		v += strspn(v, " \t");
		if (strcasecmp(line, "Transfer-Encoding") == 0)
			chunked = strcasestr(v, "chunked") != NULL;
		else if (strcasecmp(line, "Content-Length") == 0) {
			char *end = NULL;

			errno = 0;
			length = strtoull(v, &end, 10);
			if (errno || end == v || !isdigit((unsigned char)*v))
				return -EBADMSG;
			have_length = true;
		}
	}
	if (status >= 100 && status < 200)
		return 1; /* an interim response: the real head follows */
	c->req->status = status;
	if (chunked)
		c->h1_state = H1_CHUNK_SIZE;
	else if (have_length) {
		if (length > c->run->o->max_body)
			return -EFBIG;
		c->h1_state = H1_LENGTH;
		c->h1_remaining = length;
		if (length == 0)
			c->done = true;
	} else
		c->h1_state = H1_UNTIL_CLOSE;
	conn_head_done(c);
	return 0;
}

/* Moves up to @max bytes of @in into the body. */
static void h1_take(struct fetch_conn *c, struct evbuffer *in, uint64_t max)
{
	size_t n = (size_t)MIN((uint64_t)evbuffer_get_length(in), max);
	unsigned char *p = evbuffer_pullup(in, (ssize_t)n);

	if (n == 0)
		return;
	if (!p) {
		conn_fail(c, "out of memory");
		return;
	}
	conn_body(c, (const char *)p, n);
	evbuffer_drain(in, n);
	c->h1_remaining -= n;
}

/* Reads one CRLF-terminated line (malloc'ed in *ret). Returns 1, 0 (need more) or -errno. */
static int h1_line(struct evbuffer *in, char **ret)
{
	size_t n = 0;
	char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);

	if (!line)
		return evbuffer_get_length(in) > H1_LINE_MAX ? -EBADMSG : 0;
	*ret = line;
	return 1;
}

static void h1_read(struct fetch_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);

	while (!c->done && evbuffer_get_length(in) > 0) {
		_cleanup_free_ char *line = NULL;
		struct evbuffer_ptr end;
		char *endp = NULL;
		int r;

		switch (c->h1_state) {
		case H1_HEAD: {
			_cleanup_free_ char *head = NULL;
			size_t len;

			end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
			if (end.pos < 0) {
				if (evbuffer_get_length(in) > H1_HEAD_MAX)
					conn_fail(c, "HTTP/1.1: response head too large");
				return;
			}
			len = (size_t)end.pos + 4;
			head = malloc(len + 1);
			if (!head) {
				conn_fail(c, "out of memory");
				return;
			}
			evbuffer_remove(in, head, len);
			head[len] = '\0';
			r = h1_parse_head(c, head);
			if (r == -EFBIG)
				conn_fail(c, "response larger than %zu bytes", c->run->o->max_body);
			else if (r < 0)
				conn_fail(c, "HTTP/1.1: malformed response head");
			break;
		}
		case H1_LENGTH:
			h1_take(c, in, c->h1_remaining);
			if (c->h1_remaining == 0)
				c->done = true;
			break;
		case H1_UNTIL_CLOSE:
			h1_take(c, in, UINT64_MAX);
			break;
		case H1_CHUNK_SIZE:
			r = h1_line(in, &line);
			if (r <= 0) {
				if (r < 0)
					conn_fail(c, "HTTP/1.1: malformed chunk");
				return;
			}
			errno = 0;
			c->h1_remaining = strtoull(line, &endp, 16);
			if (errno || endp == line || (*endp && *endp != ';' && *endp != ' ')) {
				conn_fail(c, "HTTP/1.1: malformed chunk size");
				return;
			}
			c->h1_state = c->h1_remaining == 0 ? H1_TRAILERS : H1_CHUNK_DATA;
			break;
		case H1_CHUNK_DATA:
			h1_take(c, in, c->h1_remaining);
			if (c->h1_remaining == 0)
				c->h1_state = H1_CHUNK_END;
			break;
		case H1_CHUNK_END:
		case H1_TRAILERS:
			r = h1_line(in, &line);
			if (r <= 0) {
				if (r < 0)
					conn_fail(c, "HTTP/1.1: malformed chunk");
				return;
			}
			if (c->h1_state == H1_CHUNK_END) {
				if (*line) {
					conn_fail(c, "HTTP/1.1: malformed chunk");
					return;
				}
				c->h1_state = H1_CHUNK_SIZE;
			} else if (!*line)
				c->done = true;
			break;
		}
	}
}

/* ---- connection events ----------------------------------------------------------------- */

static void conn_read(struct fetch_conn *c)
{
	if (c->h2)
		h2_read(c);
	else if (c->connected)
		h1_read(c);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct fetch_conn *c = arg;

	conn_read(c);
	conn_check(c);
}

/* Describes a failed connection: DNS, OpenSSL's queue for this bufferevent, or errno. */
static void conn_describe_error(struct fetch_conn *c)
{
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	int dns_err = bufferevent_socket_get_dns_error(c->bev);
	int sock_err = EVUTIL_SOCKET_ERROR();
	unsigned long e, first = 0;
	long verify;

	/* libevent also queues the SSL_get_error() code itself: SSL_ERROR_SYSCALL means errno. */
	while ((e = bufferevent_get_openssl_error(c->bev))) {
		log_debug("%s: OpenSSL error %lu", c->req->host, e);
		if (!first && e != SSL_ERROR_SYSCALL && e != SSL_ERROR_SSL)
			first = e;
	}
	log_debug("%s: connection error: dns %d, errno %d", c->req->host, dns_err, sock_err);
	if (dns_err) {
		conn_fail(c, "cannot resolve '%s': %s", c->req->host, evutil_gai_strerror(dns_err));
		return;
	}
	verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	if (verify != X509_V_OK) {
		conn_fail(c, "TLS: certificate verify failed (%s)",
			  X509_verify_cert_error_string(verify));
		return;
	}
	if (first) {
		const char *why = ERR_reason_error_string(first);

		conn_fail(c, "TLS: %s", why ? why : "handshake failed");
		return;
	}
	if (sock_err > 0) {
		_cleanup_free_ char *msg = strdup(strerror(sock_err));

		if (msg && *msg)
			msg[0] = (char)tolower((unsigned char)msg[0]);
		conn_fail(c, "%s", msg ?: "connection failed");
		return;
	}
	conn_fail(c, c->connected ? "connection lost" : "TLS: handshake failed");
}

static void event_cb(struct bufferevent *bev, short events, void *arg)
{
	struct fetch_conn *c = arg;
	int r;

	if (events & BEV_EVENT_CONNECTED) {
		SSL *ssl = bufferevent_openssl_get_ssl(bev);
		const unsigned char *alpn = NULL;
		unsigned alpn_len = 0;

		c->connected = true;
		/*
		 * A server that closes without close_notify still ends an until-close body. Not
		 * set before: during the handshake it would turn a refused connection into EOF.
		 */
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
		SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
		c->req->h2 = alpn_len == 2 && memcmp(alpn, "h2", 2) == 0;
		r = c->req->h2 ? h2_start(c) : h1_start(c);
		if (r < 0)
			conn_fail(c, "cannot start the request: %s", strerror(-r));
	} else if (events & BEV_EVENT_ERROR) {
		conn_describe_error(c);
	} else if (events & BEV_EVENT_EOF) {
		/* Data that arrived with the EOF is still in the input buffer. */
		conn_read(c);
		if (c->done)
			;
		else if (!c->h2 && c->h1_state == H1_UNTIL_CLOSE)
			c->done = true;
		else
			conn_fail(c, "connection closed before the response was complete");
	}
	conn_check(c);
}

static int conn_start(struct fetch_run_state *run, struct fetch_request *req)
{
	static const unsigned char alpn_all[] = "\x02h2\x08http/1.1";
	static const unsigned char alpn_h1[] = "\x08http/1.1";
	_cleanup_(SSL_freep) SSL *ssl = NULL;
	struct fetch_conn *c;
	struct timeval tv = {
		.tv_sec = run->o->timeout_ms / 1000,
		.tv_usec = (run->o->timeout_ms % 1000) * 1000,
	};
	int r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->run = run;
	c->req = req;
	c->body = evbuffer_new();
	c->timer = evtimer_new(run->base, timeout_cb, c);
	ssl = SSL_new(run->ctx);
	if (!c->body || !c->timer || !ssl) {
		conn_free(c);
		return -ENOMEM;
	}
	if (run->o->http1_only)
		r = SSL_set_alpn_protos(ssl, alpn_h1, sizeof(alpn_h1) - 1);
	else
		r = SSL_set_alpn_protos(ssl, alpn_all, sizeof(alpn_all) - 1);
	if (r != 0) {
		conn_free(c);
		return tls_log_errors(-ENOMEM, "Cannot set ALPN");
	}
	r = tls_client_set_peer_name(ssl, req->peer_name ?: req->host);
	if (r < 0) {
		conn_free(c);
		return r;
	}
	/* BEV_OPT_CLOSE_ON_FREE hands the socket and the SSL to the bufferevent. */
	c->bev = bufferevent_openssl_socket_new(run->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
						BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (!c->bev) {
		conn_free(c);
		return -ENOMEM;
	}
	TAKE_PTR(ssl);
	bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (evtimer_add(c->timer, &tv) < 0) {
		conn_free(c);
		return -ENOMEM;
	}
	req->conn = c;
	run->in_flight++;
	/*
	 * Callbacks are deferred, so even a failure found at once (a refused connect to a local
	 * port) is reported from the loop, after this function has returned.
	 */
	if (bufferevent_socket_connect_hostname(c->bev, run->dns, AF_UNSPEC, req->host, req->port) <
	    0) {
		conn_describe_error(c);
		conn_finish(c);
	}
	return 0;
}

static void run_start_more(struct fetch_run_state *run)
{
	while (!run->stopping && run->in_flight < run->o->fanout && run->next < run->n) {
		struct fetch_request *req = &run->reqs[run->next++];
		int r = conn_start(run, req);

		if (r < 0) {
			if (asprintf(&req->error, "cannot start the request: %s", strerror(-r)) < 0)
				req->error = NULL;
			run->failed++;
			if (req->on_done)
				req->on_done(req);
		}
	}
	if (run->in_flight == 0 && (run->next == run->n || run->stopping))
		event_base_loopbreak(run->base);
}

int fetch_run(struct event_base *base, struct ssl_ctx_st *ctx, const struct fetch_options *o,
	      struct fetch_request *reqs, size_t n)
{
	struct fetch_run_state run = {
		.base = base,
		.ctx = ctx,
		.o = o,
		.reqs = reqs,
		.n = n,
	};

	if (!base || !ctx || !o || o->fanout == 0 || o->timeout_ms == 0 || (n > 0 && !reqs))
		return -EINVAL;
	if (n == 0)
		return 0;
	/* Reads resolv.conf and /etc/hosts; without a resolv.conf, evdns falls back to 127.0.0.1. */
	run.dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (!run.dns)
		run.dns = evdns_base_new(base, 0);
	if (!run.dns)
		return -ENOMEM;
	run_start_more(&run);
	if (run.in_flight > 0)
		event_base_dispatch(base);

	/* The loop was broken from outside (SIGINT): fail what is still running or queued. */
	run.stopping = true;
	for (size_t i = 0; i < run.next; i++) {
		struct fetch_conn *c = reqs[i].conn;

		if (c) {
			conn_fail(c, "interrupted");
			conn_finish(c);
		}
	}
	for (; run.next < n; run.next++) {
		reqs[run.next].error = strdup("interrupted");
		run.failed++;
	}
	evdns_base_free(run.dns, 1);
	return (int)MIN(run.failed, (size_t)INT32_MAX);
}

void fetch_request_done(struct fetch_request *r)
{
	free(r->body);
	free(r->error);
	r->body = NULL;
	r->error = NULL;
	r->body_len = 0;
	r->status = 0;
	r->h2 = false;
}
