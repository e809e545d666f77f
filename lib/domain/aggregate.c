/*
 * Loading an aggregate: its state is the fold of its events.  Three ways
 * to get there, all giving the same state:
 *
 *  - a cached state whose version is still the stream's version (checked
 *    against the store on every load, so another process's appends are
 *    seen), brought forward by the events after it;
 *  - the latest snapshot plus the events after it.  A snapshot is trusted
 *    only when its digest matches its content and the event at its version
 *    is still the one it was taken after (same hash), so a corrupt, edited,
 *    copied or stale snapshot is ignored;
 *  - all the events.
 */
#include "config.h"

#include <nettle/sha2.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "domain/domain.h"
#include "banned.h"

/* 2: inventory holds per order, order states and lines; snapshots of
 * format 1 are ignored (the state is folded from the events). */
#define SNAPSHOT_FORMAT 2

int agg_kind_of(const char *type)
{
	for (int k = 0; k < AGG_KINDS; k++)
		if (strcmp(domain_of((enum agg_kind)k)->type, type) == 0)
			return k;
	return -1;
}

/* The bytes of *a that carry its state: an order's lines past nlines are
 * never read, and copying or clearing all 64 of them for each command of
 * a stream cost more than deciding it. */
static size_t agg_used_size(const struct aggregate *a)
{
	size_t head = offsetof(struct aggregate, u);
	switch (a->kind) {
	case AGG_ORDER:
		return head + offsetof(struct order_state, lines) +
		       (size_t)a->u.order.nlines * sizeof a->u.order.lines[0];
	case AGG_INVENTORY: return head + sizeof a->u.inv;
	case AGG_PAYMENT: return head + sizeof a->u.pay;
	default: return sizeof *a;
	}
}

void agg_clear(struct aggregate *a)
{
	if (a->kind == AGG_INVENTORY)
		free(a->u.inv.holds);
	/* everything but an order's lines, which nlines = 0 leaves unread */
	size_t n = offsetof(struct order_state, lines);
	if (n < sizeof a->u.inv)
		n = sizeof a->u.inv;
	if (n < sizeof a->u.pay)
		n = sizeof a->u.pay;
	memset(a, 0, offsetof(struct aggregate, u) + n);
}

void agg_init(struct aggregate *a, enum agg_kind kind, const uint8_t id[CQRS_UUID_LEN])
{
	/* an inventory keeps its holds' buffer, empty (see agg_copy) */
	struct inventory_hold *buf = NULL;
	size_t cap = 0;
	if (a->kind == AGG_INVENTORY && kind == AGG_INVENTORY) {
		buf = a->u.inv.holds;
		cap = a->u.inv.holds_cap;
		a->u.inv.holds = NULL;
	}
	agg_clear(a);
	a->kind = kind;
	memcpy(a->id, id, CQRS_UUID_LEN);
	if (kind == AGG_INVENTORY) {
		a->u.inv.holds = buf;
		a->u.inv.holds_cap = cap;
	}
}

int agg_copy(struct aggregate *dst, const struct aggregate *src, cqrs_error *err)
{
	if (dst == src)
		return 0;
	/* dst's holds are kept for the copy when they have room: a stream of
	 * commands copies the same product's holds in and out of the cache
	 * for each one, and a fresh buffer each time was most of its cost */
	struct inventory_hold *buf = NULL;
	size_t cap = 0;
	if (dst->kind == AGG_INVENTORY) {
		buf = dst->u.inv.holds;
		cap = dst->u.inv.holds_cap;
	}
	memcpy(dst, src, agg_used_size(src));
	if (src->kind != AGG_INVENTORY) {
		free(buf);
		return 0;
	}
	struct inventory_state *d = &dst->u.inv;
	size_t n = src->u.inv.nholds;
	if (n > cap) {
		free(buf);
		cap = n;
		buf = malloc(cap * sizeof *buf);
		if (buf == NULL) {
			d->holds = NULL;
			d->nholds = d->holds_cap = 0;
			return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		}
	}
	if (n > 0)
		memcpy(buf, src->u.inv.holds, n * sizeof *buf);
	d->holds = buf;
	d->holds_cap = cap;
	return 0;
}

