/*
 * The order aggregate: created with its items and an exact total, then
 * confirmed, paid (exactly the total, once), shipped (only once paid) or
 * cancelled (only before it ships).
 */
#include "config.h"

#include <string.h>

#include "domain/domain.h"
#include "banned.h"

/* "order ORD-2026-000001" for people; the id before the number exists */
static const char *order_name(const struct aggregate *a, char *buf, size_t cap)
{
	if (a->u.order.number[0] != '\0') {
		snprintf(buf, cap, "%s", a->u.order.number);
	} else {
		char id[37];
		cqrs_uuid_format(a->id, id);
		snprintf(buf, cap, "%s", id);
	}
	return buf;
}

/* What every decision on an existing order starts with: the order exists,
 * and the lifecycle table allows the command in its state.  True when the
 * command was rejected; name gets the order's name for messages. */
static bool order_refused(const struct command *c, const struct aggregate *a, struct decision *d,
			  char *name, size_t cap)
{
	return reject_missing(d, a, &domain_order, true) ||
	       lc_check(d, c, a, order_name(a, name, cap), NULL);
}

/* OrderCreated's items as one line per product. */
static int apply_items(struct aggregate *a, const cqrs_event *ev, cqrs_error *err)
{
	struct order_state *o = &a->u.order;
	const char *v, *e;
	size_t vn, en, pos = 0;
	if (!cqrs_json_get(ev->data, ev->data_len, "items", &v, &vn) || v[0] != '[')
		return agg_bad_event(a, ev, "no items", err);
	o->nlines = 0;
	while (cqrs_json_next_element(v, vn, &pos, &e, &en) == 1) {
		uint8_t id[CQRS_UUID_LEN];
		int64_t q;
		if (e[0] != '{' || jv_uuid(e, en, "product_id", id) < 0 ||
		    jv_count(e, en, "quantity", &q) < 0 || q <= 0 || q > DOM_MAX_COUNT)
			return agg_bad_event(a, ev, "an item without product_id or quantity", err);
		int k;
		for (k = 0; k < o->nlines; k++)
			if (memcmp(o->lines[k].product_id, id, CQRS_UUID_LEN) == 0)
				break;
		if (k == DOM_MAX_ORDER_PRODUCTS)
			return agg_bad_event(a, ev, "more than 64 different products", err);
		if (k == o->nlines) {
			memcpy(o->lines[k].product_id, id, CQRS_UUID_LEN);
			o->lines[k].quantity = 0;
			o->nlines++;
		}
		o->lines[k].quantity += q;
	}
	if (o->nlines == 0)
		return agg_bad_event(a, ev, "no items", err);
	return 0;
}

static int apply(struct aggregate *a, const cqrs_event *ev, cqrs_error *err)
{
	struct order_state *o = &a->u.order;
	const char *d = ev->data;
	size_t n = ev->data_len;
	const char *t = ev->event_type;
	if (strcmp(t, "OrderCreated") == 0) {
		if (jv_string(d, n, "order_number", o->number, sizeof o->number) < 0)
			return agg_bad_event(a, ev, "no order_number", err);
		if (jv_string(d, n, "currency", o->currency, sizeof o->currency) < 0 ||
		    !cqrs_currency_valid(o->currency))
			return agg_bad_event(a, ev, "no valid currency", err);
		if (jv_money(d, n, "total", o->currency, &o->total) < 0)
			return agg_bad_event(a, ev, "no valid total", err);
		if (apply_items(a, ev, err) < 0)
			return -1;
		o->exists = true;
		o->status = ORDER_PENDING;
	} else if (strcmp(t, "OrderConfirmed") == 0) {
		char by[8];
		o->confirmed = true;
		o->confirmed_by_saga =
			jv_string(d, n, "by", by, sizeof by) == 0 && strcmp(by, "saga") == 0;
		if (o->status == ORDER_PENDING)
			o->status = ORDER_CONFIRMED;
	} else if (strcmp(t, "PaymentProcessed") == 0) {
		o->status = ORDER_PAID;
	} else if (strcmp(t, "OrderShipped") == 0) {
		o->status = ORDER_SHIPPED;
	} else if (strcmp(t, "OrderCancelled") == 0) {
		o->status = ORDER_CANCELLED;
	}
	return 0;
}

