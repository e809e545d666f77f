/*
 * The append rules every backend keeps, written once: the expected-version
 * check, a retry of a stored event, the fields the store fills in, the
 * sequence and hash chain, a replayed dump's hash.  A backend holds its
 * write lock, knows the head and the aggregate's version, and passes what
 * only it can do (find an event by id, insert a row) in a
 * struct cqrs_append_backend.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cqrs.h"
#include "store/store_impl.h"
#include "banned.h"

/* --- the versions of the aggregates a transaction appended to ---------- */

#define VERSION_CACHE_SLOTS (1 << 17) /* 3 MiB; bounds memory whatever the input */

static size_t slot_of(const uint8_t id[CQRS_UUID_LEN], size_t cap)
{
	uint64_t h;
	memcpy(&h, id + 8, sizeof h); /* random bits in v4 and v7 ids alike */
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	return (size_t)(h ^ (h >> 32)) & (cap - 1);
}

void cqrs_versions_forget(struct cqrs_versions *v)
{
	if (v->n > 0)
		memset(v->slots, 0, v->cap * sizeof *v->slots);
	v->n = 0;
}

void cqrs_versions_free(struct cqrs_versions *v)
{
	free(v->slots);
	memset(v, 0, sizeof *v);
}

/* The slot of aggregate id: *found when it holds its version, else the
 * empty slot it goes in; NULL without memory. */
static struct cqrs_version_slot *version_slot(struct cqrs_versions *v,
					      const uint8_t id[CQRS_UUID_LEN], bool *found)
{
	/* at its size limit it starts over, and the versions it forgot are
	 * read from the store again */
	if ((v->n + 1) * 2 > v->cap && v->cap >= VERSION_CACHE_SLOTS)
		cqrs_versions_forget(v);
	if ((v->n + 1) * 2 > v->cap) {
		size_t ncap = v->cap ? v->cap * 2 : 1024;
		struct cqrs_version_slot *n = calloc(ncap, sizeof *n);
		if (n == NULL)
			return NULL;
		for (size_t i = 0; i < v->cap; i++) {
			if (v->slots[i].version == 0)
				continue;
			size_t j = slot_of(v->slots[i].id, ncap);
			while (n[j].version != 0)
				j = (j + 1) & (ncap - 1);
			n[j] = v->slots[i];
		}
		free(v->slots);
		v->slots = n;
		v->cap = ncap;
	}
	size_t j = slot_of(id, v->cap);
	while (v->slots[j].version != 0) {
		if (memcmp(v->slots[j].id, id, CQRS_UUID_LEN) == 0) {
			*found = true;
			return &v->slots[j];
		}
		j = (j + 1) & (v->cap - 1);
	}
	*found = false;
	return &v->slots[j];
}

int cqrs_versions_get(struct cqrs_versions *v, const uint8_t id[CQRS_UUID_LEN], int64_t *version)
{
	if (v->cap == 0)
		return 0;
	size_t j = slot_of(id, v->cap);
	while (v->slots[j].version != 0) {
		if (memcmp(v->slots[j].id, id, CQRS_UUID_LEN) == 0) {
			*version = v->slots[j].version;
			return 1;
		}
		j = (j + 1) & (v->cap - 1);
	}
	return 0;
}

/* --- the append rules ---------------------------------------------------- */

static bool same_bytes(const char *a, size_t an, const char *b, size_t bn)
{
	return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

int cqrs_append_take_stored(const cqrs_event *stored, cqrs_event *ev, cqrs_error *err)
{
	bool same =
		memcmp(stored->aggregate_id, ev->aggregate_id, CQRS_UUID_LEN) == 0 &&
		strcmp(stored->aggregate_type, ev->aggregate_type) == 0 &&
		strcmp(stored->event_type, ev->event_type) == 0 &&
		stored->event_version == ev->event_version &&
		same_bytes(stored->data, stored->data_len, ev->data, ev->data_len) &&
		same_bytes(stored->metadata, stored->metadata_len, ev->metadata,
			   ev->metadata_len) &&
		(ev->timestamp[0] == '\0' || strcmp(stored->timestamp, ev->timestamp) == 0) &&
		(ev->aggregate_version == 0 || stored->aggregate_version == ev->aggregate_version);
	if (!same) {
		char id[37];
		cqrs_uuid_format(ev->event_id, id);
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "event_id %s is already stored (sequence %lld) with different "
				 "content",
				 id, (long long)stored->sequence);
	}
	/* The stored payload lives in the backend's row, gone once the caller
	 * is done with it; the input holds the same bytes and outlives it. */
	const char *data = ev->data, *metadata = ev->metadata;
	size_t dl = ev->data_len, ml = ev->metadata_len;
	*ev = *stored;
	ev->data = data;
	ev->data_len = dl;
	ev->metadata = metadata;
	ev->metadata_len = ml;
	return 1;
}

