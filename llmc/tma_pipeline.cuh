/*
 Hopper (sm_90) asynchronous-copy pipeline pieces: shared-memory mbarriers (arrive, expected transaction
 bytes, parity waits), the producer / consumer register split (setmaxnreg, sm_90a) and the tensor memory accelerator (TMA: cp.async.bulk.tensor) loading 64-column
 boxes of a (rows, columns) bf16 matrix per head into the 128-byte-swizzle layout of wgmma_tiles.cuh,
 and TMA reductions (cp.reduce.async.bulk.tensor: fp32 adds into global memory done by the copy engine).
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

// TMA load of the box at coordinates c0..c3 of a 4-D tensor map into dst (1024-byte aligned for
// 128-byte-swizzled maps), completing `bar`'s transaction bytes; elements outside the tensor read as
// zeros and the full box counts towards the bytes.
__device__ inline void tma_load_4d(void *dst, const void *map, uint64_t *bar, int c0, int c1, int c2, int c3) {
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], [%6];\n"
                 ::"r"(smem_addr(dst)), "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(smem_addr(bar)) : "memory");
}

// The box at coordinates c0..c3 of a 4-D fp32 tensor map += src (the box in shared memory, laid out as the map's
// swizzle says; 1024-byte aligned for 128-byte swizzle), done by the copy engine in L2; elements outside the
// tensor are skipped. A bulk group as below.
__device__ inline void tma_reduce_add_4d(const void *map, const void *src, int c0, int c1, int c2, int c3) {
    asm volatile("cp.reduce.async.bulk.tensor.4d.global.shared::cta.add.tile.bulk_group [%0, {%1, %2, %3, %4}], [%5];\n"
                 ::"l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(smem_addr(src)) : "memory");
}

// Per-thread bulk groups: the issuing thread commits and waits (wait_read: until the source may be overwritten).
__device__ inline void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
__device__ inline void bulk_wait_read() { asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory"); }
__device__ inline void bulk_wait() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }

// cuTensorMapEncodeTiled from the driver, through the runtime (no libcuda link).
inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
    static PFN_cuTensorMapEncodeTiled_v12000 fn = NULL;
    if (fn == NULL) {
        void *p = NULL;
        cudaDriverEntryPointQueryResult found;
        cudaCheck(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &found));
        if (found != cudaDriverEntryPointSuccess || p == NULL) { die("TMA: the driver has no cuTensorMapEncodeTiled"); }
        fn = (PFN_cuTensorMapEncodeTiled_v12000)p;
    }
    return fn;
}

// A 4-D tiled tensor map: dims[0] contiguous, strides (bytes) of dims 1..3, box of box[] elements.
inline CUtensorMap tensor_map_4d(const void *ptr, CUtensorMapDataType type, const cuuint64_t dims[4], const cuuint64_t strides[3],
                                 const cuuint32_t box[4], CUtensorMapSwizzle swizzle) {
    CUtensorMap m;
    const cuuint32_t unit[4] = {1, 1, 1, 1};
    CUresult r = tensor_map_encoder()(&m, type, 4, const_cast<void *>(ptr), dims, strides, box, unit, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                      swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) { die("TMA: cuTensorMapEncodeTiled failed (%d) for dims %llu x %llu", (int)r, dims[0], dims[1]); }
    return m;
}

// Tensor map of a (heads, T, cols) bf16 tensor, rows of cols contiguous, boxes of 64 columns x box_rows
// rows of one head, 128-byte swizzle.
inline CUtensorMap make_head_tensor_map(const bf16 *base, int heads, int T, int cols, int box_rows) {
    auto encode = tensor_map_encoder();
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
