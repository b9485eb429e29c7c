/* SPDX-License-Identifier: MIT */
#include "k2i/procquery.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <jansson.h>

#include "k2i/procinfo.h"
#include "libcommon/cleanup.h"
#include "libcommon/strutil.h"

/* Far above any real query (a pid list of 1000 PIDs is under 8 KiB), far below harm. */
#define QUERY_VALUE_MAX 8192
#define QUERY_LIMIT_MAX 1000000
#define QUERY_SORT_KEYS_MAX 8
/* How much of a bad value an error message quotes. */
#define QUOTE_MAX 64

/* The one-letter states of proc(5) and fs/proc/array.c, old and new. */
#define STATE_LETTERS "RSDZTtXxKWPI"

struct sort_key {
	int field;
	bool desc;
};

/*
 * A parsed query. List filters are kept sorted (pids, uids) so that each process costs a
 * binary search, not a scan of the list; an empty list means "no filter".
 */
struct proc_query {
	pid_t *pids; /* sorted */
	size_t n_pids;
	uid_t *uids; /* sorted */
	size_t n_uids;
	char **comms;
	char *match;
	char *cgroup;
	char *instance; /* "any", a kind, or KIND/ID; NULL: no filter */
	uint64_t states; /* bit (c - 'A') for upper case, (c - 'a' + 26) for lower case */
	struct sort_key sort[QUERY_SORT_KEYS_MAX];
	size_t n_sort;
	uint32_t limit; /* 0: none */
	uint64_t fields;
	bool has_fields;
	bool threads;
};

struct proc_query *proc_query_free(struct proc_query *q)
{
	if (!q)
		return NULL;
	free(q->pids);
	free(q->uids);
	strv_free(q->comms);
	free(q->match);
	free(q->cgroup);
	free(q->instance);
	free(q);
	return NULL;
}

/*
 * Error messages quote what the client sent; it ends up in a JSON string and a log line, so
 * keep printable ASCII and escape the rest, and cut long values.
 */
static char *quote(const char *s)
{
	size_t n = strlen(s), k = MIN(n, (size_t)QUOTE_MAX), o = 0;
	char *q = malloc(k * 4 + 4);

	if (!q)
		return NULL;
	for (size_t i = 0; i < k; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f && c != '\\')
			q[o++] = (char)c;
		else
			o += (size_t)sprintf(q + o, "\\x%02x", c);
	}
	if (n > k)
		o += (size_t)sprintf(q + o, "...");
	q[o] = '\0';
	return q;
}

static int query_error(char **ret_error, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int query_error(char **ret_error, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (!ret_error)
		return -EINVAL;
	va_start(ap, fmt);
	r = vasprintf(ret_error, fmt, ap);
	va_end(ap);
	if (r < 0) {
		*ret_error = NULL;
		return -ENOMEM;
	}
	return -EINVAL;
}

/* "invalid value '<value>' for '<param>': <why>" */
static int bad_value(char **ret_error, const char *param, const char *value, const char *why)
{
	_cleanup_free_ char *q = quote(value);

	if (!q)
		return -ENOMEM;
	return query_error(ret_error, "invalid value '%s' for '%s': %s", q, param, why);
}

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return x < y ? -1 : x > y;
}

static int cmp_uid(const void *a, const void *b)
{
	uid_t x = *(const uid_t *)a, y = *(const uid_t *)b;

	return x < y ? -1 : x > y;
}

/* Makes room for @more elements of @size bytes after the *n ones of *arr. */
static int array_grow(void **arr, size_t *n, size_t more, size_t size)
{
	void *a = reallocarray(*arr, *n + more, size);

	if (!a)
		return -ENOMEM;
	*arr = a;
	return 0;
}

