/*
 * cqrs-health: checks the store, the views, the sagas, the circuit
 * breakers, the write-ahead log and the free disk, for a person, cron, a
 * monitoring system or node_exporter.  Its exit status is the monitoring
 * plugins' (0 ok, 1 warning, 2 critical, 3 unknown), the one exception to
 * the toolkit's table: usage errors and failures to report are 3.
 */
#include "config.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cqrs.h"
#include "banned.h"

static const char usage_text[] =
	"usage: cqrs-health [-s store] [--views views] [--format ndjson|table]\n"
	"                   [--textfile dir] [--lag-events w,c] [--lag-seconds w,c]\n"
	"                   [--parked w,c] [--stuck-after duration] [--stuck w,c]\n"
	"                   [--failed w,c] [--compensation-failed w,c] [--breakers w,c]\n"
	"                   [--wal w,c] [--disk-free w,c] [--relay-lag w,c]\n"
	"                   [--log-format text|json]\n";

static void usage(int code)
{
	cqrs_print_usage(usage_text, code);
	if (code == 0)
		fputs("\n"
		      "  -s, --store PATH           event store (default: $CQRS_STORE)\n"
		      "      --views PATH           read models (default: $CQRS_VIEWS)\n"
		      "      --format FORMAT        ndjson or table (default: table on a "
		      "terminal)\n"
		      "      --textfile DIR         also write DIR/cqrs_health.prom for "
		      "node_exporter\n"
		      "      --lag-events W,C       events a projection is behind (1000,100000)\n"
		      "      --lag-seconds W,C      time a projection is behind (5m,1h)\n"
		      "      --parked W,C           parked events (1,0)\n"
		      "      --stuck-after DUR      a saga with no change this long is stuck (1h)\n"
		      "      --stuck W,C            stuck sagas (1,0)\n"
		      "      --failed W,C           FAILED sagas (0,0)\n"
		      "      --compensation-failed W,C  sagas whose compensation failed (0,1)\n"
		      "      --breakers W,C         open circuit breakers (1,0)\n"
		      "      --wal W,C              size of the write-ahead log (64M,512M)\n"
		      "      --disk-free W,C        free disk, at or below (1G,256M)\n"
		      "      --relay-lag W,C        events a relay has not published "
		      "(1000,100000)\n"
		      "      --log-format FORMAT    messages as text or json lines (default:\n"
		      "                             $CQRS_LOG_FORMAT, else text)\n"
		      "  -h, --help                 show this help\n"
		      "  -V, --version              show the version\n"
		      "\n"
		      "A threshold of 0 is off.  Exit status: 0 ok, 1 warning, 2 critical,\n"
		      "3 unknown (also for usage errors).\n",
		      stdout);
	exit(code);
}

