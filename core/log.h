/* Status codes, logging and assertions shared by every dsinfer module.
 *
 * Two kinds of failure, never mixed (STYLE.md section 4):
 *   - expected failures (bad file, no memory, no device) return an `enum dsi_status`
 *     and log one line naming the function and the cause;
 *   - broken invariants (bugs) stop the process with DSI_ASSERT / DSI_ABORT.
 * Library code never prints to stdout and never calls exit(); messages go through the
 * log callback, which defaults to stderr. */
#ifndef DSI_CORE_LOG_H
#define DSI_CORE_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum dsi_status {
    DSI_OK = 0,
    DSI_ERR_IO,          /* a file could not be opened, read or written */
    DSI_ERR_FORMAT,      /* malformed, truncated or hostile input */
    DSI_ERR_UNSUPPORTED, /* well-formed, but a feature we do not implement */
    DSI_ERR_NOMEM,       /* allocation failed */
    DSI_ERR_ARG,         /* the caller passed an invalid argument */
    DSI_ERR_NOT_FOUND,   /* a requested key, tensor or token does not exist */
    DSI_ERR_DEVICE,      /* GPU missing, lost or out of memory */
    DSI_ERR_LIMIT,       /* a size limit was reached (context full, request too large) */
    DSI_STATUS_COUNT
};

/* Short English name of a status ("format error", ...). Never NULL. */
const char *dsi_status_str(enum dsi_status s);

enum dsi_log_level {
    DSI_LOG_ERROR = 0,
    DSI_LOG_WARN = 1,
    DSI_LOG_INFO = 2,
    DSI_LOG_DEBUG = 3,
};

/* A log sink receives one complete line (no trailing newline). */
typedef void (*dsi_log_fn)(enum dsi_log_level level, const char *msg, void *user);

/* Install a log sink (NULL restores the default, which writes WARN and ERROR lines to
 * stderr). Process-wide: call it once at start-up, before other threads use the library.
 * This and the CPU kernel table are the only process-wide state in the library. */
void dsi_log_set(dsi_log_fn fn, void *user);

/* Messages above `level` are dropped before formatting. Default DSI_LOG_WARN. */
void dsi_log_set_level(enum dsi_log_level level);
enum dsi_log_level dsi_log_get_level(void);

void dsi_log(enum dsi_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void dsi_logv(enum dsi_log_level level, const char *fmt, va_list ap);

#define DSI_LOG_ERR(...) dsi_log(DSI_LOG_ERROR, __VA_ARGS__)
#define DSI_LOG_WRN(...) dsi_log(DSI_LOG_WARN, __VA_ARGS__)
#define DSI_LOG_INF(...) dsi_log(DSI_LOG_INFO, __VA_ARGS__)
#define DSI_LOG_DBG(...) dsi_log(DSI_LOG_DEBUG, __VA_ARGS__)

/* A progress bar on stderr for long file jobs (convert, quantize, synth): redrawn at most
 * every 0.5% of `total`; off when `on` is false. */
struct dsi_progress {
    const char *label;
    uint64_t total, done, shown;
    bool on;
};
void dsi_progress_add(struct dsi_progress *p, uint64_t n);
/* End the bar's line if anything was drawn. */
void dsi_progress_end(struct dsi_progress *p);

/* Bugs only: print file:line and the message, then abort. */
void dsi_abort_impl(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

#define DSI_ABORT(...) dsi_abort_impl(__FILE__, __LINE__, __VA_ARGS__)
#define DSI_ASSERT(x)                                                                              \
    do {                                                                                           \
        if (!(x)) DSI_ABORT("assertion failed: %s", #x);                                           \
    } while (0)

#ifdef __cplusplus
}
#endif

#endif
