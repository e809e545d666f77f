/*
 * The CPU cost (user + sys, getrusage) of what metrics add to one process:
 * init, one command timed, its line appended to the journal (the common
 * exit), and apart from it one fold of the journal into the .prom file
 * (lock, read, add, write, fsync, rename), which only one process in many
 * pays (cqrs-metrics(7)).  tests/bench/metrics-cost runs it; the
 * whole-process measures there are too noisy for a few microseconds.
 *
 * usage: metrics-merge DIR [count]
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "cqrs.h"

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

static void one_command(void)
{
	double received = cqrs_metrics_clock();
	cqrs_metrics_observe(
		cqrs_metrics_series(CQRS_METRIC_COMMAND_DURATION, "CreateOrder", "accepted"),
		cqrs_metrics_clock() - received);
	cqrs_metrics_add(cqrs_metrics_series(CQRS_METRIC_EVENTS_APPENDED, "cqrs-command", NULL), 1);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs("usage: metrics-merge DIR [count]\n", stderr);
		return 64;
	}
	int64_t count = 1000;
	if (argc > 2 && (cqrs_parse_int64(argv[2], &count) < 0 || count == 0)) {
		fputs("metrics-merge: count: not a positive number\n", stderr);
		return 64;
	}
	cqrs_tool_init("cqrs-command");
	cqrs_error err = { 0 };
	/* appends only: the .prom file is never old enough to fold */
	setenv("CQRS_METRICS_FOLD", "1000000", 1);
	if (cqrs_metrics_init(argv[1], &err) < 0)
		cqrs_die_error(&err);
	one_command();
	if (cqrs_metrics_flush() < 0 || cqrs_metrics_fold_dir(argv[1], &err) < 0)
		return 74; /* the .prom file exists from here on */
	double timed = 0, appended = 0, folded = 0;
	for (int64_t i = 0; i < count; i++) {
		double t0 = cpu_seconds();
		one_command();
		double t1 = cpu_seconds();
		if (cqrs_metrics_flush() < 0)
			return 74;
		double t2 = cpu_seconds();
		timed += t1 - t0;
		appended += t2 - t1;
		if (i % 10 == 9) { /* a fold of ten processes' lines */
			if (cqrs_metrics_fold_dir(argv[1], &err) < 0)
				cqrs_die_error(&err);
			folded += cpu_seconds() - t2;
		}
	}
	printf("per process: %.1f us CPU to time one command, %.1f us to append its line; "
	       "%.1f us per fold of 10 lines (%lld runs)\n",
	       timed / (double)count * 1e6, appended / (double)count * 1e6,
	       folded / (double)(count / 10 > 0 ? count / 10 : 1) * 1e6, (long long)count);
	return 0;
}
