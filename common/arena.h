/* arena.h — bump allocator for per-request scratch memory.
 *
 *   cr_arena a; cr_arena_init(&a, 1 << 16);
 *   float *tmp = cr_arena_alloc(&a, n * sizeof *tmp);   // NULL when out of memory
 *   ...; cr_arena_reset(&a);   // keeps the first block for the next request
 *   cr_arena_release(&a);
 *
 * Allocations are 16-byte aligned (64 for cr_arena_alloc_aligned64) and live until reset or
 * release. Not thread-safe: one arena per thread or per request.
 */
#ifndef CR_ARENA_H
#define CR_ARENA_H

#include <stddef.h>

typedef struct cr_arena_block cr_arena_block;

typedef struct cr_arena {
    cr_arena_block *head; /* current block; older blocks chained behind it */
    size_t block_size;    /* default size of new blocks */
    size_t used_total;    /* bytes handed out since the last reset */
} cr_arena;

void cr_arena_init(cr_arena *a, size_t block_size);
void *cr_arena_alloc(cr_arena *a, size_t size);
void *cr_arena_alloc_aligned64(cr_arena *a, size_t size);
/* Copies `len` bytes and a terminating NUL. */
char *cr_arena_strndup(cr_arena *a, const char *s, size_t len);
/* Frees every block but the first, which is kept for reuse. */
void cr_arena_reset(cr_arena *a);
void cr_arena_release(cr_arena *a);

#endif
