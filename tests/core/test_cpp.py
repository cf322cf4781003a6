"""core.cpp: the C++ extension loader imports torch's cpp_extension without its CUDA warning,
and a kernel that fails to build warns and falls back."""

from __future__ import annotations

import subprocess
import sys

import pytest

from poseshape.core.cpp import load_openmp_extension


def test_cpp_extension_import_is_quiet_and_complete():
    code = (
        "import logging; logging.basicConfig(level=logging.WARNING)\n"
        "from poseshape.core.cpp import cpp_extension\n"
        "m = cpp_extension(); assert callable(m.load) and callable(m.load_inline)\n"
        "import logging; assert logging.getLogger('torch.utils.cpp_extension').level == logging.NOTSET\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "No CUDA runtime" not in r.stderr, r.stderr


def test_a_failed_build_warns_naming_the_kernel_and_returns_none(tmp_path):
    bad = tmp_path / "broken.cpp"
    bad.write_text("this is not C++\n")
    with pytest.warns(UserWarning, match="C\\+\\+ test kernel unavailable, using PyTorch"):
        assert load_openmp_extension("poseshape_test_broken_ext", bad, "test kernel") is None
