/* SPDX-License-Identifier: MIT */
/*
 * Peer links: the mesh of relays across hosts (docs/middlecon-protocol.md, "Across hosts").
 *
 * Every node may listen for links and dial the peers it is given (addresses, or DNS names whose
 * every record is a peer). A link is TCP with mutual TLS: both certificates must be issued by
 * the mesh's CA, and a node's name is the identity in its certificate, which its PEER_HELLO must
 * repeat. Once both hellos are exchanged the link is up: each side announces its local names
 * (relay.c) and requests flow both ways.
 *
 * Between two nodes there is one link in use. When both dial each other, each side sees two
 * links to the same node and keeps, by the same rule on both sides, the one dialled by the node
 * whose name sorts first; the other is drained: both sides stop sending new requests over it,
 * say so with a goodbye (PEER_HELLO with status CANCELLED), and close it once nothing is in
 * flight over it. TCP keeps the goodbye behind every request sent before it, so no request is
 * lost or answered PEER_GONE by the hand-over.
 *
 * A dialled link that drops is redialled with exponential backoff and jitter; heartbeats (PING
 * every peer_heartbeat_ms) measure the round-trip time and find a silent peer, which is closed
 * after peer_timeout_ms so the requests in flight over it fail with PEER_GONE at once.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>
#include <openssl/err.h>

#include "libcommon/certgen.h"
#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "libcommon/netaddr.h"
#include "libcommon/paths.h"
#include "libcommon/proto_io.h"
#include "libcommon/strutil.h"
#include "libcommon/tls.h"
#include "middlecon/config.h"
#include "middlecon/frame.h"
#include "middlecon/relay_int.h"

enum link_state {
	LINK_HELLO, /* TLS is up, waiting for the peer's PEER_HELLO */
	LINK_UP, /* in use */
	LINK_DRAINING, /* redundant: no new requests; closed once idle */
};

/*
 * Where to dial: one address of a peer source. Slots live until the mesh is freed or, for an
 * address a DNS name no longer returns, until their link (if any) drops.
 */
enum slot_state {
	SLOT_WAITING, /* the backoff timer runs */
	SLOT_CONNECTING, /* TCP connect and TLS handshake */
	SLOT_LINKED, /* its link exists */
	SLOT_PARKED, /* not dialled: the address is this node, or another link covers the node */
};

struct peer_source;

struct peer_slot {
	struct peer_mesh *mesh;
	struct peer_slot *next; /* mesh.slots */
	struct peer_source *source; /* borrowed */
	struct sockaddr_storage addr;
	socklen_t addr_len;
	char addr_str[64];
	enum slot_state state;
	bool self; /* parked for good: this node answers here */
	bool retired; /* no longer in DNS: freed when its link drops */
	char *parked_node; /* PARKED for a duplicate: the node another link reaches */
	struct bufferevent *bev; /* CONNECTING: owned until the handshake ends */
	struct peer_link *link; /* LINKED */
	struct event *timer; /* backoff, and the connect deadline */
	uint32_t backoff_ms; /* the next delay's upper bound */
	uint64_t attempts, failures;
	char last_error[160];
};

/* A configured peer or DNS name, resolved every peer_dns_refresh_s. */
struct peer_source {
	struct peer_mesh *mesh;
	struct peer_source *next;
	char *spec; /* as configured */
	char *host, *port;
	struct event *timer;
	struct evdns_getaddrinfo_request *req;
	char last_error[160];
	unsigned n_addrs; /* of the last answer */
};

/* PONGs the clock offset of a link is estimated from (the best of the last ones). */
#define CLOCK_SAMPLES 8

struct peer_link {
	struct peer_mesh *mesh;
	struct peer_link *next; /* mesh.links */
	struct relay_conn *conn; /* the relay's connection; NULL until attached */
	struct peer_slot *slot; /* the slot that dialled it; NULL if accepted */
	char *node; /* the certificate's identity, checked to be a valid node name */
	char addr[64];
	enum link_state state;
	bool goodbye_sent, goodbye_received;
	bool self; /* the peer is this node */
	struct event *heartbeat; /* every peer_heartbeat_ms */
	uint64_t connected_ns; /* CLOCK_REALTIME */
	uint64_t up_mono_ns; /* CLOCK_MONOTONIC when it came up */
	uint64_t last_frames_in, last_rx_mono_ns; /* progress seen by the heartbeat */
	uint64_t ping_id, ping_sent_ns; /* the PING in flight, 0 if none */
	uint64_t ping_sent_real_ns; /* CLOCK_REALTIME when it was sent */
	uint64_t rtt_ns, rtt_min_ns; /* last and smallest round-trip time */
	/*
	 * The peer's clock minus ours (ns), from the recent PONG with the smallest round trip
	 * (whose error is at most half of it); 0 until a PONG told it.
	 */
	struct clock_sample {
		uint64_t rtt_ns; /* 0: unused */
		int64_t offset_ns;
	} clock[CLOCK_SAMPLES];
	unsigned clock_next;
	int64_t clock_offset_ns;
	bool clock_known;
};

/* A TLS connection accepted but not yet through its handshake. */
struct peer_pending {
	struct peer_mesh *mesh;
	struct peer_pending *prev, *next;
	struct bufferevent *bev;
	char addr[64];
};

struct peer_mesh {
	struct relay *relay; /* borrowed */
	const struct middlecon_config *cfg; /* borrowed */
	SSL_CTX *server_ctx, *client_ctx;
	struct evdns_base *dns;
	struct evconnlistener **listeners;
	char **listen_addrs; /* bound addresses (strv), for $sys.peers */
	size_t n_listeners;
	struct peer_source *sources;
	struct peer_slot *slots;
	struct peer_link *links;
	struct peer_pending *pending;
	unsigned n_pending;
	struct event *idle_check; /* closes drained links outside any relay iteration */
	uint64_t links_total, handshakes_failed, hellos_refused;
};

