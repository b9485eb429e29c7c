/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The tiny test-guest runtime (guests/entry.S + guests/runtime.c, linked by guests/guest.ld).
 *
 * A guest image is one freestanding ELF that is at once
 *   - a Linux-style ELF "vmlinux": e_entry is a 64-bit entry point that expects long mode with
 *     identity paging set up by the VMM and RSI = the guest-physical address of the zero page
 *     (struct boot_params), as Firecracker enters an ELF kernel; and
 *   - a PVH ELF: a XEN_ELFNOTE_PHYS32_ENTRY note names a 32-bit protected-mode entry that gets
 *     EBX = the hvm_start_info address, builds its own page tables and enters long mode (QEMU's
 *     `-M microvm -kernel` and our VMM's PVH path).
 * Either way the runtime loads its own GDT and page tables (0-4 GiB identity-mapped with 2 MiB
 * pages, so MMIO at 0xd0000000 and the IOAPIC/LAPIC are reachable), switches to its own stack,
 * and calls guest_main() with interrupts disabled. When guest_main() returns, the runtime prints
 * "guest exit <code>\n" on COM1 and resets the machine through the i8042 (guest_reboot()).
 *
 * Every image is linked at 1 MiB (guest-physical = virtual). No interrupts are ever enabled: a
 * guest polls devices. No libc: only what is declared here.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Defined by each guest. Its return value is printed as "guest exit <code>". */
int guest_main(void);

/* ---- port I/O ---- */
static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outw(uint16_t port, uint16_t v)
{
	__asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}
static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint16_t inw(uint16_t port)
{
	uint16_t v;
	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint32_t inl(uint16_t port)
{
	uint32_t v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

/* ---- MMIO: one access of exactly the named width (volatile, never split or merged) ---- */
static inline uint8_t mmio_read8(uint64_t addr)
{
	return *(volatile uint8_t *)(uintptr_t)addr;
}
static inline uint16_t mmio_read16(uint64_t addr)
{
	return *(volatile uint16_t *)(uintptr_t)addr;
}
static inline uint32_t mmio_read32(uint64_t addr)
{
	return *(volatile uint32_t *)(uintptr_t)addr;
}
static inline uint64_t mmio_read64(uint64_t addr)
{
	return *(volatile uint64_t *)(uintptr_t)addr;
}
static inline void mmio_write8(uint64_t addr, uint8_t v)
{
	*(volatile uint8_t *)(uintptr_t)addr = v;
}
static inline void mmio_write16(uint64_t addr, uint16_t v)
{
	*(volatile uint16_t *)(uintptr_t)addr = v;
}
static inline void mmio_write32(uint64_t addr, uint32_t v)
{
	*(volatile uint32_t *)(uintptr_t)addr = v;
}
static inline void mmio_write64(uint64_t addr, uint64_t v)
{
	*(volatile uint64_t *)(uintptr_t)addr = v;
}

/* A compiler barrier plus mfence: orders guest-memory writes (e.g. a virtqueue) before an MMIO
 * notify. */
static inline void guest_mb(void)
{
	__asm__ volatile("mfence" : : : "memory");
}

/* ---- COM1 (0x3f8) output, polled ---- */
void serial_putc(char c); /* "\n" is sent as "\r\n" */
void serial_puts(const char *s);
void serial_put_hex(uint64_t v); /* "0x" + lowercase hex, no leading zeros */
void serial_put_dec(uint64_t v);

/* ---- the few libc functions the compiler may also emit calls to ---- */
void *memset(void *s, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

/* ---- boot information ---- */

/* The kernel command line the VMM passed (zero page cmd_line_ptr, or hvm_start_info
 * cmdline_paddr); "" if none. */
const char *guest_cmdline(void);

/* Looks up "key=value" among the space-separated words of the command line. Copies value
 * (NUL-terminated, truncated to @n - 1 bytes) to @buf and returns its full length, or -1 if the key
 * is absent. "key" alone (no '=') yields "" and 0. */
int cmdline_get(const char *key, char *buf, size_t n);

/* The decimal number of "key=N" (its leading digits), or @dflt if the key is absent or has no
 * value; *found (if not NULL) says whether it was there. */
uint64_t cmdline_u64(const char *key, uint64_t dflt, bool *found);

/* Prints "PASS @what" or "FAIL @what" on the console; a failure is counted in *failures. */
void guest_result(bool ok, const char *what, int *failures);

/* The zero page (struct boot_params, 4 KiB) when entered through the 64-bit Linux entry, else
 * NULL. */
const void *guest_zero_page(void);

/* The hvm_start_info when entered through the PVH entry, else NULL. */
const void *guest_pvh_start_info(void);

/* Resets the machine: 0xFE to the i8042 command port (0x64), then a triple fault if that did not
 * stop the CPU. */
void guest_reboot(void) __attribute__((noreturn));

/* Stops this CPU for good (cli; hlt loop). */
void guest_halt(void) __attribute__((noreturn));
