/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * proctrace: process lifecycle events (fork of a new process, exec, exit of a whole process) for
 * k2i's live process table, event stream and ring of recent exits, delivered from a libevent
 * loop to one callback.
 *
 * Three sources, tried at start-up in this order, the first that works is used:
 *   PROCTRACE_SOURCE_BPF      bpf/proctrace.bpf.c on the scheduler's tracepoints, read from a
 *                             BPF ring buffer. Every field, from the kernel, at the moment of
 *                             the event; no process is missed unless the ring buffer overflows
 *                             (counted as lost). Needs BTF (/sys/kernel/btf/vmlinux) and the
 *                             privilege to load tracing programs (CAP_BPF and CAP_PERFMON, or
 *                             CAP_SYS_ADMIN).
 *   PROCTRACE_SOURCE_NETLINK  the kernel's process connector (NETLINK_CONNECTOR, CN_IDX_PROC):
 *                             every fork, exec and exit with PIDs and exit status, but nothing
 *                             else; comm, uid, gid and start time are read from /proc/<pid> when
 *                             the event is handled, if the process is still there (a process
 *                             that lived a millisecond usually is not, and its event says so with
 *                             has_* false). Needs the initial user and PID namespaces, and on
 *                             older kernels CAP_NET_ADMIN (6.18, where this was tested, lets any
 *                             user listen; the exe link then often stays unreadable).
 *   PROCTRACE_SOURCE_POLL     a periodic scan of /proc compared with the previous one: processes
 *                             that appeared (fork, and exec if they no longer run their parent's
 *                             program), changed program (exec), became zombies or disappeared
 *                             (exit). A process that lives between two scans is never seen, and
 *                             an exit has a status only if the scan saw the zombie. Needs nothing.
 *
 * All events are reported in the initial PID namespace (the IDs /proc shows to k2i when k2i runs
 * in it). Everything runs on the caller's event loop: the module never blocks it, except for a
 * bounded wait (at most 1 s) for the process connector's acknowledgement in proctrace_new().
 * Not thread-safe: one struct proctrace is used from the loop's thread only.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "libcommon/cleanup.h"

struct event_base;

enum proc_event_type {
	PROC_EVENT_FORK, /* a new process was created (a fork, vfork or clone without CLONE_THREAD) */
	PROC_EVENT_EXEC, /* a process started a new program (a successful execve) */
	PROC_EVENT_EXIT, /* a process died: its last thread exited; it may not be reaped yet */
	_PROC_EVENT_TYPE_MAX,
};

/* TASK_COMM_LEN: up to 15 bytes and a NUL. */
#define PROC_EVENT_COMM_MAX 16
/* Room for the exec'd path including its NUL; longer paths are cut (filename_truncated). */
#define PROC_EVENT_FILENAME_MAX 256
/* Bytes of an exec'd program's arguments carried by an event. */
#define PROC_EVENT_ARGS_MAX 256

/*
 * One event. A fixed-size value: the callback may copy it as is. A member the source could not
 * provide is zero (or "") and its has_* flag is false.
 */
struct proc_event {
	enum proc_event_type type;
	/*
	 * CLOCK_REALTIME in ns of the event: when it happened (BPF, netlink), or of the scan that
	 * noticed it (poll).
	 */
	uint64_t time_ns;
	pid_t pid; /* process ID (thread group ID); always set */
	/*
	 * Thread ID: for FORK the new process's thread (== pid); for EXEC the thread that called
	 * execve(), which has become the leader (pid); for EXIT the last thread to exit (poll:
	 * the leader; netlink: the leader unless it exited before other threads). Always set.
	 */
	pid_t tid;
	pid_t ppid; /* parent process ID (has_ppid) */
	uid_t uid; /* effective user ID (has_ids) */
	gid_t gid; /* effective group ID (has_ids) */
	/*
	 * Process start after boot in clock ticks, exactly /proc/<pid>/stat field 22 (USER_HZ =
	 * 100). With the boot ID and pid it is the process key that survives PID reuse
	 * (has_start_ticks). Outside the initial time namespace /proc adds its boot-time offset;
	 * this value never does.
	 */
	uint64_t start_ticks;
	/* EXIT only (has_exit_status): how the process ended, decoded from the wait(2) status. */
	int exit_code; /* exit(code) value 0..255; 0 when killed by a signal */
	int exit_signal; /* the signal that killed it; 0 when it called exit */
	bool core_dumped; /* killed by exit_signal and dumped core */
	/* cgroup v2 ID: the inode number of its cgroup directory (has_cgroup_id; BPF only) */
	uint64_t cgroup_id;
	bool has_ppid;
	bool has_ids; /* uid and gid */
	bool has_comm;
	bool has_start_ticks;
	bool has_exit_status;
	bool has_cgroup_id;
	bool has_filename;
	/* comm as /proc/<pid>/stat shows it (the leader's); may hold any byte but NUL (has_comm) */
	char comm[PROC_EVENT_COMM_MAX];
	/*
	 * EXEC only (has_filename): the program. BPF gives the path passed to execve() (it may be
	 * relative, or /dev/fd/N for fexecve); netlink and poll give the resolved /proc/<pid>/exe
	 * (which may end in " (deleted)").
	 */
	char filename[PROC_EVENT_FILENAME_MAX];
	bool filename_truncated; /* filename was longer and has been cut */
	/*
	 * EXEC only (has_args; BPF only): the new program's arguments, NUL-separated, args_len
	 * bytes, read in the kernel at exec time; cut at PROC_EVENT_ARGS_MAX (args_truncated).
	 */
	bool has_args;
	bool args_truncated;
	uint16_t args_len;
	char args[PROC_EVENT_ARGS_MAX];
};

