/*
 * baseline-insert: what a programmer would write in an afternoon instead of
 * cqrs-append, the yardstick of the append benchmark (issue 2).
 *
 *   baseline-insert [-b rows] store [file]     the naive baseline
 *   baseline-insert -c [-b rows] store [file]  the physical limit
 *   baseline-insert -cr [-b rows] store [file] the storage floor
 *   baseline-insert -S                         print the naive schema
 *
 * Naive: each NDJSON line goes through jansson (json_loadb), data and
 * metadata are serialised back with json_dumps, aggregate_version comes
 * from a counter per aggregate kept in memory (right only for a store that
 * starts empty, which is how the benchmark runs it), and rows go into a
 * table shaped like the seed's events table, with TEXT uuid keys, two
 * unique indexes and the seed's three secondary indexes, through one
 * prepared statement, with WAL, synchronous=FULL, SQLite's default page
 * cache and `rows` rows per transaction (default 10000).
 *
 * Physical limit (-c): the same parsing, into the events table of a store
 * that cqrs-append created (so the schema is exactly ours: 16-byte BLOB
 * keys, six indexes), with the store's page cache and SQLite settings
 * (cqrs_sqlite_setup, no connection mutex), and no checks at all: no
 * duplicate or version lookups (versions come from the in-memory counter),
 * no validation beyond jansson's, a constant instead of the hash chain.
 * Default: one transaction for the whole input, like cqrs-append.
 *
 * Storage floor (-c -r): the same without jansson: the fields are cut out of
 * the line by their keys (right only for gen-events' layout), so what is
 * left is SQLite's cost of storing the rows in our schema.
 *
 * Prints nothing on success; any error is fatal (exit 1).
 */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/sqlite_errors.h"
#include "banned.h"

/* clang-format off */
static const char naive_schema[] =
	"CREATE TABLE events (\n"
	"  sequence INTEGER PRIMARY KEY,\n"
	"  event_id TEXT NOT NULL UNIQUE,\n"
	"  aggregate_id TEXT NOT NULL,\n"
	"  aggregate_type TEXT NOT NULL,\n"
	"  aggregate_version INTEGER NOT NULL,\n"
	"  event_type TEXT NOT NULL,\n"
	"  event_version INTEGER NOT NULL DEFAULT 1,\n"
	"  data TEXT NOT NULL,\n"
	"  metadata TEXT NOT NULL DEFAULT '{}',\n"
	"  timestamp TEXT NOT NULL,\n"
	"  UNIQUE (aggregate_id, aggregate_version)\n"
	");\n"
	"CREATE INDEX events_aggregate_type ON events(aggregate_type);\n"
	"CREATE INDEX events_event_type ON events(event_type);\n"
	"CREATE INDEX events_timestamp ON events(timestamp);\n";

static const char naive_insert[] =
	"INSERT INTO events (event_id, aggregate_id, aggregate_type, aggregate_version,"
	" event_type, event_version, data, metadata, timestamp)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/* the statement lib/store/store_sqlite.c prepares, for stores with and without
 * the indexed 64-bit correlation_key */
static const char cqrs_insert_key[] =
	"INSERT INTO events (sequence, event_id, aggregate_id, aggregate_type,"
	" aggregate_version, event_type, event_version, data, metadata,"
	" timestamp, hash, correlation_id, correlation_key)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
	" ON CONFLICT (event_id) DO NOTHING";
static const char cqrs_insert[] =
	"INSERT INTO events (sequence, event_id, aggregate_id, aggregate_type,"
	" aggregate_version, event_type, event_version, data, metadata,"
	" timestamp, hash, correlation_id)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
	" ON CONFLICT (event_id) DO NOTHING";
/* clang-format on */

static const char *store_path;
static sqlite3 *db;

static void die(const char *what, const char *detail)
{
	fprintf(stderr, "baseline-insert: %s: %s\n", what, detail);
	exit(1);
}

static void exec(const char *sql)
{
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		die(store_path, sqlite3_errmsg(db));
}

/* --- aggregate versions: open addressing on the id text ------------------- */

struct slot {
	char id[37];
	int64_t version;
};

static struct slot *slots;
static size_t nslots, cap;

static uint64_t hash_text(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a, as the store keys correlation ids */
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
	return h;
}

