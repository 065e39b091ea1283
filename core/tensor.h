/* Tensor descriptors: type, shape and byte strides of a block of memory the descriptor does
 * not own (weights are views into the mapped model file; activations live in a context's
 * scratch arena). ne[0] is the fastest-varying dimension, as in GGUF; nb[] are byte strides. */
#ifndef DSI_CORE_TENSOR_H
#define DSI_CORE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DSI_MAX_DIMS 4

/* How a quantized matrix's bytes are arranged: ggml's rows, or repacked into panels at load
 * time (then only the matmul operators read it; dsi_tensor_row does not apply). */
enum { DSI_LAYOUT_ROWS = 0, DSI_LAYOUT_Q4_0_X16 = 1, DSI_LAYOUT_Q8_0_X16 = 2, DSI_LAYOUT_Q4_K_X16 = 3,
       DSI_LAYOUT_Q6_K_X16 = 4 };

struct dsi_tensor {
    enum dsi_type type;
    int64_t ne[DSI_MAX_DIMS]; /* elements per dimension, unused ones 1 */
    size_t nb[DSI_MAX_DIMS];  /* bytes between consecutive indices of each dimension */
    void *data;               /* host memory (NULL for device-only tensors) */
    void *extra;              /* backend-specific (device buffer) */
    const char *name;         /* borrowed */
    int layout;               /* DSI_LAYOUT_ROWS, or a load-time repacking (quant/kernels.h) */
};


/* A contiguous tensor descriptor over `data`. */
static inline struct dsi_tensor dsi_tensor_make(enum dsi_type type, int64_t ne0, int64_t ne1,
                                                int64_t ne2, int64_t ne3, void *data) {
    struct dsi_tensor t = {type, {ne0, ne1, ne2, ne3}, {0, 0, 0, 0}, data, NULL, NULL, DSI_LAYOUT_ROWS};
    const struct dsi_type_traits *tr = dsi_type_traits(type);
    t.nb[0] = (size_t)tr->size;
    t.nb[1] = dsi_row_size(type, ne0);
    t.nb[2] = t.nb[1] * (size_t)ne1;
    t.nb[3] = t.nb[2] * (size_t)ne2;
    return t;
}

static inline int64_t dsi_tensor_nelements(const struct dsi_tensor *t) {
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

static inline int64_t dsi_tensor_nrows(const struct dsi_tensor *t) {
    return t->ne[1] * t->ne[2] * t->ne[3];
}

static inline size_t dsi_tensor_nbytes(const struct dsi_tensor *t) {
    return t->nb[3] * (size_t)t->ne[3];
}

/* Pointer to row r of a 2-D view (or of the flattened rows of a 3-D/4-D contiguous tensor). */
static inline const void *dsi_tensor_row(const struct dsi_tensor *t, int64_t r) {
    return (const char *)t->data + (size_t)r * t->nb[1];
}

#ifdef __cplusplus
}
#endif

#endif
