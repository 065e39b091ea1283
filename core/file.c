/* File mapping and whole-file reads (see file.h). POSIX only. */
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum dsi_status dsi_file_map(const char *path, struct dsi_mapped_file *out) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        DSI_LOG_ERR("cannot open '%s': %s", path, strerror(errno));
        return DSI_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        DSI_LOG_ERR("'%s' is not a regular file", path);
        close(fd);
        return DSI_ERR_IO;
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        DSI_LOG_ERR("'%s' is too large to map", path);
        close(fd);
        return DSI_ERR_IO;
    }
    size_t size = (size_t)st.st_size;
    if (size > 0) {
        void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            DSI_LOG_ERR("cannot map '%s' (%zu bytes): %s", path, size, strerror(errno));
            close(fd);
            return DSI_ERR_IO;
        }
        out->data = p;
    }
    out->size = size;
    close(fd); /* the mapping keeps the file alive */
    return DSI_OK;
}

void dsi_file_unmap(struct dsi_mapped_file *m) {
    if (m && m->data) munmap((void *)m->data, m->size);
    if (m) memset(m, 0, sizeof *m);
}

enum dsi_status dsi_file_read_all(const char *path, size_t max_size, char **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        DSI_LOG_ERR("cannot open '%s': %s", path, strerror(errno));
        return DSI_ERR_IO;
    }
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap + 1);
    if (!p) {
        fclose(f);
        return DSI_ERR_NOMEM;
    }
    for (;;) {
        if (n == cap) {
            if (cap > max_size) break;
            size_t ncap = cap * 2;
            char *q = realloc(p, ncap + 1);
            if (!q) {
                free(p);
                fclose(f);
                return DSI_ERR_NOMEM;
            }
            p = q;
            cap = ncap;
        }
        size_t r = fread(p + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        DSI_LOG_ERR("error reading '%s'", path);
        free(p);
        return DSI_ERR_IO;
    }
    if (n > max_size) {
        DSI_LOG_ERR("'%s' is larger than the limit of %zu bytes", path, max_size);
        free(p);
        return DSI_ERR_LIMIT;
    }
    p[n] = '\0';
    *buf = p;
    *len = n;
    return DSI_OK;
}

char *dsi_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *s = malloc(a + b + 2);
    if (!s) return NULL;
    memcpy(s, dir, a);
    size_t k = a;
    if (a > 0 && dir[a - 1] != '/') s[k++] = '/';
    memcpy(s + k, name, b + 1);
    return s;
}

bool dsi_path_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool dsi_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}
