/* cqrs-query: answer questions from the read models. */
#include "config.h"

#include <ctype.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cqrs.h"
#include "banned.h"

static const char usage_text[] =
	"usage: cqrs-query [-f format] [-s store] [--views path] [--metrics-dir dir]\n"
	"                  order id [--as-of time | seq] [--upcasters file]\n"
	"       cqrs-query [-f format] orders [--status status] [--from time] [--to time]\n"
	"                  [-n limit] [--offset n]\n"
	"       cqrs-query [-f format] customer customer-id [-n limit]\n"
	"                  [--offset n | --after cursor]\n"
	"       cqrs-query [-f format] summary customer-id\n"
	"       cqrs-query [-f format] inventory [product-id | sku]\n"
	"       cqrs-query [-f format] sales [--from date] [--to date] [--currency code]\n"
	"                  [--total]\n"
	"       cqrs-query [-f format] products [--from date] [--to date] [--currency code]\n"
	"                  [-n limit]\n"
	"       cqrs-query [-f format] [--timeout seconds] sql statement [parameter ...]\n";

/* Limits that keep a query of one's own from taking the machine: a
 * recursive CTE that never ends, randomblob(1e9). */
#define DEFAULT_TIMEOUT_S 10
#define MEMORY_LIMIT	  (512LL * 1024 * 1024)

static void usage(int code)
{
	cqrs_print_usage(usage_text, code);
	if (code == 0)
		fputs("\n"
		      "  order ID                   an order, by id or order number\n"
		      "  orders                     orders, oldest first, a page at a time\n"
		      "  customer CUSTOMER          a customer's orders, newest first\n"
		      "  summary CUSTOMER           a customer's orders and spending per currency\n"
		      "  inventory [PRODUCT]        stock per product (id or SKU)\n"
		      "  sales                      orders, revenue, average order value per day\n"
		      "  products                   top products by revenue per currency\n"
		      "  sql STATEMENT [PARAM ...]  a read-only SELECT of one's own\n"
		      "\n"
		      "  -f, --format FORMAT        ndjson, table or csv (default: table on a\n"
		      "                             terminal, ndjson otherwise)\n"
		      "      --as-of TIME|SEQ       order: as it was then, from the events\n"
		      "      --status STATUS        orders: PENDING, CONFIRMED, PAID, SHIPPED, "
		      "CANCELLED\n"
		      "      --from TIME, --to TIME orders created in this range (dates or "
		      "times);\n"
		      "                             sales, products: the days of the period\n"
		      "      --currency CODE        sales, products: one currency\n"
		      "      --total                sales: one row per currency for the period\n"
		      "  -n, --limit N              at most N rows (default 100; products: 10)\n"
		      "      --offset N             skip N rows first\n"
		      "      --after CURSOR         customer: the page after the row with CURSOR\n"
		      "      --timeout SECONDS      stop a query after SECONDS (default 10; 0: "
		      "never)\n"
		      "  -s, --store PATH           event store, for --as-of (default: "
		      "$CQRS_STORE)\n"
		      "      --log-format FORMAT    messages as text or json lines (default:\n"
		      "                             $CQRS_LOG_FORMAT, else text)\n"
		      "      --views PATH           views file (default: $CQRS_VIEWS)\n"
		      "      --metrics-dir DIR      add this run's metrics to DIR/cqrs_query.prom\n"
		      "                             (default: $CQRS_METRICS_DIR)\n"
		      "  -h, --help                 show this help\n"
		      "  -V, --version              show the version\n",
		      stdout);
	exit(code);
}

enum {
	O_AS_OF = 1 << 0,
	O_STATUS = 1 << 1,
	O_FROM = 1 << 2,
	O_TO = 1 << 3,
	O_LIMIT = 1 << 4,
	O_OFFSET = 1 << 5,
	O_AFTER = 1 << 6,
	O_CURRENCY = 1 << 7,
	O_TOTAL = 1 << 8,
};

static const struct command {
	const char *name;
	enum cqrs_query_kind kind;
	int min_args, max_args; /* -1: any number */
	unsigned opts;
} commands[] = {
	{ "order", CQRS_QUERY_ORDER, 1, 1, O_AS_OF },
	{ "orders", CQRS_QUERY_ORDERS, 0, 0, O_STATUS | O_FROM | O_TO | O_LIMIT | O_OFFSET },
	{ "customer", CQRS_QUERY_CUSTOMER, 1, 1, O_LIMIT | O_OFFSET | O_AFTER },
	{ "summary", CQRS_QUERY_SUMMARY, 1, 1, 0 },
	{ "inventory", CQRS_QUERY_INVENTORY, 0, 1, 0 },
	{ "sales", CQRS_QUERY_SALES, 0, 0, O_FROM | O_TO | O_CURRENCY | O_TOTAL },
	{ "products", CQRS_QUERY_PRODUCTS, 0, 0, O_FROM | O_TO | O_CURRENCY | O_LIMIT },
	{ "sql", CQRS_QUERY_SQL, 1, -1, 0 },
};

