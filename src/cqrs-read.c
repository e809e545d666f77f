/* cqrs-read: stream events from the store as NDJSON, in sequence order. */
#include "config.h"

#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cqrs.h"
#include "banned.h"

static const char usage_text[] =
	"usage: cqrs-read [-fr] [-a id] [-c correlation-id] [-e event-type] [-n limit]\n"
	"                 [-s store] [-t aggregate-type] [--from seq | --after seq]\n"
	"                 [--to seq] [--until time] [--verify [--expect seq:hash]]\n"
	"                 [--upcast [--upcasters file]] [--decrypt]\n"
	"       cqrs-read --verify [-s store] [--expect seq:hash] [--signing-key file]\n"
	"                 [--expect-signed file --public-key file]\n"
	"       cqrs-read --checkpoint name [--checkpoint-dir dir] [-f] [-a id]\n"
	"                 [-c correlation-id] [-e event-type] [-n limit] [-s store]\n"
	"                 [-t aggregate-type] [--to seq]\n"
	"       cqrs-read --checkpoint name [--checkpoint-dir dir] [-s store]\n"
	"                 --position | --set-position seq\n";

static void usage(int code)
{
	cqrs_print_usage(usage_text, code);
	if (code == 0)
		fputs("\n"
		      "  -a, --aggregate ID         events of one aggregate (repeat: any of them)\n"
		      "  -t, --aggregate-type TYPE  events of aggregates of one type (repeat: "
		      "any)\n"
		      "  -e, --event-type TYPE      events of one type (repeat: any of them)\n"
		      "  -c, --correlation ID       events whose metadata.correlation_id is ID\n"
		      "                             (repeat: any of them)\n"
		      "      --from SEQ             from sequence SEQ on\n"
		      "      --after SEQ            after sequence SEQ\n"
		      "      --to SEQ               up to sequence SEQ\n"
		      "      --until TIME           up to an RFC 3339 time (the state as of then)\n"
		      "  -n, --limit N              at most N events\n"
		      "  -r, --reverse              newest first\n"
		      "  -f, --follow               keep printing events as they are appended\n"
		      "      --upcast               events at their newest version, not as stored\n"
		      "      --upcasters FILE       with --upcast: these upcasters too (repeat)\n"
		      "      --decrypt              personal fields decrypted (or \"[erased]\"),\n"
		      "                             not the stored form that copies carry\n"
		      "      --verify               check the hash chain of the whole store\n"
		      "      --expect SEQ:HASH      with --verify: the store must hold this event\n"
		      "      --signing-key FILE     with --verify: print the head signed with "
		      "this\n"
		      "                             private key (default: $CQRS_SIGNING_KEY)\n"
		      "      --expect-signed FILE   with --verify: the store must hold the signed\n"
		      "                             head in FILE, signed by --public-key's key\n"
		      "      --public-key FILE      the public key that checks --expect-signed\n"
		      "      --checkpoint NAME      a durable consumer: from where NAME stopped,\n"
		      "                             advancing over what the reader took\n"
		      "      --checkpoint-dir DIR   where positions are kept (default:\n"
		      "                             $CQRS_CHECKPOINT_DIR, else\n"
		      "                             $XDG_STATE_HOME/cqrs-tools/positions)\n"
		      "      --position             print NAME's position, read nothing\n"
		      "      --set-position SEQ     set NAME's position (0: before the first "
		      "event)\n"
		      "  -s, --store PATH           event store (default: $CQRS_STORE)\n"
		      "      --log-format FORMAT    messages as text or json lines (default:\n"
		      "                             $CQRS_LOG_FORMAT, else text)\n"
		      "  -h, --help                 show this help\n"
		      "  -V, --version              show the version\n",
		      stdout);
	exit(code);
}

static int64_t parse_seq(const char *opt, const char *arg)
{
	int64_t v;
	if (cqrs_parse_int64(arg, &v) < 0)
		cqrs_die(CQRS_EXIT_USAGE, "%s needs a non-negative integer: '%s'", opt, arg);
	return v;
}

static const char *parse_type(const char *opt, const char *arg)
{
	if (!cqrs_type_name_valid(arg, strlen(arg)))
		cqrs_die(CQRS_EXIT_USAGE, "%s: not a type name: '%s'", opt, arg);
	return arg;
}

