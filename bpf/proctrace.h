/* SPDX-License-Identifier: MIT OR GPL-2.0-only */
#pragma once

/*
 * proctrace: the record bpf/proctrace.bpf.c writes to its ring buffer and k2i/proctrace.c reads.
 *
 * Both sides compile this header: the BPF object with the types of the generated vmlinux.h, user
 * space with <linux/types.h>. Every record has the same size and an explicit layout (no implicit
 * padding, 8-byte aligned), so the ring buffer needs no framing beyond its own header and a record
 * is valid whatever the compiler of either side.
 *
 * Only process-level events are written: a fork that creates a new process (not a thread), a
 * successful exec, and the exit of a whole process (its last thread), see proctrace.bpf.c.
 */

#ifndef __bpf__
#include <linux/types.h>
#endif

/* TASK_COMM_LEN of the kernel: 15 bytes and a NUL. */
#define PROCTRACE_COMM_LEN 16
/* The exec'd path is cut to this many bytes including the NUL (PROCTRACE_F_FILENAME_TRUNC). */
#define PROCTRACE_FILENAME_LEN 256
/* EXEC: the first bytes of the new program's arguments (NUL-separated, PROCTRACE_F_ARGS_TRUNC). */
#define PROCTRACE_ARGS_LEN 256

/* Ring buffer size when user space does not set one: 4 MiB, about 12,000 records. */
#define PROCTRACE_RINGBUF_DEFAULT (4u * 1024 * 1024)

/* Clock ticks of /proc/<pid>/stat: USER_HZ is 100 on every architecture, so 10 ms per tick. */
#define PROCTRACE_NSEC_PER_TICK 10000000ull

enum proctrace_type {
	PROCTRACE_FORK = 1, /* a new process (thread group) was created */
	PROCTRACE_EXEC = 2, /* a process replaced its program (execve succeeded) */
	PROCTRACE_EXIT = 3, /* the last thread of a process exited */
};

/* Bits of proctrace_record.flags. */
enum proctrace_flag {
	PROCTRACE_F_FILENAME_TRUNC = 1u << 0, /* filename was longer than the buffer and was cut */
	PROCTRACE_F_ARGS_TRUNC = 1u << 1, /* the arguments were longer than args and were cut */
};

struct proctrace_record {
	__u64 time_ns; /* CLOCK_BOOTTIME of the event (bpf_ktime_get_boot_ns()) */
	__u64 start_ticks; /* process start after boot in clock ticks, as /proc/<pid>/stat field 22 */
	__u64 cgroup_id; /* cgroup v2 ID (inode number of the cgroup directory) of the task */
	__u32 type; /* enum proctrace_type */
	__u32 flags; /* enum proctrace_flag bits */
	__u32 pid; /* process ID (thread group ID), in the initial PID namespace */
	/*
	 * The thread: FORK the new process's only thread (== pid); EXEC the thread that called
	 * execve() (its ID before exec; afterwards it is the leader and its ID is pid); EXIT the
	 * last thread to exit.
	 */
	__u32 tid;
	__u32 ppid; /* parent process ID (real_parent's thread group ID) */
	__u32 uid; /* effective user ID (objective credentials, as /proc shows) */
	__u32 gid; /* effective group ID */
	/*
	 * EXIT only: the process's wait(2) status: (code << 8) for exit(code); the signal number,
	 * plus 0x80 with a core dump, for a death by signal. 0 for FORK and EXEC.
	 */
	__u32 exit_status;
	/* the process's command name (its leader's comm), NUL-ended */
	char comm[PROCTRACE_COMM_LEN];
	/* EXEC only: the path given to execve() (may be relative), NUL-ended; "" otherwise */
	char filename[PROCTRACE_FILENAME_LEN];
	/*
	 * EXEC only: the new program's argv as it lies in its memory (mm->arg_start..arg_end),
	 * NUL-separated, args_len bytes; read at exec time so a process that lives a millisecond
	 * still has its command line.
	 */
	__u32 args_len;
	__u32 pad;
	char args[PROCTRACE_ARGS_LEN];
};
