/*
 * The domain's pure functions without a store: decisions on hand-made
 * states, the exact text of the events they write, folding events, and
 * snapshots that give back the state they were taken from.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "domain/domain.h"
#include "unit.h"
#include "banned.h"

static const uint8_t ID[CQRS_UUID_LEN] = { 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x41, 0x11,
					   0x81, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11 };
static int numbers_taken;

static int fixed_number(void *arg, char out[DOM_NUMBER], cqrs_error *err)
{
	(void)arg;
	(void)err;
	numbers_taken++;
	snprintf(out, DOM_NUMBER, "ORD-2026-000007");
	return 0;
}

static const struct decide_ctx ctx = { fixed_number, NULL, NULL, 0 };

static const uint8_t ORDER[CQRS_UUID_LEN] = { 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x42, 0x22,
					      0x82, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22 };
#define ORDER_TEXT "22222222-2222-4222-8222-222222222222"

/* a fresh aggregate (its memory of an earlier use freed) */
static void fresh(struct aggregate *a, enum agg_kind kind)
{
	agg_init(a, kind, ID);
}

static struct decision *new_decision(void)
{
	static struct decision d;
	d.rejected = false;
	d.nevents = 0;
	d.reason[0] = '\0';
	return &d;
}

/* Folds an event of the aggregate's own type with the given data. */
static int fold(struct aggregate *a, const char *type, const char *data)
{
	cqrs_event ev;
	memset(&ev, 0, sizeof ev);
	memcpy(ev.aggregate_id, a->id, CQRS_UUID_LEN);
	snprintf(ev.aggregate_type, sizeof ev.aggregate_type, "%s", domain_of(a->kind)->type);
	snprintf(ev.event_type, sizeof ev.event_type, "%s", type);
	ev.aggregate_version = a->version + 1;
	ev.data = data;
	ev.data_len = strlen(data);
	ev.metadata = "{\"correlation_id\":\"corr-1\"}";
	ev.metadata_len = strlen(ev.metadata);
	cqrs_error err;
	return agg_fold(a, &ev, &err);
}

/* Folds the events a decision made, as the store would give them back. */
static void fold_decision(struct aggregate *a, const struct decision *d)
{
	for (int i = 0; i < d->nevents; i++)
		CHECK(fold(a, d->event_type[i], d->data[i].p) == 0, "%s", d->event_type[i]);
}

static struct command *command(enum cmd_type type)
{
	static struct command c;
	static struct cmd_item items[4];
	memset(&c, 0, sizeof c);
	memset(items, 0, sizeof items);
	c.type = type;
	c.items = items;
	snprintf(c.command_id, sizeof c.command_id, "cmd-1");
	return &c;
}

static void item(struct command *c, const char *sku, const char *qty, const char *price)
{
	struct cmd_item *it = &c->items[c->nitems++];
	memcpy(it->product_id, ID, CQRS_UUID_LEN);
	snprintf(it->sku, sizeof it->sku, "%s", sku);
	it->quantity = qty;
	it->quantity_len = strlen(qty);
	it->unit_price = price;
	it->unit_price_len = strlen(price);
}

static void create_order(struct command *c, const char *currency)
{
	c->seen |=
		1u << F_CUSTOMER_ID | 1u << F_ITEMS | 1u << F_CURRENCY | 1u << F_SHIPPING_ADDRESS;
	snprintf(c->customer_id, sizeof c->customer_id, "cust-42");
	snprintf(c->currency, sizeof c->currency, "%s", currency);
	static const char *const parts[ADDR_PARTS] = { "Ada", "12 St James Sq", "London",
						       "",    "SW1Y 4JH",	"GB" };
	for (int i = 0; i < ADDR_PARTS; i++)
		snprintf(c->address[i], sizeof c->address[i], "%s", parts[i]);
}

