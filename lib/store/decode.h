/*
 * The store's one extension point for the parts above it (lib/domain's
 * upcasters, lib/store's own decryption): stages that rewrite what a
 * cursor gives in the current form (cqrs_store_set_form, cqrs.h).  The
 * rest of the store's insides stay in store_impl.h, inside lib/store.
 */
#ifndef CQRS_STORE_DECODE_H
#define CQRS_STORE_DECODE_H

#include "cqrs.h"
#include "common/strbuf.h"

/*
 * The current form of an event (cqrs_store_set_form): stages that rewrite
 * what a cursor gives, in this order, each reading the previous stage's
 * output.  Personal fields are decrypted before upcasting, because the
 * upcasters of a version were written against that version's plaintext.
 */
enum cqrs_decode_stage {
	CQRS_DECODE_DECRYPT, /* personal fields (crypto-shredding) */
	CQRS_DECODE_UPCAST,  /* old event versions to the newest */
	CQRS_DECODE_STAGES,
};

/* One stage: rewrites ev, whose data the stage may replace with bytes it
 * writes into out (the cursor's buffer for that stage, reset before the
 * call; ev->data must then point into it, and stays valid until the
 * cursor's next event).  Returns 0 (ev unchanged or rewritten), or -1 with
 * *err naming the event's sequence and type; ev is then left as it came. */
struct cqrs_decoder {
	int (*decode)(void *ctx, cqrs_store *st, cqrs_event *ev, struct cqrs_strbuf *out,
		      cqrs_error *err);
	void (*free)(void *ctx); /* at cqrs_store_close; may be NULL */
	void *ctx;
};

/* Installs (or, with a NULL decode, removes) the store's stage; the store
 * frees ctx through d->free at close or when the stage is replaced. */
void cqrs_store_set_decoder(cqrs_store *st, enum cqrs_decode_stage stage,
			    const struct cqrs_decoder *d);

#endif
