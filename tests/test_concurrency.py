"""Inference from many threads on one model is bit-identical to serial calls; training
one model from two threads is refused with an error; backward never replays forward."""
import threading

import numpy as np
import pytest

import cynn
from cynn.trainers import NeuralNetClassifier, Trainer

THREADS, CALLS = 8, 50


def every_layer_model(dtype=np.float64):
    """One of each layer and container type, images then vectors."""
    rng = np.random.default_rng(0)
    return cynn.Sequential(
        cynn.Conv2d(2, 6, 3, dtype=dtype, random_state=rng),
        cynn.BatchNormalization(alpha=0.5, dtype=dtype),
        cynn.ChannelwiseScaling(6, dtype=dtype, random_state=rng),
        cynn.ReLU(),
        cynn.Residual(cynn.Sequential(
            cynn.Conv2d(6, 6, 3, groups=3, dtype=dtype, random_state=rng),
            cynn.ReLU(),
            cynn.Conv2d(6, 6, 3, groups=6, dtype=dtype, random_state=rng))),
        cynn.Concat(cynn.Conv2d(6, 4, 1, dtype=dtype, random_state=rng), cynn.Identity()),
        cynn.Conv2d(10, 5, (3, 2), stride=2, padding=0, bias=False, dtype=dtype,
                    random_state=rng),
        cynn.LeakyReLU(0.1),
        cynn.MaxPool2d(2),
        cynn.ELU(),
        cynn.AvgPool2d(1),
        cynn.Dropout(0.3, random_state=rng),
        cynn.Concat(cynn.GlobalAvgPool2d(), cynn.Flatten()),
        cynn.Linear(5 + 5 * 2 * 2, 12, dtype=dtype, random_state=rng),
        cynn.BatchNormalization(alpha=0.5, dtype=dtype),
        cynn.Tanh(),
        cynn.SoftPlus(),
        cynn.Sigmoid(),
        cynn.Linear(12, 7, dtype=dtype, random_state=rng),
        cynn.SoftMax(),
        cynn.LogSoftMax(),
    )


def trained(model, x):
    """One training step, so the moving statistics are not the initial 0 and 1."""
    model.train()
    out = model.forward(x)
    model.backward(x, np.ones_like(out))
    return model


def run_threads(target, n=THREADS):
    errors, threads = [], []
    barrier = threading.Barrier(n)

    def body(i):
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    for i in range(n):
        threads.append(threading.Thread(target=body, args=(i,)))
        threads[-1].start()
    for t in threads:
        t.join()
    return errors


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["evaluate", "inference_mode"])
def test_many_threads_forward_bit_identical_to_serial(dtype, mode):
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((int(rng.integers(1, 9)), 2, 11, 9)).astype(dtype)
               for _ in range(THREADS * CALLS)]
    model = trained(every_layer_model(dtype), batches[0])
    if mode == "evaluate":
        # serial calls in the same mode: evaluation mode runs layer by layer, while
        # inference_mode runs the fused plans (equal up to rounding, tests/test_plan.py)
        model.evaluate()
        expected = [model.forward(b).copy() for b in batches]
    else:
        with cynn.inference_mode():
            expected = [model.forward(b).copy() for b in batches]
    results = [None] * len(batches)

    def work(i):
        for j in range(i, len(batches), THREADS):
            if mode == "evaluate":
                results[j] = model.forward(batches[j])
            else:
                with cynn.inference_mode():
                    results[j] = model.forward(batches[j])

    assert run_threads(work) == []
    mismatches = sum(not np.array_equal(r, e) for r, e in zip(results, expected))
    assert mismatches == 0
    assert model.training is (mode == "inference_mode")


def test_inference_mode_changes_nothing_in_the_model():
    x = np.random.default_rng(2).standard_normal((4, 2, 11, 9))
    model = trained(every_layer_model(), x)
    before = model.state_dict()
    with cynn.inference_mode():
        model.forward(x + 1)
        assert not model.training and not model[1].training
        with pytest.raises(RuntimeError, match="inference_mode"):
            model.backward(x + 1, np.ones((4, 7)))
    assert model.training and model[1].training
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_estimator_predict_proba_from_many_threads():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X[:400] / 16.0
    clf = NeuralNetClassifier(image_shape=(1, 8, 8), max_epochs=1, random_state=0).fit(X, y[:400])
    chunks = [X[i::THREADS * 2] for i in range(THREADS * 2)]
    expected = [clf.predict_proba(c) for c in chunks]
    results = [None] * len(chunks)

    def work(i):
        for j in (i, i + THREADS):
            results[j] = clf.predict_proba(chunks[j])
            assert np.array_equal(clf.predict(chunks[j]), clf.classes_[results[j].argmax(1)])

    assert run_threads(work) == []
    assert sum(not np.array_equal(r, e) for r, e in zip(results, expected)) == 0


