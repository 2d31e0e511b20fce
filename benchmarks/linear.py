"""Compiled LowBitLinear against bf16 F.linear and torch's int4 kernel, side by side in one run.

Run (GPU): python benchmarks/linear.py --shapes 8192x8192 --m 1,16,64 --formats INT4,INT2
Run (CPU): python benchmarks/linear.py --device cpu --dtype float32 --shapes 4096x4096 --m 1,4,16
Prints, per (shape, M, format): microseconds (CUDA-graph replay or CPU wall time, median),
speedup over F.linear with a dense weight in the activations' dtype (bf16 by default), % of the
weight-read roofline (packed weight + scales at the copy bandwidth measured in this run),
kernels launched, and the cold compile time. --csv writes the rows to a file.
"""

import argparse
import contextlib
import copy
import csv
import json
import os
import re
import sys
import time
import traceback

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import fpx  # noqa: E402
import fpx.tuning  # noqa: E402
from timing import (  # noqa: E402
    environment_line,
    LAYER_CHOICES,
    force_layer_choice,
    parse_template_configs,
    run_and_count_kernels,
    template_configs,
    time_cpu,
    time_cuda_graph,
    tuned_configs,
)

FORMATS = {
    "INT8": (fpx.INT8, {}), "INT4": (fpx.INT4, {}), "INT3": (fpx.INT3, {}), "INT2": (fpx.INT2, {}),
    "INT1": (fpx.INT1, {}), "UINT8": (fpx.UINT8, {}), "UINT4": (fpx.UINT4, {}), "UINT3": (fpx.UINT3, {}),
    "E4M3": (fpx.E4M3, {"group_size": None}),
    "E5M2": (fpx.E5M2, {"group_size": None}), "E4M3-G128": (fpx.E4M3, {"group_size": 128}),
    "E3M2": (fpx.E3M2, {}), "E2M3": (fpx.E2M3, {}), "E2M1": (fpx.E2M1, {}), "E2M1-MX": (fpx.E2M1, {"block": "mx"}),
}


