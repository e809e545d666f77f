/*
 * The parts of libcqrs that the tools' tests reach only indirectly:
 * timestamps, UUIDs, type names, money, and the envelope's parse, write
 * and hash.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cqrs.h"
#include "unit.h"
#include "banned.h"

/* --- timestamps ------------------------------------------------------------ */

static void ts_ok(const char *in, const char *want)
{
	char out[CQRS_TIMESTAMP_LEN + 1] = "";
	int r = cqrs_timestamp_normalize(in, strlen(in), out);
	CHECK(r == 0 && strcmp(out, want) == 0, "%s -> %s, want %s", in, r == 0 ? out : "refused",
	      want);
}

static void ts_bad(const char *in)
{
	char out[CQRS_TIMESTAMP_LEN + 1];
	CHECK(cqrs_timestamp_normalize(in, strlen(in), out) < 0, "%s accepted as %s", in, out);
}

static void timestamps(void)
{
	ts_ok("2026-01-16T14:00:00Z", "2026-01-16T14:00:00.000000Z");
	ts_ok("2026-01-16T14:00:00.123456Z", "2026-01-16T14:00:00.123456Z");
	ts_ok("2026-01-16T14:00:00.1Z", "2026-01-16T14:00:00.100000Z");
	ts_ok("2026-01-16T14:00:00.000001Z", "2026-01-16T14:00:00.000001Z");
	ts_ok("2026-01-16T14:00:00.1234560Z", "2026-01-16T14:00:00.123456Z");
	ts_ok("2026-01-16t14:00:00z", "2026-01-16T14:00:00.000000Z");
	/* offsets */
	ts_ok("2026-01-16T15:00:00+01:00", "2026-01-16T14:00:00.000000Z");
	ts_ok("2026-01-16T15:30:00.5+01:30", "2026-01-16T14:00:00.500000Z");
	ts_ok("2026-01-16T08:30:00-05:30", "2026-01-16T14:00:00.000000Z");
	ts_ok("2026-01-16T14:00:00+00:00", "2026-01-16T14:00:00.000000Z");
	ts_ok("2026-01-16T14:00:00-00:00", "2026-01-16T14:00:00.000000Z");
	ts_ok("2026-01-01T00:30:00+01:00", "2025-12-31T23:30:00.000000Z");
	ts_ok("2026-12-31T23:30:00-01:00", "2027-01-01T00:30:00.000000Z");
	ts_ok("2024-03-01T00:00:00+00:01", "2024-02-29T23:59:00.000000Z");
	ts_ok("2023-03-01T00:00:00+00:01", "2023-02-28T23:59:00.000000Z");
	ts_ok("2026-01-16T00:00:00+23:59", "2026-01-15T00:01:00.000000Z");
	/* leap years */
	ts_ok("2024-02-29T12:00:00Z", "2024-02-29T12:00:00.000000Z");
	ts_ok("2000-02-29T12:00:00Z", "2000-02-29T12:00:00.000000Z");
	ts_bad("2023-02-29T12:00:00Z");
	ts_bad("1900-02-29T12:00:00Z");
	ts_bad("2100-02-29T12:00:00Z");
	/* the edges of the range */
	ts_ok("0000-01-01T00:00:00Z", "0000-01-01T00:00:00.000000Z");
	ts_ok("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z");
	ts_bad("0000-01-01T00:00:00+00:01");
	ts_bad("9999-12-31T23:59:59-00:01");
	/* invalid dates and times */
	ts_bad("2026-04-31T00:00:00Z");
	ts_bad("2026-13-01T00:00:00Z");
	ts_bad("2026-00-10T00:00:00Z");
	ts_bad("2026-01-00T00:00:00Z");
	ts_bad("2026-01-32T00:00:00Z");
	ts_bad("2026-01-16T24:00:00Z");
	ts_bad("2026-01-16T23:60:00Z");
	ts_bad("2026-01-16T23:59:60Z");
	/* not RFC 3339 */
	ts_bad("");
	ts_bad("2026-01-16");
	ts_bad("2026-01-16T14:00:00");
	ts_bad("2026-01-16 14:00:00Z");
	ts_bad("2026-1-16T14:00:00Z");
	ts_bad("26-01-16T14:00:00Z");
	ts_bad("2026-01-16T14:00Z");
	ts_bad("2026-01-16T14:00:00.Z");
	ts_bad("2026-01-16T14:00:00.1234567Z");
	ts_bad("2026-01-16T14:00:00,5Z");
	ts_bad("2026-01-16T14:00:00ZZ");
	ts_bad("2026-01-16T14:00:00Z ");
	ts_bad(" 2026-01-16T14:00:00Z");
	ts_bad("2026-01-16T14:00:00+01");
	ts_bad("2026-01-16T14:00:00+0100");
	ts_bad("2026-01-16T14:00:00+24:00");
	ts_bad("2026-01-16T14:00:00+01:60");
	ts_bad("2026-01-16T14:00:00+01:00Z");
	ts_bad("2026-01-16T14:00:00 +01:00");
	ts_bad("+2026-01-16T14:00:00Z");
	ts_bad("2026-01-1xT14:00:00Z");
	/* a length that is not the string's: only len bytes count */
	char out[CQRS_TIMESTAMP_LEN + 1];
	CHECK(cqrs_timestamp_normalize("2026-01-16T14:00:00Zjunk", 20, out) == 0 &&
		      strcmp(out, "2026-01-16T14:00:00.000000Z") == 0,
	      "bounded by len");

	/* now: the stored form, which normalises to itself, and moves forward */
	char a[CQRS_TIMESTAMP_LEN + 1], b[CQRS_TIMESTAMP_LEN + 1];
	cqrs_timestamp_now(a);
	cqrs_timestamp_now(b);
	CHECK(strlen(a) == CQRS_TIMESTAMP_LEN && a[10] == 'T' && a[19] == '.' && a[26] == 'Z',
	      "now is %s", a);
	CHECK(cqrs_timestamp_normalize(a, strlen(a), out) == 0 && strcmp(out, a) == 0,
	      "now %s normalises to %s", a, out);
	CHECK(strcmp(a, b) <= 0, "time went back: %s then %s", a, b);
	CHECK(strcmp(a, "2026-01-01") > 0, "the clock says %s", a);
}

