"""The ``cynn`` command line: train a network, compare runs, evaluate a saved model.

    cynn train [--dataset digits] [--model small-cnn] [--optimizer adam] [--augment crop-flip] ...
    cynn compare RUN_DIR [RUN_DIR ...]
    cynn evaluate MODEL.npz [--dataset digits]

Every user mistake ends with one line on stderr and exit status 2; never a traceback.
"""
import argparse
import json
import math
import os
import sys
import time

from cynn._validation import parse_positive_int, positive_float, positive_int

OPTIMIZERS = ("adam", "adamw", "sgd")
# Training-batch augmentations by name; see _augmentation for what each one does.
AUGMENTATIONS = ("none", "flip", "crop", "crop-flip")


class CLIError(Exception):
    """A user mistake, reported as one line."""


def _argument(rule, requirement):
    """An argparse type: text parsed as a number, then checked by one of the package's
    argument rules; the message names the text as typed."""
    def convert(text):
        try:
            return rule(float(text) if rule is positive_float else parse_positive_int(text, "value"),
                        "value")
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {requirement}, got {text!r}") from None
    return convert


_positive_int = _argument(positive_int, "a positive integer")
_positive_float = _argument(positive_float, "a positive number")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, no usage dump: the message names the bad value.
        raise CLIError(f"{self.prog}: {message}")


def build_parser():
    parser = _Parser(prog="cynn", description="Train and evaluate small CNNs on the CPU.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    train = sub.add_parser("train", help="train a network and write a run folder")
    train.add_argument("--dataset", default="digits", help="dataset name (default: digits)")
    train.add_argument("--model", default=None,
                       help="small-cnn, mlp, resnetN or plainN with N = 6n + 2 (resnet8, resnet14, "
                       "resnet20, ...), as cynn.models.build names them, '-' or '_' alike "
                       "(default: small-cnn for images, mlp otherwise)")
    train.add_argument("--optimizer", default="adam", help=f"one of {', '.join(OPTIMIZERS)}")
    train.add_argument("--augment", default="none", choices=AUGMENTATIONS,
                       help="augment the training batches (never validation or test): 'flip' "
                       "mirrors half the images left to right, 'crop' pads H//8 zeros on every "
                       "side (4 for 32 px images, at least 1) and crops back to H x W at a "
                       "random place, 'crop-flip' does both (default: none)")
    train.add_argument("--lr", type=_positive_float, default=None,
                       help="learning rate (default: 1e-3 for Adam/AdamW, 0.05 for SGD)")
    train.add_argument("--epochs", type=_positive_int, default=20)
    train.add_argument("--batch-size", type=_positive_int, default=64)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default=None, help="run folder (default: runs/<dataset>-<model>-<time>)")
    train.add_argument("--threads", type=_positive_int, default=None)
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--resume", metavar="RUN_DIR", default=None,
                       help="continue a run that was stopped, from its last completed epoch, "
                       "with the arguments it was started with")

    compare = sub.add_parser("compare", help="overlay the curves of several runs")
    compare.add_argument("runs", nargs="+", metavar="RUN_DIR")
    compare.add_argument("--out", default="comparison.png")
    compare.add_argument("--metrics", nargs="+", default=["loss", "accuracy"])

    evaluate = sub.add_parser("evaluate", help="accuracy and confusion matrix of a saved model")
    evaluate.add_argument("model_path", metavar="MODEL.npz")
    evaluate.add_argument("--dataset", default=None, help="default: the dataset it was trained on")
    evaluate.add_argument("--seed", type=int, default=None, help="split seed (default: the run's)")
    return parser


def _load_data(name, seed):
    from cynn.datasets import available_datasets, load_dataset

    if name not in available_datasets():
        raise CLIError(f"unknown dataset {name!r}; available: {', '.join(available_datasets())}")
    try:
        return load_dataset(name, random_state=seed)
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot load dataset {name!r}: {exc}") from None


def _model_name(name):
    """The `cynn.models.build` name of a --model value: 'small-cnn' is 'small_cnn'."""
    return name.replace("-", "_")


