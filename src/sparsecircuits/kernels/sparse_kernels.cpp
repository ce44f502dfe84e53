// CPU kernels for weight-sparse linear layers and AbsTopK (docs/sparse-kernels.md).
//
// A C ABI over raw float32 pointers, loaded with ctypes; no torch or Python headers, so it
// compiles in about a second. OpenMP regions run on the libgomp that torch already loaded
// (same soname), so torch.set_num_threads governs both and the two never fight for cores.
//
// Layout: activations are torch's row-major [N tokens, features]. Each thread takes a tile
// of TILE tokens, transposes it into a [features][TILE] buffer, and then every nonzero
// weight costs TILE/16 vector FMAs on a contiguous row of that buffer (one vector load per
// FMA), which is what makes sparse work run near the cache's bandwidth instead of gathering.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <omp.h>

typedef float v16 __attribute__((vector_size(64)));

// Tiles are 16 * NV tokens. NV = 8 (128 tokens) unless the buffer that nonzeros gather from
// would outgrow L2 (more than 1024 features: 512 KiB), then NV = 4.
constexpr int64_t WIDE = 1024;
constexpr int OB = 16;            // output rows written back per block (one 16 x 16 transpose)

namespace {

// One growable 64-byte-aligned scratch buffer per thread (OpenMP threads persist).
struct Scratch {
    float* p = nullptr;
    size_t cap = 0;
    float* get(size_t n) {
        if (n > cap) {
            std::free(p);
            cap = (n + 1023) & ~size_t(1023);
            p = static_cast<float*>(std::aligned_alloc(64, cap * sizeof(float)));
        }
        return p;
    }
};
thread_local Scratch scratch_a, scratch_b, scratch_c;

typedef int32_t i16v __attribute__((vector_size(64)));

// In-register transpose of a 16 x 16 block (r[i][j] -> r[j][i]) in four butterfly stages:
// stage b swaps the off-diagonal b x b sub-blocks of every 2b x 2b block.
template <int B>
inline void transpose_stage(v16* r) {
    i16v lo, hi;
    for (int j = 0; j < 16; ++j) {
        lo[j] = (j & B) ? 16 + j - B : j;
        hi[j] = (j & B) ? 16 + j : j + B;
    }
    for (int i = 0; i < 16; ++i) {
        if (i & B) continue;
        const v16 a = r[i], b = r[i + B];
        r[i] = __builtin_shuffle(a, b, lo);
        r[i + B] = __builtin_shuffle(a, b, hi);
    }
}

inline void transpose16(v16* r) {
    transpose_stage<8>(r);
    transpose_stage<4>(r);
    transpose_stage<2>(r);
    transpose_stage<1>(r);
}

inline v16 loadu(const float* p) {
    v16 v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}

inline void storeu(float* p, v16 v) { std::memcpy(p, &v, sizeof(v)); }

// dst[k][TILE] = src[n0 + t][k] for t < rows, zero for rows <= t < TILE.
template <int NV>
void transpose_in(const float* src, int64_t K, int64_t n0, int64_t rows, float* dst) {
    constexpr int TILE = 16 * NV;
    const int64_t kfull = (rows == TILE) ? K / 16 * 16 : 0;  // vector path: full 16 x 16 blocks
    for (int64_t k0 = 0; k0 < kfull; k0 += 16) {
        for (int64_t t0 = 0; t0 < TILE; t0 += 16) {
            v16 r[16];
            for (int t = 0; t < 16; ++t) r[t] = loadu(src + (n0 + t0 + t) * K + k0);
            transpose16(r);
            for (int kk = 0; kk < 16; ++kk)
                *reinterpret_cast<v16*>(dst + (k0 + kk) * TILE + t0) = r[kk];
        }
    }
    for (int64_t k0 = kfull; k0 < K; k0 += 16) {
        const int64_t kb = std::min<int64_t>(16, K - k0);
        for (int64_t t = 0; t < rows; ++t) {
            const float* s = src + (n0 + t) * K + k0;
            for (int64_t kk = 0; kk < kb; ++kk) dst[(k0 + kk) * TILE + t] = s[kk];
        }
        if (rows < TILE)
            for (int64_t kk = 0; kk < kb; ++kk)
                std::memset(dst + (k0 + kk) * TILE + rows, 0, (TILE - rows) * sizeof(float));
    }
}

// C[n0 + t][m0 + mm] = blk[mm][t] for a block of mb <= OB outputs.
template <int NV>
void transpose_out(const float* blk, int64_t mb, int64_t M, int64_t m0, int64_t n0,
                   int64_t rows, float* C) {
    constexpr int TILE = 16 * NV;
    if (mb == 16) {
        const int64_t tfull = rows / 16 * 16;
        for (int64_t t0 = 0; t0 < tfull; t0 += 16) {
            v16 r[16];
            for (int mm = 0; mm < 16; ++mm)
                r[mm] = *reinterpret_cast<const v16*>(blk + mm * TILE + t0);
            transpose16(r);
            for (int t = 0; t < 16; ++t) storeu(C + (n0 + t0 + t) * M + m0, r[t]);
        }
        for (int64_t t = tfull; t < rows; ++t) {
            float* c = C + (n0 + t) * M + m0;
            for (int64_t mm = 0; mm < 16; ++mm) c[mm] = blk[mm * TILE + t];
        }
        return;
    }
    for (int64_t t = 0; t < rows; ++t) {
        float* c = C + (n0 + t) * M + m0;
        for (int64_t mm = 0; mm < mb; ++mm) c[mm] = blk[mm * TILE + t];
    }
}

// out[m][TILE] (+= over the row's nonzeros) w * AT[idx][TILE], for m in [m0, m0 + mb).
template <int NV>
inline void spmm_block(const float* AT, const int32_t* ptr, const int32_t* idx,
                       const float* val, const float* bias, int64_t m0, int64_t mb,
                       float* blk) {
    constexpr int TILE = 16 * NV;
    for (int64_t mm = 0; mm < mb; ++mm) {
        const int64_t m = m0 + mm;
        const float b = bias ? bias[m] : 0.0f;
        v16 acc[NV];
        for (int v = 0; v < NV; ++v) acc[v] = v16{} + b;
        for (int32_t e = ptr[m]; e < ptr[m + 1]; ++e) {
            const float w = val[e];
            const v16* a = reinterpret_cast<const v16*>(AT + int64_t(idx[e]) * TILE);
            for (int v = 0; v < NV; ++v) acc[v] += w * a[v];
        }
        v16* o = reinterpret_cast<v16*>(blk + mm * TILE);
        for (int v = 0; v < NV; ++v) o[v] = acc[v];
    }
}

template <int NV>
void spmm(const float* A, int64_t N, int64_t K, const int32_t* ptr, const int32_t* idx,
          const float* val, int64_t M, const float* bias, float* C, int nthreads) {
    constexpr int TILE = 16 * NV;
    const int64_t tiles = (N + TILE - 1) / TILE;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t tile = 0; tile < tiles; ++tile) {
        const int64_t n0 = tile * TILE, rows = std::min<int64_t>(TILE, N - n0);
        float* AT = scratch_a.get(size_t(K) * TILE);
        float* blk = scratch_b.get(size_t(OB) * TILE);
        transpose_in<NV>(A, K, n0, rows, AT);
        for (int64_t m0 = 0; m0 < M; m0 += OB) {
            const int64_t mb = std::min<int64_t>(OB, M - m0);
            spmm_block<NV>(AT, ptr, idx, val, bias, m0, mb, blk);
            transpose_out<NV>(blk, mb, M, m0, n0, rows, C);
        }
    }
}

