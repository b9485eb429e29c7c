/* SPDX-License-Identifier: MIT */
/* Unit tests of the microvm kernel loader (sandbox/microvm/boot.c) and guest_mem_ptr(), on a
 * synthetic guest memory and hand-built images. */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sandbox/microvm/boot.h"
#include "sandbox/microvm/dev/device.h"

#define MEM_SIZE (32u << 20)

struct image {
	Elf64_Ehdr eh;
	Elf64_Phdr ph[2];
	uint32_t note[6]; /* namesz, descsz, type, "Xen\0", entry */
	uint8_t code[64];
};

static int setup(void **state)
{
	struct guest_mem *m = calloc(1, sizeof(*m));

	assert_non_null(m);
	m->regions[0].size = MEM_SIZE;
	m->regions[0].host = calloc(1, MEM_SIZE);
	assert_non_null(m->regions[0].host);
	m->n_regions = 1;
	*state = m;
	return 0;
}

static int teardown(void **state)
{
	struct guest_mem *m = *state;

	free(m->regions[0].host);
	free(m);
	return 0;
}

static void make_elf(struct image *img, bool with_note, uint64_t paddr)
{
	memset(img, 0, sizeof(*img));
	memcpy(img->eh.e_ident, ELFMAG, SELFMAG);
	img->eh.e_ident[EI_CLASS] = ELFCLASS64;
	img->eh.e_ident[EI_DATA] = ELFDATA2LSB;
	img->eh.e_type = ET_EXEC;
	img->eh.e_machine = EM_X86_64;
	img->eh.e_entry = paddr + 0x10;
	img->eh.e_phoff = offsetof(struct image, ph);
	img->eh.e_phentsize = sizeof(Elf64_Phdr);
	img->eh.e_phnum = with_note ? 2 : 1;
	img->ph[0] = (Elf64_Phdr){ .p_type = PT_LOAD,
				   .p_offset = offsetof(struct image, code),
				   .p_paddr = paddr,
				   .p_filesz = sizeof(img->code),
				   .p_memsz = 0x2000 };
	img->ph[1] = (Elf64_Phdr){ .p_type = PT_NOTE,
				   .p_offset = offsetof(struct image, note),
				   .p_filesz = sizeof(img->note) };
	img->note[0] = 4;
	img->note[1] = 4;
	img->note[2] = 18; /* XEN_ELFNOTE_PHYS32_ENTRY */
	memcpy(&img->note[3], "Xen", 4);
	img->note[4] = (uint32_t)paddr + 0x20;
	memset(img->code, 0xcc, sizeof(img->code));
}

static uint8_t *gpa(struct guest_mem *m, uint64_t a)
{
	return m->regions[0].host + a;
}

static void test_guest_mem_ptr(void **state)
{
	struct guest_mem *m = *state;

	assert_ptr_equal(guest_mem_ptr(m, 0, 1), m->regions[0].host);
	assert_ptr_equal(guest_mem_ptr(m, MEM_SIZE - 1, 1), gpa(m, MEM_SIZE - 1));
	assert_null(guest_mem_ptr(m, MEM_SIZE - 1, 2));
	assert_null(guest_mem_ptr(m, MEM_SIZE, 1));
	assert_null(guest_mem_ptr(m, 0, 0));
	assert_null(guest_mem_ptr(m, 16, UINT64_MAX));
	assert_null(guest_mem_ptr(m, UINT64_MAX, 2));
	assert_null(guest_mem_ptr(NULL, 0, 1));
}

