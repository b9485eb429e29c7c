/* SPDX-License-Identifier: MIT */
/*
 * A main() for fuzz targets built without libFuzzer: feeds every file named on the command line
 * (directories are walked one level deep) to LLVMFuzzerTestOneInput(), as systemd's fuzz-main.c
 * does. Used by `make test` to replay the committed corpora under the normal (or ASan) build.
 * Prints one TAP line per input.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "libcommon/cleanup.h"
#include "libcommon/fdutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_one(const char *path, unsigned *n)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r;

	r = read_full_file_at(AT_FDCWD, path, 16 * 1024 * 1024, &buf, &len);
	if (r < 0) {
		printf("not ok %u - %s: %s\n", ++*n, path, strerror(-r));
		return r;
	}
	/* A crash aborts the process, which the runner reports as a failure of this binary. */
	LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
	printf("ok %u - %s\n", ++*n, path);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned n = 0;
	int failed = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;

		if (stat(argv[i], &st) < 0) {
			printf("not ok %u - %s: %m\n", ++n, argv[i]);
			failed = 1;
			continue;
		}
		if (S_ISDIR(st.st_mode)) {
			struct dirent **names = NULL;
			int k = scandir(argv[i], &names, NULL, alphasort);

			for (int j = 0; j < k; j++) {
				_cleanup_free_ char *p = NULL;

				if (names[j]->d_name[0] != '.' &&
				    asprintf(&p, "%s/%s", argv[i], names[j]->d_name) >= 0 &&
				    replay_one(p, &n) < 0)
					failed = 1;
				free(names[j]);
			}
			free(names);
		} else if (replay_one(argv[i], &n) < 0) {
			failed = 1;
		}
	}
	printf("1..%u\n", n);
	return failed;
}
