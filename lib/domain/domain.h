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
/* Different products in one order: its state keeps one line per product
 * (so that a shipment knows what to consume) and stays small. */
#define DOM_MAX_ORDER_PRODUCTS 64

/* --- aggregates -------------------------------------------------------------- */

enum agg_kind { AGG_ORDER, AGG_INVENTORY, AGG_PAYMENT, AGG_KINDS };

/* The lifecycle states (lifecycle.c names them and says what each
 * allows). */
enum order_status {
	ORDER_NONE,
	ORDER_PENDING,
	ORDER_CONFIRMED,
	ORDER_PAID,
	ORDER_SHIPPED,
	ORDER_CANCELLED,
	ORDER_STATES
};
enum inventory_status { INV_NONE, INV_ACTIVE, INV_STATES };
enum payment_status { PAY_NONE, PAY_AUTHORIZED, PAY_CAPTURED, PAY_VOIDED, PAY_STATES };

struct order_line {
	uint8_t product_id[CQRS_UUID_LEN];
	int64_t quantity; /* the order's units of the product, all its items */
};

struct order_state {
	bool exists;
	enum order_status status;
	/* a PAID order may or may not have been confirmed before */
	bool confirmed, confirmed_by_saga;
	char number[DOM_NUMBER];
	char currency[4];
	int64_t total; /* minor units */
	int nlines;
	struct order_line lines[DOM_MAX_ORDER_PRODUCTS];
};

/* What one order holds of a product; entries leave at 0. */
struct inventory_hold {
	uint8_t order_id[CQRS_UUID_LEN];
	int64_t quantity;
};

/* holds is heap memory owned by the aggregate: copy and clear aggregates
 * with agg_copy and agg_clear (aggregate.c), never by assignment. */
struct inventory_state {
	bool exists;
	char sku[DOM_ID];
	char name[DOM_TEXT];
	int64_t on_hand, reserved, shipped, received;
	struct inventory_hold *holds;
	size_t nholds, holds_cap;
};

struct payment_state {
	bool exists;
	uint8_t order_id[CQRS_UUID_LEN];
	char currency[4];
	char method[DOM_ID];			/* payment_method, "" when not given */
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
	CMD_CANCEL_PAYMENT,
	CMD_COUNT
};

struct cmd_item {
	uint8_t product_id[CQRS_UUID_LEN];
	char sku[DOM_ID];		   /* "" when absent: taken from the product */
	const char *quantity, *unit_price; /* raw JSON number text */
	size_t quantity_len, unit_price_len;
};

/* The stored names, in the order OrderCreated writes them; zip is an
 * input alias of postal_code. */
enum { ADDR_NAME, ADDR_STREET, ADDR_CITY, ADDR_STATE, ADDR_POSTAL_CODE, ADDR_COUNTRY, ADDR_PARTS };

/* A parsed command: strings decoded, numbers kept as their raw text (they
 * point into the command line, which outlives the decision). */
struct command {
	enum cmd_type type;
	uint32_t seen; /* 1 << field */
	char command_id[DOM_ID];
	char correlation_id[DOM_ID];
	char user_id[DOM_ID];
	char traceparent[CQRS_TRACEPARENT_LEN + 1]; /* W3C, as kept in metadata */
	uint8_t order_id[CQRS_UUID_LEN], product_id[CQRS_UUID_LEN], payment_id[CQRS_UUID_LEN];
	char customer_id[DOM_ID];
	char currency[DOM_ID];
	char note[DOM_TEXT], reason[DOM_TEXT], name[DOM_TEXT];
	char carrier[DOM_ID], tracking_number[DOM_ID], sku[DOM_ID];
	char shipped_at[CQRS_TIMESTAMP_LEN + 1];
	char payment_method[DOM_ID];
	char authorization[DOM_ID]; /* the gateway's reference, "" when not given */
	bool if_needed, automated;
	const char *amount, *quantity, *total;
	size_t amount_len, quantity_len, total_len;
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
	F_IF_NEEDED,
	F_AUTOMATED,
	F_PAYMENT_METHOD,
	F_TOTAL,
	F_AUTHORIZATION,
	F_TRACEPARENT,
	F_FIELDS
};

#define HAS(c, f) (((c)->seen >> (f)) & 1u)

/* What a decision produces: up to DOM_MAX_EVENTS events, none with the
 * goal already reached (unchanged), or a reason and its stable code.  An
 * event goes to the command's aggregate (target -1) or to related
 * aggregate k of the decide_ctx (a shipment's inventories). */
#define DOM_MAX_EVENTS (1 + 2 * DOM_MAX_ORDER_PRODUCTS)
struct decision {
	bool rejected, unchanged;
	char reason[512];
	const char *code;
	int nevents;
	const char *event_type[DOM_MAX_EVENTS];
	int target[DOM_MAX_EVENTS];
	struct cqrs_strbuf data[DOM_MAX_EVENTS];
};

