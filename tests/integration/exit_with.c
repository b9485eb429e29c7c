/* SPDX-License-Identifier: MIT */
/*
 * exit_with CODE: exits at once with CODE (0..255). The process of tests/integration/burst.c's
 * children: linked statically, it execs and exits in a fraction of a millisecond.
 */
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	const char *s = argc == 2 ? argv[1] : "";
	int code = 0;

	if (!*s)
		_exit(255);
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			_exit(255);
		code = code * 10 + (*s - '0');
		if (code > 255)
			_exit(255);
	}
	_exit(code);
}
