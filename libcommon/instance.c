/* SPDX-License-Identifier: MIT */
#include "libcommon/instance.h"

#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "libcommon/cleanup.h"
#include "libcommon/fdutil.h"
#include "libcommon/log.h"
#include "libcommon/strutil.h"

/* A record is a few hundred bytes; anything much larger is not one of ours. */
#define INSTANCE_RECORD_MAX (64 * 1024)

const char *instance_kind_to_string(enum instance_kind k)
{
	switch (k) {
	case INSTANCE_VM:
		return "vm";
	case INSTANCE_SANDBOX:
		return "sandbox";
	}
	return NULL;
}

int instance_kind_from_string(const char *s, enum instance_kind *ret)
{
	if (!s)
		return -EINVAL;
	if (strcmp(s, "vm") == 0)
		*ret = INSTANCE_VM;
	else if (strcmp(s, "sandbox") == 0)
		*ret = INSTANCE_SANDBOX;
	else
		return -EINVAL;
	return 0;
}

bool instance_id_valid(const char *id)
{
	size_t n;

	if (!id || id[0] == '\0' || id[0] == '-')
		return false;
	n = strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
	/* The id becomes a file name: no '/', no '.', so no path can escape the directory. */
	return id[n] == '\0' && n <= INSTANCE_ID_MAX;
}

int instance_id_new(char ret[static INSTANCE_ID_MAX + 1])
{
	uint8_t raw[8];
	size_t got = 0;

	while (got < sizeof(raw)) {
		ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return negative_errno();
		got += (size_t)n;
	}
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(ret + 2 * i, 3, "%02x", raw[i]);
	return 0;
}

int instance_paths(const char *rundir, const char *id, char **ret_dir, char **ret_json,
		   char **ret_sock)
{
	_cleanup_free_ char *dir = NULL;
	_cleanup_free_ char *json = NULL;
	_cleanup_free_ char *sock = NULL;

	if (!rundir || !instance_id_valid(id))
		return -EINVAL;
	if (asprintf(&dir, "%s/instances", rundir) < 0) {
		dir = NULL;
		return -ENOMEM;
	}
	if (asprintf(&json, "%s/%s.json", dir, id) < 0) {
		json = NULL;
		return -ENOMEM;
	}
	if (asprintf(&sock, "%s/%s.sock", dir, id) < 0) {
		sock = NULL;
		return -ENOMEM;
	}
	if (ret_dir)
		*ret_dir = TAKE_PTR(dir);
	if (ret_json)
		*ret_json = TAKE_PTR(json);
	if (ret_sock)
		*ret_sock = TAKE_PTR(sock);
	return 0;
}

int instance_pid_start(pid_t pid, uint64_t *ret)
{
	_cleanup_free_ char *buf = NULL;
	char path[64];
	const char *p;
	int r;

	if (pid <= 0)
		return -ESRCH;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	r = read_full_file_at(AT_FDCWD, path, 4096, &buf, NULL);
	if (r == -ENOENT)
		return -ESRCH;
	if (r < 0)
		return r;
	/* comm (field 2) may hold spaces and ')': the fields resume after the last ')'. */
	p = strrchr(buf, ')');
	if (!p)
		return -EBADMSG;
	p++;
	/* Fields 3 (state) to 21 precede starttime, field 22. */
	for (int field = 3; field <= 22; field++) {
		p = skip_blanks(p);
		if (field == 22) {
			char num[32];
			size_t n = strcspn(p, " \n");

			if (n == 0 || n >= sizeof(num))
				return -EBADMSG;
			memcpy(num, p, n);
			num[n] = '\0';
			return safe_atou64(num, ret) < 0 ? -EBADMSG : 0;
		}
		p += strcspn(p, " \n");
		if (*p != ' ')
			return -EBADMSG;
	}
	return -EBADMSG;
}

bool instance_alive(const struct instance_record *rec)
{
	uint64_t start;

	if (instance_pid_start(rec->pid, &start) < 0)
		return false;
	/* An unknown start time cannot tell a reused pid apart: the pid's existence must do. */
	return rec->pid_start == 0 || rec->pid_start == start;
}

void instance_record_done(struct instance_record *rec)
{
	if (!rec)
		return;
	free(rec->api_socket);
	rec->api_socket = NULL;
}

void instance_records_free(struct instance_record *recs, size_t n)
{
	for (size_t i = 0; recs && i < n; i++)
		instance_record_done(&recs[i]);
	free(recs);
}

