/* log.h — leveled logging, one line per event:
 *   2026-11-27T15:08:23.123Z INFO  shard [req 42] message
 * The level check happens before any formatting (CR_LOG macros), so disabled
 * levels cost one comparison. Thread-safe: each line is one write(2) to stderr.
 */
#ifndef CR_LOG_H
#define CR_LOG_H

#include <stdint.h>

typedef enum cr_log_level {
    CR_LOG_DEBUG = 0,
    CR_LOG_INFO = 1,
    CR_LOG_WARN = 2,
    CR_LOG_ERROR = 3,
    CR_LOG_OFF = 4
} cr_log_level;

extern cr_log_level cr_log_threshold;

/* Parses "debug|info|warn|error|off"; returns -1 on an unknown name. */
int cr_log_level_parse(const char *name);
void cr_log_set_level(cr_log_level level);

/* req_id 0 means "no request". */
void cr_log_write(cr_log_level level, const char *component, uint64_t req_id, const char *fmt,
                  ...) __attribute__((format(printf, 4, 5)));

#define CR_LOG(level, comp, req, ...)                                                      \
    do {                                                                                   \
        if ((level) >= cr_log_threshold)                                                   \
            cr_log_write((level), (comp), (req), __VA_ARGS__);                             \
    } while (0)
#define CR_DEBUG(comp, ...) CR_LOG(CR_LOG_DEBUG, comp, 0, __VA_ARGS__)
#define CR_INFO(comp, ...) CR_LOG(CR_LOG_INFO, comp, 0, __VA_ARGS__)
#define CR_WARN(comp, ...) CR_LOG(CR_LOG_WARN, comp, 0, __VA_ARGS__)
#define CR_ERROR(comp, ...) CR_LOG(CR_LOG_ERROR, comp, 0, __VA_ARGS__)

#endif
