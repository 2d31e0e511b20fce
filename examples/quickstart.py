"""Quick start: pack sub-byte integers, and check that the compiled kernel gives the same bytes.

Run: python examples/quickstart.py
"""

import torch

import bitpack

torch.manual_seed(0)

# 1,000 rows of 1,000 uint3 values: 1 MB as uint8, 375 kB packed densely (8 values -> 3 bytes).
values = torch.randint(0, 8, (1000, 1000), dtype=torch.uint8)
dense = bitpack.pack(values, 3)  # layout="dense": one bit stream per row
padded = bitpack.pack(values, 3, layout="padded")  # 2 values per byte, never straddling
print(f"uint3 values: {values.numel():,} bytes as uint8, {dense.numel():,} dense, {padded.numel():,} padded")
assert torch.equal(bitpack.unpack(dense, 3, n=1000), values)
assert torch.equal(bitpack.unpack(padded, 3, n=1000, layout="padded"), values)

# Signed values, packed along dim 0.
weights = torch.randint(-8, 8, (4096, 64), dtype=torch.int8)
packed = bitpack.pack(weights, 4, dim=0, signed=True)
print(f"int4 weights {tuple(weights.shape)} -> packed {tuple(packed.shape)}")
assert torch.equal(bitpack.unpack(packed, 4, n=4096, dim=0, signed=True), weights)

# Out-of-range values are an error in eager mode, never silently merged into their neighbours.
try:
    bitpack.pack(torch.tensor([1, 9, 2]), 3)
except ValueError as error:
    print("caught:", error)

# torch.compile turns pack into one fused kernel with the same bytes.
compiled_pack = torch.compile(lambda t: bitpack.pack(t, 3), fullgraph=True)
assert torch.equal(compiled_pack(values), dense)
print("compiled pack matches eager: OK")
