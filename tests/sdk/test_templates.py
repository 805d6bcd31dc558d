"""Templates on real VMs: restored sandboxes are their own machines, a template holds nothing
of any sandbox, and a template that does not fit (another agent) or is broken is not used.

Each test that needs a template of its own takes a shape of its own (an unusual memory
size), so that its template is built by the sandbox it creates and by nothing else.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import time
from pathlib import Path

import pytest

from microsandbox_tui import Sandbox, Secret

pytestmark = [pytest.mark.vm, pytest.mark.timeout(600)]

#: A template build boots a whole VM under TCG; on a loaded 2-core host that takes seconds.
TEMPLATE_WAIT_S = 240.0
BUILDING = re.compile(r"building template (\w+) in the background into (\S+)")
RESTORED = re.compile(r"restored from template (\w+) \((\S+)\)")
RESTORE_FAILED = "failed, booting cold instead"


async def runtime_log(sandbox: Sandbox) -> str:
    return "\n".join([line async for line in sandbox.logs("runtime")])


async def restored_from(sandbox: Sandbox) -> Path | None:
    """The template ``sandbox`` was restored from, if it was."""
    found = RESTORED.search(await runtime_log(sandbox))
    return Path(found.group(2)) if found else None


async def template_being_built(sandbox: Sandbox) -> Path:
    """The template a cold-booted ``sandbox`` had built."""
    log = await runtime_log(sandbox)
    found = BUILDING.search(log)
    assert found, f"no template build in the runtime log:\n{log}"
    return Path(found.group(2))


async def wait_for_template(directory: Path) -> None:
    deadline = time.monotonic() + TEMPLATE_WAIT_S
    while not (directory / "meta.json").exists():
        if time.monotonic() > deadline:
            build_log = directory.parent / f"{directory.name}.log"
            told = build_log.read_text() if build_log.exists() else "(no build log)"
            pytest.fail(f"no template in {directory} after {TEMPLATE_WAIT_S:.0f} s: {told}")
        await asyncio.sleep(0.5)


async def cold_sandbox_with_template(name: str, **options: object) -> tuple[Sandbox, Path]:
    """A sandbox that booted cold because its shape had no template, once the template it
    started is saved. A template left by an earlier run is removed first."""
    sandbox = await Sandbox.create(name, replace=True, **options)  # type: ignore[arg-type]
    earlier = await restored_from(sandbox)
    if earlier is not None:
        await stop(sandbox)
        shutil.rmtree(earlier)
        sandbox = await Sandbox.create(name, replace=True, **options)  # type: ignore[arg-type]
        assert await restored_from(sandbox) is None, await runtime_log(sandbox)
    directory = await template_being_built(sandbox)
    await wait_for_template(directory)
    return sandbox, directory


async def stop(*sandboxes: Sandbox) -> None:
    for sandbox in sandboxes:
        await sandbox.kill()
        await Sandbox.remove(sandbox.name)


async def guest_facts(sandbox: Sandbox) -> tuple[str, str, str, str]:
    """boot_id, 16 random bytes, hostname and machine id, as the guest reads them."""
    boot_id = await sandbox.exec("cat", ["/proc/sys/kernel/random/boot_id"])
    random = await sandbox.exec("sh", ["-c", "head -c 16 /dev/urandom | od -An -tx1"])
    hostname = await sandbox.exec("hostname")
    machine_id = await sandbox.exec("cat", ["/etc/machine-id"])
    return (
        boot_id.stdout_text.strip(),
        random.stdout_text.strip(),
        hostname.stdout_text.strip(),
        machine_id.stdout_text.strip(),
    )


async def test_sandboxes_restored_from_one_template_are_machines_of_their_own() -> None:
    first, directory = await cold_sandbox_with_template("tpl-own-seed", memory=336)
    await stop(first)
    a = await Sandbox.create("tpl-own-a", replace=True, memory=336)
    b = await Sandbox.create("tpl-own-b", replace=True, memory=336)
    try:
        assert await restored_from(a) == directory
        assert await restored_from(b) == directory
        facts_a, facts_b = await guest_facts(a), await guest_facts(b)
        for what, value_a, value_b in zip(
            ["boot_id", "random bytes", "hostname", "machine-id"], facts_a, facts_b, strict=True
        ):
            assert value_a and value_a != value_b, f"{what}: {value_a!r} vs {value_b!r}"
        assert (facts_a[2], facts_b[2]) == ("tpl-own-a", "tpl-own-b")
    finally:
        await stop(a, b)


async def test_a_template_holds_nothing_of_the_sandboxes_that_made_or_used_it() -> None:
    name_marker = f"tplname{secrets.token_hex(6)}"
    secret_value = f"tplsecret-{secrets.token_hex(12)}"
    file_marker = f"tplfile-{secrets.token_hex(12)}"
    used_marker = f"tplused-{secrets.token_hex(12)}"
    secret = Secret.env("MSB_TPL_SECRET", value=secret_value, allow_hosts=["secret.test"])
    first, directory = await cold_sandbox_with_template(
        name_marker, memory=352, secrets=[secret], env={"MARK": file_marker}
    )
    written = await first.exec(
        "sh", ["-c", f"echo {file_marker} > /root/mark; sync; cat /root/mark"]
    )
    assert written.stdout_text.strip() == file_marker
    second = await Sandbox.create("tpl-user", replace=True, memory=352)
    try:
        assert await restored_from(second) == directory
        await second.exec("sh", ["-c", f"echo {used_marker} > /root/mark; sync"])
        held = b"".join((directory / name).read_bytes() for name in ("ram", "state", "meta.json"))
        # The search can fail: the template's RAM holds the booted agent.
        assert b"msb-agent" in held
        for marker in (name_marker, secret_value, file_marker, used_marker):
            assert marker.encode() not in held, f"{marker} is in the template"
    finally:
        await stop(first, second)


async def test_a_corrupted_template_falls_back_to_a_cold_boot_and_is_built_again() -> None:
    first, directory = await cold_sandbox_with_template("tpl-broken-seed", memory=368)
    await stop(first)
    state = directory / "state"
    state.write_bytes(b"not a migration stream" * 64)
    second = await Sandbox.create("tpl-broken", replace=True, memory=368)
    try:
        echoed = await second.exec("echo", ["up"])
        assert echoed.stdout_text == "up\n"
        log = await runtime_log(second)
        assert RESTORE_FAILED in log, log
        assert await template_being_built(second) == directory
        await wait_for_template(directory)
    finally:
        await stop(second)
    third = await Sandbox.create("tpl-rebuilt", replace=True, memory=368)
    try:
        assert await restored_from(third) == directory
    finally:
        await stop(third)


async def test_templates_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    first, _ = await cold_sandbox_with_template("tpl-off-seed", memory=400)
    await stop(first)
    monkeypatch.setenv("MSB_SNAPSHOTS", "0")
    sandbox = await Sandbox.create("tpl-off", replace=True, memory=400)
    try:
        log = await runtime_log(sandbox)
        assert await restored_from(sandbox) is None, log
        assert not BUILDING.search(log), log
    finally:
        await stop(sandbox)


async def test_a_new_agent_binary_does_not_use_the_old_agents_template(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first, old = await cold_sandbox_with_template("tpl-agent-old", memory=384)
    await stop(first)
    agent = Path(os.environ.get("MSB_AGENT") or _packaged_agent())
    changed = tmp_path / "msb-agent"
    shutil.copy(agent, changed)
    with changed.open("ab") as binary:
        binary.write(b"\0another build")  # the same program, another file
    monkeypatch.setenv("MSB_AGENT", str(changed))
    second, new = await cold_sandbox_with_template("tpl-agent-new", memory=384)
    await stop(second)
    assert new != old
    monkeypatch.setenv("MSB_AGENT", str(agent))
    third = await Sandbox.create("tpl-agent-back", replace=True, memory=384)
    try:
        assert await restored_from(third) == old, "the first agent's template still serves it"
    finally:
        await stop(third)


def _packaged_agent() -> Path:
    import microsandbox_tui

    return Path(microsandbox_tui.__file__).parent / "_bin" / "msb-agent"
