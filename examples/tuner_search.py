"""Random search over WGAN hyperparameters with Keras Tuner, scored by the exact Wasserstein-1 distance.

`tflip.tuner.WGANHyperModel` defines the search space (penalty and its weight,
critic constraint, activation, depth and width, generator size, learning
rates, n_critic) and logs `w1_exact` after every epoch: the exact W1, by
optimal transport, between generated samples from fixed latent vectors and
held-out real samples of the toy set. The tuner minimizes it
(`WGANHyperModel.objective`) and scores each trial by its best epoch, whose
weights it also checkpoints, so the best model reproduces the best score.

The script prints every trial's score and hyperparameters, the best ones, and
the exact W1 of the reloaded best model. Tuner files (trials, checkpoints) go
to `--directory`, a new temporary directory by default; an existing project
there is resumed unless `--overwrite`.

Run:
    python examples/tuner_search.py --toy eight_gaussians --trials 20 --epochs 5
    python examples/tuner_search.py --penalties lp,maxgp --constraints bjorck,spectral --directory tuning
    python examples/tuner_search.py --smoke      # two tiny trials (tests)
"""

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_tuner  # noqa: E402

import tflip  # noqa: E402
import tflip.tuner  # noqa: E402


def names(value):
    """A comma-separated list of names as a tuple (argparse type)."""
    items = tuple(item.strip() for item in value.split(",") if item.strip())
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return items


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toy", default="eight_gaussians", choices=sorted(tflip.datasets.TOY_SETS))
    parser.add_argument("--trials", type=int, default=10, help="random hyperparameter sets to train")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per trial (w1_exact after each)")
    parser.add_argument("--samples", type=int, default=64_000, help="training samples per epoch")
    parser.add_argument("--held-out", type=int, default=500, help="held-out real samples of w1_exact")
    parser.add_argument("--critic-batch-size", type=int, default=64, help="fit batch = n_critic x this")
    parser.add_argument("--penalties", type=names, default=("gp", "lp", "alp", "maxgp", "maxal"))
    parser.add_argument("--constraints", type=names, default=tflip.tuner.CONSTRAINTS)
    parser.add_argument("--activations", type=names, default=tflip.tuner.ACTIVATIONS)
    parser.add_argument("--directory", default=None, help="tuner files (default: a new temporary directory)")
    parser.add_argument("--project-name", default="wgan")
    parser.add_argument("--overwrite", action="store_true", help="start over instead of resuming the project")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="two trials of tiny networks, one epoch (tests)")
    args = parser.parse_args(argv)
    for name in ("trials", "epochs", "samples", "held_out", "critic_batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    space = {}
    if args.smoke:
        args.trials, args.epochs, args.samples, args.held_out, args.critic_batch_size = 2, 1, 256, 100, 32
        # Plain and spectral critics trace fastest, and Keras Tuner builds a model per conditional
        # choice up front: a small space and tiny networks keep a trial to a few seconds.
        args.penalties, args.constraints, args.activations = ("gp", "lp"), ("none", "spectral"), ("relu", "maxmin")
        space = dict(critic_depth=1, critic_width=8, generator_depth=1, generator_width=8, n_critic=(1, 2),
                     critic_learning_rate=(1e-3, 1e-2), generator_learning_rate=(1e-3, 1e-2))
    directory = args.directory or tempfile.mkdtemp(prefix="tflip_tuner_")

    keras.utils.set_random_seed(args.seed)
    held_out = tflip.datasets.toy(args.toy, args.held_out, seed=args.seed + 1)
    try:
        hypermodel = tflip.tuner.WGANHyperModel(
            data_dim=held_out.shape[1], latent_dim=2, held_out_real=held_out, penalties=args.penalties,
            constraints=args.constraints, activations=args.activations,
            critic_batch_size=args.critic_batch_size, seed=args.seed, **space,
        )
    except ValueError as error:  # the hypermodel names the offending option
        parser.error(str(error))
    tuner = keras_tuner.RandomSearch(
        hypermodel, objective=hypermodel.objective, max_trials=args.trials, seed=args.seed,
        directory=directory, project_name=args.project_name, overwrite=args.overwrite,
    )
    print(f"Random search of {args.trials} WGANs on {args.toy}, {args.epochs} epoch(s) each, "
          f"objective {hypermodel.objective.name} ({hypermodel.objective.direction}); tuner files in {directory}")
    train = tflip.datasets.toy(args.toy, args.samples, seed=args.seed)
    # No batch_size: the hypermodel sets n_critic * critic_batch_size per trial.
    tuner.search(train, epochs=args.epochs, verbose=0)

    trials = [tuner.oracle.trials[key] for key in sorted(tuner.oracle.trials, key=int)]
    for trial in trials:
        values = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in trial.hyperparameters.values.items())
        score = "failed" if trial.score is None else f"{trial.score:.4f}"
        print(f"  trial {trial.trial_id}: w1_exact {score}  ({values})")
    best = tuner.oracle.get_best_trials(1)[0]
    best_hp = tuner.get_best_hyperparameters(1)[0].values
    gan = tuner.get_best_models(1)[0]
    # The checkpoint holds the best epoch's weights: regenerating from the same latents gives the score back.
    reloaded = tflip.metrics.wasserstein1_exact(gan.generate(len(held_out), seed=hypermodel.eval_seed), held_out)
    print(f"best trial {best.trial_id}: w1_exact {best.score:.4f} (reloaded best model: {reloaded:.4f})")
    print("best hyperparameters: " + ", ".join(f"{k}={v}" for k, v in best_hp.items()))
    return {
        "best_score": float(best.score),
        "best_hyperparameters": dict(best_hp),
        "trial_scores": [float(trial.score) for trial in trials if trial.score is not None],
        "reloaded_score": reloaded,
        "directory": directory,
    }


if __name__ == "__main__":
    main()
