"""AdamW whose per-variable update is one TensorFlow kernel instead of about a dozen small ops."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_vit")
class FusedAdamW(keras.optimizers.AdamW):
    """Keras' `AdamW`, with each variable's step done by TensorFlow's fused kernels.

    The update is Keras' to the last rounding step: decoupled decay
    `w -= lr * weight_decay * w` (`ResourceApplyGradientDescent` with `delta = w`), then
    Adam (`ResourceApplyAdam`, whose CPU and GPU kernels compute
    `alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)`, `m += (g - m)(1 - beta_1)`,
    `v += (g^2 - v)(1 - beta_2)`, `w -= alpha * m / (sqrt(v) + epsilon)` as Keras' `Adam`
    does). Its variables (in order, name and shape) and `get_config` are `AdamW`'s, so
    checkpoints and `.keras` files, which store them in that order, restore into either.

    Why not Keras' own: on the TensorFlow backend its update is ops on `keras.ops` (a
    subtract, multiplies, a square, a square root, a divide and three assigns per variable,
    and three more for the decay). A small model's training step is bound by dispatching
    such ops, not by arithmetic: the digits job's 59 variables cost about 330 of the step's
    925 ops (BENCHMARKS.md, "Digits"). The global-norm clip is Keras' too, with one kernel
    per squared norm. Sparse gradients (`IndexedSlices`) and `amsgrad` keep Keras' path.

        >>> import numpy as np
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        >>> model.compile(optimizer=FusedAdamW(1e-3, weight_decay=0.05), loss="mse")
        >>> history = model.fit(np.ones((8, 4)), np.zeros((8, 2)), epochs=1, verbose=0)
        >>> int(model.optimizer.iterations)
        1
    """

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        # Keras' loop over the variables (cross-replica), with the step's scalars computed
        # once for all of them: per variable they would be about eight more small ops each.
        beta_1 = tf.cast(self.beta_1, "float32")
        beta_2 = tf.cast(self.beta_2, "float32")
        step = tf.cast(self.iterations + 1, "float32")
        scalars = dict(
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, "float32"), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, "float32"),
        )

        def update(variable, gradient):
            if self.amsgrad or isinstance(gradient, tf.IndexedSlices) or variable.dtype != tf.float32:
                return self.update_step(gradient, variable, learning_rate)
            index = self._get_variable_index(variable)
            return tf.raw_ops.ResourceApplyAdam(
                var=_handle(variable),
                m=_handle(self._momentums[index]),
                v=_handle(self._velocities[index]),
                grad=tf.cast(gradient, tf.float32),
                **scalars,
            )

        for gradient, variable in grads_and_vars:
            distribution.extended.update(variable, update, args=(gradient,), group=False)

    def _clip_gradients(self, grads):
        if self.clipnorm or self.clipvalue or not self.global_clipnorm or any(
            g is None or isinstance(g, tf.IndexedSlices) for g in grads
        ):
            return super()._clip_gradients(grads)
        # Keras' `clip_by_global_norm`, with each squared norm one `L2Loss` kernel
        # (sum(g^2) / 2) instead of a square and a sum.
        norm = tf.sqrt(2.0 * tf.add_n([tf.nn.l2_loss(tf.cast(g, "float32")) for g in grads]))
        scale = self.global_clipnorm * tf.minimum(1.0 / norm, 1.0 / self.global_clipnorm)
        scale = scale + (norm - norm)  # NaN for a norm of inf or NaN, as Keras has it
        return [g * tf.cast(scale, g.dtype) for g in grads]

    def _apply_weight_decay(self, variables):
        if self.weight_decay is None:
            return
        # The schedule once, not once per variable as Keras' decay does.
        decay = tf.cast(self.learning_rate * self.weight_decay, "float32")

        def decay_variables(distribution, variables):
            def decay_variable(variable):
                if variable.dtype != tf.float32:
                    if self._use_weight_decay(variable):
                        variable.assign_sub(variable * tf.cast(decay, variable.dtype))
                elif self._use_weight_decay(variable):
                    tf.raw_ops.ResourceApplyGradientDescent(
                        var=variable.handle, alpha=decay, delta=variable.read_value()
                    )

            for variable in variables:
                if isinstance(variable, keras.Variable):
                    variable = variable.value
                distribution.extended.update(variable, decay_variable, group=False)

        tf.__internal__.distribute.interim.maybe_merge_call(
            decay_variables, self._distribution_strategy, variables
        )


def _handle(variable):
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle
