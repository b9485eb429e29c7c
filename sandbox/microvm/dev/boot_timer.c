/* SPDX-License-Identifier: MIT */
#include "sandbox/microvm/dev/boot_timer.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "libcommon/log.h"
#include "sandbox/microvm/dev/device.h"

/* Written by vCPU threads (the MMIO exit), read by the main thread (metrics): atomics. */
struct boot_timer {
	struct mmio_device mmio;
	uint64_t process_start_ns, instance_start_ns;
	atomic_uint_fast64_t signalled, boot_time_us;
};

static uint64_t now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void bt_read(struct mmio_device *d, uint64_t offset, void *data, uint32_t len)
{
	memset(data, 0, len);
}

static void bt_write(struct mmio_device *d, uint64_t offset, const void *data, uint32_t len)
{
	struct boot_timer *t = d->priv;

	/* Firecracker counts only a one-byte write of the magic at offset 0. */
	if (offset != 0 || len != 1 || *(const uint8_t *)data != BOOT_TIMER_MAGIC)
		return;
	/* The CPU time is the whole process's, as Firecracker reports it: VMM set-up plus every
	 * exit handled on the way to the signal. */
	uint64_t now = now_ns(CLOCK_MONOTONIC);
	uint64_t cpu_us = now_ns(CLOCK_PROCESS_CPUTIME_ID) / 1000;
	uint64_t boot_us = (now - t->instance_start_ns) / 1000;
	atomic_fetch_add(&t->signalled, 1);
	atomic_store(&t->boot_time_us, boot_us);
	log_info("Guest-boot-time = %llu us %llu ms, %llu CPU us %llu CPU ms (since process start: "
		 "%llu us)",
		 (unsigned long long)boot_us, (unsigned long long)boot_us / 1000,
		 (unsigned long long)cpu_us, (unsigned long long)cpu_us / 1000,
		 (unsigned long long)(now - t->process_start_ns) / 1000);
}

int boot_timer_new(uint64_t process_start_ns, uint64_t instance_start_ns, struct boot_timer **ret)
{
	struct boot_timer *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->mmio = (struct mmio_device){
		.name = "boot-timer",
		.base = BOOT_TIMER_ADDR,
		.size = 0x1000,
		.read = bt_read,
		.write = bt_write,
		.priv = t,
	};
	t->process_start_ns = process_start_ns;
	t->instance_start_ns = instance_start_ns;
	*ret = t;
	return 0;
}

struct boot_timer *boot_timer_free(struct boot_timer *t)
{
	free(t);
	return NULL;
}

struct mmio_device *boot_timer_mmio(struct boot_timer *t)
{
	return &t->mmio;
}

json_t *boot_timer_metrics(struct boot_timer *t)
{
	return json_pack("{s:I, s:I}", "signalled", (json_int_t)atomic_load(&t->signalled),
			 "boot_time_us", (json_int_t)atomic_load(&t->boot_time_us));
}
