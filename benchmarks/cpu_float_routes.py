"""Compiled CPU: the float-arithmetic routes of fpx.convert against the bit level, side by side.

Compiled on CPU, fpx's decode to 16-bit floats and round_to of FP4 / FP6, and encode of 16-bit
floats to FP8-FP4, take their float-arithmetic routes (``fpx.convert.
_small_formats_in_float_arithmetic``): a 32-lane kernel's int32 conversions are scalar loops
there (docs/inductor.md, CPU section). This script times each case both ways, each route in a
process of its own (a route swapped inside one process would make dynamo recompile to it),
alternating the routes ``--runs`` times: median ms per call of 4 Mi elements by default
(fake_quantize: rows of 1024, groups of 128 for FP8, 32 for FP4).

Run: python benchmarks/cpu_float_routes.py [--runs 3] [--mi 4] [--match float16]
"""

import argparse
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fpx  # noqa: E402
from timing import environment_line, time_cpu  # noqa: E402

FORMATS = {"E2M1": fpx.E2M1, "E3M2": fpx.E3M2, "E2M3": fpx.E2M3, "E4M3": fpx.E4M3, "E5M2": fpx.E5M2}
CASES = [  # (operation, input dtype, format)
    ("encode", "bfloat16", "E2M1"), ("encode", "float16", "E2M1"), ("encode", "bfloat16", "E3M2"),
    ("encode", "float16", "E2M3"), ("encode", "float32", "E2M1"), ("encode", "bfloat16", "E4M3"),
    ("encode", "bfloat16", "E5M2"), ("encode", "float16", "E4M3"), ("encode", "float16", "E5M2"),
    ("round_to", "bfloat16", "E2M1"), ("round_to", "float16", "E2M3"), ("round_to", "float32", "E2M1"),
    ("round_to", "float32", "E4M3"), ("round_to", "float32", "E5M2"), ("round_to", "float16", "E4M3"),
    ("round_to", "float16", "E5M2"),
    ("fake_quantize", "bfloat16", "E4M3"), ("fake_quantize", "float32", "E4M3"), ("fake_quantize", "bfloat16", "E2M1"),
    ("decode", "bfloat16", "E2M1"), ("decode", "float16", "E3M2"),
]


def chosen_cases(match: str) -> list[tuple[str, str, str]]:
    """The cases whose "operation dtype format" name contains ``match`` ("" for all)."""
    cases = [case for case in CASES if match in " ".join(case)]
    if not cases:
        raise SystemExit(f"--match {match!r} names no case")
    return cases


def run_route(route: str, mi: int, match: str) -> None:
    """Time the chosen cases with the float routes on or off; print 'case ms' lines."""
    if route == "off":
        fpx.convert._small_formats_in_float_arithmetic = lambda device: False
    torch.manual_seed(0)
    for operation, dtype_name, format_name in chosen_cases(match):
        dtype, fmt = getattr(torch, dtype_name), FORMATS[format_name]
        x = (torch.randn(mi << 20) * 3).to(dtype)
        functions = {
            "encode": lambda t: fpx.encode(t, fmt),
            "round_to": lambda t: fpx.round_to(t, fmt),
            "fake_quantize": lambda t: fpx.fake_quantize(t, fmt, group_size=32 if fmt.bits == 4 else 128),
            "decode": lambda c: fpx.decode(c, fmt, dtype),
        }
        fn = functions[operation]
        if operation == "fake_quantize":
            x = x.view(-1, 1024)
        args = (fpx.encode(x, fmt),) if operation == "decode" else (x,)
        compiled = torch.compile(fn, fullgraph=True, dynamic=False)
        print(f"{operation} {dtype_name} {format_name} {time_cpu(compiled, *args, repeats=15) * 1e3:.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mi", type=int, default=4, help="elements per call, in Mi")
    parser.add_argument("--match", default="", help='time only the cases whose name contains this, e.g. "float16"')
    parser.add_argument("--route", choices=["on", "off"], help=argparse.SUPPRESS)  # one process's share
    args = parser.parse_args()
    cases = chosen_cases(args.match)
    if args.route:
        run_route(args.route, args.mi, args.match)
        return
    times: dict[tuple[str, str], list[str]] = {}
    for _ in range(args.runs):
        for route in ("off", "on"):
            out = subprocess.run([sys.executable, __file__, "--route", route, "--mi", str(args.mi), "--match", args.match],
                                 check=True, capture_output=True, text=True).stdout
            for line in out.splitlines():
                *case, ms = line.split()
                times.setdefault((" ".join(case), route), []).append(ms)
    print(environment_line())
    print(f"{args.mi} Mi elements, compiled, median ms per call, {args.runs} alternating runs")
    print("| case | bit level (int32 lanes) | float arithmetic |\n|---|---|---|")
    for operation, dtype_name, format_name in cases:
        case = f"{operation} {dtype_name} {format_name}"
        print(f"| {case} | {', '.join(times[(case, 'off')])} | {', '.join(times[(case, 'on')])} |")


if __name__ == "__main__":
    main()
