/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The Firecracker API subset microvm serves (docs/microvm.md), as pure functions: an HTTP
 * method + path + JSON body becomes a struct vmapi_request, and configuration requests are
 * applied to a struct vm_config. Nothing here touches files, KVM or the event loop, so the unit
 * test and the fuzz target (tests/fuzz/fuzz_vmapi.c) drive it directly; main.c checks files and
 * VM state.
 *
 * Routes:
 *   GET   /                          instance info
 *   GET   /machine-config            {vcpu_count, mem_size_mib, smt}
 *   GET   /metrics                   counters (JSON)
 *   GET   /vm/config                 the effective configuration, in --config-file's shape
 *   PUT   /boot-source               {kernel_image_path*, boot_args, initrd_path}
 *   PUT   /machine-config            {vcpu_count*, mem_size_mib*, smt (false only)}
 *   PUT   /drives/{id}               {drive_id* (= id), path_on_host*, is_root_device*,
 *                                     is_read_only}
 *   PUT   /network-interfaces/{id}   {iface_id* (= id), host_dev_name*, guest_mac}
 *   PUT   /actions                   {action_type*: InstanceStart | SendCtrlAltDel}
 *   PATCH /vm                        {state*: Paused | Resumed}
 * Every error is reported as 400 with {"fault_message"}, as Firecracker does, including unknown
 * paths and methods.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct json_t json_t;

#define VMAPI_ID_MAX 64 /* drive / interface ids: [A-Za-z0-9_], 1..64 */
#define VMAPI_MAX_DRIVES 8
#define VMAPI_MAX_NETS 4
#define VMAPI_MAX_VCPUS 32
#define VMAPI_MIN_MEM_MIB 16
#define VMAPI_MAX_MEM_MIB (256 * 1024)
#define VMAPI_MAX_PATH 4096
#define VMAPI_MAX_BOOT_ARGS 2000 /* the kernel's 2 KiB line, minus room for device entries */

struct vm_drive {
	char id[VMAPI_ID_MAX + 1];
	char *path; /* malloc'ed */
	bool is_root;
	bool read_only;
};

struct vm_net {
	char id[VMAPI_ID_MAX + 1];
	char *host_dev; /* TAP name, malloc'ed */
	uint8_t mac[6];
	bool has_mac;
};

/* The VM being configured. Strings are malloc'ed and owned by the config. */
struct vm_config {
	char *kernel_path; /* NULL until PUT /boot-source */
	char *boot_args; /* NULL: the default command line */
	char *initrd_path; /* NULL: none */
	unsigned vcpu_count; /* default 1 */
	unsigned mem_mib; /* default 128 */
	struct vm_drive drives[VMAPI_MAX_DRIVES];
	unsigned n_drives;
	struct vm_net nets[VMAPI_MAX_NETS];
	unsigned n_nets;
};

void vm_config_init(struct vm_config *c);
void vm_config_done(struct vm_config *c);

enum vmapi_op {
	VMAPI_GET_INFO,
	VMAPI_GET_MACHINE_CONFIG,
	VMAPI_GET_METRICS,
	VMAPI_GET_VM_CONFIG,
	VMAPI_PUT_BOOT_SOURCE,
	VMAPI_PUT_MACHINE_CONFIG,
	VMAPI_PUT_DRIVE,
	VMAPI_PUT_NET,
	VMAPI_INSTANCE_START,
	VMAPI_SEND_CTRL_ALT_DEL,
	VMAPI_PAUSE,
	VMAPI_RESUME,
	_VMAPI_OP_MAX,
};

struct vmapi_request {
	enum vmapi_op op;
	/* VMAPI_PUT_BOOT_SOURCE (malloc'ed, NULL when absent) */
	char *kernel_path, *boot_args, *initrd_path;
	/* VMAPI_PUT_MACHINE_CONFIG */
	unsigned vcpu_count, mem_mib;
	/* VMAPI_PUT_DRIVE, VMAPI_PUT_NET */
	struct vm_drive drive;
	struct vm_net net;
};

/* Whether @op changes the configuration (allowed only before InstanceStart). */
bool vmapi_op_is_config(enum vmapi_op op);

/*
 * Parses one request. @body (@body_len bytes, need not be NUL-terminated; may be NULL when 0) is
 * the JSON body. Returns 0 and *ret (release with vmapi_request_done()), -ENOENT for an unknown
 * method/path, -EINVAL for a bad body (malformed JSON, not an object, unknown field, wrong type,
 * missing required field, value out of range), or -ENOMEM; @err gets a one-line reason.
 */
int vmapi_parse(const char *method, const char *path, const char *body, size_t body_len,
		struct vmapi_request *ret, char *err, size_t errlen);

/* Frees what @r owns (not @r). */
void vmapi_request_done(struct vmapi_request *r);

/*
 * Applies a configuration request to @cfg, moving its strings (they are NULL in @r afterwards).
 * A drive or interface with an existing id is replaced. Returns 0, -EINVAL (not a configuration
 * request; a second root drive), -E2BIG (too many drives/interfaces), with a reason in @err.
 */
int vmapi_apply(struct vm_config *cfg, struct vmapi_request *r, char *err, size_t errlen);

/*
 * Parses a Firecracker-style --config-file: {"boot-source": {…}, "machine-config": {…},
 * "drives": [{…}], "network-interfaces": [{…}]} (each object as in the routes above) into @cfg.
 * Returns 0, -EINVAL with a reason in @err, or -ENOMEM.
 */
int vmapi_config_parse(const char *text, size_t len, struct vm_config *cfg, char *err,
		       size_t errlen);

/* The configuration in --config-file's shape (vmapi_config_parse() reads it back): a new
 * reference, or NULL (OOM). */
json_t *vmapi_config_json(const struct vm_config *cfg);

/* {"vcpu_count", "mem_size_mib", "smt"}: a new reference, or NULL (OOM). */
json_t *vmapi_machine_config_json(const struct vm_config *cfg);
