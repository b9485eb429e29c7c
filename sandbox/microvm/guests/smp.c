/* SPDX-License-Identifier: MIT */
/*
 * smp: the test guest of tests/integration/microvm_smp.sh. The BSP starts every application
 * processor the MP table lists the way Linux does (arch/x86/kernel/smpboot.c,
 * wakeup_secondary_cpu_via_init): through its local APIC, INIT (assert, 10 ms, de-assert), then
 * two STARTUP IPIs with vector 0x08. Each AP begins in real mode at 0x8000 in a tiny trampoline
 * that takes a ticket, stores its initial APIC id (CPUID leaf 1) in that slot, counts itself in
 * and halts. The BSP waits for each AP (bounded by the PIT), then checks that every AP came up,
 * that the ids are distinct, and that they are exactly the MP table's AP entries.
 *
 * Command line:
 *   apic=xapic|x2apic   how the BSP drives its local APIC (default xapic: MMIO at the MP table's
 *                       address, reachable through the runtime's 0-4 GiB identity map; x2apic:
 *                       MSRs 0x800+ after setting EXTD in IA32_APIC_BASE, if CPUID offers it)
 *   hold_ms=N           before the first INIT, spin N ms with the APs still in wait-for-SIPI
 *                       (the test measures the host CPU time of their vCPU threads meanwhile)
 *   timeout_ms=N        how long to wait for each AP (default 5000)
 * Output: "PASS x"/"FAIL x" lines, then "smp: all passed" or "smp: FAILED"; exit code = the
 * number of failures ("apic=x2apic" without x2APIC support prints "smp: x2apic unsupported" and
 * exits 0 with nothing checked).
 */
#include "sandbox/microvm/guests/guest.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* The trampoline page, below 1 MiB and outside everything boot.h places in low memory that we
 * still use (the zero page at 0x7000 and the command line at 0x20000). The SIPI vector is the
 * page number: the AP starts at CS = 0x0800, IP = 0. */
#define TRAMP_ADDR 0x8000
#define TRAMP_VECTOR (TRAMP_ADDR >> 12)
/* Offsets of the trampoline's data, inside its page (code takes less than 0x100 bytes). */
#define TRAMP_TICKET 0x100 /* u32: slots handed out */
#define TRAMP_DONE 0x104 /* u32: APs that filled their slot */
#define TRAMP_SLOTS 0x110 /* u16[MAX_CPUS]: 0x100 | initial APIC id */
#define SLOT_VALID 0x100
#define MAX_CPUS 32 /* boot.h BOOT_MAX_CPUS: the VMM's limit */

/*
 * The AP's first instructions, copied to TRAMP_ADDR. 16-bit real mode, DS = CS = 0x0800; only
 * 16-bit addressing, so an emulator that handles real mode simply runs it. The slot is written
 * before DONE is incremented, and x86 keeps stores in order, so when the BSP sees DONE == n the
 * first n slots are filled. A ticket past the table is counted but not stored.
 */
/* clang-format off */
__asm__(".pushsection .rodata.smp_trampoline, \"a\"\n"
	".globl smp_trampoline, smp_trampoline_end\n"
	".code16\n"
	"smp_trampoline:\n"
	"	cli\n"
	"	movw %cs, %ax\n"
	"	movw %ax, %ds\n"
	"	movl $1, %eax\n"
	"	cpuid\n" /* EBX[31:24]: this CPU's initial APIC id */
	"	shrl $24, %ebx\n"
	"	orw $" STR(SLOT_VALID) ", %bx\n"
	"	movl $1, %eax\n"
	"	lock xaddl %eax, " STR(TRAMP_TICKET) "\n" /* EAX: this AP's slot */
	"	cmpl $" STR(MAX_CPUS) ", %eax\n"
	"	jae 1f\n"
	"	movw %ax, %si\n"
	"	shlw $1, %si\n"
	"	movw %bx, " STR(TRAMP_SLOTS) "(%si)\n"
	"1:	lock incl " STR(TRAMP_DONE) "\n"
	"2:	hlt\n" /* IF = 0: stays here until the VM ends */
	"	jmp 2b\n"
	"smp_trampoline_end:\n"
	".code64\n"
	".popsection\n");
/* clang-format on */

extern const char smp_trampoline[], smp_trampoline_end[];