static int parse_pid(struct proc_query *q, const char *param, const char *value, char **ret_error)
{
	_cleanup_(strv_freep) char **items = NULL;
	size_t k;
	int r;

	if (strv_split(value, ", ", &items) < 0)
		return -ENOMEM;
	k = strv_length(items);
	if (k == 0)
		return bad_value(ret_error, param, value,
				 "expected a comma-separated list of process IDs");
	r = array_grow((void **)&q->pids, &q->n_pids, k, sizeof(pid_t));
	if (r < 0)
		return r;
	STRV_FOREACH (i, items) {
		uint32_t v;

		if (safe_atou32_range(*i, 1, INT_MAX, &v) < 0)
			return bad_value(ret_error, param, *i,
					 "expected a comma-separated list of process IDs");
		q->pids[q->n_pids++] = (pid_t)v;
	}
	qsort(q->pids, q->n_pids, sizeof(pid_t), cmp_pid);
	return 0;
}

/*
 * Resolves a user name once, at parse time, so filtering compares numbers. This may block on
 * NSS (LDAP, sssd) like any getpwnam(); callers that must not block parse off their loop.
 */
static int lookup_user(const char *name, uid_t *ret)
{
	_cleanup_free_ char *buf = NULL;
	size_t size = 1024;
	struct passwd pw, *res = NULL;

	for (;;) {
		int r;

		free(buf);
		buf = malloc(size);
		if (!buf)
			return -ENOMEM;
		r = getpwnam_r(name, &pw, buf, size, &res);
		if (r == ERANGE && size < 1024 * 1024) {
			size *= 2;
			continue;
		}
		if (r != 0)
			return -r;
		break;
	}
	if (!res)
		return -ESRCH;
	*ret = res->pw_uid;
	return 0;
}

static int parse_user(struct proc_query *q, const char *param, const char *value, char **ret_error)
{
	_cleanup_(strv_freep) char **items = NULL;
	size_t k;
	int r;

	if (strv_split(value, ", ", &items) < 0)
		return -ENOMEM;
	k = strv_length(items);
	if (k == 0)
		return bad_value(ret_error, param, value,
				 "expected a comma-separated list of user names or uids");
	r = array_grow((void **)&q->uids, &q->n_uids, k, sizeof(uid_t));
	if (r < 0)
		return r;
	STRV_FOREACH (i, items) {
		uint32_t v;
		uid_t uid = 0;

		/* A number is a uid, as in ps -u, even if it is also some user's name. */
		if (safe_atou32(*i, &v) == 0) {
			uid = v;
		} else {
			r = lookup_user(*i, &uid);
			if (r == -ENOMEM)
				return r;
			if (r == -ESRCH)
				return bad_value(ret_error, param, *i, "no such user");
			if (r < 0)
				return bad_value(ret_error, param, *i, "cannot look up this user");
		}
		q->uids[q->n_uids++] = uid;
	}
	qsort(q->uids, q->n_uids, sizeof(uid_t), cmp_uid);
	return 0;
}

/* Only commas separate: a command name may hold spaces (prctl(PR_SET_NAME) allows any byte). */
static int parse_comm(struct proc_query *q, const char *param, const char *value, char **ret_error)
{
	_cleanup_(strv_freep) char **items = NULL;

	if (strv_split(value, ",", &items) < 0)
		return -ENOMEM;
	if (strv_length(items) == 0)
		return bad_value(ret_error, param, value,
				 "expected a comma-separated list of command names");
	STRV_FOREACH (i, items)
		if (strv_extend(&q->comms, *i) < 0)
			return -ENOMEM;
	return 0;
}

static int parse_match(struct proc_query *q, const char *param, const char *value, char **ret_error)
{
	q->match = strdup(value);
	return q->match ? 0 : -ENOMEM;
}

static int parse_cgroup(struct proc_query *q, const char *param, const char *value,
			char **ret_error)
{
	q->cgroup = strdup(value);
	return q->cgroup ? 0 : -ENOMEM;
}

