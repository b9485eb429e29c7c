/* SPDX-License-Identifier: MIT */
#include "middlecon/relay.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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
#include "libcommon/log.h"
#include "libcommon/proto_io.h"
#include "middlecon/acl.h"
#include "middlecon/config.h"
#include "middlecon/frame.h"
#include "proto/middlecon.pb-c.h"

#define LISTEN_BACKLOG 511
/* Registrations and subscriptions one connection may hold: each costs relay memory. */
#define RELAY_MAX_ROUTES_PER_CONN 4096
/* How long a connection being closed with a reason may take to read that reason. */
#define RELAY_CLOSE_GRACE_S 5
#define RELAY_NAME_MAX 255
#define RELAY_CLIENT_NAME_MAX 64
#define RELAY_N_STATUS 9

typedef Middlecon__Frame Frame;

#define KIND(k) MIDDLECON__FRAME__KIND__##k
#define STATUS(s) MIDDLECON__FRAME__STATUS__##s

struct relay_conn;

/*
 * A registration (REGISTER) or subscription (SUBSCRIBE) of one connection. Routing is a linear
 * scan of relay.routes with a token matcher: enough for the few hundred names a host has; a
 * subject trie is the next step if $sys.stats shows the scan mattering.
 */
struct relay_route {
	struct relay_route *prev, *next; /* relay.routes */
	struct relay_conn *conn; /* borrowed; the conn's teardown removes its routes */
	char *pattern; /* owned; validated, may hold * and > */
	uint64_t sub_id; /* SUBSCRIBE's id (stamped on delivered PUBLISH frames); 0 for REGISTER */
	bool subscribe;
	uint64_t last_used; /* relay.seq when last picked: least recently used = round-robin */
};

/*
 * One request in flight: on the requester's list by the requester's id and on the responder's
 * list by the relay's id. Freed by req_free() on the reply, the deadline, a CANCEL or either
 * side going away; the timer is owned.
 */
struct relay_req {
	struct relay_req *rq_prev, *rq_next; /* requester->requests */
	struct relay_req *rs_prev, *rs_next; /* responder->serving */
	struct relay_conn *requester, *responder;
	uint64_t caller_id; /* the id the requester chose */
	uint64_t relay_id; /* the id the responder sees, unique per responder connection */
	struct event *timer; /* the deadline */
};

struct relay_conn {
	struct relay *relay;
	struct relay_conn *prev, *next; /* relay.conns, or relay.dead once closed */
	struct bufferevent *bev; /* owned; BEV_OPT_CLOSE_ON_FREE closes the socket with it */
	uint64_t id; /* for logs and $sys.conns */
	struct ucred cred; /* SO_PEERCRED at accept: the only identity the relay believes */
	char *name; /* HELLO's client_name, owned, may be NULL */
	bool hello; /* HELLO was negotiated */
	bool closing; /* a final error is being written; nothing more is read */
	bool condemned; /* a send tore a frame: closed by the reaper, outside any iteration */
	bool dead; /* conn_close() ran; the struct lives until the reaper frees it */
	bool read_paused; /* output over the limit: not read until it drains to half */
	uint32_t peer_max_frame; /* HELLO's max_frame_size, 0 = the relay's own */
	uint64_t skip; /* bytes of an oversize frame still to be drained */
	size_t body_left; /* bytes of the current frame's body at the front of the input */
	uint64_t next_relay_id;
	struct relay_req *requests; /* in flight, this conn as requester */
	struct relay_req *serving; /* in flight, this conn as responder */
	uint32_t n_requests;
	uint32_t n_routes;
	uint64_t frames_in, frames_out, dropped;
};

struct relay_stats {
	uint64_t conns_total;
	uint64_t requests; /* forwarded to a responder */
	uint64_t replies; /* forwarded back to a requester */
	uint64_t late_replies; /* dropped: the request was no longer in flight */
	uint64_t published, delivered, pub_dropped;
	uint64_t read_pauses; /* a connection's reads paused because it did not read its output */
	uint64_t slow_closed; /* connections closed as slow consumers */
	uint64_t status[RELAY_N_STATUS]; /* non-OK statuses the relay itself answered */
};

struct relay {
	struct event_base *base; /* borrowed */
	const struct middlecon_config *cfg; /* borrowed */
	struct evconnlistener *listener;
	struct event *reap; /* frees closed connections outside their own callbacks */
	char *socket_path;
	char node[256]; /* origin stamped on forwarded frames */
	size_t max_frame, output_limit;
	struct relay_conn *conns, *dead;
	struct relay_route *routes;
	uint32_t n_conns;
	uint64_t next_conn_id, seq;
	struct relay_stats stats;
};

static void conn_close(struct relay_conn *c);

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * Names: 1..255 bytes of dot-separated non-empty tokens of [A-Za-z0-9_$-]. With @pattern, a
 * token may be "*" (one token) or, last only, ">" (one or more).
 */
static bool name_valid(const char *s, bool pattern)
{
	size_t len = strlen(s);

	if (len == 0 || len > RELAY_NAME_MAX)
		return false;
	for (;;) {
		const char *e = strchrnul(s, '.');
		size_t n = (size_t)(e - s);

		if (n == 0)
			return false;
		if (pattern && n == 1 && (*s == '*' || (*s == '>' && !*e))) {
			/* a wildcard token */
		} else {
			for (const char *p = s; p < e; p++)
				if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
				      (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' ||
				      *p == '$'))
					return false;
		}
		if (!*e)
			return true;
		s = e + 1;
	}
}

