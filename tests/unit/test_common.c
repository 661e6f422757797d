/* common/: errors, logging levels, the arena, configuration precedence and validation. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/arena.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/err.h"
#include "common/hlc.h"
#include "common/log.h"
#include "common/test.h"

static void test_err(void)
{
    CR_CHECK(strcmp(cr_strerror(CR_ERR_INVALID), "invalid argument") == 0);
    CR_CHECK(cr_error_set(CR_ERR_STORE, "disk %d", 3) == CR_ERR_STORE);
    CR_CHECK(strcmp(cr_error_message(), "disk 3") == 0);
    CR_CHECK(cr_error_wrap(CR_ERR_STORE, "open") == CR_ERR_STORE);
    CR_CHECK(strcmp(cr_error_message(), "open: disk 3") == 0);
    cr_error_clear();
    CR_CHECK(cr_error_message()[0] == '\0');
    CR_CHECK(cr_log_level_parse("warn") == CR_LOG_WARN);
    CR_CHECK(cr_log_level_parse("loud") == -1);
}

static void test_arena(void)
{
    cr_arena a;
    cr_arena_init(&a, 256);
    for (int round = 0; round < 3; round++) {
        for (int i = 1; i < 200; i++) {
            unsigned char *p = cr_arena_alloc(&a, (size_t)i * 7);
            CR_CHECK(p && ((uintptr_t)p & 15) == 0);
            memset(p, i, (size_t)i * 7);
        }
        float *f = cr_arena_alloc_aligned64(&a, 1000);
        CR_CHECK(f && ((uintptr_t)f & 63) == 0);
        char *s = cr_arena_strndup(&a, "hello world", 5);
        CR_CHECK(strcmp(s, "hello") == 0);
        cr_arena_reset(&a);
        CR_CHECK(a.used_total == 0);
    }
    cr_arena_release(&a);
}

static void test_config(void)
{
    char *dir = NULL;
    long long threads = 0;
    double ratio = 0;
    int sync = 0, help = 0;
    cr_opt opts[] = {
        {"dir", CR_OPT_STRING, &dir, NULL, 0, 0, 1, "data directory"},
        {"threads", CR_OPT_INT, &threads, "2", 1, 64, 0, "threads"},
        {"ratio", CR_OPT_DOUBLE, &ratio, "0.5", 0, 0, 0, "ratio"},
        {"sync", CR_OPT_BOOL, &sync, "true", 0, 0, 0, "sync"},
    };
    char path[] = "/tmp/cirrus-test-config-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "# comment\ndir = /from/file\nthreads = 3\n");
    fclose(f);

    char *argv1[] = {"prog", "--config", path, "--threads", "5", "--sync=false", NULL};
    unsetenv("CRTEST_THREADS");
    setenv("CRTEST_RATIO", "0.25", 1);
    CR_CHECK(cr_config_load("prog", "CRTEST", opts, 4, 6, argv1, &help) == CR_OK);
    CR_CHECK(dir && strcmp(dir, "/from/file") == 0); /* file over default */
    CR_CHECK(threads == 5);                          /* command line over file */
    CR_CHECK(ratio == 0.25);                         /* environment over default */
    CR_CHECK(sync == 0);

    cr_config_free(opts, 4);
    setenv("CRTEST_THREADS", "7", 1);
    char *argv2[] = {"prog", "--config", path, NULL};
    CR_CHECK(cr_config_load("prog", "CRTEST", opts, 4, 3, argv2, &help) == CR_OK);
    CR_CHECK(threads == 7); /* environment over file */
    unsetenv("CRTEST_THREADS");

    cr_config_free(opts, 4);
    char *argv3[] = {"prog", "--dir", "x", "--threads", "99", NULL};
    CR_CHECK(cr_config_load("prog", "CRTEST", opts, 4, 5, argv3, &help) == CR_ERR_INVALID);
    CR_CHECK(strstr(cr_error_message(), "out of range") != NULL);
    cr_config_free(opts, 4);
    char *argv4[] = {"prog", "--bogus", NULL};
    CR_CHECK(cr_config_load("prog", "CRTEST", opts, 4, 2, argv4, &help) == CR_ERR_INVALID);
    CR_CHECK(strstr(cr_error_message(), "unknown option") != NULL);
    cr_config_free(opts, 4);
    char *argv5[] = {"prog", NULL};
    CR_CHECK(cr_config_load("prog", "CRTEST", opts, 4, 1, argv5, &help) == CR_ERR_INVALID);
    CR_CHECK(strstr(cr_error_message(), "required") != NULL);
    cr_config_free(opts, 4);
    char *argv6[] = {"prog", "--dir", NULL};
    CR_CHECK(cr_config_load("prog", "CRTEST", opts, 4, 2, argv6, &help) == CR_ERR_INVALID);
    cr_config_free(opts, 4);
    char *argv7[] = {"prog", "--threads", "2x", "--dir", "d", NULL};
    CR_CHECK(cr_config_load("prog", "CRTEST", opts, 4, 5, argv7, &help) == CR_ERR_INVALID);

    f = fopen(path, "w");
    fprintf(f, "nonsense line\n");
    fclose(f);
    cr_config_free(opts, 4);
    CR_CHECK(cr_config_load("prog", "CRTEST", opts, 4, 3, argv2, &help) == CR_ERR_INVALID);
    unlink(path);
    unsetenv("CRTEST_RATIO");
    cr_config_free(opts, 4);
    CR_CHECK(dir == NULL);
}

