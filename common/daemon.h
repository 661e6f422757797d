/* daemon.h — what every cirrus daemon's main() shares: its options (common/config.h), the log
 * level, the signals (SIGINT and SIGTERM stop it, SIGPIPE is ignored, SIGHUP reloads when
 * asked for), waiting for the stop, and errors printed as "PROGRAM: message". A main is then
 * its flags and its open/close calls:
 *
 *     int main(int argc, char **argv)
 *     {
 *         cr_opt opts[] = {..., {"log-level", CR_OPT_STRING, &lvl, "info", 0, 0, 0, "..."}};
 *         int ret = cr_daemon_begin("cirrus-shard", "CIRRUS_SHARD", opts, n, argc, argv);
 *         if (ret >= 0)
 *             return ret;                        // --help (0) or a bad option (2)
 *         if (shard_server_open(&srv, e, &so))
 *             return cr_daemon_end("shard", cr_daemon_fail("%s", cr_error_message()));
 *         cr_daemon_wait();                      // until SIGINT / SIGTERM
 *         return cr_daemon_end("shard", shard_server_close(&srv) ? 1 : 0);
 *     }
 *
 * One daemon per process: the program name, the option table and the stop flag are
 * process-wide (set once by cr_daemon_begin, before any thread starts).
 */
#ifndef CR_DAEMON_H
#define CR_DAEMON_H

#include <signal.h>
#include <stddef.h>

#include "common/config.h"
#include "common/err.h"

/* Loads the options (cr_config_load), applies an option named "log-level" when the table has
 * one, and installs the signal handlers. Returns -1 when main should go on; else the status
 * main returns: 0 after --help, 2 after a bad option (printed as "PROGRAM: why"). The table
 * is kept for cr_daemon_end, which frees its strings. */
int cr_daemon_begin(const char *program, const char *env_prefix, const cr_opt *opts, size_t n,
                    int argc, char **argv);

/* Caps glibc's malloc arenas at 2 (MALLOC_ARENA_MAX in the environment wins). glibc gives
 * threads that allocate under contention arenas of their own (up to 8 per core) and keeps
 * what each frees: in the soak (tests/soak/run.sh: an index rebuild on a fresh thread every
 * ~15 s, request and snapshot threads) RssAnon of cirrus serve rose 103 -> 123 MiB (+19 %)
 * from 90 s to 360 s by default, 88 -> 90.5 MiB (+2.7 %) with 2 arenas, at the same
 * latency. It also fixes the mmap threshold (CR_DAEMON_MMAP_THRESHOLD): glibc's sliding one
 * moves the index's and the snapshots' big blocks into the arenas after the first is freed.
 * With 2 arenas alone the soak's RssAnon still grew 63 -> 104 MiB in 9 minutes, malloc
 * holding 122 MB for 71 MB in use; with this and cr_daemon_release_memory after rebuilds and
 * snapshots it stays at 44 MiB between rebuilds (docs/testing.md, "Soak").
 * Call before any thread starts; cr_daemon_begin calls it. */
void cr_daemon_tune_malloc(void);

/* Blocks of at least this many bytes are mapped on their own and unmapped when freed
 * (cr_daemon_tune_malloc; MALLOC_MMAP_THRESHOLD_ in the environment wins). */
#define CR_DAEMON_MMAP_THRESHOLD (1 << 20)

/* Gives the free pages inside malloc's arenas back to the kernel (glibc's malloc_trim(0)):
 * after a large, short-lived peak such as an index rebuild (two indexes at once) or a
 * snapshot's serialized copy, whose freed blocks would otherwise stay in the RSS. Takes
 * each arena's lock in turn for a few ms: call after such a peak, not per request. */
void cr_daemon_release_memory(void);

/* Set by SIGINT and SIGTERM. */
volatile sig_atomic_t *cr_daemon_stop_flag(void);
/* Installs the SIGHUP handler (a daemon without one keeps SIGHUP's default) and returns the
 * flag it sets; the daemon clears it after reloading. */
volatile sig_atomic_t *cr_daemon_reload_flag(void);

/* Installs the same SIGHUP handler and returns the number of SIGHUPs received so far: a reader
 * that compares it with the count it last saw reloads without clearing the flag above. */
const volatile sig_atomic_t *cr_daemon_reload_count(void);

/* Sleeps until SIGINT or SIGTERM (in slices of 50 ms). */
void cr_daemon_wait(void);

/* Prints "PROGRAM: <message>" on stderr and returns 1 (main's status for a failure). */
int cr_daemon_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Ends main: frees the options; with status 0 logs "stopped cleanly" at INFO as `component`.
 * Returns status. */
int cr_daemon_end(const char *component, int status);

#endif
