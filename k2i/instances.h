/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The supervised instances of this host (ARCHITECTURE.md "Launchers and supervision"): every
 * running sandbox and microVM launcher has a record in <rundir>/instances/ and a control socket
 * (libcommon/instance.h, libcommon/ctlsock.h). k2i watches that directory (inotify), asks each
 * live instance for its state when a client asks, keeps the last instances that ended with how
 * they ended (from the process exit events), removes the records of launchers that died without
 * removing their own, and tells which processes belong to which instance.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct event_base;
struct event_exit;
struct json_t;
struct proc_instance;
struct proc_snapshot;
struct instances;

/* How many ended instances are remembered for GET /v1/vms and /v1/sandboxes. */
#define INSTANCES_EXITED_MAX 256

/*
 * Starts tracking the instances under @rundir (borrowed; the instances directory is created
 * 0755 if missing) on @base. Returns 0 and the tracker in *ret, or -ENOMEM / -errno of creating
 * the directory or the inotify watch.
 */
int instances_new(struct event_base *base, const char *rundir, struct instances **ret);

/* Frees @in. Accepts NULL; returns NULL. */
struct instances *instances_free(struct instances *in);

/*
 * Notes that process @x->pid ended. If it was an instance's launcher, the instance is moved to
 * the ended ones with @x's exit status and its record, if the launcher left one, is removed.
 */
void instances_note_exit(struct instances *in, const struct event_exit *x);

struct instances_query;

/* Called once a query has its answer: @r and @result as instances_query() would return them
 * at once (@result borrowed for the call). The query is freed after this returns. */
typedef void (*instances_query_cb_t)(int r, struct json_t *result, void *userdata);

/*
 * Builds the JSON array of the instances of kind @kind ("vm" or "sandbox"): the live ones, each
 * with the state its control socket reports, then the ended ones, newest last. With @id, the one
 * object of that instance instead: its live run, else its latest ended run (-ENOENT if none).
 *
 * The control sockets are asked on the loop without blocking it, up to 32 at once, each with a
 * timeout of @timeout_ms, and none is started later than 4 × @timeout_ms after this call (an
 * instance not asked in time, or whose socket fails, shows state "unknown" and an "error").
 *
 * Returns 0 with the answer (a new reference) in *ret_json when no socket needs asking; 1 with
 * the query in *ret_query when @cb will be called with @userdata from the loop (the query then
 * belongs to the tracker until @cb has run; instances_query_cancel() drops it earlier without a
 * call); or -ENOENT or -ENOMEM. A query must not outlive @in.
 */
int instances_query(struct instances *in, const char *kind, const char *id, int timeout_ms,
		    instances_query_cb_t cb, void *userdata, struct json_t **ret_json,
		    struct instances_query **ret_query);

/* Drops @q (may be NULL) before its callback ran. Never call it from or after the callback. */
void instances_query_cancel(struct instances_query *q);

/* Whether any instance is running (so process objects may need tagging). */
bool instances_any_live(const struct instances *in);

/*
 * Finds, for each entry of @snap (a process view, sorted by pid), the live instance it belongs
 * to: the instance whose launcher is the process itself or one of its ancestors (a sandbox's
 * processes descend from its supervisor; a VMM's threads are its process). Stores a malloc'ed
 * array of @snap's count pointers (NULL where none; borrowed from @in until its next change) in
 * *ret. Returns 0 or -ENOMEM.
 */
int instances_tag(const struct instances *in, const struct proc_snapshot *snap,
		  const struct proc_instance ***ret);
