/*
 * cqrs-relay replicate and consume: a durable pull consumer on the stream.
 *
 * replicate writes each event into a replica store at its own sequence,
 * where the append path checks that its hash follows the replica's head;
 * a message is acknowledged only once the replica committed it, so a
 * crash at any point repeats messages, which the replica recognises as
 * events it has (same sequence, same hash) and skips.  An event from
 * further on (its predecessor is missing) is held, unacknowledged, until
 * the events before it arrive: after a crash the server redelivers the
 * old messages after the ack wait, and after a republish the missing
 * events come later in the stream.  When the stream has nothing more and
 * events are still missing, that is a gap: the replica stops (6).
 *
 * consume writes the envelopes to stdout and acknowledges them once
 * written: at least once.
 */
#include "config.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "relay/relay_impl.h"
#include "banned.h"

#define FETCH_BATCH 1024
/* Events held for a missing predecessor; beyond this the replica stops
 * as on a gap.  The consumer lets this many wait for their ack. */
#define HELD_MAX 10000

struct held {
	int64_t sequence;
	char *line; /* the envelope, NUL-terminated */
	size_t len;
	natsMsg *msg;
};

/* The messages a batch will acknowledge once committed; held: taken
 * from the held list (the batch's message list no longer owns it). */
struct acks {
	natsMsg *msg[FETCH_BATCH + HELD_MAX];
	bool held[FETCH_BATCH + HELD_MAX];
	size_t n;
};

struct consumer {
	const struct cqrs_relay_options *o;
	struct acks *acks;
	struct relay_conn conn;
	natsSubscription *sub;
	cqrs_store *replica; /* NULL: consume to out */
	FILE *out;
	bool in_txn;
	int64_t head;
	struct held *held;
	size_t nheld;
	int64_t applied, repeats;
	/* cqrs_relay_events_total{direction=replicated|consumed} (NULL: off)
	 * and the applied count it has been given */
	cqrs_metric_series *events_metric;
	int64_t applied_counted;
};

/* The envelope line of a message (malloc'd, NUL-terminated): the message
 * itself, or what its CloudEvent says. */
static int message_line(natsMsg *msg, char **line, size_t *len, cqrs_error *err)
{
	const char *body = natsMsg_GetData(msg);
	size_t n = (size_t)natsMsg_GetDataLength(msg);
	if (body != NULL && n > 0 && memmem(body, n, "\"specversion\"", 13) != NULL)
		return cqrs_cloudevent_to_envelope(body, n, line, len, err);
	*line = malloc(n + 1);
	if (*line == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	if (n > 0)
		memcpy(*line, body, n);
	(*line)[n] = '\0';
	*len = n;
	return 0;
}

static int parse_event(const char *stream, natsMsg *msg, char *line, size_t len, cqrs_event *ev,
		       cqrs_error *err)
{
	cqrs_error why = { 0 };
	if (cqrs_event_parse(ev, line, len, &why) == 0 && ev->sequence > 0 && ev->has_hash)
		return 0;
	/* out of memory says nothing of the message: the caller terminates
	 * what is not an event, never what could not be read */
	if (why.code == CQRS_EXIT_OSERR)
		return *err = why, -1;
	jsMsgMetaData *meta = NULL;
	long long at =
		natsMsg_GetMetaData(&meta, msg) == NATS_OK ? (long long)meta->Sequence.Stream : 0;
	jsMsgMetaData_Destroy(meta);
	return cqrs_fail(err, CQRS_EXIT_DATAERR,
			 "stream '%s' message %lld on '%s' is not a relayed event: %s", stream, at,
			 natsMsg_GetSubject(msg), why.msg[0] ? why.msg : "no sequence and hash");
}

/* One event at or before the head + 1 into the replica: 0, or -1. */
static int apply_event(struct consumer *c, cqrs_event *ev, cqrs_error *err)
{
	if (ev->sequence <= c->head) {
		uint8_t hash[CQRS_HASH_LEN];
		int got = cqrs_store_hash_at(c->replica, ev->sequence, hash, err);
		if (got < 0)
			return -1;
		if (got == 1 && memcmp(hash, ev->hash, CQRS_HASH_LEN) == 0) {
			c->repeats++;
			return 0;
		}
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "event %lld (%s) differs from the replica's event %lld: the "
				 "replica diverges",
				 (long long)ev->sequence, ev->event_type, (long long)ev->sequence);
	}
	if (!c->in_txn) {
		if (cqrs_store_begin(c->replica, err) < 0)
			return -1;
		c->in_txn = true;
	}
	cqrs_error why = { 0 };
	int rc = cqrs_store_append(c->replica, ev, &why);
	if (rc == CQRS_APPENDED) {
		c->head = ev->sequence;
		c->applied++;
		return 0;
	}
	if (rc == CQRS_DUPLICATE)
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "event %lld (%s): its event_id is already in the replica at "
				 "another sequence: the replica diverges",
				 (long long)ev->sequence, ev->event_type);
	if (why.code != CQRS_EXIT_DATAERR && why.code != CQRS_EXIT_CONFLICT) {
		*err = why;
		return -1;
	}
	return cqrs_fail(err, CQRS_EXIT_DATAERR, "event %lld (%s) does not follow the replica: %s",
			 (long long)ev->sequence, ev->event_type, why.msg);
}