/* SEQ:HASH, as cqrs-read --verify prints them; the empty store's head
 * (sequence 0) names no event to expect. */
static void parse_expect(const char *arg, int64_t *seq, uint8_t hash[CQRS_HASH_LEN])
{
	struct cqrs_head h;
	if (cqrs_head_parse(arg, strlen(arg), &h) < 0 || h.sequence == 0)
		cqrs_die(CQRS_EXIT_USAGE,
			 "--expect needs SEQ:HASH (a sequence and 64 hex digits): '%s'", arg);
	*seq = h.sequence;
	memcpy(hash, h.hash, CQRS_HASH_LEN);
}

/* --signing-key, --expect-signed and --public-key */
struct signing {
	const char *key_path, *head_path, *public_path;
	cqrs_signing_key *key;
	cqrs_public_key pub;
	struct cqrs_signed_head expected;
};

/* The keys and the head to check, read before the chain is walked, so
 * that a wrong file fails at once. */
static void signing_load(struct signing *s)
{
	cqrs_error err = { 0 };
	if (s->key_path != NULL && (s->key = cqrs_signing_key_load(s->key_path, &err)) == NULL)
		cqrs_die_error(&err);
	if (s->head_path == NULL)
		return;
	if (cqrs_public_key_load(s->public_path, &s->pub, &err) < 0 ||
	    cqrs_signed_head_read(s->head_path, &s->expected, &err) < 0)
		cqrs_die_error(&err);
	if (cqrs_signed_head_verify(&s->expected, &s->pub, &err) < 0)
		cqrs_die(err.code, "%s: %s", s->head_path, err.msg);
}

/* After the chain verified: the store must hold the head in --expect-signed. */
static int check_signed(const struct signing *s, cqrs_store *st, const char *path)
{
	cqrs_error err = { 0 };
	char what[4200];
	snprintf(what, sizeof what, "signed head %s", s->head_path);
	if (cqrs_signed_head_check_store(st, path, &s->expected, what, &err) < 0) {
		cqrs_warn("%s", err.msg);
		return err.code;
	}
	return CQRS_EXIT_OK;
}

/* The head the chain verified to, signed now: one JSON line on stdout. */
static int print_signed(const struct signing *s, cqrs_store *st, const cqrs_verify *v)
{
	cqrs_error err = { 0 };
	struct cqrs_signed_head h;
	char line[CQRS_SIGNED_HEAD_MAX];
	if (cqrs_signed_head_make(st, v, s->key, &h, &err) < 0) {
		cqrs_warn("%s", err.msg);
		return err.code;
	}
	size_t n = cqrs_signed_head_format(&h, line, sizeof line);
	printf("%.*s\n", (int)n, line);
	return CQRS_EXIT_OK;
}

static int verify(cqrs_store *st, const char *path, int64_t expect_seq,
		  const uint8_t expect_hash[CQRS_HASH_LEN], struct signing *sig)
{
	cqrs_error err = { 0 };
	cqrs_verify v;
	if (cqrs_store_verify(st, &v, &err) < 0)
		cqrs_die_error(&err);
	char hash[CQRS_HASH_LEN * 2 + 1] = "";
	if (v.checked > 0)
		cqrs_hash_format(v.hash, hash);
	if (v.bad != 0) {
		cqrs_warn("sequence %lld: %s", (long long)v.bad, v.why);
		if (v.checked > 0)
			cqrs_warn("verified %lld events up to there, head %s", (long long)v.checked,
				  hash);
		return CQRS_EXIT_DATAERR;
	}
	/* The witness of the last synced commit, when this user may read
	 * it, and the head the caller recorded. */
	if (cqrs_store_check_witness(st, path, &err) < 0 ||
	    cqrs_store_expect(st, path, expect_seq, expect_hash, "--expect", &err) < 0) {
		cqrs_warn("%s", err.msg);
		return err.code;
	}
	int code = sig->head_path != NULL ? check_signed(sig, st, path) : CQRS_EXIT_OK;
	if (code != CQRS_EXIT_OK)
		return code;
	if (sig->key != NULL)
		return print_signed(sig, st, &v);
	printf("verified %lld events%s%s\n", (long long)v.checked, v.checked ? ", head " : "",
	       hash);
	return CQRS_EXIT_OK;
}