/* Handshakes in progress at once: each costs a TLS context's memory. */
#define PEER_MAX_PENDING 256
/* The goodbye that announces a drain. */
#define PEER_GOODBYE "redundant link"

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct timeval ms_tv(uint32_t ms)
{
	return (struct timeval){ .tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
}

/* A uniform random number in [0, n). */
static uint32_t random_below(uint32_t n)
{
	uint32_t v = 0;

	if (n == 0)
		return 0;
	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v))
		v = (uint32_t)mono_ns() * 2654435761u;
	return v % n;
}

static const char *node_of(const struct relay *relay)
{
	return relay->node;
}

bool peer_link_usable(const struct relay_conn *c)
{
	return c->link && c->link->state == LINK_UP && !c->dead && !c->closing;
}

bool peer_link_established(const struct relay_conn *c)
{
	return c->link && c->link->state != LINK_HELLO;
}

const char *peer_link_node(const struct relay_conn *c)
{
	return c->link && c->link->node ? c->link->node : "?";
}

/* Sends a PEER_HELLO: ours with @status OK, or a goodbye/refusal with a reason. */
static void send_hello(struct relay_conn *c, int status, const char *error)
{
	struct relay *relay = c->relay;
	Frame f = MIDDLECON__FRAME__INIT;
	uint32_t versions[] = { FRAME_VERSION };

	f.kind = MIDDLECON__FRAME__KIND__PEER_HELLO;
	f.status = status;
	f.error = (char *)(error ? error : "");
	f.origin = relay->node;
	f.client_name = relay->node;
	f.n_versions = ELEMENTSOF(versions);
	f.versions = versions;
	f.max_frame_size = (uint32_t)relay->max_frame;
	(void)conn_send(c, &f, NULL, NULL, 0);
}

/* Schedules the slot's next dial after its backoff (full jitter over the upper half). */
static void slot_schedule(struct peer_slot *s)
{
	const struct middlecon_config *cfg = s->mesh->cfg;
	uint32_t bound = s->backoff_ms ? s->backoff_ms : cfg->peer_backoff_min_ms;
	uint32_t delay = bound / 2 + random_below(bound / 2 + 1);
	struct timeval tv = ms_tv(delay);

	s->state = SLOT_WAITING;
	s->backoff_ms =
		bound >= cfg->peer_backoff_max_ms / 2 ? cfg->peer_backoff_max_ms : bound * 2;
	evtimer_add(s->timer, &tv);
}

