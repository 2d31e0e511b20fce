"""Stochastic encode to E4M3 on CUDA, side by side: clone, the draws of torch.rand_like,
fpx.hashed_uniform (``uniform=``) or ``seed=`` (the same draws, compared as integers), and the
rounding by a float scaling (fpx.convert's _stochastic_magnitude_by_float: CPU eager's route
since the thirty-fifth session, CUDA's since the thirty-sixth, one integer sum since then) or
the integer one (_round_magnitude), each forced through
fpx.convert._stochastic_by_float_pays_off while compiling. 64 MiB input, compiled, GB/s
counting bytes read and written.

Run: python benchmarks/probe_stochastic.py
"""

import os
import sys
from unittest import mock

import torch

sys.path.insert(0, os.path.dirname(__file__))
import fpx  # noqa: E402
import fpx.convert  # noqa: E402
from timing import environment_line, time_call  # noqa: E402


def main():
    print(f"# stochastic E4M3 encode, 64 MiB input; {environment_line()}")
    print("| input | rounding | draws | GB/s | vs clone |")
    print("|---|---|---|---|---|")
    seed = torch.tensor(1234, device="cuda")
    for dtype in (torch.float32, torch.bfloat16):
        x = (torch.randn(64 * 2**20 // dtype.itemsize, device="cuda") * 100).to(dtype)
        size = x.numel() * x.element_size()
        clone = 2 * size / time_call(torch.clone, x) / 1e9
        print(f"| {str(dtype)[6:]} | clone() | | {clone:.1f} | 1.00x |", flush=True)
        for by_float in (True, False):
            with mock.patch.object(fpx.convert, "_stochastic_by_float_pays_off", lambda device, on=by_float: on):
                for draws in ("seed=", "hashed_uniform", "rand_like"):
                    torch._dynamo.reset()
                    if draws == "rand_like":
                        fn = torch.compile(lambda x, s: fpx.encode(x, fpx.E4M3, rounding="stochastic"), fullgraph=True, dynamic=False)
                    elif draws == "seed=":
                        fn = torch.compile(lambda x, s: fpx.encode(x, fpx.E4M3, rounding="stochastic", seed=s),
                                           fullgraph=True, dynamic=False)
                    else:
                        fn = torch.compile(lambda x, s: fpx.encode(x, fpx.E4M3, rounding="stochastic",
                                                                   uniform=fpx.hashed_uniform(x.shape, s, device=x.device)),
                                           fullgraph=True, dynamic=False)
                    gbs = (size + x.numel()) / time_call(fn, x, seed) / 1e9
                    name = "float" if by_float else "integer"
                    print(f"| {str(dtype)[6:]} | {name} | {draws} | {gbs:.1f} | {gbs / clone:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
