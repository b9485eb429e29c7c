/* SPDX-License-Identifier: MIT */
#include "libcommon/ctlsock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>

#include "libcommon/cleanup.h"
#include "libcommon/fdutil.h"
#include "libcommon/http.h"
#include "libcommon/log.h"
#include "libcommon/strutil.h"

/*
 * Answers a peer has not read yet: above this, the connection stops reading (and so stops
 * handling pipelined requests) until the output drains, so a client that writes without reading
 * cannot grow our memory without bound.
 */
#define CTL_OUTPUT_LIMIT (256 * 1024)
#define CTL_LISTEN_BACKLOG 16

struct ctl_conn;

struct ctl_server {
	struct event_base *base;
	struct evconnlistener *listener;
	struct event *resume; /* re-enables the listener after an accept() failure */
	char *path; /* the socket file we bound, unlinked by ctl_server_free() */
	ctl_handler_t handler;
	void *userdata;
	int timeout_ms;
	struct ctl_conn *conns; /* doubly linked list of open connections */
	size_t n_conns;
};

struct ctl_conn {
	struct ctl_server *server;
	struct bufferevent *bev; /* owns the fd (BEV_OPT_CLOSE_ON_FREE) */
	struct event *deadline; /* pending while a request is partly received */
	struct ucred peer;
	bool closing; /* the last answer is queued: close once the output has drained */
	bool paused; /* reading stopped because the peer does not read its answers */
	bool continued; /* "100 Continue" was sent for the request being received */
	bool head_only; /* the request being answered is a HEAD: headers without the body */
	struct ctl_conn *prev, *next;
};

/* ---- framing ---------------------------------------------------------------------------- */

static int frame_refuse(struct ctl_frame *f, int r, int status, const char *fault)
{
	f->status = status;
	f->fault = fault;
	return r;
}

/*
 * Returns the length of the head at @buf (through the empty line), or 0 if it has not ended yet.
 * Leading empty lines belong to the head: http_request_parse() skips them (RFC 9112 §2.2).
 */
static size_t head_end(const char *buf, size_t len)
{
	size_t i = 0;

	while (i < len && (buf[i] == '\r' || buf[i] == '\n'))
		i++;
	for (;;) {
		const char *nl = memchr(buf + i, '\n', len - i);

		if (!nl)
			return 0;
		i = (size_t)(nl - buf) + 1;
		/* Bare LF line ends are accepted, as the parser does. */
		if (i < len && buf[i] == '\n')
			return i + 1;
		if (i + 1 < len && buf[i] == '\r' && buf[i + 1] == '\n')
			return i + 2;
		if (i >= len || (i + 1 == len && buf[i] == '\r'))
			return 0;
	}
}

int ctl_request_frame(const char *buf, size_t len, struct ctl_frame *ret)
{
	struct http_request_head h;
	_cleanup_free_ char *copy = NULL;
	size_t hlen;
	int r;

	*ret = (struct ctl_frame){ .status = 0 };
	hlen = head_end(buf, MIN(len, (size_t)CTL_MAX_HEAD));
	if (hlen == 0) {
		if (len >= CTL_MAX_HEAD)
			return frame_refuse(ret, -E2BIG, 431, "Request head too large");
		return 0;
	}

	/* The parser rewrites its buffer in place; the caller's bytes stay as they are. */
	copy = malloc(hlen + 1);
	if (!copy)
		return frame_refuse(ret, -ENOMEM, 500, "Out of memory");
	memcpy(copy, buf, hlen);
	copy[hlen] = '\0';
	r = http_request_parse(copy, hlen, &h);
	if (r == -E2BIG)
		return frame_refuse(ret, r, 431, "Too many header fields");
	if (r == -EPROTONOSUPPORT)
		return frame_refuse(ret, r, 505, "HTTP version not supported");
	if (r < 0)
		return frame_refuse(ret, -EBADMSG, 400, "Malformed request");
	if (h.chunked)
		return frame_refuse(ret, -ENOTSUP, 411,
				    "Chunked bodies are not supported; send Content-Length");
	if (h.content_length > CTL_MAX_BODY)
		return frame_refuse(ret, -EMSGSIZE, 413, "Request body too large");

	ret->head_len = hlen;
	ret->body_len = h.content_length > 0 ? (size_t)h.content_length : 0;
	ret->keep_alive = h.keep_alive;
	{
		const char *expect = http_header_get(&h, "expect");

		ret->expect_continue = expect && strcasecmp(expect, "100-continue") == 0;
	}
	if (len - hlen < ret->body_len)
		return 0;
	/* Handlers get the body as a C string: a NUL inside would silently cut it. */
	if (memchr(buf + hlen, '\0', ret->body_len))
		return frame_refuse(ret, -EBADMSG, 400, "NUL byte in request body");
	return 1;
}

