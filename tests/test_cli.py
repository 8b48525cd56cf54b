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
    # The 80x80 PNG is the digit resized 8x8 -> 80x80 -> 8x8 (LANCZOS): the label is
    # the model's on that array, which _convert_image gives.
    from PIL import Image

    from cynn.cli import _convert_image

    with Image.open(files[1]) as image:
        converted, _ = _convert_image(image, 1, 8, 8)
    by_hand = (Image.fromarray(pixels[1]).convert("RGB").resize((80, 80)).convert("L")
               .resize((8, 8), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(converted[0], np.asarray(by_hand, np.float32) / np.float32(255))
    assert label == str(int(model.forward(converted[None]).argmax()))
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
    import numpy as np

    import cynn

    folder, _, pixels = digit_files
    run = tmp_path / "mlp"
    assert main(["train", "--model", "mlp", "--epochs", "1", "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["predict", str(run / "model.npz"), str(folder / "grey8.png"), "--invert"]) == 0
    out = capsys.readouterr().out
    assert "-> grey 8x8, pixels / 255, inverted" in out
    model = cynn.load(str(run / "model.npz")).evaluate()
    flat = (1 - pixels[:1] / np.float32(255)).reshape(1, 64).astype(np.float32)
    assert _predicted(out, folder / "grey8.png")[0] == str(int(model.forward(flat).argmax()))


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


# -- files as data: odd images, arrays, shapes and metadata give one line ----------
def _one_line(capsys, *patterns):
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for pattern in patterns:
        assert pattern in err, err
    return err


def test_16_bit_and_float_images_are_scaled_not_clipped(runs, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from cynn.cli import _convert_image, _read_input

    values = np.linspace(0, 64000, 64).reshape(8, 8).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    X, done = _read_input(str(tmp_path / "g16.png"), (1, 8, 8), False)
    assert done == "8x8 I;16 -> grey 8x8, pixels / 65535"
    np.testing.assert_allclose(X[0, 0], values / 65535, rtol=1e-6)
    assert X.min() == 0 and 0.97 < X.max() <= 1
    rgb, done = _convert_image(Image.fromarray(values), 3, 4, 4)
    assert rgb.shape == (3, 4, 4) and (rgb[0] == rgb[2]).all() and 0 <= rgb.min() <= rgb.max() <= 1
    assert done == "8x8 I;16 -> RGB (grey replicated) 4x4 (resized), pixels / 65535"
    floats = Image.fromarray(np.float32([[-1, 0.25], [0.5, 3]]), "F")
    grey, done = _convert_image(floats, 1, 2, 2)
    np.testing.assert_array_equal(grey[0], [[0, 0.25], [0.5, 1]])
    assert done == "2x2 F -> grey 2x2, pixels clipped to [0, 1]"
    assert main(["predict", str(runs[0] / "model.npz"), str(tmp_path / "g16.png")]) == 0
    assert "(8x8 I;16 -> grey 8x8, pixels / 65535)" in capsys.readouterr().out


def test_exif_orientation_is_applied(tmp_path):
    import numpy as np
    from PIL import Image

    from cynn.cli import _convert_image

    stored = np.zeros((4, 6), np.uint8)
    stored[0] = 255                                # a white top row, 6 wide, 4 high
    exif = Image.Exif()
    exif[0x0112] = 6                               # Orientation: turn 90 degrees clockwise
    Image.fromarray(stored).save(tmp_path / "turned.jpg", exif=exif, quality=100)
    with Image.open(tmp_path / "turned.jpg") as image:
        pixels, done = _convert_image(image, 1, 6, 4)
    assert done == "6x4 L, EXIF orientation applied -> grey 4x6, pixels / 255"
    np.testing.assert_array_equal(pixels[0] > 0.5, np.rot90(stored, -1) > 127)


def test_transparent_images_are_composited_over_white(tmp_path):
    import numpy as np
    from PIL import Image

    from cynn.cli import _convert_image

    rgba = np.zeros((8, 8, 4), np.uint8)           # black everywhere, transparent ...
    rgba[3, :, 3] = 255                            # ... but for an opaque black stroke
    image = Image.fromarray(rgba, "RGBA")
    palette = Image.fromarray((rgba[..., 3] == 0).astype(np.uint8), "P")
    palette.putpalette([0, 0, 0] * 2)
    palette.info["transparency"] = 1
    stroke = np.ones((8, 8), np.float32)
    stroke[3] = 0
    for each in (image, image.convert("LA"), palette):
        pixels, done = _convert_image(each, 1, 8, 8)
        np.testing.assert_array_equal(pixels[0], stroke)
        assert f"8x8 {each.mode}, alpha over white -> grey 8x8" in done
    pixels, _ = _convert_image(image, 3, 8, 8)
    np.testing.assert_array_equal(pixels, np.stack([stroke] * 3))


def test_a_model_that_fails_on_its_input_gives_one_line(tmp_path, capsys):
    import numpy as np

    import cynn

    misfit = str(tmp_path / "misfit.npz")
    cynn.save(cynn.Sequential(cynn.Linear(3, 2)), misfit, input_shape=(5,))
    np.save(tmp_path / "five.npy", np.zeros(5))
    assert main(["predict", misfit, str(tmp_path / "five.npy")]) == 2
    _one_line(capsys, f"model {misfit!r} fails on ", "Linear expected input with 3 features")
    conv = str(tmp_path / "conv.npz")
    cynn.save(cynn.Sequential(cynn.Conv2d(1, 2, 3)), conv, input_shape=(1, 4, 4))
    np.save(tmp_path / "square.npy", np.zeros((1, 4, 4)))
    assert main(["predict", conv, str(tmp_path / "square.npy")]) == 2
    _one_line(capsys, f"model {conv!r} gives outputs of shape (1, 2, 4, 4), not (N, classes)")


def test_odd_npy_files_give_one_line_each(runs, tmp_path, capsys):
    import numpy as np

    np.savez(tmp_path / "archive.npz", a=np.zeros(3))
    (tmp_path / "archive.npz").rename(tmp_path / "archive.npy")
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "text.npy").write_text("1 2 3")
    files = [str(tmp_path / name) for name in ("archive.npy", "empty.npy", "text.npy")]
    assert main(["predict", str(runs[0] / "model.npz"), *files]) == 2
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert len(errors) == 3 and "Traceback" not in captured.err
    for path, line in zip(files, errors):
        assert line.startswith(f"error: {path}: not a readable .npy array (")
    assert "EOFError" in errors[1]


def test_decompression_bombs_and_huge_images_are_not_decoded(runs, tmp_path, capsys,
                                                            monkeypatch):
    from PIL import Image

    Image.new("1", (14000, 14000)).save(tmp_path / "bomb.png")      # above Pillow's limit
    Image.new("1", (8000, 7000)).save(tmp_path / "big.png")         # above the CLI's
    model = str(runs[0] / "model.npz")
    assert main(["predict", model, str(tmp_path / "bomb.png")]) == 2
    _one_line(capsys, f"{tmp_path / 'bomb.png'}: refused, not decoded: ")

    def no_decoding(self):
        raise AssertionError("decoded")
    monkeypatch.setattr(Image.Image, "load", no_decoding)
    assert main(["predict", model, str(tmp_path / "big.png")]) == 2
    _one_line(capsys, f"{tmp_path / 'big.png'}: 8000x7000 image, more than 50,000,000 pixels; "
              "not decoded")


def test_huge_input_shapes_give_one_line(runs, tmp_path, capsys, monkeypatch):
    import cynn

    model = str(runs[0] / "model.npz")
    for command in ("summary", "export"):
        assert main([command, model, "--input-shape", "1000000,1000000,1000000"]) == 2
        _one_line(capsys, "--input-shape 1000000,1000000,1000000: "
                  "1,000,000,000,000,000,000 values per sample, more than the ")
    huge = str(tmp_path / "huge.npz")
    cynn.save(cynn.Sequential(cynn.Linear(3, 2)), huge, input_shape=(100000, 100000))
    for command in ("summary", "export", "predict"):
        assert main([command, huge] + (["x.npy"] if command == "predict" else [])) == 2
        _one_line(capsys, f"{huge!r} stores input_shape (100000, 100000): 10,000,000,000 values")

    def out_of_memory(*args, **kwargs):
        raise MemoryError
    monkeypatch.setattr(cynn.module.Module, "summary", out_of_memory)
    monkeypatch.setattr(cynn, "export_onnx", out_of_memory)
    assert main(["summary", model]) == 2
    _one_line(capsys, f"summary of {model!r} with input shape (1, 8, 8): out of memory")
    assert main(["export", model, str(tmp_path / "x.onnx")]) == 2
    _one_line(capsys, f"cannot export {model!r} with input shape (1, 8, 8): out of memory")


def _with_metadata(source, path, metadata):
    """A copy of the model file ``source`` whose header has ``metadata``, whatever it is."""
    import numpy as np

    with np.load(source) as arrays:
        state = dict(arrays)
    header = json.loads(str(state["__model__.json"]))
    header["metadata"] = metadata
    state["__model__.json"] = np.array(json.dumps(header))
    np.savez(path, **state)
    return str(path)


def test_metadata_of_the_wrong_types_is_ignored(runs, digit_files, tmp_path, capsys,
                                                monkeypatch):
    import cynn
    from cynn.models import build

    folder, _, _ = digit_files
    source = str(runs[0] / "model.npz")
    png = str(folder / "grey8.png")
    # cynn.model_info refuses metadata that is not a dict; the CLI does not rely on it.
    listed = _with_metadata(source, tmp_path / "list.npz", ["dataset", "digits"])
    assert main(["predict", listed, png]) == 2
    _one_line(capsys, "metadata is a list, not a dict")
    model_info = cynn.model_info
    with monkeypatch.context() as patch:
        patch.setattr(cynn, "model_info", lambda path: {**model_info(path), "metadata": [1, 2]})
        assert main(["predict", source, png]) == 0
        assert main(["evaluate", source, "--dataset", "digits"]) == 0
    capsys.readouterr()
    bad = {"dataset": 5, "seed": "x", "class_names": list(range(10)), "image_shape": [1, 8]}
    typed = _with_metadata(source, tmp_path / "typed.npz", bad)
    assert main(["predict", typed, png]) == 0
    assert _predicted(capsys.readouterr().out, png)[0] in list("0123456789")
    assert main(["evaluate", typed]) == 2
    _one_line(capsys, f"{typed!r} does not say which dataset it was trained on; pass --dataset")
    assert main(["evaluate", typed, "--dataset", "digits"]) == 0
    assert "accuracy: " in capsys.readouterr().out
    short = _with_metadata(source, tmp_path / "short.npz", {"class_names": ["a", "b"]})
    named = _with_metadata(source, tmp_path / "named.npz",
                           {"class_names": [f"c{k}" for k in range(10)]})
    assert main(["predict", short, png]) == 0
    assert _predicted(capsys.readouterr().out, png)[0] in list("0123456789")
    assert main(["predict", named, png]) == 0
    assert _predicted(capsys.readouterr().out, png)[0].startswith("c")
    # An MLP sees the image flat only when image_shape is 3 positive ints.
    mlp = build("mlp", (64,), 10, random_state=0)
    for image_shape, status in (([1, 8, 8], 0), ([1, 8, True], 2), ([1, 8, "8"], 2)):
        cynn.save(mlp, tmp_path / "mlp.npz", input_shape=(64,),
                  metadata={"image_shape": image_shape})
        assert main(["predict", str(tmp_path / "mlp.npz"), png]) == status
        if status:
            _one_line(capsys, "the model takes inputs of shape (64,), not grey or colour images")


def test_a_directory_is_not_a_file(runs, tmp_path, capsys):
    folder = tmp_path / "folder.npz"
    folder.mkdir()
    assert main(["predict", str(runs[0] / "model.npz"), str(folder)]) == 2
    _one_line(capsys, f"{folder}: is a directory")
    for command in ("predict", "summary", "export", "evaluate"):
        assert main([command, str(folder)] + (["x.png"] if command == "predict" else [])) == 2
        _one_line(capsys, f"{str(folder)!r} is a directory, not a model file")
