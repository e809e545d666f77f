/*
 * cqrs-relay publish: the store's events, in order, to a JetStream stream.
 *
 * A window of asynchronous publishes is in flight at a time, each with
 * Nats-Msg-Id = its event id (the server drops a repeat within its
 * duplicate window) and Nats-Expected-Last-Msg-Id = the id of the event
 * before it: the server stores an event only right after its predecessor,
 * so the stream holds the events in order, and a second relay on the same
 * stream cannot interleave (its publish is a repeat, or fails).  After a
 * --from, or a server that forgot its last id in a restart, the first
 * publish expects the stream's last sequence instead.  The relay's
 * position, the highest sequence the server acknowledged, is kept in the
 * store (counter "relay:STREAM", the position + 1), raised only after the
 * PubAcks: a crash repeats
 * at most one window, which the duplicate window drops.
 */
#include "config.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "relay/relay_impl.h"
#include "banned.h"

#define SEQUENCE_HEADER "Cqrs-Sequence"

/* What the server said about one publish of the window. */
enum ack_state { ACK_PENDING, ACK_STORED, ACK_DUPLICATE, ACK_FAILED };
struct ack_slot {
	enum ack_state state;
	jsErrCode jerr;
	natsStatus status;
	char text[160];
	char id[37]; /* the event's id */
};
struct window {
	pthread_mutex_t lock;
	int64_t first; /* the sequence of slot 0 */
	int64_t n;
	struct ack_slot *slots;
};

/* The client's thread calls this once per publish of the window. */
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	(void)js;
	struct window *w = closure;
	const char *v = NULL;
	int64_t seq;
	if (natsMsgHeader_Get(msg, SEQUENCE_HEADER, &v) == NATS_OK && v != NULL &&
	    cqrs_parse_int64(v, &seq) == 0) {
		pthread_mutex_lock(&w->lock);
		if (seq >= w->first && seq < w->first + w->n) {
			struct ack_slot *s = &w->slots[seq - w->first];
			if (pa != NULL) {
				s->state = pa->Duplicate ? ACK_DUPLICATE : ACK_STORED;
			} else {
				s->state = ACK_FAILED;
				s->jerr = pae != NULL ? pae->ErrCode : 0;
				s->status = pae != NULL ? pae->Err : NATS_ERR;
				snprintf(s->text, sizeof s->text, "%s",
					 pae != NULL && pae->ErrText != NULL ? pae->ErrText : "");
			}
		}
		pthread_mutex_unlock(&w->lock);
	}
	natsMsg_Destroy(msg);
}

struct publisher {
	cqrs_store *st;
	const struct cqrs_relay_options *o;
	struct relay_conn conn;
	struct window w;
	char counter[300];
	char prev_id[37]; /* the event before the next to send ("": none) */
	bool by_seq;	  /* the next publish expects stream_last, not prev_id */
	uint64_t stream_last;
	int64_t position; /* the highest sequence acknowledged (the counter) */
	int64_t acked;	  /* the last of this run's publishes acknowledged in a row */
	int64_t published, duplicates;
	/* an event whose hash does not follow its predecessor's: the store was
	 * changed outside the tools, and the publishing stops before it */
	int64_t bad_event;
	/* cqrs-metrics(7); NULL when metrics are off */
	cqrs_metric_series *published_metric, *lag_events_metric, *lag_seconds_metric, *ack_metric;
};

/* The store's head, and how far the position is behind it: in events, and
 * in seconds since the oldest event not yet acknowledged (0 when caught
 * up).  Best effort: a read that fails gives a lag of 0 seconds. */
static void measure_lag(struct publisher *p, int64_t *head, int64_t *lag_events,
			double *lag_seconds)
{
	cqrs_error err;
	*head = cqrs_store_last_sequence(p->st, &err);
	*lag_events = *head > p->position ? *head - p->position : 0;
	*lag_seconds = 0;
	if (*lag_events == 0)
		return;
	cqrs_filter f = { .after = p->position, .limit = 1 };
	cqrs_cursor *c = cqrs_store_read(p->st, &f, &err);
	cqrs_event ev;
	char now[CQRS_TIMESTAMP_LEN + 1];
	cqrs_timestamp_now(now);
	if (c != NULL && cqrs_cursor_next(c, &ev, &err) == 1)
		*lag_seconds =
			(double)(cqrs_timestamp_us(now) - cqrs_timestamp_us(ev.timestamp)) / 1e6;
	if (c != NULL)
		cqrs_cursor_close(c);
}

