/*
 * The power-cut recorder, preloaded into the tools by tests/powercut:
 * every call that changes a file or a directory entry under one directory
 * is logged, in order, with its data, so that tests/powercut/replay.py can
 * build the directory as a power cut at any point would have left it.
 *
 *   CQRS_POWERCUT_DIR=/abs/dir   the directory watched (no symbolic links)
 *   CQRS_POWERCUT_LOG=/abs/log   the log, outside it; appended to
 *
 * Logged (only when the call succeeds, right after it): open/creat with
 * O_CREAT or O_TRUNC, write, pwrite, writev, pwritev, ftruncate, fsync,
 * fdatasync (of files and of directories), sync_file_range, rename(at),
 * link(at), unlink(at), mkdir(at), rmdir.  Unset variables: nothing is
 * logged and every call goes straight through.
 *
 * One record is one writev(2) to a log opened with O_APPEND, so records
 * of several processes of one run never mix and a record is in the log
 * as soon as the call returns (a process that exits or is killed loses
 * nothing).  The format (host byte order) is struct rec, then path, then
 * path2, then data; replay.py reads it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum op {
	OP_CREATE = 1, /* path, ino: the name now refers to the file ino (new or not) */
	OP_WRITE = 2,  /* ino, off, data */
	OP_TRUNC = 3,  /* ino, off = new size */
	OP_FSYNC = 4,  /* ino (fsync and fdatasync: both make data and size durable) */
	OP_SFR = 5,    /* ino: sync_file_range, which promises nothing */
	OP_RENAME = 6, /* path -> path2 */
	OP_LINK = 7,   /* path -> path2 (new name) */
	OP_UNLINK = 8, /* path */
	OP_MKDIR = 9,  /* path */
	OP_RMDIR = 10, /* path */
	OP_DIRSYNC = 11, /* path: fsync of a directory */
	OP_MARK = 12,  /* path: a note of the test driver (written by replay.py) */
};

struct rec {
	uint32_t magic; /* 0x50435554, "PCUT" */
	uint32_t op;
	uint32_t pid;
	uint32_t pathlen;
	uint32_t path2len;
	uint32_t pad;
	uint64_t ino;
	uint64_t off;
	uint64_t len;
};

static char dir[PATH_MAX];
static size_t dirlen;
static int logfd = -1;
static int state; /* 0 unknown, 1 on, -1 off */

static int on(void)
{
	if (state != 0)
		return state > 0;
	const char *d = getenv("CQRS_POWERCUT_DIR"), *l = getenv("CQRS_POWERCUT_LOG");
	state = -1;
	if (d == NULL || l == NULL || *d != '/' || strlen(d) >= sizeof dir)
		return 0;
	strcpy(dir, d);
	dirlen = strlen(dir);
	while (dirlen > 1 && dir[dirlen - 1] == '/')
		dir[--dirlen] = '\0';
	logfd = (int)syscall(SYS_openat, AT_FDCWD, l, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
			     0600);
	if (logfd < 0)
		return 0;
	/* out of the way of descriptors the tools expect to get */
	int hi = (int)syscall(SYS_fcntl, logfd, F_DUPFD_CLOEXEC, 900);
	if (hi >= 0) {
		syscall(SYS_close, logfd);
		logfd = hi;
	}
	state = 1;
	return 1;
}

/* The path relative to the watched directory ("." for itself), or NULL
 * when outside it. */
static const char *inside(const char *abs)
{
	if (strncmp(abs, dir, dirlen) != 0)
		return NULL;
	if (abs[dirlen] == '\0')
		return ".";
	if (abs[dirlen] != '/')
		return NULL;
	return abs + dirlen + 1;
}

/* Makes path absolute (relative to dirfd) into buf, without resolving
 * symbolic links; "." and ".." are folded. */
