/*
 * The relay's connection to a NATS server with JetStream: where (--server,
 * $CQRS_NATS_URL), who (a creds file, or a user and a password read from a
 * file or the environment, never from argv), TLS, retries with backoff,
 * and the stream checked before anything is sent or taken.
 */
#include "config.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "relay/relay_impl.h"
#include "banned.h"

void cqrs_relay_options_init(struct cqrs_relay_options *o)
{
	memset(o, 0, sizeof *o);
	o->stream = "CQRS_EVENTS";
	o->subject_prefix = "cqrs.events";
	o->retries = 5;
	o->window = 256;
	o->from = -1;
	o->durable = "cqrs-replica";
	o->ack_wait_ms = 10000;
	o->duplicate_window_s = 120;
}

bool relay_transient(natsStatus s)
{
	return s == NATS_NO_SERVER || s == NATS_CONNECTION_CLOSED || s == NATS_IO_ERROR ||
	       s == NATS_TIMEOUT || s == NATS_CONNECTION_DISCONNECTED ||
	       s == NATS_STALE_CONNECTION || s == NATS_NO_RESPONDERS;
}

int relay_fail(cqrs_error *err, int code, natsStatus s, jsErrCode jerr, const char *what)
{
	if (s == NATS_CONNECTION_AUTH_FAILED || s == NATS_NOT_PERMITTED)
		return cqrs_fail(err, CQRS_EXIT_NOPERM, "%s: the server refused the login (%s)",
				 what, natsStatus_GetText(s));
	if (s == NATS_SSL_ERROR || s == NATS_SECURE_CONNECTION_REQUIRED ||
	    s == NATS_SECURE_CONNECTION_WANTED)
		return cqrs_fail(err, CQRS_EXIT_CONFIG, "%s: TLS: %s", what,
				 nats_GetLastError(NULL) != NULL ? nats_GetLastError(NULL)
								 : natsStatus_GetText(s));
	if (relay_transient(s))
		return cqrs_fail(err, CQRS_EXIT_UNAVAILABLE, "%s: %s", what, natsStatus_GetText(s));
	const char *last = nats_GetLastError(NULL);
	if (jerr != 0)
		return cqrs_fail(err, code, "%s: JetStream error %d: %s", what, (int)jerr,
				 last != NULL ? last : natsStatus_GetText(s));
	return cqrs_fail(err, code, "%s: %s", what, last != NULL ? last : natsStatus_GetText(s));
}

void relay_backoff(int attempt)
{
	nats_Sleep(cqrs_backoff_ms(attempt - 1, 100, 2000));
}

/* The password: the first line of --password-file (a secret file:
 * cqrs_read_secret_file), else $CQRS_NATS_PASSWORD; "" when neither. */
static int read_password(const struct cqrs_relay_options *o, char *buf, size_t cap, cqrs_error *err)
{
	buf[0] = '\0';
	if (o->password_file == NULL) {
		const char *env = getenv("CQRS_NATS_PASSWORD");
		if (env != NULL && strlen(env) < cap)
			memcpy(buf, env, strlen(env) + 1);
		return 0;
	}
	char *text;
	size_t len;
	if (cqrs_read_secret_file(o->password_file, true, &text, &len, err) < 0)
		return -1;
	size_t line = strcspn(text, "\r\n");
	if (line >= cap) {
		explicit_bzero(text, len);
		free(text);
		return cqrs_fail(err, CQRS_EXIT_CONFIG, "%s: a password longer than %zu bytes",
				 o->password_file, cap - 1);
	}
	memcpy(buf, text, line);
	buf[line] = '\0';
	explicit_bzero(text, len);
	free(text);
	if (buf[0] == '\0')
		return cqrs_fail(err, CQRS_EXIT_CONFIG, "%s: no password on its first line",
				 o->password_file);
	return 0;
}