/* RFC 3339 in UTC with milliseconds: "2026-11-22T05:00:00.123Z". */
static int format_time(uint64_t ns, char *buf, size_t size)
{
	time_t sec = (time_t)(ns / 1000000000u);
	struct tm tm;
	size_t n;

	if (!gmtime_r(&sec, &tm))
		return -EOVERFLOW;
	n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
	if (n == 0)
		return -EOVERFLOW;
	if ((size_t)snprintf(buf + n, size - n, ".%03uZ",
			     (unsigned)(ns % 1000000000u / 1000000u)) >= size - n)
		return -EOVERFLOW;
	return 0;
}

/* The inverse of format_time(): "YYYY-MM-DDTHH:MM:SS[.frac]Z" (1..9 fraction digits). */
static int parse_time(const char *s, uint64_t *ret)
{
	struct tm tm = { .tm_isdst = 0 };
	const char *p;
	uint64_t frac = 0;
	int digits = 0;
	time_t t;

	p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!p)
		return -EINVAL;
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++) {
			if (++digits > 9)
				return -EINVAL;
			frac = frac * 10 + (uint64_t)(*p - '0');
		}
		if (digits == 0)
			return -EINVAL;
	}
	if ((p[0] != 'Z' && p[0] != 'z') || p[1] != '\0')
		return -EINVAL;
	for (; digits < 9; digits++)
		frac *= 10;
	t = timegm(&tm);
	if (t < 0)
		return -EINVAL;
	*ret = (uint64_t)t * 1000000000u + frac;
	return 0;
}

/* Serialises @rec. Returns 0 and a malloc'ed string, -EINVAL or -ENOMEM. */
static int record_dump(const struct instance_record *rec, char **ret)
{
	json_auto_t *o = NULL;
	const char *kind = instance_kind_to_string(rec->kind);
	char started[64], pid_start[32];
	char *text;
	int r;

	if (!kind || !rec->api_socket || rec->pid <= 0)
		return -EINVAL;
	r = format_time(rec->started_at_ns, started, sizeof(started));
	if (r < 0)
		return -EINVAL;
	/* A string: 64-bit values may pass 2^53, where JSON readers lose precision. */
	snprintf(pid_start, sizeof(pid_start), "%" PRIu64, rec->pid_start);
	o = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s}", "id", rec->id, "kind", kind, "pid",
		      (json_int_t)rec->pid, "pid_start", pid_start, "api_socket", rec->api_socket,
		      "started_at", started);
	if (!o)
		return -EINVAL; /* an api_socket that is not UTF-8, or out of memory */
	text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (!text)
		return -ENOMEM;
	*ret = text;
	return 0;
}

/* Parses a record's text. Returns 0 (api_socket malloc'ed) or -EBADMSG / -ENOMEM. */
static int record_parse(const char *text, size_t len, struct instance_record *ret)
{
	struct instance_record rec = { .api_socket = NULL };
	json_auto_t *o = NULL;
	json_error_t err;
	const char *id, *kind, *pid_start, *api_socket, *started;
	json_int_t pid;

	o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
	if (!o) {
		log_debug("Instance record: %s (line %d)", err.text, err.line);
		return -EBADMSG;
	}
	if (json_unpack_ex(o, &err, 0, "{s:s, s:s, s:I, s:s, s:s, s:s}", "id", &id, "kind", &kind,
			   "pid", &pid, "pid_start", &pid_start, "api_socket", &api_socket,
			   "started_at", &started) < 0) {
		log_debug("Instance record: %s", err.text);
		return -EBADMSG;
	}
	if (!instance_id_valid(id) || instance_kind_from_string(kind, &rec.kind) < 0 || pid <= 0 ||
	    pid > INT32_MAX || safe_atou64(pid_start, &rec.pid_start) < 0 ||
	    parse_time(started, &rec.started_at_ns) < 0)
		return -EBADMSG;
	memcpy(rec.id, id, strlen(id) + 1);
	rec.pid = (pid_t)pid;
	rec.api_socket = strdup(api_socket);
	if (!rec.api_socket)
		return -ENOMEM;
	*ret = rec;
	return 0;
}

static int record_read_at(int dirfd, const char *path, struct instance_record *ret)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	int r;

	r = read_full_file_at(dirfd, path, INSTANCE_RECORD_MAX, &text, &len);
	if (r == -EFBIG)
		return -EBADMSG;
	if (r < 0)
		return r;
	return record_parse(text, len, ret);
}

int instance_read(const char *path, struct instance_record *ret)
{
	return record_read_at(AT_FDCWD, path, ret);
}

