/*
 * The payloads of the domain's events, declared per (event_type,
 * event_version): what cqrs-command and the saga write, and nothing they
 * could not have written.  The store's append facade asks this once per
 * new event, so that every path into the store (cqrs-append, cqrs-command,
 * the saga) stops an event the read side could not fold, such as an
 * OrderCreated with "total":1e400, at the door instead of stalling every
 * projection on it later.  Members beyond the declared ones pass (a newer
 * writer may add some); event types and versions not declared here pass.
 */
#include "config.h"

#include <string.h>

#include "domain/domain.h"
#include "banned.h"

enum st {
	ST_TEXT,     /* a non-empty string without control characters */
	ST_UUID,     /* a UUID string */
	ST_COUNT,    /* a whole number 1 .. DOM_MAX_COUNT */
	ST_PRICE,    /* an exact amount >= 0 in the object's currency */
	ST_AMOUNT,   /* an exact amount > 0 in the object's currency */
	ST_CURRENCY, /* three capital letters */
	ST_TIME,     /* an RFC 3339 time */
	ST_ITEMS,    /* OrderCreated's items, which add up to its total */
	ST_ADDRESS,  /* the shipping address */
	ST_SHIPMENT, /* OrderShipped 2: tracking_number and carrier */
};

struct member {
	const char *name;
	enum st type;
	bool required;
};

struct schema {
	const char *event_type;
	int64_t version;
	struct member m[9];
};

/* clang-format off */
static const struct schema schemas[] = {
	{ "OrderCreated", 1, { { "order_number", ST_TEXT, true }, { "customer_id", ST_TEXT, true },
		{ "currency", ST_CURRENCY, true }, { "items", ST_ITEMS, true },
		{ "total", ST_PRICE, true }, { "shipping_address", ST_ADDRESS, false },
		{ "payment_method", ST_TEXT, false }, { "created_at", ST_TIME, false } } },
	{ "OrderConfirmed", 1, { { "note", ST_TEXT, false }, { "by", ST_TEXT, false } } },
	{ "PaymentProcessed", 1, { { "payment_id", ST_UUID, true },
		{ "currency", ST_CURRENCY, true }, { "amount", ST_AMOUNT, true },
		{ "payment_method", ST_TEXT, false }, { "processed_at", ST_TIME, false } } },
	{ "OrderShipped", 1, { { "tracking_number", ST_TEXT, true }, { "carrier", ST_TEXT, true },
		{ "shipped_at", ST_TIME, false } } },
	{ "OrderShipped", 2, { { "shipment", ST_SHIPMENT, true }, { "shipped_at", ST_TIME, false } } },
	{ "OrderCancelled", 1, { { "reason", ST_TEXT, true }, { "by", ST_TEXT, false },
		{ "cancelled_at", ST_TIME, false } } },
	{ "ProductRegistered", 1, { { "sku", ST_TEXT, true }, { "name", ST_TEXT, true } } },
	{ "StockReplenished", 1, { { "quantity", ST_COUNT, true } } },
	{ "InventoryReserved", 1, { { "order_id", ST_UUID, true }, { "quantity", ST_COUNT, true } } },
	{ "InventoryReleased", 1, { { "order_id", ST_UUID, true }, { "quantity", ST_COUNT, true } } },
	{ "InventoryShipped", 1, { { "order_id", ST_UUID, true }, { "quantity", ST_COUNT, true } } },
	{ "PaymentAuthorized", 1, { { "order_id", ST_UUID, true }, { "currency", ST_CURRENCY, true },
		{ "amount", ST_AMOUNT, true }, { "payment_method", ST_TEXT, false },
		{ "authorization", ST_TEXT, false } } },
	{ "PaymentCaptured", 1, { { "order_id", ST_UUID, true }, { "currency", ST_CURRENCY, true },
		{ "amount", ST_AMOUNT, true } } },
	{ "PaymentRefunded", 1, { { "order_id", ST_UUID, true }, { "currency", ST_CURRENCY, true },
		{ "amount", ST_AMOUNT, true } } },
	{ "AuthorizationVoided", 1, { { "order_id", ST_UUID, true } } },
	{ "ShippingLabelCreated", 1, { { "order_id", ST_UUID, true },
		{ "tracking_number", ST_TEXT, true }, { "carrier", ST_TEXT, true } } },
	{ "ShipmentCancelled", 1, { { "order_id", ST_UUID, true }, { "reason", ST_TEXT, true } } },
};
/* clang-format on */

struct ctx {
	const cqrs_event *ev;
	char currency[4];
	cqrs_error *err;
};

static int wrong(struct ctx *x, const char *where, const char *what, const char *v, size_t n)
{
	return cqrs_fail(x->err, CQRS_EXIT_DATAERR, "%s (event_version %lld): data.%s %s%s%.*s",
			 x->ev->event_type, (long long)x->ev->event_version, where, what,
			 n > 0 ? ": " : "", (int)(n > 64 ? 64 : n), v);
}

