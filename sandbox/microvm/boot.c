/* SPDX-License-Identifier: MIT */
/*
 * Kernel loading for direct boot. Everything read from the image is untrusted: sizes and offsets
 * are checked against the file length before use, and every guest write goes through
 * guest_mem_ptr(), which refuses ranges outside RAM.
 */
#include "sandbox/microvm/boot.h"

#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "libcommon/cleanup.h"
#include "libcommon/strutil.h"
#include "sandbox/microvm/dev/device.h"

#define E820_RAM 1
#define E820_RESERVED 2
#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_START_MAGIC 0x336ec578u
#define SETUP_HDR_MAGIC 0x53726448u /* "HdrS" */
#define XLF_KERNEL_64 0x1
#define LOADED_HIGH 0x1
#define PAGE_SIZE 4096ull

/* GDT entries (flags/type per the Intel SDM): 64-bit code, 32-bit code, flat data, busy TSS. */
#define GDT_CODE64 0x00af9b000000ffffull
#define GDT_CODE32 0x00cf9b000000ffffull
#define GDT_DATA 0x00cf93000000ffffull
#define GDT_TSS 0x00008b0000000067ull

static const char *const entry_pref_names[_BOOT_ENTRY_MAX] = {
	[BOOT_ENTRY_AUTO] = "auto",
	[BOOT_ENTRY_LINUX64] = "linux64",
	[BOOT_ENTRY_PVH] = "pvh",
};

const char *boot_entry_pref_to_string(enum boot_entry_pref p)
{
	return p >= 0 && p < _BOOT_ENTRY_MAX ? entry_pref_names[p] : "?";
}

int boot_entry_pref_from_string(const char *s, enum boot_entry_pref *ret)
{
	for (int i = 0; i < _BOOT_ENTRY_MAX; i++)
		if (strcmp(s, entry_pref_names[i]) == 0) {
			*ret = (enum boot_entry_pref)i;
			return 0;
		}
	return -EINVAL;
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

/* The highest address + 1 of the RAM region that starts at 0 (RAM below the MMIO gap). */
static uint64_t low_ram_end(const struct guest_mem *mem)
{
	for (unsigned i = 0; i < mem->n_regions; i++)
		if (mem->regions[i].gpa == 0)
			return mem->regions[i].size;
	return 0;
}

unsigned boot_memory_map(const struct guest_mem *mem, struct boot_e820 *ret, unsigned max)
{
	struct boot_e820 e[2 + GUEST_MEM_MAX_REGIONS];
	unsigned n = 0;
	uint64_t low = low_ram_end(mem);

	/* Low memory up to the EBDA, then the EBDA/MP table/BIOS area reserved, as on a PC. */
	e[n++] = (struct boot_e820){ 0, BOOT_MPTABLE_ADDR, E820_RAM };
	e[n++] = (struct boot_e820){ BOOT_MPTABLE_ADDR, BOOT_HIMEM - BOOT_MPTABLE_ADDR,
				     E820_RESERVED };
	if (low > BOOT_HIMEM)
		e[n++] = (struct boot_e820){ BOOT_HIMEM, low - BOOT_HIMEM, E820_RAM };
	for (unsigned i = 0; i < mem->n_regions; i++)
		if (mem->regions[i].gpa != 0)
			e[n++] = (struct boot_e820){ mem->regions[i].gpa, mem->regions[i].size,
						     E820_RAM };
	if (n > max)
		n = max;
	memcpy(ret, e, n * sizeof(*e));
	return n;
}

static uint8_t checksum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return (uint8_t)-s;
}

/*
 * The MP table (Intel MP spec 1.4): a floating pointer and a configuration table with one
 * processor entry per vCPU (APIC id = index), the ISA bus, the IOAPIC and an identity IRQ->pin
 * assignment for 24 pins, and LINT0 ExtINT / LINT1 NMI. Linux without ACPI finds the APs here.
 */