static int parse_instance(struct proc_query *q, const char *param, const char *value,
			  char **ret_error)
{
	const char *slash = strchr(value, '/');
	size_t kind_len = slash ? (size_t)(slash - value) : strlen(value);

	if (!slash && strcmp(value, "any") != 0 && strcmp(value, "vm") != 0 &&
	    strcmp(value, "sandbox") != 0)
		return bad_value(ret_error, param, value, "expected any, vm, sandbox or KIND/ID");
	if (slash && (!((kind_len == 2 && strncmp(value, "vm", 2) == 0) ||
			(kind_len == 7 && strncmp(value, "sandbox", 7) == 0)) ||
		      !slash[1] || strlen(slash + 1) > 64))
		return bad_value(ret_error, param, value, "expected vm/ID or sandbox/ID");
	q->instance = strdup(value);
	return q->instance ? 0 : -ENOMEM;
}

/* Whether the instance @tag (NULL: none) passes the instance= filter @want. */
static bool instance_selected(const char *want, const struct proc_instance *tag)
{
	const char *slash = strchr(want, '/');

	if (!tag)
		return false;
	if (strcmp(want, "any") == 0)
		return true;
	if (!slash)
		return strcmp(want, tag->kind) == 0;
	return strncmp(want, tag->kind, (size_t)(slash - want)) == 0 && !tag->kind[slash - want] &&
	       strcmp(slash + 1, tag->id) == 0;
}

/* Maps a state letter to its bit in proc_query.states, or -EINVAL for an unknown letter. */
static int state_bit(char c)
{
	if (!strchr(STATE_LETTERS, c) || c == '\0')
		return -EINVAL;
	return c >= 'a' ? c - 'a' + 26 : c - 'A';
}

static int parse_state(struct proc_query *q, const char *param, const char *value, char **ret_error)
{
	static const char why[] =
		"expected process state letters such as 'R,S' or 'RS' (one of " STATE_LETTERS ")";
	bool any = false;

	for (const char *p = value; *p; p++) {
		int b;

		if (*p == ',' || *p == ' ')
			continue;
		b = state_bit(*p);
		if (b < 0)
			return bad_value(ret_error, param, value, why);
		q->states |= UINT64_C(1) << b;
		any = true;
	}
	if (!any)
		return bad_value(ret_error, param, value, why);
	return 0;
}

static const struct {
	const char *name;
	int field;
} sort_aliases[] = {
	{ "cpu", PROC_FIELD_CPU_PERCENT },  { "mem", PROC_FIELD_MEM_PERCENT },
	{ "rss", PROC_FIELD_RSS_KB },	    { "vsz", PROC_FIELD_VSZ_KB },
	{ "time", PROC_FIELD_CPU_TIME_MS }, { "start", PROC_FIELD_START_TIME },
};

#define SORTABLE_FIELDS                                                               \
	(PROC_FIELD_BIT(PROC_FIELD_PID) | PROC_FIELD_BIT(PROC_FIELD_TID) |            \
	 PROC_FIELD_BIT(PROC_FIELD_PPID) | PROC_FIELD_BIT(PROC_FIELD_UID) |           \
	 PROC_FIELD_BIT(PROC_FIELD_GID) | PROC_FIELD_BIT(PROC_FIELD_THREADS) |        \
	 PROC_FIELD_BIT(PROC_FIELD_NICE) | PROC_FIELD_BIT(PROC_FIELD_CPU_PERCENT) |   \
	 PROC_FIELD_BIT(PROC_FIELD_CPU_TIME_MS) | PROC_FIELD_BIT(PROC_FIELD_RSS_KB) | \
	 PROC_FIELD_BIT(PROC_FIELD_VSZ_KB) | PROC_FIELD_BIT(PROC_FIELD_MEM_PERCENT) | \
	 PROC_FIELD_BIT(PROC_FIELD_START_TIME) | PROC_FIELD_BIT(PROC_FIELD_COMM) |    \
	 PROC_FIELD_BIT(PROC_FIELD_USER))

