#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct cr_arena_block {
    cr_arena_block *next;
    size_t size;
    size_t used;
    _Alignas(64) unsigned char data[];
};

void cr_arena_init(cr_arena *a, size_t block_size)
{
    a->head = NULL;
    a->block_size = block_size ? block_size : 65536;
    a->used_total = 0;
}

static cr_arena_block *block_new(size_t size)
{
    /* aligned_alloc: the data area must really be 64-byte aligned, malloc gives 16. */
    size_t total = (sizeof(cr_arena_block) + size + 63) & ~(size_t)63;
    cr_arena_block *b = aligned_alloc(64, total);
    if (!b)
        return NULL;
    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

static void *arena_alloc_align(cr_arena *a, size_t size, size_t align)
{
    cr_arena_block *b = a->head;
    size_t off;

    if (size > SIZE_MAX / 2)
        return NULL;
    if (b) {
        off = (b->used + align - 1) & ~(align - 1);
        if (off <= b->size && size <= b->size - off) {
            b->used = off + size;
            a->used_total += size;
            return b->data + off;
        }
    }
    b = block_new(size + align > a->block_size ? size + align : a->block_size);
    if (!b)
        return NULL;
    b->next = a->head;
    a->head = b;
    b->used = size;
    a->used_total += size;
    return b->data;
}

void *cr_arena_alloc(cr_arena *a, size_t size)
{
    return arena_alloc_align(a, size ? size : 1, 16);
}

void *cr_arena_alloc_aligned64(cr_arena *a, size_t size)
{
    return arena_alloc_align(a, size ? size : 1, 64);
}

char *cr_arena_strndup(cr_arena *a, const char *s, size_t len)
{
    char *p = cr_arena_alloc(a, len + 1);
    if (!p)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void cr_arena_reset(cr_arena *a)
{
    cr_arena_block *b = a->head;
    while (b && b->next) {
        cr_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = b;
    if (b)
        b->used = 0;
    a->used_total = 0;
}

void cr_arena_release(cr_arena *a)
{
    cr_arena_reset(a);
    free(a->head);
    a->head = NULL;
}
