/* SPDX-License-Identifier: MIT */
/*
 * vCPU set-up and run loop. Register state follows the 64-bit boot protocol (boot.rst) and the
 * PVH entry ABI (Xen's arch-x86/hvm/start_info.h); CPUID and MSR fix-ups follow Firecracker's
 * normalisation (docs/cpu_templates/cpuid-normalization.md).
 */
#include "sandbox/microvm/vcpu.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/kvm.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "sandbox/microvm/boot.h"
#include "sandbox/microvm/vm.h"

#define MSR_IA32_TSC 0x10
#define MSR_IA32_SYSENTER_CS 0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_MTRR_DEF_TYPE 0x2ff
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SYSCALL_MASK 0xc0000084
#define MSR_KERNEL_GS_BASE 0xc0000102

#define CR0_PE 0x1ull
#define CR0_PG 0x80000000ull
#define CR4_PAE 0x20ull
#define EFER_LME 0x100ull
#define EFER_LMA 0x400ull

#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_NMI 4
#define APIC_MODE_EXTINT 7

struct vcpu {
	struct vcpu_env env;
	unsigned index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
};

static void kick_handler(int sig)
{
	/* Nothing to do: the signal only interrupts KVM_RUN. */
}

int vcpu_install_kick_handler(void)
{
	struct sigaction sa = { .sa_handler = kick_handler };

	sigemptyset(&sa.sa_mask);
	return RET_NERRNO(sigaction(VCPU_KICK_SIGNAL, &sa, NULL));
}

static unsigned order_base_2(unsigned n)
{
	unsigned s = 0;

	while ((1u << s) < n)
		s++;
	return s;
}

static int setup_cpuid(struct vcpu *v)
{
	const struct kvm_cpuid2 *sup = v->env.cpuid;
	size_t size = sizeof(*sup) + sup->nent * sizeof(sup->entries[0]);
	_cleanup_free_ struct kvm_cpuid2 *c = malloc(size);
	unsigned n = v->env.n_vcpus, id = v->index;

	if (!c)
		return -ENOMEM;
	memcpy(c, sup, size);
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		switch (e->function) {
		case 1:
			/* Initial APIC id, logical processor count, hypervisor present, HTT. */
			e->ebx = (e->ebx & 0xffff) | id << 24 | (n > 1 ? n << 16 : 0);
			e->ecx |= 1u << 31;
			if (n > 1)
				e->edx |= 1u << 28;
			break;
		case 4: {
			/* Cores per package; the L3 is shared by all of them. */
			uint32_t level = (e->eax >> 5) & 7;
			e->eax &= 0x3fff;
			e->eax |= (n - 1) << 26;
			if (level == 3)
				e->eax |= (n - 1) << 14;
			break;
		}
		case 6:
			e->eax &= ~(1u << 1); /* no turbo */
			e->ecx &= ~(1u << 3); /* no energy-performance bias */
			break;
		case 0xa:
			/* No PMU: its MSRs are not virtualised the same on every host. */
			e->eax = e->ebx = e->ecx = e->edx = 0;
			break;
		case 0xb:
		case 0x1f:
			/* One thread per core, n cores per package. */
			if (e->index == 0) {
				e->eax = 0;
				e->ebx = 1;
				e->ecx = 1u << 8;
			} else if (e->index == 1) {
				e->eax = order_base_2(n);
				e->ebx = n;
				e->ecx = 2u << 8 | 1;
			} else {
				e->eax = e->ebx = 0;
				e->ecx = e->index;
			}
			e->edx = id;
			break;
		}
	}
	if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0)
		return log_err_errno(errno, "vCPU %u: KVM_SET_CPUID2 failed: %m", v->index);
	return 0;
}

