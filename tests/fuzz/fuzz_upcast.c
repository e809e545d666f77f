/*
 * Upcaster files (cqrs-upcasters(5), upcast.c over the shared YAML loader):
 * the input is one file, loaded as the tools load --upcasters, after the
 * shipped share/upcasters/orders.yaml ($CQRS_SHAREDIR).  A refused file
 * is 78 with FILE:LINE:COL.  When it loads, fixed events of the types the
 * shipped file, the man page and tests/upcast.bats declare, at versions 1
 * to 4 and one far ahead, with data of every kind of JSON value, go
 * through cqrs_upcaster_apply, and what lib/cqrs.h and the man page
 * promise is checked:
 *   - the stored bytes never change;
 *   - 0: the event is unchanged, at the newest version of its type (or of
 *     a type no upcaster declares, read as it is);
 *   - 1: the event is at cqrs_upcast_newest() of its type, above where it
 *     was, its data a compact JSON object (cqrs_json_compact takes it as it
 *     is), and upcast again it is current (0); the same event upcast once
 *     more gives the same bytes;
 *   - -1: the event is unchanged, the code 65 or 78 (78 for a version above
 *     the newest), the message starts "event SEQ (TYPE, event_version V): ".
 * The declarations are the process's one set: cqrs_upcasters_init replaces
 * it at each input, and keeps the last one when a file is refused.
 *
 * libjq is not ours, nor built with the sanitizers, and a jq program the
 * fuzzer wrote could loop for ever once run, or meet jq 1.6's own bugs:
 * it leaks on some syntax errors (an unterminated string, 21 bytes from
 * jq_parse, as the jq command does).  So a file with a jq step is taken
 * only when each program is one of those of the man page and
 * tests/upcast.bats; the check reads the file with the library's own YAML
 * loader (common/yaml.h), as upcast.c does.
 */
#include "config.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/yaml.h"
#include "cqrs.h"
#include "fuzz.h"
#include "banned.h"

#ifndef FUZZ_SHAREDIR
#define FUZZ_SHAREDIR "share"
#endif

/* the types of share/upcasters/orders.yaml, cqrs-upcasters(5) and
 * tests/upcast.bats; upcast.dict has them too */
static const char *const types[] = { "OrderShipped", "NoteTaken", "Registered", "E" };
static const int64_t versions[] = { 1, 2, 3, 4, 1000 };
/* compact, valid data: a number keeps its text, a key may be escaped */
static const char *const bodies[] = {
	"{\"tracking_number\":\"TRK1\",\"carrier\":\"FedEx\","
	"\"shipped_at\":\"2026-01-16T14:00:00Z\"}",
	"{\"shipment\":{\"tracking_number\":\"TRK1\",\"carrier\":\"FedEx\"},"
	"\"shipped_at\":\"2026-01-16T14:00:00.000000Z\"}",
	"{\"text\":\"call back\",\"author\":\"ann\"}",
	"{\"text\":\"call back\",\"author\":\"ann\",\"body\":\"two words\",\"priority\":2.50,"
	"\"meta\":{\"by\":\"cy\"},\"price\":19.99}",
	"{\"id\":7,\"name\":\"Ann Lee Smith\",\"legacy\":{\"a\":1},\"vip\":\"true\","
	"\"age\":\"0.50\",\"nick\":\"b\\\"o\",\"n\":1e400,\"s\":\"-2.50e-3\",\"t\":0.10,"
	"\"net\":100000000000000000001,\"tax\":0.1000000000000000055511151231257827,"
	"\"fee\":{\"amount\":-0.0},\"items\":[\"a\",{\"b\":[1,2]}],"
	"\"x\":{\"y\":{\"z\":\"caf\\u00e9 \\\\ \\u20ac\"}},"
	"\"ok\":false,\"none\":null,\"e\":{},\"k\\u0065y\":1}",
	"{}",
};

/* the only programs libjq is given (see above): each terminates and frees
 * what it takes, on any data */
static const char *const jq_programs[] = {
	".tags = [.body | splits(\" \")]",
	".items |= map({sku: .}) | .count = (.items | length)",
	".price_cents = (.price * 100 | floor)",
	"error(\"no way\")",
	".[]",
	"[.]",
	"empty",
	".",
	".a |",
};

