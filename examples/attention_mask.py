"""Compress a causal + padding attention mask 8x with bitpack.PackedMask, and use it as it is.

A batch of B sequences of random lengths, padded to S, attends with mask[b, i, j] = True when
query i may look at key j: j <= i (causal) and j < length[b] (not padding). As a bool tensor the
mask takes B*S*S bytes; packed along the key dim it takes one bit per entry. The masked scores
and the softmax computed with the packed mask are bit-for-bit those computed with the bool mask,
in eager mode and under torch.compile (where the bits are read inside the one kernel that
writes the masked scores).

Run: python examples/attention_mask.py   (a few seconds on a CPU)
"""

import torch

from bitpack import PackedMask


def causal_padding_mask(lengths: torch.Tensor, seq_len: int) -> torch.Tensor:
    """(B, S, S) bool: query i of sequence b may attend key j when j <= i and j < lengths[b]."""
    positions = torch.arange(seq_len)
    causal = positions[None, :, None] >= positions[None, None, :]
    valid_key = positions[None, None, :] < lengths[:, None, None]
    return causal & valid_key


def masked_scores(scores: torch.Tensor, blocked: PackedMask) -> torch.Tensor:
    """Scores with -inf where attention is blocked (the usual masked_fill before softmax)."""
    return blocked.masked_fill(scores, float("-inf"))


def main():
    torch.manual_seed(0)
    batch, seq_len = 8, 1024
    lengths = torch.randint(1, seq_len + 1, (batch,))
    allowed = causal_padding_mask(lengths, seq_len)

    packed = PackedMask.from_bool(allowed, dim=-1)
    blocked = ~packed  # keeps the padding bits of each packed row at 0
    print(f"mask {tuple(allowed.shape)}: bool {allowed.nbytes / 2**20:.1f} MiB -> packed {packed.nbytes / 2**20:.2f} MiB "
          f"({allowed.nbytes / packed.nbytes:.1f}x smaller)")

    # Counting on packed words: attended pairs per sequence = sum over queries of min(i + 1, length).
    pairs = packed.count(dim=(1, 2))
    expected = torch.stack([torch.clamp(torch.arange(1, seq_len + 1), max=int(n)).sum() for n in lengths])
    assert torch.equal(pairs, expected)
    print(f"attended pairs per sequence: {pairs.tolist()}")

    scores = torch.randn(batch, seq_len, seq_len)
    reference = scores.masked_fill(~allowed, float("-inf"))
    eager = masked_scores(scores, blocked)
    compiled = torch.compile(masked_scores, fullgraph=True)(scores, blocked)
    assert torch.equal(eager, reference) and torch.equal(compiled, reference)
    assert torch.equal(eager.softmax(-1), reference.softmax(-1))
    print("masked scores and softmax with the packed mask: identical to the bool mask (eager and compiled)")

    # Slicing leading dims stays packed: the mask of sequence 3 alone.
    one = packed[3]
    assert torch.equal(one.to_bool(), allowed[3])
    print(f"packed[3]: {one}")


if __name__ == "__main__":
    main()
