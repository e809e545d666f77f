/*
 * gen-events: a deterministic stream of order events for the benchmarks.
 *
 *   gen-events [-t [-i]] [-s seed] count aggregates
 *
 * Writes count NDJSON events over (at most) aggregates Order aggregates to
 * stdout.  Every id is a random version 4 UUID chosen by the client; no
 * event carries expected_version or a timestamp, so appending them is a
 * plain append.  With -t, the ids are those the toolkit generates: no
 * event_id (the store makes a time-ordered version 7 one), and aggregate
 * and correlation ids are version 7 UUIDs in the order the orders start
 * (a clock of one millisecond per order from 2026-01-01, a billion
 * milliseconds later per seed after the first, so that the events of
 * -s 2 follow those of -s 1 as new events would).  With -t -i, the events
 * carry the version 7 event ids the store would have made (one millisecond
 * an event, from 2039), and are otherwise the same bytes as
 * with -t alone: for the storage floor of the scale benchmark, which takes
 * the ids as given.  The same seed gives the
 * same bytes on every machine (a private PRNG, no floating point).
 *
 * Orders are open a while, like real ones: a window of WINDOW orders is
 * active at once, each step picks one of them at random and emits its next
 * event, so the events of an aggregate come in version order but
 * interleaved with thousands of others.  An order's events are
 * OrderCreated (one or two items), OrderConfirmed, then PaymentProcessed and OrderShipped in
 * turn (installments and split shipments, so that count/aggregates events
 * fit one order), and one order in twenty ends with OrderCancelled.
 * Lines average about 400 bytes.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "banned.h"

#define WINDOW	   10000
#define BASE_EPOCH 1767225600 /* 2026-01-01T00:00:00Z */

static uint64_t rng[4];

static uint64_t splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
static uint64_t next(void)
{
	uint64_t r = rotl(rng[1] * 5, 7) * 9, t = rng[1] << 17;
	rng[2] ^= rng[0];
	rng[3] ^= rng[1];
	rng[1] ^= rng[2];
	rng[0] ^= rng[3];
	rng[2] ^= t;
	rng[3] = rotl(rng[3], 45);
	return r;
}

static int time_ordered; /* -t */
static int with_ids;	 /* -i */
static uint64_t seed_ms; /* the clock of -t: a later seed's orders start later */
/* The clock of -i's event ids, in 2039: after the ids a store makes now,
 * as the ids of new events are. */
#define IDS_EPOCH_MS (1ULL << 41)

static uint64_t below(uint64_t n)
{
	return next() % n; /* the bias is irrelevant here */
}

static void uuid_text(const uint8_t b[16], char out[37])
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 15];
	}
	out[o] = '\0';
}

/* A version 7 UUID at millisecond ms (RFC 9562): time first, then random. */
static void uuid7(char out[37], uint64_t ms)
{
	uint8_t b[16];
	uint64_t a = next(), c = next();
	memcpy(b, &a, 8);
	memcpy(b + 8, &c, 8);
	for (int i = 0; i < 6; i++)
		b[i] = (uint8_t)(ms >> (40 - 8 * i));
	b[6] = (uint8_t)(0x70 | (b[6] & 0x0f));
	b[8] = (uint8_t)(0x80 | (b[8] & 0x3f));
	uuid_text(b, out);
}

static void uuid4(char out[37])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t b[16];
	uint64_t a = next(), c = next();
	memcpy(b, &a, 8);
	memcpy(b + 8, &c, 8);
	b[6] = (uint8_t)(0x40 | (b[6] & 0x0f));
	b[8] = (uint8_t)(0x80 | (b[8] & 0x3f));
	size_t o = 0;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 15];
	}
	out[o] = '\0';
}

/* Minor units as the currency's decimal text: 5998 -> "59.98". */
static void money(char *buf, size_t cap, int64_t cents)
{
	snprintf(buf, cap, "%" PRId64 ".%02" PRId64, cents / 100, cents % 100);
}

/* RFC 3339 UTC without gmtime: days to a civil date (Hinnant). */
static void rfc3339(char out[32], uint64_t secs)
{
	uint64_t z = secs / 86400 + 719468, rem = secs % 86400;
	uint64_t era = z / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	unsigned d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
	unsigned y = (unsigned)(yoe + era * 400 + (m <= 2));
	snprintf(out, 32, "%04u-%02u-%02uT%02u:%02u:%02uZ", y % 10000, m, d, (unsigned)(rem / 3600),
		 (unsigned)(rem / 60 % 60), (unsigned)(rem % 60));
}

struct order {
	char id[37], correlation[37];
	uint64_t number;
	int64_t total; /* cents */
	int version, nevents;
	int cancels; /* ends with OrderCancelled */
};

static const char *const carriers[] = { "FedEx", "UPS", "DHL", "USPS" };
static const char *const cities[] = { "Springfield", "Portland", "Austin", "Denver", "Madison" };
static const char *const streets[] = { "Main St", "Oak Ave", "Elm St", "Maple Dr", "Cedar Ln" };

static uint64_t emitted;

