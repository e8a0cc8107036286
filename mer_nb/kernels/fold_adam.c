/* The one-pass Adam kernel of mer_nb.foldpar (see nbs/06a_foldpar.ipynb), compiled and loaded by `fused_adam()`. */
#include <math.h>
typedef void (*vsqrt_fn)(int, const float *, float *, unsigned long long);
enum { BLK = 4096 };
/* torch.optim.Adam's single-tensor step (L2 weight decay, bias correction) in one pass, on columns [0, n) of `rows`
   rows: p, m1, m2 rows lie `ld` floats apart, g rows `ldg`; row r has its own -lr/(1 - b1^t) and sqrt(1 - b2^t). */
void mer_adam(float *p, const float *g, float *m1, float *m2, long rows, long n, long ld, long ldg,
              const float *neg_step, const float *bc2, float wd, float w1, float b2, float c2, float eps,
              vsqrt_fn vsqrt, unsigned long long mode) {
    float d[BLK];
    for (long r = 0; r < rows; r++)
        for (long c = 0; c < n; c += BLK) {
            long w = n - c < BLK ? n - c : BLK;
            float *P = p + r * ld + c, *A = m1 + r * ld + c, *B = m2 + r * ld + c;
            const float *G = g + r * ldg + c;
            for (long i = 0; i < w; i++) {
                float gi = wd != 0.f ? fmaf(P[i], wd, G[i]) : G[i];   /* grad.add(p, alpha=wd)                          */
                A[i] = fmaf(w1, gi - A[i], A[i]);                     /* m1.lerp_(grad, 1 - b1)                         */
                B[i] = fmaf(c2 * gi, gi, B[i] * b2);                  /* m2.mul_(b2).addcmul_(grad, grad, value=1 - b2) */
            }
            vsqrt((int)w, B, d, mode);                                /* m2.sqrt(), torch's own (MKL) square root       */
            for (long i = 0; i < w; i++)                              /* p.addcdiv_(m1, sqrt / bc2 + eps, value=neg_step) */
                P[i] = P[i] + (neg_step[r] * A[i]) / (d[i] / bc2[r] + eps);
        }
}
