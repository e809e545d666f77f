/*
 * The questions cqrs-query answers from the order domain's read models,
 * and the ad-hoc SQL it allows.
 *
 * Read-only by construction: the views are opened read-only with
 * query_only set, an authorizer allows nothing but reading, and a
 * statement that SQLite does not call read-only is refused before it runs.
 */
#include "config.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cqrs.h"
#include "common/sqlite_errors.h"
#include "read/views_impl.h"
#include "banned.h"

static const char *const money_columns[] = {
	"total",	   "amount_paid",	  "amount_authorized",
	"amount_captured", "amount_refunded",	  "total_spent",
	"revenue",	   "average_order_value", NULL
};
static const char *const json_columns[] = { "items", "shipping_address", NULL };

/* The order with its payment and its shipment, whichever side caused
 * them (issue 8). */
#define ORDER_COLUMNS                                                                              \
	"order_id, order_number, customer_id, status, currency, total, item_count, items,"         \
	" shipping_address, payment_method, payment_id, amount_paid, authorization,"               \
	" amount_authorized, amount_captured, amount_refunded, payment_status, shipment_id,"       \
	" tracking_number, carrier, shipment_status, cancel_reason, created_at, confirmed_at,"     \
	" paid_at, shipped_at, cancelled_at, updated_at, version"
#define LIST_COLUMNS                                                                               \
	"order_id, order_number, customer_id, status, currency, total, item_count, created_at,"    \
	" updated_at"

/* --- page cursors ----------------------------------------------------------- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

#define CURSOR_BYTES (CQRS_TIMESTAMP_LEN + CQRS_UUID_LEN)

/* page_cursor(created_at, order_id): an opaque token for "after this row"
 * in the newest-first order of (created_at, order_id). */
static void fn_page_cursor(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	(void)argc;
	const char *ts = (const char *)sqlite3_value_text(argv[0]);
	const char *id = (const char *)sqlite3_value_text(argv[1]);
	uint8_t raw[CURSOR_BYTES];
	if (ts == NULL || id == NULL || strlen(ts) != CQRS_TIMESTAMP_LEN ||
	    cqrs_uuid_parse(id, strlen(id), raw + CQRS_TIMESTAMP_LEN) < 0) {
		sqlite3_result_null(ctx);
		return;
	}
	memcpy(raw, ts, CQRS_TIMESTAMP_LEN);
	char out[(CURSOR_BYTES + 2) / 3 * 4 + 1];
	size_t o = 0;
	for (size_t i = 0; i < CURSOR_BYTES; i += 3) {
		uint32_t v = (uint32_t)raw[i] << 16;
		if (i + 1 < CURSOR_BYTES)
			v |= (uint32_t)raw[i + 1] << 8;
		if (i + 2 < CURSOR_BYTES)
			v |= raw[i + 2];
		out[o++] = b64[v >> 18 & 63];
		out[o++] = b64[v >> 12 & 63];
		if (i + 1 < CURSOR_BYTES)
			out[o++] = b64[v >> 6 & 63];
		if (i + 2 < CURSOR_BYTES)
			out[o++] = b64[v & 63];
	}
	out[o] = '\0';
	sqlite3_result_text(ctx, out, (int)o, SQLITE_TRANSIENT);
}

static int cursor_decode(const char *s, char ts[CQRS_TIMESTAMP_LEN + 1], char id[37])
{
	uint8_t raw[CURSOR_BYTES + 2];
	size_t n = strlen(s), o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		const char *p = strchr(b64, s[i]);
		if (p == NULL || s[i] == '\0')
			return -1;
		acc = acc << 6 | (uint32_t)(p - b64);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= sizeof raw)
				return -1;
			raw[o++] = (uint8_t)(acc >> bits);
		}
	}
	if (o != CURSOR_BYTES)
		return -1;
	memcpy(ts, raw, CQRS_TIMESTAMP_LEN);
	ts[CQRS_TIMESTAMP_LEN] = '\0';
	char norm[CQRS_TIMESTAMP_LEN + 1];
	if (cqrs_timestamp_normalize(ts, CQRS_TIMESTAMP_LEN, norm) < 0 || strcmp(norm, ts) != 0)
		return -1;
	cqrs_uuid_format(raw + CQRS_TIMESTAMP_LEN, id);
	return 0;
}

