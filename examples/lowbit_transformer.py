"""Quantize a small transformer's linear layers with fpx.quantize_ and compare formats.

Builds a 4-layer decoder-style transformer in this file (random weights, no downloads), then for
INT4, INT3, INT2, E4M3 and E2M1 weights prints: weight memory, the output error against the float
model, and eager vs compiled (torch.compile) time per forward on the CPU.

Run: python examples/lowbit_transformer.py
"""

import copy
import time

import torch
from torch import nn

import fpx

torch.manual_seed(0)
torch.set_num_threads(max(1, torch.get_num_threads()))


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.up, self.down = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, s, 3, self.heads, d // self.heads).unbind(2)
        attention = nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        x = x + self.proj(attention.transpose(1, 2).reshape(b, s, d))
        return x + self.down(nn.functional.gelu(self.up(self.norm2(x))))


class TinyTransformer(nn.Module):
    def __init__(self, vocab=512, dim=256, heads=4, layers=4):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(layers)])
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens):
        return self.head(self.blocks(self.embed(tokens)))


def seconds_per_call(fn, *args, repeats=5):
    fn(*args)
    start = time.perf_counter()
    for _ in range(repeats):
        fn(*args)
    return (time.perf_counter() - start) / repeats


def main():
    model = TinyTransformer().eval()
    tokens = torch.randint(0, 512, (1, 64))
    decode_tokens = tokens[:, :1]  # one token: the matrix-vector case of generation
    with torch.no_grad():
        reference = model(tokens)
        float_bytes = fpx.nn.linear_weight_nbytes(model)
        rows = [("float32", float_bytes, 0.0, seconds_per_call(model, decode_tokens), float("nan"))]
        for name, fmt, kwargs in [
            ("INT4 g128", fpx.INT4, {"group_size": 128}),
            ("INT3 g64", fpx.INT3, {"group_size": 64}),
            ("INT2 g32", fpx.INT2, {"group_size": 32}),
            ("E4M3 per-channel", fpx.E4M3, {"group_size": None}),
            ("E2M1 MX", fpx.E2M1, {"block": "mx"}),
        ]:
            quantized = fpx.quantize_(copy.deepcopy(model), fmt, **kwargs)
            out = quantized(tokens)
            error = ((out - reference).norm() / reference.norm()).item()
            eager = seconds_per_call(quantized, decode_tokens)
            torch._dynamo.reset()  # a fresh compile per model: they share the forward's code object
            compiled = torch.compile(quantized, fullgraph=True, options=fpx.nn.compile_options("cpu"))
            with fpx.nn.cold_cache_tuning():  # the first call compiles (and on CUDA tunes) the kernels
                first = compiled(decode_tokens)
            assert torch.allclose(first, quantized(decode_tokens), rtol=1e-4, atol=1e-4)
            rows.append((name, fpx.nn.linear_weight_nbytes(quantized), error, eager, seconds_per_call(compiled, decode_tokens)))
    print(quantized.head)
    print(f"\nTinyTransformer (4 layers, dim 256), linear weights only; CPU, {torch.get_num_threads()} threads")
    print(f"{'weights':<18} {'memory':>10} {'vs fp32':>8} {'rel. error':>11} {'eager ms':>9} {'compiled ms':>12}")
    for name, nbytes, error, eager, compiled in rows:
        print(
            f"{name:<18} {nbytes / 2**20:>8.2f} MiB {float_bytes / nbytes:>7.1f}x {error:>11.4f} "
            f"{eager * 1e3:>9.2f} {compiled * 1e3:>12.2f}"
        )
    print("(time: one forward over 1 token, the matrix-vector case where low-bit weights pay off)")


if __name__ == "__main__":
    main()
