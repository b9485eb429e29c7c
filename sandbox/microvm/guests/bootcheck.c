/* SPDX-License-Identifier: MIT */
/*
 * bootcheck: the test guest of tests/integration/microvm.sh. What it does is chosen on the
 * kernel command line, "mode=":
 *   check (default)  verify the boot information the VMM built and print PASS/FAIL lines:
 *                    boot protocol fields, the memory map against "mem_mib=N", the command line
 *                    ("token=X" must be present), the initrd against "initrd_size=N" (a known
 *                    byte pattern), the MP table's CPU count against "cpus=N". Exit code =
 *                    number of failures.
 *   count            print "tick N" forever (or "count_max=N" times): pause/resume tests.
 *   cad              poll the i8042 until the Ctrl+Alt+Del scancodes arrive, then reboot.
 *   triple           triple-fault on purpose.
 *   badmmio          access MMIO addresses no device owns, then exit normally.
 *   boottimer        write 123 to the boot-timer page (0xc0000000), then exit.
 *   echo             read one line from COM1 and print it back upper-cased ("echo: LINE").
 */
#include "sandbox/microvm/guests/guest.h"

#define E820_RAM 1
#define MB (1024ull * 1024)
#define HIMEM 0x100000ull

struct mem_entry {
	uint64_t addr, size;
	uint32_t type;
};

extern char __image_start[], __image_end[];

static int failures;

static void result(bool ok, const char *what)
{
	guest_result(ok, what, &failures);
}

static inline uint32_t rd32(const void *base, size_t off)
{
	return *(const volatile uint32_t *)((const uint8_t *)base + off);
}
static inline uint64_t rd64(const void *base, size_t off)
{
	return *(const volatile uint64_t *)((const uint8_t *)base + off);
}

/* Copies up to @max entries of the boot memory map to @m; returns the count. */
static unsigned memory_map(struct mem_entry *m, unsigned max)
{
	const uint8_t *zp = guest_zero_page();
	const uint8_t *si = guest_pvh_start_info();
	unsigned n = 0;

	if (zp) {
		n = zp[0x1e8];
		for (unsigned i = 0; i < n && i < max; i++) {
			const uint8_t *e = zp + 0x2d0 + 20 * i;
			m[i].addr = rd64(e, 0);
			m[i].size = rd64(e, 8);
			m[i].type = rd32(e, 16);
		}
	} else if (si) {
		const uint8_t *t = (const uint8_t *)(uintptr_t)rd64(si, 40);
		n = rd32(si, 48);
		for (unsigned i = 0; i < n && i < max; i++) {
			m[i].addr = rd64(t, 24 * i);
			m[i].size = rd64(t, 24 * i + 8);
			m[i].type = rd32(t, 24 * i + 16);
		}
	}
	return n < max ? n : max;
}

static void check_protocol(void)
{
	const uint8_t *zp = guest_zero_page();
	const uint8_t *si = guest_pvh_start_info();

	if (zp) {
		serial_puts("bootcheck: entry=linux64 zero_page=");
		serial_put_hex((uintptr_t)zp);
		serial_putc('\n');
		result(*(const uint16_t *)(zp + 0x1fe) == 0xaa55, "zero page boot_flag 0xaa55");
		result(rd32(zp, 0x202) == 0x53726448, "zero page header HdrS");
		result(*(const uint16_t *)(zp + 0x206) >= 0x20c, "zero page version >= 2.12");
		result(zp[0x210] == 0xff, "zero page type_of_loader 0xff");
		result(rd32(zp, 0x228) != 0, "zero page cmd_line_ptr set");
	} else if (si) {
		serial_puts("bootcheck: entry=pvh start_info=");
		serial_put_hex((uintptr_t)si);
		serial_putc('\n');
		result(rd32(si, 4) >= 1, "pvh start_info version >= 1");
		result(rd64(si, 24) != 0, "pvh cmdline_paddr set");
		result(rd32(si, 48) > 0 && rd64(si, 40) != 0, "pvh memmap present");
	} else {
		result(false, "boot information present");
	}
}

static void check_cmdline(void)
{
	char token[64];

	serial_puts("cmdline: ");
	serial_puts(guest_cmdline());
	serial_putc('\n');
	int n = cmdline_get("token", token, sizeof(token));
	if (n > 0) {
		serial_puts("token=");
		serial_puts(token);
		serial_putc('\n');
	}
	result(n > 0, "cmdline token present");
}

