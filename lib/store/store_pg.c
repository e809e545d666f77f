/*
 * The PostgreSQL backend: the same store as store_sqlite.c, in a schema of
 * its own (default "cqrs"; the store's connection string may name another
 * with options='-c cqrs.schema=NAME').  libpq is loaded on first use
 * (pg_lib.c).
 *
 * Global order: an append transaction takes one transaction-level
 * advisory lock at its first append, then reads the head (a statement
 * after the lock, so it sees every commit before it), numbers its events
 * head + 1, ... and chains their hashes from the head's.  The lock is
 * released after the commit is visible, so the next writer's events
 * commit after these: sequences are gapless and become visible in order,
 * and a reader that saw sequence N has seen everything before it.  A
 * PostgreSQL sequence would commit out of order and leave gaps on
 * rollback (see cqrs-postgres(7)).  Writers scale by batching: the lock
 * is held from a batch's first append to its commit, not per event.
 *
 * --follow wakes by LISTEN/NOTIFY: each append transaction notifies the
 * store's channel, delivered at commit.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cqrs.h"
#include "common/sqlite_errors.h"
#include "common/strbuf.h"
#include "store/pg_lib.h"
#include "store/store_impl.h"
#include "banned.h"

#define PG_SCHEMA_VERSION 2
#define DEFAULT_SCHEMA	  "cqrs"
#define MAX_SCHEMA_NAME	  63
#define LOCK_CLASS	  0x43515253 /* "CQRS": the advisory lock's first key */
#define PAGE_ROWS	  1000	     /* a cursor holds one page of rows at a time */
#define OID_INT8	  20
#define OID_TEXT	  25
#define OID_INT4	  23
#define OID_BYTEA	  17
#define OID_UUID	  2950
#define OID_UUID_ARRAY	  2951
#define OID_TEXT_ARRAY	  1009

/* clang-format off */
static const char schema_v1[] =
	"CREATE TABLE store_info (schema_version integer NOT NULL);"
	"CREATE TABLE events ("
	" sequence bigint PRIMARY KEY CHECK (sequence >= 1),"
	" event_id uuid NOT NULL UNIQUE,"
	" aggregate_id uuid NOT NULL,"
	" aggregate_type text COLLATE \"C\" NOT NULL,"
	" aggregate_version bigint NOT NULL CHECK (aggregate_version >= 1),"
	" event_type text COLLATE \"C\" NOT NULL,"
	" event_version bigint NOT NULL DEFAULT 1,"
	" data text NOT NULL,"
	" metadata text NOT NULL DEFAULT '{}',"
	" \"timestamp\" text COLLATE \"C\" NOT NULL,"
	" hash bytea NOT NULL,"
	" correlation_id text COLLATE \"C\","
	" UNIQUE (aggregate_id, aggregate_version));"
	"CREATE INDEX events_aggregate_type ON events(aggregate_type);"
	"CREATE INDEX events_event_type ON events(event_type);"
	"CREATE INDEX events_timestamp ON events(\"timestamp\");"
	"CREATE INDEX events_correlation ON events(correlation_id)"
	" WHERE correlation_id IS NOT NULL;"
	"CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS"
	" $$BEGIN RAISE EXCEPTION 'events are append-only'; END$$;"
	"CREATE TRIGGER events_no_change BEFORE UPDATE OR DELETE ON events"
	" FOR EACH ROW EXECUTE FUNCTION events_append_only();"
	"CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events"
	" FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();"
	"CREATE TABLE snapshots ("
	" aggregate_id uuid NOT NULL,"
	" aggregate_type text COLLATE \"C\" NOT NULL,"
	" aggregate_version bigint NOT NULL,"
	" state text NOT NULL,"
	" created_at text NOT NULL,"
	" PRIMARY KEY (aggregate_id, aggregate_version));"
	"CREATE TABLE processed_messages ("
	" message_id text COLLATE \"C\" PRIMARY KEY,"
	" handler text NOT NULL,"
	" result text,"
	" processed_at text NOT NULL);"
	"CREATE TABLE counters (name text COLLATE \"C\" PRIMARY KEY, value bigint NOT NULL);"
	"CREATE TABLE checkpoints ("
	" name text COLLATE \"C\" PRIMARY KEY,"
	" sequence bigint NOT NULL,"
	" updated_at text NOT NULL);"
	/* for people querying with psql, as in the SQLite store */
	"CREATE VIEW event_log AS SELECT sequence, event_id::text AS event_id,"
	" aggregate_id::text AS aggregate_id, aggregate_type, aggregate_version, event_type,"
	" event_version, data, metadata, \"timestamp\", encode(hash, 'hex') AS hash,"
	" correlation_id FROM events;"
	"INSERT INTO store_info VALUES (1);";
/* clang-format on */

/* Version 2 (issue 13, sagas): the saga runner's tables (saga_store_pg.c),
 * as in the SQLite store, and a lease per instance so that several runners
 * share the instances: lease_owner ("host:pid:random") holds it until
 * lease_until, by the server's clock; rowid numbers instances in the order
 * they started, as SQLite's rowid does. */
/* clang-format off */
static const char schema_v2_sagas[] =
	"CREATE TABLE saga_instances ("
	" rowid bigint GENERATED ALWAYS AS IDENTITY UNIQUE,"
	" saga_id text COLLATE \"C\" PRIMARY KEY,"
	" saga_type text COLLATE \"C\" NOT NULL,"
	" correlation_id text COLLATE \"C\","
	" current_step bigint NOT NULL DEFAULT 0,"
	" state text NOT NULL DEFAULT '{}',"
	" status text COLLATE \"C\" NOT NULL CHECK (status IN"
	"  ('RUNNING', 'COMPLETED', 'COMPENSATING', 'FAILED')),"
	" created_at text COLLATE \"C\" NOT NULL,"
	" updated_at text COLLATE \"C\" NOT NULL,"
	" revision bigint NOT NULL DEFAULT 0,"
	" attempts bigint NOT NULL DEFAULT 0,"
	" next_attempt_at text COLLATE \"C\","
	" deadline_at text COLLATE \"C\","
	" start_sequence bigint,"
	" outcome text COLLATE \"C\","
	" last_error text,"
	" lease_owner text COLLATE \"C\","
	" lease_until timestamptz,"
	" UNIQUE (saga_type, start_sequence));"
	"CREATE INDEX saga_instances_status ON saga_instances(status);"
	"CREATE INDEX saga_instances_due ON saga_instances(next_attempt_at)"
	" WHERE status IN ('RUNNING', 'COMPENSATING');"
	"CREATE TABLE saga_breakers ("
	" name text COLLATE \"C\" PRIMARY KEY,"
	" state text NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),"
	" failures bigint NOT NULL DEFAULT 0,"
	" opened_at text COLLATE \"C\","
	" updated_at text NOT NULL);";
/* clang-format on */

/* migrations[i] takes a store from version i to i + 1. */
static const char *const migrations[PG_SCHEMA_VERSION] = { schema_v1, schema_v2_sagas };

/* A window of appended events (cqrs_store_append_many): what its events
 * need from the store, read at once, and the rows it adds, sent at once.
 * An id_map maps a UUID to a value, by open addressing; it is sized
 * for the window (twice its events), so it never fills. */
struct id_slot {
	uint8_t id[CQRS_UUID_LEN];
	bool used;
	int64_t value;
};
struct id_map {
	struct id_slot *slots;
	size_t cap;   /* a power of two: the slots the window uses */
	size_t alloc; /* the slots allocated, for the largest window */
};
/* a row the window added: the event as stored, its payload copied */
struct window_row {
	cqrs_event ev;
	char *payload; /* data, then metadata */
};
struct pg_window {
	bool open;
	struct id_map versions; /* aggregate -> its version: stored, or added here */
	struct id_map stored;	/* event_id -> its row in stored_rows */
	PGresult *stored_rows;	/* the stored events under the window's ids */
	struct id_map added;	/* event_id -> its index in rows */
	struct window_row *rows;
	size_t nrows, cap;
	bool copying;		 /* the COPY started: no other statement until it ends */
	struct cqrs_strbuf copy; /* rows in COPY's binary format, not sent yet */
};

struct pg_store {
	struct cqrs_store base;
	const struct cqrs_pq *pq;
	PGconn *conn;
	char *name; /* the store as messages show it: no password */
	char schema[MAX_SCHEMA_NAME + 1];
	char channel[MAX_SCHEMA_NAME + 16];
	int32_t lock_key;
	bool writable;
	bool in_txn;
	bool locked; /* the open transaction holds the append lock */
	bool listening;
	bool prepared;
	struct cqrs_append_head head;  /* the last event, under the append lock */
	struct cqrs_versions versions; /* aggregates this transaction appended to */
	/* versions holds what the store held when kept_head was its head, at
	 * our last commit: while the head is still that, nobody appended
	 * since, and the next transaction reads none of them again */
	bool versions_kept;
	struct cqrs_append_head kept_head;
	struct pg_window window;
	/* the last window's COPY was sent and its outcome not read yet, so
	 * that the server takes its rows in while the next lines are parsed;
	 * settle() reads it before any other statement, and keeps a failure
	 * (copy_err) until the transaction is rolled back: nothing commits
	 * over it */
	bool copy_unsettled, copy_failed;
	cqrs_error copy_err;
};

struct pg_cursor {
	struct cqrs_cursor base;
	PGresult *page;
	int row, nrows;
	bool last_page; /* the page was short: no more rows */
	bool verify;	/* verify_read: correlation_id after the event */
	char *sql;
	int64_t keyset;	   /* forward: sequence > keyset; reverse: sequence < keyset */
	bool by_version;   /* one aggregate's: the keyset is its aggregate_version */
	int64_t remaining; /* rows the filter's limit still allows; -1: no limit */
	/* the filter's values: params[n] is parameter $n + 1, NULL when unused */
	char *params[15];
};

static const struct cqrs_store_ops pg_ops;
static void window_forget(struct pg_store *s);
static void window_free(struct pg_store *s);

/* --- errors -------------------------------------------------------------- */

static bool connection_lost(struct pg_store *s)
{
	return s->pq->status(s->conn) != CONNECTION_OK;
}

/* The first line of a libpq message, without its "ERROR:  " or newline. */
static void first_line(const char *msg, char *out, size_t cap)
{
	if (msg == NULL)
		msg = "";
	if (strncmp(msg, "ERROR:  ", 8) == 0 || strncmp(msg, "FATAL:  ", 8) == 0)
		msg += 8;
	size_t n = strcspn(msg, "\n");
	snprintf(out, cap, "%.*s", (int)n, msg);
}

/* The exit code of a server error, by its SQLSTATE (cqrs-postgres(7)). */
static int sqlstate_code(const char *state)
{
	if (state == NULL)
		return CQRS_EXIT_SOFTWARE;
	if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0 ||
	    strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
	    strcmp(state, "55P03") == 0 || strcmp(state, "53300") == 0)
		return CQRS_EXIT_TEMPFAIL;
	if (strcmp(state, "57014") == 0)
		return CQRS_EXIT_LIMIT;
	if (strcmp(state, "25006") == 0 || strcmp(state, "42501") == 0 ||
	    strncmp(state, "28", 2) == 0)
		return CQRS_EXIT_NOPERM;
	if (strcmp(state, "53100") == 0 || strncmp(state, "58", 2) == 0)
		return CQRS_EXIT_IOERR;
	if (strcmp(state, "53200") == 0)
		return CQRS_EXIT_OSERR;
	if (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0 ||
	    strcmp(state, "XX001") == 0 || strcmp(state, "XX002") == 0)
		return CQRS_EXIT_DATAERR;
	return CQRS_EXIT_SOFTWARE;
}

/* Fails err for a statement's result res (which it clears) as "name:
 * what: reason".  Returns -1. */
