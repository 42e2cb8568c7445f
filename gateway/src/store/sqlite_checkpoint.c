/*
 * Background WAL checkpoints for the SQLite backend.
 *
 * The write connection runs with wal_autocheckpoint=0, so a commit never pays
 * for copying WAL frames back into the database file. Instead its WAL hook
 * (called by SQLite after every commit, on the storage thread) wakes this
 * thread once the WAL has grown past a threshold, and this thread runs a
 * PASSIVE checkpoint on a connection of its own. PASSIVE never waits for the
 * writer or readers; frames it could not copy are taken next time. Once a
 * checkpoint has copied every frame, the writer's next transaction restarts
 * the WAL from the beginning, so the file stops growing; when sustained load
 * keeps PASSIVE from ever catching up, a RESTART checkpoint forces that (see
 * ckpt_main). At close a TRUNCATE checkpoint leaves a zero-length WAL behind.
 */
#include "store/sqlite_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "tbgw/error.h"

/* WAL size, in multiples of the threshold, at which PASSIVE gives way to a
 * briefly blocking RESTART checkpoint. */
#define TB__SQLITE_CKPT_RESTART_FACTOR 4
/* How long RESTART waits for the writer's current transaction and for
 * outside readers before it gives up (and is tried again later). */
#define TB__SQLITE_CKPT_RESTART_WAIT_MS 250

struct tb__sqlite_ckpt {
  sqlite3 *db;       /* the checkpoint thread's own connection */
  sqlite3 *write_db; /* only to remove the hook at stop */
  uint32_t wal_pages;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_cond_t gate_cv; /* the writer waits here while restart_wanted */
  int requested;      /* under mu */
  int stop;           /* under mu */
  int restart_wanted; /* under mu: writer, hold your next transaction */
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Returns the WAL's size in frames after the checkpoint (-1 if unknown) and
 * how many of them are now in the database file. */
static void checkpoint(struct tb__sqlite_ckpt *c, int mode, const char *mode_name,
                       int *log_out, int *ckpt_out) {
  int log_frames = -1, ckpt_frames = -1;
  uint64_t t0 = now_ns();
  int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, mode, &log_frames, &ckpt_frames);
  uint64_t dt = now_ns() - t0;
  /* Routine checkpoints are debug noise under load; SQLITE_BUSY only means
   * another checkpoint holds the lock (the writer's RESTART), and the next
   * one catches up. Anything else is worth an operator's look. */
  enum tb_log_level level =
      rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED ? TB_LOG_DEBUG : TB_LOG_WARN;
  if (mode == SQLITE_CHECKPOINT_TRUNCATE && rc == SQLITE_OK) level = TB_LOG_INFO;
  struct tb_log_line *l = tb_log_begin(level, "store.checkpoint");
  tb_log_str(l, "mode", mode_name);
  tb_log_int(l, "wal_frames", log_frames);
  tb_log_int(l, "checkpointed_frames", ckpt_frames);
  tb_log_int(l, "duration_us", (int64_t)(dt / 1000));
  if (rc != SQLITE_OK) tb_log_str(l, "error", sqlite3_errmsg(c->db));
  tb_log_end(l);
  if (log_out) *log_out = log_frames;
  if (ckpt_out) *ckpt_out = ckpt_frames;
}