static void test_create_order(void)
{
	struct aggregate a = { 0 };
	struct decision *d = new_decision();
	cqrs_error err;
	struct command *c = command(CMD_CREATE_ORDER);
	create_order(c, "USD");
	item(c, "SKU-1", "3", "0.10");
	item(c, "SKU-\"2\"", "1", "0.2");
	fresh(&a, AGG_ORDER);
	numbers_taken = 0;
	CHECK(order_create(c, &a, &ctx, d, &err) == 0 && !d->rejected, "%s", d->reason);
	CHECK(d->nevents == 1 && strcmp(d->event_type[0], "OrderCreated") == 0, "one event");
	CHECK(strncmp(d->data[0].p,
		      "{\"order_number\":\"ORD-2026-000007\",\"customer_id\":\"cust-42\",\"items\":"
		      "["
		      "{\"product_id\":\"11111111-1111-4111-8111-111111111111\",\"sku\":\"SKU-1\","
		      "\"quantity\":3,\"unit_price\":0.10},"
		      "{\"product_id\":\"11111111-1111-4111-8111-111111111111\",\"sku\":\"SKU-"
		      "\\\"2\\\"\","
		      "\"quantity\":1,\"unit_price\":0.20}],\"currency\":\"USD\",\"total\":0.50,"
		      "\"shipping_address\":{\"name\":\"Ada\",\"street\":\"12 St James Sq\","
		      "\"city\":\"London\",\"postal_code\":\"SW1Y 4JH\",\"country\":\"GB\"},"
		      "\"created_at\":\"",
		      strlen(d->data[0].p) - 30) == 0,
	      "%s", d->data[0].p);
	CHECK(numbers_taken == 1, "one number");
	fold_decision(&a, d);
	CHECK(a.u.order.exists && a.u.order.total == 50 &&
		      strcmp(a.u.order.number, "ORD-2026-000007") == 0 &&
		      a.u.order.status == ORDER_PENDING,
	      "state after OrderCreated");
	/* two items of one product: one line of 4 units */
	CHECK(a.u.order.nlines == 1 && a.u.order.lines[0].quantity == 4, "lines %d",
	      a.u.order.nlines);
	CHECK(strcmp(a.correlation, "corr-1") == 0, "correlation of the first event");

	/* rejected commands take no number */
	numbers_taken = 0;
	c = command(CMD_CREATE_ORDER);
	create_order(c, "JPY");
	item(c, "S", "1", "1.5");
	fresh(&a, AGG_ORDER);
	d = new_decision();
	CHECK(order_create(c, &a, &ctx, d, &err) == 0 && d->rejected, "JPY has no decimals");
	CHECK(strcmp(d->reason, "item 1: unit price 1.5 has more decimals than JPY allows (0)") ==
		      0,
	      "%s", d->reason);
	c = command(CMD_CREATE_ORDER);
	create_order(c, "USD");
	item(c, "S", "1000000000", "99999999999.99");
	d = new_decision();
	CHECK(order_create(c, &a, &ctx, d, &err) == 0 && d->rejected &&
		      strcmp(d->reason, "the order total is too large") == 0,
	      "%s", d->reason);
	c = command(CMD_CREATE_ORDER);
	create_order(c, "usd");
	item(c, "S", "1", "1");
	d = new_decision();
	CHECK(order_create(c, &a, &ctx, d, &err) == 0 && d->rejected, "lowercase currency");
	CHECK(numbers_taken == 0, "no number taken by a rejection");
}

#define CREATED                                                                                    \
	"{\"order_number\":\"ORD-2026-000001\",\"currency\":\"USD\",\"total\":59.98,"              \
	"\"items\":[{\"product_id\":\"11111111-1111-4111-8111-111111111111\",\"quantity\":2}]}"

static void test_order_lifecycle(void)
{
	struct aggregate a = { 0 };
	cqrs_error err;
	fresh(&a, AGG_ORDER);
	CHECK(fold(&a, "OrderCreated", CREATED) == 0, "created");
	struct command *c = command(CMD_SHIP_ORDER);
	snprintf(c->carrier, sizeof c->carrier, "FedEx");
	snprintf(c->tracking_number, sizeof c->tracking_number, "T1");
	struct decision *d = new_decision();
	CHECK(order_ship(c, &a, &ctx, d, &err) == 0 && d->rejected &&
		      strcmp(d->reason,
			     "cannot ship order ORD-2026-000001: it has not been paid") == 0,
	      "%s", d->reason);
	c = command(CMD_CONFIRM_PAYMENT);
	c->amount = "59.98";
	c->amount_len = 5;
	memcpy(c->payment_id, ID, CQRS_UUID_LEN);
	d = new_decision();
	CHECK(order_pay(c, &a, &ctx, d, &err) == 0 && !d->rejected, "%s", d->reason);
	CHECK(strncmp(d->data[0].p,
		      "{\"payment_id\":\"11111111-1111-4111-8111-111111111111\","
		      "\"amount\":59.98,\"currency\":\"USD\",\"processed_at\":\"",
		      93) == 0,
	      "%s", d->data[0].p);
	fold_decision(&a, d);
	d = new_decision();
	CHECK(order_pay(c, &a, &ctx, d, &err) == 0 && d->rejected, "paid twice");
	c = command(CMD_CANCEL_ORDER);
	snprintf(c->reason, sizeof c->reason, "late");
	d = new_decision();
	CHECK(order_cancel(c, &a, &ctx, d, &err) == 0 && !d->rejected, "cancel a paid order");
	fold_decision(&a, d);
	c = command(CMD_SHIP_ORDER);
	d = new_decision();
	CHECK(order_ship(c, &a, &ctx, d, &err) == 0 && d->rejected &&
		      strstr(d->reason, "it was cancelled") != NULL,
	      "%s", d->reason);
}

