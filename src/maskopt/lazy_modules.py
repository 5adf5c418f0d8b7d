"""Modules that maskopt's imports drag in but never use, executed on first use instead.

scikit-image's Canny and colour conversion import scipy, and scipy's array-API layer
copies every public name of numpy into its own namespace. numpy loads its submodules
when such a name is looked up, so importing scipy executes ``numpy.f2py`` (the
Fortran wrapper generator): 100-150 ms of `maskopt remove`'s start-up on 2 cores, for
a module nothing in maskopt calls. importlib's ``LazyLoader`` gives such a module its
module object at import time and executes it on the first attribute access, so
whoever does use it gets the real module.
"""

from __future__ import annotations

import sys
from importlib.machinery import PathFinder

DEFERRED = frozenset({"numpy.f2py"})


class _DeferringFinder:
    """A meta path finder: finds the modules of ``DEFERRED`` as the path finder does,
    with a lazy loader. (Not an ``importlib.abc.MetaPathFinder`` subclass: importing
    importlib.abc costs 40 ms, and every `import maskopt` runs this module.)"""

    def find_spec(self, name, path, target=None):
        if name not in DEFERRED:
            return None
        from importlib.util import LazyLoader  # 6 ms: only when a deferred module is imported

        spec = PathFinder.find_spec(name, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = LazyLoader(spec.loader)
        return spec


def defer_unused_modules() -> None:
    """Execute the modules of ``DEFERRED`` on first use (idempotent). Only modules not
    yet imported are affected: call it before scipy is imported."""
    if not any(isinstance(finder, _DeferringFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _DeferringFinder())
