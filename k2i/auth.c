/* SPDX-License-Identifier: MIT */
#include "k2i/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "libcommon/cleanup.h"
#include "libcommon/fdutil.h"
#include "libcommon/log.h"
#include "libcommon/strutil.h"

#define TOKEN_FILE_MAX (1024 * 1024)

struct auth_tokens {
	unsigned char (*digests)[SHA256_DIGEST_LENGTH];
	size_t n;
};

struct auth_tokens *auth_tokens_free(struct auth_tokens *t)
{
	if (!t)
		return NULL;
	free(t->digests);
	free(t);
	return NULL;
}

static int parse_hex_digest(const char *s, unsigned char *out)
{
	if (strlen(s) != 2 * SHA256_DIGEST_LENGTH)
		return -EINVAL;
	for (size_t i = 0; i < SHA256_DIGEST_LENGTH; i++) {
		unsigned v;
		char byte[3] = { s[2 * i], s[2 * i + 1], 0 };

		if (strspn(byte, "0123456789abcdefABCDEF") != 2 || sscanf(byte, "%2x", &v) != 1)
			return -EINVAL;
		out[i] = (unsigned char)v;
	}
	return 0;
}

int auth_tokens_load(const char *path, struct auth_tokens **ret)
{
	_cleanup_free_ char *text = NULL;
	_cleanup_close_ int fd = -EBADF;
	struct auth_tokens *t = NULL;
	unsigned lineno = 0;
	struct stat st;
	size_t len = 0;
	char *save = NULL;
	int r;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return negative_errno();
	if (fstat(fd, &st) < 0)
		return negative_errno();
	if (st.st_mode & 0007)
		return log_err_errno(EPERM, "Token file '%s' is readable by others; chmod o-rwx it",
				     path);
	r = read_full_fd(fd, TOKEN_FILE_MAX, &text, &len);
	if (r < 0)
		return r;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *s = skip_blanks(strstrip_right(line)), *hex;
		void *nd;

		lineno++;
		if (*s == '\0' || *s == '#')
			continue;
		nd = reallocarray(t->digests, t->n + 1, sizeof(*t->digests));
		if (!nd) {
			auth_tokens_free(t);
			return -ENOMEM;
		}
		t->digests = nd;
		hex = startswith(s, "sha256:");
		if (hex) {
			if (parse_hex_digest(hex, t->digests[t->n]) < 0) {
				auth_tokens_free(t);
				return log_err_errno(EINVAL, "%s:%u: malformed sha256: digest",
						     path, lineno);
			}
		} else {
			SHA256((const unsigned char *)s, strlen(s), t->digests[t->n]);
		}
		t->n++;
	}
	/* The plaintext tokens are no longer needed; do not leave them in freed memory. */
	OPENSSL_cleanse(text, len);
	if (t->n == 0) {
		auth_tokens_free(t);
		return log_err_errno(EINVAL, "Token file '%s' has no token", path);
	}
	*ret = t;
	return 0;
}

bool auth_tokens_check(const struct auth_tokens *t, const char *token)
{
	unsigned char d[SHA256_DIGEST_LENGTH];
	int match = 0;

	if (!t || !token || !*token)
		return false;
	SHA256((const unsigned char *)token, strlen(token), d);
	/* Compare against every digest, without stopping early, so timing does not tell which
	 * (or whether any) entry matched. */
	for (size_t i = 0; i < t->n; i++)
		match |= CRYPTO_memcmp(d, t->digests[i], sizeof(d)) == 0;
	return match;
}
