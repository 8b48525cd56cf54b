"""The Module contract: accumulation, live arrays, modes, containers, dtype and state."""
import os

import numpy as np
import pytest

import cynn


def _model(dtype=np.float32):
    return cynn.Sequential(
        cynn.Conv2d(1, 4, 3, dtype=dtype, random_state=0),
        cynn.BatchNormalization(alpha=0.9, dtype=dtype),
        cynn.ChannelwiseScaling(4, dtype=dtype, random_state=1),
        cynn.MaxPool2d(2),
        cynn.Flatten(),
        cynn.Dropout(0.2, random_state=2),
        cynn.Linear(16, 3, dtype=dtype, random_state=3),
    )


@pytest.mark.parametrize("make,shape", [
    (lambda: cynn.Linear(3, 2, random_state=0), (4, 3)),
    (lambda: cynn.Conv2d(2, 3, 3, random_state=0), (2, 2, 4, 4)),
    (lambda: cynn.ChannelwiseScaling(2, random_state=0), (3, 2, 2, 2)),
])
def test_parameter_gradients_accumulate_until_zero_grad(make, shape, rng):
    layer = make()
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(layer.forward(x).shape)
    layer.backward(x, dy)
    once = [g.copy() for g in layer.get_parameters_grad()]
    layer.backward(x, dy)
    for g, g1 in zip(layer.get_parameters_grad(), once):
        np.testing.assert_allclose(g, 2 * g1, rtol=1e-5)
    layer.zero_grad()
    assert all(not g.any() for g in layer.get_parameters_grad())


def test_parameters_and_gradients_are_live_arrays_in_matching_order():
    model = _model()
    params, grads = model.get_parameters(), model.get_parameters_grad()
    assert [p.shape for p in params] == [g.shape for g in grads]
    assert params[0] is model[0].W and params[1] is model[0].b
    assert params[2] is model[2].gamma and params[3] is model[2].beta
    assert grads[-2] is model[-1].gradW and grads[-1] is model[-1].gradb
    model[0].W[...] = 0.5
    assert (model.get_parameters()[0] == 0.5).all()     # in-place updates are seen
    x = np.random.default_rng(0).standard_normal((2, 1, 4, 4)).astype(np.float32)
    model.forward(x)
    model.backward(x, np.ones((2, 3), np.float32))
    assert model.get_parameters_grad()[0] is grads[0] and grads[0].any()


def test_train_and_evaluate_recurse_and_return_self():
    model = _model()
    assert model.evaluate() is model
    assert all(not m.training for m in model)
    assert model.train() is model
    assert all(m.training for m in model)
    assert model.eval() is model and not model[5].training


def test_sequential_backward_feeds_each_child_its_input(rng):
    model = cynn.Sequential(cynn.Linear(3, 4, dtype=np.float64, random_state=0),
                            cynn.Linear(4, 2, dtype=np.float64, random_state=1))
    x = rng.standard_normal((5, 3))
    model.forward(x)
    dy = rng.standard_normal((5, 2))
    dx = model.backward(x, dy)
    h = x @ model[0].W.T + model[0].b
    np.testing.assert_allclose(model[1].gradW, dy.T @ h)
    np.testing.assert_allclose(dx, dy @ model[1].W @ model[0].W)


def test_sequential_container_protocol():
    a, b, c = cynn.Linear(2, 3), cynn.Linear(3, 3), cynn.Linear(3, 1)
    model = cynn.Sequential(a, b)
    assert model.add(c) is model
    assert len(model) == 3 and model[0] is a and model[-1] is c and list(model) == [a, b, c]
    assert isinstance(model[1:], cynn.Sequential) and len(model[1:]) == 2
    with pytest.raises(TypeError, match="Module instances, got int"):
        model.add(3)
    assert "(2): Linear(3 -> 1)" in repr(model)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_astype_converts_a_whole_model(dtype, rng):
    model = _model(np.float64 if dtype == np.float32 else np.float32)
    model.evaluate()
    x = rng.standard_normal((2, 1, 4, 4))
    before = model.forward(x)
    assert model.astype(dtype) is model
    assert all(p.dtype == dtype for p in model.get_parameters() + model.get_parameters_grad())
    after = model.forward(x)
    assert after.dtype == dtype
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-5)


def test_state_dict_round_trip_includes_buffers(rng):
    src, dst = _model(), _model()
    for p in dst.get_parameters():
        p[...] = 0
    x = rng.standard_normal((4, 1, 4, 4))
    src.forward(x)                      # moves the BN statistics
    state = src.state_dict()
    assert {"0.W", "0.b", "1.moving_mean", "1.moving_variance", "2.gamma", "6.W"} <= set(state)
    dst.load_state_dict(state)
    src.evaluate(), dst.evaluate()
    np.testing.assert_array_equal(dst.forward(x), src.forward(x))
    state["0.W"][...] = 123               # the state holds copies
    assert not (src[0].W == 123).any()


