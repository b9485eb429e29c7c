/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * middlecon's access control: rules per name prefix deciding which peers (by the uid and gid
 * the kernel reported with SO_PEERCRED) may register names, and which may call, publish and
 * subscribe. The rules are parsed once at load time (user and group names are resolved then) and
 * never change while the relay runs. See docs/middlecon-protocol.md, "ACL".
 *
 * Rule syntax, the value of one of the keys allow_register, deny_register, allow_call, deny_call:
 *
 *     PREFIX PRINCIPAL[,| ]PRINCIPAL...
 *
 * PREFIX is compared as a string with the start of the name ("vm." covers "vm.a.pause" but not
 * "vmx.a"); ">" stands for the empty prefix (every name). A PRINCIPAL is uid=USER, gid=GROUP
 * (names or numbers), node=NAME (any caller relayed by that peer node) or "*" (anyone).
 *
 * Remote callers (requests that came over a peer link) are judged by the node name of the link's
 * certificate and by the uid and gid their node asserts: uid= and gid= rules apply to them as to
 * local callers. Root's exemption is for local callers only: a uid 0 asserted by a peer is just a
 * number.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct acl;

enum acl_op {
	ACL_REGISTER, /* REGISTER: answering requests for a name */
	ACL_CALL, /* REQUEST, PUBLISH and SUBSCRIBE */
	_ACL_OP_MAX,
};

/* Who asks: the kernel's credentials of a local caller, or a remote caller as its node vouches. */
struct acl_subject {
	uint32_t uid, gid; /* a remote caller's as asserted by its node; ACL_ID_UNKNOWN if none */
	const char *node; /* the peer node that relayed the call (borrowed); NULL: a local caller */
};

/* A uid or gid nobody has: matches no uid=/gid= principal. */
#define ACL_ID_UNKNOWN UINT32_MAX

/* Returns an empty rule set whose default is allow, or NULL on OOM. */
struct acl *acl_new(void);

/* Frees @a. Accepts NULL; returns NULL. */
struct acl *acl_free(struct acl *a);

/* Returns whether @key is one of the rule keys (allow_register, deny_register, ...). */
bool acl_is_key(const char *key);

/*
 * Adds the rule "@key = @value" (@key one of the rule keys). Both strings are borrowed. Returns
 * 0; -EINVAL with a malloc'ed message in *ret_error (if not NULL) for a malformed rule or an
 * unknown user or group; -ENOENT if @key is not a rule key; -ENOMEM.
 */
int acl_add(struct acl *a, const char *key, const char *value, char **ret_error);

/* Sets what applies to a name no rule covers (root is allowed regardless). */
void acl_set_default(struct acl *a, bool allow);

/*
 * Decides whether @who (borrowed) may do @op on @name. With @pattern, @name may hold the
 * wildcards * and >; then every rule whose prefix the pattern could reach must allow it, so
 * "REGISTER >" cannot capture names under a protected prefix. Returns true if allowed. If
 * @ret_prefix is not NULL it is set to the prefix of the deciding rule (borrowed from @a; ">"
 * for the empty prefix) or NULL when the default decided.
 */
bool acl_check(const struct acl *a, enum acl_op op, const char *name, bool pattern,
	       const struct acl_subject *who, const char **ret_prefix);

/* Writes the rules to @out as "key = value" lines with numeric ids, in file order. */
void acl_print(const struct acl *a, FILE *out);

/* Returns the number of rules. */
unsigned acl_n_rules(const struct acl *a);