static void slot_fail(struct peer_slot *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* A dial failed: logs it once per change of reason, and tries again later. */
static void slot_fail(struct peer_slot *s, const char *fmt, ...)
{
	char why[sizeof(s->last_error)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	s->failures++;
	if (strcmp(why, s->last_error) != 0)
		log_warn("Peer %s: %s; retrying with backoff", s->addr_str, why);
	else
		log_debug("Peer %s: %s", s->addr_str, why);
	snprintf(s->last_error, sizeof(s->last_error), "%s", why);
	if (s->bev) {
		bufferevent_free(s->bev);
		s->bev = NULL;
	}
	slot_schedule(s);
}

/* Describes why a TLS bufferevent failed, for logs and $sys.peers. */
static void describe_bev_error(struct bufferevent *bev, short events, char *buf, size_t size)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	unsigned long e, first = 0;
	int sock_err = EVUTIL_SOCKET_ERROR();
	long verify;

	while ((e = bufferevent_get_openssl_error(bev)))
		if (!first && e != SSL_ERROR_SYSCALL && e != SSL_ERROR_SSL)
			first = e;
	verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	if (events & BEV_EVENT_TIMEOUT)
		snprintf(buf, size, "timed out");
	else if (verify != X509_V_OK)
		snprintf(buf, size, "TLS: the peer's certificate failed verification (%s)",
			 X509_verify_cert_error_string(verify));
	else if (first)
		snprintf(buf, size, "TLS: %s",
			 ERR_reason_error_string(first) ?: "handshake failed");
	else if (sock_err > 0)
		snprintf(buf, size, "%s", strerror(sock_err));
	else
		snprintf(buf, size, "connection closed during the TLS handshake");
}

static void link_free(struct peer_link *l)
{
	struct peer_link **p;

	for (p = &l->mesh->links; *p; p = &(*p)->next)
		if (*p == l) {
			*p = l->next;
			break;
		}
	if (l->heartbeat)
		event_free(l->heartbeat);
	free(l->node);
	free(l);
}

/* Another link to @node that is up, other than @except; NULL if none. */
static struct peer_link *usable_link_to(struct peer_mesh *m, const char *node,
					const struct peer_link *except)
{
	for (struct peer_link *l = m->links; l; l = l->next)
		if (l != except && l->state == LINK_UP && l->conn && !l->conn->dead &&
		    !l->conn->closing && l->node && strcasecmp(l->node, node) == 0)
			return l;
	return NULL;
}

/* Closes the drained links that have nothing in flight any more. */
static void idle_check_cb(evutil_socket_t fd, short events, void *userdata)
{
	struct peer_mesh *m = userdata;

	for (struct peer_link *l = m->links; l; l = l->next) {
		struct relay_conn *c = l->conn;

		if (l->state != LINK_DRAINING || !c || c->dead || c->closing)
			continue;
		if (!l->goodbye_sent || !l->goodbye_received || c->requests || c->serving)
			continue;
		log_debug("Link %" PRIu64 " to '%s' drained, closing", c->id, l->node);
		/* conn_close() -> peer_link_closed() may free l: the next pass starts over. */
		conn_close_after_flush(c);
		event_active(m->idle_check, 0, 0);
		return;
	}
}

void peer_link_check_idle(struct relay_conn *c)
{
	if (c->link && c->link->state == LINK_DRAINING && !c->dead)
		event_active(c->link->mesh->idle_check, 0, 0);
}

/* Stops using @l for new requests, tells the peer, and closes it once idle. */
static void link_drain(struct peer_link *l)
{
	struct relay_conn *c = l->conn;

	if (l->state != LINK_DRAINING) {
		log_info("Link %" PRIu64 " to '%s' (%s) is redundant, draining it", c->id, l->node,
			 l->addr);
		l->state = LINK_DRAINING;
	}
	if (!l->goodbye_sent) {
		send_hello(c, MIDDLECON__FRAME__STATUS__CANCELLED, PEER_GOODBYE);
		l->goodbye_sent = true;
	}
	peer_link_check_idle(c);
}

/* The name of the node that dialled @l. */
static const char *link_dialler(const struct peer_link *l)
{
	return l->slot ? node_of(l->mesh->relay) : l->node;
}

/*
 * @l has just come up and @other is up to the same node: keep the link dialled by the node whose
 * name sorts first (both ends compute the same), or the older one if one node dialled both.
 * Returns the link to drain.
 */
static struct peer_link *pick_redundant(struct peer_link *l, struct peer_link *other)
{
	int cmp = strcmp(link_dialler(l), link_dialler(other));

	if (cmp == 0)
		return l->conn->id > other->conn->id ? l : other;
	return cmp > 0 ? l : other;
}

/* Sends a PING over the link; its PONG gives the round trip and the peer's clock. */
static void send_ping(struct peer_link *l, uint64_t now_mono)
{
	Frame ping = MIDDLECON__FRAME__INIT;

	ping.kind = MIDDLECON__FRAME__KIND__PING;
	ping.id = ++l->ping_id ? l->ping_id : ++l->ping_id;
	l->ping_sent_ns = now_mono;
	l->ping_sent_real_ns = real_ns();
	ping.time = l->ping_sent_real_ns;
	(void)conn_send(l->conn, &ping, NULL, NULL, 0);
}

/* The peer's PEER_HELLO: checks it and brings the link up, or refuses it. */
static void link_hello(struct relay_conn *c, const Frame *f)
{
	struct peer_link *l = c->link, *other;
	struct peer_mesh *m = l->mesh;
	bool version = false;

	if (f->status != MIDDLECON__FRAME__STATUS__OK) {
		if (strcmp(f->error, PEER_GOODBYE) == 0 && l->state != LINK_HELLO) {
			l->goodbye_received = true;
			link_drain(l);
			return;
		}
		log_warn("Link to '%s' (%s) refused by the peer: %s", l->node, l->addr,
			 f->error[0] ? f->error : frame_status_to_string(f->status));
		if (l->slot)
			snprintf(l->slot->last_error, sizeof(l->slot->last_error),
				 "refused by the peer: %s", f->error);
		l->self = strstr(f->error, "this node") != NULL;
		conn_close(c);
		return;
	}
	if (l->state != LINK_HELLO) {
		log_debug("Link to '%s': a second PEER_HELLO, ignored", l->node);
		return;
	}
	for (size_t i = 0; i < f->n_versions; i++)
		version = version || f->versions[i] == FRAME_VERSION;
	if (!version) {
		log_warn("Link to '%s' (%s): no common protocol version, closing", l->node,
			 l->addr);
		send_hello(c, MIDDLECON__FRAME__STATUS__BAD_REQUEST,
			   "no common protocol version (this relay speaks 1)");
		m->hellos_refused++;
		conn_close_after_flush(c);
		return;
	}
	/* The name a node claims must be the one its certificate proves. */
	if (strcasecmp(f->client_name, l->node) != 0) {
		log_warn("Link from %s: PEER_HELLO names '%.64s' but the certificate is for '%s', "
			 "refusing it",
			 l->addr, f->client_name, l->node);
		send_hello(c, MIDDLECON__FRAME__STATUS__DENIED,
			   "the node name does not match the certificate");
		m->hellos_refused++;
		conn_close_after_flush(c);
		return;
	}
	if (strcasecmp(l->node, node_of(m->relay)) == 0) {
		/* Our own address (a DNS name lists every host, this one too). */
		log_info("Peer %s is this node ('%s'), not linking to it", l->addr, l->node);
		l->self = true;
		send_hello(c, MIDDLECON__FRAME__STATUS__DENIED, "you are this node");
		conn_close_after_flush(c);
		return;
	}
	if (f->max_frame_size >= PROTO_IO_FRAME_MIN)
		c->peer_max_frame = f->max_frame_size;
	l->state = LINK_UP;
	l->up_mono_ns = mono_ns();
	if (l->slot) {
		l->slot->backoff_ms = 0;
		l->slot->last_error[0] = '\0';
	}
	other = usable_link_to(m, l->node, l);
	if (other && pick_redundant(l, other) == l) {
		link_drain(l);
		return;
	}
	log_info("Link %" PRIu64 " to '%s' (%s, %s) is up", c->id, l->node, l->addr,
		 l->slot ? "dialled" : "accepted");
	relay_link_up(c);
	/* The first round trip at once: it tells the peer's clock before the first request. */
	send_ping(l, mono_ns());
	if (other)
		link_drain(other);
}

/*
 * Notes the clock of the peer, @peer_ns when it answered the PING in flight: that was about
 * halfway through the round trip. Keeps the offset of the recent sample with the smallest round
 * trip, the one least blurred by queueing.
 */
static void clock_sample(struct peer_link *l, uint64_t peer_ns)
{
	uint64_t now = real_ns();
	int64_t mid = (int64_t)(l->ping_sent_real_ns / 2 + now / 2);
	const struct clock_sample *best = NULL;

	l->clock[l->clock_next] = (struct clock_sample){ .rtt_ns = MAX(l->rtt_ns, (uint64_t)1),
							 .offset_ns = (int64_t)peer_ns - mid };
	l->clock_next = (l->clock_next + 1) % CLOCK_SAMPLES;
	for (unsigned i = 0; i < CLOCK_SAMPLES; i++)
		if (l->clock[i].rtt_ns && (!best || l->clock[i].rtt_ns < best->rtt_ns))
			best = &l->clock[i];
	if (!l->clock_known || llabs(best->offset_ns - l->clock_offset_ns) > 100 * 1000000LL)
		log_debug("Link to '%s': its clock is %+.3f ms from ours (round trip %.3f ms)",
			  l->node, (double)best->offset_ns / 1e6, (double)best->rtt_ns / 1e6);
	l->clock_offset_ns = best->offset_ns;
	l->clock_known = true;
}

int64_t peer_link_clock_offset(const struct relay_conn *c)
{
	return c->link && c->link->clock_known ? c->link->clock_offset_ns : 0;
}

void peer_link_frame(struct relay_conn *c, const Frame *f)
{
	struct peer_link *l = c->link;
	Frame out = MIDDLECON__FRAME__INIT;

	switch (f->kind) {
	case MIDDLECON__FRAME__KIND__PEER_HELLO:
		link_hello(c, f);
		return;
	case MIDDLECON__FRAME__KIND__PING:
		out.kind = MIDDLECON__FRAME__KIND__PONG;
		out.id = f->id;
		out.time = real_ns();
		(void)conn_send(c, &out, NULL, NULL, 0);
		return;
	case MIDDLECON__FRAME__KIND__PONG:
		if (l->ping_id && f->id == l->ping_id) {
			l->rtt_ns = mono_ns() - l->ping_sent_ns;
			if (!l->rtt_min_ns || l->rtt_ns < l->rtt_min_ns)
				l->rtt_min_ns = l->rtt_ns;
			l->ping_id = 0;
			if (f->time)
				clock_sample(l, f->time);
		}
		return;
	default:
		return;
	}
}

/*
 * Every peer_heartbeat_ms: a link that received nothing (no frame at all, PONGs included) for
 * peer_timeout_ms is dead, even if TCP has not noticed (a partition, a frozen host); otherwise a
 * PING measures the round trip and keeps an idle link's silence from looking like death.
 */
static void heartbeat_cb(evutil_socket_t fd, short events, void *userdata)
{
	struct peer_link *l = userdata;
	struct relay_conn *c = l->conn;
	const struct middlecon_config *cfg = l->mesh->cfg;
	uint64_t now = mono_ns();

	if (!c || c->dead)
		return;
	if (c->frames_in != l->last_frames_in) {
		l->last_frames_in = c->frames_in;
		l->last_rx_mono_ns = now;
	}
	if (now - l->last_rx_mono_ns > (uint64_t)cfg->peer_timeout_ms * 1000000u) {
		log_warn("Link %" PRIu64 " to '%s' (%s): nothing received for %u ms, closing it",
			 c->id, l->node, l->addr, cfg->peer_timeout_ms);
		if (l->slot)
			snprintf(l->slot->last_error, sizeof(l->slot->last_error),
				 "heartbeat timeout");
		conn_close(c);
		return;
	}
	if (l->state == LINK_HELLO)
		return;
	/* One PING at a time: a lost PONG (there are none on TCP) is replaced after a timeout. */
	if (l->ping_id && now - l->ping_sent_ns < (uint64_t)cfg->peer_timeout_ms * 1000000u)
		return;
	send_ping(l, now);
}

/* Wakes the slots parked because another link reached @node, now that none does. */
static void wake_parked(struct peer_mesh *m, const char *node)
{
	for (struct peer_slot *s = m->slots; s; s = s->next)
		if (s->state == SLOT_PARKED && !s->self && s->parked_node &&
		    strcasecmp(s->parked_node, node) == 0) {
			free(s->parked_node);
			s->parked_node = NULL;
			s->backoff_ms = 0;
			slot_schedule(s);
		}
}

static void slot_free(struct peer_slot *s);

void peer_link_closed(struct relay_conn *c)
{
	struct peer_link *l = c->link;
	struct peer_mesh *m = l->mesh;
	struct peer_slot *s = l->slot;
	bool was_up = l->state != LINK_HELLO;
	_cleanup_free_ char *node = l->node ? strdup(l->node) : NULL;

	c->link = NULL;
	if (was_up)
		log_info("Link %" PRIu64 " to '%s' (%s) closed", c->id, l->node, l->addr);
	if (s) {
		s->link = NULL;
		if (s->retired) {
			slot_free(s);
		} else if (l->self) {
			s->state = SLOT_PARKED;
			s->self = true;
		} else if (node && usable_link_to(m, node, l)) {
			s->state = SLOT_PARKED;
			free(s->parked_node);
			s->parked_node = TAKE_PTR(node);
		} else {
			/* A link that stayed up a while starts the backoff over. */
			if (was_up && mono_ns() - l->up_mono_ns >
					      (uint64_t)m->cfg->peer_backoff_max_ms * 1000000u)
				s->backoff_ms = 0;
			slot_schedule(s);
		}
	}
	if (node && !usable_link_to(m, node, l))
		wake_parked(m, node);
	link_free(l);
}

/* Makes a link of the bufferevent @bev whose handshake just succeeded. Takes @bev. */
static int link_new(struct peer_mesh *m, struct bufferevent *bev, struct peer_slot *slot,
		    const char *addr, struct peer_link **ret)
{
	const struct middlecon_config *cfg = m->cfg;
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	_cleanup_free_ char *identity = NULL;
	struct timeval hb = ms_tv(cfg->peer_heartbeat_ms);
	struct peer_link *l;
	int one = 1, r;

	r = tls_peer_check(ssl, NULL, &identity);
	if (r < 0) {
		bufferevent_free(bev);
		return r;
	}
	if (r != TLS_PEER_OK || !identity || !node_name_valid(identity)) {
		log_warn("Peer %s: certificate %s%s%s is not a node of this mesh (%s), refusing it",
			 addr, identity ? "'" : "", identity ?: "(no name)", identity ? "'" : "",
			 r != TLS_PEER_OK ? tls_peer_status_to_string(r) : "not a node name");
		bufferevent_free(bev);
		m->handshakes_failed++;
		return -EPERM;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		bufferevent_free(bev);
		return -ENOMEM;
	}
	l->mesh = m;
	l->slot = slot;
	l->node = TAKE_PTR(identity);
	snprintf(l->addr, sizeof(l->addr), "%s", addr);
	l->connected_ns = real_ns();
	l->last_rx_mono_ns = mono_ns();
	l->heartbeat = event_new(bufferevent_get_base(bev), -1, EV_PERSIST, heartbeat_cb, l);
	if (!l->heartbeat || evtimer_add(l->heartbeat, &hb) < 0) {
		if (l->heartbeat)
			event_free(l->heartbeat);
		free(l->node);
		free(l);
		bufferevent_free(bev);
		return -ENOMEM;
	}
	l->next = m->links;
	m->links = l;
	/* Sockets of links are long-lived and latency-bound: no Nagle delay on small frames. */
	(void)setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	r = relay_link_attach(m->relay, bev, l, &l->conn);
	if (r < 0) {
		link_free(l);
		return r;
	}
	m->links_total++;
	log_debug("Link %" PRIu64 " to '%s' (%s): TLS up, sending PEER_HELLO", l->conn->id, l->node,
		  addr);
	send_hello(l->conn, MIDDLECON__FRAME__STATUS__OK, NULL);
	*ret = l;
	return 0;
}

/* Handshake events of a dialled connection. */
static void slot_event_cb(struct bufferevent *bev, short events, void *userdata)
{
	struct peer_slot *s = userdata;
	char why[160];
	int r;

	if (events & BEV_EVENT_CONNECTED) {
		evtimer_del(s->timer);
		s->bev = NULL;
		r = link_new(s->mesh, bev, s, s->addr_str, &s->link);
		if (r < 0) {
			s->link = NULL;
			slot_fail(s, "%s", r == -EPERM ? "certificate refused" : strerror(-r));
			return;
		}
		s->state = SLOT_LINKED;
		return;
	}
	describe_bev_error(bev, events, why, sizeof(why));
	evtimer_del(s->timer);
	slot_fail(s, "%s", why);
}

/* The slot's timer: dial when waiting, give up when a dial took longer than peer_timeout_ms. */
static void slot_timer_cb(evutil_socket_t fd, short events, void *userdata)
{
	struct peer_slot *s = userdata;
	struct peer_mesh *m = s->mesh;
	struct timeval deadline = ms_tv(m->cfg->peer_timeout_ms);
	_cleanup_(SSL_freep) SSL *ssl = NULL;

	if (s->state == SLOT_CONNECTING) {
		slot_fail(s, "connect and TLS handshake timed out after %u ms",
			  m->cfg->peer_timeout_ms);
		return;
	}
	if (s->state != SLOT_WAITING)
		return;
	ssl = SSL_new(m->client_ctx);
	if (!ssl) {
		slot_fail(s, "out of memory");
		return;
	}
	/* BEV_OPT_CLOSE_ON_FREE hands the socket and the SSL to the bufferevent. */
	s->bev = bufferevent_openssl_socket_new(m->relay->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
						BEV_OPT_CLOSE_ON_FREE);
	if (!s->bev) {
		slot_fail(s, "out of memory");
		return;
	}
	TAKE_PTR(ssl);
	s->state = SLOT_CONNECTING;
	s->attempts++;
	bufferevent_setcb(s->bev, NULL, NULL, slot_event_cb, s);
	evtimer_add(s->timer, &deadline);
	/* A connect that fails at once is reported through slot_event_cb() from the loop. */
	if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&s->addr, (int)s->addr_len) < 0)
		slot_fail(s, "cannot connect: %s", strerror(errno));
}

