/*
 * Metrics across fork (cqrs-metrics(7)): a child that exits through exit()
 * runs the destructor that merges a run's counts at its end; it must not
 * merge its parent's, which would count them twice.  The child is told by
 * fork (a pthread_atfork handler), not by a getpid() at exit.  And the
 * effective uid that every owner check uses is the kernel's.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cqrs.h"
#include "unit.h"
#include "banned.h"

static char dir[] = "/tmp/test_metrics.XXXXXX";

static char *slurp(const char *name)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return NULL;
	static char text[4096];
	size_t n = fread(text, 1, sizeof text - 1, f);
	text[n] = '\0';
	fclose(f);
	return text;
}

static void remove_dir(void)
{
	const char *names[] = { "cqrs_unit.prom", ".cqrs_unit.journal", ".cqrs_unit.prom.lock" };
	char path[256];
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
}

int main(void)
{
	CHECK(cqrs_euid() == geteuid(), "cqrs_euid %ld, geteuid %ld", (long)cqrs_euid(),
	      (long)geteuid());
	if (mkdtemp(dir) == NULL) {
		perror(dir);
		return 1;
	}
	cqrs_tool_init("cqrs-unit");
	cqrs_error err = { 0 };
	CHECK(cqrs_metrics_init(dir, &err) == 0, "init: %s", err.msg);
	cqrs_metrics_add(cqrs_metrics_series(CQRS_METRIC_EVENTS_APPENDED, "unit", NULL), 3);

	fflush(NULL);
	pid_t child = fork();
	if (child == 0)
		exit(0); /* destructors run: this one must merge nothing */
	int status = -1;
	CHECK(child > 0 && waitpid(child, &status, 0) == child && status == 0, "fork, wait");
	CHECK(slurp(".cqrs_unit.journal") == NULL && slurp("cqrs_unit.prom") == NULL,
	      "the child merged its parent's counts");

	/* the parent's own flush: its three events, once (the first journal
	 * of a directory without a .prom file is folded at once) */
	CHECK(cqrs_metrics_flush() == 0, "flush");
	const char *prom = slurp("cqrs_unit.prom");
	CHECK(prom != NULL && strstr(prom, "\ncqrs_events_appended_total{tool=\"unit\"} 3\n"),
	      "cqrs_unit.prom: %s", prom ? prom : "missing");
	CHECK(cqrs_metrics_flush() == 0, "a flush with nothing new");
	prom = slurp("cqrs_unit.prom");
	CHECK(prom != NULL && strstr(prom, "\ncqrs_events_appended_total{tool=\"unit\"} 3\n"),
	      "after a second flush: %s", prom ? prom : "missing");
	remove_dir();
	return unit_done();
}
