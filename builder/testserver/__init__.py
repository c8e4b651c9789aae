"""The real test server: throwaway systemd-nspawn targets, a real image registry, quadlet.

Used by the tests (`from tests.harness import Target, ...`) and by `bundle demo`; see docs/testing.md.
"""

from .registry import REGISTRY, PushedImage, Registry, RegistryError
from .target import (
    HarnessError,
    Target,
    TargetCommandError,
    golden_image,
    host_problems,
    keep_noted,
    keep_running,
    quadlet_binary,
    stop_kept,
    stop_noted,
)

__all__ = [
    "REGISTRY",
    "HarnessError",
    "PushedImage",
    "Registry",
    "RegistryError",
    "Target",
    "TargetCommandError",
    "golden_image",
    "host_problems",
    "keep_noted",
    "keep_running",
    "quadlet_binary",
    "stop_kept",
    "stop_noted",
]