static void slot_free(struct peer_slot *s)
{
	struct peer_slot **p;

	for (p = &s->mesh->slots; *p; p = &(*p)->next)
		if (*p == s) {
			*p = s->next;
			break;
		}
	if (s->link)
		s->link->slot = NULL;
	if (s->bev)
		bufferevent_free(s->bev);
	if (s->timer)
		event_free(s->timer);
	free(s->parked_node);
	free(s);
}

/* Adds a slot for @sa (from @src) and dials it at once. Returns 0 or -ENOMEM. */
static int slot_new(struct peer_mesh *m, struct peer_source *src, const struct sockaddr *sa,
		    socklen_t len)
{
	struct peer_slot *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->mesh = m;
	s->source = src;
	memcpy(&s->addr, sa, MIN((size_t)len, sizeof(s->addr)));
	s->addr_len = len;
	netaddr_format(sa, s->addr_str, sizeof(s->addr_str));
	s->timer = evtimer_new(m->relay->base, slot_timer_cb, s);
	if (!s->timer) {
		free(s);
		return -ENOMEM;
	}
	s->next = m->slots;
	m->slots = s;
	s->state = SLOT_WAITING;
	event_active(s->timer, EV_TIMEOUT, 0);
	return 0;
}

static bool same_addr(const struct peer_slot *s, const struct sockaddr *sa, socklen_t len)
{
	return s->addr_len == len && memcmp(&s->addr, sa, len) == 0;
}

