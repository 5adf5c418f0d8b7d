"""maskopt's imports leave numpy.f2py unexecuted until someone uses it."""

import subprocess
import sys

CRACKFORTRAN_LOADED = "print('numpy.f2py.crackfortran' in sys.modules)"


def _run(code: str) -> list[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split()


def test_scipy_alone_executes_numpy_f2py():
    # why the deferral exists: scipy's array-API layer looks up every name of numpy
    assert _run(f"import sys, scipy.ndimage\n{CRACKFORTRAN_LOADED}") == ["True"]


def test_after_import_maskopt_numpy_f2py_runs_on_first_use_only():
    code = (f"import sys, maskopt, scipy.ndimage, numpy\n{CRACKFORTRAN_LOADED}\n"
            f"assert numpy.f2py.get_include()\n{CRACKFORTRAN_LOADED}")
    assert _run(code) == ["False", "True"]
