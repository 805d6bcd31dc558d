"""Build OCI images without a container engine, and push them over the Distribution API.

No Docker engine runs on the test machines, and the images must be byte-for-byte reproducible
so that a test can assert digests: layers are tars with fixed mtimes, owner names left empty
and entries in sorted order, gzipped with a zero timestamp; JSON documents are serialised with
sorted keys and no whitespace.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from .server import basic_auth_header

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

FIXED_MTIME = 1_700_000_000
"""2023-11-14T22:13:20Z: every entry of every layer gets this mtime, for reproducible digests."""
FIXED_CREATED = "2023-11-14T22:13:20Z"

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``, the form digests take everywhere in OCI."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """Stable serialisation, so a document's digest does not depend on dict order."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class FileSpec:
    """One entry of a layer when plain bytes (a 0644 root-owned file) are not enough.

    Exactly one kind applies: a directory (``directory=True``), a symlink (``symlink_to``), a
    hard link to another path of the same layer (``hardlink_to``), or a regular file with
    ``data``. ``mode`` defaults to 0644 for files, 0755 for directories, 0777 for symlinks.
    """

    data: bytes = b""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    symlink_to: str | None = None
    hardlink_to: str | None = None
    directory: bool = False

    @classmethod
    def dir(cls, mode: int = 0o755, uid: int = 0, gid: int = 0) -> FileSpec:
        """A directory entry, for modes or owners other than the implicit parents' 0755 root."""
        return cls(mode=mode, uid=uid, gid=gid, directory=True)

    @classmethod
    def symlink(cls, target: str, uid: int = 0, gid: int = 0) -> FileSpec:
        """A symbolic link to ``target`` (stored verbatim, absolute or relative)."""
        return cls(symlink_to=target, uid=uid, gid=gid)


def _layer_path(path: str) -> str:
    """Tar member name for an image path: relative, normalised, no trailing slash."""
    normalised = os.path.normpath("/" + path.strip("/")).lstrip("/")
    if not normalised or normalised == ".":
        raise ValueError(f"not a path inside the image: {path!r}")
    return normalised


def _tar_info(name: str, spec: FileSpec) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = FIXED_MTIME
    info.uid = spec.uid
    info.gid = spec.gid
    info.uname = ""
    info.gname = ""
    if spec.directory:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755 if spec.mode is None else spec.mode
    elif spec.symlink_to is not None:
        info.type = tarfile.SYMTYPE
        info.linkname = spec.symlink_to
        info.mode = 0o777 if spec.mode is None else spec.mode
    elif spec.hardlink_to is not None:
        info.type = tarfile.LNKTYPE
        info.linkname = _layer_path(spec.hardlink_to)
        info.mode = 0o644 if spec.mode is None else spec.mode
    else:
        info.type = tarfile.REGTYPE
        info.size = len(spec.data)
        info.mode = 0o644 if spec.mode is None else spec.mode
    return info


def _tar_bytes(entries: Mapping[str, FileSpec]) -> bytes:
    """A PAX tar of ``entries`` in sorted order, parents implied as 0755 root directories.

    Sorting by name puts every directory before its contents (a parent is a prefix of its
    children) and makes the archive independent of insertion order.
    """
    complete = dict(entries)
    for name in list(entries):
        parent = os.path.dirname(name)
        while parent and parent not in complete:
            complete[parent] = FileSpec.dir()
            parent = os.path.dirname(parent)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(complete):
            spec = complete[name]
            info = _tar_info(name, spec)
            data = io.BytesIO(spec.data) if info.type == tarfile.REGTYPE else None
            tar.addfile(info, data)
    return buffer.getvalue()


