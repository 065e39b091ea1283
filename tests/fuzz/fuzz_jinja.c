/* libFuzzer target: chat templates come from model files, so the Jinja parser and evaluator
 * see hostile input. Parse the input and render it with a small conversation. */
#include <cJSON.h>
#include <stdint.h>
#include <stdlib.h>

#include "src/jinja.h"

static void quiet(enum dsi_log_level l, const char *m, void *u) { (void)l, (void)m, (void)u; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dsi_log_set(quiet, NULL);
    static cJSON *vars;
    if (!vars)
        vars = cJSON_Parse("{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
                           "{\"role\": \"user\", \"content\": \"Hi <think>x</think>\"},"
                           "{\"role\": \"assistant\", \"content\": \"Hello\", \"tool_calls\": "
                           "[{\"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1}}}]}],"
                           "\"add_generation_prompt\": true, \"bos_token\": \"<s>\", "
                           "\"eos_token\": \"</s>\", \"tools\": [{\"name\": \"f\"}]}");
    struct dsi_jinja *t;
    if (dsi_jinja_parse((const char *)data, size, &t) != DSI_OK) return 0;
    char *out = NULL;
    struct dsi_jinja_opts o = {1795305600};
    if (dsi_jinja_render(t, vars, &o, &out, NULL) == DSI_OK) free(out);
    dsi_jinja_free(t);
    return 0;
}