def test_trainer_predict_from_many_threads_on_a_model_in_training_mode():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((64, 2, 11, 9))
    model = trained(every_layer_model(), X[:8])
    trainer = Trainer(model, cynn.CrossEntropyCriterion(), cynn.SGD(model, lr=0.1),
                      batch_size=5, verbose=0)
    expected = trainer.predict(X)
    moving = model[1].moving_mean.copy()
    results = [None] * THREADS
    assert run_threads(lambda i: results.__setitem__(i, trainer.predict(X))) == []
    assert all(np.array_equal(r, expected) for r in results)
    assert model.training and np.array_equal(model[1].moving_mean, moving)


class Blocking(cynn.Module):
    """Identity whose forward waits until released, to hold a training step open."""

    def __init__(self):
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    def _compute_output(self, input):
        self.entered.set()
        self.release.wait(10)
        return input

    def _compute_input_grad(self, input, output_grad):
        return output_grad


def test_a_second_thread_training_the_same_model_is_refused():
    model = cynn.Sequential(cynn.Linear(3, 2), Blocking())
    x = np.ones((2, 3), np.float32)
    worker = threading.Thread(target=model.forward, args=(x,))
    worker.start()
    try:
        assert model[1].entered.wait(10)
        with pytest.raises(RuntimeError, match=r"^Sequential.*forward in thread .* training"):
            model.forward(x)
    finally:
        model[1].release.set()
        worker.join()
    # Once the other thread is done, this thread may train the model.
    model.backward(*_forward_in_this_thread(model, x))


def _forward_in_this_thread(model, x):
    return x, np.ones_like(model.forward(x))


def test_backward_after_another_threads_forward_is_refused():
    model = cynn.Sequential(cynn.Linear(3, 2), cynn.ReLU())
    x = np.ones((2, 3), np.float32)
    out = model.forward(x)
    other = threading.Thread(target=model.forward, args=(x + 1,))
    other.start()
    other.join()
    grads = [g.copy() for g in model.get_parameters_grad()]
    with pytest.raises(RuntimeError, match="backward in thread"):
        model.backward(x, np.ones_like(out))
    assert all(np.array_equal(a, b) for a, b in zip(grads, model.get_parameters_grad()))


def test_two_threads_stepping_one_optimizer_is_refused():
    model = cynn.Linear(3, 2)
    optimizer = cynn.SGD(model, lr=0.1)
    inside, release = threading.Event(), threading.Event()
    original = optimizer._update_parameter

    def slow_update(*args):
        inside.set()
        release.wait(10)
        return original(*args)

    optimizer._update_parameter = slow_update
    worker = threading.Thread(target=optimizer.step)
    worker.start()
    try:
        assert inside.wait(10)
        with pytest.raises(RuntimeError, match=r"^SGD.*step in thread"):
            optimizer.step()
    finally:
        release.set()
        worker.join()
    assert optimizer.step_count == 1


def test_sequential_backward_with_another_input_raises_and_changes_nothing():
    rng = np.random.default_rng(4)
    model = cynn.Sequential(cynn.Linear(4, 6, random_state=rng), cynn.BatchNormalization(),
                            cynn.Dropout(0.5, random_state=rng), cynn.Linear(6, 2, random_state=rng))
    x = rng.standard_normal((8, 4)).astype(np.float32)
    out = model.forward(x)
    moving = model[1].moving_mean.copy(), model[1].moving_variance.copy()
    mask = model[2].mask.copy()
    with pytest.raises(ValueError, match="same input object"):
        model.backward(x.copy(), np.ones_like(out))
    assert np.array_equal(model[1].moving_mean, moving[0])
    assert np.array_equal(model[1].moving_variance, moving[1])
    assert np.array_equal(model[2].mask, mask)
    assert all(not g.any() for g in model.get_parameters_grad())
    model.backward(x, np.ones_like(out))          # the forward's own input works
    assert any(g.any() for g in model.get_parameters_grad())
