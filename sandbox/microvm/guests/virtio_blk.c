// SPDX-License-Identifier: MIT
/*
 * virtio_blk: the block-device test guest of tests/integration/microvm_virtio.sh.
 *
 * The host writes sectors 1 and 2 of the image with the pattern byte[i] = (i ^ 0xa5) + sector.
 * The guest finds its virtio-blk device on the command line and, printing PASS/FAIL lines:
 *   - reads sector 1 alone and sectors 1-2 in one request (a 4-descriptor chain) and checks the
 *     pattern;
 *   - checks that the first completion raised InterruptStatus bit 0 and reached the CPU: the
 *     guest routes the device's IOAPIC pin (from the command line) to a vector and, with
 *     interrupts disabled, finds that vector pending in the local APIC's IRR (the irqfd path);
 *   - GET_ID, and checks the answer against "blk_id=..." when given;
 *   - reads one sector past the end ("capacity" from the config space): must be IOERR;
 *   - writes sector "blk_write=N" (default 3) with byte[i] = (i * 3 + 0x5a), FLUSHes and reads it
 *     back; with "blk_ro=1" the device must offer VIRTIO_BLK_F_RO and answer the write with
 *     IOERR instead;
 *   - with "blk_bad=1", posts a descriptor loop: the device must set DEVICE_NEEDS_RESET and
 *     serve nothing, then work again after a reset and a fresh bring-up.
 * The exit code is the number of failures.
 */
#include "sandbox/microvm/guests/virtio_guest.h"

#define BLK_F_SEG_MAX (1ull << 2)
#define BLK_F_RO (1ull << 5)
#define BLK_F_FLUSH (1ull << 9)

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define S_OK 0
#define S_IOERR 1
#define S_NONE 0xee /* what we put in the status byte before submitting */

struct blk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

#define IOAPIC_BASE 0xfec00000ull
#define LAPIC_BASE 0xfee00000ull
#define LAPIC_SVR 0x0f0
#define LAPIC_IRR 0x200
#define TEST_VECTOR 0x41

static struct gqueue q;
static struct blk_req_hdr hdr;
static uint8_t data[4096] __attribute__((aligned(512)));
static volatile uint8_t status;
static uint64_t base;
static int failures;

/*
 * One request: header, then @len bytes of data in @nseg equal descriptors (device-writable for
 * reads and GET_ID), then the status byte. Returns the status, or -1 on timeout.
 */
static int blk_request(uint32_t type, uint64_t sector, uint32_t len, unsigned nseg,
		       uint32_t *used_len)
{
	bool dev_writes = type == T_IN || type == T_GET_ID;
	struct gused_elem e;
	unsigned d = 0;

	hdr = (struct blk_req_hdr){ .type = type, .sector = sector };
	status = S_NONE;
	q.desc[d] = (struct gdesc){ (uint64_t)(uintptr_t)&hdr, sizeof(hdr), VRING_F_NEXT, 1 };
	d++;
	for (unsigned i = 0; len && i < nseg; i++, d++)
		q.desc[d] =
			(struct gdesc){ (uint64_t)(uintptr_t)(data + i * (len / nseg)), len / nseg,
					(uint16_t)(VRING_F_NEXT | (dev_writes ? VRING_F_WRITE : 0)),
					(uint16_t)(d + 1) };
	q.desc[d] = (struct gdesc){ (uint64_t)(uintptr_t)&status, 1, VRING_F_WRITE, 0 };
	gq_submit(&q, 0);
	if (gq_wait(&q, &e) < 0)
		return -1;
	if (used_len)
		*used_len = e.len;
	return status;
}

static uint8_t pattern(unsigned i, unsigned sector)
{
	return (uint8_t)((i ^ 0xa5) + sector);
}

static bool check_sector(const uint8_t *p, unsigned sector)
{
	for (unsigned i = 0; i < 512; i++)
		if (p[i] != pattern(i, sector))
			return false;
	return true;
}

