/*
 * Signed heads: Ed25519 through the key-file path against RFC 8032's test
 * vector 1, so that a misuse of Nettle's API (a wrong argument order, the
 * public key where the seed goes) cannot pass; and the head's one form.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nettle/sha2.h>

#include "cqrs.h"
#include "unit.h"
#include "banned.h"

/* RFC 8032, 7.1, TEST 1: an empty message */
static const char seed_hex[] = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
static const char public_hex[] = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
static const char signature_hex[] =
	"e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e"
	"39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

static void hex(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");
	if (f == NULL || fputs(text, f) == EOF || fclose(f) != 0 || chmod(path, mode) < 0) {
		perror(path);
		exit(1);
	}
}

static char dir[] = "/tmp/test_signed_head.XXXXXX";
static char key_path[64], pub_path[64];

/* Vector 1's key files, with the key id computed here (SHA-256 of the
 * public key, first 8 bytes); a file whose id is not its key's is refused. */
static void vector_key_files(char id_hex[17])
{
	uint8_t key[32], digest[SHA256_DIGEST_SIZE];
	cqrs_hash_parse(public_hex, 64, key);
	struct sha256_ctx ctx;
	sha256_init(&ctx);
	sha256_update(&ctx, sizeof key, key);
	sha256_digest(&ctx, sizeof digest, digest);
	hex(digest, 8, id_hex);

	char line[512];
	cqrs_error err = { 0 };
	cqrs_public_key pub;
	snprintf(line, sizeof line,
		 "{\"cqrs_public_key\":\"ed25519\",\"key_id\":\"0000000000000000\","
		 "\"public_key\":\"%s\"}\n",
		 public_hex);
	write_file(pub_path, line, 0644);
	CHECK(cqrs_public_key_load(pub_path, &pub, &err) < 0 && err.code == CQRS_EXIT_DATAERR &&
		      strstr(err.msg, "key_id is not that of the key") != NULL,
	      "a wrong key_id accepted: %s", err.msg);
	snprintf(line, sizeof line,
		 "{\"cqrs_signing_key\":\"ed25519\",\"key_id\":\"0000000000000000\","
		 "\"seed\":\"%s\"}\n",
		 seed_hex);
	write_file(key_path, line, 0600);
	CHECK(cqrs_signing_key_load(key_path, &err) == NULL && err.code == CQRS_EXIT_DATAERR,
	      "a wrong key_id accepted");

	snprintf(line, sizeof line,
		 "{\"cqrs_signing_key\":\"ed25519\",\"key_id\":\"%s\",\"seed\":\"%s\"}\n", id_hex,
		 seed_hex);
	write_file(key_path, line, 0600);
	snprintf(line, sizeof line,
		 "{\"cqrs_public_key\":\"ed25519\",\"key_id\":\"%s\",\"public_key\":\"%s\"}\n",
		 id_hex, public_hex);
	write_file(pub_path, line, 0644);
}

static void rfc8032_vector1(void)
{
	char id_hex[17];
	vector_key_files(id_hex);
	cqrs_error err = { 0 };
	cqrs_signing_key *k = cqrs_signing_key_load(key_path, &err);
	CHECK(k != NULL, "load: %s", err.msg);
	if (k == NULL)
		return;
	cqrs_public_key pub, filed;
	cqrs_signing_key_public(k, &pub);
	char text[2 * CQRS_SIGNATURE_LEN + 1];
	hex(pub.key, sizeof pub.key, text);
	CHECK(strcmp(text, public_hex) == 0, "public key %s", text);
	hex(pub.id, sizeof pub.id, text);
	CHECK(strcmp(text, id_hex) == 0, "key id %s, want %s", text, id_hex);
	uint8_t sig[CQRS_SIGNATURE_LEN];
	cqrs_signing_key_sign(k, "", 0, sig);
	hex(sig, sizeof sig, text);
	CHECK(strcmp(text, signature_hex) == 0, "signature %s", text);
	CHECK(cqrs_public_key_load(pub_path, &filed, &err) == 0, "pub: %s", err.msg);
	CHECK(memcmp(&filed, &pub, sizeof pub) == 0, "the .pub file's key differs");
	cqrs_signing_key_free(k);
}

static struct cqrs_signed_head sample_head(void)
{
	struct cqrs_signed_head h = { .sequence = 42 };
	memset(h.store_id, 0x11, sizeof h.store_id);
	memset(h.hash, 0xab, sizeof h.hash);
	memcpy(h.time, "2026-01-16T14:00:00.123456Z", CQRS_TIMESTAMP_LEN + 1);
	return h;
}

/* A head signed with vector 1's key: its text, signature and one form. */
static void head_form(void)
{
	cqrs_error err = { 0 };
	cqrs_signing_key *k = cqrs_signing_key_load(key_path, &err);
	cqrs_public_key pub;
	if (k == NULL || cqrs_public_key_load(pub_path, &pub, &err) < 0) {
		CHECK(0, "keys: %s", err.msg);
		return;
	}
	struct cqrs_signed_head h = sample_head(), back;
	memcpy(h.key_id, pub.id, sizeof h.key_id);
	char text[CQRS_SIGNED_HEAD_TEXT_MAX], line[CQRS_SIGNED_HEAD_MAX], id[17];
	size_t tn = cqrs_signed_head_text(&h, text, sizeof text);
	hex(pub.id, sizeof pub.id, id);
	char want[CQRS_SIGNED_HEAD_TEXT_MAX];
	/* store_id 11..., hash ab...: spelt out */
	snprintf(want, sizeof want,
		 "cqrs-tools signed head v1\nstore_id "
		 "1111111111111111111111111111111111111111111111111111111111111111\n"
		 "sequence 42\nhash "
		 "abababababababababababababababababababababababababababababababab\n"
		 "time 2026-01-16T14:00:00.123456Z\nkey_id %s\n",
		 id);
	CHECK(tn == strlen(want) && strcmp(text, want) == 0, "signed text:\n%s", text);
	cqrs_signing_key_sign(k, text, tn, h.signature);
	CHECK(cqrs_signed_head_verify(&h, &pub, &err) == 0, "verify: %s", err.msg);
	size_t n = cqrs_signed_head_format(&h, line, sizeof line);
	CHECK(n > 0 && cqrs_signed_head_parse(line, n, &back, &err) == 0, "parse: %s", err.msg);
	CHECK(memcmp(&back, &h, sizeof h) == 0, "parse(format(h)) differs");
	/* the same values spelt otherwise are refused */
	char other[CQRS_SIGNED_HEAD_MAX + 2];
	snprintf(other, sizeof other, "{ %s", line + 1);
	CHECK(cqrs_signed_head_parse(other, n + 1, &back, &err) < 0 &&
		      err.code == CQRS_EXIT_DATAERR,
	      "white space accepted");
	h.sequence = 43;
	CHECK(cqrs_signed_head_verify(&h, &pub, &err) < 0 && err.code == CQRS_EXIT_DATAERR,
	      "a changed sequence verified");
	cqrs_signing_key_free(k);
}

int main(void)
{
	if (mkdtemp(dir) == NULL) {
		perror(dir);
		return 1;
	}
	snprintf(key_path, sizeof key_path, "%s/key", dir);
	snprintf(pub_path, sizeof pub_path, "%s/key.pub", dir);
	rfc8032_vector1();
	head_form();
	unlink(key_path);
	unlink(pub_path);
	rmdir(dir);
	return unit_done();
}
