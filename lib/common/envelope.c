/*
 * The event envelope: the contract between all tools (cqrs(7)).
 * Parsing validates one NDJSON line; writing prints the complete envelope
 * with keys in the documented order, so that diff and sort work on dumps.
 */
#include "config.h"

#include <nettle/sha2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <sys/random.h>

#include "cqrs.h"
#include "banned.h"

static const char hexdigits[] = "0123456789abcdef";

int cqrs_uuid_parse(const char *t, size_t len, uint8_t out[CQRS_UUID_LEN])
{
	if (len != 36 || t[8] != '-' || t[13] != '-' || t[18] != '-' || t[23] != '-')
		return -1;
	size_t o = 0;
	for (size_t i = 0; i < 36;) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			i++;
			continue;
		}
		int hi = -1, lo = -1;
		char a = t[i], b = t[i + 1];
		if (a >= '0' && a <= '9')
			hi = a - '0';
		else if (a >= 'a' && a <= 'f')
			hi = a - 'a' + 10;
		else if (a >= 'A' && a <= 'F')
			hi = a - 'A' + 10;
		if (b >= '0' && b <= '9')
			lo = b - '0';
		else if (b >= 'a' && b <= 'f')
			lo = b - 'a' + 10;
		else if (b >= 'A' && b <= 'F')
			lo = b - 'A' + 10;
		if (hi < 0 || lo < 0)
			return -1;
		out[o++] = (uint8_t)(hi << 4 | lo);
		i += 2;
	}
	return 0;
}

void cqrs_uuid_format(const uint8_t id[CQRS_UUID_LEN], char out[37])
{
	size_t o = 0;
	for (size_t i = 0; i < CQRS_UUID_LEN; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hexdigits[id[i] >> 4];
		out[o++] = hexdigits[id[i] & 15];
	}
	out[o] = '\0';
}

/* Random bits come from getrandom(2) a page at a time: libuuid reseeds on
 * every id, a dozen system calls each, which a stream of commands feels. */
static void random_bytes(uint8_t *out, size_t n)
{
	static _Thread_local uint8_t pool[4096];
	static _Thread_local size_t left;
	while (n > 0) {
		if (left == 0) {
			size_t got = 0;
			while (got < sizeof pool) {
				ssize_t r = getrandom(pool + got, sizeof pool - got, 0);
				if (r < 0)
					abort(); /* only EINTR or ENOSYS, and the latter is no
						    system of ours */
				got += (size_t)r;
			}
			left = sizeof pool;
		}
		size_t k = n < left ? n : left;
		memcpy(out, pool + sizeof pool - left, k);
		memset(pool + sizeof pool - left, 0, k);
		left -= k;
		out += k;
		n -= k;
	}
}

void cqrs_uuid_generate(uint8_t out[CQRS_UUID_LEN])
{
	random_bytes(out, CQRS_UUID_LEN);
	struct timeval tv;
	gettimeofday(&tv, NULL);
	uint64_t ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
	for (int i = 0; i < 6; i++)
		out[i] = (uint8_t)(ms >> (40 - 8 * i));
	out[6] = (uint8_t)(0x70 | (out[6] & 0x0F)); /* version 7 */
	out[8] = (uint8_t)(0x80 | (out[8] & 0x3F)); /* RFC 4122 variant */
}

bool cqrs_type_name_valid(const char *s, size_t len)
{
	if (len == 0 || len > CQRS_MAX_TYPE_NAME)
		return false;
	char c = s[0];
	if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'))
		return false;
	for (size_t i = 1; i < len; i++) {
		c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == ':' || c == '-'))
			return false;
	}
	return true;
}

