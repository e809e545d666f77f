/*
 * Money is exact: amounts are decimal text with at most the currency's
 * minor-unit digits, computed as integer minor units, never as doubles.
 */
#include "config.h"

#include <string.h>

#include "cqrs.h"
#include "banned.h"

bool cqrs_currency_valid(const char *c)
{
	return c != NULL && strlen(c) == 3 && c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' &&
	       c[1] <= 'Z' && c[2] >= 'A' && c[2] <= 'Z';
}

int cqrs_currency_digits(const char *currency)
{
	/* ISO 4217 exponents that differ from the usual 2, as one string of
	 * codes: every amount of every event asks, so one scan, no strcmp */
	static const char zero[] = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF "
				   "XOF XPF ";
	static const char three[] = "BHD IQD JOD KWD LYD OMR TND ";
	if (currency[0] == '\0' || currency[1] == '\0' || currency[2] == '\0' ||
	    currency[3] != '\0')
		return 2;
	for (const char *p = zero; *p != '\0'; p += 4)
		if (memcmp(p, currency, 3) == 0)
			return 0;
	for (const char *p = three; *p != '\0'; p += 4)
		if (memcmp(p, currency, 3) == 0)
			return 3;
	return 2;
}

int cqrs_money_parse(const char *text, size_t len, const char *currency, int64_t *minor,
		     cqrs_error *err)
{
	int digits = cqrs_currency_digits(currency);
	size_t i = 0;
	bool negative = false;
	if (i < len && text[i] == '-') {
		negative = true;
		i++;
	}
	int64_t v = 0;
	size_t int_digits = 0;
	for (; i < len && text[i] >= '0' && text[i] <= '9'; i++, int_digits++) {
		if (v > (INT64_MAX / 10 - 9) / 1000)
			return cqrs_fail(err, CQRS_EXIT_DATAERR, "amount too large: %.*s", (int)len,
					 text);
		v = v * 10 + (text[i] - '0');
	}
	if (int_digits == 0)
		return cqrs_fail(err, CQRS_EXIT_DATAERR, "not an amount: %.*s", (int)len, text);
	int frac = 0;
	if (i < len && text[i] == '.') {
		i++;
		for (; i < len && text[i] >= '0' && text[i] <= '9'; i++) {
			if (++frac > digits)
				return cqrs_fail(
					err, CQRS_EXIT_DATAERR,
					"amount %.*s has more decimals than %s allows (%d)",
					(int)len, text, currency, digits);
			v = v * 10 + (text[i] - '0');
		}
		if (frac == 0)
			return cqrs_fail(err, CQRS_EXIT_DATAERR, "not an amount: %.*s", (int)len,
					 text);
	}
	if (i != len)
		return cqrs_fail(err, CQRS_EXIT_DATAERR, "not an amount: %.*s", (int)len, text);
	for (; frac < digits; frac++)
		v *= 10;
	*minor = negative ? -v : v;
	return 0;
}

void cqrs_money_format(int64_t minor, const char *currency, char *buf, size_t cap)
{
	int digits = cqrs_currency_digits(currency);
	uint64_t u = minor < 0 ? (uint64_t)0 - (uint64_t)minor : (uint64_t)minor;
	uint64_t scale = 1;
	for (int i = 0; i < digits; i++)
		scale *= 10;
	if (digits == 0)
		snprintf(buf, cap, "%s%llu", minor < 0 ? "-" : "", (unsigned long long)u);
	else
		snprintf(buf, cap, "%s%llu.%0*llu", minor < 0 ? "-" : "",
			 (unsigned long long)(u / scale), digits, (unsigned long long)(u % scale));
}
