"""Count the machine instructions of inductor's Triton kernels for Hopper (sm_90a) without a GPU.

Research tool (not part of the package). Several bitpack/fpx kernels ran at the same GB/s on
an H100 and an H200 (benchmarks/RESULTS.md): they are bound by instruction issue, not memory,
so their instruction count predicts their speed. This script gets that count on a CPU machine:

1. inductor writes Triton kernels for CPU tensors when ``cpu_backend="triton"``; a stand-in
   Triton driver that reports an sm_90 target lets it generate them (they are never run);
2. Triton compiles each kernel for sm_90a (``triton.compile`` needs no GPU);
3. the ``cuobjdump`` shipped with Triton disassembles the cubin, and the SASS instructions are
   counted per kernel: statically for pointwise kernels, and with a looped reduction's body
   counted once per trip (``executed``).

The package's device choices (``CUDA_CHOICES`` below: every one but the XOR patterns') are
answered while tracing as each answers for a CUDA device (an H100, with float8 conversions). Launch configs are chosen here, not tuned:
``XBLOCK=1024`` and 4 warps, inductor's usual pick for a large pointwise kernel, so each thread
handles 8 elements.

Caveats: the Triton source comes from inductor's CPU-device Triton path, which matches the CUDA
one for pointwise kernels (same index expressions and operations) but not necessarily for
reductions (persistent reductions, split decisions, configs); on the device, ``cubins DIR``
counts the real kernels of an inductor cache to check the two against each other.

Needs a CPU build of torch and ``pip install triton==3.6.0`` (the device's Triton), e.g. in a
venv made with ``--system-site-packages``. Verified with torch 2.13.0 and Triton 3.6.0.

    python benchmarks/sass_offline.py pack --bits 2 3 4 5 6 7     # bitpack.pack's CUDA form
    python benchmarks/sass_offline.py unpack --bits 3 5 6 7
    python benchmarks/sass_offline.py gemv --formats INT4 INT2 INT8  # LowBitLinear, M = 1
    python benchmarks/sass_offline.py encode --formats E2M1 E3M2       # fpx.encode on CUDA
    python benchmarks/sass_offline.py decode --formats E4M3 E2M1       # fpx.decode on CUDA
    python benchmarks/sass_offline.py spills --formats INT2 INT3    # registers/spills/compile s per config
    python benchmarks/sass_offline.py cubins ~/.cache/torchinductor  # on the device
    python benchmarks/sass_offline.py kernel gpu_out/prologue_E2M1_g128/*.py  # a saved template's K loop
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import glob
import importlib
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
from unittest import mock

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SM90 = ("cuda", 90, 32)


def _cuobjdump() -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")


class _Sm90Driver:
    """Enough of a Triton driver for inductor's code generation: an sm_90 target."""

    def get_current_target(self):
        from triton.backends.compiler import GPUTarget

        return GPUTarget(*SM90)

    def get_active_torch_device(self):
        return torch.device("cpu")

    def get_current_device(self):
        return 0


# Every device choice of the packages but the XOR patterns' (CUDA's at one row; the counts here
# keep the constants unless told), each answered as its function answers for a CUDA device
# (tests/test_cuda_routes.py checks that none is missing).
CUDA_CHOICES = {
    "bitpack.words": ["words_pay_off"],
    "bitpack.bits": ["_pads_partial_bytes", "_packs_bool_bytes_apart"],
    "fpx.nn": ["_float_bits_pay_off", "_float_decode_by_casts", "_e5m2_by_float8_cast", "_marks_the_decode",
               "_sums_products_in_one_trip", "_matmul_by_weight_blocks", "_channel_scale_after_matmul", "_decodes_in_x_dtype",
               "_weight_as_left_operand", "_splits_k_on_the_left", "_splits_k_on_the_right",
               "_plane_decodes_kept_apart", "_x_in_float32_first", "_codes_in_uint8_lanes",
               "_float16_matmul_in_float32", "_halves_short_segment_sums"],
    "fpx.convert": ["_conversion_pays_off", "_float_add_pays_off", "_stochastic_by_float_pays_off", "_float32_placement_pays_off",
                    "_signs_from_bits", "_bfloat16_by_float16_placement", "_decodes_by_table", "_16_bit_floats_by_byte_pairs",
                    "_small_formats_in_float_arithmetic"],
}


