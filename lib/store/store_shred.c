/*
 * Erasure that keeps the chain (crypto-shredding), cqrs-erase(1).
 *
 * The store declares which fields of which event types are personal
 * (personal_fields) and whose they are: the subject named by a member of
 * the event's data (OrderCreated's customer_id), or the subject recorded
 * for the event's aggregate (aggregate_subjects, recorded when an event
 * naming one is stored).  cqrs_store_append encrypts those fields before
 * the event is hashed, whoever appends, with AES-256-GCM under a key per
 * subject (subject_keys).  Erasing a subject deletes its key: the
 * ciphertext stays, so the chain still verifies, and reads show
 * CQRS_ERASED_MARKER in its place.
 *
 * A field's stored value is the envelope
 *   {"cqrs_encrypted":1,"subject":"SUBJECT","ct":"BASE64"}
 * where ct is nonce (12 bytes), ciphertext, tag (16).  The associated data
 * binds it to its event and field (event_id, event_type, field name,
 * subject), so that it cannot be moved to another event or field.  The
 * nonce is synthetic (as in SIV): an HMAC of the associated data and the
 * plaintext under a key derived from the subject's, so that the same event
 * appended again (a retry with its event_id) encrypts to the same bytes
 * and is recognised as a duplicate; distinct plaintexts or events get
 * distinct nonces.
 */
#include "config.h"

#include <nettle/base64.h>
#include <nettle/gcm.h>
#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "cqrs.h"
#include "common/strbuf.h"
#include "store/store_impl.h"
#include "store/store_shred.h"
#include "banned.h"

#define KEY_LEN	  32
#define NONCE_LEN 12
#define TAG_LEN	  GCM_DIGEST_SIZE
#define ENVELOPE  "{\"cqrs_encrypted\":1,\"subject\":"
#define AAD_LABEL "cqrs-shred-1"
/* a subject's key is never used as it is but for AES: the nonce's HMAC
 * has a key of its own, derived with this label */
#define NONCE_KEY_LABEL "cqrs-shred-1 nonce key"
#define NAME_MAX_LEN	CQRS_MAX_TYPE_NAME

struct decl {
	char event_type[CQRS_MAX_TYPE_NAME + 1];
	char field[NAME_MAX_LEN + 1];
	char member[NAME_MAX_LEN + 1]; /* "": the aggregate's subject */
};

struct cqrs_shred {
	bool fresh; /* the declarations were read in this transaction */
	struct decl *decls;
	size_t ndecls;
	sqlite3_stmt *key_get, *key_put, *map_get, *map_put, *map_find;
	struct cqrs_strbuf data;  /* the event's data with its fields encrypted */
	struct cqrs_strbuf bytes; /* scratch: plaintext, ciphertext */
};

/* --- names and declarations --------------------------------------------- */

static bool plain_name(const char *s, size_t n)
{
	if (n == 0 || n > NAME_MAX_LEN || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

static bool is_envelope(const char *v, size_t n)
{
	return n > sizeof ENVELOPE - 1 && memcmp(v, ENVELOPE, sizeof ENVELOPE - 1) == 0;
}

static int db_fail(sqlite3 *db, int rc, const char *what, cqrs_error *err)
{
	return cqrs_sqlite_fail(db, rc, true, what, err);
}

static int prepare(sqlite3 *db, sqlite3_stmt **q, const char *sql, cqrs_error *err)
{
	if (*q != NULL)
		return 0;
	int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, q, NULL);
	return rc == SQLITE_OK ? 0 : db_fail(db, rc, "cannot read the personal data tables", err);
}

/* A declaration as the store holds it: refused (78) when a row was edited
 * into something no writer could apply. */
static int check_decl(const struct decl *d, cqrs_error *err)
{
	if (!cqrs_type_name_valid(d->event_type, strlen(d->event_type)) ||
	    !plain_name(d->field, strlen(d->field)) ||
	    (d->member[0] != '\0' &&
	     (!plain_name(d->member, strlen(d->member)) || strcmp(d->member, d->field) == 0)))
		return cqrs_fail(err, CQRS_EXIT_CONFIG,
				 "bad declaration of a personal field in the store: '%s.%s' with "
				 "subject '%s' (see cqrs-erase(1))",
				 d->event_type, d->field, d->member[0] ? d->member : "aggregate");
	return 0;
}

static void copy_column(char *to, size_t cap, sqlite3_stmt *q, int col)
{
	const char *t = (const char *)sqlite3_column_text(q, col);
	int n = sqlite3_column_bytes(q, col);
	if (t == NULL || (size_t)n >= cap) {
		/* too long for any valid name: check_decl refuses "" */
		to[0] = '\0';
		return;
	}
	memcpy(to, t, (size_t)n);
	to[n] = '\0';
}

static int load_decls(sqlite3 *db, struct cqrs_shred *sh, cqrs_error *err)
{
	sqlite3_stmt *q;
	int rc = sqlite3_prepare_v2(db,
				    "SELECT event_type, field, coalesce(subject_member, '')"
				    " FROM personal_fields ORDER BY event_type, field",
				    -1, &q, NULL);
	if (rc != SQLITE_OK)
		return db_fail(db, rc, "cannot read the personal fields", err);
	sh->ndecls = 0;
	size_t cap = 0;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (sh->ndecls == cap) {
			size_t ncap = cap ? 2 * cap : 8;
			struct decl *p = realloc(sh->decls, ncap * sizeof *p);
			if (p == NULL) {
				sqlite3_finalize(q);
				return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
			}
			sh->decls = p;
			cap = ncap;
		}
		struct decl *d = &sh->decls[sh->ndecls];
		copy_column(d->event_type, sizeof d->event_type, q, 0);
		copy_column(d->field, sizeof d->field, q, 1);
		copy_column(d->member, sizeof d->member, q, 2);
		if (check_decl(d, err) < 0) {
			sqlite3_finalize(q);
			return -1;
		}
		sh->ndecls++;
	}
	sqlite3_finalize(q);
	if (rc != SQLITE_DONE)
		return db_fail(db, rc, "cannot read the personal fields", err);
	sh->fresh = true;
	return 0;
}

