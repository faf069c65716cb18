/*
 Hopper (sm_90) asynchronous-copy pipeline pieces: shared-memory mbarriers (arrive, expected transaction
 bytes, parity waits), the producer / consumer register split (setmaxnreg, sm_90a) and the tensor memory accelerator (TMA: cp.async.bulk.tensor) loading 64-column
 boxes of a (rows, columns) bf16 matrix per head into the 128-byte-swizzle layout of wgmma_tiles.cuh.
 Host side: a 3-d tensor map (columns, T, heads) per q / k / v tensor, encoded through the driver's
 cuTensorMapEncodeTiled, reached with cudaGetDriverEntryPointByVersion (no link against libcuda).
 Rows past T read as zeros (out-of-bounds fill), so tails need no masking of the loads.
*/
#ifndef LLMC_TMA_PIPELINE_CUH
#define LLMC_TMA_PIPELINE_CUH

#include <stdint.h>
#include <cuda.h>
#include <cudaTypedefs.h>
#include "cuda_common.cuh"
#include "mma_tiles.cuh"
#include "utils.h"

namespace flash {

__device__ inline void mbar_init(uint64_t *bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}
// Makes initialised barriers visible to the async proxy (TMA completes on them); a __syncthreads follows.
__device__ inline void mbar_init_fence() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
__device__ inline void mbar_arrive(uint64_t *bar) {
    asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(smem_addr(bar)) : "memory");
}
// One arrival that also announces `bytes` of TMA traffic the current phase must see land.
__device__ inline void mbar_arrive_expect_tx(uint64_t *bar, uint32_t bytes) {
    asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1;\n}\n" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}
// Waits until the phase of parity `parity` has completed.
__device__ inline void mbar_wait(uint64_t *bar, int parity) {
    asm volatile("{\n.reg .pred done;\nwait_%=:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
                 "@!done bra wait_%=;\n}\n" ::"r"(smem_addr(bar)), "r"(parity) : "memory");
}

// Warp-specialized register split (setmaxnreg): producer warpgroups give registers back, consumer
// warpgroups take them; needs a register cap at entry (__launch_bounds__(threads, 1)), whole warpgroups.
template <int N> __device__ inline void warpgroup_reg_dealloc() { asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N)); }
template <int N> __device__ inline void warpgroup_reg_alloc() { asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N)); }

// TMA load of one 64-column x ROWS box at (column col, row row, head bh) into dst (1024-byte aligned),
// completing `bar`'s transaction bytes.
__device__ inline void tma_load_box(bf16 *dst, const CUtensorMap *map, int col, int row, int bh, uint64_t *bar) {
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n"
                 ::"r"(smem_addr(dst)), "l"((uint64_t)map), "r"(col), "r"(row), "r"(bh), "r"(smem_addr(bar)) : "memory");
}

// Tensor map of a (heads, T, cols) bf16 tensor, rows of cols contiguous, boxes of 64 columns x box_rows
// rows of one head, 128-byte swizzle.
inline CUtensorMap make_head_tensor_map(const bf16 *base, int heads, int T, int cols, int box_rows) {
    static PFN_cuTensorMapEncodeTiled_v12000 encode = NULL;
    if (encode == NULL) {
        cudaDriverEntryPointQueryResult found;
        cudaCheck(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", (void **)&encode, 12000, cudaEnableDefault, &found));
        if (found != cudaDriverEntryPointSuccess || encode == NULL) { die("TMA: the driver has no cuTensorMapEncodeTiled"); }
    }
    CUtensorMap map;
    cuuint64_t dims[3] = {(cuuint64_t)cols, (cuuint64_t)T, (cuuint64_t)heads};
    cuuint64_t strides[2] = {(cuuint64_t)cols * sizeof(bf16), (cuuint64_t)T * cols * sizeof(bf16)};
    cuuint32_t box[3] = {64, (cuuint32_t)box_rows, 1}, estride[3] = {1, 1, 1};
    CUresult r = encode(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, (void *)base, dims, strides, box, estride,
                        CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) { die("TMA: cuTensorMapEncodeTiled failed (%d) for heads %d, T %d, cols %d", (int)r, heads, T, cols); }
    return map;
}

}  // namespace flash

#endif  // LLMC_TMA_PIPELINE_CUH
