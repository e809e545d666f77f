/*
 * libcqrs: everything the cqrs-* tools share.
 *
 * The tools in src/ include only this header.  Objects with invariants
 * (the store, a cursor, an input stream) are opaque; plain records (an
 * event, an error, a read filter) are structs the caller may fill.
 */
#ifndef CQRS_H
#define CQRS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/*
 * Exit status, one table for the whole toolkit (also in cqrs(7)).
 * sysexits(3) values where their meaning fits, small numbers of our own.
 */
enum cqrs_exit {
	CQRS_EXIT_OK = 0,
	CQRS_EXIT_NOT_FOUND = 1,    /* query-like tools: nothing matched */
	CQRS_EXIT_CONFLICT = 3,	    /* optimistic concurrency: version mismatch */
	CQRS_EXIT_REJECTED = 4,	    /* a command broke a business rule */
	CQRS_EXIT_PARKED = 5,	    /* done, but some events were parked (read side) */
	CQRS_EXIT_BEHIND = 6,	    /* the store is behind what a witness saw: rolled back */
	CQRS_EXIT_LIMIT = 7,	    /* a time or memory limit stopped the work */
	CQRS_EXIT_USAGE = 64,	    /* EX_USAGE */
	CQRS_EXIT_DATAERR = 65,	    /* EX_DATAERR: bad input, not a cqrs store */
	CQRS_EXIT_NOINPUT = 66,	    /* EX_NOINPUT: input file or store missing */
	CQRS_EXIT_UNAVAILABLE = 69, /* EX_UNAVAILABLE: a program it needs is missing */
	CQRS_EXIT_SOFTWARE = 70,    /* EX_SOFTWARE: internal error */
	CQRS_EXIT_OSERR = 71,	    /* EX_OSERR: out of memory, fork failed */
	CQRS_EXIT_CANTCREAT = 73,   /* EX_CANTCREAT: cannot create the store */
	CQRS_EXIT_IOERR = 74,	    /* EX_IOERR: read, write or fsync failed */
	CQRS_EXIT_TEMPFAIL = 75,    /* EX_TEMPFAIL: store busy or locked */
	CQRS_EXIT_NOPERM = 77,	    /* EX_NOPERM */
	CQRS_EXIT_CONFIG = 78,	    /* EX_CONFIG: bad configuration, newer schema */
};

/* Limits on one input line, documented in cqrs(7). */
#define CQRS_MAX_LINE	     (1024 * 1024)
#define CQRS_MAX_DEPTH	     64
#define CQRS_MAX_TYPE_NAME   128
#define CQRS_MAX_CORRELATION 255 /* bytes of metadata.correlation_id */

/* An error travels up to the tool, which prints it once and exits with code. */
typedef struct cqrs_error {
	int code;
	char msg[1024];
} cqrs_error;

#if defined(__GNUC__)
#define CQRS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CQRS_PRINTF(a, b)
#endif
#define CQRS_NORETURN _Noreturn

/* Sets *err (when err is not NULL) and returns -1, so callers can write
 * `return cqrs_fail(err, CQRS_EXIT_DATAERR, "...")`. */
int cqrs_fail(cqrs_error *err, int code, const char *fmt, ...) CQRS_PRINTF(3, 4);

/* --- tool plumbing (tool.c) --------------------------------------------- */

/* Records the tool's name for messages, pins the C locale, and makes a
 * closed stdout a quiet exit rather than death by SIGPIPE. */
void cqrs_tool_init(const char *name);
const char *cqrs_tool_name(void);
/* A --follow ends on SIGINT, SIGTERM or SIGHUP between batches: blocks
 * them and returns a signalfd that becomes readable when one arrives (a
 * tool that cannot make one dies with 71). */
int cqrs_follow_signal_fd(void);
/* The wait before retry number attempt (0 for the first) of something that
 * may pass: first ms, doubling, at most most ms.  One rule for the PostgreSQL
 * connection, the relay's reconnections and a follower's retries. */
int64_t cqrs_backoff_ms(int attempt, int64_t first, int64_t most);
/* For tests only: when the environment variable var names a directory, a
 * line to the FIFO DIR/loaded, then a wait until the FIFO DIR/go is written
 * and closed; once a process.  A test commits another writer's work in
 * between, as a slower machine would (cqrs-command(1), cqrs-backup(1)). */
void cqrs_test_pause(const char *var);
/* "name: message" on stderr. */
void cqrs_warn(const char *fmt, ...) CQRS_PRINTF(1, 2);
CQRS_NORETURN void cqrs_die(int code, const char *fmt, ...) CQRS_PRINTF(2, 3);
CQRS_NORETURN void cqrs_die_error(const cqrs_error *err);
/* open_memstream(3), but out of memory is an error there: glibc's stream
 * drops a write it cannot hold with no error flag, and fflush and fclose
 * then succeed on a text cut short.  Here the fflush (or fclose) that could
 * not hold the bytes returns EOF, ferror() stays set until rewind or
 * clearerr (check it before taking the text), and fclose returns EOF.  *buf and *len are those of
 * open_memstream: the text (NUL-terminated) and the position, up to date
 * after fflush, fseeko, rewind and fclose; the caller frees *buf.  NULL when
 * the stream could not be made. */
FILE *cqrs_memstream(char **buf, size_t *len);
/* Flushes and closes stdout; a failed write there is exit 74, a reader that
 * went away (EPIPE) a quiet exit 0.  Call as the last thing before exit. */
int cqrs_finish_stdout(int code);
/* True when out is a closed pipe: the reader went away. */
bool cqrs_stdout_gone(void);
/* Parses a whole non-negative decimal int64 or returns -1 */
int cqrs_parse_int64(const char *s, int64_t *out);
void cqrs_print_version(void);
/* getopt_long, whose complaints (an unknown option, a missing argument) go
 * through cqrs_warn in glibc's words, so that --log-format json holds for
 * them too; returns '?' after one.  optstring as for getopt_long. */
struct option;
int cqrs_getopt_long(int argc, char **argv, const char *optstring, const struct option *longopts,
		     int *index);
/* A tool's usage text: on stdout for --help (code 0); on stderr for a usage
 * error, or, with --log-format json, as one error line of its synopsis. */
void cqrs_print_usage(const char *text, int code);
/* A file shipped in share/: $CQRS_SHAREDIR/name when set (tests, an
 * uninstalled build), else the installed $(pkgdatadir)/name. */
const char *cqrs_share_path(const char *name, char *buf, size_t cap);
/* true when stderr is a terminal: progress may be shown there */
bool cqrs_progress_wanted(void);
/* The progress line, redrawn in place: "tool: what: done/total events
 * (N%)", without "what: " when what is NULL, without the total when it is
 * 0; end closes the line. */
void cqrs_progress_show(const char *what, int64_t done, int64_t total, bool end);

/* --- NDJSON input (ndjson.c) --------------------------------------------- */

/* Lines from the file operands in order ("-" is stdin), or stdin when
 * there are none.  Memory is bounded by CQRS_MAX_LINE. */
typedef struct cqrs_input cqrs_input;

cqrs_input *cqrs_input_open(char *const *paths, int npaths);
/* Next non-empty line, without its "\n" or "\r\n", NUL-terminated and
 * writable in place.  Returns 1, 0 at the end of all input, or -1 with
 * *err set (an unreadable file, a line over CQRS_MAX_LINE). */
int cqrs_input_next(cqrs_input *in, char **line, size_t *len, cqrs_error *err);
/* Where the last line came from: "stdin" or the path, and its number. */
const char *cqrs_input_name(const cqrs_input *in);
long cqrs_input_lineno(const cqrs_input *in);
void cqrs_input_close(cqrs_input *in);
/* True when cqrs_input_next would return without waiting for a writer: a
 * whole line is buffered, the input ended, or a file (not a pipe) is next.
 * May read what is ready; the last line returned is then no longer valid.
 * Lets a tool commit a batch while its writer pauses. */
bool cqrs_input_ready(cqrs_input *in);
/* Waits until cqrs_input_ready, or until stop_fd is readable: 1 or 0.
 * For a thread that reads ahead and must be stoppable.  (A FIFO named as
 * the next operand can still hold cqrs_input_next in its open.) */
int cqrs_input_wait(cqrs_input *in, int stop_fd);

/* --- strict JSON (json.c) ------------------------------------------------- */

/* How many of the n bytes at s are valid UTF-8 before the first that is not
 * (n when all are). */
size_t cqrs_utf8_valid_prefix(const char *s, size_t n);
/* A strict RFC 8259 check of one JSON text: valid UTF-8, no duplicate keys,
 * nesting at most CQRS_MAX_DEPTH.  Compacts the text in place (drops
 * insignificant white space, keeps every value's bytes as written) and
 * stores the new length in *len.  On failure returns -1 with *err set to
 * a message that names the byte column. */
int cqrs_json_compact(char *text, size_t *len, cqrs_error *err);

/* One member of a compact JSON object: the key's bytes (without quotes,
 * escapes left as written) and the value's bytes. */
typedef struct cqrs_json_member {
	const char *key;
	size_t key_len;
	const char *value;
	size_t value_len;
} cqrs_json_member;

/* Iterates the members of a compact, valid JSON object.  *pos starts at 0.
 * Returns 1 per member, 0 at the end. */
int cqrs_json_next_member(const char *obj, size_t len, size_t *pos, cqrs_json_member *m);
/* Iterates the elements of a compact, valid JSON array.  *pos starts at 0.
 * Returns 1 per element, 0 at the end (or if arr is not an array). */
int cqrs_json_next_element(const char *arr, size_t len, size_t *pos, const char **v, size_t *vn);
/* In compact, valid JSON, the end of the value that starts at v[pos]: one
 * past its last byte (at a ',', '}' or ']' that follows it, or len). */
size_t cqrs_json_value_end(const char *v, size_t len, size_t pos);
/* Finds a top-level member by key (plain keys only). */
bool cqrs_json_get(const char *obj, size_t len, const char *key, const char **value,
		   size_t *value_len);
/* Decodes a JSON string value (with its quotes) into buf; returns the
 * decoded length or -1 if it does not fit or is not a string. */
