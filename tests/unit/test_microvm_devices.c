/* SPDX-License-Identifier: MIT */
/* Unit tests of microvm's legacy devices (8250 UART, i8042, boot timer) through their port and
 * MMIO callbacks, without KVM (vm_fd -1: interrupts are tracked, not injected). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "sandbox/microvm/dev/boot_timer.h"
#include "sandbox/microvm/dev/device.h"
#include "sandbox/microvm/dev/i8042.h"
#include "sandbox/microvm/dev/serial.h"

static uint8_t rd(struct serial *s, uint16_t off)
{
	uint8_t v = 0;

	serial_pio(s, off, &v, 1, false);
	return v;
}

static void wr(struct serial *s, uint16_t off, uint8_t v)
{
	serial_pio(s, off, &v, 1, true);
}

static json_int_t counter(json_t *o, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(o, key));

	json_decref(o);
	return v;
}

static void test_serial_output(void **state)
{
	int p[2];
	struct serial *s = NULL;
	char buf[16] = { 0 };

	assert_int_equal(pipe(p), 0);
	assert_int_equal(serial_new(-1, p[1], &s), 0);
	assert_int_equal(serial_first_tx_ns(s), 0);
	assert_true(rd(s, 5) & 0x20); /* LSR: THR empty */
	wr(s, 0, 'h');
	wr(s, 0, 'i');
	assert_int_equal(read(p[0], buf, sizeof(buf)), 2);
	assert_string_equal(buf, "hi");
	assert_true(serial_first_tx_ns(s) > 0);
	assert_int_equal(counter(serial_metrics(s), "tx_bytes"), 2);

	/* DLAB: offsets 0 and 1 are the divisor, not THR/IER. */
	wr(s, 3, 0x80);
	wr(s, 0, 0x01);
	wr(s, 1, 0x00);
	assert_int_equal(rd(s, 0), 0x01);
	wr(s, 3, 0x03);
	assert_int_equal(rd(s, 3), 0x03);
	assert_int_equal(rd(s, 1), 0); /* IER untouched */
	serial_free(s);
	close(p[0]);
	close(p[1]);
}

static void test_serial_interrupts_and_input(void **state)
{
	struct serial *s = NULL;
	const uint8_t in[] = "ab";

	assert_int_equal(serial_new(-1, -1, &s), 0);
	assert_int_equal(rd(s, 2) & 0x0f, 0x01); /* IIR: none pending */
	/* Enabling THRI with an empty transmitter raises it at once; reading IIR clears it. */
	wr(s, 1, 0x02);
	assert_int_equal(rd(s, 2) & 0x0f, 0x02);
	assert_int_equal(rd(s, 2) & 0x0f, 0x01);
	assert_int_equal(counter(serial_metrics(s), "irqs"), 1);

	wr(s, 1, 0x01); /* receive interrupts */
	serial_input(s, in, 2);
	assert_true(rd(s, 5) & 0x01); /* data ready */
	assert_int_equal(rd(s, 2) & 0x0f, 0x04);
	assert_int_equal(rd(s, 0), 'a');
	assert_int_equal(rd(s, 0), 'b');
	assert_false(rd(s, 5) & 0x01);
	assert_int_equal(rd(s, 0), 0); /* empty FIFO reads 0 */

	/* Overrun: the FIFO keeps 64 bytes. */
	uint8_t many[100];
	memset(many, 'x', sizeof(many));
	serial_input(s, many, sizeof(many));
	assert_int_equal(counter(serial_metrics(s), "rx_bytes"), 2 + 64);

	/* Loopback: transmitted bytes come back as input. */
	for (int i = 0; i < 64; i++)
		rd(s, 0);
	wr(s, 4, 0x10);
	wr(s, 0, 'z');
	assert_int_equal(rd(s, 0), 'z');
	serial_free(s);
}

static int resets;

static void on_reset(void *userdata)
{
	resets++;
	assert_ptr_equal(userdata, &resets);
}

static uint8_t krd(struct i8042 *k, uint16_t port)
{
	uint8_t v = 0;

	i8042_pio(k, port, &v, 1, false);
	return v;
}

static void kwr(struct i8042 *k, uint16_t port, uint8_t v)
{
	i8042_pio(k, port, &v, 1, true);
}

static void test_i8042(void **state)
{
	struct i8042 *k = NULL;

	resets = 0;
	assert_int_equal(i8042_new(-1, on_reset, &resets, &k), 0);
	assert_false(krd(k, 0x64) & 1);
	kwr(k, 0x64, 0xaa); /* self-test */
	assert_true(krd(k, 0x64) & 1);
	assert_int_equal(krd(k, 0x60), 0x55);
	kwr(k, 0x64, 0x60); /* write the command byte */
	kwr(k, 0x60, 0x45);
	kwr(k, 0x64, 0x20);
	assert_int_equal(krd(k, 0x60), 0x45);
	kwr(k, 0x60, 0xff); /* keyboard reset: ACK + self-test passed */
	assert_int_equal(krd(k, 0x60), 0xfa);
	assert_int_equal(krd(k, 0x60), 0xaa);

	assert_int_equal(i8042_send_ctrl_alt_del(k), 0);
	const uint8_t want[] = { 0x14, 0x11, 0xe0, 0x71 };
	for (unsigned i = 0; i < sizeof(want); i++)
		assert_int_equal(krd(k, 0x60), want[i]);
	assert_false(krd(k, 0x64) & 1);
	assert_int_equal(counter(i8042_metrics(k), "ctrl_alt_del"), 1);
	/* The buffer is bounded. */
	int r = 0;
	for (int i = 0; i < 10 && r == 0; i++)
		r = i8042_send_ctrl_alt_del(k);
	assert_int_equal(r, -ENOBUFS);

	assert_int_equal(resets, 0);
	kwr(k, 0x64, 0xfe);
	assert_int_equal(resets, 1);
	uint16_t wide = 0;
	i8042_pio(k, 0x60, &wide, 2, false); /* wider than a byte: floats high */
	assert_int_equal(wide, 0xffff);
	i8042_free(k);
}

static void test_boot_timer(void **state)
{
	struct boot_timer *t = NULL;
	uint8_t v = 123, z = 7;
	uint32_t wide = 123;

	assert_int_equal(boot_timer_new(1, 1, &t), 0);
	struct mmio_device *d = boot_timer_mmio(t);
	assert_int_equal(d->base, BOOT_TIMER_ADDR);
	d->write(d, 1, &v, 1); /* wrong offset */
	d->write(d, 0, &wide, 4); /* wrong width */
	d->write(d, 0, &z, 1); /* wrong value */
	assert_int_equal(counter(boot_timer_metrics(t), "signalled"), 0);
	d->write(d, 0, &v, 1);
	assert_int_equal(counter(boot_timer_metrics(t), "signalled"), 1);
	uint64_t r = 99;
	d->read(d, 0, &r, 8);
	assert_int_equal(r, 0);
	boot_timer_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_serial_output),
		cmocka_unit_test(test_serial_interrupts_and_input),
		cmocka_unit_test(test_i8042),
		cmocka_unit_test(test_boot_timer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
