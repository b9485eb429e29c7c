/* SPDX-License-Identifier: MIT */
#include "middlecon/acl.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "libcommon/cleanup.h"
#include "libcommon/strutil.h"

/* Principals one rule may list: rules are written by hand, a long list is a mistake. */
#define ACL_MAX_PRINCIPALS 64
#define ACL_MAX_RULES 4096
#define ACL_PREFIX_MAX 255

enum principal_kind {
	PRINCIPAL_ANY,
	PRINCIPAL_UID,
	PRINCIPAL_GID,
	PRINCIPAL_NODE, /* callers relayed by the peer node of this name (its certificate) */
};

struct principal {
	enum principal_kind kind;
	uint32_t id; /* PRINCIPAL_UID/GID */
	char *node; /* PRINCIPAL_NODE, owned */
};

struct acl_rule {
	enum acl_op op;
	bool allow;
	char *prefix; /* owned; "" for ">" */
	size_t n_principals;
	struct principal principals[ACL_MAX_PRINCIPALS];
};

struct acl {
	struct acl_rule *rules; /* owned array, file order */
	size_t n_rules;
	bool default_allow;
};

static const struct {
	const char *key;
	enum acl_op op;
	bool allow;
} keys[] = {
	{ "allow_register", ACL_REGISTER, true },
	{ "deny_register", ACL_REGISTER, false },
	{ "allow_call", ACL_CALL, true },
	{ "deny_call", ACL_CALL, false },
};

static void rule_done(struct acl_rule *rule)
{
	free(rule->prefix);
	for (size_t p = 0; p < rule->n_principals; p++)
		free(rule->principals[p].node);
}

struct acl *acl_new(void)
{
	struct acl *a = calloc(1, sizeof(*a));

	if (a)
		a->default_allow = true;
	return a;
}

struct acl *acl_free(struct acl *a)
{
	if (!a)
		return NULL;
	for (size_t i = 0; i < a->n_rules; i++)
		rule_done(&a->rules[i]);
	free(a->rules);
	free(a);
	return NULL;
}

bool acl_is_key(const char *key)
{
	for (size_t i = 0; i < ELEMENTSOF(keys); i++)
		if (strcmp(keys[i].key, key) == 0)
			return true;
	return false;
}

void acl_set_default(struct acl *a, bool allow)
{
	a->default_allow = allow;
}

unsigned acl_n_rules(const struct acl *a)
{
	return (unsigned)a->n_rules;
}

static int fail(char **ret_error, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(char **ret_error, const char *fmt, ...)
{
	va_list ap;

	if (ret_error) {
		va_start(ap, fmt);
		if (vasprintf(ret_error, fmt, ap) < 0)
			*ret_error = NULL;
		va_end(ap);
	}
	return -EINVAL;
}

/* Prefixes use the name alphabet (docs/middlecon-protocol.md), dots included, no wildcards. */
static bool prefix_valid(const char *s)
{
	if (strlen(s) > ACL_PREFIX_MAX)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '-' || *s == '$' || *s == '.'))
			return false;
	return true;
}

/*
 * Resolves "uid=…" or "gid=…". Names are looked up now, at load time: a user renamed or deleted
 * later keeps the id it had, which is what the kernel reports for its processes anyway.
 */