long cqrs_json_string(const char *value, size_t len, char *buf, size_t cap);
/* Writes s as a JSON string (with quotes) to f. */
void cqrs_json_write_string(FILE *f, const char *s, size_t len);

/* --- the event envelope (envelope.c) -------------------------------------- */

#define CQRS_UUID_LEN	   16
#define CQRS_HASH_LEN	   32
#define CQRS_TIMESTAMP_LEN 27 /* 2026-01-16T14:00:00.123456Z */

typedef struct cqrs_event {
	int64_t sequence; /* 0 when absent */
	uint8_t event_id[CQRS_UUID_LEN];
	bool has_event_id;
	uint8_t aggregate_id[CQRS_UUID_LEN];
	char aggregate_type[CQRS_MAX_TYPE_NAME + 1];
	int64_t aggregate_version; /* 0 when absent */
	int64_t expected_version;  /* -1 when absent */
	char event_type[CQRS_MAX_TYPE_NAME + 1];
	int64_t event_version; /* 1 when absent */
	const char *data;      /* compact JSON object, not NUL-terminated */
	size_t data_len;
	const char *metadata; /* compact JSON object; "{}" when absent */
	size_t metadata_len;
	char timestamp[CQRS_TIMESTAMP_LEN + 1]; /* "" when absent */
	uint8_t hash[CQRS_HASH_LEN];
	bool has_hash;
	bool prepared; /* cqrs_store_prepare's rules are done */
} cqrs_event;

/* Parses and validates one NDJSON line into ev.  The line is compacted in
 * place and ev points into it.  On failure returns -1, *err says what. */
int cqrs_event_parse(cqrs_event *ev, char *line, size_t len, cqrs_error *err);
/* Writes the complete envelope as one line, keys in the documented order. */
void cqrs_event_write(FILE *f, const cqrs_event *ev);
/* The tamper-evidence chain: hash = SHA-256(prev hash, the event's fields). */
void cqrs_event_hash(const cqrs_event *ev, const uint8_t prev[CQRS_HASH_LEN],
		     uint8_t out[CQRS_HASH_LEN]);
/* A hash as 64 lowercase hex digits and a NUL, as the envelope writes it. */
void cqrs_hash_format(const uint8_t hash[CQRS_HASH_LEN], char out[2 * CQRS_HASH_LEN + 1]);
/* Back from exactly 64 lowercase hex digits; -1 for anything else. */
int cqrs_hash_parse(const char *hex, size_t len, uint8_t out[CQRS_HASH_LEN]);
/* The correlation_id in metadata, decoded into buf; false when absent. */
bool cqrs_event_correlation(const cqrs_event *ev, char *buf, size_t cap);

/* UUIDs: canonical text form to 16 bytes and back (lowercase, 36 chars + NUL). */
int cqrs_uuid_parse(const char *text, size_t len, uint8_t out[CQRS_UUID_LEN]);
void cqrs_uuid_format(const uint8_t id[CQRS_UUID_LEN], char out[37]);
/* A new time-ordered UUID (version 7): new ids land at the end of the index. */
void cqrs_uuid_generate(uint8_t out[CQRS_UUID_LEN]);
bool cqrs_type_name_valid(const char *s, size_t len);

/* Timestamps: normalises RFC 3339 (any offset, any fraction) to UTC with
 * microseconds; cqrs_timestamp_now gives the current time in that form. */
int cqrs_timestamp_normalize(const char *in, size_t len, char out[CQRS_TIMESTAMP_LEN + 1]);
void cqrs_timestamp_now(char out[CQRS_TIMESTAMP_LEN + 1]);
/* Days since 1970-01-01 of a proleptic Gregorian date (m 1-12, d 1-31). */
int64_t cqrs_days_from_civil(int64_t y, unsigned m, unsigned d);
/* Microseconds since the epoch of a timestamp in the normalised form
 * (2026-01-16T14:00:00.123456Z, CQRS_TIMESTAMP_LEN characters). */
int64_t cqrs_timestamp_us(const char *normalized);

/* --- money (money.c) ---------------------------------------------------------- */

/* Amounts are decimal text with at most the currency's minor-unit digits
 * (2 for USD, 0 for JPY, 3 for KWD), computed in integer minor units. */
bool cqrs_currency_valid(const char *currency); /* three uppercase letters */
int cqrs_currency_digits(const char *currency);
int cqrs_money_parse(const char *text, size_t len, const char *currency, int64_t *minor,
		     cqrs_error *err);
/* Minor units back to text with exactly the currency's digits: 5998 -> "59.98". */
void cqrs_money_format(int64_t minor, const char *currency, char *buf, size_t cap);

/* --- the event store (store.c, store_sqlite.c) ---------------------------- */

typedef struct cqrs_store cqrs_store;

enum cqrs_open_mode {
	CQRS_OPEN_READ,	 /* the store must exist */
	CQRS_OPEN_WRITE, /* created on first use */
};

enum cqrs_durability {
	CQRS_DURABLE_FULL,   /* default: fsync at every commit */
	CQRS_DURABLE_NORMAL, /* --no-sync: a power cut may lose the last commits */
};

/* --store, else $CQRS_STORE, else $XDG_DATA_HOME/cqrs/events.db. */
const char *cqrs_store_path(const char *option);
/* --views, else $CQRS_VIEWS, else $XDG_DATA_HOME/cqrs/views.db. */
const char *cqrs_views_path(const char *option);

cqrs_store *cqrs_store_open(const char *path, enum cqrs_open_mode mode, cqrs_error *err);
/* PostgreSQL backend (issue 13): path names a store on a server
 * (postgres://..., postgresql:...), not a file. */
bool cqrs_store_on_server(const char *path);
void cqrs_store_close(cqrs_store *st);
void cqrs_store_set_durability(cqrs_store *st, enum cqrs_durability d);

/* Appending: begin takes the write lock (waiting up to the busy timeout),
 * append assigns sequence, aggregate_version, timestamp, event_id and hash,
 * commit makes the batch durable.  Any failure leaves nothing behind once
 * the caller rolls back. */
int cqrs_store_begin(cqrs_store *st, cqrs_error *err);
/* In a write transaction: no other writer appends until it ends, from now
 * on (SQLite: from begin on already; PostgreSQL takes its append lock at
 * the first append otherwise).  For a decision read from aggregates it
 * does not write: those must not change between the read and the commit. */
int cqrs_store_lock(cqrs_store *st, cqrs_error *err);
enum cqrs_append_result {
	CQRS_APPENDED,	/* stored; ev now carries every store-assigned field */
	CQRS_DUPLICATE, /* the same event was already stored; ev is the stored one */
};
/* Returns CQRS_APPENDED or CQRS_DUPLICATE, or -1 with *err set. */
int cqrs_store_append(cqrs_store *st, cqrs_event *ev, cqrs_error *err);
/* The rules of a new event that need no store, which cqrs_store_append
 * otherwise applies itself: its data must fit its type's schema, and its
 * metadata records the OS user that runs the tool (metadata.os_user).
 * Thread-safe, so that a reading thread can take them off the writer.
 * The new metadata is written to `metadata`, which has room for
 * ev->metadata_len + cqrs_store_prepare_growth() bytes and must outlive
 * the append.  0, or -1 with *err. */
int cqrs_store_prepare(cqrs_event *ev, char *metadata, cqrs_error *err);
size_t cqrs_store_prepare_growth(void);
/* evs[0..n) in order, each as cqrs_store_append would (same rules, same
 * results in results[i], same errors), in fewer round trips where the
 * backend can (PostgreSQL: two look-ups and one COPY for the lot, whose
 * outcome is read with the next statement: the next call, or commit).
 * 0, or -1 with *err and *failed the index of the event that failed; a
 * failure of the whole write (the connection lost) names the first, or
 * is CQRS_APPEND_FAILED_EARLIER: the write of an earlier call's events
 * failed.  The caller then rolls back. */
#define CQRS_APPEND_FAILED_EARLIER ((size_t)-1)
int cqrs_store_append_many(cqrs_store *st, cqrs_event *evs, size_t n, int *results, size_t *failed,
			   cqrs_error *err);
int cqrs_store_commit(cqrs_store *st, cqrs_error *err);
void cqrs_store_rollback(cqrs_store *st);
/* Current version of an aggregate (0: no events), seen from inside or
 * outside a write transaction. */
int64_t cqrs_store_aggregate_version(cqrs_store *st, const uint8_t id[CQRS_UUID_LEN],
				     cqrs_error *err);
int64_t cqrs_store_last_sequence(cqrs_store *st, cqrs_error *err);

/* Reading. */
typedef struct cqrs_filter {
	const uint8_t *aggregate_id; /* NULL: any */
	int64_t after_version;	     /* with aggregate_id: aggregate_version > this */
	const char *aggregate_type;
	const char *event_type;
	const char *correlation_id;
	int64_t after;	   /* sequence > after */
	int64_t to;	   /* sequence <= to; 0: no bound */
	const char *until; /* timestamp <= until (normalised); NULL: none */
	int64_t limit;	   /* 0: no limit */
	bool reverse;
	/* Any of several values (OR), in place of the single field above
	 * (which must then be NULL): n values; aggregates are 16-byte ids. */
	const char *const *event_types;
	size_t nevent_types;
	const char *const *aggregate_types;
	size_t naggregate_types;
	const char *const *correlation_ids;
	size_t ncorrelation_ids;
	const uint8_t (*aggregate_ids)[CQRS_UUID_LEN];
	size_t naggregate_ids;
} cqrs_filter;

/* What cursors give.  The stored form is the bytes the chain hashes: what
 * copies, backups, archives and relays carry, so that `cqrs-read |
 * cqrs-append` keeps every hash.  The current form is what the domain and
 * the read side consume: personal fields decrypted (or marked erased) and
 * old event versions upcast to the newest.  A new store gives the stored
 * form. */
enum cqrs_event_form { CQRS_FORM_STORED, CQRS_FORM_CURRENT };
void cqrs_store_set_form(cqrs_store *st, enum cqrs_event_form form);

