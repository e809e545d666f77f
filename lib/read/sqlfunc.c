/*
 * SQL functions every views connection has, so that projections and ad-hoc
 * queries compute with money exactly: amounts become integer minor units
 * on the way in and decimal text on the way out, never a float sum.
 */
#include "config.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "cqrs.h"
#include "read/views_impl.h"
#include "banned.h"

/* The digits of the last currency asked about: a rebuild asks millions of
 * times about the same few.  Per thread: a parallel build asks from
 * several. */
static int digits_of(const char cur[4])
{
	static _Thread_local char last[4];
	static _Thread_local int last_digits;
	if (memcmp(last, cur, 4) != 0) {
		last_digits = cqrs_currency_digits(cur);
		memcpy(last, cur, 4);
	}
	return last_digits;
}

static bool currency_arg(sqlite3_context *ctx, sqlite3_value *v, char out[4])
{
	const unsigned char *c = sqlite3_value_text(v);
	if (c == NULL || strlen((const char *)c) != 3 || !cqrs_currency_valid((const char *)c)) {
		char msg[128];
		snprintf(msg, sizeof msg, "not a currency code: '%.16s'",
			 c != NULL ? (const char *)c : "NULL");
		sqlite3_result_error(ctx, msg, -1);
		return false;
	}
	memcpy(out, c, 4);
	return true;
}

static int64_t pow10i(int digits)
{
	int64_t s = 1;
	for (int i = 0; i < digits; i++)
		s *= 10;
	return s;
}

/*
 * minor_units(amount, currency): 59.98 USD -> 5998.  Text is parsed
 * exactly.  A REAL (what json_extract returns for 29.99) is accepted when
 * it is the double nearest to an amount with the currency's digits: the
 * integer minor units divided by the scale must give back the same double,
 * which holds for every amount below 2^53 minor units.
 */
static void fn_minor_units(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	(void)argc;
	if (sqlite3_value_type(argv[0]) == SQLITE_NULL) {
		sqlite3_result_null(ctx);
		return;
	}
	char cur[4];
	if (!currency_arg(ctx, argv[1], cur))
		return;
	int digits = digits_of(cur);
	int64_t scale = pow10i(digits), minor;
	char msg[256];
	switch (sqlite3_value_type(argv[0])) {
	case SQLITE_INTEGER: {
		int64_t v = sqlite3_value_int64(argv[0]);
		if (v > INT64_MAX / scale || v < INT64_MIN / scale) {
			sqlite3_result_error(ctx, "amount too large", -1);
			return;
		}
		sqlite3_result_int64(ctx, v * scale);
		return;
	}
	case SQLITE_FLOAT: {
		double d = sqlite3_value_double(argv[0]);
		double m = d * (double)scale;
		/* also false for NaN */
		if (!(m > -9007199254740992.0 && m < 9007199254740992.0)) {
			sqlite3_result_error(ctx, "amount too large to be exact", -1);
			return;
		}
		minor = (int64_t)(m < 0 ? m - 0.5 : m + 0.5);
		if ((double)minor / (double)scale != d) {
			snprintf(msg, sizeof msg,
				 "amount %.15g has more decimals than %s allows (%d)", d, cur,
				 digits);
			sqlite3_result_error(ctx, msg, -1);
			return;
		}
		sqlite3_result_int64(ctx, minor);
		return;
	}
	default: {
		const char *t = (const char *)sqlite3_value_text(argv[0]);
		int n = sqlite3_value_bytes(argv[0]);
		cqrs_error err = { 0 };
		if (cqrs_money_parse(t, (size_t)n, cur, &minor, &err) < 0) {
			sqlite3_result_error(ctx, err.msg, -1);
			return;
		}
		sqlite3_result_int64(ctx, minor);
	}
	}
}

/* money(minor, currency): 5998 USD -> '59.98', 1500 JPY -> '1500' */
static void fn_money(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	(void)argc;
	if (sqlite3_value_type(argv[0]) == SQLITE_NULL) {
		sqlite3_result_null(ctx);
		return;
	}
	if (sqlite3_value_numeric_type(argv[0]) != SQLITE_INTEGER) {
		sqlite3_result_error(ctx, "money() needs integer minor units", -1);
		return;
	}
	char cur[4];
	if (!currency_arg(ctx, argv[1], cur))
		return;
	/* what cqrs_money_format prints, without printf: this runs for
	 * every event of a rebuild */
	int digits = digits_of(cur);
	int64_t minor = sqlite3_value_int64(argv[0]);
	uint64_t u = minor < 0 ? (uint64_t)0 - (uint64_t)minor : (uint64_t)minor;
	char buf[32];
	int o = (int)sizeof buf;
	for (int i = 0; i < digits || u > 0 || i <= digits; i++) {
		if (i == digits && digits > 0)
			buf[--o] = '.';
		buf[--o] = (char)('0' + u % 10);
		u /= 10;
	}
	if (minor < 0)
		buf[--o] = '-';
	sqlite3_result_text(ctx, buf + o, (int)sizeof buf - o, SQLITE_TRANSIENT);
}

/* mean_minor(sum, count): the average in minor units, rounded half away
 * from zero; NULL when count is 0. */
static void fn_mean_minor(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	(void)argc;
	if (sqlite3_value_type(argv[0]) == SQLITE_NULL ||
	    sqlite3_value_type(argv[1]) == SQLITE_NULL || sqlite3_value_int64(argv[1]) == 0) {
		sqlite3_result_null(ctx);
		return;
	}
	int64_t sum = sqlite3_value_int64(argv[0]), n = sqlite3_value_int64(argv[1]);
	if (n < 0) {
		/* -INT64_MIN does not exist: an error, not undefined behaviour */
		if (sum == INT64_MIN || n == INT64_MIN) {
			sqlite3_result_error(ctx, "mean_minor: integer overflow", -1);
			return;
		}
		sum = -sum;
		n = -n;
	}
	int64_t q = sum / n, r = sum % n;
	if (r < 0)
		r = -r;
	if (r >= n - r) /* r * 2 >= n, without overflow */
		q += sum < 0 ? -1 : 1;
	sqlite3_result_int64(ctx, q);
}

int cqrs_sql_register_functions(sqlite3 *db)
{
	int flags = SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS;
	if (sqlite3_create_function(db, "minor_units", 2, flags, NULL, fn_minor_units, NULL,
				    NULL) != SQLITE_OK ||
	    sqlite3_create_function(db, "money", 2, flags, NULL, fn_money, NULL, NULL) !=
		    SQLITE_OK ||
	    sqlite3_create_function(db, "mean_minor", 2, flags, NULL, fn_mean_minor, NULL, NULL) !=
		    SQLITE_OK)
		return -1;
	return 0;
}
