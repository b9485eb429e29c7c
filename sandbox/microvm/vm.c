/* SPDX-License-Identifier: MIT */
/*
 * The VM: KVM set-up in the order KVM requires (TSS and identity-map addresses, then memory,
 * then the IRQ chip and PIT, then vCPUs), device routing for vCPU exits, and the pause/stop
 * protocol between the main thread and the vCPU threads (one mutex + condition variable; the
 * kick signal only interrupts KVM_RUN).
 */
#include "sandbox/microvm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <linux/kvm.h>

#include <event2/event.h>
#include <jansson.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "libcommon/strutil.h"
#include "sandbox/microvm/api.h"
#include "sandbox/microvm/vcpu.h"
#include "sandbox/microvm/dev/boot_timer.h"
#include "sandbox/microvm/dev/device.h"
#include "sandbox/microvm/dev/i8042.h"
#include "sandbox/microvm/dev/serial.h"
#ifdef MICROVM_HAVE_VIRTIO
#include "sandbox/microvm/dev/virtio.h"
#endif

#define KVM_TSS_ADDR 0xfffbd000ull
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000ull
#define MAX_IMAGE_SIZE (1ull << 30) /* kernel or initrd files larger than this are refused */
#define MAX_MMIO_DEVICES (1 + VMAPI_MAX_DRIVES + VMAPI_MAX_NETS)
#define N_EXIT_COUNTERS 64
#define PAUSE_TIMEOUT_S 2
#define UNKNOWN_MMIO_LOGS_PER_SEC 5

#define DEFAULT_CMDLINE \
	"console=ttyS0 reboot=k panic=1 pci=off nomodule i8042.noaux i8042.nomux i8042.dumbkbd"

struct vm {
	struct vm_options opt;
	int kvm_fd, vm_fd;
	struct guest_mem mem;
	struct kvm_cpuid2 *cpuid;
	size_t run_size;
	uint64_t instance_start_ns;

	struct vcpu *vcpus[BOOT_MAX_CPUS];
	unsigned n_vcpus;

	struct serial *serial;
	struct i8042 *i8042;
	struct boot_timer *boot_timer;
	/* MMIO routing table: fixed once the vCPUs start, so exits read it without a lock. */
	struct mmio_device *mmio[MAX_MMIO_DEVICES];
	unsigned n_mmio;
#ifdef MICROVM_HAVE_VIRTIO
	struct virtio_dev *virtio[VMAPI_MAX_DRIVES + VMAPI_MAX_NETS];
	unsigned n_virtio;
#endif

	/* The run state, shared with the vCPU threads. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum vm_state state;
	bool pause_req, stop_req;
	unsigned threads, parked;
	char fault[256];

	/* vCPU threads wake the main loop through this eventfd. */
	int event_fd;
	struct event *event;

	atomic_uint_fast64_t exits[N_EXIT_COUNTERS];
	atomic_uint_fast64_t pio_ignored, mmio_unknown;
	pthread_mutex_t log_lock;
	time_t log_sec;
	unsigned log_n, log_suppressed;
};

static const char *const state_names[_VM_STATE_MAX] = {
	[VM_STATE_NOT_STARTED] = "Not started", [VM_STATE_RUNNING] = "Running",
	[VM_STATE_PAUSED] = "Paused",		[VM_STATE_STOPPED] = "Stopped",
	[VM_STATE_FAULTED] = "Faulted",
};