typedef struct cqrs_cursor cqrs_cursor;
cqrs_cursor *cqrs_store_read(cqrs_store *st, const cqrs_filter *f, cqrs_error *err);
/* 1 with *ev filled (valid until the next call), 0 at the end, -1 on error. */
int cqrs_cursor_next(cqrs_cursor *c, cqrs_event *ev, cqrs_error *err);
void cqrs_cursor_close(cqrs_cursor *c);

/* Waits until another process may have appended, up to timeout_ms, or
 * until one of fds is readable or has hung up.  Returns 1 on a possible
 * change, 0 on timeout, 2 when one of fds woke it, -1 on error. */
int cqrs_store_wait(cqrs_store *st, int timeout_ms, const int *fds, int nfds, cqrs_error *err);

/* Snapshots: the latest one of an aggregate.  Returns 1 with *version and
 * *state (malloc'd, NUL-terminated) set, 0 when there is none, -1 on error. */
int cqrs_store_snapshot_load(cqrs_store *st, const uint8_t id[CQRS_UUID_LEN], int64_t *version,
			     char **state, cqrs_error *err);
int cqrs_store_snapshot_save(cqrs_store *st, const uint8_t id[CQRS_UUID_LEN], const char *type,
			     int64_t version, const char *state, cqrs_error *err);

/* Processed messages, for idempotent handlers: 1 with *result (malloc'd)
 * when message_id was handled, 0 when not, -1 on error.  Put it inside
 * the write transaction that appends the message's events, so that both
 * commit or neither does. */
int cqrs_store_processed_get(cqrs_store *st, const char *message_id, char **result,
			     cqrs_error *err);
int cqrs_store_processed_put(cqrs_store *st, const char *message_id, const char *handler,
			     const char *result, cqrs_error *err);

/* Inside a write transaction: the next value (1, 2, ...) of a named counter. */
int64_t cqrs_store_counter_next(cqrs_store *st, const char *name, cqrs_error *err);
/* Inside a write transaction, after counter_next took the counter's row:
 * sets it to value (a number it handed out and nobody used goes back) and
 * returns value. */
int64_t cqrs_store_counter_set(cqrs_store *st, const char *name, int64_t value, cqrs_error *err);
/* relay ops (issue 14): fn for each counter whose name starts with prefix,
 * in name order, outside a transaction too (cqrs-health reads the relays'
 * positions, "relay:STREAM"): 0, or -1 with *err. */
typedef void cqrs_counter_fn(void *arg, const char *name, int64_t value);
int cqrs_store_counters_each(cqrs_store *st, const char *prefix, cqrs_counter_fn *fn, void *arg,
			     cqrs_error *err);

/* Verifies the hash chain from the first event to the last, and the
 * columns the store derives from the hashed fields. */
typedef struct cqrs_verify {
	int64_t checked;	     /* events 1..checked verified */
	uint8_t hash[CQRS_HASH_LEN]; /* of event `checked` (zeros: none) */
	int64_t head;		     /* the store's last sequence */
	int64_t bad;		     /* the first sequence that failed; 0: none */
	char why[1024];		     /* what is wrong there */
} cqrs_verify;
/* 0 with *v filled (v->bad says whether it passed), -1 when the store
 * could not be read at all. */
int cqrs_store_verify(cqrs_store *st, cqrs_verify *v, cqrs_error *err);

/* The last event's sequence (0: empty store) and hash (zeros then). */
int cqrs_store_head(cqrs_store *st, int64_t *sequence, uint8_t hash[CQRS_HASH_LEN],
		    cqrs_error *err);
/* What the store's file says about itself, for cqrs-health: its schema
 * version (and this release's), its events, the sizes of the file and its
 * write-ahead log, and what SQLite's quick_check found ("ok", or the first
 * of problems findings); events is -1 when a damaged store cannot count
 * them.  0, or -1 with *err when it could not look. */
struct cqrs_store_facts {
	int schema, schema_current;
	int64_t events, size_bytes, wal_bytes, problems;
	char integrity[512];
	/* issue 13, operations: a PostgreSQL store (size_bytes is its
	 * schema's tables, database_bytes the database's; no write-ahead log
	 * of its own; integrity is the tables check, not quick_check) */
	bool server;
	int64_t database_bytes;
	bool no_saga_tables; /* the store keeps no saga tables (yet) */
};
int cqrs_store_facts(cqrs_store *st, struct cqrs_store_facts *f, cqrs_error *err);
/* The hash of event seq: 1 with hash set, 0 when the store has no such
 * event, -1 with *err. */
int cqrs_store_hash_at(cqrs_store *st, int64_t seq, uint8_t hash[CQRS_HASH_LEN], cqrs_error *err);
/* A witness of how far the store went, kept elsewhere (STORE.witness, a
 * projection's checkpoint, a recorded --expect): 0 when the store holds
 * event sequence with that hash (hash NULL: any), else -1 with
 * CQRS_EXIT_BEHIND and a message naming path and what saw it. */
int cqrs_store_expect(cqrs_store *st, const char *path, int64_t sequence,
		      const uint8_t hash[CQRS_HASH_LEN], const char *what, cqrs_error *err);
/* The store against STORE.witness (done on every open for writing): 0
 * when it holds the event the witness names, or there is no witness (or,
 * for a reader, none it may read); else -1, CQRS_EXIT_BEHIND. */
int cqrs_store_check_witness(cqrs_store *st, const char *path, cqrs_error *err);
/* Opens a file that belongs with the store (a lock file, a views file)
 * with O_NOFOLLOW, mode 0600 when created, and holds it to the rules of
 * cqrs(7) "Who may use a store" with fstat: the fd, or -1 with *err (77
 * when someone else owns it or could change it).  writer: the rules for a
 * tool that writes. */
int cqrs_open_trusted(const char *path, int flags, bool writer, cqrs_error *err);
/* Its open alone (O_NOFOLLOW, mode 0600 when created, its exit codes: 77
 * for a link, 66 for a file to read that is missing, else 73), for a
 * caller that checks the file itself with cqrs_trust_stat. */
int cqrs_open_nofollow(const char *path, int flags, cqrs_error *err);
/* The effective user id, asked of the kernel once per process: every
 * check of a file's owner wants it. */
uid_t cqrs_euid(void);
/* The same rules for a file already open and stat'ed (sb): a regular file,
 * owned by this user or root when writer, writable by no one else. */
struct stat;
int cqrs_trust_stat(const struct stat *sb, const char *path, bool writer, cqrs_error *err);
/* Reads a file of secrets or of trust (a password, credentials, a key, a
 * CA's certificates) whole into a NUL-terminated *text, held to ssh's
 * rules for such files: owned by the running user or root, and writable
 * by no one else, so that no one else could have planted it; a secret
 * (not a CA's or a certificate's public text) also readable by no other
 * user (its group may read it: a service's group).  0, or -1 with *err:
 * 66 missing, 77 refused, 78 larger than a secret is. */
int cqrs_read_secret_file(const char *path, bool secret, char **text, size_t *len, cqrs_error *err);
/* The same rules for a file SQLite opens outside the store (views and
 * their -wal and -shm): the directories above path, then path itself if it
 * exists.  0, or -1 with *err (77). */
int cqrs_trust_path(const char *path, bool writer, cqrs_error *err);

/* The SQLite VFS for the tools' other SQLite files (the views): the default
 * one, watched so that a read that failed with EIO, which SQLite reports
 * as a damaged file, is told as an I/O error (74).  NULL (the default VFS)
 * when it could not be registered. */
const char *cqrs_sqlite_watch_vfs(void);
/* After a deliberate restore or rollback: STORE.witness says the store's
 * head now, whatever it said before.  Returns that head. */
int cqrs_store_reset_witness(const char *path, int64_t *sequence, uint8_t hash[CQRS_HASH_LEN],
			     cqrs_error *err);

/* --- the command side (command.c, aggregate.c, domain_*.c) ------------------
 * Commands are JSON objects (cqrs-command(1)); a commander checks each
 * against the current state of its aggregate and turns it into events or
 * a rejection.  The saga runs commands in-process through the same calls. */

#define CQRS_SNAPSHOT_EVERY_DEFAULT 100

struct cqrs_command_options {
	int64_t snapshot_every;	    /* snapshot an aggregate every N events; 0: never */
	const char *user_id;	    /* metadata.user_id of commands that carry none */
	const char *correlation_id; /* of commands that carry none; NULL: the order's or new */
	int max_attempts;	    /* load-decide-append rounds on a version conflict; 0: 5 */
	bool ignore_snapshots;	    /* load aggregates from their events alone */
	bool dry_run; /* decide as usual, then roll back at commit: nothing is stored */
	/* W3C traceparent of commands that carry none (kept in metadata); NULL: none */
	const char *traceparent;
	/* time each command into cqrs_command_duration_seconds (metrics.c):
	 * cqrs-command's own; a saga's in-process commands are not, for the
	 * same series must not be in two tools' files */
	bool record_metrics;
};

enum cqrs_command_status {
	CQRS_COMMAND_ACCEPTED,
	CQRS_COMMAND_REJECTED,
	CQRS_COMMAND_UNCHANGED, /* if_needed, and the goal already held: no events */
};

typedef struct cqrs_command_result {
	int status;	       /* enum cqrs_command_status */
	bool replayed;	       /* command_id was handled before: its original result */
	char aggregate_id[37]; /* "" when a rejected command named none */
	char reason[512];      /* rejected: why, for people */
	char code[32];	       /* rejected: the stable code (cqrs-events(7)) */
	int64_t first_sequence, last_sequence; /* accepted: its events' sequences */
	char *line; /* the result line (cqrs-command(1)), no newline; malloc'd */
	size_t len;
} cqrs_command_result;

typedef struct cqrs_commander cqrs_commander;

/* opt NULL: snapshots every CQRS_SNAPSHOT_EVERY_DEFAULT events, no user. */
cqrs_commander *cqrs_commander_new(cqrs_store *st, const struct cqrs_command_options *opt,
				   cqrs_error *err);
void cqrs_commander_free(cqrs_commander *cmd);
/* Handles one command line (compacted in place).  Outside a batch it runs
 * in its own transaction, committed before it returns.  Returns 0 with
 * *res filled (free it with cqrs_command_result_free), or -1 with *err:
 * CQRS_EXIT_DATAERR (bad command) and CQRS_EXIT_CONFLICT (gave up after
 * retries) changed nothing and leave a batch usable; any other code means
 * the batch must be rolled back. */
