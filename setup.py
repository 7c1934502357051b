"""The one thing pyproject.toml cannot say without an experimental table: the C extension.

gateway/_exposure.c, the exposure encoder, is optional: an install without a C compiler still
works, on the Python encoder that makes the same bytes (gateway/exposure_json.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "gateway._exposure",
            sources=["gateway/_exposure.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
