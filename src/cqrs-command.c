/* cqrs-command: turn commands into events, or reject them, one result line each. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cqrs.h"
#include "banned.h"

static const char usage_text[] =
	"usage: cqrs-command [-nq] [-b count] [-c correlation-id] [-s store] [-u user]\n"
	"                    [--snapshot-every count] [--ignore-snapshots]\n"
	"                    [--metrics-dir dir] [--upcasters file] [file ...]\n"
	"       cqrs-command [-nq] [-c correlation-id] [-s store] [-u user]\n"
	"                    [--snapshot-every count] [--metrics-dir dir]\n"
	"                    [--upcasters file] [--command-id id] verb flag ...\n"
	"       cqrs-command [-s store] [--ignore-snapshots] [--upcasters file] show\n"
	"                    aggregate-id\n"
	"       cqrs-command lifecycle [--format man|dot|ndjson]\n";

static void usage(int code)
{
	cqrs_print_usage(usage_text, code);
	if (code == 0)
		fputs("\n"
		      "  -b, --batch COUNT          commands per transaction (default 4096)\n"
		      "  -c, --correlation-id ID    correlation id of commands that carry none\n"
		      "  -n, --dry-run              decide, print the results, store nothing\n"
		      "  -q, --quiet                print no result lines\n"
		      "  -s, --store PATH           event store (default: $CQRS_STORE)\n"
		      "  -u, --user USER            user_id of commands that carry none\n"
		      "      --snapshot-every N     snapshot an aggregate every N events (default\n"
		      "                             100; 0: never)\n"
		      "      --ignore-snapshots     load aggregates from their events alone\n"
		      "      --command-id ID        a verb's command_id (default: a new UUID)\n"
		      "      --traceparent TP       W3C trace context of commands that carry none\n"
		      "                             (default: $TRACEPARENT)\n"
		      "      --format FORMAT        lifecycle: man, dot or ndjson (default)\n"
		      "      --log-format FORMAT    messages as text or json lines (default:\n"
		      "                             $CQRS_LOG_FORMAT, else text)\n"
		      "      --metrics-dir DIR      add this run's metrics to "
		      "DIR/cqrs_command.prom\n"
		      "                             (default: $CQRS_METRICS_DIR)\n"
		      "  -h, --help                 show this help\n"
		      "  -V, --version              show the version\n"
		      "\n"
		      "\n"
		      "verbs and their flags ([] optional):\n"
		      "  create-order --customer ID --item PRODUCT:QTY:PRICE[:SKU] ... --currency "
		      "CUR\n"
		      "               (--ship-to NAME,STREET,CITY,POSTAL-CODE,COUNTRY |\n"
		      "                --street TEXT --city TEXT --zip CODE --country CODE\n"
		      "                [--recipient NAME] [--state TEXT])\n"
		      "               [--order UUID] [--payment-method TEXT] [--total AMOUNT]\n"
		      "  confirm-order --order UUID [--note TEXT]\n"
		      "  confirm-payment --order UUID --payment UUID --amount AMOUNT [--currency "
		      "CUR]\n"
		      "               [--payment-method TEXT]\n"
		      "  ship-order --order UUID --carrier NAME --tracking NUMBER [--shipped-at "
		      "TIME]\n"
		      "  cancel-order --order UUID --reason TEXT\n"
		      "  register-product --sku SKU --name NAME [--product UUID] [--quantity N]\n"
		      "  replenish-stock --product UUID --quantity N\n"
		      "  reserve-inventory --product UUID --order UUID --quantity N\n"
		      "  release-inventory --product UUID --order UUID [--quantity N]\n"
		      "  authorize-payment --order UUID --amount AMOUNT --currency CUR [--payment "
		      "UUID]\n"
		      "               [--payment-method TEXT] [--authorization TEXT]\n"
		      "  capture-payment --payment UUID [--amount AMOUNT]\n"
		      "  refund-payment --payment UUID --amount AMOUNT\n"
		      "  void-authorization --payment UUID\n"
		      "  cancel-payment --payment UUID [--reason TEXT]\n",
		      stdout);
	exit(code);
}

/* The friendly form's flags; each becomes one field of the command. */
enum flag {
	FL_COMMAND_ID,
	FL_CUSTOMER,
	FL_ITEM,
	FL_CURRENCY,
	FL_SHIP_TO,
	FL_ORDER,
	FL_NOTE,
	FL_PAYMENT,
	FL_AMOUNT,
	FL_CARRIER,
	FL_TRACKING,
	FL_SHIPPED_AT,
	FL_REASON,
	FL_SKU,
	FL_NAME,
	FL_PRODUCT,
	FL_QUANTITY,
	FL_PAYMENT_METHOD,
	FL_TOTAL,
	FL_AUTHORIZATION,
	FL_RECIPIENT,
	FL_STREET,
	FL_CITY,
	FL_STATE,
	FL_ZIP,
	FL_COUNTRY,
	FL_COUNT
};