const char *vm_state_to_string(enum vm_state s)
{
	return s >= 0 && s < _VM_STATE_MAX ? state_names[s] : "?";
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Maps a kernel or initrd file read-only. The file is the user's; it is checked for type and
 * size, and read through a private mapping so later changes to it do not reach the guest. */
static int map_file(const char *path, const char *what, uint8_t **ret, size_t *ret_len, char *err,
		    size_t errlen)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;

	if (fd < 0)
		return format_error(err, errlen, -errno, "cannot open %s '%s': %s", what, path,
				    strerror(errno));
	if (fstat(fd, &st) < 0)
		return format_error(err, errlen, -errno, "cannot stat %s '%s': %s", what, path,
				    strerror(errno));
	if (!S_ISREG(st.st_mode))
		return format_error(err, errlen, -EINVAL, "%s '%s' is not a regular file", what,
				    path);
	if (st.st_size == 0 || (uint64_t)st.st_size > MAX_IMAGE_SIZE)
		return format_error(err, errlen, -EINVAL, "%s '%s' is empty or larger than 1 GiB",
				    what, path);
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		return format_error(err, errlen, -errno, "cannot map %s '%s': %s", what, path,
				    strerror(errno));
	*ret = p;
	*ret_len = (size_t)st.st_size;
	return 0;
}

static int setup_memory(struct vm *vm, uint64_t mem_mib, char *err, size_t errlen)
{
	uint64_t total = mem_mib << 20;
	uint64_t low = total < BOOT_MMIO_GAP_START ? total : BOOT_MMIO_GAP_START;
	struct {
		uint64_t gpa, size;
	} want[2] = { { 0, low }, { BOOT_MMIO_GAP_END, total - low } };

	for (unsigned i = 0; i < 2; i++) {
		if (!want[i].size)
			continue;
		/* MAP_NORESERVE: guest RAM is touched lazily; only what the guest uses is paid. */
		void *p = mmap(NULL, want[i].size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			return format_error(
				err, errlen, -errno, "cannot allocate %llu MiB of guest memory: %s",
				(unsigned long long)(want[i].size >> 20), strerror(errno));
		(void)madvise(p, want[i].size, MADV_DONTDUMP);
		struct guest_mem_region *r = &vm->mem.regions[vm->mem.n_regions++];
		r->gpa = want[i].gpa;
		r->size = want[i].size;
		r->host = p;
		struct kvm_userspace_memory_region kr = {
			.slot = i,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uintptr_t)p,
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &kr) < 0)
			return format_error(err, errlen, -errno,
					    "KVM_SET_USER_MEMORY_REGION failed: %s",
					    strerror(errno));
	}
	return 0;
}

static int open_kvm(struct vm *vm, char *err, size_t errlen)
{
	static const struct {
		int cap;
		const char *name;
	} caps[] = {
		{ KVM_CAP_IRQCHIP, "IRQCHIP" },
		{ KVM_CAP_USER_MEMORY, "USER_MEMORY" },
		{ KVM_CAP_SET_TSS_ADDR, "SET_TSS_ADDR" },
		{ KVM_CAP_PIT2, "PIT2" },
		{ KVM_CAP_EXT_CPUID, "EXT_CPUID" },
		{ KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT" },
	};

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0)
		return format_error(err, errlen, -errno, "cannot open /dev/kvm: %s",
				    strerror(errno));
	int v = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (v != KVM_API_VERSION)
		return format_error(err, errlen, -ENOTSUP, "KVM API version %d, need %d", v,
				    KVM_API_VERSION);
	for (size_t i = 0; i < ELEMENTSOF(caps); i++)
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0)
			return format_error(err, errlen, -ENOTSUP, "KVM lacks KVM_CAP_%s",
					    caps[i].name);
	int size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (size < (int)sizeof(struct kvm_run))
		return format_error(err, errlen, -ENOTSUP, "KVM_GET_VCPU_MMAP_SIZE failed");
	vm->run_size = (size_t)size;

	/* The supported CPUID set; grow the buffer while KVM says E2BIG. */
	for (unsigned n = 128; n <= 1024; n *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		if (!c)
			return format_error(err, errlen, -ENOMEM, "out of memory");
		c->nent = n;
		if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			vm->cpuid = c;
			break;
		}
		int e = errno;
		free(c);
		if (e != E2BIG)
			return format_error(err, errlen, -e, "KVM_GET_SUPPORTED_CPUID failed: %s",
					    strerror(e));
	}
	if (!vm->cpuid)
		return format_error(err, errlen, -E2BIG,
				    "KVM_GET_SUPPORTED_CPUID: too many entries");

	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return format_error(err, errlen, -errno, "KVM_CREATE_VM failed: %s",
				    strerror(errno));
	/* Intel needs a 3-page TSS region and an identity-map page inside the guest-physical
	 * space but outside RAM, before any vCPU exists. */
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR) < 0)
		return format_error(err, errlen, -errno, "KVM_SET_TSS_ADDR failed: %s",
				    strerror(errno));
	uint64_t idmap = KVM_IDENTITY_MAP_ADDR;
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
		log_debug("KVM_SET_IDENTITY_MAP_ADDR failed: %m, ignoring");
	return 0;
}

