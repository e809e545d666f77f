/*
 * raw-dump: the floor for cqrs-read (issue 2): every column of every row of
 * the events table, in sequence order, written to stdout with the least
 * work SQLite allows: text as stored, blobs in hex, integers in decimal,
 * tab-separated, one row a line.  No JSON, no escaping, no checks.
 *
 *   raw-dump store > /dev/null
 */
#include "config.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "banned.h"

int main(int argc, char **argv)
{
	static const char hex[] = "0123456789abcdef";
	static char outbuf[1 << 16];
	sqlite3 *db;
	sqlite3_stmt *q;
	if (argc != 2) {
		fputs("usage: raw-dump store\n", stderr);
		return 64;
	}
	if (sqlite3_open_v2(argv[1], &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT * FROM events ORDER BY sequence", -1, &q, NULL) !=
		    SQLITE_OK) {
		fprintf(stderr, "raw-dump: %s: %s\n", argv[1], sqlite3_errmsg(db));
		return 1;
	}
	setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
	int ncol = sqlite3_column_count(q), rc;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		for (int i = 0; i < ncol; i++) {
			if (i > 0)
				putchar_unlocked('\t');
			switch (sqlite3_column_type(q, i)) {
			case SQLITE_INTEGER:
				printf("%lld", (long long)sqlite3_column_int64(q, i));
				break;
			case SQLITE_BLOB: {
				const unsigned char *b = sqlite3_column_blob(q, i);
				int n = sqlite3_column_bytes(q, i);
				for (int k = 0; k < n; k++) {
					putchar_unlocked(hex[b[k] >> 4]);
					putchar_unlocked(hex[b[k] & 15]);
				}
				break;
			}
			case SQLITE_NULL: break;
			default:
				fwrite(sqlite3_column_text(q, i), 1,
				       (size_t)sqlite3_column_bytes(q, i), stdout);
			}
		}
		putchar_unlocked('\n');
	}
	if (rc != SQLITE_DONE) {
		fprintf(stderr, "raw-dump: %s: %s\n", argv[1], sqlite3_errmsg(db));
		return 1;
	}
	sqlite3_finalize(q);
	sqlite3_close(db);
	if (fflush(stdout) != 0)
		return 74;
	return 0;
}
