/* progress.h — a progress bar on stderr for long CLI work (load, ingest, builds):
 *   [=========>          ] 48% 96000/200000  21.3k/s  ETA 5s  label
 * Redraws at most 10 times a second; on a non-terminal stderr prints a line every 10%. */
#ifndef CR_PROGRESS_H
#define CR_PROGRESS_H

#include <stdint.h>

typedef struct cr_progress {
    const char *label;
    uint64_t total, done;
    uint64_t start_us, last_draw_us;
    int tty, last_decile, quiet;
} cr_progress;

void cr_progress_begin(cr_progress *p, const char *label, uint64_t total, int quiet);
void cr_progress_add(cr_progress *p, uint64_t n);
void cr_progress_end(cr_progress *p);

#endif
