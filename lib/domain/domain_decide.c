/*
 * What every decide function shares: how a rejection is worded, how the
 * events of a decision are started, and the checks on values that several
 * commands take (amounts, quantities, the aggregate's existence).
 */
#include "config.h"

#include <stdarg.h>
#include <string.h>

#include "domain/domain.h"
#include "banned.h"

int reject(struct decision *d, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->reason, sizeof d->reason, fmt, ap);
	va_end(ap);
	d->rejected = true;
	d->code = code;
	d->nevents = 0;
	return 0;
}

struct cqrs_strbuf *decision_emit_to(struct decision *d, int for_agg, const char *event_type)
{
	struct cqrs_strbuf *b = &d->data[d->nevents];
	d->target[d->nevents] = for_agg;
	d->event_type[d->nevents++] = event_type;
	cqrs_strbuf_reset(b);
	return b;
}

struct cqrs_strbuf *decision_emit(struct decision *d, const char *event_type)
{
	return decision_emit_to(d, -1, event_type);
}

const struct domain *domain_of(enum agg_kind kind)
{
	switch (kind) {
	case AGG_ORDER: return &domain_order;
	case AGG_INVENTORY: return &domain_inventory;
	case AGG_PAYMENT: return &domain_payment;
	case AGG_KINDS: break;
	}
	return NULL;
}

bool reject_foreign(struct decision *d, const struct aggregate *a, const struct domain *dom)
{
	if (a->foreign_type[0] == '\0')
		return false;
	char id[37];
	cqrs_uuid_format(a->id, id);
	reject(d, "wrong_type", "aggregate %s is of type %s, not %s", id, a->foreign_type,
	       dom->type);
	return true;
}

static bool exists(const struct aggregate *a)
{
	switch (a->kind) {
	case AGG_ORDER: return a->u.order.exists;
	case AGG_INVENTORY: return a->u.inv.exists;
	case AGG_PAYMENT: return a->u.pay.exists;
	case AGG_KINDS: break;
	}
	return false;
}

bool reject_missing(struct decision *d, const struct aggregate *a, const struct domain *dom,
		    bool must_exist)
{
	if (reject_foreign(d, a, dom))
		return true;
	if (!must_exist || exists(a))
		return false;
	char id[37];
	cqrs_uuid_format(a->id, id);
	reject(d, "not_found", "%s %s does not exist", dom->noun, id);
	return true;
}

bool reject_existing(struct decision *d, const struct aggregate *a, const struct domain *dom)
{
	if (reject_foreign(d, a, dom))
		return true;
	if (a->version == 0)
		return false;
	char id[37];
	cqrs_uuid_format(a->id, id);
	reject(d, "already_exists", "%s %s already exists", dom->noun, id);
	return true;
}

bool reject_amount(struct decision *d, const char *what, const char *text, size_t len,
		   const char *currency, bool allow_zero, int64_t *minor)
{
	cqrs_error e;
	if (cqrs_money_parse(text, len, currency, minor, &e) < 0) {
		/* money.c words it for any amount; say which one */
		if (strstr(e.msg, "decimals") != NULL)
			reject(d, "invalid", "%s %.*s has more decimals than %s allows (%d)", what,
			       (int)len, text, currency, cqrs_currency_digits(currency));
		else
			reject(d, "invalid", "%s %.*s is not a plain decimal amount", what,
			       (int)len, text);
		return true;
	}
	/* "-0" is no amount the domain writes: a sign error upstream */
	if (*minor < 0 || (len > 0 && text[0] == '-')) {
		reject(d, "invalid", "%s must not be negative: %.*s", what, (int)len, text);
		return true;
	}
	if (*minor == 0 && !allow_zero) {
		reject(d, "invalid", "%s must be positive, not %.*s", what, (int)len, text);
		return true;
	}
	if (*minor > DOM_MAX_AMOUNT) {
		reject(d, "invalid", "%s %.*s is too large", what, (int)len, text);
		return true;
	}
	return false;
}

bool reject_quantity(struct decision *d, const char *what, const char *text, size_t len, int64_t *q)
{
	if (parse_count(text, len, q) == 0)
		return false;
	if (len > 0 && (text[0] == '-' || (len == 1 && text[0] == '0')))
		reject(d, "invalid", "%s must be positive, not %.*s", what, (int)len, text);
	else if (memchr(text, '.', len) != NULL || memchr(text, 'e', len) != NULL ||
		 memchr(text, 'E', len) != NULL)
		reject(d, "invalid", "%s must be a whole number, not %.*s", what, (int)len, text);
	else
		reject(d, "invalid", "%s %.*s is too large (at most %lld)", what, (int)len, text,
		       (long long)DOM_MAX_COUNT);
	return true;
}
