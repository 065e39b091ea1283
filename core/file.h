/* Files: read-only memory maps for model weights, whole-file reads for small text files
 * (JSON, prompts), and path helpers. */
#ifndef DSI_CORE_FILE_H
#define DSI_CORE_FILE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/log.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A read-only image of a whole file: a private mapping of the file, or a copy in anonymous
 * memory. `data` is NULL for an empty file. */
struct dsi_mapped_file {
    const void *data;
    size_t size;
    void *region;       /* what to unmap */
    size_t region_size;
    bool copied;        /* data is a copy in anonymous memory (DSI_LOAD_COPY) */
};

/* How model weights get into memory.
 *  MMAP: map the file; pages come from the page cache on first touch, nothing is copied, a
 *        file larger than RAM still runs (paging).
 *  COPY: read the file into anonymous memory backed by transparent huge pages (2 MiB), then
 *        drop the file's page-cache pages. On virtual machines whose small-page mappings are
 *        slow to walk, this reads weights much faster (1.5x decode on a MoE model, see
 *        docs/PERFORMANCE.md); the memory held is the file size either way.
 *  AUTO: COPY for files of at least 256 MiB that fit in the available memory with 1 GiB to
 *        spare, else MMAP. */
enum dsi_load_mode { DSI_LOAD_AUTO, DSI_LOAD_MMAP, DSI_LOAD_COPY };

/* Map `path` read-only. On failure logs the cause (with errno text) and returns
 * DSI_ERR_IO; `out` is zeroed. Release with dsi_file_unmap (accepts a zeroed struct). */
enum dsi_status dsi_file_map(const char *path, struct dsi_mapped_file *out);
/* The same with a load mode; COPY of a file that does not fit fails with DSI_ERR_NOMEM. */
enum dsi_status dsi_file_load(const char *path, enum dsi_load_mode mode,
                              struct dsi_mapped_file *out);
void dsi_file_unmap(struct dsi_mapped_file *m);

/* Read a whole file into a fresh malloc'd buffer with a terminating NUL (not counted in
 * *len). Files larger than `max_size` are refused with DSI_ERR_LIMIT. The caller frees
 * *buf with free(). */
enum dsi_status dsi_file_read_all(const char *path, size_t max_size, char **buf, size_t *len);

/* Join a directory and a file name into a fresh malloc'd string ("dir/name"). */
char *dsi_path_join(const char *dir, const char *name);

bool dsi_path_is_dir(const char *path);
bool dsi_path_exists(const char *path);

#ifdef __cplusplus
}
#endif

#endif
