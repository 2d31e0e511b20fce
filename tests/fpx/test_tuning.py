"""fpx.nn.cold_cache_tuning: inductor's tuner times Triton configs, matmul template candidates and
the prologue-fusion choice with fpx.tuning's benchmark inside the block, and with its own
everywhere else."""

import contextlib
import warnings

import pytest
import torch
from torch._inductor.runtime import benchmarking
from torch._inductor.template_heuristics.triton import CUDAMMTemplateConfigHeuristic

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
    {"is_vetted_benchmarking": True},  # a Triton launch config
    {},  # a matmul template's candidate, or the prologue-fusion choice
    {"is_vetted_benchmarking": False},
    {"return_mode": "median"},
])
def test_plain_timings_vetted_or_not_go_through_the_cold_l2_benchmark(recording, monkeypatch, kwargs):
    timed = pretend_cold_timings(monkeypatch)

    def kernel():
        pass

    with fpx.nn.cold_cache_tuning():
        assert benchmarking.benchmarker.benchmark_gpu(kernel, **kwargs) == 3.0
    assert timed == [kernel] and recording.calls == []


@pytest.mark.parametrize("args, kwargs", [
    ((), {"is_vetted_benchmarking": True, "quantiles": (0.5, 0.2)}),
    ((), {"is_vetted_benchmarking": True, "return_mode": "all"}),
    ((), {"is_vetted_benchmarking": True, "grad_to_none": [torch.zeros(1)]}),
    ((), {"quantiles": (0.5,)}),
    ((torch.zeros(1),), {"is_vetted_benchmarking": True}),  # a callable with arguments
])
def test_timings_other_than_plain_ones_keep_inductors_benchmark(recording, monkeypatch, args, kwargs):
    timed = pretend_cold_timings(monkeypatch)
    with fpx.nn.cold_cache_tuning():
        assert benchmarking.benchmarker.benchmark_gpu(lambda *a: None, *args, **kwargs) == 1.0
    assert timed == [] and recording.calls == [kwargs]


def test_in_inductors_deterministic_mode_unvetted_timings_stay_inductors(recording, monkeypatch):
    # Inductor refuses unvetted timings in its deterministic mode; the block must not time them.
    from torch._inductor import config

    timed = pretend_cold_timings(monkeypatch)
    monkeypatch.setattr(config, "deterministic", True)
    with fpx.nn.cold_cache_tuning():
        assert benchmarking.benchmarker.benchmark_gpu(lambda: None) == 1.0
        assert benchmarking.benchmarker.benchmark_gpu(lambda: None, is_vetted_benchmarking=True) == 3.0
    assert recording.calls == [{}] and len(timed) == 1


@pytest.mark.skipif(HAS_CUDA, reason="the CPU fallback: without CUDA every timing stays inductor's")
def test_without_cuda_vetted_timings_keep_inductors_benchmark(recording):
    with fpx.nn.cold_cache_tuning():
        benchmarking.benchmarker.benchmark_gpu(lambda: None, is_vetted_benchmarking=True)
    assert recording.calls == [{"is_vetted_benchmarking": True}]