/* ---- answers ---------------------------------------------------------------------------- */

void ctl_response_error(struct ctl_response *resp, int status, const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL;
	va_list ap;
	int n;

	json_decref(resp->body);
	resp->body = NULL;
	resp->status = status;

	va_start(ap, fmt);
	n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0) {
		msg = NULL;
		return; /* out of memory: the status alone still says what went wrong */
	}
	resp->body = json_pack("{s:s}", "fault_message", msg);
	if (resp->body)
		return;
	/* jansson refuses invalid UTF-8; a message quoting client bytes must not lose the answer. */
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	resp->body = json_pack("{s:s}", "fault_message", msg);
}

/*
 * Queues one answer. Takes the reference @body (may be NULL). On failure the connection is
 * marked closing: a half-written answer cannot be followed by another.
 */
static void conn_send(struct ctl_conn *c, int status, json_t *body)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	_cleanup_free_ char *text = NULL;
	const char *conn_hdr = c->closing ? "Connection: close\r\n" : "";
	bool has_body;
	int r;

	if (status < 200 || status > 599) {
		/* A handler bug; interim (1xx) answers are not part of this dialect. */
		json_decref(body);
		body = json_pack("{s:s}", "fault_message", "Internal error: invalid status");
		status = 500;
	}
	has_body = body != NULL;
	if (status != 204 && body) {
		text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!text)
			status = 500;
	}
	json_decref(body);

	if (status == 204) {
		/* RFC 9110 §8.6: no Content-Length (and no body) in a 204. */
		r = evbuffer_add_printf(out, "HTTP/1.1 204 %s\r\n%s\r\n", http_status_reason(204),
					conn_hdr);
	} else if (!has_body) {
		r = evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Length: 0\r\n%s\r\n",
					status, http_status_reason(status), conn_hdr);
	} else {
		const char *payload = text ? text : "{\"fault_message\":\"Internal error\"}";

		/* A HEAD answer describes the body it leaves out (RFC 9110 §9.3.2). */
		r = evbuffer_add_printf(out,
					"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
					"Content-Length: %zu\r\n%s\r\n%s%s",
					status, http_status_reason(status), strlen(payload) + 1,
					conn_hdr, c->head_only ? "" : payload,
					c->head_only ? "" : "\n");
	}
	if (r < 0)
		c->closing = true;
}

static void conn_send_fault(struct ctl_conn *c, int status, const char *fault)
{
	struct ctl_response resp = { .status = 0 };

	ctl_response_error(&resp, status, "%s", fault);
	conn_send(c, resp.status, resp.body);
}

/* Builds the request at @data (framed by @f), runs the handler and queues its answer. */
static void conn_handle(struct ctl_conn *c, const char *data, const struct ctl_frame *f)
{
	struct ctl_server *s = c->server;
	struct http_request_head h;
	struct ctl_response resp = { .status = 0 };
	_cleanup_free_ char *head = NULL;
	_cleanup_free_ char *body = NULL;
	_cleanup_free_ char *path = NULL;
	_cleanup_free_ char *query = NULL;
	int r;

	head = malloc(f->head_len + 1);
	body = malloc(f->body_len + 1);
	if (!head || !body) {
		c->closing = true;
		conn_send_fault(c, 500, "Out of memory");
		return;
	}
	memcpy(head, data, f->head_len);
	head[f->head_len] = '\0';
	memcpy(body, data + f->head_len, f->body_len);
	body[f->body_len] = '\0';

	/* ctl_request_frame() parsed this very head already; a failure here is a bug, not input. */
	r = http_request_parse(head, f->head_len, &h);
	if (r < 0) {
		c->closing = true;
		conn_send_fault(c, 400, "Malformed request");
		return;
	}
	r = http_target_split(h.target, &path, &query);
	if (r == -ENOMEM) {
		c->closing = true;
		conn_send_fault(c, 500, "Out of memory");
		return;
	}
	if (r < 0) {
		c->closing = true;
		conn_send_fault(c, 400, "Invalid request target");
		return;
	}

	c->head_only = strcmp(h.method, "HEAD") == 0;
	s->handler(&(struct ctl_request){ .method = h.method,
					  .path = path,
					  .query = query,
					  .body = body,
					  .body_len = f->body_len,
					  .peer = c->peer },
		   &resp, s->userdata);
	if (resp.status == 0)
		resp.status = resp.body ? 200 : 204;
	conn_send(c, resp.status, resp.body);
	c->head_only = false;
}

