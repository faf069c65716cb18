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

// ---- Asynchronous copies completing on shared-memory barriers (sm_90; session 3, dense backward) ----
// mbarrier: a 64-bit shared-memory barrier with an arrival count and a transaction (byte) count; a phase
// completes when both reach zero, and waiters test the parity of the phase they wait for.
__device__ inline void mbar_init(uint64_t *bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}
// Makes initialized barriers visible to the async proxy (TMA) and other threads; a __syncthreads follows.
__device__ inline void mbar_fence_init() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
__device__ inline void mbar_arrive(uint64_t *bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}
// Arrives and announces `bytes` of copies that will complete on this barrier's current phase.
__device__ inline void mbar_arrive_expect_tx(uint64_t *bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}
// Waits until the phase of parity `parity` has completed (a fresh barrier counts parity 1 as completed).
__device__ inline void mbar_wait(uint64_t *bar, int parity) {
    asm volatile("{\n.reg .pred p;\nWAIT:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
                 "@!p bra WAIT;\n}\n" ::"r"(smem_addr(bar)), "r"(parity) : "memory");
}
// TMA: the box at coordinates c0..c3 of a 4-D tensor map (a __grid_constant__ kernel parameter) into
// shared memory at dst (1024-byte aligned for 128-byte-swizzled maps); completes bytes on bar. Elements
// outside the tensor read as zeros, and the full box counts towards the barrier's bytes.
__device__ inline void tma_load_4d(void *dst, const void *map, uint64_t *bar, int c0, int c1, int c2, int c3) {
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], [%6];\n"
                 ::"r"(smem_addr(dst)), "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(smem_addr(bar)) : "memory");
}
// dst[i] += src[i] (fp32, bytes / 4 elements, both 16-byte aligned, bytes a multiple of 16) done by the
// copy engine in L2: one instruction instead of a warp's worth of atomics. Per-thread bulk groups: the
// issuing thread commits and waits (wait_read: until the source may be overwritten).
__device__ inline void bulk_reduce_add_f32(float *dst, const float *src, uint32_t bytes) {
    asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(dst), "r"(smem_addr(src)), "r"(bytes)
                 : "memory");
}
__device__ inline void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
__device__ inline void bulk_wait_read() { asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory"); }
__device__ inline void bulk_wait() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }
// Moves registers between warpgroups of a CTA launched with __launch_bounds__(threads, 1): a producer
// warpgroup gives up (dec), the math warpgroups take (inc); warpgroup-uniform, N a multiple of 8.
template <int N> __device__ inline void setmaxnreg_dec() { asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N)); }
template <int N> __device__ inline void setmaxnreg_inc() { asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N)); }

}  // namespace flash

#endif  // LLMC_WGMMA_TILES_CUH