/* --- nkeys (relay ops) ---------------------------------------------------
 * A seed is base32 (RFC 4648, no padding) of two prefix bytes (seed, user),
 * the Ed25519 seed and a CRC-16/XMODEM, little endian, of what precedes it;
 * the public key is base32 of 'U' (20 << 3), the Ed25519 public key and its
 * CRC.  libnats signs the server's nonce from the file but wants the
 * public key beside it, so it is derived here. */
#define NKEY_PREFIX_SEED  (18 << 3)
#define NKEY_PREFIX_USER  (20 << 3)
#define NKEY_SEED_CHARS	  58 /* 2 + 32 + 2 bytes */
#define NKEY_PUBLIC_CHARS 56 /* 1 + 32 + 2 bytes */

static uint16_t crc16_xmodem(const uint8_t *b, size_t n)
{
	uint16_t crc = 0;
	for (size_t i = 0; i < n; i++) {
		crc ^= (uint16_t)(b[i] << 8);
		for (int k = 0; k < 8; k++)
			crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
	}
	return crc;
}

static const char base32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/* n characters into bytes: the number of bytes, or -1 for a character
 * outside the alphabet */
static int base32_decode(const char *s, size_t n, uint8_t *out, size_t cap)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		const char *p = s[i] != '\0' ? strchr(base32_alphabet, s[i]) : NULL;
		if (p == NULL)
			return -1;
		acc = (acc << 5) | (uint32_t)(p - base32_alphabet);
		bits += 5;
		if (bits >= 8) {
			bits -= 8;
			if (len == cap)
				return -1;
			out[len++] = (uint8_t)(acc >> bits);
		}
	}
	return (int)len;
}

static void base32_encode(const uint8_t *b, size_t n, char *out)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		acc = (acc << 8) | b[i];
		bits += 8;
		while (bits >= 5) {
			bits -= 5;
			out[len++] = base32_alphabet[(acc >> bits) & 31];
		}
	}
	if (bits > 0)
		out[len++] = base32_alphabet[(acc << (5 - bits)) & 31];
	out[len] = '\0';
}

/* The public key (U...) of the user seed in path, a file only its owner
 * may change (as the creds file): 0, or -1 with *err (78 when it
 * holds no user seed). */
static int nkey_public(const char *path, char pub[NKEY_PUBLIC_CHARS + 1], cqrs_error *err)
{
	char *text;
	size_t n;
	if (cqrs_read_secret_file(path, true, &text, &n, err) < 0)
		return -1;
	size_t at = strspn(text, " \t\r\n"), len = strcspn(text + at, " \t\r\n");
	uint8_t raw[40], key[33 + 2];
	int got = len == NKEY_SEED_CHARS ? base32_decode(text + at, len, raw, sizeof raw) : -1;
	explicit_bzero(text, n);
	free(text);
	bool ok = got == 36 && raw[0] == (NKEY_PREFIX_SEED | NKEY_PREFIX_USER >> 5) &&
		  raw[1] == (uint8_t)((NKEY_PREFIX_USER & 31) << 3) &&
		  crc16_xmodem(raw, 34) == (uint16_t)(raw[34] | raw[35] << 8);
	int rc = 0;
	if (!ok)
		rc = cqrs_fail(err, CQRS_EXIT_CONFIG,
			       "%s: not a user nkey seed (58 characters, SU...)", path);
	else if (cqrs_ed25519_public_of_seed(raw + 2, key + 1, err) < 0)
		rc = -1;
	explicit_bzero(raw, sizeof raw);
	if (rc < 0)
		return -1;
	key[0] = NKEY_PREFIX_USER;
	uint16_t crc = crc16_xmodem(key, 33);
	key[33] = (uint8_t)(crc & 0xff);
	key[34] = (uint8_t)(crc >> 8);
	base32_encode(key, sizeof key, pub);
	return 0;
}

