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