template <int NV>
void backward(const float* G, const float* X, int64_t N, int64_t M, int64_t K,
              const int32_t* rowptr, const int32_t* csr_idx, const int32_t* colptr,
              const int32_t* csc_idx, const float* csc_val, float* gx, float* gw,
              int nthreads) {
    constexpr int TILE = 16 * NV;
    const int64_t tiles = (N + TILE - 1) / TILE;
    const int64_t nnz = rowptr[M];
    const int nt = std::max(1, std::min<int>(nthreads, int(tiles)));
    v16* partial = nullptr;
    if (gw) {
        partial = static_cast<v16*>(std::aligned_alloc(64, (size_t(nt) * nnz + 1) * sizeof(v16)));
        std::memset(static_cast<void*>(partial), 0, size_t(nt) * nnz * sizeof(v16));
    }
#pragma omp parallel num_threads(nt)
    {
        const int tid = omp_get_thread_num();
        v16* mine = gw ? partial + size_t(tid) * nnz : nullptr;
        float* GT = scratch_a.get(size_t(M) * TILE);
        float* blk = scratch_b.get(size_t(OB) * TILE);
        float* XT = gw ? scratch_c.get(size_t(K) * TILE) : nullptr;
#pragma omp for schedule(static)
        for (int64_t tile = 0; tile < tiles; ++tile) {
            const int64_t n0 = tile * TILE, rows = std::min<int64_t>(TILE, N - n0);
            transpose_in<NV>(G, M, n0, rows, GT);
            if (gx) {
                for (int64_t k0 = 0; k0 < K; k0 += OB) {
                    const int64_t kb = std::min<int64_t>(OB, K - k0);
                    spmm_block<NV>(GT, colptr, csc_idx, csc_val, nullptr, k0, kb, blk);
                    transpose_out<NV>(blk, kb, K, k0, n0, rows, gx);
                }
            }
            if (!gw) continue;
            transpose_in<NV>(X, K, n0, rows, XT);
            for (int64_t m = 0; m < M; ++m) {
                if (rowptr[m] == rowptr[m + 1]) continue;
                const v16* g = reinterpret_cast<const v16*>(GT + m * TILE);
                v16 gr[NV];
                for (int v = 0; v < NV; ++v) gr[v] = g[v];
                for (int32_t e = rowptr[m]; e < rowptr[m + 1]; ++e) {
                    const v16* x = reinterpret_cast<const v16*>(XT + int64_t(csr_idx[e]) * TILE);
                    v16 s = gr[0] * x[0];
                    for (int v = 1; v < NV; ++v) s += gr[v] * x[v];
                    mine[e] += s;
                }
            }
        }
    }
    if (gw) {
        for (int64_t m = 0; m < M; ++m) {
            for (int32_t e = rowptr[m]; e < rowptr[m + 1]; ++e) {
                v16 s = partial[e];
                for (int t = 1; t < nt; ++t) s += partial[size_t(t) * nnz + e];
                float sum = 0.0f;
                for (int l = 0; l < 16; ++l) sum += s[l];
                gw[m * K + csr_idx[e]] = sum;
            }
        }
        std::free(partial);
    }
}

}  // namespace

