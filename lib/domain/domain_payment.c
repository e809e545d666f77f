/*
 * The payment aggregate: an authorization for an order, captured in one or
 * more parts up to the authorized amount, refunded up to what was
 * captured; a voided authorization can no longer be captured.
 */
#include "config.h"

#include <string.h>

#include "domain/domain.h"
#include "banned.h"

static int apply(struct aggregate *a, const cqrs_event *ev, cqrs_error *err)
{
	struct payment_state *p = &a->u.pay;
	const char *d = ev->data;
	size_t n = ev->data_len;
	const char *t = ev->event_type;
	int64_t amount;
	if (strcmp(t, "PaymentAuthorized") == 0) {
		if (jv_uuid(d, n, "order_id", p->order_id) < 0)
			return agg_bad_event(a, ev, "no order_id", err);
		if (jv_string(d, n, "currency", p->currency, sizeof p->currency) < 0 ||
		    !cqrs_currency_valid(p->currency))
			return agg_bad_event(a, ev, "no valid currency", err);
		if (jv_money(d, n, "amount", p->currency, &p->authorized) < 0)
			return agg_bad_event(a, ev, "no valid amount", err);
		if (jv_string(d, n, "payment_method", p->method, sizeof p->method) < 0)
			p->method[0] = '\0';
		p->exists = true;
	} else if (strcmp(t, "PaymentCaptured") == 0 || strcmp(t, "PaymentRefunded") == 0) {
		if (!p->exists)
			return agg_bad_event(a, ev, "the payment was never authorized", err);
		if (jv_money(d, n, "amount", p->currency, &amount) < 0)
			return agg_bad_event(a, ev, "no valid amount", err);
		int64_t *sum = t[7] == 'C' ? &p->captured : &p->refunded;
		if (__builtin_add_overflow(*sum, amount, sum) || *sum > DOM_MAX_AMOUNT)
			return agg_bad_event(a, ev, "the amounts add up out of range", err);
		if (p->captured > p->authorized || p->refunded > p->captured)
			return agg_bad_event(a, ev,
					     "more captured than authorized, or refunded "
					     "than captured",
					     err);
	} else if (strcmp(t, "AuthorizationVoided") == 0) {
		p->voided = true;
	}
	return 0;
}

static void save(const struct aggregate *a, struct cqrs_strbuf *b)
{
	const struct payment_state *p = &a->u.pay;
	jb_key(b, "exists");
	jb_bool(b, p->exists);
	if (p->exists) {
		jb_key(b, "order_id");
		jb_uuid(b, p->order_id);
		jb_key(b, "currency");
		jb_str(b, p->currency);
		jb_key(b, "authorized");
		jb_money(b, p->authorized, p->currency);
		jb_key(b, "captured");
		jb_money(b, p->captured, p->currency);
		jb_key(b, "refunded");
		jb_money(b, p->refunded, p->currency);
		if (p->method[0] != '\0') {
			jb_key(b, "payment_method");
			jb_str(b, p->method);
		}
	}
	jb_key(b, "voided");
	jb_bool(b, p->voided);
}

static int restore(struct aggregate *a, const char *j, size_t n)
{
	struct payment_state *p = &a->u.pay;
	if (jv_bool(j, n, "exists", &p->exists) < 0 || jv_bool(j, n, "voided", &p->voided) < 0)
		return -1;
	if (!p->exists)
		return 0;
	if (jv_uuid(j, n, "order_id", p->order_id) < 0 ||
	    jv_string(j, n, "currency", p->currency, sizeof p->currency) < 0 ||
	    !cqrs_currency_valid(p->currency) ||
	    jv_money(j, n, "authorized", p->currency, &p->authorized) < 0 ||
	    jv_money(j, n, "captured", p->currency, &p->captured) < 0 ||
	    jv_money(j, n, "refunded", p->currency, &p->refunded) < 0)
		return -1;
	if (jv_string(j, n, "payment_method", p->method, sizeof p->method) < 0)
		p->method[0] = '\0';
	return 0;
}

const struct domain domain_payment = { "Payment", "payment", apply, save, restore };

/* authorization: the gateway's reference on PaymentAuthorized, or NULL */
static void amount_event(struct decision *d, const char *type, const struct payment_state *p,
			 int64_t amount, const char *authorization)
{
	struct cqrs_strbuf *b = decision_emit(d, type);
	cqrs_strbuf_putc(b, '{');
	jb_key(b, "order_id");
	jb_uuid(b, p->order_id);
	jb_key(b, "amount");
	jb_money(b, amount, p->currency);
	jb_key(b, "currency");
	jb_str(b, p->currency);
	if (strcmp(type, "PaymentAuthorized") == 0 && p->method[0] != '\0') {
		jb_key(b, "payment_method");
		jb_str(b, p->method);
	}
	if (authorization != NULL && authorization[0] != '\0') {
		jb_key(b, "authorization");
		jb_str(b, authorization);
	}
	cqrs_strbuf_putc(b, '}');
}

