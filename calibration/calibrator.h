/* The calibrator object shared by fit.c and calib_json.c. Not installed. */
#ifndef CANDOR_CALIBRATOR_H
#define CANDOR_CALIBRATOR_H

#include <stddef.h>

#include "candor/calibration.h"

struct cd_calibrator {
    cd_calib_method method;
    int k;
    int inputs_are_probs; /* fitted/applied on probabilities rather than logits */
    /* temperature: [T]; vector: [w(k), b(k)]; matrix: [W(k x k, row-major), b(k)];
     * platt: [a, b] */
    double *params;
    double l2;            /* matrix scaling penalty used in the fit */
    int bins;             /* histogram bins */
    double *hist;         /* k x bins calibrated values (histogram) */
    size_t *iso_len;      /* per class knot count (isotonic) */
    double **iso_x, **iso_y;
    double nll_before, nll_after; /* on the fitting data (NaN when loaded) */
    char warning[256];
};

size_t cd_calib_param_count(cd_calib_method m, int k);
/* Allocates a calibrator with zeroed parameters; NULL when out of memory. */
cd_calibrator *cd_calibrator_new(cd_calib_method m, int k, int inputs_are_probs, int bins);

#endif
