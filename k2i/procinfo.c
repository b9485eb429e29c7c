/* SPDX-License-Identifier: MIT */
#include "k2i/procinfo.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"

/* From include/linux/sched.h; stable ABI since it is visible in /proc/<pid>/stat. */
#define PF_KTHREAD 0x00200000u
#define PF_FORKNOEXEC 0x00000040u
#ifndef PROC_SUPER_MAGIC
#define PROC_SUPER_MAGIC 0x9fa0
#endif

#define CMDLINE_MAX_DEFAULT 4096
#define CMDLINE_MAX_LIMIT (16u * 1024 * 1024)
#define CPU_MIN_INTERVAL_DEFAULT_NS UINT64_C(1000000000)
#define CACHE_TTL_DEFAULT_NS (UINT64_C(10) * 1000000000)
/* Caps on files whose size the kernel bounds anyway; they only guard against crafted trees. */
#define SMALL_FILE_MAX (1024u * 1024)
#define ROOT_FILE_MAX (16u * 1024 * 1024)
#define LINK_MAX_BYTES (1024u * 1024)
#define BOOT_ID_MAX 64
/* User names are looked up again after this long, so renamed or new users show up. */
#define USER_CACHE_TTL_NS (UINT64_C(60) * 1000000000)
#define ARENA_CHUNK (64u * 1024)
#define DENTS_BUF (64u * 1024)
#define NSEC_PER_SEC UINT64_C(1000000000)

static const char *const proc_field_names[_PROC_FIELD_MAX] = {
	[PROC_FIELD_KEY] = "key",
	[PROC_FIELD_PID] = "pid",
	[PROC_FIELD_TID] = "tid",
	[PROC_FIELD_PPID] = "ppid",
	[PROC_FIELD_UID] = "uid",
	[PROC_FIELD_USER] = "user",
	[PROC_FIELD_GID] = "gid",
	[PROC_FIELD_STATE] = "state",
	[PROC_FIELD_COMM] = "comm",
	[PROC_FIELD_CMDLINE] = "cmdline",
	[PROC_FIELD_EXE] = "exe",
	[PROC_FIELD_THREADS] = "threads",
	[PROC_FIELD_NICE] = "nice",
	[PROC_FIELD_CPU_PERCENT] = "cpu_percent",
	[PROC_FIELD_CPU_TIME_MS] = "cpu_time_ms",
	[PROC_FIELD_RSS_KB] = "rss_kb",
	[PROC_FIELD_VSZ_KB] = "vsz_kb",
	[PROC_FIELD_MEM_PERCENT] = "mem_percent",
	[PROC_FIELD_TTY] = "tty",
	[PROC_FIELD_START_TIME] = "start_time",
	[PROC_FIELD_CGROUP] = "cgroup",
	[PROC_FIELD_CONTAINER_ID] = "container_id",
	[PROC_FIELD_NS] = "ns",
	[PROC_FIELD_INSTANCE] = "instance",
};

static const char *const proc_ns_names[_PROC_NS_MAX] = {
	[PROC_NS_CGROUP] = "cgroup", [PROC_NS_IPC] = "ipc", [PROC_NS_MNT] = "mnt",
	[PROC_NS_NET] = "net",	     [PROC_NS_PID] = "pid", [PROC_NS_TIME] = "time",
	[PROC_NS_USER] = "user",     [PROC_NS_UTS] = "uts",
};

/* The same names with the "ns/" directory, so each is one readlinkat() off the pid dirfd. */
static const char *const proc_ns_paths[_PROC_NS_MAX] = {
	[PROC_NS_CGROUP] = "ns/cgroup", [PROC_NS_IPC] = "ns/ipc", [PROC_NS_MNT] = "ns/mnt",
	[PROC_NS_NET] = "ns/net",	[PROC_NS_PID] = "ns/pid", [PROC_NS_TIME] = "ns/time",
	[PROC_NS_USER] = "ns/user",	[PROC_NS_UTS] = "ns/uts",
};

int proc_field_from_string(const char *name)
{
	if (!name)
		return -EINVAL;
	for (int f = 0; f < _PROC_FIELD_MAX; f++)
		if (strcmp(proc_field_names[f], name) == 0)
			return f;
	return -EINVAL;
}

const char *proc_field_to_string(int f)
{
	if (f < 0 || f >= _PROC_FIELD_MAX)
		return NULL;
	return proc_field_names[f];
}

/*
 * Snapshots.
 *
 * Strings live in a chunked arena: chunks are never moved, so a pointer handed out stays valid
 * for the arena's lifetime, and a scan of thousands of processes costs a handful of mallocs.
 * The entries array is grown with realloc and only referenced by index until the scan ends.
 *
 * An arena is reference-counted apart from its snapshot so that a patched snapshot (see
 * proc_scanner_patch()) can point its copied entries at the strings of the scan it derives
 * from instead of copying them: it pins that scan's strings, not its entries array.
 */

struct arena_chunk {
	struct arena_chunk *next;
	size_t size;
	size_t used;
	char data[];
};

struct arena {
	unsigned refcount; /* atomic: snapshots sharing it may be dropped by different threads */
	struct arena_chunk *chunks;
};

struct snapshot_impl {
	struct proc_snapshot pub; /* first, so the public pointer converts back */
	unsigned refcount;
	struct proc_entry *entries;
	size_t capacity;
	struct arena *arena; /* owned reference; strings written for this snapshot */
	/*
	 * Of a patched snapshot: a reference on the arena of the full scan it derives from, and
	 * a bitmap of the entries whose strings are in @arena (bit set) rather than in @shared.
	 * NULL for a scan, whose strings are all in @arena. Only full scans' arenas are ever
	 * shared, so patches of patches never chain: each pins at most one other arena.
	 */
	struct arena *shared;
	uint64_t *own;
	uint64_t seq; /* unique per snapshot of a scanner, see user_name() */
	/* What proc_entry_to_json() needs besides the entries. */
	char boot_id[BOOT_ID_MAX + 1];
	uint64_t btime;
	uint64_t clk_tck;
};

static struct snapshot_impl *snapshot_impl(const struct proc_snapshot *snap)
{
	return (struct snapshot_impl *)snap;
}

static struct arena *arena_ref(struct arena *a)
{
	if (a)
		__atomic_add_fetch(&a->refcount, 1, __ATOMIC_RELAXED);
	return a;
}

static struct arena *arena_unref(struct arena *a)
{
	if (!a || __atomic_sub_fetch(&a->refcount, 1, __ATOMIC_ACQ_REL) != 0)
		return NULL;
	while (a->chunks) {
		struct arena_chunk *c = a->chunks;

		a->chunks = c->next;
		free(c);
	}
	free(a);
	return NULL;
}

static char *arena_alloc(struct snapshot_impl *si, size_t n)
{
	struct arena_chunk *c = si->arena->chunks;
	char *p;

	if (!c || c->size - c->used < n) {
		size_t size = MAX((size_t)ARENA_CHUNK, n);

		c = malloc(sizeof(*c) + size);
		if (!c)
			return NULL;
		c->size = size;
		c->used = 0;
		c->next = si->arena->chunks;
		si->arena->chunks = c;
	}
	p = c->data + c->used;
	c->used += n;
	return p;
}