static void check_memory(void)
{
	struct mem_entry m[128];
	unsigned n = memory_map(m, 128);
	bool have_mem;
	uint64_t mem = cmdline_u64("mem_mib", 0, &have_mem) * MB;
	uint64_t ram = 0, low_end = 0;
	bool sorted = true, low = false, reserved_hole = true, image = false;

	serial_puts("memory map: ");
	serial_put_dec(n);
	serial_puts(" entries\n");
	for (unsigned i = 0; i < n; i++) {
		serial_puts("  ");
		serial_put_hex(m[i].addr);
		serial_puts(" +");
		serial_put_hex(m[i].size);
		serial_puts(" type ");
		serial_put_dec(m[i].type);
		serial_putc('\n');
		/* Loaders need not sort the map (QEMU does not): compare every pair. */
		for (unsigned j = 0; j < i; j++)
			if (m[i].size && m[j].size && m[i].addr < m[j].addr + m[j].size &&
			    m[j].addr < m[i].addr + m[i].size)
				sorted = false;
		if (m[i].type != E820_RAM)
			continue;
		ram += m[i].size;
		if (m[i].addr == 0)
			low = true;
		/* The EBDA / MP table / BIOS area must never be handed out as RAM. */
		if (m[i].addr < HIMEM && m[i].addr + m[i].size > 0x9fc00)
			reserved_hole = false;
		if (m[i].addr <= (uintptr_t)__image_start &&
		    m[i].addr + m[i].size >= (uintptr_t)__image_end)
			image = true;
		if (m[i].addr == HIMEM)
			low_end = m[i].addr + m[i].size;
	}
	result(n > 0, "memory map not empty");
	result(sorted, "memory map has no overlaps");
	result(low, "RAM at address 0");
	result(reserved_hole, "0x9fc00-0x100000 not RAM");
	result(image, "guest image inside RAM");
	if (have_mem && mem <= 3072 * MB) {
		serial_puts("ram end ");
		serial_put_hex(low_end);
		serial_puts(" total ");
		serial_put_hex(ram);
		serial_putc('\n');
		result(low_end == mem, "RAM ends at mem_mib");
		result(ram == mem - (HIMEM - 0x9fc00), "RAM total matches mem_mib");
	}
}

static void check_initrd(void)
{
	bool want;
	uint64_t size = cmdline_u64("initrd_size", 0, &want);
	const uint8_t *zp = guest_zero_page();
	const uint8_t *si = guest_pvh_start_info();
	uint64_t addr = 0, len = 0;

	if (!want)
		return;
	if (zp) {
		addr = rd32(zp, 0x218) | (uint64_t)rd32(zp, 0x0c0) << 32;
		len = rd32(zp, 0x21c) | (uint64_t)rd32(zp, 0x0c4) << 32;
	} else if (si && rd32(si, 12) >= 1) {
		const uint8_t *mod = (const uint8_t *)(uintptr_t)rd64(si, 16);
		addr = rd64(mod, 0);
		len = rd64(mod, 8);
	}
	serial_puts("initrd at ");
	serial_put_hex(addr);
	serial_puts(" size ");
	serial_put_dec(len);
	serial_putc('\n');
	result(addr != 0 && len == size, "initrd size matches");
	result((addr & 0xfff) == 0 && addr >= (uintptr_t)__image_end, "initrd placement");
	if (addr == 0 || len != size)
		return;
	const uint8_t *p = (const uint8_t *)(uintptr_t)addr;
	bool same = true;
	for (uint64_t i = 0; i < len; i++)
		if (p[i] != (uint8_t)(i * 131 + 7)) {
			same = false;
			break;
		}
	result(same, "initrd content pattern");
}

/* Counts enabled processor entries of the MP table (Intel MP spec 1.4) the VMM wrote. */
static int mp_cpu_count(void)
{
	for (uint64_t a = 0x9fc00; a < 0x100000; a += 16) {
		const uint8_t *fp = (const uint8_t *)(uintptr_t)a;
		if (rd32(fp, 0) != 0x5f504d5f) /* "_MP_" */
			continue;
		uint8_t sum = 0;
		for (int i = 0; i < 16; i++)
			sum += fp[i];
		if (sum != 0)
			continue;
		const uint8_t *ct = (const uint8_t *)(uintptr_t)rd32(fp, 4);
		if (!ct || rd32(ct, 0) != 0x504d4350) /* "PCMP" */
			return -1;
		unsigned count = *(const uint16_t *)(ct + 34);
		const uint8_t *e = ct + 44;
		int cpus = 0;
		for (unsigned i = 0; i < count; i++) {
			if (e[0] == 0) {
				if (e[3] & 1)
					cpus++;
				e += 20;
			} else {
				e += 8;
			}
		}
		return cpus;
	}
	return -1;
}

