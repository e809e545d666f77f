/* cqrs-relay: events across machines through NATS JetStream. */
#include "config.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cqrs.h"
#include "banned.h"

static const char usage_text[] =
	"usage: cqrs-relay publish [--follow] [--from seq] [--window n]\n"
	"                  [--format envelope|cloudevents] [-s store] [connection]\n"
	"       cqrs-relay replicate [--follow] [--durable name] [--ack-wait ms]\n"
	"                  [-s replica] [connection]\n"
	"       cqrs-relay consume [--follow] [--durable name] [--ack-wait ms] [connection]\n"
	"       cqrs-relay create-stream [--duplicate-window seconds] [connection]\n"
	"connection: [--server url] [--stream name] [--subject-prefix prefix]\n"
	"            [--creds file] [--nkey-seed file] [--user name] [--password-file file]\n"
	"            [--tls-ca file] [--tls-cert file] [--tls-key file] [--retries n]\n"
	"            [--metrics-dir dir] [--log-format text|json] [-q]\n";

static void usage(int code)
{
	cqrs_print_usage(usage_text, code);
	if (code == 0)
		fputs("\n"
		      "  publish                    the store's events to the stream, from the\n"
		      "                             relay's position (kept in the store)\n"
		      "  replicate                  the stream's events into a replica store\n"
		      "  consume                    the stream's events as NDJSON on standard "
		      "output\n"
		      "  create-stream              make the stream (file storage)\n"
		      "  -f, --follow               keep going as events come\n"
		      "  -q, --quiet                no summary line on standard output (cron)\n"
		      "      --from SEQ             publish the events after SEQ (a replica's "
		      "head)\n"
		      "      --window N             publishes in flight (default: 256)\n"
		      "      --format FORMAT        envelope (default) or cloudevents\n"
		      "      --durable NAME         the durable consumer (default: cqrs-replica)\n"
		      "      --ack-wait MS          redelivery after a crash (default: 10000)\n"
		      "      --duplicate-window S   repeats dropped within S seconds (default: "
		      "120)\n"
		      "      --server URL           NATS server (default: $CQRS_NATS_URL, else\n"
		      "                             nats://127.0.0.1:4222)\n"
		      "      --stream NAME          JetStream stream (default: CQRS_EVENTS)\n"
		      "      --subject-prefix P     subjects P.TYPE.EVENT (default: cqrs.events)\n"
		      "      --creds FILE           NATS credentials file\n"
		      "      --nkey-seed FILE       a user nkey's seed (SU...), for an nkey login\n"
		      "      --user NAME            user (default: $CQRS_NATS_USER)\n"
		      "      --password-file FILE   password on its first line (default:\n"
		      "                             $CQRS_NATS_PASSWORD)\n"
		      "      --tls-ca FILE          TLS: the server's CA certificates\n"
		      "      --tls-cert FILE        TLS: client certificate chain\n"
		      "      --tls-key FILE         TLS: client key\n"
		      "      --retries N            reconnections before exit 69 (default: 5)\n"
		      "  -s, --store PATH           event store, or the replica (default: "
		      "$CQRS_STORE)\n"
		      "      --metrics-dir DIR      add this run's metrics to DIR/cqrs_relay.prom\n"
		      "                             (default: $CQRS_METRICS_DIR)\n"
		      "      --log-format FORMAT    messages as text or json lines (default:\n"
		      "                             $CQRS_LOG_FORMAT, else text)\n"
		      "  -h, --help                 show this help\n"
		      "  -V, --version              show the version\n",
		      stdout);
	exit(code);
}

enum {
	OPT_FROM = 256,
	OPT_WINDOW,
	OPT_FORMAT,
	OPT_DURABLE,
	OPT_ACK_WAIT,
	OPT_DUP_WINDOW,
	OPT_SERVER,
	OPT_STREAM,
	OPT_PREFIX,
	OPT_CREDS,
	OPT_USER,
	OPT_PASSWORD_FILE,
	OPT_TLS_CA,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_RETRIES,
	OPT_LOG_FORMAT,
	OPT_NKEY_SEED,
	OPT_METRICS_DIR,
};

