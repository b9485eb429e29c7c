/* SPDX-License-Identifier: MIT */
#include "k2i/events.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include "libcommon/cleanup.h"
#include "libcommon/strutil.h"

#define FILTER_MAX 64 /* entries per filter list */
#define CGROUP_ROOT "/sys/fs/cgroup"

struct event_sub {
	struct event_hub *hub; /* NULL while not attached */
	const struct event_sub_ops *ops;
	void *ctx;
	enum event_format format;
	unsigned type_mask; /* 1 << enum event_type */
	char **comms; /* NULL: any */
	uid_t *uids;
	size_t n_uids;
	uint64_t *cgroups;
	size_t n_cgroups;
	struct event_sub *prev, *next;
};

struct exit_slot {
	struct event_exit e;
	char comm[32];
	char *cmdline;
	char *key;
};

struct event_hub {
	struct event_sub *subs;
	size_t n_subs;
	size_t backlog_max;
	struct exit_slot *exits; /* ring of exits_max slots */
	size_t exits_max;
	size_t exits_head; /* next slot to write */
	size_t exits_count;
	struct event_hub_stats stats;
};

static const char *const type_names[_EVENT_TYPE_MAX] = { "fork", "exec", "exit" };

const char *event_type_to_string(enum event_type t)
{
	return t < _EVENT_TYPE_MAX ? type_names[t] : "unknown";
}

const char *event_format_content_type(enum event_format f)
{
	return f == EVENT_FORMAT_SSE ? "text/event-stream" : "application/x-ndjson";
}

int event_hub_new(size_t exits_max, size_t backlog_max, struct event_hub **ret)
{
	struct event_hub *h;

	if (exits_max < 1 || exits_max > 1000000 || backlog_max < 1024)
		return -EINVAL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->exits = calloc(exits_max, sizeof(*h->exits));
	if (!h->exits) {
		free(h);
		return -ENOMEM;
	}
	h->exits_max = exits_max;
	h->backlog_max = backlog_max;
	*ret = h;
	return 0;
}

static void sub_detach(struct event_sub *s)
{
	struct event_hub *h = s->hub;

	if (!h)
		return;
	if (s->prev)
		s->prev->next = s->next;
	else
		h->subs = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	s->hub = NULL;
	h->n_subs--;
}

struct event_hub *event_hub_free(struct event_hub *h)
{
	if (!h)
		return NULL;
	/* The transports still own their subscriptions; they just stop receiving. */
	while (h->subs)
		sub_detach(h->subs);
	for (size_t i = 0; i < h->exits_max; i++) {
		free(h->exits[i].cmdline);
		free(h->exits[i].key);
	}
	free(h->exits);
	free(h);
	return NULL;
}

struct event_sub *event_sub_free(struct event_sub *s)
{
	if (!s)
		return NULL;
	sub_detach(s);
	strv_free(s->comms);
	free(s->uids);
	free(s->cgroups);
	free(s);
	return NULL;
}

enum event_format event_sub_format(const struct event_sub *s)
{
	return s->format;
}

static int sub_error(char **ret_error, const char *param, const char *value, const char *what)
{
	if (asprintf(ret_error, "invalid value '%s' for '%s': %s", value, param, what) < 0)
		*ret_error = NULL;
	return -EINVAL;
}

/* Parses a comma list into @items, checking its length. */
static int split_list(const char *param, const char *value, char ***ret, char **ret_error)
{
	char **l = NULL;

	if (strv_split(value, ", ", &l) < 0)
		return -ENOMEM;
	if (strv_length(l) == 0 || strv_length(l) > FILTER_MAX) {
		strv_free(l);
		return sub_error(ret_error, param, value, "expected a comma-separated list");
	}
	*ret = l;
	return 0;
}

static int parse_cgroup(struct event_sub *s, const char *value, char **ret_error)
{
	_cleanup_(strv_freep) char **l = NULL;
	int r;

	/* A path names one cgroup: its ID is the inode number of its directory (cgroup v2). */
	if (value[0] == '/') {
		_cleanup_free_ char *path = NULL;
		struct stat st;

		if (strstr(value, "/..") || asprintf(&path, CGROUP_ROOT "%s", value) < 0)
			return path ? sub_error(ret_error, "cgroup", value, "invalid path") :
				      -ENOMEM;
		if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
			return sub_error(ret_error, "cgroup", value,
					 "no such cgroup under " CGROUP_ROOT);
		s->cgroups = calloc(1, sizeof(uint64_t));
		if (!s->cgroups)
			return -ENOMEM;
		s->cgroups[s->n_cgroups++] = st.st_ino;
		return 0;
	}
	r = split_list("cgroup", value, &l, ret_error);
	if (r < 0)
		return r;
	s->cgroups = calloc(strv_length(l), sizeof(uint64_t));
	if (!s->cgroups)
		return -ENOMEM;
	STRV_FOREACH (i, l) {
		if (safe_atou64(*i, &s->cgroups[s->n_cgroups]) < 0)
			return sub_error(ret_error, "cgroup", *i,
					 "expected cgroup IDs or one cgroup path");
		s->n_cgroups++;
	}
	return 0;
}

