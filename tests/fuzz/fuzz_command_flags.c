/*
 * The friendly form of cqrs-command: a verb and its flags, turned into a
 * command line by build_command() in src/cqrs-command.c, which this file
 * includes (its main renamed, its cqrs_die turned into a jump back here).
 * The input is lines: the verb, then one flag a line as "name value"
 * (without the dashes; "item" may repeat), as getopt would hand them over.
 * Whatever the flags, build_command either refuses them with a usage
 * error (64) or makes one valid JSON object (unless a value is not
 * UTF-8), which then runs through a dry-run commander on a seeded store.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cqrs.h"
#include "fuzz.h"
#include "fuzz_store.h"

static jmp_buf fuzz_usage;
static int fuzz_usage_code;
/* The memstream build_command has open writes to buffers of ours: after a
 * jump back here, its own (on a stack that is gone) cannot be reached. */
static FILE *fuzz_stream;
static char *fuzz_stream_buf;
static size_t fuzz_stream_size;
static char **fuzz_caller_buf;
static size_t *fuzz_caller_size;

static _Noreturn void fuzz_die(int code, const char *fmt, ...) CQRS_PRINTF(2, 3);
static _Noreturn void fuzz_die(int code, const char *fmt, ...)
{
	(void)fmt;
	fuzz_usage_code = code;
	longjmp(fuzz_usage, 1);
}

static FILE *fuzz_open_memstream(char **buf, size_t *size)
{
	fuzz_caller_buf = buf;
	fuzz_caller_size = size;
	fuzz_stream = cqrs_memstream(&fuzz_stream_buf, &fuzz_stream_size);
	return fuzz_stream;
}

/* fclose, handing the memstream's buffer to build_command */
static int fuzz_fclose(FILE *f)
{
	int r = fclose(f);
	if (f == fuzz_stream) {
		*fuzz_caller_buf = fuzz_stream_buf;
		*fuzz_caller_size = fuzz_stream_size;
		fuzz_stream = NULL;
	}
	return r;
}

int cqrs_command_main(int argc, char **argv);

#define main		     cqrs_command_main
#define cqrs_die	     fuzz_die
#define cqrs_memstream(b, s) fuzz_open_memstream(b, s)
#define fclose(f)	     fuzz_fclose(f)
#include "cqrs-command.c"
#undef main
#undef cqrs_die
#undef cqrs_memstream
#undef fclose

/* Fills fr from the flag lines as main's getopt loop does; false when
 * main would refuse them (an unknown or repeated flag). */
static bool read_flags(char *s, struct friendly *fr)
{
	while (s != NULL && *s != '\0') {
		char *next = strchr(s, '\n');
		if (next != NULL)
			*next++ = '\0';
		char *value = strchr(s, ' ');
		if (value != NULL)
			*value++ = '\0';
		else
			value = s + strlen(s);
		int f = -1;
		for (int i = 0; i < FL_COUNT; i++)
			if (strcmp(flags[i].option, s) == 0)
				f = i;
		if (f < 0)
			return false;
		if (f == FL_ITEM) {
			if (fr->nitems == 64)
				return false;
			fr->items[fr->nitems++] = value;
		} else if (fr->given & F(f)) {
			return false;
		}
		fr->value[f] = value;
		fr->given |= F(f);
		s = next;
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 16384)
		return 0;
	(void)fuzz_commander();
	char *text = fuzz_string(data, size);
	char *flags_text = strchr(text, '\n');
	if (flags_text != NULL)
		*flags_text++ = '\0';
	const struct verb *v = find_verb(text);
	const char *items[64];
	struct friendly fr = { .items = items };
	if (v == NULL || !read_flags(flags_text, &fr)) {
		free(text);
		return 0;
	}
	fuzz_stream = NULL;
	/* volatile: set after setjmp, read after longjmp */
	char *volatile line = NULL;
	size_t len = 0;
	if (setjmp(fuzz_usage) == 0) {
		line = build_command(v, &fr, &len);
	} else {
		/* a usage error, or bad input (65) when a value is not UTF-8 */
		bool not_utf8 = false;
		for (int i = 0; i < FL_COUNT; i++)
			if ((fr.given & F(i)) && i != FL_ITEM && fr.value[i] != NULL)
				not_utf8 |=
					cqrs_utf8_valid_prefix(fr.value[i], strlen(fr.value[i])) <
					strlen(fr.value[i]);
		for (size_t k = 0; k < fr.nitems; k++)
			not_utf8 |= cqrs_utf8_valid_prefix(fr.items[k], strlen(fr.items[k])) <
				    strlen(fr.items[k]);
		FUZZ_ASSERT(fuzz_usage_code == CQRS_EXIT_USAGE ||
				    (fuzz_usage_code == CQRS_EXIT_DATAERR && not_utf8),
			    "build_command died with %d", fuzz_usage_code);
		if (fuzz_stream != NULL) {
			fclose(fuzz_stream);
			free(fuzz_stream_buf);
			fuzz_stream = NULL;
		}
		free(text);
		return 0;
	}
	/* The line must be one valid JSON object, as NDJSON input would be.
	 * Flag values go in as given, so one that is not UTF-8 makes a line
	 * the commander refuses (65, "invalid UTF-8"): accepted here, but it
	 * is all that may be wrong. */
	char *copy = fuzz_string((const uint8_t *)line, len);
	size_t clen = len;
	cqrs_error err = { 0 };
	if (cqrs_json_compact(copy, &clen, &err) < 0)
		FUZZ_ASSERT(strstr(err.msg, "invalid UTF-8") != NULL,
			    "build_command made invalid JSON: %s: %s", err.msg, line);
	else
		FUZZ_ASSERT(copy[0] == '{', "build_command made no object: %s", line);
	free(copy);
	fuzz_command_line(line, len);
	free(line);
	free(text);
	return 0;
}
