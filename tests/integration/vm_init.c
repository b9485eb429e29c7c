/* SPDX-License-Identifier: MIT */
/*
 * vm_init: the /init of the initramfs tests/integration/microvm_linux.sh builds for a real Linux
 * guest. Run by the kernel as PID 1, it reports on the console that it runs, with the value of
 * "k2itest=" from the kernel command line (the kernel passes unknown "key=value" parameters to
 * init as environment variables), then restarts the machine: with "reboot=k" the kernel resets
 * it through the i8042, and microvm exits. Linked statically: the initramfs holds nothing else.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/reboot.h>
#include <unistd.h>

int main(void)
{
	const char *token = getenv("k2itest");
	/* The kernel gives init /dev/console as stdin/out/err if the initramfs has the node. */
	int fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);

	if (fd < 0)
		fd = STDOUT_FILENO;
	dprintf(fd, "k2i-vm-init: /init is running as pid %d, k2itest=%s\n", (int)getpid(),
		token ? token : "(unset)");
	sync();
	reboot(RB_AUTOBOOT);
	/* Only if the restart failed: PID 1 must not exit (the kernel would panic). */
	dprintf(fd, "k2i-vm-init: reboot failed\n");
	for (;;)
		pause();
}
