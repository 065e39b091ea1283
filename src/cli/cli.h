/* Subcommands of bin/dsinfer. Each takes the arguments after its name and returns the
 * process exit status (0 success, 1 failure, 2 usage error). */
#ifndef DSI_CLI_H
#define DSI_CLI_H

int dsi_cmd_info(int argc, char **argv);
int dsi_cmd_tokenize(int argc, char **argv);
int dsi_cmd_convert(int argc, char **argv);
int dsi_cmd_run(int argc, char **argv);
int dsi_cmd_chat(int argc, char **argv);
int dsi_cmd_synth(int argc, char **argv);
int dsi_cmd_bench(int argc, char **argv);
int dsi_cmd_logits(int argc, char **argv);
int dsi_cmd_perplexity(int argc, char **argv);
int dsi_cmd_quantize(int argc, char **argv);
int dsi_cmd_serve(int argc, char **argv);
int dsi_cmd_devices(int argc, char **argv);

/* Shared helpers for the command-line front end. */

/* Parse a positive integer argument; on failure prints a usage error and returns false. */
#include <stdbool.h>
#include <stdint.h>
bool cli_parse_i64(const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out);
bool cli_parse_f32(const char *opt, const char *s, float *out);
/* Human-readable byte size ("1.50 GiB") into buf. */
const char *cli_fmt_bytes(double bytes, char *buf, int n);

#endif