static const char *absolute(int dirfd, const char *path, char *buf, size_t cap)
{
	char base[PATH_MAX], tmp[2 * PATH_MAX];
	if (path == NULL)
		return NULL;
	if (path[0] == '/') {
		snprintf(tmp, sizeof tmp, "%s", path);
	} else {
		if (dirfd == AT_FDCWD) {
			if (getcwd(base, sizeof base) == NULL)
				return NULL;
		} else {
			char link[64];
			snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
			ssize_t n = readlink(link, base, sizeof base - 1);
			if (n < 0)
				return NULL;
			base[n] = '\0';
		}
		snprintf(tmp, sizeof tmp, "%s/%s", base, path);
	}
	/* fold "//", "/./" and "/../" */
	size_t o = 0;
	const char *s = tmp;
	while (*s != '\0') {
		while (*s == '/')
			s++;
		const char *e = strchrnul(s, '/');
		size_t n = (size_t)(e - s);
		if (n == 0)
			break;
		if (n == 1 && s[0] == '.') {
		} else if (n == 2 && s[0] == '.' && s[1] == '.') {
			while (o > 0 && buf[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
		} else {
			if (o + n + 2 > cap)
				return NULL;
			buf[o++] = '/';
			memcpy(buf + o, s, n);
			o += n;
		}
		s = e;
	}
	if (o == 0)
		buf[o++] = '/';
	buf[o] = '\0';
	return buf;
}

/* The relative path of the file open on fd, or NULL when outside. */
static const char *fd_path(int fd, char *buf, size_t cap)
{
	char link[64];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, buf, cap - 1);
	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	if (n > 10 && strcmp(buf + n - 10, " (deleted)") == 0)
		return NULL; /* an unlinked file: no power cut brings it back */
	return inside(buf);
}

static void emit(uint32_t op, const char *path, const char *path2, uint64_t ino, uint64_t off,
		 const struct iovec *data, int ndata)
{
	int saved = errno;
	struct rec r = { .magic = 0x50435554u, .op = op, .pid = (uint32_t)getpid() };
	struct iovec v[3 + 64];
	int nv = 0;
	r.pathlen = path != NULL ? (uint32_t)strlen(path) : 0;
	r.path2len = path2 != NULL ? (uint32_t)strlen(path2) : 0;
	r.ino = ino;
	r.off = off;
	v[nv++] = (struct iovec){ &r, sizeof r };
	if (r.pathlen > 0)
		v[nv++] = (struct iovec){ (void *)path, r.pathlen };
	if (r.path2len > 0)
		v[nv++] = (struct iovec){ (void *)path2, r.path2len };
	for (int i = 0; i < ndata && nv < (int)(sizeof v / sizeof v[0]); i++) {
		v[nv++] = data[i];
		r.len += data[i].iov_len;
	}
	size_t total = 0;
	for (int i = 0; i < nv; i++)
		total += v[i].iov_len;
	ssize_t w = syscall(SYS_writev, logfd, v, nv);
	if (w != (ssize_t)total) {
		static const char msg[] = "powercut recorder: cannot write the log\n";
		syscall(SYS_write, 2, msg, sizeof msg - 1);
		abort();
	}
	errno = saved;
}

static uint64_t ino_of(int fd, int *isdir)
{
	struct stat sb;
	if (fstat(fd, &sb) < 0)
		return 0;
	if (isdir != NULL)
		*isdir = S_ISDIR(sb.st_mode);
	return (uint64_t)sb.st_ino;
}

/* A data write of n bytes at off (-1: at the position before the call,
 * which the caller found) on fd. */
static void log_write(int fd, const struct iovec *iov, int iovcnt, off_t off, ssize_t done)
{
	char buf[PATH_MAX];
	if (done <= 0 || !on() || fd == logfd)
		return;
	const char *rel = fd_path(fd, buf, sizeof buf);
	if (rel == NULL)
		return;
	struct iovec part[64];
	int np = 0;
	size_t left = (size_t)done;
	for (int i = 0; i < iovcnt && left > 0 && np < 64; i++) {
		size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;
		part[np++] = (struct iovec){ iov[i].iov_base, n };
		left -= n;
	}
	emit(OP_WRITE, rel, NULL, ino_of(fd, NULL), (uint64_t)off, part, np);
}

#define REAL(name)                                                                             \
	static __typeof__(&name) real_##name;                                                 \
	if (real_##name == NULL)                                                              \
	real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

/* --- opens ---------------------------------------------------------------- */

static void log_open(int dirfd, const char *path, int flags, int fd)
{
	char abuf[PATH_MAX];
	if (fd < 0 || (flags & (O_CREAT | O_TRUNC)) == 0 || !on())
		return;
	const char *abs = absolute(dirfd, path, abuf, sizeof abuf);
	const char *rel = abs != NULL ? inside(abs) : NULL;
	if (rel == NULL)
		return;
	uint64_t ino = ino_of(fd, NULL);
	if (flags & O_CREAT)
		emit(OP_CREATE, rel, NULL, ino, 0, NULL, 0);
	if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY)
		emit(OP_TRUNC, rel, NULL, ino, 0, NULL, 0);
}

static mode_t mode_arg(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t m = mode_arg(flags, ap);
	va_end(ap);
	REAL(open);
	int fd = real_open(path, flags, m);
	log_open(AT_FDCWD, path, flags, fd);
	return fd;
}

int open64(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t m = mode_arg(flags, ap);
	va_end(ap);
	REAL(open64);
	int fd = real_open64(path, flags, m);
	log_open(AT_FDCWD, path, flags, fd);
	return fd;
}

int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t m = mode_arg(flags, ap);
	va_end(ap);
	REAL(openat);
	int fd = real_openat(dirfd, path, flags, m);
	log_open(dirfd, path, flags, fd);
	return fd;
}

