/*
 * A consumer's durable position (cqrs-read --checkpoint NAME): how far a
 * named consumer has taken the store's events, kept where the consumer
 * may write (never in the store, which it may only read).
 *
 * DIR/NAME.pos holds one JSON line: the sequence and hash of the last
 * event taken, and the store it belongs to (its path, for people, and the
 * hash of its first event, which a copy made by replaying it keeps).  It
 * is replaced atomically (cqrs_textfile_replace), mode 0600.  DIR/NAME.lock
 * is held with flock(2) while a consumer runs, so that two consumers of
 * one name never advance the same position.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cqrs.h"
#include "banned.h"

struct cqrs_position {
	char dir[PATH_MAX];
	char name[CQRS_POSITION_NAME_MAX + 1];
	char file[PATH_MAX + CQRS_POSITION_NAME_MAX + 8]; /* DIR/NAME.pos, for messages */
	int lock_fd;
	int64_t sequence;
	uint8_t hash[CQRS_HASH_LEN];
	bool has_hash;
	uint8_t store_id[CQRS_HASH_LEN]; /* the hash of the store's first event */
	bool has_store_id;
	char store[PATH_MAX]; /* where the store was when the position was saved */
	char updated[CQRS_TIMESTAMP_LEN + 1];
};

int cqrs_position_name_check(const char *name, cqrs_error *err)
{
	size_t len = strlen(name);
	if (len == 0 || len > CQRS_POSITION_NAME_MAX)
		return cqrs_fail(err, CQRS_EXIT_USAGE,
				 "--checkpoint: a name has 1 to %d characters: '%s'",
				 CQRS_POSITION_NAME_MAX, name);
	if (name[0] == '.' || name[0] == '-')
		return cqrs_fail(err, CQRS_EXIT_USAGE,
				 "--checkpoint: a name does not start with '%c': '%s'", name[0],
				 name);
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return cqrs_fail(err, CQRS_EXIT_USAGE,
					 "--checkpoint: a name is letters, digits, '.', '_' and "
					 "'-': '%s'",
					 name);
	}
	return 0;
}

const char *cqrs_position_dir(const char *option, char *buf, size_t cap)
{
	if (option != NULL && *option != '\0')
		return option;
	const char *env = getenv("CQRS_CHECKPOINT_DIR");
	if (env != NULL && *env != '\0')
		return env;
	/* The XDG base directory rules: a relative XDG_STATE_HOME is ignored. */
	const char *state = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	int n;
	if (state != NULL && state[0] == '/')
		n = snprintf(buf, cap, "%s/cqrs-tools/positions", state);
	else if (home != NULL && home[0] == '/')
		n = snprintf(buf, cap, "%s/.local/state/cqrs-tools/positions", home);
	else
		return NULL;
	return n > 0 && (size_t)n < cap ? buf : NULL;
}

/* Like mkdir -p, each new directory 0700: the positions are the
 * consumer's alone. */
static int make_dirs(const char *dir, cqrs_error *err)
{
	char path[PATH_MAX];
	if ((size_t)snprintf(path, sizeof path, "%s", dir) >= sizeof path)
		return cqrs_fail(err, CQRS_EXIT_USAGE, "%s: path too long", dir);
	for (char *p = path + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			return cqrs_fail(err,
					 errno == EACCES ? CQRS_EXIT_NOPERM : CQRS_EXIT_CANTCREAT,
					 "%s: cannot create the positions directory: %s", path,
					 strerror(errno));
		*p = c;
		if (c == '\0')
			return 0;
	}
}

/* Another user who owns or may write the directory or a file in it could
 * move the consumer back (repeating notifications) or forward (losing
 * them). */
static int check_owned(const struct stat *sb, const char *path, const char *what, cqrs_error *err)
{
	if (sb->st_uid != cqrs_euid())
		return cqrs_fail(err, CQRS_EXIT_NOPERM,
				 "%s: %s owned by uid %ld, not by this user (uid %ld): refused",
				 path, what, (long)sb->st_uid, (long)cqrs_euid());
	if (sb->st_mode & (S_IWGRP | S_IWOTH))
		return cqrs_fail(err, CQRS_EXIT_NOPERM,
				 "%s: %s writable by others (mode %04o): refused", path, what,
				 (unsigned)(sb->st_mode & 07777));
	return 0;
}