/* Returns "fork", "exec" or "exit", or NULL if @type is out of range. */
const char *proc_event_type_to_string(enum proc_event_type type);

/*
 * Called for each event, on the event loop. @ev is borrowed for the duration of the call. The
 * callback must not call proctrace_free() on the object that called it.
 */
typedef void (*proc_event_cb_t)(const struct proc_event *ev, void *userdata);

enum proctrace_source {
	PROCTRACE_SOURCE_BPF,
	PROCTRACE_SOURCE_NETLINK,
	PROCTRACE_SOURCE_POLL,
	_PROCTRACE_SOURCE_MAX,
};

/* Returns "bpf", "netlink" or "poll", or NULL if @source is out of range. */
const char *proctrace_source_to_string(enum proctrace_source source);

/* Parses "bpf", "netlink" or "poll". Returns the source, or -EINVAL. */
int proctrace_source_from_string(const char *s);

#define PROCTRACE_BUFFER_SIZE_DEFAULT (4u * 1024 * 1024)
#define PROCTRACE_BUFFER_SIZE_MIN (64u * 1024)
#define PROCTRACE_BUFFER_SIZE_MAX (256u * 1024 * 1024)
#define PROCTRACE_POLL_INTERVAL_DEFAULT_MS 1000u
#define PROCTRACE_POLL_INTERVAL_MIN_MS 10u
#define PROCTRACE_POLL_INTERVAL_MAX_MS 3600000u

struct proctrace_options {
	bool no_bpf; /* never try the BPF source (k2i --no-bpf) */
	bool no_netlink; /* never try the process connector (tests of the poll source) */
	/*
	 * Bytes of kernel buffer between the kernel and the loop: the BPF ring buffer (rounded up
	 * to a power of two) or the netlink socket's receive buffer. A burst that outruns the loop
	 * by more than this is lost (and counted). PROCTRACE_BUFFER_SIZE_MIN..MAX.
	 */
	uint32_t buffer_size;
	/* Interval of the poll source's scans, PROCTRACE_POLL_INTERVAL_MIN_MS..MAX_MS. */
	uint32_t poll_interval_ms;
	/*
	 * Tests only: detect the exit of a whole process from signal->live even where the kernel's
	 * tracepoint passes group_dead, to exercise the code path of older kernels.
	 */
	bool bpf_exit_by_live_count;
	/* Tests only: the proc file system to read instead of "/proc" (NULL: "/proc"). */
	const char *proc_root;
};

/* Sets every member of @opts to its default (all sources allowed, defaults above). */
void proctrace_options_init(struct proctrace_options *opts);

struct proctrace;

/*
 * Starts the best source @opts allows on @base (borrowed; it must outlive the object) and stores
 * the new object (caller frees with proctrace_free()) in *ret. @opts is copied. @cb is called
 * with @userdata (borrowed) for each event once the loop runs. Why better sources were refused is
 * kept for proctrace_reason(); the poll source is the last resort and its failure fails the call.
 * libbpf's diagnostics are routed to log_debug() (libbpf_set_print() is process-wide).
 *
 * Returns -EINVAL for a NULL @base, @opts, @cb or @ret, -ERANGE for an option out of range,
 * -ENOMEM, or the -errno of opening /proc or of setting up the poll source (reading /proc).
 * @opts->proc_root, when set, is borrowed and must outlive the object.
 */
int proctrace_new(struct event_base *base, const struct proctrace_options *opts, proc_event_cb_t cb,
		  void *userdata, struct proctrace **ret);

/* Stops the source and frees @t (may be NULL) with everything it owns. Returns NULL. */
struct proctrace *proctrace_free(struct proctrace *t);

DEFINE_CLEANUP_FUNC(struct proctrace, proctrace_free)

/* Returns the source in use. */
enum proctrace_source proctrace_source(const struct proctrace *t);

/*
 * Returns why better sources than the one in use were not used, one "name: why" clause per
 * refused source joined by "; " (for example "bpf: disabled; netlink: Operation not
 * permitted"), or "" when the best source is in use. Borrowed, valid while @t lives. The caller
 * logs it once.
 */
const char *proctrace_reason(const struct proctrace *t);

struct proctrace_stats {
	uint64_t received; /* events delivered to the callback */
	/*
	 * Events the kernel could not hand over: BPF records that did not fit in the ring buffer
	 * (exact); netlink receive-buffer overruns (ENOBUFS), each of which lost one or more
	 * events. Always 0 for the poll source, which cannot know what it missed.
	 */
	uint64_t lost;
};

/*
 * Delivers, now, the events the kernel has already handed over but the loop has not read yet
 * (BPF and netlink sources; the poll source learns only at its next scan). A caller about to
 * answer from state the events maintain calls this first, so a process that existed before the
 * request is never missing because its event was still queued.
 */
void proctrace_drain(struct proctrace *t);

/* Stores the counters of @t in *ret. */
void proctrace_stats(const struct proctrace *t, struct proctrace_stats *ret);
