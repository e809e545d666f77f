/*
 * The command side: one command (a JSON object) in, events or a rejection
 * out.  For each command: parse it strictly (bad input changes nothing),
 * return the recorded result if its command_id was handled before, load
 * the aggregate, let the domain decide, append the events with the
 * version the decision was made against, and record the result under the
 * command_id in the same transaction.
 *
 * A version conflict means the state moved between load and append: the
 * command is loaded and decided again, a bounded number of times.  SQLite
 * serialises writers (BEGIN IMMEDIATE), so there it cannot happen; the
 * loop is for backends whose transactions are optimistic.
 */
#include "config.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "domain/domain.h"
#include "banned.h"

#define DEFAULT_ATTEMPTS 5
#define HANDLER		 "cqrs-command"

struct cmd_spec {
	const char *type;
	enum agg_kind kind;
	enum cmd_field target;
	bool creates; /* the target id may be left out: a new one is made */
	uint32_t required, allowed;
	decide_fn decide;
};

#define B(f) (1u << (f))
#define COMMON                                                                                     \
	(B(F_COMMAND_ID) | B(F_TYPE) | B(F_CORRELATION_ID) | B(F_USER_ID) | B(F_IF_NEEDED) |       \
	 B(F_AUTOMATED) | B(F_TRACEPARENT))

/* clang-format off */
static const struct cmd_spec specs[CMD_COUNT] = {
	[CMD_CREATE_ORDER] = { "CreateOrder", AGG_ORDER, F_ORDER_ID, true,
		B(F_CUSTOMER_ID) | B(F_ITEMS) | B(F_CURRENCY) | B(F_SHIPPING_ADDRESS),
		B(F_ORDER_ID) | B(F_PAYMENT_METHOD) | B(F_TOTAL), order_create },
	[CMD_CONFIRM_ORDER] = { "ConfirmOrder", AGG_ORDER, F_ORDER_ID, false,
		B(F_ORDER_ID), B(F_NOTE), order_confirm },
	[CMD_CONFIRM_PAYMENT] = { "ConfirmPayment", AGG_ORDER, F_ORDER_ID, false,
		B(F_ORDER_ID) | B(F_PAYMENT_ID) | B(F_AMOUNT), B(F_CURRENCY) | B(F_PAYMENT_METHOD),
		order_pay },
	[CMD_SHIP_ORDER] = { "ShipOrder", AGG_ORDER, F_ORDER_ID, false,
		B(F_ORDER_ID) | B(F_CARRIER) | B(F_TRACKING_NUMBER), B(F_SHIPPED_AT), order_ship },
	[CMD_CANCEL_ORDER] = { "CancelOrder", AGG_ORDER, F_ORDER_ID, false,
		B(F_ORDER_ID) | B(F_REASON), 0, order_cancel },
	[CMD_REGISTER_PRODUCT] = { "RegisterProduct", AGG_INVENTORY, F_PRODUCT_ID, true,
		B(F_SKU) | B(F_NAME), B(F_PRODUCT_ID) | B(F_QUANTITY), inventory_register },
	[CMD_REPLENISH_STOCK] = { "ReplenishStock", AGG_INVENTORY, F_PRODUCT_ID, false,
		B(F_PRODUCT_ID) | B(F_QUANTITY), 0, inventory_replenish },
	[CMD_RESERVE_INVENTORY] = { "ReserveInventory", AGG_INVENTORY, F_PRODUCT_ID, false,
		B(F_PRODUCT_ID) | B(F_ORDER_ID) | B(F_QUANTITY), 0, inventory_reserve },
	[CMD_RELEASE_INVENTORY] = { "ReleaseInventory", AGG_INVENTORY, F_PRODUCT_ID, false,
		B(F_PRODUCT_ID) | B(F_ORDER_ID), B(F_QUANTITY), inventory_release },
	[CMD_AUTHORIZE_PAYMENT] = { "AuthorizePayment", AGG_PAYMENT, F_PAYMENT_ID, true,
		B(F_ORDER_ID) | B(F_AMOUNT) | B(F_CURRENCY),
		B(F_PAYMENT_ID) | B(F_PAYMENT_METHOD) | B(F_AUTHORIZATION), payment_authorize },
	[CMD_CAPTURE_PAYMENT] = { "CapturePayment", AGG_PAYMENT, F_PAYMENT_ID, false,
		B(F_PAYMENT_ID), B(F_AMOUNT), payment_capture },
	[CMD_REFUND_PAYMENT] = { "RefundPayment", AGG_PAYMENT, F_PAYMENT_ID, false,
		B(F_PAYMENT_ID) | B(F_AMOUNT), 0, payment_refund },
	[CMD_VOID_AUTHORIZATION] = { "VoidAuthorization", AGG_PAYMENT, F_PAYMENT_ID, false,
		B(F_PAYMENT_ID), 0, payment_void },
	[CMD_CANCEL_PAYMENT] = { "CancelPayment", AGG_PAYMENT, F_PAYMENT_ID, false,
		B(F_PAYMENT_ID), B(F_REASON), payment_cancel },
};
/* clang-format on */

static const char *const field_names[F_FIELDS] = {
	[F_COMMAND_ID] = "command_id",
	[F_TYPE] = "type",
	[F_CORRELATION_ID] = "correlation_id",
	[F_USER_ID] = "user_id",
	[F_ORDER_ID] = "order_id",
	[F_PRODUCT_ID] = "product_id",
	[F_PAYMENT_ID] = "payment_id",
	[F_CUSTOMER_ID] = "customer_id",
	[F_ITEMS] = "items",
	[F_CURRENCY] = "currency",
	[F_SHIPPING_ADDRESS] = "shipping_address",
	[F_NOTE] = "note",
	[F_AMOUNT] = "amount",
	[F_CARRIER] = "carrier",
	[F_TRACKING_NUMBER] = "tracking_number",
	[F_SHIPPED_AT] = "shipped_at",
	[F_REASON] = "reason",
	[F_SKU] = "sku",
	[F_NAME] = "name",
	[F_QUANTITY] = "quantity",
	[F_IF_NEEDED] = "if_needed",
	[F_AUTOMATED] = "automated",
	[F_PAYMENT_METHOD] = "payment_method",
	[F_TOTAL] = "total",
	[F_AUTHORIZATION] = "authorization",
	[F_TRACEPARENT] = "traceparent",
};

/* The design's names, accepted on input for the stored ones
 * (cqrs-events(7)). */
static const struct {
	const char *alias;
	enum cmd_field field;
} field_aliases[] = { { "total_amount", F_TOTAL } };

