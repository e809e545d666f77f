/*
 * cqrs_memstream (cqrs.h): open_memstream's contract for what the lib
 * writes (the text and position after fflush, fseeko, rewind and fclose),
 * and the one difference that is its reason: out of memory is an error.
 * glibc's own memstream drops a write it cannot hold and then flushes and
 * closes with success, on a text cut short.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cqrs.h"
#include "unit.h"

static void contract(void)
{
	char *buf = NULL;
	size_t len = 99;
	FILE *f = cqrs_memstream(&buf, &len);
	CHECK(f != NULL && buf != NULL && len == 0 && buf[0] == '\0', "an empty stream");
	fputs("[1,2,", f);
	CHECK(fflush(f) == 0 && len == 5 && strcmp(buf, "[1,2,") == 0, "after fflush: %zu", len);
	/* the trailing comma replaced, as the command results do */
	CHECK(fseeko(f, -1, SEEK_CUR) == 0 && ftello(f) == 4, "fseeko back one");
	fputs("]", f);
	CHECK(fflush(f) == 0 && len == 5 && strcmp(buf, "[1,2]") == 0, "overwritten: %s", buf);
	/* rewind and write less: len is the position, as open_memstream's */
	rewind(f);
	fputs("ab", f);
	CHECK(fflush(f) == 0 && len == 2 && memcmp(buf, "ab", 2) == 0, "rewound: %zu", len);
	/* growth well past the first buffer and stdio's own */
	rewind(f);
	for (int i = 0; i < 100000; i++)
		fprintf(f, "%05d,", i);
	CHECK(ferror(f) == 0 && fclose(f) == 0, "a large text closes");
	CHECK(len == 600000 && buf[len] == '\0' && memcmp(buf + len - 6, "99999,", 6) == 0,
	      "a large text: %zu bytes", len);
	free(buf);
	/* a seek past what was written is refused */
	f = cqrs_memstream(&buf, &len);
	fputs("abc", f);
	CHECK(fseeko(f, 4, SEEK_SET) != 0 && fseeko(f, 3, SEEK_SET) == 0, "seek bounds");
	CHECK(fclose(f) == 0 && len == 3 && strcmp(buf, "abc") == 0, "closed at its end: %zu", len);
	free(buf);
}

/* In a child with its address space capped: writes until one fails, then
 * the stream must say so (exit 0), where glibc's memstream says nothing. */
static int out_of_memory_child(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = cqrs_memstream(&buf, &len);
	if (f == NULL)
		return 2;
	struct rlimit rl;
	getrlimit(RLIMIT_AS, &rl);
	rl.rlim_cur = 256u << 20;
	if (setrlimit(RLIMIT_AS, &rl) < 0)
		return 3;
	static char chunk[4096];
	memset(chunk, 'x', sizeof chunk);
	int failed = 0;
	for (int i = 0; i < 1 << 17 && !failed; i++)
		failed = fwrite(chunk, 1, sizeof chunk, f) != sizeof chunk || fflush(f) != 0;
	if (!failed)
		return 4; /* 512 MiB written under a 256 MiB cap? */
	/* the error stays: a later small write that fits does not clear it */
	fputc('x', f);
	int ok = fflush(f) == 0 && ferror(f) != 0;
	ok = fclose(f) == EOF && ok; /* and the close says a write was lost */
	free(buf);
	return ok ? 0 : 5;
}

static void out_of_memory(void)
{
#if defined(__SANITIZE_ADDRESS__)
	/* ASan's shadow memory is far past any cap on the address space */
	printf("# out of memory: not under AddressSanitizer (make check runs it)\n");
	return;
#else
	pid_t pid = fork();
	if (pid == 0)
		_exit(out_of_memory_child());
	int st = 0;
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "out of memory: exit %d (2 no stream, 3 no cap, 4 never failed, 5 not reported)",
	      WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st));
#endif
}

int main(void)
{
	contract();
	out_of_memory();
	return unit_done();
}
