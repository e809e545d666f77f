/*
 * Running one external saga step: fork and exec with the argv of the saga
 * definition (never a shell string), JSON on its stdin, JSON from its
 * stdout, its stderr passed through.
 *
 * The states of one call, one function each: spawn, then feed its stdin
 * and read its stdout until it ends or its time is up (pump), terminate
 * it at a timeout, reap it, clean up whatever it started, classify how it
 * went.  The program runs in a process group of its own, and the runner is
 * a child subreaper, so that nothing it started outlives the step, not
 * even a grandchild that made itself a new session (setsid, a daemon's
 * double fork): at a timeout its group and every descendant get SIGTERM,
 * then SIGKILL after a grace period; when it ends, whatever it left behind
 * is killed and reaped.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
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

static void nap_ms(long ms)
{
	struct timespec ts = { 0, ms * 1000 * 1000 };
	nanosleep(&ts, NULL);
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
		if (until - mono_us() <= 0)
			return false;
		nap_ms(5);
	}
}

/* --- descendants ----------------------------------------------------------- */

struct proc_list {
	pid_t *pid, *ppid;
	size_t n, cap;
};

static bool proc_add(struct proc_list *l, pid_t pid, pid_t ppid)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		pid_t *a = realloc(l->pid, cap * sizeof *a);
		if (a == NULL)
			return false;
		l->pid = a;
		pid_t *b = realloc(l->ppid, cap * sizeof *b);
		if (b == NULL)
			return false;
		l->ppid = b;
		l->cap = cap;
	}
	l->pid[l->n] = pid;
	l->ppid[l->n++] = ppid;
	return true;
}

/* The parent of a process, from /proc/PID/stat ("PID (comm) S PPID ..."):
 * comm may hold spaces and parentheses, so read after the last ')'. */
static pid_t parent_of(const char *pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%s/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	char state;
	int ppid;
	if (p == NULL || sscanf(p + 1, " %c %d", &state, &ppid) != 2)
		return -1;
	return (pid_t)ppid;
}

/* Signals every process below the runner, found by walking /proc from our
 * pid down: the step program's own group is not enough, since a
 * grandchild may have left it with setsid.  Returns how many it found. */
static size_t signal_descendants(int sig)
{
	struct proc_list l = { 0 };
	DIR *d = opendir("/proc");
	if (d == NULL)
		return 0;
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		pid_t ppid = parent_of(e->d_name);
		/* pid 1 and kernel threads (parent 0) are never ours */
		if (ppid > 0 && !proc_add(&l, (pid_t)strtol(e->d_name, NULL, 10), ppid))
			break;
	}
	closedir(d);
	/* mark the tree from the top: l.ppid[i] becomes -1 (no real parent
	 * is) once pid i is known to be ours, and is then signalled */
	size_t found = 0;
	pid_t self = getpid();
	for (bool more = true; more;) {
		more = false;
		for (size_t i = 0; i < l.n; i++) {
			bool ours = l.ppid[i] == self;
			for (size_t j = 0; !ours && l.ppid[i] > 0 && j < l.n; j++)
				ours = l.ppid[j] == -1 && l.pid[j] == l.ppid[i];
			if (ours) {
				l.ppid[i] = -1;
				kill(l.pid[i], sig);
				found++;
				more = true;
			}
		}
	}
	free(l.pid);
	free(l.ppid);
	return found;
}

/* After the step program is reaped: kill its group, and whatever escaped
 * it, and reap them (they are re-parented to us, the subreaper).  The
 * runner has no children but its step program's, so any child is one of
 * those.  Having no child at all is the common case, and costs no walk of
 * /proc. */
