"""XLA compilation of the gradient computations of multi-update train steps."""

import tensorflow as tf

_COMPILE_ARGUMENTS = {"run_eagerly", "jit_compile", "steps_per_execution"}


class XlaGradientsMixin:
    """`compile(jit_compile=True)` compiles the gradient computations with XLA.

    Keras would compile the whole `train_step`. For a step that updates the
    same variables several times (a WGAN's critic updates, then the generator
    update that reads the new critic) that was measured to be wrong on this
    stack (TF 2.21, CPU): XLA evaluated some reads of the critic's weights
    after the in-step update (the first step's logged Wasserstein estimate
    and weights differed from eager execution, with or without Grappler).
    tflip therefore compiles only the loss-and-gradient computations, which
    read the weights being trained but never write them (they write only
    the penalty's own state: metrics, MaxAL's constraint, MaxGP's buffer,
    counters, each read before it is written), and applies the updates and
    post-update hooks outside XLA. The expensive part (forward, penalty, double backward) is compiled;
    the results match the uncompiled step.

    Random numbers drawn inside the compiled part (a penalty's interpolation
    coefficients, perturbations, ALP's directions) come from XLA's kernels,
    which produce different streams than TensorFlow's CPU kernels for the
    same seed (measured for `stateless_uniform` / `stateless_normal`, even
    with an explicit algorithm): a compiled run is deterministic and
    statistically equivalent, but not bitwise equal to an uncompiled one.
    Latent vectors are drawn outside XLA and are identical.

    XLA helps small, overhead-bound steps; it does not speed up a 3x512 MLP
    critic on CPU. It is not supported under MirroredStrategy (Keras issue
    19246).
    """

    xla_gradients = False

    def split_jit_compile(self, kwargs, reason):
        """Validates compile arguments and takes `jit_compile` for the gradients."""
        unexpected = set(kwargs) - _COMPILE_ARGUMENTS
        if unexpected:
            raise ValueError(f"Unexpected compile arguments {sorted(unexpected)}: {reason}.")
        kwargs = dict(kwargs)
        jit_compile = kwargs.pop("jit_compile", False)
        if jit_compile not in (True, False, "auto"):
            raise ValueError(f"`jit_compile` must be True, False or 'auto', got {jit_compile!r}.")
        self.xla_gradients = jit_compile is True
        self._compiled_functions = {}
        kwargs["jit_compile"] = False
        return kwargs

    def maybe_xla(self, function):
        """`function`, XLA-compiled if `jit_compile=True` was given to `compile`."""
        if not self.xla_gradients:
            return function
        cache = self.__dict__.setdefault("_compiled_functions", {})
        if function not in cache:
            cache[function] = tf.function(function, jit_compile=True)
        return cache[function]