static void created(struct order *o, char *data, size_t cap)
{
	int nitems = 1 + (int)below(2);
	int64_t total = 0;
	size_t n = (size_t)snprintf(data, cap,
				    "{\"order_number\":\"ORD-2026-%06" PRIu64
				    "\",\"customer_id\":\"cust-%" PRIu64 "\",\"items\":[",
				    o->number, below(50000));
	for (int i = 0; i < nitems; i++) {
		char pid[37], price[32];
		uuid4(pid);
		int64_t unit = 199 + (int64_t)below(20000);
		int qty = 1 + (int)below(4);
		total += unit * qty;
		money(price, sizeof price, unit);
		n += (size_t)snprintf(data + n, cap - n,
				      "%s{\"product_id\":\"%s\",\"sku\":\"SKU-%05" PRIu64
				      "\",\"quantity\":%d,\"unit_price\":%s}",
				      i ? "," : "", pid, below(100000), qty, price);
	}
	char tot[32];
	money(tot, sizeof tot, total);
	o->total = total;
	snprintf(data + n, cap - n,
		 "],\"currency\":\"USD\",\"total\":%s,\"shipping_address\":{\"name\":\"Customer "
		 "%" PRIu64 "\",\"street\":\"%" PRIu64
		 " %s\",\"city\":\"%s\",\"postal_code\":\"%05" PRIu64 "\",\"country\":\"US\"}}",
		 tot, below(50000), 1 + below(9999), streets[below(5)], cities[below(5)],
		 below(100000));
}

static void emit(struct order *o)
{
	char data[2048], uid[37];
	const char *type;
	o->version++;
	if (o->version == 1) {
		type = "OrderCreated";
		created(o, data, sizeof data);
	} else if (o->version == 2) {
		type = "OrderConfirmed";
		snprintf(data, sizeof data, "{}");
	} else if (o->version == o->nevents && o->cancels) {
		type = "OrderCancelled";
		snprintf(data, sizeof data, "{\"reason\":\"customer request\"}");
	} else if (o->version % 2 == 1) {
		char amount[32];
		type = "PaymentProcessed";
		uuid4(uid);
		money(amount, sizeof amount, o->total);
		snprintf(data, sizeof data,
			 "{\"payment_id\":\"%s\",\"amount\":%s,\"currency\":\"USD\"}", uid, amount);
	} else {
		char when[32];
		type = "OrderShipped";
		rfc3339(when, BASE_EPOCH + emitted * 7);
		snprintf(data, sizeof data,
			 "{\"tracking_number\":\"TRK%09" PRIu64
			 "\",\"carrier\":\"%s\",\"shipped_at\":\"%s\"}",
			 below(1000000000), carriers[below(4)], when);
	}
	char event_id[37], causation[37];
	/* as many draws either way, so that -i changes only the ids */
	if (with_ids)
		uuid7(event_id, IDS_EPOCH_MS + seed_ms + emitted);
	else
		uuid4(event_id);
	uuid4(causation);
	if (!time_ordered || with_ids)
		printf("{\"event_id\":\"%s\",", event_id);
	else
		putchar('{');
	printf("\"aggregate_id\":\"%s\",\"aggregate_type\":\"Order\","
	       "\"event_type\":\"%s\",\"data\":%s,\"metadata\":{\"correlation_id\":\"%s\","
	       "\"causation_id\":\"%s\",\"user_id\":\"user-%" PRIu64 "\"}}\n",
	       o->id, type, data, o->correlation, causation, below(1000));
	emitted++;
}

static uint64_t parse_count(const char *s, const char *what)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-') {
		fprintf(stderr, "gen-events: %s: not a count: '%s'\n", what, s);
		exit(64);
	}
	return v;
}

int main(int argc, char **argv)
{
	uint64_t seed = 1;
	int ch;
	while ((ch = getopt(argc, argv, "is:th")) != -1) {
		switch (ch) {
		case 'i': with_ids = 1; break;
		case 's': seed = parse_count(optarg, "seed"); break;
		case 't': time_ordered = 1; break;
		case 'h': puts("usage: gen-events [-t [-i]] [-s seed] count aggregates"); return 0;
		default:
			fputs("usage: gen-events [-t [-i]] [-s seed] count aggregates\n", stderr);
			return 64;
		}
	}
	if (argc - optind != 2 || (with_ids && !time_ordered)) {
		fputs("usage: gen-events [-t [-i]] [-s seed] count aggregates\n", stderr);
		return 64;
	}
	uint64_t count = parse_count(argv[optind], "count");
	uint64_t naggs = parse_count(argv[optind + 1], "aggregates");
	if (naggs == 0 || naggs > count)
		naggs = count;
	seed_ms = (seed - 1) * 1000000000ULL;
	for (int i = 0; i < 4; i++)
		rng[i] = splitmix(&seed);

	static char outbuf[1 << 16];
	setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
	static struct order window[WINDOW];
	size_t active = 0;
	uint64_t started = 0, base = naggs ? count / naggs : 0, extra = naggs ? count % naggs : 0;
	for (;;) {
		while (active < WINDOW && started < naggs) {
			struct order *o = &window[active++];
			if (time_ordered) {
				uint64_t ms = (uint64_t)BASE_EPOCH * 1000 + seed_ms + started;
				uuid7(o->id, ms);
				uuid7(o->correlation, ms);
			} else {
				uuid4(o->id);
				uuid4(o->correlation);
			}
			o->number = ++started;
			o->version = 0;
			o->nevents = (int)(base + (started <= extra));
			o->cancels = o->nevents >= 3 && below(20) == 0;
		}
		if (active == 0)
			break;
		size_t k = (size_t)below(active);
		emit(&window[k]);
		if (window[k].version == window[k].nevents)
			window[k] = window[--active];
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "gen-events: write error: %s\n", strerror(errno));
		return 74;
	}
	return 0;
}
