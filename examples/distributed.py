"""Multi-device WGAN training with tf.distribute: one machine (MirroredStrategy) or several (MultiWorkerMirrored).

One machine: `MirroredStrategy` over all visible GPUs, or, without a GPU, over
`--cpu-replicas` logical CPU devices carved out of the CPU (they share its
cores: useful to try the distributed code path, not faster). Logical devices
can only be configured before TensorFlow initializes its runtime, which this
script does first thing; if the runtime is already up (e.g. `main()` called
from a process that configured devices itself) it uses the logical CPUs that
exist.

Several machines: run the same command on every worker with its index and the
list of all workers. The script sets `TF_CONFIG` from them and creates a
`MultiWorkerMirroredStrategy` before any other TensorFlow work (the strategy
reads `TF_CONFIG` and sets up the collective ops when it is created). Worker
0 is the chief.

Everything that creates variables (the two networks, the WGAN and its penalty,
the optimizers, hence `compile`) happens inside `strategy.scope()`.

Batches: the dataset yields *global* batches. The strategy splits each into
equal per-replica shares, and the WGAN splits each share into `n_critic`
interleaved critic batches, so

    global batch = replicas x n_critic x critic batch size (per replica).

Keeping the per-replica critic batch fixed keeps every device equally busy
as replicas are added; each update then averages the gradients of replicas x
critic-batch samples, the same update one device computes on that larger
batch (tflip draws latents and penalty points for the global batch, so the
distributed and single-device runs agree). Batches use `drop_remainder=True`
so every step splits evenly (and every worker runs the same number of steps).
Under MultiWorkerMirrored each worker builds the same dataset from the same
seed and keeps its share of every global batch (`AutoShardPolicy.DATA`).

Checkpointing: Keras 3's `BackupAndRestore` and `ModelCheckpoint` have no
chief logic, so only the chief writes to `--checkpoint-dir`; the other
workers run the same callbacks (the code path stays identical on every
worker, so a save that involves collective ops cannot hang) but write into a
per-worker temporary directory, deleted after training, as TensorFlow's
multi-worker guide recommends. `BackupAndRestore` resumes an interrupted run
from the last finished epoch (each worker from its own, identical, backup);
`ModelCheckpoint` keeps the weights after every epoch.

TPUs: replace the strategy by

    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()   # tpu="name" or "grpc://..."
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    strategy = tf.distribute.TPUStrategy(resolver)

and keep the model code: creation and `compile` inside `strategy.scope()`,
fixed-size global batches (TPUs need static shapes), checkpoints in a bucket
the TPU workers can reach (`gs://...`).

Run:
    python examples/distributed.py                        # all GPUs, else 2 logical CPUs
    python examples/distributed.py --cpu-replicas 4 --epochs 20
    # two workers (two machines, or two shells on one machine with 127.0.0.1):
    python examples/distributed.py --worker 0 --workers host0:12345,host1:12345
    python examples/distributed.py --worker 1 --workers host0:12345,host1:12345
    python examples/distributed.py --smoke                # 2 logical CPUs, two steps (tests)
"""

import argparse
import json
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tflip  # noqa: E402


