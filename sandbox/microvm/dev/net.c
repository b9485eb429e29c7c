/* SPDX-License-Identifier: MIT */
/*
 * virtio-net (virtio 1.1 §5.1) over a tap interface: queue 0 receives (tap -> guest), queue 1
 * transmits (guest -> tap).
 *
 * The tap is opened with IFF_VNET_HDR and a 12-byte header (struct virtio_net_hdr_v1), so a
 * frame and its virtio header move between a chain and the tap in one readv/writev. No offloads
 * are offered or enabled, so the header is all zeroes apart from num_buffers.
 *
 * Receive is driven by the tap becoming readable, but only while the guest has posted buffers:
 * when the rx queue runs dry the tap event is removed, and the driver's next rx notification
 * puts it back. Frames that arrive meanwhile wait in the tap's queue (and beyond its length are
 * dropped by the kernel, as a NIC without descriptors would). All of it runs on the main loop;
 * a vCPU thread never touches the event.
 */
#include "sandbox/microvm/dev/virtio.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/if.h>
#include <linux/if_tun.h>

#include <event2/event.h>
#include <jansson.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"

#define VIRTIO_ID_NET 1
#define VIRTIO_NET_F_MAC 5

#define NET_RXQ 0
#define NET_TXQ 1
#define NET_HDR_LEN 12 /* struct virtio_net_hdr_v1: VERSION_1 always has num_buffers */
#define NET_NUM_BUFFERS_OFF 10
#define NET_MAX_FRAME (65535u + 14u) /* a tap carries at most a 64 KiB packet plus Ethernet */
#define NET_BATCH 64 /* frames per direction per wakeup */

struct virtio_net {
	struct virtio_dev dev; /* first: container_of is a cast */
	int tap_fd;
	char ifname[IFNAMSIZ];
	struct event *tap_ev; /* tap readable; added only while rx buffers may be available */
	bool tap_ev_added;
	/* A popped rx chain that has not received a frame yet (the tap had none). Reset drops it
	 * (the driver forgets its buffers on reset too). */
	bool rx_held;
	struct vq_chain rx_chain;
	struct vq_chain tx_chain;
	struct iovec iov[VQ_MAX_SIZE];
	uint8_t config[8]; /* mac[6], status (unused: VIRTIO_NET_F_STATUS not offered) */
	/* Counters (relaxed atomics: read by metrics without the lock). */
	uint64_t rx_packets, rx_bytes, rx_errors, tx_packets, tx_bytes, tx_errors, tx_dropped;
};

static struct virtio_net *to_net(const struct virtio_dev *d)
{
	return (struct virtio_net *)d;
}

