#include "common/daemon.h"

#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"

#define WAIT_SLICE_MS 50

/* Process-wide, set once before any thread starts (STYLE: the config and the stop flag). */
static volatile sig_atomic_t stop_flag, reload_flag;
/* SIGHUPs so far: for a second reader of SIGHUP (the HTTP keys), which must not clear the
 * flag the coordinator's map reload waits on. Only the handler writes it. */
static volatile sig_atomic_t reload_count;
static const char *program_name = "cirrus";
static const cr_opt *daemon_opts;
static size_t daemon_nopts;

static void on_stop(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void on_hup(int sig)
{
    (void)sig;
    reload_flag = 1;
    reload_count = (sig_atomic_t)(reload_count + 1);
}

static void apply_log_level(const cr_opt *opts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *const *value = opts[i].target;
        int level;
        if (opts[i].type != CR_OPT_STRING || strcmp(opts[i].name, "log-level") != 0 || !*value)
            continue;
        level = cr_log_level_parse(*value);
        if (level >= 0)
            cr_log_set_level((cr_log_level)level);
    }
}

void cr_daemon_tune_malloc(void)
{
#ifdef M_ARENA_MAX
    if (!getenv("MALLOC_ARENA_MAX"))
        (void)mallopt(M_ARENA_MAX, 2);
#endif
#ifdef M_MMAP_THRESHOLD
    /* A fixed threshold also turns off glibc's sliding one, which after the first free of a
     * big mapped block (an index's vectors, a snapshot's buffer) moves every later block up
     * to 32 MiB into the arenas, where a freed one is seldom given back. */
    if (!getenv("MALLOC_MMAP_THRESHOLD_"))
        (void)mallopt(M_MMAP_THRESHOLD, CR_DAEMON_MMAP_THRESHOLD);
#endif
}

void cr_daemon_release_memory(void)
{
#ifdef __GLIBC__
    (void)malloc_trim(0);
#endif
}

int cr_daemon_begin(const char *program, const char *env_prefix, const cr_opt *opts, size_t n,
                    int argc, char **argv)
{
    struct sigaction sa;
    int help = 0;
    cr_err rc;

    program_name = program;
    cr_daemon_tune_malloc();
    rc = cr_config_load(program, env_prefix, opts, n, argc, argv, &help);
    if (help || rc) {
        if (rc)
            fprintf(stderr, "%s: %s\n", program, cr_error_message());
        cr_config_free(opts, n);
        return help && !rc ? 0 : 2;
    }
    daemon_opts = opts;
    daemon_nopts = n;
    apply_log_level(opts, n);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return -1;
}

volatile sig_atomic_t *cr_daemon_stop_flag(void)
{
    return &stop_flag;
}

volatile sig_atomic_t *cr_daemon_reload_flag(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    return &reload_flag;
}

const volatile sig_atomic_t *cr_daemon_reload_count(void)
{
    cr_daemon_reload_flag();
    return &reload_count;
}

void cr_daemon_wait(void)
{
    while (!stop_flag)
        cr_clock_sleep_ms(WAIT_SLICE_MS);
}

int cr_daemon_fail(const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s\n", program_name, msg);
    return 1;
}

int cr_daemon_end(const char *component, int status)
{
    if (status == 0)
        CR_INFO(component, "stopped cleanly");
    if (daemon_opts)
        cr_config_free(daemon_opts, daemon_nopts);
    daemon_opts = NULL;
    return status;
}