static int parse_principal(const char *tok, struct principal *ret, char **ret_error)
{
	const char *v;
	uint32_t id;

	if (strcmp(tok, "*") == 0) {
		*ret = (struct principal){ .kind = PRINCIPAL_ANY };
		return 0;
	}
	if ((v = startswith(tok, "uid="))) {
		if (safe_atou32(v, &id) < 0) {
			struct passwd *pw = *v ? getpwnam(v) : NULL;

			if (!pw)
				return fail(ret_error, "unknown user '%s'", v);
			id = (uint32_t)pw->pw_uid;
		}
		*ret = (struct principal){ .kind = PRINCIPAL_UID, .id = id };
		return 0;
	}
	if ((v = startswith(tok, "gid="))) {
		if (safe_atou32(v, &id) < 0) {
			struct group *gr = *v ? getgrnam(v) : NULL;

			if (!gr)
				return fail(ret_error, "unknown group '%s'", v);
			id = (uint32_t)gr->gr_gid;
		}
		*ret = (struct principal){ .kind = PRINCIPAL_GID, .id = id };
		return 0;
	}
	if ((v = startswith(tok, "node="))) {
		/* Node names are host names: the identity in a peer's certificate. */
		if (!*v || strlen(v) > 253 ||
		    strspn(v,
			   "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") !=
			    strlen(v))
			return fail(ret_error, "invalid node name '%s'", v);
		*ret = (struct principal){ .kind = PRINCIPAL_NODE, .node = strdup(v) };
		return ret->node ? 0 : -ENOMEM;
	}
	return fail(ret_error,
		    "invalid principal '%s' (expected uid=USER, gid=GROUP, node=NAME or *)", tok);
}

int acl_add(struct acl *a, const char *key, const char *value, char **ret_error)
{
	_cleanup_(strv_freep) char **tok = NULL;
	struct acl_rule rule = { 0 };
	struct acl_rule *rules;
	size_t i, n;
	int r;

	for (i = 0; i < ELEMENTSOF(keys) && strcmp(keys[i].key, key) != 0; i++)
		;
	if (i == ELEMENTSOF(keys))
		return -ENOENT;
	rule.op = keys[i].op;
	rule.allow = keys[i].allow;
	r = strv_split(value, " \t,", &tok);
	if (r < 0)
		return r;
	n = strv_length(tok);
	if (n < 2)
		return fail(ret_error, "%s needs a prefix and at least one principal", key);
	if (n - 1 > ACL_MAX_PRINCIPALS)
		return fail(ret_error, "more than %d principals in one rule", ACL_MAX_PRINCIPALS);
	if (a->n_rules >= ACL_MAX_RULES)
		return fail(ret_error, "more than %d rules", ACL_MAX_RULES);
	if (strcmp(tok[0], ">") != 0 && (!tok[0][0] || !prefix_valid(tok[0])))
		return fail(ret_error, "invalid prefix '%s' (name characters only, or '>' for all)",
			    tok[0]);
	for (i = 1; i < n; i++) {
		r = parse_principal(tok[i], &rule.principals[rule.n_principals], ret_error);
		if (r < 0) {
			rule_done(&rule);
			return r;
		}
		rule.n_principals++;
	}
	rule.prefix = strdup(strcmp(tok[0], ">") == 0 ? "" : tok[0]);
	if (!rule.prefix) {
		rule_done(&rule);
		return -ENOMEM;
	}
	rules = reallocarray(a->rules, a->n_rules + 1, sizeof(*rules));
	if (!rules) {
		rule_done(&rule);
		return -ENOMEM;
	}
	rules[a->n_rules++] = rule;
	a->rules = rules;
	return 0;
}

static bool rule_matches(const struct acl_rule *rule, const struct acl_subject *who)
{
	for (size_t i = 0; i < rule->n_principals; i++) {
		const struct principal *p = &rule->principals[i];

		if (p->kind == PRINCIPAL_ANY || (p->kind == PRINCIPAL_UID && p->id == who->uid) ||
		    (p->kind == PRINCIPAL_GID && p->id == who->gid) ||
		    (p->kind == PRINCIPAL_NODE && who->node && strcmp(p->node, who->node) == 0))
			return true;
	}
	return false;
}

/* Root is trusted only where the kernel vouches for it: a local caller, never a peer's claim. */
static bool is_local_root(const struct acl_subject *who)
{
	return !who->node && who->uid == 0;
}

/*
 * Decides @op on the string @name[0..len) by its longest matching prefix: a deny rule naming
 * the peer refuses; an allow rule naming it, or the peer being root, admits; a prefix with
 * allow rules that do not name the peer is an allowlist and refuses; a prefix with only deny
 * rules that do not name the peer falls through to the next shorter prefix. No prefix left:
 * root is admitted, everyone else gets the default.
 */
