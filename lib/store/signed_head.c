/*
 * Signed chain heads (cqrs-keygen(1), cqrs-read --verify --signing-key):
 * the chain shows that history was not edited; a head signed with the
 * store owner's Ed25519 key shows who sealed it, as a Certificate
 * Transparency log signs its tree heads.
 *
 * Key files are one JSON line each:
 *   PATH      {"cqrs_signing_key":"ed25519","key_id":"<16 hex>","seed":"<64 hex>"}
 *   PATH.pub  {"cqrs_public_key":"ed25519","key_id":"<16 hex>","public_key":"<64 hex>"}
 * The seed is RFC 8032's 32-byte private key; the key id is the first 8
 * bytes of SHA-256 of the 32-byte public key, so that a head names the
 * key that can check it (key rotation: one .pub file per key id).
 *
 * A head is one JSON line in exactly one form (cqrs_signed_head_format),
 * and the signature covers a text of its own (cqrs_signed_head_text), so
 * that checking never depends on how a JSON parser reads the line.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dlfcn.h>
#include <nettle/eddsa.h>
#include <nettle/sha2.h>

#include "cqrs.h"
#include "store/store_impl.h"
#include "banned.h"

#define SEED_LEN     ED25519_KEY_SIZE
#define KEY_FILE_MAX 512

struct cqrs_signing_key {
	uint8_t seed[SEED_LEN];
	cqrs_public_key pub;
};

/* --- hex ------------------------------------------------------------------ */

