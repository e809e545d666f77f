/*
 * The command side's internals, shared by command.c, aggregate.c and the
 * domain_*.c files; the tools see only the cqrs_commander API in cqrs.h.
 *
 * A domain file holds pure functions: the state of one aggregate is a small
 * struct, apply() folds one stored event into it, decide() turns a parsed
 * command and the current state into new events or a rejection.  Nothing
 * there touches the store, so the rules can be read (and tested) alone.
 */
#ifndef CQRS_DOMAIN_H
#define CQRS_DOMAIN_H

#include "cqrs.h"
#include "common/strbuf.h"

/* --- building JSON text (domain_json.c) ---------------------------------- */

/* ',' unless the buffer ends an opening '{' or '[', then "key": */
void jb_key(struct cqrs_strbuf *b, const char *key);
void jb_str(struct cqrs_strbuf *b, const char *s);
void jb_int(struct cqrs_strbuf *b, int64_t v);
void jb_uuid(struct cqrs_strbuf *b, const uint8_t id[CQRS_UUID_LEN]);
void jb_money(struct cqrs_strbuf *b, int64_t minor, const char *currency);
void jb_bool(struct cqrs_strbuf *b, bool v);
void jb_hex(struct cqrs_strbuf *b, const uint8_t *bytes, size_t n);

/* Strict readers of compact JSON values, for event data and snapshots:
 * 0 on success, -1 when the value is missing or of the wrong shape. */
int jv_string(const char *obj, size_t len, const char *key, char *buf, size_t cap);
int jv_count(const char *obj, size_t len, const char *key, int64_t *out);
int jv_money(const char *obj, size_t len, const char *key, const char *currency, int64_t *out);
int jv_bool(const char *obj, size_t len, const char *key, bool *out);
int jv_uuid(const char *obj, size_t len, const char *key, uint8_t out[CQRS_UUID_LEN]);
/* A whole positive count written as a JSON integer (no fraction, no
 * exponent), at most DOM_MAX_COUNT. */
int parse_count(const char *text, size_t len, int64_t *out);

/* --- sizes ----------------------------------------------------------------- */

#define DOM_ID	       129 /* identifiers: command_id, customer_id, sku ... */
#define DOM_TEXT       257 /* free text: names, reasons, address lines */
#define DOM_NUMBER     32  /* "ORD-2026-000001" */
#define DOM_MAX_ITEMS  1000
#define DOM_MAX_COUNT  1000000000LL	    /* one quantity */
#define DOM_MAX_STOCK  1000000000000000LL   /* units of one product */
#define DOM_MAX_AMOUNT 100000000000000000LL /* minor units */

/* --- aggregates -------------------------------------------------------------- */

enum agg_kind { AGG_ORDER, AGG_INVENTORY, AGG_PAYMENT, AGG_KINDS };

struct order_state {
	bool exists;
	char number[DOM_NUMBER];
	char currency[4];
	int64_t total; /* minor units */
	bool confirmed, paid, shipped, cancelled;
};

struct inventory_state {
	bool exists;
	char sku[DOM_ID];
	char name[DOM_TEXT];
	int64_t available, reserved;
};

struct payment_state {
	bool exists;
	uint8_t order_id[CQRS_UUID_LEN];
	char currency[4];
	int64_t authorized, captured, refunded; /* minor units */
	bool voided;
};

struct aggregate {
	enum agg_kind kind;
	uint8_t id[CQRS_UUID_LEN];
	int64_t version; /* 0: no events */
	uint8_t last_hash[CQRS_HASH_LEN];
	/* The stream holds events of another aggregate type: no command of
	 * this kind may touch it. */
	char foreign_type[CQRS_MAX_TYPE_NAME + 1];
	char correlation[DOM_ID]; /* of the stream's first event */
	union {
		struct order_state order;
		struct inventory_state inv;
		struct payment_state pay;
	} u;
};

/* --- commands ---------------------------------------------------------------- */

enum cmd_type {
	CMD_CREATE_ORDER,
	CMD_CONFIRM_ORDER,
	CMD_CONFIRM_PAYMENT,
	CMD_SHIP_ORDER,
	CMD_CANCEL_ORDER,
	CMD_REGISTER_PRODUCT,
	CMD_REPLENISH_STOCK,
	CMD_RESERVE_INVENTORY,
	CMD_RELEASE_INVENTORY,
	CMD_AUTHORIZE_PAYMENT,
	CMD_CAPTURE_PAYMENT,
	CMD_REFUND_PAYMENT,
	CMD_VOID_AUTHORIZATION,
	CMD_COUNT
};

