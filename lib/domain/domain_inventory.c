/*
 * The inventory aggregate, one per product: stock is added by
 * replenishment, moved from available to reserved by a reservation and
 * back by a release, and never goes below zero on either side.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "domain/domain.h"
#include "banned.h"

int64_t inventory_held(const struct inventory_state *s, const uint8_t order_id[CQRS_UUID_LEN])
{
	for (size_t i = 0; i < s->nholds; i++)
		if (memcmp(s->holds[i].order_id, order_id, CQRS_UUID_LEN) == 0)
			return s->holds[i].quantity;
	return 0;
}

/* Adds delta to what order_id holds (an entry at 0 leaves, so the state
 * stays as small as the open orders). */
static int hold_add(struct inventory_state *s, const uint8_t order_id[CQRS_UUID_LEN], int64_t delta,
		    cqrs_error *err)
{
	size_t i;
	for (i = 0; i < s->nholds; i++)
		if (memcmp(s->holds[i].order_id, order_id, CQRS_UUID_LEN) == 0)
			break;
	if (i == s->nholds) {
		if (delta <= 0)
			return 0;
		if (s->nholds == s->holds_cap) {
			size_t cap = s->holds_cap ? s->holds_cap * 2 : 8;
			struct inventory_hold *p = realloc(s->holds, cap * sizeof *p);
			if (p == NULL)
				return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
			s->holds = p;
			s->holds_cap = cap;
		}
		memcpy(s->holds[i].order_id, order_id, CQRS_UUID_LEN);
		s->holds[i].quantity = 0;
		s->nholds++;
	}
	s->holds[i].quantity += delta;
	if (s->holds[i].quantity <= 0)
		s->holds[i] = s->holds[--s->nholds];
	return 0;
}

/* The stock events after registration: one order's units move. */
static int apply_move(struct aggregate *a, const cqrs_event *ev, int64_t q, cqrs_error *err)
{
	struct inventory_state *s = &a->u.inv;
	const char *t = ev->event_type;
	uint8_t order[CQRS_UUID_LEN];
	if (jv_uuid(ev->data, ev->data_len, "order_id", order) < 0)
		return agg_bad_event(a, ev, "no order_id", err);
	/* A release or shipment counts only what the order held: history
	 * written before holds were per order may release more. */
	int64_t held = inventory_held(s, order);
	int64_t take = q < held ? q : held;
	if (strcmp(t, "InventoryReserved") == 0) {
		s->reserved += q;
		return hold_add(s, order, q, err);
	}
	s->reserved -= take;
	if (strcmp(t, "InventoryShipped") == 0) {
		s->on_hand -= q;
		s->shipped += q;
	}
	return hold_add(s, order, -take, err);
}

static int apply(struct aggregate *a, const cqrs_event *ev, cqrs_error *err)
{
	struct inventory_state *s = &a->u.inv;
	const char *d = ev->data;
	size_t n = ev->data_len;
	const char *t = ev->event_type;
	int64_t q;
	if (strcmp(t, "ProductRegistered") == 0) {
		if (jv_string(d, n, "sku", s->sku, sizeof s->sku) < 0 ||
		    jv_string(d, n, "name", s->name, sizeof s->name) < 0)
			return agg_bad_event(a, ev, "no sku or name", err);
		s->exists = true;
		return 0;
	}
	bool replenish = strcmp(t, "StockReplenished") == 0;
	if (!replenish && strcmp(t, "InventoryReserved") != 0 &&
	    strcmp(t, "InventoryReleased") != 0 && strcmp(t, "InventoryShipped") != 0)
		return 0;
	if (jv_count(d, n, "quantity", &q) < 0 || q <= 0 || q > DOM_MAX_COUNT)
		return agg_bad_event(a, ev, "no valid quantity", err);
	if (replenish) {
		s->on_hand += q;
		s->received += q;
	} else if (apply_move(a, ev, q, err) < 0) {
		return -1;
	}
	/* Events appended around the rules (cqrs-append) must not make the
	 * rules decide on nonsense: the invariants hold after every event. */
	if (s->on_hand < 0 || s->reserved < 0 || s->on_hand - s->reserved < 0 ||
	    s->shipped > s->received || s->received > DOM_MAX_STOCK)
		return agg_bad_event(a, ev, "the stock it leaves is out of range", err);
	return 0;
}