static const struct {
	const char *option, *field;
	enum { TEXT, NUMBER, SPECIAL } kind;
} flags[FL_COUNT] = {
	[FL_COMMAND_ID] = { "command-id", "command_id", TEXT },
	[FL_CUSTOMER] = { "customer", "customer_id", TEXT },
	[FL_ITEM] = { "item", "items", SPECIAL },
	[FL_CURRENCY] = { "currency", "currency", TEXT },
	[FL_SHIP_TO] = { "ship-to", "shipping_address", SPECIAL },
	[FL_ORDER] = { "order", "order_id", TEXT },
	[FL_NOTE] = { "note", "note", TEXT },
	[FL_PAYMENT] = { "payment", "payment_id", TEXT },
	[FL_AMOUNT] = { "amount", "amount", NUMBER },
	[FL_CARRIER] = { "carrier", "carrier", TEXT },
	[FL_TRACKING] = { "tracking", "tracking_number", TEXT },
	[FL_SHIPPED_AT] = { "shipped-at", "shipped_at", TEXT },
	[FL_REASON] = { "reason", "reason", TEXT },
	[FL_SKU] = { "sku", "sku", TEXT },
	[FL_NAME] = { "name", "name", TEXT },
	[FL_PRODUCT] = { "product", "product_id", TEXT },
	[FL_QUANTITY] = { "quantity", "quantity", NUMBER },
	[FL_PAYMENT_METHOD] = { "payment-method", "payment_method", TEXT },
	[FL_TOTAL] = { "total", "total", NUMBER },
	[FL_AUTHORIZATION] = { "authorization", "authorization", TEXT },
	/* the address in parts, instead of --ship-to */
	[FL_RECIPIENT] = { "recipient", "name", SPECIAL },
	[FL_STREET] = { "street", "street", SPECIAL },
	[FL_CITY] = { "city", "city", SPECIAL },
	[FL_STATE] = { "state", "state", SPECIAL },
	[FL_ZIP] = { "zip", "postal_code", SPECIAL },
	[FL_COUNTRY] = { "country", "country", SPECIAL },
};

#define ADDRESS_PARTS                                                                              \
	(F(FL_RECIPIENT) | F(FL_STREET) | F(FL_CITY) | F(FL_STATE) | F(FL_ZIP) | F(FL_COUNTRY))

#define F(x) (1u << (x))

static const struct verb {
	const char *name, *type;
	unsigned required, optional;
} verbs[] = {
	/* the address: --ship-to, or its parts (build_command checks which) */
	{ "create-order", "CreateOrder", F(FL_CUSTOMER) | F(FL_ITEM) | F(FL_CURRENCY),
	  F(FL_ORDER) | F(FL_SHIP_TO) | ADDRESS_PARTS | F(FL_PAYMENT_METHOD) | F(FL_TOTAL) },
	{ "confirm-order", "ConfirmOrder", F(FL_ORDER), F(FL_NOTE) },
	{ "confirm-payment", "ConfirmPayment", F(FL_ORDER) | F(FL_PAYMENT) | F(FL_AMOUNT),
	  F(FL_CURRENCY) | F(FL_PAYMENT_METHOD) },
	{ "ship-order", "ShipOrder", F(FL_ORDER) | F(FL_CARRIER) | F(FL_TRACKING),
	  F(FL_SHIPPED_AT) },
	{ "cancel-order", "CancelOrder", F(FL_ORDER) | F(FL_REASON), 0 },
	{ "register-product", "RegisterProduct", F(FL_SKU) | F(FL_NAME),
	  F(FL_PRODUCT) | F(FL_QUANTITY) },
	{ "replenish-stock", "ReplenishStock", F(FL_PRODUCT) | F(FL_QUANTITY), 0 },
	{ "reserve-inventory", "ReserveInventory", F(FL_PRODUCT) | F(FL_ORDER) | F(FL_QUANTITY),
	  0 },
	{ "release-inventory", "ReleaseInventory", F(FL_PRODUCT) | F(FL_ORDER), F(FL_QUANTITY) },
	{ "authorize-payment", "AuthorizePayment", F(FL_ORDER) | F(FL_AMOUNT) | F(FL_CURRENCY),
	  F(FL_PAYMENT) | F(FL_PAYMENT_METHOD) | F(FL_AUTHORIZATION) },
	{ "capture-payment", "CapturePayment", F(FL_PAYMENT), F(FL_AMOUNT) },
	{ "refund-payment", "RefundPayment", F(FL_PAYMENT) | F(FL_AMOUNT), 0 },
	{ "void-authorization", "VoidAuthorization", F(FL_PAYMENT), 0 },
	{ "cancel-payment", "CancelPayment", F(FL_PAYMENT), F(FL_REASON) },
};

