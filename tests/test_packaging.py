"""Build the sdist from the source tree, the wheel from the sdist, and use the wheel."""
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "*.so", "*.c",
                                "*.html", "__pycache__", ".pytest_cache", ".hypothesis",
                                "notebooks", "benchmarks")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pkg")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    env = {k: v for k, v in os.environ.items() if k != "CYNN_DEBUG"}
    run = dict(cwd=src, env=env, capture_output=True, text=True)
    result = subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation",
                             "--outdir", str(tmp / "dist")], **run)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (sdist,) = (tmp / "dist").glob("*.tar.gz")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                             "-w", str(tmp / "wheels"), str(sdist)], **run)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = (tmp / "wheels").glob("*.whl")
    return tmp, sdist, wheel


def test_sdist_holds_sources_not_generated_c(built):
    _, sdist, _ = built
    assert sdist.name.startswith("cynn_framework-")
    with tarfile.open(sdist) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
    for kernel in ("conv", "batchnorm", "pooling"):
        assert f"cynn/_kernels/{kernel}.pyx" in names
    # The kernels' C headers, which the .pyx files include, build from the sdist too.
    headers = {p.name for p in (ROOT / "cynn" / "_kernels").glob("*.h")}
    assert {"cynn_common.h", "conv.h", "batchnorm.h"} <= headers
    assert {f"cynn/_kernels/{h}" for h in headers} <= set(names)
    assert "cynn/_kernels/_checks.pxi" in names
    assert {"setup.py", "pyproject.toml", "README.md", "trainers/__init__.py",
            "datasets/__init__.py"} <= set(names)
    assert not [n for n in names if n.endswith((".c", ".so"))]


def test_wheel_holds_only_the_cynn_package(built):
    _, _, wheel = built
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"cynn", next(t for t in top if t.endswith(".dist-info"))}
    for kernel in ("conv", "batchnorm", "pooling"):
        assert any(n.startswith(f"cynn/_kernels/{kernel}.") and n.endswith((".so", ".pyd")) for n in names)
    assert "cynn/trainers/__init__.py" in names and "cynn/datasets/__init__.py" in names
    assert not [n for n in names if n.endswith((".c", ".h", ".pyx", ".pxd", ".pxi"))]


def test_wheel_works_outside_the_source_tree(built):
    tmp, _, wheel = built
    target = tmp / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)
    code = (
        "import numpy as np, cynn, cynn.trainers, cynn.datasets\n"
        f"assert cynn.__file__.startswith({str(target)!r}), cynn.__file__\n"
        "conv = cynn.Conv2d(1, 2, 3, random_state=0)\n"
        "x = np.ones((1, 1, 4, 4), np.float32)\n"
        "y = conv.forward(x)\n"
        "assert y.shape == (1, 2, 4, 4)\n"
        "conv.backward(x, np.ones_like(y))\n"
        "print('ok')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp, env=env, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