/* The held events that now follow the head. */
static int apply_held(struct consumer *c, cqrs_error *err)
{
	for (size_t i = 0; i < c->nheld;) {
		struct held *h = &c->held[i];
		if (h->sequence > c->head + 1) {
			i++;
			continue;
		}
		cqrs_event ev;
		if (cqrs_event_parse(&ev, h->line, h->len, err) < 0 || apply_event(c, &ev, err) < 0)
			return -1;
		c->acks->held[c->acks->n] = true;
		c->acks->msg[c->acks->n++] = h->msg;
		free(h->line);
		c->held[i] = c->held[--c->nheld];
		i = 0; /* the new head may let an earlier slot go */
	}
	return 0;
}

/* Tells the server never to deliver msg again, and waits until it has
 * done so: the term is sent as a request, which the server answers once
 * its consumer has taken it.  A term only flushed to the server could be
 * taken after the next run's fetch, and if this run had held the message
 * past its ack wait, that run got it again (relay.bats, under load, about
 * one CI run in seven).  Without an answer (an older server), the term
 * is sent again and flushed, as before. */
static void terminate(struct consumer *c, natsMsg *msg)
{
	natsMsg *answer = NULL;
	const char *reply = natsMsg_GetReply(msg);
	if (reply != NULL &&
	    natsConnection_RequestString(&answer, c->conn.nc, reply, "+TERM", 5000) == NATS_OK) {
		natsMsg_Destroy(answer);
		return;
	}
	natsMsg_Term(msg, NULL);
	natsConnection_FlushTimeout(c->conn.nc, 5000);
}

/* One message: applied (its ack queued), held, or an error. */
static int take_message(struct consumer *c, natsMsg *msg, bool *kept, cqrs_error *err)
{
	char *line = NULL;
	size_t len = 0;
	cqrs_event ev;
	*kept = false;
	if (message_line(msg, &line, &len, err) < 0 ||
	    parse_event(c->o->stream, msg, line, len, &ev, err) < 0) {
		if (err->code == CQRS_EXIT_DATAERR)
			/* never again: it cannot become an event */
			terminate(c, msg);
		free(line);
		return -1;
	}
	if (c->replica == NULL) {
		cqrs_event_write(c->out, &ev);
		c->acks->held[c->acks->n] = false;
		c->acks->msg[c->acks->n++] = msg;
		free(line);
		return 0;
	}
	if (ev.sequence > c->head + 1) {
		if (c->nheld == HELD_MAX) {
			free(line);
			return cqrs_fail(err, CQRS_EXIT_BEHIND,
					 "event %lld: %d events wait for event %lld, which the "
					 "stream does not bring: republish from the replica's head",
					 (long long)ev.sequence, HELD_MAX,
					 (long long)(c->head + 1));
		}
		/* a held message whose ack wait ran out comes again: keep the
		 * newer delivery, whose ack the server now waits for */
		for (size_t i = 0; i < c->nheld; i++)
			if (c->held[i].sequence == ev.sequence) {
				free(c->held[i].line);
				natsMsg_Destroy(c->held[i].msg);
				c->held[i] = c->held[--c->nheld];
				break;
			}
		/* keep the envelope as parsed (compact) for apply_held */
		c->held[c->nheld++] = (struct held){ ev.sequence, line, strlen(line), msg };
		*kept = true;
		return 0;
	}
	int rc = apply_event(c, &ev, err);
	free(line);
	if (rc < 0)
		return -1;
	c->acks->held[c->acks->n] = false;
	c->acks->msg[c->acks->n++] = msg;
	return apply_held(c, err);
}