/* One value goes in the single field, which the store's indexes serve
 * best; several in the lists, any of which matches. */
static void set_filters(cqrs_filter *f, uint8_t (*aggregates)[CQRS_UUID_LEN], size_t naggregates,
			const char **agg_types, size_t nagg_types, const char **ev_types,
			size_t nev_types, const char **corrs, size_t ncorrs)
{
	if (naggregates == 1)
		f->aggregate_id = aggregates[0];
	else if (naggregates > 1) {
		f->aggregate_ids = (const uint8_t(*)[CQRS_UUID_LEN])aggregates;
		f->naggregate_ids = naggregates;
	}
	if (nagg_types == 1)
		f->aggregate_type = agg_types[0];
	else {
		f->aggregate_types = agg_types;
		f->naggregate_types = nagg_types;
	}
	if (nev_types == 1)
		f->event_type = ev_types[0];
	else {
		f->event_types = ev_types;
		f->nevent_types = nev_types;
	}
	if (ncorrs == 1)
		f->correlation_id = corrs[0];
	else {
		f->correlation_ids = corrs;
		f->ncorrelation_ids = ncorrs;
	}
}

static void free_filters(void *aggregates, void *agg_types, void *ev_types, void *corrs)
{
	free(aggregates);
	free(agg_types);
	free(ev_types);
	free(corrs);
}

/* Signals and a vanished reader end a --follow; both arrive as fds. */
static int follow_fds(int fds[2])
{
	int n = 0;
	fds[n++] = cqrs_follow_signal_fd();
	/* Only a pipe or socket reports its reader going away; a terminal
	 * would report typing as readable. */
	struct stat sb;
	if (fstat(STDOUT_FILENO, &sb) == 0 && (S_ISFIFO(sb.st_mode) || S_ISSOCK(sb.st_mode)))
		fds[n++] = STDOUT_FILENO;
	return n;
}

/* --checkpoint: a named, durable consumer. */
struct checkpoint {
	const char *name, *dir_opt;
	bool show, set;
	int64_t set_seq;
};

/* Events per query round: the position is saved after each, so a crash
 * repeats at most this many, at the cost of one fsync per round. */
#define CHECKPOINT_BATCH 10000

static cqrs_position *checkpoint_open(const struct checkpoint *cp, unsigned flags)
{
	char buf[4096];
	const char *dir = cqrs_position_dir(cp->dir_opt, buf, sizeof buf);
	if (dir == NULL)
		cqrs_die(CQRS_EXIT_CONFIG, "no directory for positions: give --checkpoint-dir, "
					   "or set CQRS_CHECKPOINT_DIR or HOME");
	cqrs_error err = { 0 };
	cqrs_position *pos = cqrs_position_open(dir, cp->name, flags, &err);
	if (pos == NULL)
		cqrs_die_error(&err);
	return pos;
}

/* Saves what the reader has taken, if that moved. */
static int save_taken(cqrs_delivery *out, cqrs_position *pos, cqrs_error *err)
{
	int64_t seq;
	uint8_t hash[CQRS_HASH_LEN];
	int moved = cqrs_delivery_confirmed(out, &seq, hash, err);
	if (moved <= 0)
		return moved;
	return cqrs_position_save(pos, seq, hash, err);
}

/* One query round of at most CHECKPOINT_BATCH events after f->after;
 * returns how many it wrote, or -1 with *err (a write, the store).  When
 * the round reached the end of what the store held at its start, that
 * head is marked too, so that the position passes over the events the
 * filters left out. */
