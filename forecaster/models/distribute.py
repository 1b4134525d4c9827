"""Training on several devices or machines with `tf.distribute` (TensorFlow backend).

Three strategies, chosen by ``training.strategy`` (the estimator's ``strategy``, ``forecaster train
--strategy``):

- ``none``: the default strategy, one process, every core of the machine.
- ``mirrored``: `tf.distribute.MirroredStrategy`, one process driving every GPU of one machine (on a
  machine without GPUs it has one CPU replica: the same result as ``none``).
- ``multi_worker``: `tf.distribute.MultiWorkerMirroredStrategy`, one process per machine (or several on
  one), each started with the same command and its own ``TF_CONFIG``; worker 0 is the chief. Every
  worker reads the same data and runs the same fits in lockstep on its share of each batch; gradients
  are summed across workers by collective all-reduce, so the model equals the one-process model up to
  floating-point rounding.

The strategy is made once per process, before TensorFlow runs anything (a multi-worker strategy
cannot be set up afterwards), and reused by every fit of that process.
"""

from __future__ import annotations

import json
import os
import types
from dataclasses import dataclass
from typing import Any

from forecaster.errors import ConfigError, WorkerLostError
from forecaster.params import param

_MADE: dict[str, Any] = {}


@dataclass(frozen=True)
class Cluster:
    """This process' place in a multi-worker cluster, read from ``TF_CONFIG``."""

    workers: tuple[str, ...]
    index: int

    @property
    def is_chief(self) -> bool:
        return self.index == 0


def check_name(name: str) -> str:
    """``name`` if it is a strategy: the parameter table's check of ``training.strategy``."""
    return param("training", "strategy").check(name)


def cluster() -> Cluster:
    """The cluster ``TF_CONFIG`` describes; ConfigError naming ``TF_CONFIG`` if it is absent or wrong.

    Only ``worker`` tasks are used (worker 0 is the chief): ``{"cluster": {"worker": ["host:port",
    ...]}, "task": {"type": "worker", "index": i}}``.
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ConfigError("training.strategy = 'multi_worker' needs TF_CONFIG: "
                          '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}')
    try:
        spec = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"TF_CONFIG is not JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise ConfigError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    nodes = spec.get("cluster")
    task = spec.get("task")
    if not isinstance(nodes, dict) or not isinstance(task, dict):
        raise ConfigError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    other = sorted(set(nodes) - {"worker"})
    if other:
        raise ConfigError(f"TF_CONFIG: only 'worker' tasks are supported (worker 0 is the chief), found {other}")
    workers = nodes.get("worker")
    if not isinstance(workers, list) or not workers or not all(
            isinstance(w, str) and w.rpartition(":")[2].isdigit() for w in workers):
        raise ConfigError(f"TF_CONFIG: cluster.worker must be a list of 'host:port', got {workers!r}")
    if len(set(workers)) != len(workers):
        raise ConfigError(f"TF_CONFIG: cluster.worker lists an address twice: {workers}")
    index = task.get("index")
    if task.get("type") != "worker" or isinstance(index, bool) or not isinstance(index, int) \
            or not 0 <= index < len(workers):
        raise ConfigError(f"TF_CONFIG: task must be {{'type': 'worker', 'index': 0..{len(workers) - 1}}}, "
                          f"got {task!r}")
    return Cluster(tuple(workers), index)


def is_chief(name: str) -> bool:
    """Whether this process logs, saves and registers: always, except a multi-worker task other than 0."""
    return check_name(name) != "multi_worker" or cluster().is_chief


def num_workers(name: str) -> int:
    return len(cluster().workers) if check_name(name) == "multi_worker" else 1


def strategy(name: str) -> Any:
    """The process' `tf.distribute.Strategy` for ``name`` (made on first use, then reused).

    Call it before TensorFlow runs anything when ``name`` is ``multi_worker``: the pipelines do, at
    their start. ConfigError if ``TF_CONFIG`` is wrong or TensorFlow has already started.
    """
    check_name(name)
    if name in _MADE:
        return _MADE[name]
    import tensorflow as tf

    if name == "none":
        made = tf.distribute.get_strategy()
    elif name == "mirrored":
        made = tf.distribute.MirroredStrategy()
    else:
        cluster()  # check TF_CONFIG before TensorFlow reads it
        if _MADE:
            raise ConfigError("training.strategy = 'multi_worker' cannot follow another strategy in one process")
        try:
            made = tf.distribute.MultiWorkerMirroredStrategy()
        except (RuntimeError, ValueError) as exc:
            raise ConfigError(f"cannot start the multi-worker strategy ({str(exc).splitlines()[0][:300]}); "
                              "it must be made before TensorFlow runs anything in the process: call "
                              "forecaster.models.distribute.strategy('multi_worker') first") from None
    _MADE[name] = made
    return made


def shard_by_data(dataset: Any, name: str) -> Any:
    """``dataset`` marked for sharding by element across workers (it is built from arrays, not files)."""
    if name != "multi_worker":
        return dataset
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def prepare_model(model: Any, name: str) -> Any:
    """``model``, compiled under the strategy, made able to `fit` under ``multi_worker``.

    Keras 3.15's TensorFlow trainer fails under `MultiWorkerMirroredStrategy` in two places, for its own
    layers as for ours: its first-batch build reduces the whole (inputs, targets) structure as if it were
    one value, and it averages each step's scalar logs across workers along an axis 0 they do not have.
    This sets, on this model object only (nothing is saved with it), a build from the local first batch
    and step functions whose logs have that axis; the averaged values are the same on every worker, so
    early stopping decides alike everywhere.
    """
    if name != "multi_worker":
        return model
    import tensorflow as tf

    def local_first_batch(self: Any, iterator: Any = None, data_batch: Any = None) -> None:
        active = self.distribute_strategy
        if iterator is not None:
            for _, _, batches in iterator:
                batch = next(batches)
                break
            data_batch = tf.nest.map_structure(
                lambda v: active.experimental_local_results(v)[0]
                if isinstance(v, tf.distribute.DistributedValues) else v, batch)
        with active.scope():
            self._symbolic_build(data_batch=data_batch)

    def with_axis(step: Any) -> Any:
        def run(data: Any) -> dict[str, Any]:
            return {k: tf.reshape(v, [1]) for k, v in step(data).items()}
        return run

    model._maybe_symbolic_build = types.MethodType(local_first_batch, model)
    model.train_step = with_axis(model.train_step)
    model.test_step = with_axis(model.test_step)
    return model


def raise_if_worker_lost(exc: BaseException, name: str) -> None:
    """A `WorkerLostError` naming the cluster when ``exc`` is a collective op failing for lack of a peer.

    When a worker dies, the others' all-reduce fails within seconds (gRPC: unavailable, cancelled or
    aborted) instead of waiting for ever; every worker must then be started again.
    """
    if name != "multi_worker":
        return
    import tensorflow as tf

    lost = (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.AbortedError,
            tf.errors.DeadlineExceededError)
    if isinstance(exc, lost):
        workers = cluster()
        raise WorkerLostError(
            f"multi-worker training stopped: a worker of TF_CONFIG's cluster {list(workers.workers)} stopped or "
            f"cannot be reached (seen by worker {workers.index}: {type(exc).__name__}); start every worker again"
        ) from None