static struct slot *find(struct slot *tab, size_t tcap, const char *id)
{
	size_t j = hash_text(id, strlen(id)) & (tcap - 1);
	while (tab[j].version != 0 && strcmp(tab[j].id, id) != 0)
		j = (j + 1) & (tcap - 1);
	return &tab[j];
}

static int64_t next_version(const char *id)
{
	if ((nslots + 1) * 2 > cap) {
		size_t ncap = cap ? cap * 2 : 4096;
		struct slot *n = calloc(ncap, sizeof *n);
		if (n == NULL)
			die("memory", strerror(errno));
		for (size_t i = 0; i < cap; i++)
			if (slots[i].version != 0)
				*find(n, ncap, slots[i].id) = slots[i];
		free(slots);
		slots = n;
		cap = ncap;
	}
	struct slot *s = find(slots, cap, id);
	if (s->version == 0) {
		snprintf(s->id, sizeof s->id, "%s", id);
		nslots++;
	}
	return ++s->version;
}

/* --- helpers ----------------------------------------------------------------- */

static void now(char out[32])
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%06ldZ", ts.tv_nsec / 1000);
}

static int uuid_blob(const char *t, uint8_t out[16]) /* t: 36 characters */
{
	static const int8_t val[256] = {
		['0'] = 1,  ['1'] = 2,	['2'] = 3,  ['3'] = 4,	['4'] = 5,  ['5'] = 6,
		['6'] = 7,  ['7'] = 8,	['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12,
		['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16, ['A'] = 11, ['B'] = 12,
		['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
	};
	for (int i = 0, o = 0; i < 36 && o < 16; i += 2) {
		if (t[i] == '-')
			i++;
		int hi = val[(unsigned char)t[i]], lo = val[(unsigned char)t[i + 1]];
		if (hi == 0 || lo == 0)
			return -1;
		out[o++] = (uint8_t)((hi - 1) << 4 | (lo - 1));
	}
	return 0;
}

/* One input line's columns; text fields point into the line or into
 * jansson's objects, with their lengths. */
struct row {
	const char *event_id, *aggregate_id, *aggregate_type, *event_type;
	const char *data, *metadata, *correlation;
	int id_len, agg_len, type_len, etype_len, data_len, meta_len, corr_len;
	int64_t event_version;
	/* owned by the jansson path */
	json_t *root;
	char *data_buf, *meta_buf;
};

static void die_line(long line, const char *what)
{
	char msg[160];
	snprintf(msg, sizeof msg, "line %ld: %s", line, what);
	die("input", msg);
}

static const char *string_field(json_t *obj, const char *key, int *len, long line)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_string(v)) {
		char msg[128];
		snprintf(msg, sizeof msg, "missing '%s'", key);
		die_line(line, msg);
	}
	*len = (int)json_string_length(v);
	return json_string_value(v);
}

/* The naive way: the whole line through jansson, payloads serialised back. */
static void parse_jansson(struct row *r, const char *line, size_t len, long n)
{
	json_error_t jerr;
	json_t *ev = r->root = json_loadb(line, len, 0, &jerr);
	if (ev == NULL)
		die_line(n, jerr.text);
	r->event_id = string_field(ev, "event_id", &r->id_len, n);
	r->aggregate_id = string_field(ev, "aggregate_id", &r->agg_len, n);
	r->aggregate_type = string_field(ev, "aggregate_type", &r->type_len, n);
	r->event_type = string_field(ev, "event_type", &r->etype_len, n);
	json_t *ver = json_object_get(ev, "event_version");
	r->event_version = ver ? json_integer_value(ver) : 1;
	json_t *meta = json_object_get(ev, "metadata");
	r->data = r->data_buf = json_dumps(json_object_get(ev, "data"), JSON_COMPACT);
	if (r->data == NULL)
		die_line(n, "missing 'data'");
	r->data_len = (int)strlen(r->data);
	r->metadata = r->meta_buf = meta ? json_dumps(meta, JSON_COMPACT) : NULL;
	if (r->metadata == NULL)
		r->metadata = "{}";
	r->meta_len = (int)strlen(r->metadata);
	json_t *corr = json_object_get(meta, "correlation_id");
	r->correlation = json_string_value(corr);
	r->corr_len = r->correlation ? (int)json_string_length(corr) : 0;
}

static void free_row(struct row *r)
{
	free(r->data_buf);
	free(r->meta_buf);
	json_decref(r->root);
}

/* The end of the JSON value at p: strings and nesting are skipped, nothing
 * is checked.  NULL when the line ends first. */
static const char *skip_value(const char *p, const char *end)
{
	int depth = 0;
	bool str = false;
	for (; p < end; p++) {
		if (str) {
			if (*p == '\\')
				p++;
			else if (*p == '"')
				str = false;
			else
				continue;
			if (!str && depth == 0)
				return p + 1;
		} else if (*p == '"') {
			str = true;
		} else if (*p == '{' || *p == '[') {
			depth++;
		} else if (*p == '}' || *p == ']') {
			if (depth == 0)
				return p; /* a number or literal ends the object */
			if (--depth == 0)
				return p + 1;
		} else if (depth == 0 && *p == ',') {
			return p;
		}
	}
	return NULL;
}

/* A member's value in [p, end), found by its key text; strings lose their
 * quotes.  Only right for lines laid out like gen-events' output. */
static const char *cut(const char *p, const char *end, const char *key, int *len, long n)
{
	char pat[64];
	int pl = snprintf(pat, sizeof pat, "\"%s\":", key);
	const char *k = memmem(p, (size_t)(end - p), pat, (size_t)pl);
	if (k == NULL) {
		*len = 0;
		return NULL;
	}
	const char *v = k + pl, *e = skip_value(v, end);
	if (e == NULL)
		die_line(n, "unterminated value");
	if (*v == '"') {
		v++;
		e--;
	}
	*len = (int)(e - v);
	return v;
}

/* No parsing: the fields cut out of the line by their keys, so that only
 * SQLite's own cost remains (-r, the storage floor). */
static void parse_raw(struct row *r, const char *line, size_t len, long n)
{
	const char *end = line + len;
	memset(r, 0, sizeof *r);
	r->event_id = cut(line, end, "event_id", &r->id_len, n);
	r->aggregate_id = cut(line, end, "aggregate_id", &r->agg_len, n);
	r->aggregate_type = cut(line, end, "aggregate_type", &r->type_len, n);
	r->event_type = cut(line, end, "event_type", &r->etype_len, n);
	r->data = cut(line, end, "data", &r->data_len, n);
	r->metadata = cut(line, end, "metadata", &r->meta_len, n);
	if (!r->event_id || !r->aggregate_id || !r->aggregate_type || !r->event_type || !r->data)
		die_line(n, "a field is missing");
	if (r->metadata == NULL) {
		r->metadata = "{}";
		r->meta_len = 2;
	} else {
		r->correlation = cut(r->metadata, r->metadata + r->meta_len, "correlation_id",
				     &r->corr_len, n);
	}
	r->event_version = 1;
}

int main(int argc, char **argv)
{
	bool cqrs_schema = false, raw = false;
	long batch = -1;
	int ch;
	while ((ch = getopt(argc, argv, "b:crS")) != -1) {
		switch (ch) {
		case 'b': batch = strtol(optarg, NULL, 10); break;
		case 'c': cqrs_schema = true; break;
		case 'r': raw = true; break;
		case 'S': fputs(naive_schema, stdout); return 0;
		default:
			fputs("usage: baseline-insert [-cr] [-b rows] store [file]\n"
			      "       baseline-insert -S\n",
			      stderr);
			return 64;
		}
	}
	if (argc - optind < 1 || argc - optind > 2)
		die("usage", "baseline-insert [-cr] [-b rows] store [file]");
	if (batch < 0)
		batch = cqrs_schema ? 0 : 10000;
	store_path = argv[optind];
	FILE *in = stdin;
	if (argc - optind == 2 && strcmp(argv[optind + 1], "-") != 0 &&
	    (in = fopen(argv[optind + 1], "r")) == NULL)
		die(argv[optind + 1], strerror(errno));

	/* the physical limit runs SQLite as the store does: its process
	 * settings (no memory statistics, its lookaside) and no mutex on
	 * the connection; the naive baseline keeps SQLite's defaults */
	if (cqrs_schema)
		cqrs_sqlite_setup();
	int flags =
		SQLITE_OPEN_READWRITE | (cqrs_schema ? SQLITE_OPEN_NOMUTEX : SQLITE_OPEN_CREATE);
	if (sqlite3_open_v2(store_path, &db, flags, NULL) != SQLITE_OK)
		die(store_path, sqlite3_errmsg(db));
	exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL");
	if (cqrs_schema)
		exec("PRAGMA cache_size = -32768; PRAGMA temp_store = MEMORY");
	else
		exec(naive_schema);
	sqlite3_stmt *ins = NULL;
	bool corr_key = false;
	if (cqrs_schema)
		corr_key = sqlite3_prepare_v2(db, cqrs_insert_key, -1, &ins, NULL) == SQLITE_OK;
	if (!corr_key && sqlite3_prepare_v2(db, cqrs_schema ? cqrs_insert : naive_insert, -1, &ins,
					    NULL) != SQLITE_OK)
		die(store_path, sqlite3_errmsg(db));

	static const uint8_t zero_hash[32];
	char *line = NULL;
	size_t linecap = 0;
	ssize_t len;
	long n = 0, in_txn = 0;
	int64_t seq = 0;
	if (cqrs_schema) {
		sqlite3_stmt *q;
		if (sqlite3_prepare_v2(db, "SELECT coalesce(max(sequence), 0) FROM events", -1, &q,
				       NULL) != SQLITE_OK ||
		    sqlite3_step(q) != SQLITE_ROW)
			die(store_path, sqlite3_errmsg(db));
		seq = sqlite3_column_int64(q, 0);
		sqlite3_finalize(q);
	}
	while ((len = getline(&line, &linecap, in)) > 0) {
		struct row r = { 0 };
		n++;
		if (raw)
			parse_raw(&r, line, (size_t)len, n);
		else
			parse_jansson(&r, line, (size_t)len, n);
		if (r.agg_len != 36 || r.id_len != 36)
			die_line(n, "event_id or aggregate_id is not a uuid");
		char agg[37], ts[32];
		memcpy(agg, r.aggregate_id, 36);
		agg[36] = '\0';
		now(ts);
		if (in_txn == 0)
			exec("BEGIN");
		int64_t version = next_version(agg);
		int c = 1;
		uint8_t eid[16], aid[16];
		if (cqrs_schema) {
			if (uuid_blob(r.event_id, eid) < 0 || uuid_blob(agg, aid) < 0)
				die_line(n, "not a uuid");
			sqlite3_bind_int64(ins, c++, ++seq);
			sqlite3_bind_blob(ins, c++, eid, 16, SQLITE_STATIC);
			sqlite3_bind_blob(ins, c++, aid, 16, SQLITE_STATIC);
		} else {
			sqlite3_bind_text(ins, c++, r.event_id, r.id_len, SQLITE_STATIC);
			sqlite3_bind_text(ins, c++, agg, 36, SQLITE_STATIC);
		}
		sqlite3_bind_text(ins, c++, r.aggregate_type, r.type_len, SQLITE_STATIC);
		sqlite3_bind_int64(ins, c++, version);
		sqlite3_bind_text(ins, c++, r.event_type, r.etype_len, SQLITE_STATIC);
		sqlite3_bind_int64(ins, c++, r.event_version);
		sqlite3_bind_text(ins, c++, r.data, r.data_len, SQLITE_STATIC);
		sqlite3_bind_text(ins, c++, r.metadata, r.meta_len, SQLITE_STATIC);
		sqlite3_bind_text(ins, c++, ts, -1, SQLITE_STATIC);
		if (cqrs_schema) {
			sqlite3_bind_blob(ins, c++, zero_hash, 32, SQLITE_STATIC);
			if (r.correlation != NULL)
				sqlite3_bind_text(ins, c++, r.correlation, r.corr_len,
						  SQLITE_STATIC);
			else
				sqlite3_bind_null(ins, c++);
			if (corr_key && r.correlation != NULL)
				sqlite3_bind_int64(
					ins, c++,
					(int64_t)(hash_text(r.correlation, (size_t)r.corr_len) >>
						  1));
			else if (corr_key)
				sqlite3_bind_null(ins, c++);
		}
		if (sqlite3_step(ins) != SQLITE_DONE)
			die(store_path, sqlite3_errmsg(db));
		sqlite3_reset(ins);
		free_row(&r);
		if (++in_txn == batch) {
			exec("COMMIT");
			in_txn = 0;
		}
	}
	if (ferror(in))
		die("input", strerror(errno));
	if (in_txn > 0)
		exec("COMMIT");
	sqlite3_finalize(ins);
	if (sqlite3_close(db) != SQLITE_OK)
		die(store_path, "close failed");
	free(line);
	free(slots);
	return 0;
}