static void test_elf_entries(void **state)
{
	struct guest_mem *m = *state;
	struct image img;
	struct boot_info bi;
	char err[256];
	struct boot_request req = { .kernel = (const uint8_t *)&img,
				    .kernel_len = sizeof(img),
				    .cmdline = "console=ttyS0 k=v",
				    .n_cpus = 2 };

	make_elf(&img, true, 0x200000);
	req.pref = BOOT_ENTRY_AUTO;
	assert_int_equal(boot_load(m, &req, &bi, err, sizeof(err)), 0);
	assert_int_equal(bi.kind, BOOT_KIND_PVH);
	assert_int_equal(bi.entry, 0x200020);
	assert_int_equal(bi.boot_data, BOOT_START_INFO_ADDR);
	assert_int_equal(*(uint32_t *)gpa(m, BOOT_START_INFO_ADDR), 0x336ec578);
	assert_int_equal(gpa(m, 0x200000)[0], 0xcc);
	assert_int_equal(gpa(m, 0x200000 + 64)[0], 0); /* bss zeroed */
	assert_string_equal((char *)gpa(m, BOOT_CMDLINE_ADDR), "console=ttyS0 k=v");

	req.pref = BOOT_ENTRY_LINUX64;
	assert_int_equal(boot_load(m, &req, &bi, err, sizeof(err)), 0);
	assert_int_equal(bi.kind, BOOT_KIND_LINUX64);
	assert_int_equal(bi.entry, 0x200010);
	uint8_t *zp = gpa(m, BOOT_ZERO_PAGE_ADDR);
	assert_int_equal(*(uint16_t *)(zp + 0x1fe), 0xaa55);
	assert_int_equal(zp[0x210], 0xff);
	assert_int_equal(*(uint32_t *)(zp + 0x228), BOOT_CMDLINE_ADDR);
	/* E820: low RAM, reserved EBDA..1 MiB, RAM from 1 MiB to the end. */
	assert_int_equal(zp[0x1e8], 3);
	assert_int_equal(*(uint64_t *)(zp + 0x2d0 + 40), BOOT_HIMEM);
	assert_int_equal(*(uint64_t *)(zp + 0x2d0 + 48), MEM_SIZE - BOOT_HIMEM);
	/* Identity map: PD entry 1 maps 2 MiB. */
	assert_int_equal(*(uint64_t *)gpa(m, BOOT_PD_ADDR + 8), 0x200083);

	make_elf(&img, false, 0x200000);
	req.pref = BOOT_ENTRY_PVH;
	assert_int_equal(boot_load(m, &req, &bi, err, sizeof(err)), -ENOEXEC);
	req.pref = BOOT_ENTRY_AUTO;
	assert_int_equal(boot_load(m, &req, &bi, err, sizeof(err)), 0);
	assert_int_equal(bi.kind, BOOT_KIND_LINUX64);
}

static void test_elf_rejects(void **state)
{
	struct guest_mem *m = *state;
	struct image img;
	struct boot_info bi;
	char err[256];
	struct boot_request req = { .kernel = (const uint8_t *)&img,
				    .kernel_len = sizeof(img),
				    .cmdline = "",
				    .n_cpus = 1 };

	make_elf(&img, true, 0x1000); /* below 1 MiB: would overwrite the zero page */
	assert_int_equal(boot_load(m, &req, &bi, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "below 1 MiB"));

	make_elf(&img, true, MEM_SIZE - 0x1000); /* memsz runs past RAM */
	assert_int_equal(boot_load(m, &req, &bi, err, sizeof(err)), -E2BIG);

	make_elf(&img, true, 0x200000);
	img.ph[0].p_filesz = 1u << 30; /* outside the file */
	assert_int_equal(boot_load(m, &req, &bi, err, sizeof(err)), -EINVAL);

	make_elf(&img, true, 0x200000);
	img.note[0] = 0xfffffff0; /* note name size runs off the segment */
	assert_int_equal(boot_load(m, &req, &bi, err, sizeof(err)), -EINVAL);

	make_elf(&img, true, 0x200000);
	req.kernel_len = 40; /* truncated header */
	assert_int_equal(boot_load(m, &req, &bi, err, sizeof(err)), -EINVAL);

	req.kernel_len = sizeof(img);
	req.n_cpus = 0;
	assert_int_equal(boot_load(m, &req, &bi, err, sizeof(err)), -EINVAL);

	static const uint8_t junk[600] = { 1, 2, 3 };
	struct boot_request j = {
		.kernel = junk, .kernel_len = sizeof(junk), .cmdline = "", .n_cpus = 1
	};
	assert_int_equal(boot_load(m, &j, &bi, err, sizeof(err)), -EINVAL);
}

