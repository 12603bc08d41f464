"""selfsup: joint-embedding self-supervised learning that tells you how good it is without labels."""

import importlib

from selfsup.errors import SelfsupError

__version__ = "0.1.0"
__all__ = ["SelfsupError", "__version__", "load_backbone"]


def __getattr__(name: str):
    # selfsup.load_backbone (selfsup.export) is imported when first used: `import selfsup` stays light, and
    # modules that read selfsup.__version__ do not depend on the export layer
    if name == "load_backbone":
        return importlib.import_module("selfsup.export").load_backbone
    raise AttributeError(f"module 'selfsup' has no attribute {name!r}")
