"""The cynn command line: train, compare, evaluate, and one-line errors."""
import json
import os
import subprocess
import sys

import pytest

from cynn.cli import main

pytest.importorskip("matplotlib", reason="the CLI draws curves with matplotlib (extra: plot)")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    made = []
    for opt in ("adam", "sgd"):
        out = base / f"digits-{opt}"
        assert main(["train", "--epochs", "2", "--optimizer", opt, "--out", str(out), "--quiet"]) == 0
        made.append(out)
    return made


def test_train_writes_a_run_folder(runs, capsys):
    run = runs[0]
    for name in ("history.json", "history.csv", "model.npz", "curves.png", "config.json"):
        assert (run / name).is_file(), name
    history = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    assert json.loads((run / "config.json").read_text())["model"] == "small-cnn"


def test_train_reports_accuracy_and_time(tmp_path, capsys):
    assert main(["train", "--dataset", "iris", "--epochs", "3", "--out", str(tmp_path / "r"),
                 "--quiet", "--lr", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "training mlp on iris" in out
    assert "test accuracy: " in out and "time per epoch: " in out and str(tmp_path / "r") in out


def test_compare_overlays_runs(runs, tmp_path, capsys):
    png = tmp_path / "cmp.png"
    assert main(["compare", *map(str, runs), "--out", str(png)]) == 0
    out = capsys.readouterr().out
    assert png.is_file() and "digits-adam" in out and "digits-sgd" in out and "val_acc" in out


def test_evaluate_prints_accuracy_and_confusion_matrix(runs, capsys):
    assert main(["evaluate", str(runs[0] / "model.npz")]) == 0
    out = capsys.readouterr().out
    assert "accuracy: " in out and "confusion matrix" in out
    assert len([line for line in out.splitlines() if line.strip().startswith(tuple("0123456789"))]) >= 10


@pytest.mark.parametrize("argv,pattern", [
    (["train", "--dataset", "nope"], "unknown dataset 'nope'; available: "),
    (["train", "--model", "resnet"], "--model resnet: unknown model 'resnet'; valid names: "),
    (["train", "--model", "resnet21"], "--model resnet21: resnet: depth must be 6n + 2"),
    (["train", "--augment", "rotate"], "argument --augment: invalid choice: 'rotate'"),
    (["train", "--dataset", "iris", "--augment", "crop-flip"], "--augment crop-flip needs images"),
    (["train", "--model", "mlp", "--augment", "flip"], "--augment flip needs images and an image model"),
    (["train", "--optimizer", "rmsprop"], "unknown optimizer 'rmsprop'"),
    (["train", "--epochs", "0"], "expected a positive integer, got '0'"),
    (["train", "--lr", "-1"], "expected a positive number, got '-1'"),
    (["train", "--dataset", "iris", "--model", "small-cnn"], "needs images"),
    (["train", "--dataset", "iris", "--model", "resnet8"], "'iris' has flat features (4,): use --model mlp"),
    (["train", "--out", "/proc/cynn-cannot-write-here"], "cannot write to run folder"),
    (["compare", "/nonexistent-run"], "is not a run folder"),
    (["evaluate", "/nonexistent/model.npz"], "no such model file"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_give_one_line(argv, pattern, capsys, tmp_path):
    if "--out" not in argv:
        argv = argv + ["--out", str(tmp_path / "run")] if argv[0] == "train" else argv
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert pattern in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()        # no half-made run folder


def test_train_a_resnet_with_augmentation_and_evaluate_it(tmp_path, capsys):
    run = tmp_path / "resnet"
    assert main(["train", "--model", "resnet8", "--augment", "crop-flip", "--epochs", "1",
                 "--out", str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "training resnet8 on digits" in out
    # Digits are 8 x 8: padding 8 // 8 = 1.
    assert ("augmentation Compose([RandomCrop(size=8, padding=1), RandomHorizontalFlip(p=0.5)])"
            in out)
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "resnet8" and config["augment"] == "crop-flip"
    assert main(["evaluate", str(run / "model.npz")]) == 0
    assert "accuracy: " in capsys.readouterr().out


def test_augment_padding_follows_the_image_size():
    from cynn.cli import _augmentation
    from cynn.datasets import Compose, RandomCrop, RandomHorizontalFlip

    def config(shape, augment="crop-flip"):
        return {"augment": augment, "input_shape": list(shape), "model": "resnet20",
                "dataset": "x"}

    assert _augmentation(config((3, 32, 32))) == Compose([RandomCrop(32, padding=4),
                                                          RandomHorizontalFlip()])
    assert _augmentation(config((1, 28, 20), "crop")) == Compose([RandomCrop((28, 20), (3, 2))])
    assert _augmentation(config((1, 4, 4), "crop")) == Compose([RandomCrop(4, padding=1)])
    assert _augmentation(config((3, 32, 32), "flip")) == Compose([RandomHorizontalFlip()])
    assert _augmentation(config((3, 32, 32), "none")) is None
    # Run folders of older versions have no "augment" key: no augmentation.
    old = config((1, 8, 8))
    del old["augment"]
    assert _augmentation(old) is None


def test_corrupt_model_file(runs, tmp_path, capsys):
    bad_run = tmp_path / "bad"
    bad_run.mkdir()
    (bad_run / "config.json").write_text((runs[0] / "config.json").read_text())
    (bad_run / "model.npz").write_bytes(b"garbage")
    assert main(["evaluate", str(bad_run / "model.npz")]) == 2
    err = capsys.readouterr().err
    assert f"cannot load {str(bad_run / 'model.npz')!r}: cannot read" in err
    assert len(err.strip().splitlines()) == 1


def test_python_dash_m_runs_the_same_command(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cynn", "train", "--dataset", "wine", "--epochs", "1",
                             "--quiet", "--out", str(tmp_path / "w")], capture_output=True, text=True,
                            cwd=tmp_path, env={**os.environ, "MPLBACKEND": "Agg"})
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout


def test_mlp_runs_keep_the_parameter_keys_of_older_versions():
    """The CLI feeds the MLP flat features, so it has no Flatten in front: the model.npz
    of an mlp run written before models were named by cynn.models.build still loads."""
    from cynn import cli

    model = cli._build({"model": "mlp", "input_shape": [1, 8, 8], "n_classes": 10, "seed": 0,
                        "dataset": "digits"})
    assert sorted(model.state_dict()) == ["0.W", "0.b", "2.W", "2.b"]
