"""
End-to-end training anchor: the model of moba.c's 340M preset run dense, as a PyTorch user would write it:
a Llama-style decoder (RMSNorm, RoPE on pairs (i, i + HD/2), SwiGLU, untied head, no biases), bf16 autocast
with fp32 master weights, fused AdamW, global-norm clipping, torch.compile. Layout "paper" (the default, the
FlashMoBA paper's): layers 1, 3, ... sliding-window attention (window 256) with RoPE through FlexAttention
with a sliding-window block mask; layers 2, 4, ... global causal attention without positional encoding
through scaled_dot_product_attention's cuDNN backend. Layout "global": every layer cuDNN causal with RoPE.
Random tokens (throughput only). Prints one markdown row: tokens/s of the median step, MFU (6 x
non-embedding params + the attention FLOPs executed, against 989 TFLOP/s) and peak allocated memory.
dev-only: PyTorch is never used by the product.
usage: python3 dev/bench/e2e_anchor.py T B [steps] [eager] [paper|global]
"""
import sys
import time
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

V, L, C, NH, FFN, WINDOW = 32000, 24, 1024, 16, 2816, 256


class Block(nn.Module):
    def __init__(self, swa):
        super().__init__()
        self.swa = swa  # sliding window + RoPE; else global NoPE (paper) or global RoPE (global layout: swa None)
        self.ln1, self.ln2 = nn.RMSNorm(C, eps=1e-5), nn.RMSNorm(C, eps=1e-5)
        self.qkv, self.wo = nn.Linear(C, 3 * C, bias=False), nn.Linear(C, C, bias=False)
        self.fc, self.proj = nn.Linear(C, 2 * FFN, bias=False), nn.Linear(FFN, C, bias=False)

    def forward(self, x, cos, sin, block_mask):
        B, T, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, NH, C // NH).permute(2, 0, 3, 1, 4)

        def rope(t):
            a, b = t.chunk(2, dim=-1)
            return torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)

        if self.swa:
            o = flex_attention(rope(q), rope(k), v, block_mask=block_mask)
        elif self.swa is None:
            o = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True)
        else:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.wo(o.transpose(1, 2).reshape(B, T, C))
        gate, up = self.fc(self.ln2(x)).chunk(2, dim=-1)
        return x + self.proj(F.silu(gate) * up)


class Model(nn.Module):
    def __init__(self, T, paper):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.blocks = nn.ModuleList(Block((l % 2 == 0) if paper else None) for l in range(L))
        self.block_mask = create_block_mask(lambda b, h, qi, ki: (ki <= qi) & (qi - ki < WINDOW), None, None, T, T, device="cuda")
        self.lnf, self.lm = nn.RMSNorm(C, eps=1e-5), nn.Linear(C, V, bias=False)
        hd = C // NH
        freq = 10000.0 ** (-torch.arange(0, hd // 2, dtype=torch.float64) * 2 / hd)
        ang = torch.arange(T, dtype=torch.float64)[:, None] * freq[None]
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)

    def forward(self, idx, targets):
        x = self.wte(idx)
        for b in self.blocks:
            x = b(x, self.cos.to(x.dtype), self.sin.to(x.dtype), self.block_mask)
        logits = self.lm(self.lnf(x))
        return F.cross_entropy(logits.float().view(-1, V), targets.view(-1))


def main():
    T, B = int(sys.argv[1]), int(sys.argv[2])
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    eager = len(sys.argv) > 4 and sys.argv[4] == "eager"
    paper = not (len(sys.argv) > 5 and sys.argv[5] == "global")
    torch.manual_seed(0)
    model = Model(T, paper).cuda()
    for n, p in model.named_parameters():
        if p.dim() == 2:
            nn.init.normal_(p, 0.0, 0.02)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    step_fn = model if eager else torch.compile(model)
    idx = torch.randint(0, V, (B, T + 1), device="cuda")
    x, y = idx[:, :-1].contiguous(), idx[:, 1:].contiguous()
    times = []
    for s in range(steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION), torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step_fn(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    dt = sorted(times[2:])[len(times[2:]) // 2]  # median after compile / warm-up steps
    non_emb = sum(p.numel() for p in model.parameters()) - V * C
    keys = [sum(min(t + 1, WINDOW) for t in range(T)) / T if paper and l % 2 == 0 else (T + 1) / 2 for l in range(L)]
    flops_tok = 6 * non_emb + sum(12 * C * k for k in keys)
    tok_s = B * T / dt
    what = "FlexAttention SWA + cuDNN NoPE (paper layout)" if paper else "cuDNN SDPA (global layout)"
    print(f"| 340M PyTorch {'eager' if eager else 'torch.compile'} {what} | {T} x {B} | {dt * 1e3:.0f} ms | "
          f"{tok_s:,.0f} tok/s | MFU {100 * tok_s * flops_tok / 989e12:.1f}% | "
          f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB | loss {loss.item():.3f} |", flush=True)


if __name__ == "__main__":
    main()
