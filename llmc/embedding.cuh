/*
 Token embedding.
   forward:  out[n, :] = wte[tok[n], :]                      tok (N) int32 in [0, V); wte (V, C); out (N, C)
   backward: dwte[v, :] += sum over n with tok[n] = v of dout[n, :]       (only rows of tokens present)
 The forward is a gather: reads and writes N*C elements. The backward is made deterministic without
 float atomics: a stable radix sort (cub, part of the CUDA toolkit) of (token, row) pairs groups the rows
 of each token in increasing row order; then one CTA column per distinct token sums its rows in a fixed
 order in fp32 (8 warps over interleaved rows, then the warps in order) and adds the result to dwte once. Traffic: N*C reads of dout, 2*C per distinct token.
 Requires C % x128::size == 0.
*/
#ifndef LLMC_EMBEDDING_CUH
#define LLMC_EMBEDDING_CUH

#include <algorithm>
#include <cub/cub.cuh>
#include "llmc/cuda_common.cuh"
#include "llmc/cuda_utils.cuh"
#include "llmc/utils.h"

__global__ void encoder_forward_kernel(floatX *out, const int *tok, const floatX *wte, int N, int C) {
    const size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * x128::size;
    if (i >= (size_t)N * C) { return; }
    const size_t n = i / C, c = i % C;
    store128(out + i, load128(wte + (size_t)tok[n] * C + c));
}

__global__ void iota_kernel(int *out, int N) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) { out[i] = i; }
}

#define EMB_BWD_WARPS 8    // warps splitting the rows of one token
#define EMB_BWD_UNROLL 4   // rows each warp has in flight
#define EMB_BWD_BLOCKS 2048

// Grid-strides over positions i of the sorted token list; the first position of each run of equal tokens
// sums that token's rows for the CTA's 32 x128 channel vectors (blockIdx.y). Warp w takes rows
// i + w, i + w + EMB_BWD_WARPS, ... in increasing order (several loads in flight, so a frequent token's
// long run is not one serial chain), then warp 0 adds the warps' sums in warp order: a fixed order.
__global__ void __launch_bounds__(32 * EMB_BWD_WARPS)
encoder_backward_kernel(floatX *dwte, const floatX *dout, const unsigned *sorted_tok, const int *sorted_row, int N, int C) {
    __shared__ float partial[EMB_BWD_WARPS][x128::size][32];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int c = (blockIdx.y * 32 + lane) * x128::size;
    for (int i = blockIdx.x; i < N; i += gridDim.x) {
        const unsigned tok = sorted_tok[i];
        if (i > 0 && sorted_tok[i - 1] == tok) { continue; } // the same for the whole CTA
        float acc[x128::size] = {0.0f};
        for (int j = i + warp; c < C; j += EMB_BWD_WARPS * EMB_BWD_UNROLL) {
            int row[EMB_BWD_UNROLL];
            x128 d[EMB_BWD_UNROLL];
#pragma unroll
            for (int u = 0; u < EMB_BWD_UNROLL; u++) {
                const int jj = j + u * EMB_BWD_WARPS;
                row[u] = (jj < N && sorted_tok[jj] == tok) ? sorted_row[jj] : -1;
                if (row[u] >= 0) { d[u] = load128cs(dout + (size_t)row[u] * C + c); }
            }
#pragma unroll
            for (int u = 0; u < EMB_BWD_UNROLL; u++) {
                if (row[u] < 0) { break; }
                for (int k = 0; k < x128::size; k++) { acc[k] += to_float(d[u][k]); }
            }
            if (row[EMB_BWD_UNROLL - 1] < 0) { break; } // the run is contiguous: it ended
        }
        for (int k = 0; k < x128::size; k++) { partial[warp][k][lane] = acc[k]; }
        __syncthreads();
        if (warp == 0 && c < C) {
            floatX *dst = dwte + (size_t)tok * C + c;
            x128 w = load128(dst);
            for (int k = 0; k < x128::size; k++) {
                float sum = 0.0f;
                for (int v = 0; v < EMB_BWD_WARPS; v++) { sum += partial[v][k][lane]; }
                w[k] = from_float<floatX>(to_float(w[k]) + sum);
            }
            store128(dst, w);
        }
        __syncthreads(); // partial[] is reused by the next run
    }
}

static inline int embedding_key_bits(int V) {
    int bits = 1;
    while (bits < 31 && (1u << bits) < (unsigned)V) { bits++; }
    return bits;
}

static inline void embedding_check_shape(int N, int C, int V, const char *where) {
    if (N <= 0 || V <= 0 || C <= 0 || C % x128::size != 0) {
        die("%s: unsupported shape N=%d C=%d V=%d (need C a multiple of %d)", where, N, C, V, x128::size);
    }
}

// Scratch layout of encoder_backward: sorted tokens, row ids, sorted row ids (N ints each), cub's temp.
static inline size_t embedding_cub_temp_bytes(int N, int V) {
    size_t bytes = 0;
    cudaCheck(cub::DeviceRadixSort::SortPairs(NULL, bytes, (const unsigned *)NULL, (unsigned *)NULL, (const int *)NULL,
                                              (int *)NULL, N, 0, embedding_key_bits(V)));
    return bytes;
}
static inline size_t embedding_index_bytes(int N) { return CEIL_DIV(3 * (size_t)N * sizeof(int), 256) * 256; }

// Bytes of device scratch encoder_backward needs for N tokens of a vocabulary of V.
static inline size_t encoder_backward_scratch_bytes(int N, int V) {
    return embedding_index_bytes(N) + embedding_cub_temp_bytes(N, V);
}

// out (N, C) = wte[tok]. Tokens must lie in [0, V) (the data loader checks them).
static inline void encoder_forward(floatX *out, const int *tok, const floatX *wte, int N, int C, int V,
                                   cudaStream_t stream) {
    embedding_check_shape(N, C, V, "encoder_forward");
    encoder_forward_kernel<<<(int)CEIL_DIV((size_t)N * C / x128::size, (size_t)256), 256, 0, stream>>>(out, tok, wte, N, C);
    cudaCheckLaunch();
}

// dwte (V, C) += scatter of dout (N, C) by tok (N). scratch: encoder_backward_scratch_bytes(N, V) bytes.
static inline void encoder_backward(floatX *dwte, void *scratch, const floatX *dout, const int *tok, int N, int C,
                                    int V, cudaStream_t stream) {
    embedding_check_shape(N, C, V, "encoder_backward");
    unsigned *sorted_tok = (unsigned *)scratch;
    int *row = (int *)(sorted_tok + N), *sorted_row = row + N;
    void *cub_temp = (char *)scratch + embedding_index_bytes(N);
    size_t cub_bytes = embedding_cub_temp_bytes(N, V);
    iota_kernel<<<CEIL_DIV(N, 256), 256, 0, stream>>>(row, N);
    cudaCheckLaunch();
    cudaCheck(cub::DeviceRadixSort::SortPairs(cub_temp, cub_bytes, (const unsigned *)tok, sorted_tok, row, sorted_row,
                                              N, 0, embedding_key_bits(V), stream));
    const dim3 grid(std::min(N, EMB_BWD_BLOCKS), CEIL_DIV(C / x128::size, 32));
    encoder_backward_kernel<<<grid, 32 * EMB_BWD_WARPS, 0, stream>>>(dwte, dout, sorted_tok, sorted_row, N, C);
    cudaCheckLaunch();
}

#endif // LLMC_EMBEDDING_CUH