static void test_inventory(void)
{
	struct aggregate a = { 0 }, order = { 0 };
	cqrs_error err;
	agg_init(&order, AGG_ORDER, ORDER);
	CHECK(fold(&order, "OrderCreated", CREATED) == 0, "order");
	struct decide_ctx with_order = { fixed_number, NULL, &order, 1 };
	fresh(&a, AGG_INVENTORY);
	CHECK(fold(&a, "ProductRegistered", "{\"sku\":\"SKU-1\",\"name\":\"W\"}") == 0, "reg");
	CHECK(fold(&a, "StockReplenished", "{\"quantity\":5}") == 0, "5 in");
	struct command *c = command(CMD_RESERVE_INVENTORY);
	memcpy(c->order_id, ORDER, CQRS_UUID_LEN);
	c->quantity = "6";
	c->quantity_len = 1;
	struct decision *d = new_decision();
	CHECK(inventory_reserve(c, &a, &with_order, d, &err) == 0 && d->rejected &&
		      strcmp(d->code, "insufficient_stock") == 0 &&
		      strcmp(d->reason, "cannot reserve 6 of SKU-1: only 5 available") == 0,
	      "%s", d->reason);
	/* no order: not_found, whatever the stock */
	c->quantity = "5";
	d = new_decision();
	CHECK(inventory_reserve(c, &a, &ctx, d, &err) == 0 && d->rejected &&
		      strcmp(d->code, "not_found") == 0,
	      "%s", d->reason);
	d = new_decision();
	CHECK(inventory_reserve(c, &a, &with_order, d, &err) == 0 && !d->rejected, "%s", d->reason);
	fold_decision(&a, d);
	CHECK(a.u.inv.on_hand == 5 && a.u.inv.reserved == 5 && inventory_held(&a.u.inv, ORDER) == 5,
	      "held");
	/* the goal holds: unchanged with if_needed, a second reservation without */
	c->if_needed = true;
	d = new_decision();
	CHECK(inventory_reserve(c, &a, &with_order, d, &err) == 0 && d->unchanged &&
		      d->nevents == 0,
	      "reserve if_needed");
	c = command(CMD_RELEASE_INVENTORY);
	memcpy(c->order_id, ORDER, CQRS_UUID_LEN);
	c->seen = 1u << F_QUANTITY;
	c->quantity = "6";
	c->quantity_len = 1;
	d = new_decision();
	CHECK(inventory_release(c, &a, &with_order, d, &err) == 0 && d->rejected &&
		      strcmp(d->code, "not_enough_held") == 0,
	      "release beyond: %s", d->reason);
	c->seen = 0; /* all the order holds */
	d = new_decision();
	CHECK(inventory_release(c, &a, &with_order, d, &err) == 0 && !d->rejected &&
		      strstr(d->data[0].p, "\"quantity\":5}") != NULL,
	      "%s", d->reason);
	fold_decision(&a, d);
	CHECK(a.u.inv.reserved == 0 && a.u.inv.nholds == 0, "the entry leaves at 0");
	d = new_decision();
	CHECK(inventory_release(c, &a, &with_order, d, &err) == 0 && d->rejected &&
		      strcmp(d->code, "nothing_held") == 0 &&
		      strcmp(d->reason, "order ORD-2026-000001 holds no SKU-1") == 0,
	      "%s", d->reason);
	c->if_needed = true;
	d = new_decision();
	CHECK(inventory_release(c, &a, &with_order, d, &err) == 0 && d->unchanged, "unchanged");
	/* stock that a stream appended around the rules would make negative */
	CHECK(fold(&a, "InventoryReserved", "{\"order_id\":\"" ORDER_TEXT "\",\"quantity\":6}") < 0,
	      "negative stock is unreadable");
	agg_clear(&a);
	agg_clear(&order);
}

