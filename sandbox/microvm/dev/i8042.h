/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A minimal i8042 keyboard controller (ports 0x60 and 0x64, IRQ 1), as much as Firecracker's:
 * the guest's reset command (0xFE to port 0x64; Linux's reboot=k) and Ctrl+Alt+Del injection,
 * plus the self-test, command-byte and keyboard ACK answers Linux's probe expects. Called from
 * vCPU threads and the main thread; guarded by its own lock.
 */

#include <stdbool.h>
#include <stdint.h>

typedef struct json_t json_t;
struct i8042;

#define I8042_DATA_PORT 0x60
#define I8042_CMD_PORT 0x64
#define I8042_GSI 1

/* Called (on the vCPU thread) when the guest asks for a CPU reset. */
typedef void (*i8042_reset_cb_t)(void *userdata);

/* Creates the controller. @vm_fd is borrowed (KVM_IRQ_LINE). Returns 0 or -ENOMEM. */
int i8042_new(int vm_fd, i8042_reset_cb_t reset, void *userdata, struct i8042 **ret);

/* Frees @k; accepts NULL; returns NULL. */
struct i8042 *i8042_free(struct i8042 *k);

/* A one-byte access to @port (0x60 or 0x64). */
void i8042_pio(struct i8042 *k, uint16_t port, void *data, uint32_t len, bool write);

/* Queues the Ctrl, Alt, Del make codes (scancode set 2, as Firecracker sends them) and raises
 * IRQ 1. Returns 0, or -ENOBUFS if the output buffer is full. */
int i8042_send_ctrl_alt_del(struct i8042 *k);

/* Counters: {"resets", "ctrl_alt_del", "irqs"}. New reference or NULL (OOM). */
json_t *i8042_metrics(struct i8042 *k);
