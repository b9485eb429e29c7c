/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * procinfo: a hand-written reader of /proc for k2i's process table.
 *
 * A struct proc_scanner owns everything that is reused between scans: the fd of the proc root,
 * read buffers, a uid -> user name cache, the boot id, boot time, CLK_TCK, MemTotal and the
 * previous CPU sample of every process (for interval CPU%). A scan reads only the files the
 * requested fields need (see enum proc_field) and returns an immutable, reference-counted
 * struct proc_snapshot whose entries and strings live in one arena owned by the snapshot.
 *
 * Threads: a scanner is not thread-safe (one per thread); a snapshot is immutable and its
 * reference count is atomic, so it may be shared between threads once returned.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "libcommon/cleanup.h"

struct json_t;

/*
 * The fields of a process object, in the order they appear in JSON. The JSON names are those of
 * proc_field_to_string(). Which /proc files a field costs:
 *   stat (always read):  key pid tid ppid state comm threads nice cpu_percent cpu_time_ms
 *                        rss_kb vsz_kb mem_percent tty start_time
 *   uid gid user:        fstat() of the /proc/<pid> directory (see procinfo.c), or "status"
 *                        when the root is not a procfs (crafted test trees)
 *   cmdline:             "cmdline"
 *   exe:                 readlink "exe"
 *   cgroup container_id: "cgroup"
 *   ns:                  readlink "ns/<type>" for eight types
 *   instance:            {kind, id} of the sandbox or microVM the process belongs to (given
 *                        by the caller, see k2i/instances.h), else null
 */
enum proc_field {
	PROC_FIELD_KEY,
	PROC_FIELD_PID,
	PROC_FIELD_TID, /* emitted in a threads view only */
	PROC_FIELD_PPID,
	PROC_FIELD_UID,
	PROC_FIELD_USER,
	PROC_FIELD_GID,
	PROC_FIELD_STATE,
	PROC_FIELD_COMM,
	PROC_FIELD_CMDLINE,
	PROC_FIELD_EXE,
	PROC_FIELD_THREADS,
	PROC_FIELD_NICE,
	PROC_FIELD_CPU_PERCENT,
	PROC_FIELD_CPU_TIME_MS,
	PROC_FIELD_RSS_KB,
	PROC_FIELD_VSZ_KB,
	PROC_FIELD_MEM_PERCENT,
	PROC_FIELD_TTY,
	PROC_FIELD_START_TIME,
	PROC_FIELD_CGROUP,
	PROC_FIELD_CONTAINER_ID,
	PROC_FIELD_NS,
	PROC_FIELD_INSTANCE,
	_PROC_FIELD_MAX,
};

#define PROC_FIELD_BIT(f) (UINT64_C(1) << (f))
#define PROC_FIELDS_ALL (PROC_FIELD_BIT(_PROC_FIELD_MAX) - 1)

/* Returns the enum proc_field value for a JSON field name, or -EINVAL if unknown. */
int proc_field_from_string(const char *name);

/* Returns the JSON name of @f (static storage), or NULL if @f is out of range. */
const char *proc_field_to_string(int f);

/* The namespace types of the "ns" object, in its key order. */
enum proc_ns_type {
	PROC_NS_CGROUP,
	PROC_NS_IPC,
	PROC_NS_MNT,
	PROC_NS_NET,
	PROC_NS_PID,
	PROC_NS_TIME,
	PROC_NS_USER,
	PROC_NS_UTS,
	_PROC_NS_MAX,
};

/*
 * One process (or, in a threads view, one thread). Only the members backing the fields the
 * snapshot was taken with (struct proc_snapshot.fields) are meaningful; the others are zero or
 * NULL. Strings are NUL-terminated and owned by the snapshot.
 */
struct proc_entry {
	pid_t pid; /* process (thread group) ID */
	pid_t tid; /* thread ID in a threads view, else equal to pid */
	pid_t ppid; /* parent process ID */
	uid_t uid; /* effective user ID (what ps -o user shows) */
	gid_t gid; /* effective group ID */
	char state; /* one letter: R S D Z T t X I ... */
	bool kernel_thread; /* PF_KTHREAD is set */
	bool cmdline_truncated; /* the command line was longer than the scanner's cap */
	int nice; /* -20..19 */
	uint32_t threads; /* number of threads of the process */
	uint32_t tty_nr; /* controlling terminal as encoded in stat (0: none) */
	uint64_t start_ticks; /* start time after boot, in clock ticks */
	uint64_t total_ticks; /* utime + stime, in clock ticks */
	uint64_t rss_kb; /* resident set size */
	uint64_t vsz_kb; /* virtual size */
	double cpu_percent; /* over the last sampling interval, see proc_scanner_scan() */
	double mem_percent; /* rss_kb / MemTotal * 100 */
	const char *comm; /* command name from stat (may hold any byte but NUL) */
	const char *user; /* user name, or the decimal uid if it has none */
	const char *cmdline; /* arguments, each terminated by a NUL; "" for none */
	size_t cmdline_len; /* bytes in cmdline including every argument's NUL */
	const char *exe; /* executable path, NULL if unreadable (kernel threads, EACCES) */
	const char *cgroup; /* cgroup path, NULL if unreadable */
	const char *container_id; /* 64 hex digits, NULL if not in a known container */
	uint64_t ns[_PROC_NS_MAX]; /* namespace inode numbers, 0 if unknown */
};