/* --- read-only by construction ---------------------------------------------- */

#define DENIED_LEN 128

static const char *const schema_pragmas[] = {
	"table_info",  "table_xinfo",	   "table_list",     "index_list",    "index_info",
	"index_xinfo", "foreign_key_list", "collation_list", "function_list", "database_list",
};

static int read_only(void *arg, int action, const char *a1, const char *a2, const char *db,
		     const char *trigger)
{
	char *denied = arg; /* why, for the message */
	(void)db;
	(void)trigger;
	switch (action) {
	case SQLITE_SELECT:
	case SQLITE_READ:
	case SQLITE_RECURSIVE: return SQLITE_OK;
	case SQLITE_FUNCTION:
		/* it returns a pointer into this process's memory */
		if (a2 == NULL || sqlite3_stricmp(a2, "fts3_tokenizer") != 0)
			return SQLITE_OK;
		if (denied != NULL && denied[0] == '\0')
			snprintf(denied, DENIED_LEN, "the function %s() is not allowed", a2);
		return SQLITE_DENY;
	case SQLITE_PRAGMA:
		/* what pragma_table_info and its kin run inside; they only
		 * read the schema */
		for (size_t i = 0; a1 != NULL && i < sizeof schema_pragmas / sizeof *schema_pragmas;
		     i++)
			if (sqlite3_stricmp(a1, schema_pragmas[i]) == 0)
				return SQLITE_OK;
		break;
	case SQLITE_UPDATE:
		/* what SQLite reports for a table-valued function such as
		 * json_each or pragma_table_info; a real write is refused by
		 * the read-only connection and sqlite3_stmt_readonly */
		if (a1 != NULL && strcmp(a1, "sqlite_master") == 0)
			return SQLITE_OK;
		break;
	default: break;
	}
	if (denied != NULL && denied[0] == '\0')
		snprintf(denied, DENIED_LEN,
			 "only reading is allowed: cqrs-query never changes the "
			 "views");
	return SQLITE_DENY;
}

/* set when the authorizer refused something, whatever error SQLite
 * reports for it */
static char denied[DENIED_LEN];

/* the time limit of the statement running now */
static struct cqrs_deadline deadline;

static int open_views(const char *path, sqlite3 **db, cqrs_error *err)
{
	if (cqrs_views_db_open(path, VIEWS_OPEN_READ, db, err) < 0)
		return -1;
	sqlite3_limit(*db, SQLITE_LIMIT_LENGTH, CQRS_QUERY_MAX_LENGTH);
	cqrs_deadline_attach(*db, &deadline);
	if (sqlite3_create_function(*db, "page_cursor", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
				    fn_page_cursor, NULL, NULL) != SQLITE_OK) {
		sqlite3_close(*db);
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	}
	sqlite3_set_authorizer(*db, read_only, denied);
	return 0;
}

static int prepare(sqlite3 *db, const char *views_path, const char *sql, sqlite3_stmt **st,
		   cqrs_error *err)
{
	int rc = sqlite3_prepare_v2(db, sql, -1, st, NULL);
	if (rc == SQLITE_OK)
		return 0;
	const char *msg = sqlite3_errmsg(db);
	if (strncmp(msg, "no such table: ", 15) == 0)
		return cqrs_fail(err, CQRS_EXIT_NOINPUT,
				 "%s: the views have no table '%s' (is its projection loaded by "
				 "cqrs-project?)",
				 views_path, msg + 15);
	return cqrs_views_db_error(db, views_path, rc, "query failed", err);
}

/* --- the queries ---------------------------------------------------------------- */

struct sql {
	char text[2048];
	size_t n;
	const char *bind[8];
	int nbind;
	int64_t ints[2]; /* limit, offset */
	int nints;
};

