/*
 * The growing text buffer of strbuf.h.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"
#include "banned.h"

bool cqrs_strbuf_grow(struct cqrs_strbuf *b, size_t more)
{
	if (b->oom)
		return false;
	if (b->len + more + 1 <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + more + 1)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (p == NULL) {
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

void cqrs_strbuf_reset(struct cqrs_strbuf *b)
{
	b->len = 0;
	b->oom = false;
	if (b->p != NULL)
		b->p[0] = '\0';
}

void cqrs_strbuf_free(struct cqrs_strbuf *b)
{
	free(b->p);
	*b = (struct cqrs_strbuf){ 0 };
}

void cqrs_strbuf_put(struct cqrs_strbuf *b, const char *s, size_t n)
{
	if (!cqrs_strbuf_grow(b, n))
		return;
	if (n > 0)
		memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void cqrs_strbuf_puts(struct cqrs_strbuf *b, const char *s)
{
	cqrs_strbuf_put(b, s, strlen(s));
}

void cqrs_strbuf_putc(struct cqrs_strbuf *b, char c)
{
	cqrs_strbuf_put(b, &c, 1);
}

void cqrs_strbuf_printf(struct cqrs_strbuf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof tmp) {
		cqrs_strbuf_put(b, tmp, (size_t)n);
		return;
	}
	if (!cqrs_strbuf_grow(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void cqrs_strbuf_json_string(struct cqrs_strbuf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	/* the worst case at once: every byte a \u00XX, and the quotes */
	if (!cqrs_strbuf_grow(b, n * 6 + 2))
		return;
	char *o = b->p + b->len;
	*o++ = '"';
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			*o++ = '\\';
			*o++ = (char)c;
		} else if (c < 0x20) {
			*o++ = '\\';
			switch (c) {
			case '\n': *o++ = 'n'; break;
			case '\r': *o++ = 'r'; break;
			case '\t': *o++ = 't'; break;
			default:
				*o++ = 'u';
				*o++ = '0';
				*o++ = '0';
				*o++ = hex[c >> 4];
				*o++ = hex[c & 15];
			}
		} else {
			*o++ = (char)c;
		}
	}
	*o++ = '"';
	b->len = (size_t)(o - b->p);
	b->p[b->len] = '\0';
}

const char *cqrs_strbuf_str(const struct cqrs_strbuf *b)
{
	return b->p != NULL ? b->p : "";
}

/* --- cqrs_memstream (cqrs.h) --------------------------------------------- */

struct memstream {
	char **buf;
	size_t *len;
	size_t cap, pos, end; /* the buffer's size, the position, the bytes written */
	bool failed;	      /* a write was lost: fclose says so */
	struct memstream *prev, *next;
};

/* The streams open now, reachable from here as glibc's own FILEs are from
 * its list: a tool that exits with one open (cqrs_die while it builds a
 * command) leaks nothing that LeakSanitizer or valgrind would report. */
static struct memstream *open_streams;
static pthread_mutex_t open_streams_lock = PTHREAD_MUTEX_INITIALIZER;

static ssize_t memstream_write(void *cookie, const char *data, size_t n)
{
	struct memstream *m = cookie;
	if (m->pos + n + 1 > m->cap) {
		size_t cap = m->cap;
		while (cap < m->pos + n + 1)
			cap *= 2;
		char *p = realloc(*m->buf, cap);
		if (p == NULL) {
			m->failed = true;
			errno = ENOMEM;
			return -1; /* stdio sets the stream's error flag */
		}
		*m->buf = p;
		m->cap = cap;
	}
	memcpy(*m->buf + m->pos, data, n);
	m->pos += n;
	if (m->pos > m->end) {
		m->end = m->pos;
		(*m->buf)[m->end] = '\0';
	}
	*m->len = m->pos;
	return (ssize_t)n;
}

static int memstream_seek(void *cookie, off64_t *offset, int whence)
{
	struct memstream *m = cookie;
	off64_t base = whence == SEEK_SET   ? 0
		       : whence == SEEK_CUR ? (off64_t)m->pos
					    : (off64_t)m->end;
	if (*offset < -base || base + *offset > (off64_t)m->end) {
		errno = EINVAL;
		return -1;
	}
	m->pos = (size_t)(base + *offset);
	*offset = (off64_t)m->pos;
	*m->len = m->pos;
	return 0;
}

static int memstream_close(void *cookie)
{
	struct memstream *m = cookie;
	bool failed = m->failed;
	pthread_mutex_lock(&open_streams_lock);
	if (m->prev != NULL)
		m->prev->next = m->next;
	else
		open_streams = m->next;
	if (m->next != NULL)
		m->next->prev = m->prev;
	pthread_mutex_unlock(&open_streams_lock);
	free(m);
	return failed ? -1 : 0;
}

FILE *cqrs_memstream(char **buf, size_t *len)
{
	struct memstream *m = malloc(sizeof *m);
	char *p = malloc(256);
	FILE *f = NULL;
	if (m != NULL && p != NULL) {
		p[0] = '\0';
		*m = (struct memstream){ buf, len, 256, 0, 0, false, NULL, NULL };
		*buf = p;
		*len = 0;
		f = fopencookie(m, "w",
				(cookie_io_functions_t){ .write = memstream_write,
							 .seek = memstream_seek,
							 .close = memstream_close });
	}
	if (f == NULL) {
		free(m);
		free(p);
		*buf = NULL;
		return NULL;
	}
	pthread_mutex_lock(&open_streams_lock);
	m->next = open_streams;
	if (open_streams != NULL)
		open_streams->prev = m;
	open_streams = m;
	pthread_mutex_unlock(&open_streams_lock);
	return f;
}
