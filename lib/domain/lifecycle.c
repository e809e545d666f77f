/*
 * The one lifecycle of the order domain, written once: the states of
 * Order, Inventory and Payment, the commands each state allows or refuses
 * (with the stable code of each refusal), the goal of each command (what
 * makes it "already done"), the events that move an aggregate, and the
 * invariants.  The decide functions take their state rules from here
 * (lc_check); cqrs-events(7) and the DOT picture are printed from here
 * (lc_print, `cqrs-command lifecycle`), so that the rules and their
 * description cannot drift apart.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "domain/domain.h"
#include "banned.h"

#define S(x) (1u << (x))

struct lc_state {
	const char *name, *meaning;
};

static const struct lc_state order_states[ORDER_STATES] = {
	[ORDER_NONE] = { "NONE", "no events yet" },
	[ORDER_PENDING] = { "PENDING", "created, not yet confirmed or paid" },
	[ORDER_CONFIRMED] = { "CONFIRMED", "confirmed by a person or the saga" },
	[ORDER_PAID] = { "PAID", "paid in full (confirmed or not)" },
	[ORDER_SHIPPED] = { "SHIPPED", "shipped; final" },
	[ORDER_CANCELLED] = { "CANCELLED", "cancelled; final" },
};
static const struct lc_state inventory_states[INV_STATES] = {
	[INV_NONE] = { "NONE", "no events yet" },
	[INV_ACTIVE] = { "ACTIVE", "registered; its stock moves" },
};
static const struct lc_state payment_states[PAY_STATES] = {
	[PAY_NONE] = { "NONE", "no events yet" },
	[PAY_AUTHORIZED] = { "AUTHORIZED", "an authorization is open (part may be captured)" },
	[PAY_CAPTURED] = { "CAPTURED", "the authorization is captured in full" },
	[PAY_VOIDED] = { "VOIDED", "the authorization was voided" },
};

static const struct {
	const struct lc_state *states;
	int n;
	const char *invariants[4];
} kinds[AGG_KINDS] = {
	[AGG_ORDER] = { order_states,
			ORDER_STATES,
			{ "total = the sum of quantity x unit_price, exact in the currency",
			  "at most 64 different products", "SHIPPED and CANCELLED are final" } },
	[AGG_INVENTORY] = { inventory_states,
			    INV_STATES,
			    { "on_hand >= 0, reserved >= 0, available = on_hand - reserved >= 0",
			      "shipped <= received",
			      "reserved = the sum of what the orders hold; an order holds > 0 "
			      "(an entry at 0 is dropped)" } },
	[AGG_PAYMENT] = { payment_states,
			  PAY_STATES,
			  { "0 < authorized; captured <= authorized; refunded <= captured",
			    "no capture after a void" } },
};

/* A refusal: in these states, this code and message (%s: the aggregate's
 * name, then the decide function's detail). */
struct lc_deny {
	uint32_t states;
	const char *code, *why;
};

struct lc_command {
	const char *type;
	enum agg_kind kind;
	bool creates;
	const char *emits, *goal;
	/* whether the goal already holds; NULL: it has none */
	bool (*reached)(const struct command *c, const struct aggregate *a);
	/* the answer when it holds and the command has no if_needed; NULL:
	 * decide as usual (a second reservation adds to the first) */
	const char *already_code, *already;
	struct lc_deny deny[4];
	/* commands on an order's stock: the order's states refused */
	struct lc_deny order_deny[3];
	const char *rules; /* the decide function's own checks, for the page */
};

static int64_t command_quantity(const struct command *c)
{
	int64_t q;
	return c->quantity != NULL && parse_count(c->quantity, c->quantity_len, &q) == 0 ? q : -1;
}

static bool order_confirmed(const struct command *c, const struct aggregate *a)
{
	(void)c;
	return a->u.order.confirmed;
}

static bool order_cancelled(const struct command *c, const struct aggregate *a)
{
	(void)c;
	return a->u.order.status == ORDER_CANCELLED;
}

