/* candor — umbrella header. */
#ifndef CANDOR_CANDOR_H
#define CANDOR_CANDOR_H

#define CANDOR_VERSION_MAJOR 0
#define CANDOR_VERSION_MINOR 1
#define CANDOR_VERSION_PATCH 0
#define CANDOR_VERSION_STRING "0.1.0"

#include "error.h"
#include "tensor.h"
#include "model.h"
#include "calibration.h"
#include "image.h"
#include "uncertainty.h"
#include "explain.h"

#endif