static int pg_fail(struct pg_store *s, PGresult *res, const char *what, cqrs_error *err)
{
	const struct cqrs_pq *pq = s->pq;
	char reason[512];
	if (connection_lost(s)) {
		first_line(pq->error_message(s->conn), reason, sizeof reason);
		if (res != NULL)
			pq->clear(res);
		return cqrs_fail(err, CQRS_EXIT_TEMPFAIL,
				 "%s: %s: the connection to the server was lost (%s); nothing of "
				 "the open transaction was stored: try again",
				 s->name, what, reason);
	}
	const char *state = res != NULL ? pq->result_error_field(res, PG_DIAG_SQLSTATE) : NULL;
	const char *primary =
		res != NULL ? pq->result_error_field(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	first_line(primary != NULL ? primary : pq->error_message(s->conn), reason, sizeof reason);
	int code = sqlstate_code(state);
	char hint[160] = "";
	if (state != NULL && strcmp(state, "57014") == 0)
		snprintf(hint, sizeof hint,
			 " (a statement timeout stopped it; nothing was changed)");
	else if (state != NULL && strcmp(state, "25006") == 0)
		snprintf(hint, sizeof hint,
			 " (a read-only server, a standby? a write store must be the primary)");
	else if (code == CQRS_EXIT_TEMPFAIL)
		snprintf(hint, sizeof hint, "; try again");
	cqrs_fail(err, code, "%s: %s: %s%s", s->name, what, reason, hint);
	if (res != NULL)
		pq->clear(res);
	return -1;
}

/* A statement's result: res when it succeeded with want, else NULL with
 * *err (res cleared). */
static PGresult *checked(struct pg_store *s, PGresult *res, ExecStatusType want, const char *what,
			 cqrs_error *err)
{
	if (res != NULL && s->pq->result_status(res) == want)
		return res;
	pg_fail(s, res, what, err);
	return NULL;
}

/* The outcome of the COPY sent last, then nothing: the connection is
 * idle again.  0, or -1 with *err. */
static int copy_result(struct pg_store *s, cqrs_error *err)
{
	const struct cqrs_pq *pq = s->pq;
	int rc = 0;
	PGresult *r;
	while ((r = pq->get_result(s->conn)) != NULL) {
		ExecStatusType status = pq->result_status(r);
		if (rc == 0 && status != PGRES_COMMAND_OK)
			rc = pg_fail(s, r, "cannot append", err);
		else
			pq->clear(r);
		if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT)
			break; /* still copying: not ours to finish */
	}
	return rc;
}

/* Before any statement: the last window's COPY done, or its failure. */
static int settle(struct pg_store *s, cqrs_error *err)
{
	if (s->copy_unsettled) {
		s->copy_unsettled = false;
		if (copy_result(s, &s->copy_err) < 0)
			s->copy_failed = true;
	}
	if (!s->copy_failed)
		return 0;
	*err = s->copy_err;
	return -1;
}

static int exec_command(struct pg_store *s, const char *sql, const char *what, cqrs_error *err)
{
	if (settle(s, err) < 0)
		return -1;
	PGresult *res = checked(s, s->pq->exec(s->conn, sql), PGRES_COMMAND_OK, what, err);
	if (res == NULL)
		return -1;
	s->pq->clear(res);
	return 0;
}

static PGresult *query(struct pg_store *s, const char *sql, int n, const Oid *types,
		       const char *const *values, const char *what, cqrs_error *err)
{
	if (settle(s, err) < 0)
		return NULL;
	return checked(s, s->pq->exec_params(s->conn, sql, n, types, values, NULL, NULL, 0),
		       PGRES_TUPLES_OK, what, err);
}

/* A statement that returns no rows, run with parameters: 0, or -1 with
 * *err. */
static int command(struct pg_store *s, const char *sql, int n, const Oid *types,
		   const char *const *values, const char *what, cqrs_error *err)
{
	if (settle(s, err) < 0)
		return -1;
	PGresult *res =
		checked(s, s->pq->exec_params(s->conn, sql, n, types, values, NULL, NULL, 0),
			PGRES_COMMAND_OK, what, err);
	if (res == NULL)
		return -1;
	s->pq->clear(res);
	return 0;
}

/* The first row's column col of r as a new string in *out: 1, or 0 when r
 * has no row, or -1 with *err; r is cleared. */
static int first_text(struct pg_store *s, PGresult *r, int col, char **out, cqrs_error *err)
{
	int found = 0;
	if (s->pq->ntuples(r) > 0) {
		*out = strdup(s->pq->getvalue(r, 0, col));
		found = *out != NULL ? 1 : cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	}
	s->pq->clear(r);
	return found;
}

/* --- the statements an append runs, prepared once per connection -------- */

#define EVENT_COLUMNS                                                                              \
	"SELECT sequence, event_id, aggregate_id, aggregate_type, aggregate_version, event_type,"  \
	" event_version, data, metadata, \"timestamp\", hash"

static const struct {
	const char *name, *sql;
	int nparams;
	Oid types[12];
} statements[] = {
	{ "cqrs_version",
	  "SELECT coalesce(max(aggregate_version), 0) FROM events WHERE aggregate_id = $1",
	  1,
	  { OID_UUID } },
	{ "cqrs_insert",
	  "INSERT INTO events (sequence, event_id, aggregate_id, aggregate_type,"
	  " aggregate_version, event_type, event_version, data, metadata, \"timestamp\", hash,"
	  " correlation_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
	  " ON CONFLICT (event_id) DO NOTHING",
	  12,
	  { OID_INT8, OID_UUID, OID_UUID, OID_TEXT, OID_INT8, OID_TEXT, OID_INT8, OID_TEXT,
	    OID_TEXT, OID_TEXT, OID_BYTEA, OID_TEXT } },
	{ "cqrs_by_event_id", EVENT_COLUMNS " FROM events WHERE event_id = $1", 1, { OID_UUID } },
	{ "cqrs_last", EVENT_COLUMNS " FROM events ORDER BY sequence DESC LIMIT 2", 0, { 0 } },
	/* a window's look-ups (pg_window_open).  The versions: one probe of
	 * the index an id, the plan fixed whatever the statistics say (an
	 * aggregate holds many events: = ANY($1) may choose a scan of the
	 * table).  The events: event_id is unique, and = ANY($1) probes the
	 * index in the ids' order, a third of the cost of one probe an id */
	{ "cqrs_window_versions",
	  "SELECT i.id, (SELECT max(aggregate_version) FROM events WHERE aggregate_id = i.id)"
	  " FROM unnest($1::uuid[]) AS i(id)",
	  1,
	  { OID_UUID_ARRAY } },
	{ "cqrs_window_events",
	  EVENT_COLUMNS " FROM events WHERE event_id = ANY($1)",
	  1,
	  { OID_UUID_ARRAY } },
};

static int prepare_all(struct pg_store *s, cqrs_error *err)
{
	if (s->prepared)
		return 0;
	for (size_t i = 0; i < sizeof statements / sizeof statements[0]; i++) {
		PGresult *res =
			checked(s,
				s->pq->prepare(s->conn, statements[i].name, statements[i].sql,
					       statements[i].nparams, statements[i].types),
				PGRES_COMMAND_OK, "cannot prepare a statement", err);
		if (res == NULL)
			return -1;
		s->pq->clear(res);
	}
	s->prepared = true;
	return 0;
}

static PGresult *run_prepared(struct pg_store *s, const char *name, int n,
			      const char *const *values, const int *lengths, const int *formats,
			      ExecStatusType want, const char *what, cqrs_error *err)
{
	if (settle(s, err) < 0 || prepare_all(s, err) < 0)
		return NULL;
	return checked(s, s->pq->exec_prepared(s->conn, name, n, values, lengths, formats, 0), want,
		       what, err);
}

/* --- values in and out --------------------------------------------------- */

static void uuid_text(const uint8_t id[CQRS_UUID_LEN], char out[37])
{
	cqrs_uuid_format(id, out);
}

static int64_t int_at(const struct cqrs_pq *pq, const PGresult *r, int row, int col)
{
	return strtoll(pq->getvalue(r, row, col), NULL, 10);
}

/* bytea in hex output: "\x" and two digits a byte. */
static bool hash_at(const struct cqrs_pq *pq, const PGresult *r, int row, int col,
		    uint8_t out[CQRS_HASH_LEN])
{
	const char *v = pq->getvalue(r, row, col);
	size_t n = (size_t)pq->getlength(r, row, col);
	return n == 2 + 2 * CQRS_HASH_LEN && v[0] == '\\' && v[1] == 'x' &&
	       cqrs_hash_parse(v + 2, n - 2, out) == 0;
}

/* One row of EVENT_COLUMNS into ev, pointing into r: false when a value
 * is malformed (a damaged or edited row). */
static bool row_to_event(const struct cqrs_pq *pq, const PGresult *r, int row, cqrs_event *ev)
{
	memset(ev, 0, sizeof *ev);
	bool ok = true;
	ev->sequence = int_at(pq, r, row, 0);
	ok &= cqrs_uuid_parse(pq->getvalue(r, row, 1), (size_t)pq->getlength(r, row, 1),
			      ev->event_id) == 0;
	ev->has_event_id = true;
	ok &= cqrs_uuid_parse(pq->getvalue(r, row, 2), (size_t)pq->getlength(r, row, 2),
			      ev->aggregate_id) == 0;
	ok &= (size_t)pq->getlength(r, row, 3) < sizeof ev->aggregate_type &&
	      (size_t)pq->getlength(r, row, 5) < sizeof ev->event_type &&
	      (size_t)pq->getlength(r, row, 9) < sizeof ev->timestamp;
	snprintf(ev->aggregate_type, sizeof ev->aggregate_type, "%s", pq->getvalue(r, row, 3));
	ev->aggregate_version = int_at(pq, r, row, 4);
	snprintf(ev->event_type, sizeof ev->event_type, "%s", pq->getvalue(r, row, 5));
	ev->event_version = int_at(pq, r, row, 6);
	ev->data = pq->getvalue(r, row, 7);
	ev->data_len = (size_t)pq->getlength(r, row, 7);
	ev->metadata = pq->getvalue(r, row, 8);
	ev->metadata_len = (size_t)pq->getlength(r, row, 8);
	snprintf(ev->timestamp, sizeof ev->timestamp, "%s", pq->getvalue(r, row, 9));
	ok &= hash_at(pq, r, row, 10, ev->hash);
	ev->has_hash = true;
	ev->expected_version = -1;
	return ok;
}

/* --- opening ------------------------------------------------------------- */

/* The store as messages name it: the connection's host, port, database
 * and user, never its password. */
static char *display_name(const struct cqrs_pq *pq, const char *conninfo)
{
	struct cqrs_strbuf b = { 0 };
	cqrs_strbuf_puts(&b, "postgresql:");
	PQconninfoOption *opts = pq->conninfo_parse(conninfo, NULL);
	static const char *const shown[] = {
		"host", "hostaddr", "port", "dbname", "user", "service"
	};
	bool any = false;
	for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++) {
		if (o->val == NULL || *o->val == '\0')
			continue;
		for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++)
			if (strcmp(o->keyword, shown[i]) == 0) {
				cqrs_strbuf_printf(&b, "%s%s=%s", any ? " " : "", o->keyword,
						   o->val);
				any = true;
			}
	}
	if (opts != NULL)
		pq->conninfo_free(opts);
	char *name = b.oom ? NULL : strdup(cqrs_strbuf_str(&b));
	cqrs_strbuf_free(&b);
	return name;
}

static bool contains(const char *s, const char *what)
{
	return s != NULL && strstr(s, what) != NULL;
}

/* Why a connection failed, by what libpq says (it gives no SQLSTATE for
 * a failed connection): the exit code of cqrs-postgres(7). */