static void source_schedule(struct peer_source *src, uint32_t seconds)
{
	struct timeval tv = { .tv_sec = seconds };

	evtimer_add(src->timer, &tv);
}

/*
 * The answer for a source: every address becomes a slot (an address already known keeps its
 * slot and link); slots of addresses no longer listed are retired (a live link stays until it
 * drops, an idle slot goes now).
 */
static void source_resolved_cb(int err, struct evutil_addrinfo *res, void *userdata)
{
	struct peer_source *src = userdata;
	struct peer_mesh *m = src->mesh;
	struct peer_slot *s, *next;
	unsigned n = 0;

	if (err == EVUTIL_EAI_CANCEL)
		return; /* the mesh is being freed: @src may be gone already */
	src->req = NULL;
	if (err) {
		char why[sizeof(src->last_error)];

		snprintf(why, sizeof(why), "cannot resolve '%s': %s", src->host,
			 evutil_gai_strerror(err));
		if (strcmp(why, src->last_error) != 0)
			log_warn("Peer %s: %s; trying again", src->spec, why);
		snprintf(src->last_error, sizeof(src->last_error), "%s", why);
		/* Keep the addresses we had: a DNS hiccup is not a departure. */
		source_schedule(src, MIN(m->cfg->peer_dns_refresh_s, 5u));
		return;
	}
	src->last_error[0] = '\0';
	for (s = m->slots; s; s = s->next)
		if (s->source == src)
			s->retired = true;
	for (struct evutil_addrinfo *ai = res; ai; ai = ai->ai_next) {
		bool found = false;

		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		n++;
		for (s = m->slots; s; s = s->next)
			if (same_addr(s, ai->ai_addr, (socklen_t)ai->ai_addrlen)) {
				s->retired = false;
				found = true;
			}
		if (!found && slot_new(m, src, ai->ai_addr, (socklen_t)ai->ai_addrlen) < 0)
			log_oom();
	}
	if (res)
		evutil_freeaddrinfo(res);
	if (n != src->n_addrs)
		log_info("Peer %s: %u address%s", src->spec, n, n == 1 ? "" : "es");
	src->n_addrs = n;
	for (s = m->slots; s; s = next) {
		next = s->next;
		if (s->source == src && s->retired && !s->link) {
			log_info("Peer %s is no longer listed by '%s'", s->addr_str, src->host);
			slot_free(s);
		}
	}
	source_schedule(src, m->cfg->peer_dns_refresh_s);
}

