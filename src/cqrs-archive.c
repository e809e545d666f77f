/* cqrs-archive: moves old events into compressed segments, lists them,
 * and checks a segment on its own. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cqrs.h"
#include "banned.h"

static const char usage_text[] =
	"usage: cqrs-archive --upto seq [-s store] [--dir dir] [--views file]\n"
	"                    [--checkpoint-dir dir] [--signing-key file]\n"
	"                    [--segment-events n] [--vacuum] [--log-format text|json]\n"
	"       cqrs-archive list [-s store] [--log-format text|json]\n"
	"       cqrs-archive check [--public-key file] [--log-format text|json] segment...\n";

static void usage(int code)
{
	cqrs_print_usage(usage_text, code);
	if (code == 0)
		fputs("\n"
		      "  list                       the store's segments, one NDJSON line each\n"
		      "  check                      a segment file on its own: its chain, and its\n"
		      "                             signed head (SEGMENT.head) with --public-key\n"
		      "\n"
		      "  -u, --upto SEQ             archive the events up to this sequence (the\n"
		      "                             last event always stays in the store)\n"
		      "  -d, --dir DIR              where segments go (default: STORE.archive)\n"
		      "      --views PATH           read models whose checkpoints must have "
		      "passed\n"
		      "                             SEQ (default: $CQRS_VIEWS, when it exists)\n"
		      "      --checkpoint-dir DIR   where named consumers' positions are, which\n"
		      "                             must have passed SEQ (default: as cqrs-read)\n"
		      "      --signing-key FILE     sign each segment's head with this key\n"
		      "                             (default: $CQRS_SIGNING_KEY)\n"
		      "      --segment-events N     events per segment file (default: 100000)\n"
		      "      --vacuum               then rewrite the store to give back the space\n"
		      "      --public-key FILE      check: the key the segment's head is signed "
		      "by\n"
		      "  -s, --store PATH           event store (default: $CQRS_STORE)\n"
		      "      --log-format FORMAT    messages as text or json lines (default:\n"
		      "                             $CQRS_LOG_FORMAT, else text)\n"
		      "  -h, --help                 show this help\n"
		      "  -V, --version              show the version\n",
		      stdout);
	exit(code);
}

enum {
	OPT_VIEWS = 256,
	OPT_CHECKPOINT_DIR,
	OPT_SIGNING_KEY,
	OPT_SEGMENT_EVENTS,
	OPT_PUBLIC_KEY,
	OPT_VACUUM,
	OPT_LOG_FORMAT,
};

struct consumers {
	struct cqrs_archive_consumer *v;
	size_t n;
};

static void add_consumer(struct consumers *c, const char *what, const char *name, int64_t seq)
{
	struct cqrs_archive_consumer *v = realloc(c->v, (c->n + 1) * sizeof *v);
	if (v != NULL) {
		c->v = v;
		snprintf(v[c->n].name, sizeof v[c->n].name, "%s '%s'", what, name);
		v[c->n++].sequence = seq;
		return;
	}
	cqrs_die(CQRS_EXIT_OSERR, "out of memory");
}

static void add_projection(void *arg, const struct cqrs_view_lag *lag)
{
	add_consumer(arg, "projection", lag->projection, lag->checkpoint);
}

/* The projections of the views file, when there is one. */
static void views_consumers(const char *option, cqrs_store *st, struct consumers *c)
{
	const char *views = cqrs_views_path(option);
	if (option == NULL && access(views, F_OK) != 0)
		return;
	cqrs_error err = { 0 };
	if (cqrs_views_lag_each(views, st, add_projection, c, &err) < 0)
		cqrs_die_error(&err);
}

/* The named consumers of this store (cqrs-read --checkpoint): the
 * positions in the directory that belong to it. */
static void named_consumers(const char *option, cqrs_store *st, const char *store_path,
			    struct consumers *c)
{
	char buf[PATH_MAX];
	const char *dir = cqrs_position_dir(option, buf, sizeof buf);
	DIR *d = dir != NULL ? opendir(dir) : NULL;
	if (d == NULL) {
		if (option != NULL)
			cqrs_die(CQRS_EXIT_NOINPUT, "%s: %s", option, strerror(errno));
		return;
	}
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		if (n <= 4 || strcmp(e->d_name + n - 4, ".pos") != 0 || e->d_name[0] == '.')
			continue;
		char name[CQRS_POSITION_NAME_MAX + 1];
		if (n - 4 > CQRS_POSITION_NAME_MAX)
			continue;
		snprintf(name, sizeof name, "%.*s", (int)(n - 4), e->d_name);
		cqrs_error err = { 0 };
		cqrs_position *p = cqrs_position_open(dir, name, 0, &err);
		if (p == NULL)
			cqrs_die_error(&err);
		if (cqrs_position_check_store(p, st, store_path, &err) == 0)
			add_consumer(c, "checkpoint", name, cqrs_position_sequence(p));
		else if (err.code != CQRS_EXIT_CONFIG) /* 78: another store's */
			cqrs_die_error(&err);
		cqrs_position_close(p);
	}
	closedir(d);
}