static int parse_param(struct event_sub *s, const char *key, const char *value, bool *format_set,
		       char **ret_error)
{
	_cleanup_(strv_freep) char **l = NULL;
	int r;

	if (strcmp(key, "type") == 0) {
		r = split_list(key, value, &l, ret_error);
		if (r < 0)
			return r;
		s->type_mask = 0;
		STRV_FOREACH (i, l) {
			unsigned t;

			for (t = 0; t < _EVENT_TYPE_MAX; t++)
				if (strcmp(*i, type_names[t]) == 0)
					break;
			if (t == _EVENT_TYPE_MAX)
				return sub_error(ret_error, key, *i, "expected fork, exec or exit");
			s->type_mask |= 1u << t;
		}
		return 0;
	}
	if (strcmp(key, "comm") == 0) {
		r = split_list(key, value, &l, ret_error);
		if (r < 0)
			return r;
		strv_free(s->comms);
		s->comms = TAKE_PTR(l);
		return 0;
	}
	if (strcmp(key, "uid") == 0) {
		r = split_list(key, value, &l, ret_error);
		if (r < 0)
			return r;
		free(s->uids);
		s->n_uids = 0;
		s->uids = calloc(strv_length(l), sizeof(uid_t));
		if (!s->uids)
			return -ENOMEM;
		STRV_FOREACH (i, l) {
			uint32_t v;

			if (safe_atou32(*i, &v) < 0)
				return sub_error(ret_error, key, *i, "expected numeric uids");
			s->uids[s->n_uids++] = v;
		}
		return 0;
	}
	if (strcmp(key, "cgroup") == 0) {
		free(s->cgroups);
		s->cgroups = NULL;
		s->n_cgroups = 0;
		return parse_cgroup(s, value, ret_error);
	}
	if (strcmp(key, "format") == 0) {
		*format_set = true;
		if (strcmp(value, "ndjson") == 0)
			s->format = EVENT_FORMAT_NDJSON;
		else if (strcmp(value, "sse") == 0)
			s->format = EVENT_FORMAT_SSE;
		else
			return sub_error(ret_error, key, value, "expected ndjson or sse");
		return 0;
	}
	if (asprintf(ret_error,
		     "unknown parameter '%s' (expected type, comm, uid, cgroup or format)",
		     key) < 0)
		*ret_error = NULL;
	return -EINVAL;
}

int event_sub_new(const char *const *keys, const char *const *values, size_t n, const char *accept,
		  struct event_sub **ret, char **ret_error)
{
	struct event_sub *s = calloc(1, sizeof(*s));
	bool format_set = false;

	if (!s)
		return -ENOMEM;
	s->type_mask = (1u << _EVENT_TYPE_MAX) - 1;
	for (size_t i = 0; i < n; i++) {
		int r = parse_param(s, keys[i], values[i], &format_set, ret_error);

		if (r < 0) {
			event_sub_free(s);
			return r;
		}
	}
	if (!format_set && accept && strstr(accept, "text/event-stream"))
		s->format = EVENT_FORMAT_SSE;
	*ret = s;
	return 0;
}

void event_hub_attach(struct event_hub *h, struct event_sub *s, const struct event_sub_ops *ops,
		      void *ctx)
{
	sub_detach(s);
	s->ops = ops;
	s->ctx = ctx;
	s->hub = h;
	s->next = h->subs;
	if (h->subs)
		h->subs->prev = s;
	h->subs = s;
	h->n_subs++;
}

static bool sub_matches(const struct event_sub *s, const struct event_item *it)
{
	bool any;

	if (!(s->type_mask & (1u << it->type)))
		return false;
	if (s->comms && !(it->comm && strv_contains(s->comms, it->comm)))
		return false;
	any = s->n_uids == 0;
	for (size_t i = 0; !any && i < s->n_uids; i++)
		any = s->uids[i] == it->uid;
	if (!any)
		return false;
	any = s->n_cgroups == 0;
	for (size_t i = 0; !any && i < s->n_cgroups; i++)
		any = s->cgroups[i] == it->cgroup_id;
	return any;
}

/* Writes one event in the stream's format. Returns 0 or -ENOMEM. */
static int sub_write(struct event_sub *s, const char *type, const char *json, size_t len)
{
	int r;

	if (s->format == EVENT_FORMAT_SSE) {
		char head[32];
		int n = snprintf(head, sizeof(head), "event: %s\ndata: ", type);

		r = s->ops->write(s->ctx, head, (size_t)n);
		if (r >= 0)
			r = s->ops->write(s->ctx, json, len);
		if (r >= 0)
			r = s->ops->write(s->ctx, "\n\n", 2);
		return r;
	}
	r = s->ops->write(s->ctx, json, len);
	if (r >= 0)
		r = s->ops->write(s->ctx, "\n", 1);
	return r;
}

