/* SPDX-License-Identifier: MIT */
#pragma once

/* File and descriptor helpers. All return >= 0 on success or -errno. */

#include <stddef.h>
#include <sys/types.h>

/*
 * Reads all of @fd (from its current offset) into a new NUL-terminated buffer. Fails with
 * -EFBIG if there are more than @max bytes. On success *ret (caller frees) and *ret_len (may be
 * NULL) are set.
 */
int read_full_fd(int fd, size_t max, char **ret, size_t *ret_len);

/* As read_full_fd() for the file at @path (relative to @dirfd, or AT_FDCWD). */
int read_full_file_at(int dirfd, const char *path, size_t max, char **ret, size_t *ret_len);

/*
 * Writes @len bytes of @data to @path atomically: a temporary file in the same directory with
 * mode @mode, fsync, then rename over @path. With @exclusive, fails with -EEXIST if @path
 * exists (link instead of rename), so two processes racing to create the same file never
 * overwrite each other.
 */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, int exclusive);

/* Creates @path and any missing parents with @mode (existing directories are left as they are). */
int mkdir_p(const char *path, mode_t mode);

/* Writes all of @len bytes, retrying on EINTR and short writes. */
int loop_write(int fd, const void *buf, size_t len);

/*
 * Listens on the Unix stream socket @path (non-blocking, close-on-exec) with @backlog, mode
 * @mode (set with chmod after bind: the umask can only have made it stricter until then). A
 * socket file nobody listens on (left by a process that crashed) is replaced; a live one gives
 * -EADDRINUSE and anything that is not a socket -EEXIST, neither touched. The directory must
 * exist. Returns 0 and the socket in *ret_fd, -ENAMETOOLONG, -EINVAL (empty path) or -errno.
 */
int unix_listen(const char *path, mode_t mode, int backlog, int *ret_fd);
