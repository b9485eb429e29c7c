/* SPDX-License-Identifier: MIT */
/*
 * libmiddlecon: one nonblocking Unix-socket connection to the relay, a receive buffer that frames
 * are decoded from, an output queue used only when the socket buffer is full, and three lists:
 * calls in flight (by request id), request handlers and subscriptions (by pattern).
 *
 * Re-entrancy is the design constraint: a handler may call mc_call(), which reads the socket and
 * dispatches more frames before the outer dispatch loop continues. So a frame is taken out of the
 * receive buffer (its body copied once, which a reply needs anyway because the reply owns its
 * body) before any callback runs, and every loop re-reads the buffer offsets after a callback.
 */
#include "middlecon/libmiddlecon.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "libcommon/cleanup.h"
#include "libcommon/proto_io.h"
#include "middlecon/frame.h"
#include "proto/middlecon.pb-c.h"

DEFINE_CLEANUP_FUNC(struct mc_client, mc_client_free)

/* How long mc_connect() waits for HELLO, and mc_register()/mc_subscribe() for their answer. */
#define MC_CONTROL_TIMEOUT_MS 5000
/* The relay's default deadline when a call sets none (docs/middlecon-protocol.md). */
#define MC_DEFAULT_DEADLINE_MS 30000
/* How long after the deadline a call waits for the relay's own DEADLINE_EXCEEDED. */
#define MC_DEADLINE_SLACK_MS 1000
/* The relay's frame limit when its HELLO does not say (its documented default). */
#define MC_DEFAULT_RELAY_MAX_FRAME (1024u * 1024)
/* Reads per mc_client_process(), so that one busy connection cannot starve an event base. */
#define MC_READS_PER_PROCESS 64
#define MC_READ_CHUNK 65536u

/* A call in flight: a blocking mc_call() (cb NULL, lives on the waiter's stack) or an async one
 * (cb set, heap-allocated, freed when completed). REGISTER and SUBSCRIBE wait the same way. */
struct mc_pending {
	uint64_t id;
	bool done;
	int status; /* >= 0 a status, < 0 -errno; valid once done */
	struct mc_reply *reply; /* owned; handed to the waiter or borrowed by cb */
	mc_reply_cb_t cb;
	void *userdata;
	struct event *timer; /* async only: the local deadline */
	struct mc_client *client;
	struct mc_pending *prev, *next;
};

/* A registered pattern (handler) or a subscription (message). Never removed before free. */
struct mc_route {
	uint64_t id; /* the REGISTER/SUBSCRIBE frame's id; the relay stamps it on PUBLISH */
	char *pattern;
	mc_handler_cb_t handler;
	mc_message_cb_t message;
	void *userdata;
	struct mc_route *next;
};

struct mc_client {
	int fd;
	int dead; /* 0 while usable, else the -errno that ended the connection */
	bool hello_done; /* the relay answered HELLO */
	int hello_status; /* its status */
	uint32_t version;
	size_t max_frame; /* the relay's limit, for what we send */
	uint64_t next_id;

	uint8_t *rbuf; /* received bytes [rstart, rlen) not yet decoded */
	size_t rstart, rlen, rcap;
	uint8_t *obuf; /* bytes [ostart, olen) the socket did not take yet */
	size_t ostart, olen, ocap;

	struct mc_pending *pending;
	struct mc_route *handlers, **handlers_tail;
	struct mc_route *subs, **subs_tail;

	struct event_base *base; /* borrowed */
	struct event *ev_read, *ev_write;
};