/* The lag gauges, measured now (only when metrics are on: a read). */
static void record_lag(struct publisher *p)
{
	if (p->lag_events_metric == NULL)
		return;
	int64_t head, events;
	double seconds;
	measure_lag(p, &head, &events, &seconds);
	cqrs_metrics_set(p->lag_events_metric, (double)events);
	cqrs_metrics_set(p->lag_seconds_metric, seconds);
}

/* The counter holds the next sequence to publish, the position + 1: a
 * counter is at least 1 on every backend. */
static int load_position(struct publisher *p, int64_t floor, cqrs_error *err)
{
	if (cqrs_store_begin(p->st, err) < 0)
		return -1;
	/* counter_next takes the counter's row (held + 1); it never goes back */
	int64_t next = cqrs_store_counter_next(p->st, p->counter, err);
	int64_t held = next - 1, v = held > floor + 1 ? held : floor + 1;
	if (next < 0 || cqrs_store_counter_set(p->st, p->counter, v, err) < 0 ||
	    cqrs_store_commit(p->st, err) < 0) {
		cqrs_store_rollback(p->st);
		return -1;
	}
	p->position = v - 1;
	return 0;
}

/* Sends one event of the window. */
static int send_event(struct publisher *p, const cqrs_event *ev, const char *body, size_t len,
		      const char *id, const char *expect_id, uint64_t expect_seq, cqrs_error *err)
{
	char subject[512], seq[24];
	snprintf(subject, sizeof subject, "%s.%s.%s", p->o->subject_prefix, ev->aggregate_type,
		 ev->event_type);
	snprintf(seq, sizeof seq, "%lld", (long long)ev->sequence);
	natsMsg *msg = NULL;
	natsStatus s = natsMsg_Create(&msg, subject, NULL, body, (int)len);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(msg, SEQUENCE_HEADER, seq);
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MsgId = id;
	/* 0 and NULL: the first event, or an empty stream: nothing to expect */
	po.ExpectLastSeq = expect_seq;
	po.ExpectLastMsgId = expect_id != NULL && *expect_id != '\0' ? expect_id : NULL;
	if (s == NATS_OK)
		s = js_PublishMsgAsync(p->conn.js, &msg, &po);
	natsMsg_Destroy(msg);
	if (s != NATS_OK)
		return relay_fail(err, CQRS_EXIT_SOFTWARE, s, 0, "publish");
	return 0;
}

/* Reads up to the window's size of events after the position and sends
 * them: the number sent, or -1.  Each event's hash is checked against its
 * predecessor's (read along, one event before the window), so that an
 * event edited in the store never reaches a replica: the window ends
 * before it, with p->bad_event set. */
