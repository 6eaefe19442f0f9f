/* Axonal delay, mode "interp", for the CPU: y[t] = (1 - f) xp[t - n] + f xp[t - n - 1] per neuron, over
 * xp = cat(buffer, x) without building it (spiketime/functional/delay.py, _interp_shift, is the reference).
 * Layout: x, y, g_y, g_x are [T, B*N] contiguous, buffer and g_buffer [taps-1, B*N]; shift (= taps-1-n,
 * the xp row of x[t-n] at t = 0) and f are per neuron [N]; j = b*N + n_index.
 * Compiled with lif_scan.c into one library by spiketime/kernels/cpu.py.
 */
#include <stddef.h>

#define DEFINE_DELAY(REAL, SUF)                                                                       \
static inline REAL xp_##SUF(const REAL *x, const REAL *buf, long row, long L0, long BN, long j) {    \
    return row >= L0 ? x[(row - L0) * BN + j] : buf[row * BN + j];                                    \
}                                                                                                     \
void axonal_interp_fwd_##SUF(const REAL *x, const REAL *buf, const long *shift, const REAL *f,       \
                             REAL *y, long T, long B, long N, long taps, int nthreads) {              \
    const long BN = B * N, L0 = taps - 1;                                                             \
    _Pragma("omp parallel for schedule(static) num_threads(nthreads)")                                \
    for (long t = 0; t < T; ++t) {                                                                    \
        for (long b = 0; b < B; ++b) {                                                                \
            for (long n = 0; n < N; ++n) {                                                            \
                const long j = b * N + n, row = t + shift[n];                                         \
                y[t * BN + j] = ((REAL)1 - f[n]) * xp_##SUF(x, buf, row, L0, BN, j)                  \
                                + f[n] * xp_##SUF(x, buf, row - 1, L0, BN, j);                        \
            }                                                                                         \
        }                                                                                             \
    }                                                                                                 \
}                                                                                                     \
/* g_xp[p] = (1 - f) g_y[p - shift] + f g_y[p - shift + 1] (rows of g_y inside [0, T)), written to g_x   \
 * for p >= taps-1 and to g_buf below (skipped when g_x is NULL: the input needs no gradient);           \
 * g_f_bn[j] = sum_t g_y[t] (xp[t+shift-1] - xp[t+shift]). */                                          \
void axonal_interp_bwd_##SUF(const REAL *g_y, const REAL *x, const REAL *buf, const long *shift,     \
                             const REAL *f, REAL *g_x, REAL *g_buf, REAL *g_f_bn, long T, long B,     \
                             long N, long taps, int nthreads) {                                       \
    const long BN = B * N, L0 = taps - 1, L = L0 + T;                                                 \
    if (g_x) {                                                                                        \
        _Pragma("omp parallel for schedule(static) num_threads(nthreads)")                            \
        for (long p = 0; p < L; ++p) {                                                                \
            REAL *out = p >= L0 ? g_x + (p - L0) * BN : g_buf + p * BN;                               \
            for (long b = 0; b < B; ++b) {                                                            \
                for (long n = 0; n < N; ++n) {                                                        \
                    const long j = b * N + n, t0 = p - shift[n], t1 = t0 + 1;                         \
                    REAL acc = 0;                                                                     \
                    if (t0 >= 0 && t0 < T) acc += ((REAL)1 - f[n]) * g_y[t0 * BN + j];                \
                    if (t1 >= 0 && t1 < T) acc += f[n] * g_y[t1 * BN + j];                            \
                    out[j] = acc;                                                                     \
                }                                                                                     \
            }                                                                                         \
        }                                                                                             \
    }                                                                                                 \
    _Pragma("omp parallel for schedule(static) num_threads(nthreads)")                                \
    for (long b = 0; b < B; ++b) {                                                                    \
        REAL *acc = g_f_bn + b * N;                                                                   \
        for (long n = 0; n < N; ++n) acc[n] = 0;                                                      \
        for (long t = 0; t < T; ++t) {                                                                \
            for (long n = 0; n < N; ++n) {                                                            \
                const long j = b * N + n, row = t + shift[n];                                         \
                acc[n] += g_y[t * BN + j] * (xp_##SUF(x, buf, row - 1, L0, BN, j)                     \
                                             - xp_##SUF(x, buf, row, L0, BN, j));                     \
            }                                                                                         \
        }                                                                                             \
    }                                                                                                 \
}

DEFINE_DELAY(float, f32)
DEFINE_DELAY(double, f64)