@contextlib.contextmanager
def cuda_paths():
    """bitpack/fpx take their CUDA code paths for CPU tensors."""
    def as_on_cuda(choice):
        return lambda device, *rest: choice(torch.device("cuda"), *rest)

    with contextlib.ExitStack() as stack:
        # An H100's answer to the one choice that asks the GPU (float8 conversion instructions).
        stack.enter_context(mock.patch.object(importlib.import_module("fpx.convert"), "_cuda_has_float8_conversion", lambda index: True))
        for module, names in CUDA_CHOICES.items():
            module = importlib.import_module(module)
            for name in names:
                stack.enter_context(mock.patch.object(module, name, as_on_cuda(getattr(module, name))))
        yield


def triton_sources(fn, *args) -> list[tuple[str, str]]:
    """(kernel name, source) of every Triton kernel inductor writes for ``fn(*args)`` (CPU
    tensors, static shapes); the kernels are generated, never compiled or run by inductor."""
    from torch._inductor import async_compile, config, graph, utils
    from triton.runtime.driver import driver

    captured = []

    class NotRun:
        """Stands in for a compiled kernel: the wrapper's launches do nothing."""

        def run(self, *args, **kwargs):
            pass

    def capture(self, kernel_name, source_code, device_str="cuda"):
        captured.append((kernel_name, source_code))
        return NotRun()

    driver.set_active(_Sm90Driver())
    torch._dynamo.reset()
    # Inductor takes the alignment of GPU inputs from the example (CPU inputs count as
    # unaligned): as on CUDA, so that loads of aligned inputs vectorize as they would there.
    aligned_as_on_gpu = mock.patch.object(graph, "should_assume_input_aligned", utils.tensor_is_aligned)
    with config.patch(cpu_backend="triton", fx_graph_cache=False), aligned_as_on_gpu, mock.patch.object(
        async_compile.AsyncCompile, "triton", capture
    ):
        torch.compile(fn, fullgraph=True, dynamic=False)(*args)  # outputs are left unwritten
    torch._dynamo.reset()
    # A graph is sometimes generated twice (seen after several compiles in one process): the
    # same kernel under the same name; count it once.
    return list(dict.fromkeys(captured))


def sass(source: str, constexprs: dict, num_warps: int = 4, num_stages: int = 1) -> str:
    """The SASS of the Triton kernel in inductor's ``source``, compiled for sm_90a."""
    return sass_of(compile_cubin(source, constexprs, num_warps, num_stages))


def sass_of(cubin: str) -> str:
    """The SASS listing of the cubin at ``cubin``."""
    return subprocess.run([_cuobjdump(), "--dump-sass", cubin], capture_output=True, text=True, check=True).stdout


def resource_usage(cubin: str) -> tuple[int, int]:
    """(registers per thread, stack bytes per thread: where spilled registers live) of the
    kernel in the cubin at ``cubin``."""
    usage = subprocess.run([_cuobjdump(), "--dump-resource-usage", cubin], capture_output=True, text=True,
                           check=True).stdout
    return int(re.search(r"REG:(\d+)", usage).group(1)), int(re.search(r"STACK:(\d+)", usage).group(1))


def compile_cubin(source: str, constexprs: dict, num_warps: int = 4, num_stages: int = 1) -> str:
    """The path of the cubin of the Triton kernel in inductor's ``source``, compiled for sm_90a."""
    return compile_kernel(source, constexprs, num_warps, num_stages)[0]