static const char *const status_names[_MC_STATUS_MAX] = {
	[MC_STATUS_OK] = "OK",
	[MC_STATUS_NO_RESPONDERS] = "NO_RESPONDERS",
	[MC_STATUS_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
	[MC_STATUS_PEER_GONE] = "PEER_GONE",
	[MC_STATUS_TOO_LARGE] = "TOO_LARGE",
	[MC_STATUS_DENIED] = "DENIED",
	[MC_STATUS_BAD_REQUEST] = "BAD_REQUEST",
	[MC_STATUS_OVERLOADED] = "OVERLOADED",
	[MC_STATUS_CANCELLED] = "CANCELLED",
};

const char *mc_status_to_string(int status)
{
	if (status < 0 || status >= _MC_STATUS_MAX)
		return NULL;
	return status_names[status];
}

bool mc_name_match(const char *pattern, const char *name)
{
	const char *p = pattern, *n = name;

	if (!p || !n || !*n)
		return false;
	for (;;) {
		size_t pl = strcspn(p, "."), nl = strcspn(n, ".");

		if (pl == 1 && p[0] == '>')
			/* `>` is only valid as the last token and takes all the rest (>= 1 token). */
			return p[1] == '\0' && nl > 0;
		if (!(pl == 1 && p[0] == '*') && (pl != nl || memcmp(p, n, pl) != 0))
			return false;
		if (pl == 1 && p[0] == '*' && nl == 0)
			return false;
		p += pl;
		n += nl;
		if (!*p || !*n)
			return !*p && !*n;
		p++;
		n++;
	}
}

static uint64_t now_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void frame_init(Middlecon__Frame *f, Middlecon__Frame__Kind kind, uint64_t id)
{
	middlecon__frame__init(f);
	f->version = FRAME_VERSION;
	f->kind = kind;
	f->id = id;
}

struct mc_reply *mc_reply_free(struct mc_reply *r)
{
	if (!r)
		return NULL;
	free(r->error);
	free(r->body);
	free(r);
	return NULL;
}
DEFINE_CLEANUP_FUNC(struct mc_reply, mc_reply_free)

/* Builds a reply; takes ownership of @body (malloc'ed, len + 1 bytes, NUL-terminated; NULL means
 * empty). Frees @body on failure. */
static struct mc_reply *reply_new(int status, const char *error, void *body, size_t len)
{
	struct mc_reply *r = calloc(1, sizeof(*r));

	if (!r) {
		free(body);
		return NULL;
	}
	r->status = status;
	r->error = strdup(error ? error : "");
	r->body = body ? body : calloc(1, 1);
	r->len = body ? len : 0;
	if (!r->error || !r->body)
		return mc_reply_free(r);
	return r;
}

/* ---- output ---- */

static void update_write_event(struct mc_client *c)
{
	if (!c->ev_write)
		return;
	if (!c->dead && c->olen > c->ostart)
		event_add(c->ev_write, NULL);
	else
		event_del(c->ev_write);
}

static int queue_out(struct mc_client *c, const void *data, size_t len)
{
	if (len == 0)
		return 0;
	if (c->ostart > 0 && c->ostart == c->olen)
		c->ostart = c->olen = 0;
	if (c->ocap - c->olen < len) {
		size_t used = c->olen - c->ostart, cap = c->ocap ? c->ocap : 4096;
		uint8_t *n;

		if (used > 0)
			memmove(c->obuf, c->obuf + c->ostart, used);
		c->ostart = 0;
		c->olen = used;
		while (cap - used < len)
			cap *= 2;
		if (cap != c->ocap) {
			n = realloc(c->obuf, cap);
			if (!n)
				return -ENOMEM;
			c->obuf = n;
			c->ocap = cap;
		}
	}
	memcpy(c->obuf + c->olen, data, len);
	c->olen += len;
	return 0;
}

static void client_fail(struct mc_client *c, int error);

/* Writes what is queued, as far as the socket takes it. */
static int flush_out(struct mc_client *c)
{
	while (c->olen > c->ostart) {
		ssize_t n = send(c->fd, c->obuf + c->ostart, c->olen - c->ostart,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0) {
			client_fail(c, -ECONNRESET);
			return -ECONNRESET;
		}
		c->ostart += (size_t)n;
	}
	if (c->ostart == c->olen)
		c->ostart = c->olen = 0;
	update_write_event(c);
	return 0;
}

/*
 * Sends @f with @body at once (latency first: no batching), or queues what the socket does not
 * take. Returns 0, -EMSGSIZE (over the relay's limit; nothing sent), -ENOMEM, -ECONNRESET.
 */
static int send_frame(struct mc_client *c, const Middlecon__Frame *f, const void *body, size_t len)
{
	uint8_t stack[512];
	_cleanup_free_ uint8_t *heap = NULL;
	uint8_t *head = stack;
	size_t hs = frame_head_size(f), off = 0, total = 0;
	struct iovec iov[2];
	int n, r;

	if (c->dead)
		return c->dead;
	if (hs > sizeof(stack)) {
		heap = malloc(hs);
		if (!heap)
			return -ENOMEM;
		head = heap;
	}
	n = frame_encode(f, body, len, c->max_frame, head, hs, iov);
	if (n < 0)
		return n;
	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;

	if (c->olen == c->ostart) {
		/* Nothing queued: write straight from the caller's buffers. */
		for (;;) {
			struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
			ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);

			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
				client_fail(c, -ECONNRESET);
				return -ECONNRESET;
			}
			off = w < 0 ? 0 : (size_t)w;
			break;
		}
		if (off == total)
			return 0;
	}
	/* Queue the part not written, so frames stay in order. */
	for (int i = 0; i < n; i++) {
		size_t l = iov[i].iov_len;

		if (off >= l) {
			off -= l;
			continue;
		}
		r = queue_out(c, (const uint8_t *)iov[i].iov_base + off, l - off);
		if (r < 0) {
			/* A frame half on the wire cannot be taken back. */
			client_fail(c, r);
			return r;
		}
		off = 0;
	}
	update_write_event(c);
	return 0;
}

