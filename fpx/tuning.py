"""Tune inductor's Triton kernels by timings taken the way the kernels run: from HBM, back to back.

Inductor picks each Triton reduction's launch config (block sizes, warps) by timing candidates
on the real inputs at the first call (max-autotune's list, then coordinate descent with
:func:`fpx.nn.compile_options`). Its GPU benchmark evicts L2 before each timing by *writing* a
buffer the size of L2 and then launches the kernel from Python. For the weight-streaming
reductions of :class:`fpx.nn.LowBitLinear` at one row (15-20 us) both steps distort the timing:
the dirty lines are written back to HBM while the kernel reads its weight, and the GPU sits idle
inside the timed interval while the CPU launches the kernel. Measured on an H200 (INT4,
8192 x 8192, one row; benchmarks/RESULTS.md): the scaled-sum kernel, about 2 us of work, timed
at 13-23 us; the chosen configs ran 20.9-25.8 us over fresh compiles against 17.4 us for the
best one. :func:`cold_cache_tuning` swaps in a benchmark that evicts L2 by *reading* a buffer
four times its size (clean lines, nothing written back) and lets that read cover the kernel's
launch; with it, three fresh compiles ran 21.3, 17.6 and 17.6 us.

Only the timings inductor marks as vetted go through it (the Triton kernel configs of
``CachingAutotuner``); matmul-template choices keep inductor's own benchmark.

It also changes inductor's coordinate descent in two ways. It skips, uncompiled, the launch
configs that give each thread more than ``max_values_per_thread`` (64) values of a block, or
half that in a looped reduction: such configs spill registers, inductor discards them after
compiling them, and compiling them was most of a cold compile (INT2 at one row on an H200: 64
of 81 s went to 11 configs that spilled, one of them 21 s). And once the descent converges on
a reduction's config, it times programs 2-8x wider (more rows, more warps) and walks on from
the best if it is faster: one field at a time, the INT4 walk stopped on a plateau three
doublings short of the optimum in 4 of 9 compiles. With both, on an H200 (8192 x 8192, one
row): INT4 17.3-17.5 us in 5 of 5 compiles (11-19 s), INT2 17.1 (11 s, was 64-86 s), INT3 24.7
(23 s, was 129 s), INT1 19.3 (24 s, was 56 s).

>>> import torch, fpx
>>> model = fpx.quantize_(torch.nn.Sequential(torch.nn.Linear(64, 32)), fpx.INT4, group_size=32)
>>> compiled = torch.compile(model, options=fpx.nn.compile_options("cpu"))
>>> with fpx.nn.cold_cache_tuning():   # compiles and tunes at the first call (CUDA: the configs)
...     y = compiled(torch.randn(1, 64))
>>> y.shape
torch.Size([1, 32])
"""

import contextlib
import copy
import statistics
import warnings

import torch

