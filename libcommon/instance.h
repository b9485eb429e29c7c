/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The instance registry (ARCHITECTURE.md "Runtime paths"): every running sandbox or microVM has
 * <rundir>/instances/<id>.json, its record, and <rundir>/instances/<id>.sock, its control
 * socket (libcommon/ctlsock.h). k2i lists the records to report instances; a launcher writes its
 * record once its control socket listens and removes both files when it exits.
 *
 * The record is one JSON object:
 *   {"id": "…", "kind": "vm"|"sandbox", "pid": 123, "pid_start": "4567",
 *    "api_socket": "/run/k2i/instances/ID.sock", "started_at": "2026-11-22T05:00:00.123Z"}
 * pid_start is field 22 of /proc/<pid>/stat (start time in clock ticks, a string: 64 bits) so a
 * reader can tell a live launcher from a reused pid.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define INSTANCE_ID_MAX 64 /* [A-Za-z0-9_-], 1..64 bytes, not starting with '-' */

enum instance_kind {
	INSTANCE_VM,
	INSTANCE_SANDBOX,
};

struct instance_record {
	char id[INSTANCE_ID_MAX + 1];
	enum instance_kind kind;
	pid_t pid;
	uint64_t pid_start; /* 0 if unknown */
	char *api_socket; /* malloc'ed */
	uint64_t started_at_ns; /* CLOCK_REALTIME */
};

/* "vm" / "sandbox"; and back (-EINVAL). */
const char *instance_kind_to_string(enum instance_kind k);
int instance_kind_from_string(const char *s, enum instance_kind *ret);

/* Returns whether @id is a valid instance id. */
bool instance_id_valid(const char *id);

/* Writes a new random id (16 lowercase hex characters, getrandom()) to @ret. Returns 0 or -errno. */
int instance_id_new(char ret[static INSTANCE_ID_MAX + 1]);

/* Returns 0 and malloc'ed "<rundir>/instances" (*ret_dir), "<…>/<id>.json" and "<…>/<id>.sock"
 * paths (each argument may be NULL), -EINVAL for an invalid id, or -ENOMEM. */
int instance_paths(const char *rundir, const char *id, char **ret_dir, char **ret_json,
		   char **ret_sock);

/* Reads /proc/<pid>/stat's start time. Returns 0, -ESRCH, or -errno. */
int instance_pid_start(pid_t pid, uint64_t *ret);

/*
 * Writes @rec to <rundir>/instances/<id>.json (the directory is created 0755), atomically
 * (temporary file + rename), mode 0644. Returns -EEXIST if a record with this id exists whose
 * process is still alive (same pid and pid_start); a stale one is replaced. Returns 0 or -errno.
 */
int instance_write(const char *rundir, const struct instance_record *rec);

/*
 * Lets the host's daemons reach the control socket @path: when the group INSTANCE_GROUP exists
 * (the k2i and middlecon service user, deploy/systemd), the socket gets that group and mode
 * 0660, so an unprivileged k2i can ask a root launcher for its state; otherwise it is left as
 * it is (0600: root only). Returns 0, or the -errno of chown/chmod.
 */
#define INSTANCE_GROUP "k2i"
int instance_socket_share(const char *path);

/* The relay's socket a launcher registers with: "<rundir>/middlecon.sock" (malloc'ed in *ret).
 * Returns 0 or -ENOMEM. */
int instance_relay_socket(const char *rundir, char **ret);

/* Removes <id>.json and <id>.sock. Missing files are not an error. Returns 0 or -errno. */
int instance_remove(const char *rundir, const char *id);

/* Parses the record file @path into @ret (api_socket malloc'ed). Returns 0, -EBADMSG, -errno. */
int instance_read(const char *path, struct instance_record *ret);

/* Returns whether the record's process is alive: pid exists and has the recorded pid_start. */
bool instance_alive(const struct instance_record *rec);

/* Frees what @rec owns (not @rec). */
void instance_record_done(struct instance_record *rec);

/*
 * Reads every <rundir>/instances/<id>.json (unparsable files are skipped with a debug log).
 * Returns 0 with a malloc'ed array in *ret and its length in *ret_n (free with
 * instance_records_free()), or -errno. A missing directory is an empty list.
 */
int instance_list(const char *rundir, struct instance_record **ret, size_t *ret_n);
void instance_records_free(struct instance_record *recs, size_t n);
