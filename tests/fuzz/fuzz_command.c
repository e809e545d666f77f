/*
 * Command lines (cqrs-command(1)'s NDJSON input, command.c and the domain
 * behind it): the input is NDJSON read as cqrs-command reads it; each line
 * is handled by a dry-run commander on a seeded store, then asked whether
 * its goal already holds, as the saga asks.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cqrs.h"
#include "fuzz.h"
#include "fuzz_store.h"
#include "banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536)
		return 0;
	(void)fuzz_commander();
	char *path = (char *)fuzz_file("commands.ndjson", data, size);
	cqrs_input *in = cqrs_input_open(&path, 1);
	FUZZ_ASSERT(in != NULL, "cqrs_input_open");
	char *line;
	size_t len;
	cqrs_error err = { 0 };
	/* a few lines are enough to reach every path; more only slow it */
	for (int n = 0; n < 8 && cqrs_input_next(in, &line, &len, &err) == 1; n++)
		fuzz_command_line(line, len);
	cqrs_input_close(in);
	return 0;
}
