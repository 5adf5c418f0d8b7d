"""What every stage script shares: load params, report user errors as one line."""

from __future__ import annotations

import sys
from collections.abc import Callable

from maskopt.core.errors import MaskoptError
from maskopt.pipeline.params import Params, load_params


def run_stage(main: Callable[[Params], None], params_path: str = "params.yaml") -> None:
    """Run ``main(params)``; a MaskoptError becomes ``error: <line>`` and exit code 2."""
    try:
        main(load_params(params_path))
    except MaskoptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
