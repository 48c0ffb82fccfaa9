"""Native modules: every ``cffi_build/*_build.py`` exposes an ``ffibuilder``.

Metadata lives in pyproject.toml; this file only exists because cffi's
setuptools hook (``cffi_modules``) is a setup() keyword.
"""
from pathlib import Path

from setuptools import setup

setup(cffi_modules=[f"{p.as_posix()}:ffibuilder" for p in sorted(Path("cffi_build").glob("*_build.py"))])
