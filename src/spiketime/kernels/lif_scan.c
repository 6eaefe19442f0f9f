/* Fused LIF scan for the CPU: forward and backward over a whole sequence, per element of [B*N].
 * The equations and the adjoint recursion are in spiketime/kernels/lif_scan.py (module docstring);
 * this file is compiled on first use by spiketime/kernels/cpu.py and called through ctypes.
 * Built with -ffp-contract=off so that every step rounds exactly like the step-by-step reference
 * (spiketime.functional.lif.lif_step: separate multiplies and adds, no fused multiply-add).
 * Layout: x, s, v, i, g_* are [T, B*N] contiguous; beta, alpha are [N]; j = b*N + n.
 * g_s or g_v NULL: that gradient is zero (the output was not used). i_all NULL: beta and alpha need no
 * gradient (their sums are returned as zeros).
 * reset: 0 subtract, 1 zero, 2 none. sur: the surrogate's code in spiketime.surrogate.TABLE, whose C snippets
 * are the bodies of sg_grad/sg_prim: surrogates.h is generated from that table by cpu.py (surrogate_header).
 */
#include <math.h>
#include <stddef.h>
#include "surrogates.h"

#define CHUNK 64

#define DEFINE_SCAN(REAL, SUF)                                                                        \
SPIKETIME_SURROGATES(REAL, SUF) /* sg_grad_SUF, sg_prim_SUF: surrogates.h */                         \
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
