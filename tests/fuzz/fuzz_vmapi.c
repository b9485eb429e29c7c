/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the microvm API request parser (sandbox/microvm/api.c): the first byte picks a route
 * (method + path) or the --config-file parser, the rest is the body. Parsed configuration
 * requests are applied to a config, as the server does.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "libcommon/cleanup.h"
#include "sandbox/microvm/api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct {
	const char *method, *path;
} routes[] = {
	{ "PUT", "/boot-source" },
	{ "PUT", "/machine-config" },
	{ "PUT", "/drives/rootfs" },
	{ "PUT", "/network-interfaces/eth0" },
	{ "PUT", "/actions" },
	{ "PATCH", "/vm" },
	{ "GET", "/" },
	{ "GET", "/metrics" },
	{ "PUT", "/drives/" },
	{ "DELETE", "/vm" },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vm_config cfg;
	char err[512];

	if (size < 1)
		return 0;
	vm_config_init(&cfg);
	unsigned sel = data[0] % (ELEMENTSOF(routes) + 1);
	const char *body = (const char *)data + 1;
	size_t len = size - 1;

	if (sel == ELEMENTSOF(routes)) {
		(void)vmapi_config_parse(body, len, &cfg, err, sizeof(err));
	} else {
		struct vmapi_request r;
		if (vmapi_parse(routes[sel].method, routes[sel].path, body, len, &r, err,
				sizeof(err)) == 0) {
			if (vmapi_op_is_config(r.op))
				(void)vmapi_apply(&cfg, &r, err, sizeof(err));
			vmapi_request_done(&r);
		}
	}
	json_t *mc = vmapi_machine_config_json(&cfg);
	json_decref(mc);
	/* What GET /vm/config serves must read back as a config file. */
	json_t *full = vmapi_config_json(&cfg);
	char *text = full ? json_dumps(full, 0) : NULL;
	if (text && cfg.kernel_path) {
		struct vm_config back;
		vm_config_init(&back);
		if (vmapi_config_parse(text, strlen(text), &back, err, sizeof(err)) != 0)
			abort();
		vm_config_done(&back);
	}
	free(text);
	json_decref(full);
	vm_config_done(&cfg);
	return 0;
}