static int check_text(struct ctx *x, const char *where, const char *v, size_t n)
{
	char buf[DOM_TEXT];
	long r = n >= 2 && v[0] == '"' ? cqrs_json_string(v, n, buf, sizeof buf) : -1;
	if (r <= 0)
		return wrong(x, where, "is not a string of 1 to 256 bytes", v, n);
	for (long i = 0; i < r; i++)
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
			return wrong(x, where, "contains a control character", v, n);
	return 0;
}

/* An exact amount of x->currency: no exponent, no more decimals than the
 * currency has, never negative or "-0", within DOM_MAX_AMOUNT. */
static int check_money(struct ctx *x, const char *where, const char *v, size_t n, bool positive,
		       int64_t *out)
{
	int64_t minor;
	if (x->currency[0] == '\0' || cqrs_money_parse(v, n, x->currency, &minor, NULL) < 0 ||
	    v[0] == '-' || minor > DOM_MAX_AMOUNT) {
		char what[64];
		snprintf(what, sizeof what, "is not an exact amount of %s",
			 x->currency[0] ? x->currency : "its currency");
		return wrong(x, where, what, v, n);
	}
	if (positive && minor == 0)
		return wrong(x, where, "must be more than zero", v, n);
	if (out != NULL)
		*out = minor;
	return 0;
}

static int check_value(struct ctx *x, const char *where, enum st type, const char *v, size_t n);

/* Every item valid, and their sum fits (the total itself is checked as an
 * amount: the read side folds the number it is given). */
static int check_items(struct ctx *x, const char *v, size_t n)
{
	if (v[0] != '[')
		return wrong(x, "items", "is not an array", v, n);
	const char *e, *m;
	size_t en, mn, pos = 0;
	int64_t sum = 0, count = 0;
	while (cqrs_json_next_element(v, n, &pos, &e, &en) == 1) {
		char where[48]; /* items[N], written only for a message */
		int64_t q, price, line;
#define ITEM_WHERE() (snprintf(where, sizeof where, "items[%lld]", (long long)count), where)
		if (++count > DOM_MAX_ITEMS || e[0] != '{')
			return wrong(x, ITEM_WHERE(), "is not an item object", e, en);
		/* one pass over the item's members */
		const char *pid = NULL, *sku = NULL, *qty = NULL, *up = NULL;
		size_t pidn = 0, skun = 0, qtyn = 0, upn = 0, mpos = 0;
		cqrs_json_member jm;
		while (cqrs_json_next_member(e, en, &mpos, &jm) == 1) {
			m = jm.value;
			mn = jm.value_len;
			if (jm.key_len == 10 && memcmp(jm.key, "product_id", 10) == 0)
				pid = m, pidn = mn;
			else if (jm.key_len == 3 && memcmp(jm.key, "sku", 3) == 0)
				sku = m, skun = mn;
			else if (jm.key_len == 8 && memcmp(jm.key, "quantity", 8) == 0)
				qty = m, qtyn = mn;
			else if (jm.key_len == 10 && memcmp(jm.key, "unit_price", 10) == 0)
				up = m, upn = mn;
		}
		if (pid == NULL)
			return wrong(x, ITEM_WHERE(), "has no product_id", e, en);
		if (check_value(x, "items[].product_id", ST_UUID, pid, pidn) < 0)
			return -1;
		if (sku != NULL && check_text(x, "items[].sku", sku, skun) < 0)
			return -1;
		if (qty == NULL || parse_count(qty, qtyn, &q) < 0)
			return wrong(x, ITEM_WHERE(), "has no quantity from 1 to 1000000000", e,
				     en);
		if (up == NULL)
			return wrong(x, ITEM_WHERE(), "has no unit_price", e, en);
		if (check_money(x, "items[].unit_price", up, upn, false, &price) < 0)
			return -1;
		if (__builtin_mul_overflow(q, price, &line) ||
		    __builtin_add_overflow(sum, line, &sum) || sum > DOM_MAX_AMOUNT)
			return wrong(x, "items", "add up to more than an order may total", v, n);
	}
#undef ITEM_WHERE
	if (count == 0)
		return wrong(x, "items", "is empty", v, n);
	return 0;
}

static int check_address(struct ctx *x, const char *v, size_t n)
{
#define PART(s)                                                                                    \
	{                                                                                          \
		s, sizeof s - 1, "shipping_address." s                                             \
	}
	static const struct {
		const char *name;
		size_t len;
		const char *where;
	} parts[] = { PART("name"),  PART("street"),	  PART("city"),
		      PART("state"), PART("postal_code"), PART("country") };
#undef PART
	if (v[0] != '{')
		return wrong(x, "shipping_address", "is not an object", v, n);
	size_t pos = 0;
	cqrs_json_member jm;
	while (cqrs_json_next_member(v, n, &pos, &jm) == 1)
		for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
			if (parts[i].len != jm.key_len ||
			    memcmp(parts[i].name, jm.key, jm.key_len) != 0)
				continue;
			if (check_text(x, parts[i].where, jm.value, jm.value_len) < 0)
				return -1;
			break;
		}
	return 0;
}