static int connect_failed(struct pg_store *s, cqrs_error *err)
{
	const char *msg = s->pq->error_message(s->conn);
	char reason[512];
	first_line(msg, reason, sizeof reason);
	/* libpq starts some messages with where it tried to connect */
	const char *fatal = strstr(msg, "FATAL:  ");
	if (fatal != NULL)
		first_line(fatal, reason, sizeof reason);
	if (s->pq->connection_needs_password(s->conn) || contains(msg, "authentication failed") ||
	    contains(msg, "no pg_hba.conf entry") ||
	    (contains(msg, "role \"") && contains(msg, "does not exist")))
		return cqrs_fail(err, CQRS_EXIT_NOPERM,
				 "%s: the server refused this user: %s (see cqrs-postgres(7) on "
				 "passwords: .pgpass, PGPASSWORD, a service file)",
				 s->name, reason);
	if (contains(msg, "database \"") && contains(msg, "does not exist"))
		return cqrs_fail(err, CQRS_EXIT_NOINPUT, "%s: no such database: %s", s->name,
				 reason);
	if (contains(msg, "invalid") || contains(msg, "unrecognized") ||
	    contains(msg, "missing \"=\""))
		return cqrs_fail(err, CQRS_EXIT_CONFIG, "%s: bad connection string: %s", s->name,
				 reason);
	return cqrs_fail(err, CQRS_EXIT_TEMPFAIL,
			 "%s: cannot reach the server: %s; try again later", s->name, reason);
}

/* How long a tool waits for a server it cannot reach ($CQRS_CONNECT_WAIT
 * seconds, default 0: exit 75 at once), so that a cron job started while
 * the server restarts does its work instead of failing. */
static int64_t connect_wait_ms(void)
{
	const char *text = getenv("CQRS_CONNECT_WAIT");
	int64_t seconds;
	if (text == NULL || cqrs_parse_int64(text, &seconds) < 0 || seconds < 0)
		return 0;
	return seconds > INT64_MAX / 1000 ? INT64_MAX : seconds * 1000;
}

static int64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Connects, and while the failure is a temporary one (no server, one
 * starting or stopping, no free slot) tries again after 100 ms, 200 ms...
 * up to 5 s apart, until $CQRS_CONNECT_WAIT has passed. */
