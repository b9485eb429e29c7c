/* SPDX-License-Identifier: MIT */
#include "k2i/lifecycle.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "k2i/events.h"
#include "k2i/procinfo.h"
#include "k2i/proctrace.h"
#include "k2i/routes.h"
#include "libcommon/cleanup.h"
#include "libcommon/log.h"

#define LIVE_BUCKETS 16384 /* a power of two; chains stay short up to ~100k processes */
#define USER_HZ 100

/* What is known of one live process. */
struct live_proc {
	pid_t pid;
	pid_t ppid;
	uid_t uid;
	uint64_t start_ticks; /* 0 if unknown */
	uint64_t start_ns; /* CLOCK_REALTIME of its fork event, 0 if not seen */
	uint64_t generation; /* the reconcile scan that last saw it */
	char comm[PROC_EVENT_COMM_MAX];
	char *cmdline; /* arguments joined by spaces, as last seen; NULL if never read */
	struct live_proc *next;
};

struct lifecycle {
	struct event_hub *hub;
	struct routes *routes;
	struct lifecycle_options opts;
	struct proctrace *trace;
	struct proc_scanner *scanner;
	struct event *reconcile_timer;
	uint64_t generation;
	struct live_proc *buckets[LIVE_BUCKETS];
	uint64_t n_live;
	uint64_t reconciled;
	struct proc_text text; /* reused for each event's JSON */
};

static struct live_proc **live_slot(struct lifecycle *l, pid_t pid)
{
	struct live_proc **p = &l->buckets[(unsigned)pid & (LIVE_BUCKETS - 1)];

	while (*p && (*p)->pid != pid)
		p = &(*p)->next;
	return p;
}

static struct live_proc *live_get(struct lifecycle *l, pid_t pid)
{
	return *live_slot(l, pid);
}

static struct live_proc *live_add(struct lifecycle *l, pid_t pid)
{
	struct live_proc **p = live_slot(l, pid);

	if (*p)
		return *p;
	*p = calloc(1, sizeof(**p));
	if (!*p)
		return NULL;
	(*p)->pid = pid;
	l->n_live++;
	return *p;
}

static void live_remove(struct lifecycle *l, pid_t pid)
{
	struct live_proc **p = live_slot(l, pid), *e = *p;

	if (!e)
		return;
	*p = e->next;
	free(e->cmdline);
	free(e);
	l->n_live--;
}

/* Joins NUL-separated arguments with spaces into a new string (NULL on OOM or if empty). */
static char *join_args(const char *args, size_t len)
{
	char *s;

	while (len > 0 && args[len - 1] == '\0')
		len--;
	if (len == 0)
		return NULL;
	s = malloc(len + 1);
	if (!s)
		return NULL;
	for (size_t i = 0; i < len; i++)
		s[i] = args[i] ? args[i] : ' ';
	s[len] = '\0';
	return s;
}

/*
 * Reads a process's command line now. A process that lived a millisecond is usually gone by the
 * time its exec event is handled: then NULL, and the caller keeps what it had.
 */
static char *read_cmdline(pid_t pid, size_t max)
{
	_cleanup_free_ char *buf = malloc(max);
	_cleanup_close_ int fd = -EBADF;
	char path[64];
	size_t len = 0;

	if (!buf)
		return NULL;
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return NULL;
	while (len < max) {
		ssize_t n = read(fd, buf + len, max - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	return join_args(buf, len);
}

static void replace_cmdline(struct live_proc *p, char *cmdline)
{
	if (!cmdline)
		return;
	free(p->cmdline);
	p->cmdline = cmdline;
}

static void format_time(uint64_t ns, char *buf, size_t size)
{
	time_t sec = (time_t)(ns / 1000000000);
	struct tm tm;

	gmtime_r(&sec, &tm);
	snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ns % 1000000000 / 1000));
}

/* Appends ,"name": and a value to the event's JSON. */
static int add_key(struct proc_text *t, const char *name)
{
	int r = proc_text_append(t, ",", 1);

	if (r >= 0)
		r = proc_text_string(t, name, strlen(name));
	if (r >= 0)
		r = proc_text_append(t, ":", 1);
	return r;
}

