"""`tflip demo`: a WGAN with a Björck + GroupSort critic on a toy set, with logs, pictures and a summary."""

import json
import os
import time

DATASETS = ("eight_gaussians", "twenty_five_gaussians", "swiss_roll")


def add_parser(commands):
    from tflip import penalties
    from tflip.cli import add_network_arguments, positive_float, positive_int

    weighted = [name for name, entry in penalties.REGISTRY.items() if entry.weighted]
    parser = commands.add_parser(
        "demo",
        help="train a WGAN on a toy set; write TensorBoard logs, PNGs and a JSON summary",
        description=(
            "Trains a WGAN on an embedded 2-D toy set with a 1-Lipschitz critic (Björck-orthonormalized "
            "Dense + GroupSort by default), logging the exact W1 to held-out data (optimal transport), "
            "spectra and Lipschitz bounds to TensorBoard, critic level sets and spectral plots as PNGs, "
            "and a JSON summary. Defaults finish in a few minutes on 2 CPU cores."
        ),
    )
    parser.add_argument("--dataset", choices=DATASETS, default="eight_gaussians", help="toy set (default: %(default)s)")
    parser.add_argument("--penalty", choices=(penalties.NONE, *penalties.NAMES), default=penalties.NONE,
                        help="gradient penalty added to the critic loss (default: %(default)s; the default critic is "
                             "1-Lipschitz by construction)")
    parser.add_argument("--penalty-weight", type=positive_float, default=None,
                        help=f"penalty weight lambda, for {', '.join(weighted)} (default: the penalty's own)")
    add_network_arguments(parser)  # also the generator's depth and width
    parser.add_argument("--steps", type=positive_int, default=1000, help="generator steps (default: %(default)s)")
    parser.add_argument("--n-critic", type=positive_int, default=5, help="critic steps per generator step (5)")
    parser.add_argument("--batch-size", type=positive_int, default=256, help="critic batch size (256)")
    parser.add_argument("--learning-rate", type=positive_float, default=1e-3,
                        help="Adam learning rate of both networks (default: %(default)s, betas 0.5, 0.9)")
    parser.add_argument("--eval-every", type=positive_int, default=100,
                        help="generator steps between evaluations (exact W1, pictures) (default: %(default)s)")
    parser.add_argument("--eval-samples", type=positive_int, default=1000,
                        help="held-out real samples for the exact W1 (default: %(default)s)")
    parser.add_argument("--output", default="tflip-demo", help="output directory (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run, check=check)
    return parser


def check(parser, args):
    from tflip import penalties
    from tflip.cli import check_network_arguments, writable_directory

    entry = penalties.REGISTRY.get(args.penalty)
    if args.penalty_weight is not None and not (entry and entry.weighted):
        raise ValueError(f"--penalty-weight does not apply to --penalty {args.penalty}")
    if args.eval_every > args.steps:
        raise ValueError(f"--eval-every ({args.eval_every}) must be at most --steps ({args.steps})")
    check_network_arguments(args)
    writable_directory(args.output)


def run(args):
    import keras
    import tensorflow as tf

    import tflip
    from tflip.callbacks import CriticLevelSets, ExactWasserstein, SpectrumLogger
    from tflip.callbacks.summary import figure_pixels
    from tflip.lipschitz import jacobian_norms, lipschitz_upper_bound
    from tflip.metrics import wasserstein1_exact
    from tflip.models import WGAN, lipschitz_mlp, relu_mlp

    start = time.time()
    keras.utils.set_random_seed(args.seed)
    images = os.path.join(args.output, "images")
    logs = os.path.join(args.output, "logs")
    critic = lipschitz_mlp(2, 1, args.depth, args.width, args.constraint, args.activation, args.group_size)
    generator = relu_mlp(2, 2, args.depth, args.width)
    penalty = None
    if args.penalty != tflip.penalties.NONE:
        weight = {} if args.penalty_weight is None else {"weight": args.penalty_weight}
        penalty = tflip.penalties.get(args.penalty, seed=args.seed, **weight)
    gan = WGAN(generator, critic, latent_dim=2, penalty=penalty, n_critic=args.n_critic, seed=args.seed)
    gan.compile(*(keras.optimizers.Adam(args.learning_rate, 0.5, 0.9) for _ in range(2)))

    real = tflip.datasets.toy(args.dataset, args.eval_samples, seed=args.seed + 1)
    # Samples are drawn in chunks: every critic step sees fresh data.
    global_batch = args.n_critic * args.batch_size
    chunk = tflip.datasets.toy(args.dataset, 200 * global_batch, seed=args.seed + 2)
    data = tf.data.Dataset.from_tensor_slices(chunk).shuffle(len(chunk), seed=args.seed).repeat().batch(global_batch)
    w1 = ExactWasserstein(real, seed=args.seed)
    callbacks = [
        w1,
        keras.callbacks.TensorBoard(logs),
        SpectrumLogger(os.path.join(logs, "spectra"), probe=real[:256], image_dir=images),
        CriticLevelSets(real[:500], os.path.join(logs, "pictures"), image_dir=images, seed=args.seed),
    ]
    history = gan.fit(data, steps_per_epoch=args.eval_every, epochs=args.steps // args.eval_every,
                      callbacks=callbacks, verbose=0 if args.quiet else 1, shuffle=False)

    generated = gan.generate(len(real), seed=args.seed)
    noise_floor = wasserstein1_exact(tflip.datasets.toy(args.dataset, len(real), seed=args.seed + 3), real)
    probe = jacobian_norms(critic, real[:256]).numpy()
    summary = {
        "command": "demo",
        "config": {k: v for k, v in vars(args).items() if k not in ("run", "check")},
        "w1_exact": [{"generator_step": (epoch + 1) * args.eval_every, "w1": value} for epoch, value in w1.values],
        "final_w1_exact": w1.values[-1][1],
        "real_vs_real_w1": noise_floor,
        "critic_lipschitz_upper_bound": lipschitz_upper_bound(critic),
        "generator_lipschitz_upper_bound": lipschitz_upper_bound(generator),
        "critic_gradient_norm_on_real": {"max": float(probe.max()), "mean": float(probe.mean())},
        "history": {key: [float(v) for v in values] for key, values in history.history.items()},
        "seconds": time.time() - start,
    }
    samples_png = os.path.join(images, "samples.png")
    tf.io.write_file(samples_png, tf.io.encode_png(figure_pixels(lambda f: _scatter(f, real, generated))))
    summary["images"] = sorted(os.path.join("images", name) for name in os.listdir(images))
    # The trained critic for deployment: plain Dense layers holding the orthonormal kernels.
    exported = tflip.export.to_plain_keras(critic)
    exported.save(os.path.join(args.output, "critic_exported.keras"))
    summary["exported_critic"] = "critic_exported.keras"
    summary["exported_critic_lipschitz_upper_bound"] = lipschitz_upper_bound(exported)
    with open(os.path.join(args.output, "summary.json"), "w") as handle:
        json.dump(summary, handle, indent=2)
    print(f"exact W1 to held-out data: {summary['w1_exact'][0]['w1']:.4f} (step {args.eval_every}) -> "
          f"{summary['final_w1_exact']:.4f} (step {args.steps}); two real samples: {noise_floor:.4f}")
    print(f"critic Lipschitz bound {summary['critic_lipschitz_upper_bound']:.4f}, max gradient norm on data "
          f"{probe.max():.4f}")
    print(f"wrote {args.output}/summary.json, {len(summary['images'])} PNGs in {images}, TensorBoard logs in {logs} "
          f"({summary['seconds']:.0f} s)")
    return summary


def _scatter(figure, real, generated):
    axes = figure.add_subplot()
    axes.scatter(real[:, 0], real[:, 1], s=3, c="tab:blue", label="real (held out)")
    axes.scatter(generated[:, 0], generated[:, 1], s=3, c="tab:orange", label="generated")
    axes.set_aspect("equal")
    axes.legend(loc="upper right")
    axes.set_title("samples")
