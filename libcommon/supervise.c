/* SPDX-License-Identifier: MIT */
#include "libcommon/supervise.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "libcommon/proto_io.h"
#include "proto/middlecon.pb-c.h"

typedef Middlecon__Frame Frame;

#define KIND(k) MIDDLECON__FRAME__KIND__##k
#define STATUS(s) MIDDLECON__FRAME__STATUS__##s

/* Calls carry small JSON both ways; a relay announcing more is refused the frame. */
#define SUPERVISE_MAX_FRAME (1024 * 1024)
/* How often a missing or departed relay is looked for again. */
#define SUPERVISE_RETRY_MIN_MS 250
#define SUPERVISE_RETRY_MAX_MS 5000
#define SUPERVISE_NAME_MAX 200
#define SUPERVISE_METHOD_MAX 64

struct supervise {
	struct event_base *base; /* borrowed */
	char *socket_path;
	char *name, *name_wild; /* NAME and NAME.* */
	supervise_handler_cb_t cb;
	void *userdata;
	struct bufferevent *bev; /* the connection, or NULL between attempts */
	struct event *retry;
	uint32_t retry_ms;
	int n_registered; /* REGISTER replies with OK, of 2 */
	bool warned; /* a refusal was logged: later ones are debug only */
};

static void schedule_retry(struct supervise *s);

/* Queues one frame. Returns 0 or -ENOMEM/-EMSGSIZE; on failure the connection is dropped. */
static int send_frame(struct supervise *s, Frame *f, const void *body, size_t len)
{
	uint8_t stack[512];
	_cleanup_free_ uint8_t *heap = NULL;
	uint8_t *buf = stack;
	size_t hl;
	int r;

	f->version = 1;
	hl = middlecon__frame__get_packed_size(f);
	if (PROTO_IO_PREFIX_SIZE + hl > sizeof(stack)) {
		heap = malloc(PROTO_IO_PREFIX_SIZE + hl);
		if (!heap)
			return -ENOMEM;
		buf = heap;
	}
	r = proto_io_prefix_write(buf, hl, len, SUPERVISE_MAX_FRAME);
	if (r < 0)
		return r;
	middlecon__frame__pack(f, buf + PROTO_IO_PREFIX_SIZE);
	if (bufferevent_write(s->bev, buf, PROTO_IO_PREFIX_SIZE + hl) < 0 ||
	    (len > 0 && bufferevent_write(s->bev, body, len) < 0))
		return -ENOMEM;
	return 0;
}

static void disconnect(struct supervise *s, bool retry)
{
	if (s->bev) {
		bufferevent_free(s->bev);
		s->bev = NULL;
	}
	if (s->n_registered == 2)
		log_info("'%s' is no longer registered with middlecon", s->name);
	s->n_registered = 0;
	if (retry)
		schedule_retry(s);
}

static void reply(struct supervise *s, uint64_t id, int status, const char *error, const char *body)
{
	Frame f = MIDDLECON__FRAME__INIT;

	f.kind = KIND(REPLY);
	f.id = id;
	f.status = status;
	f.error = (char *)(error ? error : "");
	if (send_frame(s, &f, body, body ? strlen(body) : 0) < 0)
		/* Nothing else can go out in order after a torn frame. */
		disconnect(s, true);
}