static int setup_msrs(struct vcpu *v)
{
	static const struct {
		uint32_t index;
		uint64_t data;
	} init[] = {
		{ MSR_IA32_SYSENTER_CS, 0 },
		{ MSR_IA32_SYSENTER_ESP, 0 },
		{ MSR_IA32_SYSENTER_EIP, 0 },
		{ MSR_STAR, 0 },
		{ MSR_CSTAR, 0 },
		{ MSR_KERNEL_GS_BASE, 0 },
		{ MSR_SYSCALL_MASK, 0 },
		{ MSR_LSTAR, 0 },
		{ MSR_IA32_TSC, 0 },
		{ MSR_IA32_MISC_ENABLE, 1 }, /* fast strings */
		{ MSR_MTRR_DEF_TYPE, (1u << 11) | 6 }, /* MTRRs on, default write-back */
	};
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[ELEMENTSOF(init)];
	} m = { 0 };

	for (size_t i = 0; i < ELEMENTSOF(init); i++) {
		m.e[i].index = init[i].index;
		m.e[i].data = init[i].data;
	}
	m.hdr.nmsrs = ELEMENTSOF(init);
	int r = ioctl(v->fd, KVM_SET_MSRS, &m);
	if (r < 0)
		return log_err_errno(errno, "vCPU %u: KVM_SET_MSRS failed: %m", v->index);
	/* KVM stops at the first MSR it refuses; the rest are conveniences for Linux. */
	if ((size_t)r < ELEMENTSOF(init))
		log_debug("vCPU %u: KVM accepted %d of %zu MSRs (first refused: 0x%x)", v->index, r,
			  ELEMENTSOF(init), init[r].index);
	return 0;
}

static int setup_fpu_lapic(struct vcpu *v)
{
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };
	struct kvm_lapic_state lapic;

	if (ioctl(v->fd, KVM_SET_FPU, &fpu) < 0)
		return log_err_errno(errno, "vCPU %u: KVM_SET_FPU failed: %m", v->index);
	if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0)
		return log_err_errno(errno, "vCPU %u: KVM_GET_LAPIC failed: %m", v->index);
	/* LINT0 delivers the PIC's interrupts (ExtINT), LINT1 NMIs: what a BIOS sets up. */
	uint32_t lvt0, lvt1;
	memcpy(&lvt0, lapic.regs + APIC_LVT0, 4);
	memcpy(&lvt1, lapic.regs + APIC_LVT1, 4);
	lvt0 = (lvt0 & ~0x700u) | APIC_MODE_EXTINT << 8;
	lvt1 = (lvt1 & ~0x700u) | APIC_MODE_NMI << 8;
	memcpy(lapic.regs + APIC_LVT0, &lvt0, 4);
	memcpy(lapic.regs + APIC_LVT1, &lvt1, 4);
	if (ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0)
		return log_err_errno(errno, "vCPU %u: KVM_SET_LAPIC failed: %m", v->index);
	return 0;
}

/* Decodes a GDT descriptor into the form KVM_SET_SREGS wants. */
static struct kvm_segment segment(uint64_t d, uint16_t selector)
{
	struct kvm_segment s = {
		.base = ((d >> 16) & 0xffffff) | ((d >> 56) & 0xff) << 24,
		.limit = (uint32_t)((d & 0xffff) | ((d >> 48) & 0xf) << 16),
		.selector = selector,
		.type = (d >> 40) & 0xf,
		.s = (d >> 44) & 1,
		.dpl = (d >> 45) & 3,
		.present = (d >> 47) & 1,
		.avl = (d >> 52) & 1,
		.l = (d >> 53) & 1,
		.db = (d >> 54) & 1,
		.g = (d >> 55) & 1,
	};

	if (s.g)
		s.limit = (s.limit << 12) | 0xfff;
	s.unusable = !s.present;
	return s;
}

