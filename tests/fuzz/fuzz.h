/*
 * What the fuzz targets share: the libFuzzer entry point's prototype, a
 * private directory for the files a target needs (a store, views, a YAML
 * file), removed when the process ends, and a way to put an input there.
 * Everything here is static: each target is one translation unit.
 */
#ifndef CQRS_FUZZ_H
#define CQRS_FUZZ_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A broken invariant: say which, then die by a signal so that libFuzzer
 * and the replay driver both count it as a crash. */
#define FUZZ_ASSERT(cond, ...)                                                                     \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: invariant broken: %s: ", __FILE__, __LINE__,       \
				#cond);                                                            \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static char fuzz_dir_path[4096];

static inline int fuzz_remove_one(const char *path, const struct stat *sb, int flag,
				  struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static inline void fuzz_dir_remove(void)
{
	if (fuzz_dir_path[0] != '\0')
		nftw(fuzz_dir_path, fuzz_remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The process's own directory under $TMPDIR (or /tmp), made on first use. */
static inline const char *fuzz_dir(void)
{
	if (fuzz_dir_path[0] != '\0')
		return fuzz_dir_path;
	const char *tmp = getenv("TMPDIR");
	snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/cqrs-fuzz.XXXXXX",
		 tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(fuzz_dir_path) == NULL) {
		fprintf(stderr, "fuzz: cannot make %s: %s\n", fuzz_dir_path, strerror(errno));
		exit(1);
	}
	atexit(fuzz_dir_remove);
	return fuzz_dir_path;
}

/* name inside fuzz_dir(), in buf */
static inline const char *fuzz_path(const char *name, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s/%s", fuzz_dir(), name);
	return buf;
}

/* A file holding the bytes of the input, named by name: a memfd, so
 * that no input ever waits for a disk (ext4 flushes a file truncated and
 * rewritten at close), opened by the library through /proc/self/fd. */
static inline const char *fuzz_file(const char *name, const uint8_t *data, size_t size)
{
	static struct {
		const char *name;
		int fd;
		char path[64];
	} files[4];
	size_t i = 0;
	while (i < sizeof files / sizeof *files && files[i].name != NULL &&
	       strcmp(files[i].name, name) != 0)
		i++;
	if (i == sizeof files / sizeof *files)
		abort();
	if (files[i].name == NULL) {
		files[i].fd = memfd_create(name, MFD_CLOEXEC);
		if (files[i].fd < 0) {
			fprintf(stderr, "fuzz: memfd_create: %s\n", strerror(errno));
			exit(1);
		}
		files[i].name = name;
		snprintf(files[i].path, sizeof files[i].path, "/proc/self/fd/%d", files[i].fd);
	}
	if (ftruncate(files[i].fd, 0) < 0) {
		fprintf(stderr, "fuzz: ftruncate: %s\n", strerror(errno));
		exit(1);
	}
	off_t off = 0;
	while (size > 0) {
		ssize_t w = pwrite(files[i].fd, data, size, off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			fprintf(stderr, "fuzz: cannot write %s: %s\n", name, strerror(errno));
			exit(1);
		}
		data += w;
		off += w;
		size -= (size_t)w;
	}
	return files[i].path;
}

/* The input as a NUL-terminated string (malloc'd); the caller frees it. */
static inline char *fuzz_string(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (s == NULL)
		abort();
	if (size > 0)
		memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* The lines of the input as cqrs_input_next gives them (cqrs(7)): split
 * at "\n", a "\r" before it dropped, lines of only spaces and tabs
 * skipped; each in a buffer of its exact size plus the NUL, so that a read
 * past it is caught.  At most max lines.  cqrs_input itself costs a 1 MiB
 * buffer per open, which under ASan is an mmap and a TLB shootdown per
 * input: fuzz_ndjson.c checks that the two agree. */
static inline void fuzz_lines(const uint8_t *data, size_t size, int max,
			      void (*fn)(char *line, size_t len))
{
	size_t start = 0;
	while (start < size && max > 0) {
		const uint8_t *nl = memchr(data + start, '\n', size - start);
		size_t end = nl != NULL ? (size_t)(nl - data) : size;
		size_t n = end - start;
		if (n > 0 && data[start + n - 1] == '\r')
			n--;
		size_t i = 0;
		while (i < n && (data[start + i] == ' ' || data[start + i] == '\t'))
			i++;
		if (i < n) {
			char *line = fuzz_string(data + start, n);
			fn(line, n);
			free(line);
			max--;
		}
		start = end + 1;
	}
}

#endif
