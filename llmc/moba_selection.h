/*
 The MoBA selection: which key blocks each query attends to, as the gate writes it (llmc/moba_gate.cuh)
 and the attention kernels read it (llmc/moba_attention.cuh, the simple kernels of flash_attention.cuh,
 the KV-cache decoder). MOBA_MAX_TOPK bounds K everywhere: the gate and the decoder keep a query's
 K choices in fixed-size arrays, and the attention kernels are checked up to it.
*/
#ifndef LLMC_MOBA_SELECTION_H
#define LLMC_MOBA_SELECTION_H

#define MOBA_MAX_TOPK 64

typedef struct {
    const int *blocks;  // (B, NH, T, K) int32: selected key-block indices of each query, ascending,
                        // own block t/block_size always included; unused slots = -1 (at the end)
    int block_size;     // 32..512, power of two
    int topk;           // K, 1..MOBA_MAX_TOPK
} MobaSelection;

#endif  // LLMC_MOBA_SELECTION_H
