/* Small helpers shared by the feature-map, activation-maximisation and
 * robustness commands (tools/explain_vis.c, tools/cmd_robustness.c). */
#ifndef CANDOR_CLI_INTERP_UTIL_H
#define CANDOR_CLI_INTERP_UTIL_H

#include <stdio.h>

#include "cli.h"

/* Writes a file atomically: write(f, ctx) fills the stream. */
cd_status iu_write_file(const char *path, void (*write)(FILE *f, const void *ctx),
                        const void *ctx, cd_error *err);
/* Creates dir when missing; 0 on success, else prints a message and returns 1. */
int iu_mkdir(const char *cmd, const char *dir);
/* Row r of a (N, C, H, W) model-input tensor as an 8-bit image: the model's
 * preprocessing undone (x * std + mean, times scale), nearest-upscaled by
 * an integer factor so the longer side reaches at least min_side. Gray for
 * C = 1, RGB for C = 3 (other C: channel 0 as gray). */
cd_status iu_input_to_image(const cd_model *m, const cd_tensor *x, size_t r, int min_side,
                            cd_image **out, cd_error *err);
/* Nearest upscale of img by an integer factor to reach min_side. */
cd_status iu_upscale(const cd_image *img, int min_side, cd_image **out, cd_error *err);
/* Copies s into buf keeping [A-Za-z0-9._-] and mapping the rest to '_'. */
void iu_safe_name(const char *s, char *buf, size_t size);
/* File name without folders and extension, into buf. */
void iu_stem(const char *path, char *buf, size_t size);

#endif