static int write_mptable(struct guest_mem *mem, unsigned n_cpus, char *err, size_t errlen)
{
	const unsigned n_irqs = 24;
	size_t size = 16 + 44 + 20 * n_cpus + 8 + 8 + 8 * n_irqs + 8 * 2;
	uint8_t *base = guest_mem_ptr(mem, BOOT_MPTABLE_ADDR, size);
	const uint8_t ioapic_id = (uint8_t)n_cpus;

	if (!base || size > BOOT_HIMEM - BOOT_MPTABLE_ADDR)
		return format_error(err, errlen, -E2BIG, "MP table does not fit");
	memset(base, 0, size);

	uint8_t *fp = base, *ct = base + 16, *e = ct + 44;
	memcpy(fp, "_MP_", 4);
	put32(fp + 4, (uint32_t)(BOOT_MPTABLE_ADDR + 16));
	fp[8] = 1; /* length in 16-byte units */
	fp[9] = 4; /* spec revision 1.4 */
	fp[10] = checksum(fp, 16);

	for (unsigned i = 0; i < n_cpus; i++, e += 20) {
		e[0] = 0; /* processor */
		e[1] = (uint8_t)i; /* local APIC id */
		e[2] = 0x14; /* local APIC version */
		e[3] = 1 | (i == 0 ? 2 : 0); /* enabled, BSP */
		put32(e + 4, 0x600); /* CPU signature: family 6 */
		put32(e + 8, 0x201); /* features: FPU, APIC */
	}
	e[0] = 1; /* bus */
	memcpy(e + 2, "ISA   ", 6);
	e += 8;
	e[0] = 2; /* IOAPIC */
	e[1] = ioapic_id;
	e[2] = 0x11;
	e[3] = 1; /* enabled */
	put32(e + 4, 0xfec00000);
	e += 8;
	for (unsigned i = 0; i < n_irqs; i++, e += 8) {
		e[0] = 3; /* I/O interrupt assignment */
		e[1] = 0; /* INT */
		put16(e + 2, 0); /* conforming polarity and trigger */
		e[4] = 0; /* source bus: ISA */
		e[5] = (uint8_t)i;
		e[6] = ioapic_id;
		e[7] = (uint8_t)i;
	}
	for (unsigned i = 0; i < 2; i++, e += 8) {
		e[0] = 4; /* local interrupt assignment */
		e[1] = i == 0 ? 3 : 1; /* ExtINT on LINT0, NMI on LINT1 */
		e[4] = 0;
		e[5] = 0;
		e[6] = 0xff; /* all local APICs */
		e[7] = (uint8_t)i;
	}

	memcpy(ct, "PCMP", 4);
	put16(ct + 4, (uint16_t)(e - ct)); /* base table length */
	ct[6] = 4;
	memcpy(ct + 8, "K2I     ", 8);
	memcpy(ct + 16, "MICROVM     ", 12);
	put16(ct + 34, (uint16_t)(n_cpus + 2 + n_irqs + 2)); /* entry count */
	put32(ct + 36, 0xfee00000); /* local APIC address */
	ct[7] = checksum(ct, (size_t)(e - ct));
	return 0;
}

/* Identity-maps 0-4 GiB with 2 MiB pages for the 64-bit entry (boot.rst asks for the kernel,
 * zero page and command line; MMIO must be reachable too). */
static int write_page_tables(struct guest_mem *mem)
{
	uint8_t *pml4 = guest_mem_ptr(mem, BOOT_PML4_ADDR, PAGE_SIZE);
	uint8_t *pdpt = guest_mem_ptr(mem, BOOT_PDPT_ADDR, PAGE_SIZE);
	uint8_t *pd = guest_mem_ptr(mem, BOOT_PD_ADDR, 4 * PAGE_SIZE);

	if (!pml4 || !pdpt || !pd)
		return -E2BIG;
	memset(pml4, 0, PAGE_SIZE);
	memset(pdpt, 0, PAGE_SIZE);
	put64(pml4, BOOT_PDPT_ADDR | 0x3);
	for (unsigned i = 0; i < 4; i++)
		put64(pdpt + 8 * i, (BOOT_PD_ADDR + i * PAGE_SIZE) | 0x3);
	for (uint64_t i = 0; i < 4 * 512; i++)
		put64(pd + 8 * i, (i << 21) | 0x83); /* present, writable, 2 MiB */
	return 0;
}

