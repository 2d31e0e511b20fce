"""Time one compiled LowBitLinear case under launch configs of our choosing instead of the tuner's.

Research aid for docs/inductor.md (not part of the package). Inductor tunes each Triton
reduction once per compile, and on an H200 the same INT4 code at one row ran anywhere from
17.6 to 26.2 us in different compiles (benchmarks/RESULTS.md, fifth session): this tells the
configs apart from the code. It runs ``benchmarks/linear.py`` in a fresh inductor cache (the
tuner's draw, timed), then again once per candidate, each time with the kernels' tuned configs
rewritten in that cache (the ``.best_config`` file inductor keeps next to each kernel, which a
later compile of the same kernel source loads instead of tuning) and the FX graph cache off (so
that every run generates its kernels anew and reads those files). Every run reports the
configs its kernels launched with, so a candidate the cache did not take shows as "not taken".

    python benchmarks/config_sweep.py --args "--formats INT4 --m 1" \\
        --vary "triton_per:XBLOCK=1,8,64:num_warps=1,2" --vary "triton_red:num_warps=2,8"

``--vary PREFIX:KEY=V,V[:KEY=V,V]`` changes the kernels whose short name (as linear.py prints it,
``triton_red_0``) starts with PREFIX; the candidates are the product of all values given,
the other settings as tuned. KEYs: XBLOCK, R0_BLOCK (looped reductions), num_warps, num_stages.
"""

import argparse
import csv
import glob
import itertools
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run_linear(linear_args: str, cache_dir: str, fx_cache: bool, timeout: int) -> dict:
    """One linear.py process on ``cache_dir``; its CSV row (us, configs), or the failure."""
    with tempfile.NamedTemporaryFile(suffix=".csv", delete=False) as handle:
        csv_path = handle.name
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache_dir)
    if not fx_cache:  # generate the kernels again, so that they read the edited .best_config files
        env.update(TORCHINDUCTOR_FX_GRAPH_CACHE="0", TORCHINDUCTOR_AUTOGRAD_CACHE="0")
    command = [sys.executable, os.path.join(HERE, "linear.py"), *linear_args.split(), "--csv", csv_path]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        with open(csv_path) as handle:
            rows = list(csv.DictReader(handle))
    except subprocess.TimeoutExpired:
        return {"us": float("nan"), "configs": "", "error": f"timed out after {timeout} s"}
    finally:
        os.unlink(csv_path)
    if not rows:
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        return {"us": float("nan"), "configs": "", "error": " | ".join(tail)[:300]}
    return {"us": float(rows[0]["us"]), "configs": rows[0]["configs"], "error": ""}


def write_json(path: str, data: dict) -> None:
    """Write ``data`` to ``path`` and close it before the next linear.py process reads it."""
    with open(path, "w") as handle:
        json.dump(data, handle)


def kernel_name(source_path: str) -> str | None:
    """The short name (``triton_red_0``) of the Triton pointwise or reduction kernel in a file
    of inductor's cache, else None."""
    with open(source_path, errors="replace") as handle:
        text = handle.read()
    marker = "'kernel_name': '"
    if marker not in text:
        return None
    parts = text.split(marker, 1)[1].split("'", 1)[0].split("_")
    return "_".join(parts[:2] + parts[-1:]) if parts[1] in ("red", "per", "poi") else None


def kernel_files(cache_dir: str) -> dict[str, str]:
    """Short kernel name -> its ``.best_config`` path, for the kernels tuned into ``cache_dir``.
    Inductor writes each kernel's tuned config into the kernel's own directory (named after the
    start of its source hash), under the kernel file's name (torch 2.11) or a hash of it (2.13):
    a directory with one kernel and one config maps them without knowing which."""
    found = {}
    for path in glob.glob(os.path.join(cache_dir, "**", "*.best_config"), recursive=True):
        directory = os.path.dirname(path)
        same_name = os.path.splitext(path)[0] + ".py"
        sources = [same_name] if os.path.exists(same_name) else glob.glob(os.path.join(directory, "*.py"))
        configs = glob.glob(os.path.join(directory, "*.best_config"))
        names = [n for n in map(kernel_name, sources) if n]
        if len(names) == 1 and (len(configs) == 1 or sources == [same_name]):
            found[names[0]] = path
        else:
            print(f"skipped {path}: {len(names)} kernels, {len(configs)} configs in its directory", flush=True)
    return found


