"""Timing helpers shared by the benchmark scripts (not part of the package).

CPU: median wall time over repeats. CUDA: median of CUDA-event timings of a captured CUDA graph
that replays the call several times, so Python launch cost is excluded (DESIGN.md: per-call
timings of small kernels mostly measure the launch path).
"""

from __future__ import annotations

import datetime
import platform
import re
import statistics
import time

import torch


def environment_line() -> str:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    triton = ""
    try:
        import triton as triton_module

        triton = f", triton {triton_module.__version__}"
    except ImportError:
        pass
    return f"{device}; torch {torch.__version__}{triton}; {datetime.date.today().isoformat()}"


def run_and_count_kernels(fn, *args):
    """(output, kernels launched, generated source) of one call of the compiled ``fn``: CPU
    kernels are the distinct ``cpp_fused_*`` functions, CUDA kernels the launches (``.run(``
    in the wrapper), as tests/codegen.py counts them."""
    from torch._inductor.utils import run_and_get_code

    out, codes = run_and_get_code(fn, *args)
    source = "\n".join(codes)
    first = next((a for a in args if isinstance(a, torch.Tensor)), None)
    if first is not None and first.device.type == "cpu":
        return out, len(set(re.findall(r"\bcpp_fused_\w+", source))), source
    return out, source.count(".run("), source


def tuned_configs() -> str:
    """The launch configs of the Triton kernels compiled and tuned since the last call, as
    ``kernel: XBLOCK=..,R0_BLOCK=.. w<warps> s<stages>`` joined by ``; `` ('' on CPU).

    Inductor tunes its reductions at compile time (coordinate descent when the layer's options
    ask for it); recording the choice next to a timing tells a poor choice from a slow kernel.
    Matmul templates are left out: max-autotune compiles every candidate under a placeholder
    name with its block sizes in the source, not in the config, and prints its own table of them.
    """
    import gc

    try:
        from torch._inductor.runtime.triton_heuristics import CachingAutotuner
    except ImportError:
        return ""
    found = []
    for obj in gc.get_objects():
        if not issubclass(type(obj), CachingAutotuner):
            continue  # type(), not isinstance(): a dead weakref proxy raises on __class__
        if getattr(obj, "_reported_by_timing", False) or not obj.launchers:
            continue
        obj._reported_by_timing = True
        config = obj.launchers[0].config
        name = obj.inductor_meta.get("kernel_name", "kernel")
        if name.startswith("Placeholder"):
            continue  # a matmul template candidate
        short = "_".join(name.split("_")[:2] + name.split("_")[-1:])  # triton_red_..._0 -> triton_red_0
        sizes = ",".join(f"{key}={value}" for key, value in sorted(config.kwargs.items()))
        found.append(f"{short}: {sizes} w{config.num_warps} s{config.num_stages}")
    return "; ".join(sorted(found))


# LowBitLinear's device choices the benchmarks switch for A/B runs: option -> fpx.nn function.
LAYER_CHOICES = {
    # codes decoded by their bits: integer codes without a conversion, E2M1 in place, E3M2/E2M3 by
    # the float32 sign shift (off: a conversion, the float16 placement, fpx.decode)
    "float_bits": "_float_bits_pay_off",
    # integer fields' XOR patterns loaded from the layer's buffer, one LOP3 per field (on: CUDA
    # at one row; off: constants)
    "patterns_from_buffer": "_patterns_from_buffer_pays_off",
    # plane products handed to inductor as buffers, so that the plane sums are persistent
    # reductions (on: CUDA, but 4/8-bit codes at one row; off: inductor's size limit decides)
    "one_trip_products": "_sums_products_in_one_trip",
    # past gemv_max_rows, the weight decoded a block of output rows at a time, each block by a
    # library matmul (on: CPU; off: one decode of the whole weight, CUDA's template prologue)
    "weight_blocks": "_matmul_by_weight_blocks",
    # per-channel scales on the matmul's product instead of each weight (on: CUDA; off: CPU,
    # whose weight blocks it did not speed up)
    "channel_scale_after_matmul": "_channel_scale_after_matmul",
    # the matmul path's decode in a bfloat16/float16 x's dtype (integer codes under 2^7's exponent,
    # INT8 and UINT8 through int8 to bfloat16, the scale multiplied in pairs), where exact (off: float32,
    # rounded once at the end)
    "decode_in_x_dtype": "_decodes_in_x_dtype",
    # E5M2 by torch's float8_e5m2 cast in the matmul template's prologue (on: CUDA; off: the
    # code as a float16's top byte)
    "e5m2_cast": "_e5m2_by_float8_cast",
    # per-channel INT4, INT2 and E2M1 as one product per plane of the packed bytes, each plane's
    # decode its own template's prologue (on: CUDA inside fpx.nn.cold_cache_tuning; off: one
    # product; forced on outside the block inductor joins the planes' decodes)
    "nibble_planes": "_plane_decodes_kept_apart",
    # the matmul path as (W x^T)^T, the decoded weight the template's left operand (off: x W^T)
    "weight_left": "_weight_as_left_operand",
    # the left route's K split in two, W as (2 N, K/2) (off: unsplit)
    "split_k_left": "_splits_k_on_the_left",
    # x @ W.T with K split in two for codes scaled in their decode, W.T as (K/2, 2 N) (off: unsplit)
    "split_k_right": "_splits_k_on_the_right",
}