int instance_write(const char *rundir, const struct instance_record *rec)
{
	_cleanup_free_ char *dir = NULL;
	_cleanup_free_ char *json = NULL;
	_cleanup_free_ char *text = NULL;
	struct instance_record old;
	int r;

	if (!rec)
		return -EINVAL;
	r = instance_paths(rundir, rec->id, &dir, &json, NULL);
	if (r < 0)
		return r;
	r = record_dump(rec, &text);
	if (r < 0)
		return r;
	r = mkdir_p(dir, 0755);
	if (r < 0)
		return r;

	/*
	 * First try to create the record exclusively, so two launchers racing for a new id never
	 * both believe they own it. Only if one exists is it judged, and replaced when stale.
	 */
	r = write_file_atomic(json, text, strlen(text), 0644, 1);
	if (r != -EEXIST)
		return r;
	r = instance_read(json, &old);
	if (r >= 0) {
		bool alive = instance_alive(&old);

		instance_record_done(&old);
		if (alive)
			return -EEXIST;
	} else if (r != -EBADMSG && r != -ENOENT) {
		return r;
	}
	/* A stale or unparsable record (a crashed launcher's): the temp file + rename replaces it. */
	return write_file_atomic(json, text, strlen(text), 0644, 0);
}

int instance_remove(const char *rundir, const char *id)
{
	_cleanup_free_ char *json = NULL;
	_cleanup_free_ char *sock = NULL;
	int r, k;

	r = instance_paths(rundir, id, NULL, &json, &sock);
	if (r < 0)
		return r;
	r = RET_NERRNO(unlink(json));
	k = RET_NERRNO(unlink(sock));
	if (r < 0 && r != -ENOENT)
		return r;
	if (k < 0 && k != -ENOENT)
		return k;
	return 0;
}

static int record_cmp(const void *a, const void *b)
{
	return strcmp(((const struct instance_record *)a)->id,
		      ((const struct instance_record *)b)->id);
}

int instance_list(const char *rundir, struct instance_record **ret, size_t *ret_n)
{
	_cleanup_free_ char *dir = NULL;
	struct instance_record *recs = NULL;
	size_t n = 0, size = 0;
	DIR *d;
	int r = 0;

	if (!rundir)
		return -EINVAL;
	if (asprintf(&dir, "%s/instances", rundir) < 0) {
		dir = NULL;
		return -ENOMEM;
	}
	d = opendir(dir);
	if (!d && errno != ENOENT)
		return negative_errno();

	while (d) {
		struct instance_record rec;
		struct dirent *de;
		size_t len;
		int k;

		errno = 0;
		de = readdir(d);
		if (!de) {
			r = errno ? -errno : 0;
			break;
		}
		/* Temporary files ("<id>.json.tmp.XXXXXX") and dot files are not records. */
		len = strlen(de->d_name);
		if (de->d_name[0] == '.' || !endswith(de->d_name, ".json"))
			continue;
		/* Only regular files: opening a FIFO planted here would block the reader. */
		if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
			continue;
		k = record_read_at(dirfd(d), de->d_name, &rec);
		if (k == -ENOMEM) {
			r = k;
			break;
		}
		if (k < 0) {
			log_debug_errno(k, "Skipping instance record '%s/%s': %m", dir, de->d_name);
			continue;
		}
		/* The file name is what instance_remove() and readers use: it must match. */
		if (len - 5 != strlen(rec.id) || strncmp(de->d_name, rec.id, len - 5) != 0) {
			log_debug("Skipping instance record '%s/%s': id '%s' does not match", dir,
				  de->d_name, rec.id);
			instance_record_done(&rec);
			continue;
		}
		if (n == size) {
			size_t nsize = size ? size * 2 : 8;
			struct instance_record *nrecs = reallocarray(recs, nsize, sizeof(*recs));

			if (!nrecs) {
				instance_record_done(&rec);
				r = -ENOMEM;
				break;
			}
			recs = nrecs;
			size = nsize;
		}
		recs[n++] = rec;
	}
	if (d)
		closedir(d);
	if (r < 0) {
		instance_records_free(recs, n);
		return r;
	}
	/* Always an array, even when empty, so callers never test for NULL. */
	if (!recs) {
		recs = calloc(1, sizeof(*recs));
		if (!recs)
			return -ENOMEM;
	}
	qsort(recs, n, sizeof(*recs), record_cmp);
	*ret = recs;
	*ret_n = n;
	return 0;
}

int instance_socket_share(const char *path)
{
	struct group gr, *res = NULL;
	char buf[4096];

	/* A missing group (or an NSS failure) keeps the socket root-only: fail closed. */
	if (getgrnam_r(INSTANCE_GROUP, &gr, buf, sizeof(buf), &res) != 0 || !res)
		return 0;
	if (chown(path, (uid_t)-1, res->gr_gid) < 0 || chmod(path, 0660) < 0)
		return -errno;
	return 0;
}

int instance_relay_socket(const char *rundir, char **ret)
{
	return asprintf(ret, "%s/middlecon.sock", rundir) < 0 ? -ENOMEM : 0;
}