static int parse_sort(struct proc_query *q, const char *param, const char *value, char **ret_error)
{
	_cleanup_(strv_freep) char **items = NULL;

	if (strv_split(value, ", ", &items) < 0)
		return -ENOMEM;
	if (strv_length(items) == 0)
		return bad_value(ret_error, param, value,
				 "expected a comma-separated list of fields");
	if (strv_length(items) > QUERY_SORT_KEYS_MAX)
		return bad_value(ret_error, param, value, "at most 8 sort keys are allowed");
	STRV_FOREACH (i, items) {
		const char *name = *i;
		bool desc = false;
		int f = -EINVAL;

		if (*name == '-' || *name == '+') {
			desc = *name == '-';
			name++;
		}
		for (size_t k = 0; k < ELEMENTSOF(sort_aliases); k++)
			if (strcmp(name, sort_aliases[k].name) == 0)
				f = sort_aliases[k].field;
		if (f < 0)
			f = proc_field_from_string(name);
		if (f < 0)
			return bad_value(
				ret_error, param, *i,
				"unknown field (aliases: cpu, mem, rss, vsz, time, start)");
		if (!(SORTABLE_FIELDS & PROC_FIELD_BIT(f)))
			return bad_value(
				ret_error, param, *i,
				"not a sortable field (sortable: pid, tid, ppid, uid, gid, "
				"threads, nice, cpu_percent, cpu_time_ms, rss_kb, vsz_kb, "
				"mem_percent, start_time, comm, user)");
		q->sort[q->n_sort++] = (struct sort_key){ .field = f, .desc = desc };
	}
	return 0;
}

static int parse_limit(struct proc_query *q, const char *param, const char *value, char **ret_error)
{
	if (safe_atou32_range(value, 1, QUERY_LIMIT_MAX, &q->limit) < 0)
		return bad_value(ret_error, param, value, "expected a number from 1 to 1000000");
	return 0;
}

static int parse_fields(struct proc_query *q, const char *param, const char *value,
			char **ret_error)
{
	_cleanup_(strv_freep) char **items = NULL;

	if (strv_split(value, ", ", &items) < 0)
		return -ENOMEM;
	if (strv_length(items) == 0)
		return bad_value(ret_error, param, value,
				 "expected a comma-separated list of fields");
	STRV_FOREACH (i, items) {
		int f = proc_field_from_string(*i);

		if (f < 0)
			return bad_value(ret_error, param, *i,
					 "unknown field (known: key, pid, tid, ppid, uid, user, "
					 "gid, state, comm, cmdline, exe, threads, nice, "
					 "cpu_percent, cpu_time_ms, rss_kb, vsz_kb, mem_percent, "
					 "tty, start_time, cgroup, container_id, ns, instance)");
		q->fields |= PROC_FIELD_BIT(f);
	}
	q->has_fields = true;
	return 0;
}

static int parse_threads(struct proc_query *q, const char *param, const char *value,
			 char **ret_error)
{
	if (strcmp(value, "1") == 0 || strcmp(value, "true") == 0)
		q->threads = true;
	else if (strcmp(value, "0") == 0 || strcmp(value, "false") == 0)
		q->threads = false;
	else
		return bad_value(ret_error, param, value, "expected 0, 1, true or false");
	return 0;
}

static const struct {
	const char *name;
	int (*parse)(struct proc_query *q, const char *param, const char *value, char **ret_error);
	bool merge; /* may be repeated, the lists add up */
} params[] = {
	{ "pid", parse_pid, true },
	{ "user", parse_user, true },
	{ "comm", parse_comm, true },
	{ "match", parse_match, false },
	{ "cgroup", parse_cgroup, false },
	{ "state", parse_state, true },
	{ "sort", parse_sort, false },
	{ "limit", parse_limit, false },
	{ "fields", parse_fields, true },
	{ "threads", parse_threads, false },
	{ "instance", parse_instance, false },
};

int proc_query_parse(const char *const *keys, const char *const *values, size_t n,
		     struct proc_query **ret, char **ret_error)
{
	_cleanup_(proc_query_freep) struct proc_query *q = NULL;
	unsigned seen = 0;

