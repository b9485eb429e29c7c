/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * procquery: the filters, sort order, limit and field selection of GET /v1/proc, applied to a
 * struct proc_snapshot.
 *
 * Parameters (values already percent-decoded; lists are separated by commas, and spaces too
 * except for comm, whose names may hold spaces; empty list items are ignored):
 *   pid=1,2         processes with these PIDs (in a threads view: all threads of them)
 *   user=root,1000  effective user, by name or numeric uid; an unknown name is an error
 *   comm=sshd,bash  exact command name (stat's comm)
 *   match=text      substring of the command line joined with spaces (of comm for processes
 *                   without one: kernel threads, zombies)
 *   cgroup=/prefix  cgroup path starting with this string (a plain string prefix, so
 *                   "/system.slice/docker-" selects every docker scope)
 *   state=R,S|RS    one-letter states (R S D Z T t X x K W P I)
 *   sort=-cpu,pid   keys in order, '-' for descending; aliases cpu mem rss vsz time start;
 *                   sortable: pid tid ppid uid gid threads nice cpu_percent cpu_time_ms
 *                   rss_kb vsz_kb mem_percent start_time comm user (at most 8 keys)
 *   limit=N         at most N processes, 1..1000000, after sorting
 *   fields=a,b      the fields of each object (default: all of them)
 *   threads=0|1     one entry per thread (also "true"/"false")
 * Filters combine with AND; the items of one list with OR. The list parameters pid, user,
 * comm, state and fields may be repeated and are merged; match, cgroup, sort, limit and threads
 * may not. Ties in the sort order, and the order without sort=, are by pid then tid.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "libcommon/cleanup.h"

struct json_t;
struct proc_snapshot;
struct proc_instance;
struct proc_query;

/*
 * Parses @n parameters (@keys and @values are borrowed; a NULL value counts as empty). Zero
 * parameters give a query that selects everything with all fields. On success stores a new
 * query (free with proc_query_free()) in *ret and returns 0. Returns -EINVAL for an unknown
 * parameter, a repeated single-valued one, or a bad, empty or too long (over 8 KiB) value, and
 * then, if @ret_error is not NULL, stores a malloc'ed message naming the parameter and the
 * value (caller frees) in *ret_error; or -ENOMEM.
 */
int proc_query_parse(const char *const *keys, const char *const *values, size_t n,
		     struct proc_query **ret, char **ret_error);

/* Frees @q (may be NULL). Returns NULL. */
struct proc_query *proc_query_free(struct proc_query *q);

DEFINE_CLEANUP_FUNC(struct proc_query, proc_query_free)

/*
 * Returns the PROC_FIELD_BIT()s a snapshot must have been taken with for proc_query_run(): the
 * output fields and whatever the filters and sort keys read (user= needs uid, match= needs
 * cmdline and comm, ...). @q may be NULL (everything, all fields).
 */
uint64_t proc_query_needed_fields(const struct proc_query *q);

/* Returns the fields= selection, or PROC_FIELDS_ALL without one; @q may be NULL. */
uint64_t proc_query_output_fields(const struct proc_query *q);

/* Returns whether threads=1 was asked for; @q may be NULL (false). */
bool proc_query_threads(const struct proc_query *q);

/* Whether @q shows or filters on processes' instances (its results then need the tags). */
bool proc_query_wants_instances(const struct proc_query *q);

/*
 * Filters @snap (borrowed) by @q (borrowed; NULL selects everything), and by @comm_substring if
 * not NULL (a substring of comm, as the /v1/proc/cmd/{comm} route of the original k2i), sorts,
 * applies the limit and builds the array of process objects with the output fields. On success
 * stores a new reference in *ret_array and returns 0. @tags (may be NULL) holds, for each entry
 * of @snap, the instance it belongs to or NULL (k2i/instances.h). Returns -EINVAL if @snap was
 * taken without some of proc_query_needed_fields() (plus comm for @comm_substring), or -ENOMEM.
 */
int proc_query_run(const struct proc_query *q, const struct proc_snapshot *snap,
		   const char *comm_substring, const struct proc_instance *const *tags,
		   struct json_t **ret_array);

/*
 * As proc_query_run(), but writes the array as compact JSON text (see proc_entry_to_text(): the
 * same values, several times cheaper than building and dumping jansson objects, which matters
 * for the whole process table). On success stores the text (not NUL-terminated, caller frees),
 * its length and the number of objects in it in *ret_text, *ret_len and *ret_count (may be
 * NULL) and returns 0. Returns -EINVAL as proc_query_run(), or -ENOMEM.
 */
int proc_query_run_text(const struct proc_query *q, const struct proc_snapshot *snap,
			const char *comm_substring, const struct proc_instance *const *tags,
			char **ret_text, size_t *ret_len, size_t *ret_count);