/* --- UUIDs ------------------------------------------------------------------- */

static void uuids(void)
{
	static const char *const good[] = {
		"3f2b6c1e-8c1a-4a8e-9a51-2c9a4c1f7d10",
		"00000000-0000-0000-0000-000000000000",
		"ffffffff-ffff-ffff-ffff-ffffffffffff",
		"0190d3a0-0001-7000-8000-000000000001",
	};
	for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
		uint8_t id[CQRS_UUID_LEN];
		char text[37];
		CHECK(cqrs_uuid_parse(good[i], 36, id) == 0, "%s refused", good[i]);
		cqrs_uuid_format(id, text);
		CHECK(strcmp(text, good[i]) == 0, "%s came back as %s", good[i], text);
	}
	uint8_t id[CQRS_UUID_LEN];
	char text[37];
	CHECK(cqrs_uuid_parse("3F2B6C1E-8C1A-4A8E-9A51-2C9A4C1F7D10", 36, id) == 0, "upper case");
	cqrs_uuid_format(id, text);
	CHECK(strcmp(text, "3f2b6c1e-8c1a-4a8e-9a51-2c9a4c1f7d10") == 0, "printed lower: %s", text);
	CHECK(id[0] == 0x3f && id[15] == 0x10, "byte order");

	static const char *const bad[] = {
		"",
		"3f2b6c1e-8c1a-4a8e-9a51-2c9a4c1f7d1",
		"3f2b6c1e-8c1a-4a8e-9a51-2c9a4c1f7d100",
		"3f2b6c1e8c1a-4a8e-9a51-2c9a4c1f7d10-",
		"3f2b6c1e-8c1a-4a8e-9a512c9a4c1f7d10",
		"3f2b6c1e-8c1a-4a8e-9a51-2c9a4c1f7d1g",
		"3f2b6c1e 8c1a 4a8e 9a51 2c9a4c1f7d10",
		"{f2b6c1e-8c1a-4a8e-9a51-2c9a4c1f7d1}",
		"3f2b6c1e-8c1a-4a8e-9a51-2c9a4c1f7d1\xff",
		"3f2b6c1e08c1a04a8e09a5102c9a4c1f7d10",
		"3f2b6c1e-8c1a-4a8e-9a51-2c9a4c-f7d10",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		CHECK(cqrs_uuid_parse(bad[i], strlen(bad[i]), id) < 0, "'%s' accepted", bad[i]);

	/* generated: version 7, RFC 4122 variant, all different, time-ordered */
	enum { N = 2000 };
	static uint8_t ids[N][CQRS_UUID_LEN];
	for (int i = 0; i < N; i++) {
		cqrs_uuid_generate(ids[i]);
		cqrs_uuid_format(ids[i], text);
		uint8_t back[CQRS_UUID_LEN];
		CHECK(cqrs_uuid_parse(text, 36, back) == 0 &&
			      memcmp(back, ids[i], CQRS_UUID_LEN) == 0,
		      "round trip of %s", text);
		CHECK(text[14] == '7' && strchr("89ab", text[19]) != NULL, "not a v7 UUID: %s",
		      text);
		if (i > 0)
			CHECK(memcmp(ids[i - 1], ids[i], 6) <= 0, "time went back at %d", i);
	}
	int same = 0;
	for (int i = 0; i < N; i++)
		for (int j = i + 1; j < N; j++)
			same += memcmp(ids[i], ids[j], CQRS_UUID_LEN) == 0;
	CHECK(same == 0, "%d duplicate ids in %d", same, N);
}

