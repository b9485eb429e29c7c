/* SPDX-License-Identifier: MIT */
/*
 * Request parsing for the microvm API. Bodies come from any local client that can reach the
 * socket, so they are treated as untrusted: strict types, no unknown fields, bounded strings.
 */
#include "sandbox/microvm/api.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "libcommon/cleanup.h"
#include "libcommon/strutil.h"

void vm_config_init(struct vm_config *c)
{
	*c = (struct vm_config){ .vcpu_count = 1, .mem_mib = 128 };
}

void vm_config_done(struct vm_config *c)
{
	free(c->kernel_path);
	free(c->boot_args);
	free(c->initrd_path);
	for (unsigned i = 0; i < c->n_drives; i++)
		free(c->drives[i].path);
	for (unsigned i = 0; i < c->n_nets; i++)
		free(c->nets[i].host_dev);
	vm_config_init(c);
}

void vmapi_request_done(struct vmapi_request *r)
{
	free(r->kernel_path);
	free(r->boot_args);
	free(r->initrd_path);
	free(r->drive.path);
	free(r->net.host_dev);
	memset(r, 0, sizeof(*r));
}

bool vmapi_op_is_config(enum vmapi_op op)
{
	return op == VMAPI_PUT_BOOT_SOURCE || op == VMAPI_PUT_MACHINE_CONFIG ||
	       op == VMAPI_PUT_DRIVE || op == VMAPI_PUT_NET;
}

/* Drive and interface ids end up in log lines, metrics and device names: Firecracker's
 * alphabet keeps them free of separators and control characters. */
static bool id_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > VMAPI_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

/* Refuses any key of @o not in the NULL-terminated @allowed. Silently ignoring a Firecracker
 * option we do not implement (a rate limiter, a CPU template) would make the VM behave other
 * than the caller asked, so an unknown field is an error, not a warning. */
static int check_fields(json_t *o, const char *what, const char *const *allowed, char *err,
			size_t errlen)
{
	const char *key;
	json_t *v;

	if (!json_is_object(o))
		return format_error(err, errlen, -EINVAL, "%s: expected a JSON object", what);
	json_object_foreach(o, key, v)
	{
		bool known = false;
		for (const char *const *a = allowed; *a; a++)
			if (strcmp(key, *a) == 0)
				known = true;
		if (!known)
			return format_error(err, errlen, -EINVAL, "%s: unknown field '%.64s'", what,
					    key);
	}
	return 0;
}

/* Copies string field @key (required or not) to *ret (malloc'ed; untouched when absent). */
static int get_string(json_t *o, const char *what, const char *key, bool required, size_t max,
		      char **ret, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);

	if (!v) {
		if (required)
			return format_error(err, errlen, -EINVAL, "%s: missing required field '%s'",
					    what, key);
		return 0;
	}
	if (!json_is_string(v))
		return format_error(err, errlen, -EINVAL, "%s: field '%s' must be a string", what,
				    key);
	if (json_string_length(v) > max)
		return format_error(err, errlen, -EINVAL, "%s: field '%s' longer than %zu bytes",
				    what, key, max);
	char *s = strdup(json_string_value(v));
	if (!s)
		return -ENOMEM;
	free(*ret);
	*ret = s;
	return 0;
}

static int get_bool(json_t *o, const char *what, const char *key, bool required, bool *ret,
		    char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);

	if (!v)
		return required ? format_error(err, errlen, -EINVAL,
					       "%s: missing required field '%s'", what, key) :
				  0;
	if (!json_is_boolean(v))
		return format_error(err, errlen, -EINVAL, "%s: field '%s' must be a boolean", what,
				    key);
	*ret = json_is_true(v);
	return 0;
}

static int get_uint(json_t *o, const char *what, const char *key, unsigned min, unsigned max,
		    unsigned *ret, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);

	if (!v)
		return format_error(err, errlen, -EINVAL, "%s: missing required field '%s'", what,
				    key);
	if (!json_is_integer(v))
		return format_error(err, errlen, -EINVAL, "%s: field '%s' must be an integer", what,
				    key);
	json_int_t i = json_integer_value(v);
	if (i < (json_int_t)min || i > (json_int_t)max)
		return format_error(err, errlen, -EINVAL,
				    "%s: field '%s' must be between %u and %u", what, key, min,
				    max);
	*ret = (unsigned)i;
	return 0;
}