static int add_int(struct proc_text *t, const char *name, int64_t v)
{
	int r = add_key(t, name);

	return r < 0 ? r : proc_text_i64(t, v);
}

static int add_str(struct proc_text *t, const char *name, const char *s)
{
	int r = add_key(t, name);

	return r < 0 ? r : proc_text_string(t, s, strlen(s));
}

/* The JSON object of one event (compact, one line), into l->text. */
static int event_json(struct lifecycle *l, const struct proc_event *ev, uint64_t start_ticks,
		      const char *cmdline)
{
	struct proc_text *t = &l->text;
	char buf[128];
	int r;

	t->len = 0;
	r = proc_text_append(t, "{\"type\":", 8);
	if (r >= 0)
		r = proc_text_string(t, proc_event_type_to_string(ev->type),
				     strlen(proc_event_type_to_string(ev->type)));
	format_time(ev->time_ns, buf, sizeof(buf));
	if (r >= 0)
		r = add_str(t, "time", buf);
	if (r >= 0)
		r = add_int(t, "pid", ev->pid);
	if (r >= 0)
		r = add_int(t, "tid", ev->tid);
	if (r >= 0 && ev->has_ppid)
		r = add_int(t, "ppid", ev->ppid);
	if (r >= 0 && ev->has_ids)
		r = add_int(t, "uid", ev->uid);
	if (r >= 0 && ev->has_ids)
		r = add_int(t, "gid", ev->gid);
	if (r >= 0 && ev->has_comm)
		r = add_str(t, "comm", ev->comm);
	if (r >= 0 && start_ticks) {
		snprintf(buf, sizeof(buf), "%s:%llu:%d", proc_scanner_boot_id(l->scanner),
			 (unsigned long long)start_ticks, (int)ev->pid);
		r = add_str(t, "key", buf);
	}
	if (r >= 0 && ev->type == PROC_EVENT_EXEC && ev->has_filename)
		r = add_str(t, "filename", ev->filename);
	if (r >= 0 && cmdline)
		r = add_str(t, "cmdline", cmdline);
	if (r >= 0 && ev->has_cgroup_id) {
		/* A 64-bit ID may pass 2^53: a string, as every such value in the API. */
		snprintf(buf, sizeof(buf), "%llu", (unsigned long long)ev->cgroup_id);
		r = add_str(t, "cgroup_id", buf);
	}
	if (r >= 0 && ev->type == PROC_EVENT_EXIT && ev->has_exit_status) {
		if (ev->exit_signal) {
			r = add_int(t, "signal", ev->exit_signal);
			if (r >= 0 && ev->core_dumped)
				r = proc_text_append(t, ",\"core_dumped\":true", 19);
		} else {
			r = add_int(t, "exit_code", ev->exit_code);
		}
	}
	if (r >= 0)
		r = proc_text_append(t, "}", 1);
	return r;
}

/*
 * The wall-clock time of a start given in clock ticks since boot. btime in /proc/stat is rounded
 * to the second; the offset between CLOCK_REALTIME and CLOCK_BOOTTIME now is exact, so the result
 * is as precise as the ticks (10 ms).
 */
static uint64_t ticks_to_realtime(uint64_t ticks)
{
	struct timespec rt, bt;
	uint64_t now_rt, now_bt;

	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_BOOTTIME, &bt);
	now_rt = (uint64_t)rt.tv_sec * 1000000000ull + (uint64_t)rt.tv_nsec;
	now_bt = (uint64_t)bt.tv_sec * 1000000000ull + (uint64_t)bt.tv_nsec;
	return now_rt - now_bt + ticks * (1000000000ull / USER_HZ);
}

