"""INT4 as one matmul per nibble plane, each plane's decode fused into its own template.

Research probe for docs/inductor.md ("Levers not yet tried": one product per plane, with
inductor's horizontal fusion refused). Not part of the package. The layer's planar byte holds
W[n, j] in its low nibble and W[n, j + K/2] in its high one, so its template's decode takes
the nibble by a shift computed from k; the shift keeps the decoded tile out of the MMA
operand's registers and costs instructions (offline, 16 x 16 x 128, 2 warps, per weight: per
channel 8.66 today against 6.50 for the low plane alone, no shared-memory store; by 128 9.69
against 8.16 / 8.66). As two products,

    y = addmm(x[:, :K/2] @ low(P).T, x[:, K/2:], high(P).T)   (then * scale per channel)

each decode has a constant shift. The nineteenth session built that and inductor fused the two
decodes with each other first (they read the same bytes), so neither reached its template and
the weight was written out. Here ``--refuse-sibling-decodes`` installs an ``InductorChoices``
(``V.set_choices_handler``, for this compile only) whose ``can_fuse_horizontal`` refuses to
join two nodes that both read a uint8 graph input, so each decode can only fuse into its own
template. Prints the time against the layer's (``cold_cache_tuning``, CUDA-graph replays of
cycled weights), the kernel count and the error against the layer's weight in float64:

    python benchmarks/probe_plane_products.py --m 16 --group-size 0 --refuse-sibling-decodes
    python benchmarks/probe_plane_products.py --m 64 --group-size 0 --refuse-sibling-decodes --left
    python benchmarks/probe_plane_products.py --device cpu --shape 512x1024   # numerics only

On CPU the hook is consulted and refuses (checked with torch 2.13), but the C++ backend puts
nodes of one loop nest in one kernel at code generation anyway; only the CUDA kernels tell.

Predicted (twenty-eighth session, from the offline counts and the per-channel 8-bit loops'
24.1 us at 5.50 per weight): INT4 per channel at 16 rows of 8192 x 8192 40.4 -> about 31 us
with the refusal (2 templates); without it, 3 kernels and slower than the layer (the
nineteenth session's 87 us). On the left at 64 rows (offline, 64 x 64 x 128, 4 warps: 7.20
per weight with a store today, 5.83 / 6.33 for the planes, no store; per-channel INT8 on the
left runs 6.45 in 42.0 us): 52.1 -> about 40 us, 0.9x of bf16.

Measured (twenty-ninth session, H200, torch 2.11; planes / the layer then, us): 16 rows 28.0
/ 40.7 (2 kernels; without the refusal 3 kernels, 87.1), 64 rows on the left 38.7 / 51.4 (3
kernels), INT4 by 128 at 16 rows 48.7 / 44.2; more in benchmarks/RESULTS.md. The layer takes
the planes since (fpx.nn.LowBitLinear._plane_products, inside fpx.nn.cold_cache_tuning).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fpx  # noqa: E402
from fpx.fields import _int_field_values  # noqa: E402
from fpx.nn import LowBitLinear, compile_options  # noqa: E402


def nibble_plane(packed: torch.Tensor, high: bool) -> torch.Tensor:
    """INT4 codes of one nibble plane of the planar bytes (N, K/2), as bfloat16 values, by the
    layer's own field decode (:func:`fpx.fields._int_field_values`: the nibble placed under
    2^7's exponent, no conversion) at a constant position."""
    if high:
        return _int_field_values((packed >> 4).to(torch.int32), 4, True, dtype=torch.bfloat16)
    return _int_field_values(packed.to(torch.int32), 4, True, masked=True, dtype=torch.bfloat16)


def plane_products(x, packed, scale, group_size, left=False):
    """x @ W.T for INT4 codes in planar bytes ``packed`` (N, K/2): one product per plane.

    ``scale`` (N, K / group_size), or (N, 1) per channel (``group_size`` None), multiplies each
    plane's decoded weight (groups) or the product (per channel). ``left``: as the layer's left
    route, ``(W @ x.T).T``, the decoded planes the products' left operands, then scaled and
    written out (M, N) contiguous."""
    half = packed.shape[1]

    def plane(high, packed, scale=None):
        w = nibble_plane(packed, high)
        if scale is not None:  # each weight times its group's scale, in bfloat16 (exact: 4 x 8 bits)
            groups = half // group_size
            s = scale[:, groups:] if high else scale[:, :groups]
            w = w * s[:, :, None].expand(-1, -1, group_size).reshape(s.shape[0], half).to(w.dtype)
        return w if left else w.t().contiguous()  # the layout the template reads, as the layer's

    # Each plane's decode in torch's InvokeQuant marker on CUDA, as the layer's
    # (fpx.nn._marked_decode): unmarked, inductor fused neither into its template (twenty-ninth
    # session, 4 kernels).
    tensors = [packed] if group_size is None else [packed, scale]
    low, high = (fpx.nn._marked_decode(lambda *t, h=h: plane(h, *t), tensors, low_precision=True) for h in (False, True))
    if left:
        product = torch.mm(low, x[:, :half].t())
        product = torch.addmm(product, high, x[:, half:].t())
        if group_size is None:
            product = product * scale.to(product.dtype)
        return product.t().contiguous()
    y = torch.mm(x[:, :half], low)
    y = torch.addmm(y, x[:, half:], high)
    if group_size is None:
        y = y * scale[:, 0].to(y.dtype)
    return y