static void source_timer_cb(evutil_socket_t fd, short events, void *userdata)
{
	struct peer_source *src = userdata;
	struct evutil_addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_protocol = IPPROTO_TCP,
		.ai_flags = EVUTIL_AI_NUMERICSERV,
	};

	if (src->req)
		return;
	/* The callback may run before this returns (an address literal, /etc/hosts). */
	src->req = evdns_getaddrinfo(src->mesh->dns, src->host, src->port, &hints,
				     source_resolved_cb, src);
}

static int source_add(struct peer_mesh *m, const char *spec)
{
	_cleanup_free_ char *host = NULL;
	_cleanup_free_ char *port = NULL;
	struct peer_source *src;
	int r;

	r = netaddr_split(spec, MIDDLECON_PEER_PORT, &host, &port);
	if (r >= 0 && (!host || strcmp(port, "0") == 0))
		r = -EINVAL;
	if (r < 0)
		return log_err_errno(r, "Invalid peer '%s' (expected HOST[:PORT])", spec);
	src = calloc(1, sizeof(*src));
	if (!src)
		return log_oom();
	src->mesh = m;
	src->spec = strdup(spec);
	src->host = TAKE_PTR(host);
	src->port = TAKE_PTR(port);
	src->timer = evtimer_new(m->relay->base, source_timer_cb, src);
	src->next = m->sources;
	m->sources = src;
	if (!src->spec || !src->timer)
		return log_oom();
	event_active(src->timer, EV_TIMEOUT, 0);
	return 0;
}

static void pending_free(struct peer_pending *p)
{
	struct peer_mesh *m = p->mesh;

	if (p->prev)
		p->prev->next = p->next;
	else
		m->pending = p->next;
	if (p->next)
		p->next->prev = p->prev;
	m->n_pending--;
	if (p->bev)
		bufferevent_free(p->bev);
	free(p);
}

/* Handshake events of an accepted connection. */
static void pending_event_cb(struct bufferevent *bev, short events, void *userdata)
{
	struct peer_pending *p = userdata;
	struct peer_mesh *m = p->mesh;
	struct peer_link *l;
	char why[160];

	if (events & BEV_EVENT_CONNECTED) {
		p->bev = NULL;
		/* The heartbeat bounds the link from here on; the handshake timeout is dropped. */
		bufferevent_set_timeouts(bev, NULL, NULL);
		(void)link_new(m, bev, NULL, p->addr, &l);
		pending_free(p);
		return;
	}
	describe_bev_error(bev, events, why, sizeof(why));
	m->handshakes_failed++;
	/* Info, not warning: anyone can connect to a listening port and fail a handshake. */
	log_info("Link from %s refused: %s", p->addr, why);
	pending_free(p);
}

static void accept_cb(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa,
		      int socklen, void *userdata)
{
	struct peer_mesh *m = userdata;
	struct timeval handshake = ms_tv(m->cfg->peer_timeout_ms);
	_cleanup_(SSL_freep) SSL *ssl = NULL;
	struct peer_pending *p;

	if (m->n_pending >= PEER_MAX_PENDING) {
		log_warn("Refusing a peer connection: %u handshakes in progress", m->n_pending);
		close(fd);
		return;
	}
	p = calloc(1, sizeof(*p));
	ssl = SSL_new(m->server_ctx);
	if (!p || !ssl) {
		free(p);
		close(fd);
		log_oom();
		return;
	}
	p->mesh = m;
	netaddr_format(sa, p->addr, sizeof(p->addr));
	p->bev = bufferevent_openssl_socket_new(m->relay->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
						BEV_OPT_CLOSE_ON_FREE);
	if (!p->bev) {
		free(p);
		close(fd);
		log_oom();
		return;
	}
	TAKE_PTR(ssl);
	p->next = m->pending;
	if (m->pending)
		m->pending->prev = p;
	m->pending = p;
	m->n_pending++;
	/* A client that never finishes its handshake loses its slot after peer_timeout_ms. */
	bufferevent_set_timeouts(p->bev, &handshake, &handshake);
	bufferevent_setcb(p->bev, NULL, NULL, pending_event_cb, p);
	bufferevent_enable(p->bev, EV_READ | EV_WRITE);
}