static void on_event(const struct proc_event *ev, void *userdata)
{
	struct lifecycle *l = userdata;
	struct live_proc *p = NULL;
	uint64_t start_ticks = ev->has_start_ticks ? ev->start_ticks : 0;
	const char *cmdline = NULL;
	char comm[PROC_EVENT_COMM_MAX] = "";

	if (ev->has_comm)
		snprintf(comm, sizeof(comm), "%s", ev->comm);

	switch (ev->type) {
	case PROC_EVENT_FORK: {
		struct live_proc *parent = ev->has_ppid ? live_get(l, ev->ppid) : NULL;

		p = live_add(l, ev->pid);
		if (!p)
			break;
		p->start_ticks = start_ticks;
		p->start_ns = ev->time_ns;
		p->ppid = ev->ppid;
		p->uid = ev->uid;
		snprintf(p->comm, sizeof(p->comm), "%s", comm[0] || !parent ? comm : parent->comm);
		/* A forked child runs its parent's program with its parent's arguments. */
		replace_cmdline(p, parent && parent->cmdline ?
					   strdup(parent->cmdline) :
					   read_cmdline(ev->pid, l->opts.cmdline_max));
		cmdline = p->cmdline;
		break;
	}
	case PROC_EVENT_EXEC:
		p = live_add(l, ev->pid);
		if (!p)
			break;
		if (start_ticks)
			p->start_ticks = start_ticks;
		if (ev->has_ids)
			p->uid = ev->uid;
		if (comm[0])
			snprintf(p->comm, sizeof(p->comm), "%s", comm);
		/* The kernel's copy of the arguments (BPF) is there even for a process that is
		 * already gone; else read them now, else name the program: never keep the
		 * command line of the program it replaced. */
		{
			char *c = ev->has_args ? join_args(ev->args, ev->args_len) : NULL;

			if (!c)
				c = read_cmdline(ev->pid, l->opts.cmdline_max);
			if (!c && ev->has_filename)
				c = strdup(ev->filename);
			free(p->cmdline);
			p->cmdline = c;
		}
		cmdline = p->cmdline;
		break;
	case PROC_EVENT_EXIT: {
		struct event_exit x;

		p = live_get(l, ev->pid);
		if (p && !start_ticks)
			start_ticks = p->start_ticks;
		cmdline = p ? p->cmdline : NULL;
		x = (struct event_exit){
			.pid = ev->pid,
			.ppid = ev->has_ppid ? ev->ppid :
				p	     ? p->ppid :
					       0,
			.uid = ev->has_ids ? ev->uid :
			       p	   ? p->uid :
					     0,
			.comm = comm[0] ? comm :
				p	? p->comm :
					  "",
			.cmdline = cmdline,
			.exit_code = ev->exit_code,
			.signal = ev->exit_signal,
			/* The fork event's time is exact; ticks are 10 ms apart. */
			.start_ns = p && p->start_ns ? p->start_ns :
				    start_ticks	     ? ticks_to_realtime(start_ticks) :
						       0,
			.end_ns = ev->time_ns,
		};
		{
			char key[128];

			if (start_ticks) {
				snprintf(key, sizeof(key), "%s:%llu:%d",
					 proc_scanner_boot_id(l->scanner),
					 (unsigned long long)start_ticks, (int)ev->pid);
				x.key = key;
			}
			if (ev->has_exit_status && event_hub_record_exit(l->hub, &x) < 0)
				log_debug("Out of memory recording an exit, ignoring");
			if (ev->has_exit_status)
				routes_note_exit(l->routes, &x);
		}
		break;
	}
	default:
		return;
	}

	if (event_json(l, ev, start_ticks, cmdline) >= 0) {
		struct event_item it = {
			.type = ev->type == PROC_EVENT_FORK ? EVENT_FORK :
				ev->type == PROC_EVENT_EXEC ? EVENT_EXEC :
							      EVENT_EXIT,
			.comm = comm[0] ? comm :
				p	? p->comm :
					  NULL,
			.uid = ev->has_ids ? ev->uid :
			       p	   ? p->uid :
					     (uid_t)-1,
			.cgroup_id = ev->cgroup_id,
			.json = l->text.data,
			.json_len = l->text.len,
		};

		event_hub_publish(l->hub, &it);
	}
	if (ev->type == PROC_EVENT_EXIT)
		live_remove(l, ev->pid);
	/* The table changed: /v1/proc must show it at once. */
	routes_note_process(l->routes, ev->pid, ev->type == PROC_EVENT_EXIT);
}

