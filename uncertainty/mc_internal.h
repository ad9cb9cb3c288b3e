/* Internals of the uncertainty engine shared by its files. */
#ifndef CANDOR_MC_INTERNAL_H
#define CANDOR_MC_INTERNAL_H

#include "candor/uncertainty.h"
#include "core/plan.h"
#include "uncertainty/stochastic.h"

/* One stochastic site of a (derived) model. */
typedef struct mc_site {
    char *name;    /* declared tensor/node name, or the Dropout node's name (owned) */
    int node;      /* index of its Dropout node in the derived model */
    float p;
    bool channel;
    uint64_t key;  /* cd_site_key(name) */
} mc_site;

/* A model that shares everything with an original model except for the
 * synthetic Dropout nodes inserted at declared sites. Owned here: the arrays
 * values/nodes/inputs/outputs of m, every node's inputs array, the names of
 * values >= n_orig_values, and the synthetic nodes (synthetic[i]). Borrowed
 * from the original: names, initializers, attributes, params, outputs arrays
 * of the original nodes. The original is never modified. */
typedef struct mc_derived {
    cd_model m;
    int n_orig_values;
    bool *synthetic;
    int n_sites;
    mc_site *sites;
} mc_derived;

/* Builds the derived model of orig with the declared sites plus (unless
 * skip_graph) the graph's own Dropout nodes as sites. */
cd_status mc_derive(const cd_model *orig, int n_declared, const cd_dropout_site *declared,
                    bool skip_graph, mc_derived *out, cd_error *err);
void mc_derived_free(mc_derived *d);

/* Base sample index added to every sample of a session (ensemble member m
 * uses m*T so members never share masks). */
void mc_session_set_sample_base(cd_mc_session *mc, uint64_t base);
const cd_model *mc_session_model(const cd_mc_session *mc);

/* For gradient passes that must replay the session's masks (explain/): the
 * derived model (sites as Dropout nodes), its sample count T, and a
 * cd_stochastic describing its sites for the whole derived model with the
 * session's seed (sample_offset 0, rows_are_samples false). Everything is
 * borrowed from the session and lives as long as it. */
const cd_model *mc_session_derived(const cd_mc_session *mc);
int mc_session_samples(const cd_mc_session *mc);
void mc_session_stochastic(const cd_mc_session *mc, cd_stochastic *out);

#endif
