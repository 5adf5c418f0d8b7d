"""maskopt: inpainting-driven mask optimization for object removal."""

from maskopt.lazy_modules import defer_unused_modules

defer_unused_modules()  # first, so no module of maskopt can import scipy before it

__version__ = "0.1.0"
__all__ = ["remove"]


def __getattr__(name: str):
    # `maskopt.remove(...)` without importing torch for every `import maskopt`
    if name == "remove":
        from maskopt.removal import remove

        return remove
    raise AttributeError(f"module 'maskopt' has no attribute {name!r}")
