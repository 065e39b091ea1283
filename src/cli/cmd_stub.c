#include <stdio.h>
#include "src/cli/cli.h"
int dsi_cmd_convert(int argc, char **argv) { (void)argc; (void)argv; return 1; }
