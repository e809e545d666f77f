/*
 * The inventory aggregate, one per product: stock is added by
 * replenishment, moved from available to reserved by a reservation and
 * back by a release, and never goes below zero on either side.
 */
#include "config.h"

#include <string.h>

#include "domain/domain.h"
#include "banned.h"

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
	bool reserve = strcmp(t, "InventoryReserved") == 0;
	bool release = strcmp(t, "InventoryReleased") == 0;
	if (!replenish && !reserve && !release)
		return 0;
	if (jv_count(d, n, "quantity", &q) < 0 || q <= 0 || q > DOM_MAX_COUNT)
		return agg_bad_event(a, ev, "no valid quantity", err);
	if (replenish) {
		s->available += q;
	} else if (reserve) {
		s->available -= q;
		s->reserved += q;
	} else {
		s->reserved -= q;
		s->available += q;
	}
	/* Events appended around the rules (cqrs-append) must not make the
	 * rules decide on nonsense. */
	if (s->available < 0 || s->reserved < 0 || s->available > DOM_MAX_STOCK)
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
	jb_key(b, "available");
	jb_int(b, s->available);
	jb_key(b, "reserved");
	jb_int(b, s->reserved);
}

static int restore(struct aggregate *a, const char *j, size_t n)
{
	struct inventory_state *s = &a->u.inv;
	if (jv_bool(j, n, "exists", &s->exists) < 0 ||
	    jv_count(j, n, "available", &s->available) < 0 ||
	    jv_count(j, n, "reserved", &s->reserved) < 0 || s->available > DOM_MAX_STOCK ||
	    s->reserved > DOM_MAX_STOCK)
		return -1;
	if (s->exists && (jv_string(j, n, "sku", s->sku, sizeof s->sku) < 0 ||
			  jv_string(j, n, "name", s->name, sizeof s->name) < 0))
		return -1;
	return 0;
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
	if (s->available + s->reserved + q > DOM_MAX_STOCK)
		return reject(d, "cannot add %lld to the stock of %s: it would exceed %lld units",
			      (long long)q, s->sku, (long long)DOM_MAX_STOCK);
	struct cqrs_strbuf *b = decision_emit(d, "StockReplenished");
	cqrs_strbuf_putc(b, '{');
	jb_key(b, "quantity");
	jb_int(b, q);
	cqrs_strbuf_putc(b, '}');
	return 0;
}

static int move(const struct command *c, const struct aggregate *a, struct decision *d,
		bool reserve)
{
	if (reject_missing(d, a, &domain_inventory, true))
		return 0;
	const struct inventory_state *s = &a->u.inv;
	int64_t q;
	if (reject_quantity(d, "quantity", c->quantity, c->quantity_len, &q))
		return 0;
	if (reserve && q > s->available)
		return reject(d, "cannot reserve %lld of %s: only %lld available", (long long)q,
			      s->sku, (long long)s->available);
	if (!reserve && q > s->reserved)
		return reject(d, "cannot release %lld of %s: only %lld reserved", (long long)q,
			      s->sku, (long long)s->reserved);
	struct cqrs_strbuf *b =
		decision_emit(d, reserve ? "InventoryReserved" : "InventoryReleased");
	cqrs_strbuf_putc(b, '{');
	jb_key(b, "order_id");
	jb_uuid(b, c->order_id);
	jb_key(b, "quantity");
	jb_int(b, q);
	cqrs_strbuf_putc(b, '}');
	return 0;
}

int inventory_reserve(const struct command *c, const struct aggregate *a,
		      const struct decide_ctx *ctx, struct decision *d, cqrs_error *err)
{
	(void)ctx;
	(void)err;
	return move(c, a, d, true);
}

int inventory_release(const struct command *c, const struct aggregate *a,
		      const struct decide_ctx *ctx, struct decision *d, cqrs_error *err)
{
	(void)ctx;
	(void)err;
	return move(c, a, d, false);
}
