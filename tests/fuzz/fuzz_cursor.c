/*
 * Query cursors (cqrs-query(1) customer --after, query.c): the input is
 * the cursor text as given on the command line.  The views are built once
 * per process from the seeded store with the shipped projections
 * ($CQRS_SHAREDIR/projections/orders.yaml); each input runs the customer
 * query after that cursor, and the order query with the input as the
 * order's id or number.  A cursor the query printed leads to the rows
 * after it.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cqrs.h"
#include "fuzz.h"
#include "fuzz_store.h"
#include "banned.h"

#ifndef FUZZ_SHAREDIR
#define FUZZ_SHAREDIR "share"
#endif

static char views[4200];

static void build_views(void)
{
	if (views[0] != '\0')
		return;
	cqrs_store *st = fuzz_store();
	char yaml[4200];
	const char *dir = getenv("CQRS_SHAREDIR");
	snprintf(yaml, sizeof yaml, "%s/projections/orders.yaml",
		 dir != NULL && *dir != '\0' ? dir : FUZZ_SHAREDIR);
	cqrs_error err = { 0 };
	cqrs_projections *ps = cqrs_projections_new();
	FUZZ_ASSERT(ps != NULL && cqrs_projections_load(ps, yaml, &err) == 0,
		    "cannot load %s (set CQRS_SHAREDIR): %s", yaml, err.msg);
	fuzz_path("views.db", views, sizeof views);
	cqrs_projector *p = cqrs_projector_open(views, ps, 0, &err);
	FUZZ_ASSERT(p != NULL, "views: %s", err.msg);
	FUZZ_ASSERT(cqrs_projector_sync(p, &err) == 0 &&
			    cqrs_projector_catch_up(p, st, 0, NULL, &err) == 0 &&
			    cqrs_projector_flush(p, &err) == 0,
		    "views: %s", err.msg);
	cqrs_projector_close(p);
	cqrs_projections_free(ps);
}

static int64_t query(const cqrs_query *q)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = cqrs_memstream(&out, &len);
	FUZZ_ASSERT(f != NULL, "cqrs_memstream");
	cqrs_error err = { 0 };
	int64_t n = cqrs_query_run(views, q, CQRS_FORMAT_NDJSON, f, &err);
	fclose(f);
	free(out);
	if (n < 0)
		FUZZ_ASSERT(err.code == CQRS_EXIT_USAGE || err.code == CQRS_EXIT_NOT_FOUND,
			    "query failed with %d: %s", err.code, err.msg);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096)
		return 0;
	build_views();
	char *s = fuzz_string(data, size);
	cqrs_query q = { .kind = CQRS_QUERY_CUSTOMER, .id = "cust-42", .after = s, .limit = 10 };
	int64_t n = query(&q);
	FUZZ_ASSERT(n <= 2, "%lld rows after a cursor, of 2", (long long)n);
	q = (cqrs_query){ .kind = CQRS_QUERY_ORDER, .id = s };
	query(&q);
	free(s);
	return 0;
}