/* ---- calls in flight ---- */

static void pending_link(struct mc_client *c, struct mc_pending *p)
{
	p->client = c;
	p->prev = NULL;
	p->next = c->pending;
	if (c->pending)
		c->pending->prev = p;
	c->pending = p;
}

static void pending_unlink(struct mc_client *c, struct mc_pending *p)
{
	if (p->prev)
		p->prev->next = p->next;
	else if (c->pending == p)
		c->pending = p->next;
	if (p->next)
		p->next->prev = p->prev;
	p->prev = p->next = NULL;
}

static struct mc_pending *pending_find(struct mc_client *c, uint64_t id)
{
	for (struct mc_pending *p = c->pending; p; p = p->next)
		if (p->id == id)
			return p;
	return NULL;
}

/* Completes @p (already unlinked) with @status and @reply (ownership taken). */
static void pending_complete(struct mc_pending *p, int status, struct mc_reply *reply)
{
	if (!p->cb) {
		p->done = true;
		p->status = status;
		p->reply = reply;
		return;
	}
	if (p->timer)
		event_free(p->timer);
	p->cb(p->client, status, status >= 0 ? reply : NULL, p->userdata);
	mc_reply_free(reply);
	free(p);
}

/* The connection is finished: remember why, stop the events, and complete every call. */
static void client_fail(struct mc_client *c, int error)
{
	struct mc_pending *p;

	if (c->dead)
		return;
	c->dead = error;
	if (c->ev_read)
		event_del(c->ev_read);
	if (c->ev_write)
		event_del(c->ev_write);
	while ((p = c->pending)) {
		pending_unlink(c, p);
		pending_complete(p, error, NULL);
	}
}

/* ---- input ---- */

