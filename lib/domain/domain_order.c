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
		o->exists = true;
	} else if (strcmp(t, "OrderConfirmed") == 0) {
		o->confirmed = true;
	} else if (strcmp(t, "PaymentProcessed") == 0) {
		o->paid = true;
	} else if (strcmp(t, "OrderShipped") == 0) {
		o->shipped = true;
	} else if (strcmp(t, "OrderCancelled") == 0) {
		o->cancelled = true;
	}
	return 0;
}

static void save(const struct aggregate *a, struct cqrs_strbuf *b)
{
	const struct order_state *o = &a->u.order;
	jb_key(b, "exists");
	jb_bool(b, o->exists);
	if (o->exists) {
		jb_key(b, "order_number");
		jb_str(b, o->number);
		jb_key(b, "currency");
		jb_str(b, o->currency);
		jb_key(b, "total");
		jb_money(b, o->total, o->currency);
	}
	jb_key(b, "confirmed");
	jb_bool(b, o->confirmed);
	jb_key(b, "paid");
	jb_bool(b, o->paid);
	jb_key(b, "shipped");
	jb_bool(b, o->shipped);
	jb_key(b, "cancelled");
	jb_bool(b, o->cancelled);
}

static int restore(struct aggregate *a, const char *s, size_t n)
{
	struct order_state *o = &a->u.order;
	if (jv_bool(s, n, "exists", &o->exists) < 0 ||
	    jv_bool(s, n, "confirmed", &o->confirmed) < 0 || jv_bool(s, n, "paid", &o->paid) < 0 ||
	    jv_bool(s, n, "shipped", &o->shipped) < 0 ||
	    jv_bool(s, n, "cancelled", &o->cancelled) < 0)
		return -1;
	if (!o->exists)
		return 0;
	if (jv_string(s, n, "order_number", o->number, sizeof o->number) < 0 ||
	    jv_string(s, n, "currency", o->currency, sizeof o->currency) < 0 ||
	    !cqrs_currency_valid(o->currency) ||
	    jv_money(s, n, "total", o->currency, &o->total) < 0)
		return -1;
	return 0;
}

const struct domain domain_order = { "Order", "order", apply, save, restore };

int order_create(const struct command *c, const struct aggregate *a, const struct decide_ctx *ctx,
		 struct decision *d, cqrs_error *err)
{
	if (reject_existing(d, a, &domain_order))
		return 0;
	if (!cqrs_currency_valid(c->currency))
		return reject(d, "currency '%s' is not a three-letter code such as USD",
			      c->currency);
	if (c->nitems == 0)
		return reject(d, "an order needs at least one item");

	/* Validate every item before the order number is taken. */
	int64_t total = 0;
	for (size_t i = 0; i < c->nitems; i++) {
		const struct cmd_item *it = &c->items[i];
		char what[64];
		int64_t q, price, line;
		snprintf(what, sizeof what, "item %zu: quantity", i + 1);
		if (reject_quantity(d, what, it->quantity, it->quantity_len, &q))
			return 0;
		snprintf(what, sizeof what, "item %zu: unit price", i + 1);
		if (reject_amount(d, what, it->unit_price, it->unit_price_len, c->currency, &price))
			return 0;
		if (__builtin_mul_overflow(q, price, &line) ||
		    __builtin_add_overflow(total, line, &total) || total > DOM_MAX_AMOUNT)
			return reject(d, "the order total is too large");
	}

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
	jb_key(b, "currency");
	jb_str(b, c->currency);
	jb_key(b, "total");
	jb_money(b, total, c->currency);
	jb_key(b, "shipping_address");
	static const char *const parts[ADDR_PARTS] = { "name", "street", "city", "postal_code",
						       "country" };
	cqrs_strbuf_putc(b, '{');
	for (int i = 0; i < ADDR_PARTS; i++) {
		jb_key(b, parts[i]);
		jb_str(b, c->address[i]);
	}
	cqrs_strbuf_put(b, "}}", 2);
	return 0;
}

