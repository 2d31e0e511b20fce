"""fpx conversions in eager mode on CPU (no torch.compile), by CPU's eager routes and by the
routes compiled code takes, side by side in one process.

Run: python benchmarks/eager.py [--mib 64]

Outside ``torch.compile`` on CPU, encode rounds FP8 by ATen's float8 cast
(``fpx.convert._conversion_pays_off``) and FP6/FP4 by one float add (``_float_add_pays_off``),
and decode indexes a table of the format's values (``_decodes_by_table``): fewer eager tensor
operations, each a pass over the data with a fresh output. The other column forces the
bit-level encode and the field-arithmetic decode, which compiled code keeps (inductor fuses and
vectorizes them). Both give the same bits (tests/fpx/test_encode.py, test_formats.py). Times
are wall-time medians (ms) of float32 input (``--mib`` MiB, values x 100), alternating the two
columns twice.
"""

import argparse
import contextlib
import os
import sys
from unittest import mock

import torch

sys.path.insert(0, os.path.dirname(__file__))
import fpx  # noqa: E402
import fpx.convert  # noqa: E402
from timing import environment_line, time_cpu  # noqa: E402

EAGER_CHOICES = ("_conversion_pays_off", "_float_add_pays_off", "_decodes_by_table")


@contextlib.contextmanager
def compiled_routes():
    """The routes compiled CPU code takes, in eager: every eager choice answered no."""
    with contextlib.ExitStack() as stack:
        for name in EAGER_CHOICES:
            stack.enter_context(mock.patch.object(fpx.convert, name, lambda device: False))
        yield


def cases(x: torch.Tensor):
    e4m3 = fpx.encode(x, fpx.E4M3)
    e2m1 = fpx.encode(x, fpx.E2M1)
    return [
        ("encode E4M3", lambda: fpx.encode(x, fpx.E4M3)),
        ("encode E2M1", lambda: fpx.encode(x, fpx.E2M1)),
        ("decode E4M3 -> float32", lambda: fpx.decode(e4m3, fpx.E4M3)),
        ("decode E4M3 -> bfloat16", lambda: fpx.decode(e4m3, fpx.E4M3, torch.bfloat16)),
        ("decode E4M3 -> float16", lambda: fpx.decode(e4m3, fpx.E4M3, torch.float16)),
        ("decode E2M1 -> float32", lambda: fpx.decode(e2m1, fpx.E2M1)),
        ("round_to E4M3", lambda: fpx.round_to(x, fpx.E4M3)),
        ("fake_quantize E4M3, groups of 128", lambda: fpx.fake_quantize(x, fpx.E4M3, group_size=128)),
        ("fake_quantize E2M1, MX blocks", lambda: fpx.fake_quantize(x, fpx.E2M1, block="mx")),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64, help="float32 input size in MiB")
    args = parser.parse_args()
    n = args.mib * 2**20 // 4
    x = torch.randn(n, generator=torch.Generator().manual_seed(0)) * 100
    print(f"# fpx eager conversions on CPU, {n} float32 values; {environment_line()}; {torch.get_num_threads()} threads")
    print("| operation | compiled code's route, ms | CPU eager route, ms | speedup |")
    print("|---|---|---|---|")
    for name, call in cases(x):
        times = {"eager": [], "compiled": []}
        for _ in range(2):
            times["eager"].append(time_cpu(call, repeats=3, min_seconds=0.0))
            with compiled_routes():
                times["compiled"].append(time_cpu(call, repeats=3, min_seconds=0.0))
        slow, fast = min(times["compiled"]) * 1e3, min(times["eager"]) * 1e3
        print(f"| {name} | {slow:.0f} | {fast:.0f} | {slow / fast:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