static void conn_free(struct ctl_conn *c)
{
	struct ctl_server *s = c->server;

	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->n_conns--;
	if (c->deadline)
		event_free(c->deadline);
	bufferevent_free(c->bev);
	free(c);
}

/*
 * Handles the whole requests waiting in the input, one at a time and in order (pipelining).
 * Returns false if the connection was freed.
 */
static bool conn_process(struct ctl_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer *out = bufferevent_get_output(c->bev);

	while (!c->closing && evbuffer_get_length(in) > 0) {
		/* No request is longer than this; the read watermark keeps the input within it. */
		size_t len = MIN(evbuffer_get_length(in), (size_t)(CTL_MAX_HEAD + CTL_MAX_BODY));
		struct ctl_frame f;
		const char *data;
		int r;

		if (evbuffer_get_length(out) > CTL_OUTPUT_LIMIT) {
			c->paused = true;
			bufferevent_disable(c->bev, EV_READ);
			return true;
		}
		data = (const char *)evbuffer_pullup(in, (ssize_t)len);
		if (!data) {
			c->closing = true;
			conn_send_fault(c, 500, "Out of memory");
			break;
		}
		r = ctl_request_frame(data, len, &f);
		if (r == 0) {
			/*
			 * A client that asked may wait for our go-ahead before sending the body
			 * (RFC 9110 §10.1.1); the limits were already checked on the head.
			 */
			if (f.head_len > 0 && f.expect_continue && !c->continued) {
				c->continued = true;
				if (evbuffer_add_printf(out, "HTTP/1.1 100 Continue\r\n\r\n") < 0)
					c->closing = true;
			}
			break;
		}
		c->continued = false;
		if (r < 0) {
			/* After a refused request the stream cannot be resynchronised: close. */
			log_debug_errno(r, "Control connection of pid %d: %d %s", (int)c->peer.pid,
					f.status, f.fault);
			c->closing = true;
			conn_send_fault(c, f.status, f.fault);
			break;
		}
		if (!f.keep_alive)
			c->closing = true;
		conn_handle(c, data, &f);
		evbuffer_drain(in, f.head_len + f.body_len);
	}
	if (c->closing) {
		bufferevent_disable(c->bev, EV_READ);
		if (evbuffer_get_length(out) == 0) {
			conn_free(c);
			return false;
		}
	}
	/*
	 * The read timeout restarts with every byte, so a peer trickling a request in could hold
	 * a connection slot forever: a request must arrive whole within one timeout.
	 */
	if (c->closing || evbuffer_get_length(in) == 0) {
		evtimer_del(c->deadline);
	} else if (!evtimer_pending(c->deadline, NULL)) {
		struct timeval tv = { .tv_sec = c->server->timeout_ms / 1000,
				      .tv_usec = (c->server->timeout_ms % 1000) * 1000 };

		evtimer_add(c->deadline, &tv);
	}
	return true;
}

static void conn_deadline_cb(evutil_socket_t fd, short what, void *userdata)
{
	struct ctl_conn *c = userdata;

	log_debug("Control connection of pid %d sent a request too slowly, closing",
		  (int)c->peer.pid);
	conn_free(c);
}

static void conn_read_cb(struct bufferevent *bev, void *userdata)
{
	(void)conn_process(userdata);
}

