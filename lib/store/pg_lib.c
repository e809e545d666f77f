/* libpq through dlopen: see pg_lib.h for why. */
#include "config.h"

#include <dlfcn.h>
#include <stddef.h>
#include <string.h>

#include "store/pg_lib.h"
#include "banned.h"

#ifndef LIBPQ_SONAME
#define LIBPQ_SONAME "libpq.so.5"
#endif

static struct cqrs_pq pq;
static bool loaded;

/* Each entry: the symbol, and where in the table its address goes. */
static const struct {
	const char *name;
	size_t offset;
} symbols[] = {
#define SYM(field, name)                                                                           \
	{                                                                                          \
		name, offsetof(struct cqrs_pq, field)                                              \
	}
	SYM(connectdb, "PQconnectdb"),
	SYM(status, "PQstatus"),
	SYM(error_message, "PQerrorMessage"),
	SYM(finish, "PQfinish"),
	SYM(connection_needs_password, "PQconnectionNeedsPassword"),
	SYM(conninfo_parse, "PQconninfoParse"),
	SYM(conninfo_free, "PQconninfoFree"),
	SYM(set_notice_processor, "PQsetNoticeProcessor"),
	SYM(exec, "PQexec"),
	SYM(exec_params, "PQexecParams"),
	SYM(prepare, "PQprepare"),
	SYM(exec_prepared, "PQexecPrepared"),
	SYM(result_status, "PQresultStatus"),
	SYM(result_error_field, "PQresultErrorField"),
	SYM(result_error_message, "PQresultErrorMessage"),
	SYM(clear, "PQclear"),
	SYM(ntuples, "PQntuples"),
	SYM(getvalue, "PQgetvalue"),
	SYM(getlength, "PQgetlength"),
	SYM(getisnull, "PQgetisnull"),
	SYM(cmd_tuples, "PQcmdTuples"),
	SYM(transaction_status, "PQtransactionStatus"),
	SYM(socket, "PQsocket"),
	SYM(consume_input, "PQconsumeInput"),
	SYM(notifies, "PQnotifies"),
	SYM(freemem, "PQfreemem"),
	SYM(escape_identifier, "PQescapeIdentifier"),
	SYM(host, "PQhost"),
	SYM(port, "PQport"),
	SYM(db, "PQdb"),
	SYM(user, "PQuser"),
	SYM(put_copy_data, "PQputCopyData"),
	SYM(put_copy_end, "PQputCopyEnd"),
	SYM(get_result, "PQgetResult"),
#undef SYM
};

const struct cqrs_pq *cqrs_pq_load(cqrs_error *err)
{
	if (loaded)
		return &pq;
	void *h = dlopen(LIBPQ_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		cqrs_fail(err, CQRS_EXIT_UNAVAILABLE,
			  "%s: %s (PostgreSQL's client library, Debian package libpq5): "
			  "PostgreSQL stores need it",
			  LIBPQ_SONAME, dlerror());
		return NULL;
	}
	for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
		void *f = dlsym(h, symbols[i].name);
		if (f == NULL) {
			cqrs_fail(err, CQRS_EXIT_UNAVAILABLE, "%s: no %s in it", LIBPQ_SONAME,
				  symbols[i].name);
			dlclose(h);
			return NULL;
		}
		/* POSIX's way from a void * to a function pointer */
		memcpy((char *)&pq + symbols[i].offset, &f, sizeof f);
	}
	loaded = true;
	return &pq;
}