static void handle_request(struct mc_client *c, const Middlecon__Frame *f, const void *body,
			   size_t len)
{
	_cleanup_free_ struct mc_header *hdrs = NULL;
	struct mc_request req = {
		.token = f->id,
		.name = f->service,
		.method = f->method,
		.deadline_ns = f->deadline,
		.caller_uid = -1,
		.caller_gid = -1,
		.caller_pid = -1,
		.body = body,
		.len = len,
	};
	struct mc_route *h;

	for (h = c->handlers; h; h = h->next)
		if (mc_name_match(h->pattern, f->service))
			break;
	if (!h) {
		/* The relay routed a name we did not register (or no longer serve). */
		(void)mc_respond_error(c, f->id, MC_STATUS_NO_RESPONDERS,
				       "no handler for this name");
		return;
	}
	if (f->n_headers > 0) {
		hdrs = calloc(f->n_headers, sizeof(*hdrs));
		if (!hdrs) {
			(void)mc_respond_error(c, f->id, MC_STATUS_OVERLOADED, "out of memory");
			return;
		}
	}
	for (size_t i = 0; i < f->n_headers; i++) {
		const Middlecon__Frame__Header *fh = f->headers[i];
		int64_t *slot = NULL;
		char num[24];

		hdrs[i] = (struct mc_header){ fh->key, fh->value.data, fh->value.len };
		if (strcmp(fh->key, "caller-uid") == 0)
			slot = &req.caller_uid;
		else if (strcmp(fh->key, "caller-gid") == 0)
			slot = &req.caller_gid;
		else if (strcmp(fh->key, "caller-pid") == 0)
			slot = &req.caller_pid;
		/* The relay writes these as decimal text. */
		if (slot && fh->value.len > 0 && fh->value.len < sizeof(num)) {
			char *end;
			long long v;

			memcpy(num, fh->value.data, fh->value.len);
			num[fh->value.len] = '\0';
			errno = 0;
			v = strtoll(num, &end, 10);
			if (errno == 0 && *end == '\0' && v >= 0)
				*slot = v;
		}
	}
	req.headers = hdrs;
	req.n_headers = f->n_headers;
	h->handler(c, &req, h->userdata);
}

static void handle_publish(struct mc_client *c, const Middlecon__Frame *f, const void *body,
			   size_t len)
{
	_cleanup_free_ struct mc_header *hdrs = NULL;

	if (f->n_headers > 0) {
		hdrs = calloc(f->n_headers, sizeof(*hdrs));
		if (!hdrs)
			return;
		for (size_t i = 0; i < f->n_headers; i++)
			hdrs[i] = (struct mc_header){ f->headers[i]->key, f->headers[i]->value.data,
						      f->headers[i]->value.len };
	}
	/*
	 * The relay sends one PUBLISH per matching subscription, with that SUBSCRIBE's id, so
	 * overlapping subscriptions each get the message once. A PUBLISH without an id (a relay
	 * that does not stamp) goes to every subscription whose pattern matches.
	 */
	for (struct mc_route *s = c->subs; s; s = s->next) {
		if (f->id != 0 ? s->id != f->id : !mc_name_match(s->pattern, f->service))
			continue;
		s->message(c, f->service, hdrs, f->n_headers, body, len, s->userdata);
		if (f->id != 0)
			break;
	}
}

/* Handles one frame; takes ownership of @body (malloc'ed, len + 1 bytes, NUL-terminated). */
static void handle_frame(struct mc_client *c, Middlecon__Frame *f, uint8_t *body, size_t len)
{
	_cleanup_free_ uint8_t *b = body;
	struct mc_pending *p;
	struct mc_reply *reply;
	Middlecon__Frame pong;

	switch (f->kind) {
	case MIDDLECON__FRAME__KIND__HELLO:
		if (!c->hello_done) {
			c->hello_done = true;
			c->hello_status = f->status;
			c->version = f->version;
			c->max_frame =
				f->max_frame_size ? f->max_frame_size : MC_DEFAULT_RELAY_MAX_FRAME;
		}
		break;
	case MIDDLECON__FRAME__KIND__REPLY:
		p = pending_find(c, f->id);
		if (!p)
			break; /* a reply after we gave up locally */
		pending_unlink(c, p);
		reply = reply_new(f->status, f->error, TAKE_PTR(b), len);
		pending_complete(p, reply ? (int)f->status : -ENOMEM, reply);
		break;
	case MIDDLECON__FRAME__KIND__REQUEST:
		handle_request(c, f, b, len);
		break;
	case MIDDLECON__FRAME__KIND__PUBLISH:
		handle_publish(c, f, b, len);
		break;
	case MIDDLECON__FRAME__KIND__PING:
		frame_init(&pong, MIDDLECON__FRAME__KIND__PONG, f->id);
		(void)send_frame(c, &pong, NULL, 0);
		break;
	default:
		/* CANCEL: the relay has already answered the caller, and drops our late reply;
		 * PONG and kinds from newer relays: nothing to do. */
		break;
	}
}