/* Both arguments are valid (name_valid()), so every token of @name is non-empty. */
static bool pattern_match(const char *pat, const char *name)
{
	for (;;) {
		const char *pe = strchrnul(pat, '.');
		const char *ne = strchrnul(name, '.');
		size_t pl = (size_t)(pe - pat);

		if (pl == 1 && *pat == '>')
			return true;
		if (!(pl == 1 && *pat == '*') &&
		    (pl != (size_t)(ne - name) || memcmp(pat, name, pl) != 0))
			return false;
		if (!*pe || !*ne)
			return !*pe && !*ne;
		pat = pe + 1;
		name = ne + 1;
	}
}

static size_t conn_max_frame(const struct relay_conn *c)
{
	size_t m = c->relay->max_frame;

	if (c->peer_max_frame >= PROTO_IO_FRAME_MIN && c->peer_max_frame < m)
		m = c->peer_max_frame;
	return m;
}

static size_t conn_queued(const struct relay_conn *c)
{
	return evbuffer_get_length(bufferevent_get_output(c->bev));
}

static bool conn_overloaded(const struct relay_conn *c)
{
	return conn_queued(c) > c->relay->output_limit;
}

static void relay_schedule_reap(struct relay *relay)
{
	event_active(relay->reap, 0, 0);
}

/*
 * Queues one frame: @f's header (re-packed; f->version is set), then @body_len body bytes moved
 * from the front of @src without copying them (evbuffer_remove_buffer() hands over whole chains),
 * or copied from @body. When nothing was queued before, the frame is written at once rather than
 * on the next loop pass: the latency rule is "write a frame as soon as it is complete", and the
 * bufferevent's own write event only finds the rest when the socket is full.
 *
 * Returns 0, -EPIPE (the conn is closed), -EMSGSIZE (over the conn's max frame; nothing queued)
 * or -ENOMEM. A failure after the header was queued would leave a torn frame, so the conn is
 * condemned: the reaper closes it outside any iteration the caller may be in.
 */
static int conn_send(struct relay_conn *c, Frame *f, struct evbuffer *src, const void *body,
		     size_t body_len)
{
	uint8_t stack[512];
	_cleanup_free_ uint8_t *heap = NULL;
	uint8_t *buf = stack;
	struct evbuffer *out;
	struct iovec iov[2];
	size_t need, queued;
	int r;

	if (c->dead || c->condemned)
		return -EPIPE;
	f->version = FRAME_VERSION;
	need = frame_head_size(f);
	if (need > sizeof(stack)) {
		heap = malloc(need);
		if (!heap)
			return -ENOMEM;
		buf = heap;
	}
	r = frame_encode(f, NULL, body_len, conn_max_frame(c), buf, need, iov);
	if (r < 0)
		return r;
	out = bufferevent_get_output(c->bev);
	queued = evbuffer_get_length(out);
	if (evbuffer_add(out, buf, iov[0].iov_len) < 0)
		return -ENOMEM;
	if (body_len > 0) {
		if (src)
			r = evbuffer_remove_buffer(src, out, body_len) == (int)body_len ? 0 :
											  -ENOMEM;
		else
			r = evbuffer_add(out, body, body_len) < 0 ? -ENOMEM : 0;
		if (r < 0) {
			c->condemned = true;
			relay_schedule_reap(c->relay);
			return r;
		}
	}
	c->frames_out++;
	if (queued == 0)
		/* EAGAIN leaves the rest queued for the bufferevent; a real error surfaces there. */
		(void)evbuffer_write(out, bufferevent_getfd(c->bev));
	/*
	 * Backpressure: a peer that does not read what it is sent is not read either, so it cannot
	 * make the relay queue answers (OVERLOADED replies included) without bound. Frames routed
	 * to it from others are refused or dropped by conn_overloaded() at the routing points.
	 * A responder with requests in flight is still read: its replies are what drains its
	 * queue, and a responder that blocks writing a reply before it reads the next request
	 * would otherwise deadlock with the relay (and be closed as a slow consumer).
	 */
	if (!c->read_paused && !c->closing && !c->serving && conn_overloaded(c)) {
		c->read_paused = true;
		c->relay->stats.read_pauses++;
		bufferevent_disable(c->bev, EV_READ);
		bufferevent_setwatermark(c->bev, EV_WRITE, c->relay->output_limit / 2, 0);
		log_debug("Connection %" PRIu64 " (pid %d): %zu bytes queued, reads paused", c->id,
			  (int)c->cred.pid, conn_queued(c));
	}
	return 0;
}

