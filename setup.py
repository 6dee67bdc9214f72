"""Build the compiled core (``fastkong/_core/*.pyx``).

``FASTKONG_NO_EXTENSIONS=1`` skips compilation: the pure-Python twins are used.
``FASTKONG_DEBUG=1`` builds with line tracing and C asserts, and writes annotated HTML.
"""

import os
from pathlib import Path

from setuptools import setup

NO_EXTENSIONS = os.environ.get("FASTKONG_NO_EXTENSIONS", "") not in ("", "0")
DEBUG = os.environ.get("FASTKONG_DEBUG", "") not in ("", "0")


def extensions() -> list:
    if NO_EXTENSIONS:
        return []
    from Cython.Build import cythonize
    from setuptools import Extension

    macros = [("CYTHON_TRACE", "1")] if DEBUG else []
    exts = [
        Extension(
            f"fastkong._core.{pyx.stem}",
            [str(pyx)],
            define_macros=macros,
            extra_compile_args=["-O2"] if not DEBUG else ["-O0", "-g"],
        )
        for pyx in sorted(Path("fastkong/_core").glob("*.pyx"))
    ]
    return cythonize(
        exts,
        language_level=3,
        annotate=DEBUG,
        compiler_directives={
            "boundscheck": DEBUG,
            "wraparound": DEBUG,
            "linetrace": DEBUG,
            "embedsignature": True,
        },
    )


setup(ext_modules=extensions())
