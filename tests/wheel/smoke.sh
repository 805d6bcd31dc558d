#!/usr/bin/env bash
# The release wheel as a user gets it: built from this clone, installed with pip into a fresh
# virtualenv outside the clone, and used from a directory outside it, so that nothing can come
# from the checkout by accident (the guest agent, the supervisor, the themes).
#
#   tests/wheel/smoke.sh          (./dev test runs it before pytest)
#
# MATURIN names the maturin to build with (default: the one on PATH). Sandboxes live in a
# throw-away MSB_HOME; the runtime cache (kernel, initramfs, base image) is the usual one.
# Everything is removed at the end, also on failure, and every step has a time limit.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MATURIN=${MATURIN:-maturin}
#: The wheel is a release build of the runtime crate: minutes when its dependencies are cached.
BUILD_TIMEOUT_S=1800
STEP_TIMEOUT_S=300
SANDBOX=wheel-smoke

log() { printf '\033[1m--> wheel: %s\033[0m\n' "$*" >&2; }

SCRATCH=$(mktemp -d /tmp/msb-wheel-smoke.XXXXXX)
VENV=$SCRATCH/venv
export MSB_HOME=$SCRATCH/home
export MSB_TUI_CONFIG_DIR=$SCRATCH/config
unset MSB_LOG

cleanup() {
    local status=$?
    if [ -x "$VENV/bin/msb" ]; then
        timeout 60 "$VENV/bin/msb" rm --force "$SANDBOX" >/dev/null 2>&1 || true
    fi
    rm -rf "$SCRATCH"
    [ $status -eq 0 ] || log "FAILED (exit $status)"
    exit $status
}
trap cleanup EXIT

# Runs a step from outside the clone, bounded in time.
step() {
    (cd "$SCRATCH" && timeout "$STEP_TIMEOUT_S" "$@")
}

log "building the wheel"
(cd "$REPO" && timeout "$BUILD_TIMEOUT_S" "$MATURIN" build --quiet --release --locked \
    --out "$SCRATCH/dist" >&2)
WHEEL=$(ls "$SCRATCH"/dist/microsandbox_tui-*.whl)

log "checking what the wheel carries"
python3 - "$WHEEL" <<'PY'
import sys
import zipfile

names = set(zipfile.ZipFile(sys.argv[1]).namelist())
wanted = {
    "microsandbox_tui/_bin/msb-agent",
    "microsandbox_tui/_bin/msb-supervisor",
    "microsandbox_tui/tui/themes/msb-ember.toml",
    "microsandbox_tui/tui/themes/msb-midnight.toml",
    "microsandbox_tui/tui/themes/msb-paper.toml",
    "microsandbox_tui/tui/app.tcss",
    "microsandbox_tui/py.typed",
}
missing = sorted(wanted - names)
if missing:
    sys.exit(f"the wheel lacks {missing}")
native = [name for name in names if name.startswith("microsandbox_tui/_native")]
if not any(name.endswith(".so") for name in native):
    sys.exit("the wheel lacks the native module")
if not any(name.endswith(".pyi") for name in native):
    sys.exit("the wheel lacks the native module's type stubs")
PY

log "installing it into a fresh virtualenv"
python3 -m venv "$VENV"
step "$VENV/bin/pip" install --quiet --disable-pip-version-check "$WHEEL"

log "msb --version, doctor, install"
version=$(step "$VENV/bin/msb" --version)
expected=$(step "$VENV/bin/python" -c 'import microsandbox_tui; print(microsandbox_tui.__version__)')
[ "$version" = "msb $expected" ] || { echo "msb --version said '$version'" >&2; exit 1; }
step "$VENV/bin/msb" doctor
step "$VENV/bin/msb" install

log "the release module has no benchmark functions, and its binaries are executable"
step "$VENV/bin/python" - <<'PY'
import os
from importlib import resources

import microsandbox_tui._native as native

assert not hasattr(native, "bench"), "a release wheel is built without the bench feature"
binaries = resources.files("microsandbox_tui") / "_bin"
for name in ("msb-agent", "msb-supervisor"):
    assert os.access(str(binaries / name), os.X_OK), f"{name} is not executable"
PY

log "a sandbox from the SDK"
step "$VENV/bin/python" - "$SANDBOX" <<'PY'
import asyncio
import sys

from microsandbox_tui import Sandbox


async def main(name: str) -> None:
    async with await Sandbox.create(name, replace=True) as sandbox:
        output = await sandbox.shell("echo hello from $(uname -s)")
        assert output.stdout_text == "hello from Linux\n", output
    assert name not in [info.name for info in await Sandbox.list()], "not removed"


asyncio.run(main(sys.argv[1]))
PY

log "msb-tui, headless, with a bundled theme"
mkdir -p "$MSB_TUI_CONFIG_DIR"
printf 'theme = "msb-paper"\n' > "$MSB_TUI_CONFIG_DIR/settings.toml"
step "$VENV/bin/msb-tui" --help >/dev/null
step "$VENV/bin/python" - <<'PY'
import asyncio

from microsandbox_tui.tui.app import MsbApp


async def main() -> None:
    app = MsbApp()
    async with app.run_test(size=(120, 30)) as pilot:
        for _ in range(100):
            if app.snapshot is not None:
                break
            await pilot.pause(0.05)
        assert app.snapshot is not None, "no listing"
        assert app.theme == "msb-paper", app.theme
        assert not app.config_problems, app.config_problems
        assert not app.errors, app.errors


asyncio.run(main())
PY

log "passed"