/* Local APIC registers: the xAPIC MMIO offset; the x2APIC MSR is 0x800 + offset / 16. */
#define APIC_ID 0x20
#define APIC_SVR 0xf0
#define APIC_ICR_LOW 0x300
#define APIC_ICR_HIGH 0x310
#define SVR_ENABLE 0x100
#define ICR_BUSY (1u << 12) /* xAPIC delivery status */
#define ICR_INIT 0x500
#define ICR_STARTUP 0x600
#define ICR_LEVEL (1u << 15)
#define ICR_ASSERT (1u << 14)
#define MSR_APIC_BASE 0x1b
#define APIC_BASE_EXTD (1ull << 10)
#define APIC_BASE_ENABLE (1ull << 11)
#define CPUID1_ECX_X2APIC (1u << 21)

/* PIT channel 2, gated through port 0x61 (KVM's in-kernel PIT with the dummy speaker). */
#define PIT_HZ 1193182u
#define PIT_CH2 0x42
#define PIT_MODE 0x43
#define PORT_61 0x61
#define PORT_61_GATE2 0x01
#define PORT_61_SPEAKER 0x02
#define PORT_61_OUT2 0x20

struct mp_cpu {
	uint8_t apic_id;
	bool bsp;
};

static int failures;
static bool x2apic;
static uint64_t apic_mmio;

static void result(bool ok, const char *what)
{
	guest_result(ok, what, &failures);
}

static void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
	__asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}

static uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;

	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return lo | (uint64_t)hi << 32;
}

static void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

/* ---- time: PIT channel 2 one-shots, so every wait is bounded in real time, however slowly
 * the (possibly emulated) CPU runs ---- */

/* Waits @us microseconds (at most 50 ms per one-shot; longer waits loop). If the PIT is absent
 * port 0x61 reads 0xff and waits end at once: a test then fails, it never hangs. */
static void pit_delay_us(uint64_t us)
{
	while (us) {
		uint64_t chunk = us < 50000 ? us : 50000;
		uint32_t count = (uint32_t)(chunk * PIT_HZ / 1000000);

		if (count == 0)
			count = 1;
		outb(PORT_61, (uint8_t)((inb(PORT_61) & ~PORT_61_SPEAKER) | PORT_61_GATE2));
		outb(PIT_MODE, 0xb0); /* channel 2, lobyte/hibyte, mode 0, binary */
		outb(PIT_CH2, (uint8_t)count);
		outb(PIT_CH2, (uint8_t)(count >> 8));
		/* OUT2 goes high when the count reaches zero. */
		while (!(inb(PORT_61) & PORT_61_OUT2))
			__asm__ volatile("pause");
		us -= chunk;
	}
}

/* ---- the local APIC ---- */

static uint32_t apic_read(uint32_t reg)
{
	if (x2apic)
		return (uint32_t)rdmsr(0x800 + reg / 16);
	return mmio_read32(apic_mmio + reg);
}

static void apic_write(uint32_t reg, uint32_t v)
{
	if (x2apic)
		wrmsr(0x800 + reg / 16, v);
	else
		mmio_write32(apic_mmio + reg, v);
}

static uint32_t apic_id(void)
{
	return x2apic ? apic_read(APIC_ID) : apic_read(APIC_ID) >> 24;
}

/* Sends one IPI to the APIC with physical id @dest. Returns false if an xAPIC ICR stayed busy
 * (the x2APIC ICR has no delivery status: a write is the send). */
static bool apic_send_ipi(uint32_t dest, uint32_t icr_low)
{
	if (x2apic) {
		wrmsr(0x800 + APIC_ICR_LOW / 16, (uint64_t)dest << 32 | icr_low);
		return true;
	}
	apic_write(APIC_ICR_HIGH, dest << 24);
	apic_write(APIC_ICR_LOW, icr_low);
	for (int i = 0; i < 1000; i++) {
		if (!(apic_read(APIC_ICR_LOW) & ICR_BUSY))
			return true;
		pit_delay_us(10);
	}
	return false;
}

/* INIT assert, 10 ms, INIT de-assert, then STARTUP twice 200 us apart (Intel SDM vol. 3
 * 8.4.4.1, and Linux's delays for CPUs that still need them). */