/* Routes IOAPIC pin @pin to @vector on APIC 0 (fixed, edge, active high, unmasked) and
 * software-enables the local APIC so it accepts the interrupt; IF stays 0, so it stays pending
 * in the IRR. */
static void route_irq(unsigned pin, uint8_t vector)
{
	mmio_write32(IOAPIC_BASE, 0x10 + 2 * pin + 1);
	mmio_write32(IOAPIC_BASE + 0x10, 0);
	mmio_write32(IOAPIC_BASE, 0x10 + 2 * pin);
	mmio_write32(IOAPIC_BASE + 0x10, vector);
	mmio_write32(LAPIC_BASE + LAPIC_SVR, mmio_read32(LAPIC_BASE + LAPIC_SVR) | 0x100);
}

static bool irr_pending(uint8_t vector)
{
	return mmio_read32(LAPIC_BASE + LAPIC_IRR + 0x10 * (vector / 32)) & (1u << (vector % 32));
}

static uint64_t bring_up(void)
{
	uint64_t f = virtio_begin(base, BLK_F_SEG_MAX | BLK_F_RO | BLK_F_FLUSH);

	if (!f || virtio_queue(base, &q, 0) < 0)
		return 0;
	virtio_driver_ok(base);
	return f;
}

/* A descriptor loop must stop the device with NEEDS_RESET, not the VMM. */
static void bad_chain(void)
{
	uint32_t st;

	q.desc[0] = (struct gdesc){ (uint64_t)(uintptr_t)&hdr, sizeof(hdr), VRING_F_NEXT, 1 };
	q.desc[1] = (struct gdesc){ (uint64_t)(uintptr_t)&hdr, sizeof(hdr), VRING_F_NEXT, 0 };
	gq_submit(&q, 0);
	/* Wait (boundedly) for the device to notice. */
	uint64_t start = rdtsc();
	while (!((st = mmio_read32(base + VIO_STATUS)) & VIO_S_NEEDS_RESET) &&
	       rdtsc() - start < GUEST_POLL_CYCLES)
		__asm__ volatile("pause");
	guest_result(st & VIO_S_NEEDS_RESET, "bad chain sets DEVICE_NEEDS_RESET", &failures);
	guest_result(mmio_read32(base + VIO_INTERRUPT_STATUS) & 2, "config-change interrupt raised",
		     &failures);
	guest_result(*(volatile uint16_t *)&q.used.idx == q.used_seen, "bad chain not consumed",
		     &failures);

	/* Reset and start over: the device must serve requests again. */
	guest_result(bring_up() != 0, "bring-up after reset", &failures);
	guest_result(blk_request(T_IN, 1, 512, 1, NULL) == S_OK && check_sector(data, 1),
		     "read after reset", &failures);
}

