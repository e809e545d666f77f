/*
 * NDJSON input (ndjson.c): the input is one file read through cqrs_input
 * as every tool reads its operands.  The lines it gives must be those of
 * fuzz_lines(), which the event and command targets use in its place (it
 * needs no 1 MiB buffer per input), with their NULs and line numbers.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cqrs.h"
#include "fuzz.h"
#include "banned.h"

static char **want;
static size_t *want_len;
static size_t nwant;

static void collect(char *line, size_t len)
{
	want[nwant] = fuzz_string((const uint8_t *)line, len);
	want_len[nwant++] = len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536)
		return 0;
	want = calloc(size + 1, sizeof *want);
	want_len = calloc(size + 1, sizeof *want_len);
	FUZZ_ASSERT(want != NULL && want_len != NULL, "calloc");
	nwant = 0;
	fuzz_lines(data, size, (int)size + 1, collect);

	char *path = (char *)fuzz_file("input.ndjson", data, size);
	cqrs_input *in = cqrs_input_open(&path, 1);
	FUZZ_ASSERT(in != NULL, "cqrs_input_open");
	char *line;
	size_t len, got = 0;
	long last = 0;
	cqrs_error err = { 0 };
	int r;
	while ((r = cqrs_input_next(in, &line, &len, &err)) == 1) {
		FUZZ_ASSERT(got < nwant, "more lines than the input has: line %zu", got + 1);
		FUZZ_ASSERT(len == want_len[got] && memcmp(line, want[got], len) == 0,
			    "line %zu differs", got + 1);
		FUZZ_ASSERT(line[len] == '\0', "line %zu without its NUL", got + 1);
		long no = cqrs_input_lineno(in);
		FUZZ_ASSERT(no > last, "line numbers went from %ld to %ld", last, no);
		last = no;
		FUZZ_ASSERT(strcmp(cqrs_input_name(in), path) == 0, "name");
		got++;
	}
	FUZZ_ASSERT(r == 0, "input error: %s", err.msg);
	FUZZ_ASSERT(got == nwant, "%zu lines of %zu", got, nwant);
	cqrs_input_close(in);
	for (size_t i = 0; i < nwant; i++)
		free(want[i]);
	free(want);
	free(want_len);
	return 0;
}