/* --- AES-256-GCM with a synthetic nonce ------------------------------------ */

/* Associated data: the label, event_id, event_type, field, subject. */
static size_t make_aad(uint8_t *aad, size_t cap, const cqrs_event *ev, const char *field,
		       size_t field_len, const char *subject)
{
	size_t n = 0, t = strlen(ev->event_type), s = strlen(subject);
	if (sizeof AAD_LABEL + CQRS_UUID_LEN + t + field_len + s + 2 > cap)
		return 0;
	memcpy(aad + n, AAD_LABEL, sizeof AAD_LABEL); /* with its NUL */
	n += sizeof AAD_LABEL;
	memcpy(aad + n, ev->event_id, CQRS_UUID_LEN);
	n += CQRS_UUID_LEN;
	memcpy(aad + n, ev->event_type, t + 1);
	n += t + 1;
	memcpy(aad + n, field, field_len);
	n += field_len;
	aad[n++] = '\0';
	memcpy(aad + n, subject, s);
	return n + s;
}

#define AAD_MAX (sizeof AAD_LABEL + CQRS_UUID_LEN + 3 * (CQRS_SUBJECT_MAX + 1) + 8)

static void synthetic_nonce(const uint8_t key[KEY_LEN], const uint8_t *aad, size_t aad_len,
			    const char *plain, size_t n, uint8_t nonce[NONCE_LEN])
{
	struct hmac_sha256_ctx h;
	uint8_t nonce_key[SHA256_DIGEST_SIZE], mac[SHA256_DIGEST_SIZE];
	hmac_sha256_set_key(&h, KEY_LEN, key);
	hmac_sha256_update(&h, sizeof NONCE_KEY_LABEL - 1, (const uint8_t *)NONCE_KEY_LABEL);
	hmac_sha256_digest(&h, sizeof nonce_key, nonce_key);
	hmac_sha256_set_key(&h, sizeof nonce_key, nonce_key);
	hmac_sha256_update(&h, aad_len, aad);
	hmac_sha256_update(&h, n, (const uint8_t *)plain);
	hmac_sha256_digest(&h, sizeof mac, mac);
	memcpy(nonce, mac, NONCE_LEN);
	explicit_bzero(&h, sizeof h);
	explicit_bzero(nonce_key, sizeof nonce_key);
}

/* The envelope of plain (n bytes of JSON) appended to out. */
static int seal(struct cqrs_shred *sh, const uint8_t key[KEY_LEN], const uint8_t *aad,
		size_t aad_len, const char *subject, const char *plain, size_t n,
		struct cqrs_strbuf *out, cqrs_error *err)
{
	size_t raw = NONCE_LEN + n + TAG_LEN;
	cqrs_strbuf_reset(&sh->bytes);
	if (!cqrs_strbuf_grow(&sh->bytes, raw + BASE64_ENCODE_RAW_LENGTH(raw)))
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	uint8_t *r = (uint8_t *)sh->bytes.p;
	char *b64 = sh->bytes.p + raw;
	synthetic_nonce(key, aad, aad_len, plain, n, r);
	struct gcm_aes256_ctx g;
	gcm_aes256_set_key(&g, key);
	gcm_aes256_set_iv(&g, NONCE_LEN, r);
	gcm_aes256_update(&g, aad_len, aad);
	gcm_aes256_encrypt(&g, n, r + NONCE_LEN, (const uint8_t *)plain);
	gcm_aes256_digest(&g, TAG_LEN, r + NONCE_LEN + n);
	explicit_bzero(&g, sizeof g);
	base64_encode_raw(b64, raw, r);
	cqrs_strbuf_puts(out, ENVELOPE);
	cqrs_strbuf_json_string(out, subject, strlen(subject));
	cqrs_strbuf_puts(out, ",\"ct\":\"");
	cqrs_strbuf_put(out, b64, BASE64_ENCODE_RAW_LENGTH(raw));
	cqrs_strbuf_puts(out, "\"}");
	return out->oom ? cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory") : 0;
}

/* The parts of an envelope: its subject (decoded) and ct (base64). */
static bool envelope_parts(const char *v, size_t n, char subject[CQRS_SUBJECT_MAX + 1],
			   const char **ct, size_t *ct_len)
{
	const char *s;
	size_t sn;
	if (!cqrs_json_get(v, n, "subject", &s, &sn) ||
	    cqrs_json_string(s, sn, subject, CQRS_SUBJECT_MAX + 1) < 0 ||
	    !cqrs_json_get(v, n, "ct", ct, ct_len) || *ct_len < 2 || (*ct)[0] != '"')
		return false;
	(*ct)++;
	*ct_len -= 2;
	return true;
}

/* The plaintext of an envelope into out: 1, 0 when it does not decrypt
 * (another key, another event or field, damaged), -1 out of memory. */