static void hex_format(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Exactly 2n lowercase hex digits. */
static int hex_parse(const char *s, size_t len, uint8_t *out, size_t n)
{
	if (len != 2 * n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

/* A string member of a compact object holding exactly n bytes in hex. */
static int get_hex(const char *obj, size_t len, const char *key, uint8_t *out, size_t n)
{
	const char *v;
	size_t vn;
	char text[2 * CQRS_SIGNATURE_LEN + 1];
	if (!cqrs_json_get(obj, len, key, &v, &vn))
		return -1;
	long tn = cqrs_json_string(v, vn, text, sizeof text);
	int r = tn < 0 ? -1 : hex_parse(text, (size_t)tn, out, n);
	explicit_bzero(text, sizeof text);
	return r;
}

/* A string member equal to want. */
static bool get_is(const char *obj, size_t len, const char *key, const char *want)
{
	const char *v;
	size_t vn;
	char text[64];
	if (!cqrs_json_get(obj, len, key, &v, &vn))
		return false;
	long tn = cqrs_json_string(v, vn, text, sizeof text);
	return tn >= 0 && (size_t)tn == strlen(want) && memcmp(text, want, (size_t)tn) == 0;
}

/* --- keys ----------------------------------------------------------------- */

static void key_id_of(const uint8_t key[CQRS_PUBLIC_KEY_LEN], uint8_t id[CQRS_KEY_ID_LEN])
{
	struct sha256_ctx ctx;
	uint8_t digest[SHA256_DIGEST_SIZE];
	sha256_init(&ctx);
	sha256_update(&ctx, CQRS_PUBLIC_KEY_LEN, key);
	sha256_digest(&ctx, sizeof digest, digest);
	memcpy(id, digest, CQRS_KEY_ID_LEN);
}

/* Ed25519 is in Nettle's public-key half, libhogweed, which pulls in GMP:
 * loaded by the paths that sign or check, so that every other run of
 * cqrs-read (and the tools that share this library) starts without them
 * (0.5 ms a process when linked). */
#ifndef HOGWEED_SONAME
#define HOGWEED_SONAME "libhogweed.so.6"
#endif
static struct {
	void (*public_key)(uint8_t *pub, const uint8_t *priv);
	void (*sign)(const uint8_t *pub, const uint8_t *priv, size_t length, const uint8_t *msg,
		     uint8_t *signature);
	int (*verify)(const uint8_t *pub, size_t length, const uint8_t *msg,
		      const uint8_t *signature);
} ed25519;

static int ed25519_load(cqrs_error *err)
{
	if (ed25519.verify != NULL)
		return 0;
	void *h = dlopen(HOGWEED_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL)
		return cqrs_fail(err, CQRS_EXIT_UNAVAILABLE,
				 "%s: %s (Nettle's public-key library, Debian package "
				 "libhogweed6): signed heads need it",
				 HOGWEED_SONAME, dlerror());
	/* POSIX's way from a void * to a function pointer */
	*(void **)&ed25519.public_key = dlsym(h, "nettle_ed25519_sha512_public_key");
	*(void **)&ed25519.sign = dlsym(h, "nettle_ed25519_sha512_sign");
	*(void **)&ed25519.verify = dlsym(h, "nettle_ed25519_sha512_verify");
	if (ed25519.public_key == NULL || ed25519.sign == NULL || ed25519.verify == NULL) {
		ed25519.verify = NULL;
		return cqrs_fail(err, CQRS_EXIT_UNAVAILABLE, "%s: no Ed25519 in it",
				 HOGWEED_SONAME);
	}
	return 0;
}

/* relay ops (issue 14): an NATS nkey's public key from its seed */
int cqrs_ed25519_public_of_seed(const uint8_t seed[32], uint8_t pub[32], cqrs_error *err)
{
	if (ed25519_load(err) < 0)
		return -1;
	ed25519.public_key(pub, seed);
	return 0;
}

/* After ed25519_load. */
static void public_of_seed(const uint8_t seed[SEED_LEN], cqrs_public_key *pub)
{
	ed25519.public_key(pub->key, seed);
	key_id_of(pub->key, pub->id);
}

/* The whole of a small file on fd, NUL-terminated, without its final
 * newline: its length, or -1 with *err (74, or 65 when too long). */
static long slurp(int fd, const char *path, char *buf, size_t cap, const char *what,
		  cqrs_error *err)
{
	size_t used = 0;
	for (;;) {
		ssize_t n = read(fd, buf + used, cap - 1 - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", path, strerror(errno));
		if (n == 0)
			break;
		used += (size_t)n;
		if (used == cap - 1)
			return cqrs_fail(err, CQRS_EXIT_DATAERR, "%s: not %s: too long", path,
					 what);
	}
	if (used > 0 && buf[used - 1] == '\n')
		used--;
	if (used > 0 && buf[used - 1] == '\r')
		used--;
	buf[used] = '\0';
	return (long)used;
}

static int open_failed(const char *path, const char *what, cqrs_error *err)
{
	if (errno == ENOENT)
		return cqrs_fail(err, CQRS_EXIT_NOINPUT, "%s: no such %s", path, what);
	if (errno == ELOOP)
		return cqrs_fail(err, CQRS_EXIT_NOPERM,
				 "%s: a symbolic link: a %s is read from its own file only, "
				 "refused",
				 path, what);
	return cqrs_fail(err, errno == EACCES ? CQRS_EXIT_NOPERM : CQRS_EXIT_IOERR, "%s: %s", path,
			 strerror(errno));
}

/* A private key is its owner's alone: nobody else may own it or have any
 * access to it (ssh's rule for identity files). */
static int check_private(int fd, const char *path, cqrs_error *err)
{
	struct stat sb;
	if (fstat(fd, &sb) < 0)
		return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", path, strerror(errno));
	if (!S_ISREG(sb.st_mode))
		return cqrs_fail(err, CQRS_EXIT_NOPERM, "%s: not a regular file: refused", path);
	if (sb.st_uid != cqrs_euid()) {
		char owner[256], me[256];
		return cqrs_fail(err, CQRS_EXIT_NOPERM,
				 "%s: signing key owned by %s, not by %s: a private key is its "
				 "owner's alone, refused",
				 path, cqrs_user_name(sb.st_uid, owner, sizeof owner),
				 cqrs_user_name(cqrs_euid(), me, sizeof me));
	}
	if (sb.st_mode & 077)
		return cqrs_fail(err, CQRS_EXIT_NOPERM,
				 "%s: signing key open to group or others (mode %04o): refused; "
				 "it must be mode 0600 (chmod 600 %s), and a key others could "
				 "read is best replaced (cqrs-keygen(1), Key rotation)",
				 path, (unsigned)(sb.st_mode & 07777), path);
	return 0;
}

/* A key file's text into buf (KEY_FILE_MAX), after check (who may have
 * written it) on the open file: its length, or -1 with *err. */
static long read_key_file(const char *path, int flags,
			  int (*check)(int, const char *, cqrs_error *), const char *what,
			  char *buf, cqrs_error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | flags);
	if (fd < 0)
		return open_failed(path, what, err);
	char article[64];
	snprintf(article, sizeof article, "a %s", what);
	long n = -1;
	if (check(fd, path, err) == 0)
		n = slurp(fd, path, buf, KEY_FILE_MAX, article, err);
	close(fd);
	return n;
}

cqrs_signing_key *cqrs_signing_key_load(const char *path, cqrs_error *err)
{
	char buf[KEY_FILE_MAX];
	cqrs_signing_key *k = NULL;
	long n = read_key_file(path, O_NOFOLLOW, check_private, "signing key", buf, err);
	if (n < 0)
		goto out;
	k = calloc(1, sizeof *k);
	if (k == NULL) {
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		goto out;
	}
	size_t len = (size_t)n;
	uint8_t id[CQRS_KEY_ID_LEN];
	cqrs_error jerr = { 0 };
	if (cqrs_json_compact(buf, &len, &jerr) < 0 && jerr.code == CQRS_EXIT_OSERR) {
		*err = jerr; /* not a verdict on the file */
		goto bad;
	}
	if (jerr.code != 0 || !get_is(buf, len, "cqrs_signing_key", "ed25519") ||
	    get_hex(buf, len, "seed", k->seed, SEED_LEN) < 0 ||
	    get_hex(buf, len, "key_id", id, sizeof id) < 0) {
		cqrs_fail(err, CQRS_EXIT_DATAERR,
			  "%s: not a signing key (expected {\"cqrs_signing_key\":\"ed25519\","
			  "\"key_id\":\"...\",\"seed\":\"...\"})",
			  path);
		goto bad;
	}
	if (ed25519_load(err) < 0)
		goto bad;
	public_of_seed(k->seed, &k->pub);
	if (memcmp(id, k->pub.id, sizeof id) != 0) {
		cqrs_fail(err, CQRS_EXIT_DATAERR, "%s: the key_id is not that of the key", path);
		goto bad;
	}
	goto out;
bad:
	cqrs_signing_key_free(k);
	k = NULL;
out:
	explicit_bzero(buf, sizeof buf);
	return k;
}

void cqrs_signing_key_free(cqrs_signing_key *k)
{
	if (k == NULL)
		return;
	explicit_bzero(k, sizeof *k);
	free(k);
}

void cqrs_signing_key_public(const cqrs_signing_key *k, cqrs_public_key *pub)
{
	*pub = k->pub;
}

void cqrs_signing_key_sign(const cqrs_signing_key *k, const void *msg, size_t len,
			   uint8_t sig[CQRS_SIGNATURE_LEN])
{
	/* k came from cqrs_signing_key_load, which loaded Ed25519 */
	ed25519.sign(k->pub.key, k->seed, len, msg, sig);
}

/* Who may give us a public key: this user or root, and nobody else may
 * change it (ssh's rule for authorized_keys): one who could replace it
 * could make forged heads pass. */
static int check_public(int fd, const char *path, cqrs_error *err)
{
	struct stat sb;
	if (fstat(fd, &sb) < 0)
		return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", path, strerror(errno));
	if (!S_ISREG(sb.st_mode))
		return cqrs_fail(err, CQRS_EXIT_NOPERM, "%s: not a regular file: refused", path);
	if (sb.st_uid != cqrs_euid() && sb.st_uid != 0) {
		char owner[256];
		return cqrs_fail(err, CQRS_EXIT_NOPERM,
				 "%s: public key owned by %s: refused; a public key is read from "
				 "a file of this user's or root's (keep a copy of your own)",
				 path, cqrs_user_name(sb.st_uid, owner, sizeof owner));
	}
	if (sb.st_mode & (S_IWGRP | S_IWOTH))
		return cqrs_fail(err, CQRS_EXIT_NOPERM,
				 "%s: public key writable by group or others (mode %04o): "
				 "refused",
				 path, (unsigned)(sb.st_mode & 07777));
	return 0;
}

int cqrs_public_key_load(const char *path, cqrs_public_key *pub, cqrs_error *err)
{
	/* A link is fine here (current.pub -> the key in use), its target is
	 * checked. */
	char buf[KEY_FILE_MAX];
	long n = read_key_file(path, 0, check_public, "public key", buf, err);
	if (n < 0)
		return -1;
	size_t len = (size_t)n;
	uint8_t id[CQRS_KEY_ID_LEN];
	cqrs_error jerr = { 0 };
	if (cqrs_json_compact(buf, &len, &jerr) < 0 && jerr.code == CQRS_EXIT_OSERR)
		return *err = jerr, -1; /* not a verdict */
	if (jerr.code != 0 || !get_is(buf, len, "cqrs_public_key", "ed25519") ||
	    get_hex(buf, len, "public_key", pub->key, sizeof pub->key) < 0 ||
	    get_hex(buf, len, "key_id", id, sizeof id) < 0)
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "%s: not a public key (expected {\"cqrs_public_key\":\"ed25519\","
				 "\"key_id\":\"...\",\"public_key\":\"...\"})",
				 path);
	key_id_of(pub->key, pub->id);
	if (memcmp(id, pub->id, sizeof id) != 0)
		return cqrs_fail(err, CQRS_EXIT_DATAERR, "%s: the key_id is not that of the key",
				 path);
	return 0;
}

void cqrs_public_key_write(FILE *f, const cqrs_public_key *pub)
{
	char id[2 * CQRS_KEY_ID_LEN + 1], key[2 * CQRS_PUBLIC_KEY_LEN + 1];
	hex_format(pub->id, sizeof pub->id, id);
	hex_format(pub->key, sizeof pub->key, key);
	fprintf(f, "{\"cqrs_public_key\":\"ed25519\",\"key_id\":\"%s\",\"public_key\":\"%s\"}\n",
		id, key);
}

/* --- a new key pair ---------------------------------------------------------- */

static int write_all(int fd, const char *text, size_t len)
{
	for (size_t off = 0; off < len;) {
		ssize_t n = write(fd, text + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		off += (size_t)n;
	}
	return 0;
}

/* Creates path (never over a file or through a link) with exactly mode
 * and text, durably. */
static int create_file(const char *path, unsigned mode, const char *text, size_t len,
		       cqrs_error *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
	if (fd < 0) {
		if (errno == EEXIST)
			return cqrs_fail(err, CQRS_EXIT_CANTCREAT,
					 "%s: already exists: a key file is never replaced "
					 "(cqrs-keygen(1), Key rotation)",
					 path);
		return cqrs_fail(err, errno == EACCES ? CQRS_EXIT_NOPERM : CQRS_EXIT_CANTCREAT,
				 "%s: %s", path, strerror(errno));
	}
	/* the umask may have taken bits a .pub file's readers need */
	if (fchmod(fd, (mode_t)mode) < 0 || write_all(fd, text, len) < 0 || fsync(fd) < 0) {
		int e = errno;
		close(fd);
		unlink(path);
		return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", path, strerror(e));
	}
	if (close(fd) < 0) {
		unlink(path);
		return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", path, strerror(errno));
	}
	return 0;
}

/* also the keys and throw-away keys of store_shred.c */
int cqrs_random_bytes(uint8_t *buf, size_t n, cqrs_error *err)
{
	for (size_t got = 0; got < n;) {
		ssize_t r = getrandom(buf + got, n - got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return cqrs_fail(err, CQRS_EXIT_OSERR, "getrandom: %s", strerror(errno));
		got += (size_t)r;
	}
	return 0;
}

/* The directory that will hold the keys: one that someone else owns or
 * may write (without the sticky bit) could have the key replaced by a key
 * of theirs, who would then sign in the owner's name. */
static int check_key_dir(const char *path, cqrs_error *err)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	if (slash == NULL)
		snprintf(dir, sizeof dir, ".");
	else if (slash == path)
		snprintf(dir, sizeof dir, "/");
	else
		snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
	struct stat sb;
	if (stat(dir, &sb) < 0)
		return cqrs_fail(err, CQRS_EXIT_CANTCREAT, "%s: %s", path, strerror(errno));
	if (!S_ISDIR(sb.st_mode))
		return cqrs_fail(err, CQRS_EXIT_CANTCREAT, "%s: not a directory", dir);
	if ((sb.st_mode & (S_IWGRP | S_IWOTH)) && !(sb.st_mode & S_ISVTX))
		return cqrs_fail(err, CQRS_EXIT_NOPERM,
				 "%s: a directory others may write (mode %04o, not sticky): "
				 "refused for a key",
				 dir, (unsigned)(sb.st_mode & 07777));
	if (sb.st_uid != cqrs_euid() && sb.st_uid != 0) {
		char owner[256];
		return cqrs_fail(err, CQRS_EXIT_NOPERM,
				 "%s: a directory owned by %s: refused for a key", dir,
				 cqrs_user_name(sb.st_uid, owner, sizeof owner));
	}
	return 0;
}

int cqrs_signing_key_generate(const char *path, cqrs_public_key *pub, cqrs_error *err)
{
	char pub_path[PATH_MAX];
	if ((size_t)snprintf(pub_path, sizeof pub_path, "%s.pub", path) >= sizeof pub_path)
		return cqrs_fail(err, CQRS_EXIT_USAGE, "%s: path too long", path);
	if (check_key_dir(path, err) < 0)
		return -1;
	/* the private key first: the file a person named */
	const char *const files[] = { path, pub_path };
	for (size_t i = 0; i < 2; i++)
		if (access(files[i], F_OK) == 0 || errno != ENOENT)
			return cqrs_fail(err, CQRS_EXIT_CANTCREAT,
					 "%s: already exists: a key file is never replaced "
					 "(cqrs-keygen(1), Key rotation)",
					 files[i]);
	uint8_t seed[SEED_LEN];
	char line[KEY_FILE_MAX], id[2 * CQRS_KEY_ID_LEN + 1], hex[2 * SEED_LEN + 1];
	int rc = -1;
	if (ed25519_load(err) < 0 || cqrs_random_bytes(seed, sizeof seed, err) < 0)
		goto out;
	public_of_seed(seed, pub);
	hex_format(pub->id, sizeof pub->id, id);
	hex_format(seed, sizeof seed, hex);
	int n = snprintf(line, sizeof line,
			 "{\"cqrs_signing_key\":\"ed25519\",\"key_id\":\"%s\",\"seed\":\"%s\"}\n",
			 id, hex);
	if (create_file(path, 0600, line, (size_t)n, err) < 0)
		goto out;
	hex_format(pub->key, sizeof pub->key, hex);
	n = snprintf(line, sizeof line,
		     "{\"cqrs_public_key\":\"ed25519\",\"key_id\":\"%s\",\"public_key\":\"%s\"}\n",
		     id, hex);
	/* 0644: the public key is meant to be read by whoever checks */
	if (create_file(pub_path, 0644, line, (size_t)n, err) < 0) {
		unlink(path);
		goto out;
	}
	rc = 0;
out:
	explicit_bzero(seed, sizeof seed);
	explicit_bzero(line, sizeof line);
	explicit_bzero(hex, sizeof hex);
	return rc;
}

/* --- heads ---------------------------------------------------------------- */

size_t cqrs_signed_head_text(const struct cqrs_signed_head *h, char *buf, size_t cap)
{
	char store[2 * CQRS_HASH_LEN + 1], hash[2 * CQRS_HASH_LEN + 1];
	char id[2 * CQRS_KEY_ID_LEN + 1];
	hex_format(h->store_id, CQRS_HASH_LEN, store);
	hex_format(h->hash, CQRS_HASH_LEN, hash);
	hex_format(h->key_id, CQRS_KEY_ID_LEN, id);
	int n = snprintf(buf, cap,
			 "cqrs-tools signed head v1\n"
			 "store_id %s\n"
			 "sequence %lld\n"
			 "hash %s\n"
			 "time %s\n"
			 "key_id %s\n",
			 store, (long long)h->sequence, hash, h->time, id);
	return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

size_t cqrs_signed_head_format(const struct cqrs_signed_head *h, char *buf, size_t cap)
{
	char store[2 * CQRS_HASH_LEN + 1], hash[2 * CQRS_HASH_LEN + 1];
	char id[2 * CQRS_KEY_ID_LEN + 1], sig[2 * CQRS_SIGNATURE_LEN + 1];
	hex_format(h->store_id, CQRS_HASH_LEN, store);
	hex_format(h->hash, CQRS_HASH_LEN, hash);
	hex_format(h->key_id, CQRS_KEY_ID_LEN, id);
	hex_format(h->signature, CQRS_SIGNATURE_LEN, sig);
	int n = snprintf(buf, cap,
			 "{\"signed_head\":1,\"store_id\":\"%s\",\"sequence\":%lld,"
			 "\"hash\":\"%s\",\"time\":\"%s\",\"key_id\":\"%s\","
			 "\"signature\":\"%s\"}",
			 store, (long long)h->sequence, hash, h->time, id, sig);
	return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

int cqrs_signed_head_make(cqrs_store *st, const cqrs_verify *v, const cqrs_signing_key *k,
			  struct cqrs_signed_head *h, cqrs_error *err)
{
	memset(h, 0, sizeof *h);
	h->sequence = v->checked;
	if (v->checked > 0) {
		memcpy(h->hash, v->hash, CQRS_HASH_LEN);
		int r = cqrs_store_hash_at(st, 1, h->store_id, err);
		if (r < 0)
			return -1;
		if (r == 0)
			return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "the store lost its first event");
	}
	cqrs_timestamp_now(h->time);
	memcpy(h->key_id, k->pub.id, CQRS_KEY_ID_LEN);
	char text[CQRS_SIGNED_HEAD_TEXT_MAX];
	size_t n = cqrs_signed_head_text(h, text, sizeof text);
	cqrs_signing_key_sign(k, text, n, h->signature);
	return 0;
}

static int not_a_head(cqrs_error *err, const char *why)
{
	return cqrs_fail(err, CQRS_EXIT_DATAERR, "not a signed head: %s", why);
}

int cqrs_signed_head_parse(const char *obj, size_t len, struct cqrs_signed_head *h, cqrs_error *err)
{
	char buf[CQRS_SIGNED_HEAD_MAX];
	if (len >= sizeof buf)
		return not_a_head(err, "too long");
	memcpy(buf, obj, len);
	buf[len] = '\0';
	size_t n = len;
	cqrs_error jerr = { 0 };
	if (cqrs_json_compact(buf, &n, &jerr) < 0)
		return jerr.code == CQRS_EXIT_OSERR ? (*err = jerr, -1)
						    : not_a_head(err, "not a JSON object");
	const char *v;
	size_t vn;
	if (!cqrs_json_get(buf, n, "signed_head", &v, &vn) || vn != 1 || v[0] != '1')
		return not_a_head(err, "no \"signed_head\":1");
	memset(h, 0, sizeof *h);
	char num[20];
	if (!cqrs_json_get(buf, n, "sequence", &v, &vn) || vn == 0 || vn >= sizeof num)
		return not_a_head(err, "no sequence");
	memcpy(num, v, vn);
	num[vn] = '\0';
	if (cqrs_parse_int64(num, &h->sequence) < 0)
		return not_a_head(err, "the sequence is not a non-negative integer");
	if (get_hex(buf, n, "store_id", h->store_id, CQRS_HASH_LEN) < 0 ||
	    get_hex(buf, n, "hash", h->hash, CQRS_HASH_LEN) < 0)
		return not_a_head(err, "store_id and hash must be 64 lowercase hex digits");
	if (get_hex(buf, n, "key_id", h->key_id, CQRS_KEY_ID_LEN) < 0)
		return not_a_head(err, "key_id must be 16 lowercase hex digits");
	if (get_hex(buf, n, "signature", h->signature, CQRS_SIGNATURE_LEN) < 0)
		return not_a_head(err, "signature must be 128 lowercase hex digits");
	char time[64], norm[CQRS_TIMESTAMP_LEN + 1];
	long tn = cqrs_json_get(buf, n, "time", &v, &vn)
			  ? cqrs_json_string(v, vn, time, sizeof time)
			  : -1;
	if (tn != CQRS_TIMESTAMP_LEN || cqrs_timestamp_normalize(time, (size_t)tn, norm) < 0 ||
	    memcmp(norm, time, CQRS_TIMESTAMP_LEN) != 0)
		return not_a_head(err, "time must be UTC with microseconds "
				       "(2026-01-16T14:00:00.123456Z)");
	memcpy(h->time, norm, sizeof h->time);
	/* One form only: the same values spelt otherwise (other order, white
	 * space, escapes, members of no meaning) are refused, so that a head
	 * line compares byte for byte. */
	char canon[CQRS_SIGNED_HEAD_MAX];
	size_t cn = cqrs_signed_head_format(h, canon, sizeof canon);
	if (cn != len || memcmp(canon, obj, len) != 0)
		return not_a_head(err, "not in its one form (as cqrs-read --verify writes it)");
	return 0;
}

int cqrs_signed_head_read(const char *path, struct cqrs_signed_head *h, cqrs_error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cqrs_fail(err, errno == ENOENT ? CQRS_EXIT_NOINPUT : CQRS_EXIT_IOERR,
				 "%s: %s", path, strerror(errno));
	char buf[CQRS_SIGNED_HEAD_MAX];
	long n = slurp(fd, path, buf, sizeof buf, "a signed head", err);
	close(fd);
	if (n < 0)
		return -1;
	if (cqrs_signed_head_parse(buf, (size_t)n, h, err) < 0) {
		char why[sizeof err->msg];
		snprintf(why, sizeof why, "%s", err->msg);
		return cqrs_fail(err, CQRS_EXIT_DATAERR, "%s: %s", path, why);
	}
	return 0;
}

int cqrs_signed_head_verify(const struct cqrs_signed_head *h, const cqrs_public_key *pub,
			    cqrs_error *err)
{
	char want[2 * CQRS_KEY_ID_LEN + 1], have[2 * CQRS_KEY_ID_LEN + 1];
	if (memcmp(h->key_id, pub->id, CQRS_KEY_ID_LEN) != 0) {
		hex_format(h->key_id, CQRS_KEY_ID_LEN, want);
		hex_format(pub->id, CQRS_KEY_ID_LEN, have);
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "signed with key %s, and the public key given is key %s", want,
				 have);
	}
	char text[CQRS_SIGNED_HEAD_TEXT_MAX];
	size_t n = cqrs_signed_head_text(h, text, sizeof text);
	if (ed25519_load(err) < 0)
		return -1;
	if (n == 0 || !ed25519.verify(pub->key, n, (const uint8_t *)text, h->signature))
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "the signature does not verify: the head was changed or not "
				 "signed by this key");
	return 0;
}

int cqrs_signed_head_check_store(cqrs_store *st, const char *path, const struct cqrs_signed_head *h,
				 const char *what, cqrs_error *err)
{
	if (h->sequence == 0)
		return 0; /* the empty store's head: every store holds it */
	uint8_t first[CQRS_HASH_LEN];
	int r = cqrs_store_hash_at(st, 1, first, err);
	if (r < 0)
		return -1;
	if (r == 1 && memcmp(first, h->store_id, CQRS_HASH_LEN) != 0)
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "%s: %s is of another store: the store's first event differs",
				 path, what);
	return cqrs_store_expect(st, path, h->sequence, h->hash, what, err);
}