static bool method_valid(const char *m)
{
	size_t n = strlen(m);

	return n > 0 && n <= SUPERVISE_METHOD_MAX &&
	       strspn(m, "abcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

/* A REQUEST: finds the method, runs the handler, answers. */
static void handle_request(struct supervise *s, const Frame *f, const uint8_t *body, size_t len)
{
	char method[SUPERVISE_METHOD_MAX + 1] = "";
	_cleanup_free_ char *out = NULL;
	_cleanup_free_ char *err = NULL;
	const char *suffix = NULL;
	int r, status;

	if (strncmp(f->service, s->name, strlen(s->name)) == 0 &&
	    f->service[strlen(s->name)] == '.')
		suffix = f->service + strlen(s->name) + 1;
	if (f->method[0])
		snprintf(method, sizeof(method), "%s", f->method);
	else if (suffix)
		snprintf(method, sizeof(method), "%s", suffix);
	else if (len > 0 && len <= SUPERVISE_METHOD_MAX) {
		/* The body as a word: "pause", or "pause\n" from a shell. */
		size_t n = len;

		while (n > 0 && (body[n - 1] == '\n' || body[n - 1] == ' '))
			n--;
		memcpy(method, body, n);
		method[n] = '\0';
		body += len;
		len = 0;
	}
	if (!method_valid(method)) {
		reply(s, f->id, STATUS(BAD_REQUEST),
		      "name a method (state, pause, resume, stop, stats): -m METHOD, NAME.METHOD "
		      "or the body",
		      NULL);
		return;
	}
	r = s->cb(method, body, len, &out, &err, s->userdata);
	if (r >= 0) {
		reply(s, f->id, STATUS(OK), NULL, out ? out : "{}");
		return;
	}
	status = r == -EBUSY || r == -EAGAIN ? STATUS(OVERLOADED) : STATUS(BAD_REQUEST);
	if (!err && (r == -ENOTSUP || r == -EOPNOTSUPP) &&
	    asprintf(&err, "unknown method '%s'", method) < 0)
		err = NULL;
	reply(s, f->id, status, err ? err : strerror(-r), NULL);
}

static void handle_frame(struct supervise *s, const Frame *f, const uint8_t *body, size_t len)
{
	Frame out = MIDDLECON__FRAME__INIT;

	switch (f->kind) {
	case KIND(HELLO):
		if (f->status != STATUS(OK)) {
			log_warn("middlecon refused the connection of '%s': %s", s->name, f->error);
			disconnect(s, true);
		}
		return;
	case KIND(REPLY):
		/* The answers to our two REGISTERs, ids 1 and 2. */
		if (f->id != 1 && f->id != 2)
			return;
		if (f->status != STATUS(OK)) {
			if (!s->warned)
				log_warn("middlecon refused to register '%s': %s", s->name,
					 f->error);
			s->warned = true;
			/* An ACL does not change while the relay runs: ask again much later. */
			s->retry_ms = SUPERVISE_RETRY_MAX_MS;
			disconnect(s, true);
			return;
		}
		if (++s->n_registered == 2) {
			log_info("Registered '%s' with middlecon", s->name);
			s->retry_ms = 0;
		}
		return;
	case KIND(REQUEST):
		handle_request(s, f, body, len);
		return;
	case KIND(PING):
		out.kind = KIND(PONG);
		out.id = f->id;
		if (send_frame(s, &out, NULL, 0) < 0)
			disconnect(s, true);
		return;
	default:
		/* CANCEL (handlers answer at once, nothing to stop), PONG, newer kinds. */
		return;
	}
}

static void read_cb(struct bufferevent *bev, void *userdata)
{
	struct supervise *s = userdata;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (s->bev) {
		size_t avail = evbuffer_get_length(in);
		struct proto_io_frame pf;
		const uint8_t *p;
		Frame *f;
		int r;

		if (avail < PROTO_IO_PREFIX_SIZE)
			return;
		/* The prefix tells the whole frame's size; then the frame is made contiguous. */
		p = evbuffer_pullup(in, PROTO_IO_PREFIX_SIZE);
		r = p ? proto_io_decode(p, PROTO_IO_PREFIX_SIZE, SUPERVISE_MAX_FRAME, &pf) :
			-ENOMEM;
		if (r == 0) {
			if (avail < pf.size)
				return;
			p = evbuffer_pullup(in, (ssize_t)pf.size);
			r = p ? proto_io_decode(p, pf.size, SUPERVISE_MAX_FRAME, &pf) : -ENOMEM;
		}
		if (r <= 0) {
			log_warn("middlecon sent '%s' a malformed or oversize frame, reconnecting",
				 s->name);
			disconnect(s, true);
			return;
		}
		f = middlecon__frame__unpack(NULL, pf.header_len, pf.header);
		if (!f) {
			log_warn("middlecon sent '%s' an unparsable frame, reconnecting", s->name);
			disconnect(s, true);
			return;
		}
		handle_frame(s, f, pf.body, pf.body_len);
		middlecon__frame__free_unpacked(f, NULL);
		/* handle_frame() may have dropped the connection, and the buffer with it. */
		if (!s->bev)
			return;
		evbuffer_drain(in, pf.size);
	}
}

static void event_cb(struct bufferevent *bev, short events, void *userdata)
{
	struct supervise *s = userdata;

	if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		disconnect(s, true);
}

/* Connects, says HELLO and registers NAME and NAME.*; on any failure tries again later. */
static void try_connect(evutil_socket_t unused, short events, void *userdata)
{
	struct supervise *s = userdata;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -EBADF;
	uint32_t versions[] = { 1 };
	Frame hello = MIDDLECON__FRAME__INIT;
	Frame reg = MIDDLECON__FRAME__INIT;

	if (s->bev)
		return;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s->socket_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	/* A Unix socket connects at once or not at all (EAGAIN: its backlog is full). */
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		log_debug("No middlecon at '%s' for '%s' (%m), trying again later", s->socket_path,
			  s->name);
		schedule_retry(s);
		return;
	}
	s->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!s->bev) {
		schedule_retry(s);
		return;
	}
	TAKE_FD(fd);
	bufferevent_setcb(s->bev, read_cb, NULL, event_cb, s);
	hello.kind = KIND(HELLO);
	hello.n_versions = ELEMENTSOF(versions);
	hello.versions = versions;
	hello.max_frame_size = SUPERVISE_MAX_FRAME;
	hello.client_name = s->name;
	reg.kind = KIND(REGISTER);
	reg.id = 1;
	reg.service = s->name;
	if (bufferevent_enable(s->bev, EV_READ | EV_WRITE) < 0 ||
	    send_frame(s, &hello, NULL, 0) < 0 || send_frame(s, &reg, NULL, 0) < 0) {
		disconnect(s, true);
		return;
	}
	reg.id = 2;
	reg.service = s->name_wild;
	if (send_frame(s, &reg, NULL, 0) < 0)
		disconnect(s, true);
}