static void accept_error_cb(struct evconnlistener *listener, void *userdata)
{
	int e = EVUTIL_SOCKET_ERROR();

	log_warn_errno(e, "accept() on the peer listener failed: %m, ignoring");
}

static const char *link_state_to_string(enum link_state s)
{
	switch (s) {
	case LINK_HELLO:
		return "hello";
	case LINK_UP:
		return "up";
	case LINK_DRAINING:
		return "draining";
	}
	return "?";
}

static const char *slot_state_to_string(const struct peer_slot *s)
{
	switch (s->state) {
	case SLOT_WAITING:
		return s->attempts ? "backoff" : "waiting";
	case SLOT_CONNECTING:
		return "connecting";
	case SLOT_LINKED:
		return "linked";
	case SLOT_PARKED:
		return s->self ? "self" : "duplicate";
	}
	return "?";
}

static json_t *describe_link(const struct peer_link *l)
{
	const struct relay_conn *c = l->conn;
	json_t *routes = json_array();
	unsigned serving = 0;

	if (!routes)
		return NULL;
	for (const struct relay_req *q = c->serving; q; q = q->rs_next)
		serving++;
	for (const struct relay_route *rt = c->relay->routes; rt; rt = rt->next)
		if (rt->conn == c && json_array_append_new(routes, json_string(rt->pattern)) < 0) {
			json_decref(routes);
			return NULL;
		}
	/* "o" steals routes, also when json_pack() fails. */
	return json_pack(
		"{s:I, s:s, s:s, s:s, s:s, s:I, s:f, s:f, s:o, s:i, s:i, s:I, s:I, s:I, s:o}", "id",
		(json_int_t)c->id, "node", l->node, "addr", l->addr, "direction",
		l->slot ? "out" : "in", "state", link_state_to_string(l->state), "connected_at_ms",
		(json_int_t)(l->connected_ns / 1000000u), "rtt_ms", (double)l->rtt_ns / 1e6,
		"rtt_min_ms", (double)l->rtt_min_ns / 1e6, "clock_offset_ms",
		l->clock_known ? json_real((double)l->clock_offset_ns / 1e6) : json_null(),
		"requests_out", (int)serving, "requests_in", (int)c->n_requests, "frames_in",
		(json_int_t)c->frames_in, "frames_out", (json_int_t)c->frames_out, "output_bytes",
		(json_int_t)evbuffer_get_length(bufferevent_get_output(c->bev)), "routes", routes);
}

json_t *peer_mesh_describe(const struct peer_mesh *m)
{
	json_auto_t *o = json_pack(
		"{s:s, s:[], s:[], s:[], s:I, s:I, s:I}", "node", node_of(m->relay), "listen",
		"links", "peers", "links_total", (json_int_t)m->links_total, "handshakes_failed",
		(json_int_t)m->handshakes_failed, "hellos_refused", (json_int_t)m->hellos_refused);
	json_t *listen, *links, *peers;

	if (!o)
		return NULL;
	listen = json_object_get(o, "listen");
	links = json_object_get(o, "links");
	peers = json_object_get(o, "peers");
	for (size_t i = 0; m->listen_addrs && m->listen_addrs[i]; i++)
		if (json_array_append_new(listen, json_string(m->listen_addrs[i])) < 0)
			return NULL;
	for (const struct peer_link *l = m->links; l; l = l->next)
		if (l->conn && json_array_append_new(links, describe_link(l)) < 0)
			return NULL;
	for (const struct peer_slot *s = m->slots; s; s = s->next)
		if (json_array_append_new(
			    peers,
			    json_pack("{s:s, s:s, s:s, s:I, s:I, s:s?, s:s?, s:b}", "peer",
				      s->source ? s->source->spec : "?", "addr", s->addr_str,
				      "state", slot_state_to_string(s), "attempts",
				      (json_int_t)s->attempts, "failures", (json_int_t)s->failures,
				      "node", s->link ? s->link->node : s->parked_node,
				      "last_error", s->last_error[0] ? s->last_error : NULL,
				      "retired", s->retired)) < 0)
			return NULL;
	for (const struct peer_source *src = m->sources; src; src = src->next)
		if (src->last_error[0] &&
		    json_array_append_new(peers, json_pack("{s:s, s:s, s:s}", "peer", src->spec,
							   "state", "unresolved", "last_error",
							   src->last_error)) < 0)
			return NULL;
	return json_incref(o);
}

/*
 * The TLS material: the configured files, or the generated set in the state dir (created on
 * first use, shared with k2i when both use one state dir). Checks that the node's name is its
 * certificate's identity, since that is the name peers will know it by.
 */