static bool decide(const struct acl *a, enum acl_op op, const char *name, size_t len,
		   const struct acl_subject *who, const char **ret_prefix)
{
	size_t bound = len + 1; /* prefixes strictly shorter than this are still candidates */

	for (;;) {
		const struct acl_rule *best = NULL;
		bool has_allow = false, allow_hit = false, deny_hit = false;
		size_t plen = 0;

		for (size_t i = 0; i < a->n_rules; i++) {
			const struct acl_rule *rule = &a->rules[i];
			size_t l = strlen(rule->prefix);

			if (rule->op != op || l >= bound || l > len ||
			    strncmp(rule->prefix, name, l) != 0)
				continue;
			if (!best || l > plen) {
				best = rule;
				plen = l;
			}
		}
		if (!best)
			break;
		for (size_t i = 0; i < a->n_rules; i++) {
			const struct acl_rule *rule = &a->rules[i];

			if (rule->op != op || strcmp(rule->prefix, best->prefix) != 0)
				continue;
			if (rule->allow) {
				has_allow = true;
				allow_hit = allow_hit || rule_matches(rule, who);
			} else {
				deny_hit = deny_hit || rule_matches(rule, who);
			}
		}
		if (ret_prefix)
			*ret_prefix = best->prefix[0] ? best->prefix : ">";
		if (deny_hit)
			return false;
		if (allow_hit || is_local_root(who))
			return true;
		if (has_allow)
			return false;
		bound = plen;
	}
	if (ret_prefix)
		*ret_prefix = NULL;
	return is_local_root(who) || a->default_allow;
}

/* The length of @pattern's literal part: everything before its first wildcard token. */
static size_t literal_len(const char *pattern)
{
	const char *s = pattern;

	for (;;) {
		const char *e = strchrnul(s, '.');

		if (e - s == 1 && (*s == '*' || *s == '>'))
			return (size_t)(s - pattern);
		if (!*e)
			return strlen(pattern);
		s = e + 1;
	}
}

bool acl_check(const struct acl *a, enum acl_op op, const char *name, bool pattern,
	       const struct acl_subject *who, const char **ret_prefix)
{
	size_t lit = pattern ? literal_len(name) : strlen(name);

	if (!decide(a, op, name, lit, who, ret_prefix))
		return false;
	if (lit == strlen(name))
		return true;
	/*
	 * A wildcard can reach every name that starts with the literal part, so each longer
	 * prefix under it must admit the peer too: "vm.>" needs what "vm.secret." asks.
	 */
	for (size_t i = 0; i < a->n_rules; i++) {
		const struct acl_rule *rule = &a->rules[i];

		if (rule->op != op || strlen(rule->prefix) <= lit ||
		    strncmp(rule->prefix, name, lit) != 0)
			continue;
		if (!decide(a, op, rule->prefix, strlen(rule->prefix), who, ret_prefix))
			return false;
	}
	return true;
}

void acl_print(const struct acl *a, FILE *out)
{
	for (size_t i = 0; i < a->n_rules; i++) {
		const struct acl_rule *rule = &a->rules[i];
		const char *key = NULL;

		for (size_t k = 0; k < ELEMENTSOF(keys); k++)
			if (keys[k].op == rule->op && keys[k].allow == rule->allow)
				key = keys[k].key;
		fprintf(out, "%s = %s", key, rule->prefix[0] ? rule->prefix : ">");
		for (size_t p = 0; p < rule->n_principals; p++) {
			const struct principal *pr = &rule->principals[p];

			if (pr->kind == PRINCIPAL_ANY)
				fprintf(out, " *");
			else if (pr->kind == PRINCIPAL_NODE)
				fprintf(out, " node=%s", pr->node);
			else
				fprintf(out, " %s=%u", pr->kind == PRINCIPAL_UID ? "uid" : "gid",
					pr->id);
		}
		fputc('\n', out);
	}
}