int cqrs_commander_handle(cqrs_commander *cmd, char *line, size_t len, cqrs_command_result *res,
			  cqrs_error *err);
void cqrs_command_result_free(cqrs_command_result *res);
/* Group commit: commands handled between begin and commit share one
 * transaction; their results are durable only once commit returns 0. */
int cqrs_commander_begin(cqrs_commander *cmd, cqrs_error *err);
int cqrs_commander_commit(cqrs_commander *cmd, cqrs_error *err);
void cqrs_commander_rollback(cqrs_commander *cmd);
/* The state a command on aggregate id would be decided against, as one
 * JSON object (malloc'd); CQRS_EXIT_NOT_FOUND when it has no events. */
int cqrs_commander_state(cqrs_commander *cmd, const uint8_t id[CQRS_UUID_LEN], char **json,
			 cqrs_error *err);

/* --- the order lifecycle, read-only (lifecycle.c) ---------------------------
 * One table says which command each state of Order, Inventory and Payment
 * allows, the goal of each command and the codes of its rejections
 * (cqrs-events(7)).  The saga and the read side ask it, never copy it. */

#define CQRS_MAX_ORDER_LINES 64

struct cqrs_order_info {
	/* "PENDING", "CONFIRMED", "PAID", "SHIPPED", "CANCELLED"; "" when the
	 * order does not exist */
	char status[16];
	bool confirmed;		  /* an OrderConfirmed, by anyone */
	bool confirmed_by_person; /* ... without "by":"saga" */
	int nlines;		  /* one per product: what shipping consumes */
	struct {
		uint8_t product_id[CQRS_UUID_LEN];
		int64_t quantity;
	} lines[CQRS_MAX_ORDER_LINES];
};

/* The state of order id now (inside the commander's batch, if one is
 * open).  0 with *out filled (status "" when it has no events), -1 with
 * *err when the store failed or its events are unreadable. */
int cqrs_commander_order(cqrs_commander *cmd, const uint8_t id[CQRS_UUID_LEN],
			 struct cqrs_order_info *out, cqrs_error *err);
/* Whether the goal of a command (a command object, as for
 * cqrs_commander_handle; compacted in place) already holds: ConfirmOrder
 * on a confirmed order, CancelOrder on a cancelled one, ReserveInventory
 * when the order holds the quantity, ReleaseInventory when it holds
 * nothing, VoidAuthorization on a voided payment, CancelPayment with
 * nothing left to undo.  1 yes, 0 no (or the command has no such goal),
 * -1 with *err (65: not a valid command). */
int cqrs_commander_goal_reached(cqrs_commander *cmd, char *line, size_t len, cqrs_error *err);
/* The lifecycle table as "man" (the generated part of cqrs-events(7)),
 * "dot" (Graphviz) or "ndjson"; 64 for another format. */
int cqrs_lifecycle_print(FILE *f, const char *format, cqrs_error *err);
/* The payload check at the store's door (event_schema.c): 0 when ev's
 * data is what the domain could have written for its (event_type,
 * event_version), or the type/version is not one of the domain's; else
 * -1 with *err (65) saying which member is wrong. */
int cqrs_event_schema_check(const cqrs_event *ev, cqrs_error *err);

/* --- read models: projections, views, queries ---------------------------
 * (projection.c, projector.c, views.c, rebuild.c, query.c, rows.c; the
 * formats are in cqrs-projection(5), cqrs-project(1), cqrs-query(1)) */

/* Projection files, loaded and checked.  Errors name FILE:LINE, code 78. */
typedef struct cqrs_projections cqrs_projections;
cqrs_projections *cqrs_projections_new(void);
int cqrs_projections_load(cqrs_projections *ps, const char *path, cqrs_error *err);
/* Compiles every statement against an empty database; the first use of
 * the set does it too. */
int cqrs_projections_check(cqrs_projections *ps, cqrs_error *err);
size_t cqrs_projections_count(const cqrs_projections *ps);
const char *cqrs_projections_name(const cqrs_projections *ps, size_t i);
/* One NDJSON line per projection: name, file, line, tables, event types. */
void cqrs_projections_describe(const cqrs_projections *ps, FILE *out);
void cqrs_projections_free(cqrs_projections *ps);

/* Serialises cqrs-project runs on one views file (flock on VIEWS.lock).
 * Returns the lock's descriptor, or -1: code 75 when another run holds it
 * and wait is false. */
int cqrs_views_lock(const char *views_path, bool wait, cqrs_error *err);
void cqrs_views_unlock(int fd);

/* Applying events to the views exactly once: a batch of events and the
 * projections' checkpoints commit in one transaction. */
typedef struct cqrs_projector cqrs_projector;
#define CQRS_PROJECT_SCRATCH 1u /* a new file for one process: no journal, no fsync */
cqrs_projector *cqrs_projector_open(const char *views_path, cqrs_projections *ps, unsigned flags,
				    cqrs_error *err);
void cqrs_projector_close(cqrs_projector *p); /* rolls back what is not committed */
/* Commits and writes the views file through (a checked WAL checkpoint):
 * call before close when the run is to succeed. */
int cqrs_projector_flush(cqrs_projector *p, cqrs_error *err);
void cqrs_projector_set_batch(cqrs_projector *p, int64_t events_per_commit);
/* The statements one event runs must end within ms (CQRS_EXIT_LIMIT); 0:
 * no limit (the default). */
void cqrs_projector_set_timeout(cqrs_projector *p, int64_t ms);
void cqrs_projector_set_progress(cqrs_projector *p, bool on, const char *what);
/* Apply nothing after sequence stop (0: nothing at all, -1: no limit) to
 * one projection (NULL: all). */
int cqrs_projector_set_stop(cqrs_projector *p, const char *projection, int64_t stop);
/* Under the lock, before applying: registers new projections, rebuilds
 * changed ones from the first event, loads the checkpoints. */
int cqrs_projector_sync(cqrs_projector *p, cqrs_error *err);
/* The lowest checkpoint: where reading the store resumes. */
int64_t cqrs_projector_position(const cqrs_projector *p);
int64_t cqrs_projector_applied(const cqrs_projector *p);
int cqrs_projector_apply(cqrs_projector *p, const cqrs_event *ev, cqrs_error *err);
/* One input event: skipped when already applied; a gap before it is read
 * from the store (opened on first need into *st). */
int cqrs_projector_feed(cqrs_projector *p, const cqrs_event *ev, const char *store_path,
			cqrs_store **st, cqrs_error *err);
int cqrs_projector_commit(cqrs_projector *p, cqrs_error *err);
void cqrs_projector_rollback(cqrs_projector *p);
/* Everything after the checkpoints, up to sequence to and time until
 * (0 and NULL: all). */
int cqrs_projector_catch_up(cqrs_projector *p, cqrs_store *st, int64_t to, const char *until,
			    cqrs_error *err);

/* Whole views files built from the history (rebuild.c). */
typedef struct cqrs_build_opts {
	int64_t batch;	    /* events per commit; 0: the default */
	bool progress;	    /* on stderr */
	bool force;	    /* rebuild: drop projections that are not loaded */
	int64_t to;	    /* history: up to this sequence; 0: all */
	const char *until;  /* history: up to this normalised time; NULL: all */
	int64_t timeout_ms; /* the statements of one event; 0: no limit */
	/* the store again, for a build in parallel threads (each opens it);
	 * NULL: one thread */
	const char *store_path;
} cqrs_build_opts;
/* Replays every event into a scratch file, then replaces the views'
 * content in one transaction: readers see the old views until then. */
int cqrs_views_rebuild(const char *views_path, cqrs_store *st, cqrs_projections *ps,
		       const cqrs_build_opts *o, cqrs_error *err);
/* A separate views file as of o->to / o->until; output must not exist. */
int cqrs_views_build(const char *output, cqrs_store *st, cqrs_projections *ps,
		     const cqrs_build_opts *o, cqrs_error *err);
/* Rebuilds into a scratch file up to the live checkpoints and prints per
 * table the rows added, removed and changed.  Returns 0 when the same,
 * 1 when different, -1 on error. */
int cqrs_views_diff(const char *views_path, cqrs_store *st, cqrs_projections *ps,
		    const cqrs_build_opts *o, FILE *out, cqrs_error *err);
/* One NDJSON line per projection: its checkpoint, how far behind, and how
 * many of its events are parked. */
int cqrs_views_lag(const char *views_path, cqrs_store *st, FILE *out, cqrs_error *err);
/* The same figures, one call of each per projection (the strings are
 * valid during the call): for programs that judge them (cqrs-health). */
struct cqrs_view_lag {
	const char *projection;
	int64_t checkpoint, store_sequence, events_behind, seconds_behind, parked;
};
int cqrs_views_lag_each(const char *views_path, cqrs_store *st,
			void (*each)(void *arg, const struct cqrs_view_lag *lag), void *arg,
			cqrs_error *err);

/* Parked events (issue 8): what a projection could not apply is recorded
 * in the views, its checkpoint moves on, and the later events of the same
 * aggregate wait behind it; a run retries them first. */
/* Retries the parked events of every projection, per aggregate in order;
 * removes those that apply now. */
int cqrs_projector_replay(cqrs_projector *p, cqrs_store *st, cqrs_error *err);
/* Events this projector parked since it was opened. */
int64_t cqrs_projector_parked_new(const cqrs_projector *p);
/* One NDJSON line per parked event, by projection and sequence. */
int cqrs_views_parked(const char *views_path, FILE *out, cqrs_error *err);
/* The number of parked events of the projections of ps, and in buf
 * "PROJECTION N from event SEQ, ...". */
int64_t cqrs_views_parked_summary(const char *views_path, const cqrs_projections *ps, char *buf,
				  size_t cap, cqrs_error *err);

