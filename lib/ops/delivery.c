/*
 * Output that knows what its reader has taken, for a consumer's position
 * (cqrs-read --checkpoint): an event counts as delivered only once its
 * whole line has left this process for good.
 *
 *  - a pipe: once the reader has read it from the pipe.  Bytes still in
 *    the pipe when the reader exits (| head) were never read; Linux says
 *    how many with FIONREAD, on either end of the pipe.
 *  - a regular file: once written and made durable with fdatasync(2).
 *  - anything else (a terminal, a socket, /dev/null): once write(2)
 *    accepted it.
 *
 * Lines are gathered in memory and written with write(2) directly, so
 * that a failed or short write tells exactly which lines got out.  Marks
 * tie a byte offset of the output to a position of the store: the end of
 * each event's line, and the end of a scan that passed over events the
 * filters left out.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cqrs.h"
#include "banned.h"

/* Written out once this much is gathered, and at every flush. */
#define DELIVERY_CHUNK (64 * 1024)
/* How often a pipe that the reader is still emptying is looked at. */
#define DELIVERY_POLL_MS 20

enum output_kind { OUT_PIPE, OUT_FILE, OUT_OTHER };

struct mark {
	int64_t end; /* offset just past the line (or scan) it stands for */
	int64_t sequence;
	uint8_t hash[CQRS_HASH_LEN];
};

struct cqrs_delivery {
	int fd;
	enum output_kind kind;
	FILE *mem; /* the lines not yet written */
	char *buf;
	size_t len;
	int64_t written; /* bytes written to fd so far */
	int64_t synced;	 /* a file: bytes made durable */
	struct mark *marks;
	size_t first, nmarks, cap;
	int64_t confirmed_seq; /* the last mark the reader has taken */
	uint8_t confirmed_hash[CQRS_HASH_LEN];
	bool gone; /* the reader went away */
};

cqrs_delivery *cqrs_delivery_new(int fd, cqrs_error *err)
{
	cqrs_delivery *d = calloc(1, sizeof *d);
	if (d == NULL) {
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		return NULL;
	}
	d->fd = fd;
	d->mem = cqrs_memstream(&d->buf, &d->len);
	if (d->mem == NULL) {
		free(d);
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		return NULL;
	}
	struct stat sb;
	d->kind = OUT_OTHER;
	if (fstat(fd, &sb) == 0)
		d->kind = S_ISFIFO(sb.st_mode)	? OUT_PIPE
			  : S_ISREG(sb.st_mode) ? OUT_FILE
						: OUT_OTHER;
	return d;
}

void cqrs_delivery_free(cqrs_delivery *d)
{
	if (d == NULL)
		return;
	fclose(d->mem);
	free(d->buf);
	free(d->marks);
	free(d);
}

static int add_mark(cqrs_delivery *d, int64_t sequence, const uint8_t hash[CQRS_HASH_LEN],
		    cqrs_error *err)
{
	/* an event cut short must never reach the reader (cqrs_memstream) */
	if (fflush(d->mem) != 0 || ferror(d->mem))
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	if (d->first > 0 && d->first == d->nmarks)
		d->first = d->nmarks = 0;
	if (d->nmarks == d->cap) {
		if (d->first > 0) {
			memmove(d->marks, d->marks + d->first,
				(d->nmarks - d->first) * sizeof *d->marks);
			d->nmarks -= d->first;
			d->first = 0;
		}
		if (d->nmarks == d->cap) {
			size_t cap = d->cap ? 2 * d->cap : 256;
			struct mark *m = realloc(d->marks, cap * sizeof *m);
			if (m == NULL)
				return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
			d->marks = m;
			d->cap = cap;
		}
	}
	struct mark *m = &d->marks[d->nmarks++];
	m->end = d->written + (int64_t)d->len;
	m->sequence = sequence;
	memcpy(m->hash, hash, CQRS_HASH_LEN);
	return 0;
}

int cqrs_delivery_event(cqrs_delivery *d, const cqrs_event *ev, cqrs_error *err)
{
	if (d->gone)
		return 1;
	cqrs_event_write(d->mem, ev);
	if (add_mark(d, ev->sequence, ev->hash, err) < 0)
		return -1;
	return d->len >= DELIVERY_CHUNK ? cqrs_delivery_flush(d, err) : 0;
}

int cqrs_delivery_mark(cqrs_delivery *d, int64_t sequence, const uint8_t hash[CQRS_HASH_LEN],
		       cqrs_error *err)
{
	return add_mark(d, sequence, hash, err);
}

int cqrs_delivery_flush(cqrs_delivery *d, cqrs_error *err)
{
	if (d->gone)
		return 1;
	if (fflush(d->mem) != 0 || ferror(d->mem))
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	size_t off = 0;
	while (off < d->len) {
		ssize_t n = write(d->fd, d->buf + off, d->len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd p = { .fd = d->fd, .events = POLLOUT };
			poll(&p, 1, -1);
			continue;
		}
		if (n < 0 && errno == EPIPE) {
			d->gone = true;
			return 1;
		}
		if (n < 0)
			return cqrs_fail(err, CQRS_EXIT_IOERR, "write error on standard output: %s",
					 strerror(errno));
		off += (size_t)n;
		d->written += n;
	}
	rewind(d->mem);
	return 0;
}

/* The offset up to which the reader has taken the output. */
static int64_t taken(cqrs_delivery *d, cqrs_error *err)
{
	if (d->kind == OUT_PIPE) {
		int unread = 0;
		if (ioctl(d->fd, FIONREAD, &unread) == 0 && unread >= 0)
			return d->written - unread;
		return d->written;
	}
	if (d->kind == OUT_FILE && d->synced < d->written) {
		if (fdatasync(d->fd) < 0 && errno != EINVAL)
			return cqrs_fail(err, CQRS_EXIT_IOERR, "standard output: fdatasync: %s",
					 strerror(errno));
		d->synced = d->written;
	}
	return d->written;
}

int cqrs_delivery_confirmed(cqrs_delivery *d, int64_t *sequence, uint8_t hash[CQRS_HASH_LEN],
			    cqrs_error *err)
{
	int64_t upto = taken(d, err);
	if (upto < 0)
		return -1;
	bool moved = false;
	while (d->first < d->nmarks && d->marks[d->first].end <= upto) {
		const struct mark *m = &d->marks[d->first++];
		d->confirmed_seq = m->sequence;
		memcpy(d->confirmed_hash, m->hash, CQRS_HASH_LEN);
		moved = true;
	}
	*sequence = d->confirmed_seq;
	memcpy(hash, d->confirmed_hash, CQRS_HASH_LEN);
	return moved;
}

bool cqrs_delivery_pending(cqrs_delivery *d)
{
	return !d->gone && d->first < d->nmarks;
}

bool cqrs_delivery_gone(const cqrs_delivery *d)
{
	return d->gone;
}

int cqrs_delivery_drain(cqrs_delivery *d)
{
	if (d->kind != OUT_PIPE)
		return 0;
	for (;;) {
		int unread = 0;
		if (ioctl(d->fd, FIONREAD, &unread) < 0 || unread <= 0)
			return 0;
		/* no events asked: only the reader's going away wakes it */
		struct pollfd p = { .fd = d->fd, .events = 0 };
		int r = poll(&p, 1, DELIVERY_POLL_MS);
		if (r < 0 && errno != EINTR)
			return 0;
		if (r > 0 && (p.revents & (POLLERR | POLLHUP))) {
			d->gone = true;
			return 1;
		}
	}
}
