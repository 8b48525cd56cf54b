"""cynn.load on hundreds of broken and hostile files made from a real model file: each
is a ValueError or TypeError naming the file, never a crash, a hang or a large
allocation."""
import io
import tracemalloc
import zipfile

import numpy as np
import pytest

import cynn
from cynn.models import small_cnn


def model():
    return small_cnn((1, 8, 8), 10, random_state=0)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.npz"
    cynn.save(model(), path)
    return path.read_bytes()


def npy_bytes(header_dict, payload=b""):
    """A .npy member with a header of our choosing (the shape may lie)."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, header_dict)
    return out.getvalue() + payload


def with_member(good, name, data, keep=True):
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(out, "w") as dst:
        if keep:
            for info in src.infolist():
                if info.filename != name:
                    dst.writestr(info, src.read(info))
        dst.writestr(name, data)
    return out.getvalue()


def array_member(array):
    out = io.BytesIO()
    np.lib.format.write_array(out, array, allow_pickle=True)
    return out.getvalue()


def hostile_files(good):
    rng = np.random.default_rng(0)
    first = zipfile.ZipFile(io.BytesIO(good)).namelist()[0]
    shape = np.load(io.BytesIO(good))[first[:-4]].shape
    files = []
    for cut in rng.choice(len(good) - 1, 150, replace=False):
        files.append((f"truncated at {cut}", good[:cut]))
    for position in rng.choice(len(good), 150, replace=False):
        data = bytearray(good)
        data[position] ^= 1 << int(rng.integers(8))
        files.append((f"bit flipped at {position}", bytes(data)))
    huge = npy_bytes({"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)}, b"\0" * 64)
    files.append(("a 10^12-element member", with_member(good, first, huge)))
    files.append(("a 10^12-element member, alone", with_member(good, first, huge, keep=False)))
    files.append(("object dtype", with_member(good, first, array_member(
        np.array([{"a": 1}] * int(np.prod(shape)), dtype=object).reshape(shape)))))
    files.append(("string dtype", with_member(good, first, array_member(
        np.full(shape, "x", dtype="<U3")))))
    files.append(("complex dtype", with_member(good, first, array_member(
        np.zeros(shape, np.complex64)))))
    for bad in (np.nan, np.inf, -np.inf):
        files.append((f"{bad} weights", with_member(good, first, array_member(
            np.full(shape, bad, np.float32)))))
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w") as z:
        for i in range(5000):
            z.writestr(f"m{i}.npy", array_member(np.zeros(1, np.float32)))
    files.append(("5000 members", many.getvalue()))
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(first, array_member(np.zeros((4096, 4096), np.float32)))
    files.append(("a zip bomb", bomb.getvalue()))
    files.append(("not a zip", b"this is not a model file\n" * 100))
    files.append(("empty", b""))
    files.append(("a pickle", b"\x80\x04\x95" + b"\0" * 100))
    return files


def test_hostile_model_files_are_clear_errors(good, tmp_path):
    original = model().state_dict()
    files = hostile_files(good)
    assert len(files) >= 300
    outcomes = {"error": 0, "loaded": 0}
    for i, (what, data) in enumerate(files):
        path = tmp_path / f"case{i}.npz"
        path.write_bytes(data)
        target = model()
        tracemalloc.start()
        try:
            cynn.load(target, path)
        except (ValueError, TypeError) as exc:
            outcomes["error"] += 1
            assert str(path) in str(exc), (what, str(exc))
        else:
            # Only a flip that zip's CRC cannot see (in a header field nobody reads)
            # may load, and then with the original weights.
            outcomes["loaded"] += 1
            assert what.startswith("bit flipped"), what
            loaded = target.state_dict()
            assert all(np.array_equal(loaded[k], v) for k, v in original.items()), what
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert peak < 8 * len(good) + (4 << 20), (what, peak)
    print(f"{len(files)} hostile files: {outcomes}")
    assert outcomes["error"] >= 290
