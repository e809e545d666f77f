/*
 * Upcasting's two halves: upcast.c (the declarations and the steps that
 * work on the JSON text) and upcast_jq.c (the jq step, through libjq,
 * loaded only when a file declares one).  Apart because libjq's names
 * (jv_string...) are not to meet the domain's.
 */
#ifndef CQRS_UPCAST_IMPL_H
#define CQRS_UPCAST_IMPL_H

#include "common/strbuf.h"
#include "cqrs.h"

typedef struct upcast_jq upcast_jq;

/* Compiles program (declared at file:line:col) once to check it: 0, or
 * -1 with *err: 69 when libjq cannot be loaded, 78 when it does not
 * compile ("FILE:LINE:COL: jq: ..."). */
int upcast_jq_check(const char *program, const char *file, int line, int col, cqrs_error *err);
/* A compiled program for one thread's use; NULL with *err. */
upcast_jq *upcast_jq_new(const char *program, cqrs_error *err);
void upcast_jq_free(upcast_jq *q);
/* The first number in the n bytes of compact JSON at data that jq would
 * print with other text (0.10 as 0.1), or NULL; *len its length. */
const char *upcast_jq_reprinted_number(const char *data, size_t n, size_t *len);
/* Runs q on the object data: its one output, an object, compacted in out.
 * 0, or -1 with why (what jq said, or what it gave instead) in *err (65). */
int upcast_jq_run(upcast_jq *q, const char *data, size_t n, struct cqrs_strbuf *out,
		  cqrs_error *err);

#endif