static int setup_irqchip(struct vm *vm, char *err, size_t errlen)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };

	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return format_error(err, errlen, -errno, "KVM_CREATE_IRQCHIP failed: %s",
				    strerror(errno));
	/* The dummy speaker keeps port 0x61 in the kernel. */
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return format_error(err, errlen, -errno, "KVM_CREATE_PIT2 failed: %s",
				    strerror(errno));
	return 0;
}

static void on_i8042_reset(void *userdata)
{
	vm_vcpu_stop(userdata, VM_STATE_STOPPED, "guest requested a reset through the i8042");
}

static int add_mmio(struct vm *vm, struct mmio_device *d)
{
	if (vm->n_mmio == MAX_MMIO_DEVICES)
		return -E2BIG;
	vm->mmio[vm->n_mmio++] = d;
	return 0;
}

/* Creates the virtio devices (root drive first, so it is /dev/vda) and appends their
 * command-line entries to @cmdline (@cap bytes). */
static int setup_virtio(struct vm *vm, const struct vm_config *cfg, char *cmdline, size_t cap,
			char *err, size_t errlen)
{
	if (cfg->n_drives == 0 && cfg->n_nets == 0)
		return 0;
#ifdef MICROVM_HAVE_VIRTIO
	unsigned order[VMAPI_MAX_DRIVES], n = 0;
	for (unsigned pass = 0; pass < 2; pass++)
		for (unsigned i = 0; i < cfg->n_drives; i++)
			if (cfg->drives[i].is_root == (pass == 0))
				order[n++] = i;
	for (unsigned k = 0; k < cfg->n_drives + cfg->n_nets; k++) {
		struct device_env env = {
			.vm_fd = vm->vm_fd,
			.mem = &vm->mem,
			.base = vm->opt.base,
			.mmio_base = MICROVM_MMIO_BASE + vm->n_virtio * MICROVM_MMIO_SLOT,
			.gsi = MICROVM_FIRST_DEVICE_GSI + vm->n_virtio,
		};
		struct virtio_dev *d = NULL;
		int r;
		if (k < cfg->n_drives) {
			const struct vm_drive *dr = &cfg->drives[order[k]];
			r = virtio_blk_new(&env, dr->id, dr->path, dr->read_only, &d);
			if (r < 0)
				return format_error(err, errlen, r,
						    "cannot create drive '%s' ('%s'): %s", dr->id,
						    dr->path, strerror(-r));
			if (k == 0 && dr->is_root) {
				size_t len = strlen(cmdline);
				snprintf(cmdline + len, cap - len, " root=/dev/vda %s",
					 dr->read_only ? "ro" : "rw");
			}
		} else {
			const struct vm_net *nt = &cfg->nets[k - cfg->n_drives];
			r = virtio_net_new(&env, nt->id, nt->host_dev, nt->has_mac ? nt->mac : NULL,
					   &d);
			if (r < 0)
				return format_error(
					err, errlen, r,
					"cannot create network interface '%s' (tap '%s'): %s",
					nt->id, nt->host_dev, strerror(-r));
		}
		vm->virtio[vm->n_virtio++] = d;
		if (add_mmio(vm, virtio_dev_mmio(d)) < 0)
			return format_error(err, errlen, -E2BIG, "too many devices");
		size_t len = strlen(cmdline);
		r = virtio_dev_cmdline(d, cmdline + len, cap - len);
		if (r < 0 || strlen(cmdline) >= cap - 1)
			return format_error(err, errlen, -E2BIG, "kernel command line too long");
	}
	return 0;
#else
	(void)vm;
	(void)cmdline;
	(void)cap;
	return format_error(
		err, errlen, -ENOTSUP,
		"drives and network interfaces need virtio support, which this microvm was "
		"built without");
#endif
}