static void *ckpt_main(void *arg) {
  struct tb__sqlite_ckpt *c = arg;
  int restarted_at = -1;
  pthread_mutex_lock(&c->mu);
  for (;;) {
    while (!c->requested && !c->stop) pthread_cond_wait(&c->cv, &c->mu);
    if (c->stop) break;
    c->requested = 0;
    pthread_mutex_unlock(&c->mu);
    int log_frames, ckpt_frames;
    checkpoint(c, SQLITE_CHECKPOINT_PASSIVE, "passive", &log_frames, &ckpt_frames);
    /* The writer restarts the WAL from its beginning only if, when its
     * transaction starts, a checkpoint has already copied every frame. Under
     * sustained load the storage thread begins its next batch right after
     * each commit, before PASSIVE is done, so that moment never comes and
     * the WAL would grow without bound even though every frame gets copied.
     * Once it is well past the threshold, ask the writer to hold its next
     * transaction (the gate in tb__sqlite_ckpt_gate) and RESTART: that
     * copies the few frames PASSIVE left and makes the writer's next
     * transaction start the WAL afresh. The writer waits for one short copy
     * and fsync; an outside reader holding an old snapshot makes RESTART give
     * up after a short timeout (tried again later) rather than stall
     * commits. */
    if (log_frames >= 0 && log_frames != restarted_at &&
        (uint64_t)log_frames >= (uint64_t)c->wal_pages * TB__SQLITE_CKPT_RESTART_FACTOR) {
      /* (restarted_at: the WAL header only resets when the writer next
       * writes; until then PASSIVE still reports the old size.) */
      restarted_at = log_frames;
      pthread_mutex_lock(&c->mu);
      c->restart_wanted = 1;
      pthread_mutex_unlock(&c->mu);
      sqlite3_busy_timeout(c->db, TB__SQLITE_CKPT_RESTART_WAIT_MS);
      checkpoint(c, SQLITE_CHECKPOINT_RESTART, "restart", NULL, NULL);
      sqlite3_busy_timeout(c->db, TB__SQLITE_BUSY_TIMEOUT_MS);
      pthread_mutex_lock(&c->mu);
      c->restart_wanted = 0;
      pthread_cond_broadcast(&c->gate_cv);
      pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_lock(&c->mu);
  }
  pthread_mutex_unlock(&c->mu);
  /* The writer is idle now (stop is called with no transaction open), so
   * TRUNCATE gets every frame and resets the WAL file to zero bytes. */
  checkpoint(c, SQLITE_CHECKPOINT_TRUNCATE, "truncate", NULL, NULL);
  return NULL;
}

/* SQLite's WAL hook: runs after each commit on the write connection. Only
 * signals, so the committing thread never does checkpoint I/O. */
static int on_wal_commit(void *arg, sqlite3 *db, const char *dbname, int pages) {
  (void)db;
  (void)dbname;
  struct tb__sqlite_ckpt *c = arg;
  if (pages >= 0 && (uint32_t)pages >= c->wal_pages) {
    pthread_mutex_lock(&c->mu);
    if (!c->requested) {
      c->requested = 1;
      pthread_cond_signal(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
  }
  return SQLITE_OK;
}

int tb__sqlite_ckpt_start(const char *path, sqlite3 *write_db, uint32_t wal_pages,
                          struct tb__sqlite_ckpt **out, char *err) {
  *out = NULL;
  struct tb__sqlite_ckpt *c = calloc(1, sizeof *c);
  if (c == NULL) return tb_errf(err, TB_ENOMEM, "store: out of memory");
  c->write_db = write_db;
  c->wal_pages = wal_pages ? wal_pages : 1;
  int rc = sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    tb_errf(err, TB_ESTORE, "store: cannot open %s for checkpoints: %s", path,
            c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
    sqlite3_close(c->db);
    free(c);
    return TB_ESTORE;
  }
  sqlite3_busy_timeout(c->db, TB__SQLITE_BUSY_TIMEOUT_MS);
  /* A connection opens the file lazily: until it has read the header it
   * does not know the database is in WAL mode, and checkpoints on it are
   * silent no-ops (frames -1). One read makes it attach to the WAL. */
  char *msg = NULL;
  if (sqlite3_exec(c->db, "SELECT count(*) FROM sqlite_schema", NULL, NULL, &msg) != SQLITE_OK) {
    tb_errf(err, TB_ESTORE, "store: cannot open %s for checkpoints: %s", path,
            msg ? msg : sqlite3_errmsg(c->db));
    sqlite3_free(msg);
    sqlite3_close(c->db);
    free(c);
    return TB_ESTORE;
  }
  if (pthread_mutex_init(&c->mu, NULL) != 0) goto fail_db;
  if (pthread_cond_init(&c->cv, NULL) != 0) goto fail_mu;
  if (pthread_cond_init(&c->gate_cv, NULL) != 0) goto fail_cv;
  if (pthread_create(&c->thread, NULL, ckpt_main, c) != 0) goto fail_gate;
  sqlite3_wal_hook(write_db, on_wal_commit, c);
  *out = c;
  return 0;

fail_gate:
  pthread_cond_destroy(&c->gate_cv);
fail_cv:
  pthread_cond_destroy(&c->cv);
fail_mu:
  pthread_mutex_destroy(&c->mu);
fail_db:
  sqlite3_close(c->db);
  free(c);
  return tb_errf(err, TB_ESTORE, "store: cannot start the checkpoint thread for %s", path);
}

void tb__sqlite_ckpt_stop(struct tb__sqlite_ckpt *c) {
  if (c == NULL) return;
  sqlite3_wal_hook(c->write_db, NULL, NULL);
  pthread_mutex_lock(&c->mu);
  c->stop = 1;
  pthread_cond_signal(&c->cv);
  pthread_mutex_unlock(&c->mu);
  pthread_join(c->thread, NULL);
  sqlite3_close(c->db);
  pthread_cond_destroy(&c->gate_cv);
  pthread_cond_destroy(&c->cv);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

void tb__sqlite_ckpt_gate(struct tb__sqlite_ckpt *c) {
  pthread_mutex_lock(&c->mu);
  while (c->restart_wanted && !c->stop) pthread_cond_wait(&c->gate_cv, &c->mu);
  pthread_mutex_unlock(&c->mu);
}
