"""The one thing pyproject.toml cannot say without an experimental table: the C extensions.

Both are optional: an install without a C compiler (or, for the hash, without OpenSSL's
headers) still works, on the Python code that gives the same results.

- gateway/_exposure.c: the exposure encoder (gateway/exposure_json.py is the reference);
- experiments/_bucket.c: the assignment hash, on libcrypto (experiments/assignment.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "gateway._exposure",
            sources=["gateway/_exposure.c"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
        Extension(
            "experiments._bucket",
            sources=["experiments/_bucket.c"],
            libraries=["crypto"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
    ]
)
