/*
 * Running one external saga step: fork and exec with the argv of the saga
 * definition (never a shell string), JSON on its stdin, JSON from its
 * stdout, its stderr passed through.  The program runs in a process group
 * of its own, so that a timeout ends it and everything it started:
 * SIGTERM, then SIGKILL after a grace period.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "saga/saga_impl.h"
#include "banned.h"

#define KILL_GRACE_US (1000 * 1000)
#define MAX_OUTPUT    CQRS_MAX_LINE

static int64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static bool executable(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && access(path, X_OK) == 0;
}

/* A name with a '/' is relative to the saga file's directory; a bare name
 * is looked up in PATH, then among the step programs shipped in share/. */
static bool find_program(const char *name, const char *dir, char *out, size_t cap)
{
	if (strchr(name, '/') != NULL) {
		if (name[0] == '/' || dir == NULL)
			snprintf(out, cap, "%s", name);
		else
			snprintf(out, cap, "%s/%s", dir, name);
		return true;
	}
	const char *path = getenv("PATH");
	if (path == NULL)
		path = "/usr/bin:/bin";
	while (*path != '\0') {
		const char *colon = strchr(path, ':');
		size_t n = colon ? (size_t)(colon - path) : strlen(path);
		snprintf(out, cap, "%.*s/%s", (int)(n ? n : 1), n ? path : ".", name);
		if (executable(out))
			return true;
		path += n + (colon ? 1 : 0);
	}
	char rel[512];
	snprintf(rel, sizeof rel, "steps/%s", name);
	cqrs_share_path(rel, out, cap);
	return executable(out);
}

