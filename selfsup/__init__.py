"""selfsup: joint-embedding self-supervised learning that tells you how good it is without labels."""

from selfsup.errors import SelfsupError

__version__ = "0.1.0"
__all__ = ["SelfsupError", "__version__"]