	if (n > 0 && !keys)
		return -EINVAL;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const char *key = keys[i] ? keys[i] : "";
		const char *value = values && values[i] ? values[i] : "";
		_cleanup_free_ char *qk = NULL;
		size_t k, len;
		int r;

		/* Names are case-sensitive, as in the rest of the API: "PID" is unknown. */
		for (k = 0; k < ELEMENTSOF(params); k++)
			if (strcmp(key, params[k].name) == 0)
				break;
		if (k == ELEMENTSOF(params)) {
			qk = quote(key);
			if (!qk)
				return -ENOMEM;
			return query_error(ret_error,
					   "unknown parameter '%s' (known: pid, user, comm, match, "
					   "cgroup, state, sort, limit, fields, threads)",
					   qk);
		}
		/*
		 * Lists add up (pid=1&pid=2 is pid=1,2, which clients building URLs from arrays
		 * produce); a second value of a single-valued parameter is ambiguous, so refused.
		 */
		if ((seen & (1u << k)) && !params[k].merge)
			return query_error(ret_error, "parameter '%s' may be given only once", key);
		seen |= 1u << k;
		len = strlen(value);
		if (len == 0)
			return query_error(ret_error, "empty value for '%s'", key);
		if (len > QUERY_VALUE_MAX)
			return query_error(ret_error,
					   "value for '%s' is too long (%zu bytes, at most %d)",
					   key, len, QUERY_VALUE_MAX);
		r = params[k].parse(q, key, value, ret_error);
		if (r < 0)
			return r;
	}
	*ret = TAKE_PTR(q);
	return 0;
}

uint64_t proc_query_output_fields(const struct proc_query *q)
{
	return q && q->has_fields ? q->fields : PROC_FIELDS_ALL;
}

bool proc_query_wants_instances(const struct proc_query *q)
{
	return (proc_query_output_fields(q) & PROC_FIELD_BIT(PROC_FIELD_INSTANCE)) ||
	       (q && q->instance);
}

bool proc_query_threads(const struct proc_query *q)
{
	return q && q->threads;
}

/* What a sort key reads; the sortable fields all come from stat but user and comm. */
uint64_t proc_query_needed_fields(const struct proc_query *q)
{
	uint64_t f = proc_query_output_fields(q) | PROC_FIELD_BIT(PROC_FIELD_PID);

	if (!q)
		return f;
	if (q->n_uids)
		f |= PROC_FIELD_BIT(PROC_FIELD_UID);
	if (q->comms)
		f |= PROC_FIELD_BIT(PROC_FIELD_COMM);
	if (q->match)
		f |= PROC_FIELD_BIT(PROC_FIELD_CMDLINE) | PROC_FIELD_BIT(PROC_FIELD_COMM);
	if (q->cgroup)
		f |= PROC_FIELD_BIT(PROC_FIELD_CGROUP);
	if (q->states)
		f |= PROC_FIELD_BIT(PROC_FIELD_STATE);
	for (size_t i = 0; i < q->n_sort; i++)
		f |= PROC_FIELD_BIT(q->sort[i].field);
	return f;
}

struct run_ctx {
	const struct proc_query *q;
	const struct proc_snapshot *snap;
	const struct proc_instance *const *tags; /* per entry of snap, or NULL */
	const char *comm_substring;
	char *joined; /* scratch for match= */
	size_t joined_size;
};

/*
 * True if the command line joined with spaces (comm if there is none) contains q->match. The
 * join is what ps shows; kernel threads and zombies have no command line, and ps shows their
 * comm instead, so that is what a user matching "kworker" expects to find.
 */