static const char *const option_names[] = { "--as-of", "--status",   "--from",
					    "--to",    "--limit",    "--offset",
					    "--after", "--currency", "--total" };

static int64_t count_arg(const char *opt, const char *arg, bool positive)
{
	int64_t v;
	if (cqrs_parse_int64(arg, &v) < 0 || (positive && v == 0))
		cqrs_die(CQRS_EXIT_USAGE, "%s needs a %s count: '%s'", opt,
			 positive ? "positive" : "non-negative", arg);
	return v;
}

static bool is_date(const char *s)
{
	char t[32], out[CQRS_TIMESTAMP_LEN + 1];
	if (strlen(s) != 10)
		return false;
	snprintf(t, sizeof t, "%sT00:00:00Z", s);
	return cqrs_timestamp_normalize(t, strlen(t), out) == 0;
}

/* A time for --from/--to of orders: a date means the start (or, for --to,
 * the end) of that day, UTC. */
static const char *time_arg(const char *opt, const char *arg, bool end,
			    char out[CQRS_TIMESTAMP_LEN + 1])
{
	if (is_date(arg))
		snprintf(out, CQRS_TIMESTAMP_LEN + 1, "%sT%s", arg,
			 end ? "23:59:59.999999Z" : "00:00:00.000000Z");
	else if (cqrs_timestamp_normalize(arg, strlen(arg), out) < 0)
		cqrs_die(CQRS_EXIT_USAGE, "%s: not a date or an RFC 3339 time: '%s'", opt, arg);
	return out;
}