def _check_model(name):
    """Refuse an unknown --model before loading any data (a download may be long)."""
    from cynn.models import build

    try:
        # The smallest image every model accepts: what is checked is the name.  A
        # seed, so that the package-level generator is left alone.
        build(_model_name(name), (1, 8, 8), 2, random_state=0)
    except (ValueError, TypeError) as exc:
        raise CLIError(f"--model {name}: {exc}") from None


def _build(config):
    from cynn.models import build

    shape = tuple(config["input_shape"])
    if _is_flat(config):
        # The MLP gets its features flat (_flat_if_needed), so it is built without a
        # Flatten in front: its parameter keys stay those of runs of older versions.
        shape = (math.prod(shape),)
    try:
        return build(_model_name(config["model"]), shape, config["n_classes"],
                     random_state=config["seed"])
    except ValueError as exc:
        hint = (f"; {config['dataset']!r} has flat features {shape}: use --model mlp"
                if len(shape) != 3 else "")
        raise CLIError(f"cannot build model {config['model']!r}: {exc}{hint}") from None


def _is_flat(config):
    return _model_name(config["model"]) == "mlp"


def _flat_if_needed(X, config):
    return X.reshape(len(X), -1) if _is_flat(config) else X


def _augmentation(config):
    """The transform named by config['augment'] (absent in runs of older versions), or None."""
    from cynn.datasets import Compose, RandomCrop, RandomHorizontalFlip

    name = config.get("augment", "none")
    if name == "none":
        return None
    shape = tuple(config["input_shape"])
    if len(shape) != 3 or _is_flat(config):
        raise CLIError(f"--augment {name} needs images and an image model, but model "
                       f"{config['model']!r} sees {config['dataset']!r} as flat features; "
                       "use --augment none")
    _, height, width = shape
    # H // 8 is the usual 4 pixels at CIFAR's 32; at least 1, or a crop of an
    # unpadded image to its own size would change nothing.
    crop = RandomCrop((height, width), padding=(max(1, height // 8), max(1, width // 8)))
    steps = {"flip": [RandomHorizontalFlip()], "crop": [crop],
             "crop-flip": [crop, RandomHorizontalFlip()]}[name]
    return Compose(steps)


def _make_out_dir(args, model):
    out = args.out
    if out is None:
        # Named from the time to the second, plus a counter: two runs started in the
        # same second (a shell loop with &) each create their own folder, atomically.
        base = os.path.join("runs", f"{args.dataset}-{model}-{args.optimizer}-"
                            f"{time.strftime('%Y%m%d-%H%M%S')}")
        os.makedirs("runs", exist_ok=True)
        for i in range(1, 10000):
            out = base if i == 1 else f"{base}-{i}"
            try:
                os.mkdir(out)
                break
            except FileExistsError:
                continue
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, ".cynn-write-test")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as exc:
        raise CLIError(f"cannot write to run folder {out!r}: {exc.strerror or exc}") from None
    return out


STATE_FILE = "training_state.npz"


def _new_config(args):
    if args.optimizer not in OPTIMIZERS:
        raise CLIError(f"unknown optimizer {args.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
    if args.model is not None:
        _check_model(args.model)
    data = _load_data(args.dataset, args.seed)
    shape = tuple(data.X_train.shape[1:])
    model_name = args.model or ("small-cnn" if len(shape) == 3 else "mlp")
    config = {"dataset": args.dataset, "model": model_name, "optimizer": args.optimizer,
              "lr": args.lr or (0.05 if args.optimizer == "sgd" else 1e-3), "epochs": args.epochs,
              "batch_size": args.batch_size, "seed": args.seed, "augment": args.augment,
              "input_shape": list(shape), "n_classes": int(data.n_classes),
              "class_names": [str(c) for c in data.class_names]}
    return config, data


def _resume_config(run):
    """The run folder's config and state file; CLIError unless there is something to resume."""
    from cynn.trainers.state import TrainingStateError, read_training_state

    state_path = os.path.join(run, STATE_FILE)
    if not os.path.isfile(state_path):
        raise CLIError(f"cannot resume {run!r}: no {STATE_FILE} in it (not a run folder, or "
                       "killed before its first epoch ended)")
    try:
        with open(os.path.join(run, "config.json")) as f:
            config = json.load(f)
        for key in ("dataset", "model", "optimizer", "lr", "epochs", "batch_size", "seed",
                    "input_shape", "n_classes"):
            config[key]
        state = read_training_state(state_path)
    except TrainingStateError as exc:
        raise CLIError(f"cannot resume {run!r}: {exc}") from None
    except (OSError, ValueError, KeyError, TypeError):
        raise CLIError(f"cannot resume {run!r}: its config.json is missing or unreadable") from None
    if state.get("finished") and os.path.isfile(os.path.join(run, "history.json")):
        raise CLIError(f"cannot resume {run!r}: the run already finished "
                       f"({state.get('epoch')} epochs)")
    return run, config, state_path


def cmd_train(args):
    import numpy as np

    import cynn
    from cynn.serialization import atomic_write
    from cynn.trainers import Checkpoint, History, Trainer, plot_histories
    from cynn.trainers.state import TrainingStateError

    if args.threads:
        cynn.set_num_threads(args.threads)
    if args.resume:
        out, config, state_path = _resume_config(args.resume)
        data = _load_data(config["dataset"], config["seed"])
    else:
        config, data = _new_config(args)
    model_name, optimizer_name, dataset = config["model"], config["optimizer"], config["dataset"]
    cynn.manual_seed(config["seed"])
    # Model and augmentation before the run folder: a model that does not fit the
    # data leaves no folder behind.
    model = _build(config)
    augment = _augmentation(config)
    if not args.resume:
        out = _make_out_dir(args, config["model"])
        state_path = os.path.join(out, STATE_FILE)
        atomic_write(os.path.join(out, "config.json"),
                     lambda f: f.write(json.dumps(config, indent=1).encode()))
    optimizer = {"adam": lambda: cynn.Adam(model, lr=config["lr"]),
                 "adamw": lambda: cynn.AdamW(model, lr=config["lr"]),
                 "sgd": lambda: cynn.SGD(model, lr=config["lr"], momentum=0.9)}[optimizer_name]()
    best_path = os.path.join(out, "model.npz")
    trainer = Trainer(model, cynn.CrossEntropyCriterion(), optimizer,
                      callbacks=[Checkpoint(best_path, monitor="val_accuracy")],
                      batch_size=config["batch_size"], random_state=config["seed"],
                      verbose=0 if args.quiet else 1, augment=augment)
    val = (_flat_if_needed(data.X_val, config), data.y_val) if len(data.y_val) else None
    if val is None:
        trainer.callbacks = [cb for cb in trainer.callbacks if not isinstance(cb, Checkpoint)]
    verb = "resuming" if args.resume else "training"
    print(f"{verb} {model_name} on {dataset} ({len(data.y_train)} train / "
          f"{len(data.y_val)} val / {len(data.y_test)} test) with {optimizer_name}, lr={config['lr']}"
          + (f", augmentation {augment!r}" if augment is not None else ""))
    try:
        history = trainer.fit((_flat_if_needed(data.X_train, config), data.y_train), val,
                              epochs=config["epochs"], resume_from=state_path if args.resume else None,
                              state_path=state_path)
    except TrainingStateError as exc:
        raise CLIError(f"cannot resume {out!r}: {exc}") from None
    if val is not None and os.path.exists(best_path):
        cynn.load(model, best_path)      # the best validation epoch
    else:
        cynn.save(model, best_path)
    test = trainer.evaluate((_flat_if_needed(data.X_test, config), data.y_test))
    history.to_json(os.path.join(out, "history.json"))
    history.to_csv(os.path.join(out, "history.csv"))
    curves = os.path.join(out, "curves.png")
    try:
        fig = plot_histories({f"{model_name} {optimizer_name}": History(history.records)},
                             metrics=("loss", "accuracy"), title=f"{dataset}: {model_name}")
        fig.savefig(curves, dpi=110)
    except ImportError as exc:
        curves = f"(not drawn: {exc})"
    seconds = np.mean(history["seconds"]) if len(history) else float("nan")
    print(f"test accuracy: {test['accuracy']:.4f}   test loss: {test['loss']:.4f}")
    print(f"time per epoch: {seconds:.3f} s over {len(history)} epochs")
    print(f"run folder: {out} (history.json, history.csv, model.npz, curves.png, config.json)")
    if curves.startswith("("):
        print(f"curves {curves}")
    return 0


def _read_history(run):
    from cynn.trainers import History

    path = os.path.join(run, "history.json")
    if not os.path.isfile(path):
        raise CLIError(f"{run!r} is not a run folder: no history.json in it")
    try:
        return History.from_json(path)
    except (ValueError, OSError) as exc:
        raise CLIError(f"cannot read {path}: {exc}") from None


def cmd_compare(args):
    from cynn.trainers import plot_histories

    histories = {}
    for run in args.runs:
        name = os.path.basename(os.path.normpath(run))
        while name in histories:
            name += "'"
        histories[name] = _read_history(run)
    try:
        fig = plot_histories(histories, metrics=args.metrics, title="cynn runs")
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    try:
        fig.savefig(args.out, dpi=110)
    except OSError as exc:
        raise CLIError(f"cannot write {args.out!r}: {exc.strerror or exc}") from None
    width = max(len(n) for n in histories) + 2
    print(f"{'run':<{width}}{'epochs':>7}{'train_loss':>12}{'val_loss':>10}{'val_acc':>9}{'s/epoch':>9}")
    for name, h in histories.items():
        last = h[-1] if len(h) else {}

        def fmt(key, spec, last=last):
            value = last.get(key)
            return format(value, spec) if isinstance(value, (int, float)) else "-"

        seconds = sum(h["seconds"]) / len(h) if len(h) else None
        print(f"{name:<{width}}{len(h):>7}{fmt('train_loss', '.4f'):>12}{fmt('val_loss', '.4f'):>10}"
              f"{fmt('val_accuracy', '.4f'):>9}{(format(seconds, '.3f') if seconds else '-'):>9}")
    print(f"curves written to {args.out}")
    return 0


def cmd_evaluate(args):
    import numpy as np

    import cynn
    from cynn.trainers import Trainer

    if not os.path.isfile(args.model_path):
        raise CLIError(f"no such model file: {args.model_path!r}")
    config_path = os.path.join(os.path.dirname(os.path.abspath(args.model_path)), "config.json")
    try:
        with open(config_path) as f:
            config = json.load(f)
        config["input_shape"], config["n_classes"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CLIError(f"cannot read the run's config.json next to {args.model_path!r}; "
                       "evaluate needs the folder written by 'cynn train'") from None
    dataset = args.dataset or config.get("dataset", "digits")
    data = _load_data(dataset, config.get("seed", 0) if args.seed is None else args.seed)
    if list(data.X_test.shape[1:]) != list(config["input_shape"]) or data.n_classes != config["n_classes"]:
        raise CLIError(f"model {args.model_path!r} was trained on inputs {tuple(config['input_shape'])} with "
                       f"{config['n_classes']} classes; {dataset!r} has {tuple(data.X_test.shape[1:])} "
                       f"and {data.n_classes}")
    model = _build(config)
    try:
        cynn.load(model, args.model_path)
    except (ValueError, TypeError, OSError) as exc:
        raise CLIError(f"corrupt or mismatched model file {args.model_path!r}: {exc}".splitlines()[0]) from None
    trainer = Trainer(model, cynn.CrossEntropyCriterion(), cynn.SGD(model, lr=1.0), verbose=0)
    X_test = _flat_if_needed(data.X_test, config)
    predicted = trainer.predict(X_test).argmax(axis=1)
    accuracy = float(np.mean(predicted == data.y_test))
    n = data.n_classes
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (data.y_test, predicted), 1)
    names = [str(c) for c in data.class_names]
    print(f"{args.model_path} on {dataset} test split ({len(data.y_test)} samples)")
    print(f"accuracy: {accuracy:.4f}")
    print("confusion matrix (rows: true class, columns: predicted):")
    width = max(max(len(s) for s in names), len(str(matrix.max()))) + 1
    print(" " * width + "".join(f"{s:>{width}}" for s in names))
    for name, row in zip(names, matrix):
        print(f"{name:>{width}}" + "".join(f"{v:>{width}}" for v in row))
    return 0


def main(argv=None):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return {"train": cmd_train, "compare": cmd_compare, "evaluate": cmd_evaluate}[args.command](args)
    except CLIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
