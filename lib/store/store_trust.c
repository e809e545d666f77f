/*
 * Whom a store may be trusted from (cqrs(7), "Who may use a store").
 *
 * A store belongs to the user who writes it.  A writing tool refuses a
 * file (the store, its -wal and -shm, its witness) or a directory above
 * them that someone other than the running user or root owns or could
 * have changed: another user could have planted a trigger that would run
 * inside our appends, or swapped the log.  A reading tool may read
 * another user's store, where the owner grants it, but not one that
 * anyone else could have changed.  The rules are those of ssh's
 * StrictModes: owner, then group and other write bits, with the sticky
 * bit making a shared directory safe for the files its users own.
 *
 * Every check is an fstat of a descriptor that is then used (or, for
 * the directories, of the directories themselves, opened one by one from
 * the root without following links), never a stat of a path that could
 * change in between.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cqrs.h"
#include "store/store_impl.h"
#include "banned.h"

const char *cqrs_user_name(uid_t uid, char *buf, size_t cap)
{
	struct passwd pw, *found = NULL;
	char tmp[4096];
	if (getpwuid_r(uid, &pw, tmp, sizeof tmp, &found) == 0 && found != NULL)
		snprintf(buf, cap, "%s", pw.pw_name);
	else
		snprintf(buf, cap, "%lu", (unsigned long)uid);
	return buf;
}

uid_t cqrs_euid(void)
{
	/* asked for by every check of every file: a system call each time
	 * (what one run of a tool pays for metrics counted them); no tool
	 * changes its user while it runs.  (uid_t)-1 is no one's id. */
	static uid_t euid = (uid_t)-1;
	uid_t e = __atomic_load_n(&euid, __ATOMIC_RELAXED);
	if (e == (uid_t)-1) {
		e = geteuid();
		__atomic_store_n(&euid, e, __ATOMIC_RELAXED);
	}
	return e;
}

static bool trusted_owner(uid_t uid, bool writer)
{
	return !writer || uid == cqrs_euid() || uid == 0;
}

/* Writable by someone other than the owner: other users always count; a
 * group counts unless it is the running user's own. */
static bool writable_by_others(const struct stat *sb)
{
	if (sb->st_mode & S_IWOTH)
		return true;
	return (sb->st_mode & S_IWGRP) && sb->st_gid != getegid();
}

static int refuse_owner(const char *path, const struct stat *sb, const char *what, cqrs_error *err)
{
	char owner[256], me[256];
	cqrs_user_name(sb->st_uid, owner, sizeof owner);
	cqrs_user_name(cqrs_euid(), me, sizeof me);
	return cqrs_fail(err, CQRS_EXIT_NOPERM,
			 "%s: %s owned by %s, not by %s: a store belongs to the user who writes it",
			 path, what, owner, me);
}

int cqrs_trust_stat(const struct stat *sb, const char *path, bool writer, cqrs_error *err)
{
	if (!S_ISREG(sb->st_mode))
		return cqrs_fail(err, CQRS_EXIT_NOPERM, "%s: not a regular file", path);
	if (!trusted_owner(sb->st_uid, writer))
		return refuse_owner(path, sb, "file", err);
	if (writable_by_others(sb))
		return cqrs_fail(err, CQRS_EXIT_NOPERM,
				 "%s: writable by others (mode %04o): someone else could have "
				 "changed it",
				 path, (unsigned)(sb->st_mode & 07777));
	return 0;
}

int cqrs_trust_fd(int fd, const char *path, bool writer, cqrs_error *err)
{
	struct stat sb;
	if (fstat(fd, &sb) < 0)
		return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", path, strerror(errno));
	return cqrs_trust_stat(&sb, path, writer, err);
}

static int check_dir(int fd, const char *path, bool writer, cqrs_error *err)
{
	struct stat sb;
	if (fstat(fd, &sb) < 0)
		return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", path, strerror(errno));
	if (!trusted_owner(sb.st_uid, writer))
		return refuse_owner(path, &sb, "directory", err);
	if (writable_by_others(&sb) && !(sb.st_mode & S_ISVTX))
		return cqrs_fail(err, CQRS_EXIT_NOPERM,
				 "%s: directory writable by others without the sticky bit (mode "
				 "%04o): someone else could replace the store",
				 path, (unsigned)(sb.st_mode & 07777));
	return 0;
}