static void add(struct sql *q, const char *s)
{
	q->n += (size_t)snprintf(q->text + q->n, sizeof q->text - q->n, "%s", s);
}

/* Appends a condition on the next parameter, written "?#" in text, when
 * value is set. */
static void cond(struct sql *q, bool *where, const char *text, const char *value)
{
	if (value == NULL)
		return;
	add(q, *where ? " AND " : " WHERE ");
	*where = true;
	q->bind[q->nbind++] = value;
	for (const char *p = text; *p != '\0'; p++) {
		if (p[0] == '?' && p[1] == '#') {
			char num[16];
			snprintf(num, sizeof num, "?%d", q->nbind);
			add(q, num);
			p++;
		} else {
			char one[2] = { *p, '\0' };
			add(q, one);
		}
	}
}

static void limit(struct sql *q, int64_t lim, int64_t off)
{
	char c[64];
	snprintf(c, sizeof c, " LIMIT ?%d OFFSET ?%d", q->nbind + 1, q->nbind + 2);
	add(q, c);
	q->ints[0] = lim > 0 ? lim : -1;
	q->ints[1] = off;
	q->nints = 2;
}

static int64_t run(sqlite3 *db, const char *views_path, struct sql *q, enum cqrs_format fmt,
		   FILE *out, const char *what, cqrs_error *err)
{
	sqlite3_stmt *st;
	if (prepare(db, views_path, q->text, &st, err) < 0)
		return -1;
	for (int i = 0; i < q->nbind; i++)
		sqlite3_bind_text(st, i + 1, q->bind[i], -1, SQLITE_STATIC);
	for (int i = 0; i < q->nints; i++)
		sqlite3_bind_int64(st, q->nbind + 1 + i, q->ints[i]);
	int64_t n = cqrs_rows_print(st, money_columns, json_columns, fmt, out, what, err);
	sqlite3_finalize(st);
	return n;
}

/* An order id (any case) in its stored form, or the text as given (an
 * order number). */
static const char *order_key(const char *id, char buf[37])
{
	uint8_t u[CQRS_UUID_LEN];
	if (cqrs_uuid_parse(id, strlen(id), u) == 0) {
		cqrs_uuid_format(u, buf);
		return buf;
	}
	return id;
}

static int64_t sql_query(sqlite3 *db, const char *views_path, const cqrs_query *q,
			 enum cqrs_format fmt, FILE *out, cqrs_error *err)
{
	sqlite3_stmt *st;
	const char *tail;
	denied[0] = '\0';
	int rc = sqlite3_prepare_v2(db, q->id, -1, &st, &tail);
	if (rc != SQLITE_OK) {
		if ((rc & 0xff) == SQLITE_AUTH || denied[0] != '\0')
			return cqrs_fail(err, CQRS_EXIT_NOPERM, "sql: %s",
					 denied[0] != '\0' ? denied
							   : "only reading is allowed: cqrs-query "
							     "never changes the views");
		/* not the statement's fault: the memory, the disk or a lock */
		return cqrs_fail(err, cqrs_sqlite_db_statement_code(db, rc, CQRS_EXIT_DATAERR),
				 "sql: %s", cqrs_sqlite_errmsg(db, rc));
	}
	if (st == NULL)
		return cqrs_fail(err, CQRS_EXIT_DATAERR, "sql: no statement");
	while (tail != NULL && (*tail == ' ' || *tail == '\t' || *tail == '\n' || *tail == ';'))
		tail++;
	if (tail != NULL && *tail != '\0') {
		sqlite3_finalize(st);
		return cqrs_fail(err, CQRS_EXIT_DATAERR, "sql: one statement at a time");
	}
	if (!sqlite3_stmt_readonly(st)) {
		sqlite3_finalize(st);
		return cqrs_fail(
			err, CQRS_EXIT_NOPERM,
			"sql: only reading is allowed: cqrs-query never changes the views");
	}
	int nparams = sqlite3_bind_parameter_count(st);
	if (q->nargs > nparams) {
		sqlite3_finalize(st);
		return cqrs_fail(err, CQRS_EXIT_USAGE,
				 "sql: %d parameters given, the statement has %d", q->nargs,
				 nparams);
	}
	for (int i = 0; i < q->nargs; i++)
		sqlite3_bind_text(st, i + 1, q->args[i], -1, SQLITE_STATIC);
	(void)views_path;
	int64_t n = cqrs_rows_print(st, NULL, NULL, fmt, out, "sql", err);
	sqlite3_finalize(st);
	return n;
}