static int open_envelope(struct cqrs_strbuf *scratch, const uint8_t key[KEY_LEN],
			 const uint8_t *aad, size_t aad_len, const char *ct, size_t ct_len,
			 struct cqrs_strbuf *out)
{
	cqrs_strbuf_reset(scratch);
	if (!cqrs_strbuf_grow(scratch, 2 * BASE64_DECODE_LENGTH(ct_len)))
		return -1;
	uint8_t *raw = (uint8_t *)scratch->p;
	size_t raw_len = BASE64_DECODE_LENGTH(ct_len);
	struct base64_decode_ctx b;
	base64_decode_init(&b);
	if (!base64_decode_update(&b, &raw_len, raw, ct_len, ct) || !base64_decode_final(&b) ||
	    raw_len < NONCE_LEN + TAG_LEN)
		return 0;
	size_t n = raw_len - NONCE_LEN - TAG_LEN;
	uint8_t *plain = raw + raw_len, tag[TAG_LEN];
	struct gcm_aes256_ctx g;
	gcm_aes256_set_key(&g, key);
	gcm_aes256_set_iv(&g, NONCE_LEN, raw);
	gcm_aes256_update(&g, aad_len, aad);
	gcm_aes256_decrypt(&g, n, plain, raw + NONCE_LEN);
	gcm_aes256_digest(&g, TAG_LEN, tag);
	explicit_bzero(&g, sizeof g);
	int ok = memeql_sec(tag, raw + NONCE_LEN + n, TAG_LEN);
	if (ok)
		cqrs_strbuf_put(out, (const char *)plain, n);
	explicit_bzero(plain, n);
	if (ok && out->oom)
		return -1;
	return ok ? 1 : 0;
}

/* --- keys and subjects ------------------------------------------------------- */

enum key_state { KEY_NONE, KEY_LIVE, KEY_ERASED };

static int key_get(sqlite3 *db, sqlite3_stmt **q, const char *subject, uint8_t key[KEY_LEN],
		   enum key_state *state, cqrs_error *err)
{
	if (prepare(db, q, "SELECT key FROM subject_keys WHERE subject = ?", err) < 0)
		return -1;
	sqlite3_bind_text(*q, 1, subject, -1, SQLITE_STATIC);
	int rc = sqlite3_step(*q);
	*state = KEY_NONE;
	if (rc == SQLITE_ROW) {
		*state = KEY_ERASED;
		if (sqlite3_column_bytes(*q, 0) == KEY_LEN) {
			memcpy(key, sqlite3_column_blob(*q, 0), KEY_LEN);
			*state = KEY_LIVE;
		}
	}
	sqlite3_reset(*q);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_fail(db, rc, "cannot read the subjects' keys", err);
	return 0;
}

/* The key to encrypt with: the subject's, a new one (stored in this
 * transaction), or for an erased subject a throw-away one that is never
 * stored: what an erased subject gives again is written already erased. */
static int key_for_writing(sqlite3 *db, struct cqrs_shred *sh, const char *subject,
			   uint8_t key[KEY_LEN], cqrs_error *err)
{
	enum key_state state;
	if (key_get(db, &sh->key_get, subject, key, &state, err) < 0)
		return -1;
	if (state == KEY_LIVE)
		return 0;
	if (cqrs_random_bytes(key, KEY_LEN, err) < 0)
		return -1;
	if (state == KEY_ERASED)
		return 0;
	if (prepare(db, &sh->key_put,
		    "INSERT INTO subject_keys (subject, key, created_at) VALUES (?, ?, ?)",
		    err) < 0)
		return -1;
	char now[CQRS_TIMESTAMP_LEN + 1];
	cqrs_timestamp_now(now);
	sqlite3_bind_text(sh->key_put, 1, subject, -1, SQLITE_STATIC);
	sqlite3_bind_blob(sh->key_put, 2, key, KEY_LEN, SQLITE_STATIC);
	sqlite3_bind_text(sh->key_put, 3, now, -1, SQLITE_STATIC);
	int rc = sqlite3_step(sh->key_put);
	sqlite3_reset(sh->key_put);
	sqlite3_clear_bindings(sh->key_put);
	return rc == SQLITE_DONE ? 0 : db_fail(db, rc, "cannot store a subject's key", err);
}

/* The subject a member of the data names: true with it in subject. */
static bool data_subject(const cqrs_event *ev, const char *member,
			 char subject[CQRS_SUBJECT_MAX + 1])
{
	const char *v;
	size_t vn;
	return cqrs_json_get(ev->data, ev->data_len, member, &v, &vn) &&
	       cqrs_json_string(v, vn, subject, CQRS_SUBJECT_MAX + 1) > 0;
}

static int record_subject(sqlite3 *db, struct cqrs_shred *sh, const cqrs_event *ev,
			  const char *subject, cqrs_error *err)
{
	if (prepare(db, &sh->map_put,
		    "INSERT OR IGNORE INTO aggregate_subjects (aggregate_id, subject) VALUES (?, "
		    "?)",
		    err) < 0)
		return -1;
	sqlite3_bind_blob(sh->map_put, 1, ev->aggregate_id, CQRS_UUID_LEN, SQLITE_STATIC);
	sqlite3_bind_text(sh->map_put, 2, subject, -1, SQLITE_STATIC);
	int rc = sqlite3_step(sh->map_put);
	sqlite3_reset(sh->map_put);
	return rc == SQLITE_DONE ? 0 : db_fail(db, rc, "cannot record a data subject", err);
}

