"""Commands in a real sandbox: output, exit codes, errors."""

from __future__ import annotations

import hashlib
import os

import pytest

from microsandbox_tui import (
    CommandNotFoundError,
    ExecTimeoutError,
    InvalidWorkingDirectoryError,
    Sandbox,
    doctor,
)

pytestmark = pytest.mark.vm

TEN_MIB = 10 * 1024 * 1024


async def test_echo_output_comes_back(shared_sandbox: Sandbox) -> None:
    output = await shared_sandbox.exec("echo", ["hello"])
    assert output.stdout_text == "hello\n"
    assert output.exit_code == 0
    assert output.success


async def test_uname_reports_the_guest_kernel_not_the_host(shared_sandbox: Sandbox) -> None:
    output = await shared_sandbox.exec("uname", ["-r"])
    release = output.stdout_text.strip()
    assert release != os.uname().release
    kernel_rows = [check.detail for check in doctor() if check.name == "kernel"]
    assert kernel_rows and kernel_rows[0].startswith(release)
    assert release.endswith("-cloud-amd64")


async def test_pid_one_is_our_agent(shared_sandbox: Sandbox) -> None:
    output = await shared_sandbox.exec("cat", ["/proc/1/cmdline"])
    assert output.stdout.rstrip(b"\0") == b"/init"


async def test_exit_codes_propagate(shared_sandbox: Sandbox) -> None:
    output = await shared_sandbox.shell("exit 3")
    assert output.exit_code == 3
    assert not output.success


async def test_stderr_stays_separate(shared_sandbox: Sandbox) -> None:
    output = await shared_sandbox.shell("echo out; echo err >&2")
    assert output.stdout_text == "out\n"
    assert output.stderr_text == "err\n"


async def test_ten_mib_of_stdout_arrives_intact(shared_sandbox: Sandbox) -> None:
    await shared_sandbox.shell(f"head -c {TEN_MIB} /dev/urandom > /tmp/big")
    guest_sum = (await shared_sandbox.exec("sha256sum", ["/tmp/big"])).stdout_text.split()[0]
    output = await shared_sandbox.exec("cat", ["/tmp/big"])
    assert len(output.stdout) == TEN_MIB
    assert hashlib.sha256(output.stdout).hexdigest() == guest_sum


async def test_big_outputs_on_both_streams_arrive_whole_and_then_the_exit_code(
    shared_sandbox: Sandbox,
) -> None:
    # Several of the agent's 256 KiB output frames per stream, read while both are written.
    await shared_sandbox.shell("head -c 3000000 /dev/urandom > /tmp/both")
    guest_sum = (await shared_sandbox.exec("sha256sum", ["/tmp/both"])).stdout_text.split()[0]
    output = await shared_sandbox.shell("cat /tmp/both & cat /tmp/both >&2; wait; exit 7")
    assert output.exit_code == 7
    assert hashlib.sha256(output.stdout).hexdigest() == guest_sum
    assert hashlib.sha256(output.stderr).hexdigest() == guest_sum


async def test_interleaved_lines_keep_their_order_on_each_stream(shared_sandbox: Sandbox) -> None:
    script = (
        "i=0; while [ $i -lt 3000 ]; do echo out $i; echo err $i >&2; i=$((i + 1)); done; exit 4"
    )
    output = await shared_sandbox.shell(script)
    assert output.exit_code == 4
    assert output.stdout_text.splitlines() == [f"out {i}" for i in range(3000)]
    assert output.stderr_text.splitlines() == [f"err {i}" for i in range(3000)]


async def test_env_and_cwd_apply(shared_sandbox: Sandbox) -> None:
    output = await shared_sandbox.shell(
        'echo "$GREETING"; pwd', {"env": {"GREETING": "hi there"}, "cwd": "/etc"}
    )
    assert output.stdout_text == "hi there\n/etc\n"


async def test_missing_command_is_a_typed_error(shared_sandbox: Sandbox) -> None:
    with pytest.raises(CommandNotFoundError):
        await shared_sandbox.exec("no-such-program")


async def test_missing_working_directory_is_a_typed_error(shared_sandbox: Sandbox) -> None:
    with pytest.raises(InvalidWorkingDirectoryError):
        await shared_sandbox.exec("true", {"cwd": "/does/not/exist"})


async def test_timeout_kills_the_command(shared_sandbox: Sandbox) -> None:
    with pytest.raises(ExecTimeoutError):
        await shared_sandbox.exec("sleep", {"args": ["100"], "timeout": 1.0})
    # The process group is gone: nothing named sleep is left.
    left = await shared_sandbox.shell("ps -o comm | grep -c '^sleep$' || true")
    assert left.stdout_text.strip() == "0"


async def test_concurrent_commands_share_one_connection(shared_sandbox: Sandbox) -> None:
    import asyncio

    outputs = await asyncio.gather(*(shared_sandbox.exec("echo", [str(i)]) for i in range(8)))
    assert [output.stdout_text for output in outputs] == [f"{i}\n" for i in range(8)]
