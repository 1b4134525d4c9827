"""The torch loop's forward where no gradient can be asked for (predict): the autograd function's forward
(``autograd``), the in-place buffered step (``buffered``, `torch_loop._forward_no_grad`), and a step
compiled by ``torch.compile`` (``compiled``: inductor, which needs a C++ compiler; the step's gating as
one generated kernel, the loop in Python). Milliseconds a call, batch 256, 8 features, medians of
interleaved repeats; also the compile's seconds and how many times it compiled.

    OMP_NUM_THREADS=1 KERAS_BACKEND=torch .venv/bin/python bench/torch_forward.py [--shapes 48x64,168x128]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from forecaster.layers import torch_loop
from forecaster.layers.lstm_cell import LSTMCell

BATCH, FEATURES = 256, 8


def _step(xz_t, h, c, recurrent_kernel):
    """One plain step, functional, for torch.compile."""
    u = c.shape[1]
    z = torch.addmm(xz_t, h, recurrent_kernel)
    s = torch.sigmoid(z)
    c = s[:, u : 2 * u] * c + s[:, :u] * torch.tanh(z[:, 2 * u : 3 * u])
    return s[:, 3 * u :] * torch.tanh(c), c


def bench_shape(timesteps: int, units: int, compiled_step, repeats: int, rng: np.random.Generator) -> None:
    """Print one shape's rows: each forward's median milliseconds a call and the largest difference."""
    cell = LSTMCell(units)
    cell.build((None, FEATURES))
    x = torch.tensor(rng.normal(size=(BATCH, timesteps, FEATURES)), dtype=torch.float32)
    zeros = torch.zeros(BATCH, units)

    def run(fast: bool) -> torch.Tensor:
        torch_loop.FAST_INFERENCE = fast
        with torch.no_grad():
            return torch_loop.run_loop(cell, x, zeros, zeros, None, return_sequences=False, go_backwards=False,
                                       zero_output_for_mask=True)[0]

    kernel, recurrent_kernel, bias = (w.value.detach() for w in (cell.kernel, cell.recurrent_kernel, cell.bias))

    def run_compiled() -> torch.Tensor:
        with torch.no_grad():
            xz = torch.matmul(x.transpose(0, 1), kernel) + bias
            h, c = zeros, zeros
            for t in range(timesteps):
                h, c = compiled_step(xz[t], h, c, recurrent_kernel)
            return h

    contenders = {"autograd": lambda: run(False), "buffered": lambda: run(True)}
    expected = contenders["autograd"]()
    drift = float((contenders["buffered"]() - expected).abs().max())
    if compiled_step is not None:
        start = time.perf_counter()
        got = run_compiled()
        print(f"compile of the ({timesteps}, {units}) step and first call: {time.perf_counter() - start:.1f} s",
              flush=True)
        drift = max(drift, float((got - expected).abs().max()))
        contenders["compiled"] = run_compiled
    times: dict[str, list[float]] = {k: [] for k in contenders}
    calls = max(2, 400 // timesteps)
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            times[name].append((time.perf_counter() - start) / calls * 1e3)
    for name, values in times.items():
        print(f"| ({timesteps}, {units}) | {name} | {statistics.median(values):.2f} |", flush=True)
    print(f"max abs difference from autograd's forward: {drift:.1e}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="48x64,168x128")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="leave the torch.compile variant out")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}, {FEATURES} features, "
          f"median of {args.repeats} interleaved repeats")
    compiled_step = None
    if not args.no_compile:
        compiled_step = torch.compile(_step, dynamic=False)
    print("| (T, units) | forward | ms |")
    print("|---|---|---|")
    rng = np.random.default_rng(0)
    for shape in args.shapes.split(","):
        timesteps, units = (int(v) for v in shape.split("x"))
        bench_shape(timesteps, units, compiled_step, args.repeats, rng)
    torch_loop.FAST_INFERENCE = True
    if compiled_step is not None:
        counters = torch._dynamo.utils.counters
        print(f"dynamo frames compiled: {dict(counters['stats'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