@dataclass(frozen=True)
class Layer:
    """One image layer: the uncompressed tar (whose digest is the diff_id) and its gzip blob."""

    tar: bytes
    blob: bytes
    media_type: str = OCI_LAYER_GZIP

    @classmethod
    def from_tar(cls, tar: bytes) -> Layer:
        """Gzip an uncompressed layer tar reproducibly (no name, zero mtime in the header)."""
        return cls(tar=tar, blob=gzip.compress(tar, compresslevel=6, mtime=0))

    @classmethod
    def from_files(
        cls,
        files: Mapping[str, bytes | FileSpec],
        whiteouts: Iterable[str] = (),
        opaque_dirs: Iterable[str] = (),
    ) -> Layer:
        """A layer from image paths to contents.

        ``whiteouts`` are paths that this layer deletes from the layers below (stored as an
        empty ``DIR/.wh.NAME``); ``opaque_dirs`` are directories whose lower contents this
        layer hides (stored as ``DIR/.wh..wh..opq``), as the OCI image spec describes.
        """
        entries: dict[str, FileSpec] = {}
        for path, content in files.items():
            spec = content if isinstance(content, FileSpec) else FileSpec(data=content)
            entries[_layer_path(path)] = spec
        for path in whiteouts:
            name = _layer_path(path)
            parent, base = os.path.split(name)
            entries[os.path.join(parent, WHITEOUT_PREFIX + base)] = FileSpec()
        for path in opaque_dirs:
            name = _layer_path(path)
            entries.setdefault(name, FileSpec.dir())
            entries[os.path.join(name, OPAQUE_MARKER)] = FileSpec()
        return cls.from_tar(_tar_bytes(entries))

    @classmethod
    def from_directory(
        cls,
        root: Path,
        *,
        owner: tuple[int, int] | None = None,
        owners: Mapping[str, tuple[int, int]] | None = None,
    ) -> Layer:
        """A layer holding everything under ``root`` with its modes, owners and hard links.

        ``owner`` (uid, gid) replaces the on-disk owner of every entry and ``owners`` that of
        single paths, so a tree staged by an unprivileged user still gives a root-owned
        layer with the same digest. Device nodes, sockets and FIFOs are skipped: a staged
        rootfs has none that matter, and the sandbox provides ``/dev`` itself.
        """
        overrides = {_layer_path(path): ids for path, ids in (owners or {}).items()}
        members: list[str] = []
        for directory, dirnames, filenames in os.walk(root):
            base = Path(directory).relative_to(root)
            members += [(base / name).as_posix() for name in [*dirnames, *filenames]]
        # Visit in archive order, so that a hard link always names an entry written before it.
        members.sort()
        entries: dict[str, FileSpec] = {}
        first_path_of_inode: dict[tuple[int, int], str] = {}
        for member in members:
            path = root / member
            info = path.lstat()
            mode = stat.S_IMODE(info.st_mode)
            uid, gid = overrides.get(member) or owner or (info.st_uid, info.st_gid)
            ids = {"uid": uid, "gid": gid}
            if stat.S_ISLNK(info.st_mode):
                entries[member] = FileSpec(symlink_to=os.readlink(path), **ids)
            elif stat.S_ISDIR(info.st_mode):
                entries[member] = FileSpec(mode=mode, directory=True, **ids)
            elif stat.S_ISREG(info.st_mode):
                key = (info.st_dev, info.st_ino)
                if info.st_nlink > 1 and key in first_path_of_inode:
                    entries[member] = FileSpec(
                        hardlink_to=first_path_of_inode[key], mode=mode, **ids
                    )
                else:
                    first_path_of_inode[key] = member
                    entries[member] = FileSpec(data=path.read_bytes(), mode=mode, **ids)
        return cls.from_tar(_tar_bytes(entries))

    @cached_property
    def digest(self) -> str:
        """Digest of the compressed blob, as the manifest and the registry name it."""
        return sha256_digest(self.blob)

    @cached_property
    def diff_id(self) -> str:
        """Digest of the uncompressed tar, as the image config's ``rootfs.diff_ids`` name it."""
        return sha256_digest(self.tar)

    def descriptor(self) -> dict[str, Any]:
        """The manifest's descriptor of this layer."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.blob)}

    def members(self) -> list[tarfile.TarInfo]:
        """The tar's entries, for tests that inspect what a layer holds."""
        with tarfile.open(fileobj=io.BytesIO(self.tar), mode="r:") as tar:
            return tar.getmembers()


@dataclass(frozen=True)
class Blob:
    """A blob of an image that is not a layer (the config), with its media type."""

    data: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}


