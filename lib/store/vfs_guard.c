/*
 * A thin SQLite VFS over the default one that makes a failed fsync final.
 *
 * When the fsync of a commit fails, SQLite reports the error, but the
 * commit's frames are already in the -wal file with valid checksums: the
 * next process to open the store runs WAL recovery and brings the batch
 * back, although the tool said it was not stored, and although the kernel
 * may already have dropped those pages.  So when a sync of the WAL fails,
 * this layer truncates the WAL back to where the unsynced writes began:
 * what was reported as not stored stays not stored.
 *
 * Only with synchronous=FULL (the default) is every commit synced, so that
 * "unsynced" means "not yet acknowledged"; store_sqlite.c turns the guard
 * off for --no-sync connections.
 *
 * It is also where a store's files are checked against the multi-user
 * rules (store_trust.c): every file SQLite opens for the store, the main
 * file in xOpen and the -shm inside xShmMap, goes through the unix VFS's
 * "open" system call, which this layer wraps, so that the check is an
 * fstat of the very descriptor SQLite will use.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "cqrs.h"
#include "common/sqlite_errors.h"
#include "store/store_impl.h"
#include "banned.h"

struct guard_file {
	sqlite3_file base;
	sqlite3_file *real; /* follows this struct in the same allocation */
	bool is_wal;
	bool store_file;	     /* opened through the guard, not the watch (the views) */
	sqlite3_int64 unsynced_from; /* lowest offset written since the last sync; -1 */
};

static sqlite3_vfs guard_vfs;
/* The same layer for the tools' other SQLite files (the views): it only
 * notes failed reads, which SQLite would report as a damaged file.  Views
 * are checked against the trust rules by views.c, and their WAL is not
 * synced at each commit, so the fsync guard does not apply. */
static sqlite3_vfs watch_vfs;
static sqlite3_vfs *real_vfs;
static atomic_bool guard_enabled = true;
static pthread_once_t registered = PTHREAD_ONCE_INIT;

/* The trust rules in force: once a process opens a store for writing,
 * every store file it opens must be fit for a writer. */
static atomic_bool policy_writer;
/* Set while this thread is inside the guard's xOpen or xShmMap: only
 * those opens are store files. */
static _Thread_local bool checking;
static _Thread_local cqrs_error refusal;
typedef int (*open_fn)(const char *, int, int);
static open_fn real_open;

static int guard_sys_open(const char *path, int flags, int mode)
{
	int fd = real_open(path, flags, mode);
	if (fd < 0 || !checking)
		return fd;
	cqrs_error e = { 0 };
	if (cqrs_trust_fd(fd, path, atomic_load(&policy_writer), &e) < 0) {
		close(fd);
		if (refusal.code == 0)
			refusal = e;
		errno = EACCES;
		return -1;
	}
	return fd;
}

void cqrs_sqlite_guard_policy(bool writer)
{
	if (writer)
		atomic_store(&policy_writer, true);
}

bool cqrs_sqlite_guard_refused(cqrs_error *err)
{
	if (refusal.code == 0)
		return false;
	if (err != NULL)
		*err = refusal;
	refusal.code = 0;
	return true;
}

#define REAL(f) (((struct guard_file *)(f))->real)

static int g_close(sqlite3_file *f)
{
	int rc = REAL(f)->pMethods ? REAL(f)->pMethods->xClose(REAL(f)) : SQLITE_OK;
	return rc;
}

static int g_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
	int rc = REAL(f)->pMethods->xRead(REAL(f), buf, n, off);
	if ((rc & 0xff) == SQLITE_IOERR && rc != SQLITE_IOERR_SHORT_READ)
		cqrs_sqlite_note_read_error(errno);
	return rc;
}

int cqrs_sqlite_fail(sqlite3 *db, int rc, bool writable, const char *what, cqrs_error *err)
{
	if (cqrs_sqlite_read_failed(db, rc))
		return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: a read failed: %s", what,
				 cqrs_sqlite_errmsg(db, rc));
	return cqrs_fail(err, cqrs_sqlite_db_exit_code(db, rc, writable), "%s: %s", what,
			 cqrs_sqlite_errmsg(db, rc));
}

static int g_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
	struct guard_file *g = (struct guard_file *)f;
	if (g->is_wal && (g->unsynced_from < 0 || off < g->unsynced_from))
		g->unsynced_from = off;
	return g->real->pMethods->xWrite(g->real, buf, n, off);
}

static int g_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	struct guard_file *g = (struct guard_file *)f;
	if (g->is_wal && g->unsynced_from > size)
		g->unsynced_from = size;
	return g->real->pMethods->xTruncate(g->real, size);
}

static int g_sync(sqlite3_file *f, int flags)
{
	struct guard_file *g = (struct guard_file *)f;
	int rc = g->real->pMethods->xSync(g->real, flags);
	if (rc != SQLITE_OK && g->store_file && g->is_wal && g->unsynced_from >= 0 && guard_enabled)
		g->real->pMethods->xTruncate(g->real, g->unsynced_from);
	g->unsynced_from = -1;
	return rc;
}

static int g_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int g_lock(sqlite3_file *f, int level)
{
	return REAL(f)->pMethods->xLock(REAL(f), level);
}

static int g_unlock(sqlite3_file *f, int level)
{
	return REAL(f)->pMethods->xUnlock(REAL(f), level);
}

