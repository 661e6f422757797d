#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

cr_log_level cr_log_threshold = CR_LOG_INFO;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR", "OFF"};

int cr_log_level_parse(const char *name)
{
    static const char *const lower[] = {"debug", "info", "warn", "error", "off"};
    for (int i = 0; i < 5; i++)
        if (strcmp(name, lower[i]) == 0)
            return i;
    return -1;
}

void cr_log_set_level(cr_log_level level)
{
    cr_log_threshold = level;
}

void cr_log_write(cr_log_level level, const char *component, uint64_t req_id, const char *fmt,
                  ...)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    size_t n;
    int w;
    va_list ap;

    if (level < CR_LOG_DEBUG || level >= CR_LOG_OFF)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    if (req_id)
        w = snprintf(line + n, sizeof line - n, ".%03ldZ %-5s %s [req %llu] ",
                     ts.tv_nsec / 1000000, level_names[level], component,
                     (unsigned long long)req_id);
    else
        w = snprintf(line + n, sizeof line - n, ".%03ldZ %-5s %s ", ts.tv_nsec / 1000000,
                     level_names[level], component);
    if (w > 0)
        n += (size_t)w < sizeof line - n ? (size_t)w : sizeof line - n - 1;
    va_start(ap, fmt);
    w = vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    if (w > 0)
        n += (size_t)w < sizeof line - n ? (size_t)w : sizeof line - n - 1;
    if (n >= sizeof line - 1)
        n = sizeof line - 2;
    line[n++] = '\n';
    /* One write per line keeps lines from different threads whole. */
    if (write(STDERR_FILENO, line, n) < 0)
        return;
}