def copies_for(nbytes, device, l2_bytes=50 * 2**20):
    """Enough copies of a weight that cycling through them reads from HBM, not L2 (CUDA); one
    on CPU, whose timing calls one function."""
    if device == "cpu":
        return 1
    return max(2, min(8, -(-3 * l2_bytes // max(nbytes, 1))))


def dense_copies(linear, device) -> list:
    """Copies of a dense ``linear``'s weight, enough of them that cycling reads from HBM."""
    n, k = linear.weight.shape
    return [linear.weight.detach().clone() for _ in range(copies_for(2 * n * k, device))]


def layer_copies(layer, device) -> list:
    """``layer`` and deep copies of it, enough of them that cycling reads its weight from HBM."""
    return [layer] + [copy.deepcopy(layer) for _ in range(copies_for(layer.weight_nbytes, device) - 1)]


TIMING_LOCK = None  # path of a file locked around each timing (--timing-lock)
_lock_depth = 0  # timing_lock is reentrant: a second flock of the same file in one process would wait forever


def seconds_per_call(calls, device):
    """Median seconds of one call among ``calls`` (cycled on CUDA; the first one on CPU)."""
    with timing_lock():
        if device == "cpu":
            return time_cpu(calls[0])
        return time_cuda_graph(calls)


@contextlib.contextmanager
def timing_lock():
    """Holds TIMING_LOCK exclusively (when set), so that no other benchmark process times at once."""
    global _lock_depth
    if TIMING_LOCK is None or _lock_depth:
        yield
        return
    import fcntl

    with open(TIMING_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def inductor_timings_through(wrap):
    """Within the block, every GPU timing inductor takes (launch configs, template candidates,
    the prologue-fusion choice) goes through ``wrap(timing)``, ``timing`` being inductor's GPU
    benchmark as it is on entry (a tuning scope's, where one replaced inductor's)."""
    from torch._inductor.runtime import benchmarking

    benchmarker = benchmarking.benchmarker
    with fpx.tuning._patched(benchmarker, "benchmark_gpu", wrap(benchmarker.benchmark_gpu)):
        yield


def locked_tuning_timings():
    """Inductor's timings while compiling held under TIMING_LOCK, so that compiles run side by
    side tune as if alone: the grids of the first sessions tuned under contention and cached
    poor choices (INT4 at 16 rows 117.7 us in the grid against 68.3 alone)."""
    def locked(timing):
        def locked_timing(*args, **kwargs):
            with timing_lock():
                return timing(*args, **kwargs)
        return locked_timing
    return inductor_timings_through(locked)


@contextlib.contextmanager
def cold_cache_all_timings():
    """Research (``--tuning cold-cache-all``): fpx.nn.cold_cache_tuning, with every GPU timing
    inductor takes in the block passed to it as vetted. Since the twenty-eighth session the
    package times the matmul-template candidates and the prologue-fusion choice cold itself,
    so this differs only in inductor's deterministic mode (which refuses unvetted timings)."""
    def as_vetted(cold):  # the package's timing: its checks, its eviction buffer
        return lambda fn, *args, **kwargs: cold(fn, *args, **{**kwargs, "is_vetted_benchmarking": True})

    with fpx.nn.cold_cache_tuning(), inductor_timings_through(as_vetted):
        yield


@contextlib.contextmanager
def template_precompile_in_pool():
    """Research (``--template-precompile-in-pool``): cold_cache_tuning without
    ``fpx.tuning.template_choices_precompiled_here``, so that inductor sends the matmul
    template's choices to its compile workers once their pool is up, and its benchmark
    compiles each again in this process (thirty-fourth session, H200, INT2 per channel at 128
    rows after 96 in one process: 65.3 s against 20.6 with the package's step). For A/B runs
    on another torch. Enter it before cold_cache_tuning."""
    with fpx.tuning._patched(fpx.tuning, "template_choices_precompiled_here", contextlib.nullcontext):
        yield


@contextlib.contextmanager
def logged_fusion_timings():
    """Research (``--log-fusion-timings``): within the block, each module inductor's scheduler
    times to decide a fusion (the prologue fused into each template choice, and the unfused
    pair) is printed with its time and, for a template, its tile: which tile the fusion
    benchmark ranked first, and by how much (thirty-third session: INT4 by 128 at 16 rows drew
    16 x 32 x 256, which ran 47.1 us against 44.1 in 16 x 16 x 128)."""
    from torch._inductor import scheduler

    original = scheduler.Scheduler.benchmark_codegened_module

    def logged(self, module, *args, **kwargs):
        result = original(self, module, *args, **kwargs)
        if not (isinstance(result, tuple) and len(result) == 2):  # another torch's return
            print(f"# fusion timing {result!r}", flush=True)
            return result
        ms, path = result
        try:
            with open(path) as handle:
                source = handle.read()
        except (OSError, TypeError):
            source = ""
        kind = "template" if "triton_heuristics.template" in source else "kernel"
        print(f"# fusion timing {ms * 1e3:9.2f} us  {kind} {tile_of(source, source)}  {os.path.basename(str(path))}",
              flush=True)
        return ms, path

    with fpx.tuning._patched(scheduler.Scheduler, "benchmark_codegened_module", logged):
        yield


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", default="8192x8192")
    parser.add_argument("--m", default="1,16,64")
    parser.add_argument("--formats", default="INT8,INT4,INT3,INT2,INT1,E4M3,E3M2,E2M1")
    parser.add_argument("--group-size", type=int, default=128,
                        help="weights per scale; 0: one scale per output channel at every shape (E4M3 and E5M2 are per channel always)")
    parser.add_argument("--csv", default=None)
    parser.add_argument("--gemv-max-rows", type=int, default=None, help="LowBitLinear gemv_max_rows (default: the layer's)")
    parser.add_argument("--options", default="{}", help="JSON inductor options added to compile_options(device)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--scale-dtype", default=None, choices=["bfloat16", "float16", "float32"],
                        help="the layer's scale_dtype (default: --dtype). float32 scales are 4-byte loads, which "
                             "the fused template copies asynchronously (docs/inductor.md, 'Float32 scales')")
    parser.add_argument("--timing-lock", default=None,
                        help="a file locked around every timing, inductor's tuning timings included, so that "
                             "processes run side by side time one at a time")
    parser.add_argument("--compile-only", action="store_true",
                        help="compile each case once and record its cold compile time, without timing: several such "
                             "processes warm inductor's caches in parallel before one timed run")
    parser.add_argument("--tuning", choices=("cold-cache", "inductor", "cold-cache-all"), default="cold-cache",
                        help="the benchmark inductor tunes launch configs, template tiles and the fusion choice "
                             "with: fpx.nn.cold_cache_tuning's (default), inductor's own, or cold_cache_all_timings "
                             "(research; the default since the twenty-eighth session, but in inductor's "
                             "deterministic mode too)")
    parser.add_argument("--template-configs", default="",
                        help="research: the CUDA matmul template tries exactly these configs, each also timed "
                             "with the decode fused, e.g. 16x64x128s4w8,16x32x128s5w2 (BLOCK_M x BLOCK_N x "
                             "BLOCK_K, stages, warps; warps uncapped)")
    parser.add_argument("--template-precompile-in-pool", action="store_true",
                        help="research: the matmul template's choices precompiled in inductor's compile workers "
                             "once their pool is up, as outside cold_cache_tuning (template_precompile_in_pool)")
    parser.add_argument("--log-fusion-timings", action="store_true",
                        help="research: print each module inductor times to decide a fusion (a template choice with "
                             "its prologue fused, or the unfused pair), with its time and tile")
    parser.add_argument("--plane-rows-right", default=None,
                        help="LO,HI: the rows the right route computes per-channel codes by plane, for every "
                             "format that takes the planes (fpx.nn.PLANE_PRODUCTS_RIGHT_ROWS)")
    parser.add_argument("--plane-rows-left", default=None,
                        help="LO[,HI]: the rows (from LO, up to HI or any) the left route computes per-channel "
                             "codes by plane, for every format that takes the planes "
                             "(fpx.nn.PLANE_PRODUCTS_LEFT_ROWS; 0: never)")
    parser.add_argument("--plane-formats", default=None,
                        help="comma-separated formats (of INT4, INT2, INT1, E2M1) whose per-channel layers "
                             "take the plane products (fpx.nn.PLANE_PRODUCT_FORMATS; default INT4,INT2,E2M1); a "
                             "format the rows tables do not list takes the right route's 5-16 rows")
    parser.add_argument("--compiled-dense", action="store_true",
                        help="also time the dense F.linear compiled with the layer's options and tuning "
                             "(what an unquantized matmul of the same model gets), per shape and M")
    for option, function in LAYER_CHOICES.items():
        parser.add_argument("--" + option.replace("_", "-"), choices=("auto", "0", "1"), default="auto",
                            help=f"force fpx.nn.{function} on (1) or off (0); auto: the layer's choice "
                            "(timing.LAYER_CHOICES)")
    parser.add_argument("--weight-block-count", type=int, default=None,
                        help="fpx.nn.WEIGHT_BLOCKS: the blocks of output rows of --weight-blocks 1")
    args = parser.parse_args()
    if args.weight_block_count is not None:
        if args.weight_block_count < 1:
            parser.error(f"--weight-block-count must be positive, got {args.weight_block_count}")
        fpx.nn.WEIGHT_BLOCKS = args.weight_block_count
    for option in LAYER_CHOICES:
        if getattr(args, option) != "auto":
            force_layer_choice(option, getattr(args, option) == "1")
    if args.plane_formats:
        names = args.plane_formats.split(",")
        if not set(names) <= {"INT4", "INT2", "INT1", "E2M1"}:
            parser.error(f"--plane-formats takes INT4, INT2, INT1 and E2M1, got {args.plane_formats}")
        fpx.nn.PLANE_PRODUCT_FORMATS = tuple(getattr(fpx, name) for name in names)
        for fmt in fpx.nn.PLANE_PRODUCT_FORMATS:
            fpx.nn.PLANE_PRODUCTS_RIGHT_ROWS.setdefault(fmt, (5, 16))
    if args.plane_rows_right:
        rows = tuple(map(int, args.plane_rows_right.split(",")))
        fpx.nn.PLANE_PRODUCTS_RIGHT_ROWS = {fmt: rows for fmt in fpx.nn.PLANE_PRODUCT_FORMATS}
    if args.plane_rows_left is not None:
        least, most = (list(map(int, args.plane_rows_left.split(","))) + [None])[:2]
        fpx.nn.PLANE_PRODUCTS_LEFT_ROWS = {fmt: (least, most) for fmt in fpx.nn.PLANE_PRODUCT_FORMATS} if least else {}
    global TIMING_LOCK
    TIMING_LOCK = args.timing_lock
    device, dtype = args.device, getattr(torch, args.dtype)
    if args.group_size < 0:
        parser.error(f"--group-size must be 0 (per channel) or positive, got {args.group_size}")
    if args.tuning == "cold-cache-all" and device != "cuda":
        parser.error("--tuning cold-cache-all times GPU kernels: it needs --device cuda")
    print(f"# LowBitLinear vs {args.dtype} F.linear on {device}; {environment_line()}", flush=True)
    big = torch.empty((512 if device == "cuda" else 256) * 2**20, dtype=torch.uint8, device=device)
    bandwidth = 2 * big.numel() / seconds_per_call([lambda: big.clone()], device)
    del big
    print(f"# copy bandwidth {bandwidth / 1e9:.1f} GB/s (read + write)", flush=True)
    rows = []
    for shape in args.shapes.split(","):
        n, k = map(int, shape.split("x"))
        torch.manual_seed(0)
        linear = torch.nn.Linear(k, n, bias=False, device=device, dtype=dtype)
        dense_weights = dense_copies(linear, device)
        for name in args.formats.split(","):
            fmt, kwargs = FORMATS[name]
            kwargs = {"group_size": args.group_size or None, "gemv_max_rows": args.gemv_max_rows, **kwargs}
            if args.scale_dtype:
                kwargs["scale_dtype"] = getattr(torch, args.scale_dtype)
            layer = fpx.LowBitLinear.from_linear(linear, fmt, **kwargs)
            layers = layer_copies(layer, device)
            floor_s = layer.weight_nbytes / bandwidth
            for m in map(int, args.m.split(",")):
                try:
                    rows.append(measure(args, layer, layers, dense_weights, name, shape, n, k, m, floor_s))
                    if args.csv:  # row by row, so that a run cut short keeps what it measured
                        write_csv(args.csv, rows)
                except Exception as error:  # keep going: one failing case must not hide the rest
                    print(f"{shape} M={m} {name}: FAILED {error!r}"[:400], flush=True)
                    # The whole stack on stderr (the 8-row INT4 plane products' CantSplit came back
                    # as its message alone).
                    traceback.print_exc()
        if args.compiled_dense:
            for m in map(int, args.m.split(",")):
                measure_compiled_dense(args, dense_weights, shape, m)
    print(f"\n{'shape':>11} {'M':>4} {'fmt':>7} {'us':>8} {'x dense':>7} {'roof':>5} {'kern':>4} {'tiny us':>8} {'compile':>7}")
    for r in rows:
        print(f"{r['shape']:>11} {r['m']:>4} {r['fmt']:>7} {r['us']:>8.1f} {r['speedup']:>7.2f} {r['roofline']:>5.0%} "
              f"{r['kernels']:>4} {r['tinygemm_us']:>8.1f} {r['compile_s']:>6.1f}s")


def write_csv(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def compile_settings(args):
    """(inductor options, tuning context factory) of a case: fpx.nn.compile_options with
    --options, and the --tuning scope with the --template-configs research scope inside it."""
    options = {**fpx.nn.compile_options(args.device), **json.loads(args.options)}
    template_list = parse_template_configs(args.template_configs)
    if template_list:
        options.setdefault("max_epilogue_benchmarked_choices", len(template_list))
    scope = {"cold-cache": fpx.nn.cold_cache_tuning, "inductor": contextlib.nullcontext,
             "cold-cache-all": cold_cache_all_timings}[args.tuning]

    @contextlib.contextmanager
    def tuning():
        with contextlib.ExitStack() as stack:
            if args.template_precompile_in_pool:  # before the scope, which looks the step up on entry
                stack.enter_context(template_precompile_in_pool())
            stack.enter_context(scope())
            if template_list:
                stack.enter_context(template_configs(template_list))
            if args.log_fusion_timings:
                stack.enter_context(logged_fusion_timings())
            if TIMING_LOCK is not None and args.device == "cuda":
                stack.enter_context(locked_tuning_timings())
            yield
    return options, tuning


def measure(args, layer, layers, dense_weights, name, shape, n, k, m, floor_s):
    """Time one (shape, M, format) case; returns its row."""
    device, dtype = args.device, getattr(torch, args.dtype)
    options, tuning = compile_settings(args)
    x = torch.randn(m, k, device=device, dtype=dtype)
    bf16_s = float("nan") if args.compile_only else seconds_per_call([lambda w=w: F.linear(x, w) for w in dense_weights], device)
    torch._dynamo.reset()
    compiled = [torch.compile(l, fullgraph=True, dynamic=False, options=options) for l in layers]
    # One compile, timed cold and counted: run_and_get_code resets dynamo, so counting after a
    # first call would compile (and tune) the case a second time.
    start = time.perf_counter()
    with tuning():
        out, kernels, source = run_and_count_kernels(compiled[0], x)
        if device == "cuda":
            torch.cuda.synchronize()
    compile_s = time.perf_counter() - start
    if args.compile_only:
        print(f"{shape:>11} M={m:<4} {name:>7}: compiled in {compile_s:5.1f} s, {kernels} kernels", flush=True)
        nan = float("nan")
        return dict(shape=shape, m=m, fmt=name, us=nan, bf16_us=nan, speedup=nan, roofline=nan, kernels=kernels,
                    compile_s=compile_s, rel_err=nan, tinygemm_us=nan, configs=tuned_configs())
    # a copy's first call loads the configs tuned above (same kernels), or tunes
    with tuning():
        for c in compiled[1:]:
            c(x)
    reference = x.float() @ layer.dequantize_weight().T
    error = ((out.float() - reference).norm() / reference.norm()).item()
    t = seconds_per_call([lambda c=c: c(x) for c in compiled], device)
    tinygemm = name in ("INT4", "UINT4") and device == "cuda" and dtype == torch.bfloat16 and args.group_size > 0
    tiny = tinygemm_seconds(x, n, k, args.group_size) if tinygemm else float("nan")
    configs = "; ".join(filter(None, [tuned_configs(), template_config_of(source)]))
    r = dict(shape=shape, m=m, fmt=name, us=t * 1e6, bf16_us=bf16_s * 1e6, speedup=bf16_s / t,
             roofline=floor_s / t, kernels=kernels, compile_s=compile_s, rel_err=error, tinygemm_us=tiny * 1e6,
             configs=configs)
    print(f"{shape:>11} M={m:<4} {name:>7}: {r['us']:8.1f} us  {r['speedup']:5.2f}x dense ({r['bf16_us']:.1f} us)  "
          f"{r['roofline']:5.0%} roofline  {kernels} kernels  compile {compile_s:5.1f} s  err {error:.1e}  "
          f"tinygemm {r['tinygemm_us']:.1f} us", flush=True)
    if configs:
        print(f"{'':>11} configs {configs}", flush=True)
    return r


def measure_compiled_dense(args, dense_weights, shape, m):
    """Print the dense F.linear at M rows, eager and compiled like the layer (same options and
    tuning): whether the layer's compile settings cost an unquantized matmul anything."""
    device, dtype = args.device, getattr(torch, args.dtype)
    options, tuning = compile_settings(args)
    x = torch.randn(m, dense_weights[0].shape[1], device=device, dtype=dtype)
    eager_s = seconds_per_call([lambda w=w: F.linear(x, w) for w in dense_weights], device)
    torch._dynamo.reset()
    compiled = torch.compile(F.linear, fullgraph=True, dynamic=False, options=options)
    with tuning():
        _, kernels, source = run_and_count_kernels(compiled, x, dense_weights[0])
        for w in dense_weights[1:]:
            compiled(x, w)
    compiled_s = seconds_per_call([lambda w=w: compiled(x, w) for w in dense_weights], device)
    print(f"{shape:>11} M={m:<4} dense compiled: {compiled_s * 1e6:8.1f} us (eager {eager_s * 1e6:.1f} us, "
          f"{eager_s / compiled_s:.2f}x)  {kernels} kernels  {template_config_of(source)}", flush=True)


def template_config_of(source):
    """'template: BMxBNxBK sS wW' of the matmul template in generated code ('' if none)."""
    found = re.search(r"@triton_heuristics\.template\((.*?)\)\n@triton\.jit\ndef (triton_tem\w+)\((.*?)^''', device_str",
                      source, re.S | re.M)
    if found is None:
        return ""
    return f"template: {tile_of(found.group(1), found.group(3))}"


def tile_of(header, body):
    """'BMxBNxBK sS wW' of a Triton template kernel: its launch header's stages and warps, its
    body's block sizes ('?' for any not found)."""
    warps = re.search(r"num_warps=(\d+)", header)
    stages = re.search(r"num_stages=(\d+)", header)
    blocks = [re.search(rf"{b}\s*:\s*tl\.constexpr\s*=\s*(\d+)", body) for b in ("BLOCK_M", "BLOCK_N", "BLOCK_K")]
    sizes = "x".join(b.group(1) if b else "?" for b in blocks)
    return f"{sizes} s{stages.group(1) if stages else '?'} w{warps.group(1) if warps else '?'}"


def tinygemm_seconds(x, n, k, group_size):
    """torch.ops.aten._weight_int4pack_mm on random int4 codes (bf16 activations)."""
    try:
        codes = torch.randint(0, 16, (n, k), device=x.device, dtype=torch.int32)
        packed = (codes[:, ::2] << 4 | codes[:, 1::2]).to(torch.uint8)
        weights = [torch.ops.aten._convert_weight_to_int4pack(packed, 8) for _ in range(copies_for(n * k // 2, "cuda"))]
        scales = torch.rand(k // group_size, n, 2, device=x.device, dtype=x.dtype)
        calls = [lambda w=w: torch.ops.aten._weight_int4pack_mm(x, w, group_size, scales) for w in weights]
        with timing_lock():
            return time_cuda_graph(calls)
    except Exception as error:  # not every torch build ships it
        print(f"# tinygemm unavailable: {error!r}"[:200])
        return float("nan")


if __name__ == "__main__":
    main()
