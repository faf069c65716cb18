/*
 Tensor-core building blocks for the attention kernels (sm_80+ instructions, built for sm_90a):
 cp.async 16-byte copies, ldmatrix, mma.sync m16n8k16 bf16 -> fp32, an XOR-swizzled shared-memory tile
 layout, A-fragment loads (plain, transposed, from fp32 accumulators) and a register-blocked tile GEMM.
 No global memory traffic of their own; each helper is warp-synchronous (all 32 lanes take part).
*/
#ifndef LLMC_MMA_TILES_CUH
#define LLMC_MMA_TILES_CUH

#include <stdint.h>
#include <cuda_bf16.h>

namespace flash {
typedef __nv_bfloat16 bf16;

__device__ inline uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

// 16-byte async copy; when !valid the destination is zero-filled (tails past T read as zeros).
__device__ inline void cp_async16(void *dst, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(valid ? 16 : 0));
}
// 4 bytes (a per-row scalar such as lse), zero-filled when !valid.
__device__ inline void cp_async4(void *dst, const void *src, bool valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(valid ? 4 : 0));
}
__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ inline void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

__device__ inline void ldsm_x4(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_addr(p)));
}
__device__ inline void ldsm_x4_trans(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_addr(p)));
}
// c (16x8 fp32) += a (16x16 bf16, row) * b (16x8 bf16, col)
__device__ inline void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// 2^x by the special-function unit alone (ex2.approx.ftz: subnormal results flush to 0, which the softmax
// weights never need); exp2f adds a range test and two conditional multiplies around it.
__device__ inline float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}
__device__ inline uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

// Shared-memory tiles are row-major with COLS bf16 per row, stored in 16-byte chunks whose index is
// XORed with the row, so the 8 rows one ldmatrix reads land in 8 different bank groups.
template <int COLS> __device__ inline int swz(int row, int chunk) {
    constexpr int CPR = COLS / 8;
    static_assert(CPR == 4 || CPR % 8 == 0, "tile width");
    int x = CPR >= 8 ? (row & 7) : ((row >> 1) & 3);
    return row * COLS + ((chunk ^ x) << 3);
}

// A fragments (16 x 16 at k-step ks) of rows [row0, row0+16) of a tile stored [row][k].
template <int COLS> __device__ inline void lds_a(uint32_t a[4], const bf16 *s, int row0, int ks) {
    int lane = threadIdx.x & 31;
    ldsm_x4(a, s + swz<COLS>(row0 + (lane & 7) + ((lane >> 3) & 1) * 8, 2 * ks + (lane >> 4)));
}
// A fragments of the transpose of a tile stored [k][row]: rows [col0, col0+16) of A are its columns.
template <int COLS> __device__ inline void lds_a_trans(uint32_t a[4], const bf16 *s, int col0, int ks) {
    int lane = threadIdx.x & 31;
    ldsm_x4_trans(a, s + swz<COLS>(ks * 16 + (lane & 7) + (lane >> 4) * 8, col0 / 8 + ((lane >> 3) & 1)));
}
// Row i of an accumulator tile in the mma C layout (16 x 8 NJ; i = 0: this thread's row lane / 4, 1: that
// + 8), times mul, as bf16 into row: this thread's pairs of columns 8 j + 2 (lane % 4) + {0, 1}.
template <int NJ> __device__ inline void store_row_bf16(bf16 *row, const float (&acc)[NJ][4], int i, float mul) {
    const int c = threadIdx.x & 3;
    for (int j = 0; j < NJ; j++) { *reinterpret_cast<uint32_t *>(row + j * 8 + 2 * c) = pack_bf16(acc[j][2 * i] * mul, acc[j][2 * i + 1] * mul); }
}
// A fragments from fp32 accumulators in the mma C layout (16 x 8NT): the FA2 register reuse of P.
template <int NT> __device__ inline void acc_to_a(uint32_t a[NT / 2][4], const float c[NT][4]) {
#pragma unroll
    for (int ks = 0; ks < NT / 2; ks++) {
        a[ks][0] = pack_bf16(c[2 * ks][0], c[2 * ks][1]);
        a[ks][1] = pack_bf16(c[2 * ks][2], c[2 * ks][3]);
        a[ks][2] = pack_bf16(c[2 * ks + 1][0], c[2 * ks + 1][1]);
        a[ks][3] = pack_bf16(c[2 * ks + 1][2], c[2 * ks + 1][3]);
    }
}

// acc[mt] (16 x 8NT) += A[mt] (16 x 16KS) * B for MT row tiles sharing each B fragment (fewer
// shared-memory reads per flop); afrag(mt, ks, a) supplies A. B_KN = false: B^T is stored [n][k] from row
// boff (S = Q K^T and kin); true: B is stored [k][n], k from row 0, n from chunk boff (O = P V and kin).
template <bool B_KN, int MT, int NT, int KS, int COLS, typename AF>
__device__ inline void gemm(float (*acc)[NT][4], AF afrag, const bf16 *sB, int boff) {
    int lane = threadIdx.x & 31;
#pragma unroll
    for (int ks = 0; ks < KS; ks++) {
        uint32_t a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) { afrag(mt, ks, a[mt]); }
#pragma unroll
        for (int j = 0; j < NT; j += 2) {
            uint32_t b[4];
            if (B_KN) {
                ldsm_x4_trans(b, sB + swz<COLS>(ks * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, boff + j + (lane >> 4)));
            } else {
                ldsm_x4(b, sB + swz<COLS>(boff + (j + (lane >> 4)) * 8 + (lane & 7), 2 * ks + ((lane >> 3) & 1)));
            }
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                mma16816(acc[mt][j], a[mt], b[0], b[1]);
                mma16816(acc[mt][j + 1], a[mt], b[2], b[3]);
            }
        }
    }
}

}  // namespace flash

#endif  // LLMC_MMA_TILES_CUH