static int set_options(natsOptions *opts, const struct cqrs_relay_options *o, cqrs_error *err)
{
	const char *url = o->server;
	if (url == NULL)
		url = getenv("CQRS_NATS_URL");
	if (url == NULL || *url == '\0')
		url = "nats://127.0.0.1:4222";
	natsStatus s = natsOptions_SetURL(opts, url);
	/* The relay resumes from its own position: a lost connection ends the
	 * round and the caller reconnects, rather than the client buffering
	 * publishes it cannot confirm. */
	if (s == NATS_OK)
		s = natsOptions_SetAllowReconnect(opts, false);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(opts, 2000);
	if (o->creds_file != NULL) {
		/* a creds file someone else could have planted is refused;
		 * libnats 3.4 reads creds only from a path, so it is checked
		 * here and read there again */
		char *text;
		size_t len;
		if (cqrs_read_secret_file(o->creds_file, true, &text, &len, err) < 0)
			return -1;
		explicit_bzero(text, len);
		free(text);
	}
	if (s == NATS_OK && o->creds_file != NULL)
		s = natsOptions_SetUserCredentialsFromFiles(opts, o->creds_file, NULL);
	if (s == NATS_OK && o->nkey_seed_file != NULL) {
		char pub[NKEY_PUBLIC_CHARS + 1];
		if (nkey_public(o->nkey_seed_file, pub, err) < 0)
			return -1;
		s = natsOptions_SetNKeyFromSeed(opts, pub, o->nkey_seed_file);
	}
	const char *user = o->user != NULL ? o->user : getenv("CQRS_NATS_USER");
	if (s == NATS_OK && user != NULL && *user != '\0') {
		char password[512];
		if (read_password(o, password, sizeof password, err) < 0)
			return -1;
		s = natsOptions_SetUserInfo(opts, user, password);
		explicit_bzero(password, sizeof password);
	}
	if (s == NATS_OK && (o->tls_ca != NULL || o->tls_cert != NULL))
		s = natsOptions_SetSecure(opts, true);
	/* the CA decides whom the relay trusts, the key who it is: read here
	 * under the rules for secrets, and given to libnats as text */
	if (s == NATS_OK && o->tls_ca != NULL) {
		char *ca;
		size_t len;
		if (cqrs_read_secret_file(o->tls_ca, false, &ca, &len, err) < 0)
			return -1;
		s = natsOptions_SetCATrustedCertificates(opts, ca);
		free(ca);
	}
	if (s == NATS_OK && o->tls_cert != NULL) {
		char *cert, *key = NULL;
		size_t clen, klen = 0;
		if (cqrs_read_secret_file(o->tls_cert, o->tls_key == NULL, &cert, &clen, err) < 0)
			return -1;
		if (o->tls_key != NULL &&
		    cqrs_read_secret_file(o->tls_key, true, &key, &klen, err) < 0) {
			free(cert);
			return -1;
		}
		s = natsOptions_SetCertificatesChain(opts, cert, key != NULL ? key : cert);
		free(cert);
		if (key != NULL) {
			explicit_bzero(key, klen);
			free(key);
		}
	}
	if (s != NATS_OK)
		return relay_fail(err, CQRS_EXIT_CONFIG, s, 0, "NATS options");
	return 0;
}

/* The stream must take every subject the relay uses and drop repeats. */
static int check_stream(struct relay_conn *c, const struct cqrs_relay_options *o, cqrs_error *err)
{
	jsErrCode jerr = 0;
	natsStatus s = js_GetStreamInfo(&c->info, c->js, o->stream, NULL, &jerr);
	if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)
		return cqrs_fail(err, CQRS_EXIT_NOINPUT,
				 "stream '%s' does not exist (cqrs-relay create-stream makes it)",
				 o->stream);
	if (s != NATS_OK)
		return relay_fail(err, CQRS_EXIT_UNAVAILABLE, s, jerr, "stream info");
	const jsStreamConfig *cfg = c->info->Config;
	char want[300];
	snprintf(want, sizeof want, "%s.>", o->subject_prefix);
	bool covered = false;
	for (int i = 0; cfg != NULL && i < cfg->SubjectsLen; i++)
		if (strcmp(cfg->Subjects[i], want) == 0 || strcmp(cfg->Subjects[i], ">") == 0)
			covered = true;
	if (!covered)
		return cqrs_fail(err, CQRS_EXIT_CONFIG,
				 "stream '%s' does not take subjects '%s' (--subject-prefix)",
				 o->stream, want);
	if (cfg->Duplicates <= 0)
		return cqrs_fail(err, CQRS_EXIT_CONFIG,
				 "stream '%s' keeps no duplicate window: repeats would be stored",
				 o->stream);
	if (cfg->Retention == js_WorkQueuePolicy)
		return cqrs_fail(err, CQRS_EXIT_CONFIG,
				 "stream '%s' is a work queue: replicas need every event",
				 o->stream);
	return 0;
}