/* hashes print as the envelope writes them: 64 lower-case hex digits */
static void hashes(void)
{
	uint8_t h[CQRS_HASH_LEN];
	for (size_t i = 0; i < CQRS_HASH_LEN; i++)
		h[i] = (uint8_t)(i * 8 + 7);
	char text[2 * CQRS_HASH_LEN + 1];
	cqrs_hash_format(h, text);
	CHECK(strcmp(text, "070f171f272f373f474f575f676f777f878f979fa7afb7bfc7cfd7dfe7eff7ff") == 0,
	      "%s", text);
	uint8_t back[CQRS_HASH_LEN];
	CHECK(cqrs_hash_parse(text, strlen(text), back) == 0 && memcmp(back, h, sizeof h) == 0,
	      "round trip");
	CHECK(cqrs_hash_parse(text, 63, back) < 0, "63 digits accepted");
	text[5] = 'F';
	CHECK(cqrs_hash_parse(text, strlen(text), back) < 0, "upper case accepted");
}

static void type_names(void)
{
	static const char *const good[] = { "Order", "_x", "a", "Order.v2", "ns:Order-Created",
					    "A1_b2" };
	static const char *const bad[] = { "",	    "1Order", "-a",  ".a", "Order Created",
					   "Ordér", "a/b",    "a\"b" };
	for (size_t i = 0; i < sizeof good / sizeof *good; i++)
		CHECK(cqrs_type_name_valid(good[i], strlen(good[i])), "'%s' refused", good[i]);
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		CHECK(!cqrs_type_name_valid(bad[i], strlen(bad[i])), "'%s' accepted", bad[i]);
	char longest[CQRS_MAX_TYPE_NAME + 2];
	memset(longest, 'a', sizeof longest);
	CHECK(cqrs_type_name_valid(longest, CQRS_MAX_TYPE_NAME), "128 characters refused");
	CHECK(!cqrs_type_name_valid(longest, CQRS_MAX_TYPE_NAME + 1), "129 characters accepted");
}

/* --- money -------------------------------------------------------------------- */

static void money_ok(const char *text, const char *cur, int64_t want)
{
	cqrs_error err = { 0 };
	int64_t minor = -12345;
	int r = cqrs_money_parse(text, strlen(text), cur, &minor, &err);
	CHECK(r == 0 && minor == want, "%s %s -> %lld (%s), want %lld", text, cur, (long long)minor,
	      err.msg, (long long)want);
}

