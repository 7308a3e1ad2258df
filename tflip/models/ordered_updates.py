"""Keeps the state updates of a multi-update `train_step` in program order.

A WGAN step updates the critic `n_critic` times (and penalty state such as
MaxAL's multiplier) inside one `tf.function`; each update must see the
previous one. `tf.function` orders the reads and writes of each variable by
automatic control dependencies, but Grappler's *dependency optimizer* was
measured (TF 2.21, CPU) to drop some of these edges in such steps: with an
ALP penalty and two critic updates per step, a critic update intermittently
used or overwrote stale weights (the result changed from run to run and
differed from eager execution by ~1e-5 after one step; with one inter-op
thread it was wrong every time). Disabling only that Grappler pass made every
run match eager execution exactly.

`OrderedUpdatesMixin` therefore disables the dependency optimizer while
`fit` / `train_on_batch` build and first run the train function, and
restores the previous setting afterwards. It is a process-wide TensorFlow
option during those calls; the pass only prunes redundant control edges, so
other functions optimized meanwhile stay correct, at most marginally slower.
"""

import contextlib

import tensorflow as tf

_OPTION = "dependency_optimization"


@contextlib.contextmanager
def ordered_state_updates():
    """Context manager: Grappler's dependency optimizer off, then restored."""
    previous = tf.config.optimizer.get_experimental_options().get(_OPTION, True)
    tf.config.optimizer.set_experimental_options({_OPTION: False})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({_OPTION: previous})


class OrderedUpdatesMixin:
    """For Keras models whose `train_step` applies several dependent updates."""

    def fit(self, *args, **kwargs):
        with ordered_state_updates():
            return super().fit(*args, **kwargs)

    def train_on_batch(self, *args, **kwargs):
        with ordered_state_updates():
            return super().train_on_batch(*args, **kwargs)