/* What every decision on an existing payment starts with: it exists, and
 * the lifecycle table allows the command in its state.  True when the
 * command was rejected; id gets the payment's id for messages. */
static bool payment_refused(const struct command *c, const struct aggregate *a, struct decision *d,
			    char id[37])
{
	if (reject_missing(d, a, &domain_payment, true))
		return true;
	cqrs_uuid_format(a->id, id);
	return lc_check(d, c, a, id, NULL);
}

int payment_authorize(const struct command *c, const struct aggregate *a,
		      const struct decide_ctx *ctx, struct decision *d, cqrs_error *err)
{
	(void)ctx;
	(void)err;
	if (reject_existing(d, a, &domain_payment))
		return 0;
	if (!cqrs_currency_valid(c->currency))
		return reject(d, "invalid", "currency '%s' is not a three-letter code such as USD",
			      c->currency);
	struct payment_state p = { .exists = true };
	memcpy(p.order_id, c->order_id, CQRS_UUID_LEN);
	memcpy(p.currency, c->currency, 4);
	if (HAS(c, F_PAYMENT_METHOD))
		snprintf(p.method, sizeof p.method, "%s", c->payment_method);
	int64_t amount;
	if (reject_amount(d, "amount", c->amount, c->amount_len, p.currency, false, &amount))
		return 0;
	amount_event(d, "PaymentAuthorized", &p, amount, c->authorization);
	return 0;
}

static const char *money(int64_t minor, const char *currency, char *buf, size_t cap)
{
	size_t n;
	cqrs_money_format(minor, currency, buf, cap);
	n = strlen(buf);
	snprintf(buf + n, cap - n, " %s", currency);
	return buf;
}

int payment_capture(const struct command *c, const struct aggregate *a,
		    const struct decide_ctx *ctx, struct decision *d, cqrs_error *err)
{
	(void)ctx;
	(void)err;
	if (reject_missing(d, a, &domain_payment, true))
		return 0;
	const struct payment_state *p = &a->u.pay;
	char id[37], m1[48], m2[48];
	cqrs_uuid_format(a->id, id);
	if (lc_check(d, c, a, id, money(p->authorized, p->currency, m1, sizeof m1)))
		return 0;
	int64_t left = p->authorized - p->captured;
	int64_t amount = left;
	if (HAS(c, F_AMOUNT) &&
	    reject_amount(d, "amount", c->amount, c->amount_len, p->currency, false, &amount))
		return 0;
	if (amount > left)
		return reject(d, "exceeds_remaining",
			      "cannot capture %s from payment %s: only %s of the authorization "
			      "is left",
			      money(amount, p->currency, m1, sizeof m1), id,
			      money(left, p->currency, m2, sizeof m2));
	amount_event(d, "PaymentCaptured", p, amount, NULL);
	return 0;
}

int payment_refund(const struct command *c, const struct aggregate *a, const struct decide_ctx *ctx,
		   struct decision *d, cqrs_error *err)
{
	(void)ctx;
	(void)err;
	char id[37], m1[48], m2[48];
	if (payment_refused(c, a, d, id))
		return 0;
	const struct payment_state *p = &a->u.pay;
	int64_t amount;
	if (reject_amount(d, "amount", c->amount, c->amount_len, p->currency, false, &amount))
		return 0;
	int64_t left = p->captured - p->refunded;
	if (amount > left)
		return reject(d, "exceeds_remaining",
			      "cannot refund %s from payment %s: only %s of what was captured "
			      "is left to refund",
			      money(amount, p->currency, m1, sizeof m1), id,
			      money(left, p->currency, m2, sizeof m2));
	amount_event(d, "PaymentRefunded", p, amount, NULL);
	return 0;
}

static void void_event(struct decision *d, const struct payment_state *p)
{
	struct cqrs_strbuf *b = decision_emit(d, "AuthorizationVoided");
	cqrs_strbuf_putc(b, '{');
	jb_key(b, "order_id");
	jb_uuid(b, p->order_id);
	cqrs_strbuf_putc(b, '}');
}

int payment_void(const struct command *c, const struct aggregate *a, const struct decide_ctx *ctx,
		 struct decision *d, cqrs_error *err)
{
	(void)ctx;
	(void)err;
	char id[37];
	if (payment_refused(c, a, d, id))
		return 0;
	void_event(d, &a->u.pay);
	return 0;
}

/* Undoes what the payment still holds: the open authorization is voided,
 * what was captured and not refunded is refunded. */
int payment_cancel(const struct command *c, const struct aggregate *a, const struct decide_ctx *ctx,
		   struct decision *d, cqrs_error *err)
{
	(void)ctx;
	(void)err;
	char id[37];
	if (payment_refused(c, a, d, id))
		return 0;
	const struct payment_state *p = &a->u.pay;
	if (!p->voided && p->captured < p->authorized)
		void_event(d, p);
	if (p->captured > p->refunded)
		amount_event(d, "PaymentRefunded", p, p->captured - p->refunded, NULL);
	return 0;
}
