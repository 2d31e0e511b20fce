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

>>> import torch, fpx
>>> model = fpx.quantize_(torch.nn.Sequential(torch.nn.Linear(64, 32)), fpx.INT4, group_size=32)
>>> compiled = torch.compile(model, options=fpx.nn.compile_options("cpu"))
>>> with fpx.nn.cold_cache_tuning():   # compiles and tunes at the first call (CUDA: the configs)
...     y = compiled(torch.randn(1, 64))
>>> y.shape
torch.Size([1, 32])
"""

import contextlib
import statistics
import warnings

import torch

# How many timings each candidate gets (their median is its time), and the eviction read's size
# in multiples of L2 (reading 4x L2 takes about 60 us on an H200: longer than the CPU needs to
# launch a kernel, so the GPU never waits for the launch inside the timed interval).
REPS = 25
FLUSH_L2_MULTIPLE = 4


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


def _eviction_buffer(flushes: dict):
    """The current CUDA device's eviction buffer (FLUSH_L2_MULTIPLE x its L2), made at the first
    request and kept in ``flushes``; None (after a warning) where the device has no room for it."""
    device = torch.cuda.current_device()
    if device not in flushes:
        nbytes = FLUSH_L2_MULTIPLE * torch.cuda.get_device_properties(device).L2_cache_size
        try:
            flushes[device] = torch.empty(nbytes // 4, dtype=torch.int32, device=f"cuda:{device}")
        except torch.cuda.OutOfMemoryError:
            warnings.warn(f"cold_cache_tuning: no room for the {nbytes / 2**20:.0f} MiB eviction buffer on "
                          f"cuda:{device}; tuning with inductor's benchmark there", stacklevel=2)
            flushes[device] = None
    return flushes[device]


@contextlib.contextmanager
def cold_cache_tuning(reps: int = REPS):
    """Within the block, inductor times its Triton kernels' candidate launch configs with
    :func:`cold_l2_time_ms` (L2 evicted by a read, launch hidden) instead of its own benchmark.

    Wrap the first call of a compiled model (or every call: outside tuning it costs two
    attribute writes); a compiled model tunes at its first call per input shape, and inductor
    caches the configs it picked with the kernels, so later processes reuse them. On CPU, and
    on a torch whose benchmark this cannot replace (a warning says so), the block runs
    unchanged. The eviction buffer (4x L2: 200 MB on an H100 or H200) is allocated at the first
    timing and freed on exit; where it does not fit, a warning, and inductor's benchmark.

    >>> import fpx
    >>> with fpx.nn.cold_cache_tuning(reps=10):
    ...     pass
    >>> with fpx.nn.cold_cache_tuning(reps=0):
    ...     pass
    Traceback (most recent call last):
    ...
    ValueError: reps must be at least 1, got 0
    """
    if not isinstance(reps, int) or isinstance(reps, bool) or reps < 1:
        raise ValueError(f"reps must be at least 1, got {reps!r}")
    try:
        from torch._inductor.runtime import benchmarking

        benchmarker = benchmarking.benchmarker
        original = benchmarker.benchmark_gpu
    except (ImportError, AttributeError) as error:
        warnings.warn(f"cold_cache_tuning: inductor's benchmark cannot be replaced here ({error}); "
                      "tuning with inductor's own", stacklevel=3)
        yield
        return
    shadowed = benchmarker.__dict__.get("benchmark_gpu")  # an enclosing block's, else None
    flushes = {}  # CUDA device index -> eviction buffer

    def benchmark_gpu(_callable, *args, **kwargs):
        # Inductor marks the timings of Triton kernel configs as vetted; anything else (matmul
        # templates, fusion decisions) and any request for quantiles or all the timings keeps
        # inductor's benchmark.
        plain = kwargs.get("return_mode", "min") in ("min", "median", "mean") and "quantiles" not in kwargs
        vetted = kwargs.get("is_vetted_benchmarking") and not kwargs.get("grad_to_none")
        flush = _eviction_buffer(flushes) if vetted and plain and not args and torch.cuda.is_available() else None
        if flush is None:
            return original(_callable, *args, **kwargs)
        return cold_l2_time_ms(_callable, flush, reps)

    benchmarker.benchmark_gpu = benchmark_gpu  # an instance attribute: shadows the method
    try:
        yield
    finally:
        if shadowed is None:
            benchmarker.__dict__.pop("benchmark_gpu", None)
        else:
            benchmarker.benchmark_gpu = shadowed
        flushes.clear()
