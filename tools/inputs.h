/* Shared by the CLI commands that take images or tensors: expanding folders,
 * turning a file into a model input tensor, softmax. */
#ifndef CANDOR_CLI_INPUTS_H
#define CANDOR_CLI_INPUTS_H

#include "cli.h"

typedef struct input_list {
    char **paths;
    int count;
} input_list;

/* Expands files and folders (sorted, images and .npy only, not recursive). */
int inputs_collect(int argc, char **argv, input_list *out);
void inputs_free(input_list *l);
/* Loads an image (JPEG/PNG) or .npy as a float32 tensor fitting the model's
 * first input: images go through the sidecar's preprocessing (resized to the
 * declared H x W when the sidecar gives no size); a .npy of shape (C,H,W) gets
 * a batch axis. */
cd_status inputs_load_tensor(const cd_model *m, const char *path, cd_tensor **out, cd_error *err);
/* True when the path looks like an image by its magic bytes. */
bool inputs_is_npy(const char *path);
/* In-place softmax over the last axis of rows x k values. */
void softmax_rows(float *v, size_t rows, size_t k);

#endif
