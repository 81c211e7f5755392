import os
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope='session')
def data_root() -> Path:
    "Real CIFAR-10 (tests and CI point EPROBUST_DATA at ../shared/data/cifar10)."
    from eprobust.core import default_data_root
    root = default_data_root()
    if not root.exists(): pytest.fail(f"CIFAR-10 not found at {root}: set EPROBUST_DATA (the Makefile does)")
    return root

@pytest.fixture(scope='session')
def shared_cache(tmp_path_factory) -> Path:
    "One cache for decoded data across tests (decoding the PNG tree takes ~15 s once)."
    return Path(os.environ.get('EPROBUST_CACHE') or (Path(os.environ.get('EPROBUST_OUT') or tmp_path_factory.mktemp('out')) / 'cache'))
