"""Tests of the registry harness itself (no VM): if these fail, pull tests would mislead."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from .builder import (
    OCI_INDEX,
    OCI_MANIFEST,
    FileSpec,
    Layer,
    corrupt_blob,
    push,
    request,
    sha256_digest,
)
from .images import (
    APP_UID,
    KEEP_TEXT,
    arm64_stub_image,
    busybox_image,
    debian_tools_rootfs,
    multi_arch_index,
    multilayer_image,
)
from .server import RegistryServer

ACCEPT_ALL = ", ".join([OCI_INDEX, OCI_MANIFEST])


def _repository(ref: str) -> str:
    return ref.split("/", 1)[1].rsplit(":", 1)[0]


def test_registry_answers_v2(registry: RegistryServer) -> None:
    response = request(f"{registry.url}/v2/")
    assert response.status == 200
    assert response.header("Docker-Distribution-API-Version") == "registry/2.0"


def test_refs_name_the_loopback_registry(registry: RegistryServer) -> None:
    assert registry.host.startswith("127.0.0.1:")
    assert registry.refs["multilayer"] == f"{registry.host}/multilayer:1"
    assert registry.refs["multi-arch"] == f"{registry.host}/multi-arch:1"


def test_manifest_and_blobs_are_served_with_matching_digests(registry: RegistryServer) -> None:
    image = multilayer_image()
    response = request(
        f"{registry.url}/v2/multilayer/manifests/1", headers={"Accept": OCI_MANIFEST}
    )
    assert response.status == 200
    assert response.header("Content-Type") == OCI_MANIFEST
    assert response.header("Docker-Content-Digest") == image.digest
    assert sha256_digest(response.body) == image.digest
    manifest = json.loads(response.body)
    assert manifest["mediaType"] == OCI_MANIFEST
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        "application/vnd.oci.image.layer.v1.tar+gzip"
    ] * 2
    descriptors = [manifest["config"], *manifest["layers"]]
    for descriptor in descriptors:
        blob = request(f"{registry.url}/v2/multilayer/blobs/{descriptor['digest']}")
        assert blob.status == 200
        assert sha256_digest(blob.body) == descriptor["digest"]
        assert len(blob.body) == descriptor["size"]
    config = json.loads(
        request(f"{registry.url}/v2/multilayer/blobs/{descriptors[0]['digest']}").body
    )
    assert config["architecture"] == "amd64"
    assert config["os"] == "linux"
    assert config["config"]["User"] == "app"
    assert config["config"]["WorkingDir"] == "/srv/app"
    assert "GREETING=hello" in config["config"]["Env"]
    assert config["config"]["Cmd"] == ["/bin/sh", "-c", "echo from-cmd"]
    # diff_ids are the digests of the *uncompressed* layers.
    for descriptor, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True):
        blob = request(f"{registry.url}/v2/multilayer/blobs/{descriptor['digest']}").body
        assert sha256_digest(gzip.decompress(blob)) == diff_id


def test_index_lists_amd64_and_arm64(registry: RegistryServer) -> None:
    response = request(f"{registry.url}/v2/multi-arch/manifests/1", headers={"Accept": ACCEPT_ALL})
    assert response.status == 200
    assert response.header("Content-Type") == OCI_INDEX
    assert response.header("Docker-Content-Digest") == multi_arch_index().digest
    index = json.loads(response.body)
    platforms = {
        (entry["platform"]["os"], entry["platform"]["architecture"]): entry["digest"]
        for entry in index["manifests"]
    }
    assert platforms == {
        ("linux", "amd64"): multilayer_image().digest,
        ("linux", "arm64"): arm64_stub_image().digest,
    }
    for digest in platforms.values():
        child = request(
            f"{registry.url}/v2/multi-arch/manifests/{digest}", headers={"Accept": ACCEPT_ALL}
        )
        assert child.status == 200
        assert sha256_digest(child.body) == digest


def test_auth_registry_requires_credentials(auth_registry: RegistryServer) -> None:
    assert auth_registry.credentials is not None
    anonymous = request(f"{auth_registry.url}/v2/")
    assert anonymous.status == 401
    challenge = anonymous.header("WWW-Authenticate") or ""
    assert challenge.lower().startswith("basic")
    assert request(f"{auth_registry.url}/v2/", auth=auth_registry.credentials).status == 200
    wrong = (auth_registry.credentials[0], "wrong-password")
    assert request(f"{auth_registry.url}/v2/", auth=wrong).status == 401
    manifest = f"{auth_registry.url}/v2/multilayer/manifests/1"
    assert request(manifest, headers={"Accept": OCI_MANIFEST}).status == 401
    served = request(manifest, headers={"Accept": OCI_MANIFEST}, auth=auth_registry.credentials)
    assert served.status == 200
    assert sha256_digest(served.body) == multilayer_image().digest


def test_corrupt_blob_changes_the_served_bytes() -> None:
    # A registry of its own: corrupting the shared one would break other tests.
    image = multilayer_image()
    layer = image.layers[1]
    with RegistryServer() as server:
        push(server.url, "victim", "1", image)
        corrupt_blob(server, "victim", layer.digest)
        served = request(f"{server.url}/v2/victim/blobs/{layer.digest}")
        assert served.status == 200
        assert len(served.body) == len(layer.blob)
        assert sha256_digest(served.body) != layer.digest
        with pytest.raises(FileNotFoundError):
            corrupt_blob(server, "no-such-repo", layer.digest)


def test_whiteout_and_opaque_entries_have_oci_names() -> None:
    top = multilayer_image().layers[1]
    members = {member.name: member for member in top.members()}
    assert "data/.wh.gone.txt" in members
    assert members["data/.wh.gone.txt"].isfile()
    assert "opq/.wh..wh..opq" in members
    assert members["opq"].isdir()
    assert "opq/new.txt" in members
    assert members["srv/app"].isdir()
    assert members["srv/app"].uid == APP_UID
    # Parents come before their children, and names are sorted.
    names = [member.name for member in top.members()]
    assert names == sorted(names)


def test_base_layer_matches_the_runtime_layout() -> None:
    base = multilayer_image().layers[0]
    members = {member.name: member for member in base.members()}
    assert members["bin/busybox"].isfile()
    assert members["bin/busybox"].mode == 0o755
    for applet in ("bin/sh", "bin/ls", "bin/cat", "bin/echo", "bin/mkdir"):
        assert members[applet].issym(), applet
        assert members[applet].linkname == "/bin/busybox"
    assert members["tmp"].mode == 0o1777
    assert members["root"].mode == 0o700
    for directory in ("proc", "sys", "dev", "etc"):
        assert members[directory].isdir()
    with tarfile.open(fileobj=io.BytesIO(base.tar)) as tar:
        passwd = tar.extractfile("etc/passwd")
        assert passwd is not None
        assert f"app:x:{APP_UID}:{APP_UID}:" in passwd.read().decode()
        keep = tar.extractfile("data/keep.txt")
        assert keep is not None
        assert keep.read() == KEEP_TEXT
    assert all(member.mtime == members["bin"].mtime for member in members.values())


def test_builds_are_deterministic() -> None:
    assert multilayer_image().digest == multilayer_image().digest
    assert multi_arch_index().digest == multi_arch_index().digest
    files = {"b": b"2", "a/x": FileSpec(data=b"1", mode=0o600, uid=5, gid=6)}
    reordered = dict(reversed(list(files.items())))
    assert Layer.from_files(files).digest == Layer.from_files(reordered).digest
    assert (
        hashlib.sha256(Layer.from_files(files).tar).hexdigest()
        == (Layer.from_files(files).diff_id.split(":")[1])
    )


def test_from_directory_keeps_links_modes_and_owners(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "z").mkdir(parents=True)
    (root / "z" / "original").write_bytes(b"data")
    (root / "a-link").hardlink_to(root / "z" / "original")
    (root / "sym").symlink_to("z/original")
    (root / "z" / "original").chmod(0o640)
    layer = Layer.from_directory(root)
    members = {member.name: member for member in layer.members()}
    # The first entry in archive order carries the data; the later one links to it.
    assert members["a-link"].isfile()
    assert members["z/original"].islnk()
    assert members["z/original"].linkname == "a-link"
    assert members["sym"].issym()
    assert members["sym"].linkname == "z/original"
    assert members["a-link"].mode == 0o640
    assert Layer.from_directory(root).digest == layer.digest


def test_debian_tools_image_is_served(registry: RegistryServer, debian_tools_ref: str) -> None:
    """Builds debian-tools on first use (cached per machine); checks it is pullable."""
    assert debian_tools_ref == f"{registry.host}/debian-tools:1"
    response = request(
        f"{registry.url}/v2/debian-tools/manifests/1", headers={"Accept": OCI_MANIFEST}
    )
    assert response.status == 200
    manifest = json.loads(response.body)
    assert len(manifest["layers"]) == 1
    layer = manifest["layers"][0]
    head = request(f"{registry.url}/v2/debian-tools/blobs/{layer['digest']}", "HEAD")
    assert head.status == 200
    assert int(head.header("Content-Length") or 0) == layer["size"]


@pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")
def test_debian_tools_rootfs_runs_curl_and_python_ssl() -> None:
    rootfs, _ = debian_tools_rootfs()
    python = subprocess.run(
        ["chroot", str(rootfs), "/usr/bin/python3", "-c", "import ssl; print(ssl.OPENSSL_VERSION)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert python.stdout.startswith("OpenSSL")
    curl = subprocess.run(
        ["chroot", str(rootfs), "curl", "--version"], capture_output=True, text=True, check=True
    )
    assert "OpenSSL" in curl.stdout
    bundle = rootfs / "etc/ssl/certs/ca-certificates.crt"
    assert bundle.read_bytes().count(b"BEGIN CERTIFICATE") > 50


def test_busybox_image_adds_a_layer_of_its_own() -> None:
    plain = busybox_image()
    extra = busybox_image({"marker.txt": b"unique"}, entrypoint=["/bin/echo"])
    assert len(plain.layers) == 1
    assert len(extra.layers) == 2
    assert extra.layers[0].digest == plain.layers[0].digest
    assert [member.name for member in extra.layers[1].members()] == ["marker.txt"]
    assert json.loads(extra.config.data)["config"]["Entrypoint"] == ["/bin/echo"]
