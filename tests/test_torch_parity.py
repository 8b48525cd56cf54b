"""Layers against PyTorch (the optional extra torch==2.13.0), in float64."""
import numpy as np
import pytest

import cynn

torch = pytest.importorskip("torch", reason="PyTorch not installed (optional extra: torch==2.13.0)")
F = torch.nn.functional
TOL = dict(rtol=1e-6, atol=1e-6)


def _t(a):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def _check(layer, x, torch_fn, params, rng):
    y = layer.forward(x)
    tx = _t(x)
    tparams = [_t(p) for p in params]
    ty = torch_fn(tx, *tparams)
    np.testing.assert_allclose(y, ty.detach().numpy(), **TOL)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(x, dy)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy(), **TOL)
    for g, tp in zip(layer.get_parameters_grad(), tparams):
        np.testing.assert_allclose(g, tp.grad.numpy(), **TOL)


@pytest.mark.parametrize("bias", [True, False])
def test_linear(bias, rng):
    layer = cynn.Linear(7, 4, bias=bias, dtype=np.float64, random_state=0)
    _check(layer, rng.standard_normal((5, 7)), lambda x, w, b=None: F.linear(x, w, b),
           layer.get_parameters(), rng)


@pytest.mark.parametrize("shape,out_ch,k,stride,padding", [
    ((2, 3, 8, 8), 4, 3, 1, "same"),
    ((3, 2, 9, 7), 5, 3, 2, 1),
    ((2, 4, 10, 6), 3, (3, 2), (2, 1), (1, 0)),
    ((1, 1, 6, 6), 2, 5, 1, "valid"),
    ((2, 3, 7, 7), 2, 4, 3, 2),
])
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d(shape, out_ch, k, stride, padding, bias, rng):
    layer = cynn.Conv2d(shape[1], out_ch, k, stride=stride, padding=padding, bias=bias,
                        dtype=np.float64, random_state=0)

    def fn(x, w, b=None):
        return F.conv2d(x, w, b, stride=layer.stride, padding=layer.padding)

    _check(layer, rng.standard_normal(shape), fn, layer.get_parameters(), rng)


@pytest.mark.parametrize("k,s,p,shape", [(2, None, 0, (2, 3, 8, 8)), (3, 2, 1, (2, 2, 9, 7)),
                                         ((2, 3), (1, 2), (1, 1), (1, 2, 6, 7))])
def test_maxpool2d(k, s, p, shape, rng):
    layer = cynn.MaxPool2d(k, s, p)
    _check(layer, rng.standard_normal(shape),
           lambda x: F.max_pool2d(x, k, s if s is not None else k, p), [], rng)


@pytest.mark.parametrize("k,s,shape", [(2, None, (2, 3, 8, 8)), (3, 2, (2, 2, 9, 7)), ((2, 3), (1, 2), (1, 2, 6, 7))])
def test_avgpool2d(k, s, shape, rng):
    layer = cynn.AvgPool2d(k, s)
    _check(layer, rng.standard_normal(shape),
           lambda x: F.avg_pool2d(x, k, s if s is not None else k), [], rng)


@pytest.mark.parametrize("shape", [(16, 5), (8, 3, 5, 4)])
@pytest.mark.parametrize("alpha", [0.0, 0.9])
def test_batchnorm(shape, alpha, rng):
    layer = cynn.BatchNormalization(alpha=alpha, dtype=np.float64)
    ref = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(
        shape[1], eps=1e-3, momentum=1 - alpha, affine=False).double()
    for _ in range(3):
        x = rng.standard_normal(shape) * 2 + 1
        tx = _t(x)
        ty = ref(tx)
        y = layer.forward(x)
        np.testing.assert_allclose(y, ty.detach().numpy(), **TOL)
        dy = rng.standard_normal(shape)
        ty.backward(torch.tensor(dy))
        np.testing.assert_allclose(layer.backward(x, dy), tx.grad.numpy(), **TOL)
        # Moving mean agrees; PyTorch's running variance uses the unbiased estimate.
        np.testing.assert_allclose(layer.moving_mean, ref.running_mean.numpy(), **TOL)
    ref.eval()
    layer.evaluate()
    layer.moving_variance[...] = ref.running_var.numpy()
    x = rng.standard_normal(shape)
    tx = _t(x)
    ty = ref(tx)
    np.testing.assert_allclose(layer.forward(x), ty.detach().numpy(), **TOL)
    dy = rng.standard_normal(shape)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(layer.backward(x, dy), tx.grad.numpy(), **TOL)


