/* Test helpers (see util.h). */
#include "tests/util.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/file.h"
#include "core/log.h"

int tu_verbose;
int tu_failures;
static int capture;
static char last_log[1024];

static void log_sink(enum dsi_log_level level, const char *msg, void *user) {
    (void)user;
    if (capture) {
        snprintf(last_log, sizeof last_log, "%s", msg);
        if (tu_verbose) fprintf(stderr, "[log %d] %s\n", level, msg);
        return;
    }
    fprintf(stderr, "%s%s\n", level == DSI_LOG_ERROR ? "error: " : "", msg);
}

void tu_init(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-v")) tu_verbose = 1;
    dsi_log_set(log_sink, NULL);
}

void tu_capture_log(bool on) {
    capture = on;
    if (on) last_log[0] = '\0';
}

const char *tu_last_log(void) { return last_log; }

const char *tu_fixture(int slot, const char *rel) {
    static char buf[8][1024];
    const char *root = getenv("DSI_FIXTURES");
    snprintf(buf[slot & 7], sizeof buf[0], "%s/%s", root ? root : "build/fixtures", rel);
    return buf[slot & 7];
}

const char *tu_tmp(int slot, const char *suffix) {
    static char buf[8][256];
    const char *dir = getenv("TMPDIR");
    snprintf(buf[slot & 7], sizeof buf[0], "%s/dsi-test-%d-%d%s", dir ? dir : "/tmp", (int)getpid(),
             slot, suffix ? suffix : "");
    return buf[slot & 7];
}

char *tu_read(const char *path, size_t *len) {
    char *buf;
    size_t n;
    if (dsi_file_read_all(path, (size_t)1 << 30, &buf, &n) != DSI_OK) {
        fprintf(stderr, "FATAL: cannot read fixture %s\n", path);
        exit(2);
    }
    if (len) *len = n;
    return buf;
}

void tu_fail(const char *file, int line, const char *fmt, ...) {
    tu_failures++;
    if (tu_failures > 50) return; /* enough detail */
    fprintf(stderr, "%s:%d: FAIL: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int tu_finish(const char *name) {
    if (tu_failures) {
        fprintf(stderr, "%s: %d failure(s)\n", name, tu_failures);
        return 1;
    }
    if (tu_verbose) printf("%s: ok\n", name);
    return 0;
}

void *tu_guarded_alloc(size_t size) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE), span = (size + page - 1) / page * page;
    char *base = mmap(NULL, span + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
        fprintf(stderr, "FATAL: mmap failed\n");
        exit(2);
    }
    mprotect(base + span, page, PROT_NONE);
    return base + span - size;
}

void tu_guarded_free(void *p, size_t size) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE), span = (size + page - 1) / page * page;
    munmap((char *)p + size - span, span + page);
}
