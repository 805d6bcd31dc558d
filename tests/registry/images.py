"""The images the pulling tests use, built on this machine without internet access.

``multilayer`` (busybox) exercises layer application: whiteouts, opaque directories and the
config's env, user, working directory and command. ``multi-arch`` wraps it in an index with a
fake arm64 entry, so platform selection has something to choose between. ``debian-tools`` is
a glibc userland with curl, python3 and CA certificates for the network and TLS tests; it is
assembled from Debian packages (``apt-get download`` + ``dpkg -x``, no maintainer scripts) and
cached per machine because building it takes a while.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from .builder import FileSpec, Image, ImageIndex, ImageSpec, Layer, push

HOST_BUSYBOX = Path("/bin/busybox")
"""From the Debian package ``busybox-static``; the same binary the runtime's base image uses."""

DEFAULT_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"

# Directories as native/images/src/base.rs lays out the default image.
BASE_DIRECTORIES: dict[str, int] = {
    "bin": 0o755,
    "sbin": 0o755,
    "usr/bin": 0o755,
    "usr/sbin": 0o755,
    "etc": 0o755,
    "root": 0o700,
    "home": 0o755,
    "tmp": 0o1777,
    "var/tmp": 0o1777,
    "proc": 0o555,
    "sys": 0o555,
    "dev": 0o755,
    "run": 0o755,
    "mnt": 0o755,
}

APP_UID = 1000
"""The unprivileged ``app`` user the test images define (``multilayer`` runs as it)."""

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    f"app:x:{APP_UID}:{APP_UID}:app:/home/app:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = f"root:x:0:\napp:x:{APP_UID}:\nnogroup:x:65534:\n"
SHADOW = "root:*:19000:0:99999:7:::\napp:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n"

# What the multilayer image's files hold, for the pulling tests to compare against.
KEEP_TEXT = b"kept from layer 1\n"
GONE_TEXT = b"deleted by a whiteout in layer 2\n"
OPQ_OLD_TEXT = b"hidden by the opaque directory of layer 2\n"
OPQ_NEW_TEXT = b"added by layer 2 in the opaque directory\n"
MOTD_TEXT = b"multilayer test image\n"
ARM64_MARKER = b"this is the fake arm64 image; amd64 hosts must never pull it\n"


def etc_files() -> dict[str, bytes | FileSpec]:
    """``/etc`` basics shared by the test images: users root, app (1000) and nobody."""
    return {
        "etc/passwd": PASSWD.encode(),
        "etc/group": GROUP.encode(),
        "etc/shadow": FileSpec(data=SHADOW.encode(), mode=0o600),
        "etc/hosts": b"127.0.0.1\tlocalhost\n::1\tlocalhost\n",
        "etc/profile": b"export PS1='\\u@\\h:\\w\\$ '\n",
    }


def busybox_applets(busybox: Path = HOST_BUSYBOX) -> list[str]:
    """Where each applet belongs (``bin/sh``, ``usr/bin/env``...), as busybox itself reports."""
    output = subprocess.run(
        [str(busybox), "--list-full"], check=True, capture_output=True, text=True
    ).stdout
    return sorted({line.strip().lstrip("/") for line in output.splitlines() if line.strip()})


def busybox_base_files(busybox: Path = HOST_BUSYBOX) -> dict[str, bytes | FileSpec]:
    """The runtime's default image layout: busybox, its applet links, /etc, empty dirs."""
    if not busybox.exists():
        raise RuntimeError(f"{busybox} is missing: install the Debian package busybox-static")
    files: dict[str, bytes | FileSpec] = {
        name: FileSpec.dir(mode) for name, mode in BASE_DIRECTORIES.items()
    }
    files["home/app"] = FileSpec.dir(0o755, uid=APP_UID, gid=APP_UID)
    files.update(etc_files())
    files["etc/os-release"] = (
        b'NAME="msb-test"\nID=msb-test\nPRETTY_NAME="microsandbox-tui test image (busybox)"\n'
    )
    files["bin/busybox"] = FileSpec(data=busybox.read_bytes(), mode=0o755)
    for applet in busybox_applets(busybox):
        if applet != "bin/busybox":
            files[applet] = FileSpec.symlink("/bin/busybox")
    return files


def busybox_image(
    files: Mapping[str, bytes | FileSpec] | None = None,
    *,
    env: Sequence[str] = (DEFAULT_PATH,),
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = ("/bin/sh",),
    working_dir: str | None = None,
    user: str | None = None,
) -> Image:
    """The busybox base layer plus, if ``files`` are given, a second layer of them.

    For tests that need an image of their own (a unique layer to corrupt, a particular
    entrypoint); the base layer is shared with ``multilayer``'s only if their files match.
    """
    layers = [Layer.from_files(busybox_base_files())]
    if files:
        layers.append(Layer.from_files(files))
    return ImageSpec(
        layers=layers,
        env=env,
        entrypoint=entrypoint,
        cmd=cmd,
        working_dir=working_dir,
        user=user,
    ).build()