static int step_text(sqlite3 *db, sqlite3_stmt *q, char subject[CQRS_SUBJECT_MAX + 1],
		     cqrs_error *err)
{
	int rc = sqlite3_step(q);
	int found = 0;
	if (rc == SQLITE_ROW && sqlite3_column_type(q, 0) == SQLITE_TEXT &&
	    sqlite3_column_bytes(q, 0) > 0 && sqlite3_column_bytes(q, 0) <= CQRS_SUBJECT_MAX) {
		memcpy(subject, sqlite3_column_text(q, 0), (size_t)sqlite3_column_bytes(q, 0));
		subject[sqlite3_column_bytes(q, 0)] = '\0';
		found = 1;
	}
	sqlite3_reset(q);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_fail(db, rc, "cannot read the data subjects", err);
	return found;
}

/* The subject of ev's aggregate: recorded, or (an aggregate begun before
 * this release) named by its first event of a type that names one, then
 * recorded.  1 found, 0 none, -1 error. */
static int aggregate_subject(sqlite3 *db, struct cqrs_shred *sh, const cqrs_event *ev,
			     char subject[CQRS_SUBJECT_MAX + 1], cqrs_error *err)
{
	if (prepare(db, &sh->map_get,
		    "SELECT subject FROM aggregate_subjects WHERE aggregate_id = ?", err) < 0)
		return -1;
	sqlite3_bind_blob(sh->map_get, 1, ev->aggregate_id, CQRS_UUID_LEN, SQLITE_STATIC);
	int r = step_text(db, sh->map_get, subject, err);
	if (r != 0)
		return r;
	if (prepare(db, &sh->map_find,
		    "SELECT json_extract(e.data, '$.' || p.subject_member) FROM events e"
		    " JOIN personal_fields p ON p.event_type = e.event_type"
		    " AND p.subject_member IS NOT NULL"
		    " WHERE e.aggregate_id = ? ORDER BY e.aggregate_version LIMIT 1",
		    err) < 0)
		return -1;
	sqlite3_bind_blob(sh->map_find, 1, ev->aggregate_id, CQRS_UUID_LEN, SQLITE_STATIC);
	r = step_text(db, sh->map_find, subject, err);
	if (r == 1 && record_subject(db, sh, ev, subject, err) < 0)
		return -1;
	return r;
}

/* --- the append side ------------------------------------------------------ */

void cqrs_shred_begin(cqrs_store *st)
{
	if (st->shred != NULL)
		st->shred->fresh = false;
}

void cqrs_shred_free(struct cqrs_shred *sh)
{
	if (sh == NULL)
		return;
	sqlite3_finalize(sh->key_get);
	sqlite3_finalize(sh->key_put);
	sqlite3_finalize(sh->map_get);
	sqlite3_finalize(sh->map_put);
	sqlite3_finalize(sh->map_find);
	free(sh->decls);
	cqrs_strbuf_free(&sh->data);
	if (sh->bytes.p != NULL)
		explicit_bzero(sh->bytes.p, sh->bytes.cap);
	cqrs_strbuf_free(&sh->bytes);
	free(sh);
}

static const struct decl *decl_of(const struct cqrs_shred *sh, const char *event_type,
				  const char *field, size_t field_len)
{
	for (size_t i = 0; i < sh->ndecls; i++)
		if (strcmp(sh->decls[i].event_type, event_type) == 0 &&
		    strlen(sh->decls[i].field) == field_len &&
		    memcmp(sh->decls[i].field, field, field_len) == 0)
			return &sh->decls[i];
	return NULL;
}

/* An envelope appended as it is (a stored-form copy): it must open with
 * its subject's key when this store holds that key, or it was made for
 * another event or field (or made up). */
static int check_envelope(sqlite3 *db, struct cqrs_shred *sh, const cqrs_event *ev,
			  const cqrs_json_member *m, cqrs_error *err)
{
	char subject[CQRS_SUBJECT_MAX + 1];
	const char *ct;
	size_t ct_len;
	if (!envelope_parts(m->value, m->value_len, subject, &ct, &ct_len))
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "%s: field '%.*s' is not a valid encrypted value", ev->event_type,
				 (int)m->key_len, m->key);
	uint8_t key[KEY_LEN], aad[AAD_MAX];
	enum key_state state;
	if (key_get(db, &sh->key_get, subject, key, &state, err) < 0)
		return -1;
	if (state != KEY_LIVE)
		return 0;
	size_t aad_len = make_aad(aad, sizeof aad, ev, m->key, m->key_len, subject);
	struct cqrs_strbuf plain = { 0 };
	int r = open_envelope(&sh->bytes, key, aad, aad_len, ct, ct_len, &plain);
	explicit_bzero(key, sizeof key);
	if (plain.p != NULL)
		explicit_bzero(plain.p, plain.len);
	cqrs_strbuf_free(&plain);
	if (r < 0)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	if (r == 0)
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "%s: field '%.*s' holds a ciphertext that does not open with its "
				 "subject's key: made for another event or field",
				 ev->event_type, (int)m->key_len, m->key);
	return 0;
}

/* One declared field's value, encrypted into sh->data. */
static int encrypt_field(sqlite3 *db, struct cqrs_shred *sh, cqrs_event *ev,
			 const cqrs_json_member *m, const char *subject, cqrs_error *err)
{
	uint8_t key[KEY_LEN], aad[AAD_MAX];
	if (key_for_writing(db, sh, subject, key, err) < 0)
		return -1;
	size_t aad_len = make_aad(aad, sizeof aad, ev, m->key, m->key_len, subject);
	int r = seal(sh, key, aad, aad_len, subject, m->value, m->value_len, &sh->data, err);
	explicit_bzero(key, sizeof key);
	return r;
}

/* The subject of a declared field of ev: 1 with it, 0 when there is none
 * (the field is then stored as written: it is no one's known data). */