/* 0 when dir is a directory of ours, 1 when it does not exist, -1. */
static int check_dir(const char *dir, cqrs_error *err)
{
	struct stat sb;
	if (stat(dir, &sb) < 0) {
		if (errno == ENOENT)
			return 1;
		return cqrs_fail(err, errno == EACCES ? CQRS_EXIT_NOPERM : CQRS_EXIT_IOERR,
				 "%s: %s", dir, strerror(errno));
	}
	if (!S_ISDIR(sb.st_mode))
		return cqrs_fail(err, CQRS_EXIT_CANTCREAT, "%s: not a directory", dir);
	return check_owned(&sb, dir, "positions directory", err);
}

/* A file of the positions directory, opened without following a link and
 * checked on its descriptor. */
static int open_checked(const char *path, int flags, cqrs_error *err)
{
	int fd = open(path, flags | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd < 0) {
		if (errno == ENOENT)
			return -2;
		return cqrs_fail(
			err, errno == EACCES || errno == ELOOP ? CQRS_EXIT_NOPERM : CQRS_EXIT_IOERR,
			"%s: %s", path,
			errno == ELOOP ? "a symbolic link: refused" : strerror(errno));
	}
	struct stat sb;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return cqrs_fail(err, CQRS_EXIT_NOPERM, "%s: not a regular file: refused", path);
	}
	if (check_owned(&sb, path, "file", err) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int lock(cqrs_position *p, cqrs_error *err)
{
	char path[sizeof p->file];
	snprintf(path, sizeof path, "%s/%s.lock", p->dir, p->name);
	int fd = open_checked(path, O_RDWR | O_CREAT, err);
	if (fd < 0)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		close(fd);
		if (e == EWOULDBLOCK)
			return cqrs_fail(err, CQRS_EXIT_TEMPFAIL,
					 "checkpoint '%s' is in use by another consumer (%s)",
					 p->name, path);
		return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", path, strerror(e));
	}
	p->lock_fd = fd;
	return 0;
}

static int bad_file(const cqrs_position *p, const char *what, cqrs_error *err)
{
	return cqrs_fail(err, CQRS_EXIT_DATAERR, "%s:1: not a position file: %s", p->file, what);
}

/* A string member into buf; false when absent or not a string that fits. */
static bool get_string(const char *obj, size_t len, const char *key, char *buf, size_t cap)
{
	const char *v;
	size_t vn;
	if (!cqrs_json_get(obj, len, key, &v, &vn))
		return false;
	long n = cqrs_json_string(v, vn, buf, cap);
	if (n < 0 || (size_t)n >= cap)
		return false;
	buf[n] = '\0';
	return true;
}

static int get_hash(const char *obj, size_t len, const char *key, uint8_t out[CQRS_HASH_LEN],
		    bool *has)
{
	char hex[2 * CQRS_HASH_LEN + 1];
	const char *v;
	size_t vn;
	*has = false;
	if (!cqrs_json_get(obj, len, key, &v, &vn))
		return 0;
	if (!get_string(obj, len, key, hex, sizeof hex) ||
	    cqrs_hash_parse(hex, strlen(hex), out) < 0)
		return -1;
	*has = true;
	return 0;
}