static int connect_waiting(struct pg_store *s, const char *conninfo, cqrs_error *err)
{
	int64_t deadline = monotonic_ms() + connect_wait_ms();
	for (int attempt = 0;; attempt++) {
		s->conn = s->pq->connectdb(conninfo);
		if (s->conn == NULL)
			return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		if (s->pq->status(s->conn) == CONNECTION_OK)
			return 0;
		connect_failed(s, err);
		int64_t left = deadline - monotonic_ms();
		if (err->code != CQRS_EXIT_TEMPFAIL || left <= 0)
			return -1;
		s->pq->finish(s->conn);
		s->conn = NULL;
		int64_t pause = cqrs_backoff_ms(attempt, 100, 5000);
		pause = pause < left ? pause : left;
		struct timespec ts = { .tv_sec = pause / 1000,
				       .tv_nsec = (pause % 1000) * 1000000 };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
}

static void quiet_notices(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static bool schema_name_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > MAX_SCHEMA_NAME || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

/* FNV-1a of the schema's name: the advisory lock's second key, so that
 * stores in other schemas of one database do not wait for each other. */
static int32_t lock_key_of(const char *schema)
{
	uint32_t h = 2166136261u;
	for (const char *p = schema; *p != '\0'; p++) {
		h ^= (unsigned char)*p;
		h *= 16777619u;
	}
	return (int32_t)h;
}

static int lock_store(struct pg_store *s, cqrs_error *err)
{
	if (settle(s, err) < 0)
		return -1;
	char cls[16], key[16];
	snprintf(cls, sizeof cls, "%d", LOCK_CLASS);
	snprintf(key, sizeof key, "%" PRId32, s->lock_key);
	/* and the notification the commit delivers to followers (one round
	 * trip for both: per-event commits pay it at every event) */
	const char *v[3] = { cls, key, s->channel };
	static const Oid t[3] = { OID_INT4, OID_INT4, OID_TEXT };
	PGresult *res = s->pq->exec_params(
		s->conn, "SELECT pg_advisory_xact_lock($1, $2), pg_notify($3, '')", 3, t, v, NULL,
		NULL, 0);
	const char *state = res != NULL ? s->pq->result_error_field(res, PG_DIAG_SQLSTATE) : NULL;
	if (state != NULL && strcmp(state, "55P03") == 0) {
		s->pq->clear(res);
		return cqrs_fail(err, CQRS_EXIT_TEMPFAIL,
				 "%s: store is busy (another transaction holds the append lock "
				 "for longer than CQRS_BUSY_TIMEOUT); try again",
				 s->name);
	}
	if ((res = checked(s, res, PGRES_TUPLES_OK, "cannot take the append lock", err)) == NULL)
		return -1;
	s->pq->clear(res);
	s->locked = true;
	return 0;
}

/* The store's schema version, 0 when it has none yet, -1 with *err. */
static int64_t stored_schema_version(struct pg_store *s, cqrs_error *err)
{
	PGresult *res = query(s, "SELECT to_regclass('store_info') IS NOT NULL", 0, NULL, NULL,
			      "cannot read the store", err);
	if (res == NULL)
		return -1;
	bool exists = strcmp(s->pq->getvalue(res, 0, 0), "t") == 0;
	s->pq->clear(res);
	if (!exists)
		return 0;
	res = query(s, "SELECT max(schema_version) FROM store_info", 0, NULL, NULL,
		    "cannot read the store", err);
	if (res == NULL)
		return -1;
	int64_t v = s->pq->getisnull(res, 0, 0) ? 0 : int_at(s->pq, res, 0, 0);
	s->pq->clear(res);
	return v;
}

/* Creates the schema or migrates it under the append lock, so that two
 * processes opening a new store at once do it only once. */
static int ensure_schema(struct pg_store *s, cqrs_error *err)
{
	int64_t ver = stored_schema_version(s, err);
	if (ver < 0)
		return -1;
	if (ver > PG_SCHEMA_VERSION)
		return cqrs_fail(err, CQRS_EXIT_CONFIG,
				 "%s: store schema version %lld is newer than this tool's (%d); "
				 "upgrade cqrs-tools",
				 s->name, (long long)ver, PG_SCHEMA_VERSION);
	if (ver == PG_SCHEMA_VERSION)
		return 0;
	if (!s->writable)
		return cqrs_fail(err, CQRS_EXIT_NOINPUT,
				 "%s: no store in schema %s (or it needs an upgrade)", s->name,
				 s->schema);
	if (exec_command(s, "BEGIN ISOLATION LEVEL READ COMMITTED", "cannot create the store",
			 err) < 0)
		return -1;
	char *ident = s->pq->escape_identifier(s->conn, s->schema, strlen(s->schema));
	if (ident == NULL)
		return pg_fail(s, NULL, "cannot create the store", err);
	char sql[200];
	snprintf(sql, sizeof sql, "CREATE SCHEMA IF NOT EXISTS %s", ident);
	s->pq->freemem(ident);
	if (lock_store(s, err) < 0)
		goto fail;
	/* CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when
	 * the schema is there: a writer given a schema of its own has not */
	const char *name_param[1] = { s->schema };
	static const Oid t[1] = { OID_TEXT };
	PGresult *found = query(s, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", 1, t,
				name_param, "cannot create the store", err);
	if (found == NULL)
		goto fail;
	bool has_schema = strcmp(s->pq->getvalue(found, 0, 0), "1") == 0;
	s->pq->clear(found);
	if ((!has_schema && exec_command(s, sql, "cannot create the store", err) < 0) ||
	    (ver = stored_schema_version(s, err)) < 0)
		goto fail;
	for (int64_t v = ver; v < PG_SCHEMA_VERSION; v++)
		if (exec_command(s, migrations[v], "cannot create the store", err) < 0)
			goto fail;
	if (PG_SCHEMA_VERSION > 1 && ver < PG_SCHEMA_VERSION) {
		snprintf(sql, sizeof sql, "UPDATE store_info SET schema_version = %d",
			 PG_SCHEMA_VERSION);
		if (exec_command(s, sql, "cannot create the store", err) < 0)
			goto fail;
	}
	if (exec_command(s, "COMMIT", "cannot create the store", err) < 0)
		goto fail;
	s->locked = false;
	return 0;
fail:;
	PGresult *r = s->pq->exec(s->conn, "ROLLBACK");
	if (r != NULL)
		s->pq->clear(r);
	s->locked = false;
	return -1;
}

/* The store as messages name it once connected: where libpq went (what
 * the environment chose included) and the schema. */
static char *connected_name(struct pg_store *s)
{
	const struct cqrs_pq *pq = s->pq;
	struct cqrs_strbuf b = { 0 };
	cqrs_strbuf_printf(&b, "postgresql:host=%s port=%s dbname=%s user=%s (schema %s)",
			   pq->host(s->conn), pq->port(s->conn), pq->db(s->conn), pq->user(s->conn),
			   s->schema);
	char *name = b.oom ? NULL : strdup(cqrs_strbuf_str(&b));
	cqrs_strbuf_free(&b);
	return name;
}

/* The connection's settings: the schema the store lives in, and whether
 * the server takes writes. */
static int configure(struct pg_store *s, cqrs_error *err)
{
	PGresult *res = query(s,
			      "SELECT coalesce(current_setting('cqrs.schema', true), ''),"
			      " pg_is_in_recovery(), current_setting('transaction_read_only')",
			      0, NULL, NULL, "cannot open store", err);
	if (res == NULL)
		return -1;
	const char *schema = s->pq->getvalue(res, 0, 0);
	if (*schema == '\0')
		schema = DEFAULT_SCHEMA;
	bool standby = strcmp(s->pq->getvalue(res, 0, 1), "t") == 0;
	bool read_only = strcmp(s->pq->getvalue(res, 0, 2), "on") == 0;
	bool valid = schema_name_valid(schema);
	if (valid)
		snprintf(s->schema, sizeof s->schema, "%s", schema);
	else
		snprintf(s->schema, sizeof s->schema, "%.*s", MAX_SCHEMA_NAME, schema);
	s->pq->clear(res);
	char *name = connected_name(s);
	if (name == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	free(s->name);
	s->name = name;
	if (!valid)
		return cqrs_fail(err, CQRS_EXIT_CONFIG,
				 "%s: cqrs.schema '%s' is not a schema name the tools use "
				 "(lowercase letters, digits and _, at most %d)",
				 s->name, s->schema, MAX_SCHEMA_NAME);
	if (s->writable && (standby || read_only))
		return cqrs_fail(err, CQRS_EXIT_NOPERM,
				 "%s: permission denied: the server is read-only (%s); a write "
				 "store must be the primary",
				 s->name,
				 standby ? "a standby in recovery" : "transaction_read_only");
	s->lock_key = lock_key_of(s->schema);
	snprintf(s->channel, sizeof s->channel, "cqrs_%s", s->schema);
	char *ident = s->pq->escape_identifier(s->conn, s->schema, strlen(s->schema));
	if (ident == NULL)
		return pg_fail(s, NULL, "cannot open store", err);
	char sql[200];
	/* every table name below is the store's; ISO dates and UTC are not
	 * used (timestamps are text the tools write), READ COMMITTED is */
	/* a writer waits for the append lock as long as a SQLite writer
	 * waits for the file's (CQRS_BUSY_TIMEOUT), then gives up with 75 */
	snprintf(sql, sizeof sql,
		 "SET search_path TO %s; SET default_transaction_isolation = 'read committed';"
		 " SET lock_timeout = %ld",
		 ident, cqrs_sqlite_busy_timeout_ms());
	s->pq->freemem(ident);
	return exec_command(s, sql, "cannot open store", err);
}

/* path: "postgres://..." or "postgresql://..." (a URI), or
 * "postgresql:" and a keyword=value connection string. */
cqrs_store *cqrs_pg_open(const char *path, enum cqrs_open_mode mode, cqrs_error *err)
{
	const struct cqrs_pq *pq = cqrs_pq_load(err);
	if (pq == NULL)
		return NULL;
	const char *conninfo = path;
	if (strncmp(path, "postgresql:", 11) == 0 && strncmp(path + 11, "//", 2) != 0)
		conninfo = path + 11;
	char *parse_error = NULL;
	PQconninfoOption *opts = pq->conninfo_parse(conninfo, &parse_error);
	if (opts == NULL) {
		char reason[256];
		first_line(parse_error != NULL ? parse_error : "out of memory", reason,
			   sizeof reason);
		if (parse_error != NULL)
			pq->freemem(parse_error);
		cqrs_fail(err, CQRS_EXIT_CONFIG, "postgresql: bad connection string: %s", reason);
		return NULL;
	}
	pq->conninfo_free(opts);
	struct pg_store *s = calloc(1, sizeof *s);
	if (s == NULL || (s->name = display_name(pq, conninfo)) == NULL) {
		free(s);
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		return NULL;
	}
	s->base.ops = &pg_ops;
	s->pq = pq;
	s->writable = mode == CQRS_OPEN_WRITE;
	if (connect_waiting(s, conninfo, err) < 0)
		goto fail;
	pq->set_notice_processor(s->conn, quiet_notices, NULL);
	if (configure(s, err) < 0 || ensure_schema(s, err) < 0)
		goto fail;
	return &s->base;
fail:
	if (s->conn != NULL)
		pq->finish(s->conn);
	free(s->name);
	free(s);
	return NULL;
}

/* A transaction ends: the last COPY's outcome no longer matters. */
static void unsettle(struct pg_store *s)
{
	cqrs_error ignored = { 0 };
	settle(s, &ignored);
	s->copy_failed = false;
}

static void pg_close(cqrs_store *st)
{
	struct pg_store *s = (struct pg_store *)st;
	unsettle(s);
	if (s->in_txn) {
		PGresult *r = s->pq->exec(s->conn, "ROLLBACK");
		if (r != NULL)
			s->pq->clear(r);
	}
	window_free(s);
	s->pq->finish(s->conn);
	cqrs_versions_free(&s->versions);
	free(s->name);
	free(s);
}

/* --no-sync: commits return before the server flushed them. */
static void pg_set_durability(cqrs_store *st, enum cqrs_durability d)
{
	struct pg_store *s = (struct pg_store *)st;
	cqrs_error ignored = { 0 };
	exec_command(s,
		     d == CQRS_DURABLE_FULL ? "SET synchronous_commit = on"
					    : "SET synchronous_commit = off",
		     "cannot set durability", &ignored);
}

/* --- appending ----------------------------------------------------------- */

static int pg_begin(cqrs_store *st, cqrs_error *err)
{
	struct pg_store *s = (struct pg_store *)st;
	window_forget(s);
	if (prepare_all(s, err) < 0 || exec_command(s, "BEGIN ISOLATION LEVEL READ COMMITTED",
						    "cannot start a write transaction", err) < 0)
		return -1;
	s->in_txn = true;
	s->locked = false;
	return 0;
}

/* Once the head is read under the lock: the versions cached by our last
 * commit stay when nobody appended since (the head is the same: sequences
 * are gapless and events append-only), and are read again otherwise. */
static void forget_versions_unless_kept(struct pg_store *s)
{
	if (!s->versions_kept || s->head.sequence != s->kept_head.sequence ||
	    memcmp(s->head.hash, s->kept_head.hash, CQRS_HASH_LEN) != 0)
		cqrs_versions_forget(&s->versions);
	s->versions_kept = false;
}

static void forget_versions(struct pg_store *s)
{
	cqrs_versions_forget(&s->versions);
	s->versions_kept = false;
}

/* After the lock: the head, checked against its hash as store_sqlite.c
 * does (an edited head would otherwise be sealed under the new event's
 * hash). */
static int take_head(struct pg_store *s, cqrs_error *err)
{
	const struct cqrs_pq *pq = s->pq;
	if (lock_store(s, err) < 0)
		return -1;
	PGresult *r = run_prepared(s, "cqrs_last", 0, NULL, NULL, NULL, PGRES_TUPLES_OK,
				   "cannot read the store", err);
	if (r == NULL)
		return -1;
	int n = pq->ntuples(r);
	memset(&s->head, 0, sizeof s->head);
	if (n == 0) {
		pq->clear(r);
		forget_versions_unless_kept(s);
		return 0;
	}
	cqrs_event head;
	bool ok = row_to_event(pq, r, 0, &head);
	uint8_t prev[CQRS_HASH_LEN] = { 0 };
	int64_t prev_seq = 0;
	if (n > 1) {
		ok &= hash_at(pq, r, 1, 10, prev);
		prev_seq = int_at(pq, r, 1, 0);
	}
	s->head.sequence = head.sequence;
	memcpy(s->head.hash, head.hash, CQRS_HASH_LEN);
	forget_versions_unless_kept(s);
	int checked = cqrs_append_check_head(s->name, &head, prev, prev_seq, ok, err);
	pq->clear(r);
	return checked;
}

/* store_impl.h's lock: the append lock and the head now, not at the
 * first append, so that what the transaction reads next no other writer
 * changes before it commits. */
static int pg_lock(cqrs_store *st, cqrs_error *err)
{
	struct pg_store *s = (struct pg_store *)st;
	if (!s->in_txn)
		return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "lock outside a transaction");
	if (settle(s, err) < 0)
		return -1;
	return s->locked ? 0 : take_head(s, err);
}

static int64_t stored_version(void *backend, const uint8_t id[CQRS_UUID_LEN], cqrs_error *err)
{
	struct pg_store *s = backend;
	char text[37];
	uuid_text(id, text);
	const char *v[1] = { text };
	PGresult *r = run_prepared(s, "cqrs_version", 1, v, NULL, NULL, PGRES_TUPLES_OK,
				   "cannot read the store", err);
	if (r == NULL)
		return -1;
	int64_t ver = int_at(s->pq, r, 0, 0);
	s->pq->clear(r);
	return ver;
}

/* The append's find_stored (store_impl.h): the event stored under
 * ev's event_id, compared with ev. */
static int find_stored(void *backend, cqrs_event *ev, cqrs_error *err)
{
	struct pg_store *s = backend;
	char id[37];
	uuid_text(ev->event_id, id);
	const char *v[1] = { id };
	PGresult *r = run_prepared(s, "cqrs_by_event_id", 1, v, NULL, NULL, PGRES_TUPLES_OK,
				   "cannot read the store", err);
	if (r == NULL)
		return -1;
	int same = 0;
	if (s->pq->ntuples(r) > 0) {
		cqrs_event stored;
		row_to_event(s->pq, r, 0, &stored);
		same = cqrs_append_take_stored(&stored, ev, err);
	}
	s->pq->clear(r);
	return same;
}

static int insert_event(void *backend, const cqrs_event *ev, bool *inserted, cqrs_error *err)
{
	struct pg_store *s = backend;
	char seq[24], ver[24], evver[24], event_id[37], agg[37];
	char hash[2 + 2 * CQRS_HASH_LEN + 1] = "\\x";
	char corr[CQRS_MAX_CORRELATION + 1];
	snprintf(seq, sizeof seq, "%lld", (long long)ev->sequence);
	snprintf(ver, sizeof ver, "%lld", (long long)ev->aggregate_version);
	snprintf(evver, sizeof evver, "%lld", (long long)ev->event_version);
	uuid_text(ev->event_id, event_id);
	uuid_text(ev->aggregate_id, agg);
	cqrs_hash_format(ev->hash, hash + 2);
	bool has_corr = cqrs_event_correlation(ev, corr, sizeof corr);
	/* data and metadata go with their lengths: not NUL-terminated */
	const char *v[12] = { seq,	    event_id,	    agg,   ev->aggregate_type,
			      ver,	    ev->event_type, evver, ev->data,
			      ev->metadata, ev->timestamp,  hash,  has_corr ? corr : NULL };
	int len[12] = { 0 };
	int fmt[12] = { 0 };
	len[7] = (int)ev->data_len;
	len[8] = (int)ev->metadata_len;
	fmt[7] = fmt[8] = 1; /* binary text: the bytes as they are, no terminator */
	PGresult *r = run_prepared(s, "cqrs_insert", 12, v, len, fmt, PGRES_COMMAND_OK,
				   "cannot append", err);
	if (r == NULL)
		return -1;
	*inserted = strcmp(s->pq->cmd_tuples(r), "1") == 0;
	s->pq->clear(r);
	return 0;
}

/* --- a window of events in one COPY (cqrs_store_append_many) -------------
 * Under the append lock no one else appends, so what a window's events
 * need from the store can be read before them, at once: their
 * aggregates' versions (those not cached) and the events stored under
 * their ids.  cqrs_append_event then runs per event against those answers
 * and the rows the window added itself (a retry of an earlier event of
 * the window is a duplicate of it), and the rows stream to the server in
 * one COPY in binary format (no escaping, and the server parses nothing)
 * while the later events are checked.  The COPY's outcome is read by
 * settle() before the next statement, so that the server takes the rows
 * in while the caller reads its next window.  Three round trips a window
 * instead of one to three an event; a window of one event goes the way
 * of one event (two). */

static uint64_t id_hash(const uint8_t id[CQRS_UUID_LEN])
{
	uint64_t a, b;
	memcpy(&a, id, sizeof a);
	memcpy(&b, id + 8, sizeof b);
	/* all 16 bytes: ids written by people (tests, fixtures) vary little */
	uint64_t h = (a * 0x9e3779b97f4a7c15ULL) ^ b;
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	return h ^ (h >> 32);
}

/* Empties m with room for n ids: 0, or -1 without memory. */
static int id_map_reset(struct id_map *m, size_t n)
{
	size_t cap = 16;
	while (cap < 2 * n)
		cap *= 2;
	if (cap > m->alloc) {
		struct id_slot *slots = calloc(cap, sizeof *slots);
		if (slots == NULL)
			return -1;
		free(m->slots);
		m->slots = slots;
		m->alloc = cap;
	} else {
		memset(m->slots, 0, cap * sizeof *m->slots);
	}
	m->cap = cap;
	return 0;
}

/* id's slot: used when id is there, else the free slot where it goes. */
static struct id_slot *id_map_slot(struct id_map *m, const uint8_t id[CQRS_UUID_LEN])
{
	size_t j = (size_t)id_hash(id) & (m->cap - 1);
	while (m->slots[j].used && memcmp(m->slots[j].id, id, CQRS_UUID_LEN) != 0)
		j = (j + 1) & (m->cap - 1);
	return &m->slots[j];
}

static struct id_slot *id_map_find(struct id_map *m, const uint8_t id[CQRS_UUID_LEN])
{
	if (m->cap == 0)
		return NULL;
	struct id_slot *slot = id_map_slot(m, id);
	return slot->used ? slot : NULL;
}

static void id_map_put(struct id_map *m, const uint8_t id[CQRS_UUID_LEN], int64_t value)
{
	struct id_slot *slot = id_map_slot(m, id);
	memcpy(slot->id, id, CQRS_UUID_LEN);
	slot->used = true;
	slot->value = value;
}

/* Forgets the window's rows and answers, keeping its memory for the next
 * (bounded by the largest window). */
static void window_forget(struct pg_store *s)
{
	struct pg_window *w = &s->window;
	for (size_t i = 0; i < w->nrows; i++)
		free(w->rows[i].payload);
	w->nrows = 0;
	if (w->stored_rows != NULL)
		s->pq->clear(w->stored_rows);
	w->stored_rows = NULL;
	cqrs_strbuf_reset(&w->copy);
	w->copying = false;
	w->open = false;
}

static void window_free(struct pg_store *s)
{
	struct pg_window *w = &s->window;
	window_forget(s);
	free(w->versions.slots);
	free(w->stored.slots);
	free(w->added.slots);
	free(w->rows);
	cqrs_strbuf_free(&w->copy);
	memset(w, 0, sizeof *w);
}

/* COPY's binary format: big-endian integers, each field its length
 * (-1: NULL) and its bytes. */
static void put_be(struct cqrs_strbuf *b, uint64_t v, int bytes)
{
	char out[8];
	for (int i = 0; i < bytes; i++)
		out[i] = (char)(v >> (8 * (bytes - 1 - i)));
	cqrs_strbuf_put(b, out, (size_t)bytes);
}

static void put_field(struct cqrs_strbuf *b, const void *p, size_t n)
{
	put_be(b, (uint32_t)n, 4);
	cqrs_strbuf_put(b, p, n);
}

static void put_int8_field(struct cqrs_strbuf *b, int64_t v)
{
	put_be(b, 8, 4);
	put_be(b, (uint64_t)v, 8);
}

/* Runs the prepared statement name with $1 the array of n ids, sent in
 * binary (the server parses no text): the result, or NULL with *err. */
static PGresult *query_ids(struct pg_store *s, const char *name,
			   const uint8_t (*ids)[CQRS_UUID_LEN], size_t n, cqrs_error *err)
{
	struct cqrs_strbuf b = { 0 };
	put_be(&b, 1, 4); /* dimensions */
	put_be(&b, 0, 4); /* no NULL */
	put_be(&b, OID_UUID, 4);
	put_be(&b, n, 4);
	put_be(&b, 1, 4); /* lower bound */
	for (size_t i = 0; i < n; i++)
		put_field(&b, ids[i], CQRS_UUID_LEN);
	if (b.oom || b.len > INT_MAX) {
		cqrs_strbuf_free(&b);
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		return NULL;
	}
	const char *v[1] = { b.p };
	const int len[1] = { (int)b.len }, fmt[1] = { 1 };
	PGresult *r = run_prepared(s, name, 1, v, len, fmt, PGRES_TUPLES_OK,
				   "cannot read the store", err);
	cqrs_strbuf_free(&b);
	return r;
}

/* The stored versions of the window's aggregates that the transaction
 * has not cached, into w->versions (0: no events). */
static int window_read_versions(struct pg_store *s, const cqrs_event *evs, size_t n,
				uint8_t (*ids)[CQRS_UUID_LEN], cqrs_error *err)
{
	struct pg_window *w = &s->window;
	size_t nids = 0;
	for (size_t i = 0; i < n; i++) {
		int64_t cached;
		if (id_map_find(&w->versions, evs[i].aggregate_id) != NULL)
			continue;
		/* every aggregate of the window gets its answer here: once the
		 * COPY started, no statement can ask (and the cache may start
		 * over in the middle of the window) */
		if (cqrs_versions_get(&s->versions, evs[i].aggregate_id, &cached)) {
			id_map_put(&w->versions, evs[i].aggregate_id, cached);
			continue;
		}
		id_map_put(&w->versions, evs[i].aggregate_id, 0);
		memcpy(ids[nids++], evs[i].aggregate_id, CQRS_UUID_LEN);
	}
	if (nids == 0)
		return 0;
	PGresult *r = query_ids(s, "cqrs_window_versions", (const uint8_t(*)[CQRS_UUID_LEN])ids,
				nids, err);
	if (r == NULL)
		return -1;
	for (int row = 0; row < s->pq->ntuples(r); row++) {
		uint8_t id[CQRS_UUID_LEN];
		if (!s->pq->getisnull(r, row, 1) &&
		    cqrs_uuid_parse(s->pq->getvalue(r, row, 0), (size_t)s->pq->getlength(r, row, 0),
				    id) == 0)
			id_map_put(&w->versions, id, int_at(s->pq, r, row, 1));
	}
	s->pq->clear(r);
	return 0;
}

/* The events stored under the window's given ids, into w->stored. */
static int window_read_stored(struct pg_store *s, const cqrs_event *evs, size_t n,
			      uint8_t (*ids)[CQRS_UUID_LEN], cqrs_error *err)
{
	struct pg_window *w = &s->window;
	size_t nids = 0;
	for (size_t i = 0; i < n; i++)
		if (evs[i].has_event_id)
			memcpy(ids[nids++], evs[i].event_id, CQRS_UUID_LEN);
	if (nids == 0)
		return 0;
	w->stored_rows =
		query_ids(s, "cqrs_window_events", (const uint8_t(*)[CQRS_UUID_LEN])ids, nids, err);
	if (w->stored_rows == NULL)
		return -1;
	for (int row = 0; row < s->pq->ntuples(w->stored_rows); row++) {
		uint8_t id[CQRS_UUID_LEN];
		if (cqrs_uuid_parse(s->pq->getvalue(w->stored_rows, row, 1),
				    (size_t)s->pq->getlength(w->stored_rows, row, 1), id) == 0)
			id_map_put(&w->stored, id, row);
	}
	return 0;
}

static int pg_window_open(cqrs_store *st, const cqrs_event *evs, size_t n, cqrs_error *err)
{
	struct pg_store *s = (struct pg_store *)st;
	struct pg_window *w = &s->window;
	if (!s->in_txn)
		return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "append outside a transaction");
	/* the last window's rows first: its failure is not this window's */
	if (settle(s, err) < 0)
		return -2;
	if (n == 1)
		return 0; /* one event: pg_append's statements cost less than a COPY */
	/* the look-ups after the lock: then nothing changes under them */
	if (!s->locked && take_head(s, err) < 0)
		return -1;
	window_forget(s);
	if (n > w->cap) {
		struct window_row *rows = realloc(w->rows, n * sizeof *rows);
		if (rows == NULL)
			return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		w->rows = rows;
		w->cap = n;
	}
	uint8_t(*ids)[CQRS_UUID_LEN] = malloc(n * sizeof *ids);
	if (ids == NULL || id_map_reset(&w->versions, n) < 0 || id_map_reset(&w->stored, n) < 0 ||
	    id_map_reset(&w->added, n) < 0) {
		free(ids);
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	}
	int rc = window_read_versions(s, evs, n, ids, err);
	if (rc == 0)
		rc = window_read_stored(s, evs, n, ids, err);
	free(ids);
	if (rc < 0) {
		window_forget(s);
		return -1;
	}
	w->open = true;
	return 0;
}

/* The append's stored_version in a window: the version read (or cached)
 * at the window's start, or given by a row it added. */
static int64_t window_version(void *backend, const uint8_t id[CQRS_UUID_LEN], cqrs_error *err)
{
	struct pg_store *s = backend;
	struct id_slot *slot = id_map_find(&s->window.versions, id);
	return slot != NULL ? slot->value
			    : cqrs_fail(err, CQRS_EXIT_SOFTWARE, "an aggregate outside the window");
}

/* The append's find_stored in a window: a row it added, or one stored. */
static int window_find(void *backend, cqrs_event *ev, cqrs_error *err)
{
	struct pg_store *s = backend;
	struct pg_window *w = &s->window;
	struct id_slot *slot = id_map_find(&w->added, ev->event_id);
	if (slot != NULL)
		return cqrs_append_take_stored(&w->rows[slot->value].ev, ev, err);
	if ((slot = id_map_find(&w->stored, ev->event_id)) == NULL)
		return 0;
	cqrs_event stored;
	row_to_event(s->pq, w->stored_rows, (int)slot->value, &stored);
	return cqrs_append_take_stored(&stored, ev, err);
}

#define COPY_COLUMNS 12
static const char copy_signature[11] = "PGCOPY\n\377\r\n";

static void put_row(struct cqrs_strbuf *b, const cqrs_event *ev, bool first)
{
	if (first) {
		cqrs_strbuf_put(b, copy_signature, sizeof copy_signature);
		put_be(b, 0, 4); /* flags */
		put_be(b, 0, 4); /* no header extension */
	}
	char corr[CQRS_MAX_CORRELATION + 1];
	bool has_corr = cqrs_event_correlation(ev, corr, sizeof corr);
	put_be(b, COPY_COLUMNS, 2);
	put_int8_field(b, ev->sequence);
	put_field(b, ev->event_id, CQRS_UUID_LEN);
	put_field(b, ev->aggregate_id, CQRS_UUID_LEN);
	put_field(b, ev->aggregate_type, strlen(ev->aggregate_type));
	put_int8_field(b, ev->aggregate_version);
	put_field(b, ev->event_type, strlen(ev->event_type));
	put_int8_field(b, ev->event_version);
	put_field(b, ev->data, ev->data_len);
	put_field(b, ev->metadata, ev->metadata_len);
	put_field(b, ev->timestamp, strlen(ev->timestamp));
	put_field(b, ev->hash, CQRS_HASH_LEN);
	if (has_corr)
		put_field(b, corr, strlen(corr));
	else
		put_be(b, UINT32_MAX, 4); /* -1: NULL */
}

/* The COPY of a window's rows: started at its first row, fed in chunks
 * of COPY_CHUNK bytes, ended with the window.  Each returns 0, or -1
 * with *err (the statement's error: the transaction is then aborted, and
 * the caller rolls back). */
#define COPY_CHUNK (64 * 1024)

static int copy_start(struct pg_store *s, cqrs_error *err)
{
	PGresult *r =
		checked(s,
			s->pq->exec(s->conn, "COPY events (sequence, event_id, aggregate_id,"
					     " aggregate_type, aggregate_version, event_type,"
					     " event_version, data, metadata, \"timestamp\","
					     " hash, correlation_id) FROM STDIN (FORMAT binary)"),
			PGRES_COPY_IN, "cannot append", err);
	if (r == NULL)
		return -1;
	s->pq->clear(r);
	s->window.copying = true;
	return 0;
}

static int copy_send(struct pg_store *s, cqrs_error *err)
{
	struct cqrs_strbuf *b = &s->window.copy;
	for (size_t off = 0; off < b->len;) {
		size_t chunk = b->len - off < INT_MAX ? b->len - off : INT_MAX;
		/* the connection lost: libpq ends the COPY when the next
		 * statement (the caller's ROLLBACK) starts */
		if (s->pq->put_copy_data(s->conn, b->p + off, (int)chunk) != 1)
			return pg_fail(s, NULL, "cannot append", err);
		off += chunk;
	}
	cqrs_strbuf_reset(b);
	return 0;
}

/* Ends the COPY; its outcome is read by settle(), before the next
 * statement. */
static int copy_end(struct pg_store *s, cqrs_error *err)
{
	s->window.copying = false;
	put_be(&s->window.copy, UINT16_MAX, 2); /* the trailer: -1 */
	if (s->window.copy.oom)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	if (copy_send(s, err) < 0)
		return -1;
	if (s->pq->put_copy_end(s->conn, NULL) != 1)
		return pg_fail(s, NULL, "cannot append", err);
	s->copy_unsettled = true;
	return 0;
}

/* The append's insert in a window: the row goes into the buffer, and the
 * window remembers it for the events after it. */
static int window_insert(void *backend, const cqrs_event *ev, bool *inserted, cqrs_error *err)
{
	struct pg_store *s = backend;
	struct pg_window *w = &s->window;
	*inserted = id_map_find(&w->added, ev->event_id) == NULL &&
		    id_map_find(&w->stored, ev->event_id) == NULL;
	if (!*inserted)
		return 0;
	if (w->nrows == w->cap)
		return cqrs_fail(err, CQRS_EXIT_SOFTWARE,
				 "more events than the window opened with");
	struct window_row *row = &w->rows[w->nrows];
	row->ev = *ev;
	row->payload = malloc(ev->data_len + ev->metadata_len + 1);
	if (row->payload == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	/* the facade's metadata buffer is the next event's: copied */
	memcpy(row->payload, ev->data, ev->data_len);
	memcpy(row->payload + ev->data_len, ev->metadata, ev->metadata_len);
	row->ev.data = row->payload;
	row->ev.metadata = row->payload + ev->data_len;
	id_map_put(&w->added, ev->event_id, (int64_t)w->nrows);
	id_map_put(&w->versions, ev->aggregate_id, ev->aggregate_version);
	w->nrows++;
	put_row(&w->copy, ev, w->nrows == 1);
	if (w->copy.oom)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	/* the server takes the rows in while the next events are checked */
	if (w->nrows == 1 && copy_start(s, err) < 0)
		return -1;
	return w->copy.len >= COPY_CHUNK ? copy_send(s, err) : 0;
}

static int pg_window_close(cqrs_store *st, cqrs_error *err)
{
	struct pg_store *s = (struct pg_store *)st;
	if (!s->window.open)
		return 0;
	int rc = s->window.copying ? copy_end(s, err) : 0;
	window_forget(s);
	if (rc < 0) {
		/* the head and versions moved past rows the server did not
		 * take: read them again should the transaction go on */
		s->locked = false;
		forget_versions(s);
	}
	return rc;
}

static int pg_append(cqrs_store *st, cqrs_event *ev, cqrs_error *err)
{
	struct pg_store *s = (struct pg_store *)st;
	if (!s->in_txn)
		return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "append outside a transaction");
	if (!s->locked && take_head(s, err) < 0)
		return -1;
	static const struct cqrs_append_backend one = { NULL, stored_version, find_stored,
							insert_event };
	static const struct cqrs_append_backend in_window = { NULL, window_version, window_find,
							      window_insert };
	struct cqrs_append_backend backend = s->window.open ? in_window : one;
	backend.backend = s;
	return cqrs_append_event(&backend, &s->versions, &s->head, ev, err);
}

static int pg_commit(cqrs_store *st, cqrs_error *err)
{
	struct pg_store *s = (struct pg_store *)st;
	window_forget(s);
	bool appended = s->locked;
	s->in_txn = false;
	s->locked = false;
	/* a window whose rows the server refused: the transaction is
	 * aborted, and COMMIT would only roll it back */
	if (settle(s, err) < 0) {
		unsettle(s);
		forget_versions(s);
		PGresult *r = s->pq->exec(s->conn, "ROLLBACK");
		if (r != NULL)
			s->pq->clear(r);
		return -1;
	}
	PGresult *r = s->pq->exec(s->conn, "COMMIT");
	if (r != NULL && s->pq->result_status(r) == PGRES_COMMAND_OK) {
		s->pq->clear(r);
		if (appended) {
			s->kept_head = s->head;
			s->versions_kept = true;
		}
		return 0;
	}
	forget_versions(s);
	if (connection_lost(s)) {
		/* the COMMIT may or may not have reached the server */
		char reason[512];
		first_line(s->pq->error_message(s->conn), reason, sizeof reason);
		if (r != NULL)
			s->pq->clear(r);
		return cqrs_fail(err, CQRS_EXIT_TEMPFAIL,
				 "%s: commit failed: the connection to the server was lost (%s); "
				 "the events may or may not be stored: run again (events with an "
				 "event_id are not stored twice)",
				 s->name, reason);
	}
	pg_fail(s, r, "commit failed", err);
	r = s->pq->exec(s->conn, "ROLLBACK");
	if (r != NULL)
		s->pq->clear(r);
	return -1;
}

static void pg_rollback(cqrs_store *st)
{
	struct pg_store *s = (struct pg_store *)st;
	window_forget(s);
	forget_versions(s);
	unsettle(s);
	if (s->in_txn) {
		PGresult *r = s->pq->exec(s->conn, "ROLLBACK");
		if (r != NULL)
			s->pq->clear(r);
	}
	s->in_txn = false;
	s->locked = false;
}

static int64_t pg_aggregate_version(cqrs_store *st, const uint8_t id[CQRS_UUID_LEN],
				    cqrs_error *err)
{
	return stored_version((struct pg_store *)st, id, err);
}

static int64_t single_int(struct pg_store *s, const char *sql, cqrs_error *err)
{
	PGresult *r = query(s, sql, 0, NULL, NULL, "cannot read the store", err);
	if (r == NULL)
		return -1;
	int64_t v = s->pq->ntuples(r) > 0 ? int_at(s->pq, r, 0, 0) : 0;
	s->pq->clear(r);
	return v;
}

static int64_t pg_last_sequence(cqrs_store *st, cqrs_error *err)
{
	return single_int((struct pg_store *)st, "SELECT coalesce(max(sequence), 0) FROM events",
			  err);
}

static int pg_head(cqrs_store *st, int64_t *sequence, uint8_t hash[CQRS_HASH_LEN], cqrs_error *err)
{
	struct pg_store *s = (struct pg_store *)st;
	PGresult *r = query(s, "SELECT sequence, hash FROM events ORDER BY sequence DESC LIMIT 1",
			    0, NULL, NULL, "cannot read the store", err);
	if (r == NULL)
		return -1;
	*sequence = 0;
	memset(hash, 0, CQRS_HASH_LEN);
	if (s->pq->ntuples(r) > 0) {
		*sequence = int_at(s->pq, r, 0, 0);
		hash_at(s->pq, r, 0, 1, hash);
	}
	s->pq->clear(r);
	return 0;
}

/* --- reading: keyset pages by sequence ----------------------------------- */

/* A PostgreSQL array literal of n strings: {"a","b"}. */
static char *array_literal(const char *const *values, size_t n)
{
	struct cqrs_strbuf b = { 0 };
	cqrs_strbuf_putc(&b, '{');
	for (size_t i = 0; i < n; i++) {
		cqrs_strbuf_puts(&b, i ? ",\"" : "\"");
		for (const char *p = values[i]; *p != '\0'; p++) {
			if (*p == '"' || *p == '\\')
				cqrs_strbuf_putc(&b, '\\');
			cqrs_strbuf_putc(&b, *p);
		}
		cqrs_strbuf_putc(&b, '"');
	}
	cqrs_strbuf_putc(&b, '}');
	char *out = b.oom ? NULL : strdup(cqrs_strbuf_str(&b));
	cqrs_strbuf_free(&b);
	return out;
}

static char *uuid_array_literal(const uint8_t (*ids)[CQRS_UUID_LEN], size_t n)
{
	char *text = malloc(n * 37 + 3);
	if (text == NULL)
		return NULL;
	size_t pos = 0;
	text[pos++] = '{';
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			text[pos++] = ',';
		uuid_text(ids[i], text + pos);
		pos += 36;
	}
	text[pos++] = '}';
	text[pos] = '\0';
	return text;
}

