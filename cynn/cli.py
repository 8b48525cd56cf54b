"""The ``cynn`` command line: train a network, compare runs, evaluate a saved model.

    cynn train [--dataset digits] [--model small-cnn] [--optimizer adam] [--augment crop-flip] ...
    cynn compare RUN_DIR [RUN_DIR ...]
    cynn evaluate MODEL.npz [--dataset digits]
    cynn summary MODEL.npz
    cynn predict MODEL.npz FILE [FILE ...] [--top 3] [--csv] [--invert]
    cynn export MODEL.npz [MODEL.onnx]

Every user mistake ends with one line on stderr and exit status 2; never a traceback.
"""
import argparse
import json
import math
import os
import sys
import time

from cynn._validation import _is_integer, parse_positive_int, positive_float, positive_int

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

    summary = sub.add_parser("summary", help="layers, output shapes, parameters and MACs of a "
                             "saved model")
    summary.add_argument("model_path", metavar="MODEL.npz")
    summary.add_argument("--input-shape", default=None, metavar="C,H,W",
                         help="shape of one sample (default: the one stored in the file)")

    predict = sub.add_parser("predict", help="classify image files (PNG, JPEG, ...) or .npy "
                             "arrays with a saved model")
    predict.add_argument("model_path", metavar="MODEL.npz")
    predict.add_argument("files", nargs="+", metavar="FILE")
    predict.add_argument("--top", type=_positive_int, default=3,
                         help="how many classes to print per file (default: 3)")
    predict.add_argument("--csv", action="store_true",
                         help="print a CSV table: file, predicted class, one probability per class")
    predict.add_argument("--invert", action="store_true",
                         help="use 1 - pixel (dark strokes on a light background, for models "
                         "trained on light-on-dark digits such as MNIST)")

    export = sub.add_parser("export", help="write a saved model as ONNX (needs the onnx extra)")
    export.add_argument("model_path", metavar="MODEL.npz")
    export.add_argument("out", nargs="?", default=None, metavar="MODEL.onnx",
                        help="default: MODEL.npz with the suffix .onnx")
    export.add_argument("--input-shape", default=None, metavar="C,H,W",
                        help="shape of one sample (default: the one stored in the file)")
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


def _metadata(config):
    """What a run's model files say beyond the architecture: enough for `cynn evaluate`
    and `cynn predict` to work from the file alone."""
    return {"dataset": config["dataset"], "model": config["model"], "seed": config["seed"],
            "class_names": config.get("class_names"),
            # The MLP sees images flat; this is the shape they came in.
            "image_shape": config["input_shape"]}


