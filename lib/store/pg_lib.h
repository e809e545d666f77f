/*
 * libpq, loaded when a PostgreSQL store is named (dlopen "libpq.so.5"),
 * never linked: libpq pulls in TLS, Kerberos and LDAP, which one append
 * on a SQLite store must not pay for at start-up.  The header gives the
 * types; the table below gives the functions the backend calls.
 */
#ifndef CQRS_PG_LIB_H
#define CQRS_PG_LIB_H

#include <libpq-fe.h>

#include "cqrs.h"

struct cqrs_pq {
	PGconn *(*connectdb)(const char *conninfo);
	ConnStatusType (*status)(const PGconn *conn);
	char *(*error_message)(const PGconn *conn);
	void (*finish)(PGconn *conn);
	int (*connection_needs_password)(const PGconn *conn);
	PQconninfoOption *(*conninfo_parse)(const char *conninfo, char **errmsg);
	void (*conninfo_free)(PQconninfoOption *options);
	PQnoticeProcessor (*set_notice_processor)(PGconn *conn, PQnoticeProcessor proc, void *arg);
	PGresult *(*exec)(PGconn *conn, const char *query);
	PGresult *(*exec_params)(PGconn *conn, const char *command, int nparams, const Oid *types,
				 const char *const *values, const int *lengths, const int *formats,
				 int result_format);
	PGresult *(*prepare)(PGconn *conn, const char *name, const char *query, int nparams,
			     const Oid *types);
	PGresult *(*exec_prepared)(PGconn *conn, const char *name, int nparams,
				   const char *const *values, const int *lengths,
				   const int *formats, int result_format);
	ExecStatusType (*result_status)(const PGresult *res);
	char *(*result_error_field)(const PGresult *res, int field);
	char *(*result_error_message)(const PGresult *res);
	void (*clear)(PGresult *res);
	int (*ntuples)(const PGresult *res);
	char *(*getvalue)(const PGresult *res, int row, int col);
	int (*getlength)(const PGresult *res, int row, int col);
	int (*getisnull)(const PGresult *res, int row, int col);
	char *(*cmd_tuples)(PGresult *res);
	PGTransactionStatusType (*transaction_status)(const PGconn *conn);
	int (*socket)(const PGconn *conn);
	int (*consume_input)(PGconn *conn);
	PGnotify *(*notifies)(PGconn *conn);
	void (*freemem)(void *ptr);
	char *(*escape_identifier)(PGconn *conn, const char *str, size_t len);
	char *(*host)(const PGconn *conn);
	char *(*port)(const PGconn *conn);
	char *(*db)(const PGconn *conn);
	char *(*user)(const PGconn *conn);
	/* COPY FROM STDIN: a window of appended events in one statement */
	int (*put_copy_data)(PGconn *conn, const char *buffer, int nbytes);
	int (*put_copy_end)(PGconn *conn, const char *errormsg);
	PGresult *(*get_result)(PGconn *conn);
};

/* The table, loading libpq on first use: NULL with *err (69, naming the
 * Debian package) when it cannot be loaded. */
const struct cqrs_pq *cqrs_pq_load(cqrs_error *err);

#endif
