/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * One virtual CPU: its KVM fd and kvm_run mapping, its register/CPUID/MSR set-up, and its
 * thread, which loops in KVM_RUN and hands port and MMIO exits to the VM (vm.h's vm_vcpu_*
 * hooks) synchronously. The VM stops or parks a vCPU by setting a flag and calling vcpu_kick(),
 * which sets kvm_run.immediate_exit and signals the thread (VCPU_KICK_SIGNAL) so that a KVM_RUN
 * in progress returns -EINTR.
 */

#include <stddef.h>

struct vm;
struct vcpu;
struct boot_info;
struct kvm_cpuid2;

#define VCPU_KICK_SIGNAL SIGUSR1

/* What a vCPU needs from its VM; everything is borrowed and outlives the vCPU. */
struct vcpu_env {
	struct vm *vm;
	int vm_fd;
	size_t run_size; /* KVM_GET_VCPU_MMAP_SIZE */
	const struct kvm_cpuid2 *cpuid; /* KVM_GET_SUPPORTED_CPUID */
	unsigned n_vcpus;
	const char *vm_id; /* for log lines */
};

/*
 * Creates vCPU @index (its APIC id) with CPUID (supported set, patched for topology and the
 * hypervisor bit), MSRs, FPU and LAPIC LINT0/LINT1 programmed. The BSP (index 0) also gets the
 * boot registers for @bi; APs stay in wait-for-SIPI. Returns 0 or -errno (logged).
 */
int vcpu_new(const struct vcpu_env *env, unsigned index, const struct boot_info *bi,
	     struct vcpu **ret);

/* Starts the vCPU thread (all signals but VCPU_KICK_SIGNAL blocked). Returns 0 or -errno. */
int vcpu_start(struct vcpu *v);

/* Makes a KVM_RUN in progress (or the next one) return at once. Main thread only (the one that
 * started the vCPU threads), so the thread handle is never read while being written. */
void vcpu_kick(struct vcpu *v);

/* Waits for the thread to end (the VM must have asked it to stop). */
void vcpu_join(struct vcpu *v);

/* Frees the vCPU (joined or never started); accepts NULL; returns NULL. */
struct vcpu *vcpu_free(struct vcpu *v);

/* Installs the no-op handler of VCPU_KICK_SIGNAL (without SA_RESTART). Returns 0 or -errno. */
int vcpu_install_kick_handler(void);