struct cmd_item {
	uint8_t product_id[CQRS_UUID_LEN];
	char sku[DOM_ID];		   /* "" when absent: taken from the product */
	const char *quantity, *unit_price; /* raw JSON number text */
	size_t quantity_len, unit_price_len;
};

enum { ADDR_NAME, ADDR_STREET, ADDR_CITY, ADDR_POSTAL_CODE, ADDR_COUNTRY, ADDR_PARTS };

/* A parsed command: strings decoded, numbers kept as their raw text (they
 * point into the command line, which outlives the decision). */
struct command {
	enum cmd_type type;
	uint32_t seen; /* 1 << field */
	char command_id[DOM_ID];
	char correlation_id[DOM_ID];
	char user_id[DOM_ID];
	uint8_t order_id[CQRS_UUID_LEN], product_id[CQRS_UUID_LEN], payment_id[CQRS_UUID_LEN];
	char customer_id[DOM_ID];
	char currency[DOM_ID];
	char note[DOM_TEXT], reason[DOM_TEXT], name[DOM_TEXT];
	char carrier[DOM_ID], tracking_number[DOM_ID], sku[DOM_ID];
	char shipped_at[CQRS_TIMESTAMP_LEN + 1];
	const char *amount, *quantity;
	size_t amount_len, quantity_len;
	struct cmd_item *items;
	size_t nitems;
	char address[ADDR_PARTS][DOM_TEXT];
};

/* The fields of a command object; a command type allows some of them. */
enum cmd_field {
	F_COMMAND_ID,
	F_TYPE,
	F_CORRELATION_ID,
	F_USER_ID,
	F_ORDER_ID,
	F_PRODUCT_ID,
	F_PAYMENT_ID,
	F_CUSTOMER_ID,
	F_ITEMS,
	F_CURRENCY,
	F_SHIPPING_ADDRESS,
	F_NOTE,
	F_AMOUNT,
	F_CARRIER,
	F_TRACKING_NUMBER,
	F_SHIPPED_AT,
	F_REASON,
	F_SKU,
	F_NAME,
	F_QUANTITY,
	F_FIELDS
};

#define HAS(c, f) (((c)->seen >> (f)) & 1u)

/* What a decision produces: up to DOM_MAX_EVENTS events or a reason. */
#define DOM_MAX_EVENTS 2
struct decision {
	bool rejected;
	char reason[512];
	int nevents;
	const char *event_type[DOM_MAX_EVENTS];
	struct cqrs_strbuf data[DOM_MAX_EVENTS];
};

/* What a decision may ask of the world while it runs: the next order number
 * (only taken once the command is known to be valid) and the time. */
struct decide_ctx {
	int (*order_number)(void *arg, char out[DOM_NUMBER], cqrs_error *err);
	void *arg;
};

/* Returns 0 (accepted, or d->rejected with d->reason) or -1 with *err set
 * when the world failed (the store, memory). */
typedef int (*decide_fn)(const struct command *c, const struct aggregate *a,
			 const struct decide_ctx *ctx, struct decision *d, cqrs_error *err);

int reject(struct decision *d, const char *fmt, ...) CQRS_PRINTF(2, 3);
/* The next event of the decision, with its data buffer emptied. */
struct cqrs_strbuf *decision_emit(struct decision *d, const char *event_type);

struct domain {
	const char *type; /* aggregate_type: "Order" */
	const char *noun; /* in messages: "order" */
	/* Folds one stored event of this aggregate into a; unknown event
	 * types are skipped. -1 with *err set when the data is unreadable. */
	int (*apply)(struct aggregate *a, const cqrs_event *ev, cqrs_error *err);
	/* The state's members (after the opening '{' and correlation_id). */
	void (*save)(const struct aggregate *a, struct cqrs_strbuf *out);
	/* Back from those members: -1 when anything is missing or wrong. */
	int (*restore)(struct aggregate *a, const char *state, size_t len);
};

extern const struct domain domain_order, domain_inventory, domain_payment;
const struct domain *domain_of(enum agg_kind kind);

int order_create(const struct command *c, const struct aggregate *a, const struct decide_ctx *ctx,
		 struct decision *d, cqrs_error *err);
int order_confirm(const struct command *c, const struct aggregate *a, const struct decide_ctx *ctx,
		  struct decision *d, cqrs_error *err);
int order_pay(const struct command *c, const struct aggregate *a, const struct decide_ctx *ctx,
	      struct decision *d, cqrs_error *err);