/* OrderShipped 2's shipment: both of version 1's texts, in one object */
static int check_shipment(struct ctx *x, const char *v, size_t n)
{
	if (v[0] != '{')
		return wrong(x, "shipment", "is not an object", v, n);
	static const char *const parts[] = { "tracking_number", "carrier" };
	static const char *const where[] = { "shipment.tracking_number", "shipment.carrier" };
	for (size_t i = 0; i < 2; i++) {
		const char *pv;
		size_t pn;
		if (!cqrs_json_get(v, n, parts[i], &pv, &pn))
			return wrong(x, where[i], "is missing", "", 0);
		if (check_text(x, where[i], pv, pn) < 0)
			return -1;
	}
	return 0;
}

static int check_value(struct ctx *x, const char *where, enum st type, const char *v, size_t n)
{
	uint8_t id[CQRS_UUID_LEN];
	int64_t q;
	char ts[CQRS_TIMESTAMP_LEN + 1];
	switch (type) {
	case ST_TEXT: return check_text(x, where, v, n);
	case ST_UUID:
		if (n < 2 || v[0] != '"' || cqrs_uuid_parse(v + 1, n - 2, id) < 0)
			return wrong(x, where, "is not a UUID", v, n);
		return 0;
	case ST_COUNT:
		if (parse_count(v, n, &q) < 0)
			return wrong(x, where, "is not a whole number from 1 to 1000000000", v, n);
		return 0;
	case ST_PRICE: return check_money(x, where, v, n, false, NULL);
	case ST_AMOUNT: return check_money(x, where, v, n, true, NULL);
	case ST_CURRENCY:
		if (n != 5 || v[0] != '"' || cqrs_json_string(v, n, x->currency, 4) != 3 ||
		    !cqrs_currency_valid(x->currency)) {
			x->currency[0] = '\0';
			return wrong(x, where, "is not a three-letter currency code", v, n);
		}
		return 0;
	case ST_TIME:
		if (n < 2 || v[0] != '"' || cqrs_timestamp_normalize(v + 1, n - 2, ts) < 0)
			return wrong(x, where, "is not an RFC 3339 time", v, n);
		return 0;
	case ST_ITEMS: return check_items(x, v, n);
	case ST_ADDRESS: return check_address(x, v, n);
	case ST_SHIPMENT: return check_shipment(x, v, n);
	}
	return 0;
}

int64_t dom_event_version(const char *event_type)
{
	int64_t newest = 1;
	for (size_t i = 0; i < sizeof schemas / sizeof *schemas; i++)
		if (schemas[i].version > newest && strcmp(schemas[i].event_type, event_type) == 0)
			newest = schemas[i].version;
	return newest;
}

int cqrs_event_schema_check(const cqrs_event *ev, cqrs_error *err)
{
	const struct schema *s = NULL;
	for (size_t i = 0; i < sizeof schemas / sizeof *schemas && s == NULL; i++)
		if (schemas[i].version == ev->event_version &&
		    strcmp(schemas[i].event_type, ev->event_type) == 0)
			s = &schemas[i];
	if (s == NULL)
		return 0;
	struct ctx x = { .ev = ev, .err = err };
	/* One pass over the data finds every declared member (a look-up per
	 * member would scan the object again each time), then they are checked
	 * in the declared order: the currency before the amounts. */
	enum { NM = sizeof s->m / sizeof *s->m };
	const char *val[NM] = { NULL };
	size_t len[NM] = { 0 };
	size_t pos = 0;
	cqrs_json_member jm;
	while (cqrs_json_next_member(ev->data, ev->data_len, &pos, &jm) == 1)
		for (size_t i = 0; i < NM && s->m[i].name != NULL; i++)
			if (val[i] == NULL && strncmp(s->m[i].name, jm.key, jm.key_len) == 0 &&
			    s->m[i].name[jm.key_len] == '\0') {
				val[i] = jm.value;
				len[i] = jm.value_len;
				break;
			}
	for (size_t i = 0; i < NM && s->m[i].name != NULL; i++) {
		const struct member *m = &s->m[i];
		if (val[i] == NULL) {
			if (m->required)
				return wrong(&x, m->name, "is missing", "", 0);
			continue;
		}
		/* a personal field in the stored form (a copy, a relay): it was
		 * checked when it was encrypted, and is no one's to read here */
		if (cqrs_json_encrypted(val[i], len[i]))
			continue;
		if (check_value(&x, m->name, m->type, val[i], len[i]) < 0)
			return -1;
	}
	return 0;
}