/* The questions of cqrs-query(1) (query.c, rows.c). */
enum cqrs_format { CQRS_FORMAT_NDJSON, CQRS_FORMAT_TABLE, CQRS_FORMAT_CSV };
enum cqrs_query_kind {
	CQRS_QUERY_ORDER,     /* id: an order id or number; not found: code 1 */
	CQRS_QUERY_ORDERS,    /* status, from, to; limit, offset */
	CQRS_QUERY_CUSTOMER,  /* id: the customer; limit, offset or after (a cursor) */
	CQRS_QUERY_SUMMARY,   /* id: the customer; not found: code 1 */
	CQRS_QUERY_INVENTORY, /* id: a product id or SKU, or NULL for all */
	CQRS_QUERY_SALES,     /* from, to (dates), currency; total: one row per currency */
	CQRS_QUERY_PRODUCTS,  /* from, to, currency; limit: the top N per currency */
	CQRS_QUERY_SQL,	      /* id: one read-only statement; args: its parameters */
};
typedef struct cqrs_query {
	enum cqrs_query_kind kind;
	const char *id;
	const char *status;
	const char *from, *to; /* normalised times, or dates for sales and products */
	const char *currency;
	const char *after;
	int64_t limit, offset; /* limit 0: no limit */
	bool total;
	char *const *args;
	int nargs;
	const char *as_of;  /* order as of: a normalised time, or NULL */
	int64_t as_of_seq;  /* or a sequence; 0: none */
	int64_t timeout_ms; /* a statement stops after this (CQRS_EXIT_LIMIT); 0: never */
} cqrs_query;
/* Caps the memory SQLite may use in this process (CQRS_EXIT_LIMIT beyond);
 * call before anything opens a database.  -1 when it is too late. */
int cqrs_views_memory_limit(int64_t bytes);
/* Prints the answer; returns the number of rows, or -1 with *err set. */
int64_t cqrs_query_run(const char *views_path, const cqrs_query *q, enum cqrs_format fmt, FILE *out,
		       cqrs_error *err);
/* The order as it was at q->as_of or q->as_of_seq, folded from its events
 * in the store with the projection that creates order_views. */
int64_t cqrs_query_order_as_of(const char *views_path, cqrs_store *st, cqrs_projections *ps,
			       const cqrs_query *q, enum cqrs_format fmt, FILE *out,
			       cqrs_error *err);

/* --- sagas (saga*.c, saga_exec.c) ---------------------------------------------- */

/* A saga definition (cqrs-saga(5)): which event starts it, its steps and
 * their compensations.  Errors name the file and line (CQRS_EXIT_CONFIG). */
typedef struct cqrs_saga_def cqrs_saga_def;

cqrs_saga_def *cqrs_saga_load(const char *path, cqrs_error *err);
void cqrs_saga_free(cqrs_saga_def *d);
const char *cqrs_saga_name(const cqrs_saga_def *d);

struct cqrs_saga_options {
	int64_t batch; /* instances per transaction; 0: the default (256) */
	bool verbose;  /* each transition on stderr */
	/* asked between sagas: true ends the run early (after a signal) */
	bool (*should_stop)(void);
	/* issue 13, sagas on PostgreSQL: how long a runner holds an instance
	 * it works on (its lease); 0: the default, 5 minutes or twice the
	 * longest step timeout.  Must be longer than every step's timeout. */
	int64_t lease_us;
};

struct cqrs_saga_stats {
	int64_t started, steps, retries, completed, compensated, failed;
};

/* Runs sagas in-process against an open writable store; the caller holds
 * the runner lock (cqrs-saga(1)). */
typedef struct cqrs_saga_runner cqrs_saga_runner;

cqrs_saga_runner *cqrs_saga_runner_new(cqrs_store *st, cqrs_saga_def *const *defs, size_t ndefs,
				       const struct cqrs_saga_options *opt, cqrs_error *err);
void cqrs_saga_runner_free(cqrs_saga_runner *r);
/* Starts a saga for every starting event stored since the last run, and
 * does every step that is due, until nothing is.  *next_due: when the
 * next retry or deadline falls due (microseconds since the epoch, 0: none). */
int cqrs_saga_run(cqrs_saga_runner *r, int64_t *next_due, cqrs_error *err);
void cqrs_saga_runner_stats(const cqrs_saga_runner *r, struct cqrs_saga_stats *s);
/* Issue 13, sagas on PostgreSQL: true when several runners may work on
 * st at once (instances are leased in the store), false when one runner
 * at a time must hold the runner lock (cqrs-saga(1)). */
bool cqrs_saga_runners_share(cqrs_store *st);

/* The runner's clock: now, or $CQRS_SAGA_NOW (a testing aid), in
 * microseconds since the epoch. */
int64_t cqrs_saga_now(void);
/* "500ms", "30s", "5m", "2h", "1d" or plain seconds, in microseconds;
 * -1 when malformed. */
int64_t cqrs_saga_duration_parse(const char *text);

enum cqrs_saga_format { CQRS_SAGA_TEXT, CQRS_SAGA_NDJSON };
/* Instances by status, the stuck ones (waiting longer than stuck_us, or
 * failed with a failed compensation) and the completion rate. */
int cqrs_saga_status(cqrs_store *st, FILE *out, enum cqrs_saga_format fmt, int64_t stuck_us,
		     cqrs_error *err);
/* The same facts for programs that judge them (cqrs-health): per saga
 * type the instances by status, those whose compensation failed and the
 * stuck ones; then every circuit breaker (open: not closed).  Strings are
 * valid during the call. */
struct cqrs_saga_counts {
	const char *saga_type;
	int64_t running, compensating, completed, failed, compensation_failed, stuck;
};
struct cqrs_saga_breaker {
	const char *name, *state, *opened_at;
	int64_t failures;
	bool open;
};
int cqrs_saga_facts(cqrs_store *st, int64_t stuck_us,
		    void (*on_type)(void *arg, const struct cqrs_saga_counts *c),
		    void (*on_breaker)(void *arg, const struct cqrs_saga_breaker *b), void *arg,
		    cqrs_error *err);
/* One instance (a unique id prefix will do): CQRS_EXIT_NOT_FOUND if none. */
int cqrs_saga_show(cqrs_store *st, const char *id, FILE *out, enum cqrs_saga_format fmt,
		   cqrs_error *err);
/* Graphviz DOT of a definition, with one instance's path when id is set. */
int cqrs_saga_dot(cqrs_store *st, cqrs_saga_def *const *defs, size_t ndefs, const char *id,
		  FILE *out, cqrs_error *err);
/* A FAILED instance whose compensation failed: compensate again from
 * where it stopped, with fresh attempts. */
int cqrs_saga_retry(cqrs_store *st, const char *id, cqrs_error *err);

/* --- operations (lib/ops/): health, metrics, logs, traces ------------------ */

/* Replaces DIR/NAME with text atomically (a temporary file in DIR, fsync,
 * rename), created with mode (the umask does not apply: a file for
 * another program's user, such as node_exporter's, needs its read bits).
 * A DIR that others may write (not sticky) or that another user owns is
 * refused (77); NAME must be a plain file name. */
int cqrs_textfile_replace(const char *dir, const char *name, const char *text, size_t len,
			  unsigned mode, cqrs_error *err);
/* The check of DIR that cqrs_textfile_replace makes, for a writer of other
 * files there (the metrics journals). */
int cqrs_textfile_check_dir(const char *dir, cqrs_error *err);

/* health: cqrs-health (lib/ops/health.c) -- checks of the store, views,
 * sagas, breakers, WAL and disk, judged against thresholds, reported as
 * NDJSON, a table or Prometheus gauges.  It only reads. */
enum cqrs_health_status { /* the monitoring plugins' exit statuses */
			  CQRS_HEALTH_OK = 0,
			  CQRS_HEALTH_WARNING = 1,
			  CQRS_HEALTH_CRITICAL = 2,
			  CQRS_HEALTH_UNKNOWN = 3,
};
enum cqrs_health_limit {
	CQRS_HEALTH_LAG_EVENTS,
	CQRS_HEALTH_LAG_SECONDS,
	CQRS_HEALTH_PARKED,
	CQRS_HEALTH_STUCK,
	CQRS_HEALTH_FAILED,
	CQRS_HEALTH_COMPENSATION_FAILED,
	CQRS_HEALTH_BREAKERS,
	CQRS_HEALTH_WAL,
	CQRS_HEALTH_DISK_FREE, /* a lower bound: at or below it */
	CQRS_HEALTH_RELAY_LAG, /* relay ops (issue 14): events a relay has not published */
	CQRS_HEALTH_NLIMITS
};
/* A figure at or above crit is critical, else at or above warn a warning
 * (at or below, for the free disk); 0 turns a threshold off. */
struct cqrs_health_limits {
	int64_t warn[CQRS_HEALTH_NLIMITS], crit[CQRS_HEALTH_NLIMITS];
	int64_t stuck_after_us; /* a saga with no change this long is stuck */
};
void cqrs_health_limits_default(struct cqrs_health_limits *l);
/* One threshold pair by its option name ("lag-events", "wal", ...) from
 * "WARN,CRIT", or "stuck-after" from a duration: -1 with *err (64). */
int cqrs_health_limit_set(struct cqrs_health_limits *l, const char *option, const char *value,
			  cqrs_error *err);
/* The CQRS_HEALTH_* variables that are set (CQRS_HEALTH_LAG_EVENTS, ...). */
int cqrs_health_limits_env(struct cqrs_health_limits *l, cqrs_error *err);
typedef struct cqrs_health cqrs_health;
/* Runs every check; NULL only when out of memory.  A store or views that
 * cannot be read are findings, not errors. */
cqrs_health *cqrs_health_run(const char *store_path, const char *views_path,
			     const struct cqrs_health_limits *l, cqrs_error *err);
/* The worst status: critical, then warning, then unknown, then ok. */
int cqrs_health_status(const cqrs_health *h);
void cqrs_health_write_ndjson(const cqrs_health *h, FILE *out);
void cqrs_health_write_table(const cqrs_health *h, FILE *out);
/* DIR/cqrs_health.prom, mode 0644, through cqrs_textfile_replace. */
int cqrs_health_write_textfile(const cqrs_health *h, const char *dir, cqrs_error *err);
void cqrs_health_free(cqrs_health *h);
/* --- traces (issue 11): traceparent.c, lib/ops/trace.c, cqrs-trace(1) --- */

