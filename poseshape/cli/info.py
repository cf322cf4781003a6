"""``poseshape info``: versions, conventions, data location and compute device."""

from __future__ import annotations

import platform

from poseshape.core.paths import shared_data_dir
from poseshape.core.version import __version__
from poseshape.geometry.conventions import CONVENTIONS_VERSION


def add_parser(sub):
    return sub.add_parser("info", help="print versions, conventions, data location and device")


def run(args) -> int:
    import torch

    data = shared_data_dir()
    print(f"poseshape {__version__} (conventions v{CONVENTIONS_VERSION})")
    print(f"python {platform.python_version()}, torch {torch.__version__}")
    dev = f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu"
    print(f"device: {dev}, threads: {torch.get_num_threads()}")
    print(f"shared data: {data} ({'found' if data.is_dir() else 'absent'})")
    return 0
