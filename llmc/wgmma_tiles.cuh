/*
 Hopper (sm_90a) warpgroup MMA building blocks for the attention kernels: wgmma.mma_async m64n64k16
 bf16 -> fp32 with B (and optionally A) read from shared memory through matrix descriptors, A from
 registers in the mma.sync A-fragment layout, and the fences, barriers and group waits around them.
 Shared-memory operands use the 128-byte swizzle: rows of 64 bf16 (128 bytes), the 16-byte chunk c of
 row r stored at chunk c ^ (r & 7), 8-row groups 1024 bytes apart, tile base 1024-byte aligned. That is
 swz<64> of mma_tiles.cuh, so cp.async / ldmatrix code and wgmma share tiles.
 - K-major operand (the contraction dim runs along the 64-wide rows): k-step ks of 16 advances the
   descriptor's start address by 32 bytes (the swizzle is a function of the address).
 - MN-major operand (the contraction dim runs down the rows): k-step ks advances it by 16 rows = 2048 bytes.
 The m64n64 accumulator is float[8][4] per thread in the mma.sync C layout of rows 16 w + g (+ 8), w the
 warp within the group, so acc_to_a and the masking / softmax code of the mma.sync kernels apply as is.
 No global memory traffic; all 128 threads of a warpgroup take part in each call.
*/
#ifndef LLMC_WGMMA_TILES_CUH
#define LLMC_WGMMA_TILES_CUH

#include <stdint.h>
#include "mma_tiles.cuh"

namespace flash {

__device__ inline void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ inline void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ inline void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }
// Orders this thread's generic-proxy shared-memory writes (st.shared, cp.async) before async-proxy reads
// (wgmma operands); a barrier must follow before another thread's wgmma reads them.
__device__ inline void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Barrier of the 128 threads of warpgroup wg (named barrier 1 + wg; 0 is __syncthreads').
__device__ inline void warpgroup_sync(int wg) { asm volatile("bar.sync %0, 128;\n" ::"r"(wg + 1) : "memory"); }

// Descriptor of a 128-byte-swizzled operand starting at p. lbo: byte stride between 64-wide panels of an
// MN-major operand wider than 64 (unused otherwise); 8-row groups are 1024 bytes apart.
__device__ inline uint64_t sw128_desc(const void *p, uint32_t lbo) {
    return (uint64_t)((smem_addr(p) & 0x3FFFF) >> 4) | (uint64_t)((lbo & 0x3FFFF) >> 4) << 16 |
           (uint64_t)(1024 >> 4) << 32 | 1ull << 62;
}

// The 32 fp32 accumulator operands %0..%31 of an m64n64 wgmma (in the float[8][4] order) and their list.
#define WGMMA64_D                                                                                            \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, "      \
    "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define WGMMA64_ACC(d)                                                                                       \
    "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),    \
    "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),    \
    "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]),    \
    "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),    \
    "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])

// d (64 x 64 per warpgroup) = A (64 x 16) B (16 x 64) + (accumulate ? d : 0), A and B in shared memory;
// TA / TB = 1: that operand is MN-major.
template <int TA, int TB>
__device__ inline void wgmma64_ss(float d[8][4], uint64_t a, uint64_t b, int accumulate) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " WGMMA64_D ", %32, %33, p, 1, 1, %35, %36;\n}\n"
                 : WGMMA64_ACC(d)
                 : "l"(a), "l"(b), "r"(accumulate), "n"(TA), "n"(TB));
}
// The same with A from registers: the 16 x 16 fragment of rows 16 w + g (+ 8), mma.sync A layout.
template <int TB>
__device__ inline void wgmma64_rs(float d[8][4], const uint32_t a[4], uint64_t b, int accumulate) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " WGMMA64_D ", {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
                 : WGMMA64_ACC(d)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate), "n"(TB));
}

// 64 x 64 x 64 tile products of one warpgroup, issued (not waited for) between a fence and a commit.
// d = A B^T for two 64 x 64 tiles stored K-major (S = Q K^T and kin).
__device__ inline void wg_gemm_abt(float d[8][4], const bf16 *a, const bf16 *b) {
#pragma unroll
    for (int ks = 0; ks < 4; ks++) { wgmma64_ss<0, 0>(d, sw128_desc(a + ks * 16, 0), sw128_desc(b + ks * 16, 0), ks); }
}
// d += A B, A (64 x 64) as mma.sync A fragments a[ks] in registers, B stored [k][n] (MN-major: O += P V and kin).
__device__ inline void wg_gemm_rs(float d[8][4], const uint32_t a[4][4], const bf16 *b) {
#pragma unroll
    for (int ks = 0; ks < 4; ks++) { wgmma64_rs<1>(d, a[ks], sw128_desc(b + ks * 16 * 64, 64 * 64 * 2), 1); }
}
// d = A B, A stored transposed [k][m] and B stored [k][n] (both MN-major: dQ = dS K from dS^T).
__device__ inline void wg_gemm_atb(float d[8][4], const bf16 *a, const bf16 *b) {
#pragma unroll
    for (int ks = 0; ks < 4; ks++) { wgmma64_ss<1, 1>(d, sw128_desc(a + ks * 16 * 64, 64 * 64 * 2), sw128_desc(b + ks * 16 * 64, 64 * 64 * 2), ks); }
}


