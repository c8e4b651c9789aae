"""The real test server for the tests: see builder/testserver (shipped with the package, because
`bundle demo` boots the same server) and docs/testing.md."""

from builder.testserver import *  # noqa: F403
from builder.testserver import __all__  # noqa: F401
