/*
 * The saga runner's internals, shared by saga.c (the engine), saga_yaml.c
 * (definitions), saga_template.c (JSON templates), saga_store*.c (its
 * tables), saga_report.c (status, show, dot) and saga_exec.c (step programs).
 * The tools see only the cqrs_saga API in cqrs.h.
 */
#ifndef CQRS_SAGA_IMPL_H
#define CQRS_SAGA_IMPL_H

#include "cqrs.h"
#include "common/strbuf.h"

/* --- templates ---------------------------------------------------------------- */

enum tpl_kind {
	TPL_LITERAL, /* JSON text as it stands */
	TPL_REF,     /* "${path}": the value at path, bytes as stored */
	TPL_STRING,  /* a string with ${path} inside: interpolated */
	TPL_OBJECT,
	TPL_ARRAY,
};

struct tpl {
	enum tpl_kind kind;
	char *text; /* literal JSON, the path, or the raw string */
	size_t n;   /* members or items */
	char **keys;
	struct tpl **items;
	int line;
};

void tpl_free(struct tpl *t);

/* What ${...} may name while a template is rendered. */
struct tpl_ctx {
	const char *state; /* the instance's state object: event, steps, reason */
	size_t state_len;
	const char *output; /* this step's program output, or NULL */
	size_t output_len;
	const char *item; /* the for_each element, or NULL */
	size_t item_len;
	const char *saga_id, *saga_type, *correlation_id, *step, *idempotency_key;
	int64_t attempt;
	const char *now;
};

/* Renders t as compact JSON into out; -1 with *err (a missing value). */
int tpl_render(const struct tpl *t, const struct tpl_ctx *ctx, struct cqrs_strbuf *out,
	       cqrs_error *err);
/* A name-based UUID (version 8, from SHA-256) of a saga and a name: the
 * same on every retry, so ${uuid:payment} names one payment for good. */
void saga_uuid(const char *saga_id, const char *name, size_t name_len, char out[37]);

/* --- definitions (saga_yaml.c) -------------------------------------------------- */

struct saga_retry {
	int64_t max_attempts;
	int64_t backoff_us, max_backoff_us;
};

struct saga_breaker {
	char *name;	     /* shared by the steps that name it */
	int64_t failures;    /* consecutive retryable failures that open it; 0: none */
	int64_t cooldown_us; /* open this long, then one probe call */
};

/* What a step does (or undoes): an optional program, then in-process
 * commands and events, all recorded in one transaction. */
struct saga_action {
	bool present;
	int line;
	struct tpl *for_each; /* commands repeated per element; NULL: once */
	char **argv;	      /* NULL: no program */
	size_t argc;
	struct tpl *input; /* the program's "input"; NULL: {} */
	int64_t timeout_us;
	struct tpl *command;  /* NULL: none */
	bool accept_rejected; /* a rejected command counts as done: "already cancelled" */
	struct tpl **emit;    /* event templates */
	size_t nemit;
	struct saga_retry retry;
	struct saga_breaker breaker;
};

/* One way a step's goal may already be reached: an event of one of these
 * types, matching as a wait's event does (cqrs-saga(5), goal). */
struct saga_goal {
	char **event_types;
	size_t ntypes;
	char *aggregate_type;
	struct tpl *match; /* object: aggregate_id / correlation_id / data.X */
	int line;
};

struct saga_step {
	char *name;
	int line;
	struct saga_action act, comp;
	/* checked before the step runs: any one reached skips it */
	struct saga_goal *goals;
	size_t ngoals;
	/* a wait step: the step completes when a matching event is stored */
	bool is_wait;
	char *wait_event_type, *wait_aggregate_type;
	struct tpl *wait_match; /* object: aggregate_id / correlation_id / data.X */
	int64_t deadline_us;
};

struct cqrs_saga_def {
	char *path, *dir;
	char *name, *description;
	char *start_event_type, *start_aggregate_type;
	struct tpl *correlation; /* NULL: the start event's, else its aggregate_id */
	struct saga_step *steps;
	size_t nsteps;
	struct saga_action on_failure;
	/* an event on the starting aggregate that cancels the instance:
	 * its completed steps are undone (cqrs-saga(5), cancel_on) */
	char *cancel_event_type, *cancel_aggregate_type;
};

/* --- instances and their table (saga_store.c) ----------------------------------- */

enum saga_status { SAGA_RUNNING, SAGA_COMPLETED, SAGA_COMPENSATING, SAGA_FAILED };

struct saga_inst {
	int64_t rowid;
	char id[37];
	char type[CQRS_MAX_TYPE_NAME + 1];
	char corr[256];
	int64_t step; /* RUNNING: the next step; COMPENSATING: steps below it are done */
	enum saga_status status;
	int64_t attempts, revision;
	int64_t next_at, deadline; /* microseconds since the epoch; 0: none */
	int64_t start_sequence;
	char outcome[32];
	char last_error[512];
	struct cqrs_strbuf state;
	int64_t created, updated;
};

