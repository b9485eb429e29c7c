/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * virtio-mmio (version 2, "modern", VIRTIO_F_VERSION_1) devices: a block device backed by a raw
 * image file and a network device backed by a tap interface.
 *
 * Threads: the MMIO register callbacks run on vCPU threads; queue notifications (ioeventfd on
 * QueueNotify), disk and tap I/O run on the main libevent loop. Each device guards its state with
 * one mutex shared by both. Interrupts go to the guest through an irqfd on the device's GSI.
 *
 * A guest that breaks the virtqueue rules (bad descriptor index, loop, address outside RAM, ...)
 * never crashes or stalls the VMM: the device logs one line, sets DEVICE_NEEDS_RESET in Status,
 * raises a configuration-change interrupt and ignores its queues until the driver resets it.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sandbox/microvm/dev/device.h"
#include "sandbox/microvm/dev/virtqueue.h"

struct event;
typedef struct json_t json_t;

struct virtio_dev;

/*
 * Creates a virtio-blk device over the raw image @path (opened read-only when @read_only, which
 * also offers VIRTIO_BLK_F_RO). @env is borrowed for the call (its guest memory and event base
 * must outlive the device); @id is copied and is also the GET_ID serial (first 20 bytes).
 * Registers its ioeventfd and irqfd with KVM (skipped when env->vm_fd < 0: unit tests drive the
 * device through its register callbacks only). Requests are served synchronously (pread/pwrite/
 * fdatasync) on the main loop.
 * Returns 0 and sets *ret, or -ENOENT/-EACCES/... (opening @path), -EINVAL (empty image or
 * size not usable), -ENOMEM, or the -errno of a failed KVM ioctl. Logs the reason on failure.
 */
int virtio_blk_new(const struct device_env *env, const char *id, const char *path, bool read_only,
		   struct virtio_dev **ret);

/*
 * Creates a virtio-net device attached to the tap interface @tap_name (opened with
 * IFF_TAP|IFF_NO_PI|IFF_VNET_HDR; the kernel creates a non-persistent tap if none has that name,
 * which needs CAP_NET_ADMIN). @mac is the guest's MAC address; NULL picks a random locally
 * administered unicast one. @env is borrowed as for virtio_blk_new(); @id is copied.
 * Returns 0 and sets *ret, or -EINVAL (name too long), -ENOENT (no /dev/net/tun), -EPERM/-EBUSY
 * (TUNSETIFF), -ENOMEM, or the -errno of a failed KVM ioctl. Logs the reason on failure.
 */
int virtio_net_new(const struct device_env *env, const char *id, const char *tap_name,
		   const uint8_t mac[6], struct virtio_dev **ret);

/* The device's MMIO window (env->mmio_base, 4 KiB) for the core's exit dispatch. Borrowed: valid
 * until virtio_dev_free(). */
struct mmio_device *virtio_dev_mmio(struct virtio_dev *d);

/*
 * Writes the kernel command-line fragment that announces the device, with a leading space:
 * " virtio_mmio.device=4K@0xd0000000:5". Returns its length (like snprintf), or -ENOBUFS when it
 * does not fit in @n bytes (the buffer then holds nothing useful).
 */
int virtio_dev_cmdline(const struct virtio_dev *d, char *buf, size_t n);

/* A new JSON object (the caller owns the reference) with the device's counters: id, kind,
 * status, bytes and requests by direction, errors, interrupts, whether it needs a reset.
 * NULL only on OOM. */
json_t *virtio_dev_metrics(const struct virtio_dev *d);

/* Stops (true) or resumes (false) queue processing, e.g. while the VM is paused for a snapshot.
 * Notifications that arrive while paused are served on resume (every ready queue is re-kicked).
 * Safe from any thread; takes effect once a request batch in progress has finished. */
void virtio_dev_set_paused(struct virtio_dev *d, bool paused);

/* Unregisters the eventfds, closes the backing file or tap and frees the device. Must be called
 * on the main loop's thread with the vCPUs stopped. Accepts NULL; returns NULL. */
struct virtio_dev *virtio_dev_free(struct virtio_dev *d);

/* ---------------------------------------------------------------------------------------------
 * The device-implementation side of the transport, used by blk.c and net.c. The core uses only
 * the functions above.
 * ------------------------------------------------------------------------------------------- */

/* Device status bits (virtio 1.1 §2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE 1u
#define VIRTIO_STATUS_DRIVER 2u
#define VIRTIO_STATUS_DRIVER_OK 4u
#define VIRTIO_STATUS_FEATURES_OK 8u
#define VIRTIO_STATUS_NEEDS_RESET 0x40u
#define VIRTIO_STATUS_FAILED 0x80u

/* Feature bits every device offers. */
#define VIRTIO_F_RING_INDIRECT_DESC 28
#define VIRTIO_F_VERSION_1 32

#define VIRTIO_MAX_QUEUES 2

struct virtio_queue {
	struct virtio_dev *dev; /* back pointer for the kick callback */
	unsigned index;
	struct vq vq; /* ring state; vq.l is what the driver wrote (frozen once ready) */
	bool ready; /* QueueReady: the layout passed vq_layout_check() */
	int kick_fd; /* eventfd signalled by KVM on QueueNotify == index (ioeventfd) */
	struct event *kick_ev; /* reads kick_fd on the main loop */
	bool ioeventfd; /* kick_fd is registered with KVM (undo at free) */
	uint64_t notifies; /* notifications received (counter) */
};