static void check_cpus(void)
{
	bool want;
	uint64_t cpus = cmdline_u64("cpus", 0, &want);

	if (!want)
		return;
	int n = mp_cpu_count();
	serial_puts("mp table cpus ");
	serial_put_dec(n < 0 ? 0 : (uint64_t)n);
	serial_putc('\n');
	result(n >= 0 && (uint64_t)n == cpus, "MP table CPU count");
}

static void delay(unsigned n)
{
	for (volatile unsigned i = 0; i < n; i++)
		__asm__ volatile("pause");
}

static int mode_count(void)
{
	bool bounded;
	uint64_t max = cmdline_u64("count_max", 0, &bounded);

	for (uint64_t i = 0; !bounded || i < max; i++) {
		serial_puts("tick ");
		serial_put_dec(i);
		serial_putc('\n');
		delay(20000);
	}
	return 0;
}

/* Firecracker's SendCtrlAltDel pushes scancode set 2 make codes: Ctrl 0x14, Alt 0x11, Del e0 71. */
static int mode_cad(void)
{
	static const uint8_t seq[] = { 0x14, 0x11, 0xe0, 0x71 };
	unsigned matched = 0;

	serial_puts("waiting for ctrl-alt-del\n");
	for (;;) {
		if (!(inb(0x64) & 1)) {
			delay(2000);
			continue;
		}
		uint8_t b = inb(0x60);
		serial_puts("scancode ");
		serial_put_hex(b);
		serial_putc('\n');
		matched = b == seq[matched] ? matched + 1 : (b == seq[0] ? 1 : 0);
		if (matched == sizeof(seq)) {
			serial_puts("got ctrl-alt-del\n");
			return 0;
		}
	}
}

static int mode_badmmio(void)
{
	/* Nothing lives at 0xdf000000 (above the virtio slots) or 0xfd000000. */
	mmio_write32(0xdf000000, 0xdeadbeef);
	mmio_write8(0xfd000010, 1);
	uint32_t v = mmio_read32(0xdf000000);
	serial_puts("badmmio: survived, read ");
	serial_put_hex(v);
	serial_putc('\n');
	return 0;
}

static int mode_echo(void)
{
	char line[64];
	size_t n = 0;

	serial_puts("echo: ready\n");
	while (n < sizeof(line) - 1) {
		if (!(inb(0x3f8 + 5) & 1)) { /* LSR data ready */
			delay(2000);
			continue;
		}
		char c = (char)inb(0x3f8);
		if (c == '\n' || c == '\r')
			break;
		line[n++] = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
	}
	line[n] = '\0';
	serial_puts("echo: ");
	serial_puts(line);
	serial_putc('\n');
	return 0;
}

int guest_main(void)
{
	char mode[16] = "check";

	serial_puts("bootcheck: hello\n");
	cmdline_get("mode", mode, sizeof(mode));
	if (!memcmp(mode, "count", 6))
		return mode_count();
	if (!memcmp(mode, "cad", 4))
		return mode_cad();
	if (!memcmp(mode, "echo", 5))
		return mode_echo();
	if (!memcmp(mode, "badmmio", 8))
		return mode_badmmio();
	if (!memcmp(mode, "boottimer", 10)) {
		mmio_write8(0xc0000000, 123);
		serial_puts("boottimer: signalled\n");
		return 0;
	}
	if (!memcmp(mode, "triple", 7)) {
		static const struct {
			uint16_t limit;
			uint64_t base;
		} __attribute__((packed)) no_idt = { 0, 0 };
		serial_puts("bootcheck: triple fault now\n");
		__asm__ volatile("lidt %0; int3" : : "m"(no_idt));
		guest_halt();
	}

	check_protocol();
	check_cmdline();
	check_memory();
	check_initrd();
	check_cpus();
	serial_puts(failures ? "bootcheck: FAILED\n" : "bootcheck: all passed\n");
	return failures;
}