/* Decodes and dispatches every complete frame in the receive buffer. */
static int dispatch_frames(struct mc_client *c)
{
	while (!c->dead && c->rlen > c->rstart) {
		_cleanup_(frame_freep) Middlecon__Frame *f = NULL;
		struct proto_io_frame span;
		uint8_t *body;
		size_t len;
		int r;

		r = frame_decode(c->rbuf + c->rstart, c->rlen - c->rstart, MC_CLIENT_MAX_FRAME,
				 &span, &f);
		if (r == 0)
			break;
		if (r < 0) {
			client_fail(c, r == -ENOMEM ? -ENOMEM : -EPROTO);
			return c->dead;
		}
		len = span.body_len;
		body = malloc(len + 1);
		if (!body) {
			client_fail(c, -ENOMEM);
			return c->dead;
		}
		memcpy(body, span.body, len);
		body[len] = '\0';
		/* Consume the frame before any callback can read more into the buffer. */
		c->rstart += span.size;
		if (c->rstart == c->rlen)
			c->rstart = c->rlen = 0;
		handle_frame(c, f, body, len);
	}
	return c->dead;
}

static int read_in(struct mc_client *c)
{
	for (int i = 0; i < MC_READS_PER_PROCESS && !c->dead; i++) {
		ssize_t n;

		if (c->rcap - c->rlen < MC_READ_CHUNK / 4) {
			size_t used = c->rlen - c->rstart;

			if (used > 0)
				memmove(c->rbuf, c->rbuf + c->rstart, used);
			c->rstart = 0;
			c->rlen = used;
			if (c->rcap - used < MC_READ_CHUNK / 4) {
				size_t cap = c->rcap ? c->rcap * 2 : MC_READ_CHUNK;
				uint8_t *nb = realloc(c->rbuf, cap);

				if (!nb) {
					client_fail(c, -ENOMEM);
					break;
				}
				c->rbuf = nb;
				c->rcap = cap;
			}
		}
		n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			/* Frames received before the end are still dispatched. */
			(void)dispatch_frames(c);
			client_fail(c, -ECONNRESET);
			break;
		}
		c->rlen += (size_t)n;
		(void)dispatch_frames(c);
	}
	return c->dead;
}

int mc_client_process(struct mc_client *c)
{
	if (!c)
		return -EINVAL;
	if (c->dead)
		return c->dead;
	(void)flush_out(c);
	(void)read_in(c);
	if (!c->dead)
		(void)flush_out(c);
	return c->dead;
}

/* Waits until @p is done, the connection fails, or @timeout_ms (monotonic) passes (-ETIMEDOUT).
 * @p must be linked; on timeout it is unlinked. @done may point at any flag instead. */
static int wait_done(struct mc_client *c, const bool *done, int timeout_ms)
{
	uint64_t end = now_ns(CLOCK_MONOTONIC) + (uint64_t)timeout_ms * 1000000u;

	while (!*done) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
		uint64_t now;
		int r;

		if (c->dead)
			return c->dead;
		if (c->olen > c->ostart)
			pfd.events |= POLLOUT;
		now = now_ns(CLOCK_MONOTONIC);
		if (timeout_ms >= 0 && now >= end)
			return -ETIMEDOUT;
		r = poll(&pfd, 1, timeout_ms < 0 ? -1 : (int)((end - now + 999999) / 1000000));
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r > 0)
			(void)mc_client_process(c);
	}
	return 0;
}

/* ---- connection ---- */