static int setup_boot_regs(struct vcpu *v, const struct boot_info *bi)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rflags = 0x2 };

	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return log_err_errno(errno, "vCPU %u: KVM_GET_SREGS failed: %m", v->index);
	sregs.cs = segment(bi->gdt[1], 0x08);
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = segment(bi->gdt[2], 0x10);
	sregs.tr = segment(bi->gdt[3], 0x18);
	sregs.gdt.base = BOOT_GDT_ADDR;
	sregs.gdt.limit = sizeof(bi->gdt) - 1;
	sregs.idt.base = BOOT_IDT_ADDR;
	sregs.idt.limit = 7;
	if (bi->kind == BOOT_KIND_LINUX64) {
		sregs.cr3 = BOOT_PML4_ADDR;
		sregs.cr4 |= CR4_PAE;
		sregs.cr0 |= CR0_PE | CR0_PG;
		sregs.efer |= EFER_LME | EFER_LMA;
		regs.rip = bi->entry;
		regs.rsi = bi->boot_data;
		regs.rsp = regs.rbp = BOOT_STACK_ADDR;
	} else {
		/* PVH: flat 32-bit protected mode, paging off, EBX = hvm_start_info. */
		sregs.cr0 = (sregs.cr0 | CR0_PE) & ~CR0_PG;
		sregs.cr4 = 0;
		sregs.efer = 0;
		regs.rip = bi->entry;
		regs.rbx = bi->boot_data;
	}
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
		return log_err_errno(errno, "vCPU %u: KVM_SET_SREGS failed: %m", v->index);
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		return log_err_errno(errno, "vCPU %u: KVM_SET_REGS failed: %m", v->index);
	return 0;
}

int vcpu_new(const struct vcpu_env *env, unsigned index, const struct boot_info *bi,
	     struct vcpu **ret)
{
	struct vcpu *v = calloc(1, sizeof(*v));
	int r;

	if (!v)
		return -ENOMEM;
	v->env = *env;
	v->index = index;
	v->fd = ioctl(env->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (v->fd < 0) {
		r = log_err_errno(errno, "KVM_CREATE_VCPU %u failed: %m", index);
		goto fail;
	}
	v->run = mmap(NULL, env->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		r = log_err_errno(errno, "vCPU %u: mmap of kvm_run failed: %m", index);
		goto fail;
	}
	if ((r = setup_cpuid(v)) < 0 || (r = setup_msrs(v)) < 0 || (r = setup_fpu_lapic(v)) < 0)
		goto fail;
	if (index == 0 && (r = setup_boot_regs(v, bi)) < 0)
		goto fail;
	*ret = v;
	return 0;
fail:
	vcpu_free(v);
	return r;
}

/* Describes the vCPU's state for a fault log line. */
static void describe(struct vcpu *v, char *buf, size_t n)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;

	if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0 || ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0) {
		snprintf(buf, n, "registers unavailable");
		return;
	}
	snprintf(buf, n, "rip=0x%llx rsp=0x%llx cr0=0x%llx cr3=0x%llx efer=0x%llx",
		 (unsigned long long)regs.rip, (unsigned long long)regs.rsp,
		 (unsigned long long)sregs.cr0, (unsigned long long)sregs.cr3,
		 (unsigned long long)sregs.efer);
}

