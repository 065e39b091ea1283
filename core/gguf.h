/* GGUF v2/v3 reader and streaming writer (docs/gguf.md).
 *
 * Reader: the file is mapped read-only and treated as hostile. Every count, length, offset,
 * dimension product and alignment is checked against the file size with overflow-safe
 * arithmetic before use; a failure logs one line naming the field and its byte offset and
 * returns DSI_ERR_FORMAT (DSI_ERR_UNSUPPORTED for big-endian files and removed types).
 * Strings and tensor data are views into the mapping; the `struct dsi_gguf` owns the
 * mapping and must outlive every view. A reader is immutable after open and may be used
 * from several threads.
 *
 * Writer: key/values and tensor descriptors are declared first, then tensor data is
 * streamed in declaration order, so writing a file never needs its size in memory. Output
 * goes to "<path>.tmp" and is renamed over <path> only when complete. */
#ifndef DSI_CORE_GGUF_H
#define DSI_CORE_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/file.h"
#include "core/log.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DSI_GGUF_DEFAULT_ALIGNMENT 32
#define DSI_GGUF_MAX_NAME 64 /* tensor names are shorter than this (ggml GGML_MAX_NAME) */
#define DSI_GGUF_MAX_DIMS 4

enum dsi_gguf_type {
    DSI_GGUF_UINT8 = 0,
    DSI_GGUF_INT8 = 1,
    DSI_GGUF_UINT16 = 2,
    DSI_GGUF_INT16 = 3,
    DSI_GGUF_UINT32 = 4,
    DSI_GGUF_INT32 = 5,
    DSI_GGUF_FLOAT32 = 6,
    DSI_GGUF_BOOL = 7,
    DSI_GGUF_STRING = 8,
    DSI_GGUF_ARRAY = 9,
    DSI_GGUF_UINT64 = 10,
    DSI_GGUF_INT64 = 11,
    DSI_GGUF_FLOAT64 = 12,
    DSI_GGUF_TYPE_COUNT
};

/* "uint32", "string", ... */
const char *dsi_gguf_type_name(uint32_t t);

/* A string inside the file: `len` bytes at `ptr`, not NUL-terminated. */
struct dsi_gguf_str {
    const char *ptr;
    uint64_t len;
};

/* An array value. For numeric/bool arrays `data` points at `count` packed little-endian
 * elements (possibly unaligned: read them with the accessors below). */
struct dsi_gguf_arr {
    enum dsi_gguf_type elem_type;
    uint64_t count;
    const void *data;
    int64_t kv; /* index of the key/value, for dsi_gguf_arr_str */
};

struct dsi_gguf_tensor {
    const char *name;   /* NUL-terminated, shorter than DSI_GGUF_MAX_NAME */
    enum dsi_type type;
    uint32_t n_dims;    /* 0..4 as stored; ne[] is padded with 1 */
    int64_t ne[DSI_GGUF_MAX_DIMS];
    uint64_t offset;    /* relative to the start of the data section */
    size_t nbytes;
    const void *data;   /* view into the mapping (NULL when nbytes == 0) */
};

struct dsi_gguf;

/* Open and validate a file. `*out` is NULL on failure. */
enum dsi_status dsi_gguf_open(const char *path, struct dsi_gguf **out);
/* The same with a load mode for the file's bytes (core/file.h; dsi_gguf_open maps). */
enum dsi_status dsi_gguf_open_mode(const char *path, enum dsi_load_mode mode,
                                   struct dsi_gguf **out);
/* True when the tensor data is a copy in anonymous memory rather than a file mapping. */
bool dsi_gguf_is_copy(const struct dsi_gguf *g);
/* A copied file's memory is read-only; the model loader may open it for writing while it
 * repacks weights in place (writable = false closes it again). False if not a copy. */
bool dsi_gguf_copy_writable(struct dsi_gguf *g, bool writable);

/* Validate a GGUF image already in memory (fuzzing, in-memory conversion). The buffer is
 * borrowed and must outlive the reader. `label` names it in messages. */
