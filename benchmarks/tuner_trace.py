"""Run benchmarks/linear.py with every timing inductor's Triton tuner takes printed.

Research aid for docs/inductor.md (not part of the package): the tuner times each candidate
launch config of a reduction kernel alone (``benchmark_all_configs``, then coordinate descent,
``COORDESC``), and the fastest it sees is the config the compiled layer launches for good. This
prints those timings, so that they can be set beside the layer's own timing under each config
(benchmarks/config_sweep.py).

    python benchmarks/tuner_trace.py --formats INT4 --m 1      # linear.py's arguments
    python benchmarks/tuner_trace.py --formats INT4 --m 1 --tuning inductor   # inductor's benchmark

linear.py tunes inside ``fpx.nn.cold_cache_tuning`` by default; ``--tuning inductor`` shows
what inductor's own benchmark measures (docs/inductor.md, "The coin was the tuner's benchmark").
"""

import logging
import os
import runpy
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


class TunerLines(logging.Filter):
    """Keeps the log records that carry a config's timing or the tuner's choice."""

    KEEP = ("COORDESC", "Benchmark all input configs", "nreg", "Improve from", "Baseline Config",
            "looking in all directions", "register spilling")

    def filter(self, record):
        return any(key in record.getMessage() for key in self.KEEP)


def main():
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(TunerLines())
    handler.setFormatter(logging.Formatter("TUNER %(message)s [t=%(relativeCreated).0f ms]"))
    for name in ("torch._inductor.runtime.triton_heuristics", "torch._inductor.runtime.coordinate_descent_tuner"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    sys.argv = [os.path.join(HERE, "linear.py"), *sys.argv[1:]]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
