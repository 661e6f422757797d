/* driver.c — replays fuzz inputs without libFuzzer: `fuzz_regress_NAME FILE|DIR...` runs
 * LLVMFuzzerTestOneInput on every file (a directory: every regular file in it, sorted) and
 * exits 0 when all returned, 1 when none was found (a replay that checked nothing fails).
 * A crash or a broken invariant aborts, which ctest reports as a failure. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fileio.h"
#include "fuzz.h"

__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static int run_file(const char *path)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (cr_file_read(path, &buf, &len)) {
        fprintf(stderr, "cannot read %s\n", path);
        return -1;
    }
    LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    return 1;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Files of dir, sorted, replayed; returns how many ran (-1 on an unreadable one). */
static int run_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL, path[4096];
    size_t n = 0, cap = 0;
    int ran = 0;
    if (!d)
        return -1;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            char **grown = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *names);
            if (!grown)
                abort();
            names = grown;
        }
        if (!(names[n++] = strdup(e->d_name)))
            abort();
    }
    closedir(d);
    qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            int r = run_file(path);
            ran = r < 0 || ran < 0 ? -1 : ran + r;
        }
        free(names[i]);
    }
    free(names);
    return ran;
}

int main(int argc, char **argv)
{
    int total = 0;
    LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        int r = stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode) ? run_dir(argv[i])
                                                                : run_file(argv[i]);
        if (r < 0) {
            fprintf(stderr, "%s: unreadable\n", argv[i]);
            return 1;
        }
        total += r;
    }
    printf("%s: %d inputs replayed\n", argv[0], total);
    return total > 0 ? 0 : 1;
}
