// SPDX-License-Identifier: MIT
/*
 * virtio_net: the network test guest of tests/integration/microvm_virtio.sh.
 *
 * It finds its virtio-net device on the command line, reads its MAC address from the config
 * space, posts receive buffers, sends one broadcast Ethernet frame of EtherType 0x88b5 (IEEE
 * "local experimental") whose payload is "microvm-virtio-net ping", then waits for a frame of
 * the same EtherType addressed to its MAC whose payload starts with "microvm-virtio-net pong"
 * (other frames, such as IPv6 neighbour discovery, are recycled). Prints PASS/FAIL lines; the
 * exit code is the number of failures.
 */
#include "sandbox/microvm/guests/virtio_guest.h"

#define NET_F_MAC (1ull << 5)
#define NET_HDR 12 /* struct virtio_net_hdr_v1 */
#define RX_BUF (NET_HDR + 1514)
#define RX_BUFS 4
#define ETHERTYPE_TEST 0x88b5

static const char ping[] = "microvm-virtio-net ping";
static const char pong[] = "microvm-virtio-net pong";

static struct gqueue rxq, txq;
static uint8_t rx_buf[RX_BUFS][RX_BUF];
static uint8_t tx_hdr[NET_HDR];
static uint8_t tx_frame[64];
static uint8_t mac[6];
static int failures;

static void post_rx(uint16_t i)
{
	rxq.desc[i] = (struct gdesc){ (uint64_t)(uintptr_t)rx_buf[i], RX_BUF, VRING_F_WRITE, 0 };
	gq_submit(&rxq, i);
}

static void put_mac(const uint8_t *m)
{
	for (int i = 0; i < 6; i++) {
		serial_putc("0123456789abcdef"[m[i] >> 4]);
		serial_putc("0123456789abcdef"[m[i] & 15]);
		if (i < 5)
			serial_putc(':');
	}
}

int guest_main(void)
{
	struct gused_elem e;
	uint64_t base, f;
	int frames = 0;

	base = virtio_find(1, NULL);
	serial_puts("virtio-net at ");
	serial_put_hex(base);
	serial_putc('\n');
	if (!base) {
		guest_result(false, "virtio-net device found", &failures);
		return failures;
	}
	f = virtio_begin(base, NET_F_MAC);
	guest_result(f & NET_F_MAC, "features negotiated (MAC)", &failures);
	if (!f || virtio_queue(base, &rxq, 0) < 0 || virtio_queue(base, &txq, 1) < 0) {
		guest_result(false, "queues set up", &failures);
		return failures;
	}
	for (int i = 0; i < 6; i++)
		mac[i] = mmio_read8(base + VIO_CONFIG + (uint64_t)i);
	serial_puts("mac ");
	put_mac(mac);
	serial_putc('\n');
	virtio_driver_ok(base);
	for (uint16_t i = 0; i < RX_BUFS; i++)
		post_rx(i);

	/* Transmit: the (all-zero) virtio header and the frame in two descriptors. */
	memset(tx_frame, 0, sizeof(tx_frame));
	memset(tx_frame, 0xff, 6);
	memcpy(tx_frame + 6, mac, 6);
	tx_frame[12] = ETHERTYPE_TEST >> 8;
	tx_frame[13] = ETHERTYPE_TEST & 0xff;
	memcpy(tx_frame + 14, ping, sizeof(ping) - 1);
	txq.desc[0] = (struct gdesc){ (uint64_t)(uintptr_t)tx_hdr, NET_HDR, VRING_F_NEXT, 1 };
	txq.desc[1] = (struct gdesc){ (uint64_t)(uintptr_t)tx_frame, 60, 0, 0 };
	gq_submit(&txq, 0);
	guest_result(gq_wait(&txq, &e) == 0 && e.id == 0, "tx frame sent", &failures);

	/* Receive until the answer arrives (bounded: the budget is per frame, 64 frames). */
	for (;;) {
		if (gq_wait(&rxq, &e) < 0 || e.id >= RX_BUFS) {
			guest_result(false, "rx frame received", &failures);
			break;
		}
		const uint8_t *fr = rx_buf[e.id] + NET_HDR;
		uint16_t nbuf = (uint16_t)(rx_buf[e.id][10] | rx_buf[e.id][11] << 8);
		bool match = e.len >= NET_HDR + 14 + sizeof(pong) - 1 &&
			     fr[12] == (ETHERTYPE_TEST >> 8) && fr[13] == (ETHERTYPE_TEST & 0xff) &&
			     memcmp(fr, mac, 6) == 0 &&
			     memcmp(fr + 14, pong, sizeof(pong) - 1) == 0;
		if (match) {
			serial_puts("rx from ");
			put_mac(fr + 6);
			serial_puts(" len ");
			serial_put_dec(e.len - NET_HDR);
			serial_putc('\n');
			guest_result(true, "rx frame received", &failures);
			/* Informational: virtio 1.1 §5.1.6.4.1 asks for 1 without MRG_RXBUF, which
			 * our device does and QEMU's does not. */
			serial_puts("rx num_buffers ");
			serial_put_dec(nbuf);
			serial_putc('\n');
			break;
		}
		if (++frames > 64) {
			guest_result(false, "rx frame received (too many other frames)", &failures);
			break;
		}
		post_rx((uint16_t)e.id);
	}
	serial_puts(failures ? "virtio-net FAILED\n" : "virtio-net OK\n");
	return failures;
}
