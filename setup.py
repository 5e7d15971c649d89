"""The C fast paths are optional: without a compiler the package installs and runs in pure Python."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("dataplane._fastpath", ["dataplane/_fastpath.c"], depends=["dataplane/_digits.h"],
                             optional=True),
                   Extension("dataplane._flowlogs", ["dataplane/_flowlogs.c"], depends=["dataplane/_digits.h"],
                             optional=True)])
