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

/* A read-only, private mapping of a whole file. `data` is NULL for an empty file. */
struct dsi_mapped_file {
    const void *data;
    size_t size;
};

/* Map `path` read-only. On failure logs the cause (with errno text) and returns
 * DSI_ERR_IO; `out` is zeroed. Release with dsi_file_unmap (accepts a zeroed struct). */
enum dsi_status dsi_file_map(const char *path, struct dsi_mapped_file *out);
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
