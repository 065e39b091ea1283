/* Chat formatting: render a conversation with the model's Jinja chat template (or an
 * override: a file, or one of the built-in templates by name), as Hugging Face's
 * apply_chat_template does. */
#ifndef DSI_CHAT_H
#define DSI_CHAT_H

#include <stdbool.h>

#include "core/log.h"
#include "src/model.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cJSON;

/* Built-in templates, for models without one: "chatml", "deepseek-r1", "deepseek-v2",
 * "llama3", "plain". NULL for an unknown name. */
const char *dsi_chat_builtin(const char *name);

/* The template text for a model: `override` names a built-in template or a file; else the
 * model's own. *owned receives memory the caller frees (NULL if none). Errors are logged:
 * no template at all, an unreadable file. */
enum dsi_status dsi_chat_template_for(const struct dsi_model *m, const char *override,
                                      const char **tmpl, char **owned);

struct dsi_chat_params {
    bool add_generation_prompt;  /* end with the assistant's turn opening */
    const struct cJSON *extra;   /* more template variables (tools, enable_thinking, ...) */
};

/* Render messages (a JSON array of {"role", "content", ...}) with a template; bos_token and
 * eos_token come from the model's tokenizer. *out is malloc'd, NUL-terminated. */
enum dsi_status dsi_chat_render(const struct dsi_model *m, const char *tmpl,
                                const struct cJSON *messages, const struct dsi_chat_params *p,
                                char **out);

#ifdef __cplusplus
}
#endif

#endif