/*
 * A snapshot of the process table. All members are read-only for users; entries are sorted by
 * (pid, tid).
 */
/* The instance a process belongs to, as its "instance" field shows it (borrowed strings). */
struct proc_instance {
	const char *kind; /* "vm" or "sandbox" */
	const char *id;
};

struct proc_snapshot {
	const struct proc_entry *entries;
	size_t count;
	uint64_t fields; /* the PROC_FIELD_BIT()s that were read */
	bool threads; /* one entry per thread (tid is meaningful) */
	uint64_t realtime_ns; /* CLOCK_REALTIME when the scan started */
	uint64_t monotonic_ns; /* CLOCK_MONOTONIC when the scan started */
};

/* Takes one more reference on @snap (may be NULL) and returns it. */
struct proc_snapshot *proc_snapshot_ref(struct proc_snapshot *snap);

/* Drops one reference on @snap (may be NULL), freeing it with the last one. Returns NULL. */
struct proc_snapshot *proc_snapshot_unref(struct proc_snapshot *snap);

DEFINE_CLEANUP_FUNC(struct proc_snapshot, proc_snapshot_unref)

/* Returns the number of entries of @snap (borrowed). */
size_t proc_snapshot_count(const struct proc_snapshot *snap);

struct proc_scanner;

/*
 * Creates a scanner reading the proc file system mounted at @proc_root (borrowed; "/proc" in
 * production, a crafted directory in tests). Reads @proc_root/sys/kernel/random/boot_id, the
 * btime line of @proc_root/stat and MemTotal of @proc_root/meminfo once. On success stores the
 * new scanner (caller frees with proc_scanner_free()) in *ret and returns 0. Returns -ENOMEM,
 * -EBADMSG if one of those files cannot be parsed, or the -errno of opening or reading them.
 */
int proc_scanner_new(const char *proc_root, struct proc_scanner **ret);

/* Frees @s (may be NULL) and everything it owns; snapshots it returned stay valid. Returns NULL. */
struct proc_scanner *proc_scanner_free(struct proc_scanner *s);

DEFINE_CLEANUP_FUNC(struct proc_scanner, proc_scanner_free)

/* Returns the boot id (borrowed, valid for the scanner's lifetime). */
const char *proc_scanner_boot_id(const struct proc_scanner *s);

/*
 * Sets the cap on the bytes of a command line that are read (default 4096; a longer command
 * line is cut there and flagged cmdline_truncated). Returns 0, or -ERANGE unless
 * 1 <= @max <= 16 MiB.
 */
int proc_scanner_set_cmdline_max(struct proc_scanner *s, size_t max);

/*
 * Sets the minimum age, in microseconds, a process's CPU baseline sample must reach before a
 * later sample replaces it (default 1 s, see proc_scanner_scan()). 0 replaces it on every scan.
 */
void proc_scanner_set_cpu_min_interval(struct proc_scanner *s, uint64_t usec);

/*
 * Sets how long, in microseconds, the command line, exe, cgroup (and container ID) and namespaces
 * read for a process are reused by later scans (default 10 s; 0 reads them on every scan).
 * Only stat (and the uid) are read on every scan: these four cost three quarters of a full scan
 * and seldom change. A cached value is dropped at once when the process execs or dies, as seen
 * in stat (command name, PF_FORKNOEXEC, state Z/X, or code, stack and argument addresses), so
 * within the TTL only changes without exec go unseen: a moved cgroup, setns(), an argv rewritten
 * in place (setproctitle). Each process's TTL is shortened by up to a quarter, varying per
 * process, so refreshes spread over scans.
 */
void proc_scanner_set_cache_ttl(struct proc_scanner *s, uint64_t usec);

/*
 * A clock_gettime()-like source of time: stores the time of @clock (CLOCK_REALTIME,
 * CLOCK_MONOTONIC or CLOCK_BOOTTIME) in nanoseconds in *ret_ns and returns 0, or -errno.
 */
typedef int (*proc_clock_cb_t)(clockid_t clock, uint64_t *ret_ns, void *userdata);

/*
 * Replaces the scanner's clock (tests use it to control CPU% intervals); @cb NULL restores
 * clock_gettime(). @userdata is borrowed and passed to @cb.
 */