/* Copies @n bytes of @s and a NUL into the arena. */
static const char *arena_strndup(struct snapshot_impl *si, const char *s, size_t n)
{
	char *p = arena_alloc(si, n + 1);

	if (!p)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static struct snapshot_impl *snapshot_new(size_t capacity_hint)
{
	struct snapshot_impl *si = calloc(1, sizeof(*si));

	if (!si)
		return NULL;
	si->refcount = 1;
	si->capacity = MAX(capacity_hint, (size_t)16);
	si->entries = calloc(si->capacity, sizeof(*si->entries));
	si->arena = calloc(1, sizeof(*si->arena));
	if (!si->entries || !si->arena) {
		free(si->entries);
		free(si->arena);
		free(si);
		return NULL;
	}
	si->arena->refcount = 1;
	return si;
}

static void snapshot_free(struct snapshot_impl *si)
{
	arena_unref(si->arena);
	arena_unref(si->shared);
	free(si->own);
	free(si->entries);
	free(si);
}

DEFINE_CLEANUP_FUNC(struct snapshot_impl, snapshot_free);

struct proc_snapshot *proc_snapshot_ref(struct proc_snapshot *snap)
{
	if (snap)
		__atomic_add_fetch(&snapshot_impl(snap)->refcount, 1, __ATOMIC_RELAXED);
	return snap;
}

struct proc_snapshot *proc_snapshot_unref(struct proc_snapshot *snap)
{
	if (snap && __atomic_sub_fetch(&snapshot_impl(snap)->refcount, 1, __ATOMIC_ACQ_REL) == 0)
		snapshot_free(snapshot_impl(snap));
	return NULL;
}

size_t proc_snapshot_count(const struct proc_snapshot *snap)
{
	return snap->count;
}

/* Returns a zeroed slot for the next entry; it only counts once snapshot_commit() is called. */
static struct proc_entry *snapshot_next_entry(struct snapshot_impl *si)
{
	if (si->pub.count == si->capacity) {
		size_t ncap = si->capacity * 2;
		struct proc_entry *n = reallocarray(si->entries, ncap, sizeof(*n));

		if (!n)
			return NULL;
		si->entries = n;
		si->capacity = ncap;
	}
	memset(&si->entries[si->pub.count], 0, sizeof(si->entries[0]));
	return &si->entries[si->pub.count];
}

/*
 * The scanner.
 */

/* uid -> user name, open addressing. */
struct user_slot {
	bool used;
	uid_t uid;
	char *name; /* malloc'ed; the decimal uid if the user has no name */
	uint64_t snap_seq; /* snapshot whose arena holds snap_name */
	const char *snap_name;
};

/*
 * What is cached of a process between scans (see proc_scanner_set_cache_ttl()): one malloc'ed
 * block holding the strings after the struct.
 */
struct task_cache {
	uint64_t fingerprint; /* of what exec changes in stat, see stat_fingerprint() */
	uint64_t expires_ns; /* CLOCK_MONOTONIC */
	uint64_t fields; /* PROC_FIELD_BIT()s held, of CACHED_FIELDS */
	uint64_t ns[_PROC_NS_MAX];
	bool cmdline_truncated;
	bool has_exe, has_cgroup, has_container_id;
	size_t cmdline_len, exe_len, cgroup_len; /* container IDs are 64 bytes */
	char data[]; /* cmdline, exe, cgroup, container ID */
};

#define CACHED_FIELDS                                                                  \
	(PROC_FIELD_BIT(PROC_FIELD_CMDLINE) | PROC_FIELD_BIT(PROC_FIELD_EXE) |         \
	 PROC_FIELD_BIT(PROC_FIELD_CGROUP) | PROC_FIELD_BIT(PROC_FIELD_CONTAINER_ID) | \
	 PROC_FIELD_BIT(PROC_FIELD_NS))

/*
 * CPU baselines of one process or thread, keyed by (id, start ticks, thread): the start time
 * tells a reused PID apart, and a thread's own ticks differ from its process's total even when
 * tid == pid.
 */
struct cpu_slot {
	bool used;
	bool thread;
	bool has_old;
	pid_t id;
	uint32_t gen; /* last scan that saw it */
	uint64_t start_ticks;
	uint64_t old_ticks, old_ns; /* the older baseline, if has_old */
	uint64_t new_ticks, new_ns; /* the newest baseline */
	struct task_cache *cache; /* owned; NULL if nothing is cached */
};

struct proc_scanner {
	int root_fd;
	/* The root is a real procfs: the owner of /proc/<pid> is the euid/egid (see read_ids()). */
	bool is_procfs;
	char boot_id[BOOT_ID_MAX + 1];
	uint64_t btime;
	uint64_t clk_tck;
	uint64_t page_size;
	uint64_t mem_total_kb;
	size_t cmdline_max;
	uint64_t cpu_min_interval_ns;
	uint64_t cache_ttl_ns;
	proc_clock_cb_t clock;
	void *clock_userdata;

	/* Reused buffers: file contents, and getdents64() of the root and of a task dir. */
	char *buf;
	size_t buf_size;
	char *dents;
	char *task_dents;

	struct user_slot *users;
	size_t users_cap; /* power of two */
	size_t users_n;
	uint64_t users_flushed_ns;

	struct cpu_slot *cpu;
	size_t cpu_cap; /* power of two */
	size_t cpu_n[2]; /* used slots, of processes [0] and of threads [1] */
	uint32_t gen;
	uint64_t snap_seq;
	size_t last_count;
};

static int default_clock(clockid_t clock, uint64_t *ret_ns, void *userdata)
{
	struct timespec ts;

	if (clock_gettime(clock, &ts) < 0)
		return negative_errno();
	*ret_ns = (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
	return 0;
}

static int scanner_now(struct proc_scanner *s, clockid_t clock, uint64_t *ret_ns)
{
	return s->clock(clock, ret_ns, s->clock_userdata);
}

static int buf_reserve(struct proc_scanner *s, size_t size)
{
	char *n;

	if (size <= s->buf_size)
		return 0;
	size = MAX(size, s->buf_size * 2);
	n = realloc(s->buf, size);
	if (!n)
		return -ENOMEM;
	s->buf = n;
	s->buf_size = size;
	return 0;
}

/*
 * Reads the file @name under @dirfd into s->buf, NUL-terminated, up to @max bytes; with more,
 * it keeps @max bytes and sets *ret_truncated (if not NULL; otherwise that is -EFBIG).
 *
 * A short read is taken as the end of the file, which saves the read() returning 0 on every
 * file: procfs files that are one record (stat, status, cmdline, cgroup, meminfo) return their
 * whole content to a read() whose buffer is large enough, and regular files (test trees) only
 * return less than asked at their end.
 */
static int read_file(struct proc_scanner *s, int dirfd, const char *name, size_t max,
		     size_t *ret_len, bool *ret_truncated)
{
	_cleanup_close_ int fd = -EBADF;
	size_t len = 0;
	int r;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return negative_errno();
	for (;;) {
		size_t want;
		ssize_t n;

		if (s->buf_size - len < 2) {
			r = buf_reserve(s, s->buf_size * 2);
			if (r < 0)
				return r;
		}
		/* Ask for one byte past @max to tell "exactly max" from "more than max". */
		want = MIN(s->buf_size - len - 1, max + 1 - len);
		n = read(fd, s->buf + len, want);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		len += (size_t)n;
		if (len > max) {
			if (!ret_truncated)
				return -EFBIG;
			*ret_truncated = true;
			len = max;
			break;
		}
		if ((size_t)n < want)
			break;
	}
	s->buf[len] = '\0';
	*ret_len = len;
	return 0;
}

/* Reads the symlink @name under @dirfd into s->buf, NUL-terminated. */
static int read_link(struct proc_scanner *s, int dirfd, const char *name, size_t *ret_len)
{
	for (;;) {
		ssize_t n = readlinkat(dirfd, name, s->buf, s->buf_size);
		int r;

		if (n < 0)
			return negative_errno();
		if ((size_t)n < s->buf_size) {
			s->buf[n] = '\0';
			*ret_len = (size_t)n;
			return 0;
		}
		/* Possibly cut: readlink() does not say, so retry with more room. */
		if (s->buf_size >= LINK_MAX_BYTES)
			return -ENAMETOOLONG;
		r = buf_reserve(s, s->buf_size * 2);
		if (r < 0)
			return r;
	}
}

/*
 * Number parsing over (pointer, length) pieces, as the pure parsers never see NUL-terminated
 * input.
 */

static bool is_blank_or_nl(char c)
{
	return c == ' ' || c == '\t' || c == '\n';
}

/* Yields the next run of non-blank bytes of [*p, end); false at the end. */
static bool next_token(const char **p, const char *end, const char **ret, size_t *ret_len)
{
	const char *q = *p;

	while (q < end && is_blank_or_nl(*q))
		q++;
	if (q >= end)
		return false;
	*ret = q;
	while (q < end && !is_blank_or_nl(*q))
		q++;
	*ret_len = (size_t)(q - *ret);
	*p = q;
	return true;
}

static bool parse_u64n(const char *s, size_t n, uint64_t *ret)
{
	uint64_t v = 0;

	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned)(unsigned char)s[i] - '0';

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*ret = v;
	return true;
}

/* A signed decimal within [min, max]. */
static bool parse_i64n(const char *s, size_t n, int64_t min, int64_t max, int64_t *ret)
{
	bool neg = n > 0 && s[0] == '-';
	uint64_t v;
	int64_t x;

	if (!parse_u64n(s + neg, n - neg, &v))
		return false;
	if (neg) {
		if (v > (uint64_t)INT64_MAX + 1)
			return false;
		x = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
	} else {
		if (v > INT64_MAX)
			return false;
		x = (int64_t)v;
	}
	if (x < min || x > max)
		return false;
	*ret = x;
	return true;
}

/*
 * /proc/<pid>/stat is "pid (comm) state ppid ..." where comm is whatever the process set with
 * prctl(PR_SET_NAME) or exec: it may hold spaces, ')' and newlines, so it ends at the LAST ')'
 * of the line; every field after it is a number (proc(5)).
 */
int proc_parse_stat(const char *buf, size_t len, struct proc_stat *ret)
{
	/* Fields 3 (state) to 24 (rss) of proc(5), after comm. */
	enum {
		F_STATE = 0,
		F_PPID = 1,
		F_TTY = 4,
		F_FLAGS = 6,
		F_UTIME = 11,
		F_STIME = 12,
		F_NICE = 16,
		F_THREADS = 17,
		F_START = 19,
		F_VSIZE = 20,
		F_RSS = 21,
		F_N = 22
	};
	const char *tok[F_N];
	size_t tlen[F_N];
	const char *lp, *rp, *p, *t;
	size_t tl;
	uint64_t u;
	int64_t i;
	struct proc_stat st = {};

	lp = memchr(buf, '(', len);
	rp = memrchr(buf, ')', len);
	if (!lp || !rp || rp < lp)
		return -EBADMSG;

	p = buf;
	if (!next_token(&p, lp, &t, &tl) || !parse_i64n(t, tl, 0, INT_MAX, &i) ||
	    next_token(&p, lp, &t, &tl))
		return -EBADMSG;
	st.pid = (pid_t)i;
	st.comm = lp + 1;
	st.comm_len = (size_t)(rp - lp - 1);

	p = rp + 1;
	for (int k = 0; k < F_N; k++)
		if (!next_token(&p, buf + len, &tok[k], &tlen[k]))
			return -EBADMSG;

	if (tlen[F_STATE] != 1)
		return -EBADMSG;
	st.state = tok[F_STATE][0];
	if (!parse_i64n(tok[F_PPID], tlen[F_PPID], 0, INT_MAX, &i))
		return -EBADMSG;
	st.ppid = (pid_t)i;
	if (!parse_i64n(tok[F_TTY], tlen[F_TTY], INT_MIN, INT_MAX, &i))
		return -EBADMSG;
	st.tty_nr = (int)i;
	if (!parse_u64n(tok[F_FLAGS], tlen[F_FLAGS], &u) || u > UINT_MAX)
		return -EBADMSG;
	st.flags = (unsigned)u;
	if (!parse_u64n(tok[F_UTIME], tlen[F_UTIME], &st.utime) ||
	    !parse_u64n(tok[F_STIME], tlen[F_STIME], &st.stime))
		return -EBADMSG;
	if (!parse_i64n(tok[F_NICE], tlen[F_NICE], INT_MIN, INT_MAX, &i))
		return -EBADMSG;
	st.nice = (int)i;
	if (!parse_i64n(tok[F_THREADS], tlen[F_THREADS], 0, UINT32_MAX, &i))
		return -EBADMSG;
	st.num_threads = (uint32_t)i;
	if (!parse_u64n(tok[F_START], tlen[F_START], &st.start_ticks) ||
	    !parse_u64n(tok[F_VSIZE], tlen[F_VSIZE], &st.vsize))
		return -EBADMSG;
	/* rss is a signed long in the kernel's format; it is never negative in practice. */
	if (!parse_i64n(tok[F_RSS], tlen[F_RSS], INT64_MIN, INT64_MAX, &i))
		return -EBADMSG;
	st.rss = i < 0 ? 0 : (uint64_t)i;

	/* Optional fields, numbered as in proc(5); older kernels stop earlier. */
	for (int f = 25; f <= 49 && next_token(&p, buf + len, &t, &tl); f++) {
		uint64_t *dst = f == 26 ? &st.start_code :
				f == 27 ? &st.end_code :
				f == 28 ? &st.start_stack :
				f == 48 ? &st.arg_start :
				f == 49 ? &st.arg_end :
					  NULL;

		if (dst && !parse_u64n(t, tl, dst))
			*dst = 0;
	}

	*ret = st;
	return 0;
}

/* Returns the bytes after "@key:" if the line [line, end) starts with it, else NULL. */
static const char *line_value(const char *line, const char *end, const char *key)
{
	size_t n = strlen(key);

	if ((size_t)(end - line) <= n || memcmp(line, key, n) != 0 || line[n] != ':')
		return NULL;
	return line + n + 1;
}

/* Parses the second number of a "Uid:" or "Gid:" value (real, effective, saved, fs). */
static bool parse_second_id(const char *p, const char *end, uint32_t *ret)
{
	const char *t;
	size_t tl;
	uint64_t v;

	if (!next_token(&p, end, &t, &tl) || !parse_u64n(t, tl, &v) || v > UINT32_MAX)
		return false;
	if (!next_token(&p, end, &t, &tl) || !parse_u64n(t, tl, &v) || v > UINT32_MAX)
		return false;
	*ret = (uint32_t)v;
	return true;
}

int proc_parse_status(const char *buf, size_t len, struct proc_status *ret)
{
	struct proc_status st = {};
	const char *p = buf, *end = buf + len;

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *v;

		if (!eol)
			eol = end;
		if ((v = line_value(p, eol, "Uid"))) {
			uint32_t id;

			if (!parse_second_id(v, eol, &id))
				return -EBADMSG;
			st.uid = id;
			st.has_uid = true;
		} else if ((v = line_value(p, eol, "Gid"))) {
			uint32_t id;

			if (!parse_second_id(v, eol, &id))
				return -EBADMSG;
			st.gid = id;
			st.has_gid = true;
		} else if ((v = line_value(p, eol, "Tgid"))) {
			const char *t;
			size_t tl;
			int64_t i;

			if (!next_token(&v, eol, &t, &tl) || !parse_i64n(t, tl, 0, INT_MAX, &i))
				return -EBADMSG;
			st.tgid = (pid_t)i;
			st.has_tgid = true;
		}
		p = eol + 1;
	}
	*ret = st;
	return 0;
}

/* True if the comma-separated list [p, end) has the element @what. */
static bool list_has(const char *p, const char *end, const char *what)
{
	size_t n = strlen(what);

	while (p < end) {
		const char *c = memchr(p, ',', (size_t)(end - p));

		if (!c)
			c = end;
		if ((size_t)(c - p) == n && memcmp(p, what, n) == 0)
			return true;
		p = c + 1;
	}
	return false;
}

int proc_parse_cgroup(const char *buf, size_t len, const char **ret, size_t *ret_len)
{
	const char *first = NULL, *systemd = NULL, *p = buf, *end = buf + len;
	size_t first_len = 0, systemd_len = 0;

	/* Each line is "hierarchy-ID:controller-list:path"; the path may itself hold ':'. */
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *c1, *c2;

		if (!eol)
			eol = end;
		c1 = memchr(p, ':', (size_t)(eol - p));
		c2 = c1 ? memchr(c1 + 1, ':', (size_t)(eol - c1 - 1)) : NULL;
		if (c2 && c1 > p) {
			const char *path = c2 + 1;
			size_t plen = (size_t)(eol - path);

			if (c1 - p == 1 && p[0] == '0' && c2 == c1 + 1) {
				*ret = path;
				*ret_len = plen;
				return 0;
			}
			if (!systemd && list_has(c1 + 1, c2, "name=systemd")) {
				systemd = path;
				systemd_len = plen;
			}
			if (!first) {
				first = path;
				first_len = plen;
			}
		}
		p = eol + 1;
	}
	if (systemd) {
		*ret = systemd;
		*ret_len = systemd_len;
		return 0;
	}
	if (first) {
		*ret = first;
		*ret_len = first_len;
		return 0;
	}
	return -ENODATA;
}