static const struct verb *find_verb(const char *name)
{
	for (size_t i = 0; i < sizeof verbs / sizeof *verbs; i++)
		if (strcmp(verbs[i].name, name) == 0)
			return &verbs[i];
	return NULL;
}

/* A JSON number as RFC 8259 writes it, so that it can go in raw. */
static bool json_number(const char *s, size_t n)
{
	size_t i = 0;
	if (i < n && s[i] == '-')
		i++;
	if (i >= n || s[i] < '0' || s[i] > '9')
		return false;
	if (s[i] == '0')
		i++;
	else
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	if (i < n && s[i] == '.') {
		size_t d = ++i;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == d)
			return false;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		size_t d = i;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == d)
			return false;
	}
	return i == n;
}

static void put_string(FILE *f, const char *s)
{
	cqrs_json_write_string(f, s, strlen(s));
}

static void put_number(FILE *f, const char *option, const char *s)
{
	if (!json_number(s, strlen(s)))
		cqrs_die(CQRS_EXIT_USAGE, "--%s needs a number: '%s'", option, s);
	fputs(s, f);
}

/* PRODUCT:QTY:PRICE[:SKU] */
static void put_item(FILE *f, const char *arg)
{
	const char *p[4] = { arg, NULL, NULL, NULL };
	size_t n[4] = { 0 };
	int k = 0;
	for (const char *s = arg;; s++) {
		if (*s == '\0' || (*s == ':' && k < 3)) {
			n[k] = (size_t)(s - p[k]);
			if (*s == '\0')
				break;
			p[++k] = s + 1;
		}
	}
	if (k < 2)
		cqrs_die(CQRS_EXIT_USAGE, "--item needs PRODUCT:QUANTITY:PRICE[:SKU]: '%s'", arg);
	if (!json_number(p[1], n[1]) || !json_number(p[2], n[2]))
		cqrs_die(CQRS_EXIT_USAGE, "--item: quantity and price must be numbers: '%s'", arg);
	fputs("{\"product_id\":", f);
	cqrs_json_write_string(f, p[0], n[0]);
	fputs(",\"quantity\":", f);
	fwrite(p[1], 1, n[1], f);
	fputs(",\"unit_price\":", f);
	fwrite(p[2], 1, n[2], f);
	if (k == 3) {
		fputs(",\"sku\":", f);
		cqrs_json_write_string(f, p[3], n[3]);
	}
	fputc('}', f);
}

/* NAME,STREET,CITY,POSTAL-CODE,COUNTRY */
static void put_address(FILE *f, const char *arg)
{
	static const char *const parts[] = { "name", "street", "city", "postal_code", "country" };
	const char *s = arg;
	/* a JSON object has commas too, and would be cut into five strange
	 * fields: the flag's form, or the NDJSON form of the command */
	if (arg[strspn(arg, " \t")] == '{')
		cqrs_die(CQRS_EXIT_USAGE,
			 "--ship-to takes NAME,STREET,CITY,POSTAL-CODE,COUNTRY, not JSON (an "
			 "address object goes in the command's NDJSON form): '%s'",
			 arg);
	fputc('{', f);
	for (int i = 0; i < 5; i++) {
		const char *e = i < 4 ? strchr(s, ',') : s + strlen(s);
		if (e == NULL || (i == 4 && strchr(s, ',') != NULL))
			cqrs_die(CQRS_EXIT_USAGE,
				 "--ship-to needs NAME,STREET,CITY,POSTAL-CODE,COUNTRY: '%s'", arg);
		fprintf(f, "%s\"%s\":", i ? "," : "", parts[i]);
		cqrs_json_write_string(f, s, (size_t)(e - s));
		s = e + 1;
	}
	fputc('}', f);
}