/* ShipOrder: one decision, events for the order and each inventory. */
static void test_ship(void)
{
	struct aggregate order = { 0 }, inv = { 0 };
	cqrs_error err;
	agg_init(&order, AGG_ORDER, ORDER);
	CHECK(fold(&order, "OrderCreated", CREATED) == 0, "order");
	CHECK(fold(&order, "PaymentProcessed", "{}") == 0, "paid");
	fresh(&inv, AGG_INVENTORY);
	CHECK(fold(&inv, "ProductRegistered", "{\"sku\":\"SKU-1\",\"name\":\"W\"}") == 0, "reg");
	CHECK(fold(&inv, "StockReplenished", "{\"quantity\":9}") == 0, "in");
	CHECK(fold(&inv, "InventoryReserved", "{\"order_id\":\"" ORDER_TEXT "\",\"quantity\":1}") ==
		      0,
	      "1 held");
	struct decide_ctx rel = { fixed_number, NULL, &inv, 1 };
	struct command *c = command(CMD_SHIP_ORDER);
	struct decision *d = new_decision();
	CHECK(order_ship(c, &order, &rel, d, &err) == 0 && d->rejected &&
		      strcmp(d->code, "not_enough_held") == 0,
	      "%s", d->reason);
	CHECK(fold(&inv, "InventoryReserved", "{\"order_id\":\"" ORDER_TEXT "\",\"quantity\":2}") ==
		      0,
	      "3 held");
	d = new_decision();
	CHECK(order_ship(c, &order, &rel, d, &err) == 0 && !d->rejected, "%s", d->reason);
	CHECK(d->nevents == 3 && d->target[0] == -1 && d->target[1] == 0 &&
		      strcmp(d->event_type[1], "InventoryShipped") == 0 &&
		      strcmp(d->event_type[2], "InventoryReleased") == 0 &&
		      strstr(d->data[1].p, "\"quantity\":2}") != NULL &&
		      strstr(d->data[2].p, "\"quantity\":1}") != NULL,
	      "ship 2, release the extra 1");
	for (int i = 1; i < d->nevents; i++)
		CHECK(fold(&inv, d->event_type[i], d->data[i].p) == 0, "%s", d->event_type[i]);
	CHECK(inv.u.inv.on_hand == 7 && inv.u.inv.reserved == 0 && inv.u.inv.shipped == 2 &&
		      inv.u.inv.received == 9 && inv.u.inv.nholds == 0,
	      "after the shipment");
	agg_clear(&order);
	agg_clear(&inv);
}

/* The table's rules: states refused with codes, goals, automation. */
static void test_table(void)
{
	struct aggregate a = { 0 };
	cqrs_error err;
	fresh(&a, AGG_ORDER);
	CHECK(fold(&a, "OrderCreated", CREATED) == 0, "order");
	CHECK(strcmp(lc_state_name(AGG_ORDER, agg_status(&a)), "PENDING") == 0, "pending");
	struct command *c = command(CMD_CONFIRM_ORDER);
	CHECK(!lc_reached(c, &a), "not confirmed yet");
	/* a person confirms */
	struct decision *d = new_decision();
	CHECK(order_confirm(c, &a, &ctx, d, &err) == 0 && strcmp(d->data[0].p, "{}") == 0, "%s",
	      d->data[0].p);
	fold_decision(&a, d);
	CHECK(lc_reached(c, &a) &&
		      strcmp(lc_state_name(AGG_ORDER, agg_status(&a)), "CONFIRMED") == 0,
	      "confirmed");
	d = new_decision();
	CHECK(order_confirm(c, &a, &ctx, d, &err) == 0 && d->rejected &&
		      strcmp(d->code, "already_done") == 0,
	      "twice");
	c->if_needed = true;
	d = new_decision();
	CHECK(order_confirm(c, &a, &ctx, d, &err) == 0 && d->unchanged && !d->rejected, "goal");
	/* the saga may not cancel what a person confirmed */
	c = command(CMD_CANCEL_ORDER);
	c->automated = c->if_needed = true;
	d = new_decision();
	CHECK(order_cancel(c, &a, &ctx, d, &err) == 0 && d->rejected &&
		      strcmp(d->code, "person_decision") == 0,
	      "%s", d->reason);
	c->automated = false;
	d = new_decision();
	CHECK(order_cancel(c, &a, &ctx, d, &err) == 0 && !d->rejected &&
		      strstr(d->data[0].p, "\"cancelled_at\":") != NULL,
	      "a person may");
	fold_decision(&a, d);
	d = new_decision();
	CHECK(order_cancel(c, &a, &ctx, d, &err) == 0 && d->unchanged, "cancelled: goal");
	c = command(CMD_CONFIRM_PAYMENT);
	d = new_decision();
	CHECK(order_pay(c, &a, &ctx, d, &err) == 0 && d->rejected &&
		      strcmp(d->code, "not_allowed") == 0 &&
		      strcmp(d->reason, "cannot pay for order ORD-2026-000001: it was cancelled") ==
			      0,
	      "%s", d->reason);
	/* a saga's confirmation is the saga's to undo */
	fresh(&a, AGG_ORDER);
	CHECK(fold(&a, "OrderCreated", CREATED) == 0, "order");
	c = command(CMD_CONFIRM_ORDER);
	c->automated = true;
	d = new_decision();
	CHECK(order_confirm(c, &a, &ctx, d, &err) == 0 &&
		      strcmp(d->data[0].p, "{\"by\":\"saga\"}") == 0,
	      "%s", d->data[0].p);
	fold_decision(&a, d);
	CHECK(a.u.order.confirmed_by_saga, "by saga");
	c = command(CMD_CANCEL_ORDER);
	c->automated = true;
	d = new_decision();
	CHECK(order_cancel(c, &a, &ctx, d, &err) == 0 && !d->rejected &&
		      strstr(d->data[0].p, "\"by\":\"saga\"") != NULL,
	      "%s", d->reason);
	/* every format prints; an unknown one is a usage error */
	FILE *devnull = fopen("/dev/null", "w");
	CHECK(lc_print(devnull, "man", &err) == 0 && lc_print(devnull, "dot", &err) == 0 &&
		      lc_print(devnull, "ndjson", &err) == 0,
	      "formats");
	CHECK(lc_print(devnull, "xml", &err) < 0 && err.code == CQRS_EXIT_USAGE, "xml");
	fclose(devnull);
	agg_clear(&a);
}