@contextlib.contextmanager
def sibling_decodes_refused():
    """Inductor's scheduler, within the block, does not fuse horizontally two nodes that both
    read a uint8 graph input (two planes' decodes of one packed weight)."""
    from torch._inductor.choices import InductorChoices
    from torch._inductor.virtualized import V

    class RefuseSiblingDecodes(InductorChoices):
        @staticmethod
        def can_fuse_horizontal(scheduler, node1, node2, shared_data_score):
            shared = node1.read_writes.buffer_names() & node2.read_writes.buffer_names()
            inputs = V.graph.graph_inputs
            if any(name in inputs and inputs[name].get_dtype() == torch.uint8 for name in shared):
                return False
            return InductorChoices.can_fuse_horizontal(scheduler, node1, node2, shared_data_score)

    with V.set_choices_handler(RefuseSiblingDecodes()):
        yield


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="8192x8192", help="N x K")
    parser.add_argument("--m", default="16")
    parser.add_argument("--group-size", type=int, default=0, help="0: per channel")
    parser.add_argument("--refuse-sibling-decodes", action="store_true")
    parser.add_argument("--left", action="store_true", help="the planes as the products' left operands")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    from torch._inductor.utils import run_and_get_code

    n, k = map(int, args.shape.split("x"))
    group_size = args.group_size or None
    torch.manual_seed(0)
    linear = torch.nn.Linear(k, n, bias=False, device=args.device, dtype=torch.bfloat16)
    layer = LowBitLinear.from_linear(linear, fpx.INT4, group_size=group_size).to(torch.bfloat16)
    packed, scale = layer.packed[:, 0, :], layer.scale
    # float32 is exact here (a 4-bit integer times a bfloat16 scale), and the field decode the
    # layer uses on CUDA has no float64 placement.
    weight = fpx.nn.dequantize_packed(layer.packed, layer.scale.float(), None, None, fmt=fpx.INT4,
                                      group_size=layer.group_size, block=None, table=False,
                                      dtype=torch.float32).double()
    refused = sibling_decodes_refused if args.refuse_sibling_decodes else contextlib.nullcontext
    tuning = fpx.nn.cold_cache_tuning if args.device == "cuda" else contextlib.nullcontext
    options = compile_options(args.device)
    probe = torch.compile(lambda x, p, s: plane_products(x, p, s, group_size, args.left), options=options,
                          dynamic=False)
    ours = torch.compile(lambda layer, x: layer(x), options=options, dynamic=False)
    # Four copies of each weight, cycled in the timings: more than L2 holds (4 x 33 MiB).
    layers = [layer] + [copy.deepcopy(layer) for _ in range(3)]
    copies = [(one.packed[:, 0, :], one.scale) for one in layers]
    for m in map(int, args.m.split(",")):
        x = torch.randn(m, k, device=args.device, dtype=torch.bfloat16)
        with refused(), tuning():
            y, sources = run_and_get_code(probe, x, packed, scale)
        with tuning():  # each copy once, so that none compiles (or tunes) outside the block
            for one in layers:
                ours(one, x)
        reference = x.double() @ weight.t()
        bound = (x.double().abs() @ weight.abs().t()).max().item()
        error = (y.double() - reference).abs().max().item() / bound
        source = "\n".join(sources)
        kernels = source.count(".run(") if args.device == "cuda" else len(set(re.findall(r"(cpp_fused_\w+)\(", source)))
        how = ", ".join(["left"] * args.left + ["siblings refused"] * args.refuse_sibling_decodes)
        line = f"M={m:<4} planes ({how or 'right'}): {kernels} kernels, " \
               f"error {error:.1e} of |x| @ |W|.T"
        if args.device == "cuda":
            from timing import time_cuda_graph

            t_probe = time_cuda_graph([lambda p=p, s=s: probe(x, p, s) for p, s in copies])
            t_layer = time_cuda_graph([lambda one=one: ours(one, x) for one in layers])
            line += f", {t_probe * 1e6:.1f} us against the layer's {t_layer * 1e6:.1f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