static int write_gdt(struct guest_mem *mem, struct boot_info *bi)
{
	uint8_t *gdt = guest_mem_ptr(mem, BOOT_GDT_ADDR, sizeof(bi->gdt));
	uint8_t *idt = guest_mem_ptr(mem, BOOT_IDT_ADDR, 8);

	if (!gdt || !idt)
		return -E2BIG;
	bi->gdt[0] = 0;
	bi->gdt[1] = bi->kind == BOOT_KIND_PVH ? GDT_CODE32 : GDT_CODE64;
	bi->gdt[2] = GDT_DATA;
	bi->gdt[3] = GDT_TSS;
	for (unsigned i = 0; i < 4; i++)
		put64(gdt + 8 * i, bi->gdt[i]);
	memset(idt, 0, 8);
	return 0;
}

/* Finds the PVH entry in the PT_NOTE segments. Returns 1 and *ret, 0 if absent, or -EINVAL. */
static int elf_find_pvh(const uint8_t *img, size_t len, const Elf64_Phdr *ph, unsigned n,
			uint64_t *ret)
{
	for (unsigned i = 0; i < n; i++) {
		if (ph[i].p_type != PT_NOTE)
			continue;
		if (ph[i].p_offset > len || ph[i].p_filesz > len - ph[i].p_offset)
			return -EINVAL;
		const uint8_t *p = img + ph[i].p_offset, *end = p + ph[i].p_filesz;
		while ((size_t)(end - p) >= 12) {
			uint32_t namesz = le32(p), descsz = le32(p + 4), type = le32(p + 8);
			size_t nalign = ((size_t)namesz + 3) & ~(size_t)3;
			size_t dalign = ((size_t)descsz + 3) & ~(size_t)3;
			p += 12;
			if (nalign > (size_t)(end - p) || dalign > (size_t)(end - p) - nalign)
				return -EINVAL;
			if (namesz == 4 && memcmp(p, "Xen", 4) == 0 &&
			    type == XEN_ELFNOTE_PHYS32_ENTRY) {
				const uint8_t *d = p + nalign;
				if (descsz == 4)
					*ret = le32(d);
				else if (descsz == 8)
					*ret = le32(d) | (uint64_t)le32(d + 4) << 32;
				else
					return -EINVAL;
				return 1;
			}
			p += nalign + dalign;
		}
	}
	return 0;
}