static bool holds_enough(const struct command *c, const struct aggregate *a)
{
	int64_t q = command_quantity(c);
	return q > 0 && inventory_held(&a->u.inv, c->order_id) >= q;
}

static bool holds_nothing(const struct command *c, const struct aggregate *a)
{
	return inventory_held(&a->u.inv, c->order_id) == 0;
}

static bool voided(const struct command *c, const struct aggregate *a)
{
	(void)c;
	return a->u.pay.voided;
}

static bool nothing_to_undo(const struct command *c, const struct aggregate *a)
{
	(void)c;
	const struct payment_state *p = &a->u.pay;
	return (p->voided || p->captured == p->authorized) && p->captured == p->refunded;
}

#define CLOSED_ORDER S(ORDER_CANCELLED) | S(ORDER_SHIPPED)

/* clang-format off */
static const struct lc_command commands[CMD_COUNT] = {
	[CMD_CREATE_ORDER] = { "CreateOrder", AGG_ORDER, true, "OrderCreated",
		"the order exists", NULL, NULL, NULL, { { 0 } }, { { 0 } },
		"every item's product is registered (or its sku given); at least one item; "
		"quantities whole and positive; prices >= 0 and not -0; a total given "
		"(total or total_amount) equals the sum (invalid)" },
	[CMD_CONFIRM_ORDER] = { "ConfirmOrder", AGG_ORDER, false, "OrderConfirmed",
		"the order is confirmed", order_confirmed, "already_done",
		"order %s is already confirmed",
		{ { S(ORDER_CANCELLED), "not_allowed", "cannot confirm order %s: it was cancelled" },
		  { S(ORDER_SHIPPED), "not_allowed",
		    "cannot confirm order %s: it has already been shipped" } },
		{ { 0 } }, "with automated, OrderConfirmed records \"by\":\"saga\"" },
	[CMD_CONFIRM_PAYMENT] = { "ConfirmPayment", AGG_ORDER, false, "PaymentProcessed",
		NULL, NULL, NULL, NULL,
		{ { S(ORDER_CANCELLED), "not_allowed", "cannot pay for order %s: it was cancelled" },
		  { S(ORDER_PAID) | S(ORDER_SHIPPED), "not_allowed",
		    "order %s has already been paid" } },
		{ { 0 } }, "the amount and currency are exactly the order's total (invalid)" },
	[CMD_SHIP_ORDER] = { "ShipOrder", AGG_ORDER, false,
		"OrderShipped, InventoryShipped, InventoryReleased",
		NULL, NULL, NULL, NULL,
		{ { S(ORDER_CANCELLED), "not_allowed", "cannot ship order %s: it was cancelled" },
		  { S(ORDER_SHIPPED), "not_allowed", "order %s has already been shipped" },
		  { S(ORDER_PENDING) | S(ORDER_CONFIRMED), "not_allowed",
		    "cannot ship order %s: it has not been paid" } },
		{ { 0 } },
		"every order line's product holds a reservation for the order of at least "
		"the line's quantity (not_enough_held); OrderShipped, one InventoryShipped "
		"per product and an InventoryReleased for what the order held beyond its "
		"items are appended in one transaction" },
	[CMD_CANCEL_ORDER] = { "CancelOrder", AGG_ORDER, false, "OrderCancelled, InventoryReleased",
		"the order is cancelled", order_cancelled, "already_done",
		"order %s is already cancelled",
		{ { S(ORDER_SHIPPED), "not_allowed",
		    "cannot cancel order %s: it has already been shipped" } },
		{ { 0 } },
		"with automated, refused on an order a person confirmed (person_decision); "
		"an InventoryReleased for every reservation the order holds is appended in "
		"the same transaction, whoever reserved it" },
	[CMD_REGISTER_PRODUCT] = { "RegisterProduct", AGG_INVENTORY, true,
		"ProductRegistered, StockReplenished", "the product exists", NULL, NULL, NULL,
		{ { 0 } }, { { 0 } }, "an initial quantity is whole and positive (invalid)" },
	[CMD_REPLENISH_STOCK] = { "ReplenishStock", AGG_INVENTORY, false, "StockReplenished",
		NULL, NULL, NULL, NULL, { { 0 } }, { { 0 } },
		"on_hand stays at most 10^15 units (invalid)" },
	[CMD_RESERVE_INVENTORY] = { "ReserveInventory", AGG_INVENTORY, false, "InventoryReserved",
		"the order holds at least the quantity, and what its items need of the product",
		holds_enough, NULL, NULL, { { 0 } },
		{ { S(ORDER_NONE), "not_found", "cannot reserve for order %s: it does not exist" },
		  { S(ORDER_CANCELLED), "not_allowed",
		    "cannot reserve for order %s: it was cancelled" },
		  { S(ORDER_SHIPPED), "not_allowed",
		    "cannot reserve for order %s: it has been shipped" } },
		"quantity <= available (insufficient_stock)" },
	[CMD_RELEASE_INVENTORY] = { "ReleaseInventory", AGG_INVENTORY, false, "InventoryReleased",
		"the order holds nothing of the product", holds_nothing, "nothing_held",
		"order %s holds no %s", { { 0 } }, { { 0 } },
		"quantity omitted: everything the order holds; quantity <= what the order "
		"holds (not_enough_held)" },
	[CMD_AUTHORIZE_PAYMENT] = { "AuthorizePayment", AGG_PAYMENT, true, "PaymentAuthorized",
		"the payment exists", NULL, NULL, NULL, { { 0 } }, { { 0 } },
		"amount > 0 (invalid)" },
	[CMD_CAPTURE_PAYMENT] = { "CapturePayment", AGG_PAYMENT, false, "PaymentCaptured",
		NULL, NULL, NULL, NULL,
		{ { S(PAY_VOIDED), "not_allowed",
		    "cannot capture payment %s: its authorization was voided" },
		  { S(PAY_CAPTURED), "not_allowed",
		    "cannot capture payment %s: the %s authorized have been captured" } },
		{ { 0 } }, "0 < amount <= what is left of the authorization (exceeds_remaining)" },
	[CMD_REFUND_PAYMENT] = { "RefundPayment", AGG_PAYMENT, false, "PaymentRefunded", NULL,
		NULL, NULL, NULL, { { 0 } }, { { 0 } },
		"0 < amount <= captured - refunded (exceeds_remaining)" },
	[CMD_VOID_AUTHORIZATION] = { "VoidAuthorization", AGG_PAYMENT, false,
		"AuthorizationVoided", "the authorization is voided", voided, "already_done",
		"the authorization of payment %s was already voided",
		{ { S(PAY_CAPTURED), "not_allowed",
		    "cannot void payment %s: it has been captured in full" } },
		{ { 0 } }, NULL },
	[CMD_CANCEL_PAYMENT] = { "CancelPayment", AGG_PAYMENT, false,
		"AuthorizationVoided, PaymentRefunded",
		"nothing is left to void or refund", nothing_to_undo, "already_done",
		"payment %s has nothing left to void or refund", { { 0 } }, { { 0 } },
		"voids what is authorized and not captured, refunds what is captured and not "
		"refunded, in one decision" },
};
/* clang-format on */

