/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * An 8250/16550A UART on COM1 (I/O ports 0x3f8-0x3ff, IRQ 4), enough for Linux's 8250 driver
 * and polled guests: transmit goes to an output fd, the transmitter is always ready, receive is
 * fed by serial_input(). Interrupts (THR empty, data ready) are raised and lowered on GSI 4 with
 * KVM_IRQ_LINE. Called from vCPU threads and the main thread; guarded by its own lock.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct json_t json_t;
struct serial;

#define SERIAL_COM1_BASE 0x3f8
#define SERIAL_COM1_GSI 4

/* Creates the UART. @out_fd (borrowed; -1 discards output) receives guest output; @vm_fd
 * (borrowed) is used for KVM_IRQ_LINE. Returns 0, or -ENOMEM. */
int serial_new(int vm_fd, int out_fd, struct serial **ret);

/* Frees @s; accepts NULL; returns NULL. */
struct serial *serial_free(struct serial *s);

/* A port access at @offset (0-7) from the base. Reads fill @data (@len bytes). */
void serial_pio(struct serial *s, uint16_t offset, void *data, uint32_t len, bool write);

/* Queues @n bytes of guest input (dropped past a 64-byte FIFO). */
void serial_input(struct serial *s, const uint8_t *buf, size_t n);

/* Counters: {"tx_bytes", "rx_bytes", "irqs"}. New reference or NULL (OOM). */
json_t *serial_metrics(struct serial *s);

/* Timestamp (CLOCK_MONOTONIC ns) of the first byte the guest wrote, 0 if none yet. */
uint64_t serial_first_tx_ns(struct serial *s);