static void count(uint64_t *c, uint64_t n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

/* Fills n->iov from the readable or writable segments of @c. Returns the count. */
static int chain_iov(struct virtio_net *n, const struct vq_chain *c, bool writable)
{
	unsigned i = writable ? c->n_readable : 0, end = writable ? c->n_segs : c->n_readable;
	int k = 0;

	for (; i < end; i++)
		n->iov[k++] =
			(struct iovec){ .iov_base = c->segs[i].ptr, .iov_len = c->segs[i].len };
	return k;
}

static void tap_ev_set(struct virtio_net *n, bool on)
{
	if (on == n->tap_ev_added)
		return;
	if (on ? event_add(n->tap_ev, NULL) : event_del(n->tap_ev)) {
		log_err("%s: failed to %s the tap event", n->dev.name, on ? "add" : "remove");
		return;
	}
	n->tap_ev_added = on;
}

/* Moves frames from the tap into posted rx buffers. Main loop, lock held. */
static void net_rx(struct virtio_net *n)
{
	struct virtio_dev *d = &n->dev;
	unsigned delivered = 0;

	if (!virtio_dev_live(d) || !d->q[NET_RXQ].ready) {
		tap_ev_set(n, false);
		return;
	}
	for (unsigned tries = 0; tries < NET_BATCH; tries++) {
		uint16_t one = htole16(1);
		ssize_t r;
		int k;

		if (!n->rx_held) {
			r = virtio_dev_pop(d, NET_RXQ, &n->rx_chain);
			if (r < 0) {
				tap_ev_set(n, false);
				return;
			}
			if (r == 0) {
				/* No buffers: stop reading until the driver posts some. */
				tap_ev_set(n, false);
				break;
			}
			if (n->rx_chain.n_readable > 0 || n->rx_chain.writable_len < NET_HDR_LEN) {
				virtio_dev_fail(d,
						"rx buffer is device-readable or shorter than the "
						"12-byte header");
				tap_ev_set(n, false);
				return;
			}
			n->rx_held = true;
		}
		k = chain_iov(n, &n->rx_chain, true);
		r = readv(n->tap_fd, n->iov, k);
		if (r < 0) {
			if (errno != EAGAIN && errno != EINTR) {
				/* E.g. EBADFD once the interface was deleted: the fd would stay
				 * readable and spin the loop. Stop; the next rx notification
				 * tries again. */
				count(&n->rx_errors, 1);
				log_warn_errno(errno, "%s: tap read failed, pausing receive: %m",
					       d->name);
				tap_ev_set(n, false);
			}
			break;
		}
		if (r < NET_HDR_LEN) {
			/* The tap always prepends the header; anything shorter is not a frame. */
			count(&n->rx_errors, 1);
			continue;
		}
		/* The tap leaves num_buffers alone; without MRG_RXBUF it must read 1 (§5.1.6.4). */
		vq_chain_write(&n->rx_chain, NET_NUM_BUFFERS_OFF, &one, sizeof(one));
		virtio_dev_push(d, NET_RXQ, n->rx_chain.head, (uint32_t)r);
		n->rx_held = false;
		count(&n->rx_packets, 1);
		count(&n->rx_bytes, (uint64_t)r - NET_HDR_LEN);
		delivered++;
	}
	if (delivered > 0)
		virtio_dev_interrupt(d, NET_RXQ);
	/* More frames and buffers may remain; level-triggered readiness brings us back. */
}

/* Sends every posted tx chain to the tap. Main loop, lock held. */
static void net_tx(struct virtio_net *n)
{
	struct virtio_dev *d = &n->dev;
	unsigned sent = 0;

	while (sent < NET_BATCH) {
		const struct vq_chain *c = &n->tx_chain;
		int r, k;

		r = virtio_dev_pop(d, NET_TXQ, &n->tx_chain);
		if (r <= 0)
			break;
		if (c->writable_len > 0 || c->readable_len < NET_HDR_LEN) {
			virtio_dev_fail(d,
					"tx chain has device-writable buffers or is shorter than "
					"the 12-byte header");
			break;
		}
		if (c->readable_len > NET_HDR_LEN + NET_MAX_FRAME) {
			count(&n->tx_dropped, 1);
		} else {
			k = chain_iov(n, c, false);
			if (writev(n->tap_fd, n->iov, k) < 0) {
				/* e.g. EIO with the interface down, EINVAL for a bad header: the
				 * frame is lost, as on a wire; the driver gets its buffer back. */
				count(&n->tx_errors, 1);
				log_debug("%s: tap write failed: %m", d->name);
			} else {
				count(&n->tx_packets, 1);
				count(&n->tx_bytes, c->readable_len - NET_HDR_LEN);
			}
		}
		virtio_dev_push(d, NET_TXQ, c->head, 0);
		sent++;
	}
	if (sent > 0)
		virtio_dev_interrupt(d, NET_TXQ);
	if (sent == NET_BATCH)
		virtio_dev_kick(d, NET_TXQ);
}

static void net_queue_notify(struct virtio_dev *d, unsigned q)
{
	struct virtio_net *n = to_net(d);

	if (q == NET_TXQ) {
		net_tx(n);
		return;
	}
	/* New rx buffers: read the tap again (a frame may already be waiting). */
	tap_ev_set(n, true);
	net_rx(n);
}

static void tap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct virtio_net *n = arg;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&n->dev.lock);
	net_rx(n);
	pthread_mutex_unlock(&n->dev.lock);
}

/* vCPU thread, lock held: forget the held rx chain; the tap event stops itself on its next
 * wakeup (net_rx() sees the device is not live). */
static void net_reset(struct virtio_dev *d)
{
	to_net(d)->rx_held = false;
}