static int mesh_tls(struct peer_mesh *m)
{
	const struct middlecon_config *cfg = m->cfg;
	struct relay *relay = m->relay;
	_cleanup_free_ char *cert = NULL;
	_cleanup_free_ char *key = NULL;
	_cleanup_free_ char *ca = NULL;
	_cleanup_free_ char *identity = NULL;
	struct tls_config tls = { 0 };
	bool created = false;
	int r;

	if (cfg->tls_cert) {
		cert = strdup(cfg->tls_cert);
		key = strdup(cfg->tls_key);
		ca = strdup(cfg->tls_ca);
		if (!cert || !key || !ca)
			return log_oom();
	} else {
		r = certgen_ensure(cfg->state_dir, relay->node, &created);
		if (r < 0)
			return log_err_errno(r, "Cannot set up TLS material in '%s': %m",
					     cfg->state_dir);
		if (path_join(cfg->state_dir, "node.pem", &cert) < 0 ||
		    path_join(cfg->state_dir, "node.key", &key) < 0 ||
		    path_join(cfg->state_dir, "ca.pem", &ca) < 0)
			return log_oom();
		if (created)
			log_notice(
				"Generated a private CA and a node certificate in '%s'; copy "
				"ca.pem and ca.key to the other hosts' state directories so that "
				"their relays can link with this one",
				cfg->state_dir);
	}
	r = tls_cert_file_identity(cert, &identity);
	if (r < 0)
		return log_err_errno(r, "Cannot read the certificate '%s': %m", cert);
	if (!identity || !node_name_valid(identity))
		return log_err_errno(-EINVAL,
				     "The certificate '%s' names no valid node (its first DNS name "
				     "or CN must be a host name)",
				     cert);
	if (cfg->node_name && strcasecmp(cfg->node_name, identity) != 0)
		return log_err_errno(-EINVAL,
				     "node_name '%s' is not the identity of the certificate '%s' "
				     "('%s'): peers would refuse this node",
				     cfg->node_name, cert, identity);
	snprintf(relay->node, sizeof(relay->node), "%s", identity);

	tls.cert_file = cert;
	tls.key_file = key;
	tls.ca_file = ca;
	/* Mutual TLS both ways: a node accepts links only from nodes the mesh's CA signed. */
	tls.require_peer_cert = true;
	r = tls_server_ctx_new(&tls, &m->server_ctx);
	if (r >= 0)
		r = tls_client_ctx_new(&tls, &m->client_ctx);
	if (r < 0)
		return log_err_errno(r, "Cannot set up TLS with '%s', '%s' and '%s': %m", cert, key,
				     ca);
	return 0;
}

static int mesh_listen(struct peer_mesh *m, const char *spec)
{
	_cleanup_free_ char *host = NULL;
	_cleanup_free_ char *port = NULL;
	struct evconnlistener **ls, *l;
	char addr[64] = "?";
	int fd = -EBADF, r;

	r = netaddr_split(spec, MIDDLECON_PEER_PORT, &host, &port);
	if (r < 0)
		return log_err_errno(r, "Invalid listen address '%s' (expected ADDR[:PORT])", spec);
	r = netaddr_listen_tcp(host, port, LISTEN_BACKLOG, &fd, addr, sizeof(addr));
	if (r < 0)
		return log_err_errno(r, "Cannot listen for peers on '%s': %m", spec);
	ls = reallocarray(m->listeners, m->n_listeners + 1, sizeof(*ls));
	if (!ls) {
		close(fd);
		return log_oom();
	}
	m->listeners = ls;
	/* LEV_OPT_CLOSE_ON_FREE: the listener owns the socket from here. */
	l = evconnlistener_new(m->relay->base, accept_cb, m,
			       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (!l) {
		close(fd);
		return log_oom();
	}
	evconnlistener_set_error_cb(l, accept_error_cb);
	m->listeners[m->n_listeners++] = l;
	if (strv_extend(&m->listen_addrs, addr) < 0)
		return log_oom();
	log_info("Listening for peer links on %s (mutual TLS)", addr);
	return 0;
}

int peer_mesh_start(struct relay *relay)
{
	const struct middlecon_config *cfg = relay->cfg;
	struct peer_mesh *m;
	int r;

	if (!middlecon_config_mesh(cfg))
		return 0;
	m = calloc(1, sizeof(*m));
	if (!m)
		return log_oom();
	m->relay = relay;
	m->cfg = cfg;
	relay->mesh = m;
	m->idle_check = event_new(relay->base, -1, 0, idle_check_cb, m);
	if (!m->idle_check) {
		r = log_oom();
		goto fail;
	}
	r = mesh_tls(m);
	if (r < 0)
		goto fail;
	/* Reads resolv.conf and /etc/hosts; without a resolv.conf, evdns falls back to 127.0.0.1. */
	m->dns = evdns_base_new(relay->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (!m->dns)
		m->dns = evdns_base_new(relay->base, 0);
	if (!m->dns) {
		r = log_oom();
		goto fail;
	}
	for (char **s = cfg->listen; s && *s; s++) {
		r = mesh_listen(m, *s);
		if (r < 0)
			goto fail;
	}
	for (char **s = cfg->peers; s && *s; s++) {
		r = source_add(m, *s);
		if (r < 0)
			goto fail;
	}
	for (char **s = cfg->peer_dns; s && *s; s++) {
		r = source_add(m, *s);
		if (r < 0)
			goto fail;
	}
	log_info("Node '%s': %zu peer listener%s, %zu peer%s configured", relay->node,
		 m->n_listeners, m->n_listeners == 1 ? "" : "s",
		 strv_length(cfg->peers) + strv_length(cfg->peer_dns),
		 strv_length(cfg->peers) + strv_length(cfg->peer_dns) == 1 ? "" : "s");
	return 0;
fail:
	relay->mesh = peer_mesh_free(m);
	return r;
}

struct peer_mesh *peer_mesh_free(struct peer_mesh *m)
{
	if (!m)
		return NULL;
	/* Links first, while the mesh is whole: their teardown reaches slots and parked peers. */
	while (m->links) {
		struct peer_link *l = m->links;

		if (l->conn)
			conn_close(l->conn); /* frees l through peer_link_closed() */
		else
			link_free(l);
	}
	while (m->pending)
		pending_free(m->pending);
	while (m->slots)
		slot_free(m->slots);
	while (m->sources) {
		struct peer_source *src = m->sources;

		m->sources = src->next;
		if (src->req)
			evdns_getaddrinfo_cancel(src->req);
		if (src->timer)
			event_free(src->timer);
		free(src->spec);
		free(src->host);
		free(src->port);
		free(src);
	}
	for (size_t i = 0; i < m->n_listeners; i++)
		evconnlistener_free(m->listeners[i]);
	free(m->listeners);
	strv_free(m->listen_addrs);
	if (m->dns)
		evdns_base_free(m->dns, 1);
	if (m->idle_check)
		event_free(m->idle_check);
	SSL_CTX_free(m->server_ctx);
	SSL_CTX_free(m->client_ctx);
	free(m);
	return NULL;
}