static void save(const struct aggregate *a, struct cqrs_strbuf *b)
{
	const struct order_state *o = &a->u.order;
	jb_key(b, "exists");
	jb_bool(b, o->exists);
	if (!o->exists)
		return;
	jb_key(b, "status");
	jb_str(b, lc_state_name(AGG_ORDER, (int)o->status));
	jb_key(b, "confirmed");
	jb_bool(b, o->confirmed);
	jb_key(b, "confirmed_by");
	jb_str(b, !o->confirmed ? "" : o->confirmed_by_saga ? "saga" : "person");
	jb_key(b, "order_number");
	jb_str(b, o->number);
	jb_key(b, "currency");
	jb_str(b, o->currency);
	jb_key(b, "total");
	jb_money(b, o->total, o->currency);
	jb_key(b, "lines");
	cqrs_strbuf_putc(b, '[');
	for (int i = 0; i < o->nlines; i++) {
		if (i > 0)
			cqrs_strbuf_putc(b, ',');
		cqrs_strbuf_putc(b, '{');
		jb_key(b, "product_id");
		jb_uuid(b, o->lines[i].product_id);
		jb_key(b, "quantity");
		jb_int(b, o->lines[i].quantity);
		cqrs_strbuf_putc(b, '}');
	}
	cqrs_strbuf_putc(b, ']');
}

static int restore_lines(struct order_state *o, const char *s, size_t n)
{
	const char *v, *e;
	size_t vn, en, pos = 0;
	if (!cqrs_json_get(s, n, "lines", &v, &vn) || v[0] != '[')
		return -1;
	o->nlines = 0;
	while (cqrs_json_next_element(v, vn, &pos, &e, &en) == 1) {
		struct order_line *l = &o->lines[o->nlines];
		if (o->nlines == DOM_MAX_ORDER_PRODUCTS || e[0] != '{' ||
		    jv_uuid(e, en, "product_id", l->product_id) < 0 ||
		    jv_count(e, en, "quantity", &l->quantity) < 0 || l->quantity <= 0)
			return -1;
		o->nlines++;
	}
	return o->nlines > 0 ? 0 : -1;
}

static int restore(struct aggregate *a, const char *s, size_t n)
{
	struct order_state *o = &a->u.order;
	char status[16], by[8];
	if (jv_bool(s, n, "exists", &o->exists) < 0)
		return -1;
	if (!o->exists)
		return 0;
	if (jv_string(s, n, "status", status, sizeof status) < 0 ||
	    jv_bool(s, n, "confirmed", &o->confirmed) < 0 ||
	    jv_string(s, n, "confirmed_by", by, sizeof by) < 0 ||
	    jv_string(s, n, "order_number", o->number, sizeof o->number) < 0 ||
	    jv_string(s, n, "currency", o->currency, sizeof o->currency) < 0 ||
	    !cqrs_currency_valid(o->currency) ||
	    jv_money(s, n, "total", o->currency, &o->total) < 0 || restore_lines(o, s, n) < 0)
		return -1;
	o->confirmed_by_saga = strcmp(by, "saga") == 0;
	for (int st = ORDER_PENDING; st < ORDER_STATES; st++)
		if (strcmp(status, lc_state_name(AGG_ORDER, st)) == 0)
			o->status = (enum order_status)st;
	return o->status == ORDER_NONE ? -1 : 0;
}

const struct domain domain_order = { "Order", "order", apply, save, restore };

/* "item N: field" in what (64 bytes), without snprintf: this runs for
 * every item of every order, and the label is read only on a rejection. */