static void on_event(evutil_socket_t fd, short what, void *userdata)
{
	struct vm *vm = userdata;
	uint64_t v;

	/* The counter only wakes us; its value does not matter (EAGAIN: already drained). */
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_debug("reading the VM eventfd failed: %m");
	pthread_mutex_lock(&vm->lock);
	bool stopping = vm->stop_req;
	pthread_mutex_unlock(&vm->lock);
	if (stopping)
		for (unsigned i = 0; i < vm->n_vcpus; i++)
			vcpu_kick(vm->vcpus[i]);
	if (vm->opt.on_change)
		vm->opt.on_change(vm, vm->opt.userdata);
}

int vm_start(const struct vm_config *cfg, const struct vm_options *opt, struct vm **ret, char *err,
	     size_t errlen)
{
	_cleanup_free_ char *cmdline = NULL;
	uint8_t *kernel = NULL, *initrd = NULL;
	size_t kernel_len = 0, initrd_len = 0;
	struct boot_info bi;
	struct vm *vm;
	int r;

	err[0] = '\0';
	if (!cfg->kernel_path)
		return format_error(err, errlen, -EINVAL, "no boot source: PUT /boot-source first");
	if (cfg->vcpu_count < 1 || cfg->vcpu_count > BOOT_MAX_CPUS)
		return format_error(err, errlen, -EINVAL, "vcpu_count out of range");
	vm = calloc(1, sizeof(*vm));
	cmdline = malloc(BOOT_CMDLINE_MAX);
	if (!vm || !cmdline) {
		free(vm);
		return format_error(err, errlen, -ENOMEM, "out of memory");
	}
	vm->opt = *opt;
	vm->kvm_fd = vm->vm_fd = vm->event_fd = -1;
	vm->instance_start_ns = now_ns();
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	pthread_mutex_init(&vm->log_lock, NULL);

	/* KVM's order: the VM, its TSS/identity-map addresses, memory, then the IRQ chip and the
	 * PIT, which must exist before any vCPU. */
	if ((r = open_kvm(vm, err, errlen)) < 0 ||
	    (r = setup_memory(vm, cfg->mem_mib, err, errlen)) < 0 ||
	    (r = setup_irqchip(vm, err, errlen)) < 0)
		goto fail;

	vm->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->event_fd < 0) {
		r = format_error(err, errlen, -errno, "eventfd failed: %s", strerror(errno));
		goto fail;
	}
	vm->event = event_new(opt->base, vm->event_fd, EV_READ | EV_PERSIST, on_event, vm);
	if (!vm->event || event_add(vm->event, NULL) < 0) {
		r = format_error(err, errlen, -ENOMEM, "cannot register the VM event");
		goto fail;
	}

	if ((r = serial_new(vm->vm_fd, opt->console_fd, &vm->serial)) < 0 ||
	    (r = i8042_new(vm->vm_fd, on_i8042_reset, vm, &vm->i8042)) < 0) {
		format_error(err, errlen, r, "out of memory");
		goto fail;
	}
	if (opt->boot_timer) {
		if ((r = boot_timer_new(opt->process_start_ns, vm->instance_start_ns,
					&vm->boot_timer)) < 0 ||
		    (r = add_mmio(vm, boot_timer_mmio(vm->boot_timer))) < 0) {
			format_error(err, errlen, r, "cannot create the boot timer");
			goto fail;
		}
	}

	/* Devices first: their command-line entries must be in place before the kernel is loaded
	 * (boot_load() copies the line into guest memory). */
	snprintf(cmdline, BOOT_CMDLINE_MAX, "%s",
		 cfg->boot_args ? cfg->boot_args : DEFAULT_CMDLINE);
	if ((r = setup_virtio(vm, cfg, cmdline, BOOT_CMDLINE_MAX, err, errlen)) < 0)
		goto fail;

	if ((r = map_file(cfg->kernel_path, "kernel image", &kernel, &kernel_len, err, errlen)) <
		    0 ||
	    (cfg->initrd_path &&
	     (r = map_file(cfg->initrd_path, "initrd", &initrd, &initrd_len, err, errlen)) < 0))
		goto fail;
	struct boot_request req = {
		.kernel = kernel,
		.kernel_len = kernel_len,
		.initrd = initrd,
		.initrd_len = initrd_len,
		.cmdline = cmdline,
		.n_cpus = cfg->vcpu_count,
		.pref = opt->entry,
	};
	r = boot_load(&vm->mem, &req, &bi, err, errlen);
	if (r < 0)
		goto fail;
	log_info("%s: booting %s%s through the %s entry at 0x%llx, %u vCPU(s), %u MiB", opt->id,
		 cfg->kernel_path, bi.bzimage ? " (bzImage)" : "",
		 bi.kind == BOOT_KIND_PVH ? "PVH" : "64-bit", (unsigned long long)bi.entry,
		 cfg->vcpu_count, cfg->mem_mib);
	log_debug("%s: command line '%s'", opt->id, cmdline);

	if ((r = vcpu_install_kick_handler()) < 0) {
		format_error(err, errlen, r, "cannot install the vCPU kick handler");
		goto fail;
	}
	struct vcpu_env env = {
		.vm = vm,
		.vm_fd = vm->vm_fd,
		.run_size = vm->run_size,
		.cpuid = vm->cpuid,
		.n_vcpus = cfg->vcpu_count,
		.vm_id = opt->id,
	};
	for (unsigned i = 0; i < cfg->vcpu_count; i++) {
		r = vcpu_new(&env, i, &bi, &vm->vcpus[i]);
		if (r < 0) {
			format_error(err, errlen, r, "cannot create vCPU %u: %s", i, strerror(-r));
			goto fail;
		}
		vm->n_vcpus++;
	}

	/* Every vCPU exists before any runs: the BSP may send INIT/SIPI to the APs at once. The
	 * thread count is raised before each start so a pause never waits for fewer threads
	 * than will park. */
	vm->state = VM_STATE_RUNNING;
	for (unsigned i = 0; i < vm->n_vcpus; i++) {
		pthread_mutex_lock(&vm->lock);
		vm->threads++;
		pthread_mutex_unlock(&vm->lock);
		r = vcpu_start(vm->vcpus[i]);
		if (r < 0) {
			pthread_mutex_lock(&vm->lock);
			vm->threads--;
			pthread_mutex_unlock(&vm->lock);
			format_error(err, errlen, r, "cannot start vCPU %u", i);
			goto fail;
		}
	}
	munmap(kernel, kernel_len);
	if (initrd)
		munmap(initrd, initrd_len);
	*ret = vm;
	return 0;

