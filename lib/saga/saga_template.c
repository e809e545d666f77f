/*
 * JSON templates of saga definitions: commands, program input and events
 * with ${path} in them, rendered against one saga instance.
 *
 * Values are copied as the bytes stored, never through a double, so that
 * an order's total of 59.98 reaches the payment command as 59.98.
 */
#include "config.h"

#include <nettle/sha2.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "saga/saga_impl.h"
#include "banned.h"

/* --- templates ---------------------------------------------------------------------- */

void tpl_free(struct tpl *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n; i++) {
		if (t->keys != NULL)
			free(t->keys[i]);
		tpl_free(t->items[i]);
	}
	free(t->keys);
	free(t->items);
	free(t->text);
	free(t);
}

void saga_uuid(const char *saga_id, const char *name, size_t name_len, char out[37])
{
	struct sha256_ctx ctx;
	uint8_t digest[SHA256_DIGEST_SIZE];
	sha256_init(&ctx);
	sha256_update(&ctx, strlen(saga_id), (const uint8_t *)saga_id);
	sha256_update(&ctx, 1, (const uint8_t *)"\n");
	sha256_update(&ctx, name_len, (const uint8_t *)name);
	sha256_digest(&ctx, sizeof digest, digest);
	digest[6] = (uint8_t)((digest[6] & 0x0f) | 0x80); /* version 8 */
	digest[8] = (uint8_t)((digest[8] & 0x3f) | 0x80); /* RFC 9562 variant */
	cqrs_uuid_format(digest, out);
}

/* One segment of a path (up to '.' or the end) looked up in a compact
 * object (by key) or array (by index). */
static bool step_into(const char **v, size_t *vn, const char *seg, size_t seglen)
{
	if (*vn > 0 && **v == '{') {
		char key[256];
		if (seglen >= sizeof key)
			return false;
		memcpy(key, seg, seglen);
		key[seglen] = '\0';
		const char *nv;
		size_t nn;
		if (!cqrs_json_get(*v, *vn, key, &nv, &nn))
			return false;
		*v = nv;
		*vn = nn;
		return true;
	}
	if (*vn > 0 && **v == '[') {
		size_t want = 0;
		for (size_t i = 0; i < seglen; i++) {
			if (seg[i] < '0' || seg[i] > '9' || i > 6)
				return false;
			want = want * 10 + (size_t)(seg[i] - '0');
		}
		size_t pos = 0, k = 0;
		const char *e;
		size_t en;
		while (cqrs_json_next_element(*v, *vn, &pos, &e, &en) == 1) {
			if (k++ == want) {
				*v = e;
				*vn = en;
				return true;
			}
		}
	}
	return false;
}

static bool walk(const char *root, size_t rootlen, const char *path, const char **v, size_t *vn)
{
	*v = root;
	*vn = rootlen;
	while (*path != '\0') {
		const char *dot = strchr(path, '.');
		size_t seglen = dot ? (size_t)(dot - path) : strlen(path);
		if (!step_into(v, vn, path, seglen))
			return false;
		path += seglen + (dot ? 1 : 0);
	}
	return true;
}

/* A value the engine makes, as JSON text in scratch. */
static bool saga_value(const char *name, const struct tpl_ctx *c, struct cqrs_strbuf *scratch)
{
	const char *s = NULL;
	if (strcmp(name, "id") == 0)
		s = c->saga_id;
	else if (strcmp(name, "type") == 0)
		s = c->saga_type;
	else if (strcmp(name, "correlation_id") == 0)
		s = c->correlation_id;
	else if (strcmp(name, "step") == 0)
		s = c->step;
	else if (strcmp(name, "idempotency_key") == 0)
		s = c->idempotency_key;
	else if (strcmp(name, "attempt") == 0) {
		cqrs_strbuf_printf(scratch, "%lld", (long long)c->attempt);
		return true;
	}
	if (s == NULL)
		return false;
	cqrs_strbuf_json_string(scratch, s, strlen(s));
	return true;
}

/* The raw JSON bytes a path names.  scratch holds made-up values. */
static bool resolve(const char *path, const struct tpl_ctx *c, struct cqrs_strbuf *scratch,
		    const char **v, size_t *vn)
{
	cqrs_strbuf_reset(scratch);
	const char *rest;
	if (strncmp(path, "uuid:", 5) == 0) {
		char id[37];
		saga_uuid(c->saga_id, path + 5, strlen(path + 5), id);
		cqrs_strbuf_json_string(scratch, id, 36);
		goto made;
	}
	if (strcmp(path, "now") == 0) {
		cqrs_strbuf_json_string(scratch, c->now, strlen(c->now));
		goto made;
	}
	if (strncmp(path, "saga.", 5) == 0) {
		if (!saga_value(path + 5, c, scratch))
			return false;
		goto made;
	}
	if (strncmp(path, "output", 6) == 0 && (path[6] == '.' || path[6] == '\0')) {
		if (c->output == NULL)
			return false;
		rest = path[6] ? path + 7 : "";
		return walk(c->output, c->output_len, rest, v, vn);
	}
	if (strncmp(path, "item", 4) == 0 && (path[4] == '.' || path[4] == '\0')) {
		if (c->item == NULL)
			return false;
		rest = path[4] ? path + 5 : "";
		return walk(c->item, c->item_len, rest, v, vn);
	}
	/* event.*, steps.*, reason: members of the state */
	return walk(c->state, c->state_len, path, v, vn);
made:
	if (scratch->oom)
		return false;
	*v = scratch->p;
	*vn = scratch->len;
	return true;
}