enum dsi_status dsi_gguf_open_buffer(const void *data, size_t size, const char *label,
                                     struct dsi_gguf **out);

/* Like dsi_gguf_open_buffer, but the reader takes ownership of a malloc'd buffer. */
enum dsi_status dsi_gguf_open_owned(void *data, size_t size, const char *label,
                                    struct dsi_gguf **out);

void dsi_gguf_free(struct dsi_gguf *g); /* accepts NULL */

uint32_t dsi_gguf_version(const struct dsi_gguf *g);
size_t dsi_gguf_alignment(const struct dsi_gguf *g);
size_t dsi_gguf_data_offset(const struct dsi_gguf *g); /* file offset of the data section */
size_t dsi_gguf_file_size(const struct dsi_gguf *g);
const char *dsi_gguf_label(const struct dsi_gguf *g); /* path or label given at open */

/* ---- key/values ------------------------------------------------------------------------ */

int64_t dsi_gguf_n_kv(const struct dsi_gguf *g);
const char *dsi_gguf_kv_key(const struct dsi_gguf *g, int64_t i);
enum dsi_gguf_type dsi_gguf_kv_type(const struct dsi_gguf *g, int64_t i);
int64_t dsi_gguf_find_kv(const struct dsi_gguf *g, const char *key); /* -1 if absent */

/* Typed getters by key. They return DSI_OK, DSI_ERR_NOT_FOUND when the key is absent (no
 * log line), or DSI_ERR_FORMAT when it has an incompatible type (logged, naming the key).
 * Integer getters accept any integer type whose value fits (writers are inconsistent about
 * widths, gguf.md 1.2); the float getter accepts FLOAT32/FLOAT64. */
enum dsi_status dsi_gguf_get_i64(const struct dsi_gguf *g, const char *key, int64_t *out);
enum dsi_status dsi_gguf_get_u32(const struct dsi_gguf *g, const char *key, uint32_t *out);
enum dsi_status dsi_gguf_get_f32(const struct dsi_gguf *g, const char *key, float *out);
enum dsi_status dsi_gguf_get_bool(const struct dsi_gguf *g, const char *key, bool *out);
enum dsi_status dsi_gguf_get_str(const struct dsi_gguf *g, const char *key,
                                 struct dsi_gguf_str *out);
enum dsi_status dsi_gguf_get_arr(const struct dsi_gguf *g, const char *key,
                                 struct dsi_gguf_arr *out);

/* The same by index; the value must have the stated type class. */
bool dsi_gguf_kv_as_i64(const struct dsi_gguf *g, int64_t i, int64_t *out);
bool dsi_gguf_kv_as_f64(const struct dsi_gguf *g, int64_t i, double *out);
struct dsi_gguf_str dsi_gguf_kv_str(const struct dsi_gguf *g, int64_t i);
struct dsi_gguf_arr dsi_gguf_kv_arr(const struct dsi_gguf *g, int64_t i);

/* Raw bytes of a scalar value (for copying key/values into a writer). */
const void *dsi_gguf_kv_raw(const struct dsi_gguf *g, int64_t i);

/* Array element accessors; the index must be < count. */
struct dsi_gguf_str dsi_gguf_arr_str(const struct dsi_gguf *g, const struct dsi_gguf_arr *a,
                                     uint64_t i);
int64_t dsi_gguf_arr_i64(const struct dsi_gguf_arr *a, uint64_t i);   /* integer/bool arrays */
double dsi_gguf_arr_f64(const struct dsi_gguf_arr *a, uint64_t i);    /* any numeric array */

/* ---- tensors --------------------------------------------------------------------------- */

int64_t dsi_gguf_n_tensors(const struct dsi_gguf *g);
const struct dsi_gguf_tensor *dsi_gguf_tensor(const struct dsi_gguf *g, int64_t i);
const struct dsi_gguf_tensor *dsi_gguf_find_tensor(const struct dsi_gguf *g, const char *name);

