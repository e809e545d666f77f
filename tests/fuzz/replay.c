/*
 * The fuzz targets without libFuzzer: built with the default compiler and
 * linked with one target, it calls LLVMFuzzerTestOneInput once per file.
 * Operands are files or directories (their files, in name order); with
 * none it replays tests/fuzz/corpus/NAME and tests/fuzz/crashes/NAME under
 * $CQRS_TOP_SRCDIR (make check).  Each file is named on stderr before it
 * runs, so a crash names its input; it fails when it replayed nothing.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"
#include "banned.h"

#ifndef FUZZ_NAME
#error "FUZZ_NAME: the target's name, as in tests/fuzz/fuzz_NAME.c"
#endif

/* the target may define it, as libFuzzer allows */
#pragma weak LLVMFuzzerInitialize

static const char *current; /* the file being replayed */

static void on_fatal(int sig)
{
	static const char msg[] = "replay: crashed on ";
	if (current != NULL) {
		(void)!write(2, msg, sizeof msg - 1);
		(void)!write(2, current, strlen(current));
		(void)!write(2, "\n", 1);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	char *buf = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (len == cap) {
			cap = cap ? 2 * cap : 4096;
			char *n = realloc(buf, cap);
			if (n == NULL) {
				fprintf(stderr, "replay: out of memory\n");
				exit(1);
			}
			buf = n;
		}
		size_t r = fread(buf + len, 1, cap - len, f);
		len += r;
		if (r == 0)
			break;
	}
	int failed = ferror(f);
	fclose(f);
	if (failed) {
		free(buf);
		fprintf(stderr, "replay: %s: read error\n", path);
		return -1;
	}
	fprintf(stderr, "replay: %s\n", path);
	current = path;
	/* an exact-size copy, so that a read past the input is caught */
	uint8_t *data = malloc(len ? len : 1);
	if (data == NULL)
		exit(1);
	memcpy(data, buf, len);
	free(buf);
	LLVMFuzzerTestOneInput(data, len);
	free(data);
	current = NULL;
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replays path (a file, or a directory's files); -1 on an unreadable one,
 * else the number of inputs.  missing_ok: a directory that is not there
 * counts as empty. */
static long replay(const char *path, int missing_ok)
{
	struct stat sb;
	if (stat(path, &sb) < 0) {
		if (missing_ok && errno == ENOENT)
			return 0;
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(sb.st_mode))
		return replay_file(path) < 0 ? -1 : 1;
	DIR *d = opendir(path);
	if (d == NULL) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		/* dot files (.gitignore) and READMEs are not inputs */
		if (e->d_name[0] == '.' || strncmp(e->d_name, "README", 6) == 0)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			char **nn = realloc(names, cap * sizeof *names);
			if (nn == NULL)
				exit(1);
			names = nn;
		}
		size_t l = strlen(path) + strlen(e->d_name) + 2;
		names[n] = malloc(l);
		if (names[n] == NULL)
			exit(1);
		snprintf(names[n], l, "%s/%s", path, e->d_name);
		n++;
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof *names, by_name);
	long count = 0;
	for (size_t i = 0; i < n; i++) {
		long r = count < 0 ? 0 : replay(names[i], 0);
		count = r < 0 || count < 0 ? -1 : count + r;
		free(names[i]);
	}
	free(names);
	return count;
}

int main(int argc, char **argv)
{
	signal(SIGSEGV, on_fatal);
	signal(SIGABRT, on_fatal);
	signal(SIGBUS, on_fatal);
	signal(SIGFPE, on_fatal);
	signal(SIGILL, on_fatal);
	if (LLVMFuzzerInitialize != NULL)
		LLVMFuzzerInitialize(&argc, &argv);
	long total = 0;
	if (argc > 1) {
		for (int i = 1; i < argc && total >= 0; i++) {
			long r = replay(argv[i], 0);
			total = r < 0 ? -1 : total + r;
		}
	} else {
		const char *top = getenv("CQRS_TOP_SRCDIR");
		if (top == NULL) {
			fprintf(stderr, "replay: give inputs, or set CQRS_TOP_SRCDIR\n");
			return 2;
		}
		char dir[4096];
		snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/%s", top, FUZZ_NAME);
		total = replay(dir, 0);
		snprintf(dir, sizeof dir, "%s/tests/fuzz/crashes/%s", top, FUZZ_NAME);
		long r = total < 0 ? -1 : replay(dir, 1);
		total = r < 0 ? -1 : total + r;
	}
	if (total <= 0) {
		fprintf(stderr, "replay: %s: %s\n", FUZZ_NAME,
			total == 0 ? "no inputs replayed" : "an input could not be read");
		printf("0 passed, 1 failed\n");
		return 1;
	}
	/* the closing line that check-total counts: one check per input */
	printf("%ld passed, 0 failed\n", total);
	return 0;
}