struct cqrs_commander {
	cqrs_store *st;
	struct cqrs_command_options opt;
	char *user_id, *correlation_id;
	char traceparent[CQRS_TRACEPARENT_LEN + 1]; /* of commands that carry none; "" */
	bool in_batch;
	int inject_conflicts; /* CQRS_TEST_CONFLICTS: see cqrs-command(1) */
	struct agg_loader loader;
	struct command cmd;
	size_t items_cap;
	const struct cmd_spec *spec;
	uint8_t target[CQRS_UUID_LEN];
	bool generated; /* target made here: it cannot exist yet */
	bool appended;	/* this command's events went in: an error now spoils the batch */
	struct aggregate agg, aux;
	/* what the decision reads or also writes: a reservation's order, a
	 * shipment's inventories (DOM_MAX_ORDER_PRODUCTS) */
	struct aggregate *related;
	int nrelated;
	struct decision dec;
	struct cqrs_strbuf meta, stored;
	/* The order counter inside the write transaction: taken once from
	 * the store (counter_next: its row, or SQLite's write lock, is ours
	 * from then to the commit, so nobody else can move it meanwhile),
	 * counted here, written back before commit.  value is the last number
	 * handed out, stored what the store holds now: they differ when this
	 * process counted on, or when a decision that took a number lost a
	 * version conflict and gave it back. */
	struct {
		char name[16];
		int64_t value, stored;
		bool valid;
	} counter;
	FILE *out; /* the result line is built here */
	char *outbuf;
	size_t outsize;
	/* cqrs_command_duration_seconds: the commands of the open batch wait
	 * here for the commit that makes their results durable */
	struct timed_command {
		const char *type, *result;
		double received;
	} * timed;
	size_t ntimed, timed_cap;
	bool metrics;
};

/* --- parsing ----------------------------------------------------------------- */

/* A command line that cannot be parsed is a data error (65) */
#define bad(err, ...) cqrs_fail(err, CQRS_EXIT_DATAERR, __VA_ARGS__)

/* A non-empty JSON string without control characters, decoded into buf. */
static int get_text(const char *where, const char *name, const char *v, size_t n, char *buf,
		    size_t cap, cqrs_error *err)
{
	if (n < 2 || v[0] != '"')
		return bad(err, "%sfield '%s' must be a string", where, name);
	long r = cqrs_json_string(v, n, buf, cap);
	if (r < 0)
		return bad(err, "%sfield '%s' is longer than %zu bytes", where, name, cap - 1);
	if (r == 0)
		return bad(err, "%sfield '%s' must not be empty", where, name);
	for (long i = 0; i < r; i++)
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
			return bad(err, "%sfield '%s' contains a control character", where, name);
	return 0;
}

static int get_uuid(const char *where, const char *name, const char *v, size_t n,
		    uint8_t out[CQRS_UUID_LEN], cqrs_error *err)
{
	if (n < 2 || v[0] != '"')
		return bad(err, "%sfield '%s' must be a string", where, name);
	if (cqrs_uuid_parse(v + 1, n - 2, out) < 0)
		return bad(err, "%sfield '%s' is not a UUID: %.*s", where, name,
			   (int)(n > 64 ? 64 : n), v);
	return 0;
}

