/* cqrs-trace: an order's trace, from the causation of its events. */
#include "config.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cqrs.h"
#include "banned.h"

static const char usage_text[] =
	"usage: cqrs-trace [-f format] [-s store] [--log-format text|json] order-id\n"
	"       cqrs-trace [-f format] [-s store] [--log-format text|json] --correlation id\n";

static void usage(int code)
{
	cqrs_print_usage(usage_text, code);
	if (code == 0)
		fputs("\n"
		      "  -c, --correlation ID       the events of this correlation id\n"
		      "  -f, --format FORMAT        text (an indented tree, the default), json\n"
		      "                             (NDJSON, a span per line) or otlp (OTLP/JSON)\n"
		      "  -s, --store PATH           event store (default: $CQRS_STORE)\n"
		      "      --log-format FORMAT    messages as text or json lines (default:\n"
		      "                             $CQRS_LOG_FORMAT, else text)\n"
		      "  -h, --help                 show this help\n"
		      "  -V, --version              show the version\n",
		      stdout);
	exit(code);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "correlation", required_argument, NULL, 'c' },
		{ "format", required_argument, NULL, 'f' },
		{ "store", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "log-format", required_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 },
	};
	const char *store_opt = NULL, *correlation = NULL;
	enum cqrs_trace_format fmt = CQRS_TRACE_TEXT;
	int ch;

	cqrs_tool_init("cqrs-trace");
	cqrs_log_scan_args(argc, argv);
	while ((ch = cqrs_getopt_long(argc, argv, "c:f:s:hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			if (*optarg == '\0' || strlen(optarg) > CQRS_MAX_CORRELATION)
				cqrs_die(CQRS_EXIT_USAGE,
					 "--correlation needs 1 to %d bytes: '%.80s'",
					 CQRS_MAX_CORRELATION, optarg);
			correlation = optarg;
			break;
		case 'f':
			if (strcmp(optarg, "text") == 0)
				fmt = CQRS_TRACE_TEXT;
			else if (strcmp(optarg, "json") == 0)
				fmt = CQRS_TRACE_NDJSON;
			else if (strcmp(optarg, "otlp") == 0)
				fmt = CQRS_TRACE_OTLP;
			else
				cqrs_die(CQRS_EXIT_USAGE,
					 "--format must be text, json or otlp: '%.80s'", optarg);
			break;
		case 's': store_opt = optarg; break;
		case 'L': cqrs_log_format_option(optarg); break;
		case 'h': usage(0); break;
		case 'V': cqrs_print_version(); return cqrs_finish_stdout(0);
		default: usage(CQRS_EXIT_USAGE);
		}
	}
	uint8_t order[CQRS_UUID_LEN];
	if (correlation != NULL && optind < argc) {
		cqrs_warn("give an order id or --correlation, not both");
		usage(CQRS_EXIT_USAGE);
	}
	if (correlation == NULL && optind + 1 != argc)
		usage(CQRS_EXIT_USAGE);
	if (correlation == NULL && cqrs_uuid_parse(argv[optind], strlen(argv[optind]), order) < 0)
		cqrs_die(CQRS_EXIT_USAGE, "an order id is a UUID: '%.80s'", argv[optind]);

	cqrs_error err = { 0 };
	cqrs_store *st = cqrs_store_open(cqrs_store_path(store_opt), CQRS_OPEN_READ, &err);
	if (st == NULL)
		cqrs_die_error(&err);
	int rc = cqrs_trace_print(st, correlation == NULL ? order : NULL, correlation, fmt, stdout,
				  &err);
	cqrs_store_close(st);
	if (rc < 0) {
		cqrs_warn("%s", err.msg);
		return cqrs_finish_stdout(err.code);
	}
	return cqrs_finish_stdout(CQRS_EXIT_OK);
}
