"""
Dense causal attention anchors for dev/cuda/bench_attention.sh: PyTorch scaled_dot_product_attention
with the FLASH (FlashAttention-2) and CUDNN backends, bf16, batch 2, d_model 2048 (NH = 2048 / HD),
CUDA-event medians. Prints markdown rows in the same columns as attention_dense's `time` mode.
dev-only (PyTorch is never used by the product).
usage: python3 dev/cuda/attention_anchor.py HD T [T ...]
"""
import sys
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def median_ms(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return sorted(times)[len(times) // 2]


def main():
    hd = int(sys.argv[1])
    nh, b = 2048 // hd, 2
    for t in map(int, sys.argv[2:]):
        q, k, v, do = (torch.randn(b, nh, t, hd, device="cuda", dtype=torch.bfloat16) for _ in range(4))
        for x in (q, k, v):
            x.requires_grad_(True)
        reps = 5 if t >= 65536 else 20
        flops = 2.0 * b * nh * t * t * hd
        for name, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
            with sdpa_kernel(backend):
                def fwd():
                    with torch.no_grad():
                        F.scaled_dot_product_attention(q, k, v, is_causal=True)

                def fwdbwd():
                    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                    out.backward(do)

                try:
                    f = median_ms(fwd, 2, reps)
                    a = median_ms(fwdbwd, 2, reps)
                    print(f"| {name} | dense | {hd} | {t} | {f:.2f} | {flops / f * 1e-9:.0f} | {a:.2f} | {3.5 * flops / a * 1e-9:.0f} |", flush=True)
                except RuntimeError as e:
                    print(f"| {name} | dense | {hd} | {t} | failed: {str(e).splitlines()[0][:60]} |", flush=True)
            q.grad = k.grad = v.grad = None
        del q, k, v, do
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
