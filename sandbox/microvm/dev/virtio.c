/* SPDX-License-Identifier: MIT */
/*
 * The virtio-mmio transport, version 2 (virtio 1.1 §4.2.2).
 *
 * Threads: mmio_read()/mmio_write() run on vCPU threads; kick_cb() and everything the device
 * types do with their queues runs on the main libevent loop. d->lock serialises the two, and is
 * held for the whole of a queue's service, so a driver's register write (a reset, say) never
 * lands in the middle of a request. libevent is touched only from the main loop: a vCPU thread
 * that wants a queue served writes its kick eventfd instead.
 */
#include "sandbox/microvm/dev/virtio.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/kvm.h>

#include <event2/event.h>
#include <jansson.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"

/* Register offsets (include/uapi/linux/virtio_mmio.h). */
enum {
	REG_MAGIC = 0x000,
	REG_VERSION = 0x004,
	REG_DEVICE_ID = 0x008,
	REG_VENDOR_ID = 0x00c,
	REG_DEVICE_FEATURES = 0x010,
	REG_DEVICE_FEATURES_SEL = 0x014,
	REG_DRIVER_FEATURES = 0x020,
	REG_DRIVER_FEATURES_SEL = 0x024,
	REG_QUEUE_SEL = 0x030,
	REG_QUEUE_NUM_MAX = 0x034,
	REG_QUEUE_NUM = 0x038,
	REG_QUEUE_READY = 0x044,
	REG_QUEUE_NOTIFY = 0x050,
	REG_INTERRUPT_STATUS = 0x060,
	REG_INTERRUPT_ACK = 0x064,
	REG_STATUS = 0x070,
	REG_QUEUE_DESC_LOW = 0x080,
	REG_QUEUE_DESC_HIGH = 0x084,
	REG_QUEUE_DRIVER_LOW = 0x090,
	REG_QUEUE_DRIVER_HIGH = 0x094,
	REG_QUEUE_DEVICE_LOW = 0x0a0,
	REG_QUEUE_DEVICE_HIGH = 0x0a4,
	REG_SHM_SEL = 0x0ac,
	REG_SHM_LEN_LOW = 0x0b0,
	REG_SHM_LEN_HIGH = 0x0b4,
	REG_SHM_BASE_LOW = 0x0b8,
	REG_SHM_BASE_HIGH = 0x0bc,
	REG_CONFIG_GENERATION = 0x0fc,
	REG_CONFIG = 0x100,
};

#define VIRTIO_MMIO_MAGIC 0x74726976u /* "virt" */
#define VIRTIO_MMIO_VERSION 2u
#define VIRTIO_INT_USED 1u
#define VIRTIO_INT_CONFIG 2u

static struct virtio_queue *selected_queue(struct virtio_dev *d)
{
	return d->queue_sel < d->ops->n_queues ? &d->q[d->queue_sel] : NULL;
}

bool virtio_dev_has(const struct virtio_dev *d, unsigned bit)
{
	return bit < 64 && (d->driver_features >> bit) & 1;
}

bool virtio_dev_live(const struct virtio_dev *d)
{
	/* DRIVER_OK without an accepted FEATURES_OK is a driver that skipped negotiation. */
	return (d->status & VIRTIO_STATUS_DRIVER_OK) && (d->status & VIRTIO_STATUS_FEATURES_OK) &&
	       !d->needs_reset && !d->paused;
}

static void raise_irq(struct virtio_dev *d, uint32_t why)
{
	d->isr |= why;
	__atomic_fetch_add(&d->interrupts, 1, __ATOMIC_RELAXED);
	/* An eventfd write fails only if the counter would overflow, i.e. never here. */
	if (eventfd_write(d->irq_fd, 1) < 0)
		log_debug("%s: irqfd write failed: %m", d->name);
}

void virtio_dev_fail(struct virtio_dev *d, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (d->needs_reset)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_err("%s: %s; device needs reset", d->name, msg);
	d->needs_reset = true;
	d->status |= VIRTIO_STATUS_NEEDS_RESET;
	/* virtio 1.1 §2.1.2: with DRIVER_OK set, NEEDS_RESET comes with a config-change notice. */
	if (d->status & VIRTIO_STATUS_DRIVER_OK)
		raise_irq(d, VIRTIO_INT_CONFIG);
}

int virtio_dev_pop(struct virtio_dev *d, unsigned q, struct vq_chain *c)
{
	const char *why = "unknown";
	int r;

	r = vq_pop(&d->q[q].vq, d->mem, c, &why);
	if (r < 0)
		virtio_dev_fail(d, "queue %u: %s", q, why);
	return r;
}