def test_dropout_eval_is_identity_like_torch(rng):
    x = rng.standard_normal((4, 6))
    drop = torch.nn.Dropout(0.4).eval()
    np.testing.assert_array_equal(cynn.Dropout(0.4).evaluate().forward(x), drop(torch.tensor(x)).numpy())


# -- containers, grouped convolutions, global pooling, ResNets: float64 at 1e-7 -------
TOL7 = dict(rtol=1e-7, atol=1e-7)


class _TorchResidual(torch.nn.Module):
    def __init__(self, body, shortcut):
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else torch.nn.Identity()

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


class _TorchConcat(torch.nn.Module):
    def __init__(self, branches):
        super().__init__()
        self.branches = torch.nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], dim=1)


class _TorchScaling(torch.nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(layer.gamma))
        self.bias = torch.nn.Parameter(torch.tensor(layer.beta))

    def forward(self, x):
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.weight.view(shape) + self.bias.view(shape)


def to_torch(module):
    """The same network, module by module, in PyTorch float64, with the same weights.
    Parameters come out in cynn's order."""
    if isinstance(module, cynn.Sequential):
        return torch.nn.Sequential(*map(to_torch, module))
    if isinstance(module, cynn.Residual):
        shortcut = None if module.shortcut is None else to_torch(module.shortcut)
        return _TorchResidual(to_torch(module.body), shortcut)
    if isinstance(module, cynn.Concat):
        return _TorchConcat(list(map(to_torch, module.branches)))
    if isinstance(module, cynn.Identity):
        return torch.nn.Identity()
    if isinstance(module, cynn.Conv2d):
        t = torch.nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size,
                            stride=module.stride, padding=module.padding, groups=module.groups,
                            bias=module.b is not None).double()
        with torch.no_grad():
            t.weight.copy_(torch.tensor(module.W))
            if module.b is not None:
                t.bias.copy_(torch.tensor(module.b))
        return t
    if isinstance(module, cynn.Linear):
        t = torch.nn.Linear(module.n_in, module.n_out).double()
        with torch.no_grad():
            t.weight.copy_(torch.tensor(module.W))
            t.bias.copy_(torch.tensor(module.b))
        return t
    if isinstance(module, cynn.BatchNormalization):
        return torch.nn.BatchNorm2d(module.n_features, eps=module.eps, affine=False,
                                    momentum=1 - module.alpha).double()
    if isinstance(module, cynn.ChannelwiseScaling):
        return _TorchScaling(module)
    if isinstance(module, cynn.ReLU):
        return torch.nn.ReLU()
    if isinstance(module, cynn.GlobalAvgPool2d):
        return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    raise TypeError(f"no PyTorch twin for {module!r}")


def _check_network(model, x, rng):
    """Training-mode forward, input gradient and every parameter gradient."""
    tmodel = to_torch(model).train()
    y = model.forward(x)
    tx = _t(x)
    ty = tmodel(tx)
    np.testing.assert_allclose(y, ty.detach().numpy(), **TOL7)
    dy = rng.standard_normal(y.shape)
    dx = model.backward(x, dy)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy(), **TOL7)
    tgrads = [p.grad.numpy() for p in tmodel.parameters()]
    assert len(tgrads) == len(model.get_parameters_grad())
    for g, tg in zip(model.get_parameters_grad(), tgrads):
        np.testing.assert_allclose(g, tg, **TOL7)


