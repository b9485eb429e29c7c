/* SPDX-License-Identifier: MIT */
/*
 * The test-guest runtime: COM1 output, the few libc functions, boot-information accessors and
 * the exit path. entry.S calls runtime_start() once, on CPU 0, with interrupts off.
 */
#include "guest.h"

#define COM1 0x3f8
#define COM1_LSR (COM1 + 5)
#define LSR_THRE 0x20

#define BOOT_KIND_LINUX64 1
#define BOOT_KIND_PVH 2
#define HVM_START_MAGIC 0x336ec578u

void runtime_start(uint32_t kind, uint64_t info);

static const void *zero_page;
static const void *pvh_info;
static const char *cmdline = "";

void serial_putc(char c)
{
	if (c == '\n')
		serial_putc('\r');
	/* Wait (boundedly: a missing UART reads 0xff, and must not hang us) for the transmitter. */
	for (int i = 0; i < 100000; i++)
		if (inb(COM1_LSR) & LSR_THRE)
			break;
	outb(COM1, (uint8_t)c);
}

void serial_puts(const char *s)
{
	while (*s)
		serial_putc(*s++);
}

void serial_put_hex(uint64_t v)
{
	char buf[19];
	int i = sizeof(buf) - 1;

	buf[i] = '\0';
	do {
		buf[--i] = "0123456789abcdef"[v & 0xf];
		v >>= 4;
	} while (v);
	buf[--i] = 'x';
	buf[--i] = '0';
	serial_puts(buf + i);
}

void serial_put_dec(uint64_t v)
{
	char buf[21];
	int i = sizeof(buf) - 1;

	buf[i] = '\0';
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	serial_puts(buf + i);
}

void *memset(void *s, int c, size_t n)
{
	unsigned char *p = s;

	while (n--)
		*p++ = (unsigned char)c;
	return s;
}

void *memcpy(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	while (n--)
		*d++ = *s++;
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;

	for (; n; n--, x++, y++)
		if (*x != *y)
			return *x < *y ? -1 : 1;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

const char *guest_cmdline(void)
{
	return cmdline;
}

int cmdline_get(const char *key, char *buf, size_t n)
{
	size_t klen = strlen(key);
	const char *p = cmdline;

	while (*p) {
		while (*p == ' ')
			p++;
		const char *w = p;
		while (*p && *p != ' ')
			p++;
		size_t wlen = (size_t)(p - w);
		if (wlen < klen || memcmp(w, key, klen) != 0)
			continue;
		if (wlen == klen) {
			if (n)
				buf[0] = '\0';
			return 0;
		}
		if (w[klen] != '=')
			continue;
		size_t vlen = wlen - klen - 1;
		if (n) {
			size_t c = vlen < n - 1 ? vlen : n - 1;
			memcpy(buf, w + klen + 1, c);
			buf[c] = '\0';
		}
		return (int)vlen;
	}
	return -1;
}

uint64_t cmdline_u64(const char *key, uint64_t dflt, bool *found)
{
	char buf[24];
	uint64_t v = 0;
	bool there = cmdline_get(key, buf, sizeof(buf)) > 0;

	if (found)
		*found = there;
	if (!there)
		return dflt;
	for (const char *p = buf; *p >= '0' && *p <= '9'; p++)
		v = v * 10 + (uint64_t)(*p - '0');
	return v;
}

void guest_result(bool ok, const char *what, int *failures)
{
	serial_puts(ok ? "PASS " : "FAIL ");
	serial_puts(what);
	serial_putc('\n');
	if (!ok)
		(*failures)++;
}

const void *guest_zero_page(void)
{
	return zero_page;
}

const void *guest_pvh_start_info(void)
{
	return pvh_info;
}

void guest_halt(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

void guest_reboot(void)
{
	static const struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) no_idt = { 0, 0 };

	/* The i8042 "pulse reset line" command: our VMM and Firecracker stop the VM here. */
	outb(0x64, 0xfe);
	/* QEMU's isa-debug-exit device (the bench adds it at 0xf4); our VMM ignores the port. */
	outb(0xf4, 0);
	/* Otherwise an empty IDT turns the next exception into a triple fault, which QEMU's
	 * -no-reboot turns into an exit. */
	__asm__ volatile("lidt %0; int3" : : "m"(no_idt));
	guest_halt();
}

void runtime_start(uint32_t kind, uint64_t info)
{
	if (kind == BOOT_KIND_LINUX64 && info) {
		const uint8_t *zp = (const uint8_t *)(uintptr_t)info;
		uint64_t p = *(const uint32_t *)(zp + 0x228) |
			     (uint64_t) * (const uint32_t *)(zp + 0x0c8) << 32;

		zero_page = zp;
		if (p)
			cmdline = (const char *)(uintptr_t)p;
	} else if (kind == BOOT_KIND_PVH && info) {
		const uint8_t *si = (const uint8_t *)(uintptr_t)info;

		if (*(const uint32_t *)si == HVM_START_MAGIC) {
			uint64_t p = *(const uint64_t *)(si + 24); /* cmdline_paddr */

			pvh_info = si;
			if (p)
				cmdline = (const char *)(uintptr_t)p;
		}
	}

	int code = guest_main();

	serial_puts("guest exit ");
	if (code < 0) {
		serial_putc('-');
		serial_put_dec((uint64_t) - (int64_t)code);
	} else {
		serial_put_dec((uint64_t)code);
	}
	serial_putc('\n');
	guest_reboot();
}