static int parse(cqrs_position *p, char *text, size_t len, cqrs_error *err)
{
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		len--;
	text[len] = '\0';
	cqrs_error jerr = { 0 };
	if (cqrs_json_compact(text, &len, &jerr) < 0)
		return jerr.code == CQRS_EXIT_OSERR ? (*err = jerr, -1)
						    : bad_file(p, jerr.msg, err);
	const char *v;
	size_t vn;
	char name[CQRS_POSITION_NAME_MAX + 1], num[32];
	if (len == 0 || text[0] != '{')
		return bad_file(p, "not a JSON object", err);
	if (!get_string(text, len, "checkpoint", name, sizeof name) || strcmp(name, p->name) != 0)
		return bad_file(p, "its \"checkpoint\" is not this name", err);
	if (!cqrs_json_get(text, len, "sequence", &v, &vn) || vn >= sizeof num)
		return bad_file(p, "no \"sequence\"", err);
	memcpy(num, v, vn);
	num[vn] = '\0';
	if (cqrs_parse_int64(num, &p->sequence) < 0)
		return bad_file(p, "\"sequence\" is not a non-negative integer", err);
	if (get_hash(text, len, "hash", p->hash, &p->has_hash) < 0 ||
	    get_hash(text, len, "store_id", p->store_id, &p->has_store_id) < 0)
		return bad_file(p, "a hash is not 64 lowercase hex digits", err);
	if (p->sequence > 0 && !p->has_hash)
		return bad_file(p, "no \"hash\" for its sequence", err);
	if (!get_string(text, len, "store", p->store, sizeof p->store))
		p->store[0] = '\0';
	if (!get_string(text, len, "updated", p->updated, sizeof p->updated))
		p->updated[0] = '\0';
	return 0;
}

static int load(cqrs_position *p, cqrs_error *err)
{
	int fd = open_checked(p->file, O_RDONLY, err);
	if (fd == -2)
		return 0; /* never saved: from the first event */
	if (fd < 0)
		return -1;
	char text[PATH_MAX + 1024];
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, text + len, sizeof text - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", p->file, strerror(e));
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == sizeof text - 1) {
			close(fd);
			return bad_file(p, "too long", err);
		}
	}
	close(fd);
	return parse(p, text, len, err);
}

cqrs_position *cqrs_position_open(const char *dir, const char *name, unsigned flags,
				  cqrs_error *err)
{
	if (cqrs_position_name_check(name, err) < 0)
		return NULL;
	cqrs_position *p = calloc(1, sizeof *p);
	if (p == NULL) {
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		return NULL;
	}
	p->lock_fd = -1;
	if ((size_t)snprintf(p->dir, sizeof p->dir, "%s", dir) >= sizeof p->dir) {
		cqrs_fail(err, CQRS_EXIT_USAGE, "%s: path too long", dir);
		goto fail;
	}
	snprintf(p->name, sizeof p->name, "%s", name);
	snprintf(p->file, sizeof p->file, "%s/%s.pos", p->dir, name);
	int r = check_dir(dir, err);
	if (r < 0)
		goto fail;
	if (r == 1 && !(flags & CQRS_POSITION_LOCK))
		return p; /* nothing saved yet, and nothing to save */
	if (r == 1 && (make_dirs(dir, err) < 0 || check_dir(dir, err) != 0))
		goto fail;
	if ((flags & CQRS_POSITION_LOCK) && lock(p, err) < 0)
		goto fail;
	if (load(p, err) < 0)
		goto fail;
	return p;
fail:
	cqrs_position_close(p);
	return NULL;
}

void cqrs_position_close(cqrs_position *p)
{
	if (p == NULL)
		return;
	if (p->lock_fd >= 0)
		close(p->lock_fd);
	free(p);
}

int64_t cqrs_position_sequence(const cqrs_position *p)
{
	return p->sequence;
}

/* The store's first event (sequence 1: the store is append-only), by
 * which a position knows its store. */
static int first_hash(cqrs_store *st, uint8_t out[CQRS_HASH_LEN], cqrs_error *err)
{
	return cqrs_store_hash_at(st, 1, out, err);
}

/* The store the position now belongs to: its first event, and its path
 * for people. */
static void adopt_store(cqrs_position *p, const char *store_path, int have_first,
			const uint8_t first[CQRS_HASH_LEN])
{
	if (have_first == 1) {
		memcpy(p->store_id, first, CQRS_HASH_LEN);
		p->has_store_id = true;
	}
	char *abs = realpath(store_path, NULL);
	snprintf(p->store, sizeof p->store, "%s", abs != NULL ? abs : store_path);
	free(abs);
}

