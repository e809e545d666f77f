/*
 * A file that another program reads whole, replaced atomically: the
 * Prometheus text files that node_exporter's textfile collector scrapes,
 * and anything else the operations tools leave for a reader that must never
 * see half of it.  Written to a temporary name in the same directory, made
 * durable, then renamed over the old one, and the directory synced.
 */
#include "cqrs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The directory must be a directory that nobody but its owner (or root)
 * could have filled with a name of their choosing: writable by group or
 * others is refused unless sticky, like /tmp, where rename over another
 * user's file fails anyway. */
int cqrs_textfile_check_dir(const char *dir, cqrs_error *err)
{
	struct stat sb;
	if (stat(dir, &sb) < 0)
		return cqrs_fail(err, errno == ENOENT ? CQRS_EXIT_NOINPUT : CQRS_EXIT_IOERR,
				 "%s: %s", dir, strerror(errno));
	if (!S_ISDIR(sb.st_mode))
		return cqrs_fail(err, CQRS_EXIT_CANTCREAT, "%s: not a directory", dir);
	if ((sb.st_mode & (S_IWGRP | S_IWOTH)) && !(sb.st_mode & S_ISVTX))
		return cqrs_fail(err, CQRS_EXIT_NOPERM,
				 "%s: writable by others and not sticky: refused", dir);
	if (sb.st_uid != cqrs_euid() && sb.st_uid != 0)
		return cqrs_fail(err, CQRS_EXIT_NOPERM,
				 "%s: owned by uid %ld, not by this user: refused", dir,
				 (long)sb.st_uid);
	return 0;
}

int cqrs_textfile_replace(const char *dir, const char *name, const char *text, size_t len,
			  unsigned mode, cqrs_error *err)
{
	if (strchr(name, '/') || name[0] == '.' || name[0] == '\0')
		return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "%s: not a plain file name", name);
	if (cqrs_textfile_check_dir(dir, err) < 0)
		return -1;
	char tmp[4096], path[4096];
	/* A leading dot: node_exporter reads only names ending in .prom, and a
	 * reader listing the directory skips hidden names. */
	if ((size_t)snprintf(tmp, sizeof tmp, "%s/.%s.%ld.tmp", dir, name, (long)getpid()) >=
		    sizeof tmp ||
	    (size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
		return cqrs_fail(err, CQRS_EXIT_USAGE, "%s: path too long", dir);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
		      (mode_t)mode);
	if (fd < 0 && errno == EEXIST) {
		/* left by a process of this pid that died before its rename */
		unlink(tmp);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
			  (mode_t)mode);
	}
	if (fd < 0)
		return cqrs_fail(err, errno == EACCES ? CQRS_EXIT_NOPERM : CQRS_EXIT_CANTCREAT,
				 "%s: %s", tmp, strerror(errno));
	/* the umask may have taken bits the reader needs */
	if (fchmod(fd, (mode_t)mode) < 0)
		goto io_fail;
	for (size_t off = 0; off < len;) {
		ssize_t n = write(fd, text + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto io_fail;
		off += (size_t)n;
	}
	if (fsync(fd) < 0)
		goto io_fail;
	if (close(fd) < 0) {
		fd = -1;
		goto io_fail;
	}
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", path, strerror(e));
	}
	/* the rename itself made durable: a consumer's position that a power
	 * cut took back would have it act twice on what it already did */
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) < 0) {
		int e = errno;
		if (dfd >= 0)
			close(dfd);
		return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", dir, strerror(e));
	}
	close(dfd);
	return 0;
io_fail:;
	int e = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", tmp, strerror(e));
}
