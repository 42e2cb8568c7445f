/*
 * store/sqlite_internal.h — shared between the SQLite backend and its
 * checkpoint thread. Internal to store/.
 */
#ifndef TB_STORE_SQLITE_INTERNAL_H
#define TB_STORE_SQLITE_INTERNAL_H

#include <sqlite3.h>
#include <stdint.h>

#define TB__SQLITE_BUSY_TIMEOUT_MS 5000

struct tb__sqlite_ckpt;

/* Opens the checkpoint thread's own connection to path, installs the WAL hook
 * on write_db (which must already have wal_autocheckpoint=0: that pragma
 * replaces the WAL hook) and starts the thread. The hook runs on the thread
 * that commits on write_db and only signals; the checkpoint itself
 * (PASSIVE, never blocking the writer) runs on the checkpoint thread when the
 * WAL holds at least wal_pages frames. Called before the storage thread
 * starts. Errors: TB_ENOMEM, TB_ESTORE (err names the path). */
int tb__sqlite_ckpt_start(const char *path, sqlite3 *write_db, uint32_t wal_pages,
                          struct tb__sqlite_ckpt **out, char *err);

/* Removes the hook, lets the thread finish its current checkpoint, runs a
 * final TRUNCATE checkpoint, closes its connection, joins and frees. Called
 * on the thread that commits on write_db, with no transaction open. */
void tb__sqlite_ckpt_stop(struct tb__sqlite_ckpt *c);

/* Called by the writer before each transaction: waits while the checkpoint
 * thread runs a RESTART checkpoint (rare: only when the WAL has outgrown
 * its threshold several times over). One uncontended mutex otherwise. */
void tb__sqlite_ckpt_gate(struct tb__sqlite_ckpt *c);

#endif