static const char *item_label(char what[64], size_t n, const char *field)
{
	char digits[24];
	int k = 0;
	do
		digits[k++] = (char)('0' + n % 10);
	while ((n /= 10) > 0);
	char *p = what;
	memcpy(p, "item ", 5);
	p += 5;
	while (k > 0)
		*p++ = digits[--k];
	*p++ = ':';
	*p++ = ' ';
	size_t f = strlen(field);
	memcpy(p, field, f + 1);
	return what;
}

/* Every item valid, the total exact and within range, at most
 * DOM_MAX_ORDER_PRODUCTS products: true when rejected. */
static bool reject_items(const struct command *c, struct decision *d, int64_t *total)
{
	uint8_t seen[DOM_MAX_ORDER_PRODUCTS][CQRS_UUID_LEN];
	int nseen = 0;
	*total = 0;
	for (size_t i = 0; i < c->nitems; i++) {
		const struct cmd_item *it = &c->items[i];
		char what[64];
		int64_t q, price, line;
		if (reject_quantity(d, item_label(what, i + 1, "quantity"), it->quantity,
				    it->quantity_len, &q))
			return true;
		if (reject_amount(d, item_label(what, i + 1, "unit price"), it->unit_price,
				  it->unit_price_len, c->currency, true, &price))
			return true;
		if (__builtin_mul_overflow(q, price, &line) ||
		    __builtin_add_overflow(*total, line, total) || *total > DOM_MAX_AMOUNT)
			return reject(d, "invalid", "the order total is too large") == 0;
		int k;
		for (k = 0; k < nseen; k++)
			if (memcmp(seen[k], it->product_id, CQRS_UUID_LEN) == 0)
				break;
		if (k == nseen && nseen == DOM_MAX_ORDER_PRODUCTS)
			return reject(d, "invalid", "an order holds at most %d different products",
				      DOM_MAX_ORDER_PRODUCTS) == 0;
		if (k == nseen)
			memcpy(seen[nseen++], it->product_id, CQRS_UUID_LEN);
	}
	if (!HAS(c, F_TOTAL))
		return false;
	int64_t given;
	if (reject_amount(d, "total", c->total, c->total_len, c->currency, true, &given))
		return true;
	if (given != *total) {
		char want[40];
		cqrs_money_format(*total, c->currency, want, sizeof want);
		return reject(d, "invalid", "total %.*s is not the sum of the items (%s)",
			      (int)c->total_len, c->total, want) == 0;
	}
	return false;
}

static void write_items(const struct command *c, struct cqrs_strbuf *b)
{
	cqrs_strbuf_putc(b, '[');
	for (size_t i = 0; i < c->nitems; i++) {
		const struct cmd_item *it = &c->items[i];
		int64_t price = 0;
		cqrs_money_parse(it->unit_price, it->unit_price_len, c->currency, &price, NULL);
		if (i > 0)
			cqrs_strbuf_putc(b, ',');
		cqrs_strbuf_putc(b, '{');
		jb_key(b, "product_id");
		jb_uuid(b, it->product_id);
		jb_key(b, "sku");
		jb_str(b, it->sku);
		jb_key(b, "quantity");
		cqrs_strbuf_put(b, it->quantity, it->quantity_len);
		jb_key(b, "unit_price");
		jb_money(b, price, c->currency);
		cqrs_strbuf_putc(b, '}');
	}
	cqrs_strbuf_putc(b, ']');
}

/* The address as stored: its parts in one order, the optional ones
 * (name, state) only when given. */
static void write_address(const struct command *c, struct cqrs_strbuf *b)
{
	static const char *const parts[ADDR_PARTS] = { "name",	"street",      "city",
						       "state", "postal_code", "country" };
	cqrs_strbuf_putc(b, '{');
	for (int i = 0; i < ADDR_PARTS; i++) {
		if (c->address[i][0] == '\0')
			continue;
		jb_key(b, parts[i]);
		jb_str(b, c->address[i]);
	}
	cqrs_strbuf_putc(b, '}');
}

static void put_now(struct cqrs_strbuf *b, const char *key)
{
	char now[CQRS_TIMESTAMP_LEN + 1];
	cqrs_timestamp_now(now);
	jb_key(b, key);
	jb_str(b, now);
}

