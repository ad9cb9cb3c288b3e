/* Surrogate decision trees in files: the JSON that `candor surrogate` writes
 * (surrogate.json) and `candor predict --surrogate FILE`, which shows the
 * rule that fires for each input next to the model's own prediction. */
#ifndef CANDOR_CLI_PREDICT_SURROGATE_H
#define CANDOR_CLI_PREDICT_SURROGATE_H

#include <cjson/cJSON.h>

#include "candor/explain.h"
#include "cli.h"

typedef struct surrogate_def {
    cd_surrogate_kind kind;
    char *layer;          /* pooled features: tensor name */
    int grid;             /* grid features: G */
    int n_features;
    char **names;         /* n_features feature names */
    cd_tree *tree;
} surrogate_def;

/* Feature name: "mean(LAYER[c])" or "cell(r,c) rows a-b cols c-d". */
char *surrogate_feature_name(cd_surrogate_kind kind, const char *layer, int grid, int h, int w,
                             int f);
/* The conditions on the path from the root to node `leaf`, as text
 * ("A <= 0.5 AND B > 1.25"; "(always)" at the root). malloc'ed. */
char *surrogate_rule_text(const surrogate_def *s, int leaf);
/* JSON of the conditions on that path: [{feature, name, op, threshold}]. */
cJSON *surrogate_rule_json(const surrogate_def *s, int leaf);
/* JSON of every node (id, feature, threshold, left, right, class, samples,
 * impurity, counts). */
cJSON *surrogate_tree_json(const cd_tree *t);
/* Reads the "features" and "tree" members of a surrogate.json. */
cd_status surrogate_load(const char *path, surrogate_def *out, cd_error *err);
void surrogate_free(surrogate_def *s);

/* `candor predict MODEL INPUT... --surrogate FILE`: argv[0] is the model,
 * the rest are inputs (files or folders). Returns the exit status. */
int predict_surrogate_run(const char *file, bool json, int threads, int argc, char **argv);

#endif
