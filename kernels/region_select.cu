// Saliency-quantile region selection (KeepAugment, arXiv:2011.11778), CUDA kernels.
//
// Compiled at run time by CuPy's RawModule (NVRTC) from kernels/region_select.py, which holds
// the semantics (module docstring) and the pure-torch reference these kernels reproduce bit for
// bit. No headers are included, so NVRTC needs no include paths.
//
// Launch sequence for a batch of N float32 saliency maps [N, H, W] and a box of h x w:
//   1. rs_row_prefix  one thread per (image, row 0..H)    float64 row prefix sums
//   2. rs_col_prefix  one thread per (image, column 1..W) float64 column prefix sums
//      -> integral image I [N, H+1, W+1], zero first row and column. Each sum is accumulated
//         sequentially from 0.0 in the same order as torch.cumsum on the CPU, so the values are
//         identical to the reference's.
//   3. rs_box_keys    one thread per (image, position)    box sums ((a - b) - c) + d of I, stored
//                                                        as order-preserving uint64 keys
//   4. rs_select      one block per image                 radix select of the rank-th smallest
//                                                        key (the tau-quantile q), count of the
//                                                        qualifying positions, pick the k-th one
//                                                        in row-major order, write the box.
// Comparing keys is the same as comparing the float64 scores (the key map is strictly
// increasing on finite doubles once -0.0 is folded into +0.0), so no double is compared twice
// in different ways. Nothing here uses fast-math; additions are never reassociated or fused.

typedef unsigned long long u64;

#define RS_SIGN_BIT 0x8000000000000000ULL
#define RS_MAX_BLOCK 1024

// Rule for a qualifying position, given its key and the quantile key q.
#define RS_RULE_CUT 0       // key <  q
#define RS_RULE_PASTE 1     // key >= q
#define RS_RULE_CUT_TIES 2  // key <= q (cut fallback when no key is < q)

__device__ __forceinline__ u64 rs_order_key(double v) {
    if (v == 0.0) {
        v = 0.0;  // -0.0 and +0.0 compare equal; give them one key
    }
    const u64 bits = (u64)__double_as_longlong(v);
    return (bits & RS_SIGN_BIT) ? ~bits : (bits | RS_SIGN_BIT);
}

__device__ __forceinline__ bool rs_qualifies(u64 key, u64 q, int rule) {
    if (rule == RS_RULE_CUT) {
        return key < q;
    }
    if (rule == RS_RULE_PASTE) {
        return key >= q;
    }
    return key <= q;
}

// Integral image, step 1. Thread t = n * (H + 1) + r writes row r of image n of `integ`
// ([N, H+1, W+1] float64): row 0 is zeros; row r >= 1 is 0, then the running sums of saliency
// row r - 1, accumulated from 0.0 left to right.
extern "C" __global__ void rs_row_prefix(const float* __restrict__ sal, double* __restrict__ integ,
                                         long long n_images, int H, int W) {
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n_images * (H + 1)) {
        return;
    }
    const long long n = t / (H + 1);
    const int r = (int)(t % (H + 1));
    double* out = integ + (n * (H + 1) + r) * (long long)(W + 1);
    out[0] = 0.0;
    if (r == 0) {
        for (int x = 1; x <= W; ++x) {
            out[x] = 0.0;
        }
        return;
    }
    const float* in = sal + (n * H + (r - 1)) * (long long)W;
    double acc = 0.0;
    for (int x = 0; x < W; ++x) {
        acc += (double)in[x];
        out[x + 1] = acc;
    }
}

// Integral image, step 2. Thread t = n * W + (c - 1) turns column c (1..W) of image n into its
// running sums over rows 1..H, accumulated from 0.0 top to bottom.
extern "C" __global__ void rs_col_prefix(double* __restrict__ integ, long long n_images, int H,
                                         int W) {
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n_images * W) {
        return;
    }
    const long long n = t / W;
    const int c = (int)(t % W) + 1;
    double* col = integ + n * (long long)(H + 1) * (W + 1) + c;
    double acc = 0.0;
    for (int r = 1; r <= H; ++r) {
        acc += col[(long long)r * (W + 1)];
        col[(long long)r * (W + 1)] = acc;
    }
}

// Box sums. Thread t = n * M + p, p = y * Wc + x over the M = Hc * Wc top-left positions, writes
// the key of score = ((I[y+h][x+w] - I[y][x+w]) - I[y+h][x]) + I[y][x].
extern "C" __global__ void rs_box_keys(const double* __restrict__ integ, u64* __restrict__ keys,
                                       long long n_images, int H, int W, int h, int w) {
    const int Hc = H - h + 1;
    const int Wc = W - w + 1;
    const long long M = (long long)Hc * Wc;
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n_images * M) {
        return;
    }
    const long long n = t / M;
    const int p = (int)(t % M);
    const int y = p / Wc;
    const int x = p % Wc;
    const long long stride = W + 1;
    const double* I = integ + n * (long long)(H + 1) * stride;
    const double a = I[(y + h) * stride + (x + w)];
    const double b = I[y * stride + (x + w)];
    const double c = I[(y + h) * stride + x];
    const double d = I[y * stride + x];
    const double score = ((a - b) - c) + d;
    keys[t] = rs_order_key(score);
}