def pretend_one_cuda_device(monkeypatch, l2_bytes: int) -> None:
    """On any machine: CUDA available, device 0 current, its L2 ``l2_bytes``."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: type("P", (), {"L2_cache_size": l2_bytes}))


def pretend_cold_timings(monkeypatch) -> list:
    """A CUDA device pretended (see pretend_one_cuda_device) and cold_l2_time_ms recorded, not
    run: the list of the callables it timed."""
    timed = []
    pretend_one_cuda_device(monkeypatch, 64)
    real_empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda n, dtype, device: real_empty(n, dtype=dtype))
    monkeypatch.setattr(fpx.tuning, "cold_l2_time_ms", lambda fn, flush, reps: timed.append(fn) or 3.0)
    return timed


def test_without_room_for_the_eviction_buffer_a_warning_and_inductors_benchmark(recording, monkeypatch):
    # A device as full as a serving process keeps it: the 4x L2 buffer does not fit.
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    pretend_one_cuda_device(monkeypatch, 50 * 2**20)
    monkeypatch.setattr(torch, "empty", out_of_memory)
    with fpx.nn.cold_cache_tuning():
        with pytest.warns(UserWarning, match="no room for the 200 MiB eviction buffer on cuda:0"):
            assert benchmarking.benchmarker.benchmark_gpu(lambda: None, is_vetted_benchmarking=True) == 1.0
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no second try, no second warning
            assert benchmarking.benchmarker.benchmark_gpu(lambda: None, is_vetted_benchmarking=True) == 1.0
    assert recording.calls == [{"is_vetted_benchmarking": True}] * 2


def test_each_timing_gets_a_fresh_eviction_buffer_that_nothing_keeps(recording, monkeypatch):
    # Inductor's CUDA graphs tune a model's first call inside their memory pool and refuse any
    # tensor the call leaves alive there: the buffer must die with its timing, not the block.
    import weakref

    made, alive_after = [], []
    pretend_one_cuda_device(monkeypatch, 64)
    real_empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda n, dtype, device: made.append((n, dtype, device)) or real_empty(n, dtype=dtype))
    monkeypatch.setattr(fpx.tuning, "cold_l2_time_ms", lambda fn, flush, reps: alive_after.append(weakref.ref(flush)) or 3.0)
    with fpx.nn.cold_cache_tuning():
        for _ in range(2):
            assert benchmarking.benchmarker.benchmark_gpu(lambda: None, is_vetted_benchmarking=True) == 3.0
            assert alive_after[-1]() is None  # freed when the timing returned
    n = fpx.tuning.FLUSH_L2_MULTIPLE * 64 // 4
    assert made == [(n, torch.int32, "cuda:0")] * 2 and recording.calls == []


@pytest.mark.cuda
def test_vetted_timings_go_through_the_cold_l2_benchmark(recording, monkeypatch):
    timed = []

    def cold_l2_time_ms(fn, flush, reps):
        timed.append((flush.nbytes, reps, torch.cuda.memory_allocated()))
        return 2.0

    monkeypatch.setattr(fpx.tuning, "cold_l2_time_ms", cold_l2_time_ms)
    before = torch.cuda.memory_allocated()
    with fpx.nn.cold_cache_tuning(reps=7):
        assert benchmarking.benchmarker.benchmark_gpu(lambda: None, is_vetted_benchmarking=True) == 2.0
        assert torch.cuda.memory_allocated() == before  # the buffer freed after each timing
        assert benchmarking.benchmarker.benchmark_gpu(lambda: None, is_vetted_benchmarking=True) == 2.0
    assert recording.calls == []
    l2_bytes = torch.cuda.get_device_properties().L2_cache_size
    assert [reps for _, reps, _ in timed] == [7, 7]
    for nbytes, _, during in timed:
        assert nbytes >= fpx.tuning.FLUSH_L2_MULTIPLE * l2_bytes - 4
        assert during >= before + nbytes
    assert torch.cuda.memory_allocated() == before


@pytest.mark.cuda
def test_a_model_under_inductors_cuda_graphs_tunes_its_first_call_in_the_block(monkeypatch, tmp_path):
    # With triton.cudagraphs the first call runs, and its kernels are tuned, inside the graphs'
    # memory pool, which refuses a tensor the call leaves alive: an eviction buffer kept for the
    # block failed there ("tensor(s) in the cudagraph pool not tracked as outputs").
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # tuned now, not loaded
    torch.manual_seed(0)
    layer = fpx.LowBitLinear.from_linear(torch.nn.Linear(1024, 320, bias=False), fpx.INT4, group_size=128).cuda()
    options = {**fpx.nn.compile_options("cuda"), "triton.cudagraphs": True}
    compiled = torch.compile(layer, fullgraph=True, options=options)
    x = torch.randn(1, 1024, device="cuda")
    expected = x @ layer.dequantize_weight().T
    with fpx.nn.cold_cache_tuning():
        first = compiled(x).clone()
    torch.testing.assert_close(first, expected, rtol=1e-4, atol=1e-4)
    for _ in range(3):  # recorded, then replayed
        torch.testing.assert_close(compiled(x), expected, rtol=1e-4, atol=1e-4)


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


# Coordinate descent inside the block: configs that would spill are skipped uncompiled, and a
# converged walk tries wider programs. inductor's CoordescTuner is plain Python: driven here by
# a timing table instead of compiled kernels.

from torch._inductor.runtime.coordinate_descent_tuner import CoordescTuner  # noqa: E402

# The INT4 one-row dot-product kernel's sizes: 8192 rows x 32 segments of 128 bytes.
SIZE_HINTS = {"x": 262144, "r0_": 128}


class Config:
    """A stand-in for triton.Config: what inductor's tuner reads of one."""

    def __init__(self, num_warps=4, num_stages=1, **kwargs):
        self.kwargs, self.num_warps, self.num_stages = kwargs, num_warps, num_stages

    def key(self):
        return self.kwargs.get("XBLOCK"), self.kwargs.get("R0_BLOCK"), self.num_warps


