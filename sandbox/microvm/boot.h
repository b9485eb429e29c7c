/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Direct kernel boot on x86-64: loads an ELF vmlinux (64-bit Linux entry or PVH entry) or a
 * bzImage (64-bit boot protocol) into guest memory and writes everything the entry expects
 * (Documentation/arch/x86/boot.rst, Xen's hvm_start_info, Intel MP spec 1.4). The guest-physical
 * map is Firecracker's (see docs/microvm.md):
 *
 *   0x500   GDT (4 entries)          0x520   IDT (empty)
 *   0x6000  hvm_start_info (PVH)     0x6040  PVH memory map   0x6400 PVH module list
 *   0x7000  zero page                0x8ff0  initial stack
 *   0x9000  PML4, 0xa000 PDPT, 0xb000-0xefff four PDs: 0-4 GiB identity-mapped, 2 MiB pages
 *   0x20000 command line (2 KiB)     0x9fc00 MP table (EBDA; reserved up to 1 MiB)
 *   0x100000 kernel (bzImage payload; ELF segments at their p_paddr, never below this)
 *   initrd: page-aligned at the top of low RAM (below initrd_addr_max for a bzImage)
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct guest_mem;

#define BOOT_GDT_ADDR 0x500ull
#define BOOT_IDT_ADDR 0x520ull
#define BOOT_START_INFO_ADDR 0x6000ull
#define BOOT_PVH_MEMMAP_ADDR 0x6040ull
#define BOOT_PVH_MODLIST_ADDR 0x6400ull
#define BOOT_ZERO_PAGE_ADDR 0x7000ull
#define BOOT_STACK_ADDR 0x8ff0ull
#define BOOT_PML4_ADDR 0x9000ull
#define BOOT_PDPT_ADDR 0xa000ull
#define BOOT_PD_ADDR 0xb000ull
#define BOOT_CMDLINE_ADDR 0x20000ull
#define BOOT_CMDLINE_MAX 2048 /* including the NUL */
#define BOOT_MPTABLE_ADDR 0x9fc00ull
#define BOOT_HIMEM 0x100000ull
/* RAM stops at the 32-bit MMIO gap (Firecracker's layout) and resumes at 4 GiB. */
#define BOOT_MMIO_GAP_START 0xc0000000ull
#define BOOT_MMIO_GAP_END 0x100000000ull
#define BOOT_MAX_CPUS 32

/* Which entry to use for an ELF that offers both (a bzImage always uses the 64-bit entry). */
enum boot_entry_pref {
	BOOT_ENTRY_AUTO, /* PVH if the ELF has the note, as Firecracker does */
	BOOT_ENTRY_LINUX64,
	BOOT_ENTRY_PVH,
	_BOOT_ENTRY_MAX,
};

enum boot_kind {
	BOOT_KIND_LINUX64, /* long mode, RSI = zero page */
	BOOT_KIND_PVH, /* 32-bit protected mode, EBX = hvm_start_info */
};

struct boot_request {
	const uint8_t *kernel; /* the image file, borrowed */
	size_t kernel_len;
	const uint8_t *initrd; /* may be NULL */
	size_t initrd_len;
	const char *cmdline; /* borrowed; "" for none */
	unsigned n_cpus; /* 1..BOOT_MAX_CPUS, for the MP table */
	enum boot_entry_pref pref;
};

struct boot_info {
	enum boot_kind kind;
	bool bzimage;
	uint64_t entry; /* RIP (linux64) or EIP (PVH) */
	uint64_t boot_data; /* zero page (RSI) or hvm_start_info (EBX) */
	uint64_t gdt[4]; /* what was written at BOOT_GDT_ADDR: null, code, data, TSS */
	uint64_t kernel_end; /* first byte after the loaded kernel */
	uint64_t initrd_addr;
};

/* "auto", "linux64", "pvh" and back (-EINVAL). */
const char *boot_entry_pref_to_string(enum boot_entry_pref p);
int boot_entry_pref_from_string(const char *s, enum boot_entry_pref *ret);

/*
 * Loads @req into @mem (which must hold RAM from 0 up to at least 2 MiB) and fills @ret.
 * The image is untrusted: every offset and size is checked. On failure returns -EINVAL (bad or
 * unsupported image), -E2BIG (command line or initrd does not fit), -ENOEXEC (no usable entry,
 * e.g. PVH requested without the note), and writes a one-line reason to @err (@errlen bytes,
 * always NUL-terminated). Guest memory may be partly written on failure.
 */
int boot_load(struct guest_mem *mem, const struct boot_request *req, struct boot_info *ret,
	      char *err, size_t errlen);

/* The boot memory map (E820 types: 1 RAM, 2 reserved) for @mem: up to @max entries in @ret.
 * Returns the number of entries. */
struct boot_e820 {
	uint64_t addr, size;
	uint32_t type;
};
unsigned boot_memory_map(const struct guest_mem *mem, struct boot_e820 *ret, unsigned max);
