/* SPDX-License-Identifier: MIT */
#include "sandbox/microvm/dev/i8042.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <linux/kvm.h>

#include <jansson.h>

#include "libcommon/log.h"

/* Status register (port 0x64 read): output buffer full, system flag (self-test passed), last
 * write was a command, keyboard not inhibited. */
#define STATUS_OBF 0x01
#define STATUS_SYS 0x04
#define STATUS_CMD 0x08
#define STATUS_UNLOCKED 0x10

/* Controller command byte: keyboard interrupt enable, system flag. */
#define CTR_KBD_INT 0x01
#define CTR_SYS 0x04

#define CMD_READ_CTR 0x20
#define CMD_WRITE_CTR 0x60
#define CMD_WRITE_OUTP 0xd1
#define CMD_SELF_TEST 0xaa
#define CMD_KBD_TEST 0xab
#define CMD_RESET 0xfe

/* The real controller has a one-byte output buffer backed by the keyboard's own FIFO; one
 * small ring stands for both. */
#define BUF_SIZE 16

struct i8042 {
	pthread_mutex_t lock;
	int vm_fd;
	i8042_reset_cb_t reset;
	void *userdata;
	uint8_t ctr, status, pending_cmd; /* pending_cmd: a command waiting for its data byte */
	uint8_t buf[BUF_SIZE];
	unsigned head, len;
	uint64_t resets, cad, irqs;
};

int i8042_new(int vm_fd, i8042_reset_cb_t reset, void *userdata, struct i8042 **ret)
{
	struct i8042 *k = calloc(1, sizeof(*k));

	if (!k)
		return -ENOMEM;
	pthread_mutex_init(&k->lock, NULL);
	k->vm_fd = vm_fd;
	k->reset = reset;
	k->userdata = userdata;
	/* What a BIOS leaves behind: keyboard interrupt on, POST passed. */
	k->ctr = CTR_KBD_INT | CTR_SYS;
	k->status = STATUS_UNLOCKED | STATUS_SYS;
	*ret = k;
	return 0;
}

struct i8042 *i8042_free(struct i8042 *k)
{
	if (!k)
		return NULL;
	pthread_mutex_destroy(&k->lock);
	free(k);
	return NULL;
}

/* An edge on IRQ 1 (ISA, edge-triggered): the guest then reads the buffer through port 0x60. */
static void pulse_irq(struct i8042 *k)
{
	struct kvm_irq_level irq = { .irq = I8042_GSI, .level = 1 };

	if (!(k->ctr & CTR_KBD_INT) || k->vm_fd < 0)
		return;
	k->irqs++;
	if (ioctl(k->vm_fd, KVM_IRQ_LINE, &irq) < 0)
		log_debug("i8042: KVM_IRQ_LINE failed: %m");
	irq.level = 0;
	(void)ioctl(k->vm_fd, KVM_IRQ_LINE, &irq);
}

static bool push(struct i8042 *k, uint8_t b)
{
	if (k->len == BUF_SIZE)
		return false;
	k->buf[(k->head + k->len) % BUF_SIZE] = b;
	k->len++;
	return true;
}

static uint8_t pop(struct i8042 *k)
{
	uint8_t b;

	if (!k->len)
		return 0;
	b = k->buf[k->head];
	k->head = (k->head + 1) % BUF_SIZE;
	k->len--;
	return b;
}

/* Returns true when the guest asked for a reset (the callback runs without the lock). */
static bool command(struct i8042 *k, uint8_t cmd)
{
	k->status |= STATUS_CMD;
	switch (cmd) {
	case CMD_READ_CTR:
		push(k, k->ctr);
		break;
	case CMD_WRITE_CTR:
	case CMD_WRITE_OUTP:
		k->pending_cmd = cmd;
		break;
	case CMD_SELF_TEST:
		push(k, 0x55);
		break;
	case CMD_KBD_TEST:
		push(k, 0x00);
		break;
	case CMD_RESET:
		k->resets++;
		return true;
	default:
		/* Enable/disable port and other commands need no answer here. */
		break;
	}
	return false;
}

static void data_write(struct i8042 *k, uint8_t v)
{
	k->status &= (uint8_t)~STATUS_CMD;
	if (k->pending_cmd == CMD_WRITE_CTR) {
		k->ctr = v;
		k->pending_cmd = 0;
		return;
	}
	if (k->pending_cmd == CMD_WRITE_OUTP) {
		k->pending_cmd = 0;
		return;
	}
	/* A keyboard command: acknowledge, and answer the few Linux's atkbd probe sends. */
	push(k, 0xfa);
	if (v == 0xff)
		push(k, 0xaa); /* reset: self-test passed */
	else if (v == 0xf2) {
		push(k, 0xab); /* identify: MF2 keyboard */
		push(k, 0x83);
	}
	pulse_irq(k);
}

void i8042_pio(struct i8042 *k, uint16_t port, void *data, uint32_t len, bool write)
{
	uint8_t *p = data;
	bool reset = false;

	/* The i8042 has byte registers only; a wider access reads as an empty bus. */
	if (len != 1) {
		if (!write)
			for (uint32_t i = 0; i < len; i++)
				p[i] = 0xff;
		return;
	}
	pthread_mutex_lock(&k->lock);
	if (port == I8042_CMD_PORT) {
		if (write)
			reset = command(k, p[0]);
		else
			p[0] = (uint8_t)(k->status | (k->len ? STATUS_OBF : 0));
	} else {
		if (write)
			data_write(k, p[0]);
		else
			p[0] = pop(k);
	}
	pthread_mutex_unlock(&k->lock);
	if (reset && k->reset)
		k->reset(k->userdata);
}

int i8042_send_ctrl_alt_del(struct i8042 *k)
{
	static const uint8_t seq[] = { 0x14, 0x11, 0xe0, 0x71 };
	int r = 0;

	pthread_mutex_lock(&k->lock);
	if (k->len + sizeof(seq) > BUF_SIZE) {
		r = -ENOBUFS;
	} else {
		for (unsigned i = 0; i < sizeof(seq); i++)
			push(k, seq[i]);
		k->cad++;
		pulse_irq(k);
	}
	pthread_mutex_unlock(&k->lock);
	return r;
}

json_t *i8042_metrics(struct i8042 *k)
{
	pthread_mutex_lock(&k->lock);
	json_t *o = json_pack("{s:I, s:I, s:I}", "resets", (json_int_t)k->resets, "ctrl_alt_del",
			      (json_int_t)k->cad, "irqs", (json_int_t)k->irqs);
	pthread_mutex_unlock(&k->lock);
	return o;
}
