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


# -- the model file alone: evaluate, predict, summary ------------------------------
def _accuracy(out):
    return float(next(line for line in out.splitlines() if line.startswith("accuracy: ")).split()[1])


def test_evaluate_needs_only_the_model_file(runs, tmp_path, capsys):
    assert main(["evaluate", str(runs[0] / "model.npz")]) == 0
    in_run = _accuracy(capsys.readouterr().out)
    alone = tmp_path / "alone.npz"
    alone.write_bytes((runs[0] / "model.npz").read_bytes())     # no config.json beside it
    assert main(["evaluate", str(alone)]) == 0
    out = capsys.readouterr().out
    assert "on digits test split (360 samples)" in out and _accuracy(out) == in_run


def test_evaluate_reads_weights_only_files_of_older_runs(runs, tmp_path, capsys):
    import numpy as np

    import cynn

    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text((runs[0] / "config.json").read_text())
    np.savez(old / "model.npz", **cynn.load(str(runs[0] / "model.npz")).state_dict())
    assert main(["evaluate", str(runs[0] / "model.npz")]) == 0
    expected = _accuracy(capsys.readouterr().out)
    assert main(["evaluate", str(old / "model.npz")]) == 0
    assert _accuracy(capsys.readouterr().out) == expected
    (old / "config.json").unlink()
    assert main(["evaluate", str(old / "model.npz")]) == 2
    assert "holds weights only and there is no readable config.json" in capsys.readouterr().err


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory):
    """Test digits as files: an 8x8 grey PNG (exact size), an 80x80 RGB PNG (to be
    converted and resized), a JPEG, an .npy batch, and the arrays the model should see."""
    import numpy as np
    from PIL import Image

    from cynn.datasets import load_dataset

    folder = tmp_path_factory.mktemp("digits")
    X = load_dataset("digits", random_state=0).X_test[:4]
    pixels = np.round(X[:, 0] * 255).astype(np.uint8)
    Image.fromarray(pixels[0]).save(folder / "grey8.png")
    Image.fromarray(pixels[1]).convert("RGB").resize((80, 80)).save(folder / "rgb80.png")
    Image.fromarray(pixels[2]).save(folder / "d.jpg")
    np.save(folder / "batch.npy", X[2:4])
    (folder / "notes.png").write_text("not an image")
    np.save(folder / "wrong.npy", np.zeros((3, 5)))
    return folder, X, pixels


def _predicted(out, label):
    line = next(line for line in out.splitlines() if line.startswith(f"{label}: "))
    return line.split(": ", 1)[1].split()[0], line


def test_predict_classifies_images_and_arrays(runs, digit_files, capsys):
    import numpy as np

    import cynn

    folder, X, pixels = digit_files
    model_path = str(runs[0] / "model.npz")
    files = [folder / "grey8.png", folder / "rgb80.png", folder / "batch.npy"]
    assert main(["predict", model_path, *map(str, files), "--top", "2"]) == 0
    out = capsys.readouterr().out
    model = cynn.load(model_path).evaluate()
    # The exact-size PNG is the test digit, quantized to 8 bits.
    seen = (pixels[:1, None] / np.float32(255)).astype(np.float32)
    expected = str(int(model.forward(seen).argmax()))
    label, line = _predicted(out, files[0])
    assert label == expected and "(8x8 L -> grey 8x8, pixels / 255)" in line
    assert len(line.split("(")[0].split()) == 1 + 2 * 2          # the file and two classes
    label, line = _predicted(out, files[1])
    assert "80x80 RGB -> grey 8x8 (resized)" in line
    for i in range(2):
        label, _ = _predicted(out, f"{files[2]}[{i}]")
        assert label == str(int(model.forward(X[2 + i:3 + i]).argmax()))


def test_predict_csv_is_a_table_of_probabilities(runs, digit_files, capsys):
    import csv
    import io

    folder, _, _ = digit_files
    assert main(["predict", str(runs[0] / "model.npz"), str(folder / "d.jpg"),
                 str(folder / "batch.npy"), "--csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["file", "predicted", *map(str, range(10))]
    assert [r[0] for r in rows[1:]] == [str(folder / "d.jpg"), f"{folder / 'batch.npy'}[0]",
                                        f"{folder / 'batch.npy'}[1]"]
    for row in rows[1:]:
        p = [float(v) for v in row[2:]]
        assert abs(sum(p) - 1) < 1e-4 and row[1] == str(p.index(max(p)))


def test_predict_reports_each_bad_file_in_one_line(runs, digit_files, capsys):
    folder, _, _ = digit_files
    status = main(["predict", str(runs[0] / "model.npz"), str(folder / "notes.png"),
                   str(folder / "grey8.png"), str(folder / "wrong.npy"), str(folder / "none.png")])
    assert status == 2
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert len(errors) == 3 and "Traceback" not in captured.err
    assert "notes.png: not an image Pillow can read" in errors[0]
    assert "wrong.npy: array of shape (3, 5); the model takes one sample of shape (1, 8, 8)" in errors[1]
    assert "none.png: no such file" in errors[2]
    assert "grey8.png: " in captured.out                   # the good file is still classified


def test_predict_with_an_mlp_run_flattens_the_image(tmp_path, digit_files, capsys):
    folder, _, _ = digit_files
    run = tmp_path / "mlp"
    assert main(["train", "--model", "mlp", "--epochs", "1", "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["predict", str(run / "model.npz"), str(folder / "grey8.png"), "--invert"]) == 0
    out = capsys.readouterr().out
    assert "-> grey 8x8, pixels / 255, inverted" in out


def test_export_writes_an_onnx_file_that_onnxruntime_agrees_with(runs, tmp_path, capsys):
    import numpy as np
    import onnxruntime

    import cynn

    out = tmp_path / "digits.onnx"
    assert main(["export", str(runs[0] / "model.npz"), str(out)]) == 0
    assert f"wrote {out}: ONNX opset 21, input 'input' (N, 1, 8, 8)" in capsys.readouterr().out
    x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    expected = cynn.load(str(runs[0] / "model.npz")).evaluate().forward(x)
    np.testing.assert_allclose(session.run(None, {"input": x})[0], expected, rtol=1e-5,
                               atol=1e-6 * np.abs(expected).max())
    assert main(["export", str(runs[0] / "model.npz"), str(tmp_path / "x.onnx"),
                 "--input-shape", "3,8,8"]) == 2
    assert "does not fit the model" in capsys.readouterr().err


def test_summary_of_a_model_file(runs, capsys):
    import cynn

    path = str(runs[0] / "model.npz")
    assert main(["summary", path]) == 0
    out = capsys.readouterr().out
    model = cynn.load(path)
    n_params = sum(p.size for p in model.get_parameters())
    assert f"{path}: Sequential, input (1, 8, 8)" in out
    assert f"Total parameters: {n_params:,}" in out and "Total MACs: " in out
    assert main(["summary", path, "--input-shape", "1,16,16"]) == 2
    err = capsys.readouterr().err
    assert "with input shape (1, 16, 16)" in err and len(err.strip().splitlines()) == 1
    assert main(["summary", path, "--input-shape", "a,b"]) == 2
    assert "expected positive integers like 3,32,32, got 'a,b'" in capsys.readouterr().err