static void test_cmdline_initrd_limits(void **state)
{
	struct guest_mem *m = *state;
	struct image img;
	struct boot_info bi;
	char err[256];
	char *longline = malloc(BOOT_CMDLINE_MAX + 1);
	uint8_t *initrd = calloc(1, MEM_SIZE);

	assert_non_null(longline);
	assert_non_null(initrd);
	memset(longline, 'a', BOOT_CMDLINE_MAX);
	longline[BOOT_CMDLINE_MAX] = '\0';
	make_elf(&img, true, 0x200000);
	struct boot_request req = { .kernel = (const uint8_t *)&img,
				    .kernel_len = sizeof(img),
				    .cmdline = longline,
				    .n_cpus = 1 };
	assert_int_equal(boot_load(m, &req, &bi, err, sizeof(err)), -E2BIG);

	req.cmdline = "x";
	req.initrd = initrd;
	req.initrd_len = MEM_SIZE; /* cannot fit above the kernel */
	assert_int_equal(boot_load(m, &req, &bi, err, sizeof(err)), -E2BIG);

	req.initrd_len = 5000;
	initrd[0] = 0x5a;
	assert_int_equal(boot_load(m, &req, &bi, err, sizeof(err)), 0);
	assert_int_equal(bi.initrd_addr % 4096, 0);
	assert_true(bi.initrd_addr + 5000 <= MEM_SIZE);
	assert_int_equal(gpa(m, bi.initrd_addr)[0], 0x5a);
	/* PVH: the initrd is module 0. */
	assert_int_equal(*(uint32_t *)gpa(m, BOOT_START_INFO_ADDR + 12), 1);
	assert_int_equal(*(uint64_t *)gpa(m, BOOT_PVH_MODLIST_ADDR), bi.initrd_addr);
	free(longline);
	free(initrd);
}

static void test_bzimage(void **state)
{
	struct guest_mem *m = *state;
	struct boot_info bi;
	char err[256];
	size_t len = 4096;
	uint8_t *k = calloc(1, len);

	assert_non_null(k);
	k[0x1f1] = 1; /* setup sectors: payload at 1024 */
	k[0x1fe] = 0x55;
	k[0x1ff] = 0xaa;
	k[0x201] = 0x66;
	memcpy(k + 0x202, "HdrS", 4);
	k[0x206] = 0x0f;
	k[0x207] = 0x02;
	k[0x211] = 1; /* LOADED_HIGH */
	k[0x236] = 1; /* XLF_KERNEL_64 */
	*(uint32_t *)(k + 0x22c) = 0x7fffffff;
	k[1024] = 0x90;
	struct boot_request req = { .kernel = k, .kernel_len = len, .cmdline = "a=b", .n_cpus = 1 };
	assert_int_equal(boot_load(m, &req, &bi, err, sizeof(err)), 0);
	assert_true(bi.bzimage);
	assert_int_equal(bi.entry, BOOT_HIMEM + 0x200);
	assert_int_equal(gpa(m, BOOT_HIMEM)[0], 0x90);
	assert_memory_equal(gpa(m, BOOT_ZERO_PAGE_ADDR + 0x202), "HdrS", 4);

	req.pref = BOOT_ENTRY_PVH;
	assert_int_equal(boot_load(m, &req, &bi, err, sizeof(err)), -ENOEXEC);
	req.pref = BOOT_ENTRY_AUTO;
	k[0x236] = 0; /* no 64-bit entry: Firecracker's check */
	assert_int_equal(boot_load(m, &req, &bi, err, sizeof(err)), -ENOEXEC);
	free(k);
}