/* Waits up to us for the child to end: true with *status when it did. */
static bool reap(pid_t pid, int64_t us, int *status)
{
	int64_t until = mono_us() + us;
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);
		if (r == pid)
			return true;
		if (r < 0 && errno != EINTR)
			return true; /* not ours to wait for any more */
		int64_t left = until - mono_us();
		if (left <= 0)
			return false;
		struct timespec ts = { 0, 5 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

static void describe(struct exec_result *res, const char *what, int v)
{
	snprintf(res->reason, sizeof res->reason, "%s %d", what, v);
	/* A program may say why in its output: {"error": "card declined"} */
	const char *e;
	size_t en;
	char msg[400];
	if (res->out.len > 0 && res->out.p[0] == '{' &&
	    cqrs_json_get(res->out.p, res->out.len, "error", &e, &en) &&
	    cqrs_json_string(e, en, msg, sizeof msg) > 0) {
		size_t n = strlen(res->reason);
		snprintf(res->reason + n, sizeof res->reason - n, ": %s", msg);
	}
}

int exec_step(const struct exec_spec *spec, struct exec_result *res, cqrs_error *err)
{
	cqrs_strbuf_reset(&res->out);
	res->timed_out = false;
	res->status = 0;
	res->reason[0] = '\0';
	char prog[4096];
	if (!find_program(spec->argv[0], spec->dir, prog, sizeof prog)) {
		res->outcome = EXEC_PERMANENT;
		res->status = 127;
		snprintf(res->reason, sizeof res->reason, "%s: program not found", spec->argv[0]);
		return 0;
	}
	int in[2], out[2];
	if (pipe2(in, O_CLOEXEC) < 0)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "pipe: %s", strerror(errno));
	if (pipe2(out, O_CLOEXEC) < 0) {
		close(in[0]);
		close(in[1]);
		return cqrs_fail(err, CQRS_EXIT_OSERR, "pipe: %s", strerror(errno));
	}
	/* orphans of step programs come to us, to be reaped */
	static bool subreaper;
	if (!subreaper)
		subreaper = prctl(PR_SET_CHILD_SUBREAPER, 1) == 0 || true;
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		return cqrs_fail(err, CQRS_EXIT_OSERR, "fork: %s", strerror(e));
	}
	if (pid == 0) {
		setpgid(0, 0);
		/* the tools ignore SIGPIPE; a step program gets the default */
		signal(SIGPIPE, SIG_DFL);
		if (dup2(in[0], STDIN_FILENO) < 0 || dup2(out[1], STDOUT_FILENO) < 0)
			_exit(126);
		for (char *const *e = spec->env; e != NULL && *e != NULL; e++)
			putenv(*e);
		execv(prog, spec->argv);
		int e = errno;
		dprintf(STDERR_FILENO, "%s: %s: %s\n", cqrs_tool_name(), prog, strerror(e));
		_exit(e == ENOENT ? 127 : 126);
	}
	setpgid(pid, pid);
	close(in[0]);
	close(out[1]);
	int wfd = in[1], rfd = out[0];
	fcntl(wfd, F_SETFL, O_NONBLOCK);
	fcntl(rfd, F_SETFL, O_NONBLOCK);
	size_t written = 0;
	if (spec->input_len == 0) {
		close(wfd);
		wfd = -1;
	}
	int64_t deadline = mono_us() + spec->timeout_us;
	bool too_big = false, exited = false;
	int status = 0;
	while (rfd >= 0 || !exited) {
		bool had_exited = exited;
		struct pollfd p[2];
		int n = 0, iw = -1, ir = -1;
		if (wfd >= 0) {
			iw = n;
			p[n++] = (struct pollfd){ .fd = wfd, .events = POLLOUT };
		}
		if (rfd >= 0) {
			ir = n;
			p[n++] = (struct pollfd){ .fd = rfd, .events = POLLIN };
		}
		int64_t left = deadline - mono_us();
		if (left <= 0) {
			res->timed_out = true;
			break;
		}
		/* the program's end is noticed by waitpid: look every few ms */
		int wait_ms = (int)(left / 1000 + 1);
		if (!exited && wait_ms > 5)
			wait_ms = 5;
		if (exited && wait_ms > 100)
			wait_ms = 100; /* a leftover holds stdout: do not wait for it long */
		int r = poll(p, (nfds_t)n, wait_ms);
		if (r < 0 && errno != EINTR)
			break;
		if (iw >= 0 && p[iw].revents != 0) {
			ssize_t w = write(wfd, spec->input + written, spec->input_len - written);
			if (w > 0)
				written += (size_t)w;
			if ((w < 0 && errno != EAGAIN && errno != EINTR) ||
			    written == spec->input_len) {
				close(wfd); /* EPIPE: the program did not want it all */
				wfd = -1;
			}
		}
		if (ir >= 0 && p[ir].revents != 0) {
			char buf[8192];
			ssize_t got = read(rfd, buf, sizeof buf);
			if (got > 0) {
				if (res->out.len + (size_t)got > MAX_OUTPUT)
					too_big = true;
				else
					cqrs_strbuf_put(&res->out, buf, (size_t)got);
			} else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
				close(rfd);
				rfd = -1;
			}
		}
		if (!exited) {
			pid_t w = waitpid(pid, &status, WNOHANG);
			if (w == pid)
				exited = true;
		}
		if (had_exited && r == 0)
			break;
		if (too_big)
			break;
	}
	if (!exited) {
		kill(-pid, SIGTERM);
		if (!reap(pid, KILL_GRACE_US, &status)) {
			kill(-pid, SIGKILL);
			reap(pid, 10 * 1000 * 1000, &status);
		}
	}
	/* whatever it left behind in its group goes with it, and is gone
	 * (reaped: the runner is their subreaper) before the step is over */
	kill(-pid, SIGKILL);
	for (int64_t until = mono_us() + 2000000; mono_us() < until;) {
		while (waitpid(-pid, NULL, WNOHANG) > 0)
			;
		if (kill(-pid, 0) < 0 && errno == ESRCH)
			break;
		struct timespec ts = { 0, 2 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	if (wfd >= 0)
		close(wfd);
	if (rfd >= 0)
		close(rfd);
	if (res->out.oom)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");

	if (res->timed_out) {
		char d[32];
		saga_duration_format(spec->timeout_us, d, sizeof d);
		res->outcome = EXEC_RETRY;
		res->status = 128 + SIGKILL;
		snprintf(res->reason, sizeof res->reason, "timed out after %s, killed", d);
	} else if (too_big) {
		res->outcome = EXEC_PERMANENT;
		snprintf(res->reason, sizeof res->reason, "output longer than %d bytes",
			 MAX_OUTPUT);
	} else if (WIFSIGNALED(status)) {
		res->outcome = EXEC_RETRY;
		res->status = 128 + WTERMSIG(status);
		describe(res, "killed by signal", WTERMSIG(status));
	} else {
		res->status = WEXITSTATUS(status);
		res->outcome = res->status == 0	   ? EXEC_OK
			       : res->status == 75 ? EXEC_RETRY
						   : EXEC_PERMANENT;
		if (res->outcome != EXEC_OK)
			describe(res, "exit status", res->status);
	}
	return 0;
}