static void schedule_retry(struct supervise *s)
{
	struct timeval tv;

	s->retry_ms = s->retry_ms ? MIN(s->retry_ms * 2, (uint32_t)SUPERVISE_RETRY_MAX_MS) :
				    SUPERVISE_RETRY_MIN_MS;
	tv = (struct timeval){ .tv_sec = s->retry_ms / 1000,
			       .tv_usec = (suseconds_t)(s->retry_ms % 1000) * 1000 };
	evtimer_add(s->retry, &tv);
}

/* The name alphabet of docs/middlecon-protocol.md, without wildcards. */
static bool name_valid(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len > SUPERVISE_NAME_MAX || n[0] == '.' || n[len - 1] == '.' ||
	    strstr(n, ".."))
		return false;
	return strspn(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") ==
	       len;
}

int supervise_start(struct event_base *base, const char *socket_path, const char *name,
		    supervise_handler_cb_t cb, void *userdata, struct supervise **ret)
{
	struct supervise *s;

	if (!name_valid(name) || strlen(socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->base = base;
	s->cb = cb;
	s->userdata = userdata;
	s->socket_path = strdup(socket_path);
	s->name = strdup(name);
	if (asprintf(&s->name_wild, "%s.*", name) < 0)
		s->name_wild = NULL;
	s->retry = evtimer_new(base, try_connect, s);
	if (!s->socket_path || !s->name || !s->name_wild || !s->retry) {
		supervise_free(s);
		return -ENOMEM;
	}
	try_connect(-1, 0, s);
	*ret = s;
	return 0;
}

int supervise_registered(const struct supervise *s)
{
	return s->bev && s->n_registered == 2;
}

struct supervise *supervise_free(struct supervise *s)
{
	if (!s)
		return NULL;
	/* Closing is unregistering: the relay drops a closed connection's names at once. */
	disconnect(s, false);
	if (s->retry)
		event_free(s->retry);
	free(s->socket_path);
	free(s->name);
	free(s->name_wild);
	free(s);
	return NULL;
}