int cqrs_append_check_head(const char *store_name, const cqrs_event *head,
			   const uint8_t prev_hash[CQRS_HASH_LEN], int64_t prev_sequence,
			   bool well_formed, cqrs_error *err)
{
	uint8_t h[CQRS_HASH_LEN];
	cqrs_event_hash(head, prev_hash, h);
	if (!well_formed || prev_sequence != head->sequence - 1 ||
	    memcmp(h, head->hash, CQRS_HASH_LEN) != 0)
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "%s: event %lld does not match its hash: the store was changed "
				 "outside the tools; nothing was written (see cqrs-read --verify)",
				 store_name, (long long)head->sequence);
	return 0;
}

static int conflict(const cqrs_event *ev, int64_t expected, int64_t actual, cqrs_error *err)
{
	char id[37];
	cqrs_uuid_format(ev->aggregate_id, id);
	return cqrs_fail(err, CQRS_EXIT_CONFLICT,
			 "version conflict on aggregate %s: expected version %lld, actual %lld", id,
			 (long long)expected, (long long)actual);
}

int cqrs_append_event(const struct cqrs_append_backend *b, struct cqrs_versions *versions,
		      struct cqrs_append_head *head, cqrs_event *ev, cqrs_error *err)
{
	bool found;
	struct cqrs_version_slot *slot = version_slot(versions, ev->aggregate_id, &found);
	if (slot == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	int64_t current =
		found ? slot->version : b->stored_version(b->backend, ev->aggregate_id, err);
	if (current < 0)
		return -1;
	int64_t expected = ev->expected_version;
	if (expected < 0 && ev->aggregate_version > 0)
		expected = ev->aggregate_version - 1;
	if (expected >= 0 && expected != current) {
		/* A retry of an event that was stored is not a conflict. */
		int dup = ev->has_event_id ? b->find_stored(b->backend, ev, err) : 0;
		if (dup != 0)
			return dup < 0 ? -1 : CQRS_DUPLICATE;
		return conflict(ev, expected, current, err);
	}

	/* A retry without timestamp or aggregate_version must compare equal
	 * to the stored event, not to the defaults filled in below. */
	bool given_timestamp = ev->timestamp[0] != '\0';
	int64_t given_version = ev->aggregate_version;
	if (!ev->has_event_id) {
		cqrs_uuid_generate(ev->event_id);
		ev->has_event_id = true;
	}
	if (!given_timestamp)
		cqrs_timestamp_now(ev->timestamp);
	/* A replayed dump lands at the sequences it came from: then its hash
	 * must come out the same, or the dump was edited. */
	bool check_hash = ev->has_hash && ev->sequence == head->sequence + 1;
	uint8_t given_hash[CQRS_HASH_LEN];
	memcpy(given_hash, ev->hash, CQRS_HASH_LEN);
	ev->sequence = head->sequence + 1;
	ev->aggregate_version = current + 1;
	cqrs_event_hash(ev, head->hash, ev->hash);
	ev->has_hash = true;
	if (check_hash && memcmp(given_hash, ev->hash, CQRS_HASH_LEN) != 0)
		return cqrs_fail(
			err, CQRS_EXIT_DATAERR,
			"field 'hash' does not match the event replayed at sequence %lld: the "
			"input was edited (remove 'hash' to store it as new)",
			(long long)ev->sequence);

	bool inserted;
	if (b->insert(b->backend, ev, &inserted, err) < 0)
		return -1;
	if (!inserted) {
		/* its event_id is stored: the same event, or an error */
		if (!given_timestamp)
			ev->timestamp[0] = '\0';
		ev->aggregate_version = given_version;
		int dup = b->find_stored(b->backend, ev, err);
		if (dup < 0)
			return -1;
		if (dup == 0)
			return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "insert ignored for no reason");
		return CQRS_DUPLICATE;
	}
	head->sequence = ev->sequence;
	memcpy(head->hash, ev->hash, CQRS_HASH_LEN);
	if (!found) {
		memcpy(slot->id, ev->aggregate_id, CQRS_UUID_LEN);
		versions->n++;
	}
	slot->version = ev->aggregate_version;
	return CQRS_APPENDED;
}
