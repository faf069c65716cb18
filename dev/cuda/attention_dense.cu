/*
 Dense causal flash attention (llmc/flash_attention.cuh with sel = NULL): correctness and timing.
 Versions (see dev/cuda/attention_check.cuh): 1 simple, 2 flash + atomic dQ, 3 flash deterministic,
 4 = 2 with the one-row-tile-per-warp forward, 5-8 the Hopper (wgmma) backward at HD 64: 5 atomic dQ,
 6 deterministic (dQ from its own kernel), 7, 8 = 5, 6 with one warpgroup per CTA; 9-11 the TMA /
 mbarrier backward (llmc/attention_bwd_hopper.cuh, 128 keys per CTA, dQ by TMA reductions; version 7's
 forward): 9 = 2 stages, 10 = 3 stages, 11 = 9 deterministic; 13-16 the FlashAttention-3-style forward
 (TMA producer, mbarriers; HD 64 and 128) step by step, version 7's backward; 17, 18 = version 16's forward
 and the warpgroup-MMA backward at HD 128 as well (17 atomic dQ as 7, 18 deterministic as 8); 19, 20 = version 16's
 forward and FlashAttention-3's backward step (128 queries x 128 keys, dS^T shared by two warpgroups; 20 deterministic;
 21 = 19 with each tile's dQ by one warpgroup, alternating).
   ./build/cuda/attention_dense <v> check           CPU-reference checks (T = 1000 and other tails)
   ./build/cuda/attention_dense <v> time HD T...    fwd and fwd+bwd at batch 2, d_model 2048 (NH = 2048/HD)
 FLOPs as anchors.md: causal fwd = 2 B NH T^2 HD, fwd+bwd = 3.5x.
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