/* Commits what the batch applied, then acknowledges it. */
static int settle(struct consumer *c, cqrs_error *err)
{
	if (c->in_txn) {
		c->in_txn = false;
		if (cqrs_store_commit(c->replica, err) < 0) {
			cqrs_store_rollback(c->replica);
			return -1;
		}
	}
	if (c->out != NULL && fflush(c->out) != 0) {
		if (cqrs_stdout_gone())
			return 0;
		return cqrs_fail(err, CQRS_EXIT_IOERR, "cannot write standard output");
	}
	for (size_t i = 0; i < c->acks->n; i++)
		natsMsg_Ack(c->acks->msg[i], NULL);
	/* counted once committed (replicate) or written (consume), as acknowledged */
	if (c->replica == NULL) {
		cqrs_metrics_add(c->events_metric, (double)c->acks->n);
	} else {
		cqrs_metrics_add(c->events_metric, (double)(c->applied - c->applied_counted));
		c->applied_counted = c->applied;
	}
	return 0;
}

static int take_batch(struct consumer *c, natsMsgList *list, cqrs_error *err)
{
	c->acks->n = 0;
	int rc = 0;
	cqrs_error first = { 0 };
	for (int i = 0; i < list->Count; i++) {
		bool kept;
		if (take_message(c, list->Msgs[i], &kept, &first) < 0) {
			rc = -1;
			break;
		}
		if (kept)
			list->Msgs[i] = NULL;
	}
	/* what came before a bad message is still good: kept and acknowledged */
	int settled = settle(c, err);
	/* the held messages acknowledged by now are no longer in any list */
	for (size_t i = 0; i < c->acks->n; i++)
		if (c->acks->held[i])
			natsMsg_Destroy(c->acks->msg[i]);
	c->acks->n = 0;
	if (settled < 0)
		return -1;
	if (rc < 0)
		*err = first;
	return rc;
}

