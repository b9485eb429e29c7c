/* SPDX-License-Identifier: MIT */
/*
 * The real-mode part of a test bzImage: two 512-byte sectors holding only the setup header of
 * Documentation/arch/x86/boot.rst (protocol 2.15). There is no real-mode code: the image offers
 * only the 64-bit entry (XLF_KERNEL_64), at code32_start + 0x200. The protected-mode payload (the
 * flat binary of a guest ELF linked at 1 MiB) is appended by the build. PAYLOAD_SIZE and
 * INIT_SIZE come from the build (--defsym).
 */
	.section .text
	.code16
	.globl bzsetup
bzsetup:
	.org 0x1f1
	.byte 1				/* setup_sects: this file is (1 + 1) * 512 bytes */
	.word 0				/* root_flags */
	.long (PAYLOAD_SIZE + 15) / 16	/* syssize */
	.word 0				/* ram_size */
	.word 0xffff			/* vid_mode: normal */
	.word 0				/* root_dev */
	.word 0xaa55			/* boot_flag */
	.byte 0xeb, 0x66		/* jump over the header; 0x202 + 0x66 = end of header */
	.ascii "HdrS"
	.word 0x020f			/* version */
	.long 0				/* realmode_swtch */
	.word 0x1000			/* start_sys_seg */
	.word 0				/* kernel_version */
	.byte 0				/* type_of_loader (the loader fills it) */
	.byte 0x01			/* loadflags: LOADED_HIGH */
	.word 0x8000			/* setup_move_size */
	.long 0x100000			/* code32_start */
	.long 0, 0			/* ramdisk_image, ramdisk_size */
	.long 0				/* bootsect_kludge */
	.word 0				/* heap_end_ptr */
	.byte 0, 0			/* ext_loader_ver, ext_loader_type */
	.long 0				/* cmd_line_ptr */
	.long 0x7fffffff		/* initrd_addr_max */
	.long 0x200000			/* kernel_alignment */
	.byte 0				/* relocatable_kernel: no, load at 1 MiB */
	.byte 21			/* min_alignment (log2) */
	.word 0x0001			/* xloadflags: XLF_KERNEL_64 */
	.long 2047			/* cmdline_size */
	.long 0				/* hardware_subarch */
	.quad 0				/* hardware_subarch_data */
	.long 0, 0			/* payload_offset, payload_length */
	.quad 0				/* setup_data */
	.quad 0x100000			/* pref_address */
	.long INIT_SIZE			/* init_size */
	.long 0				/* handover_offset */
	.long 0				/* kernel_info_offset */
	.org 1024

	.section .note.GNU-stack, "", @progbits