static bool start_ap(uint32_t dest)
{
	bool ok = apic_send_ipi(dest, ICR_INIT | ICR_LEVEL | ICR_ASSERT);

	pit_delay_us(10000);
	ok = apic_send_ipi(dest, ICR_INIT | ICR_LEVEL) && ok;
	for (int i = 0; i < 2; i++) {
		pit_delay_us(i ? 200 : 300);
		ok = apic_send_ipi(dest, ICR_STARTUP | TRAMP_VECTOR) && ok;
	}
	pit_delay_us(200);
	return ok;
}

/* ---- the MP table (Intel MP spec 1.4) ---- */

static uint8_t sum8(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return s;
}

/* Fills @cpus with the enabled processor entries (at most MAX_CPUS) and @lapic with the local
 * APIC address. Returns the count, or -1 if there is no valid table. */
static int mp_cpus(struct mp_cpu *cpus, uint64_t *lapic)
{
	for (uint64_t a = 0x9fc00; a < 0x100000; a += 16) {
		const uint8_t *fp = (const uint8_t *)(uintptr_t)a;
		if (memcmp(fp, "_MP_", 4) != 0 || sum8(fp, 16) != 0)
			continue;
		const uint8_t *ct = (const uint8_t *)(uintptr_t)(fp[4] | fp[5] << 8 | fp[6] << 16 |
								 (uint32_t)fp[7] << 24);
		if (!ct || memcmp(ct, "PCMP", 4) != 0)
			return -1;
		unsigned len = *(const uint16_t *)(ct + 4);
		unsigned count = *(const uint16_t *)(ct + 34);
		if (len < 44 || sum8(ct, len) != 0)
			return -1;
		*lapic = *(const uint32_t *)(ct + 36);
		const uint8_t *e = ct + 44, *end = ct + len;
		int n = 0;
		for (unsigned i = 0; i < count && e < end; i++) {
			if (e[0] != 0) {
				e += 8;
				continue;
			}
			if ((e[3] & 1) && n < MAX_CPUS)
				cpus[n++] = (struct mp_cpu){ .apic_id = e[1], .bsp = e[3] & 2 };
			e += 20;
		}
		return n;
	}
	return -1;
}

/* ---- the test ---- */

/* Selects and enables the BSP's APIC mode. Returns false if the test cannot go on (x2APIC asked
 * for but not offered: no failure counted; an unknown mode: one failure). */
static bool setup_apic(const char *mode, uint64_t mp_lapic)
{
	uint32_t a, b, c, d;

	cpuid(1, &a, &b, &c, &d);
	x2apic = !memcmp(mode, "x2apic", 7);
	if (x2apic && !(c & CPUID1_ECX_X2APIC)) {
		serial_puts("smp: x2apic unsupported\n");
		return false;
	}
	if (!x2apic && memcmp(mode, "xapic", 6) != 0) {
		result(false, "apic= is xapic or x2apic");
		return false;
	}
	uint64_t base = rdmsr(MSR_APIC_BASE);
	apic_mmio = base & ~0xfffull;
	serial_puts("smp: IA32_APIC_BASE ");
	serial_put_hex(base);
	serial_puts(", using ");
	serial_puts(x2apic ? "x2apic (MSRs)" : "xapic (MMIO)");
	serial_putc('\n');
	result(apic_mmio == mp_lapic, "APIC base matches the MP table's local APIC address");
	if (x2apic)
		wrmsr(MSR_APIC_BASE, base | APIC_BASE_ENABLE | APIC_BASE_EXTD);
	/* Software-enable the BSP's APIC, as Linux does before it boots the APs. Interrupts stay
	 * off (IF = 0), so the spurious vector is never taken. */
	apic_write(APIC_SVR, SVR_ENABLE | 0xff);
	return true;
}

