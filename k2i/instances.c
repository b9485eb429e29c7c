/* SPDX-License-Identifier: MIT */
#include "k2i/instances.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "k2i/events.h"
#include "k2i/procinfo.h"
#include "libcommon/cleanup.h"
#include "libcommon/ctlsock.h"
#include "libcommon/fdutil.h"
#include "libcommon/instance.h"
#include "libcommon/log.h"

/* A launcher an ancestor walk may climb through: deeper trees are not attributed. */
#define INSTANCES_MAX_DEPTH 64

/* A live instance: its record, and what tagging needs. */
struct live_instance {
	struct instance_record rec; /* owned */
	struct proc_instance tag; /* points into rec */
	bool seen; /* found by the current directory pass */
	bool record_gone; /* the launcher removed its record; waiting for its exit */
};

/* An instance that ended. */
struct ended_instance {
	struct instance_record rec; /* owned */
	uint64_t ended_ns; /* CLOCK_REALTIME, 0 if unknown */
	bool status_known;
	int exit_code, signal;
};

struct instances {
	struct event_base *base; /* borrowed */
	char *rundir, *dir;
	int inotify_fd;
	struct event *inotify_ev;
	struct live_instance *live;
	size_t n_live;
	struct ended_instance ended[INSTANCES_EXITED_MAX]; /* a ring */
	size_t ended_next, n_ended;
};

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The tags point into the records, which move when the array is reallocated or compacted. */
static void fix_tags(struct instances *in)
{
	for (size_t i = 0; i < in->n_live; i++)
		in->live[i].tag = (struct proc_instance){
			.kind = instance_kind_to_string(in->live[i].rec.kind),
			.id = in->live[i].rec.id,
		};
}

/* Moves live instance @i to the ended ring; @x is its launcher's exit, or NULL if unknown. */
static void end_instance(struct instances *in, size_t i, const struct event_exit *x)
{
	struct ended_instance *e = &in->ended[in->ended_next];

	if (in->n_ended == INSTANCES_EXITED_MAX)
		instance_record_done(&e->rec);
	else
		in->n_ended++;
	*e = (struct ended_instance){ .rec = in->live[i].rec };
	if (x) {
		e->ended_ns = x->end_ns;
		e->status_known = true;
		e->exit_code = x->exit_code;
		e->signal = x->signal;
	} else {
		e->ended_ns = realtime_ns();
	}
	in->ended_next = (in->ended_next + 1) % INSTANCES_EXITED_MAX;
	log_info("Instance %s %s (pid %d) ended", instance_kind_to_string(e->rec.kind), e->rec.id,
		 (int)e->rec.pid);
	in->live[i] = in->live[--in->n_live];
	fix_tags(in);
}

static struct live_instance *live_find_id(struct instances *in, const char *id)
{
	for (size_t i = 0; i < in->n_live; i++)
		if (strcmp(in->live[i].rec.id, id) == 0)
			return &in->live[i];
	return NULL;
}

/*
 * Brings the live list in line with the records: new records are added, a record whose
 * launcher is dead (killed before it could clean up, or a reused pid) is removed with its
 * socket, and an instance whose record is gone is kept until its launcher's exit is seen.
 */
static void refresh(struct instances *in)
{
	struct instance_record *recs = NULL;
	size_t n = 0;
	int r;

	r = instance_list(in->rundir, &recs, &n);
	if (r < 0) {
		log_debug("Cannot list the instance records in '%s': %s", in->dir, strerror(-r));
		return;
	}
	for (size_t i = 0; i < in->n_live; i++)
		in->live[i].seen = false;
	for (size_t i = 0; i < n; i++) {
		struct live_instance *l = live_find_id(in, recs[i].id);

		if (!instance_alive(&recs[i])) {
			log_info("Removing the stale record of %s %s (pid %d is gone)",
				 instance_kind_to_string(recs[i].kind), recs[i].id,
				 (int)recs[i].pid);
			(void)instance_remove(in->rundir, recs[i].id);
			continue;
		}
		if (l && l->rec.pid == recs[i].pid && l->rec.pid_start == recs[i].pid_start) {
			l->seen = true;
			continue;
		}
		if (l) /* the same id, another launcher: the old one ended unnoticed */
			end_instance(in, (size_t)(l - in->live), NULL);
		l = reallocarray(in->live, in->n_live + 1, sizeof(*in->live));
		if (!l) {
			log_oom();
			break;
		}
		in->live = l;
		l = &in->live[in->n_live++];
		*l = (struct live_instance){ .rec = recs[i], .seen = true };
		fix_tags(in);
		recs[i] = (struct instance_record){ 0 }; /* taken */
		log_info("Instance %s %s (pid %d) is running", l->tag.kind, l->rec.id,
			 (int)l->rec.pid);
	}
	instance_records_free(recs, n);
	for (size_t i = 0; i < in->n_live;) {
		struct live_instance *l = &in->live[i];

		l->record_gone = !l->seen;
		/* No record and no launcher: it ended and we missed its exit. */
		if (!l->seen && !instance_alive(&l->rec)) {
			end_instance(in, i, NULL);
			continue;
		}
		i++;
	}
}