/* --- timestamps ---------------------------------------------------------- */

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm). */
int64_t cqrs_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int decimal(const char *s, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

int64_t cqrs_timestamp_us(const char *t)
{
	int64_t days = cqrs_days_from_civil(decimal(t, 4), (unsigned)decimal(t + 5, 2),
					    (unsigned)decimal(t + 8, 2));
	int64_t secs = days * 86400 + decimal(t + 11, 2) * 3600 + decimal(t + 14, 2) * 60 +
		       decimal(t + 17, 2);
	return secs * 1000000 + decimal(t + 20, 6);
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static void format_utc(int64_t secs, long usec, char out[CQRS_TIMESTAMP_LEN + 1])
{
	int64_t days = secs / 86400, rem = secs % 86400;
	if (rem < 0) {
		rem += 86400;
		days--;
	}
	int64_t y;
	unsigned m, d;
	civil_from_days(days, &y, &m, &d);
	/* fixed width: lexical order of stored timestamps is time order */
	unsigned fields[] = { (unsigned)y,
			      m,
			      d,
			      (unsigned)(rem / 3600),
			      (unsigned)(rem / 60 % 60),
			      (unsigned)(rem % 60),
			      (unsigned)usec };
	static const int width[] = { 4, 2, 2, 2, 2, 2, 6 };
	static const char sep[] = "--T::.Z";
	char *p = out;
	for (int i = 0; i < 7; i++) {
		for (int k = width[i] - 1; k >= 0; k--) {
			p[k] = (char)('0' + fields[i] % 10);
			fields[i] /= 10;
		}
		p += width[i];
		*p++ = sep[i];
	}
	*p = '\0';
}

void cqrs_timestamp_now(char out[CQRS_TIMESTAMP_LEN + 1])
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	format_utc(ts.tv_sec, ts.tv_nsec / 1000, out);
}

static int digits(const char *s, size_t n, int *out)
{
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

int cqrs_timestamp_normalize(const char *s, size_t len, char out[CQRS_TIMESTAMP_LEN + 1])
{
	int y, mo, d, h, mi, sec;
	if (len < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
	    s[13] != ':' || s[16] != ':')
		return -1;
	if (digits(s, 4, &y) || digits(s + 5, 2, &mo) || digits(s + 8, 2, &d) ||
	    digits(s + 11, 2, &h) || digits(s + 14, 2, &mi) || digits(s + 17, 2, &sec))
		return -1;
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap) ||
	    h > 23 || mi > 59 || sec > 59)
		return -1;
	size_t i = 19;
	long usec = 0;
	if (i < len && s[i] == '.') {
		i++;
		size_t nd = 0;
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			if (nd < 6)
				usec = usec * 10 + (s[i] - '0');
			else if (s[i] != '0')
				return -1; /* finer than a microsecond would be lost */
			nd++;
			i++;
		}
		if (nd == 0)
			return -1;
		for (; nd < 6; nd++)
			usec *= 10;
	}
	int offset = 0;
	if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
		i++;
	} else if (i + 6 == len && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
		int oh, om;
		if (digits(s + i + 1, 2, &oh) || digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
			return -1;
		offset = (oh * 60 + om) * 60 * (s[i] == '-' ? -1 : 1);
		i += 6;
	} else {
		return -1;
	}
	if (i != len)
		return -1;
	int64_t secs = cqrs_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 +
		       mi * 60 + sec - offset;
	if (secs < cqrs_days_from_civil(0, 1, 1) * 86400 ||
	    secs >= cqrs_days_from_civil(10000, 1, 1) * 86400)
		return -1;
	format_utc(secs, usec, out);
	return 0;
}

/* --- parsing ------------------------------------------------------------- */

static int parse_int(const char *v, size_t n, int64_t *out)
{
	if (n == 0 || n > 18)
		return -1;
	int64_t x = 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		x = x * 10 + (v[i] - '0');
	}
	if (n > 1 && v[0] == '0')
		return -1;
	*out = x;
	return 0;
}