/* Brings the table in line with /proc: adds what runs, drops what does not. */
static int reconcile(struct lifecycle *l)
{
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *snap = NULL;
	uint64_t fields = PROC_FIELD_BIT(PROC_FIELD_PID) | PROC_FIELD_BIT(PROC_FIELD_PPID) |
			  PROC_FIELD_BIT(PROC_FIELD_UID) | PROC_FIELD_BIT(PROC_FIELD_COMM) |
			  PROC_FIELD_BIT(PROC_FIELD_CMDLINE);
	int r;

	r = proc_scanner_scan(l->scanner, fields, false, &snap);
	if (r < 0)
		return r;
	l->generation++;
	for (size_t i = 0; i < snap->count; i++) {
		const struct proc_entry *e = &snap->entries[i];
		struct live_proc *p = live_get(l, e->pid);

		if (p && p->start_ticks && p->start_ticks != e->start_ticks)
			live_remove(l, e->pid); /* an exit we never heard of, and a reused PID */
		if (!p || p->start_ticks != e->start_ticks) {
			p = live_add(l, e->pid);
			if (!p)
				return -ENOMEM;
			l->reconciled++;
		}
		p->start_ticks = e->start_ticks;
		p->ppid = e->ppid;
		p->uid = e->uid;
		snprintf(p->comm, sizeof(p->comm), "%s", e->comm ? e->comm : "");
		replace_cmdline(p, join_args(e->cmdline, e->cmdline_len));
		p->generation = l->generation;
	}
	for (size_t b = 0; b < LIVE_BUCKETS; b++)
		for (struct live_proc *p = l->buckets[b], *next; p; p = next) {
			next = p->next;
			if (p->generation != l->generation) {
				l->reconciled++;
				live_remove(l, p->pid);
			}
		}
	return 0;
}

static void on_reconcile(evutil_socket_t fd, short events, void *userdata)
{
	struct lifecycle *l = userdata;
	int r = reconcile(l);

	if (r < 0)
		log_warn_errno(r, "Reconciling the process table with /proc failed: %m, ignoring");
}

int lifecycle_new(struct event_base *base, const struct lifecycle_options *opts,
		  struct event_hub *hub, struct routes *routes, struct lifecycle **ret)
{
	struct proctrace_options topts;
	struct lifecycle *l = calloc(1, sizeof(*l));
	struct timeval every = { .tv_sec = opts->reconcile_interval_s };
	const char *reason;
	int r;

	if (!l)
		return -ENOMEM;
	l->hub = hub;
	l->routes = routes;
	l->opts = *opts;
	r = proc_scanner_new("/proc", &l->scanner);
	if (r < 0)
		goto fail;
	proc_scanner_set_cmdline_max(l->scanner, opts->cmdline_max);
	r = reconcile(l);
	if (r < 0)
		goto fail;

	proctrace_options_init(&topts);
	topts.no_bpf = opts->no_bpf;
	r = proctrace_new(base, &topts, on_event, l, &l->trace);
	if (r < 0)
		goto fail;
	reason = proctrace_reason(l->trace);
	if (*reason)
		log_notice("Process events from %s (%s)",
			   proctrace_source_to_string(proctrace_source(l->trace)), reason);
	else
		log_info("Process events from %s",
			 proctrace_source_to_string(proctrace_source(l->trace)));

	l->reconcile_timer = event_new(base, -1, EV_PERSIST, on_reconcile, l);
	if (!l->reconcile_timer || event_add(l->reconcile_timer, &every) < 0) {
		r = -ENOMEM;
		goto fail;
	}
	*ret = l;
	return 0;
fail:
	lifecycle_free(l);
	return r;
}

struct lifecycle *lifecycle_free(struct lifecycle *l)
{
	if (!l)
		return NULL;
	if (l->reconcile_timer)
		event_free(l->reconcile_timer);
	proctrace_free(l->trace);
	proc_scanner_free(l->scanner);
	for (size_t b = 0; b < LIVE_BUCKETS; b++)
		while (l->buckets[b])
			live_remove(l, l->buckets[b]->pid);
	free(l->text.data);
	free(l);
	return NULL;
}

void lifecycle_drain(struct lifecycle *l)
{
	proctrace_drain(l->trace);
}

void lifecycle_stats(const struct lifecycle *l, struct lifecycle_stats *ret)
{
	struct proctrace_stats st;

	proctrace_stats(l->trace, &st);
	*ret = (struct lifecycle_stats){
		.source = proctrace_source_to_string(proctrace_source(l->trace)),
		.received = st.received,
		.lost = st.lost,
		.processes = l->n_live,
		.reconciled = l->reconciled,
	};
}
