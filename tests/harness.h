/* Test harness: seeded random inputs, counters, devices under test, host images of views,
 * poisoning and comparison against the oracle. */
#ifndef MLXN_TEST_HARNESS_H
#define MLXN_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mlxn.h"

/* ---------------------------------------------------------------- random numbers */

typedef struct rng {
    uint64_t s;
    double spare; /* rng_normal makes two values a time: the second waits here */
    bool has_spare;
} rng;

uint64_t rng_next(rng *r);
double rng_uniform(rng *r);               /* [0, 1) */
double rng_normal(rng *r);                /* N(0, 1) */
int64_t rng_int(rng *r, int64_t lo, int64_t hi); /* [lo, hi] */

/* The run's seed: --seed N, else MLXN_TEST_SEED, else from the clock. Printed once. */
uint64_t harness_seed(int argc, char **argv);

/* ---------------------------------------------------------------- counters */

typedef struct harness_counts {
    int passed, failed, skipped;
} harness_counts;

extern harness_counts g_counts;
extern bool g_verbose;

void harness_pass(const char *name);
void harness_fail(const char *name, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void harness_skip(const char *name, const char *why);
/* Prints the closing line "N passed, N failed, N skipped"; returns the exit code. */
int harness_finish(void);

/* Fails the current check when a call does not return OK. */
#define CHECK_OK(name, call)                                                               \
    do {                                                                                   \
        mlxn_status st_ = (call);                                                          \
        if (st_ != MLXN_STATUS_OK) {                                                       \
            harness_fail(name, "%s returned %s: %s", #call, mlxn_status_str(st_),           \
                         mlxn_last_error());                                               \
            goto fail;                                                                     \
        }                                                                                  \
    } while (0)

/* ---------------------------------------------------------------- devices under test */

typedef struct test_device {
    char name[64];         /* "cpu-avx512", "cuda:0" */
    mlxn_device *device;
    mlxn_stream *stream;
} test_device;

/* The reference device (CPU oracle) and every device the tests run on: the CPU at each SIMD
 * level this processor has, and each CUDA device. Levels or GPUs that are absent are
 * reported as skipped. */
typedef struct test_devices {
    test_device ref;
    test_device list[8];
    int count;
} test_devices;

bool test_devices_open(test_devices *d);
void test_devices_close(test_devices *d);

/* ---------------------------------------------------------------- operands
 *
 * An operand is a view plus a host image of its whole buffer (guard bytes before and after,
 * the gaps between rows included), so the same bytes can be placed on any device and every
 * byte the op must not touch can be checked afterwards. */

#define GUARD_BYTES 256
#define GUARD_BYTE 0xA5

typedef struct operand {
    mlxn_dtype dtype;
    int ndim;
    int64_t shape[MLXN_MAX_DIMS];
    int64_t stride[MLXN_MAX_DIMS]; /* bytes */
    size_t offset;                  /* byte offset of element 0 in the image */
    size_t bytes;                   /* size of the image */
    uint8_t *image;
    int64_t numel;
    int64_t *elem_offsets;          /* byte offset of each element, row-major order */
} operand;

/* A view of the shape with rows padded by pad_elems elements (0: contiguous); when
 * permute_outer is set and ndim >= 3, the two outermost dims are stored swapped (a
 * non-contiguous, transposed view). The image is filled with GUARD_BYTE. */
bool operand_init(operand *o, mlxn_dtype dtype, int ndim, const int64_t *shape, int64_t pad_elems,
                  bool permute_outer);
/* A view with the given element strides (innermost 1) starting elem_offset elements into an
 * image of span_elems elements (plus guards): a view into a larger tensor, such as the q heads
 * of a fused qkv row. The image is filled with GUARD_BYTE. */
bool operand_init_strided(operand *o, mlxn_dtype dtype, int ndim, const int64_t *shape,
                          const int64_t *stride_elems, int64_t elem_offset, int64_t span_elems);
void operand_free(operand *o);
/* The same layout as o (a second operand shaped like it). */
bool operand_like(operand *o, const operand *like, mlxn_dtype dtype);

double operand_get(const operand *o, int64_t i);
void operand_set(operand *o, int64_t i, double v); /* rounds to the dtype */
/* Element values: NaN for f32/f16/bf16 (outputs before an op). */
void operand_poison(operand *o);

/* A buffer on dev holding the image, and the view into it. */
typedef struct placed {
    mlxn_buffer *buffer;
    mlxn_tensor view;
} placed;

bool operand_place(const operand *o, test_device *dev, placed *out);
/* Downloads the whole buffer into a fresh image of the same layout (caller frees). */
bool placed_fetch(const placed *p, test_device *dev, const operand *layout, operand *out);
void placed_free(placed *p);

/* ---------------------------------------------------------------- comparison */

typedef struct tolerance {
    double rel_l2;   /* ||out - ref|| / ||ref|| over the finite elements */
    double rel_max;  /* max |out - ref| / max |ref| */
    const char *why;
} tolerance;

tolerance tolerance_for(mlxn_dtype out_dtype);

/* Compares out with ref element by element (NaN/Inf positions must match) and checks that
 * every byte of out's image outside its elements equals the same byte of ref's image. Writes
 * a one-line reason on failure. */
bool compare_operands(const operand *out, const operand *ref, tolerance tol, char *why,
                      size_t why_cap);

/* For dot-product ops: compare_operands' checks of the bytes and NaN positions, then
 * |out - ref| <= tol * bound[i] per element, bound[i] being sum_k |x_k| |w_k| of that output
 * (a relative bound on the output alone fails on outputs that cancel to near zero). */
bool compare_within_bound(const operand *out, const operand *ref, const double *bound, double tol,
                          char *why, size_t why_cap);

/* Runs an op case on the reference device and then on every device under test, checking each
 * with compare_within_bound(bound, tol), or tol_cuda on CUDA devices (a path whose precision
 * model differs there). run places the operands on dev, runs the op and fetches the output's
 * whole image into out (false with a reason on failure). */
typedef bool (*harness_run_fn)(void *ctx, test_device *dev, operand *out, char *why, size_t why_cap);
void harness_run_bound_case(const char *name, test_devices *devs, harness_run_fn run, void *ctx,
                            const double *bound, double tol, double tol_cuda);

/* Sets Inf or NaN in x [rows, K] (+Inf at element 37 and -Inf at K - 5 of every row, or NaN at
 * 100), then runs the op case on the reference device and on every device under test, checking
 * that every output is non-finite (as float products give; which of Inf or NaN is not checked:
 * Inf times a zero weight, or an offset applied through sums of x, gives NaN). Integer forms of
 * x have no code for either and must not turn them into finite numbers. */
void harness_run_nonfinite_case(const char *name, test_devices *devs, harness_run_fn run, void *ctx, operand *x,
                                int64_t rows, int64_t K, bool nan);

/* An op case over several operands: each is placed on the device (views[i] is operand i's view
 * there), issue() issues the op, and the image of operand `out` is fetched (an in-place op names
 * its input). harness_run_op_case() runs it on the reference device, then on every device under
 * test, comparing with compare_operands(tol). */
#define HARNESS_MAX_OPERANDS 8
typedef mlxn_status (*harness_issue_fn)(void *ctx, mlxn_stream *s, const mlxn_tensor *views);
typedef struct harness_op_case {
    const operand *ops;
    int n_ops, out;
    harness_issue_fn issue;
    void *ctx;
} harness_op_case;
void harness_run_op_case(const char *name, test_devices *devs, const harness_op_case *c, tolerance tol);

/* Error cases: the call must return `want` with a message mentioning `needle` (if not NULL). */
void harness_expect_status(const char *name, mlxn_status got, mlxn_status want, const char *needle);

#endif
