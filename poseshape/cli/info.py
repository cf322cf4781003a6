"""``poseshape info``: versions, conventions, data location, compute device and methods."""

from __future__ import annotations

import platform

from poseshape.core.paths import shared_data_dir
from poseshape.core.version import __version__
from poseshape.engine.predictor import default_checkpoint
from poseshape.engine.registry import get_method, list_methods
from poseshape.geometry.conventions import CONVENTIONS_VERSION


def add_parser(sub):
    return sub.add_parser("info", help="print versions, conventions, data location, device and methods")


def run(args) -> int:
    import torch

    data = shared_data_dir()
    print(f"poseshape {__version__} (conventions v{CONVENTIONS_VERSION})")
    print(f"python {platform.python_version()}, torch {torch.__version__}")
    dev = f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu"
    print(f"device: {dev}, threads: {torch.get_num_threads()}")
    print(f"shared data: {data} ({'found' if data.is_dir() else 'absent'})")
    print("methods:")
    for name in list_methods():
        shipped = "shipped model" if default_checkpoint(name).is_file() else "no shipped model: train one"
        print(f"  {name:16s} {shipped}; {get_method(name).description}")
    return 0