struct friendly {
	const char *value[FL_COUNT];
	const char **items;
	size_t nitems;
	unsigned given;
};

/* A flag's value must be text: bytes that are not UTF-8 are bad input
 * named as the flag, not as a column of the JSON made from it. */
static void need_utf8(const struct verb *v, const char *option, const char *s)
{
	size_t n = strlen(s), ok = cqrs_utf8_valid_prefix(s, n);
	if (ok < n)
		cqrs_die(CQRS_EXIT_DATAERR, "%s: --%s: not valid UTF-8 (byte %zu)", v->name, option,
			 ok + 1);
}

/* The friendly form becomes the same command object NDJSON input holds. */
static char *build_command(const struct verb *v, const struct friendly *fr, size_t *len)
{
	for (int i = 0; i < FL_COUNT; i++)
		if ((fr->given & F(i)) && i != FL_ITEM && fr->value[i] != NULL)
			need_utf8(v, flags[i].option, fr->value[i]);
	for (size_t k = 0; k < fr->nitems; k++)
		need_utf8(v, "item", fr->items[k]);
	unsigned missing = v->required & ~fr->given;
	unsigned extra = fr->given & ~(v->required | v->optional | F(FL_COMMAND_ID));
	for (int i = 0; i < FL_COUNT; i++) {
		if (missing & F(i))
			cqrs_die(CQRS_EXIT_USAGE, "%s needs --%s", v->name, flags[i].option);
		if (extra & F(i))
			cqrs_die(CQRS_EXIT_USAGE, "%s takes no --%s", v->name, flags[i].option);
	}
	if (v->optional & F(FL_SHIP_TO)) {
		unsigned parts = fr->given & ADDRESS_PARTS;
		if ((fr->given & F(FL_SHIP_TO)) && parts != 0)
			cqrs_die(CQRS_EXIT_USAGE,
				 "%s takes --ship-to or the address in parts, "
				 "not both",
				 v->name);
		unsigned need = F(FL_STREET) | F(FL_CITY) | F(FL_ZIP) | F(FL_COUNTRY);
		for (int i = 0; !(fr->given & F(FL_SHIP_TO)) && i < FL_COUNT; i++)
			if ((need & F(i)) && !(parts & F(i)))
				cqrs_die(CQRS_EXIT_USAGE, "%s needs --ship-to or --%s", v->name,
					 flags[i].option);
	}
	char *buf = NULL;
	size_t size = 0;
	FILE *f = cqrs_memstream(&buf, &size);
	if (f == NULL)
		cqrs_die(CQRS_EXIT_OSERR, "out of memory");
	/* cqrs_die does not return, which cppcheck cannot see */
	/* cppcheck-suppress nullPointerRedundantCheck */
	fputs("{\"command_id\":", f);
	if (fr->given & F(FL_COMMAND_ID)) {
		put_string(f, fr->value[FL_COMMAND_ID]);
	} else {
		uint8_t id[CQRS_UUID_LEN];
		char text[37];
		cqrs_uuid_generate(id);
		cqrs_uuid_format(id, text);
		put_string(f, text);
	}
	fprintf(f, ",\"type\":\"%s\"", v->type);
	for (int i = 0; i < FL_COUNT; i++) {
		if (i == FL_COMMAND_ID || !(fr->given & F(i)) || (ADDRESS_PARTS & F(i)))
			continue;
		fprintf(f, ",\"%s\":", flags[i].field);
		if (i == FL_ITEM) {
			fputc('[', f);
			for (size_t k = 0; k < fr->nitems; k++) {
				if (k > 0)
					fputc(',', f);
				put_item(f, fr->items[k]);
			}
			fputc(']', f);
		} else if (i == FL_SHIP_TO) {
			put_address(f, fr->value[i]);
		} else if (flags[i].kind == NUMBER) {
			put_number(f, flags[i].option, fr->value[i]);
		} else {
			put_string(f, fr->value[i]);
		}
	}
	if (fr->given & ADDRESS_PARTS) {
		const char *sep = "";
		fputs(",\"shipping_address\":{", f);
		for (int i = FL_RECIPIENT; i <= FL_COUNTRY; i++) {
			if (!(fr->given & F(i)))
				continue;
			fprintf(f, "%s\"%s\":", sep, flags[i].field);
			put_string(f, fr->value[i]);
			sep = ",";
		}
		fputc('}', f);
	}
	fputc('}', f);
	if (fclose(f) != 0) /* cqrs_memstream: EOF when a write was lost */
		cqrs_die(CQRS_EXIT_OSERR, "out of memory");
	*len = size;
	return buf;
}