@pytest.mark.parametrize("c, f, groups, k, stride, padding, bias", [
    (6, 6, 6, 3, 1, 1, True),       # depthwise
    (6, 12, 6, 3, 2, 1, False),     # depthwise, multiplier 2, stride 2
    (4, 4, 4, 5, 2, 2, True),
    (6, 4, 2, 3, 2, 1, True),       # grouped
    (8, 8, 4, (3, 1), 1, (1, 0), False),
])
def test_grouped_and_depthwise_conv(c, f, groups, k, stride, padding, bias, rng):
    layer = cynn.Conv2d(c, f, k, stride=stride, padding=padding, bias=bias, groups=groups,
                        dtype=np.float64, random_state=0)
    _check_network(layer, rng.standard_normal((3, c, 9, 8)), rng)


def test_global_avgpool(rng):
    _check_network(cynn.GlobalAvgPool2d(), rng.standard_normal((3, 5, 6, 7)), rng)


def test_residual_block_with_projection_shortcut(rng):
    r = np.random.default_rng(1)
    body = cynn.Sequential(
        cynn.Conv2d(3, 8, 3, stride=2, bias=False, dtype=np.float64, random_state=r),
        cynn.BatchNormalization(alpha=0.9, eps=1e-5, n_features=8, dtype=np.float64),
        cynn.ChannelwiseScaling(8, dtype=np.float64, random_state=r), cynn.ReLU(),
        cynn.Conv2d(8, 8, 3, bias=False, dtype=np.float64, random_state=r),
        cynn.BatchNormalization(alpha=0.9, eps=1e-5, n_features=8, dtype=np.float64),
        cynn.ChannelwiseScaling(8, dtype=np.float64, random_state=r))
    shortcut = cynn.Sequential(
        cynn.Conv2d(3, 8, 1, stride=2, padding=0, bias=False, dtype=np.float64, random_state=r),
        cynn.BatchNormalization(alpha=0.9, eps=1e-5, n_features=8, dtype=np.float64),
        cynn.ChannelwiseScaling(8, dtype=np.float64, random_state=r))
    _check_network(cynn.Sequential(cynn.Residual(body, shortcut), cynn.ReLU()),
                   rng.standard_normal((4, 3, 9, 10)), rng)


def test_concat_of_two_conv_branches(rng):
    r = np.random.default_rng(2)
    model = cynn.Concat(cynn.Conv2d(4, 3, 3, dtype=np.float64, random_state=r),
                        cynn.Sequential(cynn.Conv2d(4, 2, 1, dtype=np.float64, random_state=r),
                                        cynn.ReLU(),
                                        cynn.Conv2d(2, 5, 3, groups=1, dtype=np.float64,
                                                    random_state=r)),
                        cynn.Identity())
    _check_network(model, rng.standard_normal((2, 4, 7, 6)), rng)


def test_resnet8_end_to_end(rng):
    model = cynn.models.resnet(8, in_channels=3, n_classes=5, width=4, dtype=np.float64,
                               random_state=0)
    _check_network(model, rng.standard_normal((4, 3, 12, 12)), rng)


def _torch_resnet(depth, width=16, in_channels=3, n_classes=10):
    """CIFAR ResNet written directly in PyTorch, the textbook way: the reference for
    the parameter counts (projection shortcuts where the shape changes)."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.short = nn.Identity()
            if stride != 1 or c_in != c_out:
                self.short = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                           nn.BatchNorm2d(c_out))

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(y)) + self.short(x))

    n = (depth - 2) // 6
    layers = [nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    c = width
    for stage in range(3):
        for i in range(n):
            layers.append(Block(c, width * 2 ** stage, 2 if stage and i == 0 else 1))
            c = width * 2 ** stage
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, n_classes)]
    return nn.Sequential(*layers)


@pytest.mark.parametrize("depth, expected", [(8, 78_042), (14, 175_258), (20, 272_474),
                                             (32, 466_906)])
def test_resnet_parameter_count_equals_pytorch(depth, expected):
    ours = sum(p.size for p in cynn.models.resnet(depth, random_state=0).get_parameters())
    theirs = sum(p.numel() for p in _torch_resnet(depth).parameters())
    assert ours == theirs == expected  # `expected` is the table in resnet's docstring
