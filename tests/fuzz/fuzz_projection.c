/*
 * Projection files (cqrs-projection(5), projection.c over the shared YAML
 * loader): the input is one file, loaded as cqrs-project loads it, then
 * checked (every statement compiled against an empty database) and
 * described.  A refusal is code 78 (or 65) with a message.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>

#include "cqrs.h"
#include "fuzz.h"
#include "banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536)
		return 0;
	const char *path = fuzz_file("projection.yaml", data, size);
	cqrs_projections *ps = cqrs_projections_new();
	FUZZ_ASSERT(ps != NULL, "cqrs_projections_new");
	cqrs_error err = { 0 };
	int r = cqrs_projections_load(ps, path, &err);
	if (r == 0)
		r = cqrs_projections_check(ps, &err);
	if (r == 0) {
		size_t n = cqrs_projections_count(ps);
		for (size_t i = 0; i < n; i++)
			FUZZ_ASSERT(cqrs_projections_name(ps, i) != NULL, "projection %zu", i);
		char *out = NULL;
		size_t len = 0;
		FILE *f = cqrs_memstream(&out, &len);
		FUZZ_ASSERT(f != NULL, "cqrs_memstream");
		cqrs_projections_describe(ps, f);
		fclose(f);
		free(out);
	} else {
		FUZZ_ASSERT(err.code != 0 && err.msg[0] != '\0', "a refusal without a message");
	}
	cqrs_projections_free(ps);
	return 0;
}
