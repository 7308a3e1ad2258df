"""Side-by-side timing shared by the benchmark scripts."""

import random
import statistics
import time

import tensorflow as tf


def train_step_fn(layer, x, y=None, learning_rate=1e-3):
    """A compiled Adam step of `mean((model(x) - y)^2)` (y = 0 if None) for a layer or model.

    Every benchmark times the same step, so their ratios compare alike.
    """
    import keras

    model = layer if isinstance(layer, keras.Model) else keras.Sequential([keras.Input(x.shape[1:]), layer])
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.build(model.trainable_variables)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            outputs = model(x, training=True)
            loss = tf.reduce_mean(tf.square(outputs if y is None else outputs - y))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    return step


def inference_fn(layer, shape):
    """A compiled inference call (`training=False`) of a one-layer model on fixed random data."""
    import keras

    model = keras.Sequential([keras.Input(shape[1:]), layer])
    x = tf.random.normal(shape)
    return tf.function(lambda: model(x, training=False))


def _wait(result):
    """Blocks until every tensor of a step's result is computed."""
    for value in tf.nest.flatten(result):
        if hasattr(value, "numpy"):
            value.numpy()


def time_interleaved(steps, repeats, calls=1, args=()):
    """Median seconds per call of each step, cycling through all steps in every repetition.

    Interleaving makes the steps share the machine's noise, so their ratios
    are meaningful on a busy machine even when absolute times are not; the
    order is shuffled in every repetition so no step always runs after the
    same neighbour.
    """
    for step in steps.values():
        _wait(step(*args))  # trace, compile and warm up
    samples = {key: [] for key in steps}
    order = list(steps)
    shuffle = random.Random(0).shuffle
    for _ in range(repeats):
        shuffle(order)
        for key in order:
            step = steps[key]
            start = time.perf_counter()
            for _ in range(calls):
                result = step(*args)
            _wait(result)
            samples[key].append((time.perf_counter() - start) / calls)
    return {key: statistics.median(values) for key, values in samples.items()}


def print_ratios(title, times, reference):
    """Prints each time and its ratio to `times[reference]`."""
    print(f"\n{title}")
    for name, seconds in times.items():
        print(f"  {name:38s} {seconds * 1e3:9.2f} ms   {seconds / times[reference]:5.2f}x {reference}")