static void test_payment(void)
{
	struct aggregate a = { 0 };
	cqrs_error err;
	fresh(&a, AGG_PAYMENT);
	CHECK(fold(&a, "PaymentAuthorized",
		   "{\"order_id\":\"11111111-1111-4111-8111-111111111111\",\"amount\":10.00,"
		   "\"currency\":\"USD\"}") == 0,
	      "authorized");
	struct command *c = command(CMD_CAPTURE_PAYMENT);
	c->seen = 1u << F_AMOUNT;
	c->amount = "10.01";
	c->amount_len = 5;
	struct decision *d = new_decision();
	CHECK(payment_capture(c, &a, &ctx, d, &err) == 0 && d->rejected, "capture too much");
	c->seen = 0; /* all that is left */
	d = new_decision();
	CHECK(payment_capture(c, &a, &ctx, d, &err) == 0 && !d->rejected, "%s", d->reason);
	CHECK(strstr(d->data[0].p, "\"amount\":10.00,") != NULL, "%s", d->data[0].p);
	fold_decision(&a, d);
	c = command(CMD_VOID_AUTHORIZATION);
	d = new_decision();
	CHECK(payment_void(c, &a, &ctx, d, &err) == 0 && d->rejected, "void after full capture");
	c = command(CMD_REFUND_PAYMENT);
	c->amount = "10.00";
	c->amount_len = 5;
	d = new_decision();
	CHECK(payment_refund(c, &a, &ctx, d, &err) == 0 && !d->rejected, "%s", d->reason);
	fold_decision(&a, d);
	c->amount = "0.01";
	c->amount_len = 4;
	d = new_decision();
	CHECK(payment_refund(c, &a, &ctx, d, &err) == 0 && d->rejected, "refund beyond");
	c->amount = "-0";
	c->amount_len = 2;
	d = new_decision();
	CHECK(payment_refund(c, &a, &ctx, d, &err) == 0 && d->rejected &&
		      strcmp(d->reason, "amount must not be negative: -0") == 0,
	      "%s", d->reason);
	/* CancelPayment: the open part voided, the captured part refunded */
	fresh(&a, AGG_PAYMENT);
	CHECK(fold(&a, "PaymentAuthorized",
		   "{\"order_id\":\"11111111-1111-4111-8111-111111111111\",\"amount\":10.00,"
		   "\"currency\":\"USD\"}") == 0,
	      "authorized");
	CHECK(fold(&a, "PaymentCaptured", "{\"amount\":4.00}") == 0, "captured");
	c = command(CMD_CANCEL_PAYMENT);
	d = new_decision();
	CHECK(payment_cancel(c, &a, &ctx, d, &err) == 0 && d->nevents == 2 &&
		      strcmp(d->event_type[0], "AuthorizationVoided") == 0 &&
		      strcmp(d->event_type[1], "PaymentRefunded") == 0 &&
		      strstr(d->data[1].p, "\"amount\":4.00,") != NULL,
	      "%s", d->reason);
	fold_decision(&a, d);
	d = new_decision();
	CHECK(payment_cancel(c, &a, &ctx, d, &err) == 0 && d->rejected &&
		      strcmp(d->code, "already_done") == 0,
	      "nothing left");
	c->if_needed = true;
	d = new_decision();
	CHECK(payment_cancel(c, &a, &ctx, d, &err) == 0 && d->unchanged, "unchanged");
}