def _make_out_dir(args, model):
    out = args.out
    if out is None:
        # Named from the time to the second, plus a counter: two runs started in the
        # same second (a shell loop with &) each create their own folder, atomically.
        from cynn.serialization import new_folder

        base = os.path.join("runs", f"{args.dataset}-{model}-{args.optimizer}-"
                            f"{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            os.makedirs("runs", exist_ok=True)
            out = new_folder(base)
        except OSError as exc:
            raise CLIError(f"cannot create a run folder: {exc.strerror or exc}") from None
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
    metadata = _metadata(config)
    trainer = Trainer(model, cynn.CrossEntropyCriterion(), optimizer,
                      callbacks=[Checkpoint(best_path, monitor="val_accuracy", metadata=metadata)],
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
        cynn.save(model, best_path, input_shape=trainer.input_shape, metadata=metadata,
                  training=False)
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


def _load_model(path):
    """(model, model_info) of a model file; CLIError for a missing, corrupt or
    weights-only file."""
    import cynn

    if os.path.isdir(path):
        raise CLIError(f"{path!r} is a directory, not a model file")
    if not os.path.isfile(path):
        raise CLIError(f"no such model file: {path!r}")
    try:
        info = cynn.model_info(path)
        if info["architecture"] is None:
            return None, info
        return cynn.load(path), info
    except (ValueError, TypeError) as exc:
        raise CLIError(f"cannot load {path!r}: {exc}".splitlines()[0]) from None
    except OSError as exc:
        raise CLIError(f"cannot read {path!r}: {exc.strerror or exc}") from None


def _old_run_model(path):
    """A weights-only model.npz of an older run: built from the config.json beside it."""
    import cynn

    config_path = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    try:
        with open(config_path) as f:
            config = json.load(f)
        config["input_shape"], config["n_classes"], config["model"], config["seed"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CLIError(f"{path!r} holds weights only and there is no readable config.json "
                       "beside it to rebuild the model from") from None
    model = _build(config)
    try:
        cynn.load(model, path)
    except (ValueError, TypeError, OSError) as exc:
        raise CLIError(f"corrupt or mismatched model file {path!r}: {exc}".splitlines()[0]) from None
    model.input_shape = ((math.prod(config["input_shape"]),) if _is_flat(config)
                         else tuple(config["input_shape"]))
    return model, {"dataset": config.get("dataset"), "seed": config.get("seed", 0),
                   "class_names": config.get("class_names"), "image_shape": config["input_shape"]}


# What the CLI uses of a model file's metadata, each entry kept only when it passes
# its check: the file is data, not trusted.
_METADATA_CHECKS = {
    "dataset": lambda v: isinstance(v, str),
    "seed": _is_integer,
    "class_names": lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
    "image_shape": lambda v: (isinstance(v, list) and len(v) == 3
                              and all(_is_integer(d) and d > 0 for d in v)),
}


def _model_and_metadata(path):
    """(model, metadata) of a model file: its stored input shape checked (`_checked_shape`),
    and of its metadata only the entries of `_METADATA_CHECKS` that pass their check."""
    model, info = _load_model(path)
    if model is None:
        model, meta = _old_run_model(path)
    else:
        meta = info.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    shape = getattr(model, "input_shape", None)
    if shape is not None:
        _checked_shape(shape, f"{path!r} stores input_shape {shape}")
    return model, {key: meta[key] for key, ok in _METADATA_CHECKS.items() if ok(meta.get(key))}


def cmd_evaluate(args):
    import numpy as np

    import cynn
    from cynn.trainers import Trainer

    model, meta = _model_and_metadata(args.model_path)
    dataset = args.dataset or meta.get("dataset")
    if dataset is None:
        raise CLIError(f"{args.model_path!r} does not say which dataset it was trained on; "
                       "pass --dataset")
    data = _load_data(dataset, meta.get("seed", 0) if args.seed is None else args.seed)
    X_test = data.X_test
    shape = getattr(model, "input_shape", None)
    if shape is not None and tuple(X_test.shape[1:]) != shape and len(shape) == 1 \
            and math.prod(X_test.shape[1:]) == shape[0]:
        X_test = X_test.reshape(len(X_test), -1)      # an MLP sees the images flat
    if shape is not None and tuple(X_test.shape[1:]) != shape:
        raise CLIError(f"model {args.model_path!r} takes inputs {shape}; {dataset!r} has "
                       f"{tuple(data.X_test.shape[1:])}")
    trainer = Trainer(model, cynn.CrossEntropyCriterion(), cynn.SGD(model, lr=1.0), verbose=0)
    try:
        scores = trainer.predict(X_test)
    except ValueError as exc:
        raise CLIError(f"model {args.model_path!r} does not fit {dataset!r}: {exc}") from None
    if scores.ndim != 2 or scores.shape[1] != data.n_classes:
        raise CLIError(f"model {args.model_path!r} has {scores.shape[-1]} outputs; {dataset!r} "
                       f"has {data.n_classes} classes")
    predicted = scores.argmax(axis=1)
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


# The most values one sample may have: `model.summary`, export and predict allocate
# at least one sample, and a typo (1000000,1000000) must not exhaust the memory.
MAX_SAMPLE_VALUES = 2 ** 26


def _checked_shape(shape, where):
    """``shape`` as a tuple, if it is positive ints of at most MAX_SAMPLE_VALUES values;
    CLIError beginning with ``where`` otherwise."""
    if not shape or not all(_is_integer(d) and d > 0 for d in shape):
        raise CLIError(f"{where}: not positive integers")
    if math.prod(shape) > MAX_SAMPLE_VALUES:
        raise CLIError(f"{where}: {math.prod(shape):,} values per sample, more than the "
                       f"{MAX_SAMPLE_VALUES:,} the CLI accepts")
    return tuple(shape)


def _shape_argument(text):
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
        if not shape or min(shape) <= 0:
            raise ValueError
    except ValueError:
        raise CLIError(f"--input-shape: expected positive integers like 3,32,32, got {text!r}") from None
    return _checked_shape(shape, f"--input-shape {text}")


def _input_shape(args, model):
    """The sample shape for summary and export: --input-shape, else the one the file stores."""
    shape = _shape_argument(args.input_shape) if args.input_shape else getattr(model, "input_shape", None)
    if shape is None:
        raise CLIError(f"{args.model_path!r} does not record its input shape; pass --input-shape C,H,W")
    return shape


def cmd_summary(args):
    model, _ = _model_and_metadata(args.model_path)
    shape = _input_shape(args, model)
    try:
        table = model.summary(shape)
    except (ValueError, TypeError) as exc:
        raise CLIError(f"summary of {args.model_path!r} with input shape {shape}: {exc}".splitlines()[0]) from None
    except MemoryError:
        raise CLIError(f"summary of {args.model_path!r} with input shape {shape}: out of memory") from None
    print(f"{args.model_path}: {type(model).__name__}, input {shape}")
    print(table)
    return 0


def cmd_export(args):
    import cynn

    model, _ = _model_and_metadata(args.model_path)
    shape = _input_shape(args, model)
    out = args.out or os.path.splitext(args.model_path)[0] + ".onnx"
    try:
        cynn.export_onnx(model, out, shape)
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    except (ValueError, TypeError) as exc:
        raise CLIError(f"cannot export {args.model_path!r}: {exc}".splitlines()[0]) from None
    except MemoryError:
        raise CLIError(f"cannot export {args.model_path!r} with input shape {shape}: out of "
                       "memory") from None
    except OSError as exc:
        raise CLIError(f"cannot write {out!r}: {exc.strerror or exc}") from None
    print(f"wrote {out}: ONNX opset {cynn.onnx_export.OPSET}, input 'input' (N, "
          f"{', '.join(map(str, shape))}) float32, output 'output'")
    return 0


def _last_leaf(module):
    children = module.children()
    return module if not children else _last_leaf(children[-1])


def _probabilities(model, scores):
    """Class probabilities from the model's outputs: as they are after a SoftMax,
    exponentiated after a LogSoftMax, a softmax of them otherwise (logits)."""
    import numpy as np

    from cynn.functional import softmax
    from cynn.layers import LogSoftMax, SoftMax

    scores = np.asarray(scores, dtype=np.float64)
    last = _last_leaf(model)
    if isinstance(last, SoftMax):
        return scores
    if isinstance(last, LogSoftMax):
        return np.exp(scores)
    return softmax(scores)


# Images with more pixels are refused from their header, before anything is decoded.
MAX_IMAGE_PIXELS = 50_000_000
# Pillow modes of more than 8 bits per pixel: read as numbers, divided by this (None:
# floats, used as they are), clipped to [0, 1].  image.convert("L") would clip them.
_WIDE_MODES = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I": 65535, "F": None}


def _convert_image(image, channels, height, width):
    """(pixels, what was done) of a Pillow image, for a model of ``channels`` (1 or 3)
    channels: turned as its EXIF orientation says, transparent parts composited over
    white, made grey or RGB, resized to ``width`` x ``height`` (LANCZOS) and scaled to
    [0, 1] (8-bit: / 255; 16-bit and 32-bit integer grey: / 65535; float grey: as is),
    as a float32 array of shape (channels, height, width)."""
    import numpy as np
    from PIL import Image, ImageOps

    steps = [f"{image.width}x{image.height} {image.mode}"]
    if image.getexif().get(0x0112, 1) != 1:        # Orientation
        steps.append("EXIF orientation applied")
    image = ImageOps.exif_transpose(image)
    target = "grey" if channels == 1 else "RGB"
    if image.mode in _WIDE_MODES:
        scale = _WIDE_MODES[image.mode]
        grey = np.asarray(image, dtype=np.float32)
        grey = np.clip(grey if scale is None else grey / scale, 0, 1)
        resized = grey.shape != (height, width)
        if resized:
            grey = np.asarray(Image.fromarray(grey, "F").resize((width, height),
                                                                Image.Resampling.LANCZOS))
        pixels = np.repeat(np.clip(grey, 0, 1)[None], channels, axis=0)
        scaled = "pixels clipped to [0, 1]" if scale is None else f"pixels / {scale}"
        if channels == 3:
            target = "RGB (grey replicated)"
    else:
        if image.mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in image.info:
            image = Image.alpha_composite(Image.new("RGBA", image.size, "white"),
                                          image.convert("RGBA"))
            steps.append("alpha over white")
        converted = image.convert("L" if channels == 1 else "RGB")
        resized = converted.size != (width, height)
        if resized:
            converted = converted.resize((width, height), Image.Resampling.LANCZOS)
        pixels = np.asarray(converted, dtype=np.float32) / np.float32(255)
        pixels = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
        scaled = "pixels / 255"
    done = (f"{', '.join(steps)} -> {target} {width}x{height}" + (" (resized)" if resized else "")
            + f", {scaled}")
    return np.ascontiguousarray(pixels, dtype=np.float32), done


def _read_npy(path, shape):
    """The numbers of a .npy file as a float32 batch of samples of ``shape``."""
    import numpy as np

    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001  (np.load of a bad file: EOFError, zipfile, ...)
        raise CLIError(f"{path}: not a readable .npy array ({type(exc).__name__}: {exc})"
                       .splitlines()[0]) from None
    if not isinstance(array, np.ndarray):       # a .npz archive under a .npy name
        array.close()
        raise CLIError(f"{path}: not a readable .npy array (an .npz archive of arrays)")
    if array.dtype.kind not in "biuf":
        raise CLIError(f"{path}: holds {array.dtype} values, not numbers")
    if tuple(array.shape) == shape:
        array = array[None]
    elif len(shape) == 3 and shape[0] == 1 and tuple(array.shape) == shape[1:]:
        array = array[None, None]
    elif tuple(array.shape[1:]) != shape:
        raise CLIError(f"{path}: array of shape {array.shape}; the model takes one sample of "
                       f"shape {shape} or a batch (N, {', '.join(map(str, shape))})")
    return array.astype(np.float32)


def _read_input(path, shape, invert):
    """(array of shape (n, *shape), what was done): an image file converted to the
    model's channels and size (`_convert_image`), or a .npy array of one sample or a batch."""
    import warnings

    import numpy as np

    if os.path.isdir(path):
        raise CLIError(f"{path}: is a directory")
    if not os.path.isfile(path):
        raise CLIError(f"{path}: no such file")
    if path.lower().endswith(".npy"):
        array = _read_npy(path, shape)
        if invert:
            array = 1.0 - array
        if not np.isfinite(array).all():
            raise CLIError(f"{path}: holds NaN or infinite values")
        done = f"{len(array)} sample(s) of shape {shape} used as stored" + (", inverted" if invert else "")
        return array, done
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise CLIError(f"{path}: the model takes inputs of shape {shape}, not grey or colour "
                       "images; give .npy arrays of that shape")
    try:
        from PIL import Image
    except ImportError:
        raise CLIError("reading images needs Pillow: pip install pillow") from None
    channels, height, width = shape
    try:
        with warnings.catch_warnings():
            # Pillow warns of images above its own limit; ours is lower, and refused below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > MAX_IMAGE_PIXELS:
                    raise CLIError(f"{path}: {image.width}x{image.height} image, more than "
                                   f"{MAX_IMAGE_PIXELS:,} pixels; not decoded")
                image.load()
                pixels, done = _convert_image(image, channels, height, width)
    except CLIError:
        raise
    except Image.DecompressionBombError as exc:
        raise CLIError(f"{path}: refused, not decoded: {exc}".splitlines()[0]) from None
    except Exception as exc:  # noqa: BLE001  (Pillow on a bad file raises many kinds)
        raise CLIError(f"{path}: not an image Pillow can read ({type(exc).__name__})") from None
    if invert:
        pixels = 1.0 - pixels
    return pixels[None], done + (", inverted" if invert else "")


def cmd_predict(args):
    import numpy as np

    import cynn

    model, meta = _model_and_metadata(args.model_path)
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise CLIError(f"{args.model_path!r} does not record its input shape, so files cannot "
                       "be converted for it; save it with cynn.save(model, path, input_shape=...)")
    image_shape = tuple(meta.get("image_shape") or shape)
    flat = len(shape) == 1 and len(image_shape) == 3 and math.prod(image_shape) == shape[0]
    model.evaluate()
    names = meta.get("class_names")
    failed = 0
    rows = []
    for path in args.files:
        try:
            X, done = _read_input(path, image_shape if flat else shape, args.invert)
        except CLIError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        if flat:
            X = X.reshape(len(X), -1)
        try:
            with cynn.inference_mode():
                scores = model.forward(X.astype(_model_dtype(model)))
        except (ValueError, TypeError, IndexError, MemoryError) as exc:
            raise CLIError(f"model {args.model_path!r} fails on {path} converted to "
                           f"{X.shape}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
        if np.ndim(scores) != 2:
            raise CLIError(f"model {args.model_path!r} gives outputs of shape "
                           f"{np.shape(scores)}, not (N, classes): not a classifier")
        probabilities = _probabilities(model, scores)
        if names is None or len(names) != probabilities.shape[1]:
            names = [str(k) for k in range(probabilities.shape[1])]
        for i, p in enumerate(probabilities):
            label = path if len(X) == 1 else f"{path}[{i}]"
            rows.append((label, p))
            if not args.csv:
                order = np.argsort(-p, kind="stable")[:args.top]
                best = "  ".join(f"{names[k]} {p[k]:.3f}" for k in order)
                print(f"{label}: {best}" + (f"   ({done})" if i == 0 else ""))
    if args.csv and rows:
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["file", "predicted", *names])
        for label, p in rows:
            writer.writerow([label, names[int(np.argmax(p))], *(f"{v:.6f}" for v in p)])
    return 2 if failed else 0


def _model_dtype(model):
    params = model.get_parameters()
    return params[0].dtype if params else "float32"


def main(argv=None):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        commands = {"train": cmd_train, "compare": cmd_compare, "evaluate": cmd_evaluate,
                    "summary": cmd_summary, "predict": cmd_predict, "export": cmd_export}
        return commands[args.command](args)
    except CLIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