static int matches_cmdline(struct run_ctx *c, const struct proc_entry *e, bool *ret)
{
	const char *needle = c->q->match;
	size_t n;

	if (e->cmdline_len == 0) {
		*ret = e->comm && strstr(e->comm, needle);
		return 0;
	}
	n = e->cmdline_len - 1;
	if (n + 1 > c->joined_size) {
		char *j = realloc(c->joined, n + 1);

		if (!j)
			return -ENOMEM;
		c->joined = j;
		c->joined_size = n + 1;
	}
	for (size_t i = 0; i < n; i++)
		c->joined[i] = e->cmdline[i] ? e->cmdline[i] : ' ';
	c->joined[n] = '\0';
	*ret = memmem(c->joined, n, needle, strlen(needle)) != NULL;
	return 0;
}

static int entry_selected(struct run_ctx *c, const struct proc_entry *e, bool *ret)
{
	const struct proc_query *q = c->q;
	int b;

	*ret = false;
	if (c->comm_substring && !(e->comm && strstr(e->comm, c->comm_substring)))
		return 0;
	if (!q)
		goto yes;
	if (q->n_pids && !bsearch(&e->pid, q->pids, q->n_pids, sizeof(pid_t), cmp_pid))
		return 0;
	if (q->n_uids && !bsearch(&e->uid, q->uids, q->n_uids, sizeof(uid_t), cmp_uid))
		return 0;
	if (q->comms && !(e->comm && strv_contains(q->comms, e->comm)))
		return 0;
	if (q->cgroup && !(e->cgroup && startswith(e->cgroup, q->cgroup)))
		return 0;
	if (q->instance &&
	    !instance_selected(q->instance, c->tags ? c->tags[e - c->snap->entries] : NULL))
		return 0;
	if (q->states) {
		b = state_bit(e->state);
		if (b < 0 || !(q->states & (UINT64_C(1) << b)))
			return 0;
	}
	if (q->match)
		return matches_cmdline(c, e, ret);
yes:
	*ret = true;
	return 0;
}

#define CMP(a, b) ((a) < (b) ? -1 : (a) > (b))

static int cmp_str(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "");
}

static int cmp_field(const struct proc_entry *a, const struct proc_entry *b, int field)
{
	switch (field) {
	case PROC_FIELD_PID:
		return CMP(a->pid, b->pid);
	case PROC_FIELD_TID:
		return CMP(a->tid, b->tid);
	case PROC_FIELD_PPID:
		return CMP(a->ppid, b->ppid);
	case PROC_FIELD_UID:
		return CMP(a->uid, b->uid);
	case PROC_FIELD_GID:
		return CMP(a->gid, b->gid);
	case PROC_FIELD_THREADS:
		return CMP(a->threads, b->threads);
	case PROC_FIELD_NICE:
		return CMP(a->nice, b->nice);
	case PROC_FIELD_CPU_PERCENT:
		return CMP(a->cpu_percent, b->cpu_percent);
	case PROC_FIELD_CPU_TIME_MS:
		return CMP(a->total_ticks, b->total_ticks);
	case PROC_FIELD_RSS_KB:
		return CMP(a->rss_kb, b->rss_kb);
	case PROC_FIELD_VSZ_KB:
		return CMP(a->vsz_kb, b->vsz_kb);
	case PROC_FIELD_MEM_PERCENT:
		return CMP(a->mem_percent, b->mem_percent);
	case PROC_FIELD_START_TIME:
		return CMP(a->start_ticks, b->start_ticks);
	case PROC_FIELD_COMM:
		return cmp_str(a->comm, b->comm);
	case PROC_FIELD_USER:
		return cmp_str(a->user, b->user);
	default:
		return 0;
	}
}

static int cmp_index(const void *x, const void *y, void *userdata)
{
	const struct run_ctx *c = userdata;
	const struct proc_entry *a = &c->snap->entries[*(const size_t *)x];
	const struct proc_entry *b = &c->snap->entries[*(const size_t *)y];

	for (size_t i = 0; i < c->q->n_sort; i++) {
		int r = cmp_field(a, b, c->q->sort[i].field);

		if (r)
			return c->q->sort[i].desc ? -r : r;
	}
	/* (pid, tid) is unique in a snapshot, so the order is total and qsort's instability
	 * cannot show. */
	if (a->pid != b->pid)
		return CMP(a->pid, b->pid);
	return CMP(a->tid, b->tid);
}

