/*
 * An I/O fault injector, preloaded into a tool by the tests:
 *   CQRS_FAULT_FSYNC=N   the Nth fsync/fdatasync and all later ones fail with EIO
 *   CQRS_FAULT_WAL_FSYNC=N  the same, counting only syncs of a "*-wal" file
 *   CQRS_FAULT_WRITE=N   the Nth write/pwrite and all later ones fail with ENOSPC
 * Counting starts at 1; unset means never.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long threshold(const char *name)
{
	const char *v = getenv(name);
	return v != NULL ? strtol(v, NULL, 10) : 0;
}

static int fail_now(const char *name, long *count)
{
	long n = threshold(name);
	return n > 0 && ++*count >= n;
}

static long syncs, wal_syncs, writes;

static int is_wal(int fd)
{
	char link[64], path[4096];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof path - 1);
	if (n < 4)
		return 0;
	path[n] = '\0';
	return strcmp(path + n - 4, "-wal") == 0;
}

static int sync_fails(int fd)
{
	if (fail_now("CQRS_FAULT_FSYNC", &syncs))
		return 1;
	return is_wal(fd) && fail_now("CQRS_FAULT_WAL_FSYNC", &wal_syncs);
}

int fsync(int fd)
{
	static int (*real)(int);
	if (sync_fails(fd)) {
		errno = EIO;
		return -1;
	}
	if (real == NULL)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	return real(fd);
}

int fdatasync(int fd)
{
	static int (*real)(int);
	if (sync_fails(fd)) {
		errno = EIO;
		return -1;
	}
	if (real == NULL)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	return real(fd);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	static ssize_t (*real)(int, const void *, size_t, off_t);
	if (fd > 2 && fail_now("CQRS_FAULT_WRITE", &writes)) {
		errno = ENOSPC;
		return -1;
	}
	if (real == NULL)
		real = (ssize_t(*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite64");
	return real(fd, buf, n, off);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	return pwrite64(fd, buf, n, off);
}