int cqrs_position_check_store(cqrs_position *p, cqrs_store *st, const char *store_path,
			      cqrs_error *err)
{
	uint8_t first[CQRS_HASH_LEN];
	int r = first_hash(st, first, err);
	if (r < 0)
		return -1;
	char what[sizeof p->file + CQRS_POSITION_NAME_MAX + 32];
	snprintf(what, sizeof what, "checkpoint '%s' (%s)", p->name, p->file);
	if (r == 1 && p->has_store_id && memcmp(first, p->store_id, CQRS_HASH_LEN) != 0)
		return cqrs_fail(err, CQRS_EXIT_CONFIG,
				 "%s: %s belongs to another store (%s): its first event differs; "
				 "use another name, or --set-position to start over here",
				 store_path, what, p->store[0] ? p->store : "unnamed");
	if (cqrs_store_expect(st, store_path, p->sequence, p->has_hash ? p->hash : NULL, what,
			      err) < 0)
		return -1;
	adopt_store(p, store_path, r, first);
	return 0;
}

int cqrs_position_set(cqrs_position *p, cqrs_store *st, const char *store_path, int64_t sequence,
		      cqrs_error *err)
{
	uint8_t first[CQRS_HASH_LEN], hash[CQRS_HASH_LEN];
	int r = first_hash(st, first, err);
	if (r < 0)
		return -1;
	if (sequence > 0) {
		cqrs_filter f = { .after = sequence - 1, .to = sequence, .limit = 1 };
		cqrs_cursor *c = cqrs_store_read(st, &f, err);
		if (c == NULL)
			return -1;
		cqrs_event ev;
		int found = cqrs_cursor_next(c, &ev, err);
		if (found == 1)
			memcpy(hash, ev.hash, CQRS_HASH_LEN);
		cqrs_cursor_close(c);
		if (found < 0)
			return -1;
		if (found == 0) {
			int64_t head = cqrs_store_last_sequence(st, err);
			if (head < 0)
				return -1;
			return cqrs_fail(err, CQRS_EXIT_USAGE,
					 "--set-position: %s has no event %lld: it ends at %lld",
					 store_path, (long long)sequence, (long long)head);
		}
	}
	p->has_store_id = false;
	adopt_store(p, store_path, r, first);
	return cqrs_position_save(p, sequence, sequence > 0 ? hash : NULL, err);
}

static size_t format(const cqrs_position *p, char *buf, size_t cap)
{
	FILE *f = fmemopen(buf, cap, "w");
	if (f == NULL)
		return 0;
	char hex[2 * CQRS_HASH_LEN + 1];
	fputs("{\"checkpoint\":", f);
	cqrs_json_write_string(f, p->name, strlen(p->name));
	fprintf(f, ",\"sequence\":%lld", (long long)p->sequence);
	if (p->has_hash) {
		cqrs_hash_format(p->hash, hex);
		fprintf(f, ",\"hash\":\"%s\"", hex);
	}
	if (p->store[0] != '\0') {
		fputs(",\"store\":", f);
		cqrs_json_write_string(f, p->store, strlen(p->store));
	}
	if (p->has_store_id) {
		cqrs_hash_format(p->store_id, hex);
		fprintf(f, ",\"store_id\":\"%s\"", hex);
	}
	if (p->updated[0] != '\0')
		fprintf(f, ",\"updated\":\"%s\"", p->updated);
	fputs("}\n", f);
	long n = ftell(f);
	bool bad = ferror(f) != 0;
	fclose(f);
	return bad || n <= 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

int cqrs_position_save(cqrs_position *p, int64_t sequence, const uint8_t hash[CQRS_HASH_LEN],
		       cqrs_error *err)
{
	p->sequence = sequence;
	p->has_hash = sequence > 0 && hash != NULL;
	if (p->has_hash)
		memcpy(p->hash, hash, CQRS_HASH_LEN);
	cqrs_timestamp_now(p->updated);
	char text[PATH_MAX + 1024], file[CQRS_POSITION_NAME_MAX + 8];
	size_t len = format(p, text, sizeof text);
	if (len == 0)
		return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "%s: the position does not fit", p->file);
	snprintf(file, sizeof file, "%s.pos", p->name);
	return cqrs_textfile_replace(p->dir, file, text, len, 0600, err);
}

int cqrs_position_print(const cqrs_position *p, FILE *out)
{
	char text[PATH_MAX + 1024];
	size_t len = format(p, text, sizeof text);
	return len > 0 && fwrite(text, 1, len, out) == len ? 0 : -1;
}
