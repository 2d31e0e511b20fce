"""Compiled bitpack.pack / unpack bandwidth against clone() of the same bytes, same run.

Run: python benchmarks/pack.py [--device cuda] [--mib 64]
Bandwidth counts bytes read + bytes written. The ratio is to clone() of the packed-side input
(pack: the uint8 values; unpack: the uint8 values it produces), measured in the same run.
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import bitpack  # noqa: E402
from timing import environment_line, time_call  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mib", type=int, default=64, help="size of the uint8 value tensor")
    parser.add_argument("--bits", type=int, nargs="*", default=list(range(1, 9)))
    args = parser.parse_args()
    rows = 1024
    cols = args.mib * 1024 * 1024 // rows
    print(f"# bitpack pack/unpack, {args.mib} MiB of uint8 values ({rows} x {cols}); {environment_line()}")
    clone = torch.compile(torch.clone)
    rows_out = []
    for bits in args.bits:
        values = torch.randint(0, 2**bits, (rows, cols), dtype=torch.uint8, device=args.device)
        clone_s = time_call(clone, values)
        clone_gbs = 2 * values.numel() / clone_s / 1e9
        for layout in ("dense", "padded"):
            if layout == "padded" and 8 % bits == 0:
                continue  # same bytes as dense
            torch._dynamo.reset()  # every case compiles the same lambdas: stay under the recompile limit
            pack = torch.compile(lambda t: bitpack.pack(t, bits, layout=layout), fullgraph=True)
            unpack = torch.compile(lambda p: bitpack.unpack(p, bits, cols, layout=layout), fullgraph=True)
            packed = pack(values)
            assert torch.equal(unpack(packed), values)
            moved = values.numel() + packed.numel()
            pack_gbs = moved / time_call(pack, values) / 1e9
            unpack_gbs = moved / time_call(unpack, packed) / 1e9
            rows_out.append((bits, layout, pack_gbs, unpack_gbs, clone_gbs))
    print(f"{'bits':>4} {'layout':>7} {'pack GB/s':>10} {'unpack GB/s':>12} {'clone GB/s':>11} {'pack/clone':>11} {'unpack/clone':>13}")
    for bits, layout, p, u, c in rows_out:
        print(f"{bits:>4} {layout:>7} {p:>10.1f} {u:>12.1f} {c:>11.1f} {p / c:>11.2f} {u / c:>13.2f}")


if __name__ == "__main__":
    main()
