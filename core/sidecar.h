/* Model sidecar: MODEL.candor.json next to MODEL.onnx (docs/sidecar.md).
 * Parsed once at load time and owned by the cd_model; the public getters
 * live in candor/image.h. */
#ifndef CANDOR_SIDECAR_H
#define CANDOR_SIDECAR_H

#include "candor/image.h"
#include "internal.h"

typedef enum cd_output_kind {
    CD_OUTPUT_UNSPECIFIED = 0,
    CD_OUTPUT_LOGITS,
    CD_OUTPUT_PROBABILITIES,
    CD_OUTPUT_REGRESSION,
    CD_OUTPUT_SEGMENTATION
} cd_output_kind;

typedef struct cd_sidecar_site {
    char *tensor;  /* value name after which dropout is applied */
    float p;       /* drop probability in [0, 1) */
    bool channel;  /* drop whole channels (Dropout2d) instead of elements */
} cd_sidecar_site;

struct cd_sidecar {
    char *path;
    int n_labels;
    char **labels;
    /* Preprocessing: defaults from cd_preprocess_default, overridden by the
     * fields present (has_* says which were given). */
    cd_preprocess preprocess;
    bool has_resize, has_crop, has_scale, has_mean, has_std, has_color;
    cd_output_kind output_kind;
    char *output_name; /* NULL when not given */
    char *input_name;  /* NULL when not given */
    int n_dropout_sites;
    cd_sidecar_site *dropout_sites;
};

/* "models/x.onnx" -> "models/x.candor.json": a final ".onnx" (any case) is
 * replaced, any other name gets ".candor.json" appended. Caller frees. */
char *cd_sidecar_path_for_model(const char *model_path);

/* Reads the sidecar for model_path. A missing file is not an error: *out is
 * NULL and CD_OK is returned. A present but malformed file fails with
 * CD_ERR_PARSE naming the file and the field path. *out is owned by the
 * caller (cd_sidecar_free). */
cd_status cd_sidecar_load_for_model(const char *model_path, struct cd_sidecar **out,
                                    cd_error *err);
/* Reads a sidecar from an explicit path (missing file: CD_ERR_IO). */
cd_status cd_sidecar_load_file(const char *path, struct cd_sidecar **out, cd_error *err);
/* Parses sidecar JSON text; name is used in messages. */
cd_status cd_sidecar_parse(const char *json, size_t len, const char *name,
                           struct cd_sidecar **out, cd_error *err);
void cd_sidecar_free(struct cd_sidecar *sc);

const char *cd_output_kind_name(cd_output_kind kind);

#endif
