/* Labelled data for `candor calibrate`: image folders (one subfolder per
 * class), CSV `path,label`, or .npy arrays with a labels file; and running
 * the model (plain, MC dropout or an ensemble) over them in batches. */
#ifndef CANDOR_CLI_CALIB_DATA_H
#define CANDOR_CLI_CALIB_DATA_H

#include <stdint.h>

#include "cli.h"

typedef struct calib_dataset {
    size_t n;
    char **paths;      /* n image/.npy files (folder or CSV input), else NULL */
    cd_tensor *array;  /* N x H x W or N x C x H x W (.npy input), else NULL */
    int *labels;       /* n class indices */
    const char *format; /* "folder", "csv" or "npy" */
    char sha256[65];   /* data fingerprint (see calib_data.c) */
    char *class_source; /* how class indices were assigned (for the report) */
} calib_dataset;

/* Reads the data; labels must lie in [0, k) (k = model classes, 0 = unknown
 * yet: checked later). Errors name the file and row. */
cd_status calib_data_load(const cd_model *m, const char *data, const char *labels_path,
                          int k, calib_dataset *out, cd_error *err);
void calib_data_free(calib_dataset *d);

typedef struct calib_run_opts {
    int batch;            /* rows per run (default 64; 1 for a fixed batch-1 model) */
    int threads;
    int mc_samples;       /* > 1: MC dropout */
    uint64_t seed;
    int n_members;        /* > 0: ensemble of the model plus these */
    const char *const *members;
} calib_run_opts;

/* Runs the model over every row: scores receives n x k doubles (malloc'ed):
 * logits for a plain run of a logits model, else probabilities (*is_probs = 1;
 * MC/ensemble give the mean of the sampled softmax probabilities). */
cd_status calib_data_run(const cd_model *m, const calib_dataset *d, const calib_run_opts *o,
                         double **scores, int *k, int *is_probs, cd_error *err);

#endif