struct lc_event {
	enum agg_kind kind;
	const char *type, *by;
	uint32_t from;
	int to; /* -1: the state it was in */
	const char *effect;
};

/* clang-format off */
static const struct lc_event events[] = {
	{ AGG_ORDER, "OrderCreated", "CreateOrder", S(ORDER_NONE), ORDER_PENDING, NULL },
	{ AGG_ORDER, "OrderConfirmed", "ConfirmOrder", S(ORDER_PENDING), ORDER_CONFIRMED, NULL },
	{ AGG_ORDER, "OrderConfirmed", "ConfirmOrder", S(ORDER_PAID), -1,
	  "a paid order is confirmed" },
	{ AGG_ORDER, "PaymentProcessed", "ConfirmPayment", S(ORDER_PENDING) | S(ORDER_CONFIRMED),
	  ORDER_PAID, NULL },
	{ AGG_ORDER, "OrderShipped", "ShipOrder", S(ORDER_PAID), ORDER_SHIPPED, NULL },
	{ AGG_ORDER, "OrderCancelled", "CancelOrder",
	  S(ORDER_PENDING) | S(ORDER_CONFIRMED) | S(ORDER_PAID), ORDER_CANCELLED, NULL },
	{ AGG_INVENTORY, "ProductRegistered", "RegisterProduct", S(INV_NONE), INV_ACTIVE, NULL },
	{ AGG_INVENTORY, "StockReplenished", "ReplenishStock", S(INV_ACTIVE), -1,
	  "on_hand += q, received += q" },
	{ AGG_INVENTORY, "InventoryReserved", "ReserveInventory", S(INV_ACTIVE), -1,
	  "reserved += q, the order holds q more" },
	{ AGG_INVENTORY, "InventoryReleased", "ReleaseInventory, ShipOrder, CancelOrder", S(INV_ACTIVE), -1,
	  "reserved -= q, the order holds q less" },
	{ AGG_INVENTORY, "InventoryShipped", "ShipOrder", S(INV_ACTIVE), -1,
	  "reserved -= q, on_hand -= q, shipped += q, the order holds q less" },
	{ AGG_PAYMENT, "PaymentAuthorized", "AuthorizePayment", S(PAY_NONE), PAY_AUTHORIZED, NULL },
	{ AGG_PAYMENT, "PaymentCaptured", "CapturePayment", S(PAY_AUTHORIZED), -1,
	  "captured += amount" },
	{ AGG_PAYMENT, "PaymentCaptured", "CapturePayment", S(PAY_AUTHORIZED), PAY_CAPTURED,
	  "the last of the authorization" },
	{ AGG_PAYMENT, "PaymentRefunded", "RefundPayment, CancelPayment",
	  S(PAY_AUTHORIZED) | S(PAY_CAPTURED) | S(PAY_VOIDED), -1, "refunded += amount" },
	{ AGG_PAYMENT, "AuthorizationVoided", "VoidAuthorization, CancelPayment",
	  S(PAY_AUTHORIZED), PAY_VOIDED, NULL },
};
/* clang-format on */

