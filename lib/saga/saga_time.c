/*
 * The saga runner's clock and durations.  Schedules are kept as RFC 3339
 * text (sortable, readable with sqlite3) and computed in microseconds.
 * $CQRS_SAGA_NOW pins the clock, so that tests move time instead of
 * sleeping through backoffs, cool-downs and deadlines.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "saga/saga_impl.h"
#include "banned.h"

int64_t saga_time_parse(const char *text)
{
	char t[CQRS_TIMESTAMP_LEN + 1];
	if (text == NULL || cqrs_timestamp_normalize(text, strlen(text), t) < 0)
		return -1;
	return cqrs_timestamp_us(t);
}

void saga_time_format(int64_t us, char out[CQRS_TIMESTAMP_LEN + 1])
{
	time_t secs = (time_t)(us / 1000000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	size_t n = strftime(out, CQRS_TIMESTAMP_LEN + 1, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, CQRS_TIMESTAMP_LEN + 1 - n, ".%06dZ", (int)(us % 1000000));
}

int64_t saga_now(void)
{
	const char *pin = getenv("CQRS_SAGA_NOW");
	if (pin != NULL && *pin != '\0') {
		int64_t t = saga_time_parse(pin);
		if (t >= 0)
			return t;
	}
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

int64_t saga_duration_parse(const char *text)
{
	if (text == NULL || *text < '0' || *text > '9')
		return -1;
	char *end;
	long long v = strtoll(text, &end, 10);
	if (v < 0 || v > 100LL * 365 * 86400 * 1000)
		return -1;
	int64_t unit;
	if (*end == '\0' || strcmp(end, "s") == 0)
		unit = 1000000;
	else if (strcmp(end, "ms") == 0)
		unit = 1000;
	else if (strcmp(end, "m") == 0)
		unit = 60LL * 1000000;
	else if (strcmp(end, "h") == 0)
		unit = 3600LL * 1000000;
	else if (strcmp(end, "d") == 0)
		unit = 86400LL * 1000000;
	else
		return -1;
	/* at most 100 years in any unit, so that the product cannot overflow
	 * ("2014599990d" did) */
	if (v > 100LL * 365 * 86400 * 1000000 / unit)
		return -1;
	return (int64_t)v * unit;
}

void saga_duration_format(int64_t us, char *buf, size_t cap)
{
	if (us % 86400000000LL == 0 && us > 0)
		snprintf(buf, cap, "%lldd", (long long)(us / 86400000000LL));
	else if (us % 3600000000LL == 0 && us > 0)
		snprintf(buf, cap, "%lldh", (long long)(us / 3600000000LL));
	else if (us % 60000000 == 0 && us > 0)
		snprintf(buf, cap, "%lldm", (long long)(us / 60000000));
	else if (us % 1000000 == 0)
		snprintf(buf, cap, "%llds", (long long)(us / 1000000));
	else
		snprintf(buf, cap, "%lldms", (long long)(us / 1000));
}

int64_t cqrs_saga_duration_parse(const char *text)
{
	return saga_duration_parse(text);
}
