/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The k2i HTTP API (ARCHITECTURE.md "k2i HTTP API (v1)"), independent of the transport: the
 * HTTP/1.1 and HTTP/2 front ends turn a request into a struct k2i_request, call
 * routes_handle(), and send the struct k2i_response back.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "k2i/metrics.h"

struct event_hub;
struct event_sub;
struct evbuffer;
struct k2i_deferred;
struct k2i_config;
struct routes;

struct k2i_request {
	const char *method;
	const char *target; /* request-target / :path as received */
	const char *authorization; /* the Authorization header, or NULL */
	const char *accept; /* the Accept header, or NULL */
	int peer; /* enum tls_peer_status of the connection */
	const char *peer_identity; /* certificate identity, or NULL */
	enum k2i_proto proto;
	/* Set by the front end when the request was refused before routing; routes_handle()
	 * answers with this status and message instead of routing. */
	int refuse_status;
	const char *refuse_message;
};

struct k2i_response {
	int status;
	const char *content_type; /* static string */
	struct evbuffer *body; /* owned by the response; its length is the Content-Length */
	const char *allow; /* Allow header of a 405, or NULL */
	const char *www_authenticate; /* WWW-Authenticate header of a 401, or NULL */
	bool head; /* HEAD request: send the headers only */
	/* Non-NULL for a live stream (GET /v1/events): no Content-Length, and after the headers
	 * the transport attaches this subscription to the hub and owns it from then on. */
	struct event_sub *stream;
	/* Non-NULL when the answer comes later (GET /v1/vms, /v1/sandboxes: the launchers are
	 * asked without blocking the loop). The transport takes it, calls k2i_deferred_wait() at
	 * once, and sends nothing for this request (nor later ones on an HTTP/1.1 connection)
	 * until then; or k2i_deferred_cancel() if the client goes away first. */
	struct k2i_deferred *deferred;
};

/*
 * Called once from the loop with the finished response of a deferred request. @resp is
 * borrowed: send it as if routes_handle() had produced it (its body may be taken); the caller
 * releases it afterwards. The deferred object is already freed.
 */
typedef void (*k2i_deferred_cb_t)(void *ctx, struct k2i_response *resp);

/* Sets what is called with @ctx when the deferred answer @d is ready. */
void k2i_deferred_wait(struct k2i_deferred *d, k2i_deferred_cb_t done, void *ctx);

/* Drops @d (may be NULL) before it was answered; its callback is never called. */
void k2i_deferred_cancel(struct k2i_deferred *d);

/*
 * Creates the route handler. @cfg and @metrics are borrowed and must outlive it. Reads the token
 * file if one is configured. Returns 0, -ENOMEM, or the -errno of reading /proc or the token file
 * (logged).
 */
int routes_new(const struct k2i_config *cfg, struct k2i_metrics *metrics, struct event_hub *hub,
	       struct routes **ret);

/* The hub live streams attach to (borrowed from the caller of routes_new()). */
struct event_hub *routes_event_hub(const struct routes *r);

struct lifecycle;
struct instances;
struct event_exit;

/* Sets where /v1/host and /metrics read the event source from (borrowed; may be NULL). */
void routes_set_lifecycle(struct routes *r, struct lifecycle *l);

/* Sets the instance tracker behind /v1/vms, /v1/sandboxes and process objects' "instance"
 * (borrowed; may be NULL: no instances are reported). */
void routes_set_instances(struct routes *r, struct instances *in);

/* Notes that a process ended (a launcher's exit ends its instance). */
void routes_note_exit(struct routes *r, const struct event_exit *x);

/*
 * Notes that process @pid started or exec'd (@gone false) or ended (@gone true) since the last
 * scan, so requests served from the shared snapshot see the change at once (the live table).
 */
void routes_note_process(struct routes *r, pid_t pid, bool gone);

/* Frees @r; accepts NULL and returns NULL. */
struct routes *routes_free(struct routes *r);

/*
 * Answers @req into @resp (which the caller zero-initialises and later releases with
 * k2i_response_done()). Always produces a response: client mistakes become 4xx JSON errors and
 * internal failures 500; it counts the request in the metrics.
 */
void routes_handle(struct routes *r, const struct k2i_request *req, struct k2i_response *resp);

/* Frees the body of @resp, and its stream or deferred answer if the transport did not take it. */
void k2i_response_done(struct k2i_response *resp);