# How many timings each candidate gets (their median is its time), and the eviction read's size
# in multiples of L2 (reading 4x L2 takes about 60 us on an H200: longer than the CPU needs to
# launch a kernel, so the GPU never waits for the launch inside the timed interval).
REPS = 25
FLUSH_L2_MULTIPLE = 4
# Values of a block per thread above which coordinate descent skips a config uncompiled (half
# of it in a looped reduction, see _within). A reduction holds a loaded word, a decoded value
# and a product per value in registers (255 at most); on an H200 every config of the layer's
# kernels above 64 spilled.
MAX_VALUES_PER_THREAD = 64
# The matmul template's configs for a batch of at most 128 rows, by BLOCK_M (the batch rounded
# up to a power of 2, 16 at least): (BLOCK_M, BLOCK_N, BLOCK_K, stages, warps). Narrow tiles
# give a weight-streaming matmul more programs: inductor's own list (BLOCK_N 32 or more, a warp
# per 16 x 16 output tile) runs 256 programs of 2 warps for 8192 outputs, about one warp per
# scheduler, and a decode prologue then waits on latency. Each list keeps inductor's best plain
# bfloat16 config of the 8192 x 8192 case (16 x 64 x 128 and 64 x 64 x 128, 4 warps), so that
# an unquantized matmul keeps its tile. Measured on an H200, INT4 at 8192 x 8192 with the decode
# fused: 16 rows 59.1 -> 50.8 us (16 x 16 x 128, 2 warps), 64 rows 66.8 -> 62.9 (64 x 32 x 128).
# At 128 rows inductor's list leaves the decode unfused (a kernel writes the bfloat16 weight,
# then a 64 x 128 x 128 template: INT4 93.9 us); 128-row tiles fuse it (INT4 79.4 us in 128 x
# 64 x 128 with 8 warps, INT2 78.3, E2M1 78.1, INT8 74.1), and their best plain config (46.1 us
# warm) beats inductor's (48.9). Past 128 rows the decode written once is amortized: inductor's.
# At 64 rows the second tile was 64 x 32 x 64 of 2 warps (last of the four in every fusion
# timing logged, 96-100 us against 65-74 for E2M1 and INT3) until 64 x 64 x 256 in 3 stages
# (half the K loop's trips) took its place: H200, 8192 x 8192, by groups of 128, 64 rows,
# us: INT8 54.0 -> 45.4-45.6 (0.70x -> 0.83x bf16; predicted 50-52), INT4 54.5 / 54.3-54.5,
# E2M1 61.4 / 61.9, INT3 67.9 / 67.9 (they keep their tiles). At 16 rows 16 x 16 x 256 in 4
# stages (8 warps per SM at 8192 outputs, as 16 x 16 x 128) took the place of 16 x 16 x 64 of
# one warp (drawn in no product logged: third or fourth of four fusion timings): H200, 16 rows,
# us, 8192 x 8192: INT8 by 128 41.4-41.7 -> 39.3 (0.87x), INT4 44.2-44.6 / 44.2, E2M1 52.9 /
# 52.9, INT2 44.0 / 44.2, INT3 52.3 / 53.0 (the earlier sessions' runs); 4096 x 4096 side by
# side: INT8 15.9 -> 14.1, INT4 15.3 / 15.3. At 17-32 rows the 64-row list's 64 x 64 x 256
# (rows past the batch masked) ran INT8 by 128 faster than the 32-row tiles (H200, 8192 x
# 8192, 32 rows: 50.9 us in 32 x 32 x 128 -> 46.9), INT4 and E2M1 slower (53.0 -> 55.7, 61.7 /
# 62.0, in 64 x 32 x 128): the 32-row list gained it as a fifth candidate.
SMALL_BATCH_TILES = {
    16: ((16, 16, 128, 5, 2), (16, 16, 256, 4, 2), (16, 32, 128, 5, 2), (16, 64, 128, 5, 4)),
    32: ((32, 16, 128, 5, 2), (32, 32, 128, 5, 2), (32, 32, 128, 5, 4), (32, 64, 128, 5, 4), (64, 64, 256, 3, 4)),
    64: ((64, 32, 128, 5, 4), (64, 64, 256, 3, 4), (64, 16, 128, 5, 4), (64, 64, 128, 5, 4)),
    128: ((128, 64, 128, 4, 8), (128, 32, 128, 5, 4), (128, 32, 128, 4, 8), (128, 16, 128, 5, 4)),
}
# ... and for a product of more than 128 rows by at most FEW_COLUMNS columns: LowBitLinear's
# left route (fpx.nn._weight_as_left_operand: the weight's N rows times x's few rows), in
# tiles of 64 rows (or 128), by the columns' bound. Up to 32 columns, inductor's list drew 128
# x 32 x 128 tiles of 8 warps, 64 programs at 8192 rows: H200, E4M3 per channel at 8192 x 8192, 24 rows,
# 40.7 us, and 29.4 given these. At 33-64 columns its 19 configs cost compile time, once per
# plane of LowBitLinear._plane_products (INT2's four at 64 rows: 125 s), and its four fastest
# there were these, in this order (64 x 64 x 128 in 5 and 4 stages within 1%, 128 x 64 x 128
# of 8 warps at 89-92%, 64 x 32 x 128 at 77-79%). Timed at 64 columns (H200, 8192 x 8192: INT2
# and E2M1 by plane, INT4, INT8, E4M3, each within its spread) and at 40 and 48 (INT4 split at
# 4096 x 14336, 20 / 24 rows 43.5 / 44.2 us, 44.2 / 45.0 before; INT8 at 48 rows 40.8, 41.0
# before; E4M3 at 40 / 48 rows 32.4 / 32.5). The fourth was 64 x 32 x 128 until a tile 256 deep
# (half the loop's trips, so less address arithmetic and fewer barriers per weight) was timed
# there, H200, 8192 x 8192, us: INT8 at 64 / 48 rows 42.0 / 40.8 -> 39.3-39.7 / 39.3 (0.92x of
# bf16 at 64), E2M1 by plane 46.9 -> 45.1-45.7, both in it; INT2 and E4M3 kept 128-deep tiles
# (47.5-47.8, 32.4-33.5: within their spread). At 65-128 columns inductor's list ran 20 configs (one
# too large for an H200's shared memory) per template; its four fastest in every product
# timed there (INT2 and E2M1 by plane at 96 and 128 rows) were these, in this order (64 x 128
# x 128 in 4 stages, 128 x 128 x 64 of 8 warps at 84-86%, the two 64 x 64 tiles at 75-77%).
# Given these, H200, 8192 x 8192, per channel at 96 / 128 rows, us: INT2 59.8 / 58.0 (59.4 /
# 57.8 before), E2M1 54.6 / 54.4 (54.9 / 55.1), E4M3 38.1 / 39.5 (128 rows 38.7-39.0), INT8
# 47.3 / 49.7 (49.6), INT4 by plane 49.4 / 48.4 (48.5); INT4 split at 4096 x 14336, 64 rows
# (128 columns) 51.6 (49.0-50.9, inductor's 64-deep tiles). INT2 at 128 rows after 96 in one
# process compiled in 63 s (107 before; 27 s alone).
FEW_COLUMN_TILES = {
    32: ((64, 32, 128, 5, 4), (64, 32, 128, 4, 4), (64, 16, 128, 5, 4), (64, 16, 128, 5, 2)),
    64: ((64, 64, 128, 5, 4), (64, 64, 128, 4, 4), (128, 64, 128, 4, 8), (64, 64, 256, 3, 4)),
    128: ((64, 128, 128, 4, 4), (128, 128, 64, 5, 8), (64, 64, 128, 5, 4), (64, 64, 64, 3, 8)),
}
FEW_COLUMNS = max(FEW_COLUMN_TILES)
# ... plus, for a weight of fewer than SMALL_WEIGHT_ROWS rows, tiles that halve the columns of a
# program: 64 x 64 tiles give 4096 x 64 only 64 programs for 132 SMs. 64 x 32 x 128 was the
# 33-64 column list's fourth tile until the 256-deep one replaced it (thirty-fourth session),
# and at 4096 output features the tuner had chosen it: H200, E4M3 per channel at 64 rows, us,
# 4096 x 4096 14.9 and 4096 x 14336 42.7 in the twenty-fourth session's grid, 17.1-17.8 and
# 50.2-50.9 without it (thirty-eighth session, three compiles each, in 64 x 64 x 256), 15.8 and
# 42.9 with it back (thirty-ninth, in 64 x 32 x 128; 8192 x 8192 unchanged, 32.2).
SMALL_WEIGHT_ROWS = 8192
SMALL_WEIGHT_TILES = {64: ((64, 32, 128, 5, 4),)}