/* ---- writer ---------------------------------------------------------------------------- */

struct dsi_gguf_writer;

/* NULL on allocation failure. Alignment defaults to 32. */
struct dsi_gguf_writer *dsi_gguf_writer_init(void);
/* Frees the writer; an unfinished output file is removed. Accepts NULL. */
void dsi_gguf_writer_free(struct dsi_gguf_writer *w);

/* Key/values keep insertion order; setting an existing key replaces its value in place. */
enum dsi_status dsi_gguf_writer_set_u8(struct dsi_gguf_writer *w, const char *key, uint8_t v);
enum dsi_status dsi_gguf_writer_set_u16(struct dsi_gguf_writer *w, const char *key, uint16_t v);
enum dsi_status dsi_gguf_writer_set_u32(struct dsi_gguf_writer *w, const char *key, uint32_t v);
enum dsi_status dsi_gguf_writer_set_i32(struct dsi_gguf_writer *w, const char *key, int32_t v);
enum dsi_status dsi_gguf_writer_set_u64(struct dsi_gguf_writer *w, const char *key, uint64_t v);
enum dsi_status dsi_gguf_writer_set_f32(struct dsi_gguf_writer *w, const char *key, float v);
enum dsi_status dsi_gguf_writer_set_bool(struct dsi_gguf_writer *w, const char *key, bool v);
enum dsi_status dsi_gguf_writer_set_str(struct dsi_gguf_writer *w, const char *key,
                                        const char *s);
enum dsi_status dsi_gguf_writer_set_strn(struct dsi_gguf_writer *w, const char *key,
                                         const char *s, size_t len);
/* Numeric/bool array of `n` packed elements of `elem` (host order = little-endian). */
enum dsi_status dsi_gguf_writer_set_arr(struct dsi_gguf_writer *w, const char *key,
                                        enum dsi_gguf_type elem, const void *data, uint64_t n);
/* String array; lens may be NULL for NUL-terminated strings. */
enum dsi_status dsi_gguf_writer_set_arr_str(struct dsi_gguf_writer *w, const char *key,
                                            const char *const *strs, const size_t *lens,
                                            uint64_t n);
/* Copy key/value `i` of a reader verbatim. */
enum dsi_status dsi_gguf_writer_copy_kv(struct dsi_gguf_writer *w, const struct dsi_gguf *g,
                                        int64_t i);
/* Remove a key if present. */
void dsi_gguf_writer_remove(struct dsi_gguf_writer *w, const char *key);
/* general.alignment (power of two >= 8); also written as a key/value when not 32. */
enum dsi_status dsi_gguf_writer_set_alignment(struct dsi_gguf_writer *w, uint32_t align);

/* Declare a tensor (data follows later, in declaration order). */
enum dsi_status dsi_gguf_writer_add_tensor(struct dsi_gguf_writer *w, const char *name,
                                           enum dsi_type type, uint32_t n_dims,
                                           const int64_t *ne);

/* Bytes of tensor data all declared tensors need, with padding (for progress bars). */
uint64_t dsi_gguf_writer_data_size(const struct dsi_gguf_writer *w);

/* Write the header to "<path>.tmp" (path NULL: into memory). No key/value or tensor may be
 * added after this. */
enum dsi_status dsi_gguf_writer_begin(struct dsi_gguf_writer *w, const char *path);

/* Append tensor data; chunks may split or span nothing but the current tensor: each
 * tensor's bytes must be written completely before the next one's. Padding between
 * tensors is inserted automatically. */
enum dsi_status dsi_gguf_writer_write(struct dsi_gguf_writer *w, const void *data, size_t n);

/* Check that every tensor got all its bytes, flush, and rename the file into place. For an
 * in-memory writer, *mem / *mem_size receive a malloc'd image the caller frees (pass NULL
 * for file output). */
enum dsi_status dsi_gguf_writer_finish(struct dsi_gguf_writer *w, void **mem, size_t *mem_size);

#ifdef __cplusplus
}
#endif

#endif
