/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Firecracker's boot-timer pseudo device (--boot-timer): one MMIO page at 0xc0000000. When the
 * guest writes the byte 123 at offset 0 (Firecracker's init wrapper does this before exec'ing
 * /sbin/init), the VMM logs the wall-clock and CPU time since InstanceStart and since process
 * start. Reads return zeros.
 */

#include <stdint.h>

typedef struct json_t json_t;
struct boot_timer;
struct mmio_device;

#define BOOT_TIMER_ADDR 0xc0000000ull
#define BOOT_TIMER_MAGIC 123

/* @process_start_ns and @instance_start_ns are CLOCK_MONOTONIC timestamps. Returns 0 or
 * -ENOMEM. */
int boot_timer_new(uint64_t process_start_ns, uint64_t instance_start_ns, struct boot_timer **ret);

/* Frees @t; accepts NULL; returns NULL. */
struct boot_timer *boot_timer_free(struct boot_timer *t);

/* The MMIO device to route (owned by @t). */
struct mmio_device *boot_timer_mmio(struct boot_timer *t);

/* {"signalled": N, "boot_time_us": last measured InstanceStart->signal time or 0}; new
 * reference or NULL. */
json_t *boot_timer_metrics(struct boot_timer *t);
