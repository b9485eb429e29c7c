/* SPDX-License-Identifier: MIT */
/*
 * Entry points of the test guests (see guest.h). The image is linked at 1 MiB:
 *   0x100000  32-bit stub (a bzImage's startup_32 slot; never used: we offer only the 64-bit entry)
 *   0x100200  _start: the 64-bit entry (ELF e_entry, and a bzImage's code32_start + 0x200)
 *   pvh_start32: the 32-bit PVH entry named by the XEN_ELFNOTE_PHYS32_ENTRY note.
 * Both entries build the same identity map (0-4 GiB, 2 MiB pages) and GDT, then call
 * runtime_start(kind, info) on the runtime's own stack.
 */

#define BOOT_KIND_LINUX64 1
#define BOOT_KIND_PVH 2
#define XEN_ELFNOTE_PHYS32_ENTRY 18

	.section .note.Xen, "a", @note
	.balign 4
	.long 4				/* namesz: "Xen\0" */
	.long 4				/* descsz: a 32-bit entry address */
	.long XEN_ELFNOTE_PHYS32_ENTRY
	.asciz "Xen"
	.balign 4
	.long pvh_start32
	.balign 4

	.section .text.entry, "ax"
	.code32
	.globl startup_32
startup_32:
	/* Nothing enters here; stop the CPU if something does. */
1:	cli
	hlt
	jmp 1b

	.org 0x200
	.code64
	.globl _start
_start:
	/* Linux 64-bit boot protocol: long mode, paging on, RSI = zero page. */
	cli
	cld
	movq %rsi, %rbx
	call build_page_tables64
	movl $pml4, %eax
	movq %rax, %cr3
	lgdt gdt64_desc
	/* Reload CS with our own code selector through a far return. */
	pushq $0x08
	leaq 1f(%rip), %rax
	pushq %rax
	lretq
1:	movl $BOOT_KIND_LINUX64, %edi
	movq %rbx, %rsi
	jmp common64

/* Fills pml4/pdpt/pd (in .bss, zeroed by the loader) for 0-4 GiB with 2 MiB pages. */
build_page_tables64:
	movl $pdpt, %eax
	orl $3, %eax
	movq %rax, pml4
	movl $pd, %eax
	orl $3, %eax
	movl $pdpt, %edi
	movl $4, %ecx
2:	movq %rax, (%rdi)
	addq $4096, %rax
	addq $8, %rdi
	loop 2b
	movl $pd, %edi
	movq $0x83, %rax		/* present | writable | 2 MiB page */
	movl $2048, %ecx
3:	movq %rax, (%rdi)
	addq $0x200000, %rax
	addq $8, %rdi
	loop 3b
	ret

	.code32
	.globl pvh_start32
pvh_start32:
	/* PVH: 32-bit protected mode, paging off, EBX = hvm_start_info. No stack is promised. */
	cli
	cld
	movl %ebx, %esi
	movl $pdpt, %eax
	orl $3, %eax
	movl %eax, pml4
	movl $0, pml4 + 4
	movl $pd, %eax
	orl $3, %eax
	movl $pdpt, %edi
	movl $4, %ecx
4:	movl %eax, (%edi)
	movl $0, 4(%edi)
	addl $4096, %eax
	addl $8, %edi
	loop 4b
	movl $pd, %edi
	movl $0x83, %eax
	movl $2048, %ecx
5:	movl %eax, (%edi)
	movl $0, 4(%edi)
	addl $0x200000, %eax
	addl $8, %edi
	loop 5b
	movl %cr4, %eax
	orl $0x20, %eax			/* PAE */
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $0xc0000080, %ecx		/* EFER */
	rdmsr
	orl $0x100, %eax		/* LME */
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax		/* PG | PE */
	movl %eax, %cr0
	lgdt gdt64_desc
	ljmp $0x08, $pvh_long

	.code64
pvh_long:
	movl %esi, %esi			/* zero-extend the start-info address */
	movl $BOOT_KIND_PVH, %edi
	jmp common64

common64:
	movw $0x10, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw %ax, %fs
	movw %ax, %gs
	movl $stack_top, %esp
	xorl %ebp, %ebp
	call runtime_start
6:	cli
	hlt
	jmp 6b

	.section .rodata
	.balign 16
gdt64:
	.quad 0				/* null */
	.quad 0x00af9a000000ffff	/* 0x08: 64-bit code */
	.quad 0x00cf92000000ffff	/* 0x10: data */
gdt64_end:
	.balign 8
gdt64_desc:
	.word gdt64_end - gdt64 - 1
	.quad gdt64

	.section .bss
	.balign 4096
pml4:	.skip 4096
pdpt:	.skip 4096
pd:	.skip 4 * 4096
	.balign 16
	.skip 16384
stack_top:

	.section .note.GNU-stack, "", @progbits