static int not_found(cqrs_error *err, const char *what, const char *id)
{
	return cqrs_fail(err, CQRS_EXIT_NOT_FOUND, "%s '%s' not found", what, id);
}

int64_t cqrs_query_run(const char *views_path, const cqrs_query *q, enum cqrs_format fmt, FILE *out,
		       cqrs_error *err)
{
	sqlite3 *db;
	if (open_views(views_path, &db, err) < 0)
		return -1;
	deadline.timeout_ms = q->timeout_ms;
	cqrs_deadline_start(&deadline);
	struct sql s = { .n = 0 };
	bool where = false;
	int64_t n = -1;
	char key[37];
	switch (q->kind) {
	case CQRS_QUERY_ORDER:
		add(&s, "SELECT " ORDER_COLUMNS " FROM order_views");
		cond(&s, &where, "(order_id = ?# OR order_number = ?#)", order_key(q->id, key));
		n = run(db, views_path, &s, fmt, out, "order", err);
		if (n == 0)
			n = not_found(err, "order", q->id);
		break;
	case CQRS_QUERY_ORDERS:
		add(&s, "SELECT " LIST_COLUMNS " FROM order_views");
		cond(&s, &where, "status = ?#", q->status);
		cond(&s, &where, "created_at >= ?#", q->from);
		cond(&s, &where, "created_at <= ?#", q->to);
		add(&s, " ORDER BY created_at, order_id");
		limit(&s, q->limit, q->offset);
		n = run(db, views_path, &s, fmt, out, "orders", err);
		break;
	case CQRS_QUERY_CUSTOMER: {
		char ts[CQRS_TIMESTAMP_LEN + 1], id[37];
		if (q->after != NULL && cursor_decode(q->after, ts, id) < 0) {
			n = cqrs_fail(err, CQRS_EXIT_USAGE,
				      "--after: not a cursor of cqrs-query customer: '%s'",
				      q->after);
			break;
		}
		add(&s, "SELECT order_id, order_number, status, currency, total, item_count,"
			" created_at, updated_at, page_cursor(created_at, order_id) AS cursor"
			" FROM order_views");
		cond(&s, &where, "customer_id = ?#", q->id);
		if (q->after != NULL) {
			s.bind[s.nbind++] = ts;
			s.bind[s.nbind++] = id;
			char c[96];
			snprintf(c, sizeof c, " AND (created_at, order_id) < (?%d, ?%d)",
				 s.nbind - 1, s.nbind);
			add(&s, c);
		}
		add(&s, " ORDER BY created_at DESC, order_id DESC");
		limit(&s, q->limit, q->offset);
		n = run(db, views_path, &s, fmt, out, "customer", err);
		break;
	}
	case CQRS_QUERY_SUMMARY:
		add(&s, "SELECT customer_id, currency, orders, cancelled, total_spent,"
			" first_order_at, last_order_at FROM customer_order_summary");
		cond(&s, &where, "customer_id = ?#", q->id);
		add(&s, " ORDER BY currency");
		n = run(db, views_path, &s, fmt, out, "summary", err);
		if (n == 0)
			n = not_found(err, "customer", q->id);
		break;
	case CQRS_QUERY_INVENTORY:
		add(&s, "SELECT product_id, sku, name, on_hand, reserved, available, shipped,"
			" received,"
			" updated_at FROM inventory_views");
		cond(&s, &where, "(product_id = ?# OR sku = ?#)",
		     q->id != NULL ? order_key(q->id, key) : NULL);
		add(&s, " ORDER BY sku, product_id");
		n = run(db, views_path, &s, fmt, out, "inventory", err);
		if (n == 0 && q->id != NULL)
			n = not_found(err, "product", q->id);
		break;
	case CQRS_QUERY_SALES:
		if (q->total) {
			add(&s,
			    "SELECT coalesce(?1, min(day)) AS \"from\","
			    " coalesce(?2, max(day)) AS \"to\", currency, sum(orders) AS orders,"
			    " money(sum(revenue_minor), currency) AS revenue,"
			    " money(mean_minor(sum(revenue_minor), sum(orders)), currency)"
			    " AS average_order_value, sum(cancelled) AS cancelled"
			    " FROM sales_daily WHERE (?1 IS NULL OR day >= ?1)"
			    " AND (?2 IS NULL OR day <= ?2) AND (?3 IS NULL OR currency = ?3)"
			    " GROUP BY currency ORDER BY currency");
			s.bind[0] = q->from;
			s.bind[1] = q->to;
			s.bind[2] = q->currency;
			s.nbind = 3;
		} else {
			add(&s, "SELECT day, currency, orders, revenue, average_order_value,"
				" cancelled FROM sales_daily");
			cond(&s, &where, "day >= ?#", q->from);
			cond(&s, &where, "day <= ?#", q->to);
			cond(&s, &where, "currency = ?#", q->currency);
			add(&s, " ORDER BY day, currency");
		}
		n = run(db, views_path, &s, fmt, out, "sales", err);
		break;
	case CQRS_QUERY_PRODUCTS:
		add(&s, "SELECT currency, rank, product_id, sku, quantity, revenue FROM"
			" (SELECT currency, product_id, max(sku) AS sku, sum(quantity) AS quantity,"
			" money(sum(revenue_minor), currency) AS revenue, row_number() OVER"
			" (PARTITION BY currency ORDER BY sum(revenue_minor) DESC,"
			" sum(quantity) DESC, product_id) AS rank FROM sales_products");
		cond(&s, &where, "day >= ?#", q->from);
		cond(&s, &where, "day <= ?#", q->to);
		cond(&s, &where, "currency = ?#", q->currency);
		add(&s, " GROUP BY currency, product_id HAVING sum(quantity) > 0)");
		{
			char c[64];
			snprintf(c, sizeof c, " WHERE rank <= ?%d ORDER BY currency, rank",
				 s.nbind + 1);
			add(&s, c);
			s.ints[0] = q->limit > 0 ? q->limit : 10;
			s.nints = 1;
		}
		n = run(db, views_path, &s, fmt, out, "products", err);
		break;
	case CQRS_QUERY_SQL: n = sql_query(db, views_path, q, fmt, out, err); break;
	}
	sqlite3_close(db);
	return n;
}