static char *int_text(int64_t v)
{
	char buf[24];
	snprintf(buf, sizeof buf, "%lld", (long long)v);
	return strdup(buf);
}

/* Parameters: $1 the keyset bound, $2 the page's size, then the filter's
 * values $3..$15 (each NULL when the filter does not use it). */
enum {
	P_TO = 2,
	P_AGG_ID,
	P_AGG_VERSION,
	P_AGG_TYPE,
	P_EVENT_TYPE,
	P_CORRELATION,
	P_UNTIL,
	P_AGG_IDS,
	P_AGG_TYPES,
	P_EVENT_TYPES,
	P_CORRELATIONS,
	P_AFTER, /* reverse and one aggregate's reads: sequence > after */
	NPARAMS = P_AFTER
};

static const Oid param_types[NPARAMS + 1] = {
	OID_INT8,	OID_INT8,	OID_INT8,	OID_UUID, OID_INT8,
	OID_TEXT,	OID_TEXT,	OID_TEXT,	OID_TEXT, OID_UUID_ARRAY,
	OID_TEXT_ARRAY, OID_TEXT_ARRAY, OID_TEXT_ARRAY, OID_INT8,
};

static void filter_sql(struct cqrs_strbuf *sql, const cqrs_filter *f, bool verify)
{
	cqrs_strbuf_puts(sql, EVENT_COLUMNS);
	if (verify)
		cqrs_strbuf_puts(sql, ", correlation_id");
	if (f->aggregate_id != NULL) {
		/* One aggregate's pages are keyed by its versions, which
		 * follow its sequences: each page can be a range of its
		 * index, in order.  Keyed by sequence, a page was often
		 * planned as a sort of all the aggregate's later events
		 * (15,000 events of a 300,000-event store: 0.42-0.45 s now,
		 * 0.54-0.56 s so).  Before the table's statistics exist
		 * (a bulk load that autovacuum has not analyzed yet), either
		 * key is planned that way. */
		cqrs_strbuf_printf(
			sql,
			" FROM events WHERE aggregate_id = $%d AND aggregate_version %s $1"
			" AND sequence > $%d",
			P_AGG_ID + 1, f->reverse ? "<" : ">", P_AFTER + 1);
		if (f->reverse)
			cqrs_strbuf_printf(sql, " AND aggregate_version > $%d", P_AGG_VERSION + 1);
	} else {
		cqrs_strbuf_puts(sql, f->reverse ? " FROM events WHERE sequence < $1"
						 : " FROM events WHERE sequence > $1");
		if (f->reverse)
			cqrs_strbuf_printf(sql, " AND sequence > $%d", P_AFTER + 1);
	}
	if (f->to > 0)
		cqrs_strbuf_printf(sql, " AND sequence <= $%d", P_TO + 1);
	if (f->aggregate_type != NULL)
		cqrs_strbuf_printf(sql, " AND aggregate_type = $%d", P_AGG_TYPE + 1);
	if (f->event_type != NULL)
		cqrs_strbuf_printf(sql, " AND event_type = $%d", P_EVENT_TYPE + 1);
	if (f->correlation_id != NULL)
		cqrs_strbuf_printf(sql, " AND correlation_id = $%d", P_CORRELATION + 1);
	if (f->until != NULL)
		cqrs_strbuf_printf(sql, " AND \"timestamp\" <= $%d", P_UNTIL + 1);
	if (f->naggregate_ids > 0)
		cqrs_strbuf_printf(sql, " AND aggregate_id = ANY($%d)", P_AGG_IDS + 1);
	if (f->naggregate_types > 0)
		cqrs_strbuf_printf(sql, " AND aggregate_type = ANY($%d)", P_AGG_TYPES + 1);
	if (f->nevent_types > 0)
		cqrs_strbuf_printf(sql, " AND event_type = ANY($%d)", P_EVENT_TYPES + 1);
	if (f->ncorrelation_ids > 0)
		cqrs_strbuf_printf(sql, " AND correlation_id = ANY($%d)", P_CORRELATIONS + 1);
	if (f->aggregate_id != NULL)
		cqrs_strbuf_puts(sql, f->reverse ? " ORDER BY aggregate_version DESC LIMIT $2"
						 : " ORDER BY aggregate_version LIMIT $2");
	else
		cqrs_strbuf_puts(sql, f->reverse ? " ORDER BY sequence DESC LIMIT $2"
						 : " ORDER BY sequence LIMIT $2");
}

