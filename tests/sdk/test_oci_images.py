"""OCI images end to end: pulled from a real registry on 127.0.0.1 into the layer cache and
booted as overlay root filesystems."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
from registry.builder import corrupt_blob, push
from registry.images import (
    APP_UID,
    KEEP_TEXT,
    MOTD_TEXT,
    OPQ_NEW_TEXT,
    busybox_image,
)
from registry.server import RegistryServer

from microsandbox_tui import (
    Image,
    ImageInUseError,
    ImagePullFailedError,
    LayerDownloadComplete,
    PullCancelledError,
    PullComplete,
    PullPolicy,
    RegistryAuth,
    RegistryAuthError,
    Resolved,
    Resolving,
    Sandbox,
    _native,
    home_dir,
    inspect_image,
    list_images,
    pull,
    pull_stream,
    remove_image,
)

pytestmark = [pytest.mark.vm, pytest.mark.timeout(300)]


def store_files() -> set[Path]:
    """Every file in the home's image store (blobs, layer images, records)."""
    root = Path(home_dir()) / "images"
    return {path for path in root.rglob("*") if path.is_file()}


def store_leftovers() -> list[Path]:
    """Temporary files a pull left behind (there must be none)."""
    tmp = Path(home_dir()) / "images" / "tmp"
    return list(tmp.iterdir()) if tmp.exists() else []


async def test_multilayer_image_boots_with_whiteouts_opaque_dirs_and_its_config(
    registry: RegistryServer, unique_name: str
) -> None:
    image = Image.oci(registry.refs["multilayer"], insecure=True)
    async with await Sandbox.create(unique_name, image=image) as sandbox:
        listing = await sandbox.shell("ls /data /opq; cat /data/keep.txt /opq/new.txt /etc/motd")
        assert listing.stdout_text.split("\n")[:3] == ["/data:", "keep.txt", ""]
        assert "gone.txt" not in listing.stdout_text and "old.txt" not in listing.stdout_text
        for text in (KEEP_TEXT, OPQ_NEW_TEXT, MOTD_TEXT):
            assert text.decode() in listing.stdout_text
        # The image's env, working directory and user are every exec's defaults.
        env = await sandbox.shell("echo $GREETING; pwd; id -u")
        assert env.stdout_text.split() == ["hello", "/srv/app", str(APP_UID)]
        assert (await sandbox.exec("pwd", {"cwd": "/tmp"})).stdout_text == "/tmp\n"
        info = await inspect_image(registry.refs["multilayer"])
        assert info.defaults.command == ["/bin/sh", "-c", "echo from-cmd"]
        ran = await sandbox.exec(info.defaults.command[0], info.defaults.command[1:])
        assert ran.stdout_text == "from-cmd\n"


async def test_two_sandboxes_share_the_layers_and_not_their_writes(
    registry: RegistryServer, unique_name: str
) -> None:
    reference = registry.refs["multilayer"]
    await pull(reference, insecure=True)
    before = store_files()
    image = Image.oci(reference, insecure=True)
    async with (
        await Sandbox.create(f"{unique_name}-a", image=image) as first,
        await Sandbox.create(f"{unique_name}-b", image=image) as second,
    ):
        assert store_files() == before  # no new layer files for the second sandbox
        await first.shell("echo mine > /data/keep.txt; touch /only-in-a")
        seen = await second.shell("cat /data/keep.txt; ls /only-in-a")
        assert seen.stdout_text == KEEP_TEXT.decode()
        assert seen.exit_code != 0
        # Removing the image is refused while sandboxes use it.
        with pytest.raises(ImageInUseError, match=unique_name):
            await remove_image(reference)


async def test_pull_reports_progress_and_picks_amd64_from_an_index(
    registry: RegistryServer,
) -> None:
    events = []
    stream = pull_stream(registry.refs["multi-arch"], insecure=True)
    async with stream:
        async for event in stream:
            events.append(event)
        name = await stream.result()
    assert isinstance(events[0], Resolving) and isinstance(events[-1], PullComplete)
    resolved = next(event for event in events if isinstance(event, Resolved))
    done = {event.digest for event in events if isinstance(event, LayerDownloadComplete)}
    assert done == {layer.digest for layer in resolved.layers}
    detail = await inspect_image(name)
    assert len(detail.layers) == 2  # the amd64 (multilayer) manifest, not the arm64 stub
    assert name in {image.name for image in await list_images()}