/* Called when the output has drained (the write low watermark is 0). */
static void conn_write_cb(struct bufferevent *bev, void *userdata)
{
	struct ctl_conn *c = userdata;

	if (c->closing) {
		conn_free(c);
		return;
	}
	if (c->paused) {
		c->paused = false;
		bufferevent_enable(c->bev, EV_READ);
		(void)conn_process(c);
	}
}

static void conn_event_cb(struct bufferevent *bev, short what, void *userdata)
{
	struct ctl_conn *c = userdata;

	/*
	 * The peer may shut down its writing side right after its last request: the answers
	 * already queued are still delivered, then the connection closes.
	 */
	if ((what & BEV_EVENT_EOF) && !(what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) &&
	    evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
		c->closing = true;
		bufferevent_disable(bev, EV_READ);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		log_debug("Control connection of pid %d timed out, closing", (int)c->peer.pid);
	conn_free(c);
}

static void accept_cb(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa,
		      int socklen, void *userdata)
{
	struct ctl_server *s = userdata;
	struct ctl_conn *c;
	socklen_t len = sizeof(c->peer);
	struct timeval tv;

	if (s->n_conns >= CTL_MAX_CONNECTIONS) {
		log_debug("Too many control connections, refusing one");
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->server = s;
	/* Read once, at accept: the credentials of whoever connected, not of a later holder. */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->peer, &len) < 0) {
		log_debug("SO_PEERCRED failed: %m, closing the connection");
		free(c);
		close(fd);
		return;
	}
	/* BEV_OPT_CLOSE_ON_FREE: the bufferevent owns the fd from here. */
	c->deadline = evtimer_new(s->base, conn_deadline_cb, c);
	c->bev = c->deadline ? bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE) : NULL;
	if (!c->bev) {
		if (c->deadline)
			event_free(c->deadline);
		free(c);
		close(fd);
		return;
	}
	tv = (struct timeval){ .tv_sec = s->timeout_ms / 1000,
			       .tv_usec = (s->timeout_ms % 1000) * 1000 };
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_setwatermark(c->bev, EV_READ, 0, CTL_MAX_HEAD + CTL_MAX_BODY);
	bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	if (bufferevent_enable(c->bev, EV_READ) < 0) {
		event_free(c->deadline);
		bufferevent_free(c->bev);
		free(c);
		return;
	}
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->n_conns++;
}

/*
 * accept() failed (EMFILE, ENOBUFS, ...): the listening socket stays readable, so retrying at
 * once would spin the loop. Pause accepting briefly instead.
 */
static void accept_error_cb(struct evconnlistener *listener, void *userdata)
{
	static const struct timeval backoff = { .tv_sec = 0, .tv_usec = 100 * 1000 };
	struct ctl_server *s = userdata;

	log_debug_errno(EVUTIL_SOCKET_ERROR(), "accept() on a control socket failed: %m, pausing");
	evconnlistener_disable(listener);
	if (evtimer_add(s->resume, &backoff) < 0)
		evconnlistener_enable(listener);
}

static void resume_cb(evutil_socket_t fd, short what, void *userdata)
{
	struct ctl_server *s = userdata;

	evconnlistener_enable(s->listener);
}

/* ---- listening -------------------------------------------------------------------------- */

int ctl_server_new(struct event_base *base, const char *path, mode_t mode, ctl_handler_t handler,
		   void *userdata, struct ctl_server **ret)
{
	struct ctl_server *s;
	int fd = -EBADF;
	int r;

	if (!base || !path || !handler || !ret)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->base = base;
	s->handler = handler;
	s->userdata = userdata;
	s->timeout_ms = CTL_TIMEOUT_MS;
	/* The control socket drives a VM or a sandbox: by default only its owner may connect. */
	r = unix_listen(path, mode ? mode : 0600, CTL_LISTEN_BACKLOG, &fd);
	if (r < 0) {
		free(s);
		return r;
	}
	s->path = strdup(path);
	s->resume = evtimer_new(base, resume_cb, s);
	/* LEV_OPT_CLOSE_ON_FREE: the listener owns the socket from here. */
	s->listener =
		s->path && s->resume ?
			evconnlistener_new(base, accept_cb, s,
					   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd) :
			NULL;
	if (!s->listener) {
		close(fd);
		(void)unlink(path);
		if (s->resume)
			event_free(s->resume);
		free(s->path);
		free(s);
		return -ENOMEM;
	}
	evconnlistener_set_error_cb(s->listener, accept_error_cb);
	*ret = s;
	return 0;
}

