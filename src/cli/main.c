/* bin/dsinfer: one binary, subcommands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"
#include "core/log.h"
#include "quant/kernels.h"
#include "src/cli/cli.h"

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
};

static const struct command commands[] = {
    {"run", dsi_cmd_run, "generate text from a prompt"},
    {"chat", dsi_cmd_chat, "interactive chat through the model's chat template"},
    {"serve", dsi_cmd_serve, "OpenAI-compatible HTTP server with continuous batching"},
    {"devices", dsi_cmd_devices, "list the Vulkan devices layers can be offloaded to"},
    {"logits", dsi_cmd_logits, "write the logits of every prompt position (float32)"},
    {"perplexity", dsi_cmd_perplexity, "perplexity of a text file"},
    {"info", dsi_cmd_info, "print a GGUF file's metadata and tensor table"},
    {"tokenize", dsi_cmd_tokenize, "print the token ids of a text (or decode ids)"},
    {"bench", dsi_cmd_bench, "prompt and generation speed (like llama-bench)"},
    {"synth", dsi_cmd_synth, "write a synthetic model of a real model's shape (benchmarks)"},
    {"convert", dsi_cmd_convert, "convert a Hugging Face checkpoint directory to GGUF"},
    {"quantize", dsi_cmd_quantize, "quantize a GGUF model (Q8_0, Q4_K_M, IQ4_XS, ...)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: dsinfer <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nRun 'dsinfer <command> --help' for the options of a command.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    /* the CPU-feature mask hook: DSI_CPU_DISABLE=avx512,avx2 runs the slower kernels */
    if (!dsi_cpu_init(getenv("DSI_CPU_DISABLE"))) return 2;
    dsi_kernels_init();
    const char *v = getenv("DSI_LOG");
    if (v && strcmp(v, "debug") == 0) dsi_log_set_level(DSI_LOG_DEBUG);
    else if (v && strcmp(v, "info") == 0) dsi_log_set_level(DSI_LOG_INFO);
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "dsinfer: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
