"""fpx.nn.cold_cache_tuning: inductor's tuner times Triton configs with fpx.tuning's benchmark
inside the block, and with its own everywhere else."""

import warnings

import pytest
import torch
from torch._inductor.runtime import benchmarking

import fpx
import fpx.tuning

from ..conftest import HAS_CUDA


class RecordingBenchmarker:
    """Stands in for inductor's benchmarker: records the calls its own benchmark gets."""

    def __init__(self):
        self.calls = []

    def benchmark_gpu(self, _callable, *args, **kwargs):
        self.calls.append(kwargs)
        return 1.0


@pytest.fixture
def recording(monkeypatch):
    fake = RecordingBenchmarker()
    monkeypatch.setattr(benchmarking, "benchmarker", fake)
    return fake


def test_the_benchmark_is_replaced_inside_the_block_and_restored_after():
    original = benchmarking.benchmarker.benchmark_gpu
    with fpx.nn.cold_cache_tuning():
        inside = benchmarking.benchmarker.benchmark_gpu
        assert inside != original
        with fpx.nn.cold_cache_tuning():
            assert benchmarking.benchmarker.benchmark_gpu != inside
        assert benchmarking.benchmarker.benchmark_gpu is inside  # the enclosing block's again
    assert benchmarking.benchmarker.benchmark_gpu == original
    assert "benchmark_gpu" not in vars(benchmarking.benchmarker)


def test_an_error_inside_the_block_restores_the_benchmark():
    with pytest.raises(KeyError):
        with fpx.nn.cold_cache_tuning():
            raise KeyError("inside")
    assert "benchmark_gpu" not in vars(benchmarking.benchmarker)


@pytest.mark.parametrize("reps", [0, -3, 2.5, True, "10"])
def test_bad_reps_are_refused(reps):
    with pytest.raises(ValueError, match="reps"):
        with fpx.nn.cold_cache_tuning(reps=reps):
            pass


@pytest.mark.parametrize("kwargs", [
    {},  # not vetted: a matmul template or a fusion decision
    {"is_vetted_benchmarking": False},
    {"is_vetted_benchmarking": True, "quantiles": (0.5, 0.2)},
    {"is_vetted_benchmarking": True, "return_mode": "all"},
    {"is_vetted_benchmarking": True, "grad_to_none": [torch.zeros(1)]},
])
def test_timings_other_than_plain_vetted_ones_keep_inductors_benchmark(recording, kwargs):
    with fpx.nn.cold_cache_tuning():
        assert benchmarking.benchmarker.benchmark_gpu(lambda: None, **kwargs) == 1.0
    assert recording.calls == [kwargs]


@pytest.mark.skipif(HAS_CUDA, reason="the CPU fallback: without CUDA every timing stays inductor's")
def test_without_cuda_vetted_timings_keep_inductors_benchmark(recording):
    with fpx.nn.cold_cache_tuning():
        benchmarking.benchmarker.benchmark_gpu(lambda: None, is_vetted_benchmarking=True)
    assert recording.calls == [{"is_vetted_benchmarking": True}]


def test_without_room_for_the_eviction_buffer_a_warning_and_inductors_benchmark(recording, monkeypatch):
    # A device as full as a serving process keeps it: the 4x L2 buffer does not fit.
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: type("P", (), {"L2_cache_size": 50 * 2**20}))
    monkeypatch.setattr(torch, "empty", out_of_memory)
    with fpx.nn.cold_cache_tuning():
        with pytest.warns(UserWarning, match="no room for the 200 MiB eviction buffer on cuda:0"):
            assert benchmarking.benchmarker.benchmark_gpu(lambda: None, is_vetted_benchmarking=True) == 1.0
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no second try, no second warning
            assert benchmarking.benchmarker.benchmark_gpu(lambda: None, is_vetted_benchmarking=True) == 1.0
    assert recording.calls == [{"is_vetted_benchmarking": True}] * 2


@pytest.mark.cuda
def test_vetted_timings_go_through_the_cold_l2_benchmark(recording, monkeypatch):
    timed = []
    monkeypatch.setattr(fpx.tuning, "cold_l2_time_ms", lambda fn, flush, reps: timed.append((flush, reps)) or 2.0)
    with fpx.nn.cold_cache_tuning(reps=7):
        assert benchmarking.benchmarker.benchmark_gpu(lambda: None, is_vetted_benchmarking=True) == 2.0
        assert benchmarking.benchmarker.benchmark_gpu(lambda: None, is_vetted_benchmarking=True) == 2.0
    assert recording.calls == []
    l2_bytes = torch.cuda.get_device_properties().L2_cache_size
    (flush, reps), (again, _) = timed
    assert reps == 7 and flush is again  # one buffer per device, kept for the block
    assert flush.nbytes >= fpx.tuning.FLUSH_L2_MULTIPLE * l2_bytes - 4


@pytest.mark.cuda
def test_a_small_kernel_is_timed_without_the_launch_gap():
    # A kernel of a few microseconds: timed by events around its launch alone, the GPU would
    # wait for the CPU inside the interval; the eviction read covers the launch.
    x = torch.ones(1024, device="cuda")
    l2_bytes = torch.cuda.get_device_properties().L2_cache_size
    flush = torch.empty(4 * l2_bytes // 4, dtype=torch.int32, device="cuda")
    ms = fpx.tuning.cold_l2_time_ms(lambda: x.add_(1), flush, reps=20)
    assert 0 < ms < 0.010
    assert torch.all(x == 22)  # one untimed call, then the 20 timed ones
    with pytest.raises(ValueError, match="reps"):
        fpx.tuning.cold_l2_time_ms(lambda: None, flush, reps=0)


@pytest.mark.cuda
def test_the_compiled_layers_configs_are_tuned_by_the_cold_l2_benchmark(monkeypatch, tmp_path):
    timed = []
    time_ms = fpx.tuning.cold_l2_time_ms
    monkeypatch.setattr(fpx.tuning, "cold_l2_time_ms", lambda *a: timed.append(1) or time_ms(*a))
    # an empty inductor cache and a shape no other test compiles: the kernels are tuned now,
    # not loaded with configs an earlier compile picked
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    torch.manual_seed(0)
    layer = fpx.LowBitLinear.from_linear(torch.nn.Linear(1024, 448, bias=False), fpx.INT4, group_size=128).cuda()
    x = torch.randn(1, 1024, device="cuda")
    compiled = torch.compile(layer, fullgraph=True, options=fpx.nn.compile_options("cuda"))
    with fpx.nn.cold_cache_tuning():
        out = compiled(x)
    torch.testing.assert_close(out, x @ layer.dequantize_weight().T, rtol=1e-4, atol=1e-4)
    assert len(timed) >= 2  # the candidates of each reduction, by coordinate descent