const char *saga_status_name(enum saga_status s);

/* The runner's tables: one interface (saga_store.c), one implementation
 * per backend (saga_store_sqlite.c, saga_store_pg.c), each running its
 * statements on the store's own connection so that an instance's new
 * state commits in the same transaction as its step's events. */
struct saga_db;
struct saga_db *saga_db_open(cqrs_store *st, cqrs_error *err);
void saga_db_close(struct saga_db *db);
/* Several runners at once (PostgreSQL): an instance a runner works on is
 * leased to it for lease_us; 0 with a SQLite store, where one runner
 * holds the lock file instead. */
int saga_db_set_lease(struct saga_db *db, int64_t lease_us, cqrs_error *err);
/* Outside a transaction: gives up every lease this runner holds (at the
 * end of a run, so that a runner that stops or rests holds nothing). */
int saga_db_release(struct saga_db *db, cqrs_error *err);
/* Inside the caller's transaction: 1 inserted, 0 that event already
 * started one, -1 error. */
int saga_db_insert(struct saga_db *db, struct saga_inst *in, cqrs_error *err);
/* Writes in back when its revision is still the stored one and no other
 * runner's lease is live on it (then bumps the revision and ends the
 * lease): 1 written, 0 another runner changed it or holds it, -1 error. */
int saga_db_update(struct saga_db *db, struct saga_inst *in, cqrs_error *err);
/* 1 found, 0 not, -1 error.  id may be a unique prefix of 8 or more. */
int saga_db_load(struct saga_db *db, const char *id, struct saga_inst *in, cqrs_error *err);
/* Loads in again and holds it (takes or renews the lease, waiting for a
 * row another transaction changes): 1, or 0 when it is gone or another
 * runner's lease is live on it. */
int saga_db_reload(struct saga_db *db, struct saga_inst *in, cqrs_error *err);
/* Instances with work now or a pending wait, after rowid, in rowid order,
 * but for those another runner holds. */
int saga_db_candidates(struct saga_db *db, int64_t after_rowid, int64_t now, int64_t limit,
		       int64_t *rowids, size_t *n, cqrs_error *err);
/* Loads a candidate and holds it: 1, or 0 when it is gone, no longer due
 * at now (another runner took it meanwhile and set a retry), or another
 * runner holds it (never waits for one). */
int saga_db_load_rowid(struct saga_db *db, int64_t rowid, int64_t now, struct saga_inst *in,
		       cqrs_error *err);
/* The checkpoint, locked until the transaction ends where runners share
 * the store (so that one runner at a time starts instances from events). */
int64_t saga_db_checkpoint(struct saga_db *db, const char *name, cqrs_error *err);
/* 1 with *seq when the checkpoint exists, 0 when not, -1 error (locked too) */
int saga_db_checkpoint_get(struct saga_db *db, const char *name, int64_t *seq, cqrs_error *err);
/* The instance of type that the event at start_sequence started, held
 * (as saga_db_load_rowid): 1, 0 none, SAGA_HELD_ELSEWHERE when another
 * runner holds it now (try later), -1 error */
#define SAGA_HELD_ELSEWHERE 2
int saga_db_load_start(struct saga_db *db, const char *type, int64_t start_sequence,
		       struct saga_inst *in, cqrs_error *err);
int saga_db_set_checkpoint(struct saga_db *db, const char *name, int64_t seq, int64_t now,
			   cqrs_error *err);
/* The earliest future next_attempt_at, or when another runner's lease
 * runs out (0: none) */
int64_t saga_db_next_due(struct saga_db *db, int64_t now, cqrs_error *err);

enum breaker_state { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN };
struct breaker_row {
	enum breaker_state state;
	int64_t failures, opened_at;
};
int saga_db_breaker_get(struct saga_db *db, const char *name, struct breaker_row *b,
			cqrs_error *err);
int saga_db_breaker_put(struct saga_db *db, const char *name, const struct breaker_row *b,
			int64_t now, cqrs_error *err);

/* What saga_report.c shows.  An active instance with no change since
 * stuck_before (RFC 3339) is stuck. */
struct saga_type_counts {
	const char *saga_type;
	int64_t total, running, compensating, completed, failed, compensated, compensation_failed,
		left_to_person, cancelled, stuck;
};
struct saga_attention {
	const char *saga_id, *saga_type, *status, *updated_at, *next_attempt_at, *last_error;
	const char *why; /* no_progress, compensation_failed or left_to_person */
	int64_t step, attempts;
};
/* Per saga type, in type order: 0, or -1 with *err */
int saga_db_counts(struct saga_db *db, const char *stuck_before,
		   void (*fn)(void *, const struct saga_type_counts *), void *arg, cqrs_error *err);
/* The stuck ones and those needing a person, oldest change first, 1000 at
 * most */
int saga_db_attention(struct saga_db *db, const char *stuck_before,
		      void (*fn)(void *, const struct saga_attention *), void *arg,
		      cqrs_error *err);
