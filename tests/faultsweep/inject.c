/*
 * The fault sweep's injector (tests/faultsweep/README), preloaded into one
 * tool at a time.  It counts every allocation and every I/O call the
 * process makes from the moment it is loaded (before main) and can fail
 * one of them:
 *
 *   CQRS_SWEEP_ALLOC=N   the Nth malloc/calloc/realloc/memalign returns
 *                        NULL with errno ENOMEM (counting every allocation
 *                        in the process: SQLite's default allocator,
 *                        libyaml, libc's own such as strdup or fopen, and
 *                        the toolkit's)
 *   CQRS_SWEEP_IO=N      the Nth I/O call fails with a plausible errno
 *                        (open EACCES, read EIO, write ENOSPC, sync EIO,
 *                        truncate EIO, rename/unlink EIO, lock ENOLCK,
 *                        mmap ENOMEM)
 *   CQRS_SWEEP_STICKY=1  fail the Nth and every later one, not only the Nth
 *   CQRS_SWEEP_ERRNO=E   use errno E (a number) for I/O failures instead
 *   CQRS_SWEEP_ONLY=CALL[:SUFFIX]  count only the I/O calls whose name
 *                        starts with CALL (pread: pread and pread64) on a
 *                        file whose path ends with SUFFIX ("-wal"): for
 *                        regression tests that must not depend on N_max
 *   CQRS_SWEEP_ALLOC_SIZE=S  count only allocations of S bytes (SQLite's
 *                        statement object, say: each statement in turn)
 *   CQRS_SWEEP_TOOL_ONLY=1  the programs the tool runs (a saga's step
 *                        programs) are not injected: LD_PRELOAD leaves the
 *                        environment at start, so that a failure is the
 *                        tool's own and not that of the shell it starts
 *                        (the first process keeps it: run the tool itself,
 *                        not under env or sh, which would keep it instead)
 *   CQRS_SWEEP_LOG=FILE  append to FILE what was failed ("io 12 pwrite64
 *                        /path") and, at exit, the totals ("count alloc=A
 *                        io=B"): a clean run with only this set gives N_max
 *
 * Counting starts at 1; unset or 0 means never.  A child made by fork
 * keeps counting on its own and does not write the totals.  Set a
 * breakpoint on cqrs_sweep_hit to stop a replay at the injected failure.
 * The real functions are found with dlsym(RTLD_NEXT); allocations made
 * while dlsym itself runs come from a small static arena.  Under
 * AddressSanitizer, whose start-up resolves its interceptors through the
 * loader before anything else, an interposed malloc crashes: built with
 * -DSWEEP_IO_ONLY (libsweep-io.so) the injector leaves allocations alone
 * and fails I/O calls only, preloaded first with
 * ASAN_OPTIONS=verify_asan_link_order=0, so that LeakSanitizer checks
 * every I/O failure path.  Allocation failures are swept on the normal
 * build, with valgrind for leaks (sweep.sh -V).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

static long alloc_at, alloc_size, io_at, io_errno;
static int sticky, active;
static long allocs, ios;
static pid_t main_pid;
static char log_path[4096], only_call[64], only_suffix[256];

/* --- the bootstrap arena, for dlsym's own allocations ---------------------- */
static _Alignas(16) char arena[64 * 1024];
static size_t arena_used;
static __thread int resolving __attribute__((tls_model("initial-exec")));

__attribute__((unused)) static int in_arena(const void *p)
{
	return (const char *)p >= arena && (const char *)p < arena + sizeof arena;
}

__attribute__((unused)) static void *arena_alloc(size_t n)
{
	size_t need = (n + 15) & ~(size_t)15;
	if (arena_used + need > sizeof arena)
		return NULL;
	void *p = arena + arena_used;
	arena_used += need;
	return p;
}

static void *next(const char *name)
{
	resolving++;
	void *f = dlsym(RTLD_NEXT, name);
	resolving--;
	return f;
}

