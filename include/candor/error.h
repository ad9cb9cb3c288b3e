/* candor — status codes and error reports.
 *
 * Every fallible library function returns a cd_status and, when given a
 * non-NULL cd_error*, fills it with the code and a one-line message that
 * names the file, node, field or row at fault. The library never prints and
 * never exits. */
#ifndef CANDOR_ERROR_H
#define CANDOR_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(CANDOR_BUILDING_LIBRARY) && defined(__GNUC__)
#define CD_API __attribute__((visibility("default")))
#else
#define CD_API
#endif

typedef enum cd_status {
    CD_OK = 0,
    CD_ERR_INVALID_ARGUMENT = 1, /* a caller passed something unusable */
    CD_ERR_IO = 2,               /* a file could not be opened, read or written */
    CD_ERR_PARSE = 3,            /* malformed model, image, .npy, CSV or JSON */
    CD_ERR_UNSUPPORTED = 4,      /* valid input that candor does not handle */
    CD_ERR_SHAPE = 5,            /* shapes that do not fit together */
    CD_ERR_OUT_OF_MEMORY = 6,    /* an allocation failed */
    CD_ERR_LIMIT = 7,            /* a configured resource cap was exceeded */
    CD_ERR_NUMERIC = 8,          /* NaN/Inf or a numerical failure */
    CD_ERR_INTERNAL = 9          /* a bug in candor: please report it */
} cd_status;

#define CD_ERROR_MESSAGE_SIZE 512

typedef struct cd_error {
    cd_status code;
    char message[CD_ERROR_MESSAGE_SIZE];
} cd_error;

/* Stable short name of a status code, e.g. "parse". Never NULL. */
CD_API const char *cd_status_name(cd_status status);

/* Clears an error report (code CD_OK, empty message). Accepts NULL. */
CD_API void cd_error_clear(cd_error *err);

#ifdef __cplusplus
}
#endif
#endif