void proc_scanner_set_clock(struct proc_scanner *s, proc_clock_cb_t cb, void *userdata);

/*
 * Reads the whole process table, or every thread of it if @threads, reading only what @fields
 * (PROC_FIELD_BIT()s) need; stat is always read. Processes that vanish during the scan are left
 * out. On success stores a new snapshot with one reference in *ret and returns 0.
 *
 * cpu_percent is measured over an interval, like top's Irix mode (it can exceed 100 for a
 * multi-threaded process): the scanner keeps up to two baseline samples (CPU ticks and
 * CLOCK_MONOTONIC time) per process, keyed by pid and start time so a reused PID starts afresh,
 * and reports (ticks - base ticks) / CLK_TCK / (now - base time) * 100 against the newest
 * baseline that is at least the minimum interval old (proc_scanner_set_cpu_min_interval()),
 * or the older one while the newest is younger. A new sample becomes a baseline only once the
 * newest baseline is that old, so a burst of scans never shrinks the interval to nothing. A
 * process seen for the first time, or with no baseline that old yet, reports its lifetime
 * average instead, so the value is never missing. Every scan updates the baselines whatever
 * @fields are, and drops those of processes (or, for @threads, threads) that are gone.
 *
 * Returns -EINVAL if @fields has bits outside PROC_FIELDS_ALL, -ENOMEM, or the -errno of an
 * unexpected failure to list or read /proc (not ENOENT/ESRCH, which mean a process vanished, nor
 * EACCES on exe or ns, which leaves those values out).
 */
int proc_scanner_scan(struct proc_scanner *s, uint64_t fields, bool threads,
		      struct proc_snapshot **ret);

/*
 * As proc_scanner_scan() for the process @pid alone (a snapshot of one entry, never a threads
 * view). Returns -ENOENT or -ESRCH if there is no such process, and -ENOENT for the ID of a
 * thread that is not a thread group leader; -EINVAL for @pid <= 0.
 */
int proc_scanner_read_pid(struct proc_scanner *s, pid_t pid, uint64_t fields,
			  struct proc_snapshot **ret);

/*
 * Builds a new snapshot from @base (borrowed, not a threads view, taken by @s) with the entries
 * of the processes in @gone (@n_gone PIDs) removed and the processes in @changed (@n_changed
 * PIDs, new or exec'd) re-read from /proc with base->fields. A PID in @changed that no longer
 * exists, or that names a thread other than a group leader, is dropped; one that is also in
 * @gone is re-read if it exists (PID reuse). Both lists may hold duplicates and need no order;
 * IDs <= 0 are ignored. Entries for other PIDs are copied from @base unchanged (their values,
 * cpu_percent included, are as of @base). The result is sorted by pid like any snapshot, and
 * has base's fields, threads and times (realtime_ns, monotonic_ns), although the re-read
 * entries are newer.
 *
 * Re-read processes follow the rules of proc_scanner_scan(): cpu_percent against the scanner's
 * baselines (which the re-read updates), and the values proc_scanner_set_cache_ttl() caches are
 * read afresh (an exec need not show in stat) and cached again. The baselines and cached values
 * of the processes the patch removes (gone, or replaced by another process with the same PID)
 * are dropped at once, so a caller that scans seldom does not accumulate those of dead ones.
 *
 * Cost: the re-reads, a copy of the entries array, and no copy of the strings of entries that
 * come from a full scan: the result holds a reference on the string arena of the full scan
 * @base derives from (@base itself, or the scan a patched @base was built from), not on @base,
 * so it stays valid after @base's last reference is dropped and the entries array of @base is
 * freed then. Strings that a patched @base read itself are copied, so patching a patch never
 * chains: a snapshot pins at most one other arena. Memory held is that scan's strings plus
 * those of processes re-read since; the values of copied entries age, so rescan now and then.
 *
 * On success stores a new snapshot with one reference in *ret and returns 0; leaves *ret
 * untouched on failure. Returns -EINVAL if @base is a threads view, -ENOMEM, or the -errno of
 * an unexpected failure to read /proc (not ENOENT/ESRCH, which mean a process vanished).
 */
int proc_scanner_patch(struct proc_scanner *s, const struct proc_snapshot *base, const pid_t *gone,
		       size_t n_gone, const pid_t *changed, size_t n_changed,
		       struct proc_snapshot **ret);

/*
 * Builds the JSON object of entry @i of @snap with exactly the fields in @fields that apply
 * (tid only in a threads view; "cmdline_truncated": true is added beside a truncated cmdline).
 * Strings that are not valid UTF-8 get U+FFFD for each bad byte. On success stores a new
 * reference in *ret and returns 0. Returns -EINVAL if @i is out of range or @fields asks for a
 * field the snapshot was not taken with (tid and instance excepted), or -ENOMEM.
 */