def reduction(xblock, r0_block, warps, r0=None):
    """A reduction's config; ``r0``: the size of the reduction its tuner sees (hints)."""
    config = Config(XBLOCK=xblock, R0_BLOCK=r0_block, num_warps=warps)
    config.hints = {} if r0 is None else {"r0_": r0}
    return config


def tuner(**size_hints):
    return CoordescTuner(name="triton_red_test", size_hints={**SIZE_HINTS, **size_hints},
                         inductor_meta={"warp_size": 32, "max_threads_per_block": 1024,
                                        "coordinate_descent_check_all_directions": True})


@pytest.mark.parametrize("config, hints, warp_size, expected", [
    (reduction(128, 128, 8), SIZE_HINTS, 32, 128 * 128 / 256),
    (reduction(16, 64, 2), SIZE_HINTS, 32, 16 * 64 / 64),
    (Config(XBLOCK=8, num_warps=2), {"x": 8192, "r0_": 32}, 32, 8 * 32 / 64),  # persistent: all of r0
    (Config(XBLOCK=1024, num_warps=4), {"x": 2**20}, 32, 1024 / 128),  # pointwise
    (Config(YBLOCK=32, XBLOCK=64, num_warps=4), {"y": 64, "x": 4096}, 32, 32 * 64 / 128),
    (reduction(128, 128, 8), SIZE_HINTS, 64, 128 * 128 / 512),
    (Config(BLOCK_M=16, BLOCK_N=64, BLOCK_K=128), {}, 32, None),  # a matmul's
    (Config(XBLOCK_0=64, XBLOCK_1=8), {}, 32, None),  # a combo kernel's
])
def test_values_per_thread(config, hints, warp_size, expected):
    assert fpx.tuning.values_per_thread(config, hints, warp_size) == expected


@pytest.mark.parametrize("config, valid", [
    (reduction(128, 128, 8), True),  # 64 per thread, one trip: the INT4 optimum
    (reduction(128, 128, 4), False),  # 128
    (reduction(64, 128, 2), False),  # 128
    (reduction(128, 64, 8), True),  # 32, looped
    (reduction(16, 64, 2), True),  # 16, looped: the INT4 plateau
    (reduction(128, 64, 4), False),  # 64, looped: over half the limit
    (reduction(64, 64, 2), False),  # 64, looped
    (Config(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, num_warps=1), True),  # not ours to judge
    # A per-channel layer's segment of 4096 bytes
    (reduction(8, 512, 4, r0=4096), True),  # 32, looped
    (reduction(8, 1024, 4, r0=4096), False),  # 64, looped: over half the limit
    (reduction(1, 4096, 2, r0=4096), True),  # 64, one trip
    (reduction(1, 4096, 1, r0=4096), False),  # 128, one trip
])
def test_configs_that_would_spill_are_invalid_inside_the_block(config, valid):
    inside_tuner = tuner(**getattr(config, "hints", {}))
    assert inside_tuner.is_valid_config(config)  # inductor's own verdict
    with fpx.nn.cold_cache_tuning():
        assert inside_tuner.is_valid_config(config) is valid
        with fpx.nn.cold_cache_tuning():  # nested: the same verdict
            assert inside_tuner.is_valid_config(config) is valid
        assert inside_tuner.is_valid_config(config) is valid
    with fpx.nn.cold_cache_tuning(max_values_per_thread=None):
        assert inside_tuner.is_valid_config(config)  # no limit
    assert inside_tuner.is_valid_config(config)


def test_the_limit_is_a_parameter():
    with fpx.nn.cold_cache_tuning(max_values_per_thread=128):
        assert tuner().is_valid_config(reduction(128, 128, 4))  # 128
        assert not tuner().is_valid_config(reduction(256, 128, 4))  # 256


@pytest.mark.parametrize("limit", [0, -1, 2.0, True, "64"])
def test_bad_limits_are_refused(limit):
    with pytest.raises(ValueError, match="max_values_per_thread"):
        with fpx.nn.cold_cache_tuning(max_values_per_thread=limit):
            pass


