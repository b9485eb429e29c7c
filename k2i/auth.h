/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Bearer tokens for clients that cannot present a certificate (h2load, a browser behind a
 * proxy). The token file has one token per line: either the token itself or "sha256:<64 hex>",
 * its SHA-256 digest; '#' lines and blank lines are ignored. Only digests are kept in memory,
 * and a presented token is compared, in constant time, against every digest.
 */

#include <stdbool.h>

struct auth_tokens;

/*
 * Loads @path. The file must not be readable by others (mode & 0007 == 0): tokens are
 * credentials. Returns 0 and the set in *ret, -ENOENT, -EPERM (world-readable), -EINVAL
 * (a malformed digest line, or no token at all; logged with its line number), -ENOMEM.
 */
int auth_tokens_load(const char *path, struct auth_tokens **ret);

/* Accepts NULL, returns NULL. */
struct auth_tokens *auth_tokens_free(struct auth_tokens *t);

/* True if @token (the credentials of "Authorization: Bearer <token>") is in the set. */
bool auth_tokens_check(const struct auth_tokens *t, const char *token);