static const struct {
	const char *code, *meaning;
} codes[] = {
	{ "invalid", "a value the rules refuse: an amount, quantity, currency or total" },
	{ "not_found", "the aggregate (or the order, or an item's product) does not exist" },
	{ "already_exists", "a creation names an aggregate that exists" },
	{ "wrong_type", "the id names an aggregate of another type" },
	{ "not_allowed", "the aggregate's state does not allow the command" },
	{ "already_done", "the command's goal already holds (without if_needed)" },
	{ "insufficient_stock", "a reservation of more than is available" },
	{ "nothing_held", "a release for an order that holds nothing of the product" },
	{ "not_enough_held", "a release or shipment of more than the order holds" },
	{ "exceeds_remaining", "a capture or refund of more than is left" },
	{ "person_decision", "an automated cancellation of an order a person confirmed" },
};

/* --- the rules, as the decide functions ask for them ---------------------- */

int agg_status(const struct aggregate *a)
{
	switch (a->kind) {
	case AGG_ORDER: return a->u.order.exists ? (int)a->u.order.status : ORDER_NONE;
	case AGG_INVENTORY: return a->u.inv.exists ? INV_ACTIVE : INV_NONE;
	case AGG_PAYMENT: {
		const struct payment_state *p = &a->u.pay;
		if (!p->exists)
			return PAY_NONE;
		if (p->voided)
			return PAY_VOIDED;
		return p->captured >= p->authorized ? PAY_CAPTURED : PAY_AUTHORIZED;
	}
	case AGG_KINDS: break;
	}
	return 0;
}