fail:
	if (kernel)
		munmap(kernel, kernel_len);
	if (initrd)
		munmap(initrd, initrd_len);
	vm_free(vm);
	return r;
}

struct vm *vm_free(struct vm *vm)
{
	if (!vm)
		return NULL;
	/* Threads first (they use devices and memory), then devices (virtio ones use the event
	 * base and guest memory), then the fds and memory themselves. */
	pthread_mutex_lock(&vm->lock);
	vm->stop_req = true;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < vm->n_vcpus; i++)
		vcpu_kick(vm->vcpus[i]);
	for (unsigned i = 0; i < vm->n_vcpus; i++) {
		vcpu_join(vm->vcpus[i]);
		vm->vcpus[i] = vcpu_free(vm->vcpus[i]);
	}
#ifdef MICROVM_HAVE_VIRTIO
	for (unsigned i = 0; i < vm->n_virtio; i++)
		vm->virtio[i] = virtio_dev_free(vm->virtio[i]);
#endif
	vm->boot_timer = boot_timer_free(vm->boot_timer);
	vm->i8042 = i8042_free(vm->i8042);
	vm->serial = serial_free(vm->serial);
	if (vm->event)
		event_free(vm->event);
	if (vm->event_fd >= 0)
		close(vm->event_fd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	for (unsigned i = 0; i < vm->mem.n_regions; i++)
		munmap(vm->mem.regions[i].host, vm->mem.regions[i].size);
	free(vm->cpuid);
	pthread_mutex_destroy(&vm->log_lock);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
	free(vm);
	return NULL;
}

