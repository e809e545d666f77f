/*
 * The store's witness: STORE.witness, a file beside the store that says
 * how far the store went, so that a store rolled back behind it (a
 * damaged write-ahead log that SQLite drops without a word, a restored
 * backup) is noticed before anything is written on top of it.
 *
 * One line of JSON, {"sequence":N,"hash":"..."}, the last event of the
 * last synced commit.  It is rewritten in place after each commit that
 * appended events, under an flock of the file.  Only forward: when another
 * writer already recorded a later event, it is left alone.  It may lag the
 * store, never lead it, since it is written after the commit is durable.
 *
 * Hence no flush of its own per commit: a power cut can only leave it at
 * an earlier commit (or, on a file system that exposes unwritten blocks,
 * as NUL bytes, read as no witness), which is a lag, and a second flush
 * per commit cost a third of a commit-per-saga run and half a millisecond
 * per cqrs-command process.  Writeback is started at once where Linux
 * offers sync_file_range(2), so the lag after a power cut is short; a new
 * witness and a --reset-witness are flushed, since those are rare and a
 * person is waiting on the reset.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cqrs.h"
#include "store/store_impl.h"
#include "banned.h"

#define WITNESS_MAX 256

struct witness {
	int64_t sequence;
	uint8_t hash[CQRS_HASH_LEN];
};

static int parse(const char *path, char *buf, size_t n, struct witness *w, cqrs_error *err)
{
	const char *v;
	size_t vn;
	char hex[2 * CQRS_HASH_LEN + 1];
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\0'))
		n--;
	buf[n] = '\0';
	cqrs_error why = { 0 };
	if (cqrs_json_compact(buf, &n, &why) < 0) {
		if (why.code == CQRS_EXIT_OSERR) { /* out of memory: not a bad file */
			*err = why;
			return -1;
		}
		goto bad;
	}
	if (!cqrs_json_get(buf, n, "sequence", &v, &vn) || vn > 18 || vn == 0)
		goto bad;
	char num[20];
	memcpy(num, v, vn);
	num[vn] = '\0';
	if (cqrs_parse_int64(num, &w->sequence) < 0 || !cqrs_json_get(buf, n, "hash", &v, &vn) ||
	    cqrs_json_string(v, vn, hex, sizeof hex) != 2 * CQRS_HASH_LEN ||
	    cqrs_hash_parse(hex, 2 * CQRS_HASH_LEN, w->hash) < 0)
		goto bad;
	return 0;
bad:
	return cqrs_fail(err, CQRS_EXIT_DATAERR,
			 "%s: not a witness file (expected {\"sequence\":N,\"hash\":\"...\"})",
			 path);
}

/* Reads the witness on fd: 1 with *w, 0 when the file is empty. */
static int read_witness(int fd, const char *path, struct witness *w, cqrs_error *err)
{
	char buf[WITNESS_MAX + 1];
	ssize_t n = pread(fd, buf, WITNESS_MAX, 0);
	if (n < 0)
		return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", path, strerror(errno));
	size_t used = (size_t)n;
	while (used > 0 && buf[used - 1] == '\0')
		used--;
	if (used == 0)
		return 0; /* empty, or blocks a power cut left unwritten */
	return parse(path, buf, (size_t)n, w, err) < 0 ? -1 : 1;
}

/* -2 when there is none, or when a reader may not read it (it is the
 * owner's file, and a monitoring user may read the store without it). */
