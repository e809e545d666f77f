/*
 * CloudEvents 1.0, structured JSON mode, for the relay: the event's own
 * fields map onto the CloudEvents attributes (id, source, type, subject,
 * time, data) and what has no attribute travels as extensions (sequence,
 * hash, aggregatetype, aggregateversion, eventversion, and metadata as a
 * JSON string, since an extension cannot hold an object).  The way back
 * gives the envelope line, byte for byte what cqrs-read prints, so that
 * the hash chain checks it as any other replayed event.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cqrs.h"
#include "banned.h"

void cqrs_cloudevent_write(FILE *f, const cqrs_event *ev)
{
	char id[37], subject[37], hash[2 * CQRS_HASH_LEN + 1];
	cqrs_uuid_format(ev->event_id, id);
	cqrs_uuid_format(ev->aggregate_id, subject);
	cqrs_hash_format(ev->hash, hash);
	fprintf(f,
		"{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"/cqrs-tools/%s\","
		"\"type\":\"%s\",\"subject\":\"%s\",\"time\":\"%s\","
		"\"datacontenttype\":\"application/json\",\"sequence\":\"%lld\","
		"\"sequencetype\":\"Integer\",\"hash\":\"%s\",\"aggregatetype\":\"%s\","
		"\"aggregateversion\":%lld,\"eventversion\":%lld,\"metadata\":",
		id, ev->aggregate_type, ev->event_type, subject, ev->timestamp,
		(long long)ev->sequence, hash, ev->aggregate_type, (long long)ev->aggregate_version,
		(long long)ev->event_version);
	cqrs_json_write_string(f, ev->metadata, ev->metadata_len);
	fputs(",\"data\":", f);
	fwrite(ev->data, 1, ev->data_len, f);
	fputs("}\n", f);
}

/* A string attribute, decoded into buf: 0, or -1 with *err naming it. */
static int string_attribute(const char *obj, size_t len, const char *key, char *buf, size_t cap,
			    cqrs_error *err)
{
	const char *v;
	size_t vn;
	if (!cqrs_json_get(obj, len, key, &v, &vn))
		return cqrs_fail(err, CQRS_EXIT_DATAERR, "CloudEvent without '%s'", key);
	long n = cqrs_json_string(v, vn, buf, cap - 1);
	if (n < 0)
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "CloudEvent '%s' is not a string of at most %zu bytes", key,
				 cap - 2);
	buf[n] = '\0';
	return 0;
}

/* An integer attribute (a JSON number, or a string of digits as the
 * sequence extension has it), as its digits. */
static int integer_attribute(const char *obj, size_t len, const char *key, char *buf, size_t cap,
			     cqrs_error *err)
{
	const char *v;
	size_t vn;
	if (!cqrs_json_get(obj, len, key, &v, &vn))
		return cqrs_fail(err, CQRS_EXIT_DATAERR, "CloudEvent without '%s'", key);
	if (vn > 0 && v[0] == '"') {
		long n = cqrs_json_string(v, vn, buf, cap - 1);
		if (n < 0)
			return cqrs_fail(err, CQRS_EXIT_DATAERR, "CloudEvent '%s' is too long",
					 key);
		vn = (size_t)n;
	} else {
		if (vn >= cap)
			return cqrs_fail(err, CQRS_EXIT_DATAERR, "CloudEvent '%s' is too long",
					 key);
		memcpy(buf, v, vn);
	}
	buf[vn] = '\0';
	int64_t x;
	if (cqrs_parse_int64(buf, &x) < 0)
		return cqrs_fail(err, CQRS_EXIT_DATAERR, "CloudEvent '%s' is not a whole number",
				 key);
	return 0;
}