static void save(const struct aggregate *a, struct cqrs_strbuf *b)
{
	const struct inventory_state *s = &a->u.inv;
	jb_key(b, "exists");
	jb_bool(b, s->exists);
	if (s->exists) {
		jb_key(b, "sku");
		jb_str(b, s->sku);
		jb_key(b, "name");
		jb_str(b, s->name);
	}
	jb_key(b, "on_hand");
	jb_int(b, s->on_hand);
	jb_key(b, "reserved");
	jb_int(b, s->reserved);
	jb_key(b, "available");
	jb_int(b, s->on_hand - s->reserved);
	jb_key(b, "shipped");
	jb_int(b, s->shipped);
	jb_key(b, "received");
	jb_int(b, s->received);
	jb_key(b, "holds");
	cqrs_strbuf_putc(b, '[');
	for (size_t i = 0; i < s->nholds; i++) {
		if (i > 0)
			cqrs_strbuf_putc(b, ',');
		cqrs_strbuf_putc(b, '{');
		jb_key(b, "order_id");
		jb_uuid(b, s->holds[i].order_id);
		jb_key(b, "quantity");
		jb_int(b, s->holds[i].quantity);
		cqrs_strbuf_putc(b, '}');
	}
	cqrs_strbuf_putc(b, ']');
}

static int restore(struct aggregate *a, const char *j, size_t n)
{
	struct inventory_state *s = &a->u.inv;
	if (jv_bool(j, n, "exists", &s->exists) < 0 || jv_count(j, n, "on_hand", &s->on_hand) < 0 ||
	    jv_count(j, n, "reserved", &s->reserved) < 0 ||
	    jv_count(j, n, "shipped", &s->shipped) < 0 ||
	    jv_count(j, n, "received", &s->received) < 0 || s->received > DOM_MAX_STOCK ||
	    s->on_hand < s->reserved || s->shipped > s->received)
		return -1;
	if (s->exists && (jv_string(j, n, "sku", s->sku, sizeof s->sku) < 0 ||
			  jv_string(j, n, "name", s->name, sizeof s->name) < 0))
		return -1;
	const char *v, *e;
	size_t vn, en, pos = 0;
	if (!cqrs_json_get(j, n, "holds", &v, &vn) || v[0] != '[')
		return -1;
	int64_t sum = 0;
	while (cqrs_json_next_element(v, vn, &pos, &e, &en) == 1) {
		uint8_t order[CQRS_UUID_LEN];
		int64_t q;
		if (e[0] != '{' || jv_uuid(e, en, "order_id", order) < 0 ||
		    jv_count(e, en, "quantity", &q) < 0 || q <= 0 || q > s->reserved ||
		    hold_add(s, order, q, NULL) < 0)
			return -1;
		sum += q;
	}
	return sum == s->reserved ? 0 : -1;
}

const struct domain domain_inventory = { "Inventory", "product", apply, save, restore };

int inventory_register(const struct command *c, const struct aggregate *a,
		       const struct decide_ctx *ctx, struct decision *d, cqrs_error *err)
{
	(void)ctx;
	(void)err;
	if (reject_existing(d, a, &domain_inventory))
		return 0;
	int64_t q = 0;
	if (HAS(c, F_QUANTITY) &&
	    reject_quantity(d, "initial quantity", c->quantity, c->quantity_len, &q))
		return 0;
	struct cqrs_strbuf *b = decision_emit(d, "ProductRegistered");
	cqrs_strbuf_putc(b, '{');
	jb_key(b, "sku");
	jb_str(b, c->sku);
	jb_key(b, "name");
	jb_str(b, c->name);
	cqrs_strbuf_putc(b, '}');
	if (q > 0) {
		b = decision_emit(d, "StockReplenished");
		cqrs_strbuf_putc(b, '{');
		jb_key(b, "quantity");
		jb_int(b, q);
		cqrs_strbuf_putc(b, '}');
	}
	return 0;
}