static void free_cursor(struct pg_cursor *c)
{
	if (c->page != NULL)
		((struct pg_store *)c->base.store)->pq->clear(c->page);
	for (size_t i = 0; i < sizeof c->params / sizeof c->params[0]; i++)
		free(c->params[i]);
	free(c->sql);
	free(c);
}

static struct pg_cursor *new_cursor(struct pg_store *s, const cqrs_filter *f, bool verify,
				    cqrs_error *err)
{
	struct pg_cursor *c = calloc(1, sizeof *c);
	if (c == NULL) {
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		return NULL;
	}
	c->base.store = &s->base;
	c->verify = verify;
	c->remaining = f->limit > 0 ? f->limit : -1;
	c->by_version = f->aggregate_id != NULL;
	if (c->by_version)
		c->keyset = f->reverse ? INT64_MAX : f->after_version;
	else
		c->keyset = f->reverse ? (f->to > 0 ? f->to + 1 : INT64_MAX) : f->after;
	struct cqrs_strbuf sql = { 0 };
	filter_sql(&sql, f, verify);
	c->sql = sql.oom ? NULL : strdup(cqrs_strbuf_str(&sql));
	cqrs_strbuf_free(&sql);
	bool oom = c->sql == NULL;
	char **p = c->params;
	if (f->reverse || c->by_version)
		oom |= (p[P_AFTER] = int_text(f->after)) == NULL;
	if (f->to > 0)
		oom |= (p[P_TO] = int_text(f->to)) == NULL;
	if (f->aggregate_id != NULL) {
		char id[37];
		uuid_text(f->aggregate_id, id);
		oom |= (p[P_AGG_ID] = strdup(id)) == NULL;
		oom |= (p[P_AGG_VERSION] = int_text(f->after_version)) == NULL;
	}
	if (f->aggregate_type != NULL)
		oom |= (p[P_AGG_TYPE] = strdup(f->aggregate_type)) == NULL;
	if (f->event_type != NULL)
		oom |= (p[P_EVENT_TYPE] = strdup(f->event_type)) == NULL;
	if (f->correlation_id != NULL)
		oom |= (p[P_CORRELATION] = strdup(f->correlation_id)) == NULL;
	if (f->until != NULL)
		oom |= (p[P_UNTIL] = strdup(f->until)) == NULL;
	if (f->naggregate_ids > 0)
		oom |= (p[P_AGG_IDS] = uuid_array_literal(f->aggregate_ids, f->naggregate_ids)) ==
		       NULL;
	if (f->naggregate_types > 0)
		oom |= (p[P_AGG_TYPES] = array_literal(f->aggregate_types, f->naggregate_types)) ==
		       NULL;
	if (f->nevent_types > 0)
		oom |= (p[P_EVENT_TYPES] = array_literal(f->event_types, f->nevent_types)) == NULL;
	if (f->ncorrelation_ids > 0)
		oom |= (p[P_CORRELATIONS] =
				array_literal(f->correlation_ids, f->ncorrelation_ids)) == NULL;
	if (oom) {
		free_cursor(c);
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		return NULL;
	}
	return c;
}

