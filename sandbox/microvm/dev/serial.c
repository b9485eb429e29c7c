/* SPDX-License-Identifier: MIT */
/*
 * 8250 UART. Register semantics follow the 16550A data sheet as Linux's 8250 driver uses them;
 * there is no baud-rate timing: a byte written to THR is written out at once.
 */
#include "sandbox/microvm/dev/serial.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <linux/kvm.h>

#include <jansson.h>

#include "libcommon/log.h"

#define UART_RBR 0 /* read, DLAB 0 */
#define UART_THR 0 /* write, DLAB 0 */
#define UART_IER 1
#define UART_IIR 2 /* read */
#define UART_FCR 2 /* write */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define IER_RDI 0x01
#define IER_THRI 0x02
#define IIR_NO_INT 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO 0xc0
#define LCR_DLAB 0x80
#define MCR_LOOP 0x10
#define MCR_OUT2 0x08
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MSR_DCD 0x80
#define MSR_DSR 0x20
#define MSR_CTS 0x10

#define RX_FIFO 64

struct serial {
	pthread_mutex_t lock;
	int vm_fd, out_fd;
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
	bool thri_pending; /* THR-empty interrupt latched until IIR is read or THR written */
	bool irq_level;
	uint8_t rx[RX_FIFO];
	unsigned rx_head, rx_len;
	uint64_t tx_bytes, rx_bytes, irqs, first_tx_ns;
};

int serial_new(int vm_fd, int out_fd, struct serial **ret)
{
	struct serial *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	s->vm_fd = vm_fd;
	s->out_fd = out_fd;
	s->dll = 12; /* 9600 baud */
	s->mcr = MCR_OUT2;
	*ret = s;
	return 0;
}

struct serial *serial_free(struct serial *s)
{
	if (!s)
		return NULL;
	pthread_mutex_destroy(&s->lock);
	free(s);
	return NULL;
}

/* Recomputes the interrupt line; called with the lock held. The line is driven as a level and
 * the IOAPIC/PIC see each rising edge (ISA interrupts are edge-triggered). */
static void update_irq(struct serial *s)
{
	bool level = ((s->ier & IER_RDI) && s->rx_len) || ((s->ier & IER_THRI) && s->thri_pending);

	if (level == s->irq_level)
		return;
	s->irq_level = level;
	if (level)
		s->irqs++;
	struct kvm_irq_level irq = { .irq = SERIAL_COM1_GSI, .level = level };
	if (s->vm_fd >= 0 && ioctl(s->vm_fd, KVM_IRQ_LINE, &irq) < 0)
		log_debug("serial: KVM_IRQ_LINE failed: %m");
}

static void transmit(struct serial *s, uint8_t c)
{
	if (!s->first_tx_ns) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		s->first_tx_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	}
	s->tx_bytes++;
	if (s->mcr & MCR_LOOP) {
		if (s->rx_len < RX_FIFO) {
			s->rx[(s->rx_head + s->rx_len) % RX_FIFO] = c;
			s->rx_len++;
		}
		return;
	}
	/* Console output is best effort: a full pipe or closed terminal must not stop the vCPU
	 * thread for long, and the guest cannot be told anyway. */
	if (s->out_fd >= 0)
		for (int tries = 0; tries < 100; tries++) {
			ssize_t n = write(s->out_fd, &c, 1);
			if (n == 1 || (n < 0 && errno != EINTR && errno != EAGAIN))
				break;
		}
}

static uint8_t reg_read(struct serial *s, uint16_t off)
{
	uint8_t v = 0;

	switch (off) {
	case UART_RBR:
		if (s->lcr & LCR_DLAB)
			return s->dll;
		if (s->rx_len) {
			v = s->rx[s->rx_head];
			s->rx_head = (s->rx_head + 1) % RX_FIFO;
			s->rx_len--;
		}
		return v;
	case UART_IER:
		return s->lcr & LCR_DLAB ? s->dlm : s->ier;
	case UART_IIR:
		v = s->fcr & 1 ? IIR_FIFO : 0;
		if ((s->ier & IER_RDI) && s->rx_len)
			return v | IIR_RDI;
		if ((s->ier & IER_THRI) && s->thri_pending) {
			s->thri_pending = false; /* reading IIR clears a THRE interrupt */
			return v | IIR_THRI;
		}
		return v | IIR_NO_INT;
	case UART_LCR:
		return s->lcr;
	case UART_MCR:
		return s->mcr;
	case UART_LSR:
		return LSR_THRE | LSR_TEMT | (s->rx_len ? LSR_DR : 0);
	case UART_MSR:
		return s->mcr & MCR_LOOP ? 0 : MSR_DCD | MSR_DSR | MSR_CTS;
	case UART_SCR:
		return s->scr;
	}
	return 0;
}

static void reg_write(struct serial *s, uint16_t off, uint8_t v)
{
	switch (off) {
	case UART_THR:
		if (s->lcr & LCR_DLAB) {
			s->dll = v;
			return;
		}
		transmit(s, v);
		/* The transmitter empties at once: a THRE interrupt is due again. */
		s->thri_pending = true;
		return;
	case UART_IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
			return;
		}
		/* Enabling THRI with an empty transmitter raises it immediately (Linux relies on
		 * this to start transmission). */
		if ((v & IER_THRI) && !(s->ier & IER_THRI))
			s->thri_pending = true;
		s->ier = v & 0x0f;
		return;
	case UART_FCR:
		s->fcr = v;
		if (v & 0x02)
			s->rx_len = 0;
		return;
	case UART_LCR:
		s->lcr = v;
		return;
	case UART_MCR:
		s->mcr = v & 0x1f;
		return;
	case UART_SCR:
		s->scr = v;
		return;
	}
}

void serial_pio(struct serial *s, uint16_t offset, void *data, uint32_t len, bool write)
{
	uint8_t *p = data;

	pthread_mutex_lock(&s->lock);
	/* Wider accesses are treated as byte accesses to consecutive registers. */
	for (uint32_t i = 0; i < len; i++) {
		uint16_t off = (uint16_t)((offset + i) & 7);
		if (write)
			reg_write(s, off, p[i]);
		else
			p[i] = reg_read(s, off);
	}
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

void serial_input(struct serial *s, const uint8_t *buf, size_t n)
{
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < n && s->rx_len < RX_FIFO; i++) {
		s->rx[(s->rx_head + s->rx_len) % RX_FIFO] = buf[i];
		s->rx_len++;
		s->rx_bytes++;
	}
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

json_t *serial_metrics(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	json_t *o = json_pack("{s:I, s:I, s:I}", "tx_bytes", (json_int_t)s->tx_bytes, "rx_bytes",
			      (json_int_t)s->rx_bytes, "irqs", (json_int_t)s->irqs);
	pthread_mutex_unlock(&s->lock);
	return o;
}

uint64_t serial_first_tx_ns(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	uint64_t t = s->first_tx_ns;
	pthread_mutex_unlock(&s->lock);
	return t;
}
