/* test.h — the minimal check macros of cirrus's unit tests (header-only).
 *
 *   int main(void) { CR_TEST_BEGIN(); CR_CHECK(x == 1); ...; return CR_TEST_END(); }
 *
 * A failed check prints file:line and the expression and the test goes on; CR_TEST_END()
 * prints "N passed, N failed" and returns the exit status: 1 when a check failed, and 1 too
 * when no check was made at all (a run that checked nothing proves nothing; a test that
 * cannot run exits 77, skipped, and says why). cr_test_shared_dir() finds ../shared (env
 * CIRRUS_SHARED_DIR) or exits 77 (skipped) saying why.
 */
#ifndef CR_TEST_H
#define CR_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static int cr_test_passed;
static int cr_test_failed;

#define CR_TEST_BEGIN() (cr_test_passed = 0, cr_test_failed = 0)

#define CR_CHECK(expr)                                                                     \
    do {                                                                                   \
        if (expr) {                                                                        \
            cr_test_passed++;                                                              \
        } else {                                                                           \
            cr_test_failed++;                                                              \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr);       \
        }                                                                                  \
    } while (0)

#define CR_CHECK_MSG(expr, ...)                                                            \
    do {                                                                                   \
        if (expr) {                                                                        \
            cr_test_passed++;                                                              \
        } else {                                                                           \
            cr_test_failed++;                                                              \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #expr);       \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
        }                                                                                  \
    } while (0)

#define CR_CHECK_NEAR(a, b, tol) CR_CHECK_MSG(fabs((double)(a) - (double)(b)) <= (tol),   \
                                              "%g vs %g", (double)(a), (double)(b))

static inline int cr_test_end(void)
{
    printf("%d passed, %d failed\n", cr_test_passed, cr_test_failed);
    if (!cr_test_passed && !cr_test_failed) {
        fprintf(stderr, "no checks were made: a test that cannot run must exit 77 (skipped) "
                        "and say why\n");
        return 1;
    }
    return cr_test_failed ? 1 : 0;
}
#define CR_TEST_END() cr_test_end()

/* The shared data folder, or exit 77 with the reason when it is absent. */
static inline const char *cr_test_shared_dir(void)
{
    const char *dir = getenv("CIRRUS_SHARED_DIR");
    struct stat st;
    if (!dir || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        printf("SKIP: shared data folder not found (CIRRUS_SHARED_DIR=%s)\n",
               dir ? dir : "(unset)");
        exit(77);
    }
    return dir;
}

#endif
