/*
 * Saga definitions (cqrs-saga(5), saga_yaml.c over the shared YAML
 * loader): the input is one file, loaded as cqrs-saga loads it; a loaded
 * definition is drawn as DOT (what `cqrs-saga dot` prints).
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
	const char *path = fuzz_file("saga.yaml", data, size);
	cqrs_error err = { 0 };
	cqrs_saga_def *d = cqrs_saga_load(path, &err);
	if (d == NULL) {
		FUZZ_ASSERT(err.code != 0 && err.msg[0] != '\0', "a refusal without a message");
		return 0;
	}
	FUZZ_ASSERT(cqrs_saga_name(d) != NULL, "a saga without a name");
	char *out = NULL;
	size_t len = 0;
	FILE *f = cqrs_memstream(&out, &len);
	FUZZ_ASSERT(f != NULL, "cqrs_memstream");
	cqrs_saga_def *defs[1] = { d };
	FUZZ_ASSERT(cqrs_saga_dot(NULL, defs, 1, NULL, f, &err) == 0, "dot: %s", err.msg);
	fclose(f);
	free(out);
	cqrs_saga_free(d);
	return 0;
}