static int parse_boot_source(json_t *o, struct vmapi_request *r, char *err, size_t errlen)
{
	static const char *const fields[] = { "kernel_image_path", "boot_args", "initrd_path",
					      NULL };
	const char *w = "boot-source";
	int k;

	if ((k = check_fields(o, w, fields, err, errlen)) < 0 ||
	    (k = get_string(o, w, "kernel_image_path", true, VMAPI_MAX_PATH, &r->kernel_path, err,
			    errlen)) < 0 ||
	    (k = get_string(o, w, "boot_args", false, VMAPI_MAX_BOOT_ARGS, &r->boot_args, err,
			    errlen)) < 0 ||
	    (k = get_string(o, w, "initrd_path", false, VMAPI_MAX_PATH, &r->initrd_path, err,
			    errlen)) < 0)
		return k;
	if (!r->kernel_path[0])
		return format_error(err, errlen, -EINVAL, "%s: kernel_image_path is empty", w);
	r->op = VMAPI_PUT_BOOT_SOURCE;
	return 0;
}

static int parse_machine_config(json_t *o, struct vmapi_request *r, char *err, size_t errlen)
{
	static const char *const fields[] = { "vcpu_count", "mem_size_mib", "smt", NULL };
	const char *w = "machine-config";
	bool smt = false;
	int k;

	if ((k = check_fields(o, w, fields, err, errlen)) < 0 ||
	    (k = get_uint(o, w, "vcpu_count", 1, VMAPI_MAX_VCPUS, &r->vcpu_count, err, errlen)) <
		    0 ||
	    (k = get_uint(o, w, "mem_size_mib", VMAPI_MIN_MEM_MIB, VMAPI_MAX_MEM_MIB, &r->mem_mib,
			  err, errlen)) < 0 ||
	    (k = get_bool(o, w, "smt", false, &smt, err, errlen)) < 0)
		return k;
	if (smt)
		return format_error(err, errlen, -EINVAL, "%s: smt is not supported", w);
	r->op = VMAPI_PUT_MACHINE_CONFIG;
	return 0;
}

/* @path_id: the id from the URL, or NULL (config file) to take it from the body. */
static int parse_drive(json_t *o, const char *path_id, struct vmapi_request *r, char *err,
		       size_t errlen)
{
	static const char *const fields[] = { "drive_id", "path_on_host", "is_root_device",
					      "is_read_only", NULL };
	const char *w = "drive";
	_cleanup_free_ char *id = NULL;
	int k;

	if ((k = check_fields(o, w, fields, err, errlen)) < 0 ||
	    (k = get_string(o, w, "drive_id", true, VMAPI_ID_MAX, &id, err, errlen)) < 0 ||
	    (k = get_string(o, w, "path_on_host", true, VMAPI_MAX_PATH, &r->drive.path, err,
			    errlen)) < 0 ||
	    (k = get_bool(o, w, "is_root_device", true, &r->drive.is_root, err, errlen)) < 0 ||
	    (k = get_bool(o, w, "is_read_only", false, &r->drive.read_only, err, errlen)) < 0)
		return k;
	if (!id_valid(id))
		return format_error(err, errlen, -EINVAL, "%s: invalid drive_id", w);
	if (path_id && strcmp(id, path_id) != 0)
		return format_error(err, errlen, -EINVAL, "%s: drive_id does not match the path",
				    w);
	if (!r->drive.path[0])
		return format_error(err, errlen, -EINVAL, "%s: path_on_host is empty", w);
	strcpy(r->drive.id, id); /* id_valid() bounded it to VMAPI_ID_MAX */
	r->op = VMAPI_PUT_DRIVE;
	return 0;
}

/* Exactly "xx:xx:xx:xx:xx:xx": sscanf alone would accept shorter groups and trailing text. */
static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned b[6];
	char tail;

	if (strlen(s) != 17 || sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3],
				      &b[4], &b[5], &tail) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		if (s[3 * i + 2] != (i == 5 ? '\0' : ':'))
			return -EINVAL;
		mac[i] = (uint8_t)b[i];
	}
	return 0;
}