static bool is_hex64(const char *p, size_t n)
{
	if (n != 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
			return false;
	return true;
}

/* Looks for the ID in one path component [p, p + n). */
static const char *component_container_id(const char *p, size_t n)
{
	static const char *const prefixes[] = { "docker-", "cri-containerd-", "crio-", "libpod-" };

	if (is_hex64(p, n))
		return p;
	/* systemd cgroup driver: "<runtime>-<id>.scope"; cgroupfs podman: "libpod-<id>". */
	if (n > 6 && memcmp(p + n - 6, ".scope", 6) == 0)
		n -= 6;
	for (size_t i = 0; i < ELEMENTSOF(prefixes); i++) {
		size_t k = strlen(prefixes[i]);

		if (n > k && memcmp(p, prefixes[i], k) == 0 && is_hex64(p + k, n - k))
			return p + k;
	}
	return NULL;
}

int proc_container_id(const char *path, size_t len, const char **ret)
{
	const char *end = path + len;

	/* Innermost first: docker-in-docker nests /docker/<a>/docker/<b>, the process is in <b>. */
	while (end > path) {
		const char *slash = memrchr(path, '/', (size_t)(end - path));
		const char *start = slash ? slash + 1 : path;
		const char *id = component_container_id(start, (size_t)(end - start));

		if (id) {
			*ret = id;
			return 0;
		}
		if (!slash)
			break;
		end = slash;
	}
	return -ENOENT;
}

/* Finds "@key:  <number>" in meminfo-style text. */
static bool meminfo_get(const char *buf, size_t len, const char *key, uint64_t *ret)
{
	const char *p = buf, *end = buf + len;

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *v, *t;
		size_t tl;

		if (!eol)
			eol = end;
		v = line_value(p, eol, key);
		if (v)
			return next_token(&v, eol, &t, &tl) && parse_u64n(t, tl, ret);
		p = eol + 1;
	}
	return false;
}

static int read_mem_total(struct proc_scanner *s, uint64_t *ret)
{
	size_t len;
	int r;

	r = read_file(s, s->root_fd, "meminfo", SMALL_FILE_MAX, &len, NULL);
	if (r < 0)
		return r;
	if (!meminfo_get(s->buf, len, "MemTotal", ret))
		return -EBADMSG;
	return 0;
}

static int read_btime(struct proc_scanner *s)
{
	const char *p, *end;
	size_t len;
	int r;

	r = read_file(s, s->root_fd, "stat", ROOT_FILE_MAX, &len, NULL);
	if (r < 0)
		return r;
	for (p = s->buf, end = s->buf + len; p < end;) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *t;
		size_t tl;

		if (!eol)
			eol = end;
		if ((size_t)(eol - p) > 6 && memcmp(p, "btime ", 6) == 0) {
			p += 6;
			if (!next_token(&p, eol, &t, &tl) || !parse_u64n(t, tl, &s->btime))
				return -EBADMSG;
			return 0;
		}
		p = eol + 1;
	}
	return -EBADMSG;
}

static int read_boot_id(struct proc_scanner *s)
{
	size_t len;
	int r;

	r = read_file(s, s->root_fd, "sys/kernel/random/boot_id", BOOT_ID_MAX + 1, &len, NULL);
	if (r < 0)
		return r == -EFBIG ? -EBADMSG : r;
	while (len > 0 && is_blank_or_nl(s->buf[len - 1]))
		len--;
	/* A UUID; keys embed it, so keep it to characters that need no escaping. */
	if (len == 0 || len > BOOT_ID_MAX)
		return -EBADMSG;
	for (size_t i = 0; i < len; i++) {
		char c = s->buf[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
		      c == '-'))
			return -EBADMSG;
	}
	memcpy(s->boot_id, s->buf, len);
	s->boot_id[len] = '\0';
	return 0;
}

int proc_scanner_new(const char *proc_root, struct proc_scanner **ret)
{
	struct proc_scanner *s;
	struct statfs sfs;
	long v;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->root_fd = -EBADF;
	s->clock = default_clock;
	s->cmdline_max = CMDLINE_MAX_DEFAULT;
	s->cpu_min_interval_ns = CPU_MIN_INTERVAL_DEFAULT_NS;
	s->cache_ttl_ns = CACHE_TTL_DEFAULT_NS;
	v = sysconf(_SC_CLK_TCK);
	s->clk_tck = v > 0 ? (uint64_t)v : 100;
	v = sysconf(_SC_PAGESIZE);
	s->page_size = v > 0 ? (uint64_t)v : 4096;

	s->buf_size = 16 * 1024;
	s->buf = malloc(s->buf_size);
	s->dents = malloc(DENTS_BUF);
	s->task_dents = malloc(DENTS_BUF);
	if (!s->buf || !s->dents || !s->task_dents) {
		r = -ENOMEM;
		goto fail;
	}

	s->root_fd = open(proc_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->root_fd < 0) {
		r = log_debug_errno(negative_errno(), "Failed to open '%s': %m", proc_root);
		goto fail;
	}
	s->is_procfs = fstatfs(s->root_fd, &sfs) == 0 && sfs.f_type == PROC_SUPER_MAGIC;

	r = read_boot_id(s);
	if (r < 0) {
		log_debug_errno(r, "Failed to read the boot id under '%s': %m", proc_root);
		goto fail;
	}
	r = read_btime(s);
	if (r < 0) {
		log_debug_errno(r, "Failed to read btime from '%s/stat': %m", proc_root);
		goto fail;
	}
	r = read_mem_total(s, &s->mem_total_kb);
	if (r < 0) {
		log_debug_errno(r, "Failed to read MemTotal from '%s/meminfo': %m", proc_root);
		goto fail;
	}
	*ret = s;
	return 0;
fail:
	proc_scanner_free(s);
	return r;
}

static void users_clear(struct proc_scanner *s)
{
	for (size_t i = 0; i < s->users_cap; i++)
		free(s->users[i].name);
	free(s->users);
	s->users = NULL;
	s->users_cap = 0;
	s->users_n = 0;
}

/* Drops every cached value (the baselines stay). */
static void cache_clear(struct proc_scanner *s)
{
	for (size_t i = 0; i < s->cpu_cap; i++) {
		free(s->cpu[i].cache);
		s->cpu[i].cache = NULL;
	}
}

struct proc_scanner *proc_scanner_free(struct proc_scanner *s)
{
	if (!s)
		return NULL;
	if (s->root_fd >= 0)
		close(s->root_fd);
	users_clear(s);
	cache_clear(s);
	free(s->cpu);
	free(s->buf);
	free(s->dents);
	free(s->task_dents);
	free(s);
	return NULL;
}

const char *proc_scanner_boot_id(const struct proc_scanner *s)
{
	return s->boot_id;
}

int proc_scanner_set_cmdline_max(struct proc_scanner *s, size_t max)
{
	if (max < 1 || max > CMDLINE_MAX_LIMIT)
		return -ERANGE;
	/* Cached command lines were cut at the old cap. */
	if (max != s->cmdline_max)
		cache_clear(s);
	s->cmdline_max = max;
	return 0;
}

void proc_scanner_set_cache_ttl(struct proc_scanner *s, uint64_t usec)
{
	s->cache_ttl_ns = usec > UINT64_MAX / 1000 ? UINT64_MAX : usec * 1000;
	if (s->cache_ttl_ns == 0)
		cache_clear(s);
}

void proc_scanner_set_cpu_min_interval(struct proc_scanner *s, uint64_t usec)
{
	s->cpu_min_interval_ns = usec > UINT64_MAX / 1000 ? UINT64_MAX : usec * 1000;
}

void proc_scanner_set_clock(struct proc_scanner *s, proc_clock_cb_t cb, void *userdata)
{
	s->clock = cb ? cb : default_clock;
	s->clock_userdata = cb ? userdata : NULL;
}

/*
 * User names. getpwuid_r() may read /etc/passwd or ask NSS services, far too slow once per
 * process, so names are cached (including "no such user") and the cache is dropped every
 * USER_CACHE_TTL_NS.
 */

static size_t hash_u64(uint64_t x)
{
	x ^= x >> 33;
	x *= UINT64_C(0xff51afd7ed558ccd);
	x ^= x >> 33;
	x *= UINT64_C(0xc4ceb9fe1a85ec53);
	x ^= x >> 33;
	return (size_t)x;
}

static int lookup_user_name(uid_t uid, char **ret)
{
	_cleanup_free_ char *buf = NULL;
	long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
	size_t size = hint > 0 ? (size_t)hint : 1024;
	struct passwd pw, *res = NULL;
	char *name;

	for (;;) {
		int r;

		free(buf);
		buf = malloc(size);
		if (!buf)
			return -ENOMEM;
		r = getpwuid_r(uid, &pw, buf, size, &res);
		if (r == ERANGE && size < 1024 * 1024) {
			size *= 2;
			continue;
		}
		/* Any other failure (NSS unavailable) shows the number, as ps does. */
		break;
	}
	if (res && res->pw_name && res->pw_name[0])
		name = strdup(res->pw_name);
	else if (asprintf(&name, "%u", (unsigned)uid) < 0)
		name = NULL;
	if (!name)
		return -ENOMEM;
	*ret = name;
	return 0;
}

static int users_grow(struct proc_scanner *s)
{
	size_t ncap = s->users_cap ? s->users_cap * 2 : 64;
	struct user_slot *n = calloc(ncap, sizeof(*n));

	if (!n)
		return -ENOMEM;
	for (size_t i = 0; i < s->users_cap; i++) {
		size_t j;

		if (!s->users[i].used)
			continue;
		for (j = hash_u64(s->users[i].uid) & (ncap - 1); n[j].used;
		     j = (j + 1) & (ncap - 1))
			;
		n[j] = s->users[i];
	}
	free(s->users);
	s->users = n;
	s->users_cap = ncap;
	return 0;
}

/* Returns the name of @uid as a copy in @si's arena (one copy per uid and snapshot). */
static int user_name(struct proc_scanner *s, struct snapshot_impl *si, uid_t uid, const char **ret)
{
	struct user_slot *slot;
	size_t j;
	int r;

	if ((s->users_n + 1) * 2 > s->users_cap) {
		r = users_grow(s);
		if (r < 0)
			return r;
	}
	for (j = hash_u64(uid) & (s->users_cap - 1); s->users[j].used;
	     j = (j + 1) & (s->users_cap - 1))
		if (s->users[j].uid == uid)
			break;
	slot = &s->users[j];
	if (!slot->used) {
		r = lookup_user_name(uid, &slot->name);
		if (r < 0)
			return r;
		slot->used = true;
		slot->uid = uid;
		slot->snap_seq = 0;
		s->users_n++;
	}
	if (slot->snap_seq != si->seq) {
		slot->snap_name = arena_strndup(si, slot->name, strlen(slot->name));
		if (!slot->snap_name)
			return -ENOMEM;
		slot->snap_seq = si->seq;
	}
	*ret = slot->snap_name;
	return 0;
}

/*
 * CPU baselines (see proc_scanner_scan() in the header for the rule).
 */

static size_t cpu_hash(pid_t id, uint64_t start, bool thread)
{
	return hash_u64(((uint64_t)(uint32_t)id << 1 | thread) ^
			start * UINT64_C(0x9e3779b97f4a7c15));
}

static struct cpu_slot *cpu_find(struct cpu_slot *t, size_t cap, pid_t id, uint64_t start,
				 bool thread)
{
	size_t j;

	for (j = cpu_hash(id, start, thread) & (cap - 1); t[j].used; j = (j + 1) & (cap - 1))
		if (t[j].id == id && t[j].start_ticks == start && t[j].thread == thread)
			return &t[j];
	return &t[j];
}

/*
 * Rebuilds the table with room for growth, keeping only the slots @keep accepts: slots of the
 * other kind (processes or threads) than @kind, and those of @kind seen by scan @gen.
 */
static int cpu_rehash(struct proc_scanner *s, size_t ncap, bool prune, bool kind, uint32_t gen)
{
	struct cpu_slot *n = calloc(ncap, sizeof(*n));
	size_t counts[2] = {};

	if (!n)
		return -ENOMEM;
	for (size_t i = 0; i < s->cpu_cap; i++) {
		struct cpu_slot *o = &s->cpu[i];

		if (!o->used)
			continue;
		if (prune && o->thread == kind && o->gen != gen) {
			free(o->cache);
			continue;
		}
		*cpu_find(n, ncap, o->id, o->start_ticks, o->thread) = *o;
		counts[o->thread]++;
	}
	free(s->cpu);
	s->cpu = n;
	s->cpu_cap = ncap;
	s->cpu_n[0] = counts[0];
	s->cpu_n[1] = counts[1];
	return 0;
}