void ctl_server_set_timeout(struct ctl_server *s, int ms)
{
	s->timeout_ms = ms > 0 ? ms : CTL_TIMEOUT_MS;
}

struct ctl_server *ctl_server_free(struct ctl_server *s)
{
	if (!s)
		return NULL;
	if (s->listener)
		evconnlistener_free(s->listener);
	if (s->resume)
		event_free(s->resume);
	while (s->conns)
		conn_free(s->conns);
	if (s->path)
		(void)unlink(s->path);
	free(s->path);
	free(s);
	return NULL;
}

/* ---- client ----------------------------------------------------------------------------- */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until @fd has @events or @deadline (CLOCK_MONOTONIC ms) passes: 0 or -ETIMEDOUT. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		int64_t left = deadline - now_ms();
		int r;

		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(&p, 1, (int)MIN(left, (int64_t)INT32_MAX));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return negative_errno();
		if (r == 0)
			return -ETIMEDOUT;
		return 0;
	}
}

static int client_connect(int fd, const struct sockaddr_un *sa, int64_t deadline)
{
	for (;;) {
		int64_t left;
		int err = 0;
		socklen_t len = sizeof(err);
		int r;

		if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
			return 0;
		if (errno == EINPROGRESS) {
			r = wait_fd(fd, POLLOUT, deadline);
			if (r < 0)
				return r;
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
				return negative_errno();
			return err ? -err : 0;
		}
		if (errno != EAGAIN && errno != EINTR)
			return negative_errno();
		/*
		 * A Unix socket's backlog is full (EAGAIN): unlike TCP there is nothing to poll
		 * for, so retry in short steps until the deadline.
		 */
		left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		(void)poll(NULL, 0, (int)MIN(left, (int64_t)10));
	}
}

/*
 * Parses a response head (NUL-terminated, through its empty line; modified in place). Sets the
 * status and the Content-Length (-1 when absent). Returns 0 or -EBADMSG; a chunked answer is
 * -EBADMSG too, as our servers never send one.
 */
