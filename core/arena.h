/* A bump allocator: one block allocated up front, carved into aligned pieces, released all
 * at once (STYLE.md section 5). Used for per-context scratch whose size is known from the
 * model and context parameters. */
#ifndef DSI_CORE_ARENA_H
#define DSI_CORE_ARENA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DSI_ALIGN 64 /* alignment of every arena allocation: a cache line, a ZMM register */
#define DSI_PAD(x, a) (((x) + (a)-1) / (a) * (a))

struct dsi_arena {
    char *base;
    size_t size, used;
};

/* Allocate `size` bytes of backing store; false on failure. */
int dsi_arena_init(struct dsi_arena *a, size_t size);
void dsi_arena_free(struct dsi_arena *a);
/* An aligned, zero-filled piece, or NULL if the arena is full. */
void *dsi_arena_alloc(struct dsi_arena *a, size_t size);
/* Bytes dsi_arena_alloc(size) will consume: for sizing an arena in a first pass. */
static inline size_t dsi_arena_need(size_t size) { return DSI_PAD(size, DSI_ALIGN); }

#ifdef __cplusplus
}
#endif

#endif