/* --- an order as of a past moment -------------------------------------------- */

/* The order's aggregate id: the id itself, or the order number looked up
 * in the views, else in the store's OrderCreated events. */
static int resolve_order(const char *views_path, cqrs_store *st, const char *id,
			 uint8_t out[CQRS_UUID_LEN], cqrs_error *err)
{
	if (cqrs_uuid_parse(id, strlen(id), out) == 0)
		return 1;
	sqlite3 *db;
	cqrs_error ignored;
	if (open_views(views_path, &db, &ignored) == 0) {
		sqlite3_stmt *q;
		int found = 0;
		if (sqlite3_prepare_v2(db,
				       "SELECT order_id FROM order_views WHERE order_number = ?1",
				       -1, &q, NULL) == SQLITE_OK) {
			sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
			if (sqlite3_step(q) == SQLITE_ROW) {
				const char *t = (const char *)sqlite3_column_text(q, 0);
				found = t != NULL && cqrs_uuid_parse(t, strlen(t), out) == 0;
			}
			sqlite3_finalize(q);
		}
		sqlite3_close(db);
		if (found)
			return 1;
	}
	cqrs_filter f = { .event_type = "OrderCreated" };
	cqrs_cursor *c = cqrs_store_read(st, &f, err);
	if (c == NULL)
		return -1;
	cqrs_event ev;
	int r, found = 0;
	while (!found && (r = cqrs_cursor_next(c, &ev, err)) == 1) {
		const char *v;
		size_t n;
		char num[256];
		if (cqrs_json_get(ev.data, ev.data_len, "order_number", &v, &n) &&
		    cqrs_json_string(v, n, num, sizeof num) >= 0 && strcmp(num, id) == 0) {
			memcpy(out, ev.aggregate_id, CQRS_UUID_LEN);
			found = 1;
		}
	}
	cqrs_cursor_close(c);
	return found ? 1 : r < 0 ? -1 : 0;
}

