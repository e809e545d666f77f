/*
 * Inside the relay part (lib/relay/): the NATS connection shared by
 * publishing (relay_publish.c) and consuming (relay_consume.c).  Only
 * cqrs-relay links this part, and libnats with it.
 */
#ifndef CQRS_RELAY_IMPL_H
#define CQRS_RELAY_IMPL_H

#include <nats/nats.h>

#include "cqrs.h"

struct relay_conn {
	natsConnection *nc;
	jsCtx *js;
	jsStreamInfo *info; /* the stream, as checked on connecting */
};

/* Connects (retrying with backoff, then 69), checks the stream (66 when
 * missing, 78 when it does not take PREFIX.> or keeps no duplicate
 * window); jsopts, when not NULL, configures the JetStream context.
 * 0, or -1 with *err. */
int relay_connect(struct relay_conn *c, const struct cqrs_relay_options *o, jsOptions *jsopts,
		  bool check_stream, cqrs_error *err);
void relay_close(struct relay_conn *c);
/* s (with jerr, the JetStream error, 0 if none) as *err: 69 for a server
 * gone or not answering, 77 for a refused login, else code.  Returns -1. */
int relay_fail(cqrs_error *err, int code, natsStatus s, jsErrCode jerr, const char *what);
/* True when s means the server went away (worth reconnecting). */
bool relay_transient(natsStatus s);
/* Sleeps before attempt n (1, 2, ...): 100 ms doubling, at most 2 s. */
void relay_backoff(int attempt);

#endif
