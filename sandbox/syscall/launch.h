/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Starting the sandboxed program: namespaces, the root built by pivot_root, capabilities,
 * no_new_privs, the seccomp filter, rlimits, and a minimal init (PID 1 of the sandbox) that
 * forwards signals to the program and exits with its status.
 *
 * The launcher (the caller, which becomes the supervisor) and the init talk over a
 * SOCK_SEQPACKET pair in three steps:
 *   1. launch_spawn() clones the init into new namespaces; it waits.
 *   2. launch_configure() writes the uid/gid maps (and whatever else the caller must do from
 *      outside, e.g. joining a cgroup, happens before it) and lets the init build the root and
 *      load the filter; it returns the seccomp listener fd the init sent back.
 *   3. launch_start() lets the init fork and exec the program once the supervisor listens.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct policy;

struct launch_params {
	const struct policy *policy; /* borrowed */
	char *const *argv; /* program and arguments; argv[0] is searched in PATH */
	char *const *envp; /* the program's environment */
	const char *chdir; /* working directory inside the sandbox; NULL: "/" */
	const void *filter; /* struct sock_filter[], from policy_build_filter(); borrowed */
	size_t filter_len;
};

struct launch {
	pid_t pid; /* the init's pid in the launcher's pid namespace */
	int pidfd; /* owned */
	int sock; /* owned: the launcher's end of the pair */
};

/*
 * Clones the init into new user, PID, mount, UTS, IPC, cgroup and (for "net none") network
 * namespaces. Returns 0 and fills @ret, or -errno (-EPERM if user namespaces are refused).
 */
int launch_spawn(const struct launch_params *lp, struct launch *ret);

/*
 * Maps the caller's uid and gid into the sandbox, lets the init build the root and install the
 * filter, and receives the listener. Returns 0 with the listener in *ret_notify_fd, or -errno;
 * a setup error inside the sandbox is logged with the init's message and returns -EIO.
 * @ret_sync_wakeup tells whether the filter's flags included WAIT_KILLABLE_RECV.
 */
int launch_configure(struct launch *l, int *ret_notify_fd, bool *ret_wait_killable);

/* Lets the init start the program. Returns 0 or -errno. */
int launch_start(struct launch *l);

/* Closes what @l owns (does not kill the init). */
void launch_done(struct launch *l);
