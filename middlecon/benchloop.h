/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * benchloop: the load generator shared by mcbench (middlecon and the raw Unix-socket floor) and
 * tests/bench/natsbench.c (NATS), so that every side is driven and measured by the same code.
 *
 * One thread per client, each with its own connection and one request in flight (a blocking
 * call). Latencies are CLOCK_MONOTONIC nanoseconds stored in arrays allocated and touched before
 * the run starts: the hot path makes no allocation of its own (the transport's library may).
 *
 *   closed loop: each client sends its next request as soon as the previous reply is in.
 *   open loop:   requests are due on a fixed schedule (a total of @rate per second, spread evenly
 *                over the clients); a request's latency runs from its SCHEDULED send time, so a
 *                reply that comes late delays the following sends and that queueing shows in the
 *                percentiles instead of being omitted (coordinated omission). With one request in
 *                flight per client, the clients bound how far the schedule can run ahead.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct benchloop_config {
	unsigned clients; /* threads, each with its own connection */
	size_t size; /* request body in bytes */
	double duration; /* seconds; used when requests == 0 */
	uint64_t requests; /* total over all clients; 0: run for duration */
	bool open_loop;
	double rate; /* open loop: total requests per second */
	unsigned warmup; /* untimed calls per client before the run */
};

/*
 * The transport under test. client_new() opens client @idx's connection (called in that client's
 * thread before the run) and stores an opaque handle in *ret; call() makes one round trip with
 * @body (@len bytes, borrowed) and returns 0 on a good reply, > 0 for a reply that is an error
 * (counted, not timed), < 0 (-errno) when the connection is unusable (the client stops);
 * client_free() closes it. @ctx is passed through, borrowed.
 */
struct benchloop_ops {
	int (*client_new)(void *ctx, unsigned idx, void **ret);
	int (*call)(void *client, const void *body, size_t len);
	void (*client_free)(void *client);
};

/* The outcome of a run, latencies in microseconds. */
struct benchloop_result {
	uint64_t ok;
	uint64_t errors;
	double seconds;
	double rate; /* good replies per second */
	double p50, p90, p99, p999, max;
};

/*
 * Runs the load described by @cfg (borrowed) against @ops with @ctx and stores the outcome in
 * *ret. Returns 0, -EINVAL (bad configuration), -ENOMEM, or the first client's -errno when no
 * client could connect.
 */
int benchloop_run(const struct benchloop_config *cfg, const struct benchloop_ops *ops, void *ctx,
		  struct benchloop_result *ret);

/*
 * Prints @res as one line of key=value pairs after @label (borrowed), e.g.
 * "middlecon mode=closed clients=1 size=64 ok=... rate=... p50_us=...". The bench scripts parse it.
 */
void benchloop_print(const char *label, const struct benchloop_config *cfg,
		     const struct benchloop_result *res);

/*
 * Parses a common option (the long options "clients", "size", "duration", "requests", "mode",
 * "rate", "warmup") named @name with value @value (both borrowed) into @cfg. Returns 1 when
 * @name is one of them and the value is valid, 0 when @name is not a common option, -EINVAL for
 * a bad value.
 */
int benchloop_parse_option(struct benchloop_config *cfg, const char *name, const char *value);
