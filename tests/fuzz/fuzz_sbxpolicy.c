/* SPDX-License-Identifier: MIT */
/* Fuzzes the sandbox policy parser, then the decisions and the dump on what it accepted. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "sandbox/syscall/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct policy p = {};
	char *err = NULL;

	(void)policy_parse_string(&p, "fuzz", (const char *)data, size, &err);
	free(err);
	(void)policy_access_for(&p, "/home/user/.ssh/id");
	(void)policy_exec_for(&p, "/usr/bin/true");
	FILE *f = fopen("/dev/null", "we");
	if (f) {
		policy_dump(&p, f);
		fclose(f);
	}
	policy_done(&p);
	return 0;
}
