/* cqrs-backup: an online backup of the store, and its restore. */
#include "config.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cqrs.h"
#include "banned.h"

static const char usage_text[] =
	"usage: cqrs-backup [--force] [--signing-key file] [-s store]\n"
	"                   [--log-format text|json] file\n"
	"       cqrs-backup -f ndjson [--since seq:hash] [--force] [--signing-key file]\n"
	"                   [-s store] [--log-format text|json] [file]\n"
	"       cqrs-backup --restore [--public-key file] [-s store]\n"
	"                   [--log-format text|json] [backup]\n";

static void usage(int code)
{
	cqrs_print_usage(usage_text, code);
	if (code == 0)
		fputs("\n"
		      "  -f, --format FORMAT        sqlite (one SQLite file, the default) or "
		      "ndjson\n"
		      "                             (on standard output without a file)\n"
		      "      --since SEQ:HASH       ndjson: only the events after this head, "
		      "which\n"
		      "                             an earlier backup printed\n"
		      "      --force                replace an existing backup file\n"
		      "      --signing-key FILE     sign the head the backup ends at with this\n"
		      "                             private key (default: $CQRS_SIGNING_KEY)\n"
		      "  -r, --restore              restore a backup (a file, or NDJSON on "
		      "standard\n"
		      "                             input) into the store, which must not exist\n"
		      "                             (an incremental backup: which it goes onto)\n"
		      "      --public-key FILE      with --restore: the backup must carry a head\n"
		      "                             signed by this key, and end there\n"
		      "  -s, --store PATH           event store (default: $CQRS_STORE)\n"
		      "      --log-format FORMAT    messages as text or json lines (default:\n"
		      "                             $CQRS_LOG_FORMAT, else text)\n"
		      "  -h, --help                 show this help\n"
		      "  -V, --version              show the version\n",
		      stdout);
	exit(code);
}

enum { OPT_SINCE = 256, OPT_FORCE, OPT_LOG_FORMAT, OPT_SIGNING_KEY, OPT_PUBLIC_KEY };

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "since", required_argument, NULL, OPT_SINCE },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "signing-key", required_argument, NULL, OPT_SIGNING_KEY },
		{ "public-key", required_argument, NULL, OPT_PUBLIC_KEY },
		{ "restore", no_argument, NULL, 'r' },
		{ "store", required_argument, NULL, 's' },
		{ "log-format", required_argument, NULL, OPT_LOG_FORMAT },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *store_opt = NULL;
	struct cqrs_backup_options o = { .format = CQRS_BACKUP_SQLITE };
	struct cqrs_head since;
	bool restore = false, format_given = false;
	const char *key_path = NULL, *public_path = NULL;
	int ch;

	cqrs_tool_init("cqrs-backup");
	cqrs_log_scan_args(argc, argv);
	while ((ch = cqrs_getopt_long(argc, argv, "f:rs:hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'f':
			if (strcmp(optarg, "sqlite") == 0)
				o.format = CQRS_BACKUP_SQLITE;
			else if (strcmp(optarg, "ndjson") == 0)
				o.format = CQRS_BACKUP_NDJSON;
			else
				cqrs_die(CQRS_EXIT_USAGE,
					 "--format must be sqlite or ndjson: '%.80s'", optarg);
			format_given = true;
			break;
		case OPT_SINCE:
			if (cqrs_head_parse(optarg, strlen(optarg), &since) < 0)
				cqrs_die(CQRS_EXIT_USAGE,
					 "--since needs SEQ:HASH (a sequence and 64 hex digits): "
					 "'%.80s'",
					 optarg);
			o.since = &since;
			break;
		case OPT_FORCE: o.force = true; break;
		case OPT_SIGNING_KEY: key_path = optarg; break;
		case OPT_PUBLIC_KEY: public_path = optarg; break;
		case 'r': restore = true; break;
		case 's': store_opt = optarg; break;
		case OPT_LOG_FORMAT: cqrs_log_format_option(optarg); break;
		case 'h': usage(0); break;
		case 'V': cqrs_print_version(); return cqrs_finish_stdout(0);
		default: usage(CQRS_EXIT_USAGE);
		}
	}
	const char *file = optind < argc ? argv[optind] : NULL;
	if (argc - optind > 1)
		cqrs_die(CQRS_EXIT_USAGE, "one file at most: '%.80s'", argv[optind + 1]);
	if (restore && (format_given || o.since != NULL || o.force || key_path != NULL))
		cqrs_die(CQRS_EXIT_USAGE, "--restore reads the format from the backup and takes "
					  "no --format, --since, --force or --signing-key");
	if (!restore && public_path != NULL)
		cqrs_die(CQRS_EXIT_USAGE, "--public-key goes with --restore");
	if (!restore && o.format == CQRS_BACKUP_SQLITE && (file == NULL || strcmp(file, "-") == 0))
		cqrs_die(CQRS_EXIT_USAGE,
			 "a SQLite backup needs a file (-f ndjson writes to standard output)");
	if (o.since != NULL && o.format != CQRS_BACKUP_NDJSON)
		cqrs_die(CQRS_EXIT_USAGE, "--since goes with -f ndjson");
	if (file != NULL && strcmp(file, "-") == 0)
		file = NULL;

	cqrs_error err = { 0 };
	if (!restore && key_path == NULL) {
		const char *env = getenv("CQRS_SIGNING_KEY");
		if (env != NULL && *env != '\0')
			key_path = env;
	}
	/* the key is loaded (and libhogweed with it) only to sign or check */
	cqrs_signing_key *key = NULL;
	cqrs_public_key pub;
	if (key_path != NULL && (key = cqrs_signing_key_load(key_path, &err)) == NULL)
		cqrs_die_error(&err);
	if (public_path != NULL && cqrs_public_key_load(public_path, &pub, &err) < 0)
		cqrs_die_error(&err);
	o.key = key;
	struct cqrs_head head;
	const char *store = cqrs_store_path(store_opt);
	int rc = restore ? cqrs_restore_signed(file, store, public_path != NULL ? &pub : NULL,
					       &head, &err)
			 : cqrs_backup(store, file, stdout, &o, &head, &err);
	cqrs_signing_key_free(key);
	if (rc < 0) {
		cqrs_log_error(&err);
		return cqrs_finish_stdout(err.code);
	}
	/* NDJSON on standard output carries its head in its trailer */
	if (restore || file != NULL) {
		char text[CQRS_HEAD_TEXT_LEN + 1];
		cqrs_head_format(&head, text);
		printf("%s\n", text);
	}
	return cqrs_finish_stdout(CQRS_EXIT_OK);
}
