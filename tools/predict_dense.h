/* Dense (segmentation) outputs of `candor predict --mc`: per-pixel
 * uncertainty summaries and the --maps / --overlay files. */
#ifndef CANDOR_CLI_PREDICT_DENSE_H
#define CANDOR_CLI_PREDICT_DENSE_H

#include "predict_mc.h"

typedef struct dense_ctx {
    const predict_mc_opts *o;
    const cd_tensor *input; /* the loaded input (the overlay base for .npy inputs) */
    bool *first_json;       /* JSON array state shared with predict_mc.c */
} dense_ctx;

/* Summarizes row `row` of an input: probs holds its samples as probabilities,
 * dims = (S, C, H, W). Prints (human or JSON) and, with --maps, writes the
 * maps as DIR/STEM.*. Returns 0, or 1 after printing a one-line error. */
int predict_dense_row(const dense_ctx *c, const char *path, const char *name, int64_t row,
                      int64_t rows, const float *probs, const int64_t dims[4]);

#endif