int agg_loader_init(struct agg_loader *l, cqrs_store *st, int64_t snapshot_every,
		    bool ignore_snapshots, cqrs_error *err)
{
	*l = (struct agg_loader){ .st = st,
				  .snapshot_every = snapshot_every,
				  .ignore_snapshots = ignore_snapshots };
	l->cache = calloc(AGG_CACHE_SLOTS, sizeof *l->cache);
	if (l->cache == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	return 0;
}

void agg_loader_free(struct agg_loader *l)
{
	/* only when needed: reading every slot faults in every page */
	if (l->cache != NULL && l->cache_owns)
		agg_loader_forget(l);
	free(l->cache);
	cqrs_strbuf_free(&l->scratch);
	l->cache = NULL;
}

static struct aggregate *slot(struct agg_loader *l, const uint8_t id[CQRS_UUID_LEN])
{
	uint64_t h;
	memcpy(&h, id + 8, sizeof h);
	uint64_t h2;
	memcpy(&h2, id, sizeof h2);
	h ^= h2 * 0x9e3779b97f4a7c15ULL;
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 32;
	return &l->cache[h & (AGG_CACHE_SLOTS - 1)];
}

/* Frees what a slot owns and marks it empty, without writing the rest:
 * a process that used few slots touches few pages. */
static void forget_slot(struct aggregate *c)
{
	if (c->kind == AGG_INVENTORY && c->u.inv.holds != NULL) {
		free(c->u.inv.holds);
		c->u.inv.holds = NULL;
		c->u.inv.nholds = c->u.inv.holds_cap = 0;
	}
	if (c->version != 0)
		c->version = 0;
}

void agg_loader_forget(struct agg_loader *l)
{
	for (int i = 0; i < AGG_CACHE_SLOTS; i++)
		forget_slot(&l->cache[i]);
}

void agg_loader_forget_one(struct agg_loader *l, const uint8_t id[CQRS_UUID_LEN])
{
	struct aggregate *c = slot(l, id);
	if (memcmp(c->id, id, CQRS_UUID_LEN) == 0)
		forget_slot(c);
}

int agg_fold(struct aggregate *a, const cqrs_event *ev, cqrs_error *err)
{
	const struct domain *dom = domain_of(a->kind);
	if (ev->aggregate_version != a->version + 1) {
		char id[37];
		cqrs_uuid_format(a->id, id);
		return cqrs_fail(err, CQRS_EXIT_SOFTWARE,
				 "aggregate %s: event version %lld follows version %lld", id,
				 (long long)ev->aggregate_version, (long long)a->version);
	}
	if (a->version == 0 && !cqrs_event_correlation(ev, a->correlation, sizeof a->correlation))
		a->correlation[0] = '\0';
	if (a->foreign_type[0] == '\0' && strcmp(ev->aggregate_type, dom->type) != 0)
		snprintf(a->foreign_type, sizeof a->foreign_type, "%s", ev->aggregate_type);
	if (a->foreign_type[0] == '\0' && dom->apply(a, ev, err) < 0)
		return -1;
	a->version = ev->aggregate_version;
	memcpy(a->last_hash, ev->hash, CQRS_HASH_LEN);
	return 0;
}

int agg_bad_event(const struct aggregate *a, const cqrs_event *ev, const char *what,
		  cqrs_error *err)
{
	char id[37];
	cqrs_uuid_format(a->id, id);
	return cqrs_fail(err, CQRS_EXIT_DATAERR,
			 "%s %s: event %s at version %lld has unreadable data: %s",
			 domain_of(a->kind)->noun, id, ev->event_type,
			 (long long)ev->aggregate_version, what);
}

void agg_state_json(const struct aggregate *a, struct cqrs_strbuf *out)
{
	cqrs_strbuf_putc(out, '{');
	jb_key(out, "correlation_id");
	jb_str(out, a->correlation);
	domain_of(a->kind)->save(a, out);
	cqrs_strbuf_putc(out, '}');
}

/* --- snapshots ------------------------------------------------------------- */

static void digest(const struct aggregate *a, int64_t version, const char *event_hash,
		   const char *state, size_t state_len, uint8_t out[32])
{
	char head[256];
	char id[37];
	cqrs_uuid_format(a->id, id);
	int n = snprintf(head, sizeof head, "cqrs-snapshot %d\n%s\n%s\n%lld\n%.64s\n",
			 SNAPSHOT_FORMAT, id, domain_of(a->kind)->type, (long long)version,
			 event_hash);
	struct sha256_ctx ctx;
	sha256_init(&ctx);
	sha256_update(&ctx, (size_t)n, (const uint8_t *)head);
	sha256_update(&ctx, state_len, (const uint8_t *)state);
	sha256_digest(&ctx, 32, out);
}

static int hex_to_bytes(const char *v, size_t n, uint8_t *out, size_t outlen)
{
	if (n != outlen * 2 + 2 || v[0] != '"')
		return -1;
	for (size_t i = 0; i < outlen; i++) {
		int b = 0;
		for (int k = 0; k < 2; k++) {
			char c = v[1 + 2 * i + (size_t)k];
			int x = c >= '0' && c <= '9'   ? c - '0'
				: c >= 'a' && c <= 'f' ? c - 'a' + 10
						       : -1;
			if (x < 0)
				return -1;
			b = b * 16 + x;
		}
		out[i] = (uint8_t)b;
	}
	return 0;
}

/* Restores *a from the latest snapshot when it can be trusted: returns 1
 * when it was used, 0 when there is none or it was ignored. */
static int from_snapshot(struct agg_loader *l, struct aggregate *a, int64_t current,
			 cqrs_error *err)
{
	int64_t version;
	char *text = NULL;
	int r = cqrs_store_snapshot_load(l->st, a->id, &version, &text, err);
	if (r <= 0)
		return r;
	const struct domain *dom = domain_of(a->kind);
	size_t len = strlen(text);
	const char *v, *state, *type;
	size_t vn, state_len, type_len;
	uint8_t event_hash[CQRS_HASH_LEN], sum[32], want[32];
	int ok = version > 0 && version <= current && cqrs_json_compact(text, &len, NULL) == 0 &&
		 text[0] == '{' && cqrs_json_get(text, len, "format", &v, &vn) && vn == 1 &&
		 v[0] == '0' + SNAPSHOT_FORMAT &&
		 cqrs_json_get(text, len, "aggregate_type", &type, &type_len) &&
		 type_len == strlen(dom->type) + 2 &&
		 memcmp(type + 1, dom->type, type_len - 2) == 0 &&
		 cqrs_json_get(text, len, "event_hash", &v, &vn) &&
		 hex_to_bytes(v, vn, event_hash, CQRS_HASH_LEN) == 0 &&
		 cqrs_json_get(text, len, "sha256", &v, &vn) && hex_to_bytes(v, vn, sum, 32) == 0 &&
		 cqrs_json_get(text, len, "state", &state, &state_len) && state[0] == '{';
	if (ok) {
		const char *hash_text;
		size_t hn;
		cqrs_json_get(text, len, "event_hash", &hash_text, &hn);
		digest(a, version, hash_text + 1, state, state_len, want);
		ok = memcmp(sum, want, 32) == 0 &&
		     jv_string(state, state_len, "correlation_id", a->correlation,
			       sizeof a->correlation) == 0 &&
		     dom->restore(a, state, state_len) == 0;
	}
	free(text);
	if (!ok) {
		l->snapshots_ignored++;
		uint8_t id[CQRS_UUID_LEN];
		memcpy(id, a->id, CQRS_UUID_LEN);
		agg_init(a, a->kind, id);
		return 0;
	}
	a->version = version;
	memcpy(a->last_hash, event_hash, CQRS_HASH_LEN);
	return 1;
}

static int save_snapshot(struct agg_loader *l, const struct aggregate *a, cqrs_error *err)
{
	struct cqrs_strbuf state = { 0 };
	agg_state_json(a, &state);
	struct cqrs_strbuf *b = &l->scratch;
	cqrs_strbuf_reset(b);
	char hash[2 * CQRS_HASH_LEN + 1];
	cqrs_hash_format(a->last_hash, hash);
	uint8_t sum[32];
	if (!state.oom)
		digest(a, a->version, hash, state.p, state.len, sum);
	cqrs_strbuf_putc(b, '{');
	jb_key(b, "format");
	jb_int(b, SNAPSHOT_FORMAT);
	jb_key(b, "aggregate_type");
	jb_str(b, domain_of(a->kind)->type);
	jb_key(b, "event_hash");
	jb_str(b, hash);
	jb_key(b, "sha256");
	jb_hex(b, sum, sizeof sum);
	jb_key(b, "state");
	cqrs_strbuf_put(b, state.p, state.len);
	cqrs_strbuf_putc(b, '}');
	bool oom = state.oom || b->oom;
	cqrs_strbuf_free(&state);
	if (oom)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	return cqrs_store_snapshot_save(l->st, a->id, domain_of(a->kind)->type, a->version, b->p,
					err);
}

/* --- loading ----------------------------------------------------------------- */

/* Folds the events after a->version; with check_first, the event at
 * a->version itself is read first and must carry a->last_hash.  Returns 1
 * when that check failed (the caller starts over from nothing). */
static int fold_rest(struct agg_loader *l, struct aggregate *a, bool check_first, cqrs_error *err)
{
	cqrs_filter f = { .aggregate_id = a->id,
			  .after_version = check_first ? a->version - 1 : a->version };
	cqrs_cursor *c = cqrs_store_read(l->st, &f, err);
	if (c == NULL)
		return -1;
	cqrs_event ev;
	int r;
	bool first = check_first;
	while ((r = cqrs_cursor_next(c, &ev, err)) == 1) {
		if (first) {
			first = false;
			if (ev.aggregate_version != a->version ||
			    memcmp(ev.hash, a->last_hash, CQRS_HASH_LEN) != 0) {
				cqrs_cursor_close(c);
				return 1;
			}
			continue;
		}
		if (agg_fold(a, &ev, err) < 0) {
			r = -1;
			break;
		}
		l->events_folded++;
	}
	cqrs_cursor_close(c);
	if (r < 0)
		return -1;
	return first ? 1 : 0; /* the event at the snapshot's version is gone */
}

static int cache_put(struct agg_loader *l, struct aggregate *c, const struct aggregate *a,
		     cqrs_error *err)
{
	if (a->kind == AGG_INVENTORY && a->u.inv.nholds > 0)
		l->cache_owns = true;
	return agg_copy(c, a, err);
}

int agg_load(struct agg_loader *l, enum agg_kind kind, const uint8_t id[CQRS_UUID_LEN],
	     struct aggregate *out, cqrs_error *err)
{
	agg_init(out, kind, id);
	l->last_snapshot = 0;
	int64_t current = cqrs_store_aggregate_version(l->st, id, err);
	if (current < 0)
		return -1;
	if (current == 0)
		return 0;
	struct aggregate *c = slot(l, id);
	if (c->version > 0 && c->version <= current && c->kind == kind &&
	    memcmp(c->id, id, CQRS_UUID_LEN) == 0) {
		if (agg_copy(out, c, err) < 0)
			return -1;
		if (out->version == current)
			return 0;
		if (fold_rest(l, out, false, err) < 0)
			return -1;
		return cache_put(l, c, out, err);
	}
	if (!l->ignore_snapshots) {
		int r = from_snapshot(l, out, current, err);
		if (r < 0)
			return -1;
		if (r == 1) {
			int64_t at = out->version;
			r = fold_rest(l, out, true, err);
			if (r < 0)
				return -1;
			if (r == 0) {
				l->snapshots_used++;
				l->last_snapshot = at;
				return cache_put(l, c, out, err);
			}
			l->snapshots_ignored++;
			agg_init(out, kind, id);
		}
	}
	if (fold_rest(l, out, false, err) < 0)
		return -1;
	return cache_put(l, c, out, err);
}

int agg_committed(struct agg_loader *l, const struct aggregate *a, int64_t old_version,
		  cqrs_error *err)
{
	if (cache_put(l, slot(l, a->id), a, err) < 0)
		return -1;
	int64_t n = l->snapshot_every;
	if (n > 0 && old_version / n != a->version / n)
		return save_snapshot(l, a, err);
	return 0;
}
