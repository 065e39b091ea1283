/* Chat templates: every render of fixtures/chat-templates/cases.jsonl (made with Python's
 * jinja2 configured as Hugging Face's apply_chat_template) reproduced byte for byte, plus
 * checks of the Jinja features real templates use beyond those cases, and error handling. */
#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "src/jinja.h"
#include "tests/util.h"

static char *render(const char *tmpl, const char *vars_json, enum dsi_status *st) {
    struct dsi_jinja *t;
    *st = dsi_jinja_parse(tmpl, strlen(tmpl), &t);
    if (*st) return NULL;
    cJSON *vars = cJSON_Parse(vars_json ? vars_json : "{}");
    char *out = NULL;
    struct dsi_jinja_opts o = {1795305600}; /* 2026-11-22 */
    *st = dsi_jinja_render(t, vars, &o, &out, NULL);
    cJSON_Delete(vars);
    dsi_jinja_free(t);
    return out;
}

static void expect(const char *tmpl, const char *vars, const char *want) {
    enum dsi_status st;
    tu_capture_log(true);
    char *got = render(tmpl, vars, &st);
    tu_capture_log(false);
    if (!got) {
        TU_CHECK(0, "template '%s' failed: %s", tmpl, tu_last_log());
        return;
    }
    TU_CHECK(!strcmp(got, want), "template '%s'\n   want: '%s'\n    got: '%s'", tmpl, want, got);
    free(got);
}

static void expect_error(const char *tmpl, const char *vars, const char *msg) {
    enum dsi_status st;
    tu_capture_log(true);
    char *got = render(tmpl, vars, &st);
    tu_capture_log(false);
    TU_CHECK(!got && st == DSI_ERR_FORMAT, "template '%s' should fail", tmpl);
    TU_CHECK(strstr(tu_last_log(), msg) != NULL, "template '%s': message '%s' lacks '%s'", tmpl,
             tu_last_log(), msg);
    free(got);
}

static void test_cases(void) {
    size_t len;
    char *text = tu_read(tu_fixture(0, "chat-templates/cases.jsonl"), &len);
    int n = 0, ok = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *c = cJSON_Parse(line);
        if (!c) continue;
        const char *file = cJSON_GetObjectItem(c, "template")->valuestring;
        char rel[256];
        snprintf(rel, sizeof rel, "chat-templates/%s", file);
        size_t tl;
        char *tmpl = tu_read(tu_fixture(1, rel), &tl);
        cJSON *vars = cJSON_CreateObject();
        cJSON_AddItemToObject(vars, "messages", cJSON_Duplicate(cJSON_GetObjectItem(c, "messages"), 1));
        cJSON_AddItemToObject(vars, "add_generation_prompt",
                              cJSON_Duplicate(cJSON_GetObjectItem(c, "add_generation_prompt"), 1));
        cJSON_AddItemToObject(vars, "bos_token", cJSON_Duplicate(cJSON_GetObjectItem(c, "bos_token"), 1));
        cJSON_AddItemToObject(vars, "eos_token", cJSON_Duplicate(cJSON_GetObjectItem(c, "eos_token"), 1));
        const cJSON *want = cJSON_GetObjectItem(c, "rendered"), *err = cJSON_GetObjectItem(c, "error");
        struct dsi_jinja *t;
        char *out = NULL;
        struct dsi_jinja_opts o = {1795305600};
        tu_capture_log(true);
        enum dsi_status st = dsi_jinja_parse(tmpl, tl, &t);
        if (!st) {
            st = dsi_jinja_render(t, vars, &o, &out, NULL);
            dsi_jinja_free(t);
        }
        tu_capture_log(false);
        const char *cs = cJSON_GetObjectItem(c, "case")->valuestring;
        if (err && cJSON_IsString(err)) {
            TU_CHECK(st != DSI_OK, "%s / %s: expected an error", file, cs);
        } else if (st) {
            TU_CHECK(0, "%s / %s: %s", file, cs, tu_last_log());
        } else if (strcmp(out, want->valuestring) != 0) {
            size_t k = 0;
            while (out[k] && out[k] == want->valuestring[k]) k++;
            TU_CHECK(0, "%s / %s: differs at byte %zu\n   want: %s\n    got: %s", file, cs, k,
                     want->valuestring + (k > 20 ? k - 20 : 0), out + (k > 20 ? k - 20 : 0));
        } else {
            ok++;
        }
        n++;
        free(out);
        free(tmpl);
        cJSON_Delete(vars);
        cJSON_Delete(c);
    }
    free(text);
    TU_LOG("chat template cases: %d/%d identical\n", ok, n);
    TU_CHECK(n >= 40, "only %d cases", n);
}

