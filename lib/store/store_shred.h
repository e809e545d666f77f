/*
 * Erasure that keeps the chain (store_shred.c): what the facade (store.c)
 * calls around an append.  Private to lib/store.
 */
#ifndef CQRS_STORE_SHRED_H
#define CQRS_STORE_SHRED_H

#include "cqrs.h"

struct cqrs_shred;

/* A write transaction begins: the declarations are read again at its
 * first append, so that one declared meanwhile is applied by every writer. */
void cqrs_shred_begin(cqrs_store *st);
/* Before ev is hashed and stored: its declared personal fields encrypted
 * with their subject's key (made on first use, in the same transaction),
 * and the subject of its aggregate recorded.  ev->data then points into
 * the store's buffer until the next append.  History copied with its
 * sequence and hash is stored as it came (the chain covers its bytes).
 * 0, or -1 with *err. */
int cqrs_shred_encrypt(cqrs_store *st, cqrs_event *ev, cqrs_error *err);
/* At cqrs_store_close, before the backend closes its connection. */
void cqrs_shred_free(struct cqrs_shred *sh);

#endif
