"""The examples run as their docstrings say (CPU, small sizes where they take arguments)."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]


def run_example(name: str, *args: str) -> str:
    done = subprocess.run([sys.executable, f"examples/{name}", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("name", ["quickstart.py", "attention_mask.py"])
def test_example_runs(name):
    assert run_example(name).strip()


def test_mlp_serving_example_prints_memory_error_and_times_for_every_format():
    out = run_example("lowbit_mlp_serving.py", "--device", "cpu", "--dim", "128", "--hidden", "256", "--rows", "1,3")
    rows = {}
    for line in out.splitlines():
        match = re.match(r"(.+?)\s+([\d.]+) MiB\s+([\d.]+)\s+([\d.]+) \(([\d.]+)\)\s+([\d.]+) \(([\d.]+)\)$", line)
        if match:
            rows[match.group(1).strip()] = [float(v) for v in match.groups()[1:]]
    assert list(rows) == ["unquantized", "INT4 by 128", "INT8 per channel", "E4M3 per channel", "E2M1 MX"], out
    # The quantization's relative error on random weights and inputs: each format's own size
    # (INT8 per channel about 0.007, E4M3 0.045, INT4 0.12, E2M1 with MX scales 0.22-0.26).
    bounds = {"INT4 by 128": 0.2, "INT8 per channel": 0.02, "E4M3 per channel": 0.08, "E2M1 MX": 0.35}
    dense_memory = rows["unquantized"][0]
    for label, bound in bounds.items():
        memory, error, *times = rows[label]
        assert 0 < error < bound, (label, error)
        assert memory < dense_memory / 3.5, (label, memory)  # 8 bits or fewer against float32
        assert all(t > 0 for t in times), (label, times)