int proc_entry_to_json(const struct proc_snapshot *snap, size_t i, uint64_t fields,
		       const struct proc_instance *inst, struct json_t **ret);

/*
 * A growable buffer of JSON text. Start it zeroed; the caller frees data with free().
 */
struct proc_text {
	char *data; /* not NUL-terminated */
	size_t len;
	size_t size;
};

/*
 * Appends the JSON text of the object proc_entry_to_json() would build for the same arguments
 * (compact, same keys in the same order; percentages are written with at most two decimals,
 * e.g. 0.1 where jansson's default dump writes 0.10000000000000001) to @out, growing it. This
 * is the fast path for large lists: it makes no allocation per process and no jansson values,
 * which costs a small fraction of building and then dumping the objects. Returns 0, -EINVAL as
 * proc_entry_to_json(), or -ENOMEM (@out then holds a partial object; its len may be reset).
 */
int proc_entry_to_text(const struct proc_snapshot *snap, size_t i, uint64_t fields,
		       const struct proc_instance *inst, struct proc_text *out);

/* Appends @n bytes of @data to @out. Returns 0 or -ENOMEM. */
int proc_text_append(struct proc_text *out, const char *data, size_t n);

/*
 * Appends the JSON string of the @n bytes at @s (escaped; bytes that are not UTF-8 become
 * U+FFFD), or a decimal number. Return 0 or -ENOMEM.
 */
int proc_text_string(struct proc_text *out, const char *s, size_t n);
int proc_text_u64(struct proc_text *out, uint64_t v);
int proc_text_i64(struct proc_text *out, int64_t v);

/*
 * Builds the object of GET /v1/host: hostname, boot_id, kernel {sysname, release, version,
 * machine}, uptime_s, load [1, 5, 15], cpus (online), memory {total_kb, free_kb, available_kb,
 * swap_total_kb, swap_free_kb} and processes (the number of processes). On success stores a new
 * reference in *ret and returns 0; returns -ENOMEM, -EBADMSG for unparsable proc files, or the
 * -errno of reading them.
 */
int host_info_json(struct proc_scanner *s, struct json_t **ret);

/*
 * Pure parsers, exposed for tests and fuzzing. They read exactly @len bytes of @buf (which need
 * not be NUL-terminated) and never allocate.
 */

/* The fields of /proc/<pid>/stat k2i uses. */
struct proc_stat {
	pid_t pid;
	const char *comm; /* borrowed from the parsed buffer, not NUL-terminated */
	size_t comm_len;
	char state;
	pid_t ppid;
	int tty_nr;
	unsigned flags; /* PF_* */
	uint64_t utime, stime;
	int nice;
	uint32_t num_threads;
	uint64_t start_ticks;
	uint64_t vsize; /* bytes */
	uint64_t rss; /* pages */
	/*
	 * Addresses of the memory map (fields 26-28, 48-49), which exec replaces; 0 when absent
	 * or hidden (the kernel shows them only to who may ptrace the process).
	 */
	uint64_t start_code, end_code, start_stack, arg_start, arg_end;
};

/*
 * Parses /proc/<pid>/stat. comm is taken between the first '(' and the last ')', so it may hold
 * spaces, parentheses and newlines. Fields up to rss (24) are required, later ones optional.
 * Returns 0, or -EBADMSG if a required field is missing or out of range.
 */
int proc_parse_stat(const char *buf, size_t len, struct proc_stat *ret);

/* The fields of /proc/<pid>/status k2i uses; absent lines leave has_* false. */
struct proc_status {
	bool has_uid, has_gid, has_tgid;
	uid_t uid; /* effective, the second number of "Uid:" */
	gid_t gid; /* effective, the second number of "Gid:" */
	pid_t tgid;
};

/* Parses /proc/<pid>/status. Returns 0, or -EBADMSG if a Uid, Gid or Tgid line is malformed. */
int proc_parse_status(const char *buf, size_t len, struct proc_status *ret);

/*
 * Picks the cgroup path out of /proc/<pid>/cgroup: the cgroup v2 "0::" line, else the v1
 * "name=systemd" line, else the first line. Stores a pointer into @buf and the length in *ret and
 * *ret_len and returns 0, or returns -ENODATA if there is no well-formed line.
 */
int proc_parse_cgroup(const char *buf, size_t len, const char **ret, size_t *ret_len);

/*
 * Finds a container ID in a cgroup path: a path component that is 64 hex digits, bare
 * (/docker/<id>, kubepods/.../<id>) or as <runtime>-<id>[.scope] for docker, cri-containerd,
 * crio and libpod (conmon scopes do not count). The innermost match wins. Stores a pointer into
 * @path (64 bytes long) in *ret and returns 0, or returns -ENOENT.
 */
int proc_container_id(const char *path, size_t len, const char **ret);