/* agg_state_json, then the restore that snapshots use: the same state. */
static void roundtrip(const struct aggregate *a, const char *what)
{
	struct cqrs_strbuf b = { 0 };
	agg_state_json(a, &b);
	struct aggregate back = { 0 };
	/* valid JSON (a checker, not only our own reader, must accept it) */
	char *copy = strdup(b.p);
	size_t clen = b.len;
	CHECK(copy != NULL && cqrs_json_compact(copy, &clen, NULL) == 0, "%s: JSON %s", what, b.p);
	free(copy);
	fresh(&back, a->kind);
	back.version = a->version;
	memcpy(back.last_hash, a->last_hash, CQRS_HASH_LEN);
	CHECK(jv_string(b.p, b.len, "correlation_id", back.correlation, sizeof back.correlation) ==
		      0,
	      "%s: correlation", what);
	CHECK(domain_of(a->kind)->restore(&back, b.p, b.len) == 0, "%s: restore %s", what, b.p);
	/* the holds by value, the rest byte for byte */
	if (a->kind == AGG_INVENTORY) {
		CHECK(back.u.inv.nholds == a->u.inv.nholds &&
			      (a->u.inv.nholds == 0 ||
			       memcmp(back.u.inv.holds, a->u.inv.holds,
				      a->u.inv.nholds * sizeof *a->u.inv.holds) == 0),
		      "%s: holds", what);
		struct aggregate x = *a, y = back;
		x.u.inv.holds = y.u.inv.holds = NULL;
		x.u.inv.holds_cap = y.u.inv.holds_cap = 0;
		CHECK(memcmp(&x, &y, sizeof x) == 0, "%s: same state after %s", what, b.p);
	} else {
		CHECK(memcmp(&back, a, sizeof back) == 0, "%s: same state after %s", what, b.p);
	}
	agg_clear(&back);
	cqrs_strbuf_free(&b);
}

static void test_snapshots(void)
{
	struct aggregate a = { 0 };
	fresh(&a, AGG_ORDER);
	roundtrip(&a, "empty order");
	fold(&a, "OrderCreated",
	     "{\"order_number\":\"ORD-2026-000001\",\"currency\":\"KWD\","
	     "\"total\":1.250,\"items\":[{\"product_id\":\"" ORDER_TEXT "\",\"quantity\":3}]}");
	fold(&a, "OrderConfirmed", "{}");
	fold(&a, "PaymentProcessed", "{}");
	roundtrip(&a, "order");
	fresh(&a, AGG_INVENTORY);
	fold(&a, "ProductRegistered", "{\"sku\":\"S\\u00e9\",\"name\":\"Caf\\u00e9 \\\"x\\\"\"}");
	fold(&a, "StockReplenished", "{\"quantity\":1000000000}");
	fold(&a, "InventoryReserved", "{\"order_id\":\"" ORDER_TEXT "\",\"quantity\":7}");
	fold(&a, "InventoryReserved",
	     "{\"order_id\":\"11111111-1111-4111-8111-111111111111\",\"quantity\":2}");
	roundtrip(&a, "inventory");
	fresh(&a, AGG_PAYMENT);
	fold(&a, "PaymentAuthorized",
	     "{\"order_id\":\"11111111-1111-4111-8111-111111111111\",\"amount\":1500,"
	     "\"currency\":\"JPY\"}");
	fold(&a, "PaymentCaptured", "{\"amount\":500}");
	fold(&a, "AuthorizationVoided", "{}");
	roundtrip(&a, "payment");
	agg_clear(&a);
}

int main(void)
{
	test_create_order();
	test_order_lifecycle();
	test_inventory();
	test_ship();
	test_table();
	test_payment();
	test_snapshots();
	return unit_done();
}