int order_ship(const struct command *c, const struct aggregate *a, const struct decide_ctx *ctx,
	       struct decision *d, cqrs_error *err);
int order_cancel(const struct command *c, const struct aggregate *a, const struct decide_ctx *ctx,
		 struct decision *d, cqrs_error *err);
int inventory_register(const struct command *c, const struct aggregate *a,
		       const struct decide_ctx *ctx, struct decision *d, cqrs_error *err);
int inventory_replenish(const struct command *c, const struct aggregate *a,
			const struct decide_ctx *ctx, struct decision *d, cqrs_error *err);
int inventory_reserve(const struct command *c, const struct aggregate *a,
		      const struct decide_ctx *ctx, struct decision *d, cqrs_error *err);
int inventory_release(const struct command *c, const struct aggregate *a,
		      const struct decide_ctx *ctx, struct decision *d, cqrs_error *err);
int payment_authorize(const struct command *c, const struct aggregate *a,
		      const struct decide_ctx *ctx, struct decision *d, cqrs_error *err);
int payment_capture(const struct command *c, const struct aggregate *a,
		    const struct decide_ctx *ctx, struct decision *d, cqrs_error *err);
int payment_refund(const struct command *c, const struct aggregate *a, const struct decide_ctx *ctx,
		   struct decision *d, cqrs_error *err);
int payment_void(const struct command *c, const struct aggregate *a, const struct decide_ctx *ctx,
		 struct decision *d, cqrs_error *err);

/* The checks every decide function starts with: the stream is of this
 * aggregate type, and it exists (or, for a creation, does not).  Return
 * true when the command was rejected. */
bool reject_foreign(struct decision *d, const struct aggregate *a, const struct domain *dom);
bool reject_missing(struct decision *d, const struct aggregate *a, const struct domain *dom,
		    bool exists);
bool reject_existing(struct decision *d, const struct aggregate *a, const struct domain *dom);

/* An amount of the command in the given currency, or a rejection that
 * names what: "amount", "item 2: unit price". */
bool reject_amount(struct decision *d, const char *what, const char *text, size_t len,
		   const char *currency, int64_t *minor);
bool reject_quantity(struct decision *d, const char *what, const char *text, size_t len,
		     int64_t *q);

/* --- loading aggregates (aggregate.c) ------------------------------------- */

#define AGG_CACHE_SLOTS 1024

struct agg_loader {
	cqrs_store *st;
	int64_t snapshot_every; /* 0: never */
	bool ignore_snapshots;
	struct aggregate *cache; /* AGG_CACHE_SLOTS, direct-mapped on the id */
	struct cqrs_strbuf scratch;
	/* counters for tests and benchmarks */
	int64_t snapshots_used, snapshots_ignored, events_folded;
	int64_t last_snapshot; /* version of the snapshot the last load began at */
};

int agg_loader_init(struct agg_loader *l, cqrs_store *st, int64_t snapshot_every,
		    bool ignore_snapshots, cqrs_error *err);
void agg_loader_free(struct agg_loader *l);
/* Forgets every cached state: after a rollback, cached versions may name
 * events that were never committed. */
void agg_loader_forget(struct agg_loader *l);
void agg_loader_forget_one(struct agg_loader *l, const uint8_t id[CQRS_UUID_LEN]);
/* The current state of an aggregate: cached state brought up to date, else
 * its latest valid snapshot plus the events after it, else all its events. */
int agg_load(struct agg_loader *l, enum agg_kind kind, const uint8_t id[CQRS_UUID_LEN],
	     struct aggregate *out, cqrs_error *err);
/* After the command's events were appended (a now includes them): caches
 * the state, and saves a snapshot when the stream crossed a multiple of
 * snapshot_every. */
int agg_committed(struct agg_loader *l, const struct aggregate *a, int64_t old_version,
		  cqrs_error *err);
/* Folds one event into a, checking that it belongs to this kind. */
int agg_fold(struct aggregate *a, const cqrs_event *ev, cqrs_error *err);
/* For an apply function: the event's data cannot be read (65), saying
 * which aggregate, event and version, and what is wrong. */
int agg_bad_event(const struct aggregate *a, const cqrs_event *ev, const char *what,
		  cqrs_error *err);
/* The state as one JSON object (with correlation_id first). */
void agg_state_json(const struct aggregate *a, struct cqrs_strbuf *out);
/* The kind for an aggregate_type, -1 when no command handles it. */
int agg_kind_of(const char *aggregate_type);

#endif
