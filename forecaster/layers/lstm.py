"""The LSTM layer: our `LSTMCell` run over a sequence, a drop-in for `keras.layers.LSTM`.

The layer is a `keras.layers.RNN`, so masking, initial and stateful states, `go_backwards`,
`return_sequences`/`return_state`, `Bidirectional` and serialisation behave as Keras' own LSTM.
What differs is the loop: under the TensorFlow backend, the recurrence runs in `fused_loop.py`
(forward and backward loops compiled with XLA); under JAX in `jax_loop.py` (one `lax.scan`); under
torch in `torch_loop.py` (one autograd function, its backward by hand) for Keras' own cell. For
recurrent dropout, `unroll=True`, and under torch for a cell with extras, the cell is stepped by
Keras' generic loop. `Bidirectional` runs this layer once per direction (Keras sends only its own
LSTM class to a backend's fused bidirectional kernel).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from forecaster.layers.lstm_cell import GATES, LSTMCell

_CELL_ARGS = (
    "activation",
    "recurrent_activation",
    "use_bias",
    "kernel_initializer",
    "recurrent_initializer",
    "bias_initializer",
    "unit_forget_bias",
    "kernel_regularizer",
    "recurrent_regularizer",
    "bias_regularizer",
    "kernel_constraint",
    "recurrent_constraint",
    "bias_constraint",
    "dropout",
    "recurrent_dropout",
    "seed",
    "layer_norm",
    "layer_norm_epsilon",
    "peephole",
    "proj_size",
)


@keras.saving.register_keras_serializable(package="forecaster")
class LSTM(keras.layers.RNN):
    """Long Short-Term Memory layer with the arguments and weights of `keras.layers.LSTM`.

    Swapping ``keras.layers.LSTM`` for ``forecaster.layers.LSTM`` is the whole change a user makes;
    ``use_cudnn`` is accepted for that reason and has no effect (this layer always runs its own
    kernels). The extras ``layer_norm``, ``peephole`` and ``proj_size`` are described in
    `LSTMCell`; `gate_activations` returns what the gates did over a sequence.
    """

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        unit_forget_bias: bool = True,
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        use_cudnn: Any = "auto",
        layer_norm: bool = False,
        layer_norm_epsilon: float = 1e-3,
        peephole: bool = False,
        proj_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        if use_cudnn not in ("auto", True, False):
            raise ValueError(f"use_cudnn must be 'auto', True or False, got {use_cudnn!r}.")
        cell = LSTMCell(
            units,
            activation=activation,
            recurrent_activation=recurrent_activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            unit_forget_bias=unit_forget_bias,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            seed=seed,
            layer_norm=layer_norm,
            layer_norm_epsilon=layer_norm_epsilon,
            peephole=peephole,
            proj_size=proj_size,
            dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
            name="lstm_cell",
            implementation=kwargs.pop("implementation", None),
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            activity_regularizer=activity_regularizer,
            **kwargs,
        )
        self.input_spec = keras.layers.InputSpec(ndim=3)
        self.use_cudnn = use_cudnn

    def _own_loop(self) -> str | None:
        """The backend whose loop of ours runs this layer, or None for Keras' generic loop."""
        backend = keras.backend.backend()
        if self.unroll or self.cell.recurrent_dropout != 0.0:
            return None
        if backend in ("tensorflow", "jax") or (backend == "torch" and self.cell.is_plain()):
            return backend
        return None

    def inner_loop(self, sequences: Any, initial_state: Any, mask: Any, training: bool = False) -> Any:
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        own_loop = self._own_loop()
        if own_loop is None:
            return super().inner_loop(sequences, initial_state, mask=mask, training=training)
        if training and 0.0 < self.cell.dropout < 1.0:
            # One input mask for every step, the mask Keras' cell would draw.
            sequences = sequences * ops.expand_dims(self.cell.get_dropout_mask(sequences[:, 0, :]), 1)
        args = (self.cell, sequences, initial_state[0], initial_state[1], mask)
        options = {"return_sequences": self.return_sequences, "go_backwards": self.go_backwards,
                   "zero_output_for_mask": self.zero_output_for_mask}
        if own_loop == "torch":
            from forecaster.layers.torch_loop import run_loop

            return run_loop(*args, **options)
        if own_loop == "jax":
            from forecaster.layers.jax_loop import run_scan

            return run_scan(*args, **options)
        from forecaster.layers.fused_loop import run_fused

        return run_fused(*args, **options, training=bool(training))

    def call(self, sequences: Any, initial_state: Any = None, mask: Any = None, training: bool = False) -> Any:
        return super().call(sequences, mask=mask, training=training, initial_state=initial_state)

    def gate_activations(
        self, sequences: Any, initial_state: Any = None, mask: Any = None
    ) -> dict[str, Any]:
        """What the gates did over ``sequences`` (inference, no dropout), for inspection.

        Returns a dict of arrays of shape (batch, time, units), in the input's time order, keyed
        ``input``, ``forget``, ``candidate``, ``output``, ``cell`` (c_t) and ``hidden`` (h_t, size
        ``proj_size`` when projected). With ``go_backwards`` the sequence is read from its end, as
        the layer reads it. At masked steps the state is held and the gates read zero.
        """
        sequences = ops.convert_to_tensor(sequences, dtype=self.compute_dtype)
        if not self.built:
            self.build(sequences.shape)
        batch = ops.shape(sequences)[0]
        if initial_state is None:
            initial_state = self.cell.get_initial_state(batch)
        h0, c0 = (ops.cast(s, self.compute_dtype) for s in initial_state)
        steps_mask = ops.ones(ops.shape(sequences)[:2], dtype="bool") if mask is None else mask
        order = range(sequences.shape[1])
        if self.go_backwards:
            order = reversed(order)
        h, c = h0, c0
        names = GATES + ("cell", "hidden")
        per_step: dict[int, tuple] = {}
        # A plain Python loop: inspection is off the hot path, and it runs eagerly on every backend.
        for t in order:
            m = ops.expand_dims(ops.cast(steps_mask[:, t], "bool"), -1)
            h_new, c_new, gates = self.cell.gates(self.cell.preactivations(sequences[:, t], h), c)
            h, c = ops.where(m, h_new, h), ops.where(m, c_new, c)
            per_step[t] = tuple(ops.where(m, g, ops.zeros_like(g)) for g in gates) + (c, h)
        ordered = [per_step[t] for t in sorted(per_step)]
        return {name: ops.stack([s[k] for s in ordered], axis=1) for k, name in enumerate(names)}

    def get_config(self) -> dict[str, Any]:
        cell = self.cell
        config = {
            "units": cell.units,
            "activity_regularizer": keras.regularizers.serialize(self.activity_regularizer),
            "use_cudnn": self.use_cudnn,
        }
        cell_config = cell.get_config()
        config.update({k: cell_config[k] for k in _CELL_ARGS})
        base = super().get_config()
        del base["cell"]
        return {**base, **config}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LSTM:
        return cls(**config)


def _cell_property(name: str) -> property:
    return property(lambda self: getattr(self.cell, name), doc=f"The cell's ``{name}``.")


# The cell's hyper-parameters read as the layer's own, as on keras.layers.LSTM.
for _name in ("units",) + _CELL_ARGS:
    setattr(LSTM, _name, _cell_property(_name))
