/* SPDX-License-Identifier: MIT */
/*
 * HTTP/2 for k2i over nghttp2 1.52 (Debian 12). The wiring follows nghttp2's
 * examples/libevent-server.c at v1.52.0: nghttp2 writes frames into the bufferevent's output
 * from its send callback, and we feed it everything the bufferevent reads. Unlike the example,
 * every allocation is checked, a request's header list is bounded, and back-pressure keeps the
 * output buffer bounded: the send callback refuses (WOULDBLOCK) once enough is queued, and the
 * write callback resumes sending when it drains.
 */
#include "k2i/conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#include "k2i/config.h"
#include "k2i/events.h"
#include "k2i/routes.h"
#include "libcommon/cleanup.h"
#include "libcommon/log.h"

DEFINE_CLEANUP_FUNC(nghttp2_session_callbacks, nghttp2_session_callbacks_del)

#define H2_OUTPUT_HIGH_WATER (64 * 1024)
/* A GET has no body; a stream that sends more than this is reset. */
#define H2_MAX_REQUEST_BODY 0

/* Per-stream state; nghttp2 stream user data, freed in on_stream_close_callback. */
struct h2_stream {
	struct conn *conn;
	struct h2_stream *prev, *next; /* in conn->h2_streams */
	int32_t id;
	char *method;
	char *path;
	char *authorization;
	char *accept;
	size_t header_bytes;
	bool too_large; /* header list over max_header_bytes */
	bool bad_headers; /* duplicate or missing pseudo-headers */
	bool has_body;
	struct evbuffer *body; /* the response body, read by the data provider */
	struct event_sub *sub; /* an event stream: body is fed by the hub until done */
	bool done; /* no more data will be added to body */
	struct k2i_deferred *deferred; /* the answer being waited for, owned */
};

static void h2_stream_free(struct h2_stream *st)
{
	if (!st)
		return;
	if (st->prev)
		st->prev->next = st->next;
	else
		st->conn->h2_streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	free(st->method);
	free(st->path);
	free(st->authorization);
	free(st->accept);
	event_sub_free(st->sub);
	k2i_deferred_cancel(st->deferred);
	if (st->body)
		evbuffer_free(st->body);
	free(st);
}