async def test_corrupted_blob_fails_naming_the_digest_and_leaves_the_cache_clean(
    registry: RegistryServer,
) -> None:
    repository = f"corrupt-{secrets.token_hex(4)}"
    image = busybox_image({"unique.txt": secrets.token_bytes(64)})
    push(registry.url, repository, "1", image)
    corrupted = image.layers[-1].digest
    corrupt_blob(registry, repository, corrupted)
    before = store_files()
    with pytest.raises(ImagePullFailedError, match=corrupted.removeprefix("sha256:")):
        await pull(f"{registry.host}/{repository}:1", insecure=True)
    assert store_leftovers() == []
    assert {path for path in store_files() if corrupted[7:] in str(path)} == set()
    assert store_files() >= before


async def test_cancelled_pull_leaves_nothing_behind(registry: RegistryServer) -> None:
    repository = f"cancel-{secrets.token_hex(4)}"
    push(registry.url, repository, "1", busybox_image({"big.bin": secrets.token_bytes(8 << 20)}))
    before = store_files()
    stream = pull_stream(f"{registry.host}/{repository}:1", insecure=True)
    async with stream:
        async for event in stream:
            if isinstance(event, Resolved):
                stream.cancel()
        with pytest.raises(PullCancelledError):
            await stream.result()
    assert store_leftovers() == []
    assert store_files() == before


async def test_auth_failure_is_a_clear_error_and_good_credentials_pull(
    auth_registry: RegistryServer,
) -> None:
    reference = auth_registry.refs["multilayer"]
    with pytest.raises(RegistryAuthError, match=re.escape("127.0.0.1")):
        await pull(reference, insecure=True)
    with pytest.raises(RegistryAuthError):
        await pull(reference, insecure=True, auth=RegistryAuth.basic("app", "wrong"))
    username, password = auth_registry.credentials
    assert await pull(reference, insecure=True, auth=RegistryAuth.basic(username, password))


async def test_never_policy_uses_only_the_local_store(
    registry: RegistryServer, unique_name: str
) -> None:
    reference = registry.refs["multilayer"]
    await pull(reference, insecure=True)
    image = Image.oci(reference, insecure=True, pull_policy=PullPolicy.NEVER)
    async with await Sandbox.create(unique_name, image=image) as sandbox:
        assert (await sandbox.shell("cat /etc/motd")).stdout_text == MOTD_TEXT.decode()


async def test_create_with_progress_yields_pull_events_then_the_sandbox(
    registry: RegistryServer, unique_name: str
) -> None:
    repository = f"session-{secrets.token_hex(4)}"
    push(registry.url, repository, "1", busybox_image({"etc/motd": b"from a pull session\n"}))
    image = Image.oci(f"{registry.host}/{repository}:1", insecure=True)
    async with Sandbox.create_with_progress(unique_name, image=image) as session:
        events = [event async for event in session]
        sandbox = await session.sandbox()
    try:
        assert isinstance(events[0], Resolving) and isinstance(events[-1], PullComplete)
        assert (await sandbox.shell("cat /etc/motd")).stdout_text == "from a pull session\n"
    finally:
        await sandbox.kill()
        await Sandbox.remove(unique_name)


@pytest.fixture
def store_lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every resolution of a reference and every image record read from the store, in order
    (the real calls, counted)."""
    calls: list[str] = []
    for name in ("canonical_reference", "inspect_image"):
        real = getattr(_native, name)

        def counted(reference: str, real: Callable[[str], str] = real, name: str = name) -> str:
            calls.append(name)
            return real(reference)

        monkeypatch.setattr(_native, name, counted)
    return calls


async def test_creation_with_progress_plans_its_pull_once_and_reads_the_image_once(
    registry: RegistryServer, unique_name: str, store_lookups: list[str]
) -> None:
    repository = f"once-{secrets.token_hex(4)}"
    push(registry.url, repository, "1", busybox_image({"etc/motd": b"planned once\n"}))
    image = Image.oci(f"{registry.host}/{repository}:1", insecure=True)
    async with Sandbox.create_with_progress(unique_name, image=image) as session:
        assert [event async for event in session]
        sandbox = await session.sandbox()
    await sandbox.kill()
    await Sandbox.remove(unique_name)
    # The plan: one resolution and one look in the store (missing); after the pull, the
    # pulled image's record once.
    assert store_lookups == ["canonical_reference", "inspect_image", "inspect_image"]


async def test_creating_on_a_stored_image_resolves_and_reads_it_once(
    registry: RegistryServer, unique_name: str, store_lookups: list[str]
) -> None:
    reference = registry.refs["multilayer"]
    await pull(reference, insecure=True)
    store_lookups.clear()
    sandbox = await Sandbox.create(unique_name, image=Image.oci(reference, insecure=True))
    await sandbox.kill()
    await Sandbox.remove(unique_name)
    assert store_lookups == ["canonical_reference", "inspect_image"]
