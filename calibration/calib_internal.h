/* Helpers shared by the calibration/ sources. Not installed. */
#ifndef CANDOR_CALIB_INTERNAL_H
#define CANDOR_CALIB_INTERNAL_H

#include <stddef.h>

#include "candor/calibration.h"

/* Validates n x k probabilities (finite) and labels in [0, k). */
cd_status cd_calib_check_inputs(const double *probs, const int *labels, size_t n, int k,
                                cd_error *err);
/* qsort comparator for doubles (ascending). */
int cd_cmp_double(const void *a, const void *b);

#endif