static void test_features(void) {
    expect("{{ 1 + 2 * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}|{{ 2 ** 10 }}|{{ 7 / 2 }}", NULL,
           "7|3|-4|1|2|1024|3.5");
    expect("{{ 'a' ~ 1 ~ none }}|{{ [1, 2] + [3] }}|{{ {'a': 1, 'b': 'x'} }}|{{ (1,) }}|{{ 1.0 }}|{{ 0.1 + 0.2 }}",
           NULL, "a1None|[1, 2, 3]|{'a': 1, 'b': 'x'}|(1,)|1.0|0.30000000000000004");
    expect("{{ 1e20 }}|{{ 1.5e-7 }}|{{ 123456.789 }}|{{ true }}|{{ \"it's\" }}|{{ ['it\\'s'] }}", NULL,
           "1e+20|1.5e-07|123456.789|True|it's|[\"it's\"]");
    expect("{% for x in [3, 1, 2] if x > 1 %}{{ loop.index }}/{{ loop.length }}:{{ x }}{{ ',' if not loop.last }}{% endfor %}",
           NULL, "1/2:3,2/2:2");
    expect("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}",
           "{\"d\": {\"b\": 1, \"a\": 2}}", "b=1;a=2;ba");
    expect("{% for x in [] %}x{% else %}empty{% endfor %}", NULL, "empty");
    expect("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}",
           NULL, "0134");
    expect("{% set ns = namespace(n=0) %}{% for i in range(3) %}{% set ns.n = ns.n + i %}{% set local = i %}{% endfor %}{{ ns.n }}{{ local is defined }}",
           NULL, "3False");
    expect("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', punct='?') }}",
           NULL, "Hi A! Hi B?");
    expect("{{ '  x y  '.strip() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a b  c'.split() }}|{{ 'xxhixx'.strip('x') }}|{{ 'abc'[::-1] }}|{{ 'héllo'[1:3] }}",
           NULL, "x y|['a', 'b', '', 'c']|['a', 'b', 'c']|hi|cba|él");
    expect("{{ 'Hello'.startswith('He') }}{{ 'Hello'.endswith(('x', 'lo')) }}{{ 'a-b-c'.replace('-', '+', 1) }}{{ 'AbC'.lower() }}{{ 'hello world'.title() }}",
           NULL, "TrueTruea+b-cabcHello World");
    expect("{{ [1, 2, 3] | length }}|{{ 'héllo' | length }}|{{ x | default('d') }}|{{ '' | default('e', true) }}|{{ [3, 1, 2] | sort | join('-') }}|{{ [1, 2] | first }}{{ [1, 2] | last }}",
           NULL, "3|5|d|e|1-2-3|12");
    expect("{{ {'a': 1, 'b': [1, 'é', none, true, 1.5]} | tojson }}|{{ 'q\"\\n' | tojson }}", NULL,
           "{\"a\": 1, \"b\": [1, \"é\", null, true, 1.5]}|\"q\\\"\\n\"");
    expect("{{ {'a': [1, {'b': 2}], 'c': {}} | tojson(indent=2) }}", NULL,
           "{\n  \"a\": [\n    1,\n    {\n      \"b\": 2\n    }\n  ],\n  \"c\": {}\n}");
    expect("{{ ['a', 'code_interpreter', 'b'] | reject('equalto', 'code_interpreter') | join(', ') }}|{{ [{'n': 1}, {'n': 2}] | map(attribute='n') | list }}|{{ [{'t': 'x'}, {'t': 'y'}] | selectattr('t', 'equalto', 'y') | list }}",
           NULL, "a, b|[1, 2]|[{'t': 'y'}]");
    expect("{{ x is defined }}{{ none is none }}{{ 'a' is string }}{{ {} is mapping }}{{ [1] is iterable }}{{ 3 is odd }}{{ 4 is divisibleby 2 }}{{ 1 is not string }}",
           NULL, "FalseTrueTrueTrueTrueTrueTrueTrue");
    expect("{{ 'yes' if a else 'no' }}|{{ a and 'x' or 'y' }}|{{ not a }}|{{ 'b' in 'abc' }}{{ 2 not in [1, 2] }}|{{ m.missing }}|{{ m['k'] }}",
           "{\"a\": false, \"m\": {\"k\": \"v\"}}", "no|y|True|TrueFalse||v");
    expect("{{ messages|length - 1 }}|{{ -2|abs }}|{{ strftime_now('%d %b %Y') }}", "{\"messages\": [1, 2, 3]}",
           "2|2|22 Nov 2026");
    expect("{%- if true %}\n  a\n{%- endif %}\n", NULL, "  a");
    expect("  {% if true %}\n  x\n  {% endif %}\n  y", NULL, "  x\n  y");
    expect("a {{- ' b ' -}} c{# comment #}\nd", NULL, "a b cd");
    expect("{% set x %}in{{ 1 }}{% endset %}{{ x }}|{% filter upper %}abc{% endfilter %}|{% raw %}{{ x }}{% endraw %}", NULL,
           "in1|ABC|{{ x }}");
    expect("{{ \"%s-%d\" % ('a', 3) }}|{{ d.get('z', 5) }}|{{ d.keys() | list }}", "{\"d\": {\"y\": 1}}",
           "a-3|5|['y']");
    expect("{% for m in msgs %}{{ loop.cycle('odd', 'even') }}{% endfor %}", "{\"msgs\": [1, 2, 3]}",
           "oddevenodd");
    expect_error("{{ raise_exception('Roles must alternate') }}", NULL, "Roles must alternate");
    expect_error("{{ x.y.z }}", NULL, "undefined");
    expect_error("{{ 'a' + 1 }}", NULL, "unsupported operand");
    expect_error("{% for x in none %}{% endfor %}", "{\"none\": null}", "not iterable");
    expect_error("{% set ns = 3 %}{% set ns.a = 1 %}", NULL, "not a namespace");
    expect_error("{% for i in range(100000000) %}{% endfor %}", NULL, "range");
    enum dsi_status st;
    tu_capture_log(true);
    TU_CHECK(!render("{% if x %}unclosed", NULL, &st) && st == DSI_ERR_FORMAT, "unclosed if accepted");
    TU_CHECK(strstr(tu_last_log(), "line 1"), "syntax error without its line: %s", tu_last_log());
    TU_CHECK(!render("line\n{{ 1 + }}", NULL, &st), "bad expression accepted");
    TU_CHECK(strstr(tu_last_log(), "line 2"), "syntax error without its line: %s", tu_last_log());
    TU_CHECK(!render("{% frobnicate %}", NULL, &st), "unknown tag accepted");
    TU_CHECK(!render("{{ 'unterminated }}", NULL, &st), "unterminated string accepted");
    TU_CHECK(!render("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", NULL, &st), "infinite recursion accepted");
    tu_capture_log(false);
}

int main(int argc, char **argv) {
    tu_init(argc, argv);
    test_cases();
    test_features();
    return tu_finish("test_chat_template");
}