/* What a decision may ask of the world while it runs: the next order number
 * (only taken once the command is known to be valid), and the other
 * aggregates it depends on, loaded by command.c: a reservation's order, a
 * shipment's inventories (one per order line, in the order's order). */
struct decide_ctx {
	int (*order_number)(void *arg, char out[DOM_NUMBER], cqrs_error *err);
	void *arg;
	const struct aggregate *related;
	int nrelated;
};

/* Returns 0 (accepted, or d->rejected with d->reason) or -1 with *err set
 * when the world failed (the store, memory). */
typedef int (*decide_fn)(const struct command *c, const struct aggregate *a,
			 const struct decide_ctx *ctx, struct decision *d, cqrs_error *err);

/* Rejections carry one of the codes of lifecycle.c's table. */
int reject(struct decision *d, const char *code, const char *fmt, ...) CQRS_PRINTF(3, 4);
/* The next event of the decision, with its data buffer emptied; for_agg
 * -1 is the command's aggregate, k the decide_ctx's related[k]. */
struct cqrs_strbuf *decision_emit(struct decision *d, const char *event_type);
struct cqrs_strbuf *decision_emit_to(struct decision *d, int for_agg, const char *event_type);

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
int payment_cancel(const struct command *c, const struct aggregate *a, const struct decide_ctx *ctx,
		   struct decision *d, cqrs_error *err);

/* The checks every decide function starts with: the stream is of this
 * aggregate type, and it exists (or, for a creation, does not).  Return
 * true when the command was rejected. */
bool reject_foreign(struct decision *d, const struct aggregate *a, const struct domain *dom);
bool reject_missing(struct decision *d, const struct aggregate *a, const struct domain *dom,
		    bool exists);
bool reject_existing(struct decision *d, const struct aggregate *a, const struct domain *dom);

/* An amount of the command in the given currency, or a rejection that
 * names what: "amount", "item 2: unit price".  Never negative, never
 * written "-0"; zero only where allow_zero (a free item). */
bool reject_amount(struct decision *d, const char *what, const char *text, size_t len,
		   const char *currency, bool allow_zero, int64_t *minor);
bool reject_quantity(struct decision *d, const char *what, const char *text, size_t len,
		     int64_t *q);

/* --- loading aggregates (aggregate.c) ------------------------------------- */

#define AGG_CACHE_SLOTS 1024

struct agg_loader {
	cqrs_store *st;
	int64_t snapshot_every; /* 0: never */
	bool ignore_snapshots;
	struct aggregate *cache; /* AGG_CACHE_SLOTS, direct-mapped on the id */
	bool cache_owns;	 /* a slot may hold heap memory (holds) */
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
/* Aggregates own heap memory (an inventory's holds): start one empty,
 * copy one into another, free one's memory (then it is empty). */
void agg_init(struct aggregate *a, enum agg_kind kind, const uint8_t id[CQRS_UUID_LEN]);
int agg_copy(struct aggregate *dst, const struct aggregate *src, cqrs_error *err);
void agg_clear(struct aggregate *a);

/* --- inventory holds (domain_inventory.c) -------------------------------- */

/* What order_id holds of the product (0: nothing). */
int64_t inventory_held(const struct inventory_state *s, const uint8_t order_id[CQRS_UUID_LEN]);

/* --- the lifecycle table (lifecycle.c) ------------------------------------ */

/* The state of an aggregate: an order_status, inventory_status or
 * payment_status by its kind. */
int agg_status(const struct aggregate *a);
const char *lc_state_name(enum agg_kind kind, int state);
/* The command's goal already holds for this aggregate (and command). */
bool lc_reached(const struct command *c, const struct aggregate *a);
/* The checks of the table for command c on aggregate a (after it is known
 * to exist and be of the right type): returns true when the decision is
 * made, rejected (the state does not allow it, or the goal holds and the
 * command did not say if_needed) or unchanged.  name names a for people;
 * detail fills a second %s of a message where the table has one. */
bool lc_check(struct decision *d, const struct command *c, const struct aggregate *a,
	      const char *name, const char *detail);
/* For commands that need an open order (a reservation): the same for the
 * order's state. */
bool lc_check_order(struct decision *d, const struct command *c, const struct aggregate *order,
		    const char *name);
/* The lifecycle as cqrs-events(7) text, a Graphviz graph or NDJSON. */
int lc_print(FILE *f, const char *format, cqrs_error *err);

/* The version of event_type the domain writes: the newest its schemas
 * declare (event_schema.c); 1 for a type they do not. */
int64_t dom_event_version(const char *event_type);

#endif
