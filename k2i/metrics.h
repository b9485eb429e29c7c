/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * k2i's own counters and their Prometheus text exposition (GET /metrics). Plain integers updated
 * from the one event-loop thread; no locking.
 */

#include <stdint.h>

struct evbuffer;

/* The routes, as metric labels (never the raw path: that would be unbounded cardinality). */
enum k2i_route {
	K2I_ROUTE_NONE, /* no route matched (404) or the request was refused before routing */
	K2I_ROUTE_INDEX,
	K2I_ROUTE_HELLO,
	K2I_ROUTE_PROC,
	K2I_ROUTE_PROC_PID,
	K2I_ROUTE_PROC_CMD,
	K2I_ROUTE_PROC_SELF,
	K2I_ROUTE_HOST,
	K2I_ROUTE_CONFIG,
	K2I_ROUTE_METRICS,
	K2I_ROUTE_HEALTHZ,
	K2I_ROUTE_EVENTS,
	K2I_ROUTE_EXITS,
	K2I_ROUTE_VMS,
	K2I_ROUTE_SANDBOXES,
	_K2I_ROUTE_MAX,
};

/* The status codes k2i answers with; anything else is counted under "other". */
enum k2i_status_slot {
	K2I_STATUS_200,
	K2I_STATUS_400,
	K2I_STATUS_401,
	K2I_STATUS_403,
	K2I_STATUS_404,
	K2I_STATUS_405,
	K2I_STATUS_413,
	K2I_STATUS_500,
	K2I_STATUS_503,
	K2I_STATUS_505,
	K2I_STATUS_OTHER,
	_K2I_STATUS_MAX,
};

enum k2i_proto { K2I_PROTO_HTTP1, K2I_PROTO_H2, _K2I_PROTO_MAX };

#define K2I_SCAN_BUCKETS 10

struct k2i_metrics {
	uint64_t requests[_K2I_ROUTE_MAX][_K2I_STATUS_MAX][_K2I_PROTO_MAX];
	uint64_t connections_total[_K2I_PROTO_MAX];
	uint64_t connections_active;
	uint64_t connections_refused; /* over max_connections */
	uint64_t tls_handshake_failures;
	uint64_t auth_failures; /* 401 and 403 answers */
	uint64_t scans_total;
	uint64_t scan_cache_hits;
	uint64_t live_patches; /* snapshots patched from process events */
	uint64_t scan_errors;
	uint64_t scan_buckets[K2I_SCAN_BUCKETS]; /* cumulative at render time, not here */
	double scan_seconds_sum;
	uint64_t processes; /* processes in the last full scan */
	double start_time; /* Unix time k2i started */
};

/* Returns the route's label value ("proc", "proc_pid", …). */
const char *k2i_route_to_string(enum k2i_route r);

/* Counts one answered request. */
void metrics_count_request(struct k2i_metrics *m, enum k2i_route route, int status,
			   enum k2i_proto proto);

/* Records a /proc scan of @seconds that found @processes entries (threads view excluded). */
void metrics_observe_scan(struct k2i_metrics *m, double seconds);

/*
 * Appends the Prometheus text exposition (format 0.0.4) of @m, plus process_* metrics of k2i
 * itself read from /proc/self, to @out. Returns 0 or -ENOMEM.
 */
int metrics_render(const struct k2i_metrics *m, struct evbuffer *out);
