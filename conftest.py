# hypothesis is imported here, while only one thread runs: imported later, pytest's assertion
# rewriting of it could run while a test's server thread compiles code, which trips CPython
# 3.11.7's "AST constructor recursion depth mismatch" (gh-106905, fixed in 3.11.8).
import hypothesis  # noqa: F401

pytest_plugins = ["hs_common.testing"]