int inventory_replenish(const struct command *c, const struct aggregate *a,
			const struct decide_ctx *ctx, struct decision *d, cqrs_error *err)
{
	(void)ctx;
	(void)err;
	if (reject_missing(d, a, &domain_inventory, true))
		return 0;
	const struct inventory_state *s = &a->u.inv;
	int64_t q;
	if (reject_quantity(d, "quantity", c->quantity, c->quantity_len, &q))
		return 0;
	if (s->received + q > DOM_MAX_STOCK)
		return reject(d, "invalid",
			      "cannot add %lld to the stock of %s: it would exceed %lld units",
			      (long long)q, s->sku, (long long)DOM_MAX_STOCK);
	struct cqrs_strbuf *b = decision_emit(d, "StockReplenished");
	cqrs_strbuf_putc(b, '{');
	jb_key(b, "quantity");
	jb_int(b, q);
	cqrs_strbuf_putc(b, '}');
	return 0;
}

static void move_event(struct decision *d, const char *type, const struct command *c, int64_t q)
{
	struct cqrs_strbuf *b = decision_emit(d, type);
	cqrs_strbuf_putc(b, '{');
	jb_key(b, "order_id");
	jb_uuid(b, c->order_id);
	jb_key(b, "quantity");
	jb_int(b, q);
	cqrs_strbuf_putc(b, '}');
}

/* "ORD-2026-000001" once the order exists, its id before */
static void order_name(const struct command *c, const struct decide_ctx *ctx, char *buf, size_t cap)
{
	if (ctx->nrelated > 0 && ctx->related[0].kind == AGG_ORDER &&
	    ctx->related[0].u.order.exists) {
		snprintf(buf, cap, "%s", ctx->related[0].u.order.number);
	} else {
		char id[37];
		cqrs_uuid_format(c->order_id, id);
		snprintf(buf, cap, "%s", id);
	}
}

/* The units of product the order's items need in all, 0 when the order is
 * not known. */
static int64_t order_needs(const struct aggregate *o, const uint8_t product[CQRS_UUID_LEN])
{
	if (o->kind != AGG_ORDER || !o->u.order.exists)
		return 0;
	for (int k = 0; k < o->u.order.nlines; k++)
		if (memcmp(o->u.order.lines[k].product_id, product, CQRS_UUID_LEN) == 0)
			return o->u.order.lines[k].quantity;
	return 0;
}

int inventory_reserve(const struct command *c, const struct aggregate *a,
		      const struct decide_ctx *ctx, struct decision *d, cqrs_error *err)
{
	(void)err;
	char order[64];
	if (reject_missing(d, a, &domain_inventory, true))
		return 0;
	order_name(c, ctx, order, sizeof order);
	static const struct aggregate none = { .kind = AGG_ORDER };
	const struct aggregate *o = ctx->nrelated > 0 ? &ctx->related[0] : &none;
	/* With if_needed the goal is also what the order needs of the product
	 * in all: an order may name it on several lines, which the saga
	 * reserves one by one, and the first must not stand for the others.
	 * (ReserveInventory has no deny rows for lc_check to apply.) */
	bool short_of_order =
		c->if_needed && inventory_held(&a->u.inv, c->order_id) < order_needs(o, a->id);
	if (lc_check_order(d, c, o, order) ||
	    (!short_of_order && lc_check(d, c, a, a->u.inv.sku, NULL)))
		return 0;
	const struct inventory_state *s = &a->u.inv;
	int64_t q;
	if (reject_quantity(d, "quantity", c->quantity, c->quantity_len, &q))
		return 0;
	if (q > s->on_hand - s->reserved)
		return reject(d, "insufficient_stock",
			      "cannot reserve %lld of %s: only %lld available", (long long)q,
			      s->sku, (long long)(s->on_hand - s->reserved));
	move_event(d, "InventoryReserved", c, q);
	return 0;
}

int inventory_release(const struct command *c, const struct aggregate *a,
		      const struct decide_ctx *ctx, struct decision *d, cqrs_error *err)
{
	(void)err;
	char order[64];
	if (reject_missing(d, a, &domain_inventory, true))
		return 0;
	order_name(c, ctx, order, sizeof order);
	if (lc_check(d, c, a, order, a->u.inv.sku))
		return 0;
	int64_t held = inventory_held(&a->u.inv, c->order_id);
	int64_t q = held;
	if (HAS(c, F_QUANTITY) && reject_quantity(d, "quantity", c->quantity, c->quantity_len, &q))
		return 0;
	if (q > held)
		return reject(d, "not_enough_held",
			      "cannot release %lld of %s: order %s holds %lld", (long long)q,
			      a->u.inv.sku, order, (long long)held);
	move_event(d, "InventoryReleased", c, q);
	return 0;
}