def test_load_state_dict_reports_mismatches():
    model = _model()
    state = model.state_dict()
    bad = dict(state)
    bad["0.W"] = np.zeros((5, 1, 3, 3))
    with pytest.raises(ValueError, match=r"shape mismatch for '0.W'.*\(4, 1, 3, 3\).*\(5, 1, 3, 3\)"):
        model.load_state_dict(bad)
    missing = {k: v for k, v in state.items() if k != "6.b"}
    with pytest.raises(ValueError, match=r"missing keys \['6.b'\]"):
        model.load_state_dict(missing)
    with pytest.raises(ValueError, match=r"unexpected keys \['9.W'\]"):
        model.load_state_dict({**state, "9.W": np.zeros(1)})


def test_save_and_load_npz(tmp_path, rng):
    model = _model()
    x = rng.standard_normal((3, 1, 4, 4))
    model.forward(x)
    path = tmp_path / "model.npz"
    cynn.save(model, path)
    other = cynn.load(_model(), path)
    model.evaluate(), other.evaluate()
    np.testing.assert_array_equal(other.forward(x), model.forward(x))
    assert [p for p in os.listdir(tmp_path)] == ["model.npz"]   # no temporary left behind


def test_load_rejects_mismatched_and_corrupt_files(tmp_path):
    path = tmp_path / "m.npz"
    cynn.save(cynn.Linear(3, 2), path)
    with pytest.raises(ValueError, match="shape mismatch"):
        cynn.load(cynn.Linear(4, 2), path)
    with pytest.raises(ValueError, match="missing keys"):
        cynn.load(cynn.Sequential(cynn.Linear(3, 2)), path)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="cannot read"):
        cynn.load(cynn.Linear(3, 2), junk)


def test_load_never_unpickles(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, W=np.array([{"a": 1}], dtype=object), b=np.zeros(2))
    with pytest.raises(ValueError, match="cannot read"):
        cynn.load(cynn.Linear(1, 2), path)


def test_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    model = cynn.Linear(3, 2, random_state=0)
    cynn.save(model, path)
    before = path.read_bytes()

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", explode)
    with pytest.raises(KeyboardInterrupt):
        cynn.save(cynn.Linear(3, 2, random_state=1), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]


def test_lazy_batchnorm_loads_its_statistics(tmp_path):
    trained = cynn.BatchNormalization()
    trained.forward(np.random.default_rng(0).standard_normal((5, 3)) + 2)
    fresh = cynn.BatchNormalization()
    fresh.load_state_dict(trained.state_dict())
    np.testing.assert_array_equal(fresh.moving_mean, trained.moving_mean)
    assert fresh.n_features == 3


def test_set_num_threads_validates():
    previous = cynn.get_num_threads()
    with pytest.raises(ValueError, match="positive integer, got 0"):
        cynn.set_num_threads(0)
    cynn.set_num_threads(1)
    assert cynn.get_num_threads() == 1
    cynn.set_num_threads(previous)


def test_manual_seed_validates():
    with pytest.raises(ValueError, match="non-negative integer, got -1"):
        cynn.manual_seed(-1)


def test_import_cynn_does_not_import_heavy_optional_packages():
    import subprocess
    import sys

    # scipy.linalg (0.2 s) too: the kernels bind SciPy's BLAS on their first GEMM
    code = ("import sys, cynn; bad = [m for m in ('sklearn', 'tqdm', 'matplotlib', 'torch', "
            "'scipy.linalg') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_kernels_bind_scipys_blas_on_first_use():
    """A fresh process whose first GEMM is a kernel's gets the right product."""
    import subprocess
    import sys

    code = ("import numpy as np, sys; from cynn._kernels import conv, dense\n"
            "assert 'scipy.linalg' not in sys.modules\n"
            "r = np.random.default_rng(0); a = r.random((40, 30)); b = r.random((30, 20))\n"
            "c = np.empty((40, 20)); dense.matmul(a, b, c, False, False, 0.0, 2, True)\n"
            "assert np.allclose(c, a @ b, rtol=1e-13), abs(c - a @ b).max()\n"
            "a32, b32 = a.astype(np.float32), b.astype(np.float32)\n"
            "c32 = np.empty((40, 20), np.float32)\n"
            "dense.matmul(a32, b32, c32, False, False, 0.0, 1, True)\n"
            "assert np.allclose(c32, a32 @ b32, rtol=1e-5)\n"
            "print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and "ok" in result.stdout, result.stdout + result.stderr


def test_thread_count_defaults_follow_the_environment():
    import subprocess
    import sys

    code = "import cynn; print(cynn.get_num_threads())"
    clean = {k: v for k, v in os.environ.items() if k not in ("CYNN_NUM_THREADS", "OMP_NUM_THREADS")}
    for extra, expected in (({"CYNN_NUM_THREADS": "3"}, "3"), ({"OMP_NUM_THREADS": "1"}, "1")):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env={**clean, **extra})
        assert result.stdout.strip() == expected, result.stderr
    bad = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**clean, "CYNN_NUM_THREADS": "zero"})
    assert "CYNN_NUM_THREADS must be a positive integer, got 'zero'" in bad.stderr