static int64_t send_window(struct publisher *p, int64_t after, cqrs_error *err)
{
	cqrs_filter f = { .after = after > 0 ? after - 1 : 0,
			  .limit = p->o->window + (after > 0 ? 1 : 0) };
	cqrs_cursor *cur = cqrs_store_read(p->st, &f, err);
	if (cur == NULL)
		return -1;
	uint8_t prev_hash[CQRS_HASH_LEN] = { 0 };
	cqrs_event ev;
	int rc;
	if (after > 0) {
		/* the window's predecessor, whose hash its first event follows */
		rc = cqrs_cursor_next(cur, &ev, err);
		if (rc != 1 || ev.sequence != after) {
			cqrs_cursor_close(cur);
			return rc < 0 ? -1
				      : cqrs_fail(err, CQRS_EXIT_SOFTWARE,
						  "the store has no event %lld", (long long)after);
		}
		memcpy(prev_hash, ev.hash, CQRS_HASH_LEN);
	}
	char *buf = NULL;
	size_t len = 0;
	FILE *mf = cqrs_memstream(&buf, &len);
	if (mf == NULL) {
		cqrs_cursor_close(cur);
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	}
	pthread_mutex_lock(&p->w.lock);
	p->w.first = after + 1;
	p->w.n = 0;
	memset(p->w.slots, 0, (size_t)p->o->window * sizeof *p->w.slots);
	pthread_mutex_unlock(&p->w.lock);
	int64_t n = 0;
	while ((rc = cqrs_cursor_next(cur, &ev, err)) == 1) {
		if (ev.sequence != after + 1 + n) {
			rc = cqrs_fail(err, CQRS_EXIT_DATAERR,
				       "event %lld follows %lld: the store has a gap",
				       (long long)ev.sequence, (long long)(after + n));
			break;
		}
		uint8_t h[CQRS_HASH_LEN];
		cqrs_event_hash(&ev, prev_hash, h);
		if (memcmp(h, ev.hash, CQRS_HASH_LEN) != 0) {
			p->bad_event = ev.sequence;
			rc = 0;
			break;
		}
		memcpy(prev_hash, ev.hash, CQRS_HASH_LEN);
		size_t start = len;
		if (p->o->cloudevents)
			cqrs_cloudevent_write(mf, &ev);
		else
			cqrs_event_write(mf, &ev);
		if (fflush(mf) != 0 || ferror(mf)) {
			rc = cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
			break;
		}
		pthread_mutex_lock(&p->w.lock);
		p->w.n = n + 1;
		char *id = p->w.slots[n].id;
		cqrs_uuid_format(ev.event_id, id);
		pthread_mutex_unlock(&p->w.lock);
		bool by_seq = n == 0 && p->by_seq;
		const char *prev = by_seq ? NULL : n == 0 ? p->prev_id : p->w.slots[n - 1].id;
		/* without the line's "\n" */
		if (send_event(p, &ev, buf + start, len - start - 1, id, prev,
			       by_seq ? p->stream_last : 0, err) < 0) {
			rc = -1;
			break;
		}
		n++;
	}
	fclose(mf);
	free(buf);
	cqrs_cursor_close(cur);
	return rc < 0 ? -1 : n;
}

/* The id of event seq of the store into id: 0, or -1 with *err. */
static int event_id_at(struct publisher *p, int64_t seq, char id[37], cqrs_error *err)
{
	id[0] = '\0';
	if (seq <= 0)
		return 0;
	cqrs_filter f = { .after = seq - 1, .limit = 1 };
	cqrs_cursor *c = cqrs_store_read(p->st, &f, err);
	if (c == NULL)
		return -1;
	cqrs_event ev;
	int rc = cqrs_cursor_next(c, &ev, err);
	if (rc == 1 && ev.sequence == seq)
		cqrs_uuid_format(ev.event_id, id);
	cqrs_cursor_close(c);
	if (rc < 0)
		return -1;
	if (id[0] == '\0')
		return cqrs_fail(err, CQRS_EXIT_USAGE, "the store has no event %lld",
				 (long long)seq);
	return 0;
}

/* Event next was refused: the stream does not end with its predecessor.
 * Either the server forgot its last id (a restart: expect the stream's
 * last sequence once), or the stream ends earlier in the store than the
 * relay thought (a server that lost acknowledged messages: go on from
 * where it ends), or it ends with what this relay did not publish (75). */
static int resync(struct publisher *p, int64_t next, cqrs_error *err)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_GetStreamInfo(&si, p->conn.js, p->o->stream, NULL, &jerr);
	if (s != NATS_OK)
		return relay_fail(err, CQRS_EXIT_UNAVAILABLE, s, jerr, "stream info");
	uint64_t last = si->State.LastSeq;
	jsStreamInfo_Destroy(si);
	const char *last_id = NULL, *last_event = NULL;
	natsMsg *m = NULL;
	int64_t seq = 0;
	if (last > 0) {
		s = js_GetMsg(&m, p->conn.js, p->o->stream, last, NULL, &jerr);
		if (s != NATS_OK)
			return relay_fail(err, CQRS_EXIT_UNAVAILABLE, s, jerr,
					  "the stream's last message");
		natsMsgHeader_Get(m, "Nats-Msg-Id", &last_id);
		natsMsgHeader_Get(m, SEQUENCE_HEADER, &last_event);
	}
	char id[37] = "";
	int rc = 0;
	if (last_id != NULL && strcmp(last_id, p->prev_id) == 0) {
		p->by_seq = true; /* the server restarted and forgot the last id */
	} else if (last == 0 || (last_event != NULL && cqrs_parse_int64(last_event, &seq) == 0 &&
				 seq < next - 1 && last_id != NULL &&
				 event_id_at(p, seq, id, err) == 0 && strcmp(id, last_id) == 0)) {
		cqrs_warn("stream '%s' ends at event %lld, not %lld: the server lost what it "
			  "acknowledged; publishing again from there",
			  p->o->stream, (long long)(last == 0 ? 0 : seq), (long long)(next - 1));
		p->acked = last == 0 ? 0 : seq;
		memcpy(p->prev_id, id, sizeof p->prev_id);
		p->by_seq = false;
	} else {
		rc = cqrs_fail(err, CQRS_EXIT_TEMPFAIL,
			       "stream '%s' ends with message %llu (%s), not event %lld: another "
			       "relay publishes to it",
			       p->o->stream, (unsigned long long)last,
			       last_event != NULL ? last_event : "not an event",
			       (long long)(next - 1));
	}
	p->stream_last = last;
	natsMsg_Destroy(m);
	return rc;
}

