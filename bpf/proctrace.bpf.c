// SPDX-License-Identifier: MIT OR GPL-2.0-only
/*
 * proctrace: process lifecycle events (fork of a new process, exec, exit of a whole process)
 * from the scheduler's tracepoints, as fixed-size records in a ring buffer.
 *
 * The programs are BTF-typed raw tracepoints (tp_btf): they attach by BTF ID through
 * BPF_RAW_TRACEPOINT_OPEN, so they need neither tracefs nor debugfs, and the verifier checks
 * their arguments against the running kernel's prototype. Fields are read with CO-RE
 * relocations, so one object runs on every kernel with BTF (5.15 and later for what we use:
 * ring buffers, bpf_ktime_get_boot_ns(), task->start_boottime).
 *
 * Exit of a whole process: sched_process_exit fires once per thread. A process is dead when its
 * last thread exits, which do_exit() knows as "group_dead" (signal->live dropped to zero). Recent
 * kernels pass group_dead to the tracepoint (proctrace_exit); on older ones proctrace_exit_live
 * reads signal->live, which do_exit() has already decremented when it fires the tracepoint. User
 * space loads whichever the kernel's BTF prototype of the tracepoint fits. Reporting the
 * leader's exit instead (what exitsnoop does) would be wrong twice: the leader may call
 * pthread_exit() and leave threads running, and the leader is often not the last thread out of
 * exit_group(). Tetragon hooks acct_process() for the same reason; a tracepoint is cheaper than
 * a kprobe and a stable attach point.
 */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "bpf/proctrace.h"

/*
 * GPL-compatible because bpf_probe_read_kernel() (used by BPF_CORE_READ) is a GPL-only helper;
 * the project's own license (MIT) is one of the two offered.
 */
char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* From include/linux/sched/signal.h; unchanged since 2.6. Not in BTF, it is a #define. */
#define SIGNAL_GROUP_EXIT 0x00000004

/* User space sets the size with bpf_map__set_max_entries() before load. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, PROCTRACE_RINGBUF_DEFAULT);
} events SEC(".maps");

/* Records that did not fit in the ring buffer; one counter per CPU, summed by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/*
 * proctrace_exit_live only: processes whose exit was already reported. Two threads exiting at
 * once can both see signal->live at zero (the first decrements to 1, the second to 0, then the
 * first reads it), so the first to insert the process's key reports it and the other sees
 * -EEXIST. The key holds the start time so a reused PID never matches; stale keys age out of the
 * LRU. Only multi-threaded exits use it.
 */
struct exit_key {
	__u64 start_boottime;
	__u32 tgid;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct exit_key);
	__type(value, __u8);
} exit_seen SEC(".maps");

static __always_inline struct proctrace_record *record_reserve(void)
{
	struct proctrace_record *r;
	__u32 zero = 0;
	__u64 *n;

	r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (r)
		return r;
	n = bpf_map_lookup_elem(&lost, &zero);
	if (n)
		*n += 1; /* per-CPU, and tracepoint programs do not nest on one CPU */
	return NULL;
}

/*
 * Fills the fields common to every record from @task. The process-level values (start time,
 * comm) come from the thread group leader, which is what /proc/<pid> shows: a thread may have
 * renamed itself with PR_SET_NAME.
 */