static int open_witness(const char *path, bool create, bool writer, cqrs_error *err)
{
	int fd = open(path, (create ? O_RDWR | O_CREAT : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (!create && (errno == ENOENT || (errno == EACCES && !writer)))
			return -2;
		return cqrs_fail(err, errno == EACCES ? CQRS_EXIT_NOPERM : CQRS_EXIT_IOERR,
				 "%s: %s", path, strerror(errno));
	}
	if (cqrs_trust_fd(fd, path, writer, err) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Starts writing the witness out without waiting for it (see above). */
static int start_writeback(int fd, int n)
{
#ifdef HAVE_SYNC_FILE_RANGE
	if (sync_file_range(fd, 0, n, SYNC_FILE_RANGE_WRITE) < 0 && errno != ENOSYS &&
	    errno != EINVAL)
		return -1;
#else
	(void)fd;
	(void)n;
#endif
	return 0;
}

int cqrs_store_hash_at(cqrs_store *st, int64_t seq, uint8_t hash[CQRS_HASH_LEN], cqrs_error *err)
{
	cqrs_filter f = { .after = seq - 1, .to = seq, .limit = 1 };
	cqrs_cursor *c = cqrs_store_read(st, &f, err);
	if (c == NULL)
		return -1;
	cqrs_event ev;
	int r = cqrs_cursor_next(c, &ev, err);
	if (r == 1)
		memcpy(hash, ev.hash, CQRS_HASH_LEN);
	cqrs_cursor_close(c);
	return r;
}

int cqrs_store_expect(cqrs_store *st, const char *path, int64_t expect_seq,
		      const uint8_t expect_hash[CQRS_HASH_LEN], const char *what, cqrs_error *err)
{
	int64_t head;
	uint8_t h[CQRS_HASH_LEN];
	if (expect_seq <= 0)
		return 0;
	if (cqrs_store_head(st, &head, h, err) < 0)
		return -1;
	int r = head >= expect_seq && expect_hash != NULL
			? cqrs_store_hash_at(st, expect_seq, h, err)
			: head >= expect_seq;
	if (r < 0)
		return -1;
	char hex[2 * CQRS_HASH_LEN + 1], said[2 * CQRS_HASH_LEN + 16] = "";
	if (expect_hash != NULL) {
		cqrs_hash_format(expect_hash, hex);
		snprintf(said, sizeof said, " (hash %s)", hex);
	}
	if (r == 0)
		return cqrs_fail(err, CQRS_EXIT_BEHIND,
				 "%s: the store is behind %s: it ends at sequence %lld, before "
				 "sequence %lld%s; it was rolled back or damaged",
				 path, what, (long long)head, (long long)expect_seq, said);
	if (expect_hash != NULL && memcmp(h, expect_hash, CQRS_HASH_LEN) != 0)
		return cqrs_fail(
			err, CQRS_EXIT_BEHIND,
			"%s: the store is behind %s: event %lld is not the one recorded%s; "
			"it was rolled back and written again, or replaced",
			path, what, (long long)expect_seq, said);
	return 0;
}

/* On opening for writing (and in --verify): the store must hold the event
 * the witness names.  A missing witness is no witness: 0. */
int cqrs_witness_check(cqrs_store *st, const char *store_path, const char *wpath, bool writer,
		       cqrs_error *err)
{
	int fd = open_witness(wpath, false, writer, err);
	if (fd == -2)
		return 0;
	if (fd < 0)
		return -1;
	struct witness w;
	int r = read_witness(fd, wpath, &w, err);
	close(fd);
	if (r <= 0)
		return r;
	char what[4200];
	snprintf(what, sizeof what, "its witness %s", wpath);
	if (cqrs_store_expect(st, store_path, w.sequence, w.hash, what, err) < 0) {
		if (err != NULL && err->code == CQRS_EXIT_BEHIND) {
			size_t n = strlen(err->msg);
			snprintf(err->msg + n, sizeof err->msg - n,
				 "; nothing was written (after a deliberate restore: "
				 "cqrs-append --reset-witness)");
		}
		return -1;
	}
	return 0;
}

/* After a synced commit, or unconditionally (force) for --reset-witness. */
int cqrs_witness_update(const char *wpath, int64_t seq, const uint8_t hash[CQRS_HASH_LEN],
			bool force, cqrs_error *err)
{
	int fd = open_witness(wpath, true, true, err);
	if (fd < 0)
		return -1;
	int rc = -1;
	if (flock(fd, LOCK_EX) < 0) {
		cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", wpath, strerror(errno));
		goto out;
	}
	struct witness old;
	struct stat sb;
	bool flush = force || (fstat(fd, &sb) == 0 && sb.st_size == 0);
	int r = force ? 0 : read_witness(fd, wpath, &old, NULL);
	if (r == 1 && old.sequence > seq) {
		rc = 0; /* another writer got further */
		goto out;
	}
	char hex[2 * CQRS_HASH_LEN + 1], line[WITNESS_MAX];
	cqrs_hash_format(hash, hex);
	int n = snprintf(line, sizeof line, "{\"sequence\":%lld,\"hash\":\"%s\"}\n", (long long)seq,
			 hex);
	if (pwrite(fd, line, (size_t)n, 0) != n || ftruncate(fd, n) < 0 ||
	    (flush ? fdatasync(fd) : start_writeback(fd, n)) < 0) {
		cqrs_fail(err, CQRS_EXIT_IOERR, "%s: cannot write the witness: %s", wpath,
			  strerror(errno));
		goto out;
	}
	rc = 0;
out:
	close(fd);
	return rc;
}