const char *lc_state_name(enum agg_kind kind, int state)
{
	if ((int)kind < 0 || kind >= AGG_KINDS || state < 0 || state >= kinds[kind].n)
		return "";
	return kinds[kind].states[state].name;
}

bool lc_reached(const struct command *c, const struct aggregate *a)
{
	const struct lc_command *lc = &commands[c->type];
	return lc->reached != NULL && a->kind == lc->kind && lc->reached(c, a);
}

/* The table's messages name the aggregate, then a detail: "%s" only. */
static int deny(struct decision *d, const char *code, const char *why, const char *name,
		const char *detail)
{
	char text[sizeof d->reason];
	size_t o = 0;
	int arg = 0;
	for (const char *p = why; *p != '\0' && o + 1 < sizeof text; p++) {
		if (p[0] == '%' && p[1] == 's') {
			const char *s = arg++ == 0 ? name : detail;
			size_t n = strlen(s != NULL ? s : "");
			if (n > sizeof text - 1 - o)
				n = sizeof text - 1 - o;
			memcpy(text + o, s != NULL ? s : "", n);
			o += n;
			p++;
		} else {
			text[o++] = *p;
		}
	}
	text[o] = '\0';
	return reject(d, code, "%s", text);
}

static bool check_deny(struct decision *d, const struct lc_deny *rows, size_t n, int state,
		       const char *name, const char *detail)
{
	for (size_t i = 0; i < n && rows[i].why != NULL; i++) {
		if (rows[i].states & S(state)) {
			deny(d, rows[i].code, rows[i].why, name, detail);
			return true;
		}
	}
	return false;
}

bool lc_check(struct decision *d, const struct command *c, const struct aggregate *a,
	      const char *name, const char *detail)
{
	const struct lc_command *lc = &commands[c->type];
	if (check_deny(d, lc->deny, sizeof lc->deny / sizeof *lc->deny, agg_status(a), name,
		       detail))
		return true;
	if (lc->reached == NULL || !lc->reached(c, a))
		return false;
	if (c->if_needed) {
		d->unchanged = true;
		d->nevents = 0;
		return true;
	}
	if (lc->already == NULL)
		return false;
	deny(d, lc->already_code, lc->already, name, detail);
	return true;
}

bool lc_check_order(struct decision *d, const struct command *c, const struct aggregate *order,
		    const char *name)
{
	const struct lc_command *lc = &commands[c->type];
	return check_deny(d, lc->order_deny, sizeof lc->order_deny / sizeof *lc->order_deny,
			  agg_status(order), name, NULL);
}

/* --- the page, the picture, the data ----------------------------------------- */

static const char *kind_type(enum agg_kind k)
{
	return domain_of(k)->type;
}

static void states_text(FILE *f, enum agg_kind k, uint32_t mask, const char *sep)
{
	bool first = true;
	for (int s = 0; s < kinds[k].n; s++) {
		if (!(mask & S(s)))
			continue;
		fprintf(f, "%s%s", first ? "" : sep, kinds[k].states[s].name);
		first = false;
	}
}

/* The states a command is decided in: all but NONE (or only NONE for a
 * creation) and those its table refuses. */
static uint32_t allowed_states(const struct lc_command *lc)
{
	enum agg_kind k = lc->kind;
	if (lc->creates)
		return S(0);
	uint32_t m = (S(kinds[k].n) - 1) & ~S(0);
	for (size_t i = 0; i < 4 && lc->deny[i].why != NULL; i++)
		m &= ~lc->deny[i].states;
	return m;
}

static void man_deny(FILE *f, enum agg_kind k, const struct lc_deny *rows, size_t n,
		     const char *whose)
{
	for (size_t i = 0; i < n && rows[i].why != NULL; i++) {
		fprintf(f, ".It\nrefused when %s is ", whose);
		states_text(f, k, rows[i].states, " or ");
		fprintf(f, ":\n.Cm %s\n", rows[i].code);
	}
}

