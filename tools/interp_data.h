/* Data for `candor global` and `candor surrogate`: a labelled dataset (any
 * form `candor calibrate --data` takes) or an unlabelled set of examples (a
 * folder of images/.npy files, or one .npy array of rows) turned into one
 * float32 (N, C, H, W) model-input tensor. */
#ifndef CANDOR_CLI_INTERP_DATA_H
#define CANDOR_CLI_INTERP_DATA_H

#include "cli.h"

/* Labelled: *x (N, C, H, W) and *labels (N, malloc'ed). k = model classes
 * (0 = unchecked). Progress goes to stderr prefixed with cmd. */
cd_status interp_load_labelled(const cd_model *m, const char *data, const char *labels_path,
                               int k, const char *cmd, cd_tensor **x, int **labels,
                               cd_error *err);
/* The start of `global` and `surrogate`: the model at path *m, an explainer
 * on it *e (threads, batch rows per pass) and the labelled data as for
 * interp_load_labelled. On failure the caller frees what was made. */
cd_status interp_open(const char *path, int threads, int batch, const char *data,
                      const char *labels_path, const char *cmd, cd_model **m,
                      cd_explainer **e, cd_tensor **x, int **labels, cd_error *err);
/* Classes of the model: K of a (N, K > 1) first output, else its label
 * count, raised to cover every class in v[0..n-1]. */
int interp_class_count(const cd_model *m, const int *v, size_t n);
/* Unlabelled examples from a folder (images and .npy files, sorted) or one
 * .npy array of shape (N, H, W) or (N, C, H, W): uint8 arrays are 8-bit
 * images and get the sidecar preprocessing, float arrays are taken as
 * preprocessed model inputs. */
cd_status interp_load_examples(const cd_model *m, const char *path, cd_tensor **x,
                               cd_error *err);

#include <cjson/cJSON.h>
/* Writes text / a JSON document (pretty-printed) atomically. */
cd_status interp_write_text(const char *path, const char *text, cd_error *err);
cd_status interp_write_json(const char *path, const cJSON *doc, cd_error *err);
/* Creates the output folder (an existing one is fine). */
cd_status interp_make_dir(const char *dir, cd_error *err);
/* DIR/NAME into buf. */
const char *interp_path(char *buf, size_t n, const char *dir, const char *name);

#endif