def multilayer_image() -> Image:
    """Two busybox layers whose union tests whiteouts, opaque dirs and config handling.

    After pulling: ``/data/keep.txt`` exists, ``/data/gone.txt`` does not, ``/opq`` holds only
    ``new.txt``, ``/etc/motd`` exists; the process runs as ``app`` in ``/srv/app`` with
    ``GREETING=hello`` and by default prints ``from-cmd``.
    """
    base = busybox_base_files()
    base.update(
        {
            "data/keep.txt": KEEP_TEXT,
            "data/gone.txt": GONE_TEXT,
            "opq/old.txt": OPQ_OLD_TEXT,
        }
    )
    top = Layer.from_files(
        {
            "opq/new.txt": OPQ_NEW_TEXT,
            "etc/motd": MOTD_TEXT,
            "srv/app": FileSpec.dir(0o755, uid=APP_UID, gid=APP_UID),
        },
        whiteouts=["data/gone.txt"],
        opaque_dirs=["opq"],
    )
    return ImageSpec(
        layers=[Layer.from_files(base), top],
        env=["GREETING=hello", DEFAULT_PATH],
        working_dir="/srv/app",
        user="app",
        cmd=["/bin/sh", "-c", "echo from-cmd"],
    ).build()


def arm64_stub_image() -> Image:
    """A tiny manifest claiming linux/arm64; it cannot run, it only has to be skipped."""
    layer = Layer.from_files({"arch.txt": ARM64_MARKER})
    return ImageSpec(
        layers=[layer],
        env=[DEFAULT_PATH],
        cmd=["/bin/sh"],
        architecture="arm64",
    ).build()


def multi_arch_index() -> ImageIndex:
    """An index whose linux/amd64 entry is :func:`multilayer_image`, plus a fake arm64 one."""
    return ImageIndex.of([multilayer_image(), arm64_stub_image()])


# --- debian-tools ------------------------------------------------------------------------

DEBIAN_TOOLS_ROOTS = (
    "curl",
    "python3",
    "python3-minimal",
    "ca-certificates",
    "libc6",
    "dash",
    "bash",
    "coreutils",
)
"""Packages whose dependency closure makes up debian-tools (Recommends are left out)."""

DEBIAN_TOOLS_FORMAT = "1"
"""Bumped when the way the rootfs is assembled changes, so cached builds are redone."""