int guest_main(void)
{
	bool ro = cmdline_u64("blk_ro", 0, NULL) != 0;
	uint64_t wsec = cmdline_u64("blk_write", 3, NULL);
	char want_id[24];
	uint32_t used_len = 0;
	uint64_t features, capacity;
	int st;

	unsigned irq = 0;

	base = virtio_find(2, &irq);
	serial_puts("virtio-blk at ");
	serial_put_hex(base);
	serial_putc('\n');
	if (!base) {
		guest_result(false, "virtio-blk device found", &failures);
		return failures;
	}
	features = bring_up();
	guest_result(features != 0, "features negotiated", &failures);
	if (!features)
		return failures;
	capacity = (uint64_t)mmio_read32(base + VIO_CONFIG) |
		   (uint64_t)mmio_read32(base + VIO_CONFIG + 4) << 32;
	serial_puts("capacity ");
	serial_put_dec(capacity);
	serial_putc('\n');
	guest_result(!!(features & BLK_F_RO) == ro, ro ? "read-only offered" : "read-write offered",
		     &failures);

	serial_puts("irq ");
	serial_put_dec(irq);
	serial_putc('\n');
	if (irq > 0 && irq < 24)
		route_irq(irq, TEST_VECTOR);
	guest_result(!irr_pending(TEST_VECTOR), "no interrupt pending before the first request",
		     &failures);

	memset(data, 0, sizeof(data));
	st = blk_request(T_IN, 1, 512, 1, &used_len);
	guest_result(st == S_OK && used_len == 513 && check_sector(data, 1), "read sector 1",
		     &failures);
	/* The completion reached the CPU through the IOAPIC (bounded wait: the irqfd is
	 * injected asynchronously). */
	uint64_t t0 = rdtsc();
	while (!irr_pending(TEST_VECTOR) && rdtsc() - t0 < GUEST_POLL_CYCLES)
		__asm__ volatile("pause");
	guest_result(irr_pending(TEST_VECTOR), "interrupt pending in the local APIC", &failures);
	/* The used buffer raised InterruptStatus bit 0; acknowledging clears it. */
	uint32_t isr = mmio_read32(base + VIO_INTERRUPT_STATUS);
	mmio_write32(base + VIO_INTERRUPT_ACK, isr);
	guest_result((isr & 1) && !(mmio_read32(base + VIO_INTERRUPT_STATUS) & 1),
		     "interrupt status set and acknowledged", &failures);

	memset(data, 0, sizeof(data));
	st = blk_request(T_IN, 1, 1024, 2, &used_len);
	guest_result(st == S_OK && used_len == 1025 && check_sector(data, 1) &&
			     check_sector(data + 512, 2),
		     "read sectors 1-2 in one request", &failures);

	memset(data, 0, 20);
	st = blk_request(T_GET_ID, 0, 20, 1, NULL);
	serial_puts("id ");
	serial_puts((const char *)data);
	serial_putc('\n');
	guest_result(st == S_OK && (cmdline_get("blk_id", want_id, sizeof(want_id)) < 0 ||
				    memcmp(data, want_id, strlen(want_id) + 1) == 0),
		     "get id", &failures);

	st = blk_request(T_IN, capacity, 512, 1, NULL);
	guest_result(st == S_IOERR, "read past the end is IOERR", &failures);

	for (unsigned i = 0; i < 512; i++)
		data[i] = (uint8_t)(i * 3 + 0x5a);
	st = blk_request(T_OUT, wsec, 512, 1, NULL);
	serial_puts("write status ");
	serial_put_dec((uint64_t)(uint8_t)st);
	serial_putc('\n');
	if (ro) {
		guest_result(st == S_IOERR, "write to read-only drive is IOERR", &failures);
	} else {
		guest_result(st == S_OK, "write sector", &failures);
		guest_result(blk_request(T_FLUSH, 0, 0, 0, NULL) == S_OK, "flush", &failures);
		memset(data, 0, 512);
		st = blk_request(T_IN, wsec, 512, 1, NULL);
		bool same = st == S_OK;
		for (unsigned i = 0; i < 512; i++)
			same = same && data[i] == (uint8_t)(i * 3 + 0x5a);
		guest_result(same, "read back written sector", &failures);
	}

	if (cmdline_u64("blk_bad", 0, NULL))
		bad_chain();

	/* "blk_bench=N": N synchronous 4 KiB reads (one in flight), timed with the TSC. */
	uint64_t n = cmdline_u64("blk_bench", 0, NULL);
	if (n && capacity >= 8) {
		uint64_t t0 = rdtsc();
		for (uint64_t i = 0; i < n; i++)
			if (blk_request(T_IN, 0, 4096, 1, NULL) != S_OK) {
				guest_result(false, "bench read", &failures);
				break;
			}
		serial_puts("bench ");
		serial_put_dec(n);
		serial_puts(" reads of 4 KiB in ");
		serial_put_dec(rdtsc() - t0);
		serial_puts(" TSC cycles\n");
	}
	serial_puts(failures ? "virtio-blk FAILED\n" : "virtio-blk OK\n");
	return failures;
}