/*
 * Drops the baselines (and cache) of the process @id started at @start_ticks, if any. Linear
 * probing has no tombstones: the slots after the hole that would no longer be found from their
 * home slot are shifted back into it (Knuth's algorithm R).
 */
static void cpu_remove(struct proc_scanner *s, pid_t id, uint64_t start_ticks)
{
	size_t mask = s->cpu_cap - 1, hole, j;
	struct cpu_slot *c;

	if (!s->cpu_cap)
		return;
	c = cpu_find(s->cpu, s->cpu_cap, id, start_ticks, false);
	if (!c->used)
		return;
	free(c->cache);
	s->cpu_n[0]--;
	hole = (size_t)(c - s->cpu);
	for (j = (hole + 1) & mask; s->cpu[j].used; j = (j + 1) & mask) {
		const struct cpu_slot *o = &s->cpu[j];
		size_t home = cpu_hash(o->id, o->start_ticks, o->thread) & mask;

		/* @o stays if its home lies cyclically in (hole, j]: probing still reaches it. */
		if (hole <= j ? hole < home && home <= j : hole < home || home <= j)
			continue;
		s->cpu[hole] = *o;
		hole = j;
	}
	s->cpu[hole] = (struct cpu_slot){};
}

static double ticks_percent(uint64_t ticks, uint64_t clk_tck, uint64_t ns)
{
	if (ns == 0)
		return 0;
	return (double)ticks / (double)clk_tck * 1e9 / (double)ns * 100.0;
}

/* Records a sample of @ticks at @now_ns and returns the CPU% it implies in *ret. */
static int cpu_sample(struct proc_scanner *s, pid_t id, bool thread, uint64_t start_ticks,
		      uint64_t ticks, uint64_t now_ns, uint64_t boot_ns, double *ret,
		      struct cpu_slot **ret_slot)
{
	uint64_t ref_ticks, ref_ns;
	struct cpu_slot *c;
	int r;

	if ((s->cpu_n[0] + s->cpu_n[1] + 1) * 2 > s->cpu_cap) {
		r = cpu_rehash(s, s->cpu_cap ? s->cpu_cap * 2 : 1024, false, false, 0);
		if (r < 0)
			return r;
	}
	c = cpu_find(s->cpu, s->cpu_cap, id, start_ticks, thread);
	*ret_slot = c;
	if (!c->used) {
		*c = (struct cpu_slot){ .used = true,
					.thread = thread,
					.id = id,
					.start_ticks = start_ticks,
					.new_ticks = ticks,
					.new_ns = now_ns };
		s->cpu_n[thread]++;
	}
	c->gen = s->gen;

	if (now_ns > c->new_ns && now_ns - c->new_ns >= s->cpu_min_interval_ns) {
		ref_ticks = c->new_ticks;
		ref_ns = c->new_ns;
		c->old_ticks = c->new_ticks;
		c->old_ns = c->new_ns;
		c->has_old = true;
		c->new_ticks = ticks;
		c->new_ns = now_ns;
	} else if (c->has_old && now_ns > c->old_ns) {
		/* At least the minimum interval old, as the newest came that long after it. */
		ref_ticks = c->old_ticks;
		ref_ns = c->old_ns;
	} else {
		/* First sight, or no baseline old enough yet: the lifetime average, as in ps. */
		double alive = (double)boot_ns / 1e9 - (double)start_ticks / (double)s->clk_tck;

		*ret = alive > 0 ? (double)ticks / (double)s->clk_tck / alive * 100.0 : 0;
		return 0;
	}
	/* Ticks never go back for one (pid, start) in the kernel; guard against crafted input. */
	*ret = ticks_percent(ticks > ref_ticks ? ticks - ref_ticks : 0, s->clk_tck,
			     now_ns - ref_ns);
	return 0;
}

/*
 * Reading one process or thread.
 */

static bool errno_is_gone(int r)
{
	return r == -ENOENT || r == -ESRCH;
}

/*
 * One /proc/<pid> (or task/<tid>) directory. Files are first reached by path from the parent
 * ("1234/stat"): when everything else comes from the cache, that saves opening and closing a
 * directory fd per process. The directory fd is opened only to read more than stat, and then
 * pins the process: files read through it fail with ESRCH once it exits rather than reach a
 * new process that reuses the PID.
 */
struct task_dir {
	int parent_fd;
	const char *name; /* decimal PID or TID */
	int fd; /* O_PATH, or -EBADF until task_dir_open() */
};

