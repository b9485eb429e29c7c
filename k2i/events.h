/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The event hub: fans process lifecycle events out to the live streams of GET /v1/events, and
 * keeps the ring of recent exits behind GET /v1/exits.
 *
 * The hub knows nothing of where events come from (k2i/proctrace.c) nor of HTTP: the caller
 * formats each event as one JSON object once, and each stream's transport (HTTP/1.1 chunked or
 * one HTTP/2 stream) receives bytes through a small table of callbacks. A stream whose transport
 * has more than the backlog limit queued is cut off with a final error line, so a stalled client
 * costs a bounded amount of memory.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct event_hub;
struct event_sub;
struct json_t;

enum event_type {
	EVENT_FORK,
	EVENT_EXEC,
	EVENT_EXIT,
	_EVENT_TYPE_MAX,
};

/* Returns "fork", "exec" or "exit". */
const char *event_type_to_string(enum event_type t);

/* One event as published: what streams filter on, and its JSON text. All borrowed. */
struct event_item {
	enum event_type type;
	const char *comm;
	uid_t uid;
	uint64_t cgroup_id;
	const char *json; /* one compact JSON object, no newline */
	size_t json_len;
};

/* One exit, as kept in the ring. Strings are copied by event_hub_record_exit(). */
struct event_exit {
	pid_t pid;
	pid_t ppid;
	uid_t uid;
	const char *comm;
	const char *cmdline; /* arguments joined by spaces, as last seen; NULL if never seen */
	const char *key; /* boot_id:start_ticks:pid */
	int exit_code; /* valid when !signaled */
	int signal; /* terminating signal, 0 if it exited */
	uint64_t start_ns; /* CLOCK_REALTIME of the start, 0 if unknown */
	uint64_t end_ns; /* CLOCK_REALTIME of the exit */
};

/* How a stream's bytes reach its client. @ctx is the transport's own, passed back verbatim. */
struct event_sub_ops {
	/* Bytes queued for this stream and not yet sent to the client. */
	size_t (*queued)(void *ctx);
	/* Queues @len bytes; returns 0 or -ENOMEM (the hub then cuts the stream off). */
	int (*write)(void *ctx, const char *data, size_t len);
	/* Queues the stream's last bytes, then ends it. The hub calls this at most once. */
	void (*finish)(void *ctx, const char *data, size_t len);
};

enum event_format { EVENT_FORMAT_NDJSON, EVENT_FORMAT_SSE };

/* Returns the Content-Type of @f. */
const char *event_format_content_type(enum event_format f);

/*
 * Creates a hub keeping the last @exits_max exits (1..1,000,000) and cutting off streams with
 * more than @backlog_max bytes queued. Returns 0, -EINVAL or -ENOMEM.
 */
int event_hub_new(size_t exits_max, size_t backlog_max, struct event_hub **ret);

/* Ends every stream (without a final line) and frees the hub. Accepts NULL, returns NULL. */
struct event_hub *event_hub_free(struct event_hub *h);

/*
 * Parses the filters of GET /v1/events from decoded query parameters: type (comma list of
 * fork, exec, exit), comm (comma list of exact names), uid (comma list of numbers), cgroup
 * (comma list of cgroup v2 IDs, or one path under /sys/fs/cgroup whose directory's inode is
 * the ID), format (ndjson or sse). @accept is the Accept header (may be NULL):
 * "text/event-stream" selects SSE unless format= says otherwise. Returns 0 and a new,
 * unattached subscription in *ret (free with event_sub_free()), -EINVAL with a malloc'ed
 * message in *ret_error, or -ENOMEM.
 */
int event_sub_new(const char *const *keys, const char *const *values, size_t n, const char *accept,
		  struct event_sub **ret, char **ret_error);

/* The format the subscription writes. */
enum event_format event_sub_format(const struct event_sub *s);

/*
 * Starts delivering events to @s through @ops/@ctx (both borrowed; they must stay valid until
 * event_sub_free()). Writes nothing by itself.
 */
void event_hub_attach(struct event_hub *h, struct event_sub *s, const struct event_sub_ops *ops,
		      void *ctx);

/* Detaches @s from its hub (if attached) and frees it. Accepts NULL, returns NULL. */
struct event_sub *event_sub_free(struct event_sub *s);

/* Delivers @item to every attached stream whose filters match. */
void event_hub_publish(struct event_hub *h, const struct event_item *item);

/* Copies @e into the exits ring, replacing the oldest entry when it is full. Returns 0 or
 * -ENOMEM (the exit is then not recorded). */
int event_hub_record_exit(struct event_hub *h, const struct event_exit *e);

/*
 * Builds the JSON array of the recorded exits, oldest first, keeping those matching the
 * optional @pid (> 0) and @comm filters, at most @limit (0: all) of the newest. Returns 0 and a
 * new reference in *ret, or -ENOMEM.
 */
int event_hub_exits_json(const struct event_hub *h, pid_t pid, const char *comm, size_t limit,
			 struct json_t **ret);

struct event_hub_stats {
	uint64_t published; /* events offered to the hub */
	uint64_t delivered; /* event copies queued to streams */
	uint64_t streams_cut_off; /* streams ended because their client was too slow */
	uint64_t events_dropped; /* events not delivered to a stream being cut off */
	size_t streams; /* attached now */
	size_t exits; /* in the ring now */
};

void event_hub_stats(const struct event_hub *h, struct event_hub_stats *ret);
