/*
 * The W3C Trace Context header `traceparent`
 * (https://www.w3.org/TR/trace-context/#traceparent-header):
 * VERSION-TRACEID-PARENTID-FLAGS in lowercase hex, 2-32-16-2 digits.  A
 * command given one keeps it in its events' metadata, and cqrs-trace(1)
 * uses its trace id, so that an order's trace joins the caller's.
 */
#include "cqrs.h"

#include <nettle/sha2.h>
#include <stdio.h>
#include <string.h>

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* n lowercase hex digits into n / 2 bytes; false on anything else */
static bool hex_bytes(const char *s, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n; i += 2) {
		int hi = hexval(s[i]), lo = hexval(s[i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

static bool all_zero(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i] != 0)
			return false;
	return true;
}

int cqrs_traceparent_parse(const char *s, size_t len, struct cqrs_traceparent *tp, cqrs_error *err)
{
	uint8_t version;
	memset(tp, 0, sizeof *tp);
	if (len < CQRS_TRACEPARENT_LEN || s[2] != '-' || s[35] != '-' || s[52] != '-' ||
	    !hex_bytes(s, 2, &version) || !hex_bytes(s + 3, 32, tp->trace_id) ||
	    !hex_bytes(s + 36, 16, tp->parent_id) || !hex_bytes(s + 53, 2, &tp->flags))
		return cqrs_fail(err, CQRS_EXIT_USAGE,
				 "traceparent must be 00-<32 hex digits>-<16 hex digits>-<2 hex "
				 "digits>, in lowercase: '%.*s'",
				 (int)(len > 80 ? 80 : len), s);
	/* version ff is forbidden; 00 is exactly this long, and a later
	 * version may only add fields after a '-' */
	if (version == 0xff || (version == 0 && len != CQRS_TRACEPARENT_LEN) ||
	    (len > CQRS_TRACEPARENT_LEN && s[CQRS_TRACEPARENT_LEN] != '-'))
		return cqrs_fail(err, CQRS_EXIT_USAGE,
				 "traceparent: not a valid version %.2s: '%.*s'", s,
				 (int)(len > 80 ? 80 : len), s);
	if (all_zero(tp->trace_id, sizeof tp->trace_id))
		return cqrs_fail(err, CQRS_EXIT_USAGE, "traceparent: the trace id is all zeros");
	if (all_zero(tp->parent_id, sizeof tp->parent_id))
		return cqrs_fail(err, CQRS_EXIT_USAGE, "traceparent: the parent id is all zeros");
	/* what is kept: version 00 and the fields it knows */
	memcpy(tp->text, "00", 2);
	memcpy(tp->text + 2, s + 2, CQRS_TRACEPARENT_LEN - 2);
	tp->text[CQRS_TRACEPARENT_LEN] = '\0';
	return 0;
}

/* --- the ids of an order's trace, as cqrs-trace(1) exports it ------------------------ */

void cqrs_trace_span_id(const char *key, uint8_t span[8])
{
	struct sha256_ctx ctx;
	uint8_t h[SHA256_DIGEST_SIZE];
	sha256_init(&ctx);
	sha256_update(&ctx, strlen(key), (const uint8_t *)key);
	sha256_digest(&ctx, sizeof h, h);
	memcpy(span, h, 8);
	span[7] |= span[0] == 0 ? 1 : 0; /* never all zeros (W3C) */
}

void cqrs_trace_id_of_correlation(const char *corr, uint8_t trace[16])
{
	struct sha256_ctx ctx;
	uint8_t h[SHA256_DIGEST_SIZE];
	static const char salt[] = "cqrs-trace correlation ";
	sha256_init(&ctx);
	sha256_update(&ctx, sizeof salt - 1, (const uint8_t *)salt);
	sha256_update(&ctx, strlen(corr), (const uint8_t *)corr);
	sha256_digest(&ctx, sizeof h, h);
	memcpy(trace, h, 16);
	trace[15] |= trace[0] == 0 ? 1 : 0;
}

void cqrs_traceparent_format(const uint8_t trace[16], const uint8_t span[8], uint8_t flags,
			     char out[CQRS_TRACEPARENT_LEN + 1])
{
	char *p = out + 3;
	memcpy(out, "00-", 3);
	for (int i = 0; i < 16; i++, p += 2)
		snprintf(p, 3, "%02x", trace[i]);
	*p++ = '-';
	for (int i = 0; i < 8; i++, p += 2)
		snprintf(p, 3, "%02x", span[i]);
	snprintf(p, 4, "-%02x", flags);
}
