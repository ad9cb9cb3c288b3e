/* candor — tensors and images on disk, preprocessing, and model metadata.
 *
 * .npy files (NumPy format 1.0/2.0/3.0, C order), PNG and JPEG images, the
 * preprocessing pipeline that turns an image into a model input, and the
 * metadata read from a model's sidecar file MODEL.candor.json (labels,
 * preprocessing, output kind; see docs/sidecar.md).
 *
 * Every writer is atomic: it writes a temporary file in the same folder,
 * fsyncs it and renames it over the target, so readers never see a partial
 * file and a failed write leaves any previous file untouched. */
#ifndef CANDOR_IMAGE_H
#define CANDOR_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "model.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- .npy */

/* Caps applied while reading (0 means the built-in default). */
typedef struct cd_npy_options {
    uint64_t max_elements; /* default 2^31; larger arrays fail with CD_ERR_LIMIT */
} cd_npy_options;

/* Loads a .npy file keeping its element type: '<f4' float32, '<f8' float64,
 * '|u1' uint8, '|i1' int8, '<i4' int32, '<i8' int64, '|b1' bool; big-endian
 * ('>') variants are byte-swapped. Fortran-order arrays are refused
 * (CD_ERR_UNSUPPORTED). A malformed header or a data length that is not
 * exactly numel * itemsize fails with CD_ERR_PARSE. *out is owned by the
 * caller (cd_tensor_free). */
CD_API cd_status cd_npy_load(const char *path, cd_tensor **out, cd_error *err);
/* As cd_npy_load, then converts any numeric type to float32. */
CD_API cd_status cd_npy_load_f32(const char *path, cd_tensor **out, cd_error *err);
/* Parses .npy bytes held in memory (not referenced after the call). */
CD_API cd_status cd_npy_load_memory(const void *bytes, size_t size, cd_tensor **out,
                                    cd_error *err);
/* Variants with options (opts may be NULL); to_f32 converts to float32. */
CD_API cd_status cd_npy_load_ex(const char *path, const cd_npy_options *opts, bool to_f32,
                                cd_tensor **out, cd_error *err);
CD_API cd_status cd_npy_load_memory_ex(const void *bytes, size_t size,
                                       const cd_npy_options *opts, bool to_f32,
                                       cd_tensor **out, cd_error *err);

/* Writes t as a format 1.0 .npy file (2.0 when the header needs it), little
 * endian, C order. Any candor type except float16 is accepted. Replaces an
 * existing file atomically. */
CD_API cd_status cd_npy_save(const char *path, const cd_tensor *t, cd_error *err);
/* As cd_npy_save; with force false an existing file is left alone and the
 * call fails with CD_ERR_IO. */
CD_API cd_status cd_npy_save_ex(const char *path, const cd_tensor *t, bool force,
                                cd_error *err);

/* -------------------------------------------------------------- images */

/* A decoded image: height rows of width pixels, channels interleaved
 * (HWC), channels 1 (gray), 3 (RGB) or 4 (RGBA). Pixels are float on the
 * 8-bit scale [0, 255] whatever the source depth: a 16-bit PNG sample v
 * becomes v * 255 / 65535, so no precision is lost. Gray+alpha PNGs are
 * expanded to RGBA, palette images to RGB(A). */
typedef struct cd_image {
    int width;
    int height;
    int channels;
    float *pixels; /* width * height * channels values, owned by the image */
} cd_image;

typedef struct cd_image_options {
    uint64_t max_pixels; /* width * height cap, default 2^28; CD_ERR_LIMIT beyond */
} cd_image_options;

/* Decodes a PNG or JPEG file; the format is detected from its first bytes,
 * never from the name. Corrupt or truncated data fails with CD_ERR_PARSE,
 * other formats with CD_ERR_UNSUPPORTED. *out is owned by the caller. */
CD_API cd_status cd_image_load(const char *path, cd_image **out, cd_error *err);
CD_API cd_status cd_image_load_memory(const void *bytes, size_t size, cd_image **out,
                                      cd_error *err);
/* Variants with options (opts may be NULL). */
CD_API cd_status cd_image_load_ex(const char *path, const cd_image_options *opts,
                                  cd_image **out, cd_error *err);
CD_API cd_status cd_image_load_memory_ex(const void *bytes, size_t size,
                                         const cd_image_options *opts, cd_image **out,
                                         cd_error *err);
