/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The live side of k2i's process table: takes the process lifecycle events of k2i/proctrace.c,
 * keeps what is known of every live process (its key, comm and command line as last seen),
 * publishes each event to the event streams, records each exit in the exits ring with the
 * command line it had, and tells the routes to rescan when the table changed. A periodic /proc
 * scan reconciles the table with what really runs (lost events, processes older than k2i).
 */

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct event_hub;
struct k2i_config;
struct lifecycle;
struct routes;

struct lifecycle_options {
	bool no_bpf; /* k2i --no-bpf: the process connector or polling only */
	uint32_t reconcile_interval_s;
	uint32_t cmdline_max;
};

/*
 * Starts the best event source and seeds the table from /proc. @base, @hub and @routes are
 * borrowed and must outlive the object. Logs once which source is used and why a better one
 * was not. Returns 0, -ENOMEM, or the -errno of the last-resort source or of reading /proc.
 */
int lifecycle_new(struct event_base *base, const struct lifecycle_options *opts,
		  struct event_hub *hub, struct routes *routes, struct lifecycle **ret);

/* Accepts NULL, returns NULL. */
struct lifecycle *lifecycle_free(struct lifecycle *l);

struct lifecycle_stats {
	const char *source; /* "bpf", "netlink" or "poll" (static) */
	uint64_t received; /* events from the source */
	uint64_t lost; /* events the kernel could not hand over */
	uint64_t processes; /* processes in the live table */
	uint64_t reconciled; /* table entries fixed by a reconcile scan */
};

/* Handles the events already queued by the kernel (see proctrace_drain()). */
void lifecycle_drain(struct lifecycle *l);

void lifecycle_stats(const struct lifecycle *l, struct lifecycle_stats *ret);