void virtio_dev_push(struct virtio_dev *d, unsigned q, uint16_t head, uint32_t len)
{
	/* The used ring passed vq_layout_check() at QueueReady and guest RAM never moves. */
	if (vq_push(&d->q[q].vq, d->mem, head, len) < 0)
		virtio_dev_fail(d, "queue %u: used ring outside guest RAM", q);
}

void virtio_dev_interrupt(struct virtio_dev *d, unsigned q)
{
	if (vq_wants_interrupt(&d->q[q].vq, d->mem))
		raise_irq(d, VIRTIO_INT_USED);
}

void virtio_dev_kick(struct virtio_dev *d, unsigned q)
{
	if (q < d->ops->n_queues && d->q[q].kick_fd >= 0 && eventfd_write(d->q[q].kick_fd, 1) < 0)
		log_debug("%s: kick write failed: %m", d->name);
}

/* Status 0: back to the state after creation (virtio 1.1 §2.1.2, §4.2.3.1). Lock held. */
static void device_reset(struct virtio_dev *d)
{
	if (d->ops->reset)
		d->ops->reset(d);
	d->driver_features = 0;
	d->features_sel = d->driver_features_sel = d->queue_sel = 0;
	d->status = 0;
	d->isr = 0;
	d->needs_reset = false;
	for (unsigned i = 0; i < d->ops->n_queues; i++) {
		d->q[i].ready = false;
		memset(&d->q[i].vq, 0, sizeof(d->q[i].vq));
	}
}