static void man_command(FILE *f, const struct lc_command *lc)
{
	fprintf(f, ".It Cm %s\nEmits %s.\n.Bl -dash -compact\n", lc->type, lc->emits);
	fputs(".It\ndecided in ", f);
	states_text(f, lc->kind, allowed_states(lc), ", ");
	fputs(lc->creates ? "; otherwise\n.Cm already_exists\n" : "; NONE:\n.Cm not_found\n", f);
	man_deny(f, lc->kind, lc->deny, 4, "it");
	man_deny(f, AGG_ORDER, lc->order_deny, 3, "the order");
	if (lc->reached != NULL) {
		fprintf(f, ".It\ngoal: %s;", lc->goal);
		if (lc->already != NULL)
			fprintf(f, " when it holds:\n.Cm %s ,\nor with\n", lc->already_code);
		else
			fputs(" when it holds, with\n", f);
		fputs(".Cm if_needed\naccepted with no events\n.Pq Li unchanged\n", f);
	}
	if (lc->rules != NULL)
		fprintf(f, ".It\n%s\n", lc->rules);
	fputs(".El\n", f);
}

static void man_kind(FILE *f, enum agg_kind k)
{
	fprintf(f, ".Ss %s lifecycle\nStates:\n.Bl -tag -width CONFIRMED -compact\n", kind_type(k));
	for (int s = 0; s < kinds[k].n; s++)
		fprintf(f, ".It %s\n%s\n", kinds[k].states[s].name, kinds[k].states[s].meaning);
	fputs(".El\n.Pp\nEvents:\n.Bl -tag -width Ds -compact\n", f);
	for (size_t i = 0; i < sizeof events / sizeof *events; i++) {
		const struct lc_event *e = &events[i];
		if (e->kind != k)
			continue;
		fprintf(f, ".It Cm %s\n", e->type);
		states_text(f, k, e->from, ", ");
		fprintf(f, " \\(-> %s (%s)%s%s\n", e->to < 0 ? "same" : kinds[k].states[e->to].name,
			e->by, e->effect != NULL ? ": " : "", e->effect != NULL ? e->effect : "");
	}
	fputs(".El\n.Pp\nCommands:\n.Bl -tag -width Ds\n", f);
	for (int c = 0; c < CMD_COUNT; c++)
		if (commands[c].kind == k)
			man_command(f, &commands[c]);
	fputs(".El\n.Pp\nInvariants:\n.Bl -bullet -compact\n", f);
	for (int i = 0; i < 4 && kinds[k].invariants[i] != NULL; i++)
		fprintf(f, ".It\n%s\n", kinds[k].invariants[i]);
	fputs(".El\n", f);
}

static void print_man(FILE *f)
{
	fputs(".\\\" generated by cqrs-command lifecycle --format man: edit "
	      "lib/domain/lifecycle.c\n",
	      f);
	for (int k = 0; k < AGG_KINDS; k++)
		man_kind(f, (enum agg_kind)k);
	fputs(".Ss Rejection codes\nA rejected result line carries one of these in\n"
	      ".Cm code :\n.Bl -tag -width insufficient_stock -compact\n",
	      f);
	for (size_t i = 0; i < sizeof codes / sizeof *codes; i++)
		fprintf(f, ".It Cm %s\n%s\n", codes[i].code, codes[i].meaning);
	fputs(".El\n", f);
}

static void print_dot(FILE *f)
{
	fputs("// generated by cqrs-command lifecycle --format dot: edit lib/domain/lifecycle.c\n"
	      "digraph lifecycle {\n\trankdir=LR;\n\tnode [shape=box, style=rounded];\n",
	      f);
	for (int k = 0; k < AGG_KINDS; k++) {
		fprintf(f, "\tsubgraph cluster_%s {\n\t\tlabel=\"%s\";\n", kind_type(k),
			kind_type(k));
		for (int s = 0; s < kinds[k].n; s++)
			fprintf(f, "\t\t%s_%s [label=\"%s\"];\n", kind_type(k),
				kinds[k].states[s].name, kinds[k].states[s].name);
		for (size_t i = 0; i < sizeof events / sizeof *events; i++) {
			const struct lc_event *e = &events[i];
			if (e->kind != (enum agg_kind)k)
				continue;
			for (int s = 0; s < kinds[k].n; s++)
				if (e->from & S(s))
					fprintf(f, "\t\t%s_%s -> %s_%s [label=\"%s\"];\n",
						kind_type(k), kinds[k].states[s].name, kind_type(k),
						kinds[k].states[e->to < 0 ? s : e->to].name,
						e->type);
		}
		fputs("\t}\n", f);
	}
	fputs("}\n", f);
}