static void reply_status(struct relay_conn *c, uint64_t id, int status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Answers @c itself with REPLY {id, status, error}. */
static void reply_status(struct relay_conn *c, uint64_t id, int status, const char *fmt, ...)
{
	Frame f = MIDDLECON__FRAME__INIT;
	char error[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(error, sizeof(error), fmt, ap);
	va_end(ap);
	f.kind = KIND(REPLY);
	f.id = id;
	f.status = status;
	f.error = error;
	if (status > 0 && status < RELAY_N_STATUS)
		c->relay->stats.status[status]++;
	(void)conn_send(c, &f, NULL, NULL, 0);
}

/* Tells a responder that a request it holds is off. */
static void send_cancel(struct relay_conn *responder, uint64_t relay_id, int status)
{
	Frame f = MIDDLECON__FRAME__INIT;

	f.kind = KIND(CANCEL);
	f.id = relay_id;
	f.status = status;
	(void)conn_send(responder, &f, NULL, NULL, 0);
}

static void req_free(struct relay_req *q)
{
	if (q->rq_prev)
		q->rq_prev->rq_next = q->rq_next;
	else
		q->requester->requests = q->rq_next;
	if (q->rq_next)
		q->rq_next->rq_prev = q->rq_prev;
	if (q->rs_prev)
		q->rs_prev->rs_next = q->rs_next;
	else
		q->responder->serving = q->rs_next;
	if (q->rs_next)
		q->rs_next->rs_prev = q->rs_prev;
	q->requester->n_requests--;
	if (q->timer)
		event_free(q->timer);
	free(q);
}

static void route_free(struct relay *relay, struct relay_route *rt)
{
	if (rt->prev)
		rt->prev->next = rt->next;
	else
		relay->routes = rt->next;
	if (rt->next)
		rt->next->prev = rt->prev;
	rt->conn->n_routes--;
	free(rt->pattern);
	free(rt);
}

/*
 * Takes @c out of service at once: its requesters get PEER_GONE, its responders CANCEL
 * (CANCELLED), its routes go. The socket and struct are freed by the reaper, so callers up the
 * stack (the conn's own read callback) may still look at c->dead.
 */
static void conn_close(struct relay_conn *c)
{
	struct relay *relay = c->relay;
	struct relay_route *rt, *next;

	if (c->dead)
		return;
	c->dead = true;
	while (c->serving) {
		struct relay_req *q = c->serving;

		reply_status(q->requester, q->caller_id, STATUS(PEER_GONE),
			     "the responder went away");
		req_free(q);
	}
	while (c->requests) {
		struct relay_req *q = c->requests;

		send_cancel(q->responder, q->relay_id, STATUS(CANCELLED));
		relay->stats.status[STATUS(CANCELLED)]++;
		req_free(q);
	}
	for (rt = relay->routes; rt; rt = next) {
		next = rt->next;
		if (rt->conn == c)
			route_free(relay, rt);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		relay->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = NULL;
	c->next = relay->dead;
	if (relay->dead)
		relay->dead->prev = c;
	relay->dead = c;
	relay->n_conns--;
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	log_debug("Connection %" PRIu64 " (pid %d) closed", c->id, (int)c->cred.pid);
	relay_schedule_reap(relay);
}

/* Frees every closed connection; runs from the loop, never inside a connection's callback. */
static void reap_cb(evutil_socket_t fd, short events, void *userdata)
{
	struct relay *relay = userdata;
	struct relay_conn *c, *next;

	for (c = relay->conns; c; c = next) {
		next = c->next;
		if (c->condemned)
			conn_close(c);
	}
	while (relay->dead) {
		c = relay->dead;
		relay->dead = c->next;
		/* BEV_OPT_CLOSE_ON_FREE: this closes the socket. */
		bufferevent_free(c->bev);
		free(c->name);
		free(c);
	}
}

/* Closes @c once @c's final frames are written (or after a grace period). */
static void conn_close_after_flush(struct relay_conn *c)
{
	struct timeval grace = { .tv_sec = RELAY_CLOSE_GRACE_S };

	if (c->dead)
		return;
	c->closing = true;
	bufferevent_disable(c->bev, EV_READ);
	if (conn_queued(c) == 0) {
		conn_close(c);
		return;
	}
	bufferevent_set_timeouts(c->bev, NULL, &grace);
}

/* A protocol error that ends the connection: BAD_REQUEST with @id and a reason, then close. */
static void conn_fail(struct relay_conn *c, uint64_t id, const char *why)
{
	log_debug("Connection %" PRIu64 " (pid %d): %s, closing", c->id, (int)c->cred.pid, why);
	reply_status(c, id, STATUS(BAD_REQUEST), "%s", why);
	conn_close_after_flush(c);
}

static void handle_hello(struct relay_conn *c, const Frame *f)
{
	Frame out = MIDDLECON__FRAME__INIT;
	bool common = false;

	if (c->hello) {
		reply_status(c, f->id, STATUS(BAD_REQUEST), "HELLO was already negotiated");
		return;
	}
	for (size_t i = 0; i < f->n_versions; i++)
		if (f->versions[i] == FRAME_VERSION)
			common = true;
	out.kind = KIND(HELLO);
	out.id = f->id;
	out.max_frame_size = (uint32_t)c->relay->max_frame;
	if (!common) {
		out.status = STATUS(BAD_REQUEST);
		out.error = (char *)"no common protocol version (this relay speaks 1)";
		c->relay->stats.status[STATUS(BAD_REQUEST)]++;
		(void)conn_send(c, &out, NULL, NULL, 0);
		conn_close_after_flush(c);
		return;
	}
	c->hello = true;
	c->peer_max_frame = f->max_frame_size;
	if (f->client_name[0])
		c->name = strndup(f->client_name, RELAY_CLIENT_NAME_MAX); /* NULL on OOM is fine */
	(void)conn_send(c, &out, NULL, NULL, 0);
}

/*
 * Asks the ACL whether @c may do @op on f->service (a pattern for REGISTER and SUBSCRIBE); if
 * not, answers DENIED with the deciding rule. The identity is the SO_PEERCRED of accept time.
 */
static bool conn_acl_allows(struct relay_conn *c, const Frame *f, enum acl_op op, bool pattern)
{
	const char *prefix = NULL;

	if (acl_check(c->relay->cfg->acl, op, f->service, pattern, (uint32_t)c->cred.uid,
		      (uint32_t)c->cred.gid, &prefix))
		return true;
	/* Debug only: a client could otherwise fill the log with its own refusals. */
	log_debug("Connection %" PRIu64 " (uid %u): %s '%s' denied", c->id, (unsigned)c->cred.uid,
		  op == ACL_REGISTER ? "register" : "call", f->service);
	reply_status(c, f->id, STATUS(DENIED), "uid %u gid %u may not %s '%.64s' (%s%s%s)",
		     (unsigned)c->cred.uid, (unsigned)c->cred.gid,
		     op == ACL_REGISTER ? "register" : "call", f->service,
		     prefix ? "ACL rule for '" : "acl_default", prefix ? prefix : "",
		     prefix ? "'" : "");
	return false;
}

static void handle_register(struct relay_conn *c, const Frame *f, bool subscribe)
{
	struct relay *relay = c->relay;
	struct relay_route *rt;

	if (!name_valid(f->service, true)) {
		reply_status(c, f->id, STATUS(BAD_REQUEST), "invalid pattern '%.64s'", f->service);
		return;
	}
	/* $sys.* is answered by the relay itself; nobody may pose as it. */
	if (!subscribe && strncmp(f->service, "$sys", 4) == 0 &&
	    (f->service[4] == '.' || !f->service[4])) {
		reply_status(c, f->id, STATUS(DENIED), "$sys is reserved for the relay");
		return;
	}
	if (!conn_acl_allows(c, f, subscribe ? ACL_CALL : ACL_REGISTER, true))
		return;
	if (!subscribe)
		for (rt = relay->routes; rt; rt = rt->next)
			if (rt->conn == c && !rt->subscribe &&
			    strcmp(rt->pattern, f->service) == 0) {
				reply_status(c, f->id, STATUS(OK), "already registered");
				return;
			}
	if (c->n_routes >= RELAY_MAX_ROUTES_PER_CONN) {
		reply_status(c, f->id, STATUS(OVERLOADED), "too many registrations");
		return;
	}
	rt = calloc(1, sizeof(*rt));
	if (!rt || !(rt->pattern = strdup(f->service))) {
		free(rt);
		{
			reply_status(c, f->id, STATUS(OVERLOADED), "out of memory");
			return;
		}
	}
	rt->conn = c;
	rt->subscribe = subscribe;
	rt->sub_id = subscribe ? f->id : 0;
	rt->next = relay->routes;
	if (relay->routes)
		relay->routes->prev = rt;
	relay->routes = rt;
	c->n_routes++;
	log_debug("Connection %" PRIu64 " %s '%s'", c->id,
		  subscribe ? "subscribed to" : "registered", f->service);
	reply_status(c, f->id, STATUS(OK), "%s", "");
}

static void handle_unregister(struct relay_conn *c, const Frame *f)
{
	struct relay_route *rt, *found = NULL;

	for (rt = c->relay->routes; rt && !found; rt = rt->next)
		if (rt->conn == c && strcmp(rt->pattern, f->service) == 0 &&
		    (!rt->subscribe || rt->sub_id == f->id))
			found = rt;
	if (!found) {
		reply_status(c, f->id, STATUS(BAD_REQUEST), "'%.64s' is not registered",
			     f->service);
		return;
	}
	route_free(c->relay, found);
	reply_status(c, f->id, STATUS(OK), "%s", "");
}

static void deadline_cb(evutil_socket_t fd, short events, void *userdata)
{
	struct relay_req *q = userdata;

	reply_status(q->requester, q->caller_id, STATUS(DEADLINE_EXCEEDED), "the deadline passed");
	send_cancel(q->responder, q->relay_id, STATUS(DEADLINE_EXCEEDED));
	req_free(q);
}

/* Picks the least recently used responder among those matching @name, skipping overloaded
 * ones. Returns the route, or NULL with *ret_overloaded telling why. */
static struct relay_route *pick_responder(struct relay *relay, const char *name,
					  bool *ret_overloaded)
{
	struct relay_route *best = NULL;

	*ret_overloaded = false;
	for (struct relay_route *rt = relay->routes; rt; rt = rt->next) {
		if (rt->subscribe || rt->conn->closing || rt->conn->condemned ||
		    !pattern_match(rt->pattern, name))
			continue;
		if (conn_overloaded(rt->conn)) {
			*ret_overloaded = true;
			continue;
		}
		if (!best || rt->last_used < best->last_used)
			best = rt;
	}
	return best;
}

static int sys_answer(struct relay_conn *c, const Frame *f);

static void handle_request(struct relay_conn *c, const Frame *f, size_t body_len)
{
	struct relay *relay = c->relay;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	_cleanup_free_ Middlecon__Frame__Header **headers = NULL;
	Middlecon__Frame__Header cred[3] = { MIDDLECON__FRAME__HEADER__INIT,
					     MIDDLECON__FRAME__HEADER__INIT,
					     MIDDLECON__FRAME__HEADER__INIT };
	char uid[16], gid[16], pid[16];
	struct relay_route *rt;
	struct relay_req *q;
	struct timeval tv;
	uint64_t now, deadline;
	bool overloaded;
	Frame out;
	size_t n = 0;
	int r;

	if (!name_valid(f->service, false)) {
		reply_status(c, f->id, STATUS(BAD_REQUEST), "invalid name '%.64s'", f->service);
		return;
	}
	if (!conn_acl_allows(c, f, ACL_CALL, false))
		return;
	if (strncmp(f->service, "$sys.", 5) == 0) {
		(void)sys_answer(c, f);
		return;
	}
	if (c->n_requests >= relay->cfg->max_inflight) {
		reply_status(c, f->id, STATUS(OVERLOADED), "%u requests in flight", c->n_requests);
		return;
	}
	now = now_ns();
	deadline = f->deadline ? f->deadline :
				 now + (uint64_t)relay->cfg->default_deadline_ms * 1000000u;
	if (deadline <= now) {
		reply_status(c, f->id, STATUS(DEADLINE_EXCEEDED), "the deadline had passed");
		return;
	}
	rt = pick_responder(relay, f->service, &overloaded);
	if (!rt) {
		if (overloaded) {
			reply_status(c, f->id, STATUS(OVERLOADED),
				     "every responder for '%.64s' is backed up", f->service);
			return;
		}
		{
			reply_status(c, f->id, STATUS(NO_RESPONDERS), "no responders for '%.64s'",
				     f->service);
			return;
		}
	}

	/*
	 * The caller's credentials come from SO_PEERCRED; caller-* headers the client sent itself
	 * are dropped so a responder can trust the ones it sees.
	 */
	headers = calloc(f->n_headers + ELEMENTSOF(cred), sizeof(*headers));
	if (!headers) {
		reply_status(c, f->id, STATUS(OVERLOADED), "out of memory");
		return;
	}
	for (size_t i = 0; i < f->n_headers; i++)
		if (strncmp(f->headers[i]->key, "caller-", 7) != 0)
			headers[n++] = f->headers[i];
	snprintf(uid, sizeof(uid), "%u", (unsigned)c->cred.uid);
	snprintf(gid, sizeof(gid), "%u", (unsigned)c->cred.gid);
	snprintf(pid, sizeof(pid), "%d", (int)c->cred.pid);
	cred[0].key = (char *)"caller-uid";
	cred[0].value = (ProtobufCBinaryData){ strlen(uid), (uint8_t *)uid };
	cred[1].key = (char *)"caller-gid";
	cred[1].value = (ProtobufCBinaryData){ strlen(gid), (uint8_t *)gid };
	cred[2].key = (char *)"caller-pid";
	cred[2].value = (ProtobufCBinaryData){ strlen(pid), (uint8_t *)pid };
	for (size_t i = 0; i < ELEMENTSOF(cred); i++)
		headers[n++] = &cred[i];

	q = calloc(1, sizeof(*q));
	if (!q) {
		reply_status(c, f->id, STATUS(OVERLOADED), "out of memory");
		return;
	}
	q->requester = c;
	q->responder = rt->conn;
	q->caller_id = f->id;
	q->relay_id = ++rt->conn->next_relay_id;
	q->timer = evtimer_new(relay->base, deadline_cb, q);
	tv.tv_sec = (time_t)((deadline - now) / 1000000000u);
	tv.tv_usec = (suseconds_t)((deadline - now) % 1000000000u / 1000u);
	if (!q->timer || evtimer_add(q->timer, &tv) < 0) {
		if (q->timer)
			event_free(q->timer);
		free(q);
		{
			reply_status(c, f->id, STATUS(OVERLOADED), "out of memory");
			return;
		}
	}

	/* A shallow copy: the strings and the caller's headers stay owned by @f. */
	out = *f;
	out.id = q->relay_id;
	out.deadline = deadline;
	out.origin = relay->node;
	out.n_headers = n;
	out.headers = headers;
	out.status = STATUS(OK);
	r = conn_send(rt->conn, &out, in, NULL, body_len);
	if (r < 0) {
		event_free(q->timer);
		free(q);
		if (r == -EMSGSIZE) {
			reply_status(c, f->id, STATUS(TOO_LARGE),
				     "the request is over the responder's frame limit");
			return;
		}
		{
			reply_status(c, f->id, STATUS(PEER_GONE), "the responder went away");
			return;
		}
	}
	c->body_left = 0;
	rt->last_used = ++relay->seq;
	relay->stats.requests++;

	q->rq_next = c->requests;
	if (c->requests)
		c->requests->rq_prev = q;
	c->requests = q;
	q->rs_next = rt->conn->serving;
	if (rt->conn->serving)
		rt->conn->serving->rs_prev = q;
	rt->conn->serving = q;
	c->n_requests++;
}

static void handle_reply(struct relay_conn *c, const Frame *f, size_t body_len)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct relay_conn *requester;
	struct relay_req *q;
	Frame out;
	int r;

	/* Linear in the responder's requests in flight (max_inflight per requester). */
	for (q = c->serving; q; q = q->rs_next)
		if (q->relay_id == f->id)
			break;
	if (!q) {
		/* The deadline passed, or the requester cancelled or left: dropped by design. */
		c->relay->stats.late_replies++;
		c->dropped++;
		return;
	}
	requester = q->requester;
	out = *f;
	out.id = q->caller_id;
	/*
	 * A requester that does not read its replies is a slow consumer: it gets a small
	 * OVERLOADED in place of the body, so its queue grows by at most max_inflight headers.
	 */
	if (conn_overloaded(requester)) {
		reply_status(requester, q->caller_id, STATUS(OVERLOADED),
			     "reply dropped: your output buffer is full");
	} else {
		r = conn_send(requester, &out, in, NULL, body_len);
		if (r == 0) {
			c->body_left = 0;
			c->relay->stats.replies++;
		} else if (r == -EMSGSIZE) {
			reply_status(requester, q->caller_id, STATUS(TOO_LARGE),
				     "the reply is over your frame limit");
		}
	}
	req_free(q);
}

static void handle_cancel(struct relay_conn *c, const Frame *f)
{
	for (struct relay_req *q = c->requests; q; q = q->rq_next)
		if (q->caller_id == f->id) {
			send_cancel(q->responder, q->relay_id, STATUS(CANCELLED));
			c->relay->stats.status[STATUS(CANCELLED)]++;
			req_free(q);
			return;
		}
}

static void handle_publish(struct relay_conn *c, const Frame *f, size_t body_len)
{
	struct relay *relay = c->relay;
	const void *body = NULL;
	Frame out;

	if (!name_valid(f->service, false)) {
		reply_status(c, f->id, STATUS(BAD_REQUEST), "invalid name '%.64s'", f->service);
		return;
	}
	/* PUBLISH has no reply; a refused one is the exception, answered REPLY {id, DENIED}. */
	if (!conn_acl_allows(c, f, ACL_CALL, false))
		return;
	relay->stats.published++;
	/* Fan-out copies the body once per subscriber anyway; make it contiguous once. */
	if (body_len > 0) {
		body = evbuffer_pullup(bufferevent_get_input(c->bev), (ssize_t)body_len);
		if (!body)
			return;
	}
	out = *f;
	out.origin = c->relay->node;
	/* conn_send() never closes a conn (it condemns), so the route list stays intact. */
	for (struct relay_route *rt = relay->routes; rt; rt = rt->next) {
		if (!rt->subscribe || rt->conn->closing || !pattern_match(rt->pattern, f->service))
			continue;
		if (conn_overloaded(rt->conn)) {
			relay->stats.pub_dropped++;
			rt->conn->dropped++;
			continue;
		}
		/* The subscription's id tells a subscriber with several which one matched. */
		out.id = rt->sub_id;
		if (conn_send(rt->conn, &out, NULL, body, body_len) == 0)
			relay->stats.delivered++;
		else
			relay->stats.pub_dropped++;
	}
}

static void handle_ping(struct relay_conn *c, const Frame *f)
{
	Frame out = MIDDLECON__FRAME__INIT;

	out.kind = KIND(PONG);
	out.id = f->id;
	(void)conn_send(c, &out, NULL, NULL, 0);
}

static json_t *sys_list(struct relay *relay)
{
	json_t *a = json_array();

	for (struct relay_route *rt = relay->routes; a && rt; rt = rt->next)
		if (json_array_append_new(
			    a, json_pack("{s:s, s:s, s:I, s:i, s:i, s:s?}", "name", rt->pattern,
					 "kind", rt->subscribe ? "subscribe" : "register", "conn",
					 (json_int_t)rt->conn->id, "pid", (int)rt->conn->cred.pid,
					 "uid", (int)rt->conn->cred.uid, "client",
					 rt->conn->name)) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

static json_t *sys_conns(struct relay *relay)
{
	json_t *a = json_array();

	for (struct relay_conn *c = relay->conns; a && c; c = c->next)
		if (json_array_append_new(
			    a,
			    json_pack("{s:I, s:i, s:i, s:i, s:s?, s:i, s:i, s:I, s:I, s:I, s:I}",
				      "id", (json_int_t)c->id, "uid", (int)c->cred.uid, "gid",
				      (int)c->cred.gid, "pid", (int)c->cred.pid, "client", c->name,
				      "inflight", (int)c->n_requests, "routes", (int)c->n_routes,
				      "frames_in", (json_int_t)c->frames_in, "frames_out",
				      (json_int_t)c->frames_out, "dropped", (json_int_t)c->dropped,
				      "output_bytes", (json_int_t)conn_queued(c))) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

static json_t *sys_stats(struct relay *relay)
{
	const struct relay_stats *s = &relay->stats;
	json_t *o = json_pack("{s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "connections",
			      (int)relay->n_conns, "read_pauses", (json_int_t)s->read_pauses,
			      "slow_consumers_closed", (json_int_t)s->slow_closed,
			      "connections_total", (json_int_t)s->conns_total, "requests",
			      (json_int_t)s->requests, "replies", (json_int_t)s->replies,
			      "late_replies", (json_int_t)s->late_replies, "published",
			      (json_int_t)s->published, "delivered", (json_int_t)s->delivered,
			      "publish_dropped", (json_int_t)s->pub_dropped);
	json_t *st = json_object();

	if (!o || !st) {
		json_decref(o);
		json_decref(st);
		return NULL;
	}
	for (int i = 1; i < RELAY_N_STATUS; i++)
		json_object_set_new(st, frame_status_to_string(i),
				    json_integer((json_int_t)s->status[i]));
	json_object_set_new(o, "statuses", st);
	return o;
}

/* Answers a request to $sys.* with a JSON body. Returns 0 or -ENOMEM. */
static int sys_answer(struct relay_conn *c, const Frame *f)
{
	Frame out = MIDDLECON__FRAME__INIT;
	json_auto_t *j = NULL;
	_cleanup_free_ char *text = NULL;
	const char *what = f->service + 5;

	if (strcmp(what, "list") == 0)
		j = sys_list(c->relay);
	else if (strcmp(what, "conns") == 0)
		j = sys_conns(c->relay);
	else if (strcmp(what, "stats") == 0)
		j = sys_stats(c->relay);
	else {
		reply_status(c, f->id, STATUS(NO_RESPONDERS), "no $sys service '%.64s'", what);
		return 0;
	}
	if (j)
		text = json_dumps(j, JSON_COMPACT);
	if (!text) {
		reply_status(c, f->id, STATUS(OVERLOADED), "out of memory");
		return -ENOMEM;
	}
	out.kind = KIND(REPLY);
	out.id = f->id;
	if (conn_send(c, &out, NULL, text, strlen(text)) == -EMSGSIZE)
		reply_status(c, f->id, STATUS(TOO_LARGE), "the answer is over the frame limit");
	return 0;
}

static void conn_dispatch(struct relay_conn *c, const Frame *f, size_t body_len)
{
	if (f->kind == KIND(HELLO)) {
		handle_hello(c, f);
		return;
	}
	if (!c->hello)
		return conn_fail(c, f->id, "the first frame must be HELLO");
	switch (f->kind) {
	case KIND(REGISTER): {
		handle_register(c, f, false);
		return;
	}
	case KIND(SUBSCRIBE): {
		handle_register(c, f, true);
		return;
	}
	case KIND(UNREGISTER): {
		handle_unregister(c, f);
		return;
	}
	case KIND(REQUEST): {
		handle_request(c, f, body_len);
		return;
	}
	case KIND(REPLY): {
		handle_reply(c, f, body_len);
		return;
	}
	case KIND(CANCEL): {
		handle_cancel(c, f);
		return;
	}
	case KIND(PUBLISH): {
		handle_publish(c, f, body_len);
		return;
	}
	case KIND(PING): {
		handle_ping(c, f);
		return;
	}
	case KIND(PONG):
		return;
	default:
		/* Unknown kinds (a newer client) and relay-to-relay kinds on a local socket. */
		{
			reply_status(c, f->id, STATUS(BAD_REQUEST), "unsupported frame kind %d",
				     (int)f->kind);
			return;
		}
	}
}

static void conn_want(struct relay_conn *c, size_t bytes)
{
	bufferevent_setwatermark(c->bev, EV_READ, bytes, 0);
}

/*
 * Handles the frame at the front of @in (@len bytes queued, at least the prefix). Only the
 * prefix and header are made contiguous; the body stays in the evbuffer's chains and is moved
 * to the destination. Returns 1 when a frame was consumed, 0 when more bytes are needed (the
 * read watermark is set to them), -1 when the connection is closing.
 */
static int conn_read_frame(struct relay_conn *c, struct evbuffer *in, size_t len)
{
	struct relay *relay = c->relay;
	_cleanup_(frame_freep) Frame *f = NULL;
	struct proto_io_frame pf, span = { 0 };
	const uint8_t *p;
	size_t head;
	bool oversize;
	int r;

	p = evbuffer_pullup(in, PROTO_IO_PREFIX_SIZE);
	if (!p) {
		conn_close(c);
		return -1;
	}
	r = proto_io_decode(p, PROTO_IO_PREFIX_SIZE, relay->max_frame, &pf);
	if (r == -EBADMSG) {
		relay->stats.status[STATUS(BAD_REQUEST)]++;
		conn_fail(c, 0, "malformed frame prefix");
		return -1;
	}
	oversize = r == -EMSGSIZE;
	head = PROTO_IO_PREFIX_SIZE + be32(p + 4);
	/* proto_io_decode() checked header_len only for a frame within the limit. */
	if (oversize &&
	    (head == PROTO_IO_PREFIX_SIZE || head > pf.size || head > relay->max_frame)) {
		conn_fail(c, 0, "malformed oversize frame prefix");
		return -1;
	}
	if (len < (oversize ? head : pf.size)) {
		conn_want(c, oversize ? head : pf.size);
		return 0;
	}
	p = evbuffer_pullup(in, (ssize_t)head);
	if (!p) {
		conn_close(c);
		return -1;
	}
	span.header = p + PROTO_IO_PREFIX_SIZE;
	span.header_len = head - PROTO_IO_PREFIX_SIZE;
	if (frame_unpack(&span, &f) < 0) {
		conn_fail(c, 0, "malformed frame header");
		return -1;
	}
	evbuffer_drain(in, head);
	c->frames_in++;
	if (oversize) {
		/* Answered now, from the header; the body is drained as it arrives, never held. */
		reply_status(c, f->id, STATUS(TOO_LARGE), "frame of %zu bytes, the limit is %zu",
			     pf.size, relay->max_frame);
		c->skip = pf.size - head;
		return 1;
	}
	c->body_left = pf.size - head;
	conn_dispatch(c, f, c->body_left);
	if (c->body_left > 0)
		evbuffer_drain(in, c->body_left);
	c->body_left = 0;
	return c->dead || c->closing ? -1 : 1;
}

static void conn_read_cb(struct bufferevent *bev, void *userdata)
{
	struct relay_conn *c = userdata;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (!c->dead && !c->closing && !c->read_paused) {
		size_t len = evbuffer_get_length(in);

		if (c->skip > 0) {
			size_t n = len < c->skip ? len : (size_t)c->skip;

			evbuffer_drain(in, n);
			c->skip -= n;
			if (c->skip > 0) {
				conn_want(c, 1);
				return;
			}
			continue;
		}
		if (len < PROTO_IO_PREFIX_SIZE) {
			conn_want(c, PROTO_IO_PREFIX_SIZE);
			return;
		}
		if (conn_read_frame(c, in, len) <= 0)
			return;
	}
}

static void conn_write_cb(struct bufferevent *bev, void *userdata)
{
	struct relay_conn *c = userdata;

	if (c->closing && conn_queued(c) == 0) {
		conn_close(c);
		return;
	}
	if (c->read_paused && !c->closing && conn_queued(c) <= c->relay->output_limit / 2) {
		c->read_paused = false;
		bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
		if (bufferevent_enable(c->bev, EV_READ) < 0) {
			conn_close(c);
			return;
		}
		log_debug("Connection %" PRIu64 ": output drained, reads resumed", c->id);
		/* Frames already in the input buffer raise no new read event. */
		conn_read_cb(c->bev, c);
	}
}

static void conn_event_cb(struct bufferevent *bev, short events, void *userdata)
{
	struct relay_conn *c = userdata;

	if ((events & BEV_EVENT_TIMEOUT) && !c->closing) {
		/* The write timeout: queued output made no progress for slow_consumer_timeout_ms. */
		c->relay->stats.slow_closed++;
		log_notice("Connection %" PRIu64
			   " (pid %d uid %u) closed: slow consumer, %zu bytes "
			   "unread for %u ms",
			   c->id, (int)c->cred.pid, (unsigned)c->cred.uid, conn_queued(c),
			   c->relay->cfg->slow_consumer_timeout_ms);
	}
	if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		conn_close(c);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
		      void *userdata)
{
	struct relay *relay = userdata;
	struct relay_conn *c;
	socklen_t len = sizeof(c->cred);
	/* Armed by libevent only while output waits for the socket to take it. */
	struct timeval slow = {
		.tv_sec = relay->cfg->slow_consumer_timeout_ms / 1000,
		.tv_usec = (suseconds_t)(relay->cfg->slow_consumer_timeout_ms % 1000) * 1000,
	};

	if (relay->n_conns >= relay->cfg->max_connections) {
		log_warn("Refusing a connection: %u connections open", relay->n_conns);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		log_oom();
		close(fd);
		return;
	}
	/* The kernel's view of the peer at connect time: uid, gid and pid cannot be forged. */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &len) < 0) {
		log_warn_errno(errno, "Cannot read the peer's credentials, refusing it: %m");
		free(c);
		close(fd);
		return;
	}
	c->bev = bufferevent_socket_new(relay->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		log_oom();
		free(c);
		close(fd);
		return;
	}
	c->relay = relay;
	c->id = ++relay->next_conn_id;
	bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	bufferevent_set_timeouts(c->bev, NULL, &slow);
	conn_want(c, PROTO_IO_PREFIX_SIZE);
	if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) < 0) {
		bufferevent_free(c->bev);
		free(c);
		return;
	}
	c->next = relay->conns;
	if (relay->conns)
		relay->conns->prev = c;
	relay->conns = c;
	relay->n_conns++;
	relay->stats.conns_total++;
	log_debug("Connection %" PRIu64 " from pid %d uid %u", c->id, (int)c->cred.pid,
		  (unsigned)c->cred.uid);
}

/* Returns 0 if nothing answers at @sa (a stale file, now removed), -EADDRINUSE if a relay does. */
static int remove_stale_socket(const struct sockaddr_un *sa)
{
	_cleanup_close_ int fd = -EBADF;
	int r;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return negative_errno();
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
		return -EADDRINUSE;
	if (errno == ENOENT)
		return 0;
	r = RET_NERRNO(unlink(sa->sun_path));
	return r == -ENOENT ? 0 : r;
}

static int listen_unix(const char *path, int *ret_fd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_free_ char *dir = NULL;
	_cleanup_close_ int fd = -EBADF;
	char *slash;
	int r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	dir = strdup(path);
	if (!dir)
		return -ENOMEM;
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		r = mkdir_p(dir, 0755);
		if (r < 0)
			return r;
	}
	r = remove_stale_socket(&sa);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return negative_errno();
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return negative_errno();
	/*
	 * Anyone on the host may connect: every frame is judged against the peer's SO_PEERCRED,
	 * so the file mode is not the access control. Until this chmod the umask only makes the
	 * socket stricter, never looser.
	 */
	if (chmod(path, 0666) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
		r = negative_errno();
		(void)unlink(path);
		return r;
	}
	*ret_fd = TAKE_FD(fd);
	return 0;
}

int relay_new(struct event_base *base, const struct middlecon_config *cfg, struct relay **ret)
{
	struct relay *relay;
	int fd = -EBADF;
	int r;

	relay = calloc(1, sizeof(*relay));
	if (!relay)
		return -ENOMEM;
	relay->base = base;
	relay->cfg = cfg;
	relay->max_frame = (size_t)cfg->max_frame_kb * 1024;
	relay->output_limit = (size_t)cfg->output_buffer_kb * 1024;
	if (gethostname(relay->node, sizeof(relay->node) - 1) < 0 || !relay->node[0])
		snprintf(relay->node, sizeof(relay->node), "localhost");
	relay->socket_path = strdup(cfg->socket);
	relay->reap = event_new(base, -1, 0, reap_cb, relay);
	if (!relay->socket_path || !relay->reap) {
		relay_free(relay);
		return -ENOMEM;
	}
	r = listen_unix(cfg->socket, &fd);
	if (r < 0) {
		free(relay->socket_path);
		relay->socket_path = NULL; /* not ours: keep relay_free() from unlinking it */
		relay_free(relay);
		return r;
	}
	/* LEV_OPT_CLOSE_ON_FREE: the listener owns the socket from here. */
	relay->listener = evconnlistener_new(base, accept_cb, relay,
					     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (!relay->listener) {
		close(fd);
		relay_free(relay);
		return -ENOMEM;
	}
	log_info("Listening on '%s'", cfg->socket);
	*ret = relay;
	return 0;
}

struct relay *relay_free(struct relay *relay)
{
	if (!relay)
		return NULL;
	if (relay->listener)
		evconnlistener_free(relay->listener);
	while (relay->conns)
		conn_close(relay->conns);
	if (relay->reap) {
		reap_cb(-1, 0, relay);
		event_free(relay->reap);
	}
	if (relay->socket_path)
		(void)unlink(relay->socket_path);
	free(relay->socket_path);
	free(relay);
	return NULL;
}
