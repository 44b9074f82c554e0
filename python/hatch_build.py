"""Puts libnetlab.so into the wheel, making it a platform wheel.

The library is $NETLAB_WHEEL_LIBRARY when set (one already built, e.g. by
cargo cinstall); otherwise this builds it from the workspace around this
folder with `cargo build --profile dist` (release code, no debug info)."""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class LibraryHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        library = os.environ.get("NETLAB_WHEEL_LIBRARY") or self._build()
        if not os.path.isfile(library):
            raise RuntimeError("netlab: no library at %s" % library)
        build_data["pure_python"] = False
        # ctypes, not the CPython ABI: any Python 3 on this platform.
        platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
        build_data["tag"] = "py3-none-" + platform
        build_data["force_include"][library] = "netlab/libnetlab.so"

    def _build(self) -> str:
        workspace = os.path.dirname(os.path.abspath(self.root))
        if not os.path.isfile(os.path.join(workspace, "Cargo.toml")):
            raise RuntimeError(
                "netlab: %s is not in netlab's source tree, so libnetlab cannot be built; "
                "build the wheel from the repository (pip install ./python) or set "
                "NETLAB_WHEEL_LIBRARY to a built libnetlab.so" % self.root)
        self.app.display_info("building libnetlab: cargo build --profile dist -p netlab --lib")
        subprocess.run(["cargo", "build", "--profile", "dist", "-p", "netlab", "--lib"],
                       cwd=workspace, check=True)
        metadata = subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--no-deps"],
            cwd=workspace, check=True, capture_output=True, text=True).stdout
        target = json.loads(metadata)["target_directory"]
        return os.path.join(target, "dist", "libnetlab.so")
