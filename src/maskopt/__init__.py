"""maskopt: inpainting-driven mask optimization for object removal."""

__version__ = "0.1.0"
__all__ = ["remove"]


def __getattr__(name: str):
    # `maskopt.remove(...)` without importing torch for every `import maskopt`
    if name == "remove":
        from maskopt.removal.remover import remove

        return remove
    raise AttributeError(f"module 'maskopt' has no attribute {name!r}")
