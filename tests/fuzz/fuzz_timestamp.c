/*
 * Timestamps and the other small scalars of the envelope and the tools:
 * RFC 3339 normalisation (envelope.c), UUIDs and hashes in text, whole
 * numbers of options, and the saga's durations.  A normalised timestamp
 * normalises to itself; a parsed UUID or hash formats back to the input
 * when the input was in canonical (lowercase) form.
 */
#include "config.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cqrs.h"
#include "fuzz.h"
#include "banned.h"

static void timestamp(const char *s, size_t n)
{
	char out[CQRS_TIMESTAMP_LEN + 1];
	memset(out, 'x', sizeof out);
	if (cqrs_timestamp_normalize(s, n, out) < 0)
		return;
	FUZZ_ASSERT(strlen(out) == CQRS_TIMESTAMP_LEN, "normalised '%.*s' to '%s'", (int)n, s, out);
	char again[CQRS_TIMESTAMP_LEN + 1];
	FUZZ_ASSERT(cqrs_timestamp_normalize(out, CQRS_TIMESTAMP_LEN, again) == 0 &&
			    strcmp(out, again) == 0,
		    "'%s' (from '%.*s') does not normalise to itself", out, (int)n, s);
}

static void uuid(const char *s, size_t n)
{
	uint8_t id[CQRS_UUID_LEN];
	if (cqrs_uuid_parse(s, n, id) < 0)
		return;
	char text[37];
	cqrs_uuid_format(id, text);
	FUZZ_ASSERT(n == 36 && strncasecmp(text, s, 36) == 0, "uuid '%.*s' came back as '%s'",
		    (int)n, s, text);
}

static void hash(const char *s, size_t n)
{
	uint8_t h[CQRS_HASH_LEN];
	if (cqrs_hash_parse(s, n, h) < 0)
		return;
	char text[2 * CQRS_HASH_LEN + 1];
	cqrs_hash_format(h, text);
	FUZZ_ASSERT(n == 2 * CQRS_HASH_LEN && memcmp(text, s, n) == 0,
		    "hash '%.*s' came back as '%s'", (int)n, s, text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096)
		return 0;
	char *s = fuzz_string(data, size);
	timestamp(s, size);
	uuid(s, size);
	hash(s, size);
	int64_t v;
	if (cqrs_parse_int64(s, &v) == 0)
		FUZZ_ASSERT(v >= 0, "'%s' parsed as %lld", s, (long long)v);
	(void)cqrs_type_name_valid(s, size);
	(void)cqrs_saga_duration_parse(s);
	free(s);
	return 0;
}
