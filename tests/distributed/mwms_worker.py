"""One worker of a MultiWorkerMirroredStrategy WGAN run (launched by the tests).

Usage: python mwms_worker.py WORKER_INDEX PORT0 PORT1 OUTPUT.npz
With WORKER_INDEX = -1 it trains on one worker without a cluster (the reference).
"""

import json
import os
import sys

index, port0, port1, output = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
if index >= 0:
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{port0}", f"127.0.0.1:{port1}"]},
            "task": {"type": "worker", "index": index},
        }
    )
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tflip  # noqa: E402
from tests.models.helpers import toy_gan  # noqa: E402

strategy = tf.distribute.MultiWorkerMirroredStrategy() if index >= 0 else tf.distribute.get_strategy()
data = tflip.datasets.eight_gaussians(64 * 4, seed=0)
dataset = tf.data.Dataset.from_tensor_slices(data).batch(64)  # global batches, split across workers
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
dataset = dataset.with_options(options)
with strategy.scope():
    gan = toy_gan(sys.argv[5] if len(sys.argv) > 5 else "gp")
    gan.compile(keras.optimizers.SGD(0.01), keras.optimizers.SGD(0.01))
# Monitoring must write from the chief (worker 0) only.
logger = tflip.callbacks.SpectrumLogger(output + ".logs", probe=data[:32], strict=True)
history = gan.fit(dataset, epochs=2, verbose=0, callbacks=[logger])
np.savez(output, *[np.asarray(w) for w in gan.weights], logs=json.dumps(history.history))