struct virtio_dev;

/* What a device type adds to the transport. All callbacks run with d->lock held. */
struct virtio_dev_ops {
	const char *kind; /* "blk", "net": metrics and logs */
	uint32_t device_id; /* VIRTIO_ID_* */
	unsigned n_queues; /* <= VIRTIO_MAX_QUEUES */
	/* Serves queue @q after a notification; on the main loop, only while the device is live
	 * (DRIVER_OK, not paused, no reset pending) and the queue ready. */
	void (*queue_notify)(struct virtio_dev *d, unsigned q);
	/* The driver reset the device (Status 0). Runs on a vCPU thread: must not touch libevent.
	 * May be NULL. */
	void (*reset)(struct virtio_dev *d);
	/* Adds the device type's counters to @obj. Returns 0 or -ENOMEM. */
	int (*metrics)(const struct virtio_dev *d, json_t *obj);
	/* Releases the device type's resources and the containing object. Called last by
	 * virtio_dev_free(), after the transport is torn down (queues are quiet). */
	void (*destroy)(struct virtio_dev *d);
};

/* The transport state; embedded as the first member of each device type's struct. */
struct virtio_dev {
	struct mmio_device mmio;
	const struct virtio_dev_ops *ops;
	char *id; /* owned */
	char *name; /* owned: "virtio-<kind>:<id>", also mmio.name */
	const struct guest_mem *mem; /* borrowed from the core */
	struct event_base *base; /* borrowed: the main loop */
	int vm_fd; /* borrowed; < 0 in tests without KVM (no ioeventfd/irqfd registered) */
	uint64_t mmio_base;
	uint32_t gsi;

	bool lock_ready; /* lock was initialised (undo at free) */
	/* Guards everything below against vCPU threads (registers) vs the main loop (queues). */
	pthread_mutex_t lock;
	uint64_t features; /* offered */
	uint64_t driver_features; /* written by the driver */
	uint32_t features_sel, driver_features_sel, queue_sel;
	uint32_t status;
	uint32_t isr; /* InterruptStatus: bit 0 used buffer, bit 1 configuration change */
	bool needs_reset; /* a guest error stopped the device until Status 0 */
	bool paused; /* virtio_dev_set_paused(): queues are not served */
	const uint8_t *config; /* device configuration space (borrowed from the container) */
	size_t config_len;
	int irq_fd; /* eventfd registered as KVM irqfd on gsi */
	bool irqfd; /* registered with KVM (undo at free) */
	struct virtio_queue q[VIRTIO_MAX_QUEUES];
	uint64_t interrupts; /* counter */
	uint64_t mmio_notifies; /* QueueNotify writes that missed the ioeventfd (counter) */
};

/*
 * Sets up the transport part of @d (zeroed by the caller): copies @id, creates the eventfds and
 * libevent events, and registers ioeventfds and the irqfd with KVM unless env->vm_fd < 0.
 * @features are the device-type bits; VERSION_1 and INDIRECT_DESC are added. @config (of
 * @config_len bytes) must live as long as @d. Returns 0 or -errno (logged). On failure call
 * virtio_dev_done() to undo what was done.
 */
int virtio_dev_init(struct virtio_dev *d, const struct device_env *env, const char *id,
		    const struct virtio_dev_ops *ops, uint64_t features, const void *config,
		    size_t config_len);

/* Undoes virtio_dev_init() (safe on a partly initialised @d, even one whose init failed); does
 * not free @d. */
void virtio_dev_done(struct virtio_dev *d);

/* Whether the driver negotiated feature @bit. Lock held. */
bool virtio_dev_has(const struct virtio_dev *d, unsigned bit);

/* Whether queues may be served now: FEATURES_OK and DRIVER_OK, not paused, no reset pending.
 * Lock held. */
bool virtio_dev_live(const struct virtio_dev *d);

/* Takes the next chain of queue @q: 1 (chain in @c), 0 (none), or a negative errno after which
 * the device has been failed (virtio_dev_fail) and must stop serving. Lock held. */
int virtio_dev_pop(struct virtio_dev *d, unsigned q, struct vq_chain *c);

/* Returns chain @head with @len bytes written to queue @q. Lock held. */
void virtio_dev_push(struct virtio_dev *d, unsigned q, uint16_t head, uint32_t len);

/* Raises the used-buffer interrupt for queue @q unless the driver suppressed it. Lock held. */
void virtio_dev_interrupt(struct virtio_dev *d, unsigned q);

/* Signals queue @q's kick eventfd, so the main loop serves it soon (from any thread). */
void virtio_dev_kick(struct virtio_dev *d, unsigned q);

/*
 * The guest broke the protocol: logs one line "virtio-<kind>:<id>: <message>; device needs
 * reset" (only the first time), sets DEVICE_NEEDS_RESET and raises a configuration-change
 * interrupt. Queues stay unserved until the driver writes Status 0. Lock held.
 */
void virtio_dev_fail(struct virtio_dev *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
