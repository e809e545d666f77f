/* What every tool does at start and at exit: its name in messages, the C
 * locale, and a stdout whose failure is noticed. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <locale.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cqrs.h"
#include "ops/log.h"
#include "banned.h"

static const char *tool_name = "cqrs";
static bool stdout_gone;

int cqrs_fail(cqrs_error *err, int code, const char *fmt, ...)
{
	if (err != NULL) {
		va_list ap;
		va_start(ap, fmt);
		err->code = code;
		vsnprintf(err->msg, sizeof err->msg, fmt, ap);
		va_end(ap);
	}
	return -1;
}

void cqrs_tool_init(const char *name)
{
	tool_name = name;
	setlocale(LC_ALL, "C");
	/* A reader that goes away is noticed as EPIPE on write, so that the
	 * tool can end quietly instead of dying by signal in the middle of a
	 * transaction. */
	signal(SIGPIPE, SIG_IGN);
	static char outbuf[1 << 16];
	setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
	cqrs_log_format_env(); /* after the name: a bad value is a message */
}

const char *cqrs_tool_name(void)
{
	return tool_name;
}

void cqrs_test_pause(const char *var)
{
	static bool done;
	const char *dir = getenv(var);
	if (dir == NULL || done)
		return;
	done = true;
	char path[4096];
	snprintf(path, sizeof path, "%s/loaded", dir);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, "\n", 1) != 1)
			cqrs_warn("%s: cannot write %s", var, path);
		close(fd);
	}
	snprintf(path, sizeof path, "%s/go", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	char b[64];
	while (fd >= 0 && read(fd, b, sizeof b) > 0)
		;
	if (fd >= 0)
		close(fd);
}

/* Every message goes through the logs (lib/ops/log.c): the text form is
 * "tool: message", the JSON form one object per line. */
void cqrs_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cqrs_vlog(CQRS_LOG_WARNING, fmt, ap);
	va_end(ap);
}

void cqrs_die(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cqrs_vlog(CQRS_LOG_ERROR, fmt, ap);
	va_end(ap);
	exit(cqrs_finish_stdout(code));
}

void cqrs_die_error(const cqrs_error *err)
{
	cqrs_die(err->code, "%s", err->msg);
}

bool cqrs_stdout_gone(void)
{
	if (!stdout_gone && ferror(stdout) && errno == EPIPE)
		stdout_gone = true;
	return stdout_gone;
}

int cqrs_finish_stdout(int code)
{
	errno = 0;
	if (fflush(stdout) != 0 || ferror(stdout)) {
		if (errno == EPIPE || stdout_gone)
			return code;
		cqrs_log(CQRS_LOG_ERROR, "write error on standard output: %s",
			 strerror(errno ? errno : EIO));
		return code ? code : CQRS_EXIT_IOERR;
	}
	return code;
}

int cqrs_parse_int64(const char *s, int64_t *out)
{
	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	char *end;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0)
		return -1;
	*out = v;
	return 0;
}

void cqrs_print_version(void)
{
	printf("%s (%s) %s\n", tool_name, PACKAGE_NAME, PACKAGE_VERSION);
}

bool cqrs_progress_wanted(void)
{
	/* a log collector wants lines, not a counter redrawn in place */
	return cqrs_log_format() == CQRS_LOG_TEXT && isatty(STDERR_FILENO) == 1;
}

void cqrs_progress_show(const char *what, int64_t done, int64_t total, bool end)
{
	fprintf(stderr, "\r%s: %s%s%lld", tool_name, what != NULL ? what : "",
		what != NULL ? ": " : "", (long long)done);
	if (total > 0)
		fprintf(stderr, "/%lld events (%lld%%)", (long long)total,
			(long long)(done * 100 / total));
	else
		fputs(" events", stderr);
	fputs(end ? "\n" : "", stderr);
}

const char *cqrs_share_path(const char *name, char *buf, size_t cap)
{
	const char *dir = getenv("CQRS_SHAREDIR");
	if (dir == NULL || *dir == '\0')
		dir = PKGDATADIR;
	snprintf(buf, cap, "%s/%s", dir, name);
	return buf;
}

/* --- options and usage ---------------------------------------------------------- */

/* getopt's own messages are text whatever --log-format says: it is told to
 * keep quiet (opterr 0, a leading ':' so that a missing argument is told
 * from an unknown option), and the same words go through cqrs_warn. */
static void option_error(char **argv, int ch, const struct option *longopts)
{
	const char *arg = argv[optind - 1];
	bool named_long = false;
	const char *name = "?";
	if (strncmp(arg, "--", 2) == 0) {
		size_t n = strcspn(arg + 2, "=");
		int matches = 0;
		for (const struct option *o = longopts; o->name != NULL; o++) {
			if (strncmp(o->name, arg + 2, n) != 0)
				continue;
			if (o->name[n] == '\0') { /* exact: that one */
				matches = 1;
				name = o->name;
				named_long = optopt == o->val;
				break;
			}
			matches++;
			name = o->name;
			named_long = optopt == o->val;
		}
		if (optopt == 0) {
			if (matches > 1)
				cqrs_log(CQRS_LOG_ERROR, "option '%s' is ambiguous", arg);
			else
				cqrs_log(CQRS_LOG_ERROR, "unrecognized option '%s'", arg);
			return;
		}
	}
	if (named_long && ch == ':')
		cqrs_log(CQRS_LOG_ERROR, "option '--%s' requires an argument", name);
	else if (named_long)
		cqrs_log(CQRS_LOG_ERROR, "option '--%s' doesn't allow an argument", name);
	else if (ch == ':')
		cqrs_log(CQRS_LOG_ERROR, "option requires an argument -- '%c'", optopt);
	else
		cqrs_log(CQRS_LOG_ERROR, "invalid option -- '%c'", optopt);
}

int cqrs_getopt_long(int argc, char **argv, const char *optstring, const struct option *longopts,
		     int *index)
{
	char quiet[128];
	snprintf(quiet, sizeof quiet, ":%s", optstring);
	opterr = 0;
	int ch = getopt_long(argc, argv, quiet, longopts, index);
	if (ch == '?' || ch == ':') {
		option_error(argv, ch, longopts);
		return '?';
	}
	return ch;
}

void cqrs_print_usage(const char *text, int code)
{
	if (code == 0 || cqrs_log_format() != CQRS_LOG_JSON) {
		fputs(text, code ? stderr : stdout);
		return;
	}
	/* one line, the synopsis' words with single spaces */
	char line[1024];
	size_t n = 0;
	bool space = false;
	for (const char *p = text; *p != '\0' && n + 2 < sizeof line; p++) {
		if (*p == ' ' || *p == '\t' || *p == '\n') {
			space = n > 0;
			continue;
		}
		if (space)
			line[n++] = ' ';
		space = false;
		line[n++] = *p;
	}
	line[n] = '\0';
	cqrs_log(CQRS_LOG_ERROR, "%s", line);
}

int cqrs_follow_signal_fd(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (fd < 0)
		cqrs_die(CQRS_EXIT_OSERR, "signalfd failed: %s", strerror(errno));
	return fd;
}

int64_t cqrs_backoff_ms(int attempt, int64_t first, int64_t most)
{
	int64_t ms = first;
	for (int i = 0; i < attempt && ms < most; i++)
		ms *= 2;
	return ms < most ? ms : most;
}