enum vm_state vm_get_state(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	enum vm_state s = vm->state;
	pthread_mutex_unlock(&vm->lock);
	return s;
}

void vm_fault_reason(struct vm *vm, char *buf, size_t n)
{
	pthread_mutex_lock(&vm->lock);
	snprintf(buf, n, "%s", vm->fault);
	pthread_mutex_unlock(&vm->lock);
}

static void set_devices_paused(struct vm *vm, bool paused)
{
#ifdef MICROVM_HAVE_VIRTIO
	for (unsigned i = 0; i < vm->n_virtio; i++)
		virtio_dev_set_paused(vm->virtio[i], paused);
#else
	(void)vm;
	(void)paused;
#endif
}

int vm_pause(struct vm *vm)
{
	struct timespec deadline;

	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_STATE_RUNNING) {
		pthread_mutex_unlock(&vm->lock);
		return -EINVAL;
	}
	vm->pause_req = true;
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < vm->n_vcpus; i++)
		vcpu_kick(vm->vcpus[i]);

	/* A vCPU in the middle of an exit handler parks when it returns; wait for all of them,
	 * boundedly, so that "Paused" means no guest instruction runs any more. */
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += PAUSE_TIMEOUT_S;
	pthread_mutex_lock(&vm->lock);
	while (vm->parked < vm->threads && !vm->stop_req)
		if (pthread_cond_timedwait(&vm->cond, &vm->lock, &deadline) == ETIMEDOUT) {
			log_warn("%s: %u of %u vCPUs parked after %d s", vm->opt.id, vm->parked,
				 vm->threads, PAUSE_TIMEOUT_S);
			break;
		}
	if (vm->state == VM_STATE_RUNNING)
		vm->state = VM_STATE_PAUSED;
	pthread_mutex_unlock(&vm->lock);
	set_devices_paused(vm, true);
	log_info("%s: paused", vm->opt.id);
	return 0;
}

int vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_STATE_PAUSED) {
		pthread_mutex_unlock(&vm->lock);
		return -EINVAL;
	}
	vm->pause_req = false;
	vm->state = VM_STATE_RUNNING;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	set_devices_paused(vm, false);
	log_info("%s: resumed", vm->opt.id);
	return 0;
}

int vm_send_ctrl_alt_del(struct vm *vm)
{
	if (vm_get_state(vm) != VM_STATE_RUNNING)
		return -EINVAL;
	return i8042_send_ctrl_alt_del(vm->i8042);
}

void vm_console_input(struct vm *vm, const uint8_t *buf, size_t n)
{
	serial_input(vm->serial, buf, n);
}

