"""
Sliding-window attention anchor for dev/cuda/attention_swa.cu's table: PyTorch FlexAttention with a
sliding-window block mask (query t sees keys [t - w + 1, t]) under torch.compile, which is what a PyTorch
user would write; and cuDNN SDPA dense causal at the same shape. bf16, CUDA-event medians, FLOPs counted as
executed (the window's keys). Prints markdown rows in attention_swa's columns.
dev-only (PyTorch is never used by the product).
usage: python3 dev/cuda/swa_anchor.py [B NH T HD window]
"""
import sys
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

from attention_anchor import median_ms  # CUDA-event median, this folder's dense anchor


def keys_per_query(t, w):
    return sum(min(i + 1, w) for i in range(t)) / t


def row(name, kind, w, hd, t, fwd_ms, all_ms, flops):
    print(f"| {name} | {kind} | {w} | {hd} | {t} | {fwd_ms:.3f} | {flops / fwd_ms * 1e-9:.0f} | {all_ms:.3f} | {3.5 * flops / all_ms * 1e-9:.0f} |", flush=True)


def main():
    b, nh, t, hd, w = (int(x) for x in sys.argv[1:6]) if len(sys.argv) > 5 else (8, 16, 8192, 64, 256)
    q, k, v, do = (torch.randn(b, nh, t, hd, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    for x in (q, k, v):
        x.requires_grad_(True)

    def sliding_window(b_, h_, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (q_idx - kv_idx < w)

    mask = create_block_mask(sliding_window, None, None, t, t, device="cuda")
    flex = torch.compile(flex_attention)

    def flex_fwd():
        return flex(q, k, v, block_mask=mask)

    def flex_all():
        flex_fwd().backward(do)

    flops = 4.0 * b * nh * t * hd * keys_per_query(t, w)
    with torch.no_grad():
        f = median_ms(flex_fwd, 5, 30)
    row("FlexAttention (torch.compile)", "sliding window", w, hd, t, f, median_ms(flex_all, 5, 30), flops)

    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        def sdpa_fwd():
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

        def sdpa_all():
            sdpa_fwd().backward(do)

        with torch.no_grad():
            f = median_ms(sdpa_fwd, 5, 30)
        row("cuDNN SDPA", "dense causal", 0, hd, t, f, median_ms(sdpa_all, 5, 30), 4.0 * b * nh * t * hd * keys_per_query(t, t))


if __name__ == "__main__":
    main()