static __always_inline void record_fill(struct proctrace_record *r, __u32 type,
					struct task_struct *task)
{
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);

	r->time_ns = bpf_ktime_get_boot_ns();
	/* /proc/<pid>/stat: nsec_to_clock_t(start_boottime), USER_HZ = 100 */
	r->start_ticks = BPF_CORE_READ(leader, start_boottime) / PROCTRACE_NSEC_PER_TICK;
	r->cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	r->type = type;
	r->flags = 0;
	r->pid = BPF_CORE_READ(task, tgid);
	r->tid = BPF_CORE_READ(task, pid);
	r->ppid = BPF_CORE_READ(task, real_parent, tgid);
	r->uid = BPF_CORE_READ(task, real_cred, euid.val);
	r->gid = BPF_CORE_READ(task, real_cred, egid.val);
	r->exit_status = 0;
	BPF_CORE_READ_STR_INTO(&r->comm, leader, comm);
	r->filename[0] = '\0';
	r->args_len = 0;
	r->pad = 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(proctrace_fork, struct task_struct *parent, struct task_struct *child)
{
	struct proctrace_record *r;

	/* CLONE_THREAD: a new thread of an existing process, not a process */
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0;
	r = record_reserve();
	if (!r)
		return 0;
	/* The child is complete (credentials, cgroup, start time) but has not run yet. */
	record_fill(r, PROCTRACE_FORK, child);
	bpf_ringbuf_submit(r, 0);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(proctrace_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	const char *filename = BPF_CORE_READ(bprm, filename);
	struct proctrace_record *r;
	unsigned long args_start, args_end, len;
	long n;
	char c;

	r = record_reserve();
	if (!r)
		return 0;
	/* After de_thread() the caller is the leader, with the leader's PID and start time. */
	record_fill(r, PROCTRACE_EXEC, p);
	r->tid = old_pid;
	n = bpf_probe_read_kernel_str(r->filename, sizeof(r->filename), filename);
	if (n < 0)
		r->filename[0] = '\0';
	else if (n == sizeof(r->filename) &&
		 bpf_probe_read_kernel(&c, 1, filename + sizeof(r->filename) - 1) == 0 && c)
		r->flags |= PROCTRACE_F_FILENAME_TRUNC;

	/* The tracepoint runs in the new program's context (current == p), whose argument
	 * strings the kernel has just copied to its stack, so they are resident. */
	args_start = BPF_CORE_READ(p, mm, arg_start);
	args_end = BPF_CORE_READ(p, mm, arg_end);
	len = args_end > args_start ? args_end - args_start : 0;
	if (len > PROCTRACE_ARGS_LEN) {
		len = PROCTRACE_ARGS_LEN;
		r->flags |= PROCTRACE_F_ARGS_TRUNC;
	}
	/* The mask bounds the length for the verifier; PROCTRACE_ARGS_LEN is a power of two. */
	if (len > 0 && bpf_probe_read_user(r->args, ((len - 1) & (PROCTRACE_ARGS_LEN - 1)) + 1,
					   (const void *)args_start) == 0)
		r->args_len = (__u32)len;
	bpf_ringbuf_submit(r, 0);
	return 0;
}

/*
 * Reports the death of @p's process; @p is its last thread. The status is what wait(2) will
 * return: the group exit code after exit_group() or a fatal signal, else the leader's own code
 * (a leader that called the exit syscall and left the other threads to finish).
 */
static __always_inline int exit_report(struct task_struct *p)
{
	struct signal_struct *sig = BPF_CORE_READ(p, signal);
	struct proctrace_record *r;

	r = record_reserve();
	if (!r)
		return 0;
	record_fill(r, PROCTRACE_EXIT, p);
	if (BPF_CORE_READ(sig, flags) & SIGNAL_GROUP_EXIT)
		r->exit_status = BPF_CORE_READ(sig, group_exit_code);
	else
		r->exit_status = BPF_CORE_READ(p, group_leader, exit_code);
	bpf_ringbuf_submit(r, 0);
	return 0;
}

/* Kernels whose tracepoint says whether this is the last thread. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(proctrace_exit, struct task_struct *p, bool group_dead)
{
	if (!group_dead)
		return 0;
	return exit_report(p);
}

/* Older kernels: signal->live has already been decremented by this thread's do_exit(). */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(proctrace_exit_live, struct task_struct *p)
{
	struct signal_struct *sig = BPF_CORE_READ(p, signal);
	struct exit_key key = {};
	__u8 one = 1;

	if (BPF_CORE_READ(sig, live.counter) != 0)
		return 0;
	/*
	 * nr_threads drops only when a thread is released, after this point: 1 means no other
	 * thread can be racing us to report this process.
	 */
	if (BPF_CORE_READ(sig, nr_threads) > 1) {
		key.start_boottime = BPF_CORE_READ(p, group_leader, start_boottime);
		key.tgid = BPF_CORE_READ(p, tgid);
		if (bpf_map_update_elem(&exit_seen, &key, &one, BPF_NOEXIST) != 0)
			return 0;
	}
	return exit_report(p);
}