/* Nothing came: 1 to keep waiting, 0 when done, -1 with *err (6: a gap). */
static int idle(struct consumer *c, int sfd, cqrs_error *err)
{
	if (sfd >= 0) {
		struct signalfd_siginfo si;
		if (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
			return 0;
	}
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	natsStatus s =
		js_GetConsumerInfo(&ci, c->conn.js, c->o->stream, c->o->durable, NULL, &jerr);
	if (s != NATS_OK)
		return relay_fail(err, CQRS_EXIT_UNAVAILABLE, s, jerr, "consumer info");
	int64_t out_elsewhere = ci->NumAckPending - (int64_t)c->nheld;
	uint64_t pending = ci->NumPending;
	jsConsumerInfo_Destroy(ci);
	/* messages a crashed run took come back after the ack wait */
	if (out_elsewhere > 0 || pending > 0)
		return 1;
	if (c->nheld > 0) {
		int64_t lowest = c->held[0].sequence;
		for (size_t i = 1; i < c->nheld; i++)
			if (c->held[i].sequence < lowest)
				lowest = c->held[i].sequence;
		return cqrs_fail(err, CQRS_EXIT_BEHIND,
				 "stream '%s' has event %lld but not event %lld after the "
				 "replica's head: a gap (republish from sequence %lld)",
				 c->o->stream, (long long)lowest, (long long)(c->head + 1),
				 (long long)c->head);
	}
	return c->o->follow ? 1 : 0;
}

static void drop_held(struct consumer *c)
{
	for (size_t i = 0; i < c->nheld; i++) {
		free(c->held[i].line);
		natsMsg_Destroy(c->held[i].msg);
	}
	c->nheld = 0;
}

static int subscribe(struct consumer *c, cqrs_error *err)
{
	char subject[300];
	snprintf(subject, sizeof subject, "%s.>", c->o->subject_prefix);
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Stream.Info.DeletedDetails = false;
	jsSubOptions so;
	jsSubOptions_Init(&so);
	so.Stream = c->o->stream;
	so.Config.AckPolicy = js_AckExplicit;
	so.Config.AckWait = c->o->ack_wait_ms * 1000000LL;
	so.Config.DeliverPolicy = js_DeliverAll;
	so.Config.MaxAckPending = HELD_MAX + FETCH_BATCH;
	jsErrCode jerr = 0;
	natsStatus s =
		js_PullSubscribe(&c->sub, c->conn.js, subject, c->o->durable, &jo, &so, &jerr);
	if (s != NATS_OK)
		return relay_fail(err, CQRS_EXIT_CONFIG, s, jerr, "durable consumer");
	return 0;
}

/* One connection's worth: 0 when done, -1 with *err. */
static int consume_round(struct consumer *c, int sfd, cqrs_error *err)
{
	if (relay_connect(&c->conn, c->o, NULL, true, err) < 0)
		return -1;
	int rc = subscribe(c, err);
	while (rc == 0) {
		natsMsgList list = { 0 };
		jsErrCode jerr = 0;
		natsStatus s = natsSubscription_Fetch(&list, c->sub, FETCH_BATCH,
						      c->o->follow ? 1000 : 300, &jerr);
		if (s == NATS_TIMEOUT || (s == NATS_OK && list.Count == 0)) {
			natsMsgList_Destroy(&list);
			cqrs_metrics_tick();
			int more = idle(c, sfd, err);
			if (more <= 0) {
				rc = more;
				break;
			}
			continue;
		}
		if (s != NATS_OK) {
			natsMsgList_Destroy(&list);
			rc = relay_fail(err, CQRS_EXIT_UNAVAILABLE, s, jerr, "fetch");
			break;
		}
		rc = take_batch(c, &list, err);
		natsMsgList_Destroy(&list);
		cqrs_metrics_tick();
		if (c->out != NULL && cqrs_stdout_gone())
			break;
	}
	if (c->sub != NULL)
		natsSubscription_Destroy(c->sub);
	c->sub = NULL;
	drop_held(c);
	relay_close(&c->conn);
	return rc;
}

static int run(struct consumer *c, cqrs_error *err)
{
	int sfd = -1;
	if (c->o->follow)
		sfd = cqrs_follow_signal_fd();
	c->held = calloc(HELD_MAX, sizeof *c->held);
	c->acks = malloc(sizeof *c->acks);
	if (c->held == NULL || c->acks == NULL) {
		free(c->held);
		free(c->acks);
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	}
	c->events_metric = cqrs_metrics_series(CQRS_METRIC_RELAY_EVENTS, c->o->stream,
					       c->replica != NULL ? "replicated" : "consumed");
	int rc;
	for (int attempt = 0;;) {
		int64_t before = c->applied;
		rc = consume_round(c, sfd, err);
		if (rc == 0 || err->code != CQRS_EXIT_UNAVAILABLE)
			break;
		attempt = c->applied > before ? 0 : attempt + 1;
		if (attempt > c->o->retries)
			break;
		cqrs_warn("%s; reconnecting", err->msg);
		relay_backoff(attempt);
	}
	free(c->held);
	free(c->acks);
	if (sfd >= 0)
		close(sfd);
	return rc;
}

int cqrs_relay_replicate(const char *replica_path, const struct cqrs_relay_options *o,
			 cqrs_error *err)
{
	struct consumer c = { .o = o };
	c.replica = cqrs_store_open(replica_path, CQRS_OPEN_WRITE, err);
	if (c.replica == NULL)
		return -1;
	uint8_t hash[CQRS_HASH_LEN];
	int rc = cqrs_store_head(c.replica, &c.head, hash, err);
	if (rc == 0)
		rc = run(&c, err);
	if (c.in_txn)
		cqrs_store_rollback(c.replica);
	if (rc == 0 && o->report != NULL)
		fprintf(o->report,
			"{\"stream\":\"%s\",\"durable\":\"%s\",\"applied\":%lld,\"repeats\":%lld,"
			"\"head\":%lld}\n",
			o->stream, o->durable, (long long)c.applied, (long long)c.repeats,
			(long long)c.head);
	cqrs_store_close(c.replica);
	return rc;
}

int cqrs_relay_consume(FILE *out, const struct cqrs_relay_options *o, cqrs_error *err)
{
	struct consumer c = { .o = o, .out = out };
	return run(&c, err);
}