static int check_segments(int argc, char **argv, const char *public_path)
{
	cqrs_public_key pub;
	cqrs_error err = { 0 };
	if (public_path != NULL && cqrs_public_key_load(public_path, &pub, &err) < 0)
		cqrs_die_error(&err);
	if (argc == 0)
		cqrs_die(CQRS_EXIT_USAGE, "check needs a segment file");
	int code = CQRS_EXIT_OK;
	for (int i = 0; i < argc; i++) {
		err = (cqrs_error){ 0 };
		if (cqrs_archive_check(argv[i], public_path ? &pub : NULL, stdout, &err) < 0) {
			cqrs_log_error(&err);
			if (code == CQRS_EXIT_OK)
				code = err.code;
		}
	}
	return cqrs_finish_stdout(code);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "upto", required_argument, NULL, 'u' },
		{ "dir", required_argument, NULL, 'd' },
		{ "views", required_argument, NULL, OPT_VIEWS },
		{ "checkpoint-dir", required_argument, NULL, OPT_CHECKPOINT_DIR },
		{ "signing-key", required_argument, NULL, OPT_SIGNING_KEY },
		{ "segment-events", required_argument, NULL, OPT_SEGMENT_EVENTS },
		{ "public-key", required_argument, NULL, OPT_PUBLIC_KEY },
		{ "vacuum", no_argument, NULL, OPT_VACUUM },
		{ "store", required_argument, NULL, 's' },
		{ "log-format", required_argument, NULL, OPT_LOG_FORMAT },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *store_opt = NULL, *views_opt = NULL, *positions_opt = NULL;
	const char *key_path = NULL, *public_path = NULL;
	struct cqrs_archive_options o = { .upto = -1 };
	int ch;

	cqrs_tool_init("cqrs-archive");
	cqrs_log_scan_args(argc, argv);
	while ((ch = cqrs_getopt_long(argc, argv, "u:d:s:hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'u':
			if (cqrs_parse_int64(optarg, &o.upto) < 0 || o.upto < 1)
				cqrs_die(CQRS_EXIT_USAGE,
					 "--upto needs a sequence (1 or more): '%.80s'", optarg);
			break;
		case 'd': o.dir = optarg; break;
		case OPT_VIEWS: views_opt = optarg; break;
		case OPT_CHECKPOINT_DIR: positions_opt = optarg; break;
		case OPT_SIGNING_KEY: key_path = optarg; break;
		case OPT_SEGMENT_EVENTS:
			if (cqrs_parse_int64(optarg, &o.segment_events) < 0 || o.segment_events < 1)
				cqrs_die(CQRS_EXIT_USAGE,
					 "--segment-events needs a count (1 or more): '%.80s'",
					 optarg);
			break;
		case OPT_PUBLIC_KEY: public_path = optarg; break;
		case OPT_VACUUM: o.vacuum = true; break;
		case 's': store_opt = optarg; break;
		case OPT_LOG_FORMAT: cqrs_log_format_option(optarg); break;
		case 'h': usage(0); break;
		case 'V': cqrs_print_version(); return cqrs_finish_stdout(0);
		default: usage(CQRS_EXIT_USAGE);
		}
	}
	const char *sub = optind < argc ? argv[optind] : NULL;
	bool archiving =
		o.upto > 0 || key_path || views_opt || positions_opt || o.dir || o.segment_events;
	if (sub != NULL && strcmp(sub, "check") == 0) {
		if (archiving || store_opt)
			cqrs_die(CQRS_EXIT_USAGE,
				 "check takes segment files and --public-key only");
		return check_segments(argc - optind - 1, argv + optind + 1, public_path);
	}
	if (public_path != NULL)
		cqrs_die(CQRS_EXIT_USAGE, "--public-key goes with check");
	bool list = sub != NULL && strcmp(sub, "list") == 0;
	if (sub != NULL && (!list || argc - optind > 1))
		cqrs_die(CQRS_EXIT_USAGE, "unknown subcommand or operand: '%.80s'",
			 list ? argv[optind + 1] : sub);
	if (list && archiving)
		cqrs_die(CQRS_EXIT_USAGE, "list takes --store only");
	if (!list && o.upto < 0)
		cqrs_die(CQRS_EXIT_USAGE, "--upto SEQ says how far to archive");

	/* the owner's key, as cqrs-read --verify finds it: every segment signed */
	const char *env_key = getenv("CQRS_SIGNING_KEY");
	if (key_path == NULL && !list && env_key != NULL && *env_key != '\0')
		key_path = env_key;
	cqrs_error err = { 0 };
	const char *store_path = cqrs_store_path(store_opt);
	cqrs_signing_key *key = NULL;
	if (key_path != NULL && (key = cqrs_signing_key_load(key_path, &err)) == NULL)
		cqrs_die_error(&err);
	cqrs_store *st = cqrs_store_open(store_path, list ? CQRS_OPEN_READ : CQRS_OPEN_WRITE, &err);
	if (st == NULL)
		cqrs_die_error(&err);
	int rc;
	if (list) {
		rc = cqrs_archive_list(st, stdout, &err);
	} else {
		struct consumers c = { 0 };
		views_consumers(views_opt, st, &c);
		named_consumers(positions_opt, st, store_path, &c);
		o.consumers = c.v;
		o.nconsumers = c.n;
		o.key = key;
		o.report = stdout;
		rc = cqrs_archive(st, store_path, &o, &err);
		free(c.v);
	}
	cqrs_store_close(st);
	cqrs_signing_key_free(key);
	if (rc < 0) {
		cqrs_log_error(&err);
		return cqrs_finish_stdout(err.code);
	}
	return cqrs_finish_stdout(CQRS_EXIT_OK);
}