def cold_l2_time_ms(fn, flush: torch.Tensor, reps: int = REPS) -> float:
    """Median milliseconds of ``fn()`` on the current CUDA stream, each call timed right after
    ``flush`` (a buffer larger than L2) is read, so that ``fn`` finds its inputs in HBM and no
    dirty line to write back.

    ``fn`` runs ``reps + 1`` times (the first untimed); its results are discarded.
    """
    if reps < 1:
        raise ValueError(f"reps must be at least 1, got {reps}")
    fn()
    torch.cuda.synchronize()
    events = []
    for _ in range(reps):
        flush.sum()  # a read: evicts L2 with clean lines; it also covers fn's launch below
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        events.append((start, end))
    torch.cuda.synchronize()
    return statistics.median(start.elapsed_time(end) for start, end in events)


def _eviction_buffer(no_room: set):
    """A fresh eviction buffer for the current CUDA device (FLUSH_L2_MULTIPLE x its L2); None
    (after a warning, once per device, remembered in ``no_room``) where it does not fit.

    Made for each timing and freed after it, not kept for the block: inductor's CUDA graphs
    (``triton.cudagraphs``, ``mode="reduce-overhead"``) run a model's first call, where its
    kernels are tuned, inside the graphs' memory pool, and refuse a tensor that the call leaves
    alive there. The caching allocator hands the same memory back at the next timing.
    """
    device = torch.cuda.current_device()
    if device in no_room:
        return None
    nbytes = FLUSH_L2_MULTIPLE * torch.cuda.get_device_properties(device).L2_cache_size
    try:
        return torch.empty(nbytes // 4, dtype=torch.int32, device=f"cuda:{device}")
    except torch.cuda.OutOfMemoryError:
        warnings.warn(f"cold_cache_tuning: no room for the {nbytes / 2**20:.0f} MiB eviction buffer on "
                      f"cuda:{device}; tuning with inductor's benchmark there", stacklevel=2)
        no_room.add(device)
        return None


@contextlib.contextmanager
def cold_cache_tuning(reps: int = REPS, max_values_per_thread: int | None = MAX_VALUES_PER_THREAD):
    """Within the block, inductor times its Triton kernels' candidate launch configs, the matmul
    template's candidate tiles and its choice of fusing a decode into the template with
    :func:`cold_l2_time_ms` (L2 evicted by a read, launch hidden) instead of its own benchmark:
    a served weight is read from HBM, not from L2.

    Wrap the first call of a compiled model (or every call: outside tuning it costs two
    attribute writes); a compiled model tunes at its first call per input shape, and inductor
    caches the configs it picked with the kernels, so later processes reuse them. On CPU, and
    on a torch whose benchmark this cannot replace (a warning says so), the block runs
    unchanged. The eviction buffer (4x L2: 200 MB on an H100 or H200) is allocated for each
    timing and freed after it; where it does not fit, a warning, and inductor's benchmark.

    Coordinate descent skips, without compiling them, the configs that give a thread more than
    ``max_values_per_thread`` values of a block (:func:`values_per_thread`), half that where
    the reduction loops (None: it tries them all, as inductor does), and, converged on a
    reduction's config, tries up to 12 wider programs before it stops (up to 12 more configs
    compiled per reduction kernel of the model, about 0.3 s each).

    The matmul template (the layer's path past its row limit) tries the narrow tiles of
    :func:`small_batch_tiles` instead of inductor's list for a product of at most 128 rows:
    more programs for a decode fused as the template's prologue. H200, 8192 x 8192, against
    inductor's list in the same run: 16 rows INT4 59.1 -> 50.8 us, INT8 55.1 -> 45.8, E2M1
    60.6 -> 53.5, INT3 65.4 -> 56.6, E3M2 73.0 -> 59.0; 64 rows INT4 66.8 -> 62.9, E2M1 67.3
    -> 59.9, INT8 60.3 -> 55.7; 32 rows, INT3 and E3M2 at 64 rows within 1 us; 128 rows (fused
    now, 2 kernels before) INT4 93.9 -> 79.4, INT2 78.3, E2M1 78.1, INT8 74.1. This applies to
    every such product (mm, addmm, bmm) compiled in the block, unquantized ones too; each list
    keeps inductor's best plain bfloat16 tile of the 8192 x 8192 case at 16 and 64 rows (a
    bfloat16 ``F.linear`` of 8192 x 8192 compiled in the block: 0.98x, 0.91x, 1.07x and 0.92x
    of eager cuBLAS at 16, 32, 64 and 128 rows; 0.96x at 32 rows with inductor's list).

    Inductor's scheduler also keeps decodes marked with InvokeQuant apart
    (:func:`marked_decodes_kept_apart`), and a :class:`fpx.nn.LowBitLinear` with per-channel
    INT4, INT2 or E2M1 codes compiled in the block computes one product per plane of its packed
    bytes on CUDA, each plane's decode fused into its own template (H200, 8192 x 8192, 16 rows:
    INT4 40.4 -> 28.0 us, INT2 44.9 -> 34.5, E2M1 48.8 -> 35.8). Compiled outside, it keeps one
    product.

    And the matmul template's candidates are precompiled in this process
    (:func:`template_choices_precompiled_here`), so that a process's later compiles do not
    compile each candidate twice (H200, INT2 per channel, a second shape: 65.3 -> 20.6 s).

    >>> import fpx
    >>> with fpx.nn.cold_cache_tuning(reps=10):
    ...     pass
    >>> with fpx.nn.cold_cache_tuning(reps=0):
    ...     pass
    Traceback (most recent call last):
    ...
    ValueError: reps must be at least 1, got 0
    >>> with fpx.nn.cold_cache_tuning(max_values_per_thread=0):
    ...     pass
    Traceback (most recent call last):
    ...
    ValueError: max_values_per_thread must be None or at least 1, got 0
    """
    if not isinstance(reps, int) or isinstance(reps, bool) or reps < 1:
        raise ValueError(f"reps must be at least 1, got {reps!r}")
    if max_values_per_thread is not None and (
            not isinstance(max_values_per_thread, int) or isinstance(max_values_per_thread, bool)
            or max_values_per_thread < 1):
        raise ValueError(f"max_values_per_thread must be None or at least 1, got {max_values_per_thread!r}")
    with contextlib.ExitStack() as stack:
        stack.enter_context(_cold_l2_benchmark(reps))
        if max_values_per_thread is not None:
            stack.enter_context(_skip_configs_above(max_values_per_thread))
        stack.enter_context(_wider_programs_after_descent())
        stack.enter_context(matmul_template_tiles(small_batch_tiles))
        stack.enter_context(marked_decodes_kept_apart())
        stack.enter_context(template_choices_precompiled_here())
        yield


@contextlib.contextmanager
def template_choices_precompiled_here():
    """Within the block, inductor precompiles the matmul template's candidate tiles in threads
    of this process, as it does before its pool of compile workers is up, never in that pool.

    Why: once the pool is up (``AsyncCompile.use_process_pool()`` turns true when its first job
    is done), inductor sends each candidate's Triton source to a worker, and the benchmark
    that follows loads each candidate in this process and compiles it again, one at a time. So
    every template but a process's first few paid a serial compile of its four tiles. H200,
    INT2 per channel at 8192 x 8192 (four products, one per plane), 96 then 128 rows in one
    process, the second shape: each template's "benchmarking" 9.9-11.6 s -> 0.04 s, its
    compile 65.3 -> 20.6 s (the first shape's 27-28 s either way; the same kernels, 57.6 us).
    Where this torch has no such precompile step, the block runs unchanged.

    >>> import fpx
    >>> with fpx.tuning.template_choices_precompiled_here():
    ...     pass
    """
    try:
        from torch._inductor import async_compile, select_algorithm
        selector = select_algorithm.AlgorithmSelectorCache
        original = selector.make_precompile_fn
        async_compile.AsyncCompile.use_process_pool  # the answer patched below: present?
    except (ImportError, AttributeError):
        yield  # another torch: its own precompile
        return

    def in_threads(self, *args, **kwargs):
        # The choices are submitted before make_precompile_fn returns (it waits on them later).
        with _patched(async_compile.AsyncCompile, "use_process_pool", classmethod(lambda cls: False)):
            return original(self, *args, **kwargs)

    with _patched(selector, "make_precompile_fn", in_threads):
        yield


@contextlib.contextmanager
def marked_decodes_kept_apart():
    """Within the block, inductor's scheduler does not fuse two decodes marked with torch's
    InvokeQuant (each meant as a matmul template's prologue) with each other, alone or as part
    of a node already fused (a template with its prologue); everything else it decides as
    before (its current choices handler, state included, with this one rule added). Part of
    :func:`cold_cache_tuning`.

    Why: :class:`fpx.nn.LowBitLinear` computes INT4 per channel as one product per nibble
    plane (:meth:`~fpx.nn.LowBitLinear._plane_products`), each plane's decode with a
    constant shift. The two decodes read the same bytes, and inductor ranks fusing them with
    each other above fusing either into its template (a prologue fusion always ranks last), so
    the joined decode wrote both planes out and two templates read them: 3 kernels, 85-87 us at
    16 rows of 8192 x 8192 on an H200, against 28.0 with the decodes kept apart (2 kernels).
    The layer asks :func:`marked_decodes_apart_here` while it is traced, and takes the plane
    products only inside this block.

    >>> import fpx
    >>> with fpx.tuning.marked_decodes_kept_apart():
    ...     fpx.tuning.marked_decodes_apart_here()
    True
    >>> fpx.tuning.marked_decodes_apart_here()
    False
    """
    try:
        from torch._inductor.virtualized import V

        current = V.choices
    except (ImportError, AttributeError):  # no inductor, or one without choices handlers
        yield
        return
    if getattr(current, _KEEPS_MARKED_DECODES_APART, False):  # nested blocks
        yield
        return

    class KeepsMarkedDecodesApart(type(current)):
        def can_fuse_horizontal(self, scheduler, node1, node2, shared_data_score):
            if _marked_decodes(node1, node2):
                return False
            return super().can_fuse_horizontal(scheduler, node1, node2, shared_data_score)

    setattr(KeepsMarkedDecodesApart, _KEEPS_MARKED_DECODES_APART, True)
    handler = copy.copy(current)  # the handler in use, its state included, with the rule added
    handler.__class__ = KeepsMarkedDecodesApart
    with V.set_choices_handler(handler):
        yield


_KEEPS_MARKED_DECODES_APART = "_fpx_keeps_marked_decodes_apart"


def _marked_decodes(node1, node2) -> bool:
    """Whether both scheduler nodes hold a decode marked with InvokeQuant (an operation among
    the graph's marked ones, inductor's record of them), alone or already fused with others.

    Why "hold", not "are": once one plane's decode has fused into its template, inductor may
    offer the template, prologue included, a horizontal join with the other plane's decode
    (they read the same bytes). On torch 2.11 that join's benchmark raised ``CantSplit`` out
    of the compile, whenever the second decode had not yet fused into its own template when the
    join was offered (the first layer compiled in a process, at any row count, in the
    thirtieth session)."""
    from torch._inductor.virtualized import V

    marked = getattr(V.graph, "invoke_quant_ops", None)
    return bool(marked) and all(node.get_operation_names() & marked for node in (node1, node2))


# Asked while dynamo traces the layer and taken as a constant, with no guard: a model compiled
# inside cold_cache_tuning keeps its compiled graph when called outside it (a guard on the
# block's state once recompiled such a model to another route at its first call outside).
@torch.compiler.assume_constant_result
def marked_decodes_apart_here() -> bool:
    """Whether inductor, in this thread, now keeps marked decodes apart (inside
    :func:`marked_decodes_kept_apart`, so inside :func:`cold_cache_tuning`)."""
    try:
        from torch._inductor.virtualized import V

        return bool(getattr(V.choices, _KEEPS_MARKED_DECODES_APART, False))
    except (ImportError, AttributeError):
        return False


@contextlib.contextmanager
def _cold_l2_benchmark(reps: int):
    """Inductor's GPU benchmark replaced by cold_l2_time_ms for plain timings."""
    try:
        from torch._inductor.runtime import benchmarking

        benchmarker = benchmarking.benchmarker
        original = benchmarker.benchmark_gpu
    except (ImportError, AttributeError) as error:
        warnings.warn(f"cold_cache_tuning: inductor's benchmark cannot be replaced here ({error}); "
                      "tuning with inductor's own", stacklevel=4)
        yield
        return
    no_room = set()  # CUDA device indices where the eviction buffer did not fit

    def benchmark_gpu(_callable, *args, **kwargs):
        # Every plain timing of a callable: inductor's Triton launch configs (which it marks
        # vetted), and the matmul template's candidates and the prologue-fusion choice (which
        # it does not). Timed by inductor's benchmark, which finds a weight of up to L2's size
        # cached, the fusion choice among narrow tiles was a draw (H200, 8192 x 8192, 16 rows,
        # INT2 by 128: 16 x 16 x 64 with 1 warp 54.4 us, 16 x 32 x 128 49.7, where 16 x 16 x
        # 128 with 2 warps takes 44.2; E2M1 66.9 in 16 x 64 x 128); timed cold it drew 16 x 16
        # x 128 in 6 of 6 compiles (INT2 44.0, E2M1 52.9). Requests for quantiles, for all the
        # timings or for gradients cleared keep inductor's benchmark, and so do unvetted
        # timings in inductor's deterministic mode, where inductor refuses them.
        plain = (kwargs.get("return_mode", "min") in ("min", "median", "mean") and "quantiles" not in kwargs
                 and not kwargs.get("grad_to_none") and not args)
        allowed = kwargs.get("is_vetted_benchmarking") or not _inductor_deterministic()
        flush = _eviction_buffer(no_room) if plain and allowed and torch.cuda.is_available() else None
        if flush is None:
            return original(_callable, *args, **kwargs)
        return cold_l2_time_ms(_callable, flush, reps)

    with _patched(benchmarker, "benchmark_gpu", benchmark_gpu):  # an instance attribute: shadows the method
        yield


def _inductor_deterministic() -> bool:
    """Whether inductor's deterministic mode is on, in which it times only vetted benchmarks."""
    from torch._inductor import config

    return bool(getattr(config, "deterministic", False))


# The launch-config fields whose product is the block a pointwise or reduction kernel's program
# covers, with the size hint that stands in for a persistent reduction's missing R0_BLOCK.
_BLOCK_FIELDS = {"XBLOCK": "x", "YBLOCK": "y", "ZBLOCK": "z", "R0_BLOCK": "r0_", "R1_BLOCK": "r1_"}


def values_per_thread(config, size_hints: dict, warp_size: int = 32):
    """Values of one block that each thread of a Triton launch ``config`` holds: the product of
    its block sizes over its ``num_warps * warp_size`` threads, a persistent reduction (no
    R0_BLOCK) counting its whole reduction from ``size_hints``. None for any other kind of
    config (a matmul's BLOCK_M/N/K, a combo kernel's XBLOCK_0).

    >>> from types import SimpleNamespace as Config
    >>> values_per_thread(Config(kwargs={"XBLOCK": 128, "R0_BLOCK": 128}, num_warps=8), {"x": 262144, "r0_": 128})
    64.0
    >>> values_per_thread(Config(kwargs={"XBLOCK": 8}, num_warps=2), {"x": 8192, "r0_": 32})  # persistent
    4.0
    >>> values_per_thread(Config(kwargs={"BLOCK_M": 16, "BLOCK_N": 64}, num_warps=4), {}) is None
    True
    """
    names = [name for name in config.kwargs if "BLOCK" in name]
    if not names or any(name not in _BLOCK_FIELDS for name in names):
        return None
    values = 1
    for name, hint in _BLOCK_FIELDS.items():
        if name in config.kwargs:
            values *= config.kwargs[name]
        elif hint.startswith("r") and hint in size_hints:
            values *= size_hints[hint]
    return values / (config.num_warps * warp_size)


def _coordinate_descent_tuner(*needs: str):
    """Inductor's CoordescTuner class, if this torch has it with the methods ``needs`` names
    (ImportError or AttributeError otherwise)."""
    from torch._inductor.runtime.coordinate_descent_tuner import CoordescTuner

    missing = [name for name in needs if not hasattr(CoordescTuner, name)]
    if missing:
        raise AttributeError(f"CoordescTuner has no {', '.join(missing)}")
    return CoordescTuner


@contextlib.contextmanager
def _skip_configs_above(limit: int):
    """Inductor's coordinate descent treats configs of more than ``limit`` values per thread as
    invalid, so it never compiles them."""
    try:
        CoordescTuner = _coordinate_descent_tuner("is_valid_config")
    except (ImportError, AttributeError) as error:
        warnings.warn(f"cold_cache_tuning: inductor's coordinate descent cannot be given a limit here "
                      f"({error}); it tries every config", stacklevel=4)
        yield
        return
    original = CoordescTuner.is_valid_config
    with _patched(CoordescTuner, "is_valid_config", lambda tuner, config: (
            original(tuner, config) and _within(tuner, config, limit))):
        yield


def _within(tuner, config, limit) -> bool:
    """Whether ``config`` gives a thread at most ``limit`` values (half where it loops)."""
    warp_size = (getattr(tuner, "inductor_meta", None) or {}).get("warp_size") or 32
    size_hints = getattr(tuner, "size_hints", None) or {}
    values = values_per_thread(config, size_hints, warp_size)
    # A looped reduction (R0_BLOCK short of the reduction) holds an accumulator per value
    # across its trips besides the trip's loads: half the limit. On an H200 every looped
    # config of the layer's kernels at 64 values per thread spilled (7 of 7, 15-23 s each to
    # compile) while one-trip ones at 64 did not. Tried and dropped (docs/inductor.md): no loop
    # where one trip fits (E2M3's compile 44-49 -> 29 s, but INT4 at 4096 x 14336 and 8192 x
    # 28672 8-9% slower: their fastest configs loop twice), and no config over 16 warps.
    looped = config.kwargs.get("R0_BLOCK", float("inf")) < size_hints.get("r0_", 0)
    return values is None or values <= (limit / 2 if looped else limit)


@contextlib.contextmanager
def _wider_programs_after_descent():
    """Inductor's coordinate descent, once it converges on a reduction's config, also times the
    configs of 2-8x its XBLOCK with as many or half as many more warps (R0_BLOCK kept or
    doubled), and walks on from the best of them if it is faster.

    Descent moves one field at a time (or every field one step, looking in all directions), so
    it stops on a plateau that bigger programs only leave several steps away: the INT4
    dot-product kernel at one row stopped at XBLOCK 16, R0_BLOCK 64, 2 warps (21 us) in 4 of 9
    compiles on an H200 where XBLOCK 128, R0_BLOCK 128, 8 warps takes 17.6.
    """
    try:
        CoordescTuner = _coordinate_descent_tuner(
            "autotune", "call_func", "compare_config", "value_too_large", "is_valid_config")
    except (ImportError, AttributeError) as error:
        warnings.warn(f"cold_cache_tuning: inductor's coordinate descent cannot be extended here ({error}); "
                      "it stops where it converges", stacklevel=4)
        yield
        return

    original = CoordescTuner.autotune

    def autotune(tuner, func, baseline_config, baseline_timing=None, *args, **kwargs):
        best = original(tuner, func, baseline_config, baseline_timing, *args, **kwargs)
        for _ in range(3):  # each round walks on from a wider program that won
            best_timing = tuner.call_func(func, best)
            winner, winner_timing = None, best_timing
            for candidate in _wider_programs(tuner, best):
                better, timing = tuner.compare_config(func, candidate, best, winner_timing)
                if better:
                    winner, winner_timing = candidate, timing
            if winner is None:
                break
            best = original(tuner, func, winner, winner_timing, *args, **kwargs)
        return best

    with _patched(CoordescTuner, "autotune", autotune):
        yield


def _wider_programs(tuner, config):
    """The valid configs of 2, 4 and 8 times ``config``'s XBLOCK, each with as many or half as
    many times its warps and its R0_BLOCK or twice it; none for other than a looped or one-trip
    reduction's config (XBLOCK and R0_BLOCK)."""
    if sorted(name for name in config.kwargs if "BLOCK" in name) != ["R0_BLOCK", "XBLOCK"]:
        return
    xblock, r0_block, warps = config.kwargs["XBLOCK"], config.kwargs["R0_BLOCK"], config.num_warps
    for doublings in (1, 2, 3):
        for warp_doublings in (doublings - 1, doublings):
            for new_r0_block in (r0_block, 2 * r0_block):
                new = {"XBLOCK": xblock << doublings, "R0_BLOCK": new_r0_block, "num_warps": warps << warp_doublings}
                if any(tuner.value_too_large(name, value) for name, value in new.items()):
                    continue
                candidate = copy.deepcopy(config)
                candidate.kwargs.update(XBLOCK=new["XBLOCK"], R0_BLOCK=new_r0_block)
                candidate.num_warps = new["num_warps"]
                if tuner.is_valid_config(candidate):
                    yield candidate


def small_batch_tiles(m, n, k) -> tuple:
    """The matmul template configs (BLOCK_M, BLOCK_N, BLOCK_K, stages, warps) that
    :func:`cold_cache_tuning` gives inductor for an (m, k) x (k, n) product: those of
    ``SMALL_BATCH_TILES`` for m of at most 128, ``FEW_COLUMN_TILES`` for more rows by at most
    ``FEW_COLUMNS`` columns (the list of the least bound that covers n, and
    ``SMALL_WEIGHT_TILES`` after it where m is under ``SMALL_WEIGHT_ROWS``; blocks no larger
    than n and k need, 16 at least), none otherwise (inductor's own list).

    >>> small_batch_tiles(16, 8192, 8192)[0]
    (16, 16, 128, 5, 2)
    >>> small_batch_tiles(3, 8, 32)  # blocks capped by n and k, duplicates dropped
    ((16, 16, 32, 5, 2), (16, 16, 32, 4, 2), (16, 16, 32, 5, 4))
    >>> small_batch_tiles(128, 8192, 8192)[0]
    (128, 64, 128, 4, 8)
    >>> small_batch_tiles(129, 8192, 8192)
    ()
    >>> small_batch_tiles(8192, 24, 8192)[0]  # the weight's rows by x's few: 64-row tiles
    (64, 32, 128, 5, 4)
    >>> small_batch_tiles(8192, 64, 8192)[0]
    (64, 64, 128, 5, 4)
    >>> small_batch_tiles(4096, 64, 4096)[-1]  # fewer weight rows: narrower tiles, more programs
    (64, 32, 128, 5, 4)
    >>> small_batch_tiles(8192, 96, 8192)[0]
    (64, 128, 128, 4, 4)
    >>> small_batch_tiles(8192, 129, 8192)
    ()
    """
    def block(size):  # the power of 2 that covers size, 16 at least
        return max(16, 1 << (size - 1).bit_length())
    if m <= max(SMALL_BATCH_TILES):
        given = SMALL_BATCH_TILES[block(m)]
    elif n <= FEW_COLUMNS:
        bound = min(bound for bound in FEW_COLUMN_TILES if n <= bound)
        given = FEW_COLUMN_TILES[bound]
        if m < SMALL_WEIGHT_ROWS:
            given += SMALL_WEIGHT_TILES.get(bound, ())
    else:
        return ()
    tiles = {(bm, min(bn, block(n)), min(bk, block(k)), stages, warps): None for bm, bn, bk, stages, warps in given}
    return tuple(tiles)


@contextlib.contextmanager
def matmul_template_tiles(tiles_for):
    """Within the block, inductor's CUDA matmul template (mm, addmm, bmm) tries the configs
    ``tiles_for(m, n, k)`` returns, (BLOCK_M, BLOCK_N, BLOCK_K, stages, warps) each, for a product
    of static sizes, and its own list where that is empty or a size is symbolic.

    The warps are taken as given: inductor caps them at one per 16 x 16 output tile, which suits
    a plain matmul (each warp owns output tiles), but a decode prologue spreads over all of a
    program's threads. The stages are cut to what fits in the device's shared memory
    (:func:`fit_stages`; inductor prunes its own list the same way). Where this torch has no
    such heuristic, a warning, and inductor's list.
    """
    try:
        from torch._inductor.template_heuristics.triton import CUDAMMTemplateConfigHeuristic
    except ImportError as error:
        warnings.warn(f"inductor's matmul configs cannot be extended here ({error}); it tries its own",
                      stacklevel=4)
        yield
        return
    original = CUDAMMTemplateConfigHeuristic._get_config_generator

    def config_generator(heuristic):
        configs = original(heuristic)

        def configs_for(m, n, k, *args, **kwargs):
            sizes = [_static_int(size) for size in (m, n, k)]
            tiles = tiles_for(*sizes) if None not in sizes else ()
            if not tiles:
                yield from configs(m, n, k, *args, **kwargs)
                return
            shared_memory = _shared_memory_per_block()
            fitted = {fit_stages(tile, kwargs.get("dtype_size", 0), shared_memory): None for tile in tiles}
            fitted.pop(None, None)
            if not fitted:  # none fits this device: inductor's list, which it prunes itself
                yield from configs(m, n, k, *args, **kwargs)
                return
            for bm, bn, bk, stages, warps in fitted:
                yield heuristic.triton_config(stages, warps, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk,
                                              hint_override=None, GROUP_M=8)
        return configs_for

    with _patched(CUDAMMTemplateConfigHeuristic, "_get_config_generator", config_generator):
        yield


def fit_stages(tile, dtype_size: int, shared_memory: int | None) -> tuple | None:
    """``tile`` (BLOCK_M, BLOCK_N, BLOCK_K, stages, warps) with as many of its stages as fit in
    ``shared_memory`` bytes per program, by inductor's estimate (each stage holds a BLOCK_M x
    BLOCK_K and a BLOCK_K x BLOCK_N block of ``dtype_size`` bytes, plus 128 bytes); None where
    not even one stage fits (inductor drops such configs of its own list too). Unchanged where
    either is unknown (0 or None).

    >>> fit_stages((64, 64, 128, 5, 4), 2, 232448)  # bfloat16 on an H100 / H200: 160 KiB fits
    (64, 64, 128, 5, 4)
    >>> fit_stages((64, 64, 128, 5, 4), 4, 232448)  # float32: 64 KiB a stage
    (64, 64, 128, 3, 4)
    >>> fit_stages((64, 64, 256, 3, 4), 4, 101376) is None  # 128 KiB a stage in 99 KiB
    True
    """
    bm, bn, bk, stages, warps = tile
    if dtype_size and shared_memory:
        per_stage = dtype_size * (bm * bk + bk * bn)
        stages = min(stages, (shared_memory - 128) // per_stage)
        if stages < 1:
            return None
    return bm, bn, bk, stages, warps


def _shared_memory_per_block() -> int | None:
    """The current CUDA device's shared memory a program may opt in to, None without one."""
    if not torch.cuda.is_available():
        return None
    properties = torch.cuda.get_device_properties(torch.cuda.current_device())
    return getattr(properties, "shared_memory_per_block_optin", None)


def _static_int(size):
    """``size`` (an int or a sympy expression) as an int, or None where it is symbolic."""
    try:
        return int(size)
    except TypeError:
        return None


@contextlib.contextmanager
def _patched(owner, name, value):
    """``owner.name`` set to ``value`` within the block, restored after (nested blocks too)."""
    shadowed = owner.__dict__.get(name)  # None where inherited
    setattr(owner, name, value)
    try:
        yield
    finally:
        if shadowed is None:
            delattr(owner, name)
        else:
            setattr(owner, name, shadowed)
