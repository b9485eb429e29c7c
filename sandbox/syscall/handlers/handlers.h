/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What a syscall handler sees and may use (supervisor.c implements the helpers).
 *
 * A handler decides on copies only: every argument that lives in the program's memory is
 * copied once with sbx_read_*(), which re-validates the notification (SECCOMP_IOCTL_NOTIF_ID_VALID)
 * after the read, so a recycled pid can never feed it another process's bytes; the copy is
 * never read again from the program. Paths are resolved by the kernel beneath the sandbox's
 * root (openat2 RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) and judged by their canonical path,
 * which the kernel reports for the resulting descriptor.
 *
 * A handler fills the verdict of its call. Any error on the way denies: handlers return a
 * negative errno, never SBX_CONTINUE, when something fails.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include <linux/seccomp.h>

struct supervisor;
struct policy;

enum sbx_verdict {
	SBX_REPLY, /* answer with ->val, or with -ret of the handler */
	SBX_ADDFD, /* inject ->fd (the supervisor closes it) and answer with its number */
	SBX_CONTINUE, /* let the kernel run the call: only exec, see handlers/exec.c */
	SBX_PENDING, /* the handler answers later (asynchronous connect, blocking send) */
};

struct sbx_call {
	struct supervisor *sv;
	const struct seccomp_notif *n;
	const struct policy *policy;
	int notify_fd;
	enum sbx_verdict verdict;
	int64_t val;
	int fd; /* SBX_ADDFD: the descriptor to inject */
	bool fd_cloexec;
	/* SBX_REPLY: a signal the supervisor sends the calling thread right after the answer, as
	 * the kernel would have (SIGPIPE for a send on a closed stream), or 0. Needs the status
	 * loaded (sbx_load_status()) before the handler returns. */
	int signal_after;
	bool denied; /* refused by the policy (audited), as opposed to a failure of the call */
	const char *reason; /* why it was refused (static string) */
	char detail[512]; /* the path or address the decision was about, for the audit */
	/* lazily read from /proc/<tid>/status */
	bool have_status;
	pid_t tgid, ns_tgid, ns_tid;
	mode_t umask;
};

/* Handler signature: returns >= 0 (the verdict and values are in @c) or -errno to answer. */
typedef int (*sbx_handler_t)(struct sbx_call *c);

/* Stores (a prefix of) @s as the call's detail for the audit. */
static inline void sbx_set_detail(struct sbx_call *c, const char *s)
{
	size_t n = strnlen(s, sizeof(c->detail) - 1);
	memcpy(c->detail, s, n);
	c->detail[n] = '\0';
}

/* Marks the call as refused by the policy; returns -@err for "return sbx_deny(...)". */
int sbx_deny(struct sbx_call *c, int err, const char *reason);

/* Whether the notification is still pending (0) or the target went away (-ENOENT). */
int sbx_valid(struct sbx_call *c);

/* Copies a NUL-terminated string of at most @size-1 bytes from the program. Returns its
 * length, -EFAULT, -ENAMETOOLONG, or -ENOENT if the notification is gone. */
int sbx_read_string(struct sbx_call *c, uint64_t addr, char *buf, size_t size);

/* Copies exactly @len bytes from the program. Returns 0, -EFAULT or -ENOENT. */
int sbx_read_mem(struct sbx_call *c, uint64_t addr, void *buf, size_t len);

/* Duplicates the program's descriptor @fd into the supervisor (pidfd_getfd). Returns the new
 * descriptor (close-on-exec), -EBADF, or -ENOENT if the notification is gone. */
int sbx_get_fd(struct sbx_call *c, int fd);

/* Reads Tgid, NStgid, NSpid and Umask of the target. Returns 0 or -errno. */
int sbx_load_status(struct sbx_call *c);

/*
 * Resolves @path relative to the program's @dirfd (AT_FDCWD: its working directory) beneath
 * the sandbox's root, following a final symlink unless @nofollow. Returns an O_PATH descriptor
 * and its canonical path (malloc'ed, in *ret_canon), or -errno (-ENOENT etc. as the kernel
 * reports them; -ELOOP for magic links).
 */
int sbx_resolve(struct sbx_call *c, int dirfd, const char *path, bool nofollow, char **ret_canon);

/*
 * Resolves the directory part of @path as sbx_resolve() does and returns an O_PATH descriptor
 * of that directory, the final name (*ret_name, malloc'ed, never "", "." or "..") and the
 * canonical path the name would have (*ret_canon, malloc'ed). Returns the fd or -errno.
 */
int sbx_resolve_parent(struct sbx_call *c, int dirfd, const char *path, char **ret_name,
		       char **ret_canon);

/* The canonical path of the supervisor's descriptor @fd (as seen inside the sandbox), or
 * -errno; -EACCES if the kernel reports no reachable absolute path. */
int sbx_fd_path(struct sbx_call *c, int fd, char **ret);

/* Reopens the supervisor's descriptor @fd with @flags through /proc/self/fd. Returns the new
 * descriptor or -errno. Never for an open that may block (a FIFO without O_NONBLOCK). */
int sbx_reopen(struct sbx_call *c, int fd, int flags);

/* The host /proc the supervisor opened (for *at() calls on "self/fd/N"). */
int sbx_proc_fd(struct sbx_call *c);

/* Registers an asynchronous answer: @fd becomes writable (connect finished) or @timeout_ms
 * passes; then the supervisor answers the notification with SO_ERROR and closes @fd. Takes
 * @fd. Returns 0 or -errno (then @fd is closed and the caller answers itself). */
int sbx_pending_connect(struct sbx_call *c, int fd, int timeout_ms);

/* Opens @fd (O_PATH, taken) with @flags in a helper process, for opens that may block (a
 * FIFO waits for its other end); the descriptor is injected when the open returns, the helper
 * is killed if the notification goes away. Returns 0 or -errno (then @fd is closed). */
int sbx_pending_open(struct sbx_call *c, int fd, int flags);

/* sbx_resume_t's answer "not done yet, keep waiting". */
#define SBX_RESUME_WAIT 1

/*
 * Continues a call that waits for its socket: called with the handler's @data and the socket
 * @fd (the supervisor's copy) when @fd became writable (@ready) or a retry interval passed.
 * The supervisor calls it only while the notification is still pending, so nothing is done
 * for a program that gave up. Returns SBX_RESUME_WAIT to wait again, or the answer: >= 0 with
 * the value in *ret_val, or -errno. A signal number stored in *ret_signal is sent to the
 * calling thread after the answer.
 */
typedef int (*sbx_resume_t)(void *data, int fd, bool ready, int64_t *ret_val, int *ret_signal);

/*
 * Registers an answer that comes later, without ever blocking the loop: @resume runs when
 * @fd becomes writable, and every few milliseconds to at most 50 ms (backing off) when the
 * socket says writable but the call still cannot proceed (a datagram's receiver is full).
 * Takes @fd (closed when the call ends) and @data (freed with @free_data, which may be NULL,
 * when the call is answered or abandoned, also on failure here). Sets the verdict to
 * SBX_PENDING and returns 0, or -errno (then the caller answers itself).
 */
int sbx_pending_call(struct sbx_call *c, int fd, sbx_resume_t resume, void (*free_data)(void *),
		     void *data);

/* The handlers, by family. */
int sbx_handle_open(struct sbx_call *c);
int sbx_handle_path_mutation(struct sbx_call *c);
int sbx_handle_exec(struct sbx_call *c);
int sbx_handle_net(struct sbx_call *c);
/* sendto with a destination, sendmsg, sendmmsg (handlers/net.c). */
int sbx_handle_send(struct sbx_call *c);
