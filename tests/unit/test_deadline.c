/*
 * The time limit of one event's statements (cqrs_deadline, views_impl.h):
 * a statement past it is interrupted while it runs; before it is started
 * and once it is stopped nothing is.  A rebuild of ten million events
 * failed with "cannot create an index: interrupted" when its deferred
 * indexes, built after the last event, took longer than that event's
 * --timeout: the last event's limit was still running.
 */
#include "config.h"

#include <sqlite3.h>
#include <time.h>

#include "cqrs.h"
#include "read/views_impl.h"
#include "unit.h"

/* Enough virtual machine steps for the progress handler to run often. */
static int long_statement(sqlite3 *db)
{
	return sqlite3_exec(db,
			    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
			    " WHERE x < 200000) SELECT count(*) FROM c",
			    NULL, NULL, NULL);
}

/* Until the monotonic clock is past the deadline (no sleep: a wait for
 * the condition itself). */
static void wait_past(const struct cqrs_deadline *d)
{
	struct timespec ts;
	do
		clock_gettime(CLOCK_MONOTONIC, &ts);
	while ((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec <= d->at_ns);
}

int main(void)
{
	sqlite3 *db;
	CHECK(sqlite3_open(":memory:", &db) == SQLITE_OK, "open");
	struct cqrs_deadline d = { .timeout_ms = 1 };
	cqrs_deadline_attach(db, &d);
	CHECK(long_statement(db) == SQLITE_OK && !d.expired, "attached, not started: no limit");

	cqrs_deadline_start(&d);
	wait_past(&d);
	CHECK(long_statement(db) == SQLITE_INTERRUPT && d.expired, "started and past: interrupted");

	cqrs_deadline_start(&d);
	CHECK(!d.expired, "started again: not expired");
	wait_past(&d);
	cqrs_deadline_stop(&d);
	CHECK(long_statement(db) == SQLITE_OK && !d.expired,
	      "stopped: what follows the event's statements has no limit");

	d.timeout_ms = 0;
	cqrs_deadline_start(&d);
	CHECK(long_statement(db) == SQLITE_OK && !d.expired, "no timeout: no limit");
	sqlite3_close(db);
	return unit_done();
}
