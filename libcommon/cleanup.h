/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Scope-based cleanup (after systemd's cleanup-fundamental.h and crun's utils.h).
 *
 * Every variable with a cleanup attribute is initialised at its declaration (NULL or -EBADF).
 * Ownership leaves a scope through TAKE_PTR()/TAKE_FD(), which return the value and reset the
 * variable so the cleanup becomes a no-op.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p)
{
	free(*(void **)p);
}

/* Closes *fd if it is valid, preserving errno so a cleanup never clobbers an error path. */
static inline void closep(int *fd)
{
	if (*fd >= 0) {
		int saved_errno = errno;
		close(*fd);
		errno = saved_errno;
	}
}

static inline void fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)

/*
 * DEFINE_CLEANUP_FUNC(SSL_CTX, SSL_CTX_free) defines SSL_CTX_freep(SSL_CTX **), usable as
 * _cleanup_(SSL_CTX_freep). The generated function ignores NULL.
 */
#define DEFINE_CLEANUP_FUNC(type, func)      \
	static inline void func##p(type **p) \
	{                                    \
		if (*p)                      \
			func(*p);            \
	}

#define TAKE_PTR(p)                   \
	({                            \
		typeof(p) _ptr = (p); \
		(p) = NULL;           \
		_ptr;                 \
	})

#define TAKE_FD(fd)             \
	({                      \
		int _fd = (fd); \
		(fd) = -EBADF;  \
		_fd;            \
	})

/*
 * Evaluates a libc call that returns -1 and sets errno, and turns the result into the project's
 * convention: the (non-negative) result, or -errno. errno of 0 after a failure becomes -EIO.
 */
#define RET_NERRNO(expr)                                   \
	({                                                 \
		long _r = (long)(expr);                    \
		_r < 0 ? (errno > 0 ? -errno : -EIO) : _r; \
	})

/* Returns -errno for the last failed libc call, never 0. */
static inline int negative_errno(void)
{
	return errno > 0 ? -errno : -EIO;
}

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

#define MIN(a, b)                   \
	({                          \
		typeof(a) _a = (a); \
		typeof(b) _b = (b); \
		_a < _b ? _a : _b;  \
	})

#define MAX(a, b)                   \
	({                          \
		typeof(a) _a = (a); \
		typeof(b) _b = (b); \
		_a > _b ? _a : _b;  \
	})