static int subject_of(sqlite3 *db, struct cqrs_shred *sh, const cqrs_event *ev,
		      const struct decl *d, char subject[CQRS_SUBJECT_MAX + 1], cqrs_error *err)
{
	if (d->member[0] != '\0')
		return data_subject(ev, d->member, subject) ? 1 : 0;
	return aggregate_subject(db, sh, ev, subject, err);
}

static int rewrite_data(sqlite3 *db, struct cqrs_shred *sh, cqrs_event *ev, cqrs_error *err)
{
	struct cqrs_strbuf *out = &sh->data;
	cqrs_strbuf_reset(out);
	cqrs_strbuf_putc(out, '{');
	size_t pos = 0;
	cqrs_json_member m;
	bool first = true, changed = false;
	while (cqrs_json_next_member(ev->data, ev->data_len, &pos, &m) == 1) {
		if (!first)
			cqrs_strbuf_putc(out, ',');
		first = false;
		cqrs_strbuf_put(out, m.key - 1, m.key_len + 3); /* "key": */
		const struct decl *d = decl_of(sh, ev->event_type, m.key, m.key_len);
		char subject[CQRS_SUBJECT_MAX + 1];
		int has = 0;
		if (d != NULL && !is_envelope(m.value, m.value_len) &&
		    (has = subject_of(db, sh, ev, d, subject, err)) < 0)
			return -1;
		if (d != NULL && is_envelope(m.value, m.value_len) &&
		    check_envelope(db, sh, ev, &m, err) < 0)
			return -1;
		if (has == 0) {
			cqrs_strbuf_put(out, m.value, m.value_len);
			continue;
		}
		if (!ev->has_event_id) { /* the associated data names it */
			cqrs_uuid_generate(ev->event_id);
			ev->has_event_id = true;
		}
		if (encrypt_field(db, sh, ev, &m, subject, err) < 0)
			return -1;
		changed = true;
	}
	cqrs_strbuf_putc(out, '}');
	if (out->oom)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	if (changed) {
		ev->data = out->p;
		ev->data_len = out->len;
	}
	return 0;
}

int cqrs_shred_encrypt(cqrs_store *st, cqrs_event *ev, cqrs_error *err)
{
	sqlite3 *db = cqrs_sqlite_handle(st);
	/* A PostgreSQL store holds no declarations in this release, so no
	 * field of it is personal (cqrs-postgres(7)). */
	if (db == NULL)
		return 0;
	struct cqrs_shred *sh = st->shred;
	if (sh == NULL) {
		if ((sh = st->shred = calloc(1, sizeof *sh)) == NULL)
			return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		/* A writer may store keys: the bytes SQLite frees when it moves
		 * them (a page split, the erasure) are overwritten, not left in
		 * the file's free space. */
		int rc = sqlite3_exec(db, "PRAGMA secure_delete = ON", NULL, NULL, NULL);
		if (rc != SQLITE_OK)
			return db_fail(db, rc, "cannot open store", err);
	}
	if (!sh->fresh && load_decls(db, sh, err) < 0)
		return -1;
	bool declared = false;
	for (size_t i = 0; i < sh->ndecls; i++) {
		const struct decl *d = &sh->decls[i];
		if (strcmp(d->event_type, ev->event_type) != 0)
			continue;
		declared = true;
		char subject[CQRS_SUBJECT_MAX + 1];
		/* the aggregate's subject, named by its data: for the fields of
		 * its later events that do not name it */
		if (d->member[0] != '\0' && data_subject(ev, d->member, subject) &&
		    record_subject(db, sh, ev, subject, err) < 0)
			return -1;
	}
	if (!declared || (ev->sequence > 0 && ev->has_hash))
		return 0;
	return rewrite_data(db, sh, ev, err);
}

/* --- the DECRYPT stage --------------------------------------------------- */

struct decrypt_ctx {
	sqlite3_stmt *key_get;
	bool no_keys; /* a store older than erasure: nothing to open */
	struct cqrs_strbuf scratch;
};

static void decrypt_free(void *p)
{
	struct decrypt_ctx *x = p;
	sqlite3_finalize(x->key_get);
	if (x->scratch.p != NULL)
		explicit_bzero(x->scratch.p, x->scratch.cap);
	cqrs_strbuf_free(&x->scratch);
	free(x);
}

/* One envelope's plaintext, or the erased marker, appended to out. */
static int decrypt_value(struct decrypt_ctx *x, sqlite3 *db, const cqrs_event *ev,
			 const cqrs_json_member *m, struct cqrs_strbuf *out, cqrs_error *err)
{
	char subject[CQRS_SUBJECT_MAX + 1];
	const char *ct;
	size_t ct_len;
	if (!envelope_parts(m->value, m->value_len, subject, &ct, &ct_len))
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "sequence %lld (%s): field '%.*s' is not a valid encrypted value",
				 (long long)ev->sequence, ev->event_type, (int)m->key_len, m->key);
	uint8_t key[KEY_LEN], aad[AAD_MAX];
	enum key_state state = KEY_NONE;
	if (!x->no_keys && key_get(db, &x->key_get, subject, key, &state, err) < 0) {
		/* a reader of a store from before erasure has no keys table */
		if (sqlite3_get_autocommit(db) == 0 ||
		    sqlite3_table_column_metadata(db, "main", "subject_keys", NULL, NULL, NULL,
						  NULL, NULL, NULL) == SQLITE_OK)
			return -1;
		x->no_keys = true;
	}
	if (state != KEY_LIVE) {
		cqrs_strbuf_puts(out, CQRS_ERASED_MARKER);
		return 0;
	}
	size_t aad_len = make_aad(aad, sizeof aad, ev, m->key, m->key_len, subject);
	int r = open_envelope(&x->scratch, key, aad, aad_len, ct, ct_len, out);
	explicit_bzero(key, sizeof key);
	if (r < 0)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	if (r == 0)
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "sequence %lld (%s): field '%.*s' does not decrypt with its "
				 "subject's key: the ciphertext was moved or damaged",
				 (long long)ev->sequence, ev->event_type, (int)m->key_len, m->key);
	return 0;
}