def cpu_devices(count):
    """Names of `count` logical CPU devices, configuring them if TensorFlow has not initialized yet."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        # The runtime is already initialized (the caller used TensorFlow): keep what exists.
        pass
    devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    if len(devices) < count:
        raise RuntimeError(
            f"{count} logical CPU devices were requested but TensorFlow was initialized with {len(devices)}: "
            "run the script in a fresh process, or configure the devices before TensorFlow starts."
        )
    return devices[:count]


def make_strategy(args):
    """`(strategy, description)` for the command line: MultiWorkerMirrored, or Mirrored on GPUs or CPUs."""
    if args.workers:
        # Read by the strategy's cluster resolver when it is created, right below.
        os.environ["TF_CONFIG"] = json.dumps(
            {"cluster": {"worker": args.workers}, "task": {"type": "worker", "index": args.worker}}
        )
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        return strategy, f"MultiWorkerMirroredStrategy, worker {args.worker} of {len(args.workers)}"
    if tf.config.list_physical_devices("GPU"):
        strategy = tf.distribute.MirroredStrategy()  # all visible GPUs
        return strategy, f"MirroredStrategy over {strategy.num_replicas_in_sync} GPU(s)"
    devices = cpu_devices(args.cpu_replicas)
    return tf.distribute.MirroredStrategy(devices), f"MirroredStrategy over {len(devices)} logical CPU devices"


def global_batches(samples, global_batch, seed):
    """Shuffled global batches of equal size; under MultiWorkerMirrored each worker keeps its share."""
    data = (
        tf.data.Dataset.from_tensor_slices(samples)
        # Same seed on every worker: the workers must agree on the global batches they split.
        .shuffle(len(samples), seed=seed)
        .batch(global_batch, drop_remainder=True)
        .prefetch(2)
    )
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return data.with_options(options)


def parse_workers(value):
    workers = [w.strip() for w in value.split(",") if w.strip()]
    if len(workers) < 1 or any(":" not in w for w in workers):
        raise argparse.ArgumentTypeError(f"expected host:port,host:port,..., got {value!r}")
    return workers


def main(argv=None, strategy=None):
    """Trains the WGAN; returns a summary dict.

    Args:
        argv: command-line arguments (default `sys.argv[1:]`).
        strategy: an existing `MirroredStrategy` to use instead of creating one. A process should hold one
            MirroredStrategy per set of devices: every instance numbers its collective operations from the same
            keys, so two instances used in one process can clash (notebooks, test sessions).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=parse_workers, default=None, metavar="HOST:PORT,...",
                        help="all workers of a MultiWorkerMirroredStrategy cluster (same list on each)")
    parser.add_argument("--worker", type=int, default=None, metavar="INDEX", help="this worker's index in --workers")
    parser.add_argument("--cpu-replicas", type=int, default=2, help="logical CPU devices when there is no GPU")
    parser.add_argument("--toy", default="eight_gaussians", choices=sorted(tflip.datasets.TOY_SETS))
    parser.add_argument("--penalty", default="lp", help="gp, lp, alp, maxgp, maxal or clip")
    parser.add_argument("--n-critic", type=int, default=5)
    parser.add_argument("--critic-batch-size", type=int, default=64, help="per replica and critic update")
    parser.add_argument("--width", type=int, default=256, help="hidden width of both ReLU networks")
    parser.add_argument("--samples", type=int, default=256_000, help="training samples per epoch")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--checkpoint-dir", default=None,
                        help="backup and weights (default checkpoints/distributed_wgan; temporary with --smoke)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny networks, two steps (tests)")
    args = parser.parse_args(argv)
    if (args.worker is None) != (args.workers is None):
        parser.error("--worker and --workers go together")
    if args.workers and strategy is not None:
        parser.error("--workers creates its own MultiWorkerMirroredStrategy: do not pass a strategy")
    if args.workers and not 0 <= args.worker < len(args.workers):
        parser.error(f"--worker must be in [0, {len(args.workers)})")
    for name in ("cpu_replicas", "n_critic", "critic_batch_size", "width", "samples", "epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.smoke:
        args.n_critic, args.critic_batch_size, args.width, args.epochs = 1, 32, 16, 1
    checkpoint_dir = args.checkpoint_dir or (
        tempfile.mkdtemp(prefix="distributed_wgan_") if args.smoke else "checkpoints/distributed_wgan"
    )

    # First TensorFlow work of the script: devices and collectives are set up here.
    if strategy is None:
        strategy, description = make_strategy(args)
    else:
        description = f"{type(strategy).__name__} over {strategy.num_replicas_in_sync} device(s) (given)"
    replicas = strategy.num_replicas_in_sync
    global_batch = replicas * args.n_critic * args.critic_batch_size
    if args.smoke:
        args.samples = 2 * global_batch
    if args.samples < global_batch:
        parser.error(f"--samples must be at least one global batch ({global_batch})")
    chief = strategy.extended.should_checkpoint
    worker = args.worker or 0

    keras.utils.set_random_seed(args.seed)
    train = tflip.datasets.toy(args.toy, args.samples, seed=args.seed)
    held_out = tflip.datasets.toy(args.toy, 500 if args.smoke else 1000, seed=args.seed + 1)
    with strategy.scope():
        generator = tflip.models.relu_mlp(2, 2, depth=3, width=args.width)
        critic = tflip.models.relu_mlp(2, 1, depth=3, width=args.width, name="critic")
        gan = tflip.models.WGAN(generator, critic, latent_dim=2, penalty=args.penalty, n_critic=args.n_critic,
                                seed=args.seed)
        # compile creates the optimizers' slots: it belongs in the scope too.
        gan.compile(keras.optimizers.Adam(1e-4, beta_1=0.5, beta_2=0.9),
                    keras.optimizers.Adam(1e-4, beta_1=0.5, beta_2=0.9))

    # The chief writes the real files; the others write identical ones into a scratch directory.
    write_dir = checkpoint_dir if chief else os.path.join(checkpoint_dir, f"worker{worker}_tmp")
    os.makedirs(write_dir, exist_ok=True)
    weights_path = os.path.join(write_dir, "wgan.weights.h5")
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(write_dir, "backup")),
        keras.callbacks.ModelCheckpoint(weights_path, save_weights_only=True),
    ]
    if chief:
        print(f"{description}: {replicas} replica(s) x {args.n_critic} critic batches x {args.critic_batch_size} "
              f"samples = global batch {global_batch}; penalty {args.penalty}; checkpoints in {checkpoint_dir}")
    history = gan.fit(global_batches(train, global_batch, args.seed), epochs=args.epochs,
                      verbose=2 if chief and not args.smoke else 0, callbacks=callbacks, shuffle=False)

    # Direct generator call, not `generate`/`predict`: under MultiWorkerMirrored `predict` is a collective
    # step every worker would have to join, while reading the (identical) local weights needs no one.
    latent = np.random.default_rng(args.seed + 2).standard_normal((len(held_out), 2)).astype("float32")
    w1 = tflip.metrics.wasserstein1_exact(np.asarray(gan.generator(latent, training=False)), held_out)
    if chief:
        print(f"exact W1 between {len(held_out)} generated and held-out samples: {w1:.4f}; "
              f"critic estimate in the last epoch {history.history['wasserstein'][-1]:.4f}")
        print(f"weights saved to {weights_path}")
    else:
        shutil.rmtree(write_dir, ignore_errors=True)
    return {
        "strategy": type(strategy).__name__,
        "replicas": replicas,
        "global_batch": global_batch,
        "chief": chief,
        "history": history.history,
        "w1_exact": w1,
        "weights_path": weights_path if chief else None,
    }


if __name__ == "__main__":
    main()