static void print_result(const cqrs_command_result *res, bool quiet)
{
	if (quiet || cqrs_stdout_gone())
		return;
	fwrite(res->line, 1, res->len, stdout);
	putchar('\n');
}

/* The exit status says the worst that happened: bad input, then a conflict
 * given up on, then a rejection. */
static int worse(int a, int b)
{
	static const int order[] = { CQRS_EXIT_OK, CQRS_EXIT_REJECTED, CQRS_EXIT_CONFLICT,
				     CQRS_EXIT_DATAERR };
	int ra = 0, rb = 0;
	for (int i = 0; i < 4; i++) {
		if (order[i] == a)
			ra = i;
		if (order[i] == b)
			rb = i;
	}
	return rb > ra ? b : a;
}

static int run_friendly(cqrs_commander *cmd, const struct verb *v, char *line, size_t len,
			bool quiet)
{
	cqrs_command_result res;
	cqrs_error err = { 0 };
	if (cqrs_commander_handle(cmd, line, len, &res, &err) < 0) {
		free(line);
		cqrs_warn("%s: %s", v->name, err.msg);
		return err.code;
	}
	free(line);
	print_result(&res, quiet);
	int code = res.status == CQRS_COMMAND_REJECTED ? CQRS_EXIT_REJECTED : CQRS_EXIT_OK;
	cqrs_command_result_free(&res);
	return code;
}

struct batch {
	cqrs_command_result *res;
	size_t n, cap;
};

/* After a commit: the results go out at once, so that whoever waits on
 * them (a person, a pipeline) sees each batch as soon as it is durable. */
static void flush_results(struct batch *b, bool quiet)
{
	for (size_t i = 0; i < b->n; i++) {
		print_result(&b->res[i], quiet);
		cqrs_command_result_free(&b->res[i]);
	}
	b->n = 0;
	if (!quiet)
		fflush(stdout);
}

static void drop_results(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		cqrs_command_result_free(&b->res[i]);
	b->n = 0;
}

static int run_stream(cqrs_commander *cmd, cqrs_input *in, int64_t batch_size, bool quiet)
{
	struct batch b = { 0 };
	b.cap = (size_t)batch_size;
	b.res = calloc(b.cap, sizeof *b.res);
	if (b.res == NULL)
		cqrs_die(CQRS_EXIT_OSERR, "out of memory");
	cqrs_error err = { 0 };
	int code = CQRS_EXIT_OK, r;
	int64_t committed = 0;
	bool in_batch = false;
	char *line;
	size_t len;
	char where[512] = "";

	while ((r = cqrs_input_next(in, &line, &len, &err)) != 0) {
		if (r < 0) {
			/* A line too long is bad input like any other, and reading
			 * resumes after it; an unreadable file ends the run. */
			if (err.code != CQRS_EXIT_DATAERR)
				goto fail;
			cqrs_warn("%s", err.msg);
			code = worse(code, err.code);
		} else {
			if (!in_batch) {
				if (cqrs_commander_begin(cmd, &err) < 0)
					goto fail;
				in_batch = true;
			}
			cqrs_command_result *res = &b.res[b.n];
			if (cqrs_commander_handle(cmd, line, len, res, &err) == 0) {
				if (res->status == CQRS_COMMAND_REJECTED)
					code = worse(code, CQRS_EXIT_REJECTED);
				b.n++;
			} else if (err.code == CQRS_EXIT_DATAERR ||
				   err.code == CQRS_EXIT_CONFLICT) {
				/* this command changed nothing; the others go on */
				cqrs_warn("%s:%ld: %s", cqrs_input_name(in), cqrs_input_lineno(in),
					  err.msg);
				code = worse(code, err.code);
			} else {
				snprintf(where, sizeof where, "%s:%ld: ", cqrs_input_name(in),
					 cqrs_input_lineno(in));
				goto fail;
			}
		}
		/* Commit when the batch is full or the writer pauses: no result
		 * is printed before its events are durable, and none waits long. */
		if (in_batch && (b.n == b.cap || !cqrs_input_ready(in))) {
			in_batch = false;
			if (cqrs_commander_commit(cmd, &err) < 0)
				goto fail;
			committed += (int64_t)b.n;
			flush_results(&b, quiet);
			if (cqrs_stdout_gone())
				break;
		}
	}
	if (in_batch) {
		if (cqrs_commander_commit(cmd, &err) < 0)
			goto fail;
		committed += (int64_t)b.n;
		flush_results(&b, quiet);
	}
	free(b.res);
	return code;
fail:
	cqrs_commander_rollback(cmd);
	drop_results(&b);
	free(b.res);
	cqrs_warn("%s%s", where, err.msg);
	if (committed > 0)
		cqrs_warn("the %lld commands before it were handled and their results printed; "
			  "the others in its batch were not stored",
			  (long long)committed);
	return err.code;
}