static void write_status(struct virtio_dev *d, uint32_t v)
{
	uint32_t old = d->status;

	if (v == 0) {
		device_reset(d);
		return;
	}
	if ((v & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
		/* Refuse a feature set we did not offer, or a legacy driver: FEATURES_OK then
		 * reads back clear and the driver gives up (virtio 1.1 §3.1.1). */
		if ((d->driver_features & ~d->features) || !virtio_dev_has(d, VIRTIO_F_VERSION_1)) {
			log_warn("%s: driver features 0x%" PRIx64
				 " not acceptable (offered 0x%" PRIx64 "), refusing FEATURES_OK",
				 d->name, d->driver_features, d->features);
			v &= ~VIRTIO_STATUS_FEATURES_OK;
		}
	}
	/* Bits the device owns stay as they are; the driver may only add its own. */
	d->status = v | (old & VIRTIO_STATUS_NEEDS_RESET);
	if ((v & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK)) {
		/* Serve anything the driver queued before it set DRIVER_OK. */
		for (unsigned i = 0; i < d->ops->n_queues; i++)
			if (d->q[i].ready)
				virtio_dev_kick(d, i);
	}
}

static void write_queue_ready(struct virtio_dev *d, struct virtio_queue *q, uint32_t v)
{
	const char *why = NULL;

	if (v == 0) {
		q->ready = false;
		return;
	}
	if (q->ready)
		return;
	q->vq.l.indirect = virtio_dev_has(d, VIRTIO_F_RING_INDIRECT_DESC);
	if (vq_layout_check(d->mem, &q->vq.l, &why) < 0) {
		virtio_dev_fail(d,
				"queue %u: %s (size %u, desc 0x%" PRIx64 ", avail 0x%" PRIx64
				", used 0x%" PRIx64 ")",
				(unsigned)(q - d->q), why, q->vq.l.num, q->vq.l.desc, q->vq.l.avail,
				q->vq.l.used);
		return;
	}
	q->vq.last_avail = 0;
	q->vq.used_idx = 0;
	q->ready = true;
}

static void set_half(uint64_t *v, bool high, uint32_t half)
{
	if (high)
		*v = (*v & 0xffffffffull) | (uint64_t)half << 32;
	else
		*v = (*v & ~0xffffffffull) | half;
}

static uint32_t read_reg(struct virtio_dev *d, uint64_t off)
{
	struct virtio_queue *q = selected_queue(d);

	switch (off) {
	case REG_MAGIC:
		return VIRTIO_MMIO_MAGIC;
	case REG_VERSION:
		return VIRTIO_MMIO_VERSION;
	case REG_DEVICE_ID:
		return d->ops->device_id;
	case REG_VENDOR_ID:
		return 0;
	case REG_DEVICE_FEATURES:
		return d->features_sel < 2 ? (uint32_t)(d->features >> (32 * d->features_sel)) : 0;
	case REG_QUEUE_NUM_MAX:
		return q ? VQ_MAX_SIZE : 0;
	case REG_QUEUE_READY:
		return q ? q->ready : 0;
	case REG_INTERRUPT_STATUS:
		return d->isr;
	case REG_STATUS:
		return d->status;
	case REG_QUEUE_DESC_LOW:
		return q ? (uint32_t)q->vq.l.desc : 0;
	case REG_QUEUE_DESC_HIGH:
		return q ? (uint32_t)(q->vq.l.desc >> 32) : 0;
	case REG_QUEUE_DRIVER_LOW:
		return q ? (uint32_t)q->vq.l.avail : 0;
	case REG_QUEUE_DRIVER_HIGH:
		return q ? (uint32_t)(q->vq.l.avail >> 32) : 0;
	case REG_QUEUE_DEVICE_LOW:
		return q ? (uint32_t)q->vq.l.used : 0;
	case REG_QUEUE_DEVICE_HIGH:
		return q ? (uint32_t)(q->vq.l.used >> 32) : 0;
	case REG_SHM_LEN_LOW:
	case REG_SHM_LEN_HIGH:
	case REG_SHM_BASE_LOW:
	case REG_SHM_BASE_HIGH:
		/* No shared memory regions: a length of -1 says "no such region" (§4.2.2). */
		return 0xffffffffu;
	case REG_CONFIG_GENERATION:
		/* The configuration space never changes after creation. */
		return 0;
	default:
		return 0;
	}
}

static void write_reg(struct virtio_dev *d, uint64_t off, uint32_t v)
{
	struct virtio_queue *q = selected_queue(d);

	switch (off) {
	case REG_DEVICE_FEATURES_SEL:
		d->features_sel = v;
		return;
	case REG_DRIVER_FEATURES:
		/* Features are frozen once FEATURES_OK was accepted. */
		if (!(d->status & VIRTIO_STATUS_FEATURES_OK) && d->driver_features_sel < 2)
			set_half(&d->driver_features, d->driver_features_sel == 1, v);
		return;
	case REG_DRIVER_FEATURES_SEL:
		d->driver_features_sel = v;
		return;
	case REG_QUEUE_SEL:
		d->queue_sel = v;
		return;
	case REG_QUEUE_NUM:
		/* A queue's layout is frozen while it is ready (§4.2.3.2). */
		if (q && !q->ready)
			q->vq.l.num = v > UINT16_MAX ? 0 : (uint16_t)v;
		return;
	case REG_QUEUE_READY:
		if (q)
			write_queue_ready(d, q, v);
		return;
	case REG_QUEUE_NOTIFY:
		/* Only reached when KVM's ioeventfd did not match (no KVM, or an odd value). */
		__atomic_fetch_add(&d->mmio_notifies, 1, __ATOMIC_RELAXED);
		virtio_dev_kick(d, v);
		return;
	case REG_INTERRUPT_ACK:
		d->isr &= ~v;
		return;
	case REG_STATUS:
		write_status(d, v);
		return;
	case REG_QUEUE_DESC_LOW:
	case REG_QUEUE_DESC_HIGH:
		if (q && !q->ready)
			set_half(&q->vq.l.desc, off == REG_QUEUE_DESC_HIGH, v);
		return;
	case REG_QUEUE_DRIVER_LOW:
	case REG_QUEUE_DRIVER_HIGH:
		if (q && !q->ready)
			set_half(&q->vq.l.avail, off == REG_QUEUE_DRIVER_HIGH, v);
		return;
	case REG_QUEUE_DEVICE_LOW:
	case REG_QUEUE_DEVICE_HIGH:
		if (q && !q->ready)
			set_half(&q->vq.l.used, off == REG_QUEUE_DEVICE_HIGH, v);
		return;
	case REG_SHM_SEL:
		return;
	default:
		log_debug("%s: write of 0x%" PRIx32 " to read-only or unknown register 0x%" PRIx64
			  ", ignoring",
			  d->name, v, off);
		return;
	}
}

static void mmio_read(struct mmio_device *m, uint64_t off, void *data, uint32_t len)
{
	struct virtio_dev *d = m->priv;

	memset(data, 0, len);
	pthread_mutex_lock(&d->lock);
	if (off >= REG_CONFIG) {
		/* Configuration space: any width, little-endian bytes as stored. */
		uint64_t c = off - REG_CONFIG;

		if (c < d->config_len && len <= d->config_len - c)
			memcpy(data, d->config + c, len);
	} else if (len == 4 && off % 4 == 0) {
		uint32_t v = htole32(read_reg(d, off));

		memcpy(data, &v, 4);
	} else {
		/* Registers are 32 bits wide and must be accessed as such (§4.2.2.2). */
		log_debug("%s: %u-byte read of register 0x%" PRIx64 ", returning 0", d->name, len,
			  off);
	}
	pthread_mutex_unlock(&d->lock);
}

static void mmio_write(struct mmio_device *m, uint64_t off, const void *data, uint32_t len)
{
	struct virtio_dev *d = m->priv;
	uint32_t v;

	if (off >= REG_CONFIG) {
		/* Neither device has a writable configuration field it acts upon. */
		log_debug("%s: write to configuration space offset 0x%" PRIx64 ", ignoring",
			  d->name, off - REG_CONFIG);
		return;
	}
	if (len != 4 || off % 4) {
		log_debug("%s: %u-byte write to register 0x%" PRIx64 ", ignoring", d->name, len,
			  off);
		return;
	}
	memcpy(&v, data, 4);
	pthread_mutex_lock(&d->lock);
	write_reg(d, off, le32toh(v));
	pthread_mutex_unlock(&d->lock);
}

/* Main loop: a queue notification arrived (from KVM's ioeventfd, or virtio_dev_kick()). */
static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct virtio_queue *q = arg;
	struct virtio_dev *d = q->dev;
	eventfd_t n;

	(void)what;
	if (eventfd_read(fd, &n) < 0)
		return; /* EAGAIN: a spurious wakeup */

	pthread_mutex_lock(&d->lock);
	__atomic_fetch_add(&q->notifies, 1, __ATOMIC_RELAXED);
	/* Not live (no DRIVER_OK yet, paused, or failed): DRIVER_OK and resume kick again. */
	if (virtio_dev_live(d) && q->ready)
		d->ops->queue_notify(d, q->index);
	pthread_mutex_unlock(&d->lock);
}

