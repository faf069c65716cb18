/*
 Dense causal flash attention (llmc/flash_attention.cuh with sel = NULL): correctness and timing of each
 version (dev/cuda/attention_dense_versions.cuh lists them: 1 simple, 2-4 mma.sync, 5-8 warpgroup MMA,
 9-11 the TMA backward with 64-query tiles, 13-16 the Hopper forward step by step, 17-18 HD 128 on
 warpgroup MMA, 19-21 FlashAttention-3's backward step; 16 + 21 (20 deterministic) is what the trainer runs).
   ./build/cuda/attention_dense <v> check           CPU-reference checks (T = 1000 and other tails)
   ./build/cuda/attention_dense <v> time HD T...    fwd and fwd+bwd at batch 2, d_model 2048 (NH = 2048/HD)
 FLOPs: causal fwd = 2 B NH T^2 HD (half the square), fwd+bwd = 3.5x the forward's.
*/
#include "dev/cuda/attention_check.cuh"

int main(int argc, char **argv) {
    int version = parse_version(argc, argv);
    const char *mode = argc > 2 ? argv[2] : "check";
    if (strcmp(mode, "check") == 0) {
        int fails = 0;
        fails += check_case(version, 1, 2, 1000, 64, 0, 0, false, 1);
        fails += check_case(version, 2, 1, 1000, 128, 0, 0, false, 2);
        fails += check_case(version, 1, 1, 77, 128, 0, 0, false, 3);
        fails += check_case(version, 1, 2, 256, 64, 0, 0, false, 4);
        fails += check_case(version, 1, 1, 3, 128, 0, 0, false, 5);  // (T = 1 has dq = dk = 0 exactly)
        fails += check_case(version, 2, 2, 77, 64, 0, 0, false, 6);
        fails += check_case(version, 1, 3, 200, 64, 0, 0, false, 8);  // partial last 128-row CTAs
        printf("attention_dense v%d: %d failed\n", version, fails);
        return fails ? 1 : 0;
    }
    if (strcmp(mode, "time") == 0 && argc > 4) {
        int HD = atoi(argv[3]);
        for (int i = 4; i < argc; i++) { time_case(version, 2, 2048 / HD, atoi(argv[i]), HD, 0, 0); }
        return 0;
    }
    die("usage: %s <version> check | time HD T...", argv[0]);
}
