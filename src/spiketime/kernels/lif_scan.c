/* Fused LIF scan for the CPU: forward and backward over a whole sequence, per element of [B*N].
 * The equations and the adjoint recursion are in spiketime/kernels/lif_scan.py (module docstring);
 * this file is compiled on first use by spiketime/kernels/cpu.py and called through ctypes.
 * Built with -ffp-contract=off so that every step rounds exactly like the step-by-step reference
 * (spiketime.functional.lif.lif_step: separate multiplies and adds, no fused multiply-add).
 * Layout: x, s, v, i, g_* are [T, B*N] contiguous; beta, alpha are [N]; j = b*N + n.
 * g_s or g_v NULL: that gradient is zero (the output was not used). i_all NULL: beta and alpha need no
 * gradient (their sums are returned as zeros).
 * reset: 0 subtract, 1 zero, 2 none. sur: 0 fast_sigmoid, 1 gaussian, 2 arctan, 3 triangle, 4 sigmoid.
 */
#include <math.h>
#include <stddef.h>

#define CHUNK 64

#define DEFINE_SCAN(REAL, SUF)                                                                        \
static inline REAL sg_grad_##SUF(REAL x, int sur, REAL k) {                                          \
    switch (sur) {                                                                                    \
    case 0: { REAL d = k * (REAL)fabs((double)x) + (REAL)1; return (REAL)1 / (d * d); }               \
    case 1: { REAL z = x / k; return (REAL)exp((double)((REAL)-0.5 * z * z)) /                      \
                                     ((REAL)2.5066282746310002 * k); }                               \
    case 2: { REAL z = (REAL)1.5707963267948966 * k * x; return (k / (REAL)2) / ((REAL)1 + z * z); } \
    case 4: { REAL p = (REAL)1 / ((REAL)1 + (REAL)exp((double)(-(k * x)))); return k * p * ((REAL)1 - p); } \
    default: { REAL g = (REAL)1 - (REAL)fabs((double)x) / k; return (g > 0 ? g : (REAL)0) / k; }     \
    }                                                                                                 \
}                                                                                                     \
static inline REAL sg_prim_##SUF(REAL x, int sur, REAL k) {                                          \
    switch (sur) {                                                                                    \
    case 0: return x / ((REAL)1 + k * (REAL)fabs((double)x));                                         \
    case 1: return (REAL)0.5 * ((REAL)1 + (REAL)erf((double)(x / (k * (REAL)1.4142135623730951))));  \
    case 2: return (REAL)atan((double)((REAL)1.5707963267948966 * k * x)) / (REAL)3.141592653589793   \
                   + (REAL)0.5;                                                                       \
    case 4: return (REAL)1 / ((REAL)1 + (REAL)exp((double)(-(k * x))));                              \
    default: { REAL u = x / k; u = u < -1 ? -1 : (u > 1 ? 1 : u);                                     \
               REAL sgn = u > 0 ? (REAL)1 : (u < 0 ? (REAL)-1 : (REAL)0);                             \
               return (REAL)0.5 + u - sgn * u * u / (REAL)2; }                                        \
    }                                                                                                 \
}                                                                                                     \
static inline REAL spk_##SUF(REAL v, REAL theta, int smooth, int sur, REAL k) {                      \
    return smooth ? sg_prim_##SUF(v - theta, sur, k) : (v > theta ? (REAL)1 : (REAL)0);              \
}                                                                                                     \
void lif_fwd_##SUF(const REAL *x, const REAL *beta, const REAL *alpha, const REAL *v0,               \
                   const REAL *i0, const REAL *s0, REAL *s_out, REAL *v_out, REAL *i_out, REAL *iT,   \
                   long T, long B, long N, double theta_d, int reset, int sur, double scale,          \
                   int smooth, int nthreads) {                                                        \
    const long BN = B * N;                                                                            \
    const REAL theta = (REAL)theta_d, k = (REAL)scale;                                                \
    _Pragma("omp parallel for schedule(static) num_threads(nthreads)")                                \
    for (long j0 = 0; j0 < BN; j0 += CHUNK) {                                                         \
        const long m = BN - j0 < CHUNK ? BN - j0 : CHUNK;                                             \
        REAL v[CHUNK], i[CHUNK], s[CHUNK], b[CHUNK], a[CHUNK];                                        \
        for (long c = 0; c < m; ++c) {                                                                \
            const long j = j0 + c, n = j % N;                                                         \
            v[c] = v0[j]; i[c] = i0[j]; s[c] = s0[j]; b[c] = beta[n]; a[c] = alpha ? alpha[n] : 0;    \
        }                                                                                             \
        for (long t = 0; t < T; ++t) {                                                                \
            const REAL *xt = x + t * BN + j0;                                                         \
            REAL *vt = v_out + t * BN + j0, *st = s_out + t * BN + j0;                                \
            for (long c = 0; c < m; ++c) {                                                            \
                REAL ic = alpha ? a[c] * i[c] + xt[c] : xt[c];                                        \
                REAL vc;                                                                              \
                if (reset == 1) vc = (b[c] * v[c]) * ((REAL)1 - s[c]) + ((REAL)1 - b[c]) * ic;        \
                else vc = b[c] * v[c] + ((REAL)1 - b[c]) * ic;                                        \
                if (reset == 0) vc = vc - theta * s[c];                                               \
                i[c] = ic; v[c] = vc; s[c] = spk_##SUF(vc, theta, smooth, sur, k);                    \
                vt[c] = vc; st[c] = s[c];                                                             \
                if (i_out) i_out[t * BN + j0 + c] = ic;                                               \
            }                                                                                         \
        }                                                                                             \
        for (long c = 0; c < m; ++c) iT[j0 + c] = i[c];                                               \
    }                                                                                                 \
}                                                                                                     \
void lif_bwd_##SUF(const REAL *g_s, const REAL *g_v, const REAL *g_iT, const REAL *v_seq,            \
                   const REAL *i_all, const REAL *beta, const REAL *alpha, const REAL *v0,            \
                   const REAL *i0, const REAL *s0, REAL *g_x, REAL *g_beta_bn, REAL *g_alpha_bn,      \
                   REAL *g_v0, REAL *g_i0, REAL *g_s0, long T, long B, long N, double theta_d,        \
                   int reset, int sur, double scale, int smooth, int detach_reset, int nthreads) {    \
    const long BN = B * N;                                                                            \
    const REAL theta = (REAL)theta_d, k = (REAL)scale;                                                \
    _Pragma("omp parallel for schedule(static) num_threads(nthreads)")                                \
    for (long j0 = 0; j0 < BN; j0 += CHUNK) {                                                         \
        const long m = BN - j0 < CHUNK ? BN - j0 : CHUNK;                                             \
        REAL avn[CHUNK], aic[CHUNK], gb[CHUNK], ga[CHUNK], b[CHUNK], a[CHUNK];                        \
        for (long c = 0; c < m; ++c) {                                                                \
            const long j = j0 + c, n = j % N;                                                         \
            avn[c] = 0; aic[c] = g_iT[j]; gb[c] = 0; ga[c] = 0; b[c] = beta[n];                       \
            a[c] = alpha ? alpha[n] : 0;                                                              \
        }                                                                                             \
        for (long t = T - 1; t >= 0; --t) {                                                           \
            const long o = t * BN + j0, op = (t - 1) * BN + j0;                                       \
            for (long c = 0; c < m; ++c) {                                                            \
                const long j = j0 + c;                                                                \
                const REAL v = v_seq[o + c];                                                          \
                const REAL vp = t > 0 ? v_seq[op + c] : v0[j];                                        \
                const REAL sp = t > 0 ? spk_##SUF(vp, theta, smooth, sur, k) : s0[j];                 \
                REAL as = g_s ? g_s[o + c] : (REAL)0;                                                                 \
                if (!detach_reset) {                                                                  \
                    if (reset == 0) as = as - theta * avn[c];                                         \
                    else if (reset == 1) as = as - b[c] * v * avn[c];                                 \
                }                                                                                     \
                REAL av = (g_v ? g_v[o + c] : (REAL)0) + sg_grad_##SUF(v - theta, sur, k) * as;                         \
                if (reset == 1) av = av + avn[c] * (b[c] * ((REAL)1 - spk_##SUF(v, theta, smooth, sur, k))); \
                else av = av + avn[c] * b[c];                                                         \
                REAL ai = av * ((REAL)1 - b[c]) + aic[c];                                             \
                g_x[o + c] = ai;                                                                      \
                const REAL veff = reset == 1 ? vp * ((REAL)1 - sp) : vp;                              \
                if (i_all) {                                                                          \
                    gb[c] = gb[c] + av * (veff - i_all[o + c]);                                       \
                    if (alpha) ga[c] = ga[c] + ai * (t > 0 ? i_all[op + c] : i0[j]);                  \
                }                                                                                     \
                aic[c] = alpha ? ai * a[c] : (REAL)0;                                                 \
                avn[c] = av;                                                                          \
            }                                                                                         \
        }                                                                                             \
        for (long c = 0; c < m; ++c) {                                                                \
            const long j = j0 + c;                                                                    \
            if (reset == 1) {                                                                         \
                g_v0[j] = avn[c] * (b[c] * ((REAL)1 - s0[j]));                                        \
                g_s0[j] = detach_reset ? (REAL)0 : -(b[c] * v0[j]) * avn[c];                          \
            } else {                                                                                  \
                g_v0[j] = avn[c] * b[c];                                                              \
                g_s0[j] = (reset == 0 && !detach_reset) ? -theta * avn[c] : (REAL)0;                  \
            }                                                                                         \
            g_i0[j] = alpha ? aic[c] : (REAL)0;                                                       \
            g_beta_bn[j] = gb[c];                                                                     \
            if (alpha) g_alpha_bn[j] = ga[c];                                                         \
        }                                                                                             \
    }                                                                                                 \
}

DEFINE_SCAN(float, f32)
DEFINE_SCAN(double, f64)
