/* Logging sink, status names and the abort path (see log.h). */
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>

static const char *const status_names[DSI_STATUS_COUNT] = {
    [DSI_OK] = "ok",
    [DSI_ERR_IO] = "I/O error",
    [DSI_ERR_FORMAT] = "format error",
    [DSI_ERR_UNSUPPORTED] = "unsupported",
    [DSI_ERR_NOMEM] = "out of memory",
    [DSI_ERR_ARG] = "invalid argument",
    [DSI_ERR_NOT_FOUND] = "not found",
    [DSI_ERR_DEVICE] = "device error",
    [DSI_ERR_LIMIT] = "limit reached",
};

const char *dsi_status_str(enum dsi_status s) {
    if ((unsigned)s >= DSI_STATUS_COUNT) return "unknown status";
    return status_names[s];
}

static void log_default(enum dsi_log_level level, const char *msg, void *user) {
    (void)user;
    static const char *const prefix[] = {"error: ", "warning: ", "", ""};
    fprintf(stderr, "%s%s\n", prefix[level <= DSI_LOG_DEBUG ? level : DSI_LOG_DEBUG], msg);
}

/* The documented process-wide log sink (log.h). */
static dsi_log_fn g_log_fn = log_default;
static void *g_log_user;
static enum dsi_log_level g_log_level = DSI_LOG_WARN;

void dsi_log_set(dsi_log_fn fn, void *user) {
    g_log_fn = fn ? fn : log_default;
    g_log_user = fn ? user : NULL;
}

void dsi_log_set_level(enum dsi_log_level level) { g_log_level = level; }
enum dsi_log_level dsi_log_get_level(void) { return g_log_level; }

void dsi_logv(enum dsi_log_level level, const char *fmt, va_list ap) {
    if (level > g_log_level) return;
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    g_log_fn(level, buf, g_log_user);
}

void dsi_log(enum dsi_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    dsi_logv(level, fmt, ap);
    va_end(ap);
}

void dsi_abort_impl(const char *file, int line, const char *fmt, ...) {
    fflush(stdout);
    fprintf(stderr, "%s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

void dsi_progress_add(struct dsi_progress *p, uint64_t n) {
    p->done += n;
    if (!p->on || p->total == 0) return;
    if (p->done < p->total && p->done - p->shown < p->total / 200) return;
    p->shown = p->done ? p->done : 1;
    double frac = p->done >= p->total ? 1.0 : (double)p->done / (double)p->total;
    char bar[41];
    for (int i = 0; i < 40; i++) bar[i] = i < (int)(frac * 40) ? '#' : '.';
    bar[40] = '\0';
    fprintf(stderr, "\r%s: [%s] %3d%%  %.1f / %.1f MiB", p->label, bar, (int)(frac * 100),
            p->done / 1048576.0, p->total / 1048576.0);
}

void dsi_progress_end(struct dsi_progress *p) {
    if (p->on && p->shown) fputc('\n', stderr);
    p->shown = 0;
}