static int parse_net(json_t *o, const char *path_id, struct vmapi_request *r, char *err,
		     size_t errlen)
{
	static const char *const fields[] = { "iface_id", "host_dev_name", "guest_mac", NULL };
	const char *w = "network-interface";
	_cleanup_free_ char *id = NULL;
	_cleanup_free_ char *mac = NULL;
	int k;

	if ((k = check_fields(o, w, fields, err, errlen)) < 0 ||
	    (k = get_string(o, w, "iface_id", true, VMAPI_ID_MAX, &id, err, errlen)) < 0 ||
	    (k = get_string(o, w, "host_dev_name", true, 15, &r->net.host_dev, err, errlen)) < 0 ||
	    (k = get_string(o, w, "guest_mac", false, 17, &mac, err, errlen)) < 0)
		return k;
	if (!id_valid(id))
		return format_error(err, errlen, -EINVAL, "%s: invalid iface_id", w);
	if (path_id && strcmp(id, path_id) != 0)
		return format_error(err, errlen, -EINVAL, "%s: iface_id does not match the path",
				    w);
	if (!r->net.host_dev[0] || strchr(r->net.host_dev, '/'))
		return format_error(err, errlen, -EINVAL, "%s: invalid host_dev_name", w);
	if (mac) {
		if (parse_mac(mac, r->net.mac) < 0 || (r->net.mac[0] & 1))
			return format_error(err, errlen, -EINVAL, "%s: invalid guest_mac '%s'", w,
					    mac);
		r->net.has_mac = true;
	}
	strcpy(r->net.id, id);
	r->op = VMAPI_PUT_NET;
	return 0;
}

static int parse_action(json_t *o, struct vmapi_request *r, char *err, size_t errlen)
{
	static const char *const fields[] = { "action_type", NULL };
	_cleanup_free_ char *type = NULL;
	int k;

	if ((k = check_fields(o, "actions", fields, err, errlen)) < 0 ||
	    (k = get_string(o, "actions", "action_type", true, 64, &type, err, errlen)) < 0)
		return k;
	if (strcmp(type, "InstanceStart") == 0)
		r->op = VMAPI_INSTANCE_START;
	else if (strcmp(type, "SendCtrlAltDel") == 0)
		r->op = VMAPI_SEND_CTRL_ALT_DEL;
	else
		return format_error(err, errlen, -EINVAL, "actions: unsupported action_type '%s'",
				    type);
	return 0;
}

static int parse_vm_state(json_t *o, struct vmapi_request *r, char *err, size_t errlen)
{
	static const char *const fields[] = { "state", NULL };
	_cleanup_free_ char *state = NULL;
	int k;

	if ((k = check_fields(o, "vm", fields, err, errlen)) < 0 ||
	    (k = get_string(o, "vm", "state", true, 16, &state, err, errlen)) < 0)
		return k;
	if (strcmp(state, "Paused") == 0)
		r->op = VMAPI_PAUSE;
	else if (strcmp(state, "Resumed") == 0)
		r->op = VMAPI_RESUME;
	else
		return format_error(err, errlen, -EINVAL,
				    "vm: state must be 'Paused' or 'Resumed'");
	return 0;
}

/* Returns the id after @prefix if @path is exactly prefix + one non-empty segment. */
static const char *path_id(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);

	if (strncmp(path, prefix, n) != 0 || !path[n] || strchr(path + n, '/'))
		return NULL;
	return path + n;
}

int vmapi_parse(const char *method, const char *path, const char *body, size_t body_len,
		struct vmapi_request *ret, char *err, size_t errlen)
{
	struct vmapi_request r = { 0 };
	json_auto_t *o = NULL;
	json_error_t jerr;
	const char *id = NULL;
	int k;

	if (errlen)
		err[0] = '\0';
	if (strcmp(method, "GET") == 0) {
		if (strcmp(path, "/") == 0)
			r.op = VMAPI_GET_INFO;
		else if (strcmp(path, "/machine-config") == 0)
			r.op = VMAPI_GET_MACHINE_CONFIG;
		else if (strcmp(path, "/metrics") == 0)
			r.op = VMAPI_GET_METRICS;
		else if (strcmp(path, "/vm/config") == 0)
			r.op = VMAPI_GET_VM_CONFIG;
		else
			goto unknown;
		*ret = r;
		return 0;
	}

	bool put = strcmp(method, "PUT") == 0, patch = strcmp(method, "PATCH") == 0;
	enum { BOOT, MACHINE, DRIVE, NET, ACTION, VM } kind;
	if (put && strcmp(path, "/boot-source") == 0)
		kind = BOOT;
	else if (put && strcmp(path, "/machine-config") == 0)
		kind = MACHINE;
	else if (put && (id = path_id(path, "/drives/")))
		kind = DRIVE;
	else if (put && (id = path_id(path, "/network-interfaces/")))
		kind = NET;
	else if (put && strcmp(path, "/actions") == 0)
		kind = ACTION;
	else if (patch && strcmp(path, "/vm") == 0)
		kind = VM;
	else
		goto unknown;