static void json_states(FILE *f, enum agg_kind k, uint32_t mask)
{
	fputc('[', f);
	bool first = true;
	for (int s = 0; s < kinds[k].n; s++) {
		if (mask & S(s)) {
			fprintf(f, "%s\"%s\"", first ? "" : ",", kinds[k].states[s].name);
			first = false;
		}
	}
	fputc(']', f);
}

static void json_str(FILE *f, const char *s)
{
	cqrs_json_write_string(f, s, strlen(s));
}

static void print_ndjson(FILE *f)
{
	for (int k = 0; k < AGG_KINDS; k++) {
		for (int s = 0; s < kinds[k].n; s++)
			fprintf(f,
				"{\"kind\":\"state\",\"aggregate_type\":\"%s\",\"state\":\"%s\"}\n",
				kind_type(k), kinds[k].states[s].name);
	}
	for (int c = 0; c < CMD_COUNT; c++) {
		const struct lc_command *lc = &commands[c];
		fprintf(f, "{\"kind\":\"command\",\"aggregate_type\":\"%s\",\"type\":\"%s\",",
			kind_type(lc->kind), lc->type);
		fputs("\"allowed\":", f);
		json_states(f, lc->kind, allowed_states(lc));
		fputs(",\"refused\":[", f);
		for (size_t i = 0; i < 4 && lc->deny[i].why != NULL; i++) {
			fprintf(f, "%s{\"states\":", i ? "," : "");
			json_states(f, lc->kind, lc->deny[i].states);
			fprintf(f, ",\"code\":\"%s\"}", lc->deny[i].code);
		}
		for (size_t i = 0; i < 3 && lc->order_deny[i].why != NULL; i++) {
			fprintf(f, "%s{\"order_states\":", i || lc->deny[0].why ? "," : "");
			json_states(f, AGG_ORDER, lc->order_deny[i].states);
			fprintf(f, ",\"code\":\"%s\"}", lc->order_deny[i].code);
		}
		fputs("],\"goal\":", f);
		if (lc->goal != NULL && lc->reached != NULL)
			json_str(f, lc->goal);
		else
			fputs("null", f);
		fputs("}\n", f);
	}
	for (size_t i = 0; i < sizeof events / sizeof *events; i++) {
		const struct lc_event *e = &events[i];
		fprintf(f,
			"{\"kind\":\"event\",\"aggregate_type\":\"%s\",\"type\":\"%s\",\"from\":",
			kind_type(e->kind), e->type);
		json_states(f, e->kind, e->from);
		fprintf(f, ",\"to\":%s%s%s}\n", e->to < 0 ? "null" : "\"",
			e->to < 0 ? "" : kinds[e->kind].states[e->to].name, e->to < 0 ? "" : "\"");
	}
	for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
		fprintf(f, "{\"kind\":\"code\",\"code\":\"%s\",\"meaning\":", codes[i].code);
		json_str(f, codes[i].meaning);
		fputs("}\n", f);
	}
}

int lc_print(FILE *f, const char *format, cqrs_error *err)
{
	if (strcmp(format, "man") == 0)
		print_man(f);
	else if (strcmp(format, "dot") == 0)
		print_dot(f);
	else if (strcmp(format, "ndjson") == 0)
		print_ndjson(f);
	else
		return cqrs_fail(err, CQRS_EXIT_USAGE, "--format needs man, dot or ndjson: '%s'",
				 format);
	return 0;
}
