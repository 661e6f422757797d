#include "cli/progress.h"

#include <stdio.h>
#include <unistd.h>

#include "common/clock.h"

static void draw(cr_progress *p, int final)
{
    double secs = (double)(cr_clock_mono_us() - p->start_us) / 1e6;
    double rate = secs > 0 ? (double)p->done / secs : 0;
    double frac = p->total ? (double)p->done / (double)p->total : 1.0;
    char bar[31];
    int filled = (int)(frac * 30);
    if (filled > 30)
        filled = 30;
    for (int i = 0; i < 30; i++)
        bar[i] = i < filled ? '=' : (i == filled ? '>' : ' ');
    bar[30] = '\0';
    if (p->tty) {
        fprintf(stderr, "\r[%s] %3.0f%% %llu/%llu  %.1fk/s  ETA %.0fs  %s%s", bar, frac * 100,
                (unsigned long long)p->done, (unsigned long long)p->total, rate / 1000,
                rate > 0 ? (double)(p->total - (p->done < p->total ? p->done : p->total)) / rate
                         : 0.0,
                p->label, final ? "\n" : "");
    } else {
        fprintf(stderr, "%s: %llu/%llu (%.0f%%) %.1fk/s\n", p->label,
                (unsigned long long)p->done, (unsigned long long)p->total, frac * 100,
                rate / 1000);
    }
    fflush(stderr);
}

void cr_progress_begin(cr_progress *p, const char *label, uint64_t total, int quiet)
{
    p->label = label;
    p->total = total;
    p->done = 0;
    p->start_us = cr_clock_mono_us();
    p->last_draw_us = 0;
    p->tty = isatty(STDERR_FILENO);
    p->last_decile = 0;
    p->quiet = quiet;
}

void cr_progress_add(cr_progress *p, uint64_t n)
{
    uint64_t now;
    p->done += n;
    if (p->quiet)
        return;
    now = cr_clock_mono_us();
    if (p->tty) {
        if (now - p->last_draw_us >= 100000) {
            p->last_draw_us = now;
            draw(p, 0);
        }
    } else if (p->total) {
        int decile = (int)(p->done * 10 / p->total);
        if (decile > p->last_decile) {
            p->last_decile = decile;
            draw(p, 0);
        }
    }
}

void cr_progress_end(cr_progress *p)
{
    if (!p->quiet && (p->tty || p->last_decile < 10))
        draw(p, 1);
}