// Block-wide scan of one int per thread (blockDim.x <= RS_MAX_BLOCK): returns the exclusive
// prefix of this thread and writes the block total. Integer sums, exact.
__device__ int rs_block_scan(int v, int* buf, int* total) {
    const int tid = threadIdx.x;
    const int nt = blockDim.x;
    buf[tid] = v;
    __syncthreads();
    for (int off = 1; off < nt; off <<= 1) {
        const int add = tid >= off ? buf[tid - off] : 0;
        __syncthreads();
        buf[tid] += add;
        __syncthreads();
    }
    const int inclusive = buf[tid];
    *total = buf[nt - 1];
    __syncthreads();  // buf may be reused right after
    return inclusive - v;
}

__device__ int rs_count(const u64* keys, int begin, int end, u64 q, int rule) {
    int cnt = 0;
    for (int p = begin; p < end; ++p) {
        cnt += rs_qualifies(keys[p], q, rule) ? 1 : 0;
    }
    return cnt;
}

// Selection: one block per image (blockDim.x <= RS_MAX_BLOCK). `keys` is [N, M]; `rank` is
// floor(tau * (M - 1)) (computed on the host, the same for every image); `uniforms` is [N]
// float64 in [0, 1); `boxes` is [N, 4] int64 (y0, x0, y1, x1).
extern "C" __global__ void rs_select(const u64* __restrict__ keys,
                                     const double* __restrict__ uniforms,
                                     long long* __restrict__ boxes, int M, int rank, int Wc, int h,
                                     int w, int paste) {
    __shared__ unsigned int hist[256];
    __shared__ u64 s_prefix;
    __shared__ unsigned int s_want;
    __shared__ int scan_buf[RS_MAX_BLOCK];

    const long long n = blockIdx.x;
    const u64* k = keys + n * (long long)M;
    const int tid = threadIdx.x;
    const int nt = blockDim.x;

    // 1. Radix select, 8 bits at a time from the top: q = the key of rank `rank` (0-based) among
    //    the M keys, i.e. sorted[rank].
    u64 prefix = 0;
    u64 mask = 0;
    unsigned int want = (unsigned int)rank;
    for (int shift = 56; shift >= 0; shift -= 8) {
        for (int b = tid; b < 256; b += nt) {
            hist[b] = 0;
        }
        __syncthreads();
        for (int p = tid; p < M; p += nt) {
            const u64 key = k[p];
            if ((key & mask) == prefix) {
                atomicAdd(&hist[(key >> shift) & 0xFFULL], 1u);
            }
        }
        __syncthreads();
        if (tid == 0) {
            unsigned int below = 0;
            int b = 0;
            for (; b < 255; ++b) {
                if (below + hist[b] > want) {
                    break;
                }
                below += hist[b];
            }
            s_prefix = prefix | ((u64)b << shift);
            s_want = want - below;
        }
        __syncthreads();
        prefix = s_prefix;
        want = s_want;
        mask |= 0xFFULL << shift;
        __syncthreads();
    }
    const u64 q = prefix;

    // 2. Count the qualifying positions; each thread owns one contiguous chunk of positions so
    //    that the chunks, in thread order, are in row-major order.
    const int chunk = (M + nt - 1) / nt;
    const int begin = min(tid * chunk, M);
    const int end = min(begin + chunk, M);
    int rule = paste ? RS_RULE_PASTE : RS_RULE_CUT;
    int cnt = rs_count(k, begin, end, q, rule);
    int total = 0;
    int before = rs_block_scan(cnt, scan_buf, &total);
    if (total == 0) {
        // Only for cut (q is itself one of the keys, so key >= q always has a member): no score
        // is below q, i.e. q is the minimum. Fall back to key <= q. `total` is block-uniform.
        rule = RS_RULE_CUT_TIES;
        cnt = rs_count(k, begin, end, q, rule);
        before = rs_block_scan(cnt, scan_buf, &total);
    }

    // 3. k = floor(u * count), clamped to [0, count - 1]; the k-th qualifying position (0-based)
    //    in row-major order lies in the chunk of exactly one thread.
    const double prod = uniforms[n] * (double)total;
    long long kk = (long long)floor(prod);
    if (kk > total - 1) {
        kk = total - 1;
    }
    if (kk < 0) {
        kk = 0;
    }
    if (kk >= before && kk < (long long)before + cnt) {
        long long need = kk - before;
        for (int p = begin; p < end; ++p) {
            if (rs_qualifies(k[p], q, rule)) {
                if (need == 0) {
                    const int y0 = p / Wc;
                    const int x0 = p % Wc;
                    long long* out = boxes + n * 4;
                    out[0] = y0;
                    out[1] = x0;
                    out[2] = (long long)y0 + h;
                    out[3] = (long long)x0 + w;
                    break;
                }
                --need;
            }
        }
    }
}