static int64_t number(const char *opt, const char *arg, int64_t min)
{
	int64_t v;
	if (cqrs_parse_int64(arg, &v) < 0 || v < min)
		cqrs_die(CQRS_EXIT_USAGE, "%s needs a whole number of at least %lld: '%.80s'", opt,
			 (long long)min, arg);
	return v;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "follow", no_argument, NULL, 'f' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "from", required_argument, NULL, OPT_FROM },
		{ "window", required_argument, NULL, OPT_WINDOW },
		{ "format", required_argument, NULL, OPT_FORMAT },
		{ "durable", required_argument, NULL, OPT_DURABLE },
		{ "ack-wait", required_argument, NULL, OPT_ACK_WAIT },
		{ "duplicate-window", required_argument, NULL, OPT_DUP_WINDOW },
		{ "server", required_argument, NULL, OPT_SERVER },
		{ "stream", required_argument, NULL, OPT_STREAM },
		{ "subject-prefix", required_argument, NULL, OPT_PREFIX },
		{ "creds", required_argument, NULL, OPT_CREDS },
		{ "user", required_argument, NULL, OPT_USER },
		{ "password-file", required_argument, NULL, OPT_PASSWORD_FILE },
		{ "tls-ca", required_argument, NULL, OPT_TLS_CA },
		{ "tls-cert", required_argument, NULL, OPT_TLS_CERT },
		{ "tls-key", required_argument, NULL, OPT_TLS_KEY },
		{ "retries", required_argument, NULL, OPT_RETRIES },
		{ "store", required_argument, NULL, 's' },
		{ "log-format", required_argument, NULL, OPT_LOG_FORMAT },
		{ "nkey-seed", required_argument, NULL, OPT_NKEY_SEED },
		{ "metrics-dir", required_argument, NULL, OPT_METRICS_DIR },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct cqrs_relay_options o;
	cqrs_relay_options_init(&o);
	const char *store_opt = NULL, *metrics_dir = NULL;
	bool quiet = false;
	int ch;

	cqrs_tool_init("cqrs-relay");
	cqrs_log_scan_args(argc, argv);
	while ((ch = cqrs_getopt_long(argc, argv, "fqs:hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'f': o.follow = true; break;
		case 'q': quiet = true; break;
		case OPT_FROM: o.from = number("--from", optarg, 0); break;
		case OPT_WINDOW: o.window = number("--window", optarg, 1); break;
		case OPT_FORMAT:
			if (strcmp(optarg, "cloudevents") == 0)
				o.cloudevents = true;
			else if (strcmp(optarg, "envelope") != 0)
				cqrs_die(CQRS_EXIT_USAGE,
					 "--format must be envelope or cloudevents: '%.80s'",
					 optarg);
			break;
		case OPT_DURABLE: o.durable = optarg; break;
		case OPT_ACK_WAIT: o.ack_wait_ms = number("--ack-wait", optarg, 100); break;
		case OPT_DUP_WINDOW:
			o.duplicate_window_s = number("--duplicate-window", optarg, 1);
			break;
		case OPT_SERVER: o.server = optarg; break;
		case OPT_STREAM: o.stream = optarg; break;
		case OPT_PREFIX: o.subject_prefix = optarg; break;
		case OPT_CREDS: o.creds_file = optarg; break;
		case OPT_USER: o.user = optarg; break;
		case OPT_PASSWORD_FILE: o.password_file = optarg; break;
		case OPT_TLS_CA: o.tls_ca = optarg; break;
		case OPT_TLS_CERT: o.tls_cert = optarg; break;
		case OPT_TLS_KEY: o.tls_key = optarg; break;
		case OPT_RETRIES: o.retries = (int)number("--retries", optarg, 0); break;
		case 's': store_opt = optarg; break;
		case OPT_LOG_FORMAT: cqrs_log_format_option(optarg); break;
		case OPT_NKEY_SEED: o.nkey_seed_file = optarg; break;
		case OPT_METRICS_DIR: metrics_dir = optarg; break;
		case 'h': usage(0); break;
		case 'V': cqrs_print_version(); return cqrs_finish_stdout(0);
		default: usage(CQRS_EXIT_USAGE);
		}
	}
	if (optind >= argc)
		cqrs_die(CQRS_EXIT_USAGE,
			 "a subcommand: publish, replicate, consume or create-stream");
	if (argc - optind > 1)
		cqrs_die(CQRS_EXIT_USAGE, "one subcommand: '%.80s'", argv[optind + 1]);
	if (o.window > 65536 || o.retries > 1000)
		cqrs_die(CQRS_EXIT_USAGE, "--window is at most 65536, --retries at most 1000");
	/* libnats keeps one of the two: a creds file replaces an nkey */
	if (o.creds_file != NULL && o.nkey_seed_file != NULL)
		cqrs_die(CQRS_EXIT_USAGE, "--creds and --nkey-seed are two logins: one of them");
	const char *cmd = argv[optind];
	bool publish = strcmp(cmd, "publish") == 0;
	if (!publish && (o.from >= 0 || o.cloudevents))
		cqrs_die(CQRS_EXIT_USAGE, "--from and --format go with publish");
	cqrs_error err = { 0 };
	if (cqrs_metrics_init(metrics_dir, &err) < 0)
		cqrs_die_error(&err);
	/* the summary line is for a person; cron mails whatever is printed */
	o.report = quiet ? NULL : stdout;
	int rc;
	if (publish) {
		/* the store must exist; the relay's position is written in it */
		const char *path = cqrs_store_path(store_opt);
		cqrs_store *st = cqrs_store_open(path, CQRS_OPEN_READ, &err);
		if (st != NULL) {
			cqrs_store_close(st);
			st = cqrs_store_open(path, CQRS_OPEN_WRITE, &err);
		}
		if (st == NULL)
			cqrs_die_error(&err);
		rc = cqrs_relay_publish(st, &o, &err);
		cqrs_store_close(st);
	} else if (strcmp(cmd, "replicate") == 0) {
		rc = cqrs_relay_replicate(cqrs_store_path(store_opt), &o, &err);
	} else if (strcmp(cmd, "consume") == 0) {
		o.report = NULL;
		rc = cqrs_relay_consume(stdout, &o, &err);
	} else if (strcmp(cmd, "create-stream") == 0) {
		rc = cqrs_relay_create_stream(&o, &err);
	} else {
		cqrs_die(CQRS_EXIT_USAGE, "unknown subcommand '%.80s'", cmd);
	}
	cqrs_relay_shutdown();
	if (rc < 0)
		cqrs_die_error(&err);
	return cqrs_finish_stdout(0);
}