static ssize_t send_callback(nghttp2_session *session, const uint8_t *data, size_t length,
			     int flags, void *user_data)
{
	struct conn *c = user_data;
	struct evbuffer *out = bufferevent_get_output(c->bev);

	if (evbuffer_get_length(out) >= H2_OUTPUT_HIGH_WATER)
		return NGHTTP2_ERR_WOULDBLOCK;
	if (evbuffer_add(out, data, length) < 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	return (ssize_t)length;
}

static ssize_t body_read_callback(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
				  size_t length, uint32_t *data_flags, nghttp2_data_source *source,
				  void *user_data)
{
	struct h2_stream *st = source->ptr;
	int n;

	if (evbuffer_get_length(st->body) == 0 && !st->done)
		return NGHTTP2_ERR_DEFERRED; /* an event stream waiting for its next event */
	n = evbuffer_remove(st->body, buf, length);
	if (n < 0)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	if (evbuffer_get_length(st->body) == 0 && st->done)
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	return n;
}

static int on_begin_headers_callback(nghttp2_session *session, const nghttp2_frame *frame,
				     void *user_data)
{
	struct h2_stream *st;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	st = calloc(1, sizeof(*st));
	if (!st)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	st->conn = user_data;
	st->id = frame->hd.stream_id;
	st->next = st->conn->h2_streams;
	if (st->next)
		st->next->prev = st;
	st->conn->h2_streams = st;
	if (nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, st) != 0) {
		h2_stream_free(st);
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	return 0;
}

/* Stores a copy of a pseudo-header or header value once; a second copy marks the stream bad. */
static int keep_value(struct h2_stream *st, char **slot, const uint8_t *value, size_t len)
{
	if (*slot) {
		st->bad_headers = true;
		return 0;
	}
	*slot = strndup((const char *)value, len);
	return *slot ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int on_header_callback(nghttp2_session *session, const nghttp2_frame *frame,
			      const uint8_t *name, size_t namelen, const uint8_t *value,
			      size_t valuelen, uint8_t flags, void *user_data)
{
	struct conn *c = user_data;
	struct h2_stream *st;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (!st)
		return 0;
	/* RFC 9113 §6.5.2 counts each field as name + value + 32 octets. */
	st->header_bytes += namelen + valuelen + 32;
	if (st->header_bytes > c->cfg->max_header_bytes) {
		st->too_large = true;
		return 0;
	}
	if (namelen == 7 && memcmp(name, ":method", 7) == 0)
		return keep_value(st, &st->method, value, valuelen);
	if (namelen == 5 && memcmp(name, ":path", 5) == 0)
		return keep_value(st, &st->path, value, valuelen);
	if (namelen == 13 && memcmp(name, "authorization", 13) == 0)
		return keep_value(st, &st->authorization, value, valuelen);
	if (namelen == 6 && memcmp(name, "accept", 6) == 0 && !st->accept)
		return keep_value(st, &st->accept, value, valuelen);
	return 0;
}

static int on_data_chunk_recv_callback(nghttp2_session *session, uint8_t flags, int32_t stream_id,
				       const uint8_t *data, size_t len, void *user_data)
{
	struct h2_stream *st = nghttp2_session_get_stream_user_data(session, stream_id);

	if (st && len > H2_MAX_REQUEST_BODY)
		st->has_body = true;
	return 0;
}

/*
 * Event streams (GET /v1/events): the hub appends to the stream's body and nghttp2 is told to
 * resume the deferred data provider. Sending happens from the connection's write callback,
 * triggered (deferred) here, never from inside the hub's loop: a send that fails frees the
 * connection, and with it other streams the hub may be about to visit.
 */
static void h2_stream_kick(struct h2_stream *st)
{
	(void)nghttp2_session_resume_data(st->conn->h2, st->id);
	bufferevent_trigger(st->conn->bev, EV_WRITE,
			    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

static size_t h2_stream_queued(void *ctx)
{
	struct h2_stream *st = ctx;

	return evbuffer_get_length(st->body);
}

static int h2_stream_write(void *ctx, const char *data, size_t len)
{
	struct h2_stream *st = ctx;

	if (evbuffer_add(st->body, data, len) < 0)
		return -ENOMEM;
	h2_stream_kick(st);
	return 0;
}

static void h2_stream_finish(void *ctx, const char *data, size_t len)
{
	struct h2_stream *st = ctx;

	/* Whatever the client did not read is dropped: only the error line is still sent. */
	evbuffer_drain(st->body, evbuffer_get_length(st->body));
	(void)evbuffer_add(st->body, data, len);
	st->done = true;
	h2_stream_kick(st);
}

static const struct event_sub_ops h2_stream_ops = {
	.queued = h2_stream_queued,
	.write = h2_stream_write,
	.finish = h2_stream_finish,
};

static int submit_response(struct conn *c, int32_t stream_id, struct h2_stream *st,
			   struct k2i_response *resp)
{
	char status[4], length[24];
	nghttp2_nv nva[6];
	size_t n = 0;
	nghttp2_data_provider prd = { .source.ptr = NULL, .read_callback = body_read_callback };
	size_t len = resp->body ? evbuffer_get_length(resp->body) : 0;

#define NV(k, v)                                                                           \
	nva[n++] = (nghttp2_nv){ (uint8_t *)(k), (uint8_t *)(v), sizeof(k) - 1, strlen(v), \
				 NGHTTP2_NV_FLAG_NONE }
	snprintf(status, sizeof(status), "%d", resp->status);
	snprintf(length, sizeof(length), "%zu", len);
	NV(":status", status);
	NV("content-type", resp->content_type ? resp->content_type : "application/json");
	if (!resp->stream)
		NV("content-length", length);
	NV("cache-control", "no-store");
	if (resp->allow)
		NV("allow", resp->allow);
	if (resp->www_authenticate)
		NV("www-authenticate", resp->www_authenticate);
#undef NV

	if (resp->stream) {
		struct timeval idle = { .tv_sec = c->cfg->idle_timeout_s };

		st->body = evbuffer_new();
		if (!st->body)
			return -ENOMEM;
		st->sub = TAKE_PTR(resp->stream);
		event_hub_attach(routes_event_hub(c->routes), st->sub, &h2_stream_ops, st);
		/* A listening client may send nothing for a long time: only a stalled write
		 * times the connection out from now on. */
		bufferevent_set_timeouts(c->bev, NULL, &idle);
		prd.source.ptr = st;
		return nghttp2_submit_response(c->h2, stream_id, nva, n, &prd) == 0 ? 0 : -EPROTO;
	}
	if (resp->head || len == 0)
		return nghttp2_submit_response(c->h2, stream_id, nva, n, NULL) == 0 ? 0 : -EPROTO;
	/* The stream takes the body; on_stream_close_callback frees it. */
	st->body = TAKE_PTR(resp->body);
	st->done = true;
	prd.source.ptr = st;
	return nghttp2_submit_response(c->h2, stream_id, nva, n, &prd) == 0 ? 0 : -EPROTO;
}

/* A deferred answer is ready: submit it, and send from the write callback (see above). */
static void h2_deferred_done(void *ctx, struct k2i_response *resp)
{
	struct h2_stream *st = ctx;
	struct conn *c = st->conn;

	st->deferred = NULL;
	if (submit_response(c, st->id, st, resp) < 0)
		(void)nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, st->id,
						NGHTTP2_INTERNAL_ERROR);
	bufferevent_trigger(c->bev, EV_WRITE,
			    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

static int handle_request(struct conn *c, int32_t stream_id, struct h2_stream *st)
{
	struct k2i_request req;
	struct k2i_response resp = { 0 };
	int r;

	conn_request_init(c, &req);
	req.method = st->method;
	req.target = st->path;
	req.authorization = st->authorization;
	req.accept = st->accept;
	if (st->too_large) {
		req.refuse_status = 400;
		req.refuse_message = "request header too large";
	} else if (st->bad_headers || !st->method || !st->path) {
		req.refuse_status = 400;
		req.refuse_message = "malformed request headers";
	} else if (st->has_body) {
		req.refuse_status = 413;
		req.refuse_message = "request bodies are not accepted";
	}
	routes_handle(c->routes, &req, &resp);
	if (resp.deferred) {
		st->deferred = TAKE_PTR(resp.deferred);
		k2i_deferred_wait(st->deferred, h2_deferred_done, st);
		k2i_response_done(&resp);
		return 0;
	}
	r = submit_response(c, stream_id, st, &resp);
	k2i_response_done(&resp);
	return r;
}

static int on_frame_recv_callback(nghttp2_session *session, const nghttp2_frame *frame,
				  void *user_data)
{
	struct conn *c = user_data;
	struct h2_stream *st;

	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (!st)
		return 0;
	if (handle_request(c, frame->hd.stream_id, st) < 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	return 0;
}

static int on_stream_close_callback(nghttp2_session *session, int32_t stream_id,
				    uint32_t error_code, void *user_data)
{
	h2_stream_free(nghttp2_session_get_stream_user_data(session, stream_id));
	return 0;
}

/* Sends what nghttp2 has queued. Returns 0, -EPROTO, or -ECONNRESET when the session is over. */
static int h2_send(struct conn *c)
{
	if (nghttp2_session_send(c->h2) != 0)
		return -EPROTO;
	if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2) &&
	    evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		return -ECONNRESET;
	return 0;
}

int h2_session_start(struct conn *c)
{
	_cleanup_(nghttp2_session_callbacks_delp) nghttp2_session_callbacks *cbs = NULL;
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, c->cfg->max_streams },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, c->cfg->max_header_bytes },
	};

	if (nghttp2_session_callbacks_new(&cbs) != 0)
		return -ENOMEM;
	nghttp2_session_callbacks_set_send_callback(cbs, send_callback);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv_callback);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close_callback);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header_callback);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers_callback);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv_callback);
	if (nghttp2_session_server_new(&c->h2, cbs, c) != 0)
		return -ENOMEM;
	if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, ELEMENTSOF(iv)) != 0)
		return -EPROTO;
	return h2_send(c);
}

int h2_on_read(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t len = evbuffer_get_length(in);
	unsigned char *data = evbuffer_pullup(in, -1);
	ssize_t n;

	if (len == 0)
		return 0;
	n = nghttp2_session_mem_recv(c->h2, data, len);
	if (n < 0) {
		log_debug("%s: HTTP/2 protocol error: %s", c->addr, nghttp2_strerror((int)n));
		/* Try to tell the peer (GOAWAY is queued by nghttp2) before closing. */
		(void)nghttp2_session_send(c->h2);
		return -EPROTO;
	}
	if (evbuffer_drain(in, (size_t)n) != 0)
		return -EIO;
	return h2_send(c);
}

int h2_on_write(struct conn *c)
{
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
		return 0;
	return h2_send(c);
}

void h2_session_free(struct conn *c)
{
	if (c->h2)
		nghttp2_session_del(c->h2);
	c->h2 = NULL;
	/* The session does not report the streams still open when it is deleted: free their
	 * state (and detach their event subscriptions) here. */
	while (c->h2_streams)
		h2_stream_free(c->h2_streams);
}
