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

/* MemAvailable from /proc/meminfo in bytes, 0 when unknown. */
static uint64_t mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[128];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    fclose(f);
    return (uint64_t)kb * 1024;
}

/* Read the whole file into 2 MiB-aligned anonymous memory advised for huge pages. */
static enum dsi_status copy_in(int fd, const char *path, size_t size, struct dsi_mapped_file *out) {
    const size_t huge = (size_t)2 << 20;
    size_t rsize = size + huge;
    char *r = mmap(NULL, rsize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (r == MAP_FAILED) {
        DSI_LOG_ERR("cannot allocate %zu bytes to load '%s': %s", size, path, strerror(errno));
        return DSI_ERR_NOMEM;
    }
    char *p = (char *)(((uintptr_t)r + huge - 1) & ~(uintptr_t)(huge - 1));
#ifdef MADV_HUGEPAGE
    madvise(p, size, MADV_HUGEPAGE);
#endif
    for (size_t done = 0; done < size;) {
        size_t want = size - done < ((size_t)1 << 28) ? size - done : ((size_t)1 << 28);
        ssize_t got = pread(fd, p + done, want, (off_t)done);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            DSI_LOG_ERR("cannot read '%s' at offset %zu: %s", path, done,
                        got < 0 ? strerror(errno) : "unexpected end of file");
            munmap(r, rsize);
            return DSI_ERR_IO;
        }
        done += (size_t)got;
    }
    mprotect(p, size, PROT_READ);
    /* the copy is what runs: let the page cache give the file's pages back */
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    out->data = p;
    out->region = r;
    out->region_size = rsize;
    out->copied = true;
    return DSI_OK;
}

enum dsi_status dsi_file_load(const char *path, enum dsi_load_mode mode,
                              struct dsi_mapped_file *out) {
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
    if (mode == DSI_LOAD_AUTO) {
        uint64_t avail = mem_available();
        mode = size >= ((size_t)256 << 20) && avail > (uint64_t)size + ((uint64_t)1 << 30)
                   ? DSI_LOAD_COPY
                   : DSI_LOAD_MMAP;
    }
    if (size > 0 && mode == DSI_LOAD_COPY) {
        enum dsi_status s = copy_in(fd, path, size, out);
        close(fd);
        if (!s) out->size = size;
        return s;
    }
    if (size > 0) {
        void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            DSI_LOG_ERR("cannot map '%s' (%zu bytes): %s", path, size, strerror(errno));
            close(fd);
            return DSI_ERR_IO;
        }
        out->data = p;
        out->region = p;
        out->region_size = size;
    }
    out->size = size;
    close(fd); /* the mapping keeps the file alive */
    return DSI_OK;
}

enum dsi_status dsi_file_map(const char *path, struct dsi_mapped_file *out) {
    return dsi_file_load(path, DSI_LOAD_MMAP, out);
}

void dsi_file_unmap(struct dsi_mapped_file *m) {
    if (m && m->region) munmap(m->region, m->region_size);
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