def compile_kernel(source: str, constexprs: dict, num_warps: int = 4, num_stages: int = 1) -> tuple[str, int]:
    """(the path of the cubin of the Triton kernel in inductor's ``source``, compiled for sm_90a;
    the shared memory a program of it takes, in bytes, as Triton's compile reports it)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    body = source[source.index("@triton.jit") :]
    header = (
        "import triton\nimport triton.language as tl\n"
        "from torch._inductor.runtime import triton_helpers\n"
        "from torch._inductor.runtime.triton_helpers import libdevice, math as tl_math\n"
    )
    folder = tempfile.mkdtemp(prefix="sass_offline_")
    path = os.path.join(folder, "kernel.py")
    with open(path, "w") as handle:
        handle.write(header + body)
    spec = importlib.util.spec_from_file_location("sass_offline_kernel", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = getattr(module, re.search(r"def (\w+)\(", body).group(1))
    signature = re.search(r"'signature': (\{.*?\})", source).group(1)
    # The alignment and divisibility hints inductor passes for the pointers and sizes.
    hints = re.search(r"'configs': \[(\{.*?\})\]", source)
    attrs = eval(hints.group(1)) if hints else None
    compiled = triton.compile(
        ASTSource(fn=fn, signature=eval(signature), constexprs=constexprs, attrs=attrs),
        target=GPUTarget(*SM90),
        options={"num_warps": num_warps, "num_stages": num_stages},
    )
    cubin = os.path.join(folder, "kernel.cubin")
    with open(cubin, "wb") as handle:
        handle.write(compiled.asm["cubin"])
    return cubin, int(compiled.metadata.shared)


def opcodes(sass_text: str) -> collections.Counter:
    """Instructions of a SASS listing by opcode (NOPs left out)."""
    found = re.findall(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_]+)", sass_text)
    return collections.Counter(op for op in found if op != "NOP")


def executed(sass_text: str, trips: int = 1) -> collections.Counter:
    """Instructions executed per thread, by opcode, when the kernel's one loop (a backward
    branch, as a looped reduction has) runs ``trips`` times: the loop body counts ``trips``
    times, the rest once. Kernels without a loop: the static count. More than one loop:
    ValueError (count them by hand)."""
    rows, loops = _rows_and_loops(sass_text)
    if len(loops) > 1:
        raise ValueError(f"{len(loops)} loops")
    counts = collections.Counter()
    for i, (_, _, op) in enumerate(rows):
        if op == "NOP":
            continue
        inside = loops and loops[0][0] <= i <= loops[0][1]
        counts[op] += trips if inside else 1
    return counts


def _rows_and_loops(sass_text: str) -> tuple[list, list[tuple[int, int]]]:
    """The listing's instructions as (address, text, opcode) and its loops as (first, last)
    row indices: the rows from a backward branch's target to the branch."""
    rows = re.findall(r"/\*([0-9a-f]{4,})\*/\s+((?:@!?U?P\w+\s+)?([A-Z0-9_]+)[^;]*);", sass_text)
    address = [int(a, 16) for a, _, _ in rows]
    loops = []
    for i, (_, text, op) in enumerate(rows):
        target = re.search(r"BRA\s+(?:\S+,\s*)?0x([0-9a-f]+)", text)
        if op == "BRA" and target and int(target.group(1), 16) < address[i]:
            loops.append((address.index(int(target.group(1), 16)), i))
    return rows, loops


def instructions(fn, *args, elements_per_thread: int = 8) -> tuple[int, float, collections.Counter]:
    """(kernels, instructions per output element, opcodes) of ``fn(*args)``'s pointwise kernels
    compiled with XBLOCK = 1024 and 4 warps (``elements_per_thread`` outputs per thread)."""
    with cuda_paths():
        sources = triton_sources(fn, *args)
    total = collections.Counter()
    for _, source in sources:
        total += opcodes(sass(source, {"XBLOCK": 1024}))
    return len(sources), sum(total.values()) / elements_per_thread, total


def _pack_rows(args):
    import bitpack

    print(f"{'bits':>4} {'op':>6} {'kernels':>7} {'instr/value byte':>16}  top opcodes")
    for bits in args.bits:
        x = torch.randint(0, 2**bits, (1024, 4096), dtype=torch.uint8)
        if args.what == "pack":
            # One output int32 word holds 32 / bits values.
            count, per_word, ops = instructions(lambda t: bitpack.pack(t, bits), x)
            per_byte = per_word * bits / 32
        else:
            packed = bitpack.pack(x, bits)
            # One output int32 word holds 4 values.
            count, per_word, ops = instructions(lambda p: bitpack.unpack(p, bits, x.shape[-1]), packed)
            per_byte = per_word / 4
        top = ", ".join(f"{op} {n}" for op, n in ops.most_common(6))
        print(f"{bits:>4} {args.what:>6} {count:>7} {per_byte:>16.2f}  {top}", flush=True)


# Per SM and clock on Hopper: 4 schedulers issue 128 thread-instructions; int -> float and
# other conversions run at 16 (the CUDA programming guide's throughput table).
ISSUE_PER_CLOCK = 128
CONVERSIONS_PER_CLOCK = 16
REDUCTION_CONFIGS = [(8, 32, 1), (16, 32, 2), (8, 64, 1), (16, 64, 2), (32, 32, 4), (8, 128, 1), (16, 128, 2)]  # XBLOCK, R0_BLOCK, warps