static void clean_up(pid_t pgid)
{
	kill(-pgid, SIGKILL);
	for (int64_t until = mono_us() + 2000000; mono_us() < until;) {
		pid_t r;
		while ((r = waitpid(-1, NULL, WNOHANG)) > 0)
			;
		if (r < 0 && errno == ECHILD)
			return;
		signal_descendants(SIGKILL);
		nap_ms(2);
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

/* --- one call ------------------------------------------------------------ */

struct call {
	const struct exec_spec *spec;
	struct exec_result *res;
	pid_t pid;
	int wfd, rfd;
	size_t written;
	int64_t deadline;
	bool exited, too_big;
	int status;
};

static CQRS_NORETURN void exec_child(const struct call *c, const char *prog, int in, int out)
{
	setpgid(0, 0);
	/* the tools ignore SIGPIPE; a step program gets the default */
	signal(SIGPIPE, SIG_DFL);
	if (dup2(in, STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0)
		_exit(126);
	for (char *const *e = c->spec->env; e != NULL && *e != NULL; e++)
		putenv(*e);
	execv(prog, c->spec->argv);
	int e = errno;
	dprintf(STDERR_FILENO, "%s: %s: %s\n", cqrs_tool_name(), prog, strerror(e));
	_exit(e == ENOENT ? 127 : 126);
}

static int spawn(struct call *c, const char *prog, cqrs_error *err)
{
	int in[2], out[2];
	if (pipe2(in, O_CLOEXEC) < 0)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "pipe: %s", strerror(errno));
	if (pipe2(out, O_CLOEXEC) < 0) {
		close(in[0]);
		close(in[1]);
		return cqrs_fail(err, CQRS_EXIT_OSERR, "pipe: %s", strerror(errno));
	}
	/* orphans of step programs come to us, to be killed and reaped; where
	 * the kernel refuses, they still die with their group */
	static bool subreaper;
	if (!subreaper)
		subreaper = prctl(PR_SET_CHILD_SUBREAPER, 1) == 0 || true;
	fflush(stdout);
	fflush(stderr);
	c->pid = fork();
	if (c->pid == 0)
		exec_child(c, prog, in[0], out[1]);
	int e = errno;
	close(in[0]);
	close(out[1]);
	if (c->pid < 0) {
		close(in[1]);
		close(out[0]);
		return cqrs_fail(err, CQRS_EXIT_OSERR, "fork: %s", strerror(e));
	}
	setpgid(c->pid, c->pid);
	c->wfd = in[1];
	c->rfd = out[0];
	fcntl(c->wfd, F_SETFL, O_NONBLOCK);
	fcntl(c->rfd, F_SETFL, O_NONBLOCK);
	if (c->spec->input_len == 0) {
		close(c->wfd);
		c->wfd = -1;
	}
	c->deadline = mono_us() + c->spec->timeout_us;
	return 0;
}

static void feed_stdin(struct call *c)
{
	const struct exec_spec *spec = c->spec;
	ssize_t w = write(c->wfd, spec->input + c->written, spec->input_len - c->written);
	if (w > 0)
		c->written += (size_t)w;
	if ((w < 0 && errno != EAGAIN && errno != EINTR) || c->written == spec->input_len) {
		close(c->wfd); /* EPIPE: the program did not want it all */
		c->wfd = -1;
	}
}

static void read_stdout(struct call *c)
{
	char buf[8192];
	ssize_t got = read(c->rfd, buf, sizeof buf);
	if (got > 0) {
		if (c->res->out.len + (size_t)got > MAX_OUTPUT)
			c->too_big = true;
		else
			cqrs_strbuf_put(&c->res->out, buf, (size_t)got);
	} else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
		close(c->rfd);
		c->rfd = -1;
	}
}

/* Feeds and reads until the program has ended and its stdout is closed
 * (or quiet a moment after its end: a leftover may hold it), its output
 * is too long, or its time is up (res->timed_out). */
static void pump(struct call *c)
{
	while (c->rfd >= 0 || !c->exited) {
		bool had_exited = c->exited;
		struct pollfd p[2];
		int n = 0, iw = -1, ir = -1;
		if (c->wfd >= 0) {
			iw = n;
			p[n++] = (struct pollfd){ .fd = c->wfd, .events = POLLOUT };
		}
		if (c->rfd >= 0) {
			ir = n;
			p[n++] = (struct pollfd){ .fd = c->rfd, .events = POLLIN };
		}
		int64_t left = c->deadline - mono_us();
		if (left <= 0) {
			c->res->timed_out = true;
			return;
		}
		/* the program's end is noticed by waitpid: look every few ms */
		int wait_ms = (int)(left / 1000 + 1);
		if (wait_ms > (c->exited ? 100 : 5))
			wait_ms = c->exited ? 100 : 5;
		int r = poll(p, (nfds_t)n, wait_ms);
		if (r < 0 && errno != EINTR)
			return;
		if (iw >= 0 && p[iw].revents != 0)
			feed_stdin(c);
		if (ir >= 0 && p[ir].revents != 0)
			read_stdout(c);
		if (!c->exited && waitpid(c->pid, &c->status, WNOHANG) == c->pid)
			c->exited = true;
		if ((had_exited && r == 0) || c->too_big)
			return;
	}
}

/* Its time is up (or its output too long): SIGTERM to its group and to
 * every descendant, SIGKILL to the group after the grace period. */
static void terminate(struct call *c)
{
	kill(-c->pid, SIGTERM);
	signal_descendants(SIGTERM);
	if (reap(c->pid, KILL_GRACE_US, &c->status))
		return;
	kill(-c->pid, SIGKILL);
	reap(c->pid, 10 * 1000 * 1000, &c->status);
}

static void classify(const struct call *c, struct exec_result *res)
{
	if (res->timed_out) {
		char d[32];
		saga_duration_format(c->spec->timeout_us, d, sizeof d);
		res->outcome = EXEC_RETRY;
		res->status = 128 + SIGKILL;
		snprintf(res->reason, sizeof res->reason, "timed out after %s, killed", d);
	} else if (c->too_big) {
		res->outcome = EXEC_PERMANENT;
		snprintf(res->reason, sizeof res->reason, "output longer than %d bytes",
			 MAX_OUTPUT);
	} else if (WIFSIGNALED(c->status)) {
		res->outcome = EXEC_RETRY;
		res->status = 128 + WTERMSIG(c->status);
		describe(res, "killed by signal", WTERMSIG(c->status));
	} else {
		res->status = WEXITSTATUS(c->status);
		res->outcome = res->status == 0	   ? EXEC_OK
			       : res->status == 75 ? EXEC_RETRY
						   : EXEC_PERMANENT;
		if (res->outcome != EXEC_OK)
			describe(res, "exit status", res->status);
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
	struct call c = { .spec = spec, .res = res, .wfd = -1, .rfd = -1 };
	if (spawn(&c, prog, err) < 0)
		return -1;
	pump(&c);
	if (!c.exited)
		terminate(&c);
	clean_up(c.pid);
	if (c.wfd >= 0)
		close(c.wfd);
	if (c.rfd >= 0)
		close(c.rfd);
	if (res->out.oom)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	classify(&c, res);
	return 0;
}