int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t m = mode_arg(flags, ap);
	va_end(ap);
	REAL(openat64);
	int fd = real_openat64(dirfd, path, flags, m);
	log_open(dirfd, path, flags, fd);
	return fd;
}

int creat(const char *path, mode_t m)
{
	return open(path, O_WRONLY | O_CREAT | O_TRUNC, m);
}

int creat64(const char *path, mode_t m)
{
	return open(path, O_WRONLY | O_CREAT | O_TRUNC, m);
}

/* fopen(3) opens with glibc's internal open: the tools' stdio writes
 * under the directory (none today) would need fopen here too. */

/* --- data ------------------------------------------------------------------ */

static off_t pos_before(int fd)
{
	if (!on())
		return 0;
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && (fl & O_APPEND)) {
		struct stat sb;
		return fstat(fd, &sb) == 0 ? sb.st_size : 0;
	}
	off_t p = lseek(fd, 0, SEEK_CUR);
	return p < 0 ? 0 : p;
}

ssize_t write(int fd, const void *b, size_t n)
{
	REAL(write);
	off_t off = fd > 2 ? pos_before(fd) : 0;
	ssize_t r = real_write(fd, b, n);
	if (fd > 2) {
		struct iovec v = { (void *)b, n };
		log_write(fd, &v, 1, off, r);
	}
	return r;
}

ssize_t pwrite(int fd, const void *b, size_t n, off_t off)
{
	REAL(pwrite);
	ssize_t r = real_pwrite(fd, b, n, off);
	struct iovec v = { (void *)b, n };
	log_write(fd, &v, 1, off, r);
	return r;
}

ssize_t pwrite64(int fd, const void *b, size_t n, off_t off)
{
	REAL(pwrite64);
	ssize_t r = real_pwrite64(fd, b, n, off);
	struct iovec v = { (void *)b, n };
	log_write(fd, &v, 1, off, r);
	return r;
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	REAL(writev);
	off_t off = fd > 2 ? pos_before(fd) : 0;
	ssize_t r = real_writev(fd, iov, cnt);
	if (fd > 2)
		log_write(fd, iov, cnt, off, r);
	return r;
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	REAL(pwritev);
	ssize_t r = real_pwritev(fd, iov, cnt, off);
	log_write(fd, iov, cnt, off, r);
	return r;
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
	REAL(pwritev64);
	ssize_t r = real_pwritev64(fd, iov, cnt, off);
	log_write(fd, iov, cnt, off, r);
	return r;
}

static void log_fd_op(uint32_t op, int fd, uint64_t off)
{
	char buf[PATH_MAX];
	if (!on())
		return;
	const char *rel = fd_path(fd, buf, sizeof buf);
	if (rel == NULL)
		return;
	int isdir = 0;
	uint64_t ino = ino_of(fd, &isdir);
	if (isdir && op == OP_FSYNC)
		op = OP_DIRSYNC;
	emit(op, rel, NULL, ino, off, NULL, 0);
}

int ftruncate(int fd, off_t n)
{
	REAL(ftruncate);
	int r = real_ftruncate(fd, n);
	if (r == 0)
		log_fd_op(OP_TRUNC, fd, (uint64_t)n);
	return r;
}

int ftruncate64(int fd, off_t n)
{
	REAL(ftruncate64);
	int r = real_ftruncate64(fd, n);
	if (r == 0)
		log_fd_op(OP_TRUNC, fd, (uint64_t)n);
	return r;
}