uint64_t vm_first_output_us(struct vm *vm)
{
	uint64_t t = serial_first_tx_ns(vm->serial);

	return t > vm->opt.process_start_ns ? (t - vm->opt.process_start_ns) / 1000 : 0;
}

static const char *exit_name(unsigned reason)
{
	switch (reason) {
	case KVM_EXIT_IO:
		return "io";
	case KVM_EXIT_MMIO:
		return "mmio";
	case KVM_EXIT_HLT:
		return "hlt";
	case KVM_EXIT_SHUTDOWN:
		return "shutdown";
	case KVM_EXIT_INTR:
		return "intr";
	case KVM_EXIT_INTERNAL_ERROR:
		return "internal_error";
	case KVM_EXIT_FAIL_ENTRY:
		return "fail_entry";
	case KVM_EXIT_SYSTEM_EVENT:
		return "system_event";
	default:
		return NULL;
	}
}

/* Counters are atomics updated by the vCPU threads; a snapshot of them is consistent per
 * counter, not across counters, which is all metrics need. */
json_t *vm_metrics(struct vm *vm)
{
	json_auto_t *m = NULL;
	json_t *exits, *devices;
	uint64_t other = 0;

	pthread_mutex_lock(&vm->lock);
	unsigned threads = vm->threads;
	enum vm_state state = vm->state;
	pthread_mutex_unlock(&vm->lock);

	m = json_pack("{s:s, s:i, s:i, s:I, s:I, s:I, s:{}, s:{}}", "state",
		      vm_state_to_string(state), "vcpu_count", (int)vm->n_vcpus, "vcpu_threads",
		      (int)threads, "pio_ignored", (json_int_t)atomic_load(&vm->pio_ignored),
		      "mmio_unknown", (json_int_t)atomic_load(&vm->mmio_unknown), "first_output_us",
		      (json_int_t)vm_first_output_us(vm), "exits", "devices");
	if (!m)
		return NULL;
	exits = json_object_get(m, "exits");
	devices = json_object_get(m, "devices");
	for (unsigned i = 0; i < N_EXIT_COUNTERS; i++) {
		uint64_t n = atomic_load(&vm->exits[i]);
		const char *name = exit_name(i);
		if (name) {
			if (json_object_set_new(exits, name, json_integer((json_int_t)n)) < 0)
				return NULL;
		} else {
			other += n;
		}
	}
	if (json_object_set_new(exits, "other", json_integer((json_int_t)other)) < 0 ||
	    json_object_set_new(devices, "serial", serial_metrics(vm->serial)) < 0 ||
	    json_object_set_new(devices, "i8042", i8042_metrics(vm->i8042)) < 0)
		return NULL;
	if (vm->boot_timer &&
	    json_object_set_new(devices, "boot_timer", boot_timer_metrics(vm->boot_timer)) < 0)
		return NULL;
#ifdef MICROVM_HAVE_VIRTIO
	json_t *virtio = json_array();
	if (!virtio || json_object_set_new(devices, "virtio", virtio) < 0)
		return NULL;
	for (unsigned i = 0; i < vm->n_virtio; i++)
		if (json_array_append_new(virtio, virtio_dev_metrics(vm->virtio[i])) < 0)
			return NULL;
#endif
	return TAKE_PTR(m);
}

/* The parking place of the pause protocol: vm_pause() counts parked threads against running
 * ones, and vm_resume()/vm_free() wake them with one broadcast. */
bool vm_vcpu_wait_runnable(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	while (vm->pause_req && !vm->stop_req) {
		vm->parked++;
		pthread_cond_broadcast(&vm->cond);
		pthread_cond_wait(&vm->cond, &vm->lock);
		vm->parked--;
	}
	bool run = !vm->stop_req;
	pthread_mutex_unlock(&vm->lock);
	return run;
}