static int get_number(const char *where, const char *name, const char *v, size_t n,
		      const char **out, size_t *out_len, cqrs_error *err)
{
	if (n == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')))
		return bad(err, "%sfield '%s' must be a number", where, name);
	*out = v;
	*out_len = n;
	return 0;
}

static int parse_item(struct cmd_item *it, size_t index, const char *v, size_t n, cqrs_error *err)
{
	char where[48];
	snprintf(where, sizeof where, "items[%zu]: ", index);
	if (v[0] != '{')
		return bad(err, "items[%zu] must be an object", index);
	memset(it, 0, sizeof *it);
	unsigned seen = 0;
	size_t pos = 0;
	cqrs_json_member m;
	while (cqrs_json_next_member(v, n, &pos, &m) == 1) {
		int r;
		if (m.key_len == 10 && memcmp(m.key, "product_id", 10) == 0) {
			r = get_uuid(where, "product_id", m.value, m.value_len, it->product_id,
				     err);
			seen |= 1;
		} else if (m.key_len == 3 && memcmp(m.key, "sku", 3) == 0) {
			r = get_text(where, "sku", m.value, m.value_len, it->sku, sizeof it->sku,
				     err);
		} else if (m.key_len == 8 && memcmp(m.key, "quantity", 8) == 0) {
			r = get_number(where, "quantity", m.value, m.value_len, &it->quantity,
				       &it->quantity_len, err);
			seen |= 2;
		} else if ((m.key_len == 10 && memcmp(m.key, "unit_price", 10) == 0) ||
			   (m.key_len == 5 && memcmp(m.key, "price", 5) == 0)) {
			/* price: the design's name for unit_price */
			if (seen & 4)
				return bad(err, "%sunit_price given twice (price is its alias)",
					   where);
			r = get_number(where, "unit_price", m.value, m.value_len, &it->unit_price,
				       &it->unit_price_len, err);
			seen |= 4;
		} else {
			return bad(err, "%sunknown field '%.*s'", where,
				   (int)(m.key_len > 64 ? 64 : m.key_len), m.key);
		}
		if (r < 0)
			return -1;
	}
	static const char *const need[] = { "product_id", "quantity", "unit_price" };
	for (int i = 0; i < 3; i++)
		if (!(seen & (1u << i)))
			return bad(err, "%smissing field '%s'", where, need[i]);
	return 0;
}

static int parse_items(struct cqrs_commander *c, const char *v, size_t n, cqrs_error *err)
{
	if (v[0] != '[')
		return bad(err, "field 'items' must be an array");
	struct command *cmd = &c->cmd;
	size_t pos = 0;
	const char *e;
	size_t en;
	cmd->nitems = 0;
	while (cqrs_json_next_element(v, n, &pos, &e, &en) == 1) {
		if (cmd->nitems == DOM_MAX_ITEMS)
			return bad(err, "field 'items' has more than %d items", DOM_MAX_ITEMS);
		if (cmd->nitems == c->items_cap) {
			size_t cap = c->items_cap ? c->items_cap * 2 : 16;
			struct cmd_item *p = realloc(cmd->items, cap * sizeof *p);
			if (p == NULL)
				return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
			cmd->items = p;
			c->items_cap = cap;
		}
		if (parse_item(&cmd->items[cmd->nitems], cmd->nitems + 1, e, en, err) < 0)
			return -1;
		cmd->nitems++;
	}
	return 0;
}

/* The design's address: {name?, street, city, state?, zip|postal_code,
 * country}; zip is stored as postal_code. */
static int parse_address(struct command *cmd, const char *v, size_t n, cqrs_error *err)
{
	static const char *const parts[ADDR_PARTS + 1] = { "name",  "street",	   "city",
							   "state", "postal_code", "country",
							   "zip" };
	static const bool needed[ADDR_PARTS] = { false, true, true, false, true, true };
	if (v[0] != '{')
		return bad(err, "field 'shipping_address' must be an object");
	unsigned seen = 0;
	size_t pos = 0;
	cqrs_json_member m;
	while (cqrs_json_next_member(v, n, &pos, &m) == 1) {
		int i;
		for (i = 0; i <= ADDR_PARTS; i++)
			if (strlen(parts[i]) == m.key_len &&
			    memcmp(parts[i], m.key, m.key_len) == 0)
				break;
		if (i > ADDR_PARTS)
			return bad(err, "shipping_address: unknown field '%.*s'",
				   (int)(m.key_len > 64 ? 64 : m.key_len), m.key);
		int to = i == ADDR_PARTS ? ADDR_POSTAL_CODE : i;
		if (seen & (1u << to))
			return bad(err, "shipping_address: postal_code given twice (zip is its "
					"alias)");
		if (get_text("shipping_address: ", parts[i], m.value, m.value_len, cmd->address[to],
			     DOM_TEXT, err) < 0)
			return -1;
		seen |= 1u << to;
	}
	for (int i = 0; i < ADDR_PARTS; i++)
		if (needed[i] && !(seen & (1u << i)))
			return bad(err, "shipping_address: missing field '%s'", parts[i]);
	return 0;
}

static int get_bool(const char *name, const char *v, size_t n, bool *out, cqrs_error *err)
{
	if (n == 4 && memcmp(v, "true", 4) == 0)
		*out = true;
	else if (n == 5 && memcmp(v, "false", 5) == 0)
		*out = false;
	else
		return bad(err, "field '%s' must be true or false", name);
	return 0;
}

/* W3C trace context: a malformed one is bad data here (65), as any field */
static int get_traceparent(const char *v, size_t n, char out[CQRS_TRACEPARENT_LEN + 1],
			   cqrs_error *err)
{
	char text[128];
	struct cqrs_traceparent tp;
	cqrs_error why = { 0 };
	if (get_text("", "traceparent", v, n, text, sizeof text, err) < 0)
		return -1;
	if (cqrs_traceparent_parse(text, strlen(text), &tp, &why) < 0)
		return bad(err, "field %s", why.msg);
	memcpy(out, tp.text, sizeof tp.text);
	return 0;
}

static int parse_field(struct cqrs_commander *c, enum cmd_field f, const char *v, size_t n,
		       cqrs_error *err)
{
	struct command *cmd = &c->cmd;
	const char *name = field_names[f];
	switch (f) {
	case F_TYPE: return 0; /* read first */
	case F_COMMAND_ID:
		return get_text("", name, v, n, cmd->command_id, sizeof cmd->command_id, err);
	case F_CORRELATION_ID:
		return get_text("", name, v, n, cmd->correlation_id, sizeof cmd->correlation_id,
				err);
	case F_USER_ID: return get_text("", name, v, n, cmd->user_id, sizeof cmd->user_id, err);
	case F_ORDER_ID: return get_uuid("", name, v, n, cmd->order_id, err);
	case F_PRODUCT_ID: return get_uuid("", name, v, n, cmd->product_id, err);
	case F_PAYMENT_ID: return get_uuid("", name, v, n, cmd->payment_id, err);
	case F_CUSTOMER_ID:
		return get_text("", name, v, n, cmd->customer_id, sizeof cmd->customer_id, err);
	case F_ITEMS: return parse_items(c, v, n, err);
	case F_CURRENCY: return get_text("", name, v, n, cmd->currency, sizeof cmd->currency, err);
	case F_SHIPPING_ADDRESS: return parse_address(cmd, v, n, err);
	case F_NOTE: return get_text("", name, v, n, cmd->note, sizeof cmd->note, err);
	case F_AMOUNT: return get_number("", name, v, n, &cmd->amount, &cmd->amount_len, err);
	case F_CARRIER: return get_text("", name, v, n, cmd->carrier, sizeof cmd->carrier, err);
	case F_TRACKING_NUMBER:
		return get_text("", name, v, n, cmd->tracking_number, sizeof cmd->tracking_number,
				err);
	case F_SHIPPED_AT:
		if (n < 2 || v[0] != '"' ||
		    cqrs_timestamp_normalize(v + 1, n - 2, cmd->shipped_at) < 0)
			return bad(err, "field 'shipped_at' must be an RFC 3339 time such as "
					"\"2026-01-16T14:00:00Z\"");
		return 0;
	case F_REASON: return get_text("", name, v, n, cmd->reason, sizeof cmd->reason, err);
	case F_SKU: return get_text("", name, v, n, cmd->sku, sizeof cmd->sku, err);
	case F_NAME: return get_text("", name, v, n, cmd->name, sizeof cmd->name, err);
	case F_QUANTITY: return get_number("", name, v, n, &cmd->quantity, &cmd->quantity_len, err);
	case F_IF_NEEDED: return get_bool(name, v, n, &cmd->if_needed, err);
	case F_AUTOMATED: return get_bool(name, v, n, &cmd->automated, err);
	case F_PAYMENT_METHOD:
		return get_text("", name, v, n, cmd->payment_method, sizeof cmd->payment_method,
				err);
	case F_TOTAL: return get_number("", name, v, n, &cmd->total, &cmd->total_len, err);
	case F_AUTHORIZATION:
		return get_text("", name, v, n, cmd->authorization, sizeof cmd->authorization, err);
	case F_TRACEPARENT: return get_traceparent(v, n, cmd->traceparent, err);
	case F_FIELDS: break;
	}
	return 0;
}

static int parse_command(struct cqrs_commander *c, char *line, size_t len, cqrs_error *err)
{
	struct command *cmd = &c->cmd;
	struct cmd_item *items = cmd->items;
	memset(cmd, 0, sizeof *cmd);
	cmd->items = items;
	if (cqrs_json_compact(line, &len, err) < 0)
		return -1;
	if (line[0] != '{')
		return bad(err, "a command must be a JSON object");
	const char *v;
	size_t n;
	if (!cqrs_json_get(line, len, "type", &v, &n))
		return bad(err, "missing field 'type'");
	char type[64];
	if (n < 2 || v[0] != '"' || cqrs_json_string(v, n, type, sizeof type) < 0)
		return bad(err, "field 'type' must be the name of a command, such as "
				"\"CreateOrder\"");
	c->spec = NULL;
	for (int i = 0; i < CMD_COUNT; i++) {
		if (strcmp(specs[i].type, type) == 0) {
			c->spec = &specs[i];
			cmd->type = (enum cmd_type)i;
		}
	}
	if (c->spec == NULL)
		return bad(err, "unknown command type '%s'", type);
	uint32_t allowed = COMMON | c->spec->required | c->spec->allowed;
	size_t pos = 0;
	cqrs_json_member m;
	while (cqrs_json_next_member(line, len, &pos, &m) == 1) {
		int f;
		for (f = 0; f < F_FIELDS; f++)
			if (strlen(field_names[f]) == m.key_len &&
			    memcmp(field_names[f], m.key, m.key_len) == 0)
				break;
		for (size_t k = 0;
		     f == F_FIELDS && k < sizeof field_aliases / sizeof *field_aliases; k++)
			if (strlen(field_aliases[k].alias) == m.key_len &&
			    memcmp(field_aliases[k].alias, m.key, m.key_len) == 0)
				f = (int)field_aliases[k].field;
		if (f == F_FIELDS)
			return bad(err, "unknown field '%.*s'",
				   (int)(m.key_len > 64 ? 64 : m.key_len), m.key);
		if (HAS(cmd, f))
			return bad(err, "field '%s' given twice", field_names[f]);
		if (!(allowed & B(f)))
			return bad(err, "field '%s' does not belong in a %s command",
				   field_names[f], c->spec->type);
		if (parse_field(c, (enum cmd_field)f, m.value, m.value_len, err) < 0)
			return -1;
		cmd->seen |= B(f);
	}
	uint32_t need = B(F_COMMAND_ID) | c->spec->required;
	for (int f = 0; f < F_FIELDS; f++)
		if ((need & B(f)) && !HAS(cmd, f))
			return bad(err, "missing field '%s'", field_names[f]);
	return 0;
}

/* --- results ------------------------------------------------------------------ */

void cqrs_command_result_free(cqrs_command_result *res)
{
	if (res == NULL)
		return;
	free(res->line);
	res->line = NULL;
	res->len = 0;
}

static void result_head(struct cqrs_commander *c, const char *status, const char *aggregate_id)
{
	FILE *f = c->out;
	rewind(f);
	fputs("{\"command_id\":", f);
	cqrs_json_write_string(f, c->cmd.command_id, strlen(c->cmd.command_id));
	fprintf(f, ",\"type\":\"%s\",\"status\":\"%s\"", c->spec->type, status);
	if (c->opt.dry_run)
		fputs(",\"stored\":false", f);
	if (aggregate_id[0] != '\0')
		fprintf(f, ",\"aggregate_id\":\"%s\"", aggregate_id);
}

/* Copies the line built in c->out into res. */
static int result_take(struct cqrs_commander *c, cqrs_command_result *res, cqrs_error *err)
{
	off_t len = ftello(c->out);
	/* a result cut short must never be stored or printed (cqrs_memstream;
	 * result_head's rewind clears the flag for the next) */
	if (fflush(c->out) != 0 || ferror(c->out) || len < 0 || (size_t)len > c->outsize)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	res->line = malloc((size_t)len + 1);
	if (res->line == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	memcpy(res->line, c->outbuf, (size_t)len);
	res->line[len] = '\0';
	res->len = (size_t)len;
	return 0;
}

static int result_rejected(struct cqrs_commander *c, cqrs_command_result *res,
			   const char *aggregate_id, const char *code, const char *reason,
			   cqrs_error *err)
{
	res->status = CQRS_COMMAND_REJECTED;
	snprintf(res->aggregate_id, sizeof res->aggregate_id, "%s", aggregate_id);
	snprintf(res->reason, sizeof res->reason, "%s", reason);
	snprintf(res->code, sizeof res->code, "%s", code);
	result_head(c, "rejected", aggregate_id);
	fputs(",\"code\":", c->out);
	cqrs_json_write_string(c->out, code, strlen(code));
	fputs(",\"reason\":", c->out);
	cqrs_json_write_string(c->out, reason, strlen(reason));
	fputc('}', c->out);
	return result_take(c, res, err);
}

static int result_unchanged(struct cqrs_commander *c, cqrs_command_result *res,
			    const char *aggregate_id, cqrs_error *err)
{
	res->status = CQRS_COMMAND_UNCHANGED;
	snprintf(res->aggregate_id, sizeof res->aggregate_id, "%s", aggregate_id);
	result_head(c, "unchanged", aggregate_id);
	fputc('}', c->out);
	return result_take(c, res, err);
}

/* cqrs_event_write ends the envelope with a newline; inside the events
 * array it becomes the separator. */
static void result_event(struct cqrs_commander *c, const cqrs_event *ev, bool first)
{
	if (first)
		fputs(",\"events\":[", c->out);
	else
		fputc(',', c->out);
	cqrs_event_write(c->out, ev);
	fseeko(c->out, -1, SEEK_CUR);
}

static int result_accepted(struct cqrs_commander *c, cqrs_command_result *res, cqrs_error *err)
{
	fputs("]}", c->out);
	res->status = CQRS_COMMAND_ACCEPTED;
	return result_take(c, res, err);
}

/* What processed_messages keeps: enough to give the same result line again
 * (the events are read back by sequence), not the events themselves. */
static void stored_form(struct cqrs_commander *c, const cqrs_command_result *res)
{
	struct cqrs_strbuf *b = &c->stored;
	cqrs_strbuf_reset(b);
	cqrs_strbuf_putc(b, '{');
	jb_key(b, "type");
	jb_str(b, c->spec->type);
	jb_key(b, "status");
	jb_str(b, res->status == CQRS_COMMAND_ACCEPTED	  ? "accepted"
		  : res->status == CQRS_COMMAND_UNCHANGED ? "unchanged"
							  : "rejected");
	jb_key(b, "aggregate_id");
	jb_str(b, res->aggregate_id);
	if (res->status == CQRS_COMMAND_ACCEPTED) {
		jb_key(b, "first");
		jb_int(b, res->first_sequence);
		jb_key(b, "last");
		jb_int(b, res->last_sequence);
	} else if (res->status == CQRS_COMMAND_REJECTED) {
		jb_key(b, "code");
		jb_str(b, res->code);
		jb_key(b, "reason");
		jb_str(b, res->reason);
	}
	cqrs_strbuf_putc(b, '}');
}

static int foreign_result(const struct cqrs_commander *c, cqrs_error *err)
{
	return bad(err, "command_id '%s' was already used by another handler", c->cmd.command_id);
}

static int replay(struct cqrs_commander *c, char *stored, cqrs_command_result *res, cqrs_error *err)
{
	size_t len = strlen(stored);
	char type[64], status[16], id[37];
	cqrs_error jerr = { 0 };
	if (cqrs_json_compact(stored, &len, &jerr) < 0 && jerr.code == CQRS_EXIT_OSERR)
		return *err = jerr, -1; /* not a verdict */
	if (jerr.code != 0 || stored[0] != '{' ||
	    jv_string(stored, len, "type", type, sizeof type) < 0 ||
	    jv_string(stored, len, "status", status, sizeof status) < 0)
		return foreign_result(c, err);
	if (strcmp(type, c->spec->type) != 0)
		return bad(err, "command_id '%s' was already used by a %s command",
			   c->cmd.command_id, type);
	const char *v;
	size_t vn;
	id[0] = '\0';
	if (cqrs_json_get(stored, len, "aggregate_id", &v, &vn) &&
	    cqrs_json_string(v, vn, id, sizeof id) < 0)
		return foreign_result(c, err);
	res->replayed = true;
	if (strcmp(status, "rejected") == 0) {
		char reason[512], code[32];
		if (jv_string(stored, len, "reason", reason, sizeof reason) < 0)
			return foreign_result(c, err);
		/* results stored before rejections had codes */
		if (jv_string(stored, len, "code", code, sizeof code) < 0)
			snprintf(code, sizeof code, "unknown");
		return result_rejected(c, res, id, code, reason, err);
	}
	if (strcmp(status, "unchanged") == 0)
		return result_unchanged(c, res, id, err);
	int64_t first, last;
	if (strcmp(status, "accepted") != 0 || jv_count(stored, len, "first", &first) < 0 ||
	    jv_count(stored, len, "last", &last) < 0 || first < 1 || last < first)
		return foreign_result(c, err);
	snprintf(res->aggregate_id, sizeof res->aggregate_id, "%s", id);
	res->first_sequence = first;
	res->last_sequence = last;
	result_head(c, "accepted", id);
	cqrs_filter f = { .after = first - 1, .to = last };
	cqrs_cursor *cur = cqrs_store_read(c->st, &f, err);
	if (cur == NULL)
		return -1;
	cqrs_event ev;
	int r, n = 0;
	while ((r = cqrs_cursor_next(cur, &ev, err)) == 1)
		result_event(c, &ev, n++ == 0);
	cqrs_cursor_close(cur);
	if (r < 0)
		return -1;
	if (n == 0)
		fputs(",\"events\":[", c->out);
	return result_accepted(c, res, err);
}

/* --- deciding ------------------------------------------------------------------- */

/* The highest ORD-<year>-N among the orders in the store: orders that came
 * in as events (a copy of a store made with cqrs-append) took numbers the
 * counter never gave out. */
static int64_t highest_order_number(struct cqrs_commander *c, const char *year, cqrs_error *err)
{
	cqrs_filter f = { .aggregate_type = "Order", .event_type = "OrderCreated" };
	cqrs_cursor *cur = cqrs_store_read(c->st, &f, err);
	if (cur == NULL)
		return -1;
	char prefix[16], number[DOM_NUMBER];
	int plen = snprintf(prefix, sizeof prefix, "ORD-%.4s-", year);
	int64_t max = 0;
	cqrs_event ev;
	int r;
	while ((r = cqrs_cursor_next(cur, &ev, err)) == 1) {
		if (jv_string(ev.data, ev.data_len, "order_number", number, sizeof number) < 0 ||
		    strncmp(number, prefix, (size_t)plen) != 0)
			continue;
		const char *d = number + plen;
		int64_t v = 0;
		size_t n = strlen(d);
		if (n == 0 || n > 15 || strspn(d, "0123456789") != n)
			continue;
		for (size_t i = 0; i < n; i++)
			v = v * 10 + (d[i] - '0');
		if (v > max)
			max = v;
	}
	cqrs_cursor_close(cur);
	return r < 0 ? -1 : max;
}

static int flush_counter(struct cqrs_commander *c, cqrs_error *err)
{
	bool changed = c->counter.valid && c->counter.value != c->counter.stored;
	c->counter.valid = false;
	if (changed && cqrs_store_counter_set(c->st, c->counter.name, c->counter.value, err) < 0)
		return -1;
	return 0;
}

static int next_order_number(void *arg, char out[DOM_NUMBER], cqrs_error *err)
{
	struct cqrs_commander *c = arg;
	char now[CQRS_TIMESTAMP_LEN + 1], counter[16];
	cqrs_timestamp_now(now);
	snprintf(counter, sizeof counter, "order:%.4s", now);
	int64_t n;
	if (c->counter.valid && strcmp(c->counter.name, counter) == 0) {
		n = ++c->counter.value;
	} else {
		/* The counter's row is locked to the transaction's end: the
		 * append lock first, as a batch that appended before holds
		 * them, or two writers wait for each other (PostgreSQL). */
		if (cqrs_store_lock(c->st, err) < 0 || flush_counter(c, err) < 0)
			return -1;
		n = cqrs_store_counter_next(c->st, counter, err);
		if (n == 1) {
			/* a new counter: start it after the orders already there */
			int64_t max = highest_order_number(c, now, err);
			if (max < 0)
				return -1;
			if (max >= 1)
				n = cqrs_store_counter_set(c->st, counter, max + 1, err);
		}
		if (n < 0)
			return -1;
		snprintf(c->counter.name, sizeof c->counter.name, "%s", counter);
		c->counter.value = c->counter.stored = n;
		c->counter.valid = true;
	}
	snprintf(out, DOM_NUMBER, "ORD-%.4s-%06lld", now, (long long)n);
	return 0;
}

/* Items may leave out the sku: it is the registered product's. */
static int fill_skus(struct cqrs_commander *c, cqrs_error *err)
{
	struct command *cmd = &c->cmd;
	for (size_t i = 0; i < cmd->nitems; i++) {
		struct cmd_item *it = &cmd->items[i];
		if (it->sku[0] != '\0')
			continue;
		if (agg_load(&c->loader, AGG_INVENTORY, it->product_id, &c->aux, err) < 0)
			return -1;
		if (!c->aux.u.inv.exists || c->aux.foreign_type[0] != '\0') {
			char id[37];
			cqrs_uuid_format(it->product_id, id);
			return reject(&c->dec, "not_found",
				      "item %zu: unknown product %s (register it first, or "
				      "give its sku)",
				      i + 1, id);
		}
		memcpy(it->sku, c->aux.u.inv.sku, sizeof it->sku);
	}
	return 0;
}

/* The command's, the tool's, the order's, or a new one: so that one order's
 * story shares one correlation id across its aggregates. */
static int correlation(struct cqrs_commander *c, char *out, size_t cap, cqrs_error *err)
{
	const struct command *cmd = &c->cmd;
	if (HAS(cmd, F_CORRELATION_ID)) {
		snprintf(out, cap, "%s", cmd->correlation_id);
		return 0;
	}
	if (c->correlation_id != NULL) {
		snprintf(out, cap, "%s", c->correlation_id);
		return 0;
	}
	const char *found = NULL;
	if (c->spec->kind == AGG_ORDER || c->spec->kind == AGG_PAYMENT) {
		found = c->agg.correlation;
	}
	if ((found == NULL || found[0] == '\0') && HAS(cmd, F_ORDER_ID) &&
	    c->spec->kind != AGG_ORDER) {
		if (agg_load(&c->loader, AGG_ORDER, cmd->order_id, &c->aux, err) < 0)
			return -1;
		if (c->aux.u.order.exists)
			found = c->aux.correlation;
	}
	if (found != NULL && found[0] != '\0') {
		snprintf(out, cap, "%s", found);
		return 0;
	}
	/* A new story: a new aggregate's id names it, so that
	 * cqrs-read --correlation ORDER-ID tells an order's whole story. */
	uint8_t id[CQRS_UUID_LEN];
	if (c->spec->creates)
		memcpy(id, c->target, CQRS_UUID_LEN);
	else
		cqrs_uuid_generate(id);
	cqrs_uuid_format(id, out);
	return 0;
}

static void metadata(struct cqrs_commander *c, const char *corr)
{
	struct cqrs_strbuf *b = &c->meta;
	cqrs_strbuf_reset(b);
	cqrs_strbuf_putc(b, '{');
	jb_key(b, "correlation_id");
	jb_str(b, corr);
	jb_key(b, "causation_id");
	jb_str(b, c->cmd.command_id);
	const char *user = HAS(&c->cmd, F_USER_ID) ? c->cmd.user_id : c->user_id;
	if (user != NULL) {
		jb_key(b, "user_id");
		jb_str(b, user);
	}
	const char *tp = HAS(&c->cmd, F_TRACEPARENT) ? c->cmd.traceparent : c->traceparent;
	if (tp[0] != '\0') {
		jb_key(b, "traceparent");
		jb_str(b, tp);
	}
	cqrs_strbuf_putc(b, '}');
}

/* The other aggregates the decision depends on, loaded in the same
 * transaction: the order of a reservation or release, the inventory of
 * each line of an order to ship or to cancel. */
static bool has_related(enum cmd_type t)
{
	return t == CMD_RESERVE_INVENTORY || t == CMD_RELEASE_INVENTORY || t == CMD_SHIP_ORDER ||
	       t == CMD_CANCEL_ORDER;
}

static int load_related(struct cqrs_commander *c, cqrs_error *err)
{
	c->nrelated = 0;
	enum cmd_type t = c->cmd.type;
	if (!has_related(t))
		return 0;
	/* made on first need: most commands touch one aggregate */
	if (c->related == NULL &&
	    (c->related = calloc(DOM_MAX_ORDER_PRODUCTS, sizeof *c->related)) == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	if (t == CMD_RESERVE_INVENTORY || t == CMD_RELEASE_INVENTORY) {
		if (agg_load(&c->loader, AGG_ORDER, c->cmd.order_id, &c->related[0], err) < 0)
			return -1;
		c->nrelated = 1;
	} else if ((t == CMD_SHIP_ORDER || t == CMD_CANCEL_ORDER) && c->agg.u.order.exists &&
		   c->agg.foreign_type[0] == '\0') {
		const struct order_state *o = &c->agg.u.order;
		for (int k = 0; k < o->nlines; k++) {
			if (agg_load(&c->loader, AGG_INVENTORY, o->lines[k].product_id,
				     &c->related[k], err) < 0)
				return -1;
			c->nrelated = k + 1;
		}
	}
	return 0;
}

static void forget_all(struct cqrs_commander *c)
{
	agg_loader_forget_one(&c->loader, c->target);
	for (int k = 0; k < c->nrelated; k++)
		agg_loader_forget_one(&c->loader, c->related[k].id);
}

/* Appends the decision's events, each with the version of its own
 * aggregate as decided on (a conflict on any means: decide again), all in
 * the caller's transaction, and folds them in. */
static int append_events(struct cqrs_commander *c, cqrs_command_result *res, cqrs_error *err)
{
	const struct decision *d = &c->dec;
	int64_t old[1 + DOM_MAX_ORDER_PRODUCTS];
	bool touched[1 + DOM_MAX_ORDER_PRODUCTS] = { false };
	old[0] = c->agg.version;
	for (int k = 0; k < c->nrelated; k++)
		old[k + 1] = c->related[k].version;
	for (int i = 0; i < d->nevents; i++) {
		struct aggregate *a = d->target[i] < 0 ? &c->agg : &c->related[d->target[i]];
		cqrs_event ev;
		memset(&ev, 0, sizeof ev);
		memcpy(ev.aggregate_id, a->id, CQRS_UUID_LEN);
		snprintf(ev.aggregate_type, sizeof ev.aggregate_type, "%s",
			 domain_of(a->kind)->type);
		snprintf(ev.event_type, sizeof ev.event_type, "%s", d->event_type[i]);
		ev.event_version = dom_event_version(ev.event_type);
		ev.expected_version = a->version;
		if (c->inject_conflicts > 0 && i == 0) {
			c->inject_conflicts--;
			ev.expected_version = a->version + 1;
		}
		ev.data = d->data[i].p;
		ev.data_len = d->data[i].len;
		ev.metadata = c->meta.p;
		ev.metadata_len = c->meta.len;
		int r = cqrs_store_append(c->st, &ev, err);
		if (r < 0)
			return -1;
		if (r != CQRS_APPENDED)
			return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "a new event was already stored");
		c->appended = true;
		touched[d->target[i] + 1] = true;
		if (agg_fold(a, &ev, err) < 0)
			return -1;
		if (i == 0)
			res->first_sequence = ev.sequence;
		res->last_sequence = ev.sequence;
		result_event(c, &ev, i == 0);
	}
	if (agg_committed(&c->loader, &c->agg, old[0], err) < 0)
		return -1;
	for (int k = 0; k < c->nrelated; k++)
		if (touched[k + 1] &&
		    agg_committed(&c->loader, &c->related[k], old[k + 1], err) < 0)
			return -1;
	return 0;
}

/* One load-decide-append round.  Returns 0 with res filled, or -1 (a
 * CQRS_EXIT_CONFLICT error means: load and decide again). */
static int attempt(struct cqrs_commander *c, cqrs_command_result *res, cqrs_error *err)
{
	const struct cmd_spec *spec = c->spec;
	const struct domain *dom = domain_of(spec->kind);
	struct decision *d = &c->dec;
	char id[37];
	cqrs_uuid_format(c->target, id);
	d->rejected = d->unchanged = false;
	d->code = NULL;
	d->nevents = 0;
	c->nrelated = 0;
	/* A decision on other aggregates than the one it writes (a
	 * reservation reads the order; a cancellation, the stock of each
	 * line) holds the append lock before it reads them: on PostgreSQL a
	 * version is checked only where an event is appended, so a
	 * cancellation that committed between the read and the append would
	 * leave stock reserved for a cancelled order (a write skew). */
	if (has_related(c->cmd.type) && cqrs_store_lock(c->st, err) < 0)
		return -1;
	if (c->generated)
		agg_init(&c->agg, spec->kind, c->target);
	else if (agg_load(&c->loader, spec->kind, c->target, &c->agg, err) < 0)
		return -1;
	if (c->cmd.type == CMD_CREATE_ORDER && !reject_existing(d, &c->agg, dom) &&
	    fill_skus(c, err) < 0)
		return -1;
	if (load_related(c, err) < 0)
		return -1;
	cqrs_test_pause("CQRS_TEST_PAUSE_AFTER_LOAD");
	struct decide_ctx ctx = { next_order_number, c, c->related, c->nrelated };
	if (!d->rejected && spec->decide(&c->cmd, &c->agg, &ctx, d, err) < 0)
		return -1;
	if (d->rejected)
		return result_rejected(c, res, c->generated ? "" : id,
				       d->code != NULL ? d->code : "invalid", d->reason, err);
	if (d->unchanged || d->nevents == 0)
		return result_unchanged(c, res, id, err);
	for (int i = 0; i < d->nevents; i++)
		if (d->data[i].oom)
			return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");

	char corr[DOM_ID];
	if (correlation(c, corr, sizeof corr, err) < 0)
		return -1;
	cqrs_log_context_set(CQRS_LOG_CORRELATION, corr);
	metadata(c, corr);
	if (c->meta.oom)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");

	snprintf(res->aggregate_id, sizeof res->aggregate_id, "%s", id);
	result_head(c, "accepted", id);
	if (append_events(c, res, err) < 0)
		return -1;
	return result_accepted(c, res, err);
}

static const uint8_t *named_target(const struct command *cmd, enum cmd_field f)
{
	switch (f) {
	case F_ORDER_ID: return cmd->order_id;
	case F_PRODUCT_ID: return cmd->product_id;
	case F_PAYMENT_ID: return cmd->payment_id;
	default: return NULL;
	}
}

static int handle_parsed(struct cqrs_commander *c, cqrs_command_result *res, cqrs_error *err);

/* Inside a write transaction.  Once events of the command are in, no error
 * may say "nothing changed": the caller must roll the batch back. */
static int handle_in_txn(struct cqrs_commander *c, cqrs_command_result *res, cqrs_error *err)
{
	c->appended = false;
	int r = handle_parsed(c, res, err);
	if (r < 0 && c->appended && err != NULL &&
	    (err->code == CQRS_EXIT_DATAERR || err->code == CQRS_EXIT_CONFLICT))
		err->code = CQRS_EXIT_SOFTWARE;
	return r;
}

static int handle_parsed(struct cqrs_commander *c, cqrs_command_result *res, cqrs_error *err)
{
	char *stored = NULL;
	int r = cqrs_store_processed_get(c->st, c->cmd.command_id, &stored, err);
	if (r < 0)
		return -1;
	if (r == 1) {
		r = replay(c, stored, res, err);
		free(stored);
		return r;
	}
	c->generated = !HAS(&c->cmd, c->spec->target);
	if (c->generated)
		cqrs_uuid_generate(c->target);
	else
		memcpy(c->target, named_target(&c->cmd, c->spec->target), CQRS_UUID_LEN);
	cqrs_log_context_aggregate(c->target);

	int attempts = c->opt.max_attempts > 0 ? c->opt.max_attempts : DEFAULT_ATTEMPTS;
	for (int i = 1;; i++) {
		memset(res, 0, sizeof *res);
		bool counted = c->counter.valid;
		int64_t last_number = c->counter.value;
		if (attempt(c, res, err) == 0)
			break;
		if (err == NULL || err->code != CQRS_EXIT_CONFLICT || c->appended)
			return -1;
		forget_all(c);
		/* the order numbers the lost decision took go back: the next
		 * decision (or the next command) takes them, none is skipped */
		if (c->counter.valid)
			c->counter.value = counted ? last_number : c->counter.stored - 1;
		if (c->metrics)
			cqrs_metrics_add(cqrs_metrics_series(CQRS_METRIC_COMMAND_CONFLICTS,
							     c->spec->type, NULL),
					 1);
		if (i == attempts) {
			char id[37];
			cqrs_uuid_format(c->target, id);
			return cqrs_fail(err, CQRS_EXIT_CONFLICT,
					 "version conflict on %s %s: gave up after %d attempts",
					 domain_of(c->spec->kind)->noun, id, attempts);
		}
		/* Another writer committed on the aggregate (an optimistic
		 * backend, PostgreSQL): it may have been this very command_id,
		 * sent twice at once; its result is then this one's. */
		r = cqrs_store_processed_get(c->st, c->cmd.command_id, &stored, err);
		if (r < 0)
			return -1;
		if (r == 1) {
			r = replay(c, stored, res, err);
			free(stored);
			return r;
		}
	}
	stored_form(c, res);
	if (c->stored.oom ||
	    cqrs_store_processed_put(c->st, c->cmd.command_id, HANDLER, c->stored.p, err) < 0) {
		cqrs_command_result_free(res);
		if (c->stored.oom)
			return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		return -1;
	}
	return 0;
}

/* --- metrics ------------------------------------------------------------------ */

static void observe(const char *type, const char *result, double received, double now)
{
	cqrs_metrics_observe(cqrs_metrics_series(CQRS_METRIC_COMMAND_DURATION, type, result),
			     now - received);
}

static const char *type_label(const struct cqrs_commander *c)
{
	return c->spec != NULL ? c->spec->type : "unknown";
}

/* A command decided in a batch: timed at the commit.  Out of memory, it
 * is timed now instead. */
static void time_at_commit(struct cqrs_commander *c, const char *result, double received)
{
	if (c->ntimed == c->timed_cap) {
		size_t cap = c->timed_cap ? 2 * c->timed_cap : 64;
		struct timed_command *t = realloc(c->timed, cap * sizeof *t);
		if (t == NULL) {
			observe(type_label(c), result, received, cqrs_metrics_clock());
			return;
		}
		c->timed = t;
		c->timed_cap = cap;
	}
	c->timed[c->ntimed++] = (struct timed_command){ type_label(c), result, received };
}

/* At the end of a batch: committed, each keeps its result; else "error"
 * (a dry run stores nothing and is not counted). */
static void time_batch(struct cqrs_commander *c, bool committed)
{
	double now = cqrs_metrics_clock();
	for (size_t i = 0; i < c->ntimed && !c->opt.dry_run; i++)
		observe(c->timed[i].type, committed ? c->timed[i].result : "error",
			c->timed[i].received, now);
	c->ntimed = 0;
}

static void time_command(struct cqrs_commander *c, int r, const cqrs_command_result *res,
			 const cqrs_error *err, double received)
{
	if (r == 0)
		time_at_commit(c, res->status == CQRS_COMMAND_REJECTED ? "rejected" : "accepted",
			       received);
	else if (!c->opt.dry_run)
		observe(type_label(c),
			err != NULL && err->code == CQRS_EXIT_CONFLICT ? "conflict" : "error",
			received, cqrs_metrics_clock());
}

/* --- the API ------------------------------------------------------------------- */

cqrs_commander *cqrs_commander_new(cqrs_store *st, const struct cqrs_command_options *opt,
				   cqrs_error *err)
{
	struct cqrs_commander *c = calloc(1, sizeof *c);
	if (c == NULL) {
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		return NULL;
	}
	c->st = st;
	if (opt != NULL)
		c->opt = *opt;
	else
		c->opt.snapshot_every = CQRS_SNAPSHOT_EVERY_DEFAULT;
	c->opt.user_id = c->opt.correlation_id = NULL;
	c->opt.traceparent = NULL;
	struct cqrs_traceparent tp;
	if (opt != NULL && opt->traceparent != NULL) {
		if (cqrs_traceparent_parse(opt->traceparent, strlen(opt->traceparent), &tp, err) <
		    0) {
			cqrs_commander_free(c);
			return NULL;
		}
		memcpy(c->traceparent, tp.text, sizeof tp.text);
	}
	if ((opt != NULL && opt->user_id != NULL && (c->user_id = strdup(opt->user_id)) == NULL) ||
	    (opt != NULL && opt->correlation_id != NULL &&
	     (c->correlation_id = strdup(opt->correlation_id)) == NULL))
		goto oom;
	c->out = cqrs_memstream(&c->outbuf, &c->outsize);
	if (c->out == NULL)
		goto oom;
	c->metrics = c->opt.record_metrics && cqrs_metrics_on();
	if (agg_loader_init(&c->loader, st, c->opt.snapshot_every, c->opt.ignore_snapshots, err) <
	    0) {
		cqrs_commander_free(c);
		return NULL;
	}
	const char *inject = getenv("CQRS_TEST_CONFLICTS");
	int64_t n;
	if (inject != NULL && cqrs_parse_int64(inject, &n) == 0 && n < 1000)
		c->inject_conflicts = (int)n;
	return c;
oom:
	cqrs_commander_free(c);
	cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	return NULL;
}

void cqrs_commander_free(cqrs_commander *c)
{
	if (c == NULL)
		return;
	if (c->in_batch)
		cqrs_commander_rollback(c);
	agg_loader_free(&c->loader);
	agg_clear(&c->agg);
	agg_clear(&c->aux);
	for (int k = 0; c->related != NULL && k < DOM_MAX_ORDER_PRODUCTS; k++)
		if (c->related[k].kind == AGG_INVENTORY)
			agg_clear(&c->related[k]);
	free(c->related);
	free(c->cmd.items);
	for (int i = 0; i < DOM_MAX_EVENTS; i++)
		cqrs_strbuf_free(&c->dec.data[i]);
	cqrs_strbuf_free(&c->meta);
	cqrs_strbuf_free(&c->stored);
	if (c->out != NULL)
		fclose(c->out);
	free(c->outbuf);
	free(c->timed);
	free(c->user_id);
	free(c->correlation_id);
	free(c);
}

int cqrs_commander_begin(cqrs_commander *c, cqrs_error *err)
{
	if (c->in_batch)
		return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "a batch is already open");
	if (cqrs_store_begin(c->st, err) < 0)
		return -1;
	c->in_batch = true;
	return 0;
}

int cqrs_commander_commit(cqrs_commander *c, cqrs_error *err)
{
	if (!c->in_batch)
		return 0;
	c->in_batch = false;
	if (c->opt.dry_run) {
		/* decided as a real run would, stored nowhere */
		c->in_batch = true;
		cqrs_commander_rollback(c);
		return 0;
	}
	if (flush_counter(c, err) < 0) {
		cqrs_store_rollback(c->st);
		agg_loader_forget(&c->loader);
		time_batch(c, false);
		return -1;
	}
	if (cqrs_store_commit(c->st, err) < 0) {
		agg_loader_forget(&c->loader);
		time_batch(c, false);
		return -1;
	}
	time_batch(c, true);
	return 0;
}

void cqrs_commander_rollback(cqrs_commander *c)
{
	if (!c->in_batch)
		return;
	c->in_batch = false;
	c->counter.valid = false;
	cqrs_store_rollback(c->st);
	agg_loader_forget(&c->loader);
	time_batch(c, false);
}

int cqrs_commander_handle(cqrs_commander *c, char *line, size_t len, cqrs_command_result *res,
			  cqrs_error *err)
{
	memset(res, 0, sizeof *res);
	double received = c->metrics ? cqrs_metrics_clock() : 0;
	c->spec = NULL;
	/* the log lines about this command name its aggregate and correlation,
	 * as soon as they are known (and until the next command) */
	cqrs_log_context_event(NULL);
	if (parse_command(c, line, len, err) < 0) {
		if (c->metrics)
			time_command(c, -1, res, err, received);
		return -1;
	}
	cqrs_log_context_set(CQRS_LOG_CORRELATION, HAS(&c->cmd, F_CORRELATION_ID)
							   ? c->cmd.correlation_id
							   : c->correlation_id);
	bool own = !c->in_batch;
	if (own && cqrs_commander_begin(c, err) < 0) {
		if (c->metrics)
			time_command(c, -1, res, err, received);
		return -1;
	}
	int r = handle_in_txn(c, res, err);
	if (c->metrics)
		time_command(c, r, res, err, received);
	if (own) {
		if (r == 0 && cqrs_commander_commit(c, err) < 0)
			r = -1;
		else if (r < 0)
			cqrs_commander_rollback(c);
		if (r < 0)
			cqrs_command_result_free(res);
	}
	return r;
}

int cqrs_commander_state(cqrs_commander *c, const uint8_t id[CQRS_UUID_LEN], char **json,
			 cqrs_error *err)
{
	char text[37];
	cqrs_uuid_format(id, text);
	cqrs_filter f = { .aggregate_id = id, .limit = 1 };
	cqrs_cursor *cur = cqrs_store_read(c->st, &f, err);
	if (cur == NULL)
		return -1;
	cqrs_event ev;
	int r = cqrs_cursor_next(cur, &ev, err);
	int kind = r == 1 ? agg_kind_of(ev.aggregate_type) : -1;
	char type[CQRS_MAX_TYPE_NAME + 1] = "";
	if (r == 1)
		snprintf(type, sizeof type, "%s", ev.aggregate_type);
	cqrs_cursor_close(cur);
	if (r < 0)
		return -1;
	if (r == 0)
		return cqrs_fail(err, CQRS_EXIT_NOT_FOUND, "aggregate %s has no events", text);
	if (kind < 0)
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "aggregate %s is of type %s, which no command handles", text,
				 type);
	if (agg_load(&c->loader, (enum agg_kind)kind, id, &c->agg, err) < 0)
		return -1;
	struct cqrs_strbuf b = { 0 };
	cqrs_strbuf_puts(&b, "{\"aggregate_id\":\"");
	cqrs_strbuf_puts(&b, text);
	cqrs_strbuf_puts(&b, "\",\"aggregate_type\":");
	jb_str(&b, type);
	jb_key(&b, "version");
	jb_int(&b, c->agg.version);
	jb_key(&b, "snapshot_version");
	jb_int(&b, c->loader.last_snapshot);
	jb_key(&b, "state");
	agg_state_json(&c->agg, &b);
	cqrs_strbuf_putc(&b, '}');
	if (b.oom) {
		cqrs_strbuf_free(&b);
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	}
	*json = b.p;
	return 0;
}

