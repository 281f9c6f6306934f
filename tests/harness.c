#include "harness.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/half.h"

harness_counts g_counts;
bool g_verbose;

/* ---------------------------------------------------------------- random numbers */

uint64_t rng_next(rng *r)
{
    /* splitmix64 */
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double rng_uniform(rng *r)
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

double rng_normal(rng *r)
{
    /* Marsaglia's polar method: one log for two values and no cos, a fifth of the cost of the
       Box-Muller form (random fixtures were 80% of the sanitizer run's qmatmul time) */
    if (r->has_spare) {
        r->has_spare = false;
        return r->spare;
    }
    double u, v, s;
    do {
        u = 2.0 * rng_uniform(r) - 1.0;
        v = 2.0 * rng_uniform(r) - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    const double f = sqrt(-2.0 * log(s) / s);
    r->spare = v * f;
    r->has_spare = true;
    return u * f;
}

int64_t rng_int(rng *r, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

uint64_t harness_seed(int argc, char **argv)
{
    uint64_t seed = 0;
    bool given = false;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--seed") == 0) {
            seed = strtoull(argv[i + 1], NULL, 0);
            given = true;
        }
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-v") == 0)
            g_verbose = true;
    const char *env = getenv("MLXN_TEST_SEED");
    if (!given && env && *env) {
        seed = strtoull(env, NULL, 0);
        given = true;
    }
    if (!given) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_sec * 1000003ull ^ (uint64_t)ts.tv_nsec;
    }
    printf("seed %llu (replay with --seed %llu or MLXN_TEST_SEED=%llu)\n",
           (unsigned long long)seed, (unsigned long long)seed, (unsigned long long)seed);
    return seed;
}

/* ---------------------------------------------------------------- counters */

void harness_pass(const char *name)
{
    g_counts.passed++;
    if (g_verbose)
        printf("PASS %s\n", name);
}

void harness_fail(const char *name, const char *fmt, ...)
{
    g_counts.failed++;
    printf("FAIL %s: ", name);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

void harness_skip(const char *name, const char *why)
{
    g_counts.skipped++;
    printf("SKIP %s: %s\n", name, why);
}

int harness_finish(void)
{
    printf("%d passed, %d failed, %d skipped\n", g_counts.passed, g_counts.failed,
           g_counts.skipped);
    return g_counts.failed ? 1 : 0;
}

/* ---------------------------------------------------------------- devices */

static bool open_one(test_device *t, const char *name, mlxn_device_options o)
{
    snprintf(t->name, sizeof t->name, "%s", name);
    if (mlxn_device_create(&o, &t->device) != MLXN_STATUS_OK)
        return false;
    if (mlxn_stream_create(t->device, &t->stream) != MLXN_STATUS_OK) {
        mlxn_device_free(t->device);
        t->device = NULL;
        return false;
    }
    return true;
}

/* Whether the device named name is to be tested: MLXN_TEST_DEVICES, when set, is a comma list of
 * names or their prefixes (cuda, cpu-avx2, ...); the reference device is always opened. */
static bool wanted(const char *name)
{
    const char *list = getenv("MLXN_TEST_DEVICES");
    if (!list || !*list)
        return true;
    for (const char *p = list; *p;) {
        const size_t len = strcspn(p, ",");
        if (len && strncmp(name, p, len) == 0)
            return true;
        p += len + (p[len] == ',');
    }
    return false;
}

bool test_devices_open(test_devices *d)
{
    memset(d, 0, sizeof *d);
    mlxn_device_options o = mlxn_device_options_default();
    o.cpu_kernels = MLXN_CPU_KERNELS_REFERENCE;
    o.threads = 1;
    if (!open_one(&d->ref, "cpu-reference", o)) {
        printf("cannot open the reference device: %s\n", mlxn_last_error());
        return false;
    }
    /* two threads on every machine (threads 2): the kernels' paths depend on how the rows of a
     * product are shared out (e.g. qmatmul's chunks, of which each thread takes at least four),
     * so a fixed count keeps a case on the same paths wherever the tests run; cpu-threads, the
     * best level with a thread per core, checks the splits among more threads */
    static const struct {
        const char *name;
        mlxn_cpu_kernels level;
        int threads;
    } levels[] = {{"cpu-portable", MLXN_CPU_KERNELS_PORTABLE, 2},
                  {"cpu-avx2", MLXN_CPU_KERNELS_AVX2, 2},
                  {"cpu-avx512", MLXN_CPU_KERNELS_AVX512, 2},
                  {"cpu-avx512-bf16", MLXN_CPU_KERNELS_AVX512_BF16, 2},
                  {"cpu-threads", MLXN_CPU_KERNELS_AUTO, 0}};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        if (!wanted(levels[i].name)) {
            harness_skip(levels[i].name, "not in MLXN_TEST_DEVICES");
            continue;
        }
        o = mlxn_device_options_default();
        o.cpu_kernels = levels[i].level;
        o.threads = levels[i].threads;
        if (open_one(&d->list[d->count], levels[i].name, o))
            d->count++;
        else
            harness_skip(levels[i].name, mlxn_last_error());
    }
    int n = mlxn_cuda_device_count();
    if (n == 0)
        harness_skip("cuda", "no CUDA device (GPU tests are skipped)");
    for (int i = 0; i < n && d->count < 8; i++) {
        char name[32];
        snprintf(name, sizeof name, "cuda:%d", i);
        if (!wanted(name)) {
            harness_skip(name, "not in MLXN_TEST_DEVICES");
            continue;
        }
        o = mlxn_device_options_default();
        o.kind = MLXN_DEVICE_CUDA;
        o.ordinal = i;
        if (open_one(&d->list[d->count], name, o))
            d->count++;
        else
            harness_fail(name, "cannot open: %s", mlxn_last_error());
    }
    return true;
}

void test_devices_close(test_devices *d)
{
    for (int i = 0; i < d->count; i++) {
        mlxn_stream_free(d->list[i].stream);
        mlxn_device_free(d->list[i].device);
    }
    mlxn_stream_free(d->ref.stream);
    mlxn_device_free(d->ref.device);
}

/* ---------------------------------------------------------------- operands */

static size_t elem_size(mlxn_dtype dt)
{
    return (size_t)mlxn_dtype_block_bytes(dt);
}

static bool layout(operand *o)
{
    /* Element offsets in row-major order of the logical shape. */
    o->numel = 1;
    for (int i = 0; i < o->ndim; i++)
        o->numel *= o->shape[i];
    o->elem_offsets = malloc((size_t)(o->numel ? o->numel : 1) * sizeof(int64_t));
    o->image = malloc(o->bytes);
    if (!o->elem_offsets || !o->image)
        return false;
    memset(o->image, GUARD_BYTE, o->bytes);
    int64_t idx[MLXN_MAX_DIMS] = {0};
    for (int64_t e = 0; e < o->numel; e++) {
        int64_t off = (int64_t)o->offset;
        for (int i = 0; i < o->ndim; i++)
            off += idx[i] * o->stride[i];
        o->elem_offsets[e] = off;
        for (int i = o->ndim - 1; i >= 0; i--) {
            if (++idx[i] < o->shape[i])
                break;
            idx[i] = 0;
        }
    }
    return true;
}

bool operand_init(operand *o, mlxn_dtype dtype, int ndim, const int64_t *shape, int64_t pad_elems,
                  bool permute_outer)
{
    memset(o, 0, sizeof *o);
    o->dtype = dtype;
    o->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        o->shape[i] = shape[i];
    size_t es = elem_size(dtype);
    /* Storage order of dims, outermost first; optionally the two outermost swapped. */
    int order[MLXN_MAX_DIMS];
    for (int i = 0; i < ndim; i++)
        order[i] = i;
    if (permute_outer && ndim >= 3) {
        order[0] = 1;
        order[1] = 0;
    }
    int64_t s = (int64_t)es;
    o->stride[ndim - 1] = s;
    s *= shape[ndim - 1] + pad_elems;
    for (int k = ndim - 2; k >= 0; k--) {
        int d = order[k];
        o->stride[d] = s;
        s *= shape[d];
    }
    o->offset = GUARD_BYTES;
    o->bytes = (size_t)s + 2 * GUARD_BYTES;
    return layout(o);
}

bool operand_init_strided(operand *o, mlxn_dtype dtype, int ndim, const int64_t *shape,
                          const int64_t *stride_elems, int64_t elem_offset, int64_t span_elems)
{
    memset(o, 0, sizeof *o);
    o->dtype = dtype;
    o->ndim = ndim;
    const size_t es = elem_size(dtype);
    for (int i = 0; i < ndim; i++) {
        o->shape[i] = shape[i];
        o->stride[i] = stride_elems[i] * (int64_t)es;
    }
    o->offset = GUARD_BYTES + (size_t)elem_offset * es;
    o->bytes = (size_t)span_elems * es + 2 * GUARD_BYTES;
    return layout(o);
}

bool operand_like(operand *o, const operand *like, mlxn_dtype dtype)
{
    memset(o, 0, sizeof *o);
    o->dtype = dtype;
    o->ndim = like->ndim;
    size_t ratio_num = elem_size(dtype), ratio_den = elem_size(like->dtype);
    for (int i = 0; i < like->ndim; i++) {
        o->shape[i] = like->shape[i];
        o->stride[i] = (int64_t)((size_t)like->stride[i] * ratio_num / ratio_den);
    }
    o->offset = GUARD_BYTES;
    o->bytes = (like->bytes - 2 * GUARD_BYTES) * ratio_num / ratio_den + 2 * GUARD_BYTES;
    return layout(o);
}

void operand_free(operand *o)
{
    free(o->image);
    free(o->elem_offsets);
    memset(o, 0, sizeof *o);
}

double operand_get(const operand *o, int64_t i)
{
    const uint8_t *p = o->image + o->elem_offsets[i];
    switch (o->dtype) {
    case MLXN_DTYPE_F32: {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    case MLXN_DTYPE_F16: {
        uint16_t h;
        memcpy(&h, p, 2);
        return mlxn_f16_to_f32(h);
    }
    case MLXN_DTYPE_BF16: {
        uint16_t h;
        memcpy(&h, p, 2);
        return mlxn_bf16_to_f32(h);
    }
    case MLXN_DTYPE_I32: {
        int32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    default:
        return NAN;
    }
}

void operand_set(operand *o, int64_t i, double v)
{
    uint8_t *p = o->image + o->elem_offsets[i];
    switch (o->dtype) {
    case MLXN_DTYPE_F32: {
        float f = (float)v;
        memcpy(p, &f, 4);
        break;
    }
    case MLXN_DTYPE_F16: {
        uint16_t h = mlxn_f32_to_f16((float)v);
        memcpy(p, &h, 2);
        break;
    }
    case MLXN_DTYPE_BF16: {
        uint16_t h = mlxn_f32_to_bf16((float)v);
        memcpy(p, &h, 2);
        break;
    }
    case MLXN_DTYPE_I32: {
        int32_t x = (int32_t)v;
        memcpy(p, &x, 4);
        break;
    }
    default:
        break;
    }
}

void operand_poison(operand *o)
{
    for (int64_t i = 0; i < o->numel; i++)
        operand_set(o, i, NAN);
}

bool operand_place(const operand *o, test_device *dev, placed *out)
{
    memset(out, 0, sizeof *out);
    if (mlxn_buffer_create(dev->device, o->bytes, &out->buffer) != MLXN_STATUS_OK)
        return false;
    if (mlxn_buffer_upload(out->buffer, 0, o->image, o->bytes, NULL) != MLXN_STATUS_OK) {
        mlxn_buffer_free(out->buffer);
        out->buffer = NULL;
        return false;
    }
    mlxn_tensor *t = &out->view;
    t->buffer = out->buffer;
    t->offset = o->offset;
    t->dtype = o->dtype;
    t->ndim = o->ndim;
    for (int i = 0; i < o->ndim; i++) {
        t->shape[i] = o->shape[i];
        t->stride[i] = o->stride[i];
    }
    return true;
}

bool placed_fetch(const placed *p, test_device *dev, const operand *lay, operand *out)
{
    memset(out, 0, sizeof *out);
    *out = *lay;
    out->image = malloc(lay->bytes);
    out->elem_offsets = malloc((size_t)(lay->numel ? lay->numel : 1) * sizeof(int64_t));
    if (!out->image || !out->elem_offsets)
        return false;
    memcpy(out->elem_offsets, lay->elem_offsets, (size_t)lay->numel * sizeof(int64_t));
    if (mlxn_stream_sync(dev->stream) != MLXN_STATUS_OK)
        return false;
    return mlxn_buffer_download(p->buffer, 0, out->image, lay->bytes, NULL) == MLXN_STATUS_OK;
}

void placed_free(placed *p)
{
    mlxn_buffer_free(p->buffer);
    p->buffer = NULL;
}

/* ---------------------------------------------------------------- comparison */

tolerance tolerance_for(mlxn_dtype dt)
{
    switch (dt) {
    case MLXN_DTYPE_F16:
        return (tolerance){1e-3, 1e-3, "f16 output: one rounding step of 2^-11 relative"};
    case MLXN_DTYPE_BF16:
        return (tolerance){8e-3, 8e-3, "bf16 output: one rounding step of 2^-8 relative"};
    default:
        return (tolerance){1e-6, 2e-6,
                           "f32 output: f32 rounding and rsqrt error (a few 1e-7 per element)"};
    }
}

bool compare_operands(const operand *out, const operand *ref, tolerance tol, char *why,
                      size_t cap)
{
    /* Bytes outside the elements: guards, row padding, gaps. */
    uint8_t *is_elem = calloc(out->bytes, 1);
    if (!is_elem) {
        snprintf(why, cap, "out of memory");
        return false;
    }
    size_t es = elem_size(out->dtype);
    for (int64_t i = 0; i < out->numel; i++)
        memset(is_elem + out->elem_offsets[i], 1, es);
    for (size_t b = 0; b < out->bytes; b++)
        if (!is_elem[b] && out->image[b] != ref->image[b]) {
            snprintf(why, cap, "byte %zu outside the view changed (0x%02x, expected 0x%02x)", b,
                     out->image[b], ref->image[b]);
            free(is_elem);
            return false;
        }
    free(is_elem);
    double err2 = 0, ref2 = 0, maxerr = 0, maxref = 0;
    int64_t worst = -1;
    for (int64_t i = 0; i < out->numel; i++) {
        double o = operand_get(out, i), r = operand_get(ref, i);
        if (isnan(r) || isnan(o) || isinf(r) || isinf(o)) {
            bool same = (isnan(r) && isnan(o)) || (isinf(r) && isinf(o) && (r > 0) == (o > 0));
            if (!same) {
                snprintf(why, cap, "element %lld: got %g, expected %g", (long long)i, o, r);
                return false;
            }
            continue;
        }
        double e = fabs(o - r);
        err2 += e * e;
        ref2 += r * r;
        if (e > maxerr) {
            maxerr = e;
            worst = i;
        }
        if (fabs(r) > maxref)
            maxref = fabs(r);
    }
    double rel_l2 = ref2 > 0 ? sqrt(err2 / ref2) : sqrt(err2);
    double rel_max = maxref > 0 ? maxerr / maxref : maxerr;
    if (rel_l2 > tol.rel_l2 || rel_max > tol.rel_max) {
        snprintf(why, cap,
                 "rel L2 %.3g (bound %.3g), max err/max|ref| %.3g (bound %.3g); worst element "
                 "%lld: got %.9g, expected %.9g",
                 rel_l2, tol.rel_l2, rel_max, tol.rel_max, (long long)worst,
                 worst >= 0 ? operand_get(out, worst) : 0.0,
                 worst >= 0 ? operand_get(ref, worst) : 0.0);
        return false;
    }
    if (g_verbose)
        snprintf(why, cap, "rel L2 %.3g, max %.3g", rel_l2, rel_max);
    return true;
}

bool compare_within_bound(const operand *out, const operand *ref, const double *bound, double tol,
                          char *why, size_t cap)
{
    tolerance loose = {1e30, 1e30, ""}; /* values are checked below */
    if (!compare_operands(out, ref, loose, why, cap))
        return false;
    double worst = 0;
    int64_t at = -1;
    for (int64_t i = 0; i < out->numel; i++) {
        if (!isfinite(operand_get(ref, i)))
            continue; /* NaN / Inf: positions already matched above */
        double r = fabs(operand_get(out, i) - operand_get(ref, i)) / (bound[i] > 0 ? bound[i] : 1e-30);
        if (!(r <= worst)) {
            worst = r;
            at = i;
        }
    }
    if (worst > tol) {
        snprintf(why, cap, "element %lld: |err| / its bound = %.3g (at most %.0e): got %.9g, expected %.9g",
                 (long long)at, worst, tol, operand_get(out, at), operand_get(ref, at));
        return false;
    }
    return true;
}

void harness_expect_status(const char *name, mlxn_status got, mlxn_status want, const char *needle)
{
    if (got != want)
        harness_fail(name, "returned %s, expected %s (%s)", mlxn_status_str(got), mlxn_status_str(want),
                     mlxn_last_error());
    else if (needle && !strstr(mlxn_last_error(), needle))
        harness_fail(name, "message \"%s\" does not mention \"%s\"", mlxn_last_error(), needle);
    else
        harness_pass(name);
}

void harness_run_bound_case(const char *name, test_devices *devs, harness_run_fn run, void *ctx,
                            const double *bound, double tol, double tol_cuda)
{
    char why[512];
    operand want = {0};
    if (!bound) {
        harness_fail(name, "out of memory");
        return;
    }
    if (!run(ctx, &devs->ref, &want, why, sizeof why)) {
        harness_fail(name, "reference: %s", why);
        return;
    }
    for (int i = 0; i < devs->count; i++) {
        char full[300];
        snprintf(full, sizeof full, "%s @%s", name, devs->list[i].name);
        operand got = {0};
        if (!run(ctx, &devs->list[i], &got, why, sizeof why))
            harness_fail(full, "%s", why);
        else if (!compare_within_bound(&got, &want, bound, strncmp(devs->list[i].name, "cuda", 4) ? tol : tol_cuda,
                                       why, sizeof why))
            harness_fail(full, "%s", why);
        else
            harness_pass(full);
        operand_free(&got);
    }
    operand_free(&want);
}

void harness_run_nonfinite_case(const char *name, test_devices *devs, harness_run_fn run, void *ctx, operand *x,
                                int64_t rows, int64_t K, bool nan)
{
    for (int64_t i = 0; i < rows; i++) {
        operand_set(x, i * K + (nan ? 100 : 37), nan ? NAN : INFINITY);
        if (!nan)
            operand_set(x, i * K + K - 5, -INFINITY);
    }
    for (int i = -1; i < devs->count; i++) {
        test_device *dev = i < 0 ? &devs->ref : &devs->list[i];
        char full[300], why[512];
        snprintf(full, sizeof full, "%s @%s", name, i < 0 ? "reference" : dev->name);
        operand got = {0};
        if (!run(ctx, dev, &got, why, sizeof why)) {
            harness_fail(full, "%s", why);
            continue;
        }
        int64_t bad = -1;
        for (int64_t j = 0; j < got.numel && bad < 0; j++)
            if (isfinite(operand_get(&got, j)))
                bad = j;
        if (bad >= 0)
            harness_fail(full, "y[%lld] = %g is finite", (long long)bad, operand_get(&got, bad));
        else
            harness_pass(full);
        operand_free(&got);
    }
}

static bool run_op_case_on(const harness_op_case *c, test_device *dev, operand *got, char *why, size_t cap)
{
    placed p[HARNESS_MAX_OPERANDS];
    mlxn_tensor views[HARNESS_MAX_OPERANDS];
    memset(p, 0, sizeof p);
    bool ok = false;
    for (int i = 0; i < c->n_ops; i++) {
        if (!operand_place(&c->ops[i], dev, &p[i])) {
            snprintf(why, cap, "placing operand %d: %s", i, mlxn_last_error());
            goto done;
        }
        views[i] = p[i].view;
    }
    const mlxn_status st = c->issue(c->ctx, dev->stream, views);
    if (st != MLXN_STATUS_OK) {
        snprintf(why, cap, "%s: %s", mlxn_status_str(st), mlxn_last_error());
        goto done;
    }
    if (!placed_fetch(&p[c->out], dev, &c->ops[c->out], got)) {
        snprintf(why, cap, "fetching the output: %s", mlxn_last_error());
        goto done;
    }
    ok = true;
done:
    for (int i = 0; i < c->n_ops; i++)
        placed_free(&p[i]);
    return ok;
}

void harness_run_op_case(const char *name, test_devices *devs, const harness_op_case *c, tolerance tol)
{
    char why[512], full[300];
    operand want = {0};
    if (c->n_ops > HARNESS_MAX_OPERANDS) {
        harness_fail(name, "%d operands, the harness takes %d", c->n_ops, HARNESS_MAX_OPERANDS);
        return;
    }
    if (!run_op_case_on(c, &devs->ref, &want, why, sizeof why)) {
        harness_fail(name, "reference: %s", why);
        return;
    }
    for (int d = 0; d < devs->count; d++) {
        snprintf(full, sizeof full, "%s @%s", name, devs->list[d].name);
        operand got = {0};
        if (!run_op_case_on(c, &devs->list[d], &got, why, sizeof why))
            harness_fail(full, "%s", why);
        else if (!compare_operands(&got, &want, tol, why, sizeof why))
            harness_fail(full, "%s", why);
        else
            harness_pass(full);
        operand_free(&got);
    }
    operand_free(&want);
}
