/* A Jinja2 interpreter for the subset chat templates use, configured as Hugging Face's
 * apply_chat_template configures jinja2: trim_blocks and lstrip_blocks on, the loopcontrols
 * extension (break/continue), an immutable sandbox (no list mutation; namespace() objects are
 * the only assignable attributes), `tojson` that keeps non-ASCII, `raise_exception`, and
 * `strftime_now`. A template is parsed once and rendered any number of times, from several
 * threads at once.
 *
 * Supported: {{ }}, {% %}, {# #} with whitespace control (-, +); if/elif/else, for (tuple
 * unpacking, `if` filter, else, loop.* variables), set (plain, namespace attribute, block),
 * macro and calls, break/continue, filter blocks, raw; expressions with Python semantics
 * (arithmetic, comparisons, in / not in, is [not] tests, ~, conditional expressions,
 * slices, literals of every kind); the string, list and dict methods and the filters and tests
 * that templates of the DeepSeek, Qwen and Llama families use. */
#ifndef DSI_JINJA_H
#define DSI_JINJA_H

#include <stddef.h>
#include <time.h>

#include "core/log.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cJSON;
struct dsi_jinja;

/* Parse a template. A syntax error is DSI_ERR_FORMAT, logged with its line. */
enum dsi_status dsi_jinja_parse(const char *src, size_t len, struct dsi_jinja **out);
void dsi_jinja_free(struct dsi_jinja *t);

struct dsi_jinja_opts {
    time_t now; /* the time strftime_now formats (0: the current time) */
};

/* Render with the variables of a JSON object (e.g. {"messages": [...], "bos_token": "<s>",
 * "add_generation_prompt": true}). On success *out is a malloc'd NUL-terminated string the
 * caller frees. A runtime error (raise_exception, a type error, an undefined attribute of an
 * undefined value) is DSI_ERR_FORMAT, logged with its message and line. */
enum dsi_status dsi_jinja_render(const struct dsi_jinja *t, const struct cJSON *vars,
                                 const struct dsi_jinja_opts *opts, char **out, size_t *out_len);

#ifdef __cplusplus
}
#endif

#endif
