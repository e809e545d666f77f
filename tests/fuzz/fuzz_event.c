/*
 * The event line: NDJSON input split into lines as cqrs-append reads it
 * (fuzz_lines(), which fuzz_ndjson.c holds to ndjson.c), each line through
 * the envelope parse (envelope.c, json.c) and the payload schema check at
 * the store's door (event_schema.c).  An event that
 * carries every store-assigned field must come back the same through
 * cqrs_event_write and a second parse.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cqrs.h"
#include "fuzz.h"
#include "banned.h"

static void round_trip(const cqrs_event *ev)
{
	char *out = NULL;
	size_t n = 0;
	FILE *f = cqrs_memstream(&out, &n);
	FUZZ_ASSERT(f != NULL, "cqrs_memstream");
	cqrs_event_write(f, ev);
	FUZZ_ASSERT(fclose(f) == 0, "fclose");
	FUZZ_ASSERT(n > 0 && out[n - 1] == '\n', "no newline at the end of a written event");
	cqrs_event back;
	cqrs_error err = { 0 };
	FUZZ_ASSERT(cqrs_event_parse(&back, out, n - 1, &err) == 0,
		    "a written event does not parse: %s", err.msg);
	FUZZ_ASSERT(back.sequence == ev->sequence &&
			    back.aggregate_version == ev->aggregate_version &&
			    back.event_version == ev->event_version &&
			    memcmp(back.event_id, ev->event_id, CQRS_UUID_LEN) == 0 &&
			    memcmp(back.aggregate_id, ev->aggregate_id, CQRS_UUID_LEN) == 0 &&
			    memcmp(back.hash, ev->hash, CQRS_HASH_LEN) == 0 &&
			    strcmp(back.aggregate_type, ev->aggregate_type) == 0 &&
			    strcmp(back.event_type, ev->event_type) == 0 &&
			    strcmp(back.timestamp, ev->timestamp) == 0 &&
			    back.data_len == ev->data_len &&
			    memcmp(back.data, ev->data, ev->data_len) == 0 &&
			    back.metadata_len == ev->metadata_len &&
			    memcmp(back.metadata, ev->metadata, ev->metadata_len) == 0,
		    "an event changed through write and parse");
	free(out);
}

static void one_line(char *line, size_t len)
{
	cqrs_event ev;
	cqrs_error err = { 0 };
	if (cqrs_event_parse(&ev, line, len, &err) < 0) {
		FUZZ_ASSERT(err.code == CQRS_EXIT_DATAERR && err.msg[0] != '\0',
			    "a refused event without code 65 and a message: %d", err.code);
		return;
	}
	char corr[CQRS_MAX_CORRELATION + 1];
	(void)cqrs_event_correlation(&ev, corr, sizeof corr);
	err = (cqrs_error){ 0 };
	if (cqrs_event_schema_check(&ev, &err) < 0)
		FUZZ_ASSERT(err.code == CQRS_EXIT_DATAERR, "schema check code %d", err.code);
	uint8_t h[CQRS_HASH_LEN];
	static const uint8_t zero[CQRS_HASH_LEN];
	cqrs_event_hash(&ev, zero, h);
	if (ev.sequence > 0 && ev.has_event_id && ev.aggregate_version > 0 && ev.has_hash &&
	    ev.timestamp[0] != '\0')
		round_trip(&ev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536)
		return 0;
	fuzz_lines(data, size, 64, one_line);
	return 0;
}
