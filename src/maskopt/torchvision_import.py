"""Import torchvision without loading torch._dynamo.

`torchvision.ops.roi_align` imports `is_compile_supported` from
`torch._dynamo.utils` at module level, and `import torchvision` always imports
`torchvision.ops`. Loading dynamo (sympy, symbolic shapes, the bytecode
tracer) is 1.4-1.6 s of `maskopt remove`'s 3.4 s start-up on 2 cores, and
nothing here compiles: torchvision calls the function only when its compiled
operators are missing. So while torchvision is first imported, a placeholder
stands in for `torch._dynamo.utils`; its function imports the real one on first
use. The placeholder leaves `sys.modules` afterwards, so a later
`import torch._dynamo` (torch.compile in a benchmark) loads the real package.
"""

from __future__ import annotations

import sys
import types

_DYNAMO_UTILS = "torch._dynamo.utils"


def _is_compile_supported(device_type: str) -> bool:
    from torch._dynamo.utils import is_compile_supported

    return is_compile_supported(device_type)


def import_torchvision_without_dynamo() -> None:
    """Import torchvision; if this is its first import, keep dynamo unloaded."""
    if "torchvision" in sys.modules or _DYNAMO_UTILS in sys.modules:
        import torchvision  # noqa: F401  (already paid for, or dynamo already loaded)

        return
    placeholder = types.ModuleType(_DYNAMO_UTILS)
    placeholder.is_compile_supported = _is_compile_supported
    sys.modules[_DYNAMO_UTILS] = placeholder
    try:
        import torchvision  # noqa: F401
    finally:
        if sys.modules.get(_DYNAMO_UTILS) is placeholder:
            del sys.modules[_DYNAMO_UTILS]
    if "torch._dynamo" in sys.modules:
        # Something imported the dynamo package while the placeholder stood in
        # for its utils module: that package would be broken. Say so loudly.
        raise ImportError("torch._dynamo was imported during torchvision's first import: "
                          "maskopt's placeholder for it does not fit this torchvision")