int cqrs_cloudevent_to_envelope(const char *body, size_t len, char **line, size_t *line_len,
				cqrs_error *err)
{
	char *obj = malloc(len + 1);
	if (obj == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	memcpy(obj, body, len);
	obj[len] = '\0';
	size_t n = len;
	char spec[8], id[64], type[CQRS_MAX_TYPE_NAME + 2], subject[64], time[64], hash[80];
	char agg_type[CQRS_MAX_TYPE_NAME + 2], seq[24], agg_version[24], ev_version[24];
	const char *data, *meta;
	size_t data_len, meta_len;
	char *metadata = NULL, *out = NULL;
	size_t out_len = 0;
	int rc = -1;
	cqrs_error jerr = { 0 };
	if (cqrs_json_compact(obj, &n, &jerr) < 0 || obj[0] != '{') {
		/* out of memory is not a verdict on the message (the relay
		 * terminates what is not an event) */
		if (jerr.code == CQRS_EXIT_OSERR)
			*err = jerr;
		else
			cqrs_fail(err, CQRS_EXIT_DATAERR, "not a JSON object");
		goto done;
	}
	if (string_attribute(obj, n, "specversion", spec, sizeof spec, err) < 0)
		goto done;
	if (strcmp(spec, "1.0") != 0) {
		cqrs_fail(err, CQRS_EXIT_DATAERR, "CloudEvents specversion '%s', not 1.0", spec);
		goto done;
	}
	if (string_attribute(obj, n, "id", id, sizeof id, err) < 0 ||
	    string_attribute(obj, n, "type", type, sizeof type, err) < 0 ||
	    string_attribute(obj, n, "subject", subject, sizeof subject, err) < 0 ||
	    string_attribute(obj, n, "time", time, sizeof time, err) < 0 ||
	    string_attribute(obj, n, "hash", hash, sizeof hash, err) < 0 ||
	    string_attribute(obj, n, "aggregatetype", agg_type, sizeof agg_type, err) < 0 ||
	    integer_attribute(obj, n, "sequence", seq, sizeof seq, err) < 0 ||
	    integer_attribute(obj, n, "aggregateversion", agg_version, sizeof agg_version, err) <
		    0 ||
	    integer_attribute(obj, n, "eventversion", ev_version, sizeof ev_version, err) < 0)
		goto done;
	if (!cqrs_json_get(obj, n, "data", &data, &data_len)) {
		cqrs_fail(err, CQRS_EXIT_DATAERR, "CloudEvent without 'data'");
		goto done;
	}
	if (!cqrs_json_get(obj, n, "metadata", &meta, &meta_len) || meta[0] != '"') {
		cqrs_fail(err, CQRS_EXIT_DATAERR, "CloudEvent without a 'metadata' string");
		goto done;
	}
	metadata = malloc(meta_len + 1);
	if (metadata == NULL) {
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		goto done;
	}
	long mn = cqrs_json_string(meta, meta_len, metadata, meta_len + 1);
	if (mn < 0) {
		cqrs_fail(err, CQRS_EXIT_DATAERR, "CloudEvent 'metadata' is not a string");
		goto done;
	}
	FILE *f = cqrs_memstream(&out, &out_len);
	if (f == NULL) {
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		goto done;
	}
	/* The strings go back through the JSON writer: the envelope parser
	 * then checks each field as it checks any input. */
	fprintf(f, "{\"sequence\":%s,\"event_id\":", seq);
	cqrs_json_write_string(f, id, strlen(id));
	fputs(",\"aggregate_id\":", f);
	cqrs_json_write_string(f, subject, strlen(subject));
	fputs(",\"aggregate_type\":", f);
	cqrs_json_write_string(f, agg_type, strlen(agg_type));
	fprintf(f, ",\"aggregate_version\":%s,\"event_type\":", agg_version);
	cqrs_json_write_string(f, type, strlen(type));
	fprintf(f, ",\"event_version\":%s,\"data\":", ev_version);
	fwrite(data, 1, data_len, f);
	fputs(",\"metadata\":", f);
	fwrite(metadata, 1, (size_t)mn, f);
	fputs(",\"timestamp\":", f);
	cqrs_json_write_string(f, time, strlen(time));
	fputs(",\"hash\":", f);
	cqrs_json_write_string(f, hash, strlen(hash));
	fputc('}', f);
	if (fclose(f) != 0) { /* cqrs_memstream: EOF when a write was lost */
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		goto done;
	}
	*line = out;
	*line_len = out_len;
	out = NULL;
	rc = 0;
done:
	free(out);
	free(metadata);
	free(obj);
	return rc;
}
