"""Build of the compiled core.

Environment switches (read here, at build time):
  FASTBP_DEBUG=1     bounds and wraparound checks back on, -O0 -g
  FASTBP_NATIVE=1    -march=native (opt-in: the wheel then runs only on
                     CPUs like the build machine's)
  FASTBP_SANITIZE=1  AddressSanitizer + UndefinedBehaviorSanitizer
"""

import glob
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup


def _flag(name):
    return os.environ.get(name, "") not in ("", "0")


debug, native, sanitize = _flag("FASTBP_DEBUG"), _flag("FASTBP_NATIVE"), _flag("FASTBP_SANITIZE")

directives = {
    "language_level": 3,
    "boundscheck": debug,
    "wraparound": debug,
    "initializedcheck": debug,
    "cdivision": True,
    "embedsignature": True,
}
compile_args = ["-O0", "-g"] if debug else ["-O3"]
# sqrt without errno is one instruction, so the Adam loop in _update.h
# vectorises (GCC ignores no-math-errno in a pragma for builtins); values are
# unchanged, and nothing here reads errno.
compile_args.append("-fno-math-errno")
link_args = []
if native:
    compile_args.append("-march=native")
if sanitize:
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
    compile_args += san
    link_args += san

extensions = [
    Extension(
        f"fastbp.{name}",
        [f"src/fastbp/{name}.pyx"],
        include_dirs=[numpy.get_include(), "src/fastbp"],
        depends=sorted(glob.glob("src/fastbp/*.h")),  # rebuilt when a header changes
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    # every compiled module of the package: src/fastbp/*.pyx
    for name in sorted(os.path.basename(p)[:-4] for p in glob.glob("src/fastbp/*.pyx"))
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives))