static void test_mptable(void **state)
{
	struct guest_mem *m = *state;
	struct image img;
	struct boot_info bi;
	char err[256];

	make_elf(&img, true, 0x200000);
	struct boot_request req = { .kernel = (const uint8_t *)&img,
				    .kernel_len = sizeof(img),
				    .cmdline = "",
				    .n_cpus = 4 };
	assert_int_equal(boot_load(m, &req, &bi, err, sizeof(err)), 0);
	uint8_t *fp = gpa(m, BOOT_MPTABLE_ADDR);
	assert_memory_equal(fp, "_MP_", 4);
	uint8_t sum = 0;
	for (int i = 0; i < 16; i++)
		sum += fp[i];
	assert_int_equal(sum, 0);
	uint8_t *ct = gpa(m, *(uint32_t *)(fp + 4));
	assert_memory_equal(ct, "PCMP", 4);
	uint16_t len = *(uint16_t *)(ct + 4);
	sum = 0;
	for (int i = 0; i < len; i++)
		sum += ct[i];
	assert_int_equal(sum, 0);
	int cpus = 0;
	uint8_t *e = ct + 44;
	for (unsigned i = 0; i < *(uint16_t *)(ct + 34); i++) {
		if (e[0] == 0) {
			cpus++;
			e += 20;
		} else {
			e += 8;
		}
	}
	assert_int_equal(cpus, 4);
	assert_int_equal(e - ct, len);

	req.n_cpus = BOOT_MAX_CPUS + 1;
	assert_int_equal(boot_load(m, &req, &bi, err, sizeof(err)), -EINVAL);
}

/* A cheap fuzz of the image parsers: random corruptions of a valid ELF and bzImage (fixed seed)
 * must load or fail cleanly, never crash (run under ASan by `make asan`). */
static void test_corrupted_images(void **state)
{
	struct guest_mem *m = *state;
	struct image img;
	struct boot_info bi;
	char err[256];
	uint8_t buf[sizeof(struct image)];
	uint8_t bz[2048];
	unsigned seed = 12345;
	int loaded = 0;

	make_elf(&img, true, 0x200000);
	memset(bz, 0, sizeof(bz));
	bz[0x1f1] = 1;
	bz[0x1fe] = 0x55;
	bz[0x1ff] = 0xaa;
	bz[0x201] = 0x66;
	memcpy(bz + 0x202, "HdrS", 4);
	bz[0x206] = 0x0f;
	bz[0x207] = 0x02;
	bz[0x211] = 1;
	bz[0x236] = 1;
	for (int round = 0; round < 20000; round++) {
		bool elf = round & 1;
		uint8_t *p = elf ? buf : bz;
		size_t len = elf ? sizeof(buf) : sizeof(bz);
		memcpy(p, elf ? (const void *)&img : (const void *)bz, len);
		unsigned flips = 1 + rand_r(&seed) % 8;
		for (unsigned i = 0; i < flips; i++)
			p[rand_r(&seed) % len] = (uint8_t)rand_r(&seed);
		struct boot_request req = { .kernel = p,
					    .kernel_len = rand_r(&seed) % 4 ?
								  len :
								  1 + rand_r(&seed) % len,
					    .cmdline = "x",
					    .n_cpus = 1 + rand_r(&seed) % 4,
					    .pref = (enum boot_entry_pref)(rand_r(&seed) % 3) };
		int r = boot_load(m, &req, &bi, err, sizeof(err));
		assert_true(r == 0 || r == -EINVAL || r == -E2BIG || r == -ENOEXEC);
		loaded += r == 0;
		if (r < 0)
			assert_true(err[0] != '\0');
	}
	/* The corruptions must leave some images loadable, or the loop tests only the checks. */
	assert_true(loaded > 100);
}

static void test_entry_pref_names(void **state)
{
	enum boot_entry_pref p;

	assert_int_equal(boot_entry_pref_from_string("pvh", &p), 0);
	assert_int_equal(p, BOOT_ENTRY_PVH);
	assert_string_equal(boot_entry_pref_to_string(BOOT_ENTRY_LINUX64), "linux64");
	assert_int_equal(boot_entry_pref_from_string("bios", &p), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_guest_mem_ptr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_elf_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_elf_rejects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cmdline_initrd_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bzimage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mptable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupted_images, setup, teardown),
		cmocka_unit_test(test_entry_pref_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
