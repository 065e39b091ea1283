/* Chat formatting (see chat.h). */
#include "src/chat.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "src/jinja.h"

/* Short templates of our own for models that ship none; they follow the formats of
 * docs/models.md (A.5, B.3, D.7) and the usual ChatML / Llama 3 layouts. */
static const struct {
    const char *name, *src;
} builtins[] = {
    {"chatml",
     "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
     "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"},
    {"deepseek-r1",
     "{% set ns = namespace(sys='') %}{% for m in messages %}{% if m.role == 'system' %}"
     "{% set ns.sys = m.content %}{% endif %}{% endfor %}{{ bos_token }}{{ ns.sys }}"
     "{% for m in messages %}{% if m.role == 'user' %}{{ '<｜User｜>' + m.content }}"
     "{% elif m.role == 'assistant' %}{% set c = m.content %}{% if '</think>' in c %}"
     "{% set c = c.split('</think>')[-1] %}{% endif %}{{ '<｜Assistant｜>' + c + '<｜end▁of▁sentence｜>' }}"
     "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"},
    {"deepseek-v2",
     "{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}{{ 'User: ' + m.content + '\\n\\n' }}"
     "{% elif m.role == 'assistant' %}{{ 'Assistant: ' + m.content + eos_token }}"
     "{% elif m.role == 'system' %}{{ m.content + '\\n\\n' }}{% endif %}{% endfor %}"
     "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"},
    {"llama3",
     "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m.role + '<|end_header_id|>\\n\\n'"
     " + m.content | trim + '<|eot_id|>' }}{% endfor %}"
     "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"},
    {"plain",
     "{% for m in messages %}{{ m.role }}:\n{{ m.content }}\n\n{% endfor %}"
     "{% if add_generation_prompt %}assistant:\n{% endif %}"},
};

const char *dsi_chat_builtin(const char *name) {
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (!strcmp(builtins[i].name, name)) return builtins[i].src;
    return NULL;
}

enum dsi_status dsi_chat_template_for(const struct dsi_model *m, const char *override,
                                      const char **tmpl, char **owned) {
    *tmpl = NULL;
    *owned = NULL;
    if (override) {
        const char *b = dsi_chat_builtin(override);
        if (b) {
            *tmpl = b;
            return DSI_OK;
        }
        size_t len;
        enum dsi_status s = dsi_file_read_all(override, 1 << 20, owned, &len);
        if (s) {
            DSI_LOG_ERR("chat template '%s' is neither a built-in name (chatml, deepseek-r1, "
                        "deepseek-v2, llama3, plain) nor a readable file", override);
            return s;
        }
        *tmpl = *owned;
        return DSI_OK;
    }
    *tmpl = dsi_model_chat_template(m);
    if (!*tmpl) {
        DSI_LOG_ERR("the model has no chat template; choose one with --chat-template NAME|FILE "
                    "(built-in: chatml, deepseek-r1, deepseek-v2, llama3, plain)");
        return DSI_ERR_NOT_FOUND;
    }
    return DSI_OK;
}

static void add_token_text(cJSON *vars, const char *key, const struct dsi_tokenizer *t, int32_t id) {
    size_t len;
    const char *s = id >= 0 ? dsi_tokenizer_token_text(t, id, &len) : NULL;
    if (!s) {
        cJSON_AddStringToObject(vars, key, "");
        return;
    }
    char *z = strndup(s, len);
    cJSON_AddStringToObject(vars, key, z ? z : "");
    free(z);
}

enum dsi_status dsi_chat_render(const struct dsi_model *m, const char *tmpl,
                                const struct cJSON *messages, const struct dsi_chat_params *p,
                                char **out) {
    *out = NULL;
    struct dsi_jinja *t;
    enum dsi_status s = dsi_jinja_parse(tmpl, strlen(tmpl), &t);
    if (s) {
        DSI_LOG_ERR("the chat template cannot be parsed; override it with --chat-template NAME|FILE");
        return s;
    }
    cJSON *vars = p && p->extra ? cJSON_Duplicate(p->extra, 1) : cJSON_CreateObject();
    if (!vars) {
        dsi_jinja_free(t);
        return DSI_ERR_NOMEM;
    }
    cJSON_AddItemToObject(vars, "messages", cJSON_Duplicate(messages, 1));
    cJSON_AddBoolToObject(vars, "add_generation_prompt", p ? p->add_generation_prompt : true);
    const struct dsi_tokenizer *tok = dsi_model_tokenizer(m);
    if (!cJSON_GetObjectItem(vars, "bos_token")) add_token_text(vars, "bos_token", tok, dsi_tokenizer_bos(tok));
    if (!cJSON_GetObjectItem(vars, "eos_token")) add_token_text(vars, "eos_token", tok, dsi_tokenizer_eos(tok));
    size_t len;
    s = dsi_jinja_render(t, vars, NULL, out, &len);
    cJSON_Delete(vars);
    dsi_jinja_free(t);
    return s;
}