#define REAL(type, name) \
	static __typeof__(type) real_##name; \
	if (real_##name == NULL) \
		real_##name = (type)next(#name)

/* --- the log, written with raw system calls so that it counts nothing ----- */
static void log_line(const char *line)
{
	if (log_path[0] == '\0')
		return;
	int fd = (int)syscall(SYS_openat, AT_FDCWD, log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	(void)!syscall(SYS_write, fd, line, strlen(line));
	syscall(SYS_close, fd);
}

/* a breakpoint for replays: gdb -ex 'break cqrs_sweep_hit' */
__attribute__((noinline)) void cqrs_sweep_hit(const char *kind, long n, const char *call);
__attribute__((noinline)) void cqrs_sweep_hit(const char *kind, long n, const char *call)
{
	__asm__ volatile("" ::"r"(kind), "r"(n), "r"(call));
}

static void fd_path(int fd, char *out, size_t cap)
{
	char link[64];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	long n = syscall(SYS_readlinkat, AT_FDCWD, link, out, cap - 1);
	out[n > 0 ? n : 0] = '\0';
}

static void hit(const char *kind, long n, const char *call, const char *what)
{
	char line[4600];
	snprintf(line, sizeof line, "%s %ld %s %s\n", kind, n, call, what ? what : "");
	log_line(line);
	cqrs_sweep_hit(kind, n, call);
}

static long env_long(const char *name)
{
	const char *v = getenv(name);
	return v != NULL ? strtol(v, NULL, 10) : 0;
}

__attribute__((constructor)) static void sweep_init(void)
{
	alloc_at = env_long("CQRS_SWEEP_ALLOC");
	alloc_size = env_long("CQRS_SWEEP_ALLOC_SIZE");
	io_at = env_long("CQRS_SWEEP_IO");
	io_errno = env_long("CQRS_SWEEP_ERRNO");
	sticky = env_long("CQRS_SWEEP_STICKY") != 0;
	const char *l = getenv("CQRS_SWEEP_LOG");
	if (l != NULL && strlen(l) < sizeof log_path)
		memcpy(log_path, l, strlen(l) + 1);
	const char *o = getenv("CQRS_SWEEP_ONLY");
	if (o != NULL) {
		const char *colon = strchr(o, ':');
		size_t n = colon ? (size_t)(colon - o) : strlen(o);
		snprintf(only_call, sizeof only_call, "%.*s", (int)n, o);
		if (colon != NULL)
			snprintf(only_suffix, sizeof only_suffix, "%s", colon + 1);
	}
	if (env_long("CQRS_SWEEP_TOOL_ONLY") != 0)
		unsetenv("LD_PRELOAD");
	main_pid = (pid_t)syscall(SYS_getpid);
	allocs = ios = 0;
	active = 1;
}

__attribute__((destructor)) static void sweep_fini(void)
{
	if (!active || (pid_t)syscall(SYS_getpid) != main_pid)
		return;
	char line[128];
	snprintf(line, sizeof line, "count alloc=%ld io=%ld\n", allocs, ios);
	log_line(line);
	active = 0;
}

static int should_fail(long at, long *count)
{
	if (!active)
		return 0;
	long n = __atomic_add_fetch(count, 1, __ATOMIC_RELAXED);
	return at > 0 && (n == at || (sticky && n > at));
}

/* --- allocations ------------------------------------------------------------ */
#ifndef SWEEP_IO_ONLY
static int alloc_fails(const char *call, size_t size)
{
	if (resolving || (alloc_size > 0 && size != (size_t)alloc_size) ||
	    !should_fail(alloc_at, &allocs))
		return 0;
	char what[64];
	snprintf(what, sizeof what, "size=%zu", size);
	hit("alloc", allocs, call, what);
	errno = ENOMEM;
	return 1;
}

void *malloc(size_t n)
{
	if (resolving)
		return arena_alloc(n);
	REAL(void *(*)(size_t), malloc);
	if (real_malloc == NULL) /* asked inside the loader (ASan's start) */
		return arena_alloc(n);
	if (alloc_fails("malloc", n))
		return NULL;
	return real_malloc(n);
}

void *calloc(size_t k, size_t n)
{
	if (resolving)
		return arena_alloc(k * n); /* the arena is zeroed and never reused */
	REAL(void *(*)(size_t, size_t), calloc);
	if (real_calloc == NULL)
		return arena_alloc(k * n);
	if (alloc_fails("calloc", k * n))
		return NULL;
	return real_calloc(k, n);
}

void *realloc(void *p, size_t n)
{
	if (in_arena(p) || resolving) {
		void *q = resolving ? arena_alloc(n) : malloc(n);
		if (q != NULL && p != NULL) {
			size_t left = (size_t)(arena + sizeof arena - (char *)p);
			memcpy(q, p, n < left ? n : left);
		}
		return q;
	}
	REAL(void *(*)(void *, size_t), realloc);
	if (real_realloc == NULL)
		return NULL;
	/* realloc(p, 0) frees: not an allocation that can fail */
	if ((p == NULL || n > 0) && alloc_fails("realloc", n))
		return NULL;
	return real_realloc(p, n);
}

void free(void *p)
{
	if (p == NULL || in_arena(p))
		return;
	REAL(void (*)(void *), free);
	if (real_free != NULL)
		real_free(p);
}

int posix_memalign(void **out, size_t align, size_t n)
{
	REAL(int (*)(void **, size_t, size_t), posix_memalign);
	if (alloc_fails("posix_memalign", n))
		return ENOMEM;
	return real_posix_memalign(out, align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
	REAL(void *(*)(size_t, size_t), aligned_alloc);
	if (alloc_fails("aligned_alloc", n))
		return NULL;
	return real_aligned_alloc(align, n);
}

void *memalign(size_t align, size_t n)
{
	REAL(void *(*)(size_t, size_t), memalign);
	if (alloc_fails("memalign", n))
		return NULL;
	return real_memalign(align, n);
}

#endif /* SWEEP_IO_ONLY */

/* --- I/O ---------------------------------------------------------------------- */
static int io_fails(const char *call, int fd, const char *path, int err)
{
	char what[4096] = "";
	if (!active)
		return 0;
	if (only_call[0] != '\0') {
		if (strncmp(call, only_call, strlen(only_call)) != 0)
			return 0;
		if (path != NULL)
			snprintf(what, sizeof what, "%s", path);
		else if (fd >= 0)
			fd_path(fd, what, sizeof what);
		size_t n = strlen(what), k = strlen(only_suffix);
		if (n < k || strcmp(what + n - k, only_suffix) != 0)
			return 0;
	}
	if (!should_fail(io_at, &ios))
		return 0;
	if (path != NULL)
		snprintf(what, sizeof what, "%s", path);
	else if (fd >= 0)
		fd_path(fd, what, sizeof what);
	hit("io", ios, call, what);
	errno = io_errno > 0 ? (int)io_errno : err;
	return 1;
}

static mode_t open_mode(int flags, va_list ap)
{
	return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

#define OPEN_LIKE(name) \
	int name(const char *path, int flags, ...) \
	{ \
		va_list ap; \
		va_start(ap, flags); \
		mode_t mode = open_mode(flags, ap); \
		va_end(ap); \
		REAL(int (*)(const char *, int, ...), name); \
		if (io_fails(#name, -1, path, EACCES)) \
			return -1; \
		return real_##name(path, flags, mode); \
	}
OPEN_LIKE(open)
OPEN_LIKE(open64)

#define OPENAT_LIKE(name) \
	int name(int dir, const char *path, int flags, ...) \
	{ \
		va_list ap; \
		va_start(ap, flags); \
		mode_t mode = open_mode(flags, ap); \
		va_end(ap); \
		REAL(int (*)(int, const char *, int, ...), name); \
		if (io_fails(#name, -1, path, EACCES)) \
			return -1; \
		return real_##name(dir, path, flags, mode); \
	}
OPENAT_LIKE(openat)
OPENAT_LIKE(openat64)

FILE *fopen(const char *path, const char *mode)
{
	REAL(FILE * (*)(const char *, const char *), fopen);
	if (io_fails("fopen", -1, path, EACCES))
		return NULL;
	return real_fopen(path, mode);
}

FILE *fopen64(const char *path, const char *mode)
{
	REAL(FILE * (*)(const char *, const char *), fopen64);
	if (io_fails("fopen64", -1, path, EACCES))
		return NULL;
	return real_fopen64(path, mode);
}

ssize_t read(int fd, void *buf, size_t n)
{
	REAL(ssize_t(*)(int, void *, size_t), read);
	if (io_fails("read", fd, NULL, EIO))
		return -1;
	return real_read(fd, buf, n);
}

#define PREAD_LIKE(name) \
	ssize_t name(int fd, void *buf, size_t n, off_t off) \
	{ \
		REAL(ssize_t(*)(int, void *, size_t, off_t), name); \
		if (io_fails(#name, fd, NULL, EIO)) \
			return -1; \
		return real_##name(fd, buf, n, off); \
	}
PREAD_LIKE(pread)
PREAD_LIKE(pread64)

/* stderr stays: it carries the message the sweep checks */
ssize_t write(int fd, const void *buf, size_t n)
{
	REAL(ssize_t(*)(int, const void *, size_t), write);
	if (fd != 2 && io_fails("write", fd, NULL, ENOSPC))
		return -1;
	return real_write(fd, buf, n);
}

#define PWRITE_LIKE(name) \
	ssize_t name(int fd, const void *buf, size_t n, off_t off) \
	{ \
		REAL(ssize_t(*)(int, const void *, size_t, off_t), name); \
		if (io_fails(#name, fd, NULL, ENOSPC)) \
			return -1; \
		return real_##name(fd, buf, n, off); \
	}
PWRITE_LIKE(pwrite)
PWRITE_LIKE(pwrite64)

#define FD_CALL(name) \
	int name(int fd) \
	{ \
		REAL(int (*)(int), name); \
		if (io_fails(#name, fd, NULL, EIO)) \
			return -1; \
		return real_##name(fd); \
	}
FD_CALL(fsync)
FD_CALL(fdatasync)

int sync_file_range(int fd, off_t off, off_t n, unsigned int flags)
{
	REAL(int (*)(int, off_t, off_t, unsigned int), sync_file_range);
	if (io_fails("sync_file_range", fd, NULL, EIO))
		return -1;
	return real_sync_file_range(fd, off, n, flags);
}

#define TRUNCATE_LIKE(name) \
	int name(int fd, off_t n) \
	{ \
		REAL(int (*)(int, off_t), name); \
		if (io_fails(#name, fd, NULL, EIO)) \
			return -1; \
		return real_##name(fd, n); \
	}
TRUNCATE_LIKE(ftruncate)
TRUNCATE_LIKE(ftruncate64)

int rename(const char *from, const char *to)
{
	REAL(int (*)(const char *, const char *), rename);
	if (io_fails("rename", -1, to, EIO))
		return -1;
	return real_rename(from, to);
}

int renameat(int d1, const char *from, int d2, const char *to)
{
	REAL(int (*)(int, const char *, int, const char *), renameat);
	if (io_fails("renameat", -1, to, EIO))
		return -1;
	return real_renameat(d1, from, d2, to);
}

int unlink(const char *path)
{
	REAL(int (*)(const char *), unlink);
	if (io_fails("unlink", -1, path, EIO))
		return -1;
	return real_unlink(path);
}

int unlinkat(int dir, const char *path, int flags)
{
	REAL(int (*)(int, const char *, int), unlinkat);
	if (io_fails("unlinkat", -1, path, EIO))
		return -1;
	return real_unlinkat(dir, path, flags);
}

int flock(int fd, int op)
{
	REAL(int (*)(int, int), flock);
	if (io_fails("flock", fd, NULL, ENOLCK))
		return -1;
	return real_flock(fd, op);
}

static int is_lock(int cmd)
{
	return cmd == F_SETLK || cmd == F_SETLKW || cmd == F_OFD_SETLK || cmd == F_OFD_SETLKW;
}

#define FCNTL_LIKE(name) \
	int name(int fd, int cmd, ...) \
	{ \
		va_list ap; \
		va_start(ap, cmd); \
		void *arg = va_arg(ap, void *); \
		va_end(ap); \
		REAL(int (*)(int, int, ...), name); \
		if (is_lock(cmd) && io_fails(#name, fd, NULL, ENOLCK)) \
			return -1; \
		return real_##name(fd, cmd, arg); \
	}
FCNTL_LIKE(fcntl)
FCNTL_LIKE(fcntl64)

#define MMAP_LIKE(name) \
	void *name(void *addr, size_t n, int prot, int flags, int fd, off_t off) \
	{ \
		REAL(void *(*)(void *, size_t, int, int, int, off_t), name); \
		if (fd >= 0 && !(flags & MAP_ANONYMOUS) && io_fails(#name, fd, NULL, ENOMEM)) \
			return MAP_FAILED; \
		return real_##name(addr, n, prot, flags, fd, off); \
	}
MMAP_LIKE(mmap)
MMAP_LIKE(mmap64)
