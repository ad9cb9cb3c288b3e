/* `candor predict --calibration FILE [--alpha A]`: applies a calibration file
 * written by `candor calibrate` to the model outputs and prints calibrated
 * probabilities, the conformal prediction set and the abstention decision. */
#ifndef CANDOR_CLI_PREDICT_CALIB_H
#define CANDOR_CLI_PREDICT_CALIB_H

#include <stdbool.h>

#include "cli.h"

typedef struct predict_calib predict_calib;

/* Loads the file; alpha > 0 recomputes the conformal threshold for that
 * alpha from the saved calibration scores. Returns 0, or prints the error
 * and returns 1. */
int predict_calib_load(const char *path, double alpha, predict_calib **out);
void predict_calib_free(predict_calib *pc);

/* Prints rows x k raw model outputs (logits, or probabilities when
 * outputs_are_probs) as calibrated predictions for input `path`, in the
 * human or JSON format of `candor predict` (first = no leading comma).
 * Returns 0, or 1 after printing an error. */
int predict_calib_print(const predict_calib *pc, const cd_model *m, const char *path,
                        const float *outputs, long long rows, int k, bool outputs_are_probs,
                        int top, bool json, bool *first);

#endif