/*
 * Selects, sorts and limits the entries of @snap. On success stores the malloc'ed indexes and
 * their number in *ret and *ret_n.
 */
static int select_entries(const struct proc_query *q, const struct proc_snapshot *snap,
			  const char *comm_substring, const struct proc_instance *const *tags,
			  size_t **ret, size_t *ret_n)
{
	/* tid is pid outside a threads view and instance has no data yet: always available. */
	const uint64_t free_fields =
		PROC_FIELD_BIT(PROC_FIELD_TID) | PROC_FIELD_BIT(PROC_FIELD_INSTANCE);
	struct run_ctx c = { .q = q, .snap = snap, .tags = tags, .comm_substring = comm_substring };
	uint64_t need = proc_query_needed_fields(q);
	_cleanup_free_ size_t *idx = NULL;
	size_t n = 0;
	int r = 0;

	if (comm_substring)
		need |= PROC_FIELD_BIT(PROC_FIELD_COMM);
	if (need & ~(snap->fields | free_fields))
		return -EINVAL;

	idx = malloc(MAX(snap->count, (size_t)1) * sizeof(size_t));
	if (!idx)
		return -ENOMEM;
	for (size_t i = 0; i < snap->count; i++) {
		bool yes;

		r = entry_selected(&c, &snap->entries[i], &yes);
		if (r < 0)
			break;
		if (yes)
			idx[n++] = i;
	}
	free(c.joined);
	if (r < 0)
		return r;
	/* Without sort keys the snapshot's (pid, tid) order stands. */
	if (q && q->n_sort)
		qsort_r(idx, n, sizeof(size_t), cmp_index, &c);
	if (q && q->limit && n > q->limit)
		n = q->limit;
	*ret = TAKE_PTR(idx);
	*ret_n = n;
	return 0;
}

int proc_query_run(const struct proc_query *q, const struct proc_snapshot *snap,
		   const char *comm_substring, const struct proc_instance *const *tags,
		   json_t **ret_array)
{
	uint64_t out = proc_query_output_fields(q);
	_cleanup_free_ size_t *idx = NULL;
	json_auto_t *a = NULL;
	size_t n;
	int r;

	r = select_entries(q, snap, comm_substring, tags, &idx, &n);
	if (r < 0)
		return r;
	a = json_array();
	if (!a)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_t *o;

		r = proc_entry_to_json(snap, idx[i], out, tags ? tags[idx[i]] : NULL, &o);
		if (r < 0)
			return r;
		/* json_array_append_new() takes the reference, also when it fails. */
		if (json_array_append_new(a, o) < 0)
			return -ENOMEM;
	}
	*ret_array = TAKE_PTR(a);
	return 0;
}

int proc_query_run_text(const struct proc_query *q, const struct proc_snapshot *snap,
			const char *comm_substring, const struct proc_instance *const *tags,
			char **ret_text, size_t *ret_len, size_t *ret_count)
{
	uint64_t out = proc_query_output_fields(q);
	_cleanup_free_ size_t *idx = NULL;
	struct proc_text t = {};
	size_t n;
	int r;

	r = select_entries(q, snap, comm_substring, tags, &idx, &n);
	if (r < 0)
		return r;
	r = proc_text_append(&t, "[", 1);
	for (size_t i = 0; i < n && r >= 0; i++) {
		if (i > 0)
			r = proc_text_append(&t, ",", 1);
		if (r >= 0)
			r = proc_entry_to_text(snap, idx[i], out, tags ? tags[idx[i]] : NULL, &t);
	}
	if (r >= 0)
		r = proc_text_append(&t, "]", 1);
	if (r < 0) {
		free(t.data);
		return r;
	}
	*ret_text = t.data;
	*ret_len = t.len;
	if (ret_count)
		*ret_count = n;
	return 0;
}