/* The next page after the cursor's keyset; the previous page is freed. */
static int fetch_page(struct pg_cursor *c, cqrs_error *err)
{
	struct pg_store *s = (struct pg_store *)c->base.store;
	if (c->page != NULL) {
		s->pq->clear(c->page);
		c->page = NULL;
	}
	int64_t want = PAGE_ROWS;
	if (c->remaining >= 0 && c->remaining < want)
		want = c->remaining;
	char keyset[24], limit[24];
	snprintf(keyset, sizeof keyset, "%lld", (long long)c->keyset);
	snprintf(limit, sizeof limit, "%lld", (long long)want);
	const char *v[NPARAMS + 1];
	v[0] = keyset;
	v[1] = limit;
	for (int i = 2; i <= NPARAMS; i++)
		v[i] = c->params[i];
	c->page = query(s, c->sql, NPARAMS + 1, param_types, v, "cannot read the store", err);
	if (c->page == NULL)
		return -1;
	c->nrows = s->pq->ntuples(c->page);
	c->row = 0;
	c->last_page = c->nrows < want;
	if (c->remaining >= 0)
		c->remaining -= c->nrows;
	return 0;
}

static cqrs_cursor *pg_read(cqrs_store *st, const cqrs_filter *f, cqrs_error *err)
{
	struct pg_cursor *c = new_cursor((struct pg_store *)st, f, false, err);
	if (c == NULL)
		return NULL;
	if (fetch_page(c, err) < 0) {
		free_cursor(c);
		return NULL;
	}
	return &c->base;
}

static cqrs_cursor *pg_verify_read(cqrs_store *st, cqrs_error *err)
{
	cqrs_filter all = { 0 };
	struct pg_cursor *c = new_cursor((struct pg_store *)st, &all, true, err);
	if (c == NULL)
		return NULL;
	if (fetch_page(c, err) < 0) {
		free_cursor(c);
		return NULL;
	}
	return &c->base;
}

static int pg_cursor_next(cqrs_cursor *cur, cqrs_event *ev, cqrs_error *err)
{
	struct pg_cursor *c = (struct pg_cursor *)cur;
	struct pg_store *s = (struct pg_store *)cur->store;
	if (c->row >= c->nrows) {
		if (c->last_page || c->remaining == 0)
			return 0;
		if (fetch_page(c, err) < 0)
			return -1;
		if (c->nrows == 0)
			return 0;
	}
	bool ok = row_to_event(s->pq, c->page, c->row, ev);
	c->keyset = c->by_version ? ev->aggregate_version : ev->sequence;
	c->row++;
	if (!ok)
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "%s: event %lld is damaged: a column is missing or malformed",
				 s->name, (long long)ev->sequence);
	return 1;
}

static void pg_cursor_close(cqrs_cursor *cur)
{
	free_cursor((struct pg_cursor *)cur);
}

static int pg_verify_row(cqrs_cursor *cur, const cqrs_event *ev, cqrs_error *err)
{
	struct pg_cursor *c = (struct pg_cursor *)cur;
	const struct cqrs_pq *pq = ((struct pg_store *)cur->store)->pq;
	int row = c->row - 1;
	char corr[CQRS_MAX_CORRELATION + 1];
	bool has = cqrs_event_correlation(ev, corr, sizeof corr);
	bool col_null = pq->getisnull(c->page, row, 11);
	const char *col = pq->getvalue(c->page, row, 11);
	if (has != !col_null || (has && strcmp(col, corr) != 0))
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "column correlation_id (%s%s%s) does not match the hashed "
				 "metadata's (%s%s%s): the row was edited",
				 col_null ? "" : "'", col_null ? "NULL" : col, col_null ? "" : "'",
				 has ? "'" : "", has ? corr : "none", has ? "'" : "");
	return 0;
}

/* --- snapshots, processed messages, counters ----------------------------- */

static int pg_snapshot_load(cqrs_store *st, const uint8_t id[CQRS_UUID_LEN], int64_t *version,
			    char **state, cqrs_error *err)
{
	struct pg_store *s = (struct pg_store *)st;
	char text[37];
	uuid_text(id, text);
	const char *v[1] = { text };
	static const Oid t[1] = { OID_UUID };
	PGresult *r = query(s,
			    "SELECT aggregate_version, state FROM snapshots WHERE aggregate_id = $1"
			    " ORDER BY aggregate_version DESC LIMIT 1",
			    1, t, v, "cannot load snapshot", err);
	if (r == NULL)
		return -1;
	if (s->pq->ntuples(r) > 0)
		*version = int_at(s->pq, r, 0, 0);
	return first_text(s, r, 1, state, err);
}

static int pg_snapshot_save(cqrs_store *st, const uint8_t id[CQRS_UUID_LEN], const char *type,
			    int64_t version, const char *state, cqrs_error *err)
{
	struct pg_store *s = (struct pg_store *)st;
	char text[37], ver[24], now[CQRS_TIMESTAMP_LEN + 1];
	uuid_text(id, text);
	snprintf(ver, sizeof ver, "%lld", (long long)version);
	cqrs_timestamp_now(now);
	const char *v[5] = { text, type, ver, state, now };
	static const Oid t[5] = { OID_UUID, OID_TEXT, OID_INT8, OID_TEXT, OID_TEXT };
	return command(s,
		       "INSERT INTO snapshots (aggregate_id, aggregate_type,"
		       " aggregate_version, state, created_at) VALUES ($1, $2, $3, $4, $5)"
		       " ON CONFLICT (aggregate_id, aggregate_version) DO UPDATE SET"
		       " aggregate_type = excluded.aggregate_type, state = excluded.state,"
		       " created_at = excluded.created_at",
		       5, t, v, "cannot save snapshot", err);
}

static int pg_processed_get(cqrs_store *st, const char *message_id, char **result, cqrs_error *err)
{
	struct pg_store *s = (struct pg_store *)st;
	const char *v[1] = { message_id };
	static const Oid t[1] = { OID_TEXT };
	PGresult *r = query(s, "SELECT result FROM processed_messages WHERE message_id = $1", 1, t,
			    v, "store query failed", err);
	if (r == NULL)
		return -1;
	return first_text(s, r, 0, result, err);
}

static int pg_processed_put(cqrs_store *st, const char *message_id, const char *handler,
			    const char *result, cqrs_error *err)
{
	struct pg_store *s = (struct pg_store *)st;
	if (!s->in_txn)
		return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "processed_put outside a transaction");
	if (settle(s, err) < 0)
		return -1;
	char now[CQRS_TIMESTAMP_LEN + 1];
	cqrs_timestamp_now(now);
	const char *v[4] = { message_id, handler, result, now };
	static const Oid t[4] = { OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT };
	PGresult *r =
		checked(s,
			s->pq->exec_params(s->conn,
					   "INSERT INTO processed_messages (message_id, handler,"
					   " result, processed_at) VALUES ($1, $2, $3, $4)"
					   " ON CONFLICT (message_id) DO NOTHING",
					   4, t, v, NULL, NULL, 0),
			PGRES_COMMAND_OK, "cannot record processed message", err);
	if (r == NULL)
		return -1;
	bool recorded = strcmp(s->pq->cmd_tuples(r), "1") == 0;
	s->pq->clear(r);
	/* Writers decide before they take the append lock: two that got the
	 * same message at once both saw it new.  When their appends touched
	 * no common aggregate (say, a new order each), the second finds the
	 * first's record only here, its events already in its transaction. */
	if (!recorded)
		return cqrs_fail(err, CQRS_EXIT_TEMPFAIL,
				 "%s: message '%s' was handled by another writer at the same "
				 "time; nothing of this transaction was stored: run again (it "
				 "then gives the other's result)",
				 s->name, message_id);
	return 0;
}

/* Runs sql ($1 name, $2 value) and returns the counter's value, which must
 * be at least least. */
static int64_t counter_sql(struct pg_store *s, const char *sql, const char *name, int64_t value,
			   int64_t least, cqrs_error *err)
{
	if (!s->in_txn)
		return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "counter update outside a transaction");
	char f[24];
	snprintf(f, sizeof f, "%lld", (long long)value);
	const char *v[2] = { name, f };
	static const Oid t[2] = { OID_TEXT, OID_INT8 };
	PGresult *r = query(s, sql, 2, t, v, "cannot update counter", err);
	if (r == NULL)
		return -1;
	int64_t got = s->pq->ntuples(r) > 0 ? int_at(s->pq, r, 0, 0) : -1;
	s->pq->clear(r);
	return got >= least
		       ? got
		       : cqrs_fail(err, CQRS_EXIT_SOFTWARE, "counter '%s' did not advance", name);
}

static int64_t pg_counter_next(cqrs_store *st, const char *name, cqrs_error *err)
{
	return counter_sql((struct pg_store *)st,
			   "INSERT INTO counters (name, value) VALUES ($1, 1)"
			   " ON CONFLICT (name) DO UPDATE SET value = counters.value + 1"
			   " RETURNING value",
			   name, 0, 1, err);
}

static int64_t pg_counter_set(cqrs_store *st, const char *name, int64_t value, cqrs_error *err)
{
	return counter_sql((struct pg_store *)st,
			   "INSERT INTO counters (name, value) VALUES ($1, $2)"
			   " ON CONFLICT (name) DO UPDATE SET value = $2 RETURNING value",
			   name, value, 0, err);
}

/* relay ops (issue 14): the names are COLLATE "C", so left() compares bytes */
static int pg_counters_each(cqrs_store *st, const char *prefix, cqrs_counter_fn *fn, void *arg,
			    cqrs_error *err)
{
	struct pg_store *s = (struct pg_store *)st;
	const char *v[1] = { prefix };
	static const Oid t[1] = { OID_TEXT };
	PGresult *r = query(s,
			    "SELECT name, value FROM counters"
			    " WHERE left(name, length($1)) = $1 ORDER BY name",
			    1, t, v, "cannot read counters", err);
	if (r == NULL)
		return -1;
	for (int i = 0; i < s->pq->ntuples(r); i++)
		fn(arg, s->pq->getvalue(r, i, 0), int_at(s->pq, r, i, 1));
	s->pq->clear(r);
	return 0;
}

/* --- following: LISTEN/NOTIFY -------------------------------------------- */

static int drain_notifications(struct pg_store *s, cqrs_error *err)
{
	if (!s->pq->consume_input(s->conn))
		return pg_fail(s, NULL, "waiting for new events failed", err);
	int n = 0;
	PGnotify *note;
	while ((note = s->pq->notifies(s->conn)) != NULL) {
		s->pq->freemem(note);
		n++;
	}
	return n;
}

static int pg_wait(cqrs_store *st, int timeout_ms, const int *fds, int nfds, cqrs_error *err)
{
	struct pg_store *s = (struct pg_store *)st;
	if (settle(s, err) < 0)
		return -1;
	if (!s->listening) {
		char *ident = s->pq->escape_identifier(s->conn, s->channel, strlen(s->channel));
		if (ident == NULL)
			return pg_fail(s, NULL, "cannot listen for new events", err);
		char sql[200];
		snprintf(sql, sizeof sql, "LISTEN %s", ident);
		s->pq->freemem(ident);
		if (exec_command(s, sql, "cannot listen for new events", err) < 0)
			return -1;
		s->listening = true;
		/* an append that committed between the caller's last read and
		 * the LISTEN sent no notification this connection heard */
		return 1;
	}
	int sock = s->pq->socket(s->conn);
	if (sock < 0)
		return pg_fail(s, NULL, "waiting for new events failed", err);
	int queued = drain_notifications(s, err);
	if (queued != 0)
		return queued < 0 ? -1 : 1;
	int r = cqrs_store_poll(sock, fds, nfds, timeout_ms, err);
	if (r != 1)
		return r;
	int got = drain_notifications(s, err);
	if (got < 0)
		return -1;
	if (connection_lost(s))
		return pg_fail(s, NULL, "waiting for new events failed", err);
	return 1;
}