static void money_bad(const char *text, const char *cur, const char *msg)
{
	cqrs_error err = { 0 };
	int64_t minor;
	int r = cqrs_money_parse(text, strlen(text), cur, &minor, &err);
	CHECK(r < 0 && err.code == CQRS_EXIT_DATAERR && strcmp(err.msg, msg) == 0,
	      "%s %s: want '%s', got %s", text, cur, msg, r < 0 ? err.msg : "accepted");
}

static void money_fmt(int64_t minor, const char *cur, const char *want)
{
	char buf[32];
	cqrs_money_format(minor, cur, buf, sizeof buf);
	CHECK(strcmp(buf, want) == 0, "%lld %s -> %s, want %s", (long long)minor, cur, buf, want);
}

static void money(void)
{
	money_ok("59.98", "USD", 5998);
	money_ok("29.99", "USD", 2999);
	money_ok("59.9", "USD", 5990);
	money_ok("59", "USD", 5900);
	money_ok("0.01", "EUR", 1);
	money_ok("0", "USD", 0);
	money_ok("-10.00", "USD", -1000);
	money_ok("10.00", "USD", 1000);
	money_ok("1500", "JPY", 1500);
	money_ok("0", "JPY", 0);
	money_ok("1.234", "KWD", 1234);
	money_ok("1.2", "KWD", 1200);
	money_ok("7", "BHD", 7000);
	money_ok("92233720368547.75", "USD", 9223372036854775);
	/* the classic: 0.1 + 0.2 in minor units is exactly 0.30 */
	cqrs_error err = { 0 };
	int64_t a, b;
	char buf[32];
	CHECK(cqrs_money_parse("0.1", 3, "USD", &a, &err) == 0 &&
		      cqrs_money_parse("0.2", 3, "USD", &b, &err) == 0,
	      "parse");
	cqrs_money_format(a + b, "USD", buf, sizeof buf);
	CHECK(strcmp(buf, "0.30") == 0, "0.1 + 0.2 = %s", buf);

	money_bad("59.989", "USD", "amount 59.989 has more decimals than USD allows (2)");
	money_bad("1500.5", "JPY", "amount 1500.5 has more decimals than JPY allows (0)");
	money_bad("1500.0", "JPY", "amount 1500.0 has more decimals than JPY allows (0)");
	money_bad("1.2345", "KWD", "amount 1.2345 has more decimals than KWD allows (3)");
	money_bad("", "USD", "not an amount: ");
	money_bad("1.", "USD", "not an amount: 1.");
	money_bad(".5", "USD", "not an amount: .5");
	money_bad("+1", "USD", "not an amount: +1");
	money_bad("-", "USD", "not an amount: -");
	money_bad("1e2", "USD", "not an amount: 1e2");
	money_bad("1,50", "USD", "not an amount: 1,50");
	money_bad("\"1.50\"", "USD", "not an amount: \"1.50\"");
	money_bad(" 1", "USD", "not an amount:  1");
	money_bad("99999999999999999999", "USD", "amount too large: 99999999999999999999");

	money_fmt(5998, "USD", "59.98");
	money_fmt(5, "USD", "0.05");
	money_fmt(-5, "USD", "-0.05");
	money_fmt(-1000, "USD", "-10.00");
	money_fmt(0, "USD", "0.00");
	money_fmt(1500, "JPY", "1500");
	money_fmt(-1500, "JPY", "-1500");
	money_fmt(1234, "KWD", "1.234");
	money_fmt(5, "KWD", "0.005");
	money_fmt(INT64_MIN, "USD", "-92233720368547758.08");
	money_fmt(INT64_MAX, "JPY", "9223372036854775807");

	/* what is formatted parses back to the same minor units */
	static const char *const currencies[] = { "USD", "JPY", "KWD", "EUR", "CLP", "OMR" };
	uint64_t x = 88172645463325252ULL;
	for (int i = 0; i < 3000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		const char *cur = currencies[x % 6];
		int64_t v = (int64_t)(x % 2000000000000ULL) - 1000000000000LL;
		int64_t back = 0;
		cqrs_money_format(v, cur, buf, sizeof buf);
		CHECK(cqrs_money_parse(buf, strlen(buf), cur, &back, &err) == 0 && back == v,
		      "%lld %s -> %s -> %lld", (long long)v, cur, buf, (long long)back);
	}

	CHECK(cqrs_currency_digits("USD") == 2 && cqrs_currency_digits("JPY") == 0 &&
		      cqrs_currency_digits("KWD") == 3 && cqrs_currency_digits("XYZ") == 2,
	      "minor-unit digits");
	CHECK(cqrs_currency_valid("USD") && !cqrs_currency_valid("usd") &&
		      !cqrs_currency_valid("US") && !cqrs_currency_valid("USDT") &&
		      !cqrs_currency_valid("U$D") && !cqrs_currency_valid(NULL),
	      "currency codes");
}