extern "C" {

// C[N, M] = A[N, K] @ S^T (+ bias[M]), S an [M, K] matrix in CSR (ptr[M + 1], idx, val).
// Forward of a linear layer (S = W) and its input gradient (S = W^T, i.e. W's CSC).
void sc_spmm(const float* A, int64_t N, int64_t K, const int32_t* ptr, const int32_t* idx,
             const float* val, int64_t M, const float* bias, float* C, int nthreads) {
    if (K <= WIDE)
        spmm<8>(A, N, K, ptr, idx, val, M, bias, C, nthreads);
    else
        spmm<4>(A, N, K, ptr, idx, val, M, bias, C, nthreads);
}

// Backward of y = x @ W^T on W's nonzeros, one pass over token tiles sharing G's transpose:
//   gx[N, K] = G[N, M] @ W            on W's CSC (colptr, csc_idx, csc_val), if gx != null
//   gw[m, k] = sum_n G[n, m] X[n, k] for every nonzero (m, k) of W's CSR (rowptr, csr_idx),
//           if gw != null: the weight gradient on the support only, written into a dense,
//           zeroed [M, K] gw (entries off the support stay zero).
// Each thread keeps one 16-lane partial sum per nonzero (horizontal sums once, at the end).
void sc_backward(const float* G, const float* X, int64_t N, int64_t M, int64_t K,
                 const int32_t* rowptr, const int32_t* csr_idx, const int32_t* colptr,
                 const int32_t* csc_idx, const float* csc_val, float* gx, float* gw,
                 int nthreads) {
    if (std::max(M, K) <= WIDE)
        backward<8>(G, X, N, M, K, rowptr, csr_idx, colptr, csc_idx, csc_val, gx, gw, nthreads);
    else
        backward<4>(G, X, N, M, K, rowptr, csr_idx, colptr, csc_idx, csc_val, gx, gw, nthreads);
}

// Pass 1 of building the index of a dense [M, K] matrix's nonzeros: row counts into
// rowptr[M + 1] and column counts into colptr[K + 1], both as prefix sums. Returns nnz.
int64_t sc_count(const float* W, int64_t M, int64_t K, int32_t* rowptr, int32_t* colptr) {
    std::memset(colptr, 0, (K + 1) * sizeof(int32_t));
    rowptr[0] = 0;
    for (int64_t m = 0; m < M; ++m) {
        const float* w = W + m * K;
        int32_t c = 0;
        for (int64_t k = 0; k < K; ++k) {
            if (w[k] != 0.0f) {
                ++c;
                ++colptr[k + 1];
            }
        }
        rowptr[m + 1] = rowptr[m] + c;
    }
    for (int64_t k = 0; k < K; ++k) colptr[k + 1] += colptr[k];
    return rowptr[M];
}

// Pass 2: CSR (column indices, values) and CSC (row indices, values) of the nonzeros.
void sc_fill(const float* W, int64_t M, int64_t K, const int32_t* rowptr, const int32_t* colptr,
             int32_t* csr_idx, float* csr_val, int32_t* csc_idx, float* csc_val,
             int32_t* cursor) {
    std::memcpy(cursor, colptr, K * sizeof(int32_t));
    int64_t e = 0;
    for (int64_t m = 0; m < M; ++m) {
        const float* w = W + m * K;
        for (int64_t k = 0; k < K; ++k) {
            if (w[k] != 0.0f) {
                csr_idx[e] = int32_t(k);
                csr_val[e] = w[k];
                const int32_t p = cursor[k]++;
                csc_idx[p] = int32_t(m);
                csc_val[p] = w[k];
                ++e;
            }
        }
    }
    (void)rowptr;
}

// The k-th largest of n non-negative float bit patterns (unsigned order = numeric order), by
// radix select: digit by digit from the top, histogram the candidates that share the prefix
// found so far and keep the bin holding the k-th. The first digit spans the exponent and one
// mantissa bit, so activations of any scale spread over many bins and few candidates survive.
uint32_t kth_largest_bits(const uint32_t* bits, int64_t n, int64_t k, uint32_t* cand) {
    static constexpr int SHIFT[4] = {22, 14, 6, 0};
    static constexpr int WIDTH[4] = {9, 8, 8, 6};
    const uint32_t* src = bits;
    int64_t need = k;
    uint32_t prefix = 0;
    for (int level = 0; level < 4; ++level) {
        const int shift = SHIFT[level];
        const uint32_t mask = (1u << WIDTH[level]) - 1u;
        uint32_t hist[512];
        std::memset(hist, 0, (mask + 1) * sizeof(uint32_t));
        for (int64_t i = 0; i < n; ++i) ++hist[(src[i] >> shift) & mask];
        uint32_t digit = mask;
        for (; digit > 0; --digit) {
            if (int64_t(hist[digit]) >= need) break;
            need -= hist[digit];
        }
        prefix |= digit << shift;
        if (level == 3) break;
        int64_t m = 0;
        for (int64_t i = 0; i < n; ++i)
            if (((src[i] >> shift) & mask) == digit) cand[m++] = src[i];
        src = cand;
        n = m;
    }
    return prefix;
}

// The k-th largest of one row's n non-negative float bit patterns (1 <= k <= n), by binary
// search on the bits: the largest t with at least k entries >= t is the k-th largest. Each
// step is one branch-free, vectorised count over the row: for AbsTopK's short rows (d_model,
// d_mlp) this beats the radix select above, whose histograms cost more than the row. The
// bits have the sign cleared, so they compare the same as signed ints (one AVX compare).
// A step that finds exactly k entries >= t ends the search: the k-th is the least of them.
uint32_t kth_largest_in_row(const uint32_t* ubits, int64_t n, int64_t k) {
    const int32_t* bits = reinterpret_cast<const int32_t*>(ubits);
    int32_t any = 0;
    for (int64_t i = 0; i < n; ++i) any |= bits[i];
    int32_t thr = 0;  // invariant: at least k entries >= thr
    for (int b = 31 - __builtin_clz(uint32_t(any) | 1u); b >= 0; --b) {
        const int32_t t = thr | (int32_t(1) << b);
        int32_t count = 0;  // int32 lanes: the count vectorises well
        for (int64_t i = 0; i < n; ++i) count += bits[i] >= t;
        if (count == k) {
            int32_t least = INT32_MAX;
            for (int64_t i = 0; i < n; ++i)
                least = bits[i] >= t && bits[i] < least ? bits[i] : least;
            return uint32_t(least);
        }
        if (count > k) thr = t;
    }
    return uint32_t(thr);
}

// AbsTopK over rows of x [rows, d]: y = x where |x| >= the k-th largest |x| of the row,
// else 0; mask[i] = 1 where kept (ties at the threshold are all kept).
void sc_abstopk(const float* x, int64_t rows, int64_t d, int64_t k, float* y, uint8_t* mask,
                int nthreads) {
#pragma omp parallel num_threads(nthreads)
    {
        uint32_t* bits = reinterpret_cast<uint32_t*>(scratch_a.get(size_t(d)));
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; ++r) {
            const float* xr = x + r * d;
            std::memcpy(bits, xr, d * sizeof(float));
            for (int64_t i = 0; i < d; ++i) bits[i] &= 0x7fffffffu;
            const uint32_t thr = kth_largest_in_row(bits, d, k);
            float* yr = y + r * d;
            uint8_t* mr = mask + r * d;
            for (int64_t i = 0; i < d; ++i) {
                const bool keep = bits[i] >= thr;
                yr[i] = keep ? xr[i] : 0.0f;
                mr[i] = keep;
            }
        }
    }
}