@dataclass(frozen=True)
class Image:
    """A built single-platform image: config, layers and the manifest that ties them."""

    config: Blob
    layers: tuple[Layer, ...]
    manifest: bytes
    architecture: str
    os: str

    @property
    def digest(self) -> str:
        """The manifest digest, which is what a registry answers in ``Docker-Content-Digest``."""
        return sha256_digest(self.manifest)

    @property
    def media_type(self) -> str:
        return OCI_MANIFEST

    def blobs(self) -> list[Layer | Blob]:
        return [self.config, *self.layers]

    def descriptor(self, platform: bool = True) -> dict[str, Any]:
        """This manifest's descriptor, with its platform as an index lists it."""
        document: dict[str, Any] = {
            "mediaType": OCI_MANIFEST,
            "digest": self.digest,
            "size": len(self.manifest),
        }
        if platform:
            document["platform"] = {"architecture": self.architecture, "os": self.os}
        return document


@dataclass(frozen=True)
class ImageSpec:
    """What an image holds and how it runs; :meth:`build` turns it into OCI documents.

    ``env`` entries are ``NAME=value`` strings as in the OCI config; ``user`` is a name or
    ``uid[:gid]`` resolved in the image's own ``/etc/passwd``.
    """

    layers: Sequence[Layer]
    env: Sequence[str] = ()
    entrypoint: Sequence[str] | None = None
    cmd: Sequence[str] | None = None
    working_dir: str | None = None
    user: str | None = None
    architecture: str = "amd64"
    os: str = "linux"
    labels: Mapping[str, str] = field(default_factory=dict)

    def config_document(self) -> dict[str, Any]:
        """The OCI image config (``application/vnd.oci.image.config.v1+json``)."""
        runtime: dict[str, Any] = {}
        if self.env:
            runtime["Env"] = list(self.env)
        if self.entrypoint is not None:
            runtime["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            runtime["Cmd"] = list(self.cmd)
        if self.working_dir is not None:
            runtime["WorkingDir"] = self.working_dir
        if self.user is not None:
            runtime["User"] = self.user
        if self.labels:
            runtime["Labels"] = dict(self.labels)
        return {
            "architecture": self.architecture,
            "os": self.os,
            "created": FIXED_CREATED,
            "config": runtime,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in self.layers]},
            "history": [
                {"created": FIXED_CREATED, "created_by": f"msb test harness layer {index}"}
                for index in range(len(self.layers))
            ],
        }

    def build(self) -> Image:
        """Serialise config and manifest; the result is reproducible for equal specs."""
        config = Blob(canonical_json(self.config_document()), OCI_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": [layer.descriptor() for layer in self.layers],
        }
        return Image(
            config=config,
            layers=tuple(self.layers),
            manifest=canonical_json(manifest),
            architecture=self.architecture,
            os=self.os,
        )


@dataclass(frozen=True)
class ImageIndex:
    """A multi-platform OCI image index over single-platform images."""

    images: tuple[Image, ...]
    index: bytes

    @classmethod
    def of(cls, images: Sequence[Image]) -> ImageIndex:
        document = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [image.descriptor() for image in images],
        }
        return cls(images=tuple(images), index=canonical_json(document))

    @property
    def digest(self) -> str:
        return sha256_digest(self.index)

    @property
    def manifest(self) -> bytes:
        return self.index

    @property
    def media_type(self) -> str:
        return OCI_INDEX


