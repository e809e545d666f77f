/*
 * NDJSON input: lines from file operands or stdin, with memory bounded by
 * the longest allowed line, whatever the size of the input.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cqrs.h"
#include "banned.h"

#define CHUNK (64 * 1024)

struct cqrs_input {
	char *const *paths;
	int npaths;
	int next_path;
	int fd;
	const char *name;
	long lineno;
	bool eof;
	char *buf; /* holds at most one line plus one chunk */
	size_t cap, start, end;
};

cqrs_input *cqrs_input_open(char *const *paths, int npaths)
{
	cqrs_input *in = calloc(1, sizeof *in);
	if (in == NULL)
		return NULL;
	in->cap = CQRS_MAX_LINE + CHUNK + 2;
	in->buf = malloc(in->cap);
	if (in->buf == NULL) {
		free(in);
		return NULL;
	}
	in->paths = paths;
	in->npaths = npaths;
	in->fd = -1;
	in->name = "stdin";
	return in;
}

void cqrs_input_close(cqrs_input *in)
{
	if (in == NULL)
		return;
	if (in->fd > 0)
		close(in->fd);
	free(in->buf);
	free(in);
}

const char *cqrs_input_name(const cqrs_input *in)
{
	return in->name;
}

long cqrs_input_lineno(const cqrs_input *in)
{
	return in->lineno;
}

/* Opens the next operand; returns 1, 0 when there are no more, -1 on error. */
static int next_file(cqrs_input *in, cqrs_error *err)
{
	if (in->fd > 0)
		close(in->fd);
	in->fd = -1;
	in->start = in->end = 0;
	in->eof = false;
	in->lineno = 0;
	if (in->npaths == 0) {
		if (in->next_path++ > 0)
			return 0;
		in->fd = STDIN_FILENO;
		in->name = "stdin";
		return 1;
	}
	if (in->next_path >= in->npaths)
		return 0;
	const char *path = in->paths[in->next_path++];
	if (strcmp(path, "-") == 0) {
		in->fd = STDIN_FILENO;
		in->name = "stdin";
		return 1;
	}
	in->name = path;
	in->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (in->fd < 0)
		return cqrs_fail(err,
				 errno == ENOENT || errno == EACCES ? CQRS_EXIT_NOINPUT
								    : CQRS_EXIT_IOERR,
				 "%s: %s", path, strerror(errno));
	return 1;
}

static int fill(cqrs_input *in, cqrs_error *err)
{
	if (in->start > 0) {
		memmove(in->buf, in->buf + in->start, in->end - in->start);
		in->end -= in->start;
		in->start = 0;
	}
	for (;;) {
		ssize_t n = read(in->fd, in->buf + in->end, in->cap - 1 - in->end);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: read error: %s", in->name,
					 strerror(errno));
		if (n == 0)
			in->eof = true;
		in->end += (size_t)n;
		return 0;
	}
}

static bool blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t')
			return false;
	return true;
}

int cqrs_input_next(cqrs_input *in, char **line, size_t *len, cqrs_error *err)
{
	if (in->fd < 0) {
		int r = next_file(in, err);
		if (r <= 0)
			return r;
	}
	for (;;) {
		char *p = in->buf + in->start;
		size_t avail = in->end - in->start;
		char *nl = memchr(p, '\n', avail);
		size_t n;
		if (nl != NULL) {
			n = (size_t)(nl - p);
			in->start += n + 1;
		} else if (avail > CQRS_MAX_LINE + 1) {
			/* + 1: a line of the maximum length may still end in
			 * "\r\n" whose "\n" has not been read yet. */
			in->lineno++;
			/* Skip the rest of the line so that a caller that keeps
			 * going resumes at the next one. */
			for (;;) {
				in->start = in->end;
				if (in->eof)
					break;
				if (fill(in, err) < 0)
					return -1;
				char *q = memchr(in->buf, '\n', in->end);
				if (q != NULL) {
					in->start = (size_t)(q - in->buf) + 1;
					break;
				}
			}
			return cqrs_fail(err, CQRS_EXIT_DATAERR,
					 "%s:%ld: line longer than %d bytes", in->name, in->lineno,
					 CQRS_MAX_LINE);
		} else if (!in->eof) {
			if (fill(in, err) < 0)
				return -1;
			continue;
		} else if (avail > 0) {
			n = avail; /* last line without a final newline */
			in->start = in->end;
		} else {
			int r = next_file(in, err);
			if (r <= 0)
				return r;
			continue;
		}
		in->lineno++;
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n > CQRS_MAX_LINE)
			return cqrs_fail(err, CQRS_EXIT_DATAERR,
					 "%s:%ld: line longer than %d bytes", in->name, in->lineno,
					 CQRS_MAX_LINE);
		if (blank(p, n))
			continue;
		p[n] = '\0';
		*line = p;
		*len = n;
		return 1;
	}
}

static bool line_buffered(const cqrs_input *in)
{
	return in->eof || memchr(in->buf + in->start, '\n', in->end - in->start) != NULL;
}

bool cqrs_input_ready(cqrs_input *in)
{
	int fd = in->fd;
	if (fd < 0) {
		/* between operands: only stdin can keep us waiting */
		bool stdin_next = in->npaths == 0
					  ? in->next_path == 0
					  : in->next_path < in->npaths &&
						    strcmp(in->paths[in->next_path], "-") == 0;
		if (!stdin_next)
			return true;
		fd = STDIN_FILENO;
	} else if (line_buffered(in)) {
		return true;
	}
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, 0) != 1)
		return false;
	if (in->fd < 0 || in->end - in->start > CQRS_MAX_LINE)
		return true;
	/* Readable: take what is there (this read does not block) and see
	 * whether it completes a line. */
	if (fill(in, NULL) < 0)
		return true;
	return line_buffered(in);
}

int cqrs_input_wait(cqrs_input *in, int stop_fd)
{
	while (!cqrs_input_ready(in)) {
		struct pollfd p[2] = { { .fd = in->fd >= 0 ? in->fd : STDIN_FILENO,
					 .events = POLLIN },
				       { .fd = stop_fd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return 1; /* the read says what is wrong */
		if (p[1].revents != 0)
			return 0;
	}
	return 1;
}