static int load_elf(struct guest_mem *mem, const struct boot_request *req, struct boot_info *bi,
		    char *err, size_t errlen)
{
	const uint8_t *img = req->kernel;
	size_t len = req->kernel_len;
	Elf64_Ehdr eh;
	Elf64_Phdr ph[64];
	uint64_t pvh_entry = 0;
	bool loaded = false;

	if (len < sizeof(eh))
		return format_error(err, errlen, -EINVAL, "ELF header truncated");
	memcpy(&eh, img, sizeof(eh));
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh.e_machine != EM_X86_64 || (eh.e_type != ET_EXEC && eh.e_type != ET_DYN))
		return format_error(err, errlen, -EINVAL,
				    "not a little-endian x86-64 ELF executable");
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 ||
	    eh.e_phnum > ELEMENTSOF(ph) || eh.e_phoff > len ||
	    (size_t)eh.e_phnum * sizeof(Elf64_Phdr) > len - eh.e_phoff)
		return format_error(err, errlen, -EINVAL, "bad ELF program header table");
	memcpy(ph, img + eh.e_phoff, (size_t)eh.e_phnum * sizeof(Elf64_Phdr));

	bi->kernel_end = 0;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		if (ph[i].p_type != PT_LOAD || ph[i].p_memsz == 0)
			continue;
		if (ph[i].p_offset > len || ph[i].p_filesz > len - ph[i].p_offset ||
		    ph[i].p_filesz > ph[i].p_memsz)
			return format_error(err, errlen, -EINVAL, "ELF segment %u outside the file",
					    i);
		/* Below 1 MiB live our boot structures; Firecracker refuses such kernels too. */
		if (ph[i].p_paddr < BOOT_HIMEM)
			return format_error(err, errlen, -EINVAL,
					    "ELF segment %u loads below 1 MiB", i);
		uint8_t *dst = guest_mem_ptr(mem, ph[i].p_paddr, ph[i].p_memsz);
		if (!dst)
			return format_error(
				err, errlen, -E2BIG,
				"ELF segment %u (0x%llx+0x%llx) does not fit in guest memory", i,
				(unsigned long long)ph[i].p_paddr,
				(unsigned long long)ph[i].p_memsz);
		memcpy(dst, img + ph[i].p_offset, ph[i].p_filesz);
		memset(dst + ph[i].p_filesz, 0, ph[i].p_memsz - ph[i].p_filesz);
		if (ph[i].p_paddr + ph[i].p_memsz > bi->kernel_end)
			bi->kernel_end = ph[i].p_paddr + ph[i].p_memsz;
		loaded = true;
	}
	if (!loaded)
		return format_error(err, errlen, -EINVAL, "ELF has no loadable segment");

	int r = elf_find_pvh(img, len, ph, eh.e_phnum, &pvh_entry);
	if (r < 0)
		return format_error(err, errlen, r, "malformed ELF note");
	bool use_pvh = req->pref == BOOT_ENTRY_PVH || (req->pref == BOOT_ENTRY_AUTO && r == 1);
	if (use_pvh && r == 0)
		return format_error(err, errlen, -ENOEXEC,
				    "PVH boot requested but the ELF has no "
				    "XEN_ELFNOTE_PHYS32_ENTRY note");
	bi->kind = use_pvh ? BOOT_KIND_PVH : BOOT_KIND_LINUX64;
	bi->entry = use_pvh ? pvh_entry : eh.e_entry;
	if (use_pvh && pvh_entry > UINT32_MAX)
		return format_error(err, errlen, -ENOEXEC, "PVH entry above 4 GiB");
	return 0;
}

/* bzImage, 64-bit boot protocol: the protected-mode part goes to 1 MiB, entry at +0x200. */
static int load_bzimage(struct guest_mem *mem, const struct boot_request *req, struct boot_info *bi,
			char *err, size_t errlen)
{
	const uint8_t *img = req->kernel;
	size_t len = req->kernel_len;
	unsigned setup_sects = img[0x1f1] ? img[0x1f1] : 4;
	size_t setup_len = ((size_t)setup_sects + 1) * 512;
	uint16_t version = le16(img + 0x206);

	if (le16(img + 0x1fe) != 0xaa55)
		return format_error(err, errlen, -EINVAL, "bzImage without boot_flag 0xAA55");
	if (version < 0x20c || !(le16(img + 0x236) & XLF_KERNEL_64))
		return format_error(err, errlen, -ENOEXEC,
				    "bzImage has no 64-bit entry (protocol %u.%02u, needs 2.12 and "
				    "XLF_KERNEL_64)",
				    version >> 8, version & 0xff);
	if (!(img[0x211] & LOADED_HIGH))
		return format_error(err, errlen, -EINVAL,
				    "zImage (not loaded high) is not supported");
	if (setup_len >= len)
		return format_error(err, errlen, -EINVAL, "bzImage truncated");

	size_t payload = len - setup_len;
	uint64_t init_size = le32(img + 0x260);
	uint64_t footprint = init_size > payload ? init_size : payload;
	uint8_t *dst = guest_mem_ptr(mem, BOOT_HIMEM, footprint);
	if (!dst)
		return format_error(err, errlen, -E2BIG,
				    "kernel (%llu bytes in memory) does not fit",
				    (unsigned long long)footprint);
	memcpy(dst, img + setup_len, payload);
	bi->kind = BOOT_KIND_LINUX64;
	bi->bzimage = true;
	bi->entry = BOOT_HIMEM + 0x200;
	bi->kernel_end = BOOT_HIMEM + footprint;
	return 0;
}

