"""The LSTM gated cell, written here as a Keras RNN cell.

One step of the cell reads an input x_t and the previous short-term memory h and long-term memory c:

    forget gate     f = sigma(x W_f + h U_f + b_f)      what to erase from c
    input gate      i = sigma(x W_i + h U_i + b_i)      how much of the candidate to add to c
    candidate       g = tanh(x W_g + h U_g + b_g)       what could be added to c
    output gate     o = sigma(x W_o + h U_o + b_o)      what of tanh(c) becomes h

    c_t = f * c + i * g          h_t = o * tanh(c_t)

Each gate is a feedforward map (one block of `kernel`/`recurrent_kernel`/`bias`), a sigmoid and a
pointwise multiplication. The weights have the layout of `keras.layers.LSTMCell` (gate blocks in the
order i, f, g, o), so weights move between the two with `get_weights`/`set_weights`.

Optional, off by default, beyond Keras:
- ``layer_norm``: each gate's pre-activation is normalised over the units (own gain and shift per
  gate), and c_t is normalised before the output tanh (Ba et al., 2016).
- ``peephole``: the input and forget gates also see c_{t-1}, the output gate sees c_t, through
  diagonal weights (Gers & Schmidhuber, 2000).
- ``proj_size``: h_t = (o * tanh(c_t)) P with P of shape (units, proj_size): a smaller recurrent
  state and output, like PyTorch's ``proj_size`` (Sak et al., 2014).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import activations, backend, constraints, initializers, ops, regularizers
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

GATES = ("input", "forget", "candidate", "output")


@keras.saving.register_keras_serializable(package="forecaster")
class LSTMCell(keras.layers.Layer, DropoutRNNCell):
    """One step of the LSTM; takes the arguments of `keras.layers.LSTMCell` plus the extras above.

    Args:
        units: size of the long-term memory c (and of h unless ``proj_size`` is set).
        activation: squashing of the candidate and of c before the output gate (default tanh).
        recurrent_activation: the gates' activation (default sigmoid).
        use_bias, kernel_initializer, recurrent_initializer, bias_initializer, unit_forget_bias,
        kernel_regularizer, recurrent_regularizer, bias_regularizer, kernel_constraint,
        recurrent_constraint, bias_constraint, dropout, recurrent_dropout, seed: as in Keras.
        layer_norm: normalise the gate pre-activations and c_t.
        layer_norm_epsilon: the variance floor of the normalisation.
        peephole: diagonal connections from c to the input, forget and output gates.
        proj_size: if set, project h to this many units.
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
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        layer_norm: bool = False,
        layer_norm_epsilon: float = 1e-3,
        peephole: bool = False,
        proj_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        if units <= 0:
            raise ValueError(f"units must be a positive integer, got {units}.")
        if proj_size is not None and proj_size <= 0:
            raise ValueError(f"proj_size must be a positive integer or None, got {proj_size}.")
        # Keras' cell accepts `implementation`; we always run one fused map, so it is read and dropped.
        kwargs.pop("implementation", None)
        super().__init__(**kwargs)
        self.units = units
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.unit_forget_bias = unit_forget_bias
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.recurrent_constraint = constraints.get(recurrent_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.dropout = min(1.0, max(0.0, dropout))
        self.recurrent_dropout = min(1.0, max(0.0, recurrent_dropout))
        # With recurrent dropout Keras draws one mask per gate for x and for h; we draw the same
        # masks in the same order so that a seed gives the same dropout as keras.layers.LSTM.
        if self.recurrent_dropout != 0.0:
            self.dropout_mask_count = 4
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed=seed)
        self.layer_norm = layer_norm
        self.layer_norm_epsilon = layer_norm_epsilon
        self.peephole = peephole
        self.proj_size = proj_size
        self.state_size = [self.output_units, units]
        self.output_size = self.output_units

    @property
    def output_units(self) -> int:
        """Size of h (the output and the recurrent state): ``proj_size`` or ``units``."""
        return self.proj_size or self.units

    def build(self, input_shape: tuple) -> None:
        input_dim = input_shape[-1]
        u = self.units
        self.kernel = self.add_weight(
            shape=(input_dim, 4 * u),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.output_units, 4 * u),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(4 * u,),
                name="bias",
                initializer=self._bias_initializer(),
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        self.peephole_kernel = None
        if self.peephole:
            # Rows: c_{t-1} -> input gate, c_{t-1} -> forget gate, c_t -> output gate.
            self.peephole_kernel = self.add_weight(
                shape=(3, u), name="peephole_kernel", initializer="zeros"
            )
        self.gate_norm_gamma = self.gate_norm_beta = None
        self.cell_norm_gamma = self.cell_norm_beta = None
        if self.layer_norm:
            self.gate_norm_gamma = self.add_weight(
                shape=(4, u), name="gate_norm_gamma", initializer="ones"
            )
            self.gate_norm_beta = self.add_weight(
                shape=(4, u), name="gate_norm_beta", initializer="zeros"
            )
            self.cell_norm_gamma = self.add_weight(
                shape=(u,), name="cell_norm_gamma", initializer="ones"
            )
            self.cell_norm_beta = self.add_weight(
                shape=(u,), name="cell_norm_beta", initializer="zeros"
            )
        self.projection_kernel = None
        if self.proj_size is not None:
            self.projection_kernel = self.add_weight(
                shape=(u, self.proj_size),
                name="projection_kernel",
                initializer=self.kernel_initializer,
            )
        self.built = True

    def _bias_initializer(self) -> Any:
        if not self.unit_forget_bias:
            return self.bias_initializer
        u = self.units
        base = self.bias_initializer

        def forget_one(shape: tuple, dtype: Any = None) -> Any:
            return ops.concatenate(
                [base((u,), dtype=dtype), ops.ones((u,), dtype=dtype), base((2 * u,), dtype=dtype)]
            )

        return forget_one

    def _normalise(self, x: Any, gamma: Any, beta: Any) -> Any:
        mean = ops.mean(x, axis=-1, keepdims=True)
        var = ops.mean(ops.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) * ops.rsqrt(var + self.layer_norm_epsilon) * gamma + beta

    def is_plain(self) -> bool:
        """Whether this is Keras' own LSTM cell (sigmoid gates, tanh, no extras): the loops differentiate
        it by hand."""
        return (
            not self.extra_weights()
            and self.activation is activations.tanh
            and self.recurrent_activation is activations.sigmoid
        )

    def extra_weights(self) -> dict[str, Any]:
        """The weights beyond Keras' three (peephole, normalisation, projection), by name."""
        names = ("peephole_kernel", "gate_norm_gamma", "gate_norm_beta", "cell_norm_gamma",
                 "cell_norm_beta", "projection_kernel")
        return {n: getattr(self, n) for n in names if getattr(self, n, None) is not None}

    def gates(
        self, z: Any, c_prev: Any, extras: dict[str, Any] | None = None
    ) -> tuple[Any, Any, tuple[Any, Any, Any, Any]]:
        """From the pre-activations z = x W + h U + b and c_{t-1}: (h_t, c_t, (i, f, g, o)).

        This is the cell's whole gating; `call`, the layer's fused loop (with its gradient) and the
        gate inspection all run through it, so there is one definition of the math. ``extras``
        stands in for `extra_weights` where a caller differentiates with respect to them.
        """
        w = self.extra_weights() if extras is None else extras
        u = self.units
        if self.layer_norm:
            z4 = ops.reshape(z, (-1, 4, u))
            z = ops.reshape(self._normalise(z4, w["gate_norm_gamma"], w["gate_norm_beta"]), (-1, 4 * u))
        z_i, z_f, z_g, z_o = z[:, :u], z[:, u : 2 * u], z[:, 2 * u : 3 * u], z[:, 3 * u :]
        if self.peephole:
            z_i = z_i + w["peephole_kernel"][0] * c_prev
            z_f = z_f + w["peephole_kernel"][1] * c_prev
        i = self.recurrent_activation(z_i)
        f = self.recurrent_activation(z_f)
        g = self.activation(z_g)
        c = f * c_prev + i * g
        if self.peephole:
            z_o = z_o + w["peephole_kernel"][2] * c
        o = self.recurrent_activation(z_o)
        if self.layer_norm:
            h = o * self.activation(self._normalise(c, w["cell_norm_gamma"], w["cell_norm_beta"]))
        else:
            h = o * self.activation(c)
        if self.proj_size is not None:
            h = ops.matmul(h, w["projection_kernel"])
        return h, c, (i, f, g, o)

    def promote_inputs(self, inputs: Any) -> Any:
        """``inputs`` in the dtype the cell computes in: integer and boolean inputs as the compute dtype.

        Keras' LSTM takes an int or bool array and computes in its float compute dtype (its
        ``ops.matmul`` promotes); never the other way round, which would truncate the weights.
        Floating inputs are left as they come (the layer's autocast has already made them the
        compute dtype where Keras would).
        """
        inputs = ops.convert_to_tensor(inputs)
        if "float" in str(backend.standardize_dtype(inputs.dtype)):
            return inputs
        return ops.cast(inputs, self.compute_dtype)

    def preactivations(self, inputs: Any, h_prev: Any, training: bool = False) -> Any:
        """z = x W + h U + b, with Keras' dropout masks on x and h when training."""
        inputs = self.promote_inputs(inputs)
        dropout_x = training and 0.0 < self.dropout < 1.0
        dropout_h = training and 0.0 < self.recurrent_dropout < 1.0
        if self.recurrent_dropout != 0.0:
            # Per-gate masks, as Keras applies them when recurrent dropout is on.
            x_masks = self.get_dropout_mask(inputs) if dropout_x else [1.0] * 4
            h_masks = self.get_recurrent_dropout_mask(h_prev) if dropout_h else [1.0] * 4
            kernels = ops.split(self.kernel, 4, axis=1)
            recurrent_kernels = ops.split(self.recurrent_kernel, 4, axis=1)
            z = ops.concatenate(
                [
                    ops.matmul(inputs * xm, k) + ops.matmul(h_prev * hm, r)
                    for xm, hm, k, r in zip(x_masks, h_masks, kernels, recurrent_kernels)
                ],
                axis=-1,
            )
        else:
            if dropout_x:
                inputs = inputs * self.get_dropout_mask(inputs)
            z = ops.matmul(inputs, self.kernel) + ops.matmul(h_prev, self.recurrent_kernel)
        if self.use_bias:
            z = z + self.bias
        return z

    def call(self, inputs: Any, states: Any, training: bool = False) -> tuple[Any, list[Any]]:
        h_prev, c_prev = states[0], states[1]
        z = self.preactivations(inputs, h_prev, training=training)
        h, c, _ = self.gates(z, c_prev)
        return h, [h, c]

    def get_initial_state(self, batch_size: Any = None) -> list[Any]:
        return [
            ops.zeros((batch_size, self.output_units), dtype=self.compute_dtype),
            ops.zeros((batch_size, self.units), dtype=self.compute_dtype),
        ]

    def get_config(self) -> dict[str, Any]:
        config = {
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "recurrent_activation": activations.serialize(self.recurrent_activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "unit_forget_bias": self.unit_forget_bias,
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "recurrent_constraint": constraints.serialize(self.recurrent_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
            "layer_norm": self.layer_norm,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "peephole": self.peephole,
            "proj_size": self.proj_size,
        }
        return {**super().get_config(), **config}
