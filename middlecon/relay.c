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
#include "libcommon/strutil.h"
#include "middlecon/acl.h"
#include "middlecon/config.h"
#include "middlecon/frame.h"
#include "middlecon/relay_int.h"
#include "proto/middlecon.pb-c.h"

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
int conn_send(struct relay_conn *c, Frame *f, struct evbuffer *src, const void *body,
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
	/* A link's bufferevent encrypts: its socket takes only what OpenSSL writes. */
	if (queued == 0 && !c->link) {
		/*
		 * A socket bufferevent keeps the front of its output frozen so that only its own
		 * write callback drains it; it thaws it around its writes, and so do we. EAGAIN
		 * leaves the rest queued for the bufferevent; a real error surfaces there.
		 */
		evbuffer_unfreeze(out, 1);
		(void)evbuffer_write(out, bufferevent_getfd(c->bev));
		evbuffer_freeze(out, 1);
	} else if (queued == 0 && evbuffer_get_length(out) <= RELAY_LINK_COALESCE)
		/*
		 * OpenSSL's filter makes one TLS record (and one write) per evbuffer chain: one
		 * contiguous small frame costs one record instead of a header record and a body
		 * record, here and in the peer's reads.
		 */
		(void)evbuffer_pullup(out, -1);
	/*
	 * Backpressure: a peer that does not read what it is sent is not read either, so it cannot
	 * make the relay queue answers (OVERLOADED replies included) without bound. Frames routed
	 * to it from others are refused or dropped by conn_overloaded() at the routing points.
	 * A responder with requests in flight is still read: its replies are what drains its
	 * queue, and a responder that blocks writing a reply before it reads the next request
	 * would otherwise deadlock with the relay (and be closed as a slow consumer).
	 */
	/*
	 * A link is never paused: it carries both directions for a whole node, and what is routed
	 * to it is already bounded (requests refused, replies cut to OVERLOADED headers).
	 */
	if (!c->read_paused && !c->closing && !c->serving && !c->link && conn_overloaded(c)) {
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
	/* A link being drained closes once nothing is in flight over it. */
	if (q->requester->link)
		peer_link_check_idle(q->requester);
	if (q->responder->link)
		peer_link_check_idle(q->responder);
	free(q);
}

/* The method of ROUTE_ADD/ROUTE_DEL that announces a subscription instead of a registration. */
#define ROUTE_SUBSCRIBE "subscribe"

/*
 * Whether a local connection, through a route other than @except, has registered (or, with
 * @subscribe, subscribed to) exactly @pattern.
 */
static bool local_pattern_registered(const struct relay *relay, const char *pattern, bool subscribe,
				     const struct relay_route *except)
{
	for (const struct relay_route *rt = relay->routes; rt; rt = rt->next)
		if (rt != except && rt->subscribe == subscribe && !rt->remote &&
		    strcmp(rt->pattern, pattern) == 0)
			return true;
	return false;
}

/* Whether @rt is the first local route of its pattern and kind on the route list. */
static bool first_local_of_pattern(const struct relay *relay, const struct relay_route *rt)
{
	for (const struct relay_route *o = relay->routes; o != rt; o = o->next)
		if (o->subscribe == rt->subscribe && !o->remote &&
		    strcmp(o->pattern, rt->pattern) == 0)
			return false;
	return true;
}

/*
 * Tells every usable link that @pattern is now served (or subscribed to) here (ROUTE_ADD) or
 * no longer (ROUTE_DEL). Only local routes are announced, so a node forwards a request or a
 * message at most once: a route learned from a link points at the node that serves it, never
 * at one that would relay further.
 */
static void announce(struct relay *relay, const char *pattern, bool subscribe, int kind)
{
	Frame f = MIDDLECON__FRAME__INIT;

	f.kind = kind;
	f.service = (char *)pattern;
	f.method = (char *)(subscribe ? ROUTE_SUBSCRIBE : "");
	f.origin = relay->node;
	for (struct relay_conn *c = relay->conns; c; c = c->next)
		if (c->link && peer_link_usable(c))
			(void)conn_send(c, &f, NULL, NULL, 0);
}

void relay_link_up(struct relay_conn *c)
{
	struct relay *relay = c->relay;
	Frame f = MIDDLECON__FRAME__INIT;

	f.kind = KIND(ROUTE_ADD);
	f.origin = relay->node;
	for (struct relay_route *rt = relay->routes; rt; rt = rt->next) {
		if (rt->remote || !first_local_of_pattern(relay, rt))
			continue;
		f.service = rt->pattern;
		f.method = (char *)(rt->subscribe ? ROUTE_SUBSCRIBE : "");
		(void)conn_send(c, &f, NULL, NULL, 0);
	}
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
	if (!rt->remote && relay->mesh &&
	    !local_pattern_registered(relay, rt->pattern, rt->subscribe, NULL))
		announce(relay, rt->pattern, rt->subscribe, KIND(ROUTE_DEL));
	free(rt->pattern);
	free(rt);
}

/*
 * Takes @c out of service at once: its requesters get PEER_GONE, its responders CANCEL
 * (CANCELLED), its routes go. The socket and struct are freed by the reaper, so callers up the
 * stack (the conn's own read callback) may still look at c->dead.
 */
void conn_close(struct relay_conn *c)
{
	struct relay *relay = c->relay;
	struct relay_route *rt, *next;

	if (c->dead)
		return;
	c->dead = true;
	while (c->serving) {
		struct relay_req *q = c->serving;

		if (c->link)
			reply_status(q->requester, q->caller_id, STATUS(PEER_GONE),
				     "the link to node '%s' went down", peer_link_node(c));
		else
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
	if (c->link)
		peer_link_closed(c);
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
void conn_close_after_flush(struct relay_conn *c)
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

/* Parses a decimal id header value; ACL_ID_UNKNOWN when absent or malformed. */
static uint32_t header_id(const Frame *f, const char *key)
{
	for (size_t i = 0; i < f->n_headers; i++) {
		const ProtobufCBinaryData *v = &f->headers[i]->value;
		char buf[16];
		uint32_t id;

		if (strcmp(f->headers[i]->key, key) != 0 || v->len == 0 || v->len >= sizeof(buf))
			continue;
		memcpy(buf, v->data, v->len);
		buf[v->len] = '\0';
		if (safe_atou32(buf, &id) == 0)
			return id;
	}
	return ACL_ID_UNKNOWN;
}

/*
 * Who sent @f on @c: a local client is who the kernel says it is; a request over a link comes
 * from the link's node (its certificate) with the caller uid/gid that node asserts.
 */
static void conn_subject(const struct relay_conn *c, const Frame *f, struct acl_subject *ret)
{
	if (!c->link) {
		*ret = (struct acl_subject){ .uid = (uint32_t)c->cred.uid,
					     .gid = (uint32_t)c->cred.gid };
		return;
	}
	*ret = (struct acl_subject){
		.uid = f->kind == KIND(REQUEST) ? header_id(f, "caller-uid") : ACL_ID_UNKNOWN,
		.gid = f->kind == KIND(REQUEST) ? header_id(f, "caller-gid") : ACL_ID_UNKNOWN,
		.node = peer_link_node(c),
	};
}

/*
 * Asks the ACL whether the sender of @f on @c may do @op on @name (a pattern for REGISTER,
 * SUBSCRIBE and ROUTE_ADD); if not, answers DENIED with the deciding rule (a refused ROUTE_ADD
 * is only logged: it has no reply).
 */
static bool conn_acl_allows(struct relay_conn *c, const Frame *f, const char *name, enum acl_op op,
			    bool pattern)
{
	const char *prefix = NULL;
	struct acl_subject who;
	char ids[64];

	conn_subject(c, f, &who);
	if (acl_check(c->relay->cfg->acl, op, name, pattern, &who, &prefix))
		return true;
	if (who.node)
		snprintf(ids, sizeof(ids), "node %.32s uid %d gid %d", who.node,
			 who.uid == ACL_ID_UNKNOWN ? -1 : (int)who.uid,
			 who.gid == ACL_ID_UNKNOWN ? -1 : (int)who.gid);
	else
		snprintf(ids, sizeof(ids), "uid %u gid %u", (unsigned)who.uid, (unsigned)who.gid);
	/* Debug only: a client could otherwise fill the log with its own refusals. */
	log_debug("Connection %" PRIu64 " (%s): %s '%s' denied", c->id, ids,
		  op == ACL_REGISTER ? "register" : "call", name);
	/* Route announcements and forwarded messages have no one to tell: logged only. */
	if (f->kind != KIND(ROUTE_ADD) && !(c->link && f->kind == KIND(PUBLISH)))
		reply_status(c, f->id, STATUS(DENIED), "%s may not %s '%.64s' (%s%s%s)", ids,
			     op == ACL_REGISTER ? "register" : "call", name,
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
	if (!conn_acl_allows(c, f, f->service, subscribe ? ACL_CALL : ACL_REGISTER, true))
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
	if (relay->mesh && !local_pattern_registered(relay, f->service, subscribe, NULL))
		announce(relay, f->service, subscribe, KIND(ROUTE_ADD));
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

/*
 * A request's absolute deadline in our clock. One from another node is in its clock: without
 * this translation a peer whose clock runs ahead would make every request look late here.
 */
static uint64_t peer_deadline(const struct relay_conn *c, uint64_t deadline)
{
	int64_t offset = peer_link_clock_offset(c);

	if (offset > 0 && (uint64_t)offset >= deadline)
		return 1; /* long past */
	return deadline - (uint64_t)offset;
}

static void deadline_cb(evutil_socket_t fd, short events, void *userdata)
{
	struct relay_req *q = userdata;

	reply_status(q->requester, q->caller_id, STATUS(DEADLINE_EXCEEDED), "the deadline passed");
	send_cancel(q->responder, q->relay_id, STATUS(DEADLINE_EXCEEDED));
	req_free(q);
}

/*
 * Picks a responder for @name: the least recently used local one that is not backed up, else
 * (unless @local_only) the least recently used route of a usable link. With @node (another
 * node's name), only routes announced by that node. Returns the route, or NULL with
 * *ret_overloaded telling whether backed-up responders were skipped.
 */
static struct relay_route *pick_responder(struct relay *relay, const char *name, const char *node,
					  bool local_only, bool *ret_overloaded)
{
	struct relay_route *local = NULL, *remote = NULL;

	*ret_overloaded = false;
	for (struct relay_route *rt = relay->routes; rt; rt = rt->next) {
		if (rt->subscribe || rt->conn->closing || rt->conn->condemned ||
		    !pattern_match(rt->pattern, name))
			continue;
		if (rt->remote) {
			if (local_only || !peer_link_usable(rt->conn) ||
			    (node && strcmp(peer_link_node(rt->conn), node) != 0))
				continue;
		} else if (node) {
			continue;
		}
		if (conn_overloaded(rt->conn)) {
			*ret_overloaded = true;
			continue;
		}
		if (rt->remote) {
			if (!remote || rt->last_used < remote->last_used)
				remote = rt;
		} else if (!local || rt->last_used < local->last_used) {
			local = rt;
		}
	}
	return local ? local : remote;
}

/* The usable link to @node, or NULL. */
static struct relay_conn *link_to(struct relay *relay, const char *node)
{
	for (struct relay_conn *c = relay->conns; c; c = c->next)
		if (c->link && peer_link_usable(c) && strcmp(peer_link_node(c), node) == 0)
			return c;
	return NULL;
}

static int sys_answer(struct relay_conn *c, const Frame *f);

/*
 * Splits "name@node" into @name (a buffer of RELAY_NAME_MAX + 1 bytes) and *ret_node (borrowed
 * from @service; NULL without '@'). Returns false if either part is malformed.
 */
static bool split_address(const char *service, char *name, const char **ret_node)
{
	const char *at = strchr(service, '@');
	size_t n = at ? (size_t)(at - service) : strlen(service);

	*ret_node = NULL;
	if (n > RELAY_NAME_MAX)
		return false;
	memcpy(name, service, n);
	name[n] = '\0';
	if (at) {
		if (!node_name_valid(at + 1))
			return false;
		*ret_node = at + 1;
	}
	return name_valid(name, false);
}

/* Caller headers the relay stamps; the same keys from a local client are dropped. */
#define N_CALLER_HEADERS 4

static void handle_request(struct relay_conn *c, const Frame *f, size_t body_len)
{
	struct relay *relay = c->relay;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	_cleanup_free_ Middlecon__Frame__Header **headers = NULL;
	Middlecon__Frame__Header cred[N_CALLER_HEADERS] = { MIDDLECON__FRAME__HEADER__INIT,
							    MIDDLECON__FRAME__HEADER__INIT,
							    MIDDLECON__FRAME__HEADER__INIT,
							    MIDDLECON__FRAME__HEADER__INIT };
	char name[RELAY_NAME_MAX + 1], uid[16], gid[16], pid[16];
	const char *node, *caller_node;
	struct relay_conn *responder;
	struct relay_route *rt = NULL;
	struct relay_req *q;
	struct timeval tv;
	uint64_t now, deadline;
	bool overloaded = false, local_only = c->link != NULL;
	Frame out;
	size_t n = 0, n_cred = 0;
	int r;

	if (!split_address(f->service, name, &node)) {
		reply_status(c, f->id, STATUS(BAD_REQUEST), "invalid name '%.64s'", f->service);
		return;
	}
	if (node && strcmp(node, relay->node) == 0) {
		node = NULL; /* addressed to this node: local responders only */
		local_only = true;
	}
	if (c->link && node) {
		/* One hop: a node only ever forwards to the node that serves the name. */
		reply_status(c, f->id, STATUS(BAD_REQUEST), "'%.64s' is not for this node",
			     f->service);
		return;
	}
	if (!conn_acl_allows(c, f, name, ACL_CALL, false))
		return;
	if (!node && strncmp(name, "$sys.", 5) == 0) {
		(void)sys_answer(c, f);
		return;
	}
	if (c->n_requests >= (c->link ? relay->cfg->peer_max_inflight : relay->cfg->max_inflight)) {
		reply_status(c, f->id, STATUS(OVERLOADED), "%u requests in flight", c->n_requests);
		return;
	}
	now = now_ns();
	deadline = f->deadline ? peer_deadline(c, f->deadline) :
				 now + (uint64_t)relay->cfg->default_deadline_ms * 1000000u;
	if (deadline <= now) {
		reply_status(c, f->id, STATUS(DEADLINE_EXCEEDED), "the deadline had passed");
		return;
	}
	if (node && strncmp(name, "$sys.", 5) == 0) {
		/* Another relay's own services: its relay answers them itself. */
		responder = link_to(relay, node);
		if (!responder) {
			reply_status(c, f->id, STATUS(NO_RESPONDERS), "no link to node '%.64s'",
				     node);
			return;
		}
		if (conn_overloaded(responder)) {
			reply_status(c, f->id, STATUS(OVERLOADED),
				     "the link to '%.64s' is backed up", node);
			return;
		}
	} else {
		rt = pick_responder(relay, name, node, local_only, &overloaded);
		if (!rt) {
			if (overloaded)
				reply_status(c, f->id, STATUS(OVERLOADED),
					     "every responder for '%.64s' is backed up",
					     f->service);
			else if (node && !link_to(relay, node))
				reply_status(c, f->id, STATUS(NO_RESPONDERS),
					     "no link to node '%.64s'", node);
			else
				reply_status(c, f->id, STATUS(NO_RESPONDERS),
					     "no responders for '%.64s'", f->service);
			return;
		}
		responder = rt->conn;
	}

	/*
	 * The caller's credentials: a local caller's come from SO_PEERCRED and any caller-*
	 * headers it sent itself are dropped, so a responder can trust the ones it sees. A remote
	 * caller's uid, gid and pid are what its node asserted; its node is the link's
	 * certificate identity, never what the frame claims.
	 */
	headers = calloc(f->n_headers + ELEMENTSOF(cred), sizeof(*headers));
	if (!headers) {
		reply_status(c, f->id, STATUS(OVERLOADED), "out of memory");
		return;
	}
	for (size_t i = 0; i < f->n_headers; i++) {
		const char *key = f->headers[i]->key;

		if (strncmp(key, "caller-", 7) != 0 || (c->link && strcmp(key, "caller-node") != 0))
			headers[n++] = f->headers[i];
	}
	if (!c->link) {
		snprintf(uid, sizeof(uid), "%u", (unsigned)c->cred.uid);
		snprintf(gid, sizeof(gid), "%u", (unsigned)c->cred.gid);
		snprintf(pid, sizeof(pid), "%d", (int)c->cred.pid);
		cred[n_cred].key = (char *)"caller-uid";
		cred[n_cred++].value = (ProtobufCBinaryData){ strlen(uid), (uint8_t *)uid };
		cred[n_cred].key = (char *)"caller-gid";
		cred[n_cred++].value = (ProtobufCBinaryData){ strlen(gid), (uint8_t *)gid };
		cred[n_cred].key = (char *)"caller-pid";
		cred[n_cred++].value = (ProtobufCBinaryData){ strlen(pid), (uint8_t *)pid };
	}
	caller_node = c->link ? peer_link_node(c) : relay->node;
	cred[n_cred].key = (char *)"caller-node";
	cred[n_cred++].value = (ProtobufCBinaryData){ strlen(caller_node), (uint8_t *)caller_node };
	for (size_t i = 0; i < n_cred; i++)
		headers[n++] = &cred[i];

	q = calloc(1, sizeof(*q));
	if (!q) {
		reply_status(c, f->id, STATUS(OVERLOADED), "out of memory");
		return;
	}
	q->requester = c;
	q->responder = responder;
	q->caller_id = f->id;
	q->relay_id = ++responder->next_relay_id;
	q->timer = evtimer_new(relay->base, deadline_cb, q);
	tv.tv_sec = (time_t)((deadline - now) / 1000000000u);
	tv.tv_usec = (suseconds_t)((deadline - now) % 1000000000u / 1000u);
	if (!q->timer || evtimer_add(q->timer, &tv) < 0) {
		if (q->timer)
			event_free(q->timer);
		free(q);
		reply_status(c, f->id, STATUS(OVERLOADED), "out of memory");
		return;
	}

	/*
	 * A shallow copy: the strings and the caller's headers stay owned by @f. The name goes
	 * without "@node": the node it is addressed to is the one receiving it. The deadline
	 * travels as an absolute time, so the next relay enforces the same one.
	 */
	out = *f;
	out.service = name;
	out.id = q->relay_id;
	out.deadline = deadline;
	out.origin = (char *)caller_node;
	out.n_headers = n;
	out.headers = headers;
	out.status = STATUS(OK);
	r = conn_send(responder, &out, in, NULL, body_len);
	if (r < 0) {
		event_free(q->timer);
		free(q);
		if (r == -EMSGSIZE)
			reply_status(c, f->id, STATUS(TOO_LARGE),
				     "the request is over the responder's frame limit");
		else
			reply_status(c, f->id, STATUS(PEER_GONE), "the responder went away");
		return;
	}
	c->body_left = 0;
	if (rt)
		rt->last_used = ++relay->seq;
	relay->stats.requests++;
	if (responder->link)
		relay->stats.remote_requests++;
	if (c->link)
		relay->stats.remote_served++;

	q->rq_next = c->requests;
	if (c->requests)
		c->requests->rq_prev = q;
	c->requests = q;
	q->rs_next = responder->serving;
	if (responder->serving)
		responder->serving->rs_prev = q;
	responder->serving = q;
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
	/*
	 * A relay forwarding its own deadline says so (DEADLINE_EXCEEDED); from a client, a
	 * CANCEL is the caller giving up.
	 */
	int status = c->link && f->status == STATUS(DEADLINE_EXCEEDED) ? STATUS(DEADLINE_EXCEEDED) :
									 STATUS(CANCELLED);

	for (struct relay_req *q = c->requests; q; q = q->rq_next)
		if (q->caller_id == f->id) {
			send_cancel(q->responder, q->relay_id, status);
			c->relay->stats.status[status]++;
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
	if (!conn_acl_allows(c, f, f->service, ACL_CALL, false))
		return;
	relay->stats.published++;
	/* Fan-out copies the body once per subscriber anyway; make it contiguous once. */
	if (body_len > 0) {
		body = evbuffer_pullup(bufferevent_get_input(c->bev), (ssize_t)body_len);
		if (!body)
			return;
	}
	out = *f;
	/* A message that came over a link keeps the node it was published on. */
	out.origin = c->link ? (char *)peer_link_node(c) : c->relay->node;
	relay->pub_seq++;
	/* conn_send() never closes a conn (it condemns), so the route list stays intact. */
	for (struct relay_route *rt = relay->routes; rt; rt = rt->next) {
		if (!rt->subscribe || rt->conn->closing || !pattern_match(rt->pattern, f->service))
			continue;
		if (rt->remote) {
			/*
			 * One copy per node with a matching subscription, and only for a message
			 * published here: one hop, so no copy ever comes back or goes round.
			 */
			if (c->link || !peer_link_usable(rt->conn) ||
			    rt->conn->pub_seq == relay->pub_seq)
				continue;
			rt->conn->pub_seq = relay->pub_seq;
		}
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

	for (struct relay_route *rt = relay->routes; a && rt; rt = rt->next) {
		json_t *o;

		if (rt->remote)
			o = json_pack("{s:s, s:s, s:s, s:b, s:b}", "name", rt->pattern, "kind",
				      "remote", "node", peer_link_node(rt->conn), "usable",
				      peer_link_usable(rt->conn), "subscribe", rt->subscribe);
		else
			o = json_pack("{s:s, s:s, s:I, s:i, s:i, s:s?}", "name", rt->pattern,
				      "kind", rt->subscribe ? "subscribe" : "register", "conn",
				      (json_int_t)rt->conn->id, "pid", (int)rt->conn->cred.pid,
				      "uid", (int)rt->conn->cred.uid, "client", rt->conn->name);
		if (json_array_append_new(a, o) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *sys_conns(struct relay *relay)
{
	json_t *a = json_array();

	for (struct relay_conn *c = relay->conns; a && c; c = c->next)
		if (!c->link &&
		    json_array_append_new(
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
	json_t *o = json_pack(
		"{s:s, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "node",
		relay->node, "connections", (int)relay->n_conns, "read_pauses",
		(json_int_t)s->read_pauses, "slow_consumers_closed", (json_int_t)s->slow_closed,
		"connections_total", (json_int_t)s->conns_total, "requests",
		(json_int_t)s->requests, "replies", (json_int_t)s->replies, "late_replies",
		(json_int_t)s->late_replies, "published", (json_int_t)s->published, "delivered",
		(json_int_t)s->delivered, "publish_dropped", (json_int_t)s->pub_dropped,
		"remote_requests", (json_int_t)s->remote_requests, "remote_served",
		(json_int_t)s->remote_served);
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
	else if (strcmp(what, "peers") == 0)
		j = c->relay->mesh ? peer_mesh_describe(c->relay->mesh) :
				     json_pack("{s:s, s:[], s:[]}", "node", c->relay->node, "links",
					       "listen");
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

/*
 * ROUTE_ADD / ROUTE_DEL from a link: the peer node serves @f->service now, or no longer; with
 * method "subscribe", it has subscribers for the pattern (PUBLISH is then forwarded to it).
 */
static void handle_route(struct relay_conn *c, const Frame *f)
{
	struct relay *relay = c->relay;
	bool subscribe = strcmp(f->method, ROUTE_SUBSCRIBE) == 0;
	struct relay_route *rt;

	for (rt = relay->routes; rt; rt = rt->next)
		if (rt->conn == c && rt->subscribe == subscribe &&
		    strcmp(rt->pattern, f->service) == 0)
			break;
	if (f->kind == KIND(ROUTE_DEL)) {
		if (rt)
			route_free(relay, rt);
		return;
	}
	if (rt)
		return; /* already known: a resynchronisation repeats routes */
	if (!name_valid(f->service, true) || strncmp(f->service, "$sys", 4) == 0) {
		log_debug("Link to '%s': ignoring the invalid route '%.64s'", peer_link_node(c),
			  f->service);
		return;
	}
	/*
	 * The peer's names are subject to the ACL as if its node registered (or subscribed, which
	 * the call rules govern) them here.
	 */
	if (!conn_acl_allows(c, f, f->service, subscribe ? ACL_CALL : ACL_REGISTER, true)) {
		log_info("Link to '%s': route '%.64s' refused by the ACL", peer_link_node(c),
			 f->service);
		return;
	}
	if (c->n_routes >= RELAY_MAX_ROUTES_PER_LINK) {
		log_warn("Link to '%s': more than %u routes, ignoring '%.64s'", peer_link_node(c),
			 RELAY_MAX_ROUTES_PER_LINK, f->service);
		return;
	}
	rt = calloc(1, sizeof(*rt));
	if (!rt || !(rt->pattern = strdup(f->service))) {
		free(rt);
		log_oom();
		return;
	}
	rt->conn = c;
	rt->remote = true;
	rt->subscribe = subscribe;
	rt->next = relay->routes;
	if (relay->routes)
		relay->routes->prev = rt;
	relay->routes = rt;
	c->n_routes++;
}

/* Frames on a peer link: the relay-to-relay kinds and the request/reply path. */
static void link_dispatch(struct relay_conn *c, const Frame *f, size_t body_len)
{
	switch (f->kind) {
	case KIND(PEER_HELLO):
	case KIND(PING):
	case KIND(PONG):
		peer_link_frame(c, f);
		return;
	default:
		break;
	}
	/*
	 * Nothing but the hello before the link is up. A link being drained still serves what
	 * arrives: the peer sent it before it learnt of the drain (see peer.c).
	 */
	if (!peer_link_established(c)) {
		log_debug("Link %" PRIu64 ": frame of kind %d before PEER_HELLO, ignored", c->id,
			  (int)f->kind);
		return;
	}
	switch (f->kind) {
	case KIND(ROUTE_ADD):
	case KIND(ROUTE_DEL):
		handle_route(c, f);
		return;
	case KIND(REQUEST):
		handle_request(c, f, body_len);
		return;
	case KIND(REPLY):
		handle_reply(c, f, body_len);
		return;
	case KIND(CANCEL):
		handle_cancel(c, f);
		return;
	case KIND(PUBLISH):
		handle_publish(c, f, body_len);
		return;
	default:
		/* A newer peer's kind: skipped, as unknown fields are. */
		log_debug("Link to '%s': ignoring a frame of kind %d", peer_link_node(c),
			  (int)f->kind);
		return;
	}
}

static void conn_dispatch(struct relay_conn *c, const Frame *f, size_t body_len)
{
	if (c->link) {
		link_dispatch(c, f, body_len);
		return;
	}
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

/* Sets up @c's callbacks and puts it on the relay's list. Returns 0 or -ENOMEM. */
static int conn_start(struct relay *relay, struct relay_conn *c)
{
	/* Armed by libevent only while output waits for the socket to take it. */
	struct timeval slow = {
		.tv_sec = relay->cfg->slow_consumer_timeout_ms / 1000,
		.tv_usec = (suseconds_t)(relay->cfg->slow_consumer_timeout_ms % 1000) * 1000,
	};

	c->relay = relay;
	c->id = ++relay->next_conn_id;
	bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	bufferevent_set_timeouts(c->bev, NULL, &slow);
	conn_want(c, PROTO_IO_PREFIX_SIZE);
	if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) < 0)
		return -ENOMEM;
	c->next = relay->conns;
	if (relay->conns)
		relay->conns->prev = c;
	relay->conns = c;
	relay->n_conns++;
	relay->stats.conns_total++;
	return 0;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
		      void *userdata)
{
	struct relay *relay = userdata;
	struct relay_conn *c;
	socklen_t len = sizeof(c->cred);

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
	if (conn_start(relay, c) < 0) {
		bufferevent_free(c->bev);
		free(c);
		return;
	}
	log_debug("Connection %" PRIu64 " from pid %d uid %u", c->id, (int)c->cred.pid,
		  (unsigned)c->cred.uid);
}

int relay_link_attach(struct relay *relay, struct bufferevent *bev, struct peer_link *link,
		      struct relay_conn **ret)
{
	struct relay_conn *c = calloc(1, sizeof(*c));

	if (!c) {
		bufferevent_free(bev);
		return -ENOMEM;
	}
	c->bev = bev;
	c->link = link;
	/* A link speaks PEER_HELLO instead of HELLO; its frame limit is the relay's own. */
	c->hello = true;
	if (conn_start(relay, c) < 0) {
		bufferevent_free(bev);
		free(c);
		return -ENOMEM;
	}
	*ret = c;
	return 0;
}

static int listen_unix(const char *path, int *ret_fd)
{
	_cleanup_free_ char *dir = NULL;
	char *slash;
	int r;

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
	/*
	 * Anyone on the host may connect: every frame is judged against the peer's SO_PEERCRED,
	 * so the file mode is not the access control.
	 */
	return unix_listen(path, 0666, LISTEN_BACKLOG, ret_fd);
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
	if (cfg->node_name)
		snprintf(relay->node, sizeof(relay->node), "%s", cfg->node_name);
	else if (gethostname(relay->node, sizeof(relay->node) - 1) < 0 || !relay->node[0])
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
	r = peer_mesh_start(relay);
	if (r < 0) {
		relay_free(relay);
		return r;
	}
	*ret = relay;
	return 0;
}

struct relay *relay_free(struct relay *relay)
{
	if (!relay)
		return NULL;
	if (relay->listener)
		evconnlistener_free(relay->listener);
	/* The links first: their teardown answers the requests in flight over them. */
	relay->mesh = peer_mesh_free(relay->mesh);
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