static void inotify_cb(evutil_socket_t fd, short events, void *userdata)
{
	struct instances *in = userdata;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

	/* What changed does not matter: a pass over the directory is cheap and exact. */
	while (read(in->inotify_fd, buf, sizeof(buf)) > 0)
		;
	refresh(in);
}

int instances_new(struct event_base *base, const char *rundir, struct instances **ret)
{
	_cleanup_free_ struct instances *in = calloc(1, sizeof(*in));
	int r;

	if (!in)
		return -ENOMEM;
	in->base = base;
	in->inotify_fd = -EBADF;
	in->rundir = strdup(rundir);
	r = instance_paths(rundir, "x", &in->dir, NULL, NULL);
	if (!in->rundir || r < 0) {
		instances_free(TAKE_PTR(in));
		return -ENOMEM;
	}
	r = mkdir_p(in->dir, 0755);
	if (r < 0) {
		instances_free(TAKE_PTR(in));
		return r;
	}
	in->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (in->inotify_fd < 0 || inotify_add_watch(in->inotify_fd, in->dir,
						    IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM |
							    IN_DELETE | IN_ONLYDIR) < 0) {
		r = negative_errno();
		instances_free(TAKE_PTR(in));
		return r;
	}
	in->inotify_ev = event_new(base, in->inotify_fd, EV_READ | EV_PERSIST, inotify_cb, in);
	if (!in->inotify_ev || event_add(in->inotify_ev, NULL) < 0) {
		instances_free(TAKE_PTR(in));
		return -ENOMEM;
	}
	refresh(in);
	*ret = TAKE_PTR(in);
	return 0;
}

struct instances *instances_free(struct instances *in)
{
	if (!in)
		return NULL;
	if (in->inotify_ev)
		event_free(in->inotify_ev);
	if (in->inotify_fd >= 0)
		close(in->inotify_fd);
	for (size_t i = 0; i < in->n_live; i++)
		instance_record_done(&in->live[i].rec);
	free(in->live);
	for (size_t i = 0; i < in->n_ended; i++)
		instance_record_done(&in->ended[i].rec);
	free(in->rundir);
	free(in->dir);
	free(in);
	return NULL;
}

void instances_note_exit(struct instances *in, const struct event_exit *x)
{
	for (size_t i = 0; i < in->n_live; i++) {
		struct live_instance *l = &in->live[i];

		if (l->rec.pid != x->pid)
			continue;
		/* A launcher killed outright leaves its record and socket behind. */
		if (!l->record_gone)
			(void)instance_remove(in->rundir, l->rec.id);
		end_instance(in, i, x);
		return;
	}
}

bool instances_any_live(const struct instances *in)
{
	return in->n_live > 0;
}

static json_t *json_time(uint64_t ns)
{
	char buf[64];
	time_t s = (time_t)(ns / 1000000000u);
	struct tm tm;

	if (!ns || !gmtime_r(&s, &tm))
		return json_null();
	snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (unsigned)(ns / 1000000u % 1000u));
	return json_string(buf);
}

static json_t *record_json(const struct instance_record *rec)
{
	return json_pack("{s:s, s:s, s:i, s:o}", "id", rec->id, "kind",
			 instance_kind_to_string(rec->kind), "pid", (int)rec->pid, "started_at",
			 json_time(rec->started_at_ns));
}

/* At most this many control sockets are asked at once by one query; the others wait. */
#define QUERY_PARALLEL 32

/* One live instance a query asks. */
struct query_call {
	struct instances_query *q;
	json_t *obj; /* its object in q->items (borrowed) */
	char *api_socket;
	struct ctl_async_call *call; /* while asking */
};