static int place_initrd(struct guest_mem *mem, const struct boot_request *req, struct boot_info *bi,
			uint64_t limit, char *err, size_t errlen)
{
	uint64_t top = low_ram_end(mem);
	uint64_t min = (bi->kernel_end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);

	if (!req->initrd_len)
		return 0;
	if (top > limit)
		top = limit;
	if (req->initrd_len > top || ((top - req->initrd_len) & ~(PAGE_SIZE - 1)) < min)
		return format_error(err, errlen, -E2BIG,
				    "initrd (%zu bytes) does not fit in guest memory",
				    req->initrd_len);
	uint64_t addr = (top - req->initrd_len) & ~(PAGE_SIZE - 1);
	uint8_t *dst = guest_mem_ptr(mem, addr, req->initrd_len);
	if (!dst)
		return format_error(err, errlen, -E2BIG, "initrd does not fit");
	memcpy(dst, req->initrd, req->initrd_len);
	bi->initrd_addr = addr;
	return 0;
}

static int write_zero_page(struct guest_mem *mem, const struct boot_request *req,
			   const struct boot_info *bi, char *err, size_t errlen)
{
	uint8_t *zp = guest_mem_ptr(mem, BOOT_ZERO_PAGE_ADDR, PAGE_SIZE);
	struct boot_e820 map[128];

	if (!zp)
		return format_error(err, errlen, -E2BIG, "no room for the zero page");
	memset(zp, 0, PAGE_SIZE);
	if (bi->bzimage) {
		/* The setup header runs from 0x1f1 to 0x202 + the jump offset at 0x201. */
		size_t end = 0x202 + req->kernel[0x201];
		if (end > 0x290)
			end = 0x290;
		memcpy(zp + 0x1f1, req->kernel + 0x1f1, end - 0x1f1);
	} else {
		put16(zp + 0x1fe, 0xaa55);
		put32(zp + 0x202, SETUP_HDR_MAGIC);
		put16(zp + 0x206, 0x20c);
		put32(zp + 0x230, 0x1000000); /* kernel_alignment, as Firecracker assumes */
	}
	zp[0x210] = 0xff; /* type_of_loader: undefined loader */
	zp[0x211] |= LOADED_HIGH;
	put32(zp + 0x228, (uint32_t)BOOT_CMDLINE_ADDR);
	put32(zp + 0x238, BOOT_CMDLINE_MAX - 1);
	if (bi->initrd_addr) {
		put32(zp + 0x218, (uint32_t)bi->initrd_addr);
		put32(zp + 0x21c, (uint32_t)req->initrd_len);
		put32(zp + 0x0c0, (uint32_t)(bi->initrd_addr >> 32));
		put32(zp + 0x0c4, (uint32_t)((uint64_t)req->initrd_len >> 32));
	}
	unsigned n = boot_memory_map(mem, map, ELEMENTSOF(map));
	zp[0x1e8] = (uint8_t)n;
	for (unsigned i = 0; i < n; i++) {
		uint8_t *e = zp + 0x2d0 + 20 * i;
		put64(e, map[i].addr);
		put64(e + 8, map[i].size);
		put32(e + 16, map[i].type);
	}
	return 0;
}