int cqrs_hash_parse(const char *v, size_t n, uint8_t out[CQRS_HASH_LEN])
{
	if (n != CQRS_HASH_LEN * 2)
		return -1;
	for (size_t i = 0; i < CQRS_HASH_LEN; i++) {
		const char *a = strchr(hexdigits, v[2 * i]), *b = strchr(hexdigits, v[2 * i + 1]);
		if (a == NULL || b == NULL || v[2 * i] == '\0' || v[2 * i + 1] == '\0')
			return -1;
		out[i] = (uint8_t)((a - hexdigits) << 4 | (b - hexdigits));
	}
	return 0;
}

enum field {
	F_SEQUENCE,
	F_EVENT_ID,
	F_AGGREGATE_ID,
	F_AGGREGATE_TYPE,
	F_AGGREGATE_VERSION,
	F_EXPECTED_VERSION,
	F_EVENT_TYPE,
	F_EVENT_VERSION,
	F_DATA,
	F_METADATA,
	F_TIMESTAMP,
	F_HASH,
	F_COUNT
};

static const char *const field_names[F_COUNT] = {
	"sequence",	    "event_id",	  "aggregate_id",  "aggregate_type", "aggregate_version",
	"expected_version", "event_type", "event_version", "data",	     "metadata",
	"timestamp",	    "hash",
};

static int field_error(cqrs_error *err, const char *name, const char *what)
{
	return cqrs_fail(err, CQRS_EXIT_DATAERR, "field '%s' %s", name, what);
}

static bool is_string(const char *v, size_t n)
{
	return n >= 2 && v[0] == '"' && v[n - 1] == '"';
}

static int parse_member(cqrs_event *ev, enum field f, const char *v, size_t n, cqrs_error *err)
{
	const char *name = field_names[f];
	switch (f) {
	case F_SEQUENCE:
	case F_AGGREGATE_VERSION:
	case F_EXPECTED_VERSION:
	case F_EVENT_VERSION: {
		int64_t x;
		if (parse_int(v, n, &x) < 0)
			return field_error(err, name, "must be a non-negative integer");
		if (f == F_SEQUENCE)
			ev->sequence = x;
		else if (f == F_EXPECTED_VERSION)
			ev->expected_version = x;
		else if (x == 0)
			return field_error(err, name, "must be at least 1");
		else if (f == F_AGGREGATE_VERSION)
			ev->aggregate_version = x;
		else
			ev->event_version = x;
		return 0;
	}
	case F_EVENT_ID:
	case F_AGGREGATE_ID:
		if (!is_string(v, n))
			return field_error(err, name, "must be a string");
		if (cqrs_uuid_parse(v + 1, n - 2,
				    f == F_EVENT_ID ? ev->event_id : ev->aggregate_id) < 0)
			return cqrs_fail(err, CQRS_EXIT_DATAERR, "field '%s' is not a UUID: %.*s",
					 name, (int)(n > 64 ? 64 : n), v);
		if (f == F_EVENT_ID)
			ev->has_event_id = true;
		return 0;
	case F_AGGREGATE_TYPE:
	case F_EVENT_TYPE: {
		char *dst = f == F_EVENT_TYPE ? ev->event_type : ev->aggregate_type;
		if (!is_string(v, n))
			return field_error(err, name, "must be a string");
		if (!cqrs_type_name_valid(v + 1, n - 2))
			return cqrs_fail(
				err, CQRS_EXIT_DATAERR,
				"field '%s' is not a type name (a letter or '_', then up to %d "
				"letters, digits, '_', '.', ':' or '-'): %.*s",
				name, CQRS_MAX_TYPE_NAME - 1, (int)(n > 64 ? 64 : n), v);
		memcpy(dst, v + 1, n - 2);
		dst[n - 2] = '\0';
		return 0;
	}
	case F_DATA:
	case F_METADATA:
		if (v[0] != '{')
			return field_error(err, name, "must be an object");
		if (f == F_DATA) {
			ev->data = v;
			ev->data_len = n;
		} else {
			ev->metadata = v;
			ev->metadata_len = n;
		}
		return 0;
	case F_TIMESTAMP:
		if (!is_string(v, n) || cqrs_timestamp_normalize(v + 1, n - 2, ev->timestamp) < 0)
			return field_error(
				err, name,
				"must be an RFC 3339 time such as \"2026-01-16T14:00:00.123456Z\"");
		return 0;
	case F_HASH:
		if (!is_string(v, n) || cqrs_hash_parse(v + 1, n - 2, ev->hash) < 0)
			return field_error(err, name, "must be 64 lowercase hex digits");
		ev->has_hash = true;
		return 0;
	case F_COUNT: break;
	}
	return 0;
}