int main(int argc, char **argv)
{
	enum {
		OPT_AS_OF = 256,
		OPT_STATUS,
		OPT_FROM,
		OPT_TO,
		OPT_OFFSET,
		OPT_AFTER,
		OPT_CURRENCY,
		OPT_TOTAL,
		OPT_VIEWS,
		OPT_TIMEOUT,
		OPT_METRICS_DIR,
		OPT_UPCASTERS
	};
	static const struct option longopts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "as-of", required_argument, NULL, OPT_AS_OF },
		{ "status", required_argument, NULL, OPT_STATUS },
		{ "from", required_argument, NULL, OPT_FROM },
		{ "to", required_argument, NULL, OPT_TO },
		{ "limit", required_argument, NULL, 'n' },
		{ "offset", required_argument, NULL, OPT_OFFSET },
		{ "after", required_argument, NULL, OPT_AFTER },
		{ "currency", required_argument, NULL, OPT_CURRENCY },
		{ "total", no_argument, NULL, OPT_TOTAL },
		{ "store", required_argument, NULL, 's' },
		{ "views", required_argument, NULL, OPT_VIEWS },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "log-format", required_argument, NULL, 'L' },
		{ "metrics-dir", required_argument, NULL, OPT_METRICS_DIR },
		{ "upcasters", required_argument, NULL, OPT_UPCASTERS },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	cqrs_query q = { .limit = 0, .timeout_ms = DEFAULT_TIMEOUT_S * 1000 };
	const char *store_opt = NULL, *views_opt = NULL, *format = NULL, *metrics_dir = NULL;
	cqrs_tool_init("cqrs-query"); /* first: a message names the tool */
	/* --upcasters; static: reachable until exit, whichever way the tool ends */
	static char **upcasters;
	upcasters = calloc((size_t)argc, sizeof *upcasters);
	int nupcasters = 0;
	if (upcasters == NULL)
		cqrs_die(CQRS_EXIT_OSERR, "out of memory");
	const char *from_arg = NULL, *to_arg = NULL, *as_of = NULL;
	char status[16], currency[4], as_of_time[CQRS_TIMESTAMP_LEN + 1];
	unsigned given = 0;
	int ch;

	cqrs_log_scan_args(argc, argv);
	/* before anything opens a database */
	if (cqrs_views_memory_limit(MEMORY_LIMIT) < 0)
		cqrs_die(CQRS_EXIT_SOFTWARE, "cannot set the memory limit");
	/* options may follow the query's name; "--" ends them, for sql
	 * parameters that start with '-' */
	while ((ch = cqrs_getopt_long(argc, argv, "f:n:s:hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'f': format = optarg; break;
		case 'L': cqrs_log_format_option(optarg); break;
		case OPT_AS_OF:
			as_of = optarg;
			given |= O_AS_OF;
			break;
		case OPT_STATUS: {
			size_t n = strlen(optarg);
			static const char *const known[] = { "PENDING", "CONFIRMED", "PAID",
							     "SHIPPED", "CANCELLED" };
			bool ok = false;
			for (size_t i = 0; i < n && i < sizeof status - 1; i++)
				status[i] = (char)toupper((unsigned char)optarg[i]);
			status[n < sizeof status ? n : sizeof status - 1] = '\0';
			for (size_t i = 0; i < 5; i++)
				ok = ok || (n < sizeof status && strcmp(status, known[i]) == 0);
			if (!ok)
				cqrs_die(CQRS_EXIT_USAGE,
					 "--status: not a status: '%s' (PENDING, CONFIRMED, PAID, "
					 "SHIPPED or CANCELLED)",
					 optarg);
			q.status = status;
			given |= O_STATUS;
			break;
		}
		case OPT_FROM:
			from_arg = optarg;
			given |= O_FROM;
			break;
		case OPT_TO:
			to_arg = optarg;
			given |= O_TO;
			break;
		case 'n':
			q.limit = count_arg("--limit", optarg, true);
			given |= O_LIMIT;
			break;
		case OPT_OFFSET:
			q.offset = count_arg("--offset", optarg, false);
			given |= O_OFFSET;
			break;
		case OPT_AFTER:
			q.after = optarg;
			given |= O_AFTER;
			break;
		case OPT_CURRENCY:
			for (int i = 0; i < 3 && optarg[i] != '\0'; i++)
				currency[i] = (char)toupper((unsigned char)optarg[i]);
			currency[3] = '\0';
			if (strlen(optarg) != 3 || !cqrs_currency_valid(currency))
				cqrs_die(CQRS_EXIT_USAGE,
					 "--currency: not a currency code: '%s' (three letters)",
					 optarg);
			q.currency = currency;
			given |= O_CURRENCY;
			break;
		case OPT_TOTAL:
			q.total = true;
			given |= O_TOTAL;
			break;
		case 's': store_opt = optarg; break;
		case OPT_VIEWS: views_opt = optarg; break;
		case OPT_METRICS_DIR: metrics_dir = optarg; break;
		case OPT_UPCASTERS: upcasters[nupcasters++] = optarg; break;
		case OPT_TIMEOUT:
			q.timeout_ms = count_arg("--timeout", optarg, false);
			if (q.timeout_ms > INT64_MAX / 1000)
				cqrs_die(CQRS_EXIT_USAGE, "--timeout: too large: '%s'", optarg);
			q.timeout_ms *= 1000;
			break;
		case 'h': usage(0); break;
		case 'V': cqrs_print_version(); return cqrs_finish_stdout(0);
		default: usage(CQRS_EXIT_USAGE);
		}
	}
	if (optind >= argc)
		cqrs_die(CQRS_EXIT_USAGE, "what to query is missing\n%s", usage_text);
	const struct command *cmd = NULL;
	for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
		if (strcmp(argv[optind], commands[i].name) == 0)
			cmd = &commands[i];
	if (cmd == NULL) {
		cqrs_warn("unknown query '%s' (order, orders, customer, summary, inventory, sales, "
			  "products or sql)",
			  argv[optind]);
		return cqrs_finish_stdout(CQRS_EXIT_USAGE);
	}
	int nargs = argc - optind - 1;
	char **args = argv + optind + 1;
	if (nargs < cmd->min_args)
		cqrs_die(CQRS_EXIT_USAGE, "%s: %s is missing\n%s", cmd->name,
			 cmd->kind == CQRS_QUERY_SQL	 ? "the statement"
			 : cmd->kind == CQRS_QUERY_ORDER ? "the order id or number"
							 : "the customer id",
			 usage_text);
	if (cmd->max_args >= 0 && nargs > cmd->max_args)
		cqrs_die(CQRS_EXIT_USAGE, "%s: unexpected operand '%s'", cmd->name,
			 args[cmd->max_args]);
	for (size_t i = 0; i < sizeof option_names / sizeof *option_names; i++)
		if ((given & (1u << i)) && !(cmd->opts & (1u << i)))
			cqrs_die(CQRS_EXIT_USAGE, "%s does not go with %s", option_names[i],
				 cmd->name);
	if ((given & O_AFTER) && (given & O_OFFSET))
		cqrs_die(CQRS_EXIT_USAGE, "--after and --offset go alone");
	q.kind = cmd->kind;
	if (nargs > 0)
		q.id = args[0];
	if (cmd->kind == CQRS_QUERY_SQL) {
		q.args = args + 1;
		q.nargs = nargs - 1;
	}

	char from[CQRS_TIMESTAMP_LEN + 1], to[CQRS_TIMESTAMP_LEN + 1];
	if (cmd->kind == CQRS_QUERY_ORDERS) {
		if (from_arg != NULL)
			q.from = time_arg("--from", from_arg, false, from);
		if (to_arg != NULL)
			q.to = time_arg("--to", to_arg, true, to);
	} else {
		if (from_arg != NULL && !is_date(from_arg))
			cqrs_die(CQRS_EXIT_USAGE, "--from: not a date (YYYY-MM-DD): '%s'",
				 from_arg);
		if (to_arg != NULL && !is_date(to_arg))
			cqrs_die(CQRS_EXIT_USAGE, "--to: not a date (YYYY-MM-DD): '%s'", to_arg);
		q.from = from_arg;
		q.to = to_arg;
	}
	if (q.limit == 0 && (cmd->kind == CQRS_QUERY_ORDERS || cmd->kind == CQRS_QUERY_CUSTOMER))
		q.limit = 100;
	if (as_of != NULL) {
		if (cqrs_parse_int64(as_of, &q.as_of_seq) == 0) {
			if (q.as_of_seq == 0)
				cqrs_die(CQRS_EXIT_USAGE, "--as-of needs a sequence of at least 1");
		} else if (cqrs_timestamp_normalize(as_of, strlen(as_of), as_of_time) == 0) {
			q.as_of = as_of_time;
		} else {
			cqrs_die(CQRS_EXIT_USAGE,
				 "--as-of: not an RFC 3339 time or a sequence: '%s'", as_of);
		}
	}

	enum cqrs_format fmt = isatty(STDOUT_FILENO) ? CQRS_FORMAT_TABLE : CQRS_FORMAT_NDJSON;
	if (format != NULL) {
		if (strcmp(format, "ndjson") == 0)
			fmt = CQRS_FORMAT_NDJSON;
		else if (strcmp(format, "table") == 0)
			fmt = CQRS_FORMAT_TABLE;
		else if (strcmp(format, "csv") == 0)
			fmt = CQRS_FORMAT_CSV;
		else
			cqrs_die(CQRS_EXIT_USAGE,
				 "--format: not a format: '%s' (ndjson, table or csv)", format);
	}

	cqrs_error err = { 0 };
	if (cqrs_metrics_init(metrics_dir, &err) < 0)
		cqrs_die_error(&err);
	double started = cqrs_metrics_clock();
	int64_t n;
	const char *views = cqrs_views_path(views_opt);
	if (nupcasters > 0 && as_of == NULL)
		cqrs_die(CQRS_EXIT_USAGE, "--upcasters goes with --as-of");
	if (as_of != NULL) {
		/* the order is folded from the current form of its events */
		if (cqrs_upcasters_init(upcasters, nupcasters, &err) < 0)
			cqrs_die_error(&err);
		cqrs_store *st = cqrs_store_open(cqrs_store_path(store_opt), CQRS_OPEN_READ, &err);
		/* as of: the projections' current form, decrypted and upcast */
		if (st == NULL || cqrs_store_decrypt(st, &err) < 0 ||
		    cqrs_upcast_attach(st, &err) < 0)
			cqrs_die_error(&err);
		cqrs_projections *ps = cqrs_projections_new();
		char shipped[4096];
		if (ps == NULL ||
		    cqrs_projections_load(
			    ps, cqrs_share_path("projections/orders.yaml", shipped, sizeof shipped),
			    &err) < 0)
			cqrs_die_error(&err);
		n = cqrs_query_order_as_of(views, st, ps, &q, fmt, stdout, &err);
		cqrs_projections_free(ps);
		cqrs_store_close(st);
	} else {
		n = cqrs_query_run(views, &q, fmt, stdout, &err);
	}
	/* an answer, "not found" included, is timed; a failure is not */
	if (n >= 0 || err.code == CQRS_EXIT_NOT_FOUND)
		cqrs_metrics_observe(
			cqrs_metrics_series(CQRS_METRIC_QUERY_DURATION, cmd->name, NULL),
			cqrs_metrics_clock() - started);
	if (n < 0)
		cqrs_die_error(&err);
	return cqrs_finish_stdout(CQRS_EXIT_OK);
}