/* After the window's PubAcks: the position moves over the publishes
 * acknowledged in a row; a failure after them is explained or fatal.
 * 0 to go on, -1 with *err. */
static int settle_window(struct publisher *p, int64_t n, cqrs_error *err)
{
	/* Up to 10 s in short waits: a connection that closed answers no
	 * more, and the round ends at once to reconnect. */
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MaxWait = 200;
	natsStatus s = NATS_TIMEOUT;
	for (int i = 0; i < 50 && s == NATS_TIMEOUT; i++) {
		s = js_PublishAsyncComplete(p->conn.js, &po);
		if (s == NATS_TIMEOUT &&
		    natsConnection_Status(p->conn.nc) == NATS_CONN_STATUS_CLOSED)
			s = NATS_CONNECTION_CLOSED;
	}
	if (s != NATS_OK)
		return relay_fail(err, CQRS_EXIT_UNAVAILABLE, s, 0, "waiting for the PubAcks");
	int64_t ok = 0, stored = 0;
	struct ack_slot failed = { 0 };
	pthread_mutex_lock(&p->w.lock);
	for (; ok < n; ok++) {
		const struct ack_slot *a = &p->w.slots[ok];
		if (a->state == ACK_STORED)
			stored++;
		else if (a->state == ACK_DUPLICATE)
			p->duplicates++;
		else {
			failed = *a;
			break;
		}
	}
	pthread_mutex_unlock(&p->w.lock);
	p->published += stored;
	cqrs_metrics_add(p->published_metric, (double)stored);
	p->acked = p->w.first + ok - 1;
	if (ok > 0) {
		memcpy(p->prev_id, p->w.slots[ok - 1].id, sizeof p->prev_id);
		p->by_seq = false;
		if (load_position(p, p->w.first + ok - 1, err) < 0)
			return -1;
	}
	if (ok == n)
		return 0;
	if (failed.state == ACK_PENDING)
		return cqrs_fail(err, CQRS_EXIT_UNAVAILABLE, "event %lld: no PubAck",
				 (long long)(p->w.first + ok));
	if (failed.jerr != JSStreamWrongLastMsgIDErr && failed.jerr != JSStreamWrongLastSequenceErr)
		return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "event %lld: the server refused it: %s",
				 (long long)(p->w.first + ok),
				 failed.text[0] ? failed.text : natsStatus_GetText(failed.status));
	return resync(p, p->w.first + ok, err);
}

/* One connection's worth of publishing: 0 when caught up (or stopped by a
 * signal), -1 with *err. */
