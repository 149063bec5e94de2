// Label-conditioned factorised categorical sampling (LB-Aug: Wang et al., "Fine-Grained
// AutoAugmentation for Multi-Label Classification"), CUDA kernel.
//
// Compiled at run time by CuPy's RawModule (NVRTC) from kernels/label_sample.py, which holds
// the semantics (module docstring) and the pure-torch reference this kernel reproduces. No
// headers are included, so NVRTC needs no include paths.
//
// One launch per batch: ls_sample, one warp per sample (blockDim.x a multiple of 32). The warp
// draws the op from its row of op_logits [N, K], then the apply-probability level and the
// magnitude level from the chosen op's rows of prob_logits [N, K, P] and mag_logits [N, K, M],
// by inverse CDF, and writes the three ids and the summed log-probability.
//
// Per row (ls_pick), in the arithmetic of the module docstring:
//   m    = max of the row (float32; a max is exact in any order)
//   w_i  = (float)exp((double)(x_i - m))          x_i - m in float32, exp in float64,
//                                                 rounded to float32, then read as float64
//   cdf  = running float64 sum of w_0, w_1, ... strictly in index order: the lanes compute the
//          w_i of a chunk of 32 in parallel, then every lane adds the chunk's values one by one
//          through shuffles, so the additions happen in the same order as torch.cumsum on the
//          CPU (sequential float64 accumulation)
//   t    = (double)u * total                      total = cdf[len - 1]
//   pick = first i with t < cdf[i]; if none, the last i with w_i > 0
//   logp = (double)(x_pick - m) - log(total)
// Nothing here uses fast-math; no multiply is followed by an add that could be fused, and no
// sum is reassociated.

#define LS_WARP 32
#define LS_FULL_MASK 0xffffffffu

struct LsPick {
    int index;
    double logp;
};

// The weight of logit x in a row with maximum m (exactly the reference's rounding steps).
__device__ __forceinline__ double ls_weight(float x, float m) {
    const float d = x - m;  // -inf for a masked entry; 0 for the maximum
    return (double)(float)exp((double)d);
}

// Inverse-CDF pick from one row of `len` float32 logits with the uniform u in [0, 1). Called by
// all 32 lanes of a warp with the same arguments (lane = threadIdx.x % 32); every lane returns
// the same result.
__device__ LsPick ls_pick(const float* __restrict__ row, int len, float u, int lane) {
    float m = __int_as_float(0xff800000);  // -inf
    for (int i = lane; i < len; i += LS_WARP) {
        m = fmaxf(m, row[i]);
    }
    for (int offset = LS_WARP / 2; offset > 0; offset >>= 1) {
        m = fmaxf(m, __shfl_xor_sync(LS_FULL_MASK, m, offset));
    }

    // Pass 1: total = sum of all weights, accumulated in index order.
    double total = 0.0;
    for (int base = 0; base < len; base += LS_WARP) {
        const int i = base + lane;
        const double w = i < len ? ls_weight(row[i], m) : 0.0;
        const int count = len - base < LS_WARP ? len - base : LS_WARP;
        for (int j = 0; j < count; ++j) {
            total += __shfl_sync(LS_FULL_MASK, w, j);
        }
    }
    const double t = (double)u * total;
    const double log_total = log(total);

    // Pass 2: the same running sums again; lane j keeps cdf[base + j] and the warp votes.
    double running = 0.0;
    int last_positive = 0;  // the maximum has weight 1, so some weight is positive
    for (int base = 0; base < len; base += LS_WARP) {
        const int i = base + lane;
        const double w = i < len ? ls_weight(row[i], m) : 0.0;
        const int count = len - base < LS_WARP ? len - base : LS_WARP;
        double cdf = 0.0;
        for (int j = 0; j < count; ++j) {
            running += __shfl_sync(LS_FULL_MASK, w, j);
            if (j == lane) {
                cdf = running;
            }
        }
        const unsigned int hit = __ballot_sync(LS_FULL_MASK, i < len && t < cdf);
        if (hit != 0u) {  // warp-uniform
            const int k = base + __ffs((int)hit) - 1;
            LsPick out = {k, (double)(row[k] - m) - log_total};
            return out;
        }
        const unsigned int positive = __ballot_sync(LS_FULL_MASK, i < len && w > 0.0);
        if (positive != 0u) {
            last_positive = base + (LS_WARP - 1) - __clz((int)positive);
        }
    }
    // Only reachable if t >= total, which u < 1 rules out; kept as the documented clamp.
    LsPick out = {last_positive, (double)(row[last_positive] - m) - log_total};
    return out;
}

// Warp w = (blockIdx.x * blockDim.x + threadIdx.x) / 32 samples row w. Inputs are C-contiguous
// float32: op_logits [N, K], prob_logits [N, K, P], mag_logits [N, K, M], uniforms [N, 3]
// (column 0: op, 1: probability level, 2: magnitude level). Outputs: op_ids, prob_levels,
// mag_levels int64 [N], log_prob float32 [N].
extern "C" __global__ void ls_sample(const float* __restrict__ op_logits,
                                     const float* __restrict__ prob_logits,
                                     const float* __restrict__ mag_logits,
                                     const float* __restrict__ uniforms,
                                     long long* __restrict__ op_ids,
                                     long long* __restrict__ prob_levels,
                                     long long* __restrict__ mag_levels,
                                     float* __restrict__ log_prob, long long n_samples, int K,
                                     int P, int M) {
    const long long n = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / LS_WARP;
    const int lane = (int)(threadIdx.x % LS_WARP);
    if (n >= n_samples) {
        return;  // the whole warp: all its lanes share n
    }
    const float* u = uniforms + n * 3;
    const LsPick op = ls_pick(op_logits + n * K, K, u[0], lane);
    const long long op_row = n * K + op.index;
    const LsPick prob = ls_pick(prob_logits + op_row * P, P, u[1], lane);
    const LsPick mag = ls_pick(mag_logits + op_row * M, M, u[2], lane);
    if (lane == 0) {
        op_ids[n] = op.index;
        prob_levels[n] = prob.index;
        mag_levels[n] = mag.index;
        log_prob[n] = (float)((op.logp + prob.logp) + mag.logp);
    }
}