	if (!body || body_len == 0)
		return format_error(err, errlen, -EINVAL, "%s %s needs a JSON body", method, path);
	/* Duplicate keys are refused: which of two values wins would be the parser's choice. */
	o = json_loadb(body, body_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o)
		return format_error(err, errlen, -EINVAL, "malformed JSON body: %s (line %d)",
				    jerr.text, jerr.line);
	switch (kind) {
	case BOOT:
		k = parse_boot_source(o, &r, err, errlen);
		break;
	case MACHINE:
		k = parse_machine_config(o, &r, err, errlen);
		break;
	case DRIVE:
		k = parse_drive(o, id, &r, err, errlen);
		break;
	case NET:
		k = parse_net(o, id, &r, err, errlen);
		break;
	case ACTION:
		k = parse_action(o, &r, err, errlen);
		break;
	default:
		k = parse_vm_state(o, &r, err, errlen);
		break;
	}
	if (k < 0) {
		if (k == -ENOMEM)
			format_error(err, errlen, k, "out of memory");
		vmapi_request_done(&r);
		return k;
	}
	*ret = r;
	return 0;

unknown:
	return format_error(err, errlen, -ENOENT,
			    "Invalid request method and/or path: %.16s %.128s", method, path);
}

/* Strings move from the request into the config (TAKE_PTR), so a request applied twice cannot
 * double-free, and the caller's vmapi_request_done() frees only what was not taken. */
int vmapi_apply(struct vm_config *cfg, struct vmapi_request *r, char *err, size_t errlen)
{
	switch (r->op) {
	case VMAPI_PUT_BOOT_SOURCE:
		free(cfg->kernel_path);
		free(cfg->boot_args);
		free(cfg->initrd_path);
		cfg->kernel_path = TAKE_PTR(r->kernel_path);
		cfg->boot_args = TAKE_PTR(r->boot_args);
		cfg->initrd_path = TAKE_PTR(r->initrd_path);
		return 0;
	case VMAPI_PUT_MACHINE_CONFIG:
		cfg->vcpu_count = r->vcpu_count;
		cfg->mem_mib = r->mem_mib;
		return 0;
	case VMAPI_PUT_DRIVE: {
		unsigned i;
		for (i = 0; i < cfg->n_drives; i++)
			if (strcmp(cfg->drives[i].id, r->drive.id) == 0)
				break;
		if (r->drive.is_root)
			for (unsigned j = 0; j < cfg->n_drives; j++)
				if (j != i && cfg->drives[j].is_root)
					return format_error(
						err, errlen, -EINVAL,
						"drive: a root device is already configured "
						"('%s')",
						cfg->drives[j].id);
		if (i == cfg->n_drives) {
			if (cfg->n_drives == VMAPI_MAX_DRIVES)
				return format_error(err, errlen, -E2BIG, "drive: at most %d drives",
						    VMAPI_MAX_DRIVES);
			cfg->n_drives++;
		} else {
			free(cfg->drives[i].path);
		}
		cfg->drives[i] = r->drive;
		r->drive.path = NULL;
		return 0;
	}
	case VMAPI_PUT_NET: {
		unsigned i;
		for (i = 0; i < cfg->n_nets; i++)
			if (strcmp(cfg->nets[i].id, r->net.id) == 0)
				break;
		if (i == cfg->n_nets) {
			if (cfg->n_nets == VMAPI_MAX_NETS)
				return format_error(err, errlen, -E2BIG,
						    "network-interface: at most %d interfaces",
						    VMAPI_MAX_NETS);
			cfg->n_nets++;
		} else {
			free(cfg->nets[i].host_dev);
		}
		cfg->nets[i] = r->net;
		r->net.host_dev = NULL;
		return 0;
	}
	default:
		return format_error(err, errlen, -EINVAL, "not a configuration request");
	}
}

static int apply_one(struct vm_config *cfg, json_t *o,
		     int (*parse)(json_t *, const char *, struct vmapi_request *, char *, size_t),
		     char *err, size_t errlen)
{
	struct vmapi_request r = { 0 };
	int k = parse(o, NULL, &r, err, errlen);

	if (k >= 0)
		k = vmapi_apply(cfg, &r, err, errlen);
	vmapi_request_done(&r);
	return k;
}

/* The same object parsers as the routes, so a config file and the API accept exactly the same
 * things; ids come from the bodies since there is no path. */
