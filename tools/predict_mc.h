/* `candor predict` with uncertainty: MC dropout (--mc), declared sites
 * (--dropout), ensembles (--ensemble/--member), raw samples (--samples),
 * CSV rows (--csv). Summaries follow docs/uncertainty.md. */
#ifndef CANDOR_CLI_PREDICT_MC_H
#define CANDOR_CLI_PREDICT_MC_H

#include <stdint.h>

#include "cli.h"

#define PMC_MAX 64

typedef struct predict_mc_opts {
    int T;                     /* MC samples per member */
    bool mc;                   /* --mc given: sample dropout (else members run deterministic) */
    uint64_t seed;
    int n_sites;
    cd_dropout_site sites[PMC_MAX];
    int n_models;              /* 1 model, or the ensemble members */
    const char *models[PMC_MAX];
    const char *samples_path;  /* --samples FILE.npy */
    const char *csv_path;      /* --csv FILE */
    double level;
    int top;
    bool json;
    bool regression;           /* --regression: summarize as regression */
    bool log_variance;         /* --log-variance: output 1 is a log-variance head */
    int threads;
    const char *maps_dir;      /* --maps DIR: dense maps as .npy + PNG */
    bool overlay;              /* --overlay: maps over the input image too */
    float overlay_alpha;       /* weight of the map colour in the overlay */
} predict_mc_opts;

/* Parses "NAME:P[:channel]" into site (name points into arg, which is
 * modified). Returns 0, or -1 with a message on stderr. */
int predict_mc_parse_site(char *arg, cd_dropout_site *site);
/* Runs the uncertainty flow over the input paths; returns the exit status. */
int predict_mc_run(const predict_mc_opts *o, int n_inputs, char **inputs);

#endif