class _RegistryLike(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def credentials(self) -> tuple[str, str] | None: ...

    def blob_data_path(self, digest: str) -> Path: ...

    @property
    def storage_dir(self) -> Path: ...


@dataclass(frozen=True)
class Response:
    """What :func:`request` got back; non-2xx answers are returned, not raised."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


def request(
    url: str,
    method: str = "GET",
    *,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    timeout: float = 60.0,
) -> Response:
    """One HTTP request with basic auth sent up front (the registry's htpasswd mode wants it).

    Only for 127.0.0.1: the harness never talks to any other host.
    """
    host = urllib.parse.urlsplit(url).hostname
    if host != "127.0.0.1":
        raise ValueError(f"the test registry harness only talks to 127.0.0.1, not {host!r}")
    all_headers = dict(headers or {})
    if auth is not None:
        all_headers["Authorization"] = basic_auth_header(auth)
    req = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return Response(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, dict(error.headers.items()), error.read())


def _check(response: Response, expected: Iterable[int], what: str) -> Response:
    if response.status not in set(expected):
        raise RuntimeError(
            f"{what}: HTTP {response.status}: {response.body[:500].decode(errors='replace')}"
        )
    return response


def push_blob(
    registry_url: str,
    repository: str,
    data: bytes,
    auth: tuple[str, str] | None = None,
) -> str:
    """Upload one blob monolithically unless the repository already has it; its digest."""
    digest = sha256_digest(data)
    base = f"{registry_url}/v2/{repository}"
    if request(f"{base}/blobs/{digest}", "HEAD", auth=auth).status == 200:
        return digest
    started = _check(
        request(f"{base}/blobs/uploads/", "POST", data=b"", auth=auth),
        [202],
        f"starting the upload of {digest}",
    )
    location = started.header("Location")
    if not location:
        raise RuntimeError("the registry did not say where to upload (no Location header)")
    location = urllib.parse.urljoin(f"{registry_url}/", location)
    separator = "&" if "?" in location else "?"
    _check(
        request(
            f"{location}{separator}digest={urllib.parse.quote(digest)}",
            "PUT",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
            auth=auth,
        ),
        [201],
        f"uploading {digest}",
    )
    return digest


def push_manifest(
    registry_url: str,
    repository: str,
    reference: str,
    manifest: bytes,
    media_type: str,
    auth: tuple[str, str] | None = None,
) -> str:
    """PUT a manifest or index under a tag or digest; the digest the registry reports."""
    response = _check(
        request(
            f"{registry_url}/v2/{repository}/manifests/{reference}",
            "PUT",
            data=manifest,
            headers={"Content-Type": media_type},
            auth=auth,
        ),
        [201],
        f"pushing manifest {repository}:{reference}",
    )
    digest = response.header("Docker-Content-Digest") or sha256_digest(manifest)
    if digest != sha256_digest(manifest):
        raise RuntimeError(f"the registry stored {digest}, expected {sha256_digest(manifest)}")
    return digest


def push(
    registry_url: str,
    repository: str,
    tag: str,
    image: Image | ImageIndex,
    auth: tuple[str, str] | None = None,
) -> str:
    """Push an image (or an index and all its images) and tag it; the top manifest's digest.

    The images of an index are pushed by digest first, because the registry refuses an index
    that names manifests it does not have.
    """
    images = image.images if isinstance(image, ImageIndex) else (image,)
    for single in images:
        for blob in single.blobs():
            data = blob.blob if isinstance(blob, Layer) else blob.data
            push_blob(registry_url, repository, data, auth)
        if isinstance(image, ImageIndex):
            push_manifest(
                registry_url, repository, single.digest, single.manifest, OCI_MANIFEST, auth
            )
    return push_manifest(registry_url, repository, tag, image.manifest, image.media_type, auth)


def corrupt_blob(server: _RegistryLike, repository: str, digest: str) -> None:
    """Flip the bytes of a stored blob in place, so a pull fails digest verification.

    Storage is content-addressed across repositories: corrupting a blob corrupts it for every
    repository of that registry that shares it. Corrupt a layer unique to the test (e.g. a
    :func:`~registry.images.busybox_image` with a file of its own) or use a registry of its own.

    The size is kept: the registry answers with the length it recorded at upload, and a
    shorter file would make it fail the download itself instead of serving wrong bytes.
    """
    hexdigest = digest.partition(":")[2]
    link = (
        server.storage_dir
        / "docker/registry/v2/repositories"
        / repository
        / "_layers/sha256"
        / hexdigest
        / "link"
    )
    if not link.exists():
        raise FileNotFoundError(f"{repository} has no blob {digest} ({link} is missing)")
    path = server.blob_data_path(digest)
    data = bytearray(path.read_bytes())
    if not data:
        raise ValueError(f"blob {digest} is empty; nothing to corrupt")
    for index in range(0, len(data), max(1, len(data) // 64)):
        data[index] ^= 0xFF
    path.write_bytes(bytes(data))