/* false when n holds a "jq" key whose value maps "program" to a text that
 * is not one of jq_programs: upcast.c would compile it */
static bool jq_known(const struct cqrs_yaml_node *n)
{
	for (size_t i = 0; i < n->nkids; i++) {
		const struct cqrs_yaml_node *k = n->kids[i];
		if (n->kind == CQRS_YAML_MAP && i % 2 == 0 && strcmp(k->text, "jq") == 0 &&
		    n->kids[i + 1]->kind == CQRS_YAML_MAP) {
			const struct cqrs_yaml_node *p = cqrs_yaml_get(n->kids[i + 1], "program");
			bool known = p == NULL || p->kind != CQRS_YAML_SCALAR;
			for (size_t j = 0; !known && j < sizeof jq_programs / sizeof *jq_programs;
			     j++)
				known = strcmp(p->text, jq_programs[j]) == 0;
			if (!known)
				return false;
		}
		if (!jq_known(k))
			return false;
	}
	return true;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* the shipped file, as make check and make fuzz give it */
	setenv("CQRS_SHAREDIR", FUZZ_SHAREDIR, 0);
	cqrs_error err = { 0 };
	FUZZ_ASSERT(cqrs_upcasters_init(NULL, 0, &err) == 0, "the shipped upcasters: %s", err.msg);
	FUZZ_ASSERT(cqrs_upcast_newest("OrderShipped") >= 2,
		    "share/upcasters/orders.yaml not loaded (set CQRS_SHAREDIR)");
	for (size_t b = 0; b < sizeof bodies / sizeof *bodies; b++) {
		size_t n = strlen(bodies[b]);
		char *copy = fuzz_string((const uint8_t *)bodies[b], n);
		FUZZ_ASSERT(cqrs_json_compact(copy, &n, &err) == 0 && n == strlen(bodies[b]),
			    "body %zu is not compact JSON: %s", b, err.msg);
		free(copy);
	}
	return 0;
}

static bool same_event(const cqrs_event *a, const cqrs_event *b)
{
	return a->sequence == b->sequence && a->event_version == b->event_version &&
	       a->data == b->data && a->data_len == b->data_len && a->metadata == b->metadata &&
	       a->metadata_len == b->metadata_len && a->aggregate_version == b->aggregate_version &&
	       a->expected_version == b->expected_version &&
	       strcmp(a->event_type, b->event_type) == 0 &&
	       strcmp(a->aggregate_type, b->aggregate_type) == 0 &&
	       memcmp(a->aggregate_id, b->aggregate_id, CQRS_UUID_LEN) == 0;
}

