/*
 * JSON for the command side: event data, snapshots and result lines are
 * written by hand so that an amount is the decimal text of its minor units
 * (59.98 stays 59.98), and read back from compact JSON with the raw-value
 * accessors of json.c, never through a double.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "domain/domain.h"
#include "banned.h"

void jb_key(struct cqrs_strbuf *b, const char *key)
{
	if (b->len > 0 && b->p[b->len - 1] != '{' && b->p[b->len - 1] != '[')
		cqrs_strbuf_putc(b, ',');
	cqrs_strbuf_putc(b, '"');
	cqrs_strbuf_puts(b, key);
	cqrs_strbuf_put(b, "\":", 2);
}

void jb_str(struct cqrs_strbuf *b, const char *s)
{
	cqrs_strbuf_json_string(b, s, strlen(s));
}

void jb_int(struct cqrs_strbuf *b, int64_t v)
{
	char t[24];
	int n = snprintf(t, sizeof t, "%lld", (long long)v);
	cqrs_strbuf_put(b, t, (size_t)n);
}

void jb_uuid(struct cqrs_strbuf *b, const uint8_t id[CQRS_UUID_LEN])
{
	char t[37];
	cqrs_uuid_format(id, t);
	cqrs_strbuf_putc(b, '"');
	cqrs_strbuf_put(b, t, 36);
	cqrs_strbuf_putc(b, '"');
}

void jb_money(struct cqrs_strbuf *b, int64_t minor, const char *currency)
{
	char t[40];
	cqrs_money_format(minor, currency, t, sizeof t);
	cqrs_strbuf_puts(b, t);
}

void jb_bool(struct cqrs_strbuf *b, bool v)
{
	cqrs_strbuf_puts(b, v ? "true" : "false");
}

void jb_hex(struct cqrs_strbuf *b, const uint8_t *bytes, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	cqrs_strbuf_putc(b, '"');
	for (size_t i = 0; i < n; i++) {
		cqrs_strbuf_putc(b, hex[bytes[i] >> 4]);
		cqrs_strbuf_putc(b, hex[bytes[i] & 15]);
	}
	cqrs_strbuf_putc(b, '"');
}

/* --- reading ------------------------------------------------------------- */

int jv_string(const char *obj, size_t len, const char *key, char *buf, size_t cap)
{
	const char *v;
	size_t n;
	if (!cqrs_json_get(obj, len, key, &v, &n))
		return -1;
	long r = cqrs_json_string(v, n, buf, cap);
	return r < 0 || strlen(buf) != (size_t)r ? -1 : 0;
}

int parse_count(const char *t, size_t n, int64_t *out)
{
	if (n == 0 || n > 18 || (n > 1 && t[0] == '0'))
		return -1;
	int64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (t[i] < '0' || t[i] > '9')
			return -1;
		v = v * 10 + (t[i] - '0');
	}
	if (v <= 0 || v > DOM_MAX_COUNT)
		return -1;
	*out = v;
	return 0;
}

/* A non-negative JSON integer of any size we keep (stock levels). */
static int parse_level(const char *t, size_t n, int64_t *out)
{
	if (n == 0 || n > 18 || (n > 1 && t[0] == '0'))
		return -1;
	int64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (t[i] < '0' || t[i] > '9')
			return -1;
		v = v * 10 + (t[i] - '0');
	}
	*out = v;
	return 0;
}

int jv_count(const char *obj, size_t len, const char *key, int64_t *out)
{
	const char *v;
	size_t n;
	if (!cqrs_json_get(obj, len, key, &v, &n))
		return -1;
	return parse_level(v, n, out);
}

int jv_money(const char *obj, size_t len, const char *key, const char *currency, int64_t *out)
{
	const char *v;
	size_t n;
	if (!cqrs_json_get(obj, len, key, &v, &n))
		return -1;
	if (cqrs_money_parse(v, n, currency, out, NULL) < 0 || *out < 0 || *out > DOM_MAX_AMOUNT)
		return -1;
	return 0;
}

int jv_bool(const char *obj, size_t len, const char *key, bool *out)
{
	const char *v;
	size_t n;
	if (!cqrs_json_get(obj, len, key, &v, &n))
		return -1;
	if (n == 4 && memcmp(v, "true", 4) == 0)
		*out = true;
	else if (n == 5 && memcmp(v, "false", 5) == 0)
		*out = false;
	else
		return -1;
	return 0;
}

int jv_uuid(const char *obj, size_t len, const char *key, uint8_t out[CQRS_UUID_LEN])
{
	const char *v;
	size_t n;
	if (!cqrs_json_get(obj, len, key, &v, &n))
		return -1;
	if (n != 38 || v[0] != '"')
		return -1;
	return cqrs_uuid_parse(v + 1, 36, out);
}