static const struct cqrs_store_ops pg_ops = {
	.close = pg_close,
	.set_durability = pg_set_durability,
	.begin = pg_begin,
	.append = pg_append,
	.window_open = pg_window_open,
	.window_close = pg_window_close,
	.lock = pg_lock,
	.commit = pg_commit,
	.rollback = pg_rollback,
	.aggregate_version = pg_aggregate_version,
	.last_sequence = pg_last_sequence,
	.read = pg_read,
	.cursor_next = pg_cursor_next,
	.cursor_close = pg_cursor_close,
	.snapshot_load = pg_snapshot_load,
	.snapshot_save = pg_snapshot_save,
	.processed_get = pg_processed_get,
	.processed_put = pg_processed_put,
	.counter_next = pg_counter_next,
	.counter_set = pg_counter_set,
	.counters_each = pg_counters_each,
	.wait = pg_wait,
	.head = pg_head,
	.verify_read = pg_verify_read,
	.verify_row = pg_verify_row,
};

/* --- operations: cqrs-health and cqrs-backup (issue 13) ------------------ */

bool cqrs_pg_is(const cqrs_store *st)
{
	return st != NULL && st->ops == &pg_ops;
}

/* One row of text from sql (parameter $1: the schema's name): 0 with r
 * kept for the caller to clear, or -1 with *err. */
static PGresult *facts_row(struct pg_store *s, const char *sql, cqrs_error *err)
{
	const char *name[1] = { s->schema };
	static const Oid t[1] = { OID_TEXT };
	PGresult *r = query(s, sql, strstr(sql, "$1") != NULL ? 1 : 0, t, name,
			    "cannot check the store", err);
	if (r != NULL && s->pq->ntuples(r) != 1) {
		s->pq->clear(r);
		cqrs_fail(err, CQRS_EXIT_SOFTWARE, "%s: cannot check the store: no row", s->name);
		return NULL;
	}
	return r;
}

/* A finding: the first one is kept in f->integrity. */
static void finding(struct cqrs_store_facts *f, const char *fmt, ...) CQRS_PRINTF(2, 3);
static void finding(struct cqrs_store_facts *f, const char *fmt, ...)
{
	if (f->problems++ > 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(f->integrity, sizeof f->integrity, fmt, ap);
	va_end(ap);
}

/* What an operator checks cheaply in place of SQLite's quick_check: the
 * store's tables are there, the triggers that keep events append-only are
 * there and enabled, and the sequences run 1..count with no row missing
 * (one index-only pass over the primary key).  Only reads: the read-only
 * role of cqrs-postgres(7) may run it. */
int cqrs_pg_facts(cqrs_store *st, struct cqrs_store_facts *f, cqrs_error *err)
{
	memset(f, 0, sizeof *f);
	if (!cqrs_pg_is(st))
		return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "not a PostgreSQL store");
	struct pg_store *s = (struct pg_store *)st;
	const struct cqrs_pq *pq = s->pq;
	f->server = true;
	f->schema_current = PG_SCHEMA_VERSION;
	int64_t v = stored_schema_version(s, err);
	if (v < 0)
		return -1;
	f->schema = (int)v;
	static const char *const tables[] = { "store_info",	    "events",	"snapshots",
					      "processed_messages", "counters", "checkpoints" };
	for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
		const char *name[1] = { tables[i] };
		static const Oid t[1] = { OID_TEXT };
		PGresult *r = query(s, "SELECT to_regclass(quote_ident($1)) IS NOT NULL", 1, t,
				    name, "cannot check the store", err);
		if (r == NULL)
			return -1;
		bool there = strcmp(pq->getvalue(r, 0, 0), "t") == 0;
		pq->clear(r);
		if (!there)
			finding(f, "table %s is missing", tables[i]);
	}
	if (f->problems > 0) {
		f->events = -1;
		return 0;
	}
	PGresult *r = facts_row(s,
				"SELECT count(*) FROM pg_trigger WHERE tgrelid = 'events'::regclass"
				" AND tgname IN ('events_no_change', 'events_no_truncate')"
				" AND tgenabled <> 'D'",
				err);
	if (r == NULL)
		return -1;
	if (int_at(pq, r, 0, 0) != 2)
		finding(f, "the triggers that keep events append-only are missing or disabled");
	pq->clear(r);
	r = facts_row(s,
		      "SELECT count(*), coalesce(min(sequence), 0), coalesce(max(sequence), 0),"
		      " to_regclass('saga_instances') IS NULL,"
		      " (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class AS c"
		      "  JOIN pg_namespace AS n ON n.oid = c.relnamespace"
		      "  WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')),"
		      " pg_database_size(current_database())"
		      " FROM events",
		      err);
	if (r == NULL)
		return -1;
	int64_t count = int_at(pq, r, 0, 0), first = int_at(pq, r, 0, 1),
		last = int_at(pq, r, 0, 2);
	f->no_saga_tables = strcmp(pq->getvalue(r, 0, 3), "t") == 0;
	f->size_bytes = int_at(pq, r, 0, 4);
	f->database_bytes = int_at(pq, r, 0, 5);
	pq->clear(r);
	f->events = count;
	if (count > 0 && (first != 1 || last != count))
		finding(f,
			"%lld events, but their sequences run from %lld to %lld: rows are missing",
			(long long)count, (long long)first, (long long)last);
	if (f->problems == 0)
		snprintf(f->integrity, sizeof f->integrity, "ok");
	return 0;
}

int cqrs_pg_read_moment(cqrs_store *st, bool begin, cqrs_error *err)
{
	struct pg_store *s = (struct pg_store *)st;
	if (!begin) {
		cqrs_error ignored = { 0 };
		s->in_txn = false;
		return exec_command(s, "COMMIT", "cannot read the store", err ? err : &ignored);
	}
	if (exec_command(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
			 "cannot read the store", err) < 0)
		return -1;
	s->in_txn = true;
	return 0;
}

/* The portable tables by name, with their columns (the first is the
 * key) as both backends have them, in SQLite's order, so that a backup of
 * either store reads alike: no other name reaches SQL.  The saga tables
 * travel too (issue 13), so that sagas in flight move with the store; a
 * lease (PostgreSQL's alone) does not: an instance arrives free. */
static const struct portable_table {
	const char *table;
	const char *order; /* the dump's order: the runner takes instances by rowid */
	int n;
	const char *columns[CQRS_PORTABLE_COLUMNS];
	bool numeric[CQRS_PORTABLE_COLUMNS];
} portable[] = {
	{ "checkpoints", "name", 3, { "name", "sequence", "updated_at" }, { false, true, false } },
	{ "counters", "name", 2, { "name", "value" }, { false, true } },
	{ "processed_messages",
	  "message_id",
	  4,
	  { "message_id", "handler", "result", "processed_at" },
	  { false, false, false, false } },
	{ "saga_breakers",
	  "name",
	  5,
	  { "name", "state", "failures", "opened_at", "updated_at" },
	  { false, false, true, false, false } },
	{ "saga_instances",
	  "rowid",
	  15,
	  { "saga_id", "saga_type", "correlation_id", "current_step", "state", "status",
	    "created_at", "updated_at", "revision", "attempts", "next_attempt_at", "deadline_at",
	    "start_sequence", "outcome", "last_error" },
	  { false, false, false, true, false, false, false, false, true, true, false, false, true,
	    false, false } },
};

static const struct portable_table *portable_named(const char *table)
{
	for (size_t i = 0; i < sizeof portable / sizeof *portable; i++)
		if (strcmp(portable[i].table, table) == 0)
			return &portable[i];
	return NULL;
}

int cqrs_pg_table_rows(cqrs_store *st, const char *table, cqrs_pg_row_fn row, void *arg,
		       cqrs_error *err)
{
	struct pg_store *s = (struct pg_store *)st;
	const struct cqrs_pq *pq = s->pq;
	const struct portable_table *p = portable_named(table);
	if (p == NULL)
		return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "%s: not a portable table", table);
	struct cqrs_strbuf sql = { 0 };
	cqrs_strbuf_puts(&sql, "SELECT ");
	for (int c = 0; c < p->n; c++)
		cqrs_strbuf_printf(&sql, "%s%s", c ? ", " : "", p->columns[c]);
	cqrs_strbuf_printf(&sql, " FROM %s ORDER BY %s", p->table, p->order);
	PGresult *r = sql.oom ? NULL
			      : query(s, cqrs_strbuf_str(&sql), 0, NULL, NULL,
				      "cannot read the store", err);
	if (sql.oom)
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	cqrs_strbuf_free(&sql);
	if (r == NULL)
		return -1;
	int rc = 0;
	const char *values[CQRS_PORTABLE_COLUMNS];
	for (int i = 0; rc == 0 && i < pq->ntuples(r); i++) {
		for (int c = 0; c < p->n; c++)
			values[c] = pq->getisnull(r, i, c) ? NULL : pq->getvalue(r, i, c);
		rc = row(arg, p->n, p->columns, values, p->numeric, err);
	}
	pq->clear(r);
	return rc;
}

int cqrs_pg_clear_table(cqrs_store *st, const char *table, cqrs_error *err)
{
	struct pg_store *s = (struct pg_store *)st;
	if (portable_named(table) == NULL)
		return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "%s: not a portable table", table);
	char sql[160];
	snprintf(sql, sizeof sql, "DELETE FROM %s", table);
	return exec_command(s, sql, "cannot restore", err);
}

int cqrs_pg_insert_row(cqrs_store *st, const char *table, int n, const char *const *names,
		       const char *const *values, cqrs_error *err)
{
	struct pg_store *s = (struct pg_store *)st;
	const struct portable_table *p = portable_named(table);
	if (p == NULL)
		return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "%s: not a portable table", table);
	for (int i = 0; i < n; i++) {
		int c = 0;
		while (c < p->n && strcmp(p->columns[c], names[i]) != 0)
			c++;
		if (c == p->n)
			return cqrs_fail(err, CQRS_EXIT_DATAERR, "table %s has no column %s", table,
					 names[i]);
	}
	struct cqrs_strbuf sql = { 0 };
	cqrs_strbuf_printf(&sql, "INSERT INTO %s (", table);
	for (int i = 0; i < n; i++) {
		char *ident = s->pq->escape_identifier(s->conn, names[i], strlen(names[i]));
		if (ident == NULL) {
			cqrs_strbuf_free(&sql);
			return pg_fail(s, NULL, "cannot restore a row", err);
		}
		cqrs_strbuf_printf(&sql, "%s%s", i ? "," : "", ident);
		s->pq->freemem(ident);
	}
	cqrs_strbuf_puts(&sql, ") VALUES (");
	for (int i = 1; i <= n; i++)
		cqrs_strbuf_printf(&sql, "%s$%d", i > 1 ? "," : "", i);
	cqrs_strbuf_putc(&sql, ')');
	int rc = sql.oom ? cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory")
			 : command(s, cqrs_strbuf_str(&sql), n, NULL, values,
				   "cannot restore a row", err);
	cqrs_strbuf_free(&sql);
	return rc;
}

const char *cqrs_pg_name(const cqrs_store *st)
{
	return ((const struct pg_store *)st)->name;
}

/* The saga runner's tables share the store's transactions (issue 13,
 * sagas): saga_store_pg.c runs its statements on this connection. */
struct pg_conn *cqrs_pg_handle(cqrs_store *st)
{
	if (st == NULL || st->ops != &pg_ops)
		return NULL;
	struct pg_store *s = (struct pg_store *)st;
	/* the caller's statements come after the last COPY (a failure of it
	 * stays for the commit to report) */
	cqrs_error later = { 0 };
	settle(s, &later);
	return s->conn;
}

int cqrs_pg_fail(cqrs_store *st, struct pg_result *res, const char *what, cqrs_error *err)
{
	return pg_fail((struct pg_store *)st, res, what, err);
}