static int64_t consume_round(cqrs_store *st, cqrs_filter *f, int64_t left, cqrs_delivery *out,
			     cqrs_error *err)
{
	int64_t head;
	uint8_t head_hash[CQRS_HASH_LEN];
	if (cqrs_store_head(st, &head, head_hash, err) < 0)
		return -1;
	cqrs_filter now = *f;
	now.limit = left > 0 && left < CHECKPOINT_BATCH ? left : CHECKPOINT_BATCH;
	cqrs_cursor *c = cqrs_store_read(st, &now, err);
	if (c == NULL)
		return -1;
	cqrs_event ev;
	int64_t n = 0;
	int r, w = 0;
	while (w == 0 && (r = cqrs_cursor_next(c, &ev, err)) == 1) {
		w = cqrs_delivery_event(out, &ev, err);
		f->after = ev.sequence;
		n++;
	}
	cqrs_cursor_close(c);
	if (w < 0 || r < 0)
		return -1;
	if (w == 0 && n < now.limit && head > f->after && (f->to == 0 || head <= f->to)) {
		if (cqrs_delivery_mark(out, head, head_hash, err) < 0)
			return -1;
		f->after = head;
	} else if (w == 0 && n < now.limit && f->to > 0 && head > f->to) {
		/* scanned through --to: done, the position at the last event
		 * printed */
		f->after = f->to;
	}
	if (cqrs_delivery_flush(out, err) < 0)
		return -1;
	return n;
}

static int consume(cqrs_store *st, const char *store_path, cqrs_filter f, bool follow,
		   const struct checkpoint *cp)
{
	cqrs_error err = { 0 };
	cqrs_position *pos = checkpoint_open(cp, CQRS_POSITION_LOCK);
	if (cqrs_position_check_store(pos, st, store_path, &err) < 0)
		cqrs_die_error(&err);
	f.after = cqrs_position_sequence(pos);
	cqrs_delivery *out = cqrs_delivery_new(STDOUT_FILENO, &err);
	if (out == NULL)
		cqrs_die_error(&err);
	int fds[2], nfds = follow ? follow_fds(fds) : 0;
	int64_t printed = 0;
	int code = CQRS_EXIT_OK;
	bool stopped = false; /* a signal, or the reader went away */
	for (;;) {
		int64_t n = consume_round(st, &f, f.limit ? f.limit - printed : 0, out, &err);
		if (n < 0 || save_taken(out, pos, &err) < 0) {
			code = err.code;
			break;
		}
		printed += n;
		if (cqrs_delivery_gone(out) || (f.limit > 0 && printed >= f.limit) ||
		    (f.to > 0 && f.after >= f.to))
			break;
		if (n == CHECKPOINT_BATCH)
			continue; /* more to catch up on */
		if (!follow)
			break;
		/* While the reader empties the pipe, look again soon to save. */
		int w = cqrs_store_wait(st, cqrs_delivery_pending(out) ? 20 : 1000, fds, nfds,
					&err);
		if (w < 0) {
			code = err.code;
			break;
		}
		if (w == 2) {
			stopped = true;
			break;
		}
	}
	if (code == CQRS_EXIT_OK && !stopped)
		cqrs_delivery_drain(out);
	/* What the reader took before an error or a signal counts all the same. */
	cqrs_error serr = { 0 };
	if (save_taken(out, pos, &serr) < 0 && code == CQRS_EXIT_OK) {
		err = serr;
		code = serr.code;
	}
	if (code != CQRS_EXIT_OK)
		cqrs_warn("%s", err.msg);
	cqrs_delivery_free(out);
	cqrs_position_close(pos);
	return code;
}

/* --position and --set-position: the position itself, no events. */
static int checkpoint_admin(const char *store_opt, const struct checkpoint *cp)
{
	cqrs_error err = { 0 };
	if (cp->show) {
		cqrs_position *pos = checkpoint_open(cp, 0);
		cqrs_position_print(pos, stdout);
		cqrs_position_close(pos);
		return CQRS_EXIT_OK;
	}
	const char *path = cqrs_store_path(store_opt);
	cqrs_store *st = cqrs_store_open(path, CQRS_OPEN_READ, &err);
	if (st == NULL)
		cqrs_die_error(&err);
	cqrs_position *pos = checkpoint_open(cp, CQRS_POSITION_LOCK);
	int r = cqrs_position_set(pos, st, path, cp->set_seq, &err);
	cqrs_position_close(pos);
	cqrs_store_close(st);
	if (r < 0)
		cqrs_die_error(&err);
	return CQRS_EXIT_OK;
}