int order_confirm(const struct command *c, const struct aggregate *a, const struct decide_ctx *ctx,
		  struct decision *d, cqrs_error *err)
{
	(void)ctx;
	(void)err;
	char name[64];
	if (reject_missing(d, a, &domain_order, true))
		return 0;
	const struct order_state *o = &a->u.order;
	order_name(a, name, sizeof name);
	if (o->cancelled)
		return reject(d, "cannot confirm order %s: it was cancelled", name);
	if (o->shipped)
		return reject(d, "cannot confirm order %s: it has already been shipped", name);
	if (o->confirmed)
		return reject(d, "order %s is already confirmed", name);
	struct cqrs_strbuf *b = decision_emit(d, "OrderConfirmed");
	cqrs_strbuf_putc(b, '{');
	if (HAS(c, F_NOTE)) {
		jb_key(b, "note");
		jb_str(b, c->note);
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
	if (reject_missing(d, a, &domain_order, true))
		return 0;
	const struct order_state *o = &a->u.order;
	order_name(a, name, sizeof name);
	if (o->cancelled)
		return reject(d, "cannot pay for order %s: it was cancelled", name);
	if (o->paid)
		return reject(d, "order %s has already been paid", name);
	if (HAS(c, F_CURRENCY) && strcmp(c->currency, o->currency) != 0)
		return reject(d,
			      "payment currency '%s' does not match the currency of order %s (%s)",
			      c->currency, name, o->currency);
	int64_t amount;
	if (reject_amount(d, "amount", c->amount, c->amount_len, o->currency, &amount))
		return 0;
	if (amount != o->total) {
		char paid[40], total[40];
		cqrs_money_format(amount, o->currency, paid, sizeof paid);
		cqrs_money_format(o->total, o->currency, total, sizeof total);
		return reject(d, "payment of %s %s does not match the total of order %s (%s %s)",
			      paid, o->currency, name, total, o->currency);
	}
	struct cqrs_strbuf *b = decision_emit(d, "PaymentProcessed");
	cqrs_strbuf_putc(b, '{');
	jb_key(b, "payment_id");
	jb_uuid(b, c->payment_id);
	jb_key(b, "amount");
	jb_money(b, amount, o->currency);
	jb_key(b, "currency");
	jb_str(b, o->currency);
	cqrs_strbuf_putc(b, '}');
	return 0;
}

int order_ship(const struct command *c, const struct aggregate *a, const struct decide_ctx *ctx,
	       struct decision *d, cqrs_error *err)
{
	(void)ctx;
	(void)err;
	char name[64];
	if (reject_missing(d, a, &domain_order, true))
		return 0;
	const struct order_state *o = &a->u.order;
	order_name(a, name, sizeof name);
	if (o->cancelled)
		return reject(d, "cannot ship order %s: it was cancelled", name);
	if (o->shipped)
		return reject(d, "order %s has already been shipped", name);
	if (!o->paid)
		return reject(d, "cannot ship order %s: it has not been paid", name);
	char now[CQRS_TIMESTAMP_LEN + 1];
	const char *at = c->shipped_at;
	if (!HAS(c, F_SHIPPED_AT)) {
		cqrs_timestamp_now(now);
		at = now;
	}
	struct cqrs_strbuf *b = decision_emit(d, "OrderShipped");
	cqrs_strbuf_putc(b, '{');
	jb_key(b, "tracking_number");
	jb_str(b, c->tracking_number);
	jb_key(b, "carrier");
	jb_str(b, c->carrier);
	jb_key(b, "shipped_at");
	jb_str(b, at);
	cqrs_strbuf_putc(b, '}');
	return 0;
}

int order_cancel(const struct command *c, const struct aggregate *a, const struct decide_ctx *ctx,
		 struct decision *d, cqrs_error *err)
{
	(void)ctx;
	(void)err;
	char name[64];
	if (reject_missing(d, a, &domain_order, true))
		return 0;
	const struct order_state *o = &a->u.order;
	order_name(a, name, sizeof name);
	if (o->shipped)
		return reject(d, "cannot cancel order %s: it has already been shipped", name);
	if (o->cancelled)
		return reject(d, "order %s is already cancelled", name);
	struct cqrs_strbuf *b = decision_emit(d, "OrderCancelled");
	cqrs_strbuf_putc(b, '{');
	jb_key(b, "reason");
	jb_str(b, c->reason);
	cqrs_strbuf_putc(b, '}');
	return 0;
}