int mc_connect(const char *socket_path, const char *client_name, struct mc_client **ret)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_(mc_client_freep) struct mc_client *c = NULL;
	Middlecon__Frame hello;
	uint32_t versions[] = { FRAME_VERSION };
	int r;

	if (!socket_path || !ret)
		return -EINVAL;
	if (strlen(socket_path) >= sizeof(sa.sun_path))
		return -EINVAL;
	memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = -EBADF;
	c->next_id = 1;
	c->handlers_tail = &c->handlers;
	c->subs_tail = &c->subs;
	/* Until HELLO says otherwise, a frame the relay is sure to accept. */
	c->max_frame = 65536;

	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	do
		r = connect(c->fd, (struct sockaddr *)&sa, sizeof(sa));
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	r = fcntl(c->fd, F_GETFL);
	if (r < 0 || fcntl(c->fd, F_SETFL, r | O_NONBLOCK) < 0)
		return -errno;

	frame_init(&hello, MIDDLECON__FRAME__KIND__HELLO, 0);
	hello.n_versions = 1;
	hello.versions = versions;
	hello.max_frame_size = MC_CLIENT_MAX_FRAME;
	hello.client_name = (char *)(client_name ? client_name : "");
	r = send_frame(c, &hello, NULL, 0);
	if (r < 0)
		return r;
	r = wait_done(c, &c->hello_done, MC_CONTROL_TIMEOUT_MS);
	if (r < 0)
		return r;
	if (c->hello_status != MC_STATUS_OK || c->version != FRAME_VERSION)
		return -EPROTONOSUPPORT;
	if (c->max_frame < PROTO_IO_FRAME_MIN)
		return -EPROTO;
	*ret = TAKE_PTR(c);
	return 0;
}

static struct mc_route *routes_free(struct mc_route *r)
{
	while (r) {
		struct mc_route *next = r->next;

		free(r->pattern);
		free(r);
		r = next;
	}
	return NULL;
}

struct mc_client *mc_client_free(struct mc_client *c)
{
	if (!c)
		return NULL;
	client_fail(c, -ECANCELED);
	if (c->ev_read)
		event_free(c->ev_read);
	if (c->ev_write)
		event_free(c->ev_write);
	if (c->fd >= 0)
		close(c->fd);
	routes_free(c->handlers);
	routes_free(c->subs);
	free(c->rbuf);
	free(c->obuf);
	free(c);
	return NULL;
}

size_t mc_client_max_frame(const struct mc_client *c)
{
	return c->max_frame;
}

size_t mc_client_max_body(const struct mc_client *c, const char *service, const char *method)
{
	Middlecon__Frame f;
	size_t hs;

	/* The largest header a call can have: every varint at its widest. */
	frame_init(&f, MIDDLECON__FRAME__KIND__REQUEST, UINT64_MAX);
	f.service = (char *)(service ? service : "");
	f.method = (char *)(method ? method : "");
	f.deadline = UINT64_MAX;
	hs = frame_head_size(&f);
	return c->max_frame > hs ? c->max_frame - hs : 0;
}

int mc_client_fd(const struct mc_client *c)
{
	return c->fd;
}

bool mc_client_want_write(const struct mc_client *c)
{
	return !c->dead && c->olen > c->ostart;
}

int mc_client_flush(struct mc_client *c, int timeout_ms)
{
	uint64_t end =
		now_ns(CLOCK_MONOTONIC) + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000u;

	while (mc_client_want_write(c)) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN | POLLOUT };
		uint64_t now = now_ns(CLOCK_MONOTONIC);
		int r;

		if (timeout_ms >= 0 && now >= end)
			return -ETIMEDOUT;
		r = poll(&pfd, 1, timeout_ms < 0 ? -1 : (int)((end - now + 999999) / 1000000));
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r > 0)
			(void)mc_client_process(c);
	}
	return c->dead;
}

int mc_serve(struct mc_client *c)
{
	bool never = false;

	return wait_done(c, &never, -1);
}

/* ---- libevent ---- */

static void on_event(evutil_socket_t fd, short what, void *arg)
{
	(void)mc_client_process(arg);
}

int mc_client_attach_event_base(struct mc_client *c, struct event_base *base)
{
	if (!c || !base)
		return -EINVAL;
	if (c->base)
		return -EBUSY;
	c->ev_read = event_new(base, c->fd, EV_READ | EV_PERSIST, on_event, c);
	c->ev_write = event_new(base, c->fd, EV_WRITE | EV_PERSIST, on_event, c);
	if (!c->ev_read || !c->ev_write || event_add(c->ev_read, NULL) < 0) {
		if (c->ev_read)
			event_free(c->ev_read);
		if (c->ev_write)
			event_free(c->ev_write);
		c->ev_read = c->ev_write = NULL;
		return -ENOMEM;
	}
	c->base = base;
	update_write_event(c);
	/* Bytes already read while waiting in a blocking call would not wake the base. */
	if (c->rlen > c->rstart)
		event_active(c->ev_read, EV_READ, 0);
	return 0;
}