// ---------------------------------------------------------------------------------------------------
// N = 128 outputs and head dim 128. Rows wider than 64 bf16 are stored as 64-wide panels:
// a tile of R rows x 64 P columns is P panels of R x 64 (each the 128-byte-swizzle layout above), panel p
// at p R 64 elements. K-major operand: k-step ks lies in panel ks / 4, 32 (ks % 4) bytes into the row.
// MN-major operand wider than 64 (V of head dim 128 as the B of P V): the descriptor's LBO is the panel
// stride, so one m64n128k16 reads both panels.
// The m64n128 accumulator is float[16][4], the m64n64 one's layout continued over columns 64..127.
#define WGMMA128_D                                                                                           \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, "      \
    "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, "  \
    "%43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define WGMMA128_ACC(d) WGMMA64_ACC(d), WGMMA64_ACC((d + 8))

template <int TA, int TB>
__device__ inline void wgmma128_ss(float d[16][4], uint64_t a, uint64_t b, int accumulate) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " WGMMA128_D ", %64, %65, p, 1, 1, %67, %68;\n}\n"
                 : WGMMA128_ACC(d)
                 : "l"(a), "l"(b), "r"(accumulate), "n"(TA), "n"(TB));
}
template <int TB>
__device__ inline void wgmma128_rs(float d[16][4], const uint32_t a[4], uint64_t b, int accumulate) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " WGMMA128_D ", {%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"
                 : WGMMA128_ACC(d)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate), "n"(TB));
}

// Pins the compiler's view of accumulator registers at this point (no instruction): placed after a
// wgmma_wait so no access is hoisted above the wait, and before an issue so no write sinks below it.
// The same for A fragments in registers, which a wgmma reads until its group completes.
template <int NT>
__device__ inline void wgmma_fence_operands(float (&d)[NT][4]) {
#pragma unroll
    for (int j = 0; j < NT; j++) {
#pragma unroll
        for (int e = 0; e < 4; e++) { asm volatile("" : "+f"(d[j][e])::"memory"); }
    }
}
template <int NT>
__device__ inline void wgmma_fence_operands(uint32_t (&a)[NT][4]) {
#pragma unroll
    for (int j = 0; j < NT; j++) {
#pragma unroll
        for (int e = 0; e < 4; e++) { asm volatile("" : "+r"(a[j][e])::"memory"); }
    }
}

// d (64 x N) = A (64 x K) B^T (accumulate: d += A B^T), A and B K-major in panels (K / 64 of them; a_panel,
// b_panel: the panel strides in elements), N = 64 or 128 rows of B: S = Q K^T at head dim 64 or 128, 64 or
// 128 keys.
template <int N, int K>
__device__ inline void wg_gemm_abt_panels(float (&d)[N / 8][4], const bf16 *a, int a_panel, const bf16 *b, int b_panel, bool accumulate = false) {
#pragma unroll
    for (int ks = 0; ks < K / 16; ks++) {
        uint64_t da = sw128_desc(a + (ks / 4) * a_panel + (ks % 4) * 16, 0), db = sw128_desc(b + (ks / 4) * b_panel + (ks % 4) * 16, 0);
        if constexpr (N == 64) { wgmma64_ss<0, 0>(d, da, db, accumulate || ks); } else { wgmma128_ss<0, 0>(d, da, db, accumulate || ks); }
    }
}
// d (64 x N) += A (64 x K, mma.sync A fragments a[ks] in registers) B, B stored [k][n] (MN-major) as N / 64
// panels of K rows: O += P V with K = 64 or 128 keys, N = head dim 64 or 128.
template <int N, int K>
__device__ inline void wg_gemm_rs_panels(float (&d)[N / 8][4], const uint32_t (&a)[K / 16][4], const bf16 *b) {
#pragma unroll
    for (int ks = 0; ks < K / 16; ks++) {
        uint64_t db = sw128_desc(b + ks * 16 * 64, K * 64 * 2);
        if constexpr (N == 64) { wgmma64_rs<1>(d, a[ks], db, 1); } else { wgmma128_rs<1>(d, a[ks], db, 1); }
    }
}

// d (64 x N) = A B, A (64 x K) stored transposed [k][m] as K / 64 tiles of 64 rows, a_tile elements apart, and
// B [k][n] as N / 64 panels of K rows, b_panel elements apart (both MN-major; LBO = the panel stride): dQ = dS K
// from dS^T at head dim 64 or 128, over 64 or 128 keys.
template <int N, int K = 64>
__device__ inline void wg_gemm_atb_panels(float (&d)[N / 8][4], const bf16 *a, const bf16 *b, int b_panel, int a_tile = 0) {
#pragma unroll
    for (int ks = 0; ks < K / 16; ks++) {
        uint64_t da = sw128_desc(a + (ks / 4) * a_tile + (ks % 4) * 16 * 64, 64 * 64 * 2), db = sw128_desc(b + ks * 16 * 64, b_panel * 2);
        if constexpr (N == 64) { wgmma64_ss<1, 1>(d, da, db, ks); } else { wgmma128_ss<1, 1>(d, da, db, ks); }
    }
}

}  // namespace flash

#endif  // LLMC_WGMMA_TILES_CUH
