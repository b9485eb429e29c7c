/* SPDX-License-Identifier: MIT */
/* Guest-memory translation (declared in dev/device.h), shared by the loader, the VM and the
 * virtio devices. */
#include <stddef.h>
#include <stdint.h>

#include "sandbox/microvm/dev/device.h"

void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	if (!m || len == 0)
		return NULL;
	for (unsigned i = 0; i < m->n_regions; i++) {
		const struct guest_mem_region *r = &m->regions[i];
		/* Written so that no sum can overflow: the subtraction happens only when
		 * gpa >= r->gpa, and the length is compared with what is left of the region. */
		if (gpa < r->gpa || gpa - r->gpa >= r->size || len > r->size - (gpa - r->gpa))
			continue;
		return r->host + (gpa - r->gpa);
	}
	return NULL;
}