/* --- the lifecycle, read-only ------------------------------------------------ */

int cqrs_commander_order(cqrs_commander *c, const uint8_t id[CQRS_UUID_LEN],
			 struct cqrs_order_info *out, cqrs_error *err)
{
	memset(out, 0, sizeof *out);
	if (agg_load(&c->loader, AGG_ORDER, id, &c->aux, err) < 0)
		return -1;
	const struct order_state *o = &c->aux.u.order;
	if (!o->exists || c->aux.foreign_type[0] != '\0')
		return 0;
	snprintf(out->status, sizeof out->status, "%s", lc_state_name(AGG_ORDER, (int)o->status));
	out->confirmed = o->confirmed;
	out->confirmed_by_person = o->confirmed && !o->confirmed_by_saga;
	out->nlines = o->nlines;
	for (int k = 0; k < o->nlines; k++) {
		memcpy(out->lines[k].product_id, o->lines[k].product_id, CQRS_UUID_LEN);
		out->lines[k].quantity = o->lines[k].quantity;
	}
	return 0;
}

int cqrs_commander_goal_reached(cqrs_commander *c, char *line, size_t len, cqrs_error *err)
{
	if (parse_command(c, line, len, err) < 0)
		return -1;
	if (!HAS(&c->cmd, c->spec->target))
		return 0; /* a creation without its id: a new aggregate */
	const uint8_t *id = named_target(&c->cmd, c->spec->target);
	if (agg_load(&c->loader, c->spec->kind, id, &c->aux, err) < 0)
		return -1;
	if (c->aux.foreign_type[0] != '\0' || agg_status(&c->aux) == 0)
		return 0;
	return lc_reached(&c->cmd, &c->aux) ? 1 : 0;
}

int cqrs_lifecycle_print(FILE *f, const char *format, cqrs_error *err)
{
	return lc_print(f, format, err);
}
