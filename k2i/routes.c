/* SPDX-License-Identifier: MIT */
#include "k2i/routes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "k2i/auth.h"
#include "k2i/config.h"
#include "k2i/events.h"
#include "k2i/lifecycle.h"
#include "k2i/procinfo.h"
#include "k2i/procquery.h"
#include "k2i/instances.h"
#include "libcommon/cleanup.h"
#include "libcommon/conf.h"
#include "libcommon/http.h"
#include "libcommon/instance.h"
#include "libcommon/log.h"
#include "libcommon/strutil.h"
#include "libcommon/tls.h"

#define K2I_VERSION "0.1.0"
#define JSON_TYPE "application/json"
#define PROM_TYPE "text/plain; version=0.0.4; charset=utf-8"
/* Linux's PID_MAX_LIMIT on 64-bit. */
#define PID_MAX 4194304

struct routes {
	const struct k2i_config *cfg;
	struct k2i_metrics *metrics;
	struct proc_scanner *scanner;
	struct auth_tokens *tokens;
	struct event_hub *hub;
	struct lifecycle *lifecycle;
	struct instances *instances; /* borrowed, may be NULL */
	char hostname[256];
	/* The shared snapshot: requests within cfg->scan_max_age_ms reuse it when it has the
	 * fields and the thread view they need. */
	struct proc_snapshot *cache;
	uint64_t cache_fields;
	bool cache_threads;
	double cache_time; /* CLOCK_MONOTONIC seconds */
	/*
	 * The live table: processes that started or exec'd (changed) or ended (gone) since the
	 * cached snapshot was taken, from the lifecycle events. A request within the freshness
	 * window patches the snapshot with them (re-reading only those processes) instead of
	 * walking /proc again.
	 */
	pid_t *changed, *gone;
	size_t n_changed, n_gone;
	bool overflow; /* too many changes to track: rescan */
};

static double now_monotonic(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Formats the current time as RFC 3339 UTC with milliseconds. */
static void format_now(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000));
}

int routes_new(const struct k2i_config *cfg, struct k2i_metrics *metrics, struct event_hub *hub,
	       struct routes **ret)
{
	struct routes *r = calloc(1, sizeof(*r));
	int e;

	if (!r)
		return -ENOMEM;
	r->cfg = cfg;
	r->metrics = metrics;
	r->hub = hub;
	if (gethostname(r->hostname, sizeof(r->hostname) - 1) < 0)
		snprintf(r->hostname, sizeof(r->hostname), "localhost");
	e = proc_scanner_new("/proc", &r->scanner);
	if (e < 0) {
		routes_free(r);
		return log_err_errno(e, "Cannot read /proc: %m");
	}
	proc_scanner_set_cmdline_max(r->scanner, cfg->cmdline_max);
	proc_scanner_set_cache_ttl(r->scanner, (uint64_t)cfg->proc_cache_ttl_ms * 1000);
	if (cfg->token_file) {
		e = auth_tokens_load(cfg->token_file, &r->tokens);
		if (e < 0) {
			routes_free(r);
			return log_err_errno(e, "Cannot load token file '%s': %m", cfg->token_file);
		}
	}
	*ret = r;
	return 0;
}

struct routes *routes_free(struct routes *r)
{
	if (!r)
		return NULL;
	proc_snapshot_unref(r->cache);
	free(r->changed);
	free(r->gone);
	proc_scanner_free(r->scanner);
	auth_tokens_free(r->tokens);
	free(r);
	return NULL;
}

void routes_set_lifecycle(struct routes *r, struct lifecycle *l)
{
	r->lifecycle = l;
}

/* Past this many pending changes, patching costs about as much as a scan. */
#define LIVE_CHANGES_MAX 4096

static void live_reset(struct routes *r)
{
	r->n_changed = r->n_gone = 0;
	r->overflow = false;
}

static void live_push(struct routes *r, pid_t **list, size_t *n, pid_t pid)
{
	if (r->overflow)
		return;
	if (!*list)
		*list = calloc(LIVE_CHANGES_MAX, sizeof(pid_t));
	if (!*list || *n >= LIVE_CHANGES_MAX) {
		r->overflow = true;
		return;
	}
	(*list)[(*n)++] = pid;
}

void routes_set_instances(struct routes *r, struct instances *in)
{
	r->instances = in;
}

void routes_note_exit(struct routes *r, const struct event_exit *x)
{
	if (r->instances)
		instances_note_exit(r->instances, x);
}