/* Ends a stream whose client does not keep up, with a final error line, and detaches it. */
static void sub_cut_off(struct event_hub *h, struct event_sub *s, size_t queued)
{
	char line[256];
	int n;

	if (s->format == EVENT_FORMAT_SSE)
		n = snprintf(
			line, sizeof(line),
			"event: error\ndata: {\"error\":{\"code\":503,\"message\":\"client too "
			"slow: %zu bytes queued, stream closed\"}}\n\n",
			queued);
	else
		n = snprintf(line, sizeof(line),
			     "{\"error\":{\"code\":503,\"message\":\"client too slow: %zu bytes "
			     "queued, stream closed\"}}\n",
			     queued);
	h->stats.streams_cut_off++;
	sub_detach(s);
	s->ops->finish(s->ctx, line, (size_t)n);
}

void event_hub_publish(struct event_hub *h, const struct event_item *item)
{
	const char *type = event_type_to_string(item->type);

	h->stats.published++;
	for (struct event_sub *s = h->subs, *next; s; s = next) {
		size_t queued;

		/* finish() may free nothing but detaches s; take the next link first. */
		next = s->next;
		if (!sub_matches(s, item))
			continue;
		queued = s->ops->queued(s->ctx);
		if (queued + item->json_len + 64 > h->backlog_max) {
			h->stats.events_dropped++;
			sub_cut_off(h, s, queued);
			continue;
		}
		if (sub_write(s, type, item->json, item->json_len) < 0) {
			h->stats.events_dropped++;
			sub_cut_off(h, s, queued);
			continue;
		}
		h->stats.delivered++;
	}
}

int event_hub_record_exit(struct event_hub *h, const struct event_exit *e)
{
	struct exit_slot *slot = &h->exits[h->exits_head];
	char *cmdline = NULL, *key = NULL;

	if (e->cmdline && !(cmdline = strdup(e->cmdline)))
		return -ENOMEM;
	if (e->key && !(key = strdup(e->key))) {
		free(cmdline);
		return -ENOMEM;
	}
	free(slot->cmdline);
	free(slot->key);
	slot->e = *e;
	snprintf(slot->comm, sizeof(slot->comm), "%s", e->comm ? e->comm : "");
	slot->cmdline = cmdline;
	slot->key = key;
	h->exits_head = (h->exits_head + 1) % h->exits_max;
	if (h->exits_count < h->exits_max)
		h->exits_count++;
	return 0;
}

static json_t *time_json(uint64_t ns)
{
	char buf[64];
	time_t sec = (time_t)(ns / 1000000000);
	struct tm tm;

	if (ns == 0 || !gmtime_r(&sec, &tm))
		return json_null();
	snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (int)(ns % 1000000000 / 1000000));
	return json_string(buf);
}

static json_t *exit_json(const struct exit_slot *x)
{
	const struct event_exit *e = &x->e;
	json_t *o =
		json_pack("{s:i,s:i,s:i,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "pid", (int)e->pid,
			  "ppid", (int)e->ppid, "uid", (int)e->uid, "comm", x->comm, "cmdline",
			  x->cmdline ? json_string(x->cmdline) : json_null(), "key",
			  x->key ? json_string(x->key) : json_null(), "exit_code",
			  e->signal ? json_null() : json_integer(e->exit_code), "signal",
			  e->signal ? json_integer(e->signal) : json_null(), "start_time",
			  time_json(e->start_ns), "end_time", time_json(e->end_ns), "duration_ms",
			  e->start_ns && e->end_ns >= e->start_ns ?
				  json_real((double)(e->end_ns - e->start_ns) / 1e6) :
				  json_null());
	return o;
}

int event_hub_exits_json(const struct event_hub *h, pid_t pid, const char *comm, size_t limit,
			 json_t **ret)
{
	json_auto_t *a = json_array();
	_cleanup_free_ size_t *picked = NULL;
	size_t n = 0;

	if (!a)
		return -ENOMEM;
	picked = calloc(h->exits_count ? h->exits_count : 1, sizeof(size_t));
	if (!picked)
		return -ENOMEM;
	/* Walk from the newest back, so @limit keeps the newest; then emit oldest first. */
	for (size_t k = 0; k < h->exits_count && (limit == 0 || n < limit); k++) {
		size_t i = (h->exits_head + h->exits_max - 1 - k) % h->exits_max;
		const struct exit_slot *x = &h->exits[i];

		if ((pid > 0 && x->e.pid != pid) || (comm && strcmp(x->comm, comm) != 0))
			continue;
		picked[n++] = i;
	}
	while (n > 0)
		if (json_array_append_new(a, exit_json(&h->exits[picked[--n]])) < 0)
			return -ENOMEM;
	*ret = json_incref(a);
	return 0;
}

void event_hub_stats(const struct event_hub *h, struct event_hub_stats *ret)
{
	*ret = h->stats;
	ret->streams = h->n_subs;
	ret->exits = h->exits_count;
}
