/* safetensors reader: a single file, or a sharded checkpoint described by
 * model.safetensors.index.json (docs/safetensors.md sections 1-2).
 *
 * Files are mapped read-only and validated as hostile input: the header length, every
 * dtype, shape and offset pair, duplicate names, and that the tensors tile the data buffer
 * exactly. Tensor data are views into the mappings (possibly unaligned). */
#ifndef DSI_CORE_SAFETENSORS_H
#define DSI_CORE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/log.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DSI_ST_MAX_DIMS 8

enum dsi_st_dtype {
    DSI_ST_BOOL, DSI_ST_U8, DSI_ST_I8, DSI_ST_F8_E5M2, DSI_ST_F8_E4M3, DSI_ST_F8_E8M0,
    DSI_ST_F8_E4M3FNUZ, DSI_ST_F8_E5M2FNUZ, DSI_ST_I16, DSI_ST_U16, DSI_ST_F16, DSI_ST_BF16,
    DSI_ST_I32, DSI_ST_U32, DSI_ST_F32, DSI_ST_I64, DSI_ST_U64, DSI_ST_F64, DSI_ST_C64,
    DSI_ST_F4, DSI_ST_F6_E2M3, DSI_ST_F6_E3M2,
    DSI_ST_DTYPE_COUNT
};

const char *dsi_st_dtype_name(enum dsi_st_dtype t);

struct dsi_st_tensor {
    const char *name;
    enum dsi_st_dtype dtype;
    int n_dims;
    int64_t shape[DSI_ST_MAX_DIMS]; /* outermost first, as PyTorch */
    int64_t n_elements;
    const void *data; /* possibly unaligned view into the mapping */
    size_t nbytes;
    int shard;        /* index of the file holding it */
};

struct dsi_st;

/* `path` is a .safetensors file, an index .json, or a directory holding either
 * model.safetensors.index.json or model.safetensors. */
enum dsi_status dsi_st_open(const char *path, struct dsi_st **out);

/* Validate one safetensors image in memory (fuzzing). The buffer is borrowed. */
enum dsi_status dsi_st_open_buffer(const void *data, size_t size, const char *label,
                                   struct dsi_st **out);

void dsi_st_free(struct dsi_st *st);

int64_t dsi_st_count(const struct dsi_st *st);
const struct dsi_st_tensor *dsi_st_get(const struct dsi_st *st, int64_t i);
const struct dsi_st_tensor *dsi_st_find(const struct dsi_st *st, const char *name);

/* Convert n elements of an F32/F16/BF16 tensor (starting at element `first`) to float.
 * Returns DSI_ERR_UNSUPPORTED for other dtypes. */
enum dsi_status dsi_st_read_f32(const struct dsi_st_tensor *t, int64_t first, int64_t n,
                                float *dst);

#ifdef __cplusplus
}
#endif

#endif