void routes_note_process(struct routes *r, pid_t pid, bool gone)
{
	if (!r->cache)
		return;
	if (gone)
		live_push(r, &r->gone, &r->n_gone, pid);
	else
		live_push(r, &r->changed, &r->n_changed, pid);
}

struct event_hub *routes_event_hub(const struct routes *r)
{
	return r->hub;
}

void k2i_response_done(struct k2i_response *resp)
{
	k2i_deferred_cancel(TAKE_PTR(resp->deferred));
	resp->stream = event_sub_free(resp->stream);
	if (resp->body)
		evbuffer_free(resp->body);
	resp->body = NULL;
}

static int dump_cb(const char *buffer, size_t size, void *data)
{
	return evbuffer_add(data, buffer, size);
}

/* Serialises @json (borrowed) as the response body. Returns 0 or -ENOMEM. */
static int respond_json(struct k2i_response *resp, int status, json_t *json)
{
	resp->status = status;
	resp->content_type = JSON_TYPE;
	if (!resp->body)
		resp->body = evbuffer_new();
	if (!resp->body)
		return -ENOMEM;
	/* json_dump_callback streams into the evbuffer: no intermediate string. */
	if (json_dump_callback(json, dump_cb, resp->body, JSON_COMPACT) < 0 ||
	    evbuffer_add(resp->body, "\n", 1) < 0)
		return -ENOMEM;
	return 0;
}

