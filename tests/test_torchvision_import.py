"""maskopt imports torchvision without torch._dynamo, and dynamo still works afterwards."""

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_remove_path_leaves_dynamo_unloaded_and_real_dynamo_loads_later():
    out = _run("""
        import sys
        import maskopt.removal
        print("dynamo after maskopt.removal:", "torch._dynamo" in sys.modules)

        import torch
        import torch._dynamo.utils as real
        tv_roi_align = sys.modules["torchvision.ops.roi_align"]  # ops.roi_align is the function
        assert "is_compile_supported" in vars(real), "placeholder left in sys.modules"
        assert tv_roi_align.is_compile_supported("cpu") == real.is_compile_supported("cpu")

        compiled = torch.compile(lambda x: x * 2 + 1, backend="eager")
        print("compiled:", compiled(torch.ones(3)).tolist())
    """)
    assert "dynamo after maskopt.removal: False" in out
    assert "compiled: [3.0, 3.0, 3.0]" in out


def test_dynamo_loaded_first_is_left_alone():
    out = _run("""
        import sys
        import torch._dynamo.utils as real
        import maskopt.models
        tv_roi_align = sys.modules["torchvision.ops.roi_align"]  # ops.roi_align is the function
        print(tv_roi_align.is_compile_supported is real.is_compile_supported)
    """)
    assert out.strip() == "True"