int main(int argc, char **argv)
{
	enum {
		OPT_FROM = 256,
		OPT_AFTER,
		OPT_TO,
		OPT_UNTIL,
		OPT_VERIFY,
		OPT_EXPECT,
		OPT_CHECKPOINT,
		OPT_CHECKPOINT_DIR,
		OPT_POSITION,
		OPT_SET_POSITION,
		OPT_SIGNING_KEY,
		OPT_EXPECT_SIGNED,
		OPT_PUBLIC_KEY,
		OPT_UPCAST,
		OPT_UPCASTERS,
		OPT_DECRYPT,
	};
	static const struct option longopts[] = {
		{ "aggregate", required_argument, NULL, 'a' },
		{ "aggregate-type", required_argument, NULL, 't' },
		{ "event-type", required_argument, NULL, 'e' },
		{ "correlation", required_argument, NULL, 'c' },
		{ "from", required_argument, NULL, OPT_FROM },
		{ "after", required_argument, NULL, OPT_AFTER },
		{ "to", required_argument, NULL, OPT_TO },
		{ "until", required_argument, NULL, OPT_UNTIL },
		{ "limit", required_argument, NULL, 'n' },
		{ "reverse", no_argument, NULL, 'r' },
		{ "follow", no_argument, NULL, 'f' },
		{ "verify", no_argument, NULL, OPT_VERIFY },
		{ "expect", required_argument, NULL, OPT_EXPECT },
		{ "signing-key", required_argument, NULL, OPT_SIGNING_KEY },
		{ "expect-signed", required_argument, NULL, OPT_EXPECT_SIGNED },
		{ "public-key", required_argument, NULL, OPT_PUBLIC_KEY },
		{ "decrypt", no_argument, NULL, OPT_DECRYPT },
		{ "checkpoint", required_argument, NULL, OPT_CHECKPOINT },
		{ "checkpoint-dir", required_argument, NULL, OPT_CHECKPOINT_DIR },
		{ "position", no_argument, NULL, OPT_POSITION },
		{ "set-position", required_argument, NULL, OPT_SET_POSITION },
		{ "store", required_argument, NULL, 's' },
		{ "upcast", no_argument, NULL, OPT_UPCAST },
		{ "upcasters", required_argument, NULL, OPT_UPCASTERS },
		{ "log-format", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	cqrs_tool_init("cqrs-read"); /* first: a message names the tool */
	cqrs_log_scan_args(argc, argv);
	cqrs_filter f = { 0 };
	/* Repeated filters are ORed; there are at most argc of each.  Static,
	 * so that every way out of main leaves them reachable. */
	static uint8_t(*aggregates)[CQRS_UUID_LEN];
	static const char **agg_types, **ev_types, **corrs;
	aggregates = calloc((size_t)argc, sizeof *aggregates);
	agg_types = calloc((size_t)argc, sizeof *agg_types);
	ev_types = calloc((size_t)argc, sizeof *ev_types);
	corrs = calloc((size_t)argc, sizeof *corrs);
	size_t naggregates = 0, nagg_types = 0, nev_types = 0, ncorrs = 0;
	int64_t expect_seq = 0;
	uint8_t expect_hash[CQRS_HASH_LEN];
	/* --upcast: the current form (cqrs-upcasters(5)) */
	static char **upcasters;
	upcasters = calloc((size_t)argc, sizeof *upcasters);
	int nupcasters = 0;
	bool upcast = false;
	if (aggregates == NULL || agg_types == NULL || ev_types == NULL || corrs == NULL ||
	    upcasters == NULL)
		cqrs_die(CQRS_EXIT_OSERR, "out of memory");
	char until[CQRS_TIMESTAMP_LEN + 1];
	const char *store_opt = NULL;
	bool follow = false, do_verify = false, have_from = false, decrypt = false;
	struct checkpoint cp = { 0 };
	struct signing sig = { 0 };
	int ch;

	while ((ch = cqrs_getopt_long(argc, argv, "a:t:e:c:n:rfs:hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'a':
			if (cqrs_uuid_parse(optarg, strlen(optarg), aggregates[naggregates++]) < 0)
				cqrs_die(CQRS_EXIT_USAGE, "--aggregate: not a UUID: '%s'", optarg);
			break;
		case 't': agg_types[nagg_types++] = parse_type("--aggregate-type", optarg); break;
		case 'e': ev_types[nev_types++] = parse_type("--event-type", optarg); break;
		case 'c': corrs[ncorrs++] = optarg; break;
		case OPT_FROM:
		case OPT_AFTER:
			if (have_from)
				cqrs_die(CQRS_EXIT_USAGE, "--from and --after go alone");
			have_from = true;
			f.after = parse_seq(ch == OPT_FROM ? "--from" : "--after", optarg);
			if (ch == OPT_FROM && f.after > 0)
				f.after--;
			break;
		case OPT_TO:
			f.to = parse_seq("--to", optarg);
			if (f.to == 0)
				cqrs_die(CQRS_EXIT_USAGE, "--to needs a sequence of at least 1");
			break;
		case OPT_UNTIL:
			if (cqrs_timestamp_normalize(optarg, strlen(optarg), until) < 0)
				cqrs_die(CQRS_EXIT_USAGE, "--until: not an RFC 3339 time: '%s'",
					 optarg);
			f.until = until;
			break;
		case 'n':
			f.limit = parse_seq("--limit", optarg);
			if (f.limit == 0)
				cqrs_die(CQRS_EXIT_USAGE, "--limit needs a positive count");
			break;
		case 'r': f.reverse = true; break;
		case 'f': follow = true; break;
		case OPT_VERIFY: do_verify = true; break;
		case OPT_EXPECT: parse_expect(optarg, &expect_seq, expect_hash); break;
		case OPT_SIGNING_KEY: sig.key_path = optarg; break;
		case OPT_EXPECT_SIGNED: sig.head_path = optarg; break;
		case OPT_PUBLIC_KEY: sig.public_path = optarg; break;
		case OPT_DECRYPT: decrypt = true; break;
		case OPT_CHECKPOINT: cp.name = optarg; break;
		case OPT_CHECKPOINT_DIR: cp.dir_opt = optarg; break;
		case OPT_POSITION: cp.show = true; break;
		case OPT_SET_POSITION:
			cp.set = true;
			cp.set_seq = parse_seq("--set-position", optarg);
			break;
		case 's': store_opt = optarg; break;
		case OPT_UPCAST: upcast = true; break;
		case OPT_UPCASTERS: upcasters[nupcasters++] = optarg; break;
		case 'L': cqrs_log_format_option(optarg); break;
		case 'h': usage(0); break;
		case 'V': cqrs_print_version(); return cqrs_finish_stdout(0);
		default: usage(CQRS_EXIT_USAGE);
		}
	}
	if (optind < argc)
		/* the usage without its final newline: cqrs_die adds one */
		cqrs_die(CQRS_EXIT_USAGE, "unexpected operand '%s'\n%.*s", argv[optind],
			 (int)sizeof usage_text - 2, usage_text);
	set_filters(&f, aggregates, naggregates, agg_types, nagg_types, ev_types, nev_types, corrs,
		    ncorrs);
	if (expect_seq > 0 && !do_verify)
		cqrs_die(CQRS_EXIT_USAGE, "--expect goes with --verify");
	if ((sig.key_path || sig.head_path || sig.public_path) && !do_verify)
		cqrs_die(CQRS_EXIT_USAGE,
			 "--signing-key, --expect-signed and --public-key go with --verify");
	if ((sig.head_path == NULL) != (sig.public_path == NULL))
		cqrs_die(CQRS_EXIT_USAGE, "--expect-signed and --public-key go together");
	if (sig.key_path == NULL && do_verify) {
		const char *env = getenv("CQRS_SIGNING_KEY");
		if (env != NULL && *env != '\0')
			sig.key_path = env;
	}
	if (follow && f.reverse)
		cqrs_die(CQRS_EXIT_USAGE, "--follow and --reverse go alone");
	if (follow && f.until != NULL)
		cqrs_die(CQRS_EXIT_USAGE, "--follow and --until go alone");
	if (nupcasters > 0 && !upcast)
		cqrs_die(CQRS_EXIT_USAGE, "--upcasters goes with --upcast");
	if (do_verify && (follow || f.reverse || f.limit || f.to || f.after || f.until ||
			  naggregates || nagg_types || nev_types || ncorrs || upcast))
		cqrs_die(CQRS_EXIT_USAGE,
			 "--verify checks the whole store and takes no other option");

	if (cp.name == NULL && (cp.dir_opt || cp.show || cp.set))
		cqrs_die(CQRS_EXIT_USAGE, "--checkpoint-dir, --position and --set-position go "
					  "with --checkpoint");
	if (cp.name != NULL) {
		cqrs_error nerr = { 0 };
		if (cqrs_position_name_check(cp.name, &nerr) < 0)
			cqrs_die_error(&nerr);
		if (have_from || f.reverse || f.until != NULL || do_verify)
			cqrs_die(CQRS_EXIT_USAGE, "--checkpoint reads from where its consumer "
						  "stopped: not with --from, --after, --reverse, "
						  "--until or --verify");
		if (cp.show && cp.set)
			cqrs_die(CQRS_EXIT_USAGE, "--position and --set-position go alone");
		if ((cp.show || cp.set) &&
		    (follow || f.limit || f.to || naggregates || nagg_types || nev_types || ncorrs))
			cqrs_die(CQRS_EXIT_USAGE,
				 "--position and --set-position read no events: no filter");
		if (cp.show || cp.set) {
			free_filters(aggregates, agg_types, ev_types, corrs);
			return cqrs_finish_stdout(checkpoint_admin(store_opt, &cp));
		}
	}

	if (do_verify)
		signing_load(&sig);
	cqrs_error err = { 0 };
	if (upcast && cqrs_upcasters_init(upcasters, nupcasters, &err) < 0)
		cqrs_die_error(&err);
	cqrs_store *st = cqrs_store_open(cqrs_store_path(store_opt), CQRS_OPEN_READ, &err);
	if (st == NULL || (decrypt && cqrs_store_decrypt(st, &err) < 0) ||
	    (upcast && cqrs_upcast_attach(st, &err) < 0))
		cqrs_die_error(&err);
	if (do_verify) {
		int code = verify(st, cqrs_store_path(store_opt), expect_seq, expect_hash, &sig);
		cqrs_signing_key_free(sig.key);
		cqrs_store_close(st);
		free_filters(aggregates, agg_types, ev_types, corrs);
		return cqrs_finish_stdout(code);
	}
	if (cp.name != NULL) {
		int code = consume(st, cqrs_store_path(store_opt), f, follow, &cp);
		cqrs_store_close(st);
		free_filters(aggregates, agg_types, ev_types, corrs);
		return cqrs_finish_stdout(code);
	}

	int fds[2], nfds = follow ? follow_fds(fds) : 0;
	cqrs_log_set_timestamps(follow);
	int64_t printed = 0;
	int code = CQRS_EXIT_OK;
	for (;;) {
		/* The store's head before the query: every event up to it is in
		 * the query's view, so --to can end a filtered follow. */
		int64_t head = follow && f.to > 0 ? cqrs_store_last_sequence(st, &err) : 0;
		if (head < 0)
			cqrs_die_error(&err);
		cqrs_filter now = f;
		if (f.limit > 0)
			now.limit = f.limit - printed;
		cqrs_cursor *c = cqrs_store_read(st, &now, &err);
		if (c == NULL)
			cqrs_die_error(&err);
		cqrs_event ev;
		int r;
		while ((r = cqrs_cursor_next(c, &ev, &err)) == 1) {
			cqrs_event_write(stdout, &ev);
			f.after = ev.sequence;
			printed++;
			if (cqrs_stdout_gone())
				break;
		}
		cqrs_cursor_close(c);
		if (r < 0) {
			cqrs_warn("%s", err.msg);
			code = err.code;
			break;
		}
		if (!follow || cqrs_stdout_gone() || (f.limit > 0 && printed >= f.limit) ||
		    (f.to > 0 && (f.after >= f.to || head >= f.to)))
			break;
		if (fflush(stdout) != 0)
			break;
		/* A timeout re-queries too: a safety net for file systems
		 * that do not report changes. */
		int w = cqrs_store_wait(st, 1000, fds, nfds, &err);
		if (w < 0) {
			cqrs_warn("%s", err.msg);
			code = err.code;
			break;
		}
		if (w == 2)
			break; /* a signal, or the reader went away */
	}
	cqrs_store_close(st);
	free_filters(aggregates, agg_types, ev_types, corrs);
	return cqrs_finish_stdout(code);
}