static int g_check_reserved(sqlite3_file *f, int *out)
{
	return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int g_file_control(sqlite3_file *f, int op, void *arg)
{
	return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int g_sector_size(sqlite3_file *f)
{
	return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int g_device_characteristics(sqlite3_file *f)
{
	return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int g_shm_map(sqlite3_file *f, int page, int size, int extend, void volatile **p)
{
	bool was = checking;
	checking = ((struct guard_file *)f)->store_file;
	int rc = REAL(f)->pMethods->xShmMap(REAL(f), page, size, extend, p);
	checking = was;
	return rc;
}

static int g_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
	return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}

static void g_shm_barrier(sqlite3_file *f)
{
	REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int g_shm_unmap(sqlite3_file *f, int delete_flag)
{
	return REAL(f)->pMethods->xShmUnmap(REAL(f), delete_flag);
}

static int g_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **p)
{
	return REAL(f)->pMethods->xFetch(REAL(f), off, n, p);
}

static int g_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
	return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static const sqlite3_io_methods guard_methods = {
	3,
	g_close,
	g_read,
	g_write,
	g_truncate,
	g_sync,
	g_file_size,
	g_lock,
	g_unlock,
	g_check_reserved,
	g_file_control,
	g_sector_size,
	g_device_characteristics,
	g_shm_map,
	g_shm_lock,
	g_shm_barrier,
	g_shm_unmap,
	g_fetch,
	g_unfetch,
};

static int g_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
	struct guard_file *g = (struct guard_file *)f;
	memset(g, 0, sizeof *g);
	g->real = (sqlite3_file *)(g + 1);
	g->is_wal = (flags & SQLITE_OPEN_WAL) != 0;
	g->store_file = vfs == &guard_vfs;
	g->unsynced_from = -1;
	bool was = checking;
	checking = g->store_file;
	int rc = real_vfs->xOpen(real_vfs, name, g->real, flags, out_flags);
	checking = was;
	/* SQLite calls xClose only when pMethods is set, and it must be ours */
	f->pMethods = g->real->pMethods != NULL ? &guard_methods : NULL;
	return rc;
}

/* The rest of the VFS is the default one's. */
static int g_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
	(void)v;
	return real_vfs->xDelete(real_vfs, name, sync_dir);
}

static int g_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
	(void)v;
	return real_vfs->xAccess(real_vfs, name, flags, out);
}

static int g_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out)
{
	(void)v;
	return real_vfs->xFullPathname(real_vfs, name, n, out);
}

static int g_randomness(sqlite3_vfs *v, int n, char *out)
{
	(void)v;
	return real_vfs->xRandomness(real_vfs, n, out);
}

static int g_sleep(sqlite3_vfs *v, int us)
{
	(void)v;
	return real_vfs->xSleep(real_vfs, us);
}

static int g_current_time(sqlite3_vfs *v, double *out)
{
	(void)v;
	return real_vfs->xCurrentTime(real_vfs, out);
}

static int g_last_error(sqlite3_vfs *v, int n, char *out)
{
	(void)v;
	return real_vfs->xGetLastError(real_vfs, n, out);
}

static int g_current_time_int64(sqlite3_vfs *v, sqlite3_int64 *out)
{
	(void)v;
	return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

/* Registered once per process, whichever thread opens a store first. */
static void register_guard(void)
{
	real_vfs = sqlite3_vfs_find(NULL);
	if (real_vfs == NULL || real_vfs->iVersion < 3)
		return;
	real_open = (open_fn)real_vfs->xGetSystemCall(real_vfs, "open");
	if (real_open == NULL ||
	    real_vfs->xSetSystemCall(real_vfs, "open", (sqlite3_syscall_ptr)guard_sys_open) !=
		    SQLITE_OK)
		return;
	guard_vfs = (sqlite3_vfs){
		.iVersion = 2,
		.szOsFile = (int)sizeof(struct guard_file) + real_vfs->szOsFile,
		.mxPathname = real_vfs->mxPathname,
		.zName = "cqrs-guard",
		.xOpen = g_open,
		.xDelete = g_delete,
		.xAccess = g_access,
		.xFullPathname = g_full_pathname,
		.xDlOpen = real_vfs->xDlOpen,
		.xDlError = real_vfs->xDlError,
		.xDlSym = real_vfs->xDlSym,
		.xDlClose = real_vfs->xDlClose,
		.xRandomness = g_randomness,
		.xSleep = g_sleep,
		.xCurrentTime = g_current_time,
		.xGetLastError = g_last_error,
		.xCurrentTimeInt64 = g_current_time_int64,
	};
	watch_vfs = guard_vfs;
	watch_vfs.zName = "cqrs-watch";
	if (sqlite3_vfs_register(&guard_vfs, 0) != SQLITE_OK)
		guard_vfs.zName = NULL;
	if (sqlite3_vfs_register(&watch_vfs, 0) != SQLITE_OK)
		watch_vfs.zName = NULL;
}

const char *cqrs_sqlite_guard_vfs(bool enabled)
{
	pthread_once(&registered, register_guard);
	atomic_store(&guard_enabled, enabled);
	return guard_vfs.zName;
}

const char *cqrs_sqlite_watch_vfs(void)
{
	pthread_once(&registered, register_guard);
	return watch_vfs.zName;
}