static int net_metrics(const struct virtio_dev *d, json_t *o)
{
	const struct virtio_net *n = to_net(d);
	json_auto_t *m = NULL;

#define C(x) ((json_int_t)__atomic_load_n(&n->x, __ATOMIC_RELAXED))
	m = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "tap", n->ifname, "rx_packets",
		      C(rx_packets), "rx_bytes", C(rx_bytes), "rx_errors", C(rx_errors),
		      "tx_packets", C(tx_packets), "tx_bytes", C(tx_bytes), "tx_errors",
		      C(tx_errors), "tx_dropped", C(tx_dropped));
#undef C
	if (!m || json_object_update(o, m) < 0)
		return -ENOMEM;
	return 0;
}

static void net_destroy(struct virtio_dev *d)
{
	struct virtio_net *n = to_net(d);

	if (n->tap_ev)
		event_free(n->tap_ev);
	if (n->tap_fd >= 0)
		close(n->tap_fd);
	free(n);
}

static const struct virtio_dev_ops net_ops = {
	.kind = "net",
	.device_id = VIRTIO_ID_NET,
	.n_queues = 2,
	.queue_notify = net_queue_notify,
	.reset = net_reset,
	.metrics = net_metrics,
	.destroy = net_destroy,
};

/* Opens the tap @name non-blocking with a 12-byte virtio header and no offloads. */
static int tap_open(const char *name, int *ret)
{
	_cleanup_close_ int fd = -EBADF;
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
	int hdr = NET_HDR_LEN;

	if (strlen(name) >= IFNAMSIZ || !*name)
		return log_err_errno(EINVAL, "Tap name '%s' is empty or longer than %d bytes", name,
				     IFNAMSIZ - 1);
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return log_err_errno(errno, "Failed to open /dev/net/tun: %m");
	memcpy(ifr.ifr_name, name, strlen(name));
	if (ioctl(fd, TUNSETIFF, &ifr) < 0)
		return log_err_errno(errno, "TUNSETIFF '%s' failed: %m", name);
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0)
		return log_err_errno(errno, "TUNSETVNETHDRSZ on '%s' failed: %m", name);
	/* No checksum or segmentation offload: the guest was offered none either. */
	if (ioctl(fd, TUNSETOFFLOAD, 0UL) < 0)
		return log_err_errno(errno, "TUNSETOFFLOAD on '%s' failed: %m", name);
	*ret = TAKE_FD(fd);
	return 0;
}

int virtio_net_new(const struct device_env *env, const char *id, const char *tap_name,
		   const uint8_t mac[6], struct virtio_dev **ret)
{
	struct virtio_net *n;
	int r;

	n = calloc(1, sizeof(*n));
	if (!n)
		return log_oom();
	n->tap_fd = -EBADF;
	r = tap_open(tap_name, &n->tap_fd);
	if (r < 0) {
		free(n);
		return r;
	}
	memcpy(n->ifname, tap_name, strlen(tap_name) + 1);

	if (mac) {
		memcpy(n->config, mac, 6);
	} else {
		if (getrandom(n->config, 6, 0) != 6) {
			r = log_err_errno(errno, "getrandom failed: %m");
			net_destroy(&n->dev);
			return r;
		}
		/* Unicast, locally administered. */
		n->config[0] = (uint8_t)((n->config[0] & 0xfe) | 0x02);
	}

	n->tap_ev = event_new(env->base, n->tap_fd, EV_READ | EV_PERSIST, tap_cb, n);
	if (!n->tap_ev) {
		net_destroy(&n->dev);
		return log_oom();
	}
	r = virtio_dev_init(&n->dev, env, id, &net_ops, 1ull << VIRTIO_NET_F_MAC, n->config,
			    sizeof(n->config));
	if (r < 0) {
		virtio_dev_free(&n->dev);
		return r;
	}
	log_debug("%s: tap '%s', MAC %02x:%02x:%02x:%02x:%02x:%02x", n->dev.name, tap_name,
		  n->config[0], n->config[1], n->config[2], n->config[3], n->config[4],
		  n->config[5]);
	*ret = &n->dev;
	return 0;
}
