"""Run benchmarks/linear.py with every timing inductor's Triton tuner takes printed.

Research aid for docs/inductor.md (not part of the package): the tuner times each candidate
launch config of a reduction kernel alone (``benchmark_all_configs``, then coordinate descent,
``COORDESC``), and the fastest it sees is the config the compiled layer launches for good. This
prints those timings, so that they can be set beside the layer's own timing under each config
(benchmarks/config_sweep.py).

    python benchmarks/tuner_trace.py --formats INT4 --m 1      # linear.py's arguments
    python benchmarks/tuner_trace.py --read-flush --formats INT4 --m 1   # tuned by a faithful benchmark
"""

import logging
import os
import runpy
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


class TunerLines(logging.Filter):
    """Keeps the log records that carry a config's timing or the tuner's choice."""

    KEEP = ("COORDESC", "Benchmark all input configs", "nreg", "Improve from", "Baseline Config",
            "looking in all directions", "register spilling")

    def filter(self, record):
        return any(key in record.getMessage() for key in self.KEEP)


def install_read_flush_benchmark(reps: int = 25, flush_multiple: int = 4) -> None:
    """Replace inductor's GPU benchmark (used by its tuner) with one that evicts L2 by reading
    a buffer of ``flush_multiple`` x the L2 size (clean lines: nothing written back during the
    timed kernel) and lets that read cover the CPU's launch of the kernel (no idle GPU inside
    the timed interval); the median of ``reps`` timings."""
    import torch
    from torch._inductor.runtime import benchmarking

    flush = torch.empty(flush_multiple * torch.cuda.get_device_properties().L2_cache_size // 4,
                        dtype=torch.int32, device="cuda").fill_(1)
    calls = [0]

    def benchmark_gpu(_callable, *args, **kwargs):
        calls[0] += 1
        _callable()
        torch.cuda.synchronize()
        events = []
        for _ in range(reps):
            flush.sum()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            _callable()
            end.record()
            events.append((start, end))
        torch.cuda.synchronize()
        return statistics.median(s.elapsed_time(e) for s, e in events)

    benchmarking.benchmarker.benchmark_gpu = benchmark_gpu
    import atexit
    atexit.register(lambda: print(f"TUNER read-flush benchmark called {calls[0]} times", flush=True))


def main():
    if "--read-flush" in sys.argv:
        sys.argv.remove("--read-flush")
        install_read_flush_benchmark()
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(TunerLines())
    handler.setFormatter(logging.Formatter("TUNER %(message)s"))
    for name in ("torch._inductor.runtime.triton_heuristics", "torch._inductor.runtime.coordinate_descent_tuner"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    sys.argv = [os.path.join(HERE, "linear.py"), *sys.argv[1:]]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
