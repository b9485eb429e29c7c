/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A running microVM: the KVM VM (memory, in-kernel IRQ chip and PIT), its devices and vCPU
 * threads. Created at InstanceStart by vm_start() on the main thread; the main thread then
 * drives it (pause, resume, Ctrl+Alt+Del, metrics, free) while vCPU threads run the guest and
 * call the vm_vcpu_* hooks. When the guest stops or faults, the VM wakes the main loop and calls
 * the @on_change callback there.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sandbox/microvm/boot.h"

typedef struct json_t json_t;
struct event_base;
struct vm;
struct vm_config;

enum vm_state {
	VM_STATE_NOT_STARTED,
	VM_STATE_RUNNING,
	VM_STATE_PAUSED,
	VM_STATE_STOPPED, /* the guest reset the machine (i8042 0xFE, or a KVM reset event) */
	VM_STATE_FAULTED, /* the guest broke (triple fault, emulation failure, ...) */
	_VM_STATE_MAX,
};

/* "Not started", "Running", "Paused", "Stopped", "Faulted" (Firecracker's names for the first
 * three). */
const char *vm_state_to_string(enum vm_state s);

typedef void (*vm_change_cb_t)(struct vm *vm, void *userdata);

struct vm_options {
	struct event_base *base; /* the main loop, borrowed */
	const char *id; /* instance id, borrowed, for log lines */
	int console_fd; /* serial output, borrowed; -1 discards */
	bool boot_timer; /* --boot-timer */
	enum boot_entry_pref entry;
	uint64_t process_start_ns; /* CLOCK_MONOTONIC */
	vm_change_cb_t on_change; /* called on the main loop after the guest stopped/faulted */
	void *userdata;
};

/*
 * Builds and starts the VM described by @cfg: opens /dev/kvm, creates memory, IRQ chip, PIT,
 * devices (virtio drives and interfaces too, when built in), loads the kernel and initrd, and
 * starts one thread per vCPU. Returns 0 and the VM in *ret, or -errno with a one-line reason in
 * @err (for the API's fault_message). Files are opened here, not before.
 */
int vm_start(const struct vm_config *cfg, const struct vm_options *opt, struct vm **ret, char *err,
	     size_t errlen);

/* Stops every vCPU thread, frees devices, memory and fds. Accepts NULL; returns NULL. */
struct vm *vm_free(struct vm *vm);

enum vm_state vm_get_state(struct vm *vm);

/* Copies the fault reason ("" if none) to @buf. */
void vm_fault_reason(struct vm *vm, char *buf, size_t n);

/* Parks every vCPU outside KVM_RUN (kick + wait, bounded) / releases them. Return 0, or
 * -EINVAL if the VM is not running / not paused. */
int vm_pause(struct vm *vm);
int vm_resume(struct vm *vm);

/* Injects Ctrl+Alt+Del through the i8042. Returns 0, -EINVAL (not running), -ENOBUFS. */
int vm_send_ctrl_alt_del(struct vm *vm);

/* Counters for GET /metrics: a new reference, or NULL (OOM). */
json_t *vm_metrics(struct vm *vm);

/* Feeds guest console input (the UART's receive FIFO; bytes past its 64 are dropped, as an
 * overrun on real hardware). */
void vm_console_input(struct vm *vm, const uint8_t *buf, size_t n);

/* Microseconds from process start to the guest's first console byte; 0 if none yet. */
uint64_t vm_first_output_us(struct vm *vm);

/* ---- hooks for vCPU threads (vcpu.c) ---- */

/* Blocks while the VM is paused. Returns false when the vCPU thread must end. */
bool vm_vcpu_wait_runnable(struct vm *vm);
/* Port I/O and MMIO exits; reads fill @data. */
void vm_vcpu_pio(struct vm *vm, uint16_t port, void *data, uint32_t len, bool write);
void vm_vcpu_mmio(struct vm *vm, uint64_t addr, void *data, uint32_t len, bool write);
/* The guest stopped (@state STOPPED) or broke (FAULTED, @reason logged): stop all vCPUs. */
void vm_vcpu_stop(struct vm *vm, enum vm_state state, const char *reason);
void vm_vcpu_count_exit(struct vm *vm, uint32_t exit_reason);
void vm_vcpu_exited(struct vm *vm);