def launched_configs(configs: str) -> dict[str, dict[str, int]]:
    """linear.py's configs column (``triton_red_0: R0_BLOCK=32,XBLOCK=8 w2 s1; ...``) as
    {kernel: {key: value}} with the keys of --vary."""
    launched = {}
    for entry in filter(None, configs.split("; ")):
        name, _, settings = entry.partition(": ")
        sizes, warps, stages = settings.rsplit(" ", 2)
        values = dict(item.split("=") for item in sizes.split(",") if "=" in item)
        values.update(num_warps=warps[1:], num_stages=stages[1:])
        launched[name] = {key: int(value) for key, value in values.items()}
    return launched


def parse_vary(spec: str) -> tuple[str, list[tuple[str, list[int]]]]:
    """``PREFIX:KEY=V,V:KEY=V`` -> (PREFIX, [(KEY, [V, V]), (KEY, [V])])."""
    prefix, *settings = spec.split(":")
    if not settings:
        raise ValueError(f"--vary {spec!r}: expected PREFIX:KEY=V,V[:KEY=V,V]")
    keys = []
    for setting in settings:
        key, _, values = setting.partition("=")
        if key not in ("XBLOCK", "R0_BLOCK", "num_warps", "num_stages") or not values:
            raise ValueError(f"--vary {spec!r}: unknown or empty setting {setting!r}")
        keys.append((key, [int(v) for v in values.split(",")]))
    return prefix, keys


def candidates(varies, names):
    """Every combination of the values of ``varies`` as {kernel name: {key: value}}."""
    axes = []  # (kernel names, key, values)
    for prefix, keys in varies:
        matched = [n for n in names if n.startswith(prefix)]
        if not matched:
            raise ValueError(f"--vary {prefix!r}: no tuned kernel starts with it (kernels: {sorted(names)})")
        axes += [(matched, key, values) for key, values in keys]
    for values in itertools.product(*(axis[2] for axis in axes)):
        edits = {}
        for (matched, key, _), value in zip(axes, values):
            for name in matched:
                edits.setdefault(name, {})[key] = value
        yield edits


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--args", default="--formats INT4 --m 1", help="linear.py arguments: one format, one M")
    parser.add_argument("--vary", action="append", default=[], help="PREFIX:KEY=V,V[:KEY=V,V] (repeatable)")
    parser.add_argument("--repeat-tuned", type=int, default=1, help="runs of the tuner's own configs again")
    parser.add_argument("--timeout", type=int, default=150, help="seconds per linear.py run")
    args = parser.parse_args()
    varies = [parse_vary(spec) for spec in args.vary]
    cache_dir = tempfile.mkdtemp(prefix="config_sweep_")
    first = run_linear(args.args, cache_dir, fx_cache=True, timeout=args.timeout)
    print(f"tuned (compiled and tuned): {first['us']:.1f} us  {first['configs']}  {first['error']}", flush=True)
    files = kernel_files(cache_dir)
    if not files:
        sys.exit("no tuned Triton kernel found in the inductor cache (CUDA only)")
    originals = {}
    for name, path in files.items():
        with open(path) as handle:
            originals[name] = json.load(handle)
    results = [("tuned", first)]
    for i in range(args.repeat_tuned):
        again = run_linear(args.args, cache_dir, fx_cache=False, timeout=args.timeout)
        print(f"tuned, again {i + 1}: {again['us']:.1f} us  {again['configs']}  {again['error']}", flush=True)
        results.append(("tuned again", again))
    for edits in candidates(varies, files):
        for name, path in files.items():
            config = dict(originals[name], **edits.get(name, {}), found_by_coordesc=True)
            write_json(path, config)
        label = "; ".join(f"{n} " + ",".join(f"{k}={v}" for k, v in e.items()) for n, e in sorted(edits.items()))
        result = run_linear(args.args, cache_dir, fx_cache=False, timeout=args.timeout)
        launched = launched_configs(result["configs"])
        wanted = all(launched.get(n, {}).get(k) == v for n, e in edits.items() for k, v in e.items())
        note = result["error"] or ("" if wanted else "not taken")
        print(f"{label}: {result['us']:.1f} us  {result['configs']}  {note}", flush=True)
        results.append((label, result))
    for name, path in files.items():
        write_json(path, originals[name])
    print(f"\n{'us':>7}  candidate (fastest first)")
    for label, result in sorted(results, key=lambda r: (r[1]["us"] != r[1]["us"], r[1]["us"])):
        print(f"{result['us']:7.1f}  {label}  [{result['configs']}]")


if __name__ == "__main__":
    main()