#define CQRS_TRACEPARENT_LEN 55 /* 00-<32 hex>-<16 hex>-<2 hex> */
struct cqrs_traceparent {
	uint8_t trace_id[16];
	uint8_t parent_id[8];
	uint8_t flags;
	char text[CQRS_TRACEPARENT_LEN + 1]; /* as kept in metadata: version 00 */
};
/* A W3C traceparent header value (lowercase hex; all-zero ids and version
 * ff are invalid): 0, or -1 with *err (CQRS_EXIT_USAGE) saying what is wrong. */
int cqrs_traceparent_parse(const char *s, size_t len, struct cqrs_traceparent *tp, cqrs_error *err);
/* The ids cqrs-trace gives an order's trace, so that what the saga hands on
 * (a step program's TRACEPARENT, its commands' metadata) names the same
 * spans: a node's span id is the first 8 bytes of SHA-256 of its key
 * ("step:SAGA/STEP[/compensate]", "saga:SAGA", "event:ID", "command:ID");
 * without a caller's traceparent, the trace id comes from the correlation
 * id. */
void cqrs_trace_span_id(const char *key, uint8_t span[8]);
void cqrs_trace_id_of_correlation(const char *corr, uint8_t trace[16]);
void cqrs_traceparent_format(const uint8_t trace[16], const uint8_t span[8], uint8_t flags,
			     char out[CQRS_TRACEPARENT_LEN + 1]);

enum cqrs_trace_format { CQRS_TRACE_TEXT, CQRS_TRACE_NDJSON, CQRS_TRACE_OTLP };
/* The causation tree of one correlation's events (commands, events, sagas,
 * their steps and compensations), printed as an indented tree, NDJSON or
 * one OTLP/JSON ExportTraceServiceRequest.  order_id (or NULL) names the
 * order whose correlation is traced, else correlation_id does.
 * CQRS_EXIT_NOT_FOUND when there are no events. */
int cqrs_trace_print(cqrs_store *st, const uint8_t *order_id, const char *correlation_id,
		     enum cqrs_trace_format fmt, FILE *out, cqrs_error *err);
/* structured logs (issue 11, logs; lib/ops/log.c) -------------------------
 * cqrs_warn, cqrs_die and cqrs_info all write here: "tool: message" (the
 * default), or one JSON object per line with time, level, tool, message and
 * the ids in the context.  --log-format or $CQRS_LOG_FORMAT choose. */
enum cqrs_log_format { CQRS_LOG_TEXT, CQRS_LOG_JSON };
enum cqrs_log_level { CQRS_LOG_ERROR, CQRS_LOG_WARNING, CQRS_LOG_INFO };
/* $CQRS_LOG_FORMAT (cqrs_tool_init reads it): a bad value exits 64 */
void cqrs_log_format_env(void);
/* --log-format ARG: json or text, else exits 64 */
void cqrs_log_format_option(const char *arg);
/* --log-format found in argv before getopt, so that every message the
 * option parsing itself gives is in that form (the tool still lists the
 * option for getopt and calls cqrs_log_format_option there) */
void cqrs_log_scan_args(int argc, char **argv);
enum cqrs_log_format cqrs_log_format(void);
/* --follow modes: an RFC 3339 time before each text line too */
void cqrs_log_set_timestamps(bool on);
/* Whether lib code reports details (each event the projector parks): the
 * tool's -v */
void cqrs_log_set_verbose(bool on);
bool cqrs_log_verbose(void);
void cqrs_log(enum cqrs_log_level level, const char *fmt, ...) CQRS_PRINTF(2, 3);
/* level info: what a verbose run or a follower reports */
void cqrs_info(const char *fmt, ...) CQRS_PRINTF(1, 2);
/* err->msg at level error, for a tool that goes on to exit with err->code */
void cqrs_log_error(const cqrs_error *err);

/* The ids at hand, members of the JSON lines while set (per thread).
 * Setting copies (text up to 255 bytes); nothing is formatted and the clock
 * is not read until a line is written. */
enum cqrs_log_key { CQRS_LOG_CORRELATION, CQRS_LOG_SAGA, CQRS_LOG_STEP };
/* NULL or "" unsets the key */
void cqrs_log_context_set(enum cqrs_log_key key, const char *value);
/* 0 unsets */
void cqrs_log_context_sequence(int64_t sequence);
/* NULL unsets */
void cqrs_log_context_aggregate(const uint8_t id[CQRS_UUID_LEN]);
/* sequence, aggregate and (from metadata, read only when a line is written)
 * correlation of ev, which must stay valid until the next call or a clear;
 * NULL unsets these three */
void cqrs_log_context_event(const cqrs_event *ev);
void cqrs_log_context_clear(void);
/* --- durable consumers (position.c, delivery.c): cqrs-read --checkpoint ----
 * A named consumer's position in the store, kept in a directory of the
 * consumer's own (never in the store), and output that knows what its
 * reader has taken, so that the position advances only over that. */

#define CQRS_POSITION_NAME_MAX 64
typedef struct cqrs_position cqrs_position;
/* Letters, digits, '.', '_', '-', not starting with '.' or '-', at most
 * CQRS_POSITION_NAME_MAX: 0, or -1 with *err (64). */
int cqrs_position_name_check(const char *name, cqrs_error *err);
/* option, else $CQRS_CHECKPOINT_DIR, else $XDG_STATE_HOME/cqrs-tools/positions,
 * else ~/.local/state/cqrs-tools/positions (in buf); NULL when none applies. */
const char *cqrs_position_dir(const char *option, char *buf, size_t cap);
#define CQRS_POSITION_LOCK 1u /* create dir (0700), hold NAME.lock: 75 when in use */
/* Loads DIR/NAME.pos (sequence 0 when there is none).  A directory or file
 * that another user owns or others may write is refused (77); a file that
 * is not a position, 65. */
cqrs_position *cqrs_position_open(const char *dir, const char *name, unsigned flags,
				  cqrs_error *err);
void cqrs_position_close(cqrs_position *p);
int64_t cqrs_position_sequence(const cqrs_position *p);
/* The position must belong to st: 78 when saved for a store whose first
 * event differs, 6 when st no longer holds the event it names. */
int cqrs_position_check_store(cqrs_position *p, cqrs_store *st, const char *store_path,
			      cqrs_error *err);
/* Saves sequence (with its event's hash; NULL for 0), atomically, 0600. */
int cqrs_position_save(cqrs_position *p, int64_t sequence, const uint8_t hash[CQRS_HASH_LEN],
		       cqrs_error *err);
/* Sets the position to sequence of st (0: before the first event),
 * whatever store it belonged to: 64 when st has no such event. */
int cqrs_position_set(cqrs_position *p, cqrs_store *st, const char *store_path, int64_t sequence,
		      cqrs_error *err);
/* The position as the one JSON line of its file. */
int cqrs_position_print(const cqrs_position *p, FILE *out);

typedef struct cqrs_delivery cqrs_delivery;
cqrs_delivery *cqrs_delivery_new(int fd, cqrs_error *err);
void cqrs_delivery_free(cqrs_delivery *d);
/* Queues an event's line (written out in chunks): 0, 1 when the reader
 * went away, -1 with *err (74: a write failed). */
int cqrs_delivery_event(cqrs_delivery *d, const cqrs_event *ev, cqrs_error *err);
/* Everything queued so far stands for the store up to sequence (a scan
 * that passed over filtered-out events). */
int cqrs_delivery_mark(cqrs_delivery *d, int64_t sequence, const uint8_t hash[CQRS_HASH_LEN],
		       cqrs_error *err);
/* Writes what is queued: 0, 1 when the reader went away, -1 (74). */
int cqrs_delivery_flush(cqrs_delivery *d, cqrs_error *err);
/* The last mark the reader has taken: a pipe's reader has read it, a file
 * holds it durably (fdatasync), anything else accepted it.  1 when that
 * moved since the last call, 0 when not, -1 with *err. */
int cqrs_delivery_confirmed(cqrs_delivery *d, int64_t *sequence, uint8_t hash[CQRS_HASH_LEN],
			    cqrs_error *err);
/* Marks written but not yet taken. */
bool cqrs_delivery_pending(cqrs_delivery *d);
bool cqrs_delivery_gone(const cqrs_delivery *d);
/* A pipe: waits until the reader has read everything (0) or went away (1). */
int cqrs_delivery_drain(cqrs_delivery *d);
/* --- metrics (metrics.c; the metrics piece, cqrs-metrics(7)) ---------------
 * What a tool measured, appended at exit (and periodically in a long run,
 * cqrs_metrics_tick) as one line to DIR/.cqrs_TOOL.journal, folded into
 * DIR/cqrs_TOOL.prom for node_exporter's textfile collector when due.  Not asked for, every call
 * returns at once: no clock, no allocation.  One thread only. */
enum cqrs_metric {
	CQRS_METRIC_COMMAND_DURATION,  /* histogram {type, result} */
	CQRS_METRIC_EVENTS_APPENDED,   /* counter {tool} */
	CQRS_METRIC_PROJECTION_LAG,    /* histogram {projection} */
	CQRS_METRIC_PROJECTION_EVENTS, /* counter {projection, result} */
	CQRS_METRIC_QUERY_DURATION,    /* histogram {query} */
	CQRS_METRIC_SAGA_STARTED,      /* counter {saga} */
	CQRS_METRIC_SAGA_FINISHED,     /* counter {saga, outcome} */
	CQRS_METRIC_REPLAY_EVENTS,     /* counter {projection} */
	CQRS_METRIC_REPLAY_DURATION,   /* counter {projection}, seconds */
	CQRS_METRIC_REPLAY_SPEED,      /* gauge {projection}, events/s */
	/* PostgreSQL backend (issue 13): a command decided again after
	 * another writer appended to its aggregate first */
	CQRS_METRIC_COMMAND_CONFLICTS, /* counter {type} */
	/* relay ops (issue 14): cqrs-relay; the lags are the store's head
	 * minus the relay's position, and the age of the oldest event not
	 * yet acknowledged, at the relay's last flush */
	CQRS_METRIC_RELAY_EVENTS,      /* counter {stream, direction} */
	CQRS_METRIC_RELAY_LAG_EVENTS,  /* gauge {stream} */
	CQRS_METRIC_RELAY_LAG_SECONDS, /* gauge {stream} */
	CQRS_METRIC_RELAY_ACK_LATENCY, /* histogram {stream}: a window sent to its PubAcks */
	CQRS_METRIC_COUNT
};
/* seconds between merges of a long run; $CQRS_METRICS_PERIOD sets it */
#define CQRS_METRICS_PERIOD_DEFAULT 15
/* a process folds the journal when the .prom file is older than this
 * many seconds; $CQRS_METRICS_FOLD sets it */
