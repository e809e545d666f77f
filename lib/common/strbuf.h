/*
 * A growing text buffer, for the lib files that write JSON and SQL by hand
 * (the domain, the sagas).  Internal to libcqrs: the tools never see it.
 */
#ifndef CQRS_STRBUF_H
#define CQRS_STRBUF_H

#include "cqrs.h"

/* On out of memory the buffer stops growing and sets oom, so that a writer
 * can append freely and check once at the end.  p is NUL-terminated once
 * anything has been appended. */
struct cqrs_strbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

/* Room for more bytes and the NUL, or false (and oom) */
bool cqrs_strbuf_grow(struct cqrs_strbuf *b, size_t more);
/* Empties the buffer and clears oom, keeping its memory */
void cqrs_strbuf_reset(struct cqrs_strbuf *b);
void cqrs_strbuf_free(struct cqrs_strbuf *b);
void cqrs_strbuf_put(struct cqrs_strbuf *b, const char *s, size_t n);
void cqrs_strbuf_puts(struct cqrs_strbuf *b, const char *s);
void cqrs_strbuf_putc(struct cqrs_strbuf *b, char c);
void cqrs_strbuf_printf(struct cqrs_strbuf *b, const char *fmt, ...) CQRS_PRINTF(2, 3);
/* s as a JSON string, with its quotes */
void cqrs_strbuf_json_string(struct cqrs_strbuf *b, const char *s, size_t n);
/* Length of a valid UTF-8 sequence at p (n bytes available), or 0 (json.c;
 * the logs replace what is not valid UTF-8) */
size_t cqrs_utf8_len(const unsigned char *p, size_t n);
/* NUL-terminated contents ("" when nothing was ever appended) */
const char *cqrs_strbuf_str(const struct cqrs_strbuf *b);

#endif