/* A dry run on a store that does not exist yet decides against an empty
 * store, and must not create one (nor the default directory): it gets a
 * private one in a temporary directory, removed at exit. */
static char dry_dir[4096];

static void remove_dry_store(void)
{
	static const char *const files[] = { "events.db", "events.db-wal", "events.db-shm",
					     "events.db.witness" };
	char p[sizeof dry_dir + 32];
	for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
		snprintf(p, sizeof p, "%s/%s", dry_dir, files[i]);
		unlink(p);
	}
	rmdir(dry_dir);
}

static const char *dry_run_store(const char *path)
{
	struct stat sb;
	if (cqrs_store_on_server(path)) {
		/* a PostgreSQL store the dry run decides against, if its schema
		 * is there: opening it to write would create it */
		cqrs_error err = { 0 };
		cqrs_store *st = cqrs_store_open(path, CQRS_OPEN_READ, &err);
		if (st != NULL)
			cqrs_store_close(st);
		if (st != NULL || err.code != CQRS_EXIT_NOINPUT)
			return path; /* the real open says what else is wrong */
	} else if (stat(path, &sb) == 0 || errno != ENOENT) {
		return path;
	}
	const char *tmp = getenv("TMPDIR");
	snprintf(dry_dir, sizeof dry_dir, "%s/cqrs-dry-run-XXXXXX",
		 tmp != NULL && tmp[0] == '/' ? tmp : "/tmp");
	if (mkdtemp(dry_dir) == NULL)
		cqrs_die(CQRS_EXIT_CANTCREAT, "%s: cannot make a directory for the dry run: %s",
			 dry_dir, strerror(errno));
	atexit(remove_dry_store);
	static char store[sizeof dry_dir + 16];
	snprintf(store, sizeof store, "%s/events.db", dry_dir);
	return store;
}