/* Handles one exit. Returns false when the vCPU must stop. */
static bool handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	char why[320], regs[160];

	vm_vcpu_count_exit(v->env.vm, run->exit_reason);
	switch (run->exit_reason) {
	case KVM_EXIT_IO: {
		uint8_t *data = (uint8_t *)run + run->io.data_offset;
		/* A string instruction (rep outsb) delivers @count items in one exit. */
		for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size)
			vm_vcpu_pio(v->env.vm, run->io.port, data, run->io.size,
				    run->io.direction == KVM_EXIT_IO_OUT);
		return true;
	}
	case KVM_EXIT_MMIO:
		vm_vcpu_mmio(v->env.vm, run->mmio.phys_addr, run->mmio.data, run->mmio.len,
			     run->mmio.is_write);
		return true;
	case KVM_EXIT_INTR:
		return true;
	case KVM_EXIT_HLT:
		/* With the in-kernel LAPIC HLT never exits; without an interrupt source it would
		 * never wake up, so stop this vCPU. */
		describe(v, regs, sizeof(regs));
		snprintf(why, sizeof(why), "vCPU %u halted with interrupts off (%s)", v->index,
			 regs);
		vm_vcpu_stop(v->env.vm, VM_STATE_FAULTED, why);
		return false;
	case KVM_EXIT_SHUTDOWN:
		describe(v, regs, sizeof(regs));
		snprintf(why, sizeof(why), "triple fault (KVM_EXIT_SHUTDOWN) on vCPU %u (%s)",
			 v->index, regs);
		vm_vcpu_stop(v->env.vm, VM_STATE_FAULTED, why);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		if (run->system_event.type == KVM_SYSTEM_EVENT_RESET ||
		    run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN) {
			vm_vcpu_stop(v->env.vm, VM_STATE_STOPPED, "guest reset or shut down");
			return false;
		}
		snprintf(why, sizeof(why), "vCPU %u: system event %u", v->index,
			 run->system_event.type);
		vm_vcpu_stop(v->env.vm, VM_STATE_FAULTED, why);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		describe(v, regs, sizeof(regs));
		snprintf(why, sizeof(why), "KVM internal error %u%s on vCPU %u (%s)",
			 run->internal.suberror,
			 run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ?
				 " (emulation failure)" :
				 "",
			 v->index, regs);
		vm_vcpu_stop(v->env.vm, VM_STATE_FAULTED, why);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(why, sizeof(why), "VM entry failed on vCPU %u (hardware reason 0x%llx)",
			 v->index,
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		vm_vcpu_stop(v->env.vm, VM_STATE_FAULTED, why);
		return false;
	default:
		describe(v, regs, sizeof(regs));
		snprintf(why, sizeof(why), "unexpected KVM exit %u on vCPU %u (%s)",
			 run->exit_reason, v->index, regs);
		vm_vcpu_stop(v->env.vm, VM_STATE_FAULTED, why);
		return false;
	}
}

static void *vcpu_thread(void *userdata)
{
	struct vcpu *v = userdata;
	char name[16];

	snprintf(name, sizeof(name), "vcpu%u", v->index);
	(void)pthread_setname_np(pthread_self(), name);
	while (vm_vcpu_wait_runnable(v->env.vm)) {
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			int e = errno;
			if (e == EINTR || e == EAGAIN) {
				/* Kicked: re-check pause/stop before running again. */
				__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
				continue;
			}
			char why[96];
			snprintf(why, sizeof(why), "KVM_RUN failed on vCPU %u: %s", v->index,
				 strerror(e));
			vm_vcpu_stop(v->env.vm, VM_STATE_FAULTED, why);
			break;
		}
		if (!handle_exit(v))
			break;
	}
	vm_vcpu_exited(v->env.vm);
	return NULL;
}

int vcpu_start(struct vcpu *v)
{
	sigset_t all, old;
	int r;

	/* The thread inherits the mask: it takes only the kick signal, the main loop the rest. */
	sigfillset(&all);
	sigdelset(&all, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&v->thread, NULL, vcpu_thread, v);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0)
		return log_err_errno(r, "vCPU %u: pthread_create failed: %m", v->index);
	v->started = true;
	return 0;
}

void vcpu_kick(struct vcpu *v)
{
	if (!v->started)
		return;
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	(void)pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

void vcpu_join(struct vcpu *v)
{
	if (!v->started)
		return;
	pthread_join(v->thread, NULL);
	v->started = false;
}

struct vcpu *vcpu_free(struct vcpu *v)
{
	if (!v)
		return NULL;
	if (v->run)
		munmap(v->run, v->env.run_size);
	if (v->fd >= 0)
		close(v->fd);
	free(v);
	return NULL;
}
