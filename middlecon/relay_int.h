/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What relay.c (routing) and peer.c (peer links) share: the relay's connection, route and
 * request structures, and the few functions each calls in the other. Not an interface for any
 * other file.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proto/middlecon.pb-c.h"

struct bufferevent;
struct evbuffer;
struct event;
struct event_base;
struct evconnlistener;
struct middlecon_config;
struct peer_link;
struct peer_mesh;

#define LISTEN_BACKLOG 511
/* Registrations and subscriptions one connection may hold: each costs relay memory. */
#define RELAY_MAX_ROUTES_PER_CONN 4096
/* Frames on a link up to this size are made contiguous, so they go out as one TLS record. */
#define RELAY_LINK_COALESCE 16384
/* Names one peer node may announce. */
#define RELAY_MAX_ROUTES_PER_LINK 65536
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
	bool remote; /* announced by the peer node at the other end of conn (a link) */
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

/*
 * A connection: a local client on the Unix socket (link == NULL), or a peer link to another
 * node's relay over TCP+TLS (link != NULL, see peer.h). Both route through the same code; where
 * they differ (identity, one-hop forwarding, route announcements) the code tests c->link.
 */
struct relay_conn {
	struct relay *relay;
	struct peer_link *link; /* owned by peer.c; NULL for a local client */
	struct relay_conn *prev, *next; /* relay.conns, or relay.dead once closed */
	struct bufferevent *bev; /* owned; BEV_OPT_CLOSE_ON_FREE closes the socket with it */
	uint64_t id; /* for logs and $sys.conns */
	struct ucred cred; /* SO_PEERCRED at accept: the only identity the relay believes (zero
			    * for a link, whose callers' identity comes with each request) */
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
	uint64_t pub_seq; /* relay.pub_seq of the last PUBLISH sent over this link */
};

struct relay_stats {
	uint64_t conns_total;
	uint64_t requests; /* forwarded to a responder */
	uint64_t replies; /* forwarded back to a requester */
	uint64_t late_replies; /* dropped: the request was no longer in flight */
	uint64_t published, delivered, pub_dropped;
	uint64_t read_pauses; /* a connection's reads paused because it did not read its output */
	uint64_t slow_closed; /* connections closed as slow consumers */
	uint64_t remote_requests; /* forwarded to another node over a link */
	uint64_t remote_served; /* received over a link and forwarded to a local responder */
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
	struct peer_mesh *mesh; /* peer links; NULL when this relay is not part of a mesh */
	uint64_t pub_seq; /* counts PUBLISH frames, so a link gets one copy of each */
};

/* relay.c */

/*
 * Queues the frame @f (header re-packed, f->version set) with @body_len body bytes moved from
 * @src or copied from @body. Returns 0, -EPIPE (closed), -EMSGSIZE (over the conn's frame limit,
 * nothing queued) or -ENOMEM.
 */
int conn_send(struct relay_conn *c, Frame *f, struct evbuffer *src, const void *body,
	      size_t body_len);

/* Takes @c out of service at once (in-flight requests answered, routes dropped); freed later. */
void conn_close(struct relay_conn *c);

/* Closes @c once its queued output is written, reading nothing more. */
void conn_close_after_flush(struct relay_conn *c);

/*
 * Makes a connection of the established link @bev (the relay takes it over, with
 * BEV_OPT_CLOSE_ON_FREE) for @link (owned by peer.c, freed through peer_link_closed()). Returns 0
 * and the connection in *ret, or -ENOMEM (then @bev is freed).
 */
int relay_link_attach(struct relay *relay, struct bufferevent *bev, struct peer_link *link,
		      struct relay_conn **ret);

/* Announces every locally registered name over the link @c, which has just come up. */
void relay_link_up(struct relay_conn *c);

/* peer.c */

/* Handles PEER_HELLO, PING and PONG received on the link @c. */
void peer_link_frame(struct relay_conn *c, const Frame *f);

/* Called by conn_close() for a link: the link state goes, a dialler schedules its reconnect. */
void peer_link_closed(struct relay_conn *c);

/* Whether new requests may be sent over the link @c (it is up and not being drained). */
bool peer_link_usable(const struct relay_conn *c);

/* Whether the link @c exchanged PEER_HELLO (it may be draining since). */
bool peer_link_established(const struct relay_conn *c);

/*
 * How far the clock of the node at the other end of the link @c is ahead of ours (ns; negative
 * when behind), measured by the heartbeats; 0 for a local connection or before the first PONG.
 * A deadline the peer sends, in its clock, is that much later than the same instant in ours.
 */
int64_t peer_link_clock_offset(const struct relay_conn *c);

/* The verified node name at the other end of the link @c. */
const char *peer_link_node(const struct relay_conn *c);

/* Called when a request over the link @c finished: a drained link closes once idle. */
void peer_link_check_idle(struct relay_conn *c);

/* $sys.peers: the links, their state, round-trip time and routes. New reference or NULL. */
struct json_t *peer_mesh_describe(const struct peer_mesh *m);

/*
 * Starts the mesh of @relay from its configuration: the TLS listener(s), the configured peers
 * and the DNS names to resolve. Returns 0 (relay->mesh set, or left NULL when nothing is
 * configured) or -errno after logging why.
 */
int peer_mesh_start(struct relay *relay);

/* Closes every link and listener. Accepts NULL; returns NULL. */
struct peer_mesh *peer_mesh_free(struct peer_mesh *m);