int order_create(const struct command *c, const struct aggregate *a, const struct decide_ctx *ctx,
		 struct decision *d, cqrs_error *err)
{
	if (reject_existing(d, a, &domain_order))
		return 0;
	if (!cqrs_currency_valid(c->currency))
		return reject(d, "invalid", "currency '%s' is not a three-letter code such as USD",
			      c->currency);
	if (c->nitems == 0)
		return reject(d, "invalid", "an order needs at least one item");
	/* Validate every item before the order number is taken. */
	int64_t total;
	if (reject_items(c, d, &total))
		return 0;

	char number[DOM_NUMBER];
	if (ctx->order_number(ctx->arg, number, err) < 0)
		return -1;
	struct cqrs_strbuf *b = decision_emit(d, "OrderCreated");
	cqrs_strbuf_putc(b, '{');
	jb_key(b, "order_number");
	jb_str(b, number);
	jb_key(b, "customer_id");
	jb_str(b, c->customer_id);
	jb_key(b, "items");
	write_items(c, b);
	jb_key(b, "currency");
	jb_str(b, c->currency);
	jb_key(b, "total");
	jb_money(b, total, c->currency);
	jb_key(b, "shipping_address");
	write_address(c, b);
	if (HAS(c, F_PAYMENT_METHOD)) {
		jb_key(b, "payment_method");
		jb_str(b, c->payment_method);
	}
	put_now(b, "created_at");
	cqrs_strbuf_putc(b, '}');
	return 0;
}

int order_confirm(const struct command *c, const struct aggregate *a, const struct decide_ctx *ctx,
		  struct decision *d, cqrs_error *err)
{
	(void)ctx;
	(void)err;
	char name[64];
	if (order_refused(c, a, d, name, sizeof name))
		return 0;
	struct cqrs_strbuf *b = decision_emit(d, "OrderConfirmed");
	cqrs_strbuf_putc(b, '{');
	if (HAS(c, F_NOTE)) {
		jb_key(b, "note");
		jb_str(b, c->note);
	}
	if (c->automated) {
		jb_key(b, "by");
		jb_str(b, "saga");
	}
	cqrs_strbuf_putc(b, '}');
	return 0;
}

int order_pay(const struct command *c, const struct aggregate *a, const struct decide_ctx *ctx,
	      struct decision *d, cqrs_error *err)
{
	(void)ctx;
	(void)err;
	char name[64];
	if (order_refused(c, a, d, name, sizeof name))
		return 0;
	const struct order_state *o = &a->u.order;
	if (HAS(c, F_CURRENCY) && strcmp(c->currency, o->currency) != 0)
		return reject(d, "invalid",
			      "payment currency '%s' does not match the currency of order %s (%s)",
			      c->currency, name, o->currency);
	int64_t amount;
	if (reject_amount(d, "amount", c->amount, c->amount_len, o->currency, false, &amount))
		return 0;
	if (amount != o->total) {
		char paid[40], total[40];
		cqrs_money_format(amount, o->currency, paid, sizeof paid);
		cqrs_money_format(o->total, o->currency, total, sizeof total);
		return reject(d, "invalid",
			      "payment of %s %s does not match the total of order %s (%s %s)", paid,
			      o->currency, name, total, o->currency);
	}
	struct cqrs_strbuf *b = decision_emit(d, "PaymentProcessed");
	cqrs_strbuf_putc(b, '{');
	jb_key(b, "payment_id");
	jb_uuid(b, c->payment_id);
	jb_key(b, "amount");
	jb_money(b, amount, o->currency);
	jb_key(b, "currency");
	jb_str(b, o->currency);
	if (HAS(c, F_PAYMENT_METHOD)) {
		jb_key(b, "payment_method");
		jb_str(b, c->payment_method);
	}
	put_now(b, "processed_at");
	cqrs_strbuf_putc(b, '}');
	return 0;
}