/* Answers {"error":{"code":N,"message":"…"}} with status @status. */
static void respond_error(struct k2i_response *resp, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void respond_error(struct k2i_response *resp, int status, const char *fmt, ...)
{
	json_auto_t *j = NULL;
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Messages quote what the client sent: keep them printable ASCII (and valid JSON). */
	for (char *c = msg; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
			*c = '?';
	j = json_pack("{s:{s:i,s:s}}", "error", "code", status, "message", msg);
	if (resp->body)
		evbuffer_drain(resp->body, evbuffer_get_length(resp->body));
	if (!j || respond_json(resp, status, j) < 0) {
		/* Out of memory: still send the status, with an empty body. */
		resp->status = status;
		if (resp->body)
			evbuffer_drain(resp->body, evbuffer_get_length(resp->body));
	}
}

/*
 * Answers the envelope of every list, {"host":{"name","boot_id"},"time","count",<key>:[…]}, with
 * @items_text (the JSON text of the array, @items_len bytes) spliced in: the process list is
 * written as text by procquery.c, several times cheaper than jansson objects for 10k processes.
 */
static int respond_list_text(struct routes *r, struct k2i_response *resp, const char *key,
			     const char *items_text, size_t items_len, size_t count)
{
	json_auto_t *env = NULL;
	_cleanup_free_ char *head = NULL;
	size_t hl;
	char now[64];

	format_now(now, sizeof(now));
	env = json_pack("{s:{s:s,s:s},s:s,s:I}", "host", "name", r->hostname, "boot_id",
			proc_scanner_boot_id(r->scanner), "time", now, "count", (json_int_t)count);
	head = env ? json_dumps(env, JSON_COMPACT) : NULL;
	if (!head)
		return -ENOMEM;
	hl = strlen(head) - 1; /* without the closing '}' */
	resp->status = 200;
	resp->content_type = JSON_TYPE;
	resp->body = evbuffer_new();
	if (!resp->body || evbuffer_expand(resp->body, hl + items_len + 32) < 0 ||
	    evbuffer_add(resp->body, head, hl) < 0 ||
	    evbuffer_add_printf(resp->body, ",\"%s\":", key) < 0 ||
	    evbuffer_add(resp->body, items_text, items_len) < 0 ||
	    evbuffer_add(resp->body, "}\n", 2) < 0)
		return -ENOMEM;
	return 0;
}

/* Returns a snapshot with at least @fields (new reference), from the cache when fresh enough. */
static int get_snapshot(struct routes *r, uint64_t fields, bool threads, struct proc_snapshot **ret)
{
	double start = now_monotonic();
	struct proc_snapshot *snap = NULL;
	int e;

	/* Events still queued in the kernel would change the live table: take them first. */
	if (r->lifecycle)
		lifecycle_drain(r->lifecycle);
	if (r->cache && r->cache_threads == threads && (r->cache_fields & fields) == fields &&
	    (start - r->cache_time) * 1000.0 <= r->cfg->scan_max_age_ms) {
		/* The live table: the snapshot, patched with what the events changed since. */
		if (!threads && !r->overflow && (r->n_changed || r->n_gone)) {
			e = proc_scanner_patch(r->scanner, r->cache, r->gone, r->n_gone, r->changed,
					       r->n_changed, &snap);
			if (e >= 0) {
				r->metrics->live_patches++;
				proc_snapshot_unref(r->cache);
				r->cache = snap;
				live_reset(r);
			}
		}
		/* Anything left pending (threads view, too many, a failed patch): rescan. */
		if (!r->overflow && !r->n_changed && !r->n_gone) {
			r->metrics->scan_cache_hits++;
			*ret = proc_snapshot_ref(r->cache);
			return 0;
		}
	}
	e = proc_scanner_scan(r->scanner, fields, threads, &snap);
	if (e < 0) {
		r->metrics->scan_errors++;
		return log_warn_errno(e, "Scanning /proc failed: %m");
	}
	metrics_observe_scan(r->metrics, now_monotonic() - start);
	if (!threads)
		r->metrics->processes = snap->count;
	proc_snapshot_unref(r->cache);
	r->cache = proc_snapshot_ref(snap);
	r->cache_fields = fields;
	r->cache_threads = threads;
	r->cache_time = start;
	live_reset(r);
	*ret = snap;
	return 0;
}

/* Parses the query string into a proc_query, answering 400 on a bad one. */
static int parse_proc_query(const struct http_query *q, struct k2i_response *resp,
			    struct proc_query **ret)
{
	_cleanup_free_ char *err = NULL;
	int e;

	e = proc_query_parse((const char *const *)q->keys, (const char *const *)q->values, q->n,
			     ret, &err);
	if (e == -ENOMEM)
		return e;
	if (e < 0) {
		respond_error(resp, 400, "%s", err ? err : "invalid query");
		return e;
	}
	return 0;
}

static void route_proc_list(struct routes *r, const struct http_query *params,
			    const char *comm_substring, struct k2i_response *resp)
{
	_cleanup_(proc_query_freep) struct proc_query *q = NULL;
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *snap = NULL;
	_cleanup_free_ const struct proc_instance **tags = NULL;
	_cleanup_free_ char *text = NULL;
	size_t len = 0, count = 0;
	uint64_t need;
	int e;

	if (parse_proc_query(params, resp, &q) < 0)
		return;
	need = proc_query_needed_fields(q);
	if (comm_substring)
		need |= PROC_FIELD_BIT(PROC_FIELD_COMM);
	/* Tying processes to instances walks the parents and checks the launchers' start. */
	if (r->instances && instances_any_live(r->instances) && proc_query_wants_instances(q))
		need |= PROC_FIELD_BIT(PROC_FIELD_PPID) | PROC_FIELD_BIT(PROC_FIELD_START_TIME);
	e = get_snapshot(r, need, proc_query_threads(q), &snap);
	if (e < 0) {
		respond_error(resp, 500, "cannot read the process table: %s", strerror(-e));
		return;
	}
	if (r->instances && instances_any_live(r->instances) && proc_query_wants_instances(q) &&
	    instances_tag(r->instances, snap, &tags) < 0) {
		respond_error(resp, 500, "cannot build the response");
		return;
	}
	e = proc_query_run_text(q, snap, comm_substring, tags, &text, &len, &count);
	if (e < 0 || respond_list_text(r, resp, "processes", text, len, count) < 0)
		respond_error(resp, 500, "cannot build the response");
}

/*
 * The instance process @pid belongs to, for a one-process answer: the tags of a snapshot with
 * every process's parent, which the ancestor walk needs. NULL if none (or on failure: the
 * field is then null rather than the request failing).
 */
static const struct proc_instance *instance_of(struct routes *r, pid_t pid)
{
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *snap = NULL;
	_cleanup_free_ const struct proc_instance **tags = NULL;

	if (!r->instances || !instances_any_live(r->instances) ||
	    get_snapshot(r,
			 PROC_FIELD_BIT(PROC_FIELD_PID) | PROC_FIELD_BIT(PROC_FIELD_PPID) |
				 PROC_FIELD_BIT(PROC_FIELD_START_TIME),
			 false, &snap) < 0 ||
	    instances_tag(r->instances, snap, &tags) < 0)
		return NULL;
	for (size_t i = 0; i < snap->count; i++)
		if (snap->entries[i].pid == pid)
			return tags[i];
	return NULL;
}

static void route_proc_one(struct routes *r, const struct http_query *params, pid_t pid,
			   struct k2i_response *resp)
{
	_cleanup_(proc_query_freep) struct proc_query *q = NULL;
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *snap = NULL;
	struct proc_text text = { 0 };
	int e;

	for (size_t i = 0; i < params->n; i++)
		if (strcmp(params->keys[i], "fields") != 0) {
			respond_error(resp, 400,
				      "parameter '%s' is not supported here (only 'fields' is)",
				      params->keys[i]);
			return;
		}
	if (parse_proc_query(params, resp, &q) < 0)
		return;
	e = proc_scanner_read_pid(r->scanner, pid, proc_query_needed_fields(q), &snap);
	if (e == -ENOENT || e == -ESRCH || (e >= 0 && snap->count == 0)) {
		respond_error(resp, 404, "no process with PID %d", (int)pid);
		return;
	}
	if (e < 0) {
		respond_error(resp, 500, "cannot read process %d: %s", (int)pid, strerror(-e));
		return;
	}
	e = proc_entry_to_text(snap, 0, proc_query_output_fields(q),
			       (proc_query_output_fields(q) & PROC_FIELD_BIT(PROC_FIELD_INSTANCE)) ?
				       instance_of(r, pid) :
				       NULL,
			       &text);
	resp->body = e >= 0 ? evbuffer_new() : NULL;
	if (!resp->body || evbuffer_add(resp->body, text.data, text.len) < 0 ||
	    evbuffer_add(resp->body, "\n", 1) < 0) {
		respond_error(resp, 500, "cannot build the response");
	} else {
		resp->status = 200;
		resp->content_type = JSON_TYPE;
	}
	free(text.data);
}

static void route_host(struct routes *r, struct k2i_response *resp)
{
	json_auto_t *host = NULL;
	char now[64];
	int e;

	e = host_info_json(r->scanner, &host);
	if (e < 0) {
		respond_error(resp, 500, "cannot read host information: %s", strerror(-e));
		return;
	}
	format_now(now, sizeof(now));
	if (r->lifecycle) {
		struct lifecycle_stats ls;

		lifecycle_stats(r->lifecycle, &ls);
		if (json_object_set_new(host, "event_source", json_string(ls.source)) < 0) {
			respond_error(resp, 500, "cannot build the response");
			return;
		}
	}
	if (json_object_set_new(host, "time", json_string(now)) < 0 ||
	    respond_json(resp, 200, host) < 0)
		respond_error(resp, 500, "cannot build the response");
}

/* Effective configuration, from the same table that parses k2i.conf; secrets omitted. */
static void route_config(struct routes *r, struct k2i_response *resp)
{
	json_auto_t *j = json_object();
	int e = j ? 0 : -ENOMEM;

	for (size_t i = 0; e >= 0 && i < k2i_config_n_items; i++) {
		const struct conf_item *it = &k2i_config_items[i];
		const char *p = (const char *)r->cfg + it->offset;
		json_t *v = NULL;

		if (it->secret)
			continue;
		switch (it->type) {
		case CONF_STRING:
			v = *(char *const *)p ? json_string(*(char *const *)p) : json_null();
			break;
		case CONF_STRV:
			v = json_array();
			for (char *const *s = *(char **const *)p; v && s && *s; s++)
				if (json_array_append_new(v, json_string(*s)) < 0)
					e = -ENOMEM;
			break;
		case CONF_U32:
			v = json_integer(*(const uint32_t *)p);
			break;
		case CONF_BOOL:
			v = json_boolean(*(const bool *)p);
			break;
		case CONF_LOG_LEVEL:
			v = json_string(log_level_to_string(*(const int *)p));
			break;
		default:
			break;
		}
		if (!v || json_object_set_new(j, it->key, v) < 0)
			e = -ENOMEM;
	}
	if (e >= 0)
		e = json_object_set_new(j, "version", json_string(K2I_VERSION));
	if (e < 0 || respond_json(resp, 200, j) < 0)
		respond_error(resp, 500, "cannot build the response");
}

static int render_lifecycle(const struct lifecycle *l, struct evbuffer *out)
{
	static const char *const sources[] = { "bpf", "netlink", "poll" };
	struct lifecycle_stats ls;

	lifecycle_stats(l, &ls);
	if (evbuffer_add_printf(out,
				"# HELP k2i_event_source The source of process events in use.\n"
				"# TYPE k2i_event_source gauge\n") < 0)
		return -ENOMEM;
	for (size_t i = 0; i < ELEMENTSOF(sources); i++)
		if (evbuffer_add_printf(out, "k2i_event_source{source=\"%s\"} %d\n", sources[i],
					strcmp(ls.source, sources[i]) == 0) < 0)
			return -ENOMEM;
	if (evbuffer_add_printf(
		    out,
		    "# HELP k2i_events_received_total Process events received from the source.\n"
		    "# TYPE k2i_events_received_total counter\nk2i_events_received_total %lu\n"
		    "# HELP k2i_events_lost_total Events the kernel could not hand over (buffer full).\n"
		    "# TYPE k2i_events_lost_total counter\nk2i_events_lost_total %lu\n"
		    "# HELP k2i_live_processes Processes in the live table.\n"
		    "# TYPE k2i_live_processes gauge\nk2i_live_processes %lu\n"
		    "# HELP k2i_reconciled_total Live-table entries fixed by a reconcile scan.\n"
		    "# TYPE k2i_reconciled_total counter\nk2i_reconciled_total %lu\n",
		    (unsigned long)ls.received, (unsigned long)ls.lost, (unsigned long)ls.processes,
		    (unsigned long)ls.reconciled) < 0)
		return -ENOMEM;
	return 0;
}

static void route_metrics(struct routes *r, struct k2i_response *resp)
{
	struct event_hub_stats st;

	event_hub_stats(r->hub, &st);
	resp->body = evbuffer_new();
	if (!resp->body || metrics_render(r->metrics, resp->body) < 0 ||
	    evbuffer_add_printf(
		    resp->body,
		    "# HELP k2i_events_published_total Process events offered to the event streams.\n"
		    "# TYPE k2i_events_published_total counter\n"
		    "k2i_events_published_total %lu\n"
		    "# HELP k2i_event_streams Open GET /v1/events streams.\n"
		    "# TYPE k2i_event_streams gauge\nk2i_event_streams %zu\n"
		    "# HELP k2i_event_streams_cut_off_total Streams closed because the client did not "
		    "keep up.\n# TYPE k2i_event_streams_cut_off_total counter\n"
		    "k2i_event_streams_cut_off_total %lu\n"
		    "# HELP k2i_event_stream_drops_total Events not delivered to a stream being cut "
		    "off.\n# TYPE k2i_event_stream_drops_total counter\n"
		    "k2i_event_stream_drops_total %lu\n"
		    "# HELP k2i_exits_recorded Exits held for GET /v1/exits.\n"
		    "# TYPE k2i_exits_recorded gauge\nk2i_exits_recorded %zu\n",
		    (unsigned long)st.published, st.streams, (unsigned long)st.streams_cut_off,
		    (unsigned long)st.events_dropped, st.exits) < 0 ||
	    (r->lifecycle && render_lifecycle(r->lifecycle, resp->body) < 0)) {
		respond_error(resp, 500, "cannot render metrics");
		return;
	}
	resp->status = 200;
	resp->content_type = PROM_TYPE;
}

/* GET /v1/events: a live stream; the transport attaches resp->stream once the headers are out. */
static void route_events(struct routes *r, const struct k2i_request *req,
			 const struct http_query *params, struct k2i_response *resp)
{
	_cleanup_free_ char *err = NULL;
	struct event_sub *sub = NULL;
	int e;

	e = event_sub_new((const char *const *)params->keys, (const char *const *)params->values,
			  params->n, req->accept, &sub, &err);
	if (e < 0) {
		respond_error(resp, e == -ENOMEM ? 500 : 400, "%s", err ? err : "out of memory");
		return;
	}
	resp->status = 200;
	resp->content_type = event_format_content_type(event_sub_format(sub));
	if (resp->head)
		event_sub_free(sub);
	else
		resp->stream = sub;
}

/* GET /v1/exits: the ring of recent exits, oldest first; filters pid, comm, limit. */
static void route_exits(struct routes *r, const struct http_query *params,
			struct k2i_response *resp)
{
	json_auto_t *items = NULL;
	_cleanup_free_ char *text = NULL;
	const char *comm = NULL;
	uint32_t pid = 0, limit = 0;

	for (size_t i = 0; i < params->n; i++) {
		const char *k = params->keys[i], *v = params->values[i];

		if (strcmp(k, "pid") == 0 && safe_atou32_range(v, 1, PID_MAX, &pid) >= 0)
			continue;
		if (strcmp(k, "limit") == 0 && safe_atou32_range(v, 1, 1000000, &limit) >= 0)
			continue;
		if (strcmp(k, "comm") == 0 && *v) {
			comm = v;
			continue;
		}
		respond_error(resp, 400, "invalid parameter '%s=%s' (expected pid, comm or limit)",
			      k, v);
		return;
	}
	if (event_hub_exits_json(r->hub, (pid_t)pid, comm, limit, &items) < 0 ||
	    !(text = json_dumps(items, JSON_COMPACT)) ||
	    respond_list_text(r, resp, "exits", text, strlen(text), json_array_size(items)) < 0)
		respond_error(resp, 500, "cannot build the response");
}

/* An answer of /v1/vms or /v1/sandboxes still waiting for the instances' control sockets. */
struct k2i_deferred {
	struct routes *r;
	struct instances_query *query;
	const char *kind; /* static */
	char *id; /* NULL for the list */
	char *target; /* as received, for the log */
	bool head;
	enum k2i_route route;
	enum k2i_proto proto;
	k2i_deferred_cb_t done; /* set by the transport */
	void *done_ctx;
};

static struct k2i_deferred *deferred_free(struct k2i_deferred *d)
{
	if (d) {
		free(d->id);
		free(d->target);
		free(d);
	}
	return NULL;
}

DEFINE_CLEANUP_FUNC(struct k2i_deferred, deferred_free)

/* Answers /v1/vms or /v1/sandboxes from what instances_query() gave. */
static void respond_instances(struct routes *r, const char *kind, const char *id, int e, json_t *j,
			      struct k2i_response *resp)
{
	_cleanup_free_ char *text = NULL;

	if (e == -ENOENT) {
		respond_error(resp, 404, "no %s with id '%s'", kind, id);
		return;
	}
	if (e < 0) {
		respond_error(resp, 500, "cannot build the response");
		return;
	}
	if (id) {
		if (respond_json(resp, 200, j) < 0)
			respond_error(resp, 500, "cannot build the response");
		return;
	}
	text = json_dumps(j, JSON_COMPACT);
	if (!text || respond_list_text(r, resp, strcmp(kind, "vm") == 0 ? "vms" : "sandboxes", text,
				       strlen(text), json_array_size(j)) < 0)
		respond_error(resp, 500, "cannot build the response");
}

static void count_request(struct routes *r, const char *method, const char *target,
			  enum k2i_route route, enum k2i_proto proto, int status)
{
	metrics_count_request(r->metrics, route, status, proto);
	log_debug("%s %s -> %d", method ? method : "-", target ? target : "-", status);
}

static void on_instances(int e, json_t *j, void *userdata)
{
	struct k2i_deferred *d = userdata;
	struct k2i_response resp = { .head = d->head };
	k2i_deferred_cb_t done = d->done;
	void *ctx = d->done_ctx;

	d->query = NULL;
	respond_instances(d->r, d->kind, d->id, e, j, &resp);
	count_request(d->r, d->head ? "HEAD" : "GET", d->target, d->route, d->proto, resp.status);
	deferred_free(d);
	done(ctx, &resp);
	k2i_response_done(&resp);
}

void k2i_deferred_wait(struct k2i_deferred *d, k2i_deferred_cb_t done, void *ctx)
{
	d->done = done;
	d->done_ctx = ctx;
}

void k2i_deferred_cancel(struct k2i_deferred *d)
{
	if (!d)
		return;
	instances_query_cancel(d->query);
	deferred_free(d);
}

/*
 * GET /v1/vms[/{id}] and /v1/sandboxes[/{id}]. Asking the launchers' control sockets takes
 * time, so unless none needs asking the answer is deferred (resp->deferred).
 */
static void route_instances(struct routes *r, const struct k2i_request *req, enum k2i_route route,
			    const char *kind, const char *id, struct k2i_response *resp)
{
	_cleanup_(deferred_freep) struct k2i_deferred *d = calloc(1, sizeof(*d));
	json_auto_t *j = NULL;
	int e;

	if (id && !instance_id_valid(id)) {
		respond_error(resp, 400, "invalid instance id");
		return;
	}
	if (!r->instances) {
		respond_error(resp, id ? 404 : 503, "instances are not tracked on this host");
		return;
	}
	if (!d || (id && !(d->id = strdup(id))) || !(d->target = strdup(req->target))) {
		respond_error(resp, 500, "cannot build the response");
		return;
	}
	*d = (struct k2i_deferred){ .r = r,
				    .kind = kind,
				    .id = d->id,
				    .target = d->target,
				    .head = resp->head,
				    .route = route,
				    .proto = req->proto };
	/* The launchers answer on their own loop: 200 ms covers a busy one, not a hung one. */
	e = instances_query(r->instances, kind, id, 200, on_instances, d, &j, &d->query);
	if (e == 1) {
		resp->deferred = TAKE_PTR(d);
		return;
	}
	respond_instances(r, kind, id, e, j, resp);
}

static void route_index(struct routes *r, struct k2i_response *resp)
{
	json_auto_t *j =
		json_pack("{s:s,s:s,s:s,s:[s,s,s,s,s,s,s,s,s,s,s,s,s,s,s,s,s]}", "name", "k2i",
			  "version", K2I_VERSION, "host", r->hostname, "routes", "/v1/proc",
			  "/v1/proc/{pid}", "/v1/proc/pid/{pid}", "/v1/proc/cmd/{comm}",
			  "/v1/proc/self", "/v1/k2i", "/v1/events", "/v1/exits", "/v1/vms",
			  "/v1/vms/{id}", "/v1/sandboxes", "/v1/sandboxes/{id}", "/v1/host",
			  "/v1/config", "/v1/hello", "/metrics", "/healthz");

	if (!j || respond_json(resp, 200, j) < 0)
		respond_error(resp, 500, "cannot build the response");
}

static void respond_simple(struct k2i_response *resp, const char *key, const char *value)
{
	json_auto_t *j = json_pack("{s:s}", key, value);

	if (!j || respond_json(resp, 200, j) < 0)
		respond_error(resp, 500, "cannot build the response");
}

/* The result of matching a path: the route and its argument. */
struct route_match {
	enum k2i_route route;
	pid_t pid;
	const char *comm; /* points into the path */
	const char *id; /* instance id, points into the path; NULL for the list */
	bool bad_pid;
};

static bool all_digits(const char *s)
{
	return *s && strspn(s, "0123456789") == strlen(s);
}

static void match_pid(const char *s, struct route_match *m)
{
	uint32_t pid;

	if (safe_atou32_range(s, 1, PID_MAX, &pid) < 0)
		m->bad_pid = true;
	else
		m->pid = (pid_t)pid;
}

static struct route_match route_match(char *path)
{
	struct route_match m = { .route = K2I_ROUTE_NONE };
	size_t n = strlen(path);
	const char *rest;

	/* One trailing slash is tolerated ("/v1/proc/"); the original k2i's root is "/v1/". */
	if (n > 1 && path[n - 1] == '/')
		path[n - 1] = '\0';

	if (strcmp(path, "/") == 0 || strcmp(path, "/v1") == 0)
		m.route = K2I_ROUTE_INDEX;
	else if (strcmp(path, "/healthz") == 0)
		m.route = K2I_ROUTE_HEALTHZ;
	else if (strcmp(path, "/metrics") == 0)
		m.route = K2I_ROUTE_METRICS;
	else if (strcmp(path, "/v1/hello") == 0)
		m.route = K2I_ROUTE_HELLO;
	else if (strcmp(path, "/v1/host") == 0)
		m.route = K2I_ROUTE_HOST;
	else if (strcmp(path, "/v1/config") == 0)
		m.route = K2I_ROUTE_CONFIG;
	else if (strcmp(path, "/v1/events") == 0)
		m.route = K2I_ROUTE_EVENTS;
	else if (strcmp(path, "/v1/exits") == 0)
		m.route = K2I_ROUTE_EXITS;
	else if (strcmp(path, "/v1/proc") == 0)
		m.route = K2I_ROUTE_PROC;
	else if (strcmp(path, "/v1/vms") == 0)
		m.route = K2I_ROUTE_VMS;
	else if (strcmp(path, "/v1/sandboxes") == 0)
		m.route = K2I_ROUTE_SANDBOXES;
	else if ((rest = startswith(path, "/v1/vms/")) && *rest) {
		m.route = K2I_ROUTE_VMS;
		m.id = rest;
	} else if ((rest = startswith(path, "/v1/sandboxes/")) && *rest) {
		m.route = K2I_ROUTE_SANDBOXES;
		m.id = rest;
	} else if (strcmp(path, "/v1/proc/self") == 0 || strcmp(path, "/v1/k2i") == 0)
		m.route = K2I_ROUTE_PROC_SELF;
	else if ((rest = startswith(path, "/v1/proc/pid/")) && *rest) {
		m.route = K2I_ROUTE_PROC_PID;
		match_pid(rest, &m);
	} else if ((rest = startswith(path, "/v1/proc/cmd/")) && *rest) {
		m.route = K2I_ROUTE_PROC_CMD;
		m.comm = rest;
	} else if ((rest = startswith(path, "/v1/proc/")) && all_digits(rest)) {
		m.route = K2I_ROUTE_PROC_PID;
		match_pid(rest, &m);
	}
	return m;
}

/* Decides whether @req may read process data. Returns true, or false after answering 401/403. */
static bool authorize(struct routes *r, const struct k2i_request *req, struct k2i_response *resp)
{
	const char *token;

	if (req->authorization && r->tokens) {
		token = startswith(req->authorization, "Bearer ");
		if (token && auth_tokens_check(r->tokens, skip_blanks(token)))
			return true;
		resp->www_authenticate = "Bearer error=\"invalid_token\"";
		respond_error(resp, 401, "invalid bearer token");
		return false;
	}
	switch (req->peer) {
	case TLS_PEER_OK:
		return true;
	case TLS_PEER_NO_CERT:
		if (r->tokens)
			resp->www_authenticate = "Bearer";
		respond_error(resp, 401, "a client certificate signed by the k2i CA%s is required",
			      r->tokens ? " or a bearer token" : "");
		return false;
	case TLS_PEER_NAME_DENIED:
		respond_error(resp, 403, "client certificate '%s' is not in allowed_sans",
			      req->peer_identity ? req->peer_identity : "?");
		return false;
	default:
		respond_error(resp, 403, "client certificate is not signed by the k2i CA");
		return false;
	}
}

static void dispatch(struct routes *r, const struct k2i_request *req, struct k2i_response *resp,
		     enum k2i_route *ret_route)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_free_ char *query = NULL;
	struct http_query params = { .n = 0 };
	struct route_match m;
	int e;

	if (req->refuse_status) {
		respond_error(resp, req->refuse_status, "%s", req->refuse_message);
		return;
	}
	if (!req->target || http_target_split(req->target, &path, &query) < 0) {
		respond_error(resp, 400, "malformed request target");
		return;
	}
	m = route_match(path);
	*ret_route = m.route;
	if (m.route == K2I_ROUTE_NONE) {
		respond_error(resp, 404, "no route for '%s'", path);
		return;
	}
	if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
		resp->allow = "GET, HEAD";
		respond_error(resp, 405, "method '%s' is not allowed (use GET)", req->method);
		return;
	}
	resp->head = strcmp(req->method, "HEAD") == 0;
	/* Liveness probes (kubelet, load balancers) present no client certificate; /healthz
	 * reveals nothing about the host, so it is the one route without authentication. */
	if (m.route == K2I_ROUTE_HEALTHZ) {
		respond_simple(resp, "status", "ok");
		return;
	}
	if (!authorize(r, req, resp))
		return;
	if (m.bad_pid) {
		respond_error(resp, 400, "invalid process ID in '%s'", path);
		return;
	}
	e = http_query_parse(query, &params);
	if (e < 0) {
		respond_error(resp, 400,
			      e == -E2BIG ? "too many query parameters" : "malformed query string");
		return;
	}

	switch (m.route) {
	case K2I_ROUTE_INDEX:
		route_index(r, resp);
		break;
	case K2I_ROUTE_HELLO:
		respond_simple(resp, "message", "hello!");
		break;
	case K2I_ROUTE_PROC:
		route_proc_list(r, &params, NULL, resp);
		break;
	case K2I_ROUTE_PROC_CMD:
		route_proc_list(r, &params, m.comm, resp);
		break;
	case K2I_ROUTE_PROC_PID:
		route_proc_one(r, &params, m.pid, resp);
		break;
	case K2I_ROUTE_PROC_SELF:
		route_proc_one(r, &params, getpid(), resp);
		break;
	case K2I_ROUTE_HOST:
		route_host(r, resp);
		break;
	case K2I_ROUTE_CONFIG:
		route_config(r, resp);
		break;
	case K2I_ROUTE_METRICS:
		route_metrics(r, resp);
		break;
	case K2I_ROUTE_EVENTS:
		route_events(r, req, &params, resp);
		break;
	case K2I_ROUTE_EXITS:
		route_exits(r, &params, resp);
		break;
	case K2I_ROUTE_VMS:
		route_instances(r, req, m.route, "vm", m.id, resp);
		break;
	case K2I_ROUTE_SANDBOXES:
		route_instances(r, req, m.route, "sandbox", m.id, resp);
		break;
	default:
		respond_error(resp, 404, "no route for '%s'", path);
		break;
	}
	http_query_done(&params);
}

void routes_handle(struct routes *r, const struct k2i_request *req, struct k2i_response *resp)
{
	enum k2i_route route = K2I_ROUTE_NONE;

	dispatch(r, req, resp, &route);
	if (resp->deferred)
		return; /* counted when it is answered */
	if (resp->status == 0)
		respond_error(resp, 500, "internal error");
	count_request(r, req->method, req->target, route, req->proto, resp->status);
}
