/* Helpers shared by the calibration/ sources. Not installed. */
#ifndef CANDOR_CALIB_INTERNAL_H
#define CANDOR_CALIB_INTERNAL_H

#include <stddef.h>

#include "candor/calibration.h"

/* Validates n x k probabilities (finite) and labels in [0, k). */
cd_status cd_calib_check_inputs(const double *probs, const int *labels, size_t n, int k,
                                cd_error *err);
/* Index of the first maximum of row[0..k-1]: the predicted class. */
int cd_calib_argmax(const double *row, int k);
/* Per row of n x k probabilities: the top-class probability conf[i] and
 * whether the first maximum equals the label, correct[i]. Shared with the
 * CLI so that its tables count hits exactly as the metrics do. */
void cd_calib_confidences(const double *probs, const int *labels, size_t n, int k, double *conf,
                          unsigned char *correct);
/* qsort comparator for doubles (ascending). */
int cd_cmp_double(const void *a, const void *b);

#endif