int cqrs_event_parse(cqrs_event *ev, char *line, size_t len, cqrs_error *err)
{
	memset(ev, 0, sizeof *ev);
	ev->expected_version = -1;
	ev->event_version = 1;
	ev->metadata = "{}";
	ev->metadata_len = 2;
	if (cqrs_json_compact(line, &len, err) < 0)
		return -1;
	if (line[0] != '{')
		return cqrs_fail(err, CQRS_EXIT_DATAERR, "an event must be a JSON object");
	unsigned seen = 0;
	size_t pos = 0;
	cqrs_json_member m;
	while (cqrs_json_next_member(line, len, &pos, &m) == 1) {
		enum field f = F_COUNT;
		for (int i = 0; i < F_COUNT; i++) {
			if (strlen(field_names[i]) == m.key_len &&
			    memcmp(field_names[i], m.key, m.key_len) == 0) {
				f = (enum field)i;
				break;
			}
		}
		if (f == F_COUNT)
			return cqrs_fail(err, CQRS_EXIT_DATAERR, "unknown field '%.*s'",
					 (int)(m.key_len > 64 ? 64 : m.key_len), m.key);
		if (parse_member(ev, f, m.value, m.value_len, err) < 0)
			return -1;
		seen |= 1u << f;
	}
	static const enum field required[] = { F_AGGREGATE_ID, F_AGGREGATE_TYPE, F_EVENT_TYPE,
					       F_DATA };
	for (size_t i = 0; i < sizeof required / sizeof *required; i++)
		if (!(seen & (1u << required[i])))
			return cqrs_fail(err, CQRS_EXIT_DATAERR, "missing field '%s'",
					 field_names[required[i]]);
	const char *corr;
	size_t corr_len;
	char corr_buf[CQRS_MAX_CORRELATION + 1];
	if (cqrs_json_get(ev->metadata, ev->metadata_len, "correlation_id", &corr, &corr_len) &&
	    cqrs_json_string(corr, corr_len, corr_buf, sizeof corr_buf) < 0)
		return cqrs_fail(
			err, CQRS_EXIT_DATAERR,
			"field 'metadata.correlation_id' must be a string of at most %d bytes",
			CQRS_MAX_CORRELATION);
	if (ev->aggregate_version > 0 && ev->expected_version >= 0 &&
	    ev->expected_version != ev->aggregate_version - 1)
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "fields 'expected_version' (%lld) and 'aggregate_version' (%lld) "
				 "disagree",
				 (long long)ev->expected_version, (long long)ev->aggregate_version);
	return 0;
}

bool cqrs_event_correlation(const cqrs_event *ev, char *buf, size_t cap)
{
	const char *v;
	size_t n;
	if (!cqrs_json_get(ev->metadata, ev->metadata_len, "correlation_id", &v, &n))
		return false;
	return cqrs_json_string(v, n, buf, cap) >= 0;
}

/* --- writing ------------------------------------------------------------- */