struct instances_query {
	struct event_base *base; /* borrowed */
	json_t *items; /* the live instances' objects, then the ended ones' */
	bool one; /* an id was asked for: the answer is its object, not the array */
	struct query_call *calls;
	size_t n_calls, next, pending; /* next: the first not started; pending: not ended */
	int timeout_ms;
	int64_t deadline_ms; /* CLOCK_MONOTONIC: calls not started by then are not made */
	instances_query_cb_t cb;
	void *userdata;
};

static int64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The object of a live instance before its control socket is asked. */
static json_t *live_json(const struct live_instance *l)
{
	json_t *o = record_json(&l->rec);

	if (o && json_object_set_new(o, "api_socket", json_string(l->rec.api_socket)) < 0)
		o = (json_decref(o), NULL);
	return o;
}

/* Completes @obj with why its state is not known. */
static void set_unknown(json_t *obj, json_t *error)
{
	json_object_set_new(obj, "state", json_string("unknown"));
	json_object_set_new(obj, "error", error);
}

/* The answer of a query: the array, or the one object asked for (-ENOENT if there is none). */
static int query_result(struct instances_query *q, json_t **ret)
{
	if (!q->one) {
		*ret = json_incref(q->items);
		return 0;
	}
	if (json_array_size(q->items) == 0)
		return -ENOENT;
	*ret = json_incref(json_array_get(q->items, 0));
	return 0;
}

static void query_free(struct instances_query *q)
{
	for (size_t i = 0; i < q->n_calls; i++) {
		ctl_call_cancel(q->calls[i].call);
		free(q->calls[i].api_socket);
	}
	free(q->calls);
	json_decref(q->items);
	free(q);
}

static void query_start_calls(struct instances_query *q);

/* A control socket answered, failed or timed out. */
static void on_call_done(int r, int status, const char *body, void *userdata)
{
	struct query_call *qc = userdata;
	struct instances_query *q = qc->q;
	json_t *info = NULL;

	qc->call = NULL;
	if (r >= 0 && status == 200)
		info = json_loads(body, 0, NULL);
	if (json_is_object(info)) {
		json_t *state = json_object_get(info, "state");

		json_object_set_new(qc->obj, "state",
				    json_is_string(state) ? json_incref(state) :
							    json_string("running"));
		json_object_set_new(qc->obj, "info", info);
	} else {
		json_decref(info);
		set_unknown(qc->obj,
			    r < 0 ? json_sprintf("control socket: %s", strerror(-r)) :
				    json_sprintf("control socket answered HTTP %d", status));
	}
	q->pending--;
	query_start_calls(q);
	if (q->pending == 0) {
		json_t *result = NULL;
		int e = query_result(q, &result);

		q->cb(e, result, q->userdata);
		json_decref(result);
		query_free(q);
	}
}

/*
 * Starts calls until QUERY_PARALLEL are under way or none is left. A call that cannot start,
 * or would start after the deadline, ends at once (its object says why).
 */
static void query_start_calls(struct instances_query *q)
{
	while (q->next < q->n_calls && q->pending - (q->n_calls - q->next) < QUERY_PARALLEL) {
		struct query_call *qc = &q->calls[q->next++];
		int64_t left = q->deadline_ms - monotonic_ms();
		int r;

		if (left <= 0) {
			set_unknown(qc->obj, json_string("no time left to ask it"));
			q->pending--;
			continue;
		}
		r = ctl_call_start(q->base, qc->api_socket, "GET", "/", NULL,
				   (int)MIN((int64_t)q->timeout_ms, left), on_call_done, qc,
				   &qc->call);
		if (r < 0) {
			set_unknown(qc->obj, json_sprintf("control socket: %s", strerror(-r)));
			q->pending--;
		}
	}
}

static json_t *ended_json(const struct ended_instance *e)
{
	json_t *o = record_json(&e->rec);

	if (!o)
		return NULL;
	json_object_set_new(o, "state", json_string("exited"));
	json_object_set_new(o, "ended_at", json_time(e->ended_ns));
	if (!e->status_known)
		json_object_set_new(o, "exit_status", json_null());
	else if (e->signal)
		json_object_set_new(o, "signal", json_integer(e->signal));
	else
		json_object_set_new(o, "exit_code", json_integer(e->exit_code));
	return o;
}

int instances_query(struct instances *in, const char *kind, const char *id, int timeout_ms,
		    instances_query_cb_t cb, void *userdata, json_t **ret_json,
		    struct instances_query **ret_query)
{
	_cleanup_free_ struct instances_query *q = calloc(1, sizeof(*q));
	const struct ended_instance *last = NULL;
	enum instance_kind k;
	size_t n = 0;
	int r;