// The top-k projection of one weight [M, K] in place (docs/sparse-kernels.md): keep the
// top-j entries by |w| of every row (if row_j > 0) and every column (if col_j > 0), then the
// largest remaining entries up to k kept in total (entries tied at the threshold in index
// order); zero the rest. Ties inside a row's or column's top-j go to the lowest index.
// Returns the number kept (more than k only where the top-j entries alone exceed k).
int64_t sc_project(float* w, int64_t M, int64_t K, int64_t k, int64_t row_j, int64_t col_j,
                   uint32_t* bits, uint8_t* keep, uint32_t* work) {
    const int64_t n = M * K;
    for (int64_t i = 0; i < n; ++i) {
        uint32_t u;
        std::memcpy(&u, w + i, sizeof(u));
        bits[i] = u & 0x7fffffffu;
    }
    std::memset(keep, 0, n);
    // Top-j of each row (sorted descending in `best`, strict > so earlier indices win ties).
    const int64_t rj = std::min(row_j, K);
    for (int64_t m = 0; m < M && rj > 0; ++m) {
        const uint32_t* b = bits + m * K;
        int64_t cnt = 0;
        uint32_t* best = work;             // values
        uint32_t* at = work + rj;          // column indices
        for (int64_t c = 0; c < K; ++c) {
            if (cnt == rj && b[c] <= best[rj - 1]) continue;
            int64_t pos = (cnt < rj) ? cnt++ : rj - 1;
            while (pos > 0 && best[pos - 1] < b[c]) {
                best[pos] = best[pos - 1];
                at[pos] = at[pos - 1];
                --pos;
            }
            best[pos] = b[c];
            at[pos] = uint32_t(c);
        }
        for (int64_t t = 0; t < cnt; ++t) keep[m * K + at[t]] = 1;
    }
    // Top-j of each column, all columns updated in one pass over the rows.
    const int64_t cj = std::min(col_j, M);
    if (cj > 0) {
        uint32_t* best = work;              // [K][cj] values
        uint32_t* at = work + K * cj;       // [K][cj] row indices
        uint32_t* cnt = work + 2 * K * cj;  // [K]
        std::memset(cnt, 0, K * sizeof(uint32_t));
        for (int64_t m = 0; m < M; ++m) {
            const uint32_t* b = bits + m * K;
            for (int64_t c = 0; c < K; ++c) {
                uint32_t* bc = best + c * cj;
                uint32_t* ac = at + c * cj;
                if (cnt[c] == uint32_t(cj) && b[c] <= bc[cj - 1]) continue;
                int64_t pos = (cnt[c] < uint32_t(cj)) ? int64_t(cnt[c]++) : cj - 1;
                while (pos > 0 && bc[pos - 1] < b[c]) {
                    bc[pos] = bc[pos - 1];
                    ac[pos] = ac[pos - 1];
                    --pos;
                }
                bc[pos] = b[c];
                ac[pos] = uint32_t(m);
            }
        }
        for (int64_t c = 0; c < K; ++c)
            for (uint32_t t = 0; t < cnt[c]; ++t) keep[int64_t(at[c * cj + t]) * K + c] = 1;
    }
    int64_t kept = 0;
    for (int64_t i = 0; i < n; ++i) kept += keep[i];
    if (kept < k) {
        // The (k - kept)-th largest unprotected magnitude, then everything above it and the
        // ties at it in index order.
        int64_t m = 0;
        for (int64_t i = 0; i < n; ++i)
            if (!keep[i]) work[m++] = bits[i];
        const uint32_t thr = kth_largest_bits(work, m, k - kept, work);
        int64_t above = 0;
        for (int64_t i = 0; i < n; ++i)
            if (!keep[i] && bits[i] > thr) {
                keep[i] = 1;
                ++above;
            }
        int64_t ties = k - kept - above;
        for (int64_t i = 0; i < n && ties > 0; ++i)
            if (!keep[i] && bits[i] == thr) {
                keep[i] = 1;
                --ties;
            }
        kept = k;
    }
    for (int64_t i = 0; i < n; ++i)
        if (!keep[i]) w[i] = 0.0f;
    return kept;
}

}  // extern "C"