static void stock_event(struct decision *d, int k, const char *type, const uint8_t order_id[],
			int64_t q)
{
	struct cqrs_strbuf *b = decision_emit_to(d, k, type);
	cqrs_strbuf_putc(b, '{');
	jb_key(b, "order_id");
	jb_uuid(b, order_id);
	jb_key(b, "quantity");
	jb_int(b, q);
	cqrs_strbuf_putc(b, '}');
}

/* A shipment takes each line's units out of the order's reservation; what
 * the order held beyond them goes back to available (a shipped order holds
 * nothing). */
int order_ship(const struct command *c, const struct aggregate *a, const struct decide_ctx *ctx,
	       struct decision *d, cqrs_error *err)
{
	(void)err;
	char name[64];
	if (order_refused(c, a, d, name, sizeof name))
		return 0;
	const struct order_state *o = &a->u.order;
	if (ctx->nrelated != o->nlines)
		return reject(d, "not_enough_held", "cannot ship order %s: its stock is not loaded",
			      name);
	for (int k = 0; k < o->nlines; k++) {
		int64_t held = inventory_held(&ctx->related[k].u.inv, a->id);
		if (held < o->lines[k].quantity) {
			char id[37];
			cqrs_uuid_format(o->lines[k].product_id, id);
			return reject(
				d, "not_enough_held",
				"cannot ship order %s: it holds %lld of product %s, and needs "
				"%lld",
				name, (long long)held, id, (long long)o->lines[k].quantity);
		}
	}
	char now[CQRS_TIMESTAMP_LEN + 1];
	const char *at = c->shipped_at;
	if (!HAS(c, F_SHIPPED_AT)) {
		cqrs_timestamp_now(now);
		at = now;
	}
	/* event_version 2: what the carrier gave, in one object
	 * (share/upcasters/orders.yaml brings version 1 here) */
	struct cqrs_strbuf *b = decision_emit(d, "OrderShipped");
	cqrs_strbuf_putc(b, '{');
	jb_key(b, "shipment");
	cqrs_strbuf_putc(b, '{');
	jb_key(b, "tracking_number");
	jb_str(b, c->tracking_number);
	jb_key(b, "carrier");
	jb_str(b, c->carrier);
	cqrs_strbuf_putc(b, '}');
	jb_key(b, "shipped_at");
	jb_str(b, at);
	cqrs_strbuf_putc(b, '}');
	for (int k = 0; k < o->nlines; k++) {
		int64_t held = inventory_held(&ctx->related[k].u.inv, a->id);
		stock_event(d, k, "InventoryShipped", a->id, o->lines[k].quantity);
		if (held > o->lines[k].quantity)
			stock_event(d, k, "InventoryReleased", a->id, held - o->lines[k].quantity);
	}
	return 0;
}

int order_cancel(const struct command *c, const struct aggregate *a, const struct decide_ctx *ctx,
		 struct decision *d, cqrs_error *err)
{
	(void)err;
	char name[64];
	if (order_refused(c, a, d, name, sizeof name))
		return 0;
	const struct order_state *o = &a->u.order;
	if (c->automated && o->confirmed && !o->confirmed_by_saga)
		return reject(d, "person_decision",
			      "order %s was confirmed by a person: it is left to a person, not "
			      "cancelled automatically",
			      name);
	struct cqrs_strbuf *b = decision_emit(d, "OrderCancelled");
	cqrs_strbuf_putc(b, '{');
	jb_key(b, "reason");
	jb_str(b, c->reason);
	if (c->automated) {
		jb_key(b, "by");
		jb_str(b, "saga");
	}
	put_now(b, "cancelled_at");
	cqrs_strbuf_putc(b, '}');
	/* A cancellation undoes exactly what the order holds at this moment,
	 * whoever reserved it (a person or the saga), in the same transaction:
	 * stock held by a cancelled order is never stranded. */
	for (int k = 0; k < ctx->nrelated && k < o->nlines; k++) {
		int64_t held = inventory_held(&ctx->related[k].u.inv, a->id);
		if (held > 0)
			stock_event(d, k, "InventoryReleased", a->id, held);
	}
	return 0;
}