static int kvm_ioeventfd(struct virtio_dev *d, unsigned i, bool assign)
{
	struct kvm_ioeventfd io = {
		.datamatch = i,
		.addr = d->mmio_base + REG_QUEUE_NOTIFY,
		.len = 4,
		.fd = d->q[i].kick_fd,
		.flags = KVM_IOEVENTFD_FLAG_DATAMATCH | (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
	};

	return RET_NERRNO(ioctl(d->vm_fd, KVM_IOEVENTFD, &io));
}

static int kvm_irqfd(struct virtio_dev *d, bool assign)
{
	struct kvm_irqfd irq = {
		.fd = (uint32_t)d->irq_fd,
		.gsi = d->gsi,
		.flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN,
	};

	return RET_NERRNO(ioctl(d->vm_fd, KVM_IRQFD, &irq));
}

int virtio_dev_init(struct virtio_dev *d, const struct device_env *env, const char *id,
		    const struct virtio_dev_ops *ops, uint64_t features, const void *config,
		    size_t config_len)
{
	int r;

	assert(ops->n_queues <= VIRTIO_MAX_QUEUES && ops->queue_notify && ops->destroy);
	d->ops = ops;
	d->mem = env->mem;
	d->base = env->base;
	d->vm_fd = env->vm_fd;
	d->mmio_base = env->mmio_base;
	d->gsi = env->gsi;
	d->features = features | 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_F_RING_INDIRECT_DESC;
	d->config = config;
	d->config_len = config_len;
	d->irq_fd = -EBADF;
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		d->q[i].kick_fd = -EBADF;
		d->q[i].dev = d;
		d->q[i].index = i;
	}
	r = -pthread_mutex_init(&d->lock, NULL);
	if (r < 0)
		return log_err_errno(r, "Failed to create a mutex: %m");
	d->lock_ready = true;

	d->id = strdup(id);
	if (!d->id || asprintf(&d->name, "virtio-%s:%s", ops->kind, id) < 0) {
		d->name = NULL;
		return log_oom();
	}
	d->mmio = (struct mmio_device){
		.name = d->name,
		.base = env->mmio_base,
		.size = MICROVM_MMIO_SLOT,
		.read = mmio_read,
		.write = mmio_write,
		.priv = d,
	};

	d->irq_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (d->irq_fd < 0)
		return log_err_errno(errno, "%s: eventfd failed: %m", d->name);
	if (d->vm_fd >= 0) {
		r = kvm_irqfd(d, true);
		if (r < 0)
			return log_err_errno(r, "%s: KVM_IRQFD on GSI %u failed: %m", d->name,
					     d->gsi);
		d->irqfd = true;
	}

	for (unsigned i = 0; i < ops->n_queues; i++) {
		struct virtio_queue *q = &d->q[i];

		q->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (q->kick_fd < 0)
			return log_err_errno(errno, "%s: eventfd failed: %m", d->name);
		q->kick_ev = event_new(d->base, q->kick_fd, EV_READ | EV_PERSIST, kick_cb, q);
		if (!q->kick_ev || event_add(q->kick_ev, NULL) < 0)
			return log_oom();
		if (d->vm_fd >= 0) {
			r = kvm_ioeventfd(d, i, true);
			if (r < 0)
				return log_err_errno(
					r, "%s: KVM_IOEVENTFD at 0x%" PRIx64 " failed: %m", d->name,
					d->mmio_base + REG_QUEUE_NOTIFY);
			q->ioeventfd = true;
		}
	}
	return 0;
}