int fsync(int fd)
{
	REAL(fsync);
	int r = real_fsync(fd);
	if (r == 0)
		log_fd_op(OP_FSYNC, fd, 0);
	return r;
}

int fdatasync(int fd)
{
	REAL(fdatasync);
	int r = real_fdatasync(fd);
	if (r == 0)
		log_fd_op(OP_FSYNC, fd, 0);
	return r;
}

int sync_file_range(int fd, off_t off, off_t n, unsigned int flags)
{
	REAL(sync_file_range);
	int r = real_sync_file_range(fd, off, n, flags);
	if (r == 0)
		log_fd_op(OP_SFR, fd, (uint64_t)off);
	return r;
}

/* --- directory entries -------------------------------------------------- */

static void log_path_op(uint32_t op, int d1, const char *p1, int d2, const char *p2)
{
	char a1[PATH_MAX], a2[PATH_MAX];
	if (!on())
		return;
	const char *abs1 = absolute(d1, p1, a1, sizeof a1);
	const char *abs2 = p2 != NULL ? absolute(d2, p2, a2, sizeof a2) : NULL;
	const char *r1 = abs1 != NULL ? inside(abs1) : NULL;
	const char *r2 = abs2 != NULL ? inside(abs2) : NULL;
	if (r1 == NULL && r2 == NULL)
		return;
	if (p2 != NULL && (r1 == NULL || r2 == NULL)) {
		/* a file moved in or out of the directory: not modelled */
		static const char msg[] = "powercut recorder: rename or link across the watched "
					  "directory's edge, not modelled\n";
		syscall(SYS_write, 2, msg, sizeof msg - 1);
		return;
	}
	emit(op, r1, r2, 0, 0, NULL, 0);
}

int rename(const char *a, const char *b)
{
	REAL(rename);
	int r = real_rename(a, b);
	if (r == 0)
		log_path_op(OP_RENAME, AT_FDCWD, a, AT_FDCWD, b);
	return r;
}

int renameat(int da, const char *a, int db, const char *b)
{
	REAL(renameat);
	int r = real_renameat(da, a, db, b);
	if (r == 0)
		log_path_op(OP_RENAME, da, a, db, b);
	return r;
}

int renameat2(int da, const char *a, int db, const char *b, unsigned int flags)
{
	REAL(renameat2);
	int r = real_renameat2(da, a, db, b, flags);
	if (r == 0)
		log_path_op(OP_RENAME, da, a, db, b);
	return r;
}

int link(const char *a, const char *b)
{
	REAL(link);
	int r = real_link(a, b);
	if (r == 0)
		log_path_op(OP_LINK, AT_FDCWD, a, AT_FDCWD, b);
	return r;
}

int linkat(int da, const char *a, int db, const char *b, int flags)
{
	REAL(linkat);
	int r = real_linkat(da, a, db, b, flags);
	if (r == 0)
		log_path_op(OP_LINK, da, a, db, b);
	return r;
}

int unlink(const char *a)
{
	REAL(unlink);
	int r = real_unlink(a);
	if (r == 0)
		log_path_op(OP_UNLINK, AT_FDCWD, a, AT_FDCWD, NULL);
	return r;
}

int unlinkat(int d, const char *a, int flags)
{
	REAL(unlinkat);
	int r = real_unlinkat(d, a, flags);
	if (r == 0)
		log_path_op((flags & AT_REMOVEDIR) ? OP_RMDIR : OP_UNLINK, d, a, d, NULL);
	return r;
}

int rmdir(const char *a)
{
	REAL(rmdir);
	int r = real_rmdir(a);
	if (r == 0)
		log_path_op(OP_RMDIR, AT_FDCWD, a, AT_FDCWD, NULL);
	return r;
}

int mkdir(const char *a, mode_t m)
{
	REAL(mkdir);
	int r = real_mkdir(a, m);
	if (r == 0)
		log_path_op(OP_MKDIR, AT_FDCWD, a, AT_FDCWD, NULL);
	return r;
}

int mkdirat(int d, const char *a, mode_t m)
{
	REAL(mkdirat);
	int r = real_mkdirat(d, a, m);
	if (r == 0)
		log_path_op(OP_MKDIR, d, a, d, NULL);
	return r;
}