/* ---- calls ---- */

static int build_call(struct mc_client *c, Middlecon__Frame *f, const char *name,
		      const char *method, int timeout_ms)
{
	if (!c || !name || !*name || timeout_ms < 0)
		return -EINVAL;
	frame_init(f, MIDDLECON__FRAME__KIND__REQUEST, c->next_id++);
	f->service = (char *)name;
	f->method = (char *)(method ? method : "");
	if (timeout_ms > 0)
		f->deadline = now_ns(CLOCK_REALTIME) + (uint64_t)timeout_ms * 1000000u;
	return 0;
}

static int local_wait_ms(int timeout_ms)
{
	return (timeout_ms > 0 ? timeout_ms : MC_DEFAULT_DEADLINE_MS) + MC_DEADLINE_SLACK_MS;
}

static void send_cancel(struct mc_client *c, uint64_t id)
{
	Middlecon__Frame f;

	frame_init(&f, MIDDLECON__FRAME__KIND__CANCEL, id);
	(void)send_frame(c, &f, NULL, 0);
}

static int local_reply(int status, const char *error, struct mc_reply **ret)
{
	struct mc_reply *r;

	if (!ret)
		return status;
	r = reply_new(status, error, NULL, 0);
	if (!r)
		return -ENOMEM;
	*ret = r;
	return status;
}

int mc_call(struct mc_client *c, const char *name, const char *method, const void *body, size_t len,
	    int timeout_ms, struct mc_reply **ret)
{
	struct mc_pending p = {};
	Middlecon__Frame f;
	int r;

	if ((!body && len > 0))
		return -EINVAL;
	r = build_call(c, &f, name, method, timeout_ms);
	if (r < 0)
		return r;
	r = send_frame(c, &f, body, len);
	if (r == -EMSGSIZE)
		return local_reply(MC_STATUS_TOO_LARGE,
				   "request larger than the relay's maximum frame size", ret);
	if (r < 0)
		return r;
	p.id = f.id;
	pending_link(c, &p);
	r = wait_done(c, &p.done, local_wait_ms(timeout_ms));
	if (r == -ETIMEDOUT) {
		pending_unlink(c, &p);
		send_cancel(c, p.id);
		return local_reply(MC_STATUS_DEADLINE_EXCEEDED, "no answer from the relay", ret);
	}
	if (!p.done) {
		/* A poll() failure with the call still linked. */
		pending_unlink(c, &p);
		return r;
	}
	if (p.status < 0)
		return p.status;
	if (ret)
		*ret = p.reply;
	else
		mc_reply_free(p.reply);
	return p.status;
}

static void on_async_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct mc_pending *p = arg;
	struct mc_client *c = p->client;
	struct mc_reply *reply;

	pending_unlink(c, p);
	send_cancel(c, p->id);
	reply = reply_new(MC_STATUS_DEADLINE_EXCEEDED, "no answer from the relay", NULL, 0);
	pending_complete(p, reply ? MC_STATUS_DEADLINE_EXCEEDED : -ENOMEM, reply);
}