void virtio_dev_done(struct virtio_dev *d)
{
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		struct virtio_queue *q = &d->q[i];

		if (q->ioeventfd && kvm_ioeventfd(d, i, false) < 0)
			log_debug("%s: KVM_IOEVENTFD deassign failed: %m", d->name);
		q->ioeventfd = false;
		if (q->kick_ev)
			event_free(q->kick_ev);
		q->kick_ev = NULL;
		if (q->kick_fd >= 0)
			close(q->kick_fd);
		q->kick_fd = -EBADF;
	}
	if (d->irqfd && kvm_irqfd(d, false) < 0)
		log_debug("%s: KVM_IRQFD deassign failed: %m", d->name);
	d->irqfd = false;
	if (d->irq_fd >= 0)
		close(d->irq_fd);
	d->irq_fd = -EBADF;
	if (d->lock_ready)
		pthread_mutex_destroy(&d->lock);
	d->lock_ready = false;
	free(d->name);
	d->name = NULL;
	free(d->id);
	d->id = NULL;
}

struct mmio_device *virtio_dev_mmio(struct virtio_dev *d)
{
	return &d->mmio;
}

int virtio_dev_cmdline(const struct virtio_dev *d, char *buf, size_t n)
{
	int r;

	r = snprintf(buf, n, " virtio_mmio.device=4K@0x%" PRIx64 ":%" PRIu32, d->mmio_base, d->gsi);
	if (r < 0 || (size_t)r >= n)
		return -ENOBUFS;
	return r;
}

json_t *virtio_dev_metrics(const struct virtio_dev *d)
{
	json_auto_t *o = NULL;
	uint64_t notifies = 0;
	uint32_t status;
	bool needs_reset;

	for (unsigned i = 0; i < d->ops->n_queues; i++)
		notifies += __atomic_load_n(&d->q[i].notifies, __ATOMIC_RELAXED);
	/* Status and the reset flag are read without the lock: a snapshot for monitoring. */
	status = __atomic_load_n(&d->status, __ATOMIC_RELAXED);
	needs_reset = __atomic_load_n(&d->needs_reset, __ATOMIC_RELAXED);
	o = json_pack("{s:s, s:s, s:s, s:I, s:b, s:I, s:I, s:I}", "id", d->id, "kind", d->ops->kind,
		      "mmio", d->name, "status", (json_int_t)status, "needs_reset", needs_reset,
		      "notifications", (json_int_t)notifies, "notify_mmio_exits",
		      (json_int_t)__atomic_load_n(&d->mmio_notifies, __ATOMIC_RELAXED),
		      "interrupts", (json_int_t)__atomic_load_n(&d->interrupts, __ATOMIC_RELAXED));
	if (!o)
		return NULL;
	if (d->ops->metrics && d->ops->metrics(d, o) < 0)
		return NULL;
	return TAKE_PTR(o);
}

void virtio_dev_set_paused(struct virtio_dev *d, bool paused)
{
	pthread_mutex_lock(&d->lock);
	d->paused = paused;
	/* On resume serve what arrived meanwhile (a net device also restarts its tap reads). */
	if (!paused)
		for (unsigned i = 0; i < d->ops->n_queues; i++)
			if (d->q[i].ready)
				virtio_dev_kick(d, i);
	pthread_mutex_unlock(&d->lock);
}

struct virtio_dev *virtio_dev_free(struct virtio_dev *d)
{
	const struct virtio_dev_ops *ops;

	if (!d)
		return NULL;
	ops = d->ops;
	if (d->name) {
		uint64_t notifies = 0;

		for (unsigned i = 0; i < ops->n_queues; i++)
			notifies += d->q[i].notifies;
		log_debug("%s: %" PRIu64 " notifications (%" PRIu64 " through MMIO exits), %" PRIu64
			  " interrupts",
			  d->name, notifies, d->mmio_notifies, d->interrupts);
	}
	virtio_dev_done(d);
	ops->destroy(d);
	return NULL;
}