bool cqrs_json_encrypted(const char *v, size_t n)
{
	return is_envelope(v, n);
}

bool cqrs_event_encrypted(const cqrs_event *ev)
{
	return memmem(ev->data, ev->data_len, ENVELOPE, sizeof ENVELOPE - 1) != NULL;
}

static int decrypt_decode(void *ctx, cqrs_store *st, cqrs_event *ev, struct cqrs_strbuf *out,
			  cqrs_error *err)
{
	/* the common case, an event with nothing encrypted, costs one scan */
	if (!cqrs_event_encrypted(ev))
		return 0;
	struct decrypt_ctx *x = ctx;
	sqlite3 *db = cqrs_sqlite_handle(st);
	cqrs_strbuf_putc(out, '{');
	size_t pos = 0;
	cqrs_json_member m;
	bool first = true;
	while (cqrs_json_next_member(ev->data, ev->data_len, &pos, &m) == 1) {
		if (!first)
			cqrs_strbuf_putc(out, ',');
		first = false;
		cqrs_strbuf_put(out, m.key - 1, m.key_len + 3);
		if (!is_envelope(m.value, m.value_len) || db == NULL)
			cqrs_strbuf_put(out, m.value, m.value_len);
		else if (decrypt_value(x, db, ev, &m, out, err) < 0)
			return -1;
	}
	cqrs_strbuf_putc(out, '}');
	if (out->oom)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	ev->data = out->p;
	ev->data_len = out->len;
	return 0;
}

int cqrs_store_decrypt(cqrs_store *st, cqrs_error *err)
{
	struct decrypt_ctx *x = calloc(1, sizeof *x);
	if (x == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	struct cqrs_decoder d = { .decode = decrypt_decode, .free = decrypt_free, .ctx = x };
	cqrs_store_set_decoder(st, CQRS_DECODE_DECRYPT, &d);
	cqrs_store_set_form(st, CQRS_FORM_CURRENT);
	return 0;
}

/* --- declarations ------------------------------------------------------------ */

int cqrs_personal_declare(cqrs_store *st, const char *event_type, const char *field,
			  const char *subject, cqrs_error *err)
{
	sqlite3 *db = cqrs_sqlite_handle(st);
	if (db == NULL)
		return cqrs_fail(err, CQRS_EXIT_CONFIG,
				 "erasure needs the embedded SQLite store: a PostgreSQL store has "
				 "no personal fields");
	struct decl d = { 0 };
	bool agg = strcmp(subject, "aggregate") == 0;
	if (!cqrs_type_name_valid(event_type, strlen(event_type)))
		return cqrs_fail(err, CQRS_EXIT_USAGE, "not an event type: '%.80s'", event_type);
	if (!plain_name(field, strlen(field)))
		return cqrs_fail(err, CQRS_EXIT_USAGE,
				 "a personal field is a top-level member name (letters, digits, "
				 "'_'): '%.80s'",
				 field);
	if (!agg &&
	    (strncmp(subject, "data.", 5) != 0 || !plain_name(subject + 5, strlen(subject + 5))))
		return cqrs_fail(err, CQRS_EXIT_USAGE,
				 "the subject is 'aggregate' or 'data.MEMBER': '%.80s'", subject);
	snprintf(d.event_type, sizeof d.event_type, "%s", event_type);
	snprintf(d.field, sizeof d.field, "%s", field);
	snprintf(d.member, sizeof d.member, "%s", agg ? "" : subject + 5);
	if (strcmp(d.member, d.field) == 0)
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "%s.%s cannot be its own subject: the subject's id is what finds "
				 "its key, and stays readable",
				 event_type, field);
	if (cqrs_store_begin(st, err) < 0)
		return -1;
	sqlite3_stmt *q = NULL;
	/* a member that names a subject stays readable: refuse to declare it
	 * personal, and to name a personal field as a subject */
	int rc =
		sqlite3_prepare_v2(db,
				   "SELECT field, subject_member FROM personal_fields"
				   " WHERE event_type = ?1 AND (subject_member = ?2 OR field = ?3)",
				   -1, &q, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(q, 1, d.event_type, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 2, d.field, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 3, d.member, -1, SQLITE_STATIC);
		rc = sqlite3_step(q);
	}
	sqlite3_finalize(q);
	if (rc == SQLITE_ROW) {
		cqrs_store_rollback(st);
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "%s.%s: a member that names a data subject cannot be personal, "
				 "nor a personal field a subject",
				 event_type, field);
	}
	if (rc == SQLITE_DONE) {
		rc = sqlite3_prepare_v2(db,
					"INSERT OR REPLACE INTO personal_fields"
					" (event_type, field, subject_member) VALUES (?, ?, ?)",
					-1, &q, NULL);
		if (rc == SQLITE_OK) {
			sqlite3_bind_text(q, 1, d.event_type, -1, SQLITE_STATIC);
			sqlite3_bind_text(q, 2, d.field, -1, SQLITE_STATIC);
			if (agg)
				sqlite3_bind_null(q, 3);
			else
				sqlite3_bind_text(q, 3, d.member, -1, SQLITE_STATIC);
			rc = sqlite3_step(q);
		}
		sqlite3_finalize(q);
	}
	if (rc != SQLITE_DONE) {
		db_fail(db, rc, "cannot declare a personal field", err);
		cqrs_store_rollback(st);
		return -1;
	}
	return cqrs_store_commit(st, err);
}