static int write_start_info(struct guest_mem *mem, const struct boot_request *req,
			    const struct boot_info *bi, char *err, size_t errlen)
{
	struct boot_e820 map[8];
	unsigned n = boot_memory_map(mem, map, ELEMENTSOF(map));
	uint8_t *si = guest_mem_ptr(mem, BOOT_START_INFO_ADDR, 56);
	uint8_t *mm = guest_mem_ptr(mem, BOOT_PVH_MEMMAP_ADDR, 24 * (uint64_t)n);
	uint8_t *mod = guest_mem_ptr(mem, BOOT_PVH_MODLIST_ADDR, 32);

	if (!si || !mm || !mod)
		return format_error(err, errlen, -E2BIG, "no room for hvm_start_info");
	memset(si, 0, 56);
	put32(si, HVM_START_MAGIC);
	put32(si + 4, 1); /* version 1: has the memory map */
	put64(si + 24, BOOT_CMDLINE_ADDR);
	put64(si + 40, BOOT_PVH_MEMMAP_ADDR);
	put32(si + 48, n);
	for (unsigned i = 0; i < n; i++) {
		put64(mm + 24 * i, map[i].addr);
		put64(mm + 24 * i + 8, map[i].size);
		put32(mm + 24 * i + 16, map[i].type);
		put32(mm + 24 * i + 20, 0);
	}
	if (bi->initrd_addr) {
		memset(mod, 0, 32);
		put64(mod, bi->initrd_addr);
		put64(mod + 8, req->initrd_len);
		put32(si + 12, 1); /* nr_modules */
		put64(si + 16, BOOT_PVH_MODLIST_ADDR);
	}
	return 0;
}

int boot_load(struct guest_mem *mem, const struct boot_request *req, struct boot_info *ret,
	      char *err, size_t errlen)
{
	struct boot_info bi = { 0 };
	uint64_t initrd_limit = UINT64_MAX;
	size_t cmdline_max = BOOT_CMDLINE_MAX - 1;
	int r;

	if (errlen)
		err[0] = '\0';
	if (req->n_cpus < 1 || req->n_cpus > BOOT_MAX_CPUS)
		return format_error(err, errlen, -EINVAL, "vCPU count %u out of range",
				    req->n_cpus);
	if (req->kernel_len >= 4 && memcmp(req->kernel, ELFMAG, SELFMAG) == 0) {
		r = load_elf(mem, req, &bi, err, errlen);
	} else if (req->kernel_len > 0x268 && le32(req->kernel + 0x202) == SETUP_HDR_MAGIC) {
		if (req->pref == BOOT_ENTRY_PVH)
			return format_error(err, errlen, -ENOEXEC, "PVH boot needs an ELF kernel");
		r = load_bzimage(mem, req, &bi, err, errlen);
		if (r >= 0) {
			initrd_limit = (uint64_t)le32(req->kernel + 0x22c) + 1;
			if (le32(req->kernel + 0x238) && le32(req->kernel + 0x238) < cmdline_max)
				cmdline_max = le32(req->kernel + 0x238);
		}
	} else {
		return format_error(err, errlen, -EINVAL,
				    "kernel is neither an ELF vmlinux nor a bzImage");
	}
	if (r < 0)
		return r;

	size_t clen = strlen(req->cmdline);
	if (clen > cmdline_max)
		return format_error(err, errlen, -E2BIG, "command line longer than %zu bytes",
				    cmdline_max);
	uint8_t *cl = guest_mem_ptr(mem, BOOT_CMDLINE_ADDR, BOOT_CMDLINE_MAX);
	if (!cl)
		return format_error(err, errlen, -E2BIG, "guest memory too small");
	memset(cl, 0, BOOT_CMDLINE_MAX);
	memcpy(cl, req->cmdline, clen);

	r = place_initrd(mem, req, &bi, initrd_limit, err, errlen);
	if (r < 0)
		return r;
	r = write_mptable(mem, req->n_cpus, err, errlen);
	if (r < 0)
		return r;
	r = write_gdt(mem, &bi);
	if (r < 0)
		return format_error(err, errlen, r, "guest memory too small for the GDT");
	if (bi.kind == BOOT_KIND_LINUX64) {
		r = write_page_tables(mem);
		if (r < 0)
			return format_error(err, errlen, r,
					    "guest memory too small for page tables");
		r = write_zero_page(mem, req, &bi, err, errlen);
		bi.boot_data = BOOT_ZERO_PAGE_ADDR;
	} else {
		r = write_start_info(mem, req, &bi, err, errlen);
		bi.boot_data = BOOT_START_INFO_ADDR;
	}
	if (r < 0)
		return r;
	*ret = bi;
	return 0;
}