#define CQRS_METRICS_FOLD_DEFAULT 10
/* After cqrs_tool_init: --metrics-dir (NULL: $CQRS_METRICS_DIR; unset or
 * empty: no metrics).  -1 with *err (64) for an empty option. */
int cqrs_metrics_init(const char *dir_option, cqrs_error *err);
bool cqrs_metrics_on(void);
/* Monotonic and wall-clock seconds; 0 when metrics are off. */
double cqrs_metrics_clock(void);
double cqrs_metrics_wall_clock(void);
/* Seconds since the epoch of a normalised envelope timestamp. */
double cqrs_metrics_timestamp_seconds(const char *ts);
/* The series of metric with these label values (in the order of the
 * comment above; NULL for a metric's missing label): NULL when off.  The
 * calls below do nothing with NULL. */
typedef struct cqrs_metric_series cqrs_metric_series;
cqrs_metric_series *cqrs_metrics_series(enum cqrs_metric metric, const char *v0, const char *v1);
void cqrs_metrics_observe(cqrs_metric_series *s, double value); /* histograms */
void cqrs_metrics_add(cqrs_metric_series *s, double n);		/* counters */
void cqrs_metrics_set(cqrs_metric_series *s, double value);	/* gauges */
/* Appends the counts to the journal now, and folds it when due; a failure
 * warns once on stderr (counts not appended are kept for the next flush).
 * Returns 0 or -1; never fails the tool. */
int cqrs_metrics_flush(void);
/* In a long run's loop: appends and folds when the period has passed. */
void cqrs_metrics_tick(void);
/* The collector's part (cqrs-health --textfile): every tool's journal in
 * dir folded into its .prom file; -1 with *err (the first failure). */
int cqrs_metrics_fold_dir(const char *dir, cqrs_error *err);

/* --- backup and restore (issue 12): lib/store/store_backup.c, cqrs-backup(1) --
 * A consistent copy of a live store, as one SQLite file or as NDJSON (the
 * events in their stored form, then every other table's rows), and its
 * restore into a new store after the copy's chain and tables are checked. */

/* A store's head as the SEQ:HASH text --expect takes; an empty store's is
 * 0 and 64 zeros. */
struct cqrs_head {
	int64_t sequence;
	uint8_t hash[CQRS_HASH_LEN];
};
#define CQRS_HEAD_TEXT_LEN (20 + 1 + 2 * CQRS_HASH_LEN)
void cqrs_head_format(const struct cqrs_head *h, char out[CQRS_HEAD_TEXT_LEN + 1]);
/* 0, or -1 when text is not SEQ:HASH */
int cqrs_head_parse(const char *text, size_t len, struct cqrs_head *h);

enum cqrs_backup_format { CQRS_BACKUP_SQLITE, CQRS_BACKUP_NDJSON };
struct cqrs_signing_key;
struct cqrs_public_key;
struct cqrs_backup_options {
	enum cqrs_backup_format format;
	const struct cqrs_head *since; /* NDJSON: the events after it only; NULL: all */
	bool force;		       /* replace an existing target file */
	/* signs the head the backup ends at (cqrs-keygen(1)): in the NDJSON
	 * trailer, or beside a file target as TARGET.head; NULL: unsigned */
	const struct cqrs_signing_key *key;
};
/* The store at store_path, read at one moment while writers go on, into
 * the file target (made beside it, checked, synced, renamed into place,
 * mode 0600), or, target NULL, as NDJSON on out.  *head is where the copy
 * ends.  6 when the store does not hold since; 73 when target exists
 * (without force); 77 for a directory others may write. */
int cqrs_backup(const char *store_path, const char *target, FILE *out,
		const struct cqrs_backup_options *o, struct cqrs_head *head, cqrs_error *err);
/* A backup (a SQLite file or NDJSON; NULL or "-": NDJSON on stdin) into a
 * new store at store_path, checked before it is put in place, and its
 * witness reset; an incremental NDJSON backup goes onto the store whose
 * head is its since (6 when it does not hold it, 3 when it went on).
 * 65 for a truncated or edited backup, 73 when a store exists there. */
int cqrs_restore(const char *backup, const char *store_path, struct cqrs_head *head,
		 cqrs_error *err);
/* cqrs_restore of a backup that must carry a head signed by pub (the NDJSON
 * trailer's, or BACKUP.head beside a SQLite file) naming the head it ends
 * at, checked before the store is put in place: 66 without one, 65 for
 * another key or a head that does not match. */
int cqrs_restore_signed(const char *backup, const char *store_path,
			const struct cqrs_public_key *pub, struct cqrs_head *head, cqrs_error *err);
/* --- signed heads (issue 12): lib/store/signed_head.c, cqrs-keygen(1) -----
 * The store's owner signs a chain head with an Ed25519 key, as Certificate
 * Transparency signs tree heads: the head says which store (the hash of
 * its first event), how far (sequence and hash), when, and with which key.
 * Anyone with the public key can check it against a copy of the store.
 * The signed bytes and the line's form are in cqrs-keygen(1). */

#define CQRS_KEY_ID_LEN		  8  /* first bytes of SHA-256 of the public key */
#define CQRS_PUBLIC_KEY_LEN	  32 /* Ed25519 */
#define CQRS_SIGNATURE_LEN	  64
#define CQRS_SIGNED_HEAD_MAX	  512 /* the JSON line, with its newline and a NUL */
#define CQRS_SIGNED_HEAD_TEXT_MAX 320

typedef struct cqrs_public_key {
	uint8_t key[CQRS_PUBLIC_KEY_LEN];
	uint8_t id[CQRS_KEY_ID_LEN];
} cqrs_public_key;
/* The private key: kept in memory only while needed, wiped when freed. */
typedef struct cqrs_signing_key cqrs_signing_key;

/* A new key pair from getrandom(2): PATH, the private key (mode 0600,
 * never over an existing file), and PATH.pub (0644: it is meant to be
 * copied to whoever checks the heads).  A directory others may write is
 * refused (77); an existing file, 73.  Nothing is left behind on failure. */
int cqrs_signing_key_generate(const char *path, cqrs_public_key *pub, cqrs_error *err);
/* The private key in PATH: NULL with *err, 66 when missing, 77 when it is
 * a symbolic link, not a regular file, owned by another user or open to
 * group or others (any of the mode bits 077), 65 when it is not a key. */
cqrs_signing_key *cqrs_signing_key_load(const char *path, cqrs_error *err);
void cqrs_signing_key_free(cqrs_signing_key *k);
void cqrs_signing_key_public(const cqrs_signing_key *k, cqrs_public_key *pub);
/* Ed25519 (RFC 8032) of msg with the key. */
void cqrs_signing_key_sign(const cqrs_signing_key *k, const void *msg, size_t len,
			   uint8_t sig[CQRS_SIGNATURE_LEN]);
/* A public key file: 66 when missing, 77 when owned by another user than
 * this one or root or writable by others, 65 when not a public key. */
int cqrs_public_key_load(const char *path, cqrs_public_key *pub, cqrs_error *err);
/* The public key as the one JSON line of a .pub file, newline included. */
void cqrs_public_key_write(FILE *f, const cqrs_public_key *pub);

struct cqrs_signed_head {
	uint8_t store_id[CQRS_HASH_LEN]; /* the hash of event 1; zeros: an empty store */
	int64_t sequence;		 /* the head: 0 for an empty store */
	uint8_t hash[CQRS_HASH_LEN];	 /* of event `sequence`; zeros then */
	char time[CQRS_TIMESTAMP_LEN + 1];
	uint8_t key_id[CQRS_KEY_ID_LEN];
	uint8_t signature[CQRS_SIGNATURE_LEN];
};
/* Signs what v verified (cqrs_store_verify passed: v->bad == 0): the head
 * at v->checked, stamped now.  0, or -1 with *err (the store). */
int cqrs_signed_head_make(cqrs_store *st, const cqrs_verify *v, const cqrs_signing_key *k,
			  struct cqrs_signed_head *h, cqrs_error *err);
/* The bytes the signature covers, NUL-terminated: their length. */
size_t cqrs_signed_head_text(const struct cqrs_signed_head *h, char *buf, size_t cap);
/* The head as one JSON object in its canonical form, no newline: length. */
size_t cqrs_signed_head_format(const struct cqrs_signed_head *h, char *buf, size_t cap);
/* Back from exactly that form (another spelling of the same values is
 * refused too, so a head has one form): 0, or -1 with *err (65). */
int cqrs_signed_head_parse(const char *obj, size_t len, struct cqrs_signed_head *h,
			   cqrs_error *err);
/* A file holding one head line: 66 when missing, 65 when not a head. */
int cqrs_signed_head_read(const char *path, struct cqrs_signed_head *h, cqrs_error *err);
/* The signature by pub: 0, or -1 with *err (65: another key, or a head
 * whose bytes were changed). */
int cqrs_signed_head_verify(const struct cqrs_signed_head *h, const cqrs_public_key *pub,
			    cqrs_error *err);
/* The store holds the head: its first event is store_id (65 if not: a
 * head of another store) and its event `sequence` has that hash (6 if not,
 * through cqrs_store_expect).  what names the head in messages. */
int cqrs_signed_head_check_store(cqrs_store *st, const char *path, const struct cqrs_signed_head *h,
				 const char *what, cqrs_error *err);

/* --- upcasting (issue 12): lib/domain/upcast.c, cqrs-upcasters(5) ---------
 * Old versions of an event brought to the newest version of their type as
 * they are consumed, by the steps a YAML file declares; the stored bytes
 * never change.  An event the declarations do not reach (a version newer
 * than they know, or below the oldest they read) is 78; a step that fails
 * on an event (a field missing, a jq error) is 65; both name the event's
 * sequence, type and version. */