int guest_main(void)
{
	static struct mp_cpu cpus[MAX_CPUS];
	volatile uint8_t *tramp = (volatile uint8_t *)(uintptr_t)TRAMP_ADDR;
	volatile uint32_t *ticket = (volatile uint32_t *)(tramp + TRAMP_TICKET);
	volatile uint32_t *done = (volatile uint32_t *)(tramp + TRAMP_DONE);
	volatile uint16_t *slots = (volatile uint16_t *)(tramp + TRAMP_SLOTS);
	uint64_t hold_ms = cmdline_u64("hold_ms", 0, NULL),
		 timeout_ms = cmdline_u64("timeout_ms", 5000, NULL);
	char mode[8] = "xapic";
	uint64_t lapic = 0;
	uint32_t a, b, c, d;

	serial_puts("smp: hello\n");
	cmdline_get("apic", mode, sizeof(mode));
	int n = mp_cpus(cpus, &lapic);
	result(n > 0, "MP table found");
	if (n <= 0)
		return failures;
	if (!setup_apic(mode, lapic))
		return failures;

	/* Who am I: the APIC id register, CPUID's initial APIC id, and the MP table's BSP. */
	uint32_t self = apic_id();
	cpuid(1, &a, &b, &c, &d);
	int bsp = -1, n_aps = 0;
	for (int i = 0; i < n; i++) {
		if (cpus[i].bsp)
			bsp = i;
		else
			n_aps++;
	}
	serial_puts("smp: bsp apic id ");
	serial_put_dec(self);
	serial_puts(", mp table cpus ");
	serial_put_dec((uint64_t)n);
	serial_putc('\n');
	result(bsp >= 0 && cpus[bsp].apic_id == self && b >> 24 == self,
	       "BSP APIC id matches CPUID and the MP table's BSP entry");

	size_t tramp_len = (size_t)((uintptr_t)smp_trampoline_end - (uintptr_t)smp_trampoline);
	result(tramp_len <= TRAMP_TICKET, "trampoline code fits below its data");
	if (tramp_len > TRAMP_TICKET)
		return failures;
	memcpy((void *)tramp, smp_trampoline, tramp_len);
	*ticket = 0;
	*done = 0;
	for (int i = 0; i < MAX_CPUS; i++)
		slots[i] = 0;
	guest_mb();

	if (hold_ms) {
		serial_puts("smp: holding the APs in wait-for-SIPI for ");
		serial_put_dec(hold_ms);
		serial_puts(" ms\n");
		pit_delay_us(hold_ms * 1000);
	}

	/* One AP at a time, as Linux does: the k-th AP started must take the k-th slot. */
	int started = 0, wrong = 0;
	bool ipis_ok = true;
	for (int i = 0; i < n; i++) {
		if (cpus[i].bsp)
			continue;
		ipis_ok = start_ap(cpus[i].apic_id) && ipis_ok;
		uint64_t waited = 0;
		while (*done < (uint32_t)started + 1 && waited < timeout_ms) {
			pit_delay_us(1000);
			waited++;
		}
		serial_puts("smp: cpu ");
		serial_put_dec(cpus[i].apic_id);
		if (*done < (uint32_t)started + 1) {
			serial_puts(" did not start within ");
			serial_put_dec(timeout_ms);
			serial_puts(" ms\n");
			continue;
		}
		uint16_t s = slots[started];
		serial_puts(" up after ~");
		serial_put_dec(waited);
		serial_puts(" ms, reports apic id ");
		serial_put_dec(s & 0xff);
		serial_putc('\n');
		if (s != (SLOT_VALID | cpus[i].apic_id))
			wrong++;
		started++;
	}
	result(ipis_ok, "IPIs delivered (ICR not stuck busy)");

	/* The ids the APs reported: distinct, and each an AP entry of the MP table. Together with
	 * the count this makes them exactly the MP table's APs. */
	bool distinct = true, listed = true;
	uint32_t total = *done;
	for (uint32_t k = 0; k < total && k < MAX_CPUS; k++) {
		uint16_t s = slots[k];
		bool found = false;
		for (uint32_t j = 0; j < k; j++)
			if (slots[j] == s)
				distinct = false;
		for (int i = 0; i < n; i++)
			if (!cpus[i].bsp && s == (SLOT_VALID | cpus[i].apic_id))
				found = true;
		listed = listed && found;
	}
	serial_puts("smp: ");
	serial_put_dec(total);
	serial_puts(" of ");
	serial_put_dec((uint64_t)n_aps);
	serial_puts(" application processors started\n");
	result(total == (uint32_t)n_aps && *ticket == total, "every AP started, and only once");
	result(distinct, "AP APIC ids distinct");
	result(listed, "AP APIC ids match the MP table");
	result(wrong == 0, "each AP answered the SIPI sent to its own APIC id");
	serial_puts(failures ? "smp: FAILED\n" : "smp: all passed\n");
	return failures;
}
