/* The report model shared by report.c (build, JSON) and report_html.c. */
#ifndef CANDOR_REPORT_INTERNAL_H
#define CANDOR_REPORT_INTERNAL_H

#include <cjson/cJSON.h>

#include "candor/calibration.h"

struct cd_report {
    cJSON *root; /* schema: docs/calibration.md */
};

#endif