/* New zero-filled image (channels 1, 3 or 4). *out is owned by the caller. */
CD_API cd_status cd_image_create(int width, int height, int channels, cd_image **out,
                                 cd_error *err);
/* Releases an image. Accepts NULL. */
CD_API void cd_image_free(cd_image *img);

/* Writers: pixels are clamped to [0, 255] and rounded to 8 bits. PNG takes
 * 1, 3 or 4 channels; JPEG takes 1 or 3 (quality 1..100, 0 = 90). Existing
 * files are replaced atomically unless force is false (then CD_ERR_IO). */
CD_API cd_status cd_image_save_png(const char *path, const cd_image *img, bool force,
                                   cd_error *err);
CD_API cd_status cd_image_save_jpeg(const char *path, const cd_image *img, int quality,
                                    bool force, cd_error *err);

/* ------------------------------------------------------- preprocessing */

typedef enum cd_color {
    CD_COLOR_RGB = 0,  /* 3 channels; gray images are replicated */
    CD_COLOR_GRAY = 1  /* 1 channel: 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601) */
} cd_color;

/* How an image becomes a (1, C, H, W) float32 tensor. Steps, in order:
 *  1. color: alpha is dropped; convert to gray or RGB as asked.
 *  2. resize (bilinear, half-pixel centres, edge clamp, no antialias — the
 *     same as PyTorch interpolate(mode="bilinear", align_corners=False)):
 *     resize_short > 0 scales the shorter side to resize_short keeping the
 *     aspect ratio (longer side = floor(resize_short * long / short), as
 *     torchvision); otherwise resize_h, resize_w > 0 give the exact size;
 *     otherwise no resize.
 *  3. center crop to crop_h x crop_w when both > 0: top = floor((H - crop_h)
 *     / 2), left = floor((W - crop_w) / 2); a crop larger than the image
 *     fails with CD_ERR_SHAPE.
 *  4. scale: every value is divided by scale (when scale > 0; 255 maps the
 *     8-bit range to [0, 1]; 0 or 1 leaves values alone).
 *  5. normalize: channel c becomes (x - mean[c]) / std[c].
 *  6. layout NCHW with N = 1. */
typedef struct cd_preprocess {
    int resize_short;
    int resize_h, resize_w;
    int crop_h, crop_w;
    float scale;
    float mean[3];
    float std[3];
    cd_color color;
} cd_preprocess;

/* Defaults: no resize, no crop, scale 255, mean 0, std 1, RGB. */
CD_API void cd_preprocess_default(cd_preprocess *p);
/* Runs the steps above. p may be NULL (defaults). *out is a new
 * (1, C, H, W) float32 tensor owned by the caller. */
CD_API cd_status cd_image_to_tensor(const cd_image *img, const cd_preprocess *p,
                                    cd_tensor **out, cd_error *err);

/* ------------------------------------------------- sidecar metadata */

/* Number of class labels in the sidecar (0 without one). */
CD_API int cd_model_label_count(const cd_model *model);
/* Label k, or NULL when k is out of range. Owned by the model. */
CD_API const char *cd_model_label(const cd_model *model, int k);
/* The model's preprocessing: the sidecar's "preprocess" where given; fields
 * it leaves out take defaults from cd_preprocess_default, except that
 * color follows a declared 1- or 3-channel NCHW input and, when neither
 * resize nor crop is given, an input with fixed H and W gets an exact
 * resize to H x W. Fails only on NULL arguments. */
CD_API cd_status cd_model_preprocess(const cd_model *model, cd_preprocess *out);
/* "logits", "probabilities", "regression" or "segmentation" from the
 * sidecar, or "unspecified". Never NULL. */
CD_API const char *cd_model_output_kind(const cd_model *model);
/* Output / input tensor named by the sidecar, or NULL when not named. */
CD_API const char *cd_model_output_hint(const cd_model *model);
CD_API const char *cd_model_input_hint(const cd_model *model);
/* User-declared stochastic (dropout) sites from the sidecar. */
CD_API int cd_model_dropout_site_count(const cd_model *model);
/* Fills the site's tensor name (owned by the model), drop probability and
 * whether whole channels are dropped. CD_ERR_INVALID_ARGUMENT when k is out
 * of range. Any out pointer may be NULL. */
CD_API cd_status cd_model_dropout_site(const cd_model *model, int k, const char **tensor,
                                       float *p, bool *channel, cd_error *err);

#ifdef __cplusplus
}
#endif
#endif