static int missing(const struct tpl *t, const char *path, cqrs_error *err)
{
	return cqrs_fail(err, CQRS_EXIT_DATAERR, "line %d: ${%s} names nothing", t->line, path);
}

/* Out of memory is 71 for the callers to pass on: never a template that
 * names nothing, nor a value dropped, which would fail a step for good
 * (make faultsweep, saga alloc 4048) */
static int no_memory(cqrs_error *err)
{
	return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
}

/* A string value's text for interpolation: strings decoded, other values
 * as their JSON text. */
static int interpolate(const struct tpl *t, const struct tpl_ctx *c, struct cqrs_strbuf *out,
		       cqrs_error *err)
{
	struct cqrs_strbuf text = { 0 }, scratch = { 0 };
	const char *s = t->text;
	int rc = 0;
	while (*s != '\0') {
		const char *open = strstr(s, "${");
		if (open == NULL) {
			cqrs_strbuf_puts(&text, s);
			break;
		}
		cqrs_strbuf_put(&text, s, (size_t)(open - s));
		const char *close = strchr(open, '}');
		char path[256];
		size_t plen = close ? (size_t)(close - open - 2) : 0;
		if (close == NULL || plen >= sizeof path) {
			rc = cqrs_fail(err, CQRS_EXIT_DATAERR, "line %d: unterminated ${", t->line);
			goto out;
		}
		memcpy(path, open + 2, plen);
		path[plen] = '\0';
		const char *v;
		size_t vn;
		if (!resolve(path, c, &scratch, &v, &vn)) {
			rc = scratch.oom ? no_memory(err) : missing(t, path, err);
			goto out;
		}
		if (vn > 0 && v[0] == '"') {
			char *dec = malloc(vn);
			if (dec == NULL) {
				rc = no_memory(err);
				goto out;
			}
			long dn = cqrs_json_string(v, vn, dec, vn);
			if (dn >= 0)
				cqrs_strbuf_put(&text, dec, (size_t)dn);
			free(dec);
		} else {
			cqrs_strbuf_put(&text, v, vn);
		}
		s = close + 1;
	}
	if (text.oom)
		rc = no_memory(err);
	else
		cqrs_strbuf_json_string(out, text.p ? text.p : "", text.len);
out:
	cqrs_strbuf_free(&text);
	cqrs_strbuf_free(&scratch);
	return rc;
}

static int render(const struct tpl *t, const struct tpl_ctx *c, struct cqrs_strbuf *out,
		  cqrs_error *err)
{
	switch (t->kind) {
	case TPL_LITERAL: cqrs_strbuf_puts(out, t->text); return 0;
	case TPL_STRING: return interpolate(t, c, out, err);
	case TPL_REF: {
		struct cqrs_strbuf scratch = { 0 };
		const char *v;
		size_t vn;
		int rc = 0;
		if (resolve(t->text, c, &scratch, &v, &vn))
			cqrs_strbuf_put(out, v, vn);
		else
			rc = scratch.oom ? no_memory(err) : missing(t, t->text, err);
		cqrs_strbuf_free(&scratch);
		return rc;
	}
	case TPL_OBJECT:
	case TPL_ARRAY:
		cqrs_strbuf_putc(out, t->kind == TPL_OBJECT ? '{' : '[');
		for (size_t i = 0; i < t->n; i++) {
			if (i > 0)
				cqrs_strbuf_putc(out, ',');
			if (t->kind == TPL_OBJECT) {
				cqrs_strbuf_json_string(out, t->keys[i], strlen(t->keys[i]));
				cqrs_strbuf_putc(out, ':');
			}
			if (render(t->items[i], c, out, err) < 0)
				return -1;
		}
		cqrs_strbuf_putc(out, t->kind == TPL_OBJECT ? '}' : ']');
		return 0;
	}
	return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "bad template");
}

int tpl_render(const struct tpl *t, const struct tpl_ctx *c, struct cqrs_strbuf *out,
	       cqrs_error *err)
{
	int rc = render(t, c, out, err);
	return rc == 0 && out->oom ? no_memory(err) : rc;
}