int main(int argc, char **argv)
{
	enum {
		OPT_SNAPSHOT_EVERY = 256,
		OPT_IGNORE_SNAPSHOTS,
		OPT_FORMAT,
		OPT_TRACEPARENT,
		OPT_METRICS_DIR,
		OPT_UPCASTERS,
		OPT_FLAG_BASE = 512
	};
	static const struct option fixed[] = {
		{ "batch", required_argument, NULL, 'b' },
		{ "correlation-id", required_argument, NULL, 'c' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "format", required_argument, NULL, OPT_FORMAT },
		{ "quiet", no_argument, NULL, 'q' },
		{ "store", required_argument, NULL, 's' },
		{ "user", required_argument, NULL, 'u' },
		{ "snapshot-every", required_argument, NULL, OPT_SNAPSHOT_EVERY },
		{ "ignore-snapshots", no_argument, NULL, OPT_IGNORE_SNAPSHOTS },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "traceparent", required_argument, NULL, OPT_TRACEPARENT },
		{ "log-format", required_argument, NULL, 'L' },
		{ "metrics-dir", required_argument, NULL, OPT_METRICS_DIR },
		{ "upcasters", required_argument, NULL, OPT_UPCASTERS },
	};
	enum { NFIXED = sizeof fixed / sizeof fixed[0] };
	/* the fixed options, then one per field flag (--customer, ...) */
	struct option longopts[NFIXED + FL_COUNT + 1];
	memcpy(longopts, fixed, sizeof fixed);
	for (int i = 0; i < FL_COUNT; i++)
		longopts[NFIXED + i] = (struct option){ flags[i].option, required_argument, NULL,
							OPT_FLAG_BASE + i };
	longopts[NFIXED + FL_COUNT] = (struct option){ NULL, 0, NULL, 0 };
	const char *format = NULL;
	const char *store_opt = NULL, *metrics_dir = NULL;
	struct cqrs_command_options opt = { .snapshot_every = CQRS_SNAPSHOT_EVERY_DEFAULT };
	int64_t batch = 4096;
	bool quiet = false;
	struct friendly fr = { 0 };
	int ch;

	cqrs_tool_init("cqrs-command");
	cqrs_log_scan_args(argc, argv);
	fr.items = calloc((size_t)argc, sizeof *fr.items);
	/* static: reachable until exit, whichever way the tool ends */
	static char **upcasters;
	upcasters = calloc((size_t)argc, sizeof *upcasters);
	int nupcasters = 0;
	if (fr.items == NULL || upcasters == NULL)
		cqrs_die(CQRS_EXIT_OSERR, "out of memory");
	while ((ch = cqrs_getopt_long(argc, argv, "b:c:nqs:u:hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'b':
			if (cqrs_parse_int64(optarg, &batch) < 0 || batch == 0 || batch > 100000)
				cqrs_die(CQRS_EXIT_USAGE,
					 "--batch needs a count from 1 to 100000: '%s'", optarg);
			break;
		case 'c':
			if (*optarg == '\0' || strlen(optarg) > 128)
				cqrs_die(CQRS_EXIT_USAGE,
					 "--correlation-id needs 1 to 128 bytes: '%s'", optarg);
			opt.correlation_id = optarg;
			break;
		case 'n': opt.dry_run = true; break;
		case OPT_FORMAT: format = optarg; break;
		case 'L': cqrs_log_format_option(optarg); break;
		case 'q': quiet = true; break;
		case 's': store_opt = optarg; break;
		case 'u':
			if (*optarg == '\0' || strlen(optarg) > 128)
				cqrs_die(CQRS_EXIT_USAGE, "--user needs 1 to 128 bytes: '%s'",
					 optarg);
			opt.user_id = optarg;
			break;
		case OPT_SNAPSHOT_EVERY:
			if (cqrs_parse_int64(optarg, &opt.snapshot_every) < 0)
				cqrs_die(CQRS_EXIT_USAGE,
					 "--snapshot-every needs a non-negative count: '%s'",
					 optarg);
			break;
		case OPT_IGNORE_SNAPSHOTS: opt.ignore_snapshots = true; break;
		case OPT_TRACEPARENT: opt.traceparent = optarg; break;
		case OPT_METRICS_DIR: metrics_dir = optarg; break;
		case OPT_UPCASTERS: upcasters[nupcasters++] = optarg; break;
		case 'h': usage(0); break;
		case 'V':
			free(fr.items);
			free(upcasters);
			cqrs_print_version();
			return cqrs_finish_stdout(0);
		default:
			if (ch >= OPT_FLAG_BASE && ch < OPT_FLAG_BASE + FL_COUNT) {
				int f = ch - OPT_FLAG_BASE;
				if (f == FL_ITEM)
					fr.items[fr.nitems++] = optarg;
				else if (fr.given & F(f))
					cqrs_die(CQRS_EXIT_USAGE, "--%s given twice",
						 flags[f].option);
				fr.value[f] = optarg;
				fr.given |= F(f);
				break;
			}
			usage(CQRS_EXIT_USAGE);
		}
	}

	if (optind < argc && strcmp(argv[optind], "lifecycle") == 0) {
		if (optind + 1 != argc) {
			cqrs_warn("unexpected operand '%s'", argv[optind + 1]);
			usage(CQRS_EXIT_USAGE);
		}
		free(fr.items);
		free(upcasters);
		cqrs_error lerr = { 0 };
		if (cqrs_lifecycle_print(stdout, format != NULL ? format : "ndjson", &lerr) < 0)
			cqrs_die_error(&lerr);
		return cqrs_finish_stdout(0);
	}
	if (format != NULL)
		cqrs_die(CQRS_EXIT_USAGE, "--format belongs to lifecycle");
	const struct verb *verb = NULL;
	bool show = false;
	if (optind < argc) {
		verb = find_verb(argv[optind]);
		show = strcmp(argv[optind], "show") == 0;
	}
	if (verb == NULL && fr.given != 0) {
		for (int i = 0; i < FL_COUNT; i++)
			if (fr.given & F(i))
				cqrs_die(CQRS_EXIT_USAGE, "--%s needs a verb such as create-order",
					 flags[i].option);
	}
	if ((verb != NULL || show) && optind + 1 + show != argc) {
		cqrs_warn("unexpected operand '%s'", argv[optind + 1 + show]);
		usage(CQRS_EXIT_USAGE);
	}
	if (show && optind + 1 >= argc)
		usage(CQRS_EXIT_USAGE);
	uint8_t show_id[CQRS_UUID_LEN];
	if (show && cqrs_uuid_parse(argv[optind + 1], strlen(argv[optind + 1]), show_id) < 0)
		cqrs_die(CQRS_EXIT_USAGE, "show needs an aggregate id (a UUID): '%s'",
			 argv[optind + 1]);

	/* Usage errors come before the store is touched.  TRACEPARENT is
	 * OpenTelemetry's environment propagation of the W3C header. */
	const char *tp_env = getenv("TRACEPARENT");
	bool tp_from_env = opt.traceparent == NULL && tp_env != NULL && *tp_env != '\0';
	if (tp_from_env)
		opt.traceparent = tp_env;
	struct cqrs_traceparent tp;
	cqrs_error tperr = { 0 };
	if (opt.traceparent != NULL &&
	    cqrs_traceparent_parse(opt.traceparent, strlen(opt.traceparent), &tp, &tperr) < 0)
		cqrs_die(CQRS_EXIT_USAGE, "%s%s", tp_from_env ? "$TRACEPARENT: " : "--", tperr.msg);
	char *friendly_line = NULL;
	size_t friendly_len = 0;
	if (verb != NULL)
		friendly_line = build_command(verb, &fr, &friendly_len);

	cqrs_error err = { 0 };
	if (cqrs_metrics_init(metrics_dir, &err) < 0)
		cqrs_die_error(&err);
	opt.record_metrics = true;
	/* aggregates are folded from the current form of their events */
	if (cqrs_upcasters_init(upcasters, nupcasters, &err) < 0)
		cqrs_die_error(&err);
	const char *path = cqrs_store_path(store_opt);
	if (opt.dry_run && !show)
		path = dry_run_store(path);
	cqrs_store *st = cqrs_store_open(path, show ? CQRS_OPEN_READ : CQRS_OPEN_WRITE, &err);
	/* aggregates load the current form: personal fields decrypted, then
	 * old versions upcast */
	if (st == NULL || cqrs_store_decrypt(st, &err) < 0 || cqrs_upcast_attach(st, &err) < 0)
		cqrs_die_error(&err);
	cqrs_commander *cmd = cqrs_commander_new(st, &opt, &err);
	if (cmd == NULL)
		cqrs_die_error(&err);

	int code;
	if (show) {
		char *json = NULL;
		code = CQRS_EXIT_OK;
		if (cqrs_commander_state(cmd, show_id, &json, &err) < 0) {
			cqrs_warn("%s", err.msg);
			code = err.code;
		} else {
			puts(json);
			free(json);
		}
	} else if (verb != NULL) {
		code = run_friendly(cmd, verb, friendly_line, friendly_len, quiet);
	} else {
		cqrs_input *in = cqrs_input_open(argv + optind, argc - optind);
		if (in == NULL)
			cqrs_die(CQRS_EXIT_OSERR, "out of memory");
		code = run_stream(cmd, in, batch, quiet);
		cqrs_input_close(in);
	}
	cqrs_commander_free(cmd);
	cqrs_store_close(st);
	free(fr.items);
	free(upcasters);
	return cqrs_finish_stdout(code);
}
