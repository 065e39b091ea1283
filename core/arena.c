/* Bump allocator (see arena.h). */
#include "core/arena.h"

#include <stdlib.h>
#include <string.h>

int dsi_arena_init(struct dsi_arena *a, size_t size) {
    a->used = 0;
    a->size = DSI_PAD(size, DSI_ALIGN);
    a->base = a->size ? aligned_alloc(DSI_ALIGN, a->size) : NULL;
    return a->size == 0 || a->base != NULL;
}

void dsi_arena_free(struct dsi_arena *a) {
    free(a->base);
    a->base = NULL;
    a->size = a->used = 0;
}

void *dsi_arena_alloc(struct dsi_arena *a, size_t size) {
    size_t need = dsi_arena_need(size);
    if (need > a->size - a->used) return NULL;
    void *p = a->base + a->used;
    a->used += need;
    memset(p, 0, need);
    return p;
}
