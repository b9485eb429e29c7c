/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The supervisor: a single-threaded libevent loop on the seccomp listener, the init's pidfd,
 * the launcher's signals and the instance's control socket. Each notification is dispatched to
 * a handler (handlers/<family>.c) that performs the call on the program's behalf and answers
 * with its result, injects a descriptor, or refuses it; it counts every decision and records
 * refusals in a ring and in the optional audit log.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct policy;
struct supervisor;

#define SUPERVISOR_RING 64 /* refusals kept for GET / */

struct supervisor_params {
	const struct policy *policy; /* borrowed; outlives the supervisor */
	int notify_fd; /* the seccomp listener; taken over (closed by supervisor_free) */
	pid_t init_pid; /* the sandbox's init, in our pid namespace */
	int init_pidfd; /* borrowed */
	const char *id; /* instance id; borrowed */
	const char *api_socket; /* control socket path, or NULL for none; borrowed */
	const char *relay_socket; /* middlecon's socket to register sandbox.<id> with, or NULL */
	int audit_fd; /* NDJSON audit log (O_APPEND), or -1; taken over */
};

/*
 * Creates the supervisor: opens the sandbox's root through /proc/<init>/root, listens on the
 * control socket, and sets the listener's synchronous wake-up mode where the kernel has it.
 * Returns 0 and the supervisor in *ret, or -errno (the listener is closed on failure too).
 */
int supervisor_new(const struct supervisor_params *sp, struct supervisor **ret);

/*
 * Runs the loop until the init exits; returns its status as a shell reports it (the code, or
 * 128+N for signal N), or -errno if the loop failed.
 */
int supervisor_run(struct supervisor *sv);

/* Frees everything the supervisor owns. Accepts NULL; returns NULL. */
struct supervisor *supervisor_free(struct supervisor *sv);