static int task_dir_open(struct task_dir *t)
{
	if (t->fd >= 0)
		return 0;
	/* O_PATH: only a base for *at() calls and fstat(), so skip the open permission work. */
	t->fd = openat(t->parent_fd, t->name, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (t->fd < 0)
		return negative_errno();
	return 0;
}

static void task_dir_close(struct task_dir *t)
{
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -EBADF;
}

/* Reads the file @file of @t by path from its parent into s->buf. */
static int task_read_by_path(struct proc_scanner *s, const struct task_dir *t, const char *file,
			     size_t *ret_len)
{
	/* Both parts are bounded: a PID has at most 10 digits, the file names are ours. */
	char path[64];

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", t->name, file) >= sizeof(path))
		return -ENAMETOOLONG;
	return read_file(s, t->parent_fd, path, SMALL_FILE_MAX, ret_len, NULL);
}

/*
 * The owner of a /proc/<pid> (or task/<tid>) directory is the task's effective uid and gid, by
 * design: task_dump_owner() in fs/proc/base.c only substitutes root for non-dumpable tasks on
 * files, not on these 0555 directories, and says "procps and other packages kept stating
 * /proc/pid" because status is slow. procps' readproc does the same. A stat() costs a fraction
 * of formatting and reading status, which matters at thousands of processes; test trees, which
 * cannot chown, keep uid and gid in a status file instead.
 */
static int read_ids(struct proc_scanner *s, const struct task_dir *t, uid_t *ret_uid,
		    gid_t *ret_gid)
{
	struct proc_status st;
	size_t len;
	int r;

	if (s->is_procfs) {
		struct stat sb;

		r = t->fd >= 0 ? fstat(t->fd, &sb) : fstatat(t->parent_fd, t->name, &sb, 0);
		if (r < 0)
			return negative_errno();
		*ret_uid = sb.st_uid;
		*ret_gid = sb.st_gid;
		return 0;
	}
	r = t->fd >= 0 ? read_file(s, t->fd, "status", SMALL_FILE_MAX, &len, NULL) :
			 task_read_by_path(s, t, "status", &len);
	if (r < 0)
		return r;
	r = proc_parse_status(s->buf, len, &st);
	if (r < 0)
		return r;
	if (!st.has_uid || !st.has_gid)
		return -EBADMSG;
	*ret_uid = st.uid;
	*ret_gid = st.gid;
	return 0;
}

static int read_cmdline(struct proc_scanner *s, struct snapshot_impl *si, int dirfd,
			struct proc_entry *e)
{
	bool truncated = false;
	size_t len;
	int r;

	r = read_file(s, dirfd, "cmdline", s->cmdline_max, &len, &truncated);
	if (r == -EACCES || r == -EPERM)
		len = 0; /* hidepid and the like: unknown, shown as no arguments */
	else if (r < 0)
		return r;
	/*
	 * Arguments are NUL-terminated. Trailing NULs are dropped, which also folds the padding
	 * a process leaves after rewriting its argv (setproctitle); a trailing empty argument is
	 * lost that way, as in ps.
	 */
	while (len > 0 && s->buf[len - 1] == '\0')
		len--;
	e->cmdline_truncated = truncated;
	if (len == 0) {
		e->cmdline = "";
		e->cmdline_len = 0;
		return 0;
	}
	e->cmdline = arena_strndup(si, s->buf, len);
	if (!e->cmdline)
		return -ENOMEM;
	e->cmdline_len = len + 1;
	return 0;
}

static int read_cgroup(struct proc_scanner *s, struct snapshot_impl *si, int dirfd, uint64_t fields,
		       struct proc_entry *e)
{
	const char *path, *id = NULL;
	size_t len, plen;
	int r;

	r = read_file(s, dirfd, "cgroup", SMALL_FILE_MAX, &len, NULL);
	if (r < 0)
		/* No cgroup file (CONFIG_CGROUPS=n) or no permission: unknown. */
		return errno_is_gone(r) || r == -EACCES || r == -EPERM ? 0 : r;
	if (proc_parse_cgroup(s->buf, len, &path, &plen) < 0)
		return 0;
	if ((fields & PROC_FIELD_BIT(PROC_FIELD_CGROUP))) {
		e->cgroup = arena_strndup(si, path, plen);
		if (!e->cgroup)
			return -ENOMEM;
	}
	if (!(fields & PROC_FIELD_BIT(PROC_FIELD_CONTAINER_ID)))
		return 0;
	/*
	 * On a v1 or hybrid host the chosen line may be "/" while the controllers' lines name
	 * the container, so fall back to any line that has an ID.
	 */
	if (proc_container_id(path, plen, &id) < 0) {
		const char *p = s->buf, *end = s->buf + len;

		while (p < end && !id) {
			const char *eol = memchr(p, '\n', (size_t)(end - p));

			if (!eol)
				eol = end;
			if (proc_container_id(p, (size_t)(eol - p), &id) < 0)
				id = NULL;
			p = eol + 1;
		}
	}
	if (id) {
		e->container_id = arena_strndup(si, id, 64);
		if (!e->container_id)
			return -ENOMEM;
	}
	return 0;
}

/*
 * Namespace inode numbers come from readlink(ns/<type>), whose text is "<type>:[<inode>]": the
 * same number fstatat() would give as st_ino, at about half the cost, because stat()ing the
 * link makes nsfs instantiate an inode and dentry for it each time. Failures (EACCES without
 * ptrace access, ENOENT for zombies and kernels without a type) leave the value 0.
 */
static void read_ns(int dirfd, struct proc_entry *e)
{
	char link[64];

	for (int k = 0; k < _PROC_NS_MAX; k++) {
		ssize_t n = readlinkat(dirfd, proc_ns_paths[k], link, sizeof(link));
		const char *lb, *rb;
		uint64_t v;

		if (n <= 0 || (size_t)n >= sizeof(link))
			continue;
		lb = memchr(link, '[', (size_t)n);
		rb = memrchr(link, ']', (size_t)n);
		if (lb && rb && rb > lb && parse_u64n(lb + 1, (size_t)(rb - lb - 1), &v))
			e->ns[k] = v;
	}
}

/* Kernel threads and zombies have no memory map: no command line and no exe. */
static bool stat_is_dead(const struct proc_stat *st)
{
	return (st->flags & PF_KTHREAD) || st->state == 'Z' || st->state == 'X' || st->state == 'x';
}

/*
 * Hashes what exec replaces, as far as stat shows it: the command name, PF_FORKNOEXEC (a forked
 * child that has not exec'ed yet), the addresses of the new memory map, and whether the task is
 * a kernel thread or dead. A changed fingerprint means the cached values are stale.
 */
static uint64_t stat_fingerprint(const struct proc_stat *st)
{
	const uint64_t v[] = { st->flags & (PF_KTHREAD | PF_FORKNOEXEC),
			       stat_is_dead(st),
			       st->start_code,
			       st->end_code,
			       st->start_stack,
			       st->arg_start,
			       st->arg_end };
	uint64_t h = UINT64_C(0xcbf29ce484222325); /* FNV-1a */

	for (size_t i = 0; i < st->comm_len; i++)
		h = (h ^ (unsigned char)st->comm[i]) * UINT64_C(0x100000001b3);
	for (size_t i = 0; i < ELEMENTSOF(v); i++)
		h = hash_u64(h ^ v[i]);
	return h;
}

/* Copies the cached values @fields of @c into @e, in @si's arena. */
static int cache_restore(struct snapshot_impl *si, const struct task_cache *c, uint64_t fields,
			 struct proc_entry *e)
{
	const char *p = c->data;

	if (fields & PROC_FIELD_BIT(PROC_FIELD_CMDLINE)) {
		e->cmdline_truncated = c->cmdline_truncated;
		e->cmdline_len = c->cmdline_len;
		e->cmdline = c->cmdline_len ? arena_strndup(si, p, c->cmdline_len - 1) : "";
		if (!e->cmdline)
			return -ENOMEM;
	}
	p += c->cmdline_len;
	if ((fields & PROC_FIELD_BIT(PROC_FIELD_EXE)) && c->has_exe) {
		e->exe = arena_strndup(si, p, c->exe_len);
		if (!e->exe)
			return -ENOMEM;
	}
	p += c->exe_len;
	if ((fields & PROC_FIELD_BIT(PROC_FIELD_CGROUP)) && c->has_cgroup) {
		e->cgroup = arena_strndup(si, p, c->cgroup_len);
		if (!e->cgroup)
			return -ENOMEM;
	}
	p += c->cgroup_len;
	if ((fields & PROC_FIELD_BIT(PROC_FIELD_CONTAINER_ID)) && c->has_container_id) {
		e->container_id = arena_strndup(si, p, 64);
		if (!e->container_id)
			return -ENOMEM;
	}
	if (fields & PROC_FIELD_BIT(PROC_FIELD_NS))
		memcpy(e->ns, c->ns, sizeof(e->ns));
	return 0;
}

/* memcpy() that allows NULL with @n == 0 (absent values); returns the end of the copy. */
static char *copy_bytes(char *p, const char *src, size_t n)
{
	if (n)
		memcpy(p, src, n);
	return p + n;
}

/* Replaces the cache of @slot with the values @fields of @e. */
static int cache_store(struct proc_scanner *s, struct cpu_slot *slot, uint64_t fields,
		       uint64_t fingerprint, uint64_t now_ns, const struct proc_entry *e)
{
	size_t exe_len = e->exe ? strlen(e->exe) : 0,
	       cgroup_len = e->cgroup ? strlen(e->cgroup) : 0;
	size_t id_len = e->container_id ? 64 : 0;
	uint64_t spread = s->cache_ttl_ns / 4;
	struct task_cache *c;
	char *p;

	c = malloc(sizeof(*c) + e->cmdline_len + exe_len + cgroup_len + id_len);
	if (!c)
		return -ENOMEM;
	*c = (struct task_cache){
		.fingerprint = fingerprint,
		.fields = fields,
		.cmdline_truncated = e->cmdline_truncated,
		.has_exe = e->exe,
		.has_cgroup = e->cgroup,
		.has_container_id = e->container_id,
		.cmdline_len = e->cmdline_len,
		.exe_len = exe_len,
		.cgroup_len = cgroup_len,
	};
	/* Spread expiries so the refreshes of processes seen together are not due together. */
	c->expires_ns = now_ns + s->cache_ttl_ns -
			(spread ? hash_u64((uint64_t)slot->id ^ slot->start_ticks) % spread : 0);
	memcpy(c->ns, e->ns, sizeof(c->ns));
	p = c->data;
	p = copy_bytes(p, e->cmdline, e->cmdline_len);
	p = copy_bytes(p, e->exe, exe_len);
	p = copy_bytes(p, e->cgroup, cgroup_len);
	copy_bytes(p, e->container_id, id_len);
	free(slot->cache);
	slot->cache = c;
	return 0;
}

struct scan_ctx {
	struct snapshot_impl *si;
	uint64_t fields;
	uint64_t boot_ns; /* CLOCK_BOOTTIME at the start of the scan, for lifetime averages */
	uint64_t mem_total_kb;
	bool no_cache; /* ignore cached values (they are still refreshed), see proc_scanner_patch() */
};

/* Fills @e from stat; strings go to the arena. */
static int entry_from_stat(struct proc_scanner *s, struct scan_ctx *ctx, const struct proc_stat *st,
			   struct proc_entry *e)
{
	e->ppid = st->ppid;
	e->state = st->state;
	e->kernel_thread = st->flags & PF_KTHREAD;
	e->nice = st->nice;
	e->threads = st->num_threads;
	e->tty_nr = (uint32_t)st->tty_nr;
	e->start_ticks = st->start_ticks;
	e->total_ticks = st->utime + st->stime;
	e->rss_kb = st->rss * (s->page_size / 1024);
	e->vsz_kb = st->vsize / 1024;
	if (ctx->mem_total_kb > 0)
		e->mem_percent = (double)e->rss_kb * 100.0 / (double)ctx->mem_total_kb;
	if (ctx->fields & PROC_FIELD_BIT(PROC_FIELD_COMM)) {
		e->comm = arena_strndup(ctx->si, st->comm, st->comm_len);
		if (!e->comm)
			return -ENOMEM;
	}
	return 0;
}

/* Reads stat of @t into s->buf and parses it; 0 if the task is gone or its stat is unusable. */
static int read_stat(struct proc_scanner *s, struct task_dir *t, bool via_fd, struct proc_stat *st)
{
	size_t len;
	int r;

	r = via_fd ? read_file(s, t->fd, "stat", SMALL_FILE_MAX, &len, NULL) :
		     task_read_by_path(s, t, "stat", &len);
	if (errno_is_gone(r) || r == -EACCES)
		return 0;
	if (r < 0 && r != -EFBIG)
		return log_debug_errno(r, "Failed to read stat of %s: %m", t->name);
	if (r == 0)
		r = proc_parse_stat(s->buf, len, st);
	if (r < 0) {
		log_debug_errno(r, "Failed to parse stat of %s, ignoring: %m", t->name);
		return 0;
	}
	return 1;
}

/* Reads the uncached @fields of the task into @e through its directory fd. */
static int read_files(struct proc_scanner *s, struct scan_ctx *ctx, struct task_dir *t, bool dead,
		      uint64_t fields, struct proc_entry *e)
{
	size_t len;
	int r;

	if (fields & PROC_FIELD_BIT(PROC_FIELD_CMDLINE)) {
		if (dead) {
			e->cmdline = "";
		} else {
			r = read_cmdline(s, ctx->si, t->fd, e);
			if (r < 0)
				return r;
		}
	}
	if ((fields & PROC_FIELD_BIT(PROC_FIELD_EXE)) && !dead) {
		/*
		 * EACCES (no ptrace access) and ENOENT (exiting, or no exe) both leave it NULL;
		 * skipping on ENOENT would hide live processes whose mm has no exe file.
		 */
		r = read_link(s, t->fd, "exe", &len);
		if (r == -ENOMEM)
			return r;
		if (r >= 0) {
			e->exe = arena_strndup(ctx->si, s->buf, len);
			if (!e->exe)
				return -ENOMEM;
		}
	}
	if (fields &
	    (PROC_FIELD_BIT(PROC_FIELD_CGROUP) | PROC_FIELD_BIT(PROC_FIELD_CONTAINER_ID))) {
		r = read_cgroup(s, ctx->si, t->fd, fields, e);
		if (r < 0)
			return r;
	}
	if (fields & PROC_FIELD_BIT(PROC_FIELD_NS))
		read_ns(t->fd, e);
	return 0;
}

/*
 * Reads the process or thread @t into the next entry of the snapshot. Returns 1 if it was
 * added, 0 if it vanished (or its stat is unusable), or -errno.
 */
static int read_task(struct proc_scanner *s, struct scan_ctx *ctx, struct task_dir *t, pid_t pid,
		     pid_t tid, bool thread)
{
	struct snapshot_impl *si = ctx->si;
	uint64_t fields = ctx->fields, files = ctx->fields & CACHED_FIELDS;
	uint64_t now_ns, fingerprint = 0;
	struct cpu_slot *slot = NULL;
	struct proc_entry *e;
	struct proc_stat st;
	int r;

	r = read_stat(s, t, t->fd >= 0, &st);
	if (r <= 0)
		return r;
	r = scanner_now(s, CLOCK_MONOTONIC, &now_ns);
	if (r < 0)
		return r;
	if (files && s->cache_ttl_ns > 0)
		fingerprint = stat_fingerprint(&st);

	e = snapshot_next_entry(si);
	if (!e)
		return -ENOMEM;
	e->pid = pid;
	e->tid = tid;
	r = entry_from_stat(s, ctx, &st, e);
	if (r < 0)
		return r;
	r = cpu_sample(s, tid, thread, st.start_ticks, e->total_ticks, now_ns, ctx->boot_ns,
		       &e->cpu_percent, &slot);
	if (r < 0)
		return r;

	if (files && !ctx->no_cache && slot->cache && slot->cache->fingerprint == fingerprint &&
	    now_ns < slot->cache->expires_ns && (slot->cache->fields & files) == files) {
		r = cache_restore(si, slot->cache, files, e);
		if (r < 0)
			return r;
		files = 0;
	}
	if (files && t->fd < 0) {
		/*
		 * Reading more than stat: open the directory, and read stat again through it so
		 * what follows is known to be the same process (the PID may have been reused
		 * since the read by path).
		 */
		struct proc_stat st2;

		r = task_dir_open(t);
		if (errno_is_gone(r) || r == -ENOTDIR)
			return 0;
		if (r < 0)
			return r;
		r = read_stat(s, t, true, &st2);
		if (r <= 0)
			return r;
		if (st2.start_ticks != st.start_ticks)
			return 0;
	}

	if (fields & (PROC_FIELD_BIT(PROC_FIELD_UID) | PROC_FIELD_BIT(PROC_FIELD_GID) |
		      PROC_FIELD_BIT(PROC_FIELD_USER))) {
		r = read_ids(s, t, &e->uid, &e->gid);
		if (errno_is_gone(r) || r == -EBADMSG)
			return 0;
		if (r < 0)
			return r;
		if (fields & PROC_FIELD_BIT(PROC_FIELD_USER)) {
			r = user_name(s, si, e->uid, &e->user);
			if (r < 0)
				return r;
		}
	}

	if (files) {
		r = read_files(s, ctx, t, stat_is_dead(&st), files, e);
		if (errno_is_gone(r))
			return 0;
		if (r < 0)
			return r;
		if (s->cache_ttl_ns > 0) {
			r = cache_store(s, slot, files, fingerprint, now_ns, e);
			if (r < 0)
				return r;
		}
	}

	si->pub.count++;
	return 1;
}

/* Parses a /proc directory name as a PID; false for "self", "sys" and other names. */
static bool parse_pid_name(const char *name, pid_t *ret)
{
	int64_t v;

	if (name[0] < '1' || name[0] > '9')
		return false;
	if (!parse_i64n(name, strlen(name), 1, INT_MAX, &v))
		return false;
	*ret = (pid_t)v;
	return true;
}

static int read_threads(struct proc_scanner *s, struct scan_ctx *ctx, int parent_fd,
			const char *name, pid_t pid)
{
	_cleanup_close_ int task_fd = -EBADF;
	char path[32];
	int r;

	/* @name passed parse_pid_name(), so it has at most 10 digits. */
	if ((size_t)snprintf(path, sizeof(path), "%s/task", name) >= sizeof(path))
		return 0;
	task_fd = openat(parent_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (task_fd < 0) {
		r = negative_errno();
		return errno_is_gone(r) || r == -EACCES || r == -ENOTDIR ? 0 : r;
	}
	for (;;) {
		ssize_t n = getdents64(task_fd, s->task_dents, DENTS_BUF);

		if (n < 0) {
			r = negative_errno();
			return errno_is_gone(r) ? 0 : r;
		}
		if (n == 0)
			return 0;
		for (ssize_t off = 0; off < n;) {
			struct dirent64 *d = (struct dirent64 *)(s->task_dents + off);
			struct task_dir t = { .parent_fd = task_fd,
					      .name = d->d_name,
					      .fd = -EBADF };
			pid_t tid;

			off += d->d_reclen;
			if (!parse_pid_name(d->d_name, &tid))
				continue;
			r = read_task(s, ctx, &t, pid, tid, true);
			task_dir_close(&t);
			if (r < 0)
				return r;
		}
	}
}

static int entry_cmp(const void *a, const void *b)
{
	const struct proc_entry *x = a, *y = b;

	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	if (x->tid != y->tid)
		return x->tid < y->tid ? -1 : 1;
	return 0;
}

static void snapshot_sort(struct snapshot_impl *si)
{
	for (size_t i = 1; i < si->pub.count; i++)
		if (entry_cmp(&si->entries[i - 1], &si->entries[i]) > 0) {
			qsort(si->entries, si->pub.count, sizeof(si->entries[0]), entry_cmp);
			return;
		}
}

/* Starts a snapshot: its times, constants, and what the entries need from the scanner. */
static int scan_begin(struct proc_scanner *s, uint64_t fields, bool threads, size_t hint,
		      struct scan_ctx *ctx)
{
	_cleanup_(snapshot_freep) struct snapshot_impl *si = NULL;
	uint64_t now;
	int r;

	if (fields & ~PROC_FIELDS_ALL)
		return -EINVAL;
	si = snapshot_new(hint);
	if (!si)
		return -ENOMEM;
	si->pub.fields = fields;
	si->pub.threads = threads;
	si->seq = ++s->snap_seq;
	memcpy(si->boot_id, s->boot_id, sizeof(si->boot_id));
	si->btime = s->btime;
	si->clk_tck = s->clk_tck;
	r = scanner_now(s, CLOCK_REALTIME, &si->pub.realtime_ns);
	if (r < 0)
		return r;
	r = scanner_now(s, CLOCK_MONOTONIC, &si->pub.monotonic_ns);
	if (r < 0)
		return r;
	r = scanner_now(s, CLOCK_BOOTTIME, &ctx->boot_ns);
	if (r < 0)
		return r;

	/* Memory hotplug changes MemTotal; one small read per scan keeps it right. */
	ctx->mem_total_kb = s->mem_total_kb;
	if (fields & PROC_FIELD_BIT(PROC_FIELD_MEM_PERCENT)) {
		uint64_t total;

		if (read_mem_total(s, &total) >= 0 && total > 0)
			s->mem_total_kb = ctx->mem_total_kb = total;
	}
	if (fields & PROC_FIELD_BIT(PROC_FIELD_USER)) {
		r = scanner_now(s, CLOCK_MONOTONIC, &now);
		if (r < 0)
			return r;
		if (now - s->users_flushed_ns >= USER_CACHE_TTL_NS) {
			users_clear(s);
			s->users_flushed_ns = now;
		}
	}
	ctx->fields = fields;
	ctx->si = TAKE_PTR(si);
	return 0;
}

int proc_scanner_scan(struct proc_scanner *s, uint64_t fields, bool threads,
		      struct proc_snapshot **ret)
{
	struct scan_ctx ctx = {};
	_cleanup_(snapshot_freep) struct snapshot_impl *si = NULL;
	int r;

	r = scan_begin(s, fields, threads, s->last_count + s->last_count / 8 + 16, &ctx);
	if (r < 0)
		return r;
	si = ctx.si;
	s->gen++;

	if (lseek(s->root_fd, 0, SEEK_SET) < 0)
		return negative_errno();
	for (;;) {
		ssize_t n = getdents64(s->root_fd, s->dents, DENTS_BUF);

		if (n < 0)
			return log_debug_errno(negative_errno(),
					       "Failed to list the proc root: %m");
		if (n == 0)
			break;
		for (ssize_t off = 0; off < n;) {
			struct dirent64 *d = (struct dirent64 *)(s->dents + off);
			pid_t pid;

			off += d->d_reclen;
			if (!parse_pid_name(d->d_name, &pid))
				continue;
			if (threads) {
				r = read_threads(s, &ctx, s->root_fd, d->d_name, pid);
			} else {
				struct task_dir t = { .parent_fd = s->root_fd,
						      .name = d->d_name,
						      .fd = -EBADF };

				r = read_task(s, &ctx, &t, pid, pid, false);
				task_dir_close(&t);
			}
			if (r < 0)
				return r;
		}
	}

	/*
	 * Drop the baselines of what this scan did not see. Every live process or thread of this
	 * kind was sampled with s->gen, so a table holding more than the new ones has stale slots.
	 */
	if (s->cpu_n[threads] > si->pub.count) {
		size_t cap = s->cpu_cap;

		while (cap > 1024 && (s->cpu_n[0] + s->cpu_n[1]) * 8 < cap)
			cap /= 2;
		r = cpu_rehash(s, cap, true, threads, s->gen);
		if (r < 0)
			return r;
	}

	snapshot_sort(si);
	si->pub.entries = si->entries;
	s->last_count = si->pub.count;
	*ret = &TAKE_PTR(si)->pub;
	return 0;
}

/*
 * Opens @t, the directory of the process @pid. Returns 0, -ENOENT or -ESRCH if there is no
 * such process, or -errno.
 */
static int process_dir_open(struct proc_scanner *s, pid_t pid, struct task_dir *t)
{
	struct proc_status st;
	size_t len;
	int r;

	r = task_dir_open(t);
	if (r == -ENOTDIR)
		r = -ENOENT;
	if (r < 0)
		return r;
	/*
	 * /proc/<tid> resolves for any thread although only leaders are listed; a thread is not
	 * a process of the table, so tell it apart by its Tgid.
	 */
	r = read_file(s, t->fd, "status", SMALL_FILE_MAX, &len, NULL);
	if (r < 0)
		return r;
	if (proc_parse_status(s->buf, len, &st) >= 0 && st.has_tgid && st.tgid != pid)
		return -ENOENT;
	return 0;
}

int proc_scanner_read_pid(struct proc_scanner *s, pid_t pid, uint64_t fields,
			  struct proc_snapshot **ret)
{
	struct scan_ctx ctx = {};
	_cleanup_(snapshot_freep) struct snapshot_impl *si = NULL;
	char name[16];
	struct task_dir t = { .parent_fd = s->root_fd, .name = name, .fd = -EBADF };
	int r;

	if (pid <= 0)
		return -EINVAL;
	snprintf(name, sizeof(name), "%d", (int)pid);
	r = process_dir_open(s, pid, &t);
	if (r < 0)
		goto out;
	r = scan_begin(s, fields, false, 1, &ctx);
	if (r < 0)
		goto out;
	si = ctx.si;
	r = read_task(s, &ctx, &t, pid, pid, false);
	if (r == 0)
		r = -ENOENT;
	if (r < 0)
		goto out;
	si->pub.entries = si->entries;
	*ret = &TAKE_PTR(si)->pub;
	r = 0;
out:
	task_dir_close(&t);
	return r;
}

/*
 * Patching.
 *
 * A patch copies the entries of its base and re-reads a few processes, so it must not copy
 * every string again: with 10,000 processes that would be a few MB per patch. Entries copied
 * from a full scan keep pointing into that scan's arena, which the patch pins with a reference
 * (si->shared); only the strings of re-read processes go to the patch's own arena. Entries
 * that a patched base holds in its own arena are copied into the new one, so the arena of a
 * patch is never shared and each snapshot pins at most one other arena: no chain of patches
 * keeps older patches alive, and the memory held is bounded by the full scan's arena plus the
 * strings of the processes that changed since it. A caller that patches for long should still
 * scan now and then, as the values of unchanged processes age.
 */

static int pid_cmp(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return (x > y) - (x < y);
}

/* Sorts the @n PIDs of @p, dropping duplicates and IDs <= 0; returns how many are left. */
static size_t pids_sort_unique(pid_t *p, size_t n)
{
	size_t k = 0;

	if (n > 1)
		qsort(p, n, sizeof(*p), pid_cmp);
	for (size_t i = 0; i < n; i++)
		if (p[i] > 0 && (k == 0 || p[k - 1] != p[i]))
			p[k++] = p[i];
	return k;
}

static bool bit_test(const uint64_t *bits, size_t i)
{
	return bits[i / 64] >> (i % 64) & 1;
}

static void bit_set(uint64_t *bits, size_t i)
{
	bits[i / 64] |= UINT64_C(1) << (i % 64);
}

/* Copies the strings of @e, an entry of another snapshot, into @si's arena. */
static int entry_copy_strings(struct snapshot_impl *si, struct proc_entry *e)
{
	const char **strs[] = { &e->comm, &e->user, &e->exe, &e->cgroup, &e->container_id };

	for (size_t i = 0; i < ELEMENTSOF(strs); i++)
		if (*strs[i] && !(*strs[i] = arena_strndup(si, *strs[i], strlen(*strs[i]))))
			return -ENOMEM;
	/* An empty command line is a static "" (or NULL when not read), in no arena. */
	if (e->cmdline_len && !(e->cmdline = arena_strndup(si, e->cmdline, e->cmdline_len - 1)))
		return -ENOMEM;
	return 0;
}

/* Reads the process @pid into the next entry of ctx->si: 1 if added, 0 if there is none. */
static int patch_read_pid(struct proc_scanner *s, struct scan_ctx *ctx, pid_t pid)
{
	char name[16];
	struct task_dir t = { .parent_fd = s->root_fd, .name = name, .fd = -EBADF };
	int r;

	snprintf(name, sizeof(name), "%d", (int)pid);
	r = process_dir_open(s, pid, &t);
	if (r >= 0)
		r = read_task(s, ctx, &t, pid, pid, false);
	task_dir_close(&t);
	return errno_is_gone(r) ? 0 : r;
}

int proc_scanner_patch(struct proc_scanner *s, const struct proc_snapshot *base, const pid_t *gone,
		       size_t n_gone, const pid_t *changed, size_t n_changed,
		       struct proc_snapshot **ret)
{
	const struct snapshot_impl *bi = snapshot_impl(base);
	_cleanup_(snapshot_freep) struct snapshot_impl *si = NULL;
	_cleanup_free_ struct proc_entry *fresh = NULL;
	_cleanup_free_ pid_t *drop = NULL;
	struct scan_ctx ctx = {};
	size_t n_all, n_reread, n_drop, n_fresh, total, n = 0, d = 0, j = 0, m = 0;
	int r;

	assert(gone || n_gone == 0);
	assert(changed || n_changed == 0);
	if (base->threads)
		return -EINVAL;
	if (__builtin_add_overflow(n_gone, n_changed, &n_all))
		return -ENOMEM;
	drop = reallocarray(NULL, MAX(n_all, (size_t)1), sizeof(*drop));
	if (!drop)
		return -ENOMEM;
	if (n_changed)
		memcpy(drop, changed, n_changed * sizeof(*drop));
	n_reread = pids_sort_unique(drop, n_changed);

	r = scan_begin(s, base->fields, false, base->count + n_reread, &ctx);
	if (r < 0)
		return r;
	si = ctx.si;
	si->pub.realtime_ns = base->realtime_ns;
	si->pub.monotonic_ns = base->monotonic_ns;
	memcpy(si->boot_id, bi->boot_id, sizeof(si->boot_id));
	si->btime = bi->btime;
	si->clk_tck = bi->clk_tck;
	si->shared = arena_ref(bi->shared ? bi->shared : bi->arena);

	/*
	 * The event that put a PID in @changed (exec) may not show in stat, so values cached by
	 * earlier scans are not trusted; what is read refreshes them.
	 */
	ctx.no_cache = true;
	for (size_t k = 0; k < n_reread; k++) {
		r = patch_read_pid(s, &ctx, drop[k]);
		if (r < 0)
			return r;
	}
	/* Ascending, as @drop was; moved aside so the merge below can write the entries. */
	n_fresh = si->pub.count;
	if (n_fresh) {
		fresh = malloc(n_fresh * sizeof(*fresh));
		if (!fresh)
			return -ENOMEM;
		memcpy(fresh, si->entries, n_fresh * sizeof(*fresh));
	}
	si->pub.count = 0;

	if (n_gone)
		memcpy(drop + n_reread, gone, n_gone * sizeof(*drop));
	n_drop = pids_sort_unique(drop, n_reread + n_gone);

	total = base->count + n_fresh;
	assert(si->capacity >= total);
	si->own = calloc(total / 64 + 1, sizeof(*si->own));
	if (!si->own)
		return -ENOMEM;

	/* Merge the base's entries that stay with the re-read ones, both sorted by pid. */
	for (size_t i = 0; i < base->count || j < n_fresh;) {
		const struct proc_entry *b = i < base->count ? &base->entries[i] : NULL;
		struct proc_entry *e = &si->entries[n];

		if (b) {
			while (d < n_drop && drop[d] < b->pid)
				d++;
			if (d < n_drop && drop[d] == b->pid) {
				/*
				 * Gone, or replaced by what was re-read. The next scan would drop
				 * its CPU baselines; a live table may scan seldom, so do it now,
				 * unless the same process (same start) was read again. (@m looks
				 * ahead of @j: fresh entries below b->pid may not be merged yet.)
				 */
				while (m < n_fresh && fresh[m].pid < b->pid)
					m++;
				if (m == n_fresh || fresh[m].pid != b->pid ||
				    fresh[m].start_ticks != b->start_ticks)
					cpu_remove(s, b->pid, b->start_ticks);
				i++;
				continue;
			}
		}
		if (j < n_fresh && (!b || fresh[j].pid < b->pid)) {
			*e = fresh[j++];
			bit_set(si->own, n);
		} else {
			*e = *b;
			if (bi->own && bit_test(bi->own, i)) {
				r = entry_copy_strings(si, e);
				if (r < 0)
					return r;
				bit_set(si->own, n);
			}
			i++;
		}
		n++;
	}
	si->pub.count = n;
	si->pub.entries = si->entries;
	*ret = &TAKE_PTR(si)->pub;
	return 0;
}

/*
 * JSON.
 *
 * Every number in a process object stays far below 2^53, so none needs the string form the API
 * uses for larger values: PIDs are at most 2^22 (PID_MAX_LIMIT), uids, gids and namespace
 * inode numbers are 32-bit in the kernel, sizes in KiB are below 2^47 (a 64-bit address space
 * is 2^64 bytes at most, 2^54 KiB, and real ones are 2^57 bytes), and cpu_time_ms reaches 2^53
 * only after 285,000 years. start ticks, which are not bounded as tightly, only appear inside
 * the key string.
 */

/* Returns the length of the valid UTF-8 sequence at @p (at most @n bytes), or 0. */
static size_t utf8_seq_len(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	size_t k;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		k = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		k = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		k = 4, cp = c & 0x07;
	else
		return 0;
	if (n < k)
		return 0;
	for (size_t i = 1; i < k; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	/* Overlong forms, UTF-16 surrogates, beyond U+10FFFF. */
	if ((k == 3 && cp < 0x800) || (k == 4 && cp < 0x10000) || (cp >= 0xd800 && cp <= 0xdfff) ||
	    cp > 0x10ffff)
		return 0;
	return k;
}

/*
 * A JSON string of the bytes (@s, @n). Process names and arguments are arbitrary bytes, and
 * JSON text must be UTF-8, so each byte that does not start a valid sequence becomes U+FFFD.
 */
static json_t *json_bytes(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	_cleanup_free_ char *clean = NULL;
	size_t i = 0, o = 0;

	while (i < n) {
		size_t k = p[i] < 0x80 ? 1 : utf8_seq_len(p + i, n - i);

		if (!k)
			break;
		i += k;
	}
	if (i == n)
		return json_stringn_nocheck(s, n);

	/* Rare: rebuild with replacements; each bad byte grows to at most three. */
	clean = malloc(n * 3 + 1);
	if (!clean)
		return NULL;
	for (i = 0; i < n;) {
		size_t k = utf8_seq_len(p + i, n - i);

		if (k) {
			memcpy(clean + o, p + i, k);
			o += k;
			i += k;
		} else {
			memcpy(clean + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	return json_stringn_nocheck(clean, o);
}

static json_t *json_str(const char *s)
{
	return s ? json_bytes(s, strlen(s)) : json_null();
}

/*
 * Names the terminal of @tty_nr after Documentation/admin-guide/devices.txt. Majors outside the
 * table are shown as "major:minor" rather than read from /proc/tty/drivers, which would cost a
 * file per scan for terminals k2i's users rarely have.
 */
static void tty_name(uint32_t tty_nr, char *buf, size_t size)
{
	unsigned major = (tty_nr >> 8) & 0xfff;
	unsigned minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);

	if (major >= 136 && major <= 143)
		snprintf(buf, size, "pts/%u", (major - 136) * 256 + minor);
	else if (major == 4 && minor < 64)
		snprintf(buf, size, "tty%u", minor);
	else if (major == 4)
		snprintf(buf, size, "ttyS%u", minor - 64);
	else if (major == 5 && minor <= 2)
		snprintf(buf, size, "%s", minor == 0 ? "tty" : minor == 1 ? "console" : "ptmx");
	else if (major == 188)
		snprintf(buf, size, "ttyUSB%u", minor);
	else if (major == 166)
		snprintf(buf, size, "ttyACM%u", minor);
	else if (major == 204 && minor >= 64 && minor < 80)
		snprintf(buf, size, "ttyAMA%u", minor - 64);
	else if (major == 229)
		snprintf(buf, size, "hvc%u", minor);
	else
		snprintf(buf, size, "%u:%u", major, minor);
}

/* Formats RFC 3339 UTC with centiseconds; false if the time is not representable. */
static bool format_start_time(const struct snapshot_impl *si, uint64_t ticks, char *buf,
			      size_t size)
{
	uint64_t secs = ticks / si->clk_tck;
	unsigned cs = (unsigned)((ticks % si->clk_tck) * 100 / si->clk_tck);
	struct tm tm;
	time_t t;

	if (secs > (uint64_t)INT64_MAX - si->btime)
		return false;
	t = (time_t)(si->btime + secs);
	if (!gmtime_r(&t, &tm))
		return false;
	snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%02uZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, cs);
	return true;
}

static json_t *json_start_time(const struct snapshot_impl *si, uint64_t ticks)
{
	char buf[64];

	if (!format_start_time(si, ticks, buf, sizeof(buf)))
		return json_null();
	return json_string_nocheck(buf);
}

static json_t *json_cmdline(const struct proc_entry *e)
{
	json_auto_t *a = json_array();
	const char *p = e->cmdline, *end = e->cmdline + e->cmdline_len;

	if (!a)
		return NULL;
	while (p < end) {
		size_t n = strlen(p);

		if (json_array_append_new(a, json_bytes(p, n)) < 0)
			return NULL;
		p += n + 1;
	}
	return json_incref(a);
}

static json_t *json_ns(const struct proc_entry *e)
{
	json_auto_t *o = NULL;

	for (int k = 0; k < _PROC_NS_MAX; k++) {
		if (!e->ns[k])
			continue;
		if (!o && !(o = json_object()))
			return NULL;
		if (json_object_set_new_nocheck(o, proc_ns_names[k],
						json_integer((json_int_t)e->ns[k])) < 0)
			return NULL;
	}
	return o ? json_incref(o) : json_null();
}

/* Two decimals are all a percentage needs. In hundredths: */
static int64_t percent_hundredths(double v)
{
	return v > 0 ? (int64_t)(v * 100.0 + 0.5) : 0;
}

static json_t *json_percent(double v)
{
	return json_real((double)percent_hundredths(v) / 100.0);
}

static bool entry_fields_ok(const struct proc_snapshot *snap, size_t i, uint64_t fields)
{
	/* tid is pid outside a threads view and instance has no data yet: always available. */
	return i < snap->count && !(fields & ~(snap->fields | PROC_FIELD_BIT(PROC_FIELD_TID) |
					       PROC_FIELD_BIT(PROC_FIELD_INSTANCE)));
}

int proc_entry_to_json(const struct proc_snapshot *snap, size_t i, uint64_t fields,
		       const struct proc_instance *inst, json_t **ret)
{
	const struct snapshot_impl *si = snapshot_impl(snap);
	const struct proc_entry *e;
	json_auto_t *o = NULL;

	if (!entry_fields_ok(snap, i, fields))
		return -EINVAL;
	e = &snap->entries[i];
	if (!snap->threads)
		fields &= ~PROC_FIELD_BIT(PROC_FIELD_TID);

	o = json_object();
	if (!o)
		return -ENOMEM;
	for (int f = 0; f < _PROC_FIELD_MAX; f++) {
		char buf[128];
		json_t *v;

		if (!(fields & PROC_FIELD_BIT(f)))
			continue;
		switch (f) {
		case PROC_FIELD_KEY:
			/* The thread's own start time and tid in a threads view. */
			snprintf(buf, sizeof(buf), "%s:%" PRIu64 ":%d", si->boot_id, e->start_ticks,
				 (int)e->tid);
			v = json_string_nocheck(buf);
			break;
		case PROC_FIELD_PID:
			v = json_integer(e->pid);
			break;
		case PROC_FIELD_TID:
			v = json_integer(e->tid);
			break;
		case PROC_FIELD_PPID:
			v = json_integer(e->ppid);
			break;
		case PROC_FIELD_UID:
			v = json_integer(e->uid);
			break;
		case PROC_FIELD_USER:
			v = json_str(e->user);
			break;
		case PROC_FIELD_GID:
			v = json_integer(e->gid);
			break;
		case PROC_FIELD_STATE:
			v = json_bytes(&e->state, 1);
			break;
		case PROC_FIELD_COMM:
			v = json_str(e->comm);
			break;
		case PROC_FIELD_CMDLINE:
			v = json_cmdline(e);
			break;
		case PROC_FIELD_EXE:
			v = json_str(e->exe);
			break;
		case PROC_FIELD_THREADS:
			v = json_integer(e->threads);
			break;
		case PROC_FIELD_NICE:
			v = json_integer(e->nice);
			break;
		case PROC_FIELD_CPU_PERCENT:
			v = json_percent(e->cpu_percent);
			break;
		case PROC_FIELD_CPU_TIME_MS:
			v = json_integer((json_int_t)(e->total_ticks * 1000 / si->clk_tck));
			break;
		case PROC_FIELD_RSS_KB:
			v = json_integer((json_int_t)e->rss_kb);
			break;
		case PROC_FIELD_VSZ_KB:
			v = json_integer((json_int_t)e->vsz_kb);
			break;
		case PROC_FIELD_MEM_PERCENT:
			v = json_percent(e->mem_percent);
			break;
		case PROC_FIELD_TTY:
			if (e->tty_nr == 0) {
				v = json_null();
			} else {
				tty_name(e->tty_nr, buf, sizeof(buf));
				v = json_string_nocheck(buf);
			}
			break;
		case PROC_FIELD_START_TIME:
			v = json_start_time(si, e->start_ticks);
			break;
		case PROC_FIELD_CGROUP:
			v = json_str(e->cgroup);
			break;
		case PROC_FIELD_CONTAINER_ID:
			v = json_str(e->container_id);
			break;
		case PROC_FIELD_NS:
			v = json_ns(e);
			break;
		default: /* PROC_FIELD_INSTANCE */
			v = inst ? json_pack("{s:s, s:s}", "kind", inst->kind, "id", inst->id) :
				   json_null();
			break;
		}
		/* json_object_set_new_nocheck() consumes @v, and fails on NULL (allocation). */
		if (json_object_set_new_nocheck(o, proc_field_names[f], v) < 0)
			return -ENOMEM;
		if (f == PROC_FIELD_CMDLINE && e->cmdline_truncated &&
		    json_object_set_new_nocheck(o, "cmdline_truncated", json_true()) < 0)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(o);
	return 0;
}

/*
 * JSON text, written directly (see proc_entry_to_text()). The tests check that it parses to
 * exactly what proc_entry_to_json() builds.
 */

static int text_reserve(struct proc_text *t, size_t n)
{
	size_t need, size;
	char *d;

	if (t->size - t->len >= n)
		return 0;
	if (n > SIZE_MAX / 2 - t->len)
		return -ENOMEM;
	need = t->len + n;
	size = MAX(need, t->size * 2);
	size = MAX(size, (size_t)4096);
	d = realloc(t->data, size);
	if (!d)
		return -ENOMEM;
	t->data = d;
	t->size = size;
	return 0;
}

int proc_text_append(struct proc_text *out, const char *data, size_t n)
{
	int r;

	if (n == 0)
		return 0;
	r = text_reserve(out, n);
	if (r < 0)
		return r;
	memcpy(out->data + out->len, data, n);
	out->len += n;
	return 0;
}

/* Appends the decimal digits of @v; room for them must be reserved. */
static void text_put_u64(struct proc_text *t, uint64_t v)
{
	char tmp[20];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		t->data[t->len++] = tmp[--n];
}

int proc_text_u64(struct proc_text *t, uint64_t v)
{
	int r = text_reserve(t, 20);

	if (r < 0)
		return r;
	text_put_u64(t, v);
	return 0;
}

int proc_text_i64(struct proc_text *t, int64_t v)
{
	int r = text_reserve(t, 21);

	if (r < 0)
		return r;
	if (v < 0) {
		t->data[t->len++] = '-';
		text_put_u64(t, (uint64_t)0 - (uint64_t)v);
	} else {
		text_put_u64(t, (uint64_t)v);
	}
	return 0;
}

/* A real with at most two decimals and at least one, as jansson writes 1.0 for 1. */
static int text_percent(struct proc_text *t, double v)
{
	int64_t h = percent_hundredths(v);
	int r = text_reserve(t, 24);

	if (r < 0)
		return r;
	text_put_u64(t, (uint64_t)(h / 100));
	t->data[t->len++] = '.';
	t->data[t->len++] = (char)('0' + h / 10 % 10);
	if (h % 10)
		t->data[t->len++] = (char)('0' + h % 10);
	return 0;
}

/* A JSON string of the bytes (@s, @n), with U+FFFD for bytes that are not UTF-8 (json_bytes). */
int proc_text_string(struct proc_text *t, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	char *o;
	int r;

	/* Worst case: every byte a control character, \u00XX. */
	if (n > (SIZE_MAX - 2) / 6)
		return -ENOMEM;
	r = text_reserve(t, n * 6 + 2);
	if (r < 0)
		return r;
	o = t->data + t->len;
	*o++ = '"';
	for (size_t i = 0; i < n;) {
		unsigned char c = p[i];
		size_t k;

		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			*o++ = (char)c;
			i++;
			continue;
		}
		if (c < 0x80) {
			*o++ = '\\';
			switch (c) {
			case '"':
			case '\\':
				*o++ = (char)c;
				break;
			case '\b':
				*o++ = 'b';
				break;
			case '\f':
				*o++ = 'f';
				break;
			case '\n':
				*o++ = 'n';
				break;
			case '\r':
				*o++ = 'r';
				break;
			case '\t':
				*o++ = 't';
				break;
			default:
				memcpy(o, "u00", 3);
				o[3] = hex[c >> 4];
				o[4] = hex[c & 15];
				o += 5;
				break;
			}
			i++;
			continue;
		}
		k = utf8_seq_len(p + i, n - i);
		if (k) {
			memcpy(o, p + i, k);
			o += k;
			i += k;
		} else {
			memcpy(o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	*o++ = '"';
	t->len = (size_t)(o - t->data);
	return 0;
}

static int text_str(struct proc_text *t, const char *s)
{
	return s ? proc_text_string(t, s, strlen(s)) : proc_text_append(t, "null", 4);
}

static int text_cmdline(struct proc_text *t, const struct proc_entry *e)
{
	const char *p = e->cmdline, *end = e->cmdline + e->cmdline_len;
	int r;

	r = proc_text_append(t, "[", 1);
	while (r >= 0 && p < end) {
		size_t n = strlen(p);

		if (p != e->cmdline)
			r = proc_text_append(t, ",", 1);
		if (r >= 0)
			r = proc_text_string(t, p, n);
		p += n + 1;
	}
	return r < 0 ? r : proc_text_append(t, "]", 1);
}

static int text_ns(struct proc_text *t, const struct proc_entry *e)
{
	bool any = false;
	int r = 0;

	for (int k = 0; k < _PROC_NS_MAX && r >= 0; k++) {
		if (!e->ns[k])
			continue;
		r = proc_text_append(t, any ? ",\"" : "{\"", 2);
		if (r >= 0)
			r = proc_text_append(t, proc_ns_names[k], strlen(proc_ns_names[k]));
		if (r >= 0)
			r = proc_text_append(t, "\":", 2);
		if (r >= 0)
			r = proc_text_u64(t, e->ns[k]);
		any = true;
	}
	if (r < 0)
		return r;
	return any ? proc_text_append(t, "}", 1) : proc_text_append(t, "null", 4);
}

int proc_entry_to_text(const struct proc_snapshot *snap, size_t i, uint64_t fields,
		       const struct proc_instance *inst, struct proc_text *out)
{
	const struct snapshot_impl *si = snapshot_impl(snap);
	const struct proc_entry *e;
	bool first = true;
	int r = 0;

	if (!entry_fields_ok(snap, i, fields))
		return -EINVAL;
	e = &snap->entries[i];
	if (!snap->threads)
		fields &= ~PROC_FIELD_BIT(PROC_FIELD_TID);

	r = proc_text_append(out, "{", 1);
	for (int f = 0; f < _PROC_FIELD_MAX && r >= 0; f++) {
		const char *name = proc_field_names[f];
		char buf[128];

		if (!(fields & PROC_FIELD_BIT(f)))
			continue;
		r = text_reserve(out, strlen(name) + 4);
		if (r < 0)
			break;
		if (!first)
			out->data[out->len++] = ',';
		first = false;
		out->data[out->len++] = '"';
		memcpy(out->data + out->len, name, strlen(name));
		out->len += strlen(name);
		out->data[out->len++] = '"';
		out->data[out->len++] = ':';

		switch (f) {
		case PROC_FIELD_KEY:
			snprintf(buf, sizeof(buf), "%s:%" PRIu64 ":%d", si->boot_id, e->start_ticks,
				 (int)e->tid);
			r = text_str(out, buf);
			break;
		case PROC_FIELD_PID:
			r = proc_text_i64(out, e->pid);
			break;
		case PROC_FIELD_TID:
			r = proc_text_i64(out, e->tid);
			break;
		case PROC_FIELD_PPID:
			r = proc_text_i64(out, e->ppid);
			break;
		case PROC_FIELD_UID:
			r = proc_text_u64(out, e->uid);
			break;
		case PROC_FIELD_USER:
			r = text_str(out, e->user);
			break;
		case PROC_FIELD_GID:
			r = proc_text_u64(out, e->gid);
			break;
		case PROC_FIELD_STATE:
			r = proc_text_string(out, &e->state, 1);
			break;
		case PROC_FIELD_COMM:
			r = text_str(out, e->comm);
			break;
		case PROC_FIELD_CMDLINE:
			r = text_cmdline(out, e);
			if (r >= 0 && e->cmdline_truncated) {
				static const char flag[] = ",\"cmdline_truncated\":true";

				r = proc_text_append(out, flag, sizeof(flag) - 1);
			}
			break;
		case PROC_FIELD_EXE:
			r = text_str(out, e->exe);
			break;
		case PROC_FIELD_THREADS:
			r = proc_text_u64(out, e->threads);
			break;
		case PROC_FIELD_NICE:
			r = proc_text_i64(out, e->nice);
			break;
		case PROC_FIELD_CPU_PERCENT:
			r = text_percent(out, e->cpu_percent);
			break;
		case PROC_FIELD_CPU_TIME_MS:
			r = proc_text_u64(out, e->total_ticks * 1000 / si->clk_tck);
			break;
		case PROC_FIELD_RSS_KB:
			r = proc_text_u64(out, e->rss_kb);
			break;
		case PROC_FIELD_VSZ_KB:
			r = proc_text_u64(out, e->vsz_kb);
			break;
		case PROC_FIELD_MEM_PERCENT:
			r = text_percent(out, e->mem_percent);
			break;
		case PROC_FIELD_TTY:
			if (e->tty_nr == 0) {
				r = proc_text_append(out, "null", 4);
			} else {
				tty_name(e->tty_nr, buf, sizeof(buf));
				r = text_str(out, buf);
			}
			break;
		case PROC_FIELD_START_TIME:
			r = format_start_time(si, e->start_ticks, buf, sizeof(buf)) ?
				    text_str(out, buf) :
				    proc_text_append(out, "null", 4);
			break;
		case PROC_FIELD_CGROUP:
			r = text_str(out, e->cgroup);
			break;
		case PROC_FIELD_CONTAINER_ID:
			r = text_str(out, e->container_id);
			break;
		case PROC_FIELD_NS:
			r = text_ns(out, e);
			break;
		default: /* PROC_FIELD_INSTANCE */
			if (!inst) {
				r = proc_text_append(out, "null", 4);
				break;
			}
			r = proc_text_append(out, "{\"kind\":", 8);
			if (r >= 0)
				r = text_str(out, inst->kind);
			if (r >= 0)
				r = proc_text_append(out, ",\"id\":", 6);
			if (r >= 0)
				r = text_str(out, inst->id);
			if (r >= 0)
				r = proc_text_append(out, "}", 1);
			break;
		}
	}
	if (r < 0)
		return r;
	return proc_text_append(out, "}", 1);
}

/*
 * GET /v1/host.
 */

static int count_processes(struct proc_scanner *s, size_t *ret)
{
	size_t count = 0;

	if (lseek(s->root_fd, 0, SEEK_SET) < 0)
		return negative_errno();
	for (;;) {
		ssize_t n = getdents64(s->root_fd, s->dents, DENTS_BUF);

		if (n < 0)
			return negative_errno();
		if (n == 0)
			break;
		for (ssize_t off = 0; off < n;) {
			struct dirent64 *d = (struct dirent64 *)(s->dents + off);
			pid_t pid;

			off += d->d_reclen;
			if (parse_pid_name(d->d_name, &pid))
				count++;
		}
	}
	*ret = count;
	return 0;
}

/* Reads @n numbers (decimals with a fraction allowed) from the start of proc file @name. */
static int read_reals(struct proc_scanner *s, const char *name, double *ret, size_t n)
{
	const char *p, *end;
	size_t len;
	int r;

	r = read_file(s, s->root_fd, name, SMALL_FILE_MAX, &len, NULL);
	if (r < 0)
		return r;
	p = s->buf;
	end = s->buf + len;
	for (size_t k = 0; k < n; k++) {
		const char *t;
		size_t tl;
		char *e;

		if (!next_token(&p, end, &t, &tl) || tl > 32)
			return -EBADMSG;
		/* s->buf is NUL-terminated and the token ends at a blank, so strtod stops there. */
		errno = 0;
		ret[k] = strtod(t, &e);
		if (errno != 0 || e != t + tl || !(*t >= '0' && *t <= '9'))
			return -EBADMSG;
	}
	return 0;
}

static int json_set(json_t *o, const char *key, json_t *v)
{
	return json_object_set_new_nocheck(o, key, v) < 0 ? -ENOMEM : 0;
}

int host_info_json(struct proc_scanner *s, json_t **ret)
{
	static const struct {
		const char *key, *json;
	} mem[] = {
		{ "MemTotal", "total_kb" },	    { "MemFree", "free_kb" },
		{ "MemAvailable", "available_kb" }, { "SwapTotal", "swap_total_kb" },
		{ "SwapFree", "swap_free_kb" },
	};
	json_auto_t *o = NULL;
	json_auto_t *kernel = NULL;
	json_auto_t *memory = NULL;
	json_auto_t *load = NULL;
	struct utsname u;
	double uptime[1], loadavg[3];
	size_t len, nproc;
	long cpus;
	int r;

	if (uname(&u) < 0)
		return negative_errno();
	r = read_reals(s, "uptime", uptime, 1);
	if (r < 0)
		return r;
	r = read_reals(s, "loadavg", loadavg, 3);
	if (r < 0)
		return r;
	r = count_processes(s, &nproc);
	if (r < 0)
		return r;
	cpus = sysconf(_SC_NPROCESSORS_ONLN);

	o = json_object();
	kernel = json_object();
	memory = json_object();
	load = json_array();
	if (!o || !kernel || !memory || !load)
		return -ENOMEM;
	for (size_t k = 0; k < 3; k++)
		if (json_array_append_new(load, json_real(loadavg[k])) < 0)
			return -ENOMEM;
	if (json_set(kernel, "sysname", json_str(u.sysname)) < 0 ||
	    json_set(kernel, "release", json_str(u.release)) < 0 ||
	    json_set(kernel, "version", json_str(u.version)) < 0 ||
	    json_set(kernel, "machine", json_str(u.machine)) < 0)
		return -ENOMEM;

	r = read_file(s, s->root_fd, "meminfo", SMALL_FILE_MAX, &len, NULL);
	if (r < 0)
		return r;
	for (size_t k = 0; k < ELEMENTSOF(mem); k++) {
		uint64_t v;

		/* MemAvailable needs Linux 3.14; a missing line is null rather than an error. */
		if (json_set(memory, mem[k].json,
			     meminfo_get(s->buf, len, mem[k].key, &v) ?
				     json_integer((json_int_t)v) :
				     json_null()) < 0)
			return -ENOMEM;
	}

	if (json_set(o, "hostname", json_str(u.nodename)) < 0 ||
	    json_set(o, "boot_id", json_string_nocheck(s->boot_id)) < 0 ||
	    json_set(o, "kernel", json_incref(kernel)) < 0 ||
	    json_set(o, "uptime_s", json_real(uptime[0])) < 0 ||
	    json_set(o, "load", json_incref(load)) < 0 ||
	    json_set(o, "cpus", cpus > 0 ? json_integer(cpus) : json_null()) < 0 ||
	    json_set(o, "memory", json_incref(memory)) < 0 ||
	    json_set(o, "processes", json_integer((json_int_t)nproc)) < 0)
		return -ENOMEM;
	*ret = TAKE_PTR(o);
	return 0;
}