int saga_db_breakers(struct saga_db *db, void (*fn)(void *, const struct cqrs_saga_breaker *),
		     void *arg, cqrs_error *err);
/* One read transaction around several of the above: the facts of one
 * moment.  end is called after a successful begin. */
int saga_db_read_begin(struct saga_db *db, cqrs_error *err);
void saga_db_read_end(struct saga_db *db);

/* What a backend fills in (saga_store.c dispatches to it). */
struct saga_db_ops {
	void (*close)(struct saga_db *db);
	int (*set_lease)(struct saga_db *db, int64_t lease_us, cqrs_error *err);
	int (*release)(struct saga_db *db, cqrs_error *err);
	int (*insert)(struct saga_db *db, struct saga_inst *in, cqrs_error *err);
	int (*update)(struct saga_db *db, struct saga_inst *in, cqrs_error *err);
	int (*load)(struct saga_db *db, const char *id, struct saga_inst *in, cqrs_error *err);
	int (*reload)(struct saga_db *db, struct saga_inst *in, cqrs_error *err);
	int (*candidates)(struct saga_db *db, int64_t after_rowid, int64_t now, int64_t limit,
			  int64_t *rowids, size_t *n, cqrs_error *err);
	int (*load_rowid)(struct saga_db *db, int64_t rowid, int64_t now, struct saga_inst *in,
			  cqrs_error *err);
	int (*checkpoint_get)(struct saga_db *db, const char *name, int64_t *seq, cqrs_error *err);
	int (*load_start)(struct saga_db *db, const char *type, int64_t start_sequence,
			  struct saga_inst *in, cqrs_error *err);
	int (*set_checkpoint)(struct saga_db *db, const char *name, int64_t seq, int64_t now,
			      cqrs_error *err);
	int64_t (*next_due)(struct saga_db *db, int64_t now, cqrs_error *err);
	int (*breaker_get)(struct saga_db *db, const char *name, struct breaker_row *b,
			   cqrs_error *err);
	int (*breaker_put)(struct saga_db *db, const char *name, const struct breaker_row *b,
			   int64_t now, cqrs_error *err);
	int (*counts)(struct saga_db *db, const char *stuck_before,
		      void (*fn)(void *, const struct saga_type_counts *), void *arg,
		      cqrs_error *err);
	int (*attention)(struct saga_db *db, const char *stuck_before,
			 void (*fn)(void *, const struct saga_attention *), void *arg,
			 cqrs_error *err);
	int (*breakers)(struct saga_db *db, void (*fn)(void *, const struct cqrs_saga_breaker *),
			void *arg, cqrs_error *err);
	int (*read_begin)(struct saga_db *db, cqrs_error *err);
	void (*read_end)(struct saga_db *db);
};
/* Every backend's saga_db starts with this. */
struct saga_db {
	const struct saga_db_ops *ops;
	cqrs_store *st;
};
/* NULL with *err, or NULL and no error when st is not the backend's */
struct saga_db *saga_db_sqlite_open(cqrs_store *st, cqrs_error *err);
struct saga_db *saga_db_pg_open(cqrs_store *st, cqrs_error *err);
/* Shared by both: names of statuses and breaker states, and back. */
extern const char *const saga_status_names[4];
extern const char *const saga_breaker_names[3];
enum saga_status saga_status_of(const char *s);
enum breaker_state saga_breaker_of(const char *s);

/* --- time ----------------------------------------------------------------------- */

/* Microseconds since the epoch; $CQRS_SAGA_NOW (RFC 3339) pins it for tests. */
int64_t saga_now(void);
void saga_time_format(int64_t us, char out[CQRS_TIMESTAMP_LEN + 1]);
/* -1 when text is not RFC 3339 */
int64_t saga_time_parse(const char *text);
/* "90s", "500ms", "5m", "2h", "1d", or plain seconds; -1 when malformed */
int64_t saga_duration_parse(const char *text);
void saga_duration_format(int64_t us, char *buf, size_t cap);

/* --- step programs (saga_exec.c) ----------------------------------------------------- */

enum exec_outcome {
	EXEC_OK,	/* exit 0 */
	EXEC_RETRY,	/* exit 75, killed by a signal, timed out */
	EXEC_PERMANENT, /* any other exit status, or cannot run */
};

struct exec_result {
	enum exec_outcome outcome;
	bool timed_out;
	int status; /* exit status, or 128 + signal */
	struct cqrs_strbuf out;
	char reason[512];
	/* set by the engine when a circuit breaker kept the call from going out */
	bool not_called;
	int64_t not_before;
};

struct exec_spec {
	char *const *argv;
	const char *dir; /* relative program paths are relative to this */
	const char *input;
	size_t input_len;
	int64_t timeout_us;
	char *const *env; /* "NAME=value" added to the environment */
};

/* Runs one step program to its end or its timeout: never -1 for the
 * program's own failures, only for ours (fork, pipes: *err). */
int exec_step(const struct exec_spec *spec, struct exec_result *res, cqrs_error *err);

#endif
