/*
 * Money (money.c): an amount in a currency, as the commands and events
 * carry it.  The input is "CUR amount" (a currency code, a space, the
 * amount's bytes) or only the amount (USD).  What parses formats back to
 * text that parses to the same minor units.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cqrs.h"
#include "fuzz.h"
#include "banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096)
		return 0;
	char currency[4] = "USD";
	if (size >= 4 && data[3] == ' ') {
		memcpy(currency, data, 3);
		data += 4;
		size -= 4;
	}
	(void)cqrs_currency_valid(currency);
	int digits = cqrs_currency_digits(currency);
	FUZZ_ASSERT(digits >= 0 && digits <= 3, "%d digits", digits);
	char *text = fuzz_string(data, size);
	int64_t minor;
	cqrs_error err = { 0 };
	if (cqrs_money_parse(text, size, currency, &minor, &err) == 0) {
		char buf[64];
		cqrs_money_format(minor, currency, buf, sizeof buf);
		int64_t back;
		FUZZ_ASSERT(cqrs_money_parse(buf, strlen(buf), currency, &back, &err) == 0 &&
				    back == minor,
			    "'%s' -> %lld -> '%s' does not parse back", text, (long long)minor,
			    buf);
	} else {
		FUZZ_ASSERT(err.code == CQRS_EXIT_DATAERR, "code %d", err.code);
	}
	free(text);
	return 0;
}
