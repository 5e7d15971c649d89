"""The C fast path is optional: without a compiler the package installs and runs in pure Python."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("dataplane._fastpath", ["dataplane/_fastpath.c"], optional=True)])
