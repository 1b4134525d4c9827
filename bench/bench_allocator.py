"""Page faults a step with and without TensorFlow's pooling CPU allocator, in fresh processes.

The layers ask for the pooling allocator on import (``forecaster/layers/__init__.py``) because glibc maps
blocks over 32 MB afresh on each allocation: a step's kept values at (168, 128) are 44 MB a part. How many
faults that costs depends on the machine's C library and kernel, so it is measured here, not asserted in a
test. Run: ``.venv/bin/python bench/bench_allocator.py``.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = textwrap.dedent("""
    import os, resource
    import tensorflow as tf
    import forecaster.layers  # after TensorFlow's import, as users write it, before its first op
    step = tf.function(lambda x: tf.reduce_sum(tf.fill([168, 128, 512], x) * x))  # 44 MB, as a part's kept values
    step(tf.constant(1.0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        step(tf.constant(2.0)).numpy()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
""")


def faults_per_call(use_bfc: str | None) -> float:
    """Minor page faults per call of a step that makes a 44 MB buffer, in a fresh process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPU_")}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)})
    if use_bfc is not None:
        env["TF_CPU_ALLOCATOR_USE_BFC"] = use_bfc
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    return float(done.stdout.split()[-1])


def main() -> None:
    from forecaster.layers.cpu_kernel import cpu_info

    cpu = cpu_info("model name") or platform.processor()
    print(f"cpu: {cpu}; libc: {' '.join(platform.libc_ver())}; kernel: {platform.release()}")
    print(f"pooling allocator (the layers' default): {faults_per_call(None):,.1f} faults a call")
    print(f"TF_CPU_ALLOCATOR_USE_BFC=0:              {faults_per_call('0'):,.1f} faults a call")


if __name__ == "__main__":
    main()