def test_the_tuners_methods_are_restored_after_the_block_and_after_an_error():
    methods = {name: CoordescTuner.__dict__[name] for name in ("is_valid_config", "autotune")}
    with pytest.raises(KeyError):
        with fpx.nn.cold_cache_tuning():
            with fpx.nn.cold_cache_tuning():
                pass
            assert all(CoordescTuner.__dict__[name] is not method for name, method in methods.items())
            raise KeyError("inside")
    assert {name: CoordescTuner.__dict__[name] for name in methods} == methods


def test_wider_programs_of_a_reduction_config():
    with fpx.nn.cold_cache_tuning(max_values_per_thread=None):
        wider = [c.key() for c in fpx.tuning._wider_programs(tuner(), reduction(16, 64, 2))]
    # 2, 4 and 8 times XBLOCK; as many or half as many more warps; R0_BLOCK kept or doubled
    assert sorted(wider) == sorted([(16 * 2**i, r0, 2 * 2**j) for i in (1, 2, 3) for j in (i - 1, i) for r0 in (64, 128)])
    assert list(fpx.tuning._wider_programs(tuner(), Config(XBLOCK=64, num_warps=4))) == []  # not a looped reduction


# Timings (us) of the INT4 dot-product kernel's walk on an H200 where it stopped: every
# neighbour of XBLOCK 16, R0_BLOCK 64, 2 warps is slower, and the optimum is three doublings of
# XBLOCK away. Configs not listed take 30 us.
PLATEAU = {
    (8, 128, 4): 29.8, (16, 128, 4): 26.2, (16, 64, 4): 24.7, (16, 64, 2): 22.46,
    (32, 64, 4): 22.50, (32, 128, 4): 25.1, (64, 128, 8): 22.53, (128, 128, 8): 17.4,
}


def walk(limit_block, start=(8, 128, 4)):
    """Coordinate descent (looking in all directions, as fpx.nn.compile_options asks) from
    ``start`` over PLATEAU: the config it returns and every config it timed."""
    timed = []

    def time_us(config):
        timed.append(config.key())
        return PLATEAU.get(config.key(), 30.0)

    with limit_block:
        best = tuner().autotune(time_us, reduction(*start), PLATEAU[start])
    return best.key(), timed


def test_descent_alone_stops_on_the_plateau():
    best, _ = walk(contextlib.nullcontext())
    assert best == (16, 64, 2)


def test_inside_the_block_descent_reaches_the_wider_optimum():
    best, timed = walk(fpx.nn.cold_cache_tuning())
    assert best == (128, 128, 8)
    spilling = [(x, r0, w) for x, r0, w in timed if x * r0 / (32 * w) > (32 if r0 < 128 else 64)]
    assert spilling == []  # none of the configs over the limit was timed (or compiled)


def test_a_tuner_without_what_the_wider_step_needs_gets_a_warning_and_is_left_alone(monkeypatch):
    monkeypatch.delattr(CoordescTuner, "value_too_large")
    autotune = CoordescTuner.__dict__["autotune"]
    with pytest.warns(UserWarning, match="cannot be extended here .*value_too_large"):
        with fpx.nn.cold_cache_tuning():
            assert CoordescTuner.__dict__["autotune"] is autotune
            assert CoordescTuner.__dict__["is_valid_config"] is not None  # the limit still applies
            assert not tuner().is_valid_config(reduction(128, 128, 4))