def force_layer_choice(option: str, on: bool) -> None:
    """Make LowBitLinear take one of its device choices (``LAYER_CHOICES``) or not, whatever the
    device: an A/B switch for benchmarks. The layer reads the choice when dynamo traces it."""
    import fpx.nn

    setattr(fpx.nn, LAYER_CHOICES[option], lambda *device_and_rows: on)


def chosen_devices(choice: str) -> list[str]:
    """The devices a ``--device cpu|cuda|all`` argument names, leaving out CUDA where there is none."""
    devices = ["cpu", "cuda"] if choice == "all" else [choice]
    return [d for d in devices if d == "cpu" or torch.cuda.is_available()]


def time_cpu(fn, *args, repeats: int = 10, min_seconds: float = 0.2) -> float:
    """Median seconds per call of fn(*args) on the CPU."""
    fn(*args)
    samples = []
    start_all = time.perf_counter()
    while len(samples) < repeats or time.perf_counter() - start_all < min_seconds:
        start = time.perf_counter()
        fn(*args)
        samples.append(time.perf_counter() - start)
        if len(samples) > 1000:
            break
    return statistics.median(samples)


def time_cuda_graph(calls, *, replays_per_graph: int = 10, trials: int = 20) -> float:
    """Median seconds per call of the zero-argument callables in ``calls`` (cycled), on CUDA.

    The calls are captured into one CUDA graph, ``replays_per_graph`` rounds of all of them, and
    the graph's replay is timed with CUDA events. Cycling among several callables that read
    different buffers keeps a small weight from being served by L2 on every call.
    """
    calls = list(calls)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for call in calls:  # warm up: compile, autotune, allocate
            call()
            call()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(replays_per_graph):
            for call in calls:
                call()
    graph.replay()
    torch.cuda.synchronize()
    samples = []
    for _ in range(trials):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1e3 / (replays_per_graph * len(calls)))
    return statistics.median(samples)


def cuda_wall_seconds_per_call(fn, x, calls: int = 50, before_each=None) -> float:
    """Mean wall-clock seconds of ``calls`` back-to-back calls of ``fn(x)`` on CUDA, the CPU's
    launch path included (what a caller without CUDA graphs waits); ``before_each()`` runs
    before each call (e.g. ``torch.compiler.cudagraph_mark_step_begin``)."""
    fn(x)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        if before_each is not None:
            before_each()
        fn(x)
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / calls


def time_call(fn, *args) -> float:
    """Median seconds per call on the device of the first tensor argument."""
    device = next((a.device for a in args if isinstance(a, torch.Tensor)), torch.device("cpu"))
    if device.type == "cuda":
        return time_cuda_graph([lambda: fn(*args)])
    return time_cpu(fn, *args)


def parse_template_configs(spec: str) -> list[tuple[int, int, int, int, int]]:
    """``"16x64x128s4w8,16x32x128s5w2"`` -> [(BLOCK_M, BLOCK_N, BLOCK_K, stages, warps), ...]."""
    configs = []
    for item in filter(None, spec.split(",")):
        match = re.fullmatch(r"(\d+)x(\d+)x(\d+)s(\d+)w(\d+)", item.strip())
        if match is None:
            raise ValueError(f"template config {item!r}: expected BMxBNxBKsSTAGESwWARPS, e.g. 16x64x128s4w8")
        configs.append(tuple(map(int, match.groups())))
    return configs


def template_configs(configs):
    """Research: inductor's CUDA matmul template tries exactly ``configs`` (parse_template_configs)
    while compiling in this block, warps as given (:func:`fpx.tuning.matmul_template_tiles`).
    Inductor's own list caps the warps of a program at one per 16 x 16 output tile (2 warps for
    a 16 x 32 tile): right for a plain matmul, whose warps each own output tiles, but a decode
    prologue is spread over every thread of the program, so more warps share it."""
    import fpx.tuning

    return fpx.tuning.matmul_template_tiles(lambda m, n, k: tuple(configs))
