"""model.summary(input_shape): counts checked against hand arithmetic, shapes per row,
the model left untouched, and other threads' inference unaffected."""
import subprocess
import sys
import threading

import numpy as np
import pytest

import cynn
from cynn.summary import Summary, summary


def leaves(s):
    return [row for row in s.rows if not row.is_container]


# -- hand counts -------------------------------------------------------------------
def test_small_cnn_params_macs_and_shapes():
    model = cynn.models.build("small_cnn", (1, 28, 28), 10)
    s = model.summary((1, 28, 28))
    assert isinstance(s, Summary)
    params = ((3 * 3 * 1 * 16 + 16)        # conv 1 -> 16, 3x3, with bias
              + 2 * 16                      # scaling gamma, beta
              + (3 * 3 * 16 * 32 + 32)      # conv 16 -> 32
              + 2 * 32
              + (32 * 14 * 14 * 64 + 64)    # Linear 6272 -> 64 after the 2x2 max pool
              + (64 * 10 + 10))
    macs = (16 * 28 * 28 * (1 * 3 * 3)      # C_out * H * W * C_in * kh * kw
            + 32 * 28 * 28 * (16 * 3 * 3)
            + 32 * 14 * 14 * 64
            + 64 * 10)
    assert params == 407_018 and macs == 4_127_616
    assert s.total_params == s.trainable_params == params
    assert s.total_macs == macs
    assert s.param_bytes == 4 * params
    assert s.buffer_values == 2 * 16 + 2 * 32  # moving mean and variance of two BNs
    assert s.input_shape == (1, 28, 28) and s.input_bytes == 28 * 28 * 4
    assert s.output_shape == (10,)
    assert [row.output_shape for row in s.rows] == [
        (10,),                                               # the Sequential itself
        (16, 28, 28), (16, 28, 28), (16, 28, 28), (16, 28, 28),
        (32, 28, 28), (32, 28, 28), (32, 28, 28), (32, 28, 28),
        (32, 14, 14), (6272,), (64,), (64,), (64,), (10,)]
    assert [row.params for row in s.rows[1:]] == [160, 0, 32, 0, 4640, 0, 64, 0, 0, 0,
                                                   401_472, 0, 0, 650]
    assert s.rows[0].is_container and s.rows[0].params == params
    # Every output is a fresh array except Flatten's view and the Sequential's (its
    # last child's): 4 maps of 16x28x28, 4 of 32x28x28, the pooled map, 3 x 64, 10.
    assert s.activation_bytes == 4 * (4 * 16 * 784 + 4 * 32 * 784 + 32 * 196 + 3 * 64 + 10)
    assert s.rows[10].output_bytes == 6272 * 4 and not s.rows[10].owns_output


def resnet20_macs():
    def conv(c_out, hw, c_in, k):  # C_out * H_out * W_out * C_in * kh * kw
        return c_out * hw * hw * c_in * k * k

    stem = conv(16, 32, 3, 3)
    stage1 = 6 * conv(16, 32, 16, 3)
    stage2 = conv(32, 16, 16, 3) + 5 * conv(32, 16, 32, 3) + conv(32, 16, 16, 1)
    stage3 = conv(64, 8, 32, 3) + 5 * conv(64, 8, 64, 3) + conv(64, 8, 32, 1)
    return stem + stage1 + stage2 + stage3 + 64 * 10


def test_resnet20_totals():
    s = cynn.models.resnet(20).summary((3, 32, 32))
    assert s.total_params == 272_474
    assert s.total_macs == resnet20_macs() == 40_813_184
    # BN moving mean + variance: stem 16, stage 1 6 x 16, stages 2 and 3 7 x 32 and
    # 7 x 64 (six in the blocks, one in the projection shortcut).
    assert s.buffer_values == 2 * (16 + 6 * 16 + 7 * 32 + 7 * 64) == 1568
    assert s.output_shape == (10,)
    convs = [row for row in s.rows if isinstance(row.module, cynn.Conv2d)]
    assert len(convs) == 21
    residuals = [row for row in s.rows if isinstance(row.module, cynn.Residual)]
    assert [row.output_shape for row in residuals] == [(16, 32, 32)] * 3 + [(32, 16, 16)] * 3 \
        + [(64, 8, 8)] * 3
    # the first stage-2 block: body 16->32 s2 + 32->32, shortcut 1x1 16->32 s2
    assert residuals[3].macs == (32 * 16 * 16 * 16 * 9 + 32 * 16 * 16 * 32 * 9
                                 + 32 * 16 * 16 * 16)
    assert residuals[3].params == (16 * 32 * 9 + 2 * 32 + 32 * 32 * 9 + 2 * 32
                                   + 16 * 32 + 2 * 32)
    text = str(s)
    assert repr(s) == text
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "272,474" in text and "40,813,184" in text and "1,568" in text
    assert "shortcut: Sequential" in text