static void test_clock(void)
{
    uint64_t a = cr_clock_mono_us();
    cr_clock_sleep_ms(5);
    uint64_t b = cr_clock_mono_us();
    CR_CHECK(b - a >= 4000);
    CR_CHECK(cr_clock_unix_ms() > 1600000000000LL);
}

/* Versions never wrap: a clock that has observed the top of the range refuses (0) instead of
 * going back to 0 or to the wall clock, which would make every later write look older. */
static void test_hlc_no_wrap(void)
{
    cr_hlc h;
    uint64_t v;
    cr_hlc_init(&h);
    v = cr_hlc_next(&h);
    CR_CHECK(v > ((uint64_t)cr_clock_unix_ms() - 1000) << 16);
    CR_CHECK(cr_hlc_next(&h) > v);
    cr_hlc_observe(&h, (uint64_t)1 << 63);
    v = cr_hlc_next(&h);
    CR_CHECK_MSG(v == ((uint64_t)1 << 63) + 1, "%llu", (unsigned long long)v);
    cr_hlc_observe(&h, 5); /* never backwards */
    CR_CHECK(cr_hlc_next(&h) == v + 1);
    cr_hlc_observe(&h, UINT64_MAX - 1);
    CR_CHECK(cr_hlc_next(&h) == UINT64_MAX);
    v = cr_hlc_next(&h);
    CR_CHECK_MSG(v == 0, "exhausted clock gave %llu", (unsigned long long)v);
    v = cr_hlc_next(&h);
    CR_CHECK_MSG(v == 0, "exhausted clock wrapped to %llu", (unsigned long long)v);
    cr_hlc_init(&h);
    cr_hlc_observe(&h, UINT64_MAX);
    v = cr_hlc_next(&h);
    CR_CHECK_MSG(v == 0, "clock at 2^64-1 gave %llu", (unsigned long long)v);
    v = cr_hlc_next(&h);
    CR_CHECK_MSG(v == 0, "clock at 2^64-1 wrapped to %llu", (unsigned long long)v);
}

/* Client-chosen versions may lead the physical clock by the bounded skew, never more. */
static void test_hlc_skew(void)
{
    cr_hlc h;
    int64_t now = cr_clock_unix_ms();
    uint64_t skew = CR_HLC_MAX_SKEW_MS;
    cr_hlc_init(&h);
    CR_CHECK(cr_hlc_bound(1000, 500) == ((uint64_t)1500 << 16 | 0xffff));
    CR_CHECK(cr_hlc_bound(-5, 0) == 0xffff);
    CR_CHECK(cr_hlc_bound(INT64_MAX, skew) == UINT64_MAX);
    CR_CHECK(cr_hlc_bound(1000, UINT64_MAX) == UINT64_MAX);
    CR_CHECK(cr_hlc_check(&h, 1, skew) == CR_OK);
    CR_CHECK(cr_hlc_check(&h, (uint64_t)now << 16, skew) == CR_OK);
    CR_CHECK(cr_hlc_check(&h, (uint64_t)(now + 50000) << 16, skew) == CR_OK);
    CR_CHECK(cr_hlc_check(&h, (uint64_t)(now + 70000) << 16, skew) == CR_ERR_INVALID);
    CR_CHECK(strstr(cr_error_message(), "beyond") != NULL);
    CR_CHECK(cr_hlc_check(&h, (uint64_t)1 << 63, skew) == CR_ERR_INVALID);
    CR_CHECK(cr_hlc_check(&h, UINT64_MAX, skew) == CR_ERR_INVALID);
    /* Accepted versions do not move the bound: no ratchet by repeated requests. */
    cr_hlc_observe(&h, (uint64_t)(now + 50000) << 16);
    CR_CHECK(cr_hlc_check(&h, (uint64_t)(now + 100000) << 16, skew) == CR_ERR_INVALID);
    /* A clock seeded high (shards that hold high versions) accepts what lies below it. */
    cr_hlc_observe(&h, (uint64_t)1 << 63);
    CR_CHECK(cr_hlc_last(&h) == (uint64_t)1 << 63);
    CR_CHECK(cr_hlc_check(&h, ((uint64_t)1 << 63) - 7, skew) == CR_OK);
    CR_CHECK(cr_hlc_check(&h, ((uint64_t)1 << 63) + 1, skew) == CR_ERR_INVALID);
}

int main(void)
{
    CR_TEST_BEGIN();
    cr_log_set_level(CR_LOG_WARN);
    test_err();
    test_arena();
    test_config();
    test_clock();
    test_hlc_no_wrap();
    test_hlc_skew();
    return CR_TEST_END();
}
