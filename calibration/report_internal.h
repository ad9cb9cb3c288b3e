/* The report model shared by report.c (build, JSON) and report_html.c. */
#ifndef CANDOR_REPORT_INTERNAL_H
#define CANDOR_REPORT_INTERNAL_H

#include <cjson/cJSON.h>

#include "candor/calibration.h"

struct cd_report {
    cJSON *root; /* schema: docs/calibration.md */
};

/* Shared by report.c and report_sections.c. */
cJSON *cd_report_num(double v); /* NaN/inf -> null */
cJSON *cd_report_metrics_json(const cd_metrics *m);
cd_status cd_report_reliability_json(const double *probs, const int *labels, size_t n, int k,
                                     int bins, cJSON *parent, const char *key, cd_error *err);

#endif
