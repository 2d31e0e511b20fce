"""Quantization-aware training (QAT) of a small MLP on scikit-learn's digits, with fpx.

The digits data (1797 8x8 images, 10 classes) ships inside scikit-learn: no download. The
script trains a float MLP, then for each weight format

- PTQ (post-training quantization): quantizes the trained float weights and evaluates;
- QAT: fine-tunes the float model for a few epochs with ``fpx.fake_quantize`` on every weight
  (straight-through gradients), then quantizes and evaluates.

Accuracies are always measured with really quantized weights, ``fpx.quantize(w, ...).dequantize()``
(which equals what ``fake_quantize`` computed during training, bit for bit). Runs in a few
seconds on a CPU::

    pip install scikit-learn     # the "examples" extra: pip install -e .[examples]
    python examples/qat_mlp.py
"""

from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

import fpx

# (label, format, fpx.quantize keyword arguments). Layers have 64 or 128 inputs (K).
CONFIGS = [
    ("INT4, groups of 16", fpx.INT4, dict(group_size=16)),
    ("INT4, per channel", fpx.INT4, dict()),
    ("E2M1, per channel", fpx.E2M1, dict()),
    ("E2M1, MX (32, E8M0)", fpx.E2M1, dict(block="mx")),
    ("INT2, per channel", fpx.INT2, dict()),
]
HIDDEN = 128
FLOAT_EPOCHS = 30
QAT_EPOCHS = 10
BATCH = 64


def load_digits():
    """(x_train, y_train, x_test, y_test): features scaled to [0, 1], a fixed 80/20 split."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        sys.exit("examples/qat_mlp.py needs scikit-learn for its bundled digits data: pip install scikit-learn")
    data = sklearn_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    split = int(0.8 * len(x))
    return x[order[:split]], y[order[:split]], x[order[split:]], y[order[split:]]


class QuantLinear(nn.Linear):
    """nn.Linear whose weight goes through ``fpx.fake_quantize`` when a format is set."""

    def __init__(self, in_features, out_features):
        super().__init__(in_features, out_features)
        self.fmt, self.qargs = None, {}

    def forward(self, x):
        weight = self.weight if self.fmt is None else fpx.fake_quantize(self.weight, self.fmt, **self.qargs)
        return F.linear(x, weight, self.bias)


def make_mlp() -> nn.Sequential:
    return nn.Sequential(QuantLinear(64, HIDDEN), nn.ReLU(), QuantLinear(HIDDEN, HIDDEN), nn.ReLU(), QuantLinear(HIDDEN, 10))


def set_format(model, fmt, qargs) -> None:
    for layer in model:
        if isinstance(layer, QuantLinear):
            layer.fmt, layer.qargs = fmt, qargs


def train(model, x, y, epochs: int, lr: float, seed: int) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=g).split(BATCH):
            optimizer.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
        schedule.step()


@torch.no_grad()
def accuracy_quantized(model, fmt, qargs, x, y) -> float:
    """Test accuracy with weights replaced by fpx.quantize(...).dequantize() (float if fmt is None)."""
    deployed = make_mlp()
    deployed.load_state_dict(model.state_dict())
    if fmt is not None:
        for layer in deployed:
            if isinstance(layer, QuantLinear):
                q = fpx.quantize(layer.weight, fmt, **qargs)
                # the deployed weights are exactly what QAT trained against
                assert torch.equal(q.dequantize(), fpx.fake_quantize(layer.weight, fmt, **qargs))
                layer.weight.copy_(q.dequantize())
    deployed.eval()
    return (deployed(x).argmax(-1) == y).float().mean().item()


def main() -> None:
    start = time.perf_counter()
    torch.set_num_threads(1)  # 64x128 matmuls: threads cost more than they save
    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = load_digits()

    float_model = make_mlp()
    train(float_model, x_train, y_train, FLOAT_EPOCHS, lr=2e-3, seed=1)
    float_acc = accuracy_quantized(float_model, None, {}, x_test, y_test)

    rows = []
    for label, fmt, qargs in CONFIGS:
        ptq_acc = accuracy_quantized(float_model, fmt, qargs, x_test, y_test)
        qat_model = make_mlp()
        qat_model.load_state_dict(float_model.state_dict())
        set_format(qat_model, fmt, qargs)
        train(qat_model, x_train, y_train, QAT_EPOCHS, lr=5e-4, seed=2)
        qat_acc = accuracy_quantized(qat_model, fmt, qargs, x_test, y_test)
        rows.append((label, ptq_acc, qat_acc))

    print(f"MLP 64-{HIDDEN}-{HIDDEN}-10 on sklearn digits ({len(x_train)} train / {len(x_test)} test), weights quantized")
    print(f"{'weights':<22} {'float':>7} {'PTQ':>7} {'QAT':>7}")
    for label, ptq_acc, qat_acc in rows:
        print(f"{label:<22} {float_acc:>7.1%} {ptq_acc:>7.1%} {qat_acc:>7.1%}")
    print(f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
