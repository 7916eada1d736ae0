"""The optional C accelerator of the emit path; everything else is in pyproject.toml.

``optional=True``: where the extension cannot be built (no C compiler, an unusual
platform), the install goes on without it and ``pepperpy.event`` runs its pure-Python
``make_event``, which behaves the same (tests/core/test_cevent.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "pepperpy.event._cevent",
            sources=["src/pepperpy/event/_cevent.c"],
            optional=True,
        )
    ]
)