def images_cache_dir() -> Path:
    """``~/.cache/microsandbox-tui/test-images``, shared by all worktrees of this machine."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "microsandbox-tui" / "test-images"


def _run(args: list[str], cwd: Path | None = None) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def resolve_debian_packages(roots: tuple[str, ...] = DEBIAN_TOOLS_ROOTS) -> dict[str, str]:
    """The Depends/PreDepends closure of ``roots`` as ``{package: candidate version}``.

    ``apt-cache depends --recurse`` lists virtual packages as ``<name>`` with their
    providers below; the providers are listed again as packages of their own, so skipping
    the ``<...>`` lines loses nothing. Alternatives (``|``) are all listed, which may pull in
    a package more than needed; that only costs space.
    """
    output = _run(
        [
            "apt-cache",
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            *roots,
        ]
    )
    names = sorted(
        {line.strip() for line in output.splitlines() if line and not line[0].isspace()} - {""}
    )
    names = [name for name in names if not name.startswith("<")]
    policy = _run(["apt-cache", "policy", *names])
    versions: dict[str, str] = {}
    current: str | None = None
    for line in policy.splitlines():
        header = re.match(r"^(\S+):$", line)
        if header:
            current = header.group(1)
            continue
        candidate = re.match(r"^\s+Candidate:\s+(\S+)$", line)
        if candidate and current is not None and candidate.group(1) != "(none)":
            versions[current] = candidate.group(1)
    missing = [name for name in names if name not in versions]
    if missing:
        raise RuntimeError(f"no installable candidate for {missing}; run apt-get update")
    return versions


def _write_ca_bundle(rootfs: Path) -> None:
    """What ``update-ca-certificates`` would write: every shipped CA, concatenated.

    Maintainer scripts do not run under ``dpkg -x``, so the bundle curl and OpenSSL read
    has to be produced here.
    """
    shipped = rootfs / "usr/share/ca-certificates"
    certificates = sorted(shipped.rglob("*.crt"), key=lambda path: path.as_posix())
    if not certificates:
        raise RuntimeError(f"no CA certificates under {shipped}")
    bundle = rootfs / "etc/ssl/certs/ca-certificates.crt"
    bundle.parent.mkdir(parents=True, exist_ok=True)
    with bundle.open("wb") as out:
        for certificate in certificates:
            data = certificate.read_bytes()
            out.write(data if data.endswith(b"\n") else data + b"\n")


def _stage_debian_rootfs(packages: dict[str, str], rootfs: Path, downloads: Path) -> None:
    """Unpack the exact package versions into ``rootfs`` and add what scripts would create."""
    _run(
        [
            "apt-get",
            "download",
            *(f"{name}={version}" for name, version in sorted(packages.items())),
        ],
        cwd=downloads,
    )
    debs = sorted(downloads.glob("*.deb"))
    if len(debs) != len(packages):
        raise RuntimeError(f"downloaded {len(debs)} packages, expected {len(packages)}")
    rootfs.mkdir()
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(rootfs)])
    for name, mode in BASE_DIRECTORIES.items():
        path = rootfs / name
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)
    (rootfs / "home/app").mkdir(exist_ok=True)
    for name, content in etc_files().items():
        spec = content if isinstance(content, FileSpec) else FileSpec(data=content)
        (rootfs / name).write_bytes(spec.data)
        (rootfs / name).chmod(0o644 if spec.mode is None else spec.mode)
    (rootfs / "etc/os-release").unlink(missing_ok=True)
    (rootfs / "etc/os-release").symlink_to("../usr/lib/os-release")
    # dash's postinst makes /bin/sh point at it; dpkg -x does not run it.
    sh = rootfs / "bin/sh"
    if not sh.exists() and not sh.is_symlink():
        sh.symlink_to("dash")
    _write_ca_bundle(rootfs)
    # Normalise modes the host umask may have touched and drop docs to keep the layer small.
    for docs in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/lintian"):
        shutil.rmtree(rootfs / docs, ignore_errors=True)


def debian_tools_rootfs(cache_dir: Path | None = None) -> tuple[Path, Layer]:
    """The staged debian-tools rootfs and its layer, built once per machine.

    The cache key hashes the resolved package versions, so a Debian point release (new
    versions in the archive) builds a fresh tree instead of reusing a stale one.
    """
    packages = resolve_debian_packages()
    key_source = (
        DEBIAN_TOOLS_FORMAT
        + "\n"
        + "".join(f"{name}={version}\n" for name, version in sorted(packages.items()))
    )
    key = hashlib.sha256(key_source.encode()).hexdigest()[:16]
    cache = (cache_dir or images_cache_dir()) / f"debian-tools-{key}"
    layer_tar = cache / "layer.tar"
    if not layer_tar.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="debian-tools-", dir=cache.parent))
        try:
            downloads = staging / "debs"
            downloads.mkdir()
            _stage_debian_rootfs(packages, staging / "rootfs", downloads)
            shutil.rmtree(downloads)
            layer = Layer.from_directory(
                staging / "rootfs", owner=(0, 0), owners={"home/app": (APP_UID, APP_UID)}
            )
            (staging / "layer.tar").write_bytes(layer.tar)
            (staging / "layer.tar.gz").write_bytes(layer.blob)
            (staging / "packages.txt").write_text(key_source)
            try:
                staging.rename(cache)
            except OSError:
                # Another worktree's test run finished the same build first; theirs is as good.
                if not layer_tar.exists():
                    raise
                shutil.rmtree(staging, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return cache / "rootfs", Layer(
        tar=layer_tar.read_bytes(), blob=(cache / "layer.tar.gz").read_bytes()
    )


def debian_tools_image(cache_dir: Path | None = None) -> Image:
    """One-layer Debian image with curl, python3 and CA certificates (see module docs)."""
    _, layer = debian_tools_rootfs(cache_dir)
    return ImageSpec(
        layers=[layer],
        env=[DEFAULT_PATH, "LANG=C.UTF-8"],
        cmd=["/bin/sh"],
    ).build()


# --- publishing --------------------------------------------------------------------------


class _Server(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def host(self) -> str: ...

    @property
    def credentials(self) -> tuple[str, str] | None: ...


def publish_all(server: _Server, *, debian_tools: bool = True) -> dict[str, str]:
    """Push the test images; ``{"multilayer": "127.0.0.1:PORT/multilayer:1", ...}``.

    ``debian_tools=False`` skips the slow image, for suites that do not need it.
    """
    images: dict[str, Image | ImageIndex] = {
        "multilayer": multilayer_image(),
        "multi-arch": multi_arch_index(),
    }
    if debian_tools:
        images["debian-tools"] = debian_tools_image()
    refs: dict[str, str] = {}
    for name, image in images.items():
        push(server.url, name, "1", image, auth=server.credentials)
        refs[name] = f"{server.host}/{name}:1"
    return refs