static void upcast(cqrs_upcaster *u, const char *type, int64_t version, const char *body,
		   int64_t seq)
{
	size_t len = strlen(body);
	/* exactly the data's bytes, without a NUL, as a store gives them */
	char *stored = malloc(len);
	FUZZ_ASSERT(stored != NULL, "malloc");
	memcpy(stored, body, len);
	cqrs_event ev = { .sequence = seq,
			  .expected_version = -1,
			  .event_version = version,
			  .data = stored,
			  .data_len = len,
			  .metadata = "{}",
			  .metadata_len = 2 };
	snprintf(ev.event_type, sizeof ev.event_type, "%s", type);
	snprintf(ev.aggregate_type, sizeof ev.aggregate_type, "Thing");
	const cqrs_event before = ev;
	cqrs_error err = { 0 };
	int r = cqrs_upcaster_apply(u, &ev, &err);
	FUZZ_ASSERT(memcmp(stored, body, len) == 0, "%s %" PRId64 ": the stored bytes changed",
		    type, version);
	int64_t newest = cqrs_upcast_newest(type);
	if (r < 0) {
		FUZZ_ASSERT(same_event(&ev, &before), "%s %" PRId64 ": refused, and changed", type,
			    version);
		FUZZ_ASSERT(err.code == CQRS_EXIT_DATAERR || err.code == CQRS_EXIT_CONFIG,
			    "%s %" PRId64 ": refused with %d: %s", type, version, err.code,
			    err.msg);
		FUZZ_ASSERT(version < newest || err.code == CQRS_EXIT_CONFIG,
			    "%s %" PRId64 ", newer than %" PRId64 ", refused with %d: %s", type,
			    version, newest, err.code, err.msg);
		char prefix[200];
		snprintf(prefix, sizeof prefix,
			 "event %" PRId64 " (%s, event_version %" PRId64 "): ", seq, type, version);
		FUZZ_ASSERT(strncmp(err.msg, prefix, strlen(prefix)) == 0,
			    "a refusal that does not name the event: %s", err.msg);
	} else if (r == 0) {
		FUZZ_ASSERT(same_event(&ev, &before), "%s %" PRId64 ": current, and changed", type,
			    version);
		FUZZ_ASSERT(version == newest || newest == 1,
			    "%s %" PRId64 " passed as current, the newest is %" PRId64, type,
			    version, newest);
	} else {
		FUZZ_ASSERT(r == 1, "cqrs_upcaster_apply gave %d", r);
		FUZZ_ASSERT(version < newest && ev.event_version == newest,
			    "%s %" PRId64 " upcast to %" PRId64 ", the newest is %" PRId64, type,
			    version, ev.event_version, newest);
		cqrs_event rest = ev;
		rest.data = before.data;
		rest.data_len = before.data_len;
		rest.event_version = before.event_version;
		FUZZ_ASSERT(same_event(&rest, &before),
			    "%s %" PRId64 ": more than data and version changed", type, version);
		size_t n = ev.data_len;
		char *copy = fuzz_string((const uint8_t *)ev.data, n);
		FUZZ_ASSERT(n > 0 && copy[0] == '{' && cqrs_json_compact(copy, &n, &err) == 0 &&
				    n == ev.data_len && memcmp(copy, ev.data, n) == 0,
			    "%s %" PRId64
			    " upcast to data that is not a compact JSON object (%s): %.*s",
			    type, version, err.msg, (int)ev.data_len, ev.data);
		/* current now */
		cqrs_event again = ev;
		FUZZ_ASSERT(cqrs_upcaster_apply(u, &again, &err) == 0 && same_event(&again, &ev),
			    "%s %" PRId64 ": the upcast event is not current: %s", type, version,
			    err.msg);
		/* and the same again */
		again = before;
		FUZZ_ASSERT(cqrs_upcaster_apply(u, &again, &err) == 1 &&
				    again.event_version == ev.event_version &&
				    again.data_len == n && memcmp(again.data, copy, n) == 0,
			    "%s %" PRId64 ": upcast twice, not the same: %s", type, version,
			    err.msg);
		free(copy);
	}
	free(stored);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536)
		return 0;
	char path[64];
	snprintf(path, sizeof path, "%s", fuzz_file("upcasters.yaml", data, size));
	cqrs_error err = { 0 };
	FILE *f = fopen(path, "r");
	FUZZ_ASSERT(f != NULL, "%s", path);
	struct cqrs_yaml_node *root = cqrs_yaml_load(f, path, "'upcasters:'", &err);
	fclose(f);
	bool known = root == NULL || jq_known(root);
	cqrs_yaml_free(root);
	if (!known)
		return 0;
	err = (cqrs_error){ 0 };
	char *files[1] = { path };
	if (cqrs_upcasters_init(files, 1, &err) < 0) {
		/* 69: a jq step, and no libjq to compile it with */
		FUZZ_ASSERT(err.code == CQRS_EXIT_UNAVAILABLE ||
				    (err.code == CQRS_EXIT_CONFIG &&
				     strncmp(err.msg, path, strlen(path)) == 0 &&
				     err.msg[strlen(path)] == ':'),
			    "a refused file, not 78 with FILE:LINE:COL: %d: %s", err.code, err.msg);
		return 0;
	}
	cqrs_upcaster *u = cqrs_upcaster_new(&err);
	FUZZ_ASSERT(u != NULL, "cqrs_upcaster_new: %s", err.msg);
	int64_t seq = 1;
	for (size_t t = 0; t < sizeof types / sizeof *types; t++)
		for (size_t v = 0; v < sizeof versions / sizeof *versions; v++)
			for (size_t b = 0; b < sizeof bodies / sizeof *bodies; b++)
				upcast(u, types[t], versions[v], bodies[b], seq++);
	cqrs_upcaster_free(u);
	return 0;
}