/* --- the envelope -------------------------------------------------------------- */

static char *written(const cqrs_event *ev)
{
	char *mem = NULL;
	size_t len = 0;
	FILE *f = cqrs_memstream(&mem, &len);
	cqrs_event_write(f, ev);
	fclose(f);
	return mem;
}

static void envelope(void)
{
	/* keys in any order, white space anywhere: the envelope comes out in
	 * the documented order with the payload's bytes as written */
	char line[] = " { \"metadata\" : { \"correlation_id\" : \"c\\u002d1\" } , \"data\" : "
		      "{ \"total\" : 59.98 , \"big\" : 1e400 } , \"event_type\" : \"OrderCreated\","
		      " \"aggregate_type\":\"Order\", \"aggregate_id\" : "
		      "\"7D0C2A9E-5B7F-4E0C-8F7E-1B2A3C4D5E6F\", \"event_version\":2,"
		      " \"timestamp\":\"2026-01-16T15:00:00+01:00\", \"event_id\":"
		      "\"3f2b6c1e-8c1a-4a8e-9a51-2c9a4c1f7d10\", \"expected_version\":0 }";
	cqrs_event ev;
	cqrs_error err = { 0 };
	CHECK(cqrs_event_parse(&ev, line, strlen(line), &err) == 0, "%s", err.msg);
	CHECK(ev.expected_version == 0 && ev.event_version == 2 && ev.has_event_id &&
		      ev.aggregate_version == 0 && !ev.has_hash,
	      "fields");
	char corr[16];
	CHECK(cqrs_event_correlation(&ev, corr, sizeof corr) && strcmp(corr, "c-1") == 0,
	      "correlation id decoded: %s", corr);

	ev.sequence = 42;
	ev.aggregate_version = 3;
	uint8_t prev[CQRS_HASH_LEN] = { 0 };
	cqrs_event_hash(&ev, prev, ev.hash);
	char *out = written(&ev);
	static const char want[] =
		"{\"sequence\":42,\"event_id\":\"3f2b6c1e-8c1a-4a8e-9a51-2c9a4c1f7d10\","
		"\"aggregate_id\":\"7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f\",\"aggregate_type\":"
		"\"Order\",\"aggregate_version\":3,\"event_type\":\"OrderCreated\","
		"\"event_version\":2,\"data\":{\"total\":59.98,\"big\":1e400},\"metadata\":"
		"{\"correlation_id\":\"c\\u002d1\"},\"timestamp\":\"2026-01-16T14:00:00.000000Z\","
		"\"hash\":\"";
	CHECK(strncmp(out, want, sizeof want - 1) == 0, "wrote %s", out);
	CHECK(strlen(out) == sizeof want - 1 + 64 + 3 &&
		      strcmp(out + strlen(out) - 3, "\"}\n") == 0,
	      "ends with the hash: %s", out);

	/* what is written parses back to the same event and the same hash */
	size_t n = strlen(out) - 1;
	char *copy = strdup(out);
	cqrs_event back;
	CHECK(cqrs_event_parse(&back, copy, n, &err) == 0, "%s", err.msg);
	CHECK(back.sequence == 42 && back.aggregate_version == 3 && back.has_hash &&
		      memcmp(back.hash, ev.hash, CQRS_HASH_LEN) == 0,
	      "round trip");
	char *again = written(&back);
	CHECK(strcmp(again, out) == 0, "written twice differs: %s", again);

	/* the hash covers every field and the previous hash */
	uint8_t h[CQRS_HASH_LEN];
	cqrs_event_hash(&back, prev, h);
	CHECK(memcmp(h, ev.hash, CQRS_HASH_LEN) == 0, "hash is deterministic");
	prev[31] = 1;
	cqrs_event_hash(&back, prev, h);
	CHECK(memcmp(h, ev.hash, CQRS_HASH_LEN) != 0, "hash ignores the previous hash");
	prev[31] = 0;
	back.event_version = 3;
	cqrs_event_hash(&back, prev, h);
	CHECK(memcmp(h, ev.hash, CQRS_HASH_LEN) != 0, "hash ignores event_version");
	back.event_version = 2;
	back.data_len--;
	cqrs_event_hash(&back, prev, h);
	CHECK(memcmp(h, ev.hash, CQRS_HASH_LEN) != 0, "hash ignores data");
	free(again);
	free(copy);
	free(out);

	/* defaults */
	char minimal[] = "{\"aggregate_id\":\"7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f\","
			 "\"aggregate_type\":\"Order\",\"event_type\":\"X\",\"data\":{}}";
	CHECK(cqrs_event_parse(&ev, minimal, strlen(minimal), &err) == 0, "%s", err.msg);
	CHECK(!ev.has_event_id && ev.expected_version == -1 && ev.event_version == 1 &&
		      ev.timestamp[0] == '\0' && ev.metadata_len == 2 &&
		      memcmp(ev.metadata, "{}", 2) == 0,
	      "defaults");
	CHECK(!cqrs_event_correlation(&ev, corr, sizeof corr), "no correlation id");

	/* errors say which field */
	static const struct {
		const char *line, *msg;
	} bad[] = {
		{ "[]", "an event must be a JSON object" },
		{ "{}", "missing field 'aggregate_id'" },
		{ "{\"aggregate_id\":\"7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f\",\"aggregate_type\":"
		  "\"Order\",\"event_type\":\"X\",\"data\":{},\"sequence\":-1}",
		  "field 'sequence' must be a non-negative integer" },
		{ "{\"aggregate_id\":\"7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f\",\"aggregate_type\":"
		  "\"Order\",\"event_type\":\"X\",\"data\":{},\"aggregate_version\":1e0}",
		  "field 'aggregate_version' must be a non-negative integer" },
		{ "{\"aggregate_id\":\"7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f\",\"aggregate_type\":"
		  "\"Order\",\"event_type\":\"X\",\"data\":{},\"aggregate_version\":01}",
		  "invalid JSON at column 129: expected ',' or '}' in object" },
		{ "{\"aggregate_id\":\"7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f\",\"aggregate_type\":"
		  "\"Order\",\"event_type\":\"X\",\"data\":{},\"event_version\":"
		  "1000000000000000000}",
		  "field 'event_version' must be a non-negative integer" },
		{ "{\"aggregate_id\":\"7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f\",\"aggregate_type\":"
		  "\"Order\",\"event_type\":\"X\",\"data\":{},\"hash\":"
		  "\"ABCDEF0000000000000000000000000000000000000000000000000000000000\"}",
		  "field 'hash' must be 64 lowercase hex digits" },
		{ "{\"aggregate_id\":\"7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f\",\"aggregate_type\":"
		  "\"Order\",\"event_type\":\"X\",\"data\":{},\"timestamp\":\"now\"}",
		  "field 'timestamp' must be an RFC 3339 time such as "
		  "\"2026-01-16T14:00:00.123456Z\"" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		char *l = strdup(bad[i].line);
		int r = cqrs_event_parse(&ev, l, strlen(l), &err);
		CHECK(r < 0 && err.code == CQRS_EXIT_DATAERR && strcmp(err.msg, bad[i].msg) == 0,
		      "%s: want '%s', got '%s'", bad[i].line, bad[i].msg, r < 0 ? err.msg : "ok");
		free(l);
	}
}

int main(void)
{
	timestamps();
	uuids();
	hashes();
	type_names();
	money();
	envelope();
	return unit_done();
}
