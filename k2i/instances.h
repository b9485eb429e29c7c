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

/*
 * Builds the JSON array of the instances of kind @kind ("vm" or "sandbox"): the live ones, each
 * with the state its control socket reports (asked with a timeout of @timeout_ms each, and at
 * most 4 × @timeout_ms for all), then the ended ones, newest last. With @id, the one object of
 * that instance instead (-ENOENT if there is none). Returns 0 and a new reference in *ret,
 * -ENOENT or -ENOMEM.
 */
int instances_json(struct instances *in, const char *kind, const char *id, int timeout_ms,
		   struct json_t **ret);

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