static int publish_round(struct publisher *p, int64_t *start, int sfd, cqrs_error *err)
{
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = p->o->window;
	jo.PublishAsync.AckHandler = on_ack;
	jo.PublishAsync.AckHandlerClosure = &p->w;
	if (relay_connect(&p->conn, p->o, &jo, true, err) < 0)
		return -1;
	p->stream_last = p->conn.info->State.LastSeq;
	if (event_id_at(p, *start, p->prev_id, err) < 0) {
		relay_close(&p->conn);
		return -1;
	}
	int rc = 0;
	int64_t stalls = 0;
	for (;;) {
		double sent_at = cqrs_metrics_clock();
		int64_t n = send_window(p, *start, err);
		if (n < 0 || (n > 0 && settle_window(p, n, err) < 0)) {
			rc = -1;
			break;
		}
		if (n > 0)
			cqrs_metrics_observe(p->ack_metric, cqrs_metrics_clock() - sent_at);
		record_lag(p);
		cqrs_metrics_tick();
		/* the window's events before the bad one are acknowledged */
		if (p->bad_event > 0) {
			rc = cqrs_fail(err, CQRS_EXIT_DATAERR,
				       "event %lld does not match its hash: the store was changed "
				       "outside the tools; published up to event %lld, nothing "
				       "after it (see cqrs-read --verify)",
				       (long long)p->bad_event, (long long)(p->bad_event - 1));
			break;
		}
		if (n > 0) {
			int64_t moved = p->acked != *start ? 1 : 0;
			*start = p->acked;
			/* a window that moved nothing twice: the expectation is
			 * stale for a reason settle_window did not see */
			stalls = moved > 0 ? 0 : stalls + 1;
			if (stalls > 5) {
				rc = cqrs_fail(err, CQRS_EXIT_SOFTWARE,
					       "event %lld: the stream takes no more publishes",
					       (long long)(*start + 1));
				break;
			}
			continue;
		}
		if (!p->o->follow)
			break;
		int w = cqrs_store_wait(p->st, 1000, &sfd, sfd >= 0 ? 1 : 0, err);
		if (w < 0) {
			rc = -1;
			break;
		}
		if (w == 2)
			break;
	}
	relay_close(&p->conn);
	return rc;
}

static void report(struct publisher *p)
{
	if (p->o->report == NULL)
		return;
	int64_t head, lag_events;
	double lag_seconds;
	measure_lag(p, &head, &lag_events, &lag_seconds);
	fprintf(p->o->report,
		"{\"stream\":\"%s\",\"published\":%lld,\"duplicates\":%lld,\"position\":%lld,"
		"\"head\":%lld,\"lag_events\":%lld,\"lag_seconds\":%lld}\n",
		p->o->stream, (long long)p->published, (long long)p->duplicates,
		(long long)p->position, (long long)head, (long long)lag_events,
		(long long)lag_seconds);
}

int cqrs_relay_publish(cqrs_store *st, const struct cqrs_relay_options *o, cqrs_error *err)
{
	struct publisher p = { .st = st, .o = o };
	snprintf(p.counter, sizeof p.counter, "relay:%s", o->stream);
	cqrs_store_set_form(st, CQRS_FORM_STORED);
	p.w.slots = calloc((size_t)o->window, sizeof *p.w.slots);
	if (p.w.slots == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	pthread_mutex_init(&p.w.lock, NULL);
	p.published_metric = cqrs_metrics_series(CQRS_METRIC_RELAY_EVENTS, o->stream, "published");
	p.lag_events_metric = cqrs_metrics_series(CQRS_METRIC_RELAY_LAG_EVENTS, o->stream, NULL);
	p.lag_seconds_metric = cqrs_metrics_series(CQRS_METRIC_RELAY_LAG_SECONDS, o->stream, NULL);
	p.ack_metric = cqrs_metrics_series(CQRS_METRIC_RELAY_ACK_LATENCY, o->stream, NULL);
	int rc = load_position(&p, 0, err);
	int64_t start = o->from >= 0 ? o->from : p.position;
	p.by_seq = o->from >= 0; /* a republish goes after whatever the stream holds */
	int sfd = o->follow ? cqrs_follow_signal_fd() : -1;
	/* A lost server is retried with backoff from where the PubAcks got to;
	 * each connection that gets somewhere earns the retries again. */
	for (int attempt = 0; rc == 0;) {
		int64_t before = start;
		rc = publish_round(&p, &start, sfd, err);
		if (rc == 0 || err->code != CQRS_EXIT_UNAVAILABLE)
			break;
		attempt = start > before ? 0 : attempt + 1;
		if (attempt > o->retries)
			break;
		cqrs_warn("%s; retrying from event %lld", err->msg, (long long)(start + 1));
		relay_backoff(attempt);
		rc = 0;
	}
	if (sfd >= 0)
		close(sfd);
	/* the gauges as the run leaves them, whatever ended it */
	record_lag(&p);
	if (rc == 0)
		report(&p);
	pthread_mutex_destroy(&p.w.lock);
	free(p.w.slots);
	return rc;
}
