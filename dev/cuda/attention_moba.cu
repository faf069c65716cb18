/*
 MoBA flash attention given a block selection (llmc/flash_attention.cuh with sel != NULL): correctness
 and timing. Selections here are random valid ones (own block + random distinct past blocks), which
 costs the kernels the same as a gated one of the same (block, top-k) only if the kernel's work does not
 depend on which blocks were picked; see dev/cuda/attention_notes.md for why it does here.
 Versions (see dev/cuda/attention_check.cuh): 1 simple, 2 flash + atomic dQ, 3 flash deterministic.
   ./build/cuda/attention_moba <v> check               CPU-reference checks, incl. K >= blocks = dense
   ./build/cuda/attention_moba <v> time bs K T...      batch 2, 16 heads, HD 128
*/
#include "dev/cuda/attention_check.cuh"

int main(int argc, char **argv) {
    int version = parse_version(argc, argv);
    const char *mode = argc > 2 ? argv[2] : "check";
    if (strcmp(mode, "check") == 0) {
        int fails = 0;
        fails += check_case(version, 1, 2, 1000, 128, 64, 4, false, 11);
        fails += check_case(version, 1, 2, 1000, 64, 32, 8, false, 12);
        fails += check_case(version, 2, 1, 777, 128, 128, 3, false, 13);
        fails += check_case(version, 1, 1, 1000, 64, 256, 2, false, 14);
        fails += check_case(version, 1, 1, 1000, 128, 32, 1, false, 15);
        fails += check_case(version, 1, 1, 600, 128, 32, 19, true, 16);  // 19 blocks, K = 19: dense
        printf("attention_moba v%d: %d failed\n", version, fails);
        return fails ? 1 : 0;
    }
    if (strcmp(mode, "time") == 0 && argc > 5) {
        int bs = atoi(argv[3]), K = atoi(argv[4]);
        for (int i = 5; i < argc; i++) { time_case(version, 2, 16, atoi(argv[i]), 128, bs, K); }
        return 0;
    }
    die("usage: %s <version> check | time bs K T...", argv[0]);
}