/* The events of the order, and those of its payments and shipments (which
 * name it in data.order_id), in store order, from its first event on. */
static int fold_order(cqrs_projector *p, cqrs_store *st, const uint8_t id[CQRS_UUID_LEN],
		      const cqrs_query *q, cqrs_error *err)
{
	cqrs_filter first = { .aggregate_id = id, .limit = 1 };
	cqrs_cursor *c = cqrs_store_read(st, &first, err);
	cqrs_event ev;
	int r = c == NULL ? -1 : cqrs_cursor_next(c, &ev, err);
	int64_t from = r == 1 ? ev.sequence : 0;
	cqrs_cursor_close(c);
	if (r <= 0)
		return r;
	char key[37];
	cqrs_uuid_format(id, key);
	cqrs_filter f = { .after = from - 1, .until = q->as_of, .to = q->as_of_seq };
	if ((c = cqrs_store_read(st, &f, err)) == NULL)
		return -1;
	while ((r = cqrs_cursor_next(c, &ev, err)) == 1) {
		const char *v;
		size_t vn;
		char other[40];
		bool mine = memcmp(ev.aggregate_id, id, CQRS_UUID_LEN) == 0;
		if (!mine && (strcmp(ev.aggregate_type, "Payment") == 0 ||
			      strcmp(ev.aggregate_type, "Shipment") == 0))
			mine = cqrs_json_get(ev.data, ev.data_len, "order_id", &v, &vn) &&
			       cqrs_json_string(v, vn, other, sizeof other) == 36 &&
			       strcasecmp(other, key) == 0;
		if (mine && cqrs_projector_apply(p, &ev, err) < 0) {
			r = -1;
			break;
		}
	}
	cqrs_cursor_close(c);
	return r;
}

int64_t cqrs_query_order_as_of(const char *views_path, cqrs_store *st, cqrs_projections *ps,
			       const cqrs_query *q, enum cqrs_format fmt, FILE *out,
			       cqrs_error *err)
{
	uint8_t id[CQRS_UUID_LEN];
	int r = resolve_order(views_path, st, q->id, id, err);
	if (r <= 0)
		return r < 0 ? -1 : not_found(err, "order", q->id);
	cqrs_projector *p = cqrs_projector_open_memory(ps, "order_views", err);
	if (p == NULL)
		return -1;
	int64_t n = -1;
	if (fold_order(p, st, id, q, err) < 0 || cqrs_projector_commit(p, err) < 0)
		goto out;
	sqlite3 *db = cqrs_projector_db(p);
	sqlite3_set_authorizer(db, read_only, denied);
	struct sql s = { .n = 0 };
	bool where = false;
	char key[37];
	cqrs_uuid_format(id, key);
	add(&s, "SELECT " ORDER_COLUMNS " FROM order_views");
	cond(&s, &where, "order_id = ?#", key);
	n = run(db, ":memory:", &s, fmt, out, "order", err);
	if (n == 0)
		n = cqrs_fail(err, CQRS_EXIT_NOT_FOUND, "order '%s' did not exist then", q->id);
out:
	cqrs_projector_close(p);
	return n;
}