int mc_call_async(struct mc_client *c, const char *name, const char *method, const void *body,
		  size_t len, int timeout_ms, mc_reply_cb_t cb, void *userdata)
{
	_cleanup_free_ struct mc_pending *p = NULL;
	Middlecon__Frame f;
	struct timeval tv;
	int ms, r;

	if (!c || !cb || !c->base || (!body && len > 0))
		return -EINVAL;
	if (c->dead)
		return c->dead;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->cb = cb;
	p->userdata = userdata;
	p->client = c;
	p->timer = evtimer_new(c->base, on_async_timeout, p);
	if (!p->timer)
		return -ENOMEM;
	r = build_call(c, &f, name, method, timeout_ms);
	if (r >= 0)
		r = send_frame(c, &f, body, len);
	if (r < 0) {
		event_free(p->timer);
		return r == -EMSGSIZE ? MC_STATUS_TOO_LARGE : r;
	}
	ms = local_wait_ms(timeout_ms);
	tv = (struct timeval){ .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	evtimer_add(p->timer, &tv);
	p->id = f.id;
	pending_link(c, p);
	TAKE_PTR(p);
	return 0;
}

/* ---- responders, pub/sub ---- */

int mc_respond(struct mc_client *c, uint64_t token, int status, const void *body, size_t len)
{
	Middlecon__Frame f;
	int r;

	if (!c || status < 0 || (!body && len > 0))
		return -EINVAL;
	frame_init(&f, MIDDLECON__FRAME__KIND__REPLY, token);
	f.status = status;
	r = send_frame(c, &f, body, len);
	if (r == -EMSGSIZE)
		return mc_respond_error(c, token, MC_STATUS_TOO_LARGE,
					"reply larger than the relay's maximum frame size");
	return r;
}

int mc_respond_error(struct mc_client *c, uint64_t token, int status, const char *error)
{
	Middlecon__Frame f;

	if (!c || status < 0)
		return -EINVAL;
	frame_init(&f, MIDDLECON__FRAME__KIND__REPLY, token);
	f.status = status;
	f.error = (char *)(error ? error : "");
	return send_frame(c, &f, NULL, 0);
}

/* REGISTER or SUBSCRIBE @pattern and wait for the relay's answer. The route is added first, so
 * that a request routed right after the answer finds it, and removed again on refusal. */
static int add_route(struct mc_client *c, Middlecon__Frame__Kind kind, const char *pattern,
		     mc_handler_cb_t handler, mc_message_cb_t message, void *userdata)
{
	struct mc_route *route, ***tail = kind == MIDDLECON__FRAME__KIND__REGISTER ?
						  &c->handlers_tail :
						  &c->subs_tail;
	struct mc_route **link = *tail;
	struct mc_pending p = {};
	Middlecon__Frame f;
	int r;

	route = calloc(1, sizeof(*route));
	if (!route)
		return -ENOMEM;
	route->pattern = strdup(pattern);
	if (!route->pattern) {
		free(route);
		return -ENOMEM;
	}
	route->handler = handler;
	route->message = message;
	route->userdata = userdata;
	*link = route;
	*tail = &route->next;

	frame_init(&f, kind, c->next_id++);
	f.service = (char *)pattern;
	route->id = f.id;
	r = send_frame(c, &f, NULL, 0);
	if (r >= 0) {
		p.id = f.id;
		pending_link(c, &p);
		r = wait_done(c, &p.done, MC_CONTROL_TIMEOUT_MS);
		if (!p.done)
			pending_unlink(c, &p);
		else
			r = p.status;
		mc_reply_free(p.reply);
	}
	if (r != 0 && *tail == &route->next) {
		/* Refused: take the route off again (it is still the last one). */
		*link = NULL;
		*tail = link;
		free(route->pattern);
		free(route);
	}
	return r;
}

int mc_register(struct mc_client *c, const char *pattern, mc_handler_cb_t cb, void *userdata)
{
	if (!c || !pattern || !*pattern || !cb)
		return -EINVAL;
	return add_route(c, MIDDLECON__FRAME__KIND__REGISTER, pattern, cb, NULL, userdata);
}

int mc_subscribe(struct mc_client *c, const char *pattern, mc_message_cb_t cb, void *userdata)
{
	if (!c || !pattern || !*pattern || !cb)
		return -EINVAL;
	return add_route(c, MIDDLECON__FRAME__KIND__SUBSCRIBE, pattern, NULL, cb, userdata);
}

int mc_publish(struct mc_client *c, const char *name, const void *body, size_t len)
{
	Middlecon__Frame f;
	int r;

	if (!c || !name || !*name || (!body && len > 0))
		return -EINVAL;
	frame_init(&f, MIDDLECON__FRAME__KIND__PUBLISH, 0);
	f.service = (char *)name;
	r = send_frame(c, &f, body, len);
	return r == -EMSGSIZE ? MC_STATUS_TOO_LARGE : r;
}