void vm_vcpu_pio(struct vm *vm, uint16_t port, void *data, uint32_t len, bool write)
{
	if (port >= SERIAL_COM1_BASE && port < SERIAL_COM1_BASE + 8) {
		serial_pio(vm->serial, port - SERIAL_COM1_BASE, data, len, write);
		return;
	}
	if (port == I8042_DATA_PORT || port == I8042_CMD_PORT) {
		i8042_pio(vm->i8042, port, data, len, write);
		return;
	}
	/* Linux probes many legacy ports (other UARTs, the RTC, PS/2 aux, port 0x80 delays):
	 * reads float high, as on an empty ISA bus; writes vanish. Counted, never logged. */
	atomic_fetch_add(&vm->pio_ignored, 1);
	if (!write)
		memset(data, 0xff, len);
}

static void log_unknown_mmio(struct vm *vm, uint64_t addr, uint32_t len, bool write)
{
	time_t now = time(NULL);

	pthread_mutex_lock(&vm->log_lock);
	if (now != vm->log_sec) {
		if (vm->log_suppressed)
			log_warn("%s: %u more unknown MMIO accesses not logged", vm->opt.id,
				 vm->log_suppressed);
		vm->log_sec = now;
		vm->log_n = 0;
		vm->log_suppressed = 0;
	}
	if (vm->log_n++ < UNKNOWN_MMIO_LOGS_PER_SEC)
		log_warn("%s: guest %s unknown MMIO address 0x%llx (%u bytes), ignoring",
			 vm->opt.id, write ? "wrote to" : "read from", (unsigned long long)addr,
			 len);
	else
		vm->log_suppressed++;
	pthread_mutex_unlock(&vm->log_lock);
}

/* A linear search: a VM has at most 13 MMIO devices, and the table never changes while vCPUs
 * run. The range test is written so that a guest address near 2^64 cannot overflow it. */
void vm_vcpu_mmio(struct vm *vm, uint64_t addr, void *data, uint32_t len, bool write)
{
	for (unsigned i = 0; i < vm->n_mmio; i++) {
		struct mmio_device *d = vm->mmio[i];
		if (addr < d->base || addr - d->base >= d->size || len > d->size - (addr - d->base))
			continue;
		if (write)
			d->write(d, addr - d->base, data, len);
		else
			d->read(d, addr - d->base, data, len);
		return;
	}
	atomic_fetch_add(&vm->mmio_unknown, 1);
	log_unknown_mmio(vm, addr, len, write);
	if (!write)
		memset(data, 0, len);
}

void vm_vcpu_stop(struct vm *vm, enum vm_state state, const char *reason)
{
	uint64_t one = 1;
	bool first;

	pthread_mutex_lock(&vm->lock);
	/* The first stop wins: a fault on one vCPU stops the others, which must not overwrite
	 * the reason. */
	first = vm->state == VM_STATE_RUNNING || vm->state == VM_STATE_PAUSED;
	if (first) {
		vm->state = state;
		snprintf(vm->fault, sizeof(vm->fault), "%s",
			 state == VM_STATE_FAULTED ? reason : "");
	}
	vm->stop_req = true;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	if (!first)
		return;
	if (state == VM_STATE_FAULTED)
		log_err("%s: guest fault: %s; the VM is stopped, the API keeps answering",
			vm->opt.id, reason);
	else
		log_info("%s: %s", vm->opt.id, reason);
	/* The other vCPUs see stop_req at their next exit; the main loop kicks those that sit in
	 * KVM_RUN (kicks come only from the main thread, which created every vCPU thread). An
	 * eventfd write only fails when the counter would overflow: then a wakeup is
	 * pending anyway. */
	if (write(vm->event_fd, &one, sizeof(one)) < 0)
		log_debug("writing the VM eventfd failed: %m");
}

void vm_vcpu_count_exit(struct vm *vm, uint32_t exit_reason)
{
	atomic_fetch_add(&vm->exits[exit_reason < N_EXIT_COUNTERS ? exit_reason : 0], 1);
}

void vm_vcpu_exited(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->threads--;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}