static int connect_once(struct relay_conn *c, const struct cqrs_relay_options *o, jsOptions *jsopts,
			bool check, cqrs_error *err)
{
	natsOptions *opts = NULL;
	natsStatus s = natsOptions_Create(&opts);
	if (s != NATS_OK)
		return relay_fail(err, CQRS_EXIT_OSERR, s, 0, "NATS options");
	if (set_options(opts, o, err) < 0) {
		natsOptions_Destroy(opts);
		return -1;
	}
	s = natsConnection_Connect(&c->nc, opts);
	natsOptions_Destroy(opts);
	if (s != NATS_OK)
		return relay_fail(err, CQRS_EXIT_UNAVAILABLE, s, 0, "cannot connect to the server");
	s = natsConnection_JetStream(&c->js, c->nc, jsopts);
	if (s != NATS_OK)
		return relay_fail(err, CQRS_EXIT_SOFTWARE, s, 0, "JetStream context");
	return check ? check_stream(c, o, err) : 0;
}

int relay_connect(struct relay_conn *c, const struct cqrs_relay_options *o, jsOptions *jsopts,
		  bool check, cqrs_error *err)
{
	for (int attempt = 0;; attempt++) {
		memset(c, 0, sizeof *c);
		if (connect_once(c, o, jsopts, check, err) == 0)
			return 0;
		relay_close(c);
		if (err->code != CQRS_EXIT_UNAVAILABLE || attempt >= o->retries)
			return -1;
		relay_backoff(attempt + 1);
	}
}

void relay_close(struct relay_conn *c)
{
	if (c->info != NULL)
		jsStreamInfo_Destroy(c->info);
	if (c->js != NULL)
		jsCtx_Destroy(c->js);
	if (c->nc != NULL) {
		natsConnection_FlushTimeout(c->nc, 1000);
		natsConnection_Destroy(c->nc);
	}
	memset(c, 0, sizeof *c);
}

void cqrs_relay_shutdown(void)
{
	nats_CloseAndWait(2000);
}

int cqrs_relay_create_stream(const struct cqrs_relay_options *o, cqrs_error *err)
{
	struct relay_conn c;
	if (relay_connect(&c, o, NULL, false, err) < 0)
		return -1;
	char subject[300];
	snprintf(subject, sizeof subject, "%s.>", o->subject_prefix);
	const char *subjects[] = { subject };
	jsStreamConfig cfg;
	jsStreamConfig_Init(&cfg);
	cfg.Name = o->stream;
	cfg.Subjects = subjects;
	cfg.SubjectsLen = 1;
	cfg.Storage = js_FileStorage;
	cfg.Retention = js_LimitsPolicy;
	cfg.Duplicates = o->duplicate_window_s * 1000000000LL;
	jsErrCode jerr = 0;
	jsStreamInfo *si = NULL;
	natsStatus s = js_AddStream(&si, c.js, &cfg, NULL, &jerr);
	if (si != NULL)
		jsStreamInfo_Destroy(si);
	int rc = 0;
	if (s != NATS_OK)
		rc = relay_fail(err, CQRS_EXIT_CONFIG, s, jerr, "cannot create the stream");
	relay_close(&c);
	return rc;
}