/* The declarations every consumer in this process applies: the shipped
 * domain's (share/upcasters/orders.yaml), then files in order (the tools'
 * --upcasters).  78 with FILE:LINE:COL for a bad file.  Without this call
 * the shipped file alone is loaded on first use. */
int cqrs_upcasters_init(char *const *files, int nfiles, cqrs_error *err);
/* The version the declarations bring event_type to: 1 when none is declared. */
int64_t cqrs_upcast_newest(const char *event_type);
/* Gives st's cursors the current form, upcast (CQRS_DECODE_UPCAST). */
int cqrs_upcast_attach(cqrs_store *st, cqrs_error *err);
/* For events that come from input rather than a store (one per thread). */
typedef struct cqrs_upcaster cqrs_upcaster;
cqrs_upcaster *cqrs_upcaster_new(cqrs_error *err);
void cqrs_upcaster_free(cqrs_upcaster *u);
/* Rewrites ev at its newest version, its data in u until the next call:
 * 1, 0 when it was current already, or -1 with *err (ev unchanged). */
int cqrs_upcaster_apply(cqrs_upcaster *u, cqrs_event *ev, cqrs_error *err);

/* --- erasure that keeps the chain (issue 12): lib/store/store_shred.c,
 * cqrs-erase(1) ---------------------------------------------------------
 * Personal fields, declared per event type in the store itself, are stored
 * encrypted (AES-256-GCM) with a key per data subject by every append;
 * erasing a subject deletes its key.  The stored form keeps the ciphertext,
 * which the chain covers; the current form shows the plaintext, or
 * CQRS_ERASED_MARKER where the key is gone. */
#define CQRS_ERASED_MARKER "\"[erased]\""
#define CQRS_SUBJECT_MAX   255 /* bytes of a subject's id */
#define CQRS_ERASE_LISTED  32  /* plaintext events a report lists */
/* For a consumer that checks an event's hash while it uses the current
 * form (the projector): the stored form of ev when ev is the event that a
 * cursor of this thread gave last, changed by a decode stage (valid as
 * long as ev); else ev itself. */
const cqrs_event *cqrs_event_stored_form(const cqrs_event *ev);
/* An event read elsewhere in the stored form (cqrs-project's input) in the
 * current form, as a cursor of st would give it: ev->data then points
 * into st until the next call.  0, or -1 with *err naming the event. */
int cqrs_store_decode(cqrs_store *st, cqrs_event *ev, cqrs_error *err);
/* True when ev's data holds encrypted personal fields (the stored form). */
bool cqrs_event_encrypted(const cqrs_event *ev);
/* True when the JSON value v (n bytes) is one encrypted personal field. */
bool cqrs_json_encrypted(const char *v, size_t n);
/* Installs the DECRYPT stage and asks for the current form: what the
 * domain and the read side consume.  0, or -1 with *err (71). */
int cqrs_store_decrypt(cqrs_store *st, cqrs_error *err);
/* Declares event_type's top-level field personal, its subject "aggregate"
 * or "data.MEMBER"; applies to the events appended from then on.  64 for
 * a malformed declaration, 65 for one that would hide a subject's id. */
int cqrs_personal_declare(cqrs_store *st, const char *event_type, const char *field,
			  const char *subject, cqrs_error *err);
/* The declarations, one JSON object a line; 78 for a row no writer could
 * apply (appends are refused with 78 too). */
int cqrs_personal_list(cqrs_store *st, FILE *out, cqrs_error *err);
struct cqrs_erase_report {
	char erased_at[CQRS_TIMESTAMP_LEN + 1];
	/* events stored in plaintext (before this release, or before the
	 * field was declared) that hold the subject's fields: they stay */
	int64_t nplaintext;
	int64_t plaintext[CQRS_ERASE_LISTED]; /* the first ones' sequences */
};
/* Deletes subject's key (and marks it erased, so that what it gives again
 * is written already erased), then truncates the WAL.  1 when nothing
 * names the subject, 65 when already erased, 75 when readers kept the WAL
 * (the key is erased; cqrs_erase_purge later); nothing changes on error. */
int cqrs_erase_subject(cqrs_store *st, const char *subject, struct cqrs_erase_report *r,
		       cqrs_error *err);
/* The WAL folded into the store and truncated: 0, or 75 (readers). */
int cqrs_erase_purge(cqrs_store *st, cqrs_error *err);

/* --- archive segments (issue 12): lib/store/store_archive.c, cqrs-archive(1) --
 * Old events move out of the store into compressed NDJSON segments (gzip,
 * one file per range of sequences, each naming the hash it continues
 * from); the store keeps where they are and what it needs to go on (the
 * head, aggregate versions, archived ids, snapshots, sagas, counters).
 * Reads and --verify cross archive and store as one log. */

/* A consumer the archive must not pass: it has taken the events up to
 * sequence, and name says which (for messages). */
struct cqrs_archive_consumer {
	char name[300];
	int64_t sequence;
};
struct cqrs_archive_options {
	int64_t upto;		     /* archive the events up to this sequence */
	const char *dir;	     /* the segments' directory; NULL: STORE.archive */
	int64_t segment_events;	     /* events per segment; 0: 100000 */
	const cqrs_signing_key *key; /* signs each segment's head; NULL: none */
	/* besides the store's own saga runner checkpoints */
	const struct cqrs_archive_consumer *consumers;
	size_t nconsumers;
	FILE *report; /* one NDJSON line per segment written; NULL: none */
	bool vacuum;  /* then give the freed pages back to the file system */
};
/* Archives the events after the archive's end up to o->upto, one segment
 * at a time (written, synced, read back, then recorded and its events
 * deleted in one transaction).  64 when upto would take the head; 75 when
 * a consumer has not passed upto (nothing is archived); 77 for a
 * directory others may write; 74 for a failed write. */
int cqrs_archive(cqrs_store *st, const char *store_path, const struct cqrs_archive_options *o,
		 cqrs_error *err);
/* The store's segments, one NDJSON line each, oldest first. */
int cqrs_archive_list(cqrs_store *st, FILE *out, cqrs_error *err);
/* A segment file on its own (on another host, say): its events chain from
 * the hash its header names, and, with pub, SEGMENT.head is a head signed
 * by pub that it ends at.  One NDJSON line on out; 0, or -1 with *err (65
 * broken, 66 missing). */
int cqrs_archive_check(const char *segment, const cqrs_public_key *pub, FILE *out, cqrs_error *err);

/* --- the NATS JetStream relay (issue 14): lib/relay/, cqrs-relay(1) --------
 * Only cqrs-relay links these (and libnats): events go from a store to a
 * JetStream stream (subject PREFIX.AGGREGATE_TYPE.EVENT_TYPE, Nats-Msg-Id =
 * event id) and from the stream into a replica store or NDJSON on stdout. */
struct cqrs_relay_options {
	const char *server;	    /* NULL: $CQRS_NATS_URL, else nats://127.0.0.1:4222 */
	const char *stream;	    /* the JetStream stream */
	const char *subject_prefix; /* subjects are PREFIX.TYPE.EVENT */
	const char *creds_file;	    /* a NATS creds file (JWT and nkey seed) */
	const char *nkey_seed_file; /* relay ops: a file with a user nkey's seed (SU...) */
	const char *user;	    /* NULL: $CQRS_NATS_USER */
	const char *password_file;  /* NULL: $CQRS_NATS_PASSWORD */
	const char *tls_ca, *tls_cert, *tls_key;
	int retries;		    /* connection attempts after the first, with backoff */
	int64_t window;		    /* publishes in flight */
	int64_t from;		    /* publish: the events after this sequence; -1: the position */
	bool follow;		    /* keep going as the store (or the stream) grows */
	bool cloudevents;	    /* publish CloudEvents 1.0 structured JSON */
	const char *durable;	    /* replicate and consume: the durable consumer's name */
	int64_t ack_wait_ms;	    /* its ack wait: redelivery after a crash */
	int64_t duplicate_window_s; /* create-stream: the duplicate window */
	FILE *report;		    /* one NDJSON summary line; NULL: none */
};
void cqrs_relay_options_init(struct cqrs_relay_options *o);
/* The store's events after the relay's position (or o->from) to the
 * stream; the position (counter "relay:STREAM") moves after the PubAcks. */
int cqrs_relay_publish(cqrs_store *st, const struct cqrs_relay_options *o, cqrs_error *err);
/* The stream into the replica store at replica_path, the same sequences
 * and hashes: 6 on a gap, 65 when the replica diverges or a message is not
 * an event. */
int cqrs_relay_replicate(const char *replica_path, const struct cqrs_relay_options *o,
			 cqrs_error *err);
/* The stream as NDJSON envelopes on out, at least once. */
int cqrs_relay_consume(FILE *out, const struct cqrs_relay_options *o, cqrs_error *err);
/* Creates the stream (file storage, subjects PREFIX.>, o->duplicate_window_s). */
int cqrs_relay_create_stream(const struct cqrs_relay_options *o, cqrs_error *err);
/* Before exit, whatever the outcome: waits (up to 2 s) for the NATS
 * client's own threads to end, so that none is cut off mid-work and
 * valgrind sees their memory freed. */
void cqrs_relay_shutdown(void);
/* relay ops (issue 14): Ed25519's public key of a 32-byte seed, through
 * the Nettle library signed heads load (signed_head.c): cqrs-relay
 * --nkey-seed gives the server the public key of its seed file.  0, or -1
 * with *err (69: no Nettle). */
int cqrs_ed25519_public_of_seed(const uint8_t seed[32], uint8_t pub[32], cqrs_error *err);
/* CloudEvents 1.0 structured JSON of ev on f, one line; and back: the
 * envelope line of a CloudEvent (malloc'd in *line), or -1 with *err (65). */
void cqrs_cloudevent_write(FILE *f, const cqrs_event *ev);
int cqrs_cloudevent_to_envelope(const char *body, size_t len, char **line, size_t *line_len,
				cqrs_error *err);

#endif