def weight_cost(fn, args, weights: int) -> tuple[float, float, str]:
    """(instructions per weight, conversions per weight, configs) of the per-weight reductions
    of ``fn(*args)``: every reduction kernel whose elements times its reductions (``tl.sum``
    calls: one per plane) reach a sixteenth of ``weights``, each at the cheapest of
    REDUCTION_CONFIGS (counting the loop's trips), summed over the kernels (formats of 8 planes
    split them in two) and divided by the weights they cover."""
    with cuda_paths():
        sources = triton_sources(fn, *args)
    instructions = conversions = covered = 0.0
    chosen = []
    for name, source in sources:
        xnumel = int(re.search(r"xnumel = (\d+)", source).group(1))
        rnumel = int(re.search(r"r0_numel = (\d+)", source).group(1)) if "r0_numel = " in source else 0
        kernel_weights = xnumel * rnumel * source.count("tl.sum(")
        if not rnumel or kernel_weights * 16 < weights:
            continue
        best = None
        for xblock, rblock, warps in REDUCTION_CONFIGS:
            looped = "triton_red" in name
            constexprs = {"XBLOCK": xblock, "R0_BLOCK": rblock} if looped else {"XBLOCK": xblock}
            trips = -(-rnumel // rblock) if looped else 1
            counts = executed(sass(source, constexprs, num_warps=warps), trips)
            programs = xnumel / xblock
            total = sum(counts.values()) * 32 * warps * programs
            converted = sum(n for op, n in counts.items() if op.startswith(("I2F", "F2I", "F2F"))) * 32 * warps * programs
            if best is None or total < best[0]:
                best = (total, converted, f"XBLOCK {xblock}, R0_BLOCK {rblock}, {warps} warps")
        instructions, conversions, covered = instructions + best[0], conversions + best[1], covered + kernel_weights
        chosen.append(best[2])
    return instructions / covered, conversions / covered, "; ".join(chosen)


def _gemv_rows(args):
    """LowBitLinear's one-row reduction (its CUDA form: planes, not words) against the probe's
    forms, 8192 x 8192, group 128: instructions and conversions per weight, and the bound
    they set (clocks per weight per SM: the larger of issue and conversion throughput)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import fpx
    import probe_linear as probe
    from fpx.nn import LowBitLinear

    n = k = 8192
    group = 128
    print(f"{'fmt':>5} {'form':>22} {'instr/weight':>12} {'conv/weight':>11} {'bound':>7}  config")
    for name in args.formats:
        fmt = getattr(fpx, name)
        layer = LowBitLinear.from_linear(torch.nn.Linear(k, n, bias=False), fmt, group_size=group)
        x = torch.randn(1, k, dtype=torch.bfloat16)
        forms = [("LowBitLinear", lambda x: layer._gemv(x, words=False), (x,))]
        if isinstance(fmt, fpx.IntFormat) and 8 % fmt.bits == 0:
            _, packed, scale = probe.make_weight(n, k, fmt.bits, group, "cpu")
            for label, form, dtype in (
                ("probe groupsum", probe.gemv_group_sum_form, torch.bfloat16),
                ("probe floatbits", probe.gemv_float_bits_form, torch.bfloat16),
                ("probe floatbits, x f32", probe.gemv_float_bits_form, torch.float32),
            ):
                call = lambda x, p, s, form=form, bits=fmt.bits: form(x, p, s, bits, n, k, group)  # noqa: E731
                forms.append((label, call, (x.to(dtype), packed, scale)))
        for label, fn, fn_args in forms:
            total, conversions, config = weight_cost(fn, fn_args, n * k)
            bound = max(total / ISSUE_PER_CLOCK, conversions / CONVERSIONS_PER_CLOCK)
            print(f"{name:>5} {label:>22} {total:>12.2f} {conversions:>11.2f} {bound:>7.4f}  {config}", flush=True)


def _convert_rows(args):
    """fpx.encode's or fpx.decode's CUDA kernels (``args.what``): instructions per element (8
    per thread) by format and floating dtype (the input of encode, the output of decode)."""
    import fpx

    column = "input" if args.what == "encode" else "output"
    print(f"{'fmt':>5} {column:>9} {'kernels':>7} {'instr/element':>13}  top opcodes")
    codes = torch.randint(0, 256, (1 << 22,), dtype=torch.uint8)
    for name in args.formats:
        fmt = getattr(fpx, name)
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            if args.what == "encode":
                fn, arg = (lambda t: fpx.encode(t, fmt)), (torch.randn(1 << 22) * 4).to(dtype)
            else:
                fn, arg = (lambda c: fpx.decode(c, fmt, dtype)), codes
            count, per_element, ops = instructions(fn, arg)
            top = ", ".join(f"{op} {n}" for op, n in ops.most_common(6))
            print(f"{name:>5} {str(dtype)[6:]:>9} {count:>7} {per_element:>13.2f}  {top}", flush=True)


def _spill_rows(args):
    """LowBitLinear's one-row looped reductions (triton_red) compiled for sm_90a over a grid of
    launch configs: registers, stack bytes (spills), seconds to compile here, and whether
    fpx.nn.cold_cache_tuning's limit lets coordinate descent try the config. Compile times
    count only in a fresh Triton cache (``TRITON_CACHE_DIR=$(mktemp -d)``)."""
    from types import SimpleNamespace

    import fpx
    from fpx import tuning
    from fpx.nn import LowBitLinear

    n = k = 8192
    print(f"{'fmt':>7} {'XBLOCK':>6} {'R0':>4} {'warps':>5} {'values':>6} {'rule':>5} {'regs':>4} {'stack':>6} {'compile s':>9}")
    for name in args.formats:
        fmt, kwargs = (fpx.E2M1, {"block": "mx"}) if name == "E2M1-MX" else (getattr(fpx, name), {})
        layer = LowBitLinear.from_linear(torch.nn.Linear(k, n, bias=False), fmt, group_size=args.group_size, **kwargs)
        x = torch.randn(1, k, dtype=torch.bfloat16)
        with cuda_paths():
            sources = triton_sources(lambda x: layer._gemv(x, words=False), x)
        for kernel, source in sources:
            if "triton_red" not in kernel:
                continue
            hints = {"x": int(re.search(r"xnumel = (\d+)", source).group(1)),
                     "r0_": int(re.search(r"r0_numel = (\d+)", source).group(1))}
            tuner = SimpleNamespace(inductor_meta={"warp_size": 32}, size_hints=hints)
            for xblock in args.xblocks:
                for r0_block in args.r0_blocks:
                    for warps in args.warps:
                        config = SimpleNamespace(kwargs={"XBLOCK": xblock, "R0_BLOCK": r0_block}, num_warps=warps)
                        values = tuning.values_per_thread(config, hints)
                        if values > args.max_values:
                            continue  # certain to spill, and minutes to compile
                        allowed = tuning._within(tuner, config, tuning.MAX_VALUES_PER_THREAD)
                        start = time.perf_counter()
                        cubin = compile_cubin(source, {"XBLOCK": xblock, "R0_BLOCK": r0_block}, num_warps=warps)
                        seconds = time.perf_counter() - start
                        regs, stack = resource_usage(cubin)
                        print(f"{name:>7} {xblock:>6} {r0_block:>4} {warps:>5} {values:>6.0f} {'try' if allowed else 'skip':>5} "
                              f"{regs:>4} {stack:>6} {seconds:>9.1f}", flush=True)


def _cubin_rows(args):
    """Every cubin under a folder (Triton's cache inside an inductor cache on the device): its
    static instruction count, its warps (Triton's metadata beside it) and its name."""
    import json

    print(f"{'instructions':>12} {'warps':>5}  kernel")
    for path in sorted(glob.glob(os.path.join(os.path.expanduser(args.folder), "**", "*.cubin"), recursive=True)):
        listing = subprocess.run([_cuobjdump(), "--dump-sass", path], capture_output=True, text=True).stdout
        meta_path = path[: -len(".cubin")] + ".json"
        warps = json.load(open(meta_path)).get("num_warps", "?") if os.path.exists(meta_path) else "?"
        print(f"{sum(opcodes(listing).values()):>12} {warps!s:>5}  {os.path.basename(path)}")


def _kernel_rows(args):
    """A matmul template kernel inductor wrote (say by ``gpu_run.sh prologue``), compiled here
    for sm_90a with its own warps and stages: static instructions, the K loop's body, and that
    body per weight of the tile each thread decodes per trip: (BLOCK_K, BLOCK_N) for ``x @
    W.T``, (BLOCK_M, BLOCK_K) with ``--left`` (``(W @ x.T).T``, the weight the left operand).
    Then the loop's MMAs (HMMA: mma.sync; HGMMA: the warpgroup MMA) and shared-memory stores:
    a decoded tile stored to shared memory for the MMA shows as STS on every trip."""
    for path in args.paths:
        text = open(path).read()
        # A kernel file, or a compiled module holding its kernels as async_compile strings.
        kernels = [k for k in re.findall(r"'''(.*?)'''", text, re.DOTALL) if "def triton_tem" in k] or [text]
        for source in kernels:
            _kernel_row(path, source, args.left)


def _kernel_row(path: str, source: str, left: bool = False) -> None:
    """One template kernel's row of :func:`_kernel_rows`."""
    warps, stages = (int(re.search(rf"{key}=(\d+)", source).group(1)) for key in ("num_warps", "num_stages"))
    block = {key: int(re.search(rf"{key} : tl.constexpr = (\d+)", source).group(1)) for key in ("BLOCK_M", "BLOCK_N", "BLOCK_K")}
    tile = (block["BLOCK_M"], block["BLOCK_K"]) if left else (block["BLOCK_K"], block["BLOCK_N"])
    rows, loops = _rows_and_loops(sass(source, {}, num_warps=warps, num_stages=stages))
    first, last = max(loops, key=lambda loop: loop[1] - loop[0])  # the K loop: the longest
    body = collections.Counter(op for _, _, op in rows[first : last + 1] if op != "NOP")
    per_weight = sum(body.values()) / (tile[0] * tile[1] / (32 * warps))
    top = ", ".join(f"{op} {n}" for op, n in body.most_common(8))
    mma_path = ", ".join(f"{op} {body[op]}" for op in ("HMMA", "HGMMA", "STS") if body[op])
    print(f"{os.path.basename(path)[:40]}: {sum(op != 'NOP' for _, _, op in rows)} instructions, K loop "
          f"{sum(body.values())} ({per_weight:.2f} per weight; {tile[0]}x{tile[1]}, {warps} warps): {top}; {mma_path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("pack", "unpack"):
        p = sub.add_parser(name)
        p.add_argument("--bits", type=int, nargs="*", default=[2, 3, 4, 5, 6, 7])
    p = sub.add_parser("gemv", help="LowBitLinear's M = 1 reduction against the probe's forms")
    p.add_argument("--formats", nargs="*", default=["INT4", "INT2", "INT8"])
    p = sub.add_parser("encode", help="fpx.encode's CUDA kernels")
    p.add_argument("--formats", nargs="*", default=["E2M1", "E3M2", "E2M3", "E4M3"])
    p = sub.add_parser("decode", help="fpx.decode's CUDA kernels")
    p.add_argument("--formats", nargs="*", default=["E4M3", "E5M2", "E3M2", "E2M1"])
    p = sub.add_parser("kernel", help="a saved matmul template kernel's K loop, per weight")
    p.add_argument("paths", nargs="+")
    p.add_argument("--left", action="store_true", help="the weight is the left operand: (W @ x.T).T")
    p = sub.add_parser("spills", help="registers, spills and compile time of LowBitLinear's M = 1 reductions per config")
    p.add_argument("--formats", nargs="*", default=["INT2", "INT3", "INT4", "E2M3"])
    p.add_argument("--group-size", type=int, default=128)
    p.add_argument("--xblocks", type=int, nargs="*", default=[16, 32, 64, 128, 256])
    p.add_argument("--r0-blocks", type=int, nargs="*", default=[64, 128])
    p.add_argument("--warps", type=int, nargs="*", default=[2, 4, 8, 16])
    p.add_argument("--max-values", type=int, default=128, help="configs of more values per thread are left out")
    p = sub.add_parser("cubins", help="count the SASS of every cubin under a folder (on the device)")
    p.add_argument("folder")
    args = parser.parse_args()
    rows = {"cubins": _cubin_rows, "kernel": _kernel_rows, "gemv": _gemv_rows, "encode": _convert_rows,
            "decode": _convert_rows, "spills": _spill_rows}
    rows.get(args.what, _pack_rows)(args)


if __name__ == "__main__":
    main()