int main(int argc, char **argv)
{
	enum { OPT_VIEWS = 256, OPT_FORMAT, OPT_TEXTFILE, OPT_LIMIT, OPT_LOG_FORMAT };
	/* the thresholds keep their option names: lib/ops/health.c reads them */
	static const struct option longopts[] = {
		{ "store", required_argument, NULL, 's' },
		{ "views", required_argument, NULL, OPT_VIEWS },
		{ "format", required_argument, NULL, OPT_FORMAT },
		{ "textfile", required_argument, NULL, OPT_TEXTFILE },
		{ "lag-events", required_argument, NULL, OPT_LIMIT },
		{ "lag-seconds", required_argument, NULL, OPT_LIMIT },
		{ "parked", required_argument, NULL, OPT_LIMIT },
		{ "stuck-after", required_argument, NULL, OPT_LIMIT },
		{ "stuck", required_argument, NULL, OPT_LIMIT },
		{ "failed", required_argument, NULL, OPT_LIMIT },
		{ "compensation-failed", required_argument, NULL, OPT_LIMIT },
		{ "breakers", required_argument, NULL, OPT_LIMIT },
		{ "wal", required_argument, NULL, OPT_LIMIT },
		{ "disk-free", required_argument, NULL, OPT_LIMIT },
		{ "relay-lag", required_argument, NULL, OPT_LIMIT },
		{ "log-format", required_argument, NULL, OPT_LOG_FORMAT },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	cqrs_tool_init("cqrs-health");
	const char *store_opt = NULL, *views_opt = NULL, *textfile = NULL, *format = NULL;
	struct cqrs_health_limits limits;
	cqrs_error err = { 0 };
	cqrs_health_limits_default(&limits);
	/* the environment first, so that an option overrides it */
	if (cqrs_health_limits_env(&limits, &err) < 0)
		cqrs_die(CQRS_HEALTH_UNKNOWN, "%s", err.msg);
	/* a bad one is unknown (3), like every usage error here */
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--") == 0)
			break;
		else if (strncmp(argv[i], "--log-format", 12) == 0) {
			const char *f = argv[i][12] == '='		      ? argv[i] + 13
					: argv[i][12] == '\0' && i + 1 < argc ? argv[i + 1]
									      : NULL;
			if (f != NULL && strcmp(f, "json") != 0 && strcmp(f, "text") != 0)
				cqrs_die(CQRS_HEALTH_UNKNOWN,
					 "--log-format: unknown format '%s' (json or text)", f);
		}
	cqrs_log_scan_args(argc, argv);
	int ch, index;
	while ((ch = cqrs_getopt_long(argc, argv, "s:hV", longopts, &index)) != -1) {
		switch (ch) {
		case 's': store_opt = optarg; break;
		case OPT_VIEWS: views_opt = optarg; break;
		case OPT_TEXTFILE: textfile = optarg; break;
		case OPT_FORMAT:
			if (strcmp(optarg, "ndjson") != 0 && strcmp(optarg, "table") != 0)
				cqrs_die(CQRS_HEALTH_UNKNOWN,
					 "--format needs ndjson or table: '%s'", optarg);
			format = optarg;
			break;
		case OPT_LIMIT:
			if (cqrs_health_limit_set(&limits, longopts[index].name, optarg, &err) < 0)
				cqrs_die(CQRS_HEALTH_UNKNOWN, "--%s", err.msg);
			break;
		case OPT_LOG_FORMAT: cqrs_log_format_option(optarg); break;
		case 'h': usage(0); break;
		case 'V': cqrs_print_version(); return cqrs_finish_stdout(0);
		default: usage(CQRS_HEALTH_UNKNOWN);
		}
	}
	if (optind < argc)
		cqrs_die(CQRS_HEALTH_UNKNOWN, "unexpected operand '%s'\n%.*s", argv[optind],
			 (int)sizeof usage_text - 2, usage_text);

	/* the tools' metrics journals into their .prom files
	 * (cqrs-metrics(7)), even when the store cannot be judged; a refused
	 * directory is said once, below */
	bool fold_failed = textfile != NULL && cqrs_textfile_check_dir(textfile, &err) == 0 &&
			   cqrs_metrics_fold_dir(textfile, &err) < 0;
	if (fold_failed)
		cqrs_warn("metrics: %s", err.msg);
	cqrs_health *h = cqrs_health_run(cqrs_store_path(store_opt), cqrs_views_path(views_opt),
					 &limits, &err);
	if (h == NULL)
		cqrs_die(CQRS_HEALTH_UNKNOWN, "%s", err.msg);
	if (format == NULL)
		format = isatty(STDOUT_FILENO) ? "table" : "ndjson";
	if (strcmp(format, "table") == 0)
		cqrs_health_write_table(h, stdout);
	else
		cqrs_health_write_ndjson(h, stdout);
	int code = cqrs_health_status(h);
	/* the report is out either way; a collector that could not write
	 * its file is a monitoring failure: unknown */
	if (textfile != NULL && cqrs_health_write_textfile(h, textfile, &err) < 0) {
		cqrs_warn("%s", err.msg);
		code = CQRS_HEALTH_UNKNOWN;
	}
	if (fold_failed)
		code = CQRS_HEALTH_UNKNOWN;
	cqrs_health_free(h);
	code = cqrs_finish_stdout(code);
	return code > CQRS_HEALTH_UNKNOWN ? CQRS_HEALTH_UNKNOWN : code;
}
