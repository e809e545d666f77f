/* cqrs-erase: erase a data subject's personal fields by deleting their key
 * (crypto-shredding), and the declarations of which fields are personal. */
#include "config.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cqrs.h"
#include "banned.h"

static const char usage_text[] =
	"usage: cqrs-erase [-s store] [--log-format text|json] subject\n"
	"       cqrs-erase --fields [-s store] [--log-format text|json]\n"
	"       cqrs-erase --declare type.field=subject [-s store] [--log-format text|json]\n"
	"       cqrs-erase --purge [-s store] [--log-format text|json]\n";

static void usage(int code)
{
	cqrs_print_usage(usage_text, code);
	if (code == 0)
		fputs("\n"
		      "      --fields               list the personal fields the store declares\n"
		      "      --declare DECLARATION  declare a field personal: TYPE.FIELD=SUBJECT,\n"
		      "                             SUBJECT data.MEMBER or aggregate\n"
		      "      --purge                truncate the write-ahead log (after exit 75)\n"
		      "  -s, --store PATH           event store (default: $CQRS_STORE)\n"
		      "      --log-format FORMAT    messages as text or json lines (default:\n"
		      "                             $CQRS_LOG_FORMAT, else text)\n"
		      "  -h, --help                 show this help\n"
		      "  -V, --version              show the version\n",
		      stdout);
	exit(code);
}

enum { OPT_FIELDS = 256, OPT_DECLARE, OPT_PURGE, OPT_LOG_FORMAT };

static int declare(cqrs_store *st, const char *text, cqrs_error *err)
{
	char buf[3 * (CQRS_MAX_TYPE_NAME + 8)];
	if (strlen(text) >= sizeof buf)
		return cqrs_fail(err, CQRS_EXIT_USAGE, "--declare: too long: '%.80s'", text);
	snprintf(buf, sizeof buf, "%s", text);
	char *eq = strchr(buf, '='), *dot = strchr(buf, '.');
	if (eq == NULL || dot == NULL || dot > eq)
		return cqrs_fail(err, CQRS_EXIT_USAGE,
				 "--declare needs TYPE.FIELD=SUBJECT (SUBJECT: data.MEMBER or "
				 "aggregate): '%.80s'",
				 text);
	*dot = '\0';
	*eq = '\0';
	return cqrs_personal_declare(st, buf, dot + 1, eq + 1, err);
}

static void report(const char *subject, const struct cqrs_erase_report *r)
{
	fputs("{\"subject\":", stdout);
	cqrs_json_write_string(stdout, subject, strlen(subject));
	printf(",\"erased_at\":\"%s\",\"plaintext_events\":%lld,\"plaintext_sequences\":[",
	       r->erased_at, (long long)r->nplaintext);
	for (int64_t i = 0; i < r->nplaintext && i < CQRS_ERASE_LISTED; i++)
		printf("%s%lld", i ? "," : "", (long long)r->plaintext[i]);
	puts("]}");
	if (r->nplaintext > 0)
		cqrs_warn("warning: subject '%s': %lld events hold its personal fields in "
			  "plaintext (stored before they were encrypted, first sequence %lld): "
			  "the chain covers them, so they stay",
			  subject, (long long)r->nplaintext, (long long)r->plaintext[0]);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "fields", no_argument, NULL, OPT_FIELDS },
		{ "declare", required_argument, NULL, OPT_DECLARE },
		{ "purge", no_argument, NULL, OPT_PURGE },
		{ "store", required_argument, NULL, 's' },
		{ "log-format", required_argument, NULL, OPT_LOG_FORMAT },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *store_opt = NULL, *declaration = NULL;
	bool fields = false, purge = false;
	int ch;

	cqrs_tool_init("cqrs-erase");
	cqrs_log_scan_args(argc, argv);
	while ((ch = cqrs_getopt_long(argc, argv, "s:hV", longopts, NULL)) != -1) {
		switch (ch) {
		case OPT_FIELDS: fields = true; break;
		case OPT_DECLARE: declaration = optarg; break;
		case OPT_PURGE: purge = true; break;
		case 's': store_opt = optarg; break;
		case OPT_LOG_FORMAT: cqrs_log_format_option(optarg); break;
		case 'h': usage(0); break;
		case 'V': cqrs_print_version(); return cqrs_finish_stdout(0);
		default: usage(CQRS_EXIT_USAGE);
		}
	}
	int modes = fields + purge + (declaration != NULL);
	if (modes > 1)
		cqrs_die(CQRS_EXIT_USAGE, "--fields, --declare and --purge go alone");
	if (modes == 1 && optind < argc)
		cqrs_die(CQRS_EXIT_USAGE, "no subject goes with --fields, --declare or --purge");
	if (modes == 0 && argc - optind != 1)
		cqrs_die(CQRS_EXIT_USAGE, "one subject to erase");

	cqrs_error err = { 0 };
	const char *path = cqrs_store_path(store_opt);
	/* every mode but --fields writes; the store must already exist */
	cqrs_store *st = cqrs_store_open(path, CQRS_OPEN_READ, &err);
	if (st != NULL && !fields) {
		cqrs_store_close(st);
		st = cqrs_store_open(path, CQRS_OPEN_WRITE, &err);
	}
	if (st == NULL) {
		cqrs_log_error(&err);
		return cqrs_finish_stdout(err.code);
	}
	int rc;
	struct cqrs_erase_report r;
	if (fields)
		rc = cqrs_personal_list(st, stdout, &err);
	else if (declaration != NULL)
		rc = declare(st, declaration, &err);
	else if (purge)
		rc = cqrs_erase_purge(st, &err);
	else if ((rc = cqrs_erase_subject(st, argv[optind], &r, &err)) == 0)
		report(argv[optind], &r);
	cqrs_store_close(st);
	if (rc < 0) {
		cqrs_log_error(&err);
		return cqrs_finish_stdout(err.code);
	}
	return cqrs_finish_stdout(CQRS_EXIT_OK);
}