static int parse_response_head(char *head, int *ret_status, int64_t *ret_length)
{
	int64_t length = -1;
	char *line, *save = NULL;
	bool first = true;
	int status = 0;

	for (line = strtok_r(head, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		size_t n = strlen(line);
		char *colon;

		if (n > 0 && line[n - 1] == '\r')
			line[--n] = '\0';
		if (n == 0)
			continue; /* the leading or the final empty line */
		if (first) {
			const char *p = startswith(line, "HTTP/1.");

			first = false;
			if (!p || (p[0] != '0' && p[0] != '1') || p[1] != ' ')
				return -EBADMSG;
			p += 2;
			for (int i = 0; i < 3; i++) {
				if (p[i] < '0' || p[i] > '9')
					return -EBADMSG;
				status = status * 10 + (p[i] - '0');
			}
			if ((p[3] != ' ' && p[3] != '\0') || status < 200)
				return -EBADMSG;
			continue;
		}
		colon = strchr(line, ':');
		if (!colon || colon == line)
			return -EBADMSG;
		*colon = '\0';
		if (strcasecmp(line, "content-length") == 0) {
			uint64_t v;

			if (safe_atou64(skip_blanks(colon + 1), &v) < 0 || v > INT64_MAX ||
			    (length >= 0 && (uint64_t)length != v))
				return -EBADMSG;
			length = (int64_t)v;
		} else if (strcasecmp(line, "transfer-encoding") == 0) {
			return -EBADMSG;
		}
	}
	if (first)
		return -EBADMSG;
	*ret_status = status;
	*ret_length = length;
	return 0;
}

static bool valid_method(const char *m)
{
	if (!*m)
		return false;
	for (; *m; m++)
		if (!((*m >= 'A' && *m <= 'Z') || (*m >= 'a' && *m <= 'z')))
			return false;
	return true;
}

static bool valid_target(const char *t)
{
	if (t[0] != '/')
		return false;
	/* No spaces or control characters: they would split or end the request line. */
	for (; *t; t++)
		if ((unsigned char)*t <= 0x20 || *t == 0x7f)
			return false;
	return true;
}

/* Formats the request ctl_call() and ctl_call_start() send. Returns its length or -ENOMEM. */
static int format_request(const char *method, const char *target, const char *body, char **ret)
{
	int n;

	if (body)
		n = asprintf(ret,
			     "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
			     "Connection: close\r\nContent-Type: application/json\r\n"
			     "Content-Length: %zu\r\n\r\n%s",
			     method, target, strlen(body), body);
	else
		n = asprintf(ret,
			     "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
			     "Connection: close\r\n\r\n",
			     method, target);
	if (n < 0) {
		*ret = NULL;
		return -ENOMEM;
	}
	return n;
}

/* Where the reading of an answer stands. */
struct answer {
	char *buf; /* ANSWER_CAP + 1 bytes */
	size_t len; /* bytes received */
	size_t hlen; /* length of the head once complete, else 0 */
	int64_t length; /* Content-Length, -1 if none (the body ends with the connection) */
	int status;
	size_t body_len; /* once complete */
};

#define ANSWER_CAP (CTL_MAX_HEAD + CTL_MAX_BODY + 1)

/*
 * Looks at what arrived (@eof: the server closed its end). Returns 1 when the answer is whole
 * (a->status, a->hlen and a->body_len are set), 0 when more is needed, or -EBADMSG, -EMSGSIZE,
 * -ECONNRESET (closed without a byte).
 */
static int answer_parse(struct answer *a, bool eof)
{
	int r;

	if (a->hlen == 0) {
		a->hlen = head_end(a->buf, MIN(a->len, (size_t)CTL_MAX_HEAD));
		if (a->hlen == 0 && a->len >= CTL_MAX_HEAD)
			return -EBADMSG;
		if (a->hlen > 0) {
			char saved = a->buf[a->hlen];

			a->buf[a->hlen] = '\0';
			r = parse_response_head(a->buf, &a->status, &a->length);
			a->buf[a->hlen] = saved;
			if (r < 0)
				return r;
			if (a->status == 204 || a->status == 304)
				a->length = 0;
			if (a->length > CTL_MAX_BODY)
				return -EMSGSIZE;
		}
	}
	if (a->hlen > 0 && a->length >= 0 && a->len - a->hlen >= (size_t)a->length) {
		a->body_len = (size_t)a->length;
		return 1;
	}
	if (a->hlen > 0 && a->len - a->hlen > CTL_MAX_BODY)
		return -EMSGSIZE;
	if (!eof)
		return 0;
	if (a->hlen > 0 && a->length < 0) {
		a->body_len = a->len - a->hlen; /* delimited by the end of the connection */
		return 1;
	}
	/* Nothing at all: the server closed without answering (too many clients). */
	return a->len == 0 ? -ECONNRESET : -EBADMSG;
}

/* The body of a whole answer as a malloc'ed NUL-terminated string, or NULL. */
static char *answer_body(const struct answer *a)
{
	char *b = malloc(a->body_len + 1);

	if (!b)
		return NULL;
	memcpy(b, a->buf + a->hlen, a->body_len);
	b[a->body_len] = '\0';
	return b;
}

/* Checks the arguments of a call and fills in @sa. Returns 0, -EINVAL or -ENAMETOOLONG. */
static int call_check(const char *path, const char *method, const char *target,
		      struct sockaddr_un *sa)
{
	if (!path || !method || !target || !valid_method(method) || !valid_target(target))
		return -EINVAL;
	if (strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	*sa = (struct sockaddr_un){ .sun_family = AF_UNIX };
	memcpy(sa->sun_path, path, strlen(path) + 1);
	return 0;
}

int ctl_call(const char *path, const char *method, const char *target, const char *body,
	     int timeout_ms, int *ret_status, char **ret_body)
{
	struct sockaddr_un sa;
	_cleanup_close_ int fd = -EBADF;
	_cleanup_free_ char *req = NULL;
	_cleanup_free_ char *buf = NULL;
	struct answer a = { .length = -1 };
	size_t req_len, sent = 0;
	int64_t deadline;
	bool eof = false;
	int r;

	if (!ret_status)
		return -EINVAL;
	r = call_check(path, method, target, &sa);
	if (r < 0)
		return r;
	deadline = now_ms() + MAX(timeout_ms, 0);
	r = format_request(method, target, body, &req);
	if (r < 0)
		return r;
	req_len = (size_t)r;
	a.buf = buf = malloc(ANSWER_CAP + 1);
	if (!buf)
		return -ENOMEM;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return negative_errno();
	r = client_connect(fd, &sa, deadline);
	if (r < 0)
		return r;

	while (sent < req_len) {
		ssize_t k;

		r = wait_fd(fd, POLLOUT, deadline);
		if (r < 0)
			return r;
		k = send(fd, req + sent, req_len - sent, MSG_NOSIGNAL);
		if (k < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		/* The server may have answered early (413) and closed: read what it said. */
		if (k < 0 && (errno == EPIPE || errno == ECONNRESET))
			break;
		if (k < 0)
			return negative_errno();
		sent += (size_t)k;
	}

	while ((r = answer_parse(&a, eof)) == 0) {
		ssize_t k;

		r = wait_fd(fd, POLLIN, deadline);
		if (r < 0)
			return r;
		k = recv(fd, a.buf + a.len, ANSWER_CAP - a.len, 0);
		if (k < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (k < 0 && errno == ECONNRESET && a.len > 0)
			return -EBADMSG;
		if (k < 0)
			return negative_errno();
		if (k == 0)
			eof = true;
		a.len += (size_t)k;
	}
	if (r < 0)
		return r;
	if (ret_body) {
		char *b = answer_body(&a);

		if (!b)
			return -ENOMEM;
		*ret_body = b;
	}
	*ret_status = a.status;
	return 0;
}

/* ---- asynchronous client ------------------------------------------------------------------ */

struct ctl_async_call {
	struct event *io; /* EV_WRITE while connecting or sending, then EV_READ */
	struct event *timer; /* the deadline, or the next connect attempt (backlog full) */
	int fd;
	struct sockaddr_un sa;
	int64_t deadline; /* CLOCK_MONOTONIC ms */
	char *req;
	size_t req_len, sent;
	bool connecting; /* connect() not yet done (backlog full: retried on the timer) */
	struct answer a;
	ctl_call_cb_t cb;
	void *userdata;
};

static void async_free(struct ctl_async_call *c)
{
	if (c->io)
		event_free(c->io);
	if (c->timer)
		event_free(c->timer);
	closep(&c->fd);
	free(c->req);
	free(c->a.buf);
	free(c);
}

/* Ends the call with @r (0: the answer is whole) and frees it. */
static void async_finish(struct ctl_async_call *c, int r)
{
	_cleanup_free_ char *body = NULL;

	if (r >= 0) {
		body = answer_body(&c->a);
		if (!body)
			r = -ENOMEM;
	}
	c->cb(r, r >= 0 ? c->a.status : 0, body, c->userdata);
	async_free(c);
}

/* (Re)arms the I/O event for @what, and the timer for the deadline or @retry_ms if sooner. */
static int async_arm(struct ctl_async_call *c, short what, int64_t retry_ms)
{
	int64_t left = MAX(c->deadline - now_ms(), (int64_t)0);
	struct timeval tv;

	if (retry_ms >= 0)
		left = MIN(left, retry_ms);
	tv = (struct timeval){ .tv_sec = left / 1000, .tv_usec = (left % 1000) * 1000 };
	if (event_del(c->io) < 0 || event_assign(c->io, event_get_base(c->io), c->fd, what,
						 event_get_callback(c->io), c) < 0)
		return -ENOMEM;
	if ((what && event_add(c->io, NULL) < 0) || event_add(c->timer, &tv) < 0)
		return -ENOMEM;
	return 0;
}

/*
 * One step of connecting: 0 connected, 1 to retry later (the listener's backlog is full: a
 * Unix socket has nothing to poll for then), 2 in progress (wait for writable), or -errno.
 */
static int async_connect(struct ctl_async_call *c)
{
	if (connect(c->fd, (const struct sockaddr *)&c->sa, sizeof(c->sa)) == 0)
		return 0;
	if (errno == EINPROGRESS)
		return 2;
	if (errno == EAGAIN || errno == EINTR)
		return 1;
	return negative_errno();
}

static void async_step(struct ctl_async_call *c, bool timer)
{
	int r;

	if (c->connecting) {
		if (timer && now_ms() >= c->deadline) {
			async_finish(c, -ETIMEDOUT);
			return;
		}
		if (timer) {
			r = async_connect(c);
		} else {
			/* EINPROGRESS finished: its result is in SO_ERROR. */
			int err = 0;
			socklen_t len = sizeof(err);

			r = getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 ?
				    negative_errno() :
				    -err;
		}
		if (r < 0) {
			async_finish(c, r);
			return;
		}
		if (r > 0) {
			if (async_arm(c, r == 2 ? EV_WRITE : 0, r == 1 ? 10 : -1) < 0)
				async_finish(c, -ENOMEM);
			return;
		}
		c->connecting = false;
		if (async_arm(c, EV_WRITE, -1) < 0)
			async_finish(c, -ENOMEM);
		return;
	}
	if (timer) {
		async_finish(c, -ETIMEDOUT);
		return;
	}
	if (c->sent < c->req_len) {
		ssize_t k = send(c->fd, c->req + c->sent, c->req_len - c->sent, MSG_NOSIGNAL);

		if (k < 0 && (errno == EPIPE || errno == ECONNRESET)) {
			/* The server may have answered early (413) and closed: read what it said. */
			c->sent = c->req_len;
		} else if (k < 0 && errno != EAGAIN && errno != EINTR) {
			async_finish(c, negative_errno());
			return;
		} else if (k > 0) {
			c->sent += (size_t)k;
		}
		r = c->sent == c->req_len ? async_arm(c, EV_READ | EV_PERSIST, -1) :
					    async_arm(c, EV_WRITE, -1);
		if (r < 0)
			async_finish(c, -ENOMEM);
		return;
	}
	for (;;) {
		ssize_t k = recv(c->fd, c->a.buf + c->a.len, ANSWER_CAP - c->a.len, 0);

		if (k < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (k < 0) {
			async_finish(c, errno == ECONNRESET && c->a.len > 0 ? -EBADMSG :
									      negative_errno());
			return;
		}
		c->a.len += (size_t)k;
		r = answer_parse(&c->a, k == 0);
		if (r != 0) {
			async_finish(c, MIN(r, 0));
			return;
		}
	}
}

static void async_io_cb(evutil_socket_t fd, short what, void *userdata)
{
	async_step(userdata, false);
}

static void async_timer_cb(evutil_socket_t fd, short what, void *userdata)
{
	async_step(userdata, true);
}

int ctl_call_start(struct event_base *base, const char *path, const char *method,
		   const char *target, const char *body, int timeout_ms, ctl_call_cb_t cb,
		   void *userdata, struct ctl_async_call **ret)
{
	struct ctl_async_call *c;
	int r;

	if (!base || !cb || !ret)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = -EBADF;
	c->cb = cb;
	c->userdata = userdata;
	c->a.length = -1;
	c->deadline = now_ms() + MAX(timeout_ms, 0);
	r = call_check(path, method, target, &c->sa);
	if (r < 0)
		goto fail;
	r = format_request(method, target, body, &c->req);
	if (r < 0)
		goto fail;
	c->req_len = (size_t)r;
	c->a.buf = malloc(ANSWER_CAP + 1);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	c->io = event_new(base, c->fd, EV_WRITE, async_io_cb, c);
	c->timer = evtimer_new(base, async_timer_cb, c);
	if (c->fd < 0) {
		r = negative_errno();
		goto fail;
	}
	if (!c->a.buf || !c->io || !c->timer) {
		r = -ENOMEM;
		goto fail;
	}
	r = async_connect(c);
	if (r < 0)
		goto fail;
	c->connecting = r > 0;
	r = async_arm(c, r == 1 ? 0 : EV_WRITE, r == 1 ? 10 : -1);
	if (r < 0)
		goto fail;
	*ret = c;
	return 0;
fail:
	async_free(c);
	return r;
}

void ctl_call_cancel(struct ctl_async_call *c)
{
	if (c)
		async_free(c);
}