int cqrs_personal_list(cqrs_store *st, FILE *out, cqrs_error *err)
{
	sqlite3 *db = cqrs_sqlite_handle(st);
	if (db == NULL)
		return cqrs_fail(err, CQRS_EXIT_CONFIG,
				 "erasure needs the embedded SQLite store: a PostgreSQL store has "
				 "no personal fields");
	struct cqrs_shred sh = { 0 };
	int r = load_decls(db, &sh, err);
	for (size_t i = 0; r == 0 && i < sh.ndecls; i++) {
		const struct decl *d = &sh.decls[i];
		fprintf(out, "{\"event_type\":\"%s\",\"field\":\"%s\",\"subject\":\"%s%s\"}\n",
			d->event_type, d->field, d->member[0] ? "data." : "aggregate", d->member);
	}
	free(sh.decls);
	return r;
}

/* --- erasing a subject ------------------------------------------------------- */

struct aggregates {
	uint8_t (*ids)[CQRS_UUID_LEN];
	size_t n, cap;
};

static int add_aggregate(struct aggregates *a, const void *id, cqrs_error *err)
{
	for (size_t i = 0; i < a->n; i++)
		if (memcmp(a->ids[i], id, CQRS_UUID_LEN) == 0)
			return 0;
	if (a->n == a->cap) {
		size_t ncap = a->cap ? 2 * a->cap : 16;
		void *p = realloc(a->ids, ncap * CQRS_UUID_LEN);
		if (p == NULL)
			return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		a->ids = p;
		a->cap = ncap;
	}
	memcpy(a->ids[a->n++], id, CQRS_UUID_LEN);
	return 0;
}

/* A declared field of a row's data in plaintext: counted in the report. */
static void note_plaintext(struct cqrs_erase_report *r, sqlite3_stmt *q, const char *field)
{
	const char *data = (const char *)sqlite3_column_text(q, 1);
	size_t n = (size_t)sqlite3_column_bytes(q, 1);
	const char *v;
	size_t vn;
	if (data == NULL || !cqrs_json_get(data, n, field, &v, &vn) || is_envelope(v, vn))
		return;
	if (r->nplaintext < CQRS_ERASE_LISTED)
		r->plaintext[r->nplaintext] = sqlite3_column_int64(q, 0);
	r->nplaintext++;
}

/* Every event that holds a declared field of subject: found by the member
 * that names it, then by the aggregates those events and the recorded
 * subjects give.  Fills r->nplaintext and *nevents. */
static int find_events(sqlite3 *db, const struct cqrs_shred *sh, const char *subject,
		       struct cqrs_erase_report *r, int64_t *nevents, cqrs_error *err)
{
	struct aggregates aggs = { 0 };
	sqlite3_stmt *q = NULL;
	int rc = SQLITE_DONE;
	for (size_t i = 0; i < sh->ndecls && rc == SQLITE_DONE; i++) {
		const struct decl *d = &sh->decls[i];
		if (d->member[0] == '\0')
			continue;
		rc = sqlite3_prepare_v2(db,
					"SELECT sequence, data, aggregate_id FROM events WHERE "
					"event_type = ? AND json_extract(data, '$.' || ?) = ?",
					-1, &q, NULL);
		if (rc != SQLITE_OK)
			break;
		sqlite3_bind_text(q, 1, d->event_type, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 2, d->member, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 3, subject, -1, SQLITE_STATIC);
		while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
			(*nevents)++;
			note_plaintext(r, q, d->field);
			if (sqlite3_column_bytes(q, 2) == CQRS_UUID_LEN &&
			    add_aggregate(&aggs, sqlite3_column_blob(q, 2), err) < 0)
				break;
		}
		sqlite3_finalize(q);
		q = NULL;
	}
	if (rc == SQLITE_DONE)
		rc = sqlite3_prepare_v2(db,
					"SELECT aggregate_id FROM aggregate_subjects"
					" WHERE subject = ?",
					-1, &q, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(q, 1, subject, -1, SQLITE_STATIC);
		while ((rc = sqlite3_step(q)) == SQLITE_ROW)
			if (sqlite3_column_bytes(q, 0) == CQRS_UUID_LEN &&
			    add_aggregate(&aggs, sqlite3_column_blob(q, 0), err) < 0)
				break;
		sqlite3_finalize(q);
		q = NULL;
	}
	if (rc == SQLITE_DONE)
		rc = sqlite3_prepare_v2(db,
					"SELECT sequence, data FROM events"
					" WHERE aggregate_id = ? AND event_type = ?",
					-1, &q, NULL);
	for (size_t i = 0; i < sh->ndecls && rc == SQLITE_OK; i++) {
		const struct decl *d = &sh->decls[i];
		if (d->member[0] != '\0')
			continue;
		for (size_t a = 0; a < aggs.n && (rc == SQLITE_OK || rc == SQLITE_DONE); a++) {
			sqlite3_bind_blob(q, 1, aggs.ids[a], CQRS_UUID_LEN, SQLITE_STATIC);
			sqlite3_bind_text(q, 2, d->event_type, -1, SQLITE_STATIC);
			while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
				(*nevents)++;
				note_plaintext(r, q, d->field);
			}
			sqlite3_reset(q);
		}
		if (rc == SQLITE_DONE)
			rc = SQLITE_OK;
	}
	sqlite3_finalize(q);
	free(aggs.ids);
	if (rc != SQLITE_OK && rc != SQLITE_DONE)
		return db_fail(db, rc, "cannot read the events", err);
	return 0;
}