def test_a_tuner_without_a_validity_check_gets_warnings_and_is_left_alone(monkeypatch):
    monkeypatch.delattr(CoordescTuner, "is_valid_config")
    autotune = CoordescTuner.__dict__["autotune"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with fpx.nn.cold_cache_tuning():
            assert "is_valid_config" not in CoordescTuner.__dict__
            assert CoordescTuner.__dict__["autotune"] is autotune
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert any("cannot be given a limit here" in m for m in messages)
    assert any("cannot be extended here" in m for m in messages)


# The matmul template's configs inside the block: narrow tiles for a small batch.


def template_configs(m, n=8192, k=8192, dtype_size=2):
    """(BLOCK_M, BLOCK_N, BLOCK_K, stages, warps) of each config inductor's CUDA matmul heuristic
    generates for an (m, k) x (k, n) product (bfloat16 by default)."""
    generate = CUDAMMTemplateConfigHeuristic()._get_config_generator()
    return [(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.kwargs["BLOCK_K"], c.num_stages, c.num_warps)
            for c in generate(m, n, k, dtype_size=dtype_size, op_name="mm")]


@pytest.fixture
def inductors_list(monkeypatch):
    """Inductor's own config list replaced by one recognizable config (inductor's list needs a
    graph being compiled): the generator the block falls back to. Configs are plain records
    here (triton.Config needs Triton, which a CPU build of torch may lack)."""
    from types import SimpleNamespace

    monkeypatch.setattr(CUDAMMTemplateConfigHeuristic, "triton_config", lambda heuristic, num_stages, num_warps, **kwargs:
                        SimpleNamespace(kwargs=kwargs, num_stages=num_stages, num_warps=num_warps))
    def own_list(heuristic):
        def configs_for(m, n, k, **kwargs):
            yield heuristic.triton_config(3, 8, BLOCK_M=128, BLOCK_N=128, BLOCK_K=32, GROUP_M=8)
        return configs_for
    monkeypatch.setattr(CUDAMMTemplateConfigHeuristic, "_get_config_generator", own_list)
    return [(128, 128, 32, 3, 8)]


@pytest.mark.parametrize("m, block_m", [(1, 16), (16, 16), (17, 32), (33, 64), (64, 64), (65, 128), (128, 128)])
def test_inside_the_block_a_small_batch_gets_narrow_tiles(inductors_list, m, block_m):
    with fpx.nn.cold_cache_tuning():
        configs = template_configs(m)
    # tiles of the batch's power of 2, and at 17-32 rows also the 64-row list's 64 x 64 x 256
    # (rows past the batch masked; INT8 by 128 at 32 rows ran faster in it on an H200)
    allowed = {block_m, 64} if block_m == 32 else {block_m}
    assert configs != inductors_list and configs[0][0] == block_m and {c[0] for c in configs} <= allowed
    assert min(bn for _, bn, _, _, _ in configs) <= 32  # narrower than inductor's own at 16 rows
    if block_m == 16:  # warps above inductor's cap of one per 16 x 16 output tile (16 x 16 x
        # 128, 2 warps: the fastest fused INT4 program at 16 rows on an H200)
        assert (16, 16, 128, 5, 2) in configs
    assert template_configs(m) == inductors_list  # outside the block: inductor's list again


def test_inside_the_block_a_larger_batch_keeps_inductors_list(inductors_list):
    with fpx.nn.cold_cache_tuning():
        assert template_configs(129) == inductors_list
        assert template_configs(4096) == inductors_list


@pytest.mark.parametrize("n", [16, 24, 32])
def test_inside_the_block_the_left_routes_product_gets_64_row_tiles(inductors_list, n):
    # (W @ x.T): the weight's 8192 rows by x's few rows as columns
    with fpx.nn.cold_cache_tuning():
        configs = template_configs(8192, n=n)
        assert template_configs(8192, n=fpx.tuning.FEW_COLUMNS + 1) == inductors_list
    assert configs != inductors_list and all(c[0] == 64 and c[1] <= 32 for c in configs), configs
    assert template_configs(8192, n=n) == inductors_list  # outside the block: inductor's list again


# (W @ x.T) at 33-128 rows of x: inductor's fastest four for the columns' bound instead of its
# whole list (19-20 configs), which each plane of LowBitLinear._plane_products compiled (INT2 at
# 64 rows: 125 s -> 26 s; at 128 rows after 96 in one process: 107 s -> 63 s)
@pytest.mark.parametrize("n, least, most", [(33, 32, 64), (48, 32, 64), (64, 32, 64), (65, 64, 128), (96, 64, 128),
                                            (128, 64, 128)])
def test_inside_the_block_the_left_routes_product_of_up_to_128_columns_gets_a_short_list(inductors_list, n, least,
                                                                                       most):
    with fpx.nn.cold_cache_tuning():
        configs = template_configs(8192, n=n)
    assert configs and configs != inductors_list, configs
    assert all(c[0] in (64, 128) and least <= c[1] <= most for c in configs), configs
    assert (64, most, 128) in [c[:3] for c in configs]


def test_inside_the_block_a_symbolic_batch_keeps_inductors_list(inductors_list):
    import sympy

    with fpx.nn.cold_cache_tuning():
        assert template_configs(sympy.Symbol("s0", positive=True, integer=True)) == inductors_list


def test_small_batch_tiles_fit_small_products():
    for m, n, k in [(1, 8, 32), (16, 24, 8192), (64, 8192, 40)]:
        tiles = fpx.tuning.small_batch_tiles(m, n, k)
        assert tiles and len(set(tiles)) == len(tiles)
        for bm, bn, bk, _, _ in tiles:
            assert 16 <= bm < 2 * max(m, 16) and 16 <= bn < 2 * max(n, 16) and 16 <= bk < 2 * max(k, 16)


@pytest.mark.parametrize("m, n", [(8192, 24), (4096, 32), (129, 1), (8192, 16)])
def test_products_of_many_rows_by_few_columns_get_64_row_tiles(m, n):
    # LowBitLinear's left route: the weight's rows by x's few rows
    tiles = fpx.tuning.small_batch_tiles(m, n, 8192)
    assert tiles and len(set(tiles)) == len(tiles)
    assert all(bm == 64 and 16 <= bn < 2 * max(n, 16) for bm, bn, _, _, _ in tiles), tiles


@pytest.mark.parametrize("n, least, most", [(33, 32, 64), (40, 32, 64), (64, 32, 64), (65, 64, 128), (100, 64, 128),
                                            (128, 64, 128)])
def test_products_of_many_rows_by_33_to_128_columns_get_their_bounds_tiles(n, least, most):
    tiles = fpx.tuning.small_batch_tiles(8192, n, 8192)
    assert tiles and len(set(tiles)) == len(tiles)
    assert all(bm in (64, 128) and least <= bn <= most for bm, bn, _, _, _ in tiles), tiles
    assert tiles != fpx.tuning.small_batch_tiles(8192, least, 8192)


@pytest.mark.parametrize("n", [33, 48, 64])
def test_weights_of_fewer_rows_get_narrower_tiles_too_at_33_to_64_columns(n):
    # 4096 x 64 in 64 x 64 tiles is 64 programs for 132 SMs: 64 x 32 doubles them.
    many = fpx.tuning.small_batch_tiles(fpx.tuning.SMALL_WEIGHT_ROWS, n, 8192)
    fewer = fpx.tuning.small_batch_tiles(fpx.tuning.SMALL_WEIGHT_ROWS - 1, n, 8192)
    assert (64, 32, 128, 5, 4) in fewer and (64, 32, 128, 5, 4) not in many
    assert fewer[:len(many)] == many and len(set(fewer)) == len(fewer)
    assert fpx.tuning.small_batch_tiles(4096, 96, 8192) == fpx.tuning.small_batch_tiles(8192, 96, 8192)
    assert fpx.tuning.small_batch_tiles(4096, 32, 8192) == fpx.tuning.small_batch_tiles(8192, 32, 8192)


def test_products_of_many_rows_by_more_columns_keep_inductors_tiles():
    assert fpx.tuning.small_batch_tiles(8192, fpx.tuning.FEW_COLUMNS + 1, 8192) == ()
    assert fpx.tuning.small_batch_tiles(129, 8192, 8192) == ()


def test_the_matmul_configs_are_restored_after_an_error(inductors_list):
    generator = CUDAMMTemplateConfigHeuristic.__dict__.get("_get_config_generator")
    with pytest.raises(KeyError):
        with fpx.nn.cold_cache_tuning():
            assert CUDAMMTemplateConfigHeuristic.__dict__.get("_get_config_generator") is not generator
            assert template_configs(16) != inductors_list
            raise KeyError("inside")
    assert CUDAMMTemplateConfigHeuristic.__dict__.get("_get_config_generator") is generator
    assert template_configs(16) == inductors_list


def test_tiles_are_given_inside_nested_blocks_until_the_outer_one_closes(inductors_list):
    narrow = list(fpx.tuning.small_batch_tiles(16, 8192, 8192))
    assert template_configs(16) == inductors_list
    with fpx.tuning.matmul_template_tiles(fpx.tuning.small_batch_tiles):
        with fpx.nn.cold_cache_tuning():
            assert template_configs(16) == narrow
        assert template_configs(16) == narrow
    assert template_configs(16) == inductors_list


def test_without_inductors_matmul_heuristics_a_warning_and_its_own_configs(monkeypatch, inductors_list):
    import sys

    monkeypatch.setitem(sys.modules, "torch._inductor.template_heuristics.triton", None)  # import fails
    with pytest.warns(UserWarning, match="matmul configs cannot be extended here"):
        with fpx.nn.cold_cache_tuning():
            assert template_configs(16) == inductors_list  # inductor's own tiles: none given


@pytest.mark.parametrize("dtype_size", [2, 4])
def test_inside_the_block_narrow_tiles_keep_the_stages_that_fit_in_shared_memory(inductors_list, monkeypatch, dtype_size):
    available = 99 * 1024  # a GPU with less shared memory than an H100's 227 KiB
    monkeypatch.setattr(fpx.tuning, "_shared_memory_per_block", lambda: available)
    with fpx.nn.cold_cache_tuning():
        configs = template_configs(64, dtype_size=dtype_size)
    wanted = {(bm, bn, bk, warps) for bm, bn, bk, _, warps in fpx.tuning.small_batch_tiles(64, 8192, 8192)
              if dtype_size * (bm * bk + bk * bn) + 128 <= available}  # one stage fits, or it is dropped
    assert len(wanted) == (3 if dtype_size == 4 else 4)  # float32's 64 x 64 x 256: 128 KiB a stage
    assert {(bm, bn, bk, warps) for bm, bn, bk, _, warps in configs} == wanted
    for bm, bn, bk, stages, _ in configs:
        per_stage = dtype_size * (bm * bk + bk * bn)
        assert stages * per_stage + 128 <= available  # fits
        assert stages == 5 or (stages + 1) * per_stage + 128 > available  # and no stage more would


def test_where_no_given_tile_fits_inductors_own_list_is_kept(inductors_list, monkeypatch):
    monkeypatch.setattr(fpx.tuning, "_shared_memory_per_block", lambda: 1024)  # not one stage of any
    with fpx.nn.cold_cache_tuning():
        configs = template_configs(64)
    assert configs == inductors_list


@pytest.mark.parametrize("device", ["cpu", "cuda"], ids=["for-cpu", "for-gpu"])  # run on CPU too
def test_compile_options_are_inductor_options_of_this_torch(device):
    # torch.compile takes the options as a patch of inductor's config, which raises on a name
    # this torch does not have (CI runs torch 2.13 on CPU, the GPU machine 2.11): checked here
    # for the CUDA options too, which no CPU compile reads.
    options = fpx.nn.compile_options(device)
    with torch._inductor.config.patch(options):
        assert all(getattr(torch._inductor.config, name) == value for name, value in options.items())
    if device == "cuda":
        # the left route's product at a row count not a multiple of 4 must stay unpadded
        # (docs/inductor.md, "Shape padding and the left route")
        assert options["shape_padding"] is False


# ---- marked decodes kept apart (fpx.tuning.marked_decodes_kept_apart) --------------------------
class FakeNode:
    """A scheduler node as the rule reads it: its operation names."""

    def __init__(self, *names):
        self.names = set(names)

    def get_operation_names(self):
        return self.names


class FakeGraph:
    def __init__(self, marked):
        self.invoke_quant_ops = set(marked)


def test_marked_decodes_are_kept_apart_inside_the_block_only():
    from torch._inductor.choices import InductorChoices
    from torch._inductor.virtualized import V

    calls = []

    class Recording(InductorChoices):  # a user's handler, with state of its own
        def __init__(self):
            self.mark = "kept"

        def can_fuse_horizontal(self, scheduler, node1, node2, shared_data_score):
            calls.append((node1, node2))
            return True

    decode_low, decode_high, other = FakeNode("op1"), FakeNode("op2"), FakeNode("op3")
    with V.set_choices_handler(Recording()), V.set_graph_handler(FakeGraph({"op1", "op2"})):
        assert V.choices.can_fuse_horizontal(None, decode_low, decode_high, 100)
        assert not fpx.tuning.marked_decodes_apart_here()
        with fpx.nn.cold_cache_tuning():
            assert fpx.tuning.marked_decodes_apart_here()
            assert isinstance(V.choices, Recording) and V.choices.mark == "kept"
            calls.clear()
            assert not V.choices.can_fuse_horizontal(None, decode_low, decode_high, 100)
            assert calls == []  # refused by the rule, not asked of the user's handler
            assert V.choices.can_fuse_horizontal(None, decode_low, other, 100)
            assert calls == [(decode_low, other)]  # everything else: the user's handler decides
            with fpx.tuning.marked_decodes_kept_apart():  # nested: the same handler
                assert not V.choices.can_fuse_horizontal(None, decode_high, decode_low, 100)
        assert type(V.choices) is Recording
        assert V.choices.can_fuse_horizontal(None, decode_low, decode_high, 100)
    assert not fpx.tuning.marked_decodes_apart_here()


def test_a_decode_already_fused_is_kept_apart_from_another_marked_decode():
    # A template with one plane's decode as its prologue, offered a horizontal join with the
    # other plane's decode (they read the same bytes): refused, either way round; on torch
    # 2.11 the join's benchmark raised CantSplit out of the compile. Unmarked nodes are left
    # to the handler, fused with a marked decode or not.
    from torch._inductor.choices import InductorChoices
    from torch._inductor.virtualized import V

    class Fusing(InductorChoices):
        @staticmethod
        def can_fuse_horizontal(scheduler, node1, node2, shared_data_score):
            return True

    with V.set_choices_handler(Fusing()), V.set_graph_handler(FakeGraph({"op1", "op2"})):
        with fpx.tuning.marked_decodes_kept_apart():
            template_with_prologue, decode, other = FakeNode("op1", "template"), FakeNode("op2"), FakeNode("op3")
            assert not V.choices.can_fuse_horizontal(None, template_with_prologue, decode, 100)
            assert not V.choices.can_fuse_horizontal(None, decode, template_with_prologue, 100)
            assert not V.choices.can_fuse_horizontal(None, FakeNode("op1"), decode, 100)
            assert V.choices.can_fuse_horizontal(None, template_with_prologue, other, 100)
            assert V.choices.can_fuse_horizontal(None, FakeNode("op3", "op4"), decode, 100)
    with V.set_choices_handler(Fusing()), V.set_graph_handler(object()):  # a torch that marks nothing
        with fpx.tuning.marked_decodes_kept_apart():
            assert V.choices.can_fuse_horizontal(None, FakeNode("op1"), FakeNode("op2"), 100)


def test_the_answer_is_taken_while_tracing_with_no_guard():
    # A model compiled inside the block keeps its graph outside it: no recompilation.
    def route(x):
        return x + 1 if fpx.tuning.marked_decodes_apart_here() else x - 1

    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    compiled = torch.compile(route, fullgraph=True, backend="eager")
    x = torch.zeros(3)
    with fpx.tuning.marked_decodes_kept_apart():
        assert torch.equal(compiled(x), x + 1)
    assert torch.equal(compiled(x), x + 1)
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    torch._dynamo.reset()


def test_template_choices_are_precompiled_in_threads_inside_the_block_only(monkeypatch):
    # Inductor sends a template's choices to its compile workers where use_process_pool() is
    # true (its pool up) and then compiles each again in this process to benchmark it; inside
    # the block the choices are submitted with use_process_pool() false: threads here. The
    # pool's answer elsewhere is left alone.
    from torch._inductor import async_compile, select_algorithm

    seen = []

    def recording_precompile_fn(self, choices, name, *args, **kwargs):
        seen.append((name, async_compile.AsyncCompile.use_process_pool()))
        return lambda: {}

    monkeypatch.setattr(select_algorithm.AlgorithmSelectorCache, "make_precompile_fn", recording_precompile_fn)
    monkeypatch.setattr(async_compile.AsyncCompile, "use_process_pool", classmethod(lambda cls: True))
    selector = select_algorithm.AlgorithmSelectorCache()
    with fpx.nn.cold_cache_tuning():
        assert async_compile.AsyncCompile.use_process_pool()  # outside the precompile step: the pool
        selector.make_precompile_fn([], "inside", "key")
        with pytest.raises(RuntimeError, match="raised"):
            with fpx.tuning.template_choices_precompiled_here():  # nested, then an error
                raise RuntimeError("raised")
        selector.make_precompile_fn([], "inside again", "key")
    selector.make_precompile_fn([], "outside", "key")
    assert seen == [("inside", False), ("inside again", False), ("outside", True)]
    assert async_compile.AsyncCompile.use_process_pool()


def test_a_torch_without_the_precompile_step_runs_the_block_unchanged(monkeypatch):
    from torch._inductor import select_algorithm

    monkeypatch.delattr(select_algorithm.AlgorithmSelectorCache, "make_precompile_fn")
    with fpx.nn.cold_cache_tuning():
        assert not hasattr(select_algorithm.AlgorithmSelectorCache, "make_precompile_fn")