def test_grouped_depthwise_and_non_square_conv_macs():
    grouped = cynn.Conv2d(8, 16, 3, groups=4)
    s = grouped.summary((8, 10, 12))
    assert s.output_shape == (16, 10, 12)
    assert s.total_macs == 16 * 10 * 12 * (8 // 4) * 3 * 3
    assert s.total_params == 16 * (8 // 4) * 3 * 3 + 16

    depthwise = cynn.Conv2d(8, 8, 3, stride=2, groups=8, bias=False)
    s = summary(depthwise, (8, 10, 12))
    assert s.output_shape == (8, 5, 6)  # 'same' padding 1, stride 2
    assert s.total_macs == 8 * 5 * 6 * 1 * 3 * 3
    assert s.total_params == 8 * 1 * 3 * 3

    rect = cynn.Conv2d(2, 4, (3, 5), padding=0)
    s = rect.summary((2, 7, 9))
    assert s.output_shape == (4, 5, 5)
    assert s.total_macs == 4 * 5 * 5 * 2 * 3 * 5


def test_mlp_on_a_flat_shape():
    s = cynn.models.mlp(64, 10, hidden=(32, 16)).summary((64,))
    assert s.total_params == (64 * 32 + 32) + (32 * 16 + 16) + (16 * 10 + 10)
    assert s.total_macs == 64 * 32 + 32 * 16 + 16 * 10
    assert [row.output_shape for row in s.rows[1:]] == [(32,), (32,), (16,), (16,), (10,)]
    assert [row.macs for row in s.rows[1:]] == [2048, 0, 512, 0, 160]
    assert summary(cynn.Linear(5, 3), 5).total_macs == 15  # an int is a 1-d shape


def test_concat_branches():
    model = cynn.Sequential(cynn.Concat(cynn.Conv2d(3, 4, 1), cynn.Conv2d(3, 6, 3)), cynn.ReLU())
    s = model.summary((3, 5, 5))
    assert s.output_shape == (10, 5, 5)
    assert s.total_macs == 4 * 25 * 3 * 1 + 6 * 25 * 3 * 9
    assert [(row.depth, row.path) for row in s.rows] == [
        (0, "Sequential"), (1, "Sequential[0]"), (2, "Sequential[0][0]"),
        (2, "Sequential[0][1]"), (1, "Sequential[1]")]
    assert s.rows[1].params == (4 * 3 + 4) + (6 * 3 * 9 + 6)


def test_float64_doubles_the_memory():
    s32 = cynn.models.small_cnn((1, 28, 28), 10).summary((1, 28, 28))
    s64 = cynn.models.small_cnn((1, 28, 28), 10, dtype=np.float64).summary((1, 28, 28))
    assert s64.dtype == np.float64 and s32.dtype == np.float32
    assert s64.activation_bytes == 2 * s32.activation_bytes > 0
    assert s64.param_bytes == 2 * s32.param_bytes
    assert s64.input_bytes == 2 * s32.input_bytes
    assert s64.total_macs == s32.total_macs


# -- user containers -------------------------------------------------------------------
class TwoStage(cynn.Module):
    """A container that is not one of cynn's: it lists its children itself."""

    def __init__(self):
        super().__init__()
        self.encoder = cynn.Sequential(cynn.Linear(8, 4), cynn.ReLU())
        self.head = cynn.Linear(4, 2)

    def children(self):
        return [self.encoder, self.head]

    def _compute_output(self, input):
        return self.head.forward(self.encoder.forward(input))


class Twice(cynn.Module):
    """Applies one layer two times."""

    def __init__(self):
        super().__init__()
        self.layer = cynn.Linear(4, 4)

    def children(self):
        return [self.layer]

    def _compute_output(self, input):
        return self.layer.forward(self.layer.forward(input))


def test_user_container_shows_its_children():
    s = TwoStage().summary((8,))
    assert [(row.depth, row.name, row.path, row.output_shape) for row in s.rows] == [
        (0, "", "TwoStage", (2,)),
        (1, "encoder", "TwoStage.encoder", (4,)),
        (2, "0", "TwoStage.encoder[0]", (4,)),
        (2, "1", "TwoStage.encoder[1]", (4,)),
        (1, "head", "TwoStage.head", (2,))]
    assert s.total_params == (8 * 4 + 4) + (4 * 2 + 2)
    assert s.rows[1].params == 8 * 4 + 4 and s.rows[1].is_container
    assert s.total_macs == 8 * 4 + 4 * 2
    assert "encoder: Sequential" in str(s) and "head: Linear(4 -> 2)" in str(s)


def test_a_module_called_twice_counts_both_calls():
    s = Twice().summary((4,))
    row = s.rows[1]
    assert row.calls == 2 and row.macs == 2 * 4 * 4
    assert s.total_macs == 32 and s.total_params == 4 * 4 + 4
    assert "(x2)" in str(s)


# -- errors --------------------------------------------------------------------------
def test_wrong_input_shape_names_it_and_the_module():
    model = cynn.models.build("small_cnn", (1, 28, 28), 10)
    with pytest.raises(ValueError, match=r"input_shape=\(3, 28, 28\)\): Sequential\[0\] "
                                         r"Conv2d got input of shape \(1, 3, 28, 28\)"):
        model.summary((3, 28, 28))
    with pytest.raises(ValueError, match=r"Sequential\[0\] Linear got input of shape \(1, 32\)"):
        cynn.models.mlp(64, 10).summary((32,))
    assert all("forward" not in vars(row.module) for row in model.summary((1, 28, 28)).rows)


def test_input_shape_from_the_attribute_or_an_error():
    model = cynn.models.mlp(6, 2)
    with pytest.raises(ValueError, match="pass input_shape"):
        model.summary()
    model.input_shape = (6,)
    assert model.summary().input_shape == (6,)
    for bad in [(0, 4), (-1,), ()]:
        with pytest.raises(ValueError, match="input_shape"):
            model.summary(bad)
    for bad in ["6", (6.0,), (True,)]:
        with pytest.raises(TypeError, match="input_shape"):
            model.summary(bad)


# -- the model is left alone -------------------------------------------------------------
def snapshot(model):
    modules, stack = [], [model]
    while stack:
        module = stack.pop()
        modules.append(module)
        stack.extend(module.children())
    return ({k: v.copy() for k, v in model.state_dict().items()},
            [(m._training, m._output, dict(vars(m))) for m in modules])


def assert_unchanged(before, after):
    (state0, modules0), (state1, modules1) = before, after
    assert state0.keys() == state1.keys()
    for key in state0:
        np.testing.assert_array_equal(state0[key], state1[key], err_msg=key)
    for (training0, out0, vars0), (training1, out1, vars1) in zip(modules0, modules1):
        assert training0 == training1 and out0 is out1
        assert vars0.keys() == vars1.keys()


def test_summary_changes_no_model_state():
    model = cynn.models.build("small_cnn", (1, 28, 28), 10)
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    model.forward(x)  # training mode: the moving statistics and _output have values
    before = snapshot(model)
    model.summary((1, 28, 28))
    assert_unchanged(before, snapshot(model))
    # A lazily allocated BatchNormalization stays unallocated.
    lazy = cynn.Sequential(cynn.Conv2d(1, 2, 3), cynn.BatchNormalization())
    before = snapshot(lazy)
    assert lazy.summary((1, 5, 5)).buffer_values == 4  # what it will hold
    assert_unchanged(before, snapshot(lazy))
    assert lazy[1].moving_mean is None


class Locked(cynn.Module):
    """A layer that cannot be deep-copied (it holds a lock): summary traces it in
    place."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()

    def _compute_output(self, input):
        return np.asarray(input) * 2


def test_uncopyable_model_is_traced_in_place_and_restored():
    model = cynn.Sequential(cynn.Linear(3, 5), Locked())
    model.forward(np.ones((2, 3), np.float32))
    before = snapshot(model)
    s = model.summary((3,))
    assert s.total_macs == 15 and s.output_shape == (5,)
    assert_unchanged(before, snapshot(model))
    with pytest.raises(ValueError, match=r"Sequential\[0\] Linear"):
        model.summary((4,))
    assert_unchanged(before, snapshot(model))


@pytest.mark.parametrize("tail", [cynn.Identity, Locked], ids=["copied", "in-place"])
def test_other_threads_inference_is_unaffected(tail):
    model = cynn.Sequential(*cynn.models.resnet(8, width=4, random_state=0), tail()).evaluate()
    x = np.random.default_rng(1).standard_normal((3, 3, 16, 16)).astype(np.float32)
    with cynn.inference_mode():  # the mode the worker runs in (its fused plans)
        expected = model.forward(x)
    stop, results, errors = threading.Event(), [], []

    def infer():
        try:
            while not stop.is_set() or len(results) < 3:
                with cynn.inference_mode():
                    results.append(model.forward(x))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    worker = threading.Thread(target=infer)
    worker.start()
    try:
        for _ in range(5):
            s = model.summary((3, 16, 16))
            assert s.output_shape == (10,)
    finally:
        stop.set()
        worker.join(timeout=60)
    assert not errors and results
    for out in results:
        np.testing.assert_array_equal(out, expected)
    assert all("forward" not in vars(row.module) for row in s.rows)


def test_import_cynn_does_not_import_summary():
    code = "import sys, cynn; print('cynn.summary' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_an_error_that_cannot_be_rebuilt_keeps_its_type_with_a_note():
    class Odd(Exception):
        def __init__(self, code, detail):       # like NumPy's MemoryError(shape, dtype)
            super().__init__(code, detail)

    class Fails(cynn.Module):
        def _compute_output(self, input):
            raise Odd(7, "no room")

    with pytest.raises(Odd) as info:
        cynn.Sequential(cynn.ReLU(), Fails()).summary((3,))
    assert any("Sequential[1] Fails got input of shape (1, 3)" in note
               for note in info.value.__notes__)