static char *put(char *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

#define PUTLIT(p, lit) put((p), (lit), sizeof(lit) - 1)

static char *put_int(char *p, int64_t v)
{
	char tmp[24];
	size_t n = 0;
	uint64_t u = v < 0 ? 0 : (uint64_t)v;
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	while (n)
		*p++ = tmp[--n];
	return p;
}

/* 64 hex digits at p, no NUL; returns the end */
static char *put_hash(char *p, const uint8_t h[CQRS_HASH_LEN])
{
	for (size_t i = 0; i < CQRS_HASH_LEN; i++) {
		*p++ = hexdigits[h[i] >> 4];
		*p++ = hexdigits[h[i] & 15];
	}
	return p;
}

void cqrs_hash_format(const uint8_t hash[CQRS_HASH_LEN], char out[2 * CQRS_HASH_LEN + 1])
{
	*put_hash(out, hash) = '\0';
}

static char *put_uuid(char *p, const uint8_t id[CQRS_UUID_LEN])
{
	char t[37];
	cqrs_uuid_format(id, t);
	return put(p, t, 36);
}

void cqrs_event_write(FILE *f, const cqrs_event *ev)
{
	/* Type names need no escaping (cqrs_type_name_valid); data and metadata
	 * are compact JSON already. */
	char head[640];
	char *p = head;
	p = PUTLIT(p, "{\"sequence\":");
	p = put_int(p, ev->sequence);
	p = PUTLIT(p, ",\"event_id\":\"");
	p = put_uuid(p, ev->event_id);
	p = PUTLIT(p, "\",\"aggregate_id\":\"");
	p = put_uuid(p, ev->aggregate_id);
	p = PUTLIT(p, "\",\"aggregate_type\":\"");
	p = put(p, ev->aggregate_type, strlen(ev->aggregate_type));
	p = PUTLIT(p, "\",\"aggregate_version\":");
	p = put_int(p, ev->aggregate_version);
	p = PUTLIT(p, ",\"event_type\":\"");
	p = put(p, ev->event_type, strlen(ev->event_type));
	p = PUTLIT(p, "\",\"event_version\":");
	p = put_int(p, ev->event_version);
	p = PUTLIT(p, ",\"data\":");
	fwrite_unlocked(head, 1, (size_t)(p - head), f);
	fwrite_unlocked(ev->data, 1, ev->data_len, f);
	fwrite_unlocked(",\"metadata\":", 1, 12, f);
	fwrite_unlocked(ev->metadata, 1, ev->metadata_len, f);
	p = head;
	p = PUTLIT(p, ",\"timestamp\":\"");
	p = put(p, ev->timestamp, CQRS_TIMESTAMP_LEN);
	p = PUTLIT(p, "\",\"hash\":\"");
	p = put_hash(p, ev->hash);
	p = PUTLIT(p, "\"}\n");
	fwrite_unlocked(head, 1, (size_t)(p - head), f);
}

/* --- the hash chain ------------------------------------------------------ */

void cqrs_event_hash(const cqrs_event *ev, const uint8_t prev[CQRS_HASH_LEN],
		     uint8_t out[CQRS_HASH_LEN])
{
	/* The hashed text is documented in cqrs(7) so that an auditor can
	 * recompute it with sha256sum: one field per line. */
	struct sha256_ctx ctx;
	char buf[640];
	char *p = put_hash(buf, prev);
	*p++ = '\n';
	p = put_uuid(p, ev->event_id);
	*p++ = '\n';
	p = put_uuid(p, ev->aggregate_id);
	*p++ = '\n';
	p = put(p, ev->aggregate_type, strlen(ev->aggregate_type));
	*p++ = '\n';
	p = put_int(p, ev->aggregate_version);
	*p++ = '\n';
	p = put(p, ev->event_type, strlen(ev->event_type));
	*p++ = '\n';
	p = put_int(p, ev->event_version);
	*p++ = '\n';
	p = put(p, ev->timestamp, CQRS_TIMESTAMP_LEN);
	*p++ = '\n';
	sha256_init(&ctx);
	sha256_update(&ctx, (size_t)(p - buf), (const uint8_t *)buf);
	sha256_update(&ctx, ev->data_len, (const uint8_t *)ev->data);
	sha256_update(&ctx, 1, (const uint8_t *)"\n");
	sha256_update(&ctx, ev->metadata_len, (const uint8_t *)ev->metadata);
	sha256_update(&ctx, 1, (const uint8_t *)"\n");
	sha256_digest(&ctx, CQRS_HASH_LEN, out);
}