int vmapi_config_parse(const char *text, size_t len, struct vm_config *cfg, char *err,
		       size_t errlen)
{
	static const char *const fields[] = { "boot-source", "machine-config", "drives",
					      "network-interfaces", NULL };
	json_auto_t *o = NULL;
	json_error_t jerr;
	json_t *v;
	size_t i;
	int k;

	if (errlen)
		err[0] = '\0';
	o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o)
		return format_error(err, errlen, -EINVAL, "malformed JSON: %s (line %d)", jerr.text,
				    jerr.line);
	if ((k = check_fields(o, "config", fields, err, errlen)) < 0)
		return k;

	v = json_object_get(o, "boot-source");
	if (!v)
		return format_error(err, errlen, -EINVAL, "config: missing 'boot-source'");
	struct vmapi_request r = { 0 };
	k = parse_boot_source(v, &r, err, errlen);
	if (k >= 0)
		k = vmapi_apply(cfg, &r, err, errlen);
	vmapi_request_done(&r);
	if (k < 0)
		return k;

	v = json_object_get(o, "machine-config");
	if (v) {
		k = parse_machine_config(v, &r, err, errlen);
		if (k >= 0)
			k = vmapi_apply(cfg, &r, err, errlen);
		vmapi_request_done(&r);
		if (k < 0)
			return k;
	}

	v = json_object_get(o, "drives");
	if (v && !json_is_array(v))
		return format_error(err, errlen, -EINVAL, "config: 'drives' must be an array");
	json_t *e;
	json_array_foreach(v, i,
			   e) if ((k = apply_one(cfg, e, parse_drive, err, errlen)) < 0) return k;

	v = json_object_get(o, "network-interfaces");
	if (v && !json_is_array(v))
		return format_error(err, errlen, -EINVAL,
				    "config: 'network-interfaces' must be an array");
	json_array_foreach(v, i,
			   e) if ((k = apply_one(cfg, e, parse_net, err, errlen)) < 0) return k;
	return 0;
}

json_t *vmapi_machine_config_json(const struct vm_config *cfg)
{
	return json_pack("{s:i, s:i, s:b}", "vcpu_count", (int)cfg->vcpu_count, "mem_size_mib",
			 (int)cfg->mem_mib, "smt", 0);
}

json_t *vmapi_config_json(const struct vm_config *cfg)
{
	json_auto_t *o = NULL;
	json_t *boot, *drives, *nets;

	/* json_pack's "s?" writes null for an unset string; the file format omits the key
	 * instead, so optional strings are added one by one. */
	o = json_pack("{s:{}, s:o, s:[], s:[]}", "boot-source", "machine-config",
		      vmapi_machine_config_json(cfg), "drives", "network-interfaces");
	if (!o)
		return NULL;
	boot = json_object_get(o, "boot-source");
	drives = json_object_get(o, "drives");
	nets = json_object_get(o, "network-interfaces");
	if ((cfg->kernel_path &&
	     json_object_set_new(boot, "kernel_image_path", json_string(cfg->kernel_path)) < 0) ||
	    (cfg->boot_args &&
	     json_object_set_new(boot, "boot_args", json_string(cfg->boot_args)) < 0) ||
	    (cfg->initrd_path &&
	     json_object_set_new(boot, "initrd_path", json_string(cfg->initrd_path)) < 0))
		return NULL;
	for (unsigned i = 0; i < cfg->n_drives; i++) {
		const struct vm_drive *d = &cfg->drives[i];
		if (json_array_append_new(drives,
					  json_pack("{s:s, s:s, s:b, s:b}", "drive_id", d->id,
						    "path_on_host", d->path, "is_root_device",
						    d->is_root, "is_read_only", d->read_only)) < 0)
			return NULL;
	}
	for (unsigned i = 0; i < cfg->n_nets; i++) {
		const struct vm_net *n = &cfg->nets[i];
		json_t *e =
			json_pack("{s:s, s:s}", "iface_id", n->id, "host_dev_name", n->host_dev);
		if (!e || json_array_append_new(nets, e) < 0)
			return NULL;
		if (n->has_mac) {
			char mac[18];
			snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", n->mac[0],
				 n->mac[1], n->mac[2], n->mac[3], n->mac[4], n->mac[5]);
			if (json_object_set_new(e, "guest_mac", json_string(mac)) < 0)
				return NULL;
		}
	}
	return TAKE_PTR(o);
}