/* The key's row without the key.  With secure_delete, SQLite overwrites
 * the bytes it frees, in the page that the checkpoint then writes over
 * the store's; the WAL, which holds older copies of that page, is then
 * truncated. */
static int erase_key(sqlite3 *db, const char *subject, bool has_row, const char *now,
		     cqrs_error *err)
{
	sqlite3_stmt *q;
	int rc = sqlite3_prepare_v2(db,
				    has_row ? "UPDATE subject_keys SET key = NULL, erased_at = ?2"
					      " WHERE subject = ?1"
					    : "INSERT INTO subject_keys (subject, key, created_at,"
					      " erased_at) VALUES (?1, NULL, ?2, ?2)",
				    -1, &q, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(q, 1, subject, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 2, now, -1, SQLITE_STATIC);
		rc = sqlite3_step(q);
	}
	sqlite3_finalize(q);
	return rc == SQLITE_DONE ? 0 : db_fail(db, rc, "cannot erase the key", err);
}

static int erased_at(sqlite3 *db, const char *subject, bool *has_row, char *at, size_t cap,
		     cqrs_error *err)
{
	sqlite3_stmt *q;
	int rc = sqlite3_prepare_v2(db, "SELECT erased_at FROM subject_keys WHERE subject = ?", -1,
				    &q, NULL);
	*has_row = false;
	at[0] = '\0';
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(q, 1, subject, -1, SQLITE_STATIC);
		rc = sqlite3_step(q);
		if (rc == SQLITE_ROW) {
			*has_row = true;
			if (sqlite3_column_type(q, 0) == SQLITE_TEXT)
				snprintf(at, cap, "%s", (const char *)sqlite3_column_text(q, 0));
			rc = SQLITE_DONE;
		}
	}
	sqlite3_finalize(q);
	return rc == SQLITE_DONE ? 0 : db_fail(db, rc, "cannot read the subjects' keys", err);
}

static int erase_in_txn(sqlite3 *db, const char *subject, struct cqrs_erase_report *r,
			cqrs_error *err)
{
	struct cqrs_shred sh = { 0 };
	bool has_row = false;
	char at[CQRS_TIMESTAMP_LEN + 1];
	int64_t nevents = 0;
	int rc = load_decls(db, &sh, err);
	if (rc == 0)
		rc = erased_at(db, subject, &has_row, at, sizeof at, err);
	if (rc == 0 && at[0] != '\0')
		rc = cqrs_fail(err, CQRS_EXIT_DATAERR, "subject '%s' was already erased at %s",
			       subject, at);
	if (rc == 0)
		rc = find_events(db, &sh, subject, r, &nevents, err);
	free(sh.decls);
	if (rc == 0 && !has_row && nevents == 0)
		rc = cqrs_fail(err, CQRS_EXIT_NOT_FOUND,
			       "no such data subject: '%s' (no key, and no event names it)",
			       subject);
	if (rc == 0) {
		cqrs_timestamp_now(r->erased_at);
		rc = erase_key(db, subject, has_row, r->erased_at, err);
	}
	return rc;
}

int cqrs_erase_subject(cqrs_store *st, const char *subject, struct cqrs_erase_report *r,
		       cqrs_error *err)
{
	memset(r, 0, sizeof *r);
	sqlite3 *db = cqrs_sqlite_handle(st);
	if (db == NULL)
		return cqrs_fail(err, CQRS_EXIT_CONFIG,
				 "erasure needs the embedded SQLite store: a PostgreSQL store has "
				 "no personal fields");
	size_t n = strlen(subject);
	if (n == 0 || n > CQRS_SUBJECT_MAX || cqrs_utf8_valid_prefix(subject, n) != n)
		return cqrs_fail(err, CQRS_EXIT_USAGE,
				 "a subject is 1 to %d bytes of UTF-8: '%.80s'", CQRS_SUBJECT_MAX,
				 subject);
	int rc = sqlite3_exec(db, "PRAGMA secure_delete = ON", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return db_fail(db, rc, "cannot erase", err);
	if (cqrs_store_begin(st, err) < 0)
		return -1;
	if (erase_in_txn(db, subject, r, err) < 0) {
		cqrs_store_rollback(st);
		return -1;
	}
	if (cqrs_store_commit(st, err) < 0)
		return -1;
	/* older copies of the key's page are in the WAL: fold it in and cut
	 * it to nothing, waiting for readers up to the busy timeout */
	rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	if (rc != SQLITE_OK)
		return cqrs_fail(err, CQRS_EXIT_TEMPFAIL,
				 "subject '%s' is erased, but readers kept the write-ahead log, "
				 "which may hold the key's old page, from being truncated: run "
				 "cqrs-erase --purge when they are done",
				 subject);
	return 0;
}

int cqrs_erase_purge(cqrs_store *st, cqrs_error *err)
{
	sqlite3 *db = cqrs_sqlite_handle(st);
	if (db == NULL)
		return cqrs_fail(err, CQRS_EXIT_CONFIG,
				 "erasure needs the embedded SQLite store: a PostgreSQL store has "
				 "no personal fields");
	int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	if (rc != SQLITE_OK)
		return cqrs_fail(err, CQRS_EXIT_TEMPFAIL,
				 "the write-ahead log is in use by readers: try again when they "
				 "are done");
	return 0;
}
