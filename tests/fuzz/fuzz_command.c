/*
 * Command lines (cqrs-command(1)'s NDJSON input, command.c and the domain
 * behind it): the input is NDJSON read as cqrs-command reads it; each line
 * (fuzz_lines()) is handled by a dry-run commander on a seeded store, then asked whether
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

static void one_line(char *line, size_t len)
{
	fuzz_command_line(line, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536)
		return 0;
	(void)fuzz_commander();
	/* a few lines are enough to reach every path; more only slow it */
	fuzz_lines(data, size, 8, one_line);
	return 0;
}
