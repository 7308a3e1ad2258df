"""The one place where tflip touches private Keras / TensorFlow APIs.

Each helper names the private symbol it relies on and the versions it was
checked against (Keras 3.0-3.15, TensorFlow 2.16-2.21); when one moves, only
this module changes.
"""

from keras.src.models.functional import Functional as _Functional  # private since Keras 3.0


def is_functional(model):
    """Whether `model` is a functional model (built from `keras.Input`), not a subclassed one.

    Keras exposes no public predicate: `keras.Model(inputs, outputs)` returns
    an instance of the private `Functional` class (Keras 3.0-3.15).
    """
    return isinstance(model, _Functional)


def functional_calls(model):
    """The calls of a functional model's graph, each after the calls that feed it.

    Yields `(operation, input_tensors, args, outputs)` per call node:
    the layer or op, the symbolic tensors it reads (flattened, in argument
    order), its positional arguments (tensors and constants, e.g. the
    `0.5` of `x * 0.5`) and its output tensors. Keras has no public graph
    traversal; this reads the private `Function._nodes_by_depth` and the
    attributes of the private `Node` class (`operation`, `is_input`,
    `input_tensors`, `arguments.args`, `outputs`), which are unchanged in
    Keras 3.0-3.15. Input nodes are skipped.
    """
    nodes_by_depth = model._nodes_by_depth
    for depth in sorted(nodes_by_depth, reverse=True):  # the deepest nodes are the inputs' consumers
        for node in nodes_by_depth[depth]:
            if node.operation is None or node.is_input:
                continue
            yield node.operation, list(node.input_tensors), tuple(node.arguments.args), list(node.outputs)


def flatten_layers(layer):
    """`layer` and every layer tracked inside it (nested models, sublayer attributes), each once, depth first.

    Keras has no public recursive traversal of a layer's tracked sublayers
    (`Model.layers` lists the direct ones only, and a plain `Layer` has none);
    this calls the private `Layer._flatten_layers(include_self, recursive)`,
    unchanged in Keras 3.0-3.15. Returns `None` for an object without it.
    """
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is None:
        return None
    return flatten(include_self=True, recursive=True)


def build_input_shape(layer):
    """The input shape a layer was built with, or `None`.

    Layers of subclassed models have no symbolic `input`; Keras records the
    build shape only in the private `Layer._build_shapes_dict` (Keras
    3.0-3.15), as `{"input_shape": shape}` for a `build(input_shape)`.
    """
    return (getattr(layer, "_build_shapes_dict", None) or {}).get("input_shape")


def in_multi_worker_mode(strategy):
    """Whether `strategy` spans several workers (MultiWorkerMirroredStrategy with a cluster).

    TensorFlow exposes this only as the private
    `strategy.extended._in_multi_worker_mode()` (TF 2.16-2.21), which
    Keras' own trainer uses too; strategies without it are single-worker.
    """
    return bool(getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)())