/* The directory of path and every one above it, from the root down. */
int cqrs_trust_dirs(const char *path, bool writer, cqrs_error *err)
{
	char dir[PATH_MAX], real[PATH_MAX];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash == NULL)
		snprintf(dir, sizeof dir, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	if (realpath(dir, real) == NULL)
		return 0; /* a missing directory is reported by the open */
	int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "/: %s", strerror(errno));
	int rc = check_dir(fd, "/", writer, err);
	for (char *p = real + 1; rc == 0 && *p != '\0';) {
		char *end = strchr(p, '/');
		if (end != NULL)
			*end = '\0';
		int next = openat(fd, p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(fd);
		fd = next;
		if (fd < 0)
			return cqrs_fail(err, CQRS_EXIT_NOPERM, "%s: %s", real, strerror(errno));
		rc = check_dir(fd, real, writer, err);
		if (end == NULL)
			break;
		*end = '/';
		p = end + 1;
	}
	close(fd);
	return rc;
}

int cqrs_open_nofollow(const char *path, int flags, cqrs_error *err)
{
	int fd = open(path, flags | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		/* a file to read that is not there is missing input, not a
		 * file that could not be made */
		int code = errno == EACCES || errno == ELOOP	   ? CQRS_EXIT_NOPERM
			   : errno == ENOENT && !(flags & O_CREAT) ? CQRS_EXIT_NOINPUT
								   : CQRS_EXIT_CANTCREAT;
		return cqrs_fail(err, code, "%s: %s", path, strerror(errno));
	}
	return fd;
}

int cqrs_open_trusted(const char *path, int flags, bool writer, cqrs_error *err)
{
	int fd = cqrs_open_nofollow(path, flags, err);
	if (fd < 0)
		return -1;
	if (cqrs_trust_fd(fd, path, writer, err) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

#define SECRET_FILE_MAX (1 << 20) /* a CA bundle is the largest there is */

int cqrs_read_secret_file(const char *path, bool secret, char **text, size_t *len, cqrs_error *err)
{
	*text = NULL;
	int fd = cqrs_open_nofollow(path, O_RDONLY, err);
	if (fd < 0)
		return -1;
	struct stat sb;
	int rc = 0;
	if (fstat(fd, &sb) < 0) {
		rc = cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", path, strerror(errno));
	} else if (cqrs_trust_stat(&sb, path, false, err) < 0) {
		rc = -1;
	} else if (sb.st_uid != cqrs_euid() && sb.st_uid != 0) {
		char owner[256], me[256];
		rc = cqrs_fail(err, CQRS_EXIT_NOPERM,
			       "%s: owned by %s, not by %s%s: someone else could have planted it",
			       path, cqrs_user_name(sb.st_uid, owner, sizeof owner),
			       cqrs_user_name(cqrs_euid(), me, sizeof me),
			       cqrs_euid() == 0 ? "" : " or root");
	} else if (secret && (sb.st_mode & S_IROTH)) {
		rc = cqrs_fail(err, CQRS_EXIT_NOPERM,
			       "%s: readable by others (mode %04o): a secret must not be "
			       "(chmod o-r)",
			       path, (unsigned)(sb.st_mode & 07777));
	} else if (sb.st_size > SECRET_FILE_MAX) {
		rc = cqrs_fail(err, CQRS_EXIT_CONFIG, "%s: larger than %d bytes", path,
			       SECRET_FILE_MAX);
	} else if ((*text = malloc((size_t)sb.st_size + 1)) == NULL) {
		rc = cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	} else {
		size_t got = 0;
		ssize_t n = 1;
		while (got < (size_t)sb.st_size &&
		       ((n = read(fd, *text + got, (size_t)sb.st_size - got)) > 0 ||
			(n < 0 && errno == EINTR)))
			got += n > 0 ? (size_t)n : 0;
		if (n < 0)
			rc = cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", path, strerror(errno));
		(*text)[got] = '\0';
		*len = got;
	}
	close(fd);
	if (rc < 0 && *text != NULL) {
		explicit_bzero(*text, (size_t)sb.st_size + 1);
		free(*text);
		*text = NULL;
	}
	return rc;
}

/* A file that belongs with a store but that SQLite's guard does not open
 * (a views file, its -wal and -shm): every directory above it, then the
 * file itself when it exists, held to the same rules. */
int cqrs_trust_path(const char *path, bool writer, cqrs_error *err)
{
	if (cqrs_trust_dirs(path, writer, err) < 0)
		return -1;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT || errno == EACCES)
			return 0; /* missing, or unreadable: the open says so */
		return cqrs_fail(err, errno == ELOOP ? CQRS_EXIT_NOPERM : CQRS_EXIT_IOERR, "%s: %s",
				 path,
				 errno == ELOOP ? "a symbolic link where a file belongs: refused"
						: strerror(errno));
	}
	int rc = cqrs_trust_fd(fd, path, writer, err);
	close(fd);
	return rc;
}
