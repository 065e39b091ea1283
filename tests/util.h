/* Test helpers: fixture paths, file reading, failure reporting. Each test program exits
 * non-zero on failure and prints details only on failure or with -v. */
#ifndef DSI_TESTS_UTIL_H
#define DSI_TESTS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern int tu_verbose;
extern int tu_failures;

/* Parse -v; call first in main(). */
void tu_init(int argc, char **argv);
/* Path of a fixture file under $DSI_FIXTURES (default build/fixtures); a static buffer,
 * valid until the next call on the same slot (0..7). */
const char *tu_fixture(int slot, const char *rel);
/* Read a whole file (NUL-terminated); aborts the test on failure. */
char *tu_read(const char *path, size_t *len);
/* Record a failure with a message (printed). */
void tu_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Print the summary line and return the exit status. */
int tu_finish(const char *name);
/* A temporary file path unique to this process (slot 0..7). */
const char *tu_tmp(int slot, const char *suffix);
/* Capture log lines into a buffer (last message), for tests of error messages. */
void tu_capture_log(bool on);
const char *tu_last_log(void);

/* `size` bytes that end exactly at an inaccessible page, so that any read past the end
 * crashes (libdeflate's test_util idea). Free with tu_guarded_free. */
void *tu_guarded_alloc(size_t size);
void tu_guarded_free(void *p, size_t size);

#define TU_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) tu_fail(__FILE__, __LINE__, __VA_ARGS__);                                     \
    } while (0)

#define TU_LOG(...)                                                                                \
    do {                                                                                           \
        if (tu_verbose) printf(__VA_ARGS__);                                                       \
    } while (0)

#endif