	if (!q || instance_kind_from_string(kind, &k) < 0)
		return -ENOMEM;
	*q = (struct instances_query){ .base = in->base,
				       .items = json_array(),
				       .one = id != NULL,
				       .timeout_ms = timeout_ms,
				       .deadline_ms = monotonic_ms() + 4 * (int64_t)timeout_ms,
				       .cb = cb,
				       .userdata = userdata };
	/* A launcher that was killed is noticed here at the latest. */
	refresh(in);
	for (size_t i = 0; i < in->n_live; i++)
		n += in->live[i].rec.kind == k && (!id || strcmp(in->live[i].rec.id, id) == 0);
	q->calls = calloc(MAX(n, (size_t)1), sizeof(*q->calls));
	if (!q->items || !q->calls)
		goto oom;
	for (size_t i = 0; i < in->n_live; i++) {
		const struct live_instance *l = &in->live[i];
		struct query_call *qc = &q->calls[q->n_calls];

		if (l->rec.kind != k || (id && strcmp(l->rec.id, id) != 0))
			continue;
		*qc = (struct query_call){ .q = q, .obj = live_json(l) };
		q->n_calls++;
		if (json_array_append_new(q->items, qc->obj) < 0 ||
		    !(qc->api_socket = strdup(l->rec.api_socket)))
			goto oom;
	}
	/* The ring, oldest first. An id asked for shows its live run, else its latest run. */
	for (size_t j = 0; j < in->n_ended; j++) {
		size_t i = (in->ended_next + INSTANCES_EXITED_MAX - in->n_ended + j) %
			   INSTANCES_EXITED_MAX;
		const struct ended_instance *e = &in->ended[i];

		if (e->rec.kind != k || (id && strcmp(e->rec.id, id) != 0))
			continue;
		if (id)
			last = e;
		else if (json_array_append_new(q->items, ended_json(e)) < 0)
			goto oom;
	}
	if (last && q->n_calls == 0 && json_array_append_new(q->items, ended_json(last)) < 0)
		goto oom;

	q->pending = q->n_calls;
	query_start_calls(q);
	if (q->pending > 0) {
		*ret_query = TAKE_PTR(q);
		return 1;
	}
	/* Nothing to wait for: every call ended before it started. */
	r = query_result(q, ret_json);
	query_free(TAKE_PTR(q));
	return r;
oom:
	query_free(TAKE_PTR(q));
	return -ENOMEM;
}

void instances_query_cancel(struct instances_query *q)
{
	if (q)
		query_free(q);
}

struct pid_index {
	pid_t pid;
	size_t i;
};

static int cmp_pid_index(const void *a, const void *b)
{
	const struct pid_index *x = a, *y = b;

	return (x->pid > y->pid) - (x->pid < y->pid);
}

static const struct pid_index *find_pid(const struct pid_index *idx, size_t n, pid_t pid)
{
	struct pid_index key = { .pid = pid };

	return bsearch(&key, idx, n, sizeof(*idx), cmp_pid_index);
}

int instances_tag(const struct instances *in, const struct proc_snapshot *snap,
		  const struct proc_instance ***ret)
{
	size_t n = snap->count;
	_cleanup_free_ const struct proc_instance **tags = calloc(MAX(n, (size_t)1), sizeof(*tags));
	_cleanup_free_ struct pid_index *idx = malloc(MAX(n, (size_t)1) * sizeof(*idx));

	if (!tags || !idx)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		idx[i] = (struct pid_index){ .pid = snap->entries[i].pid, .i = i };
	qsort(idx, n, sizeof(*idx), cmp_pid_index);
	for (size_t i = 0; i < n && in->n_live > 0; i++) {
		pid_t p = snap->entries[i].pid;

		/* Climb the parents until a launcher, the top, or the depth limit. */
		for (int depth = 0; p > 0 && depth < INSTANCES_MAX_DEPTH; depth++) {
			const struct pid_index *pi = find_pid(idx, n, p);
			const struct proc_entry *e;

			for (size_t k = 0; k < in->n_live; k++)
				if (in->live[k].rec.pid == p &&
				    (!pi || !in->live[k].rec.pid_start ||
				     !snap->entries[pi->i].start_ticks ||
				     snap->entries[pi->i].start_ticks == in->live[k].rec.pid_start))
					tags[i] = &in->live[k].tag;
			if (tags[i] || !pi)
				break;
			e = &snap->entries[pi->i];
			if (e->ppid == p)
				break;
			p = e->ppid;
		}
	}
	*ret = TAKE_PTR(tags);
	return 0;
}
