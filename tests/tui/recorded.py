"""Recorded sandboxes, metrics, images and processes: the dashboard on data that does not change
between runs, for snapshots and for behaviour that needs no virtual machine."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from textual.pilot import Pilot

from microsandbox_tui import (
    FsEntry,
    FsEntryKind,
    ImageInfo,
    MiB,
    Network,
    NetworkInfo,
    NetworkPolicy,
    PublishedPort,
    Rule,
    SandboxConfig,
    SandboxInfo,
    SandboxMetrics,
    SandboxStatus,
    SecretConfig,
    SecretInjection,
    VolumeHandle,
)
from microsandbox_tui.network_log import FlowLogEntry
from microsandbox_tui.secrets import EnvSource, FileSource, ViolationAction
from microsandbox_tui.tui.app import MsbApp
from microsandbox_tui.tui.data import MetricsHistory, RecordedSource
from microsandbox_tui.tui.operations import parse_ps

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def recorded_info(
    name: str,
    status: SandboxStatus = SandboxStatus.RUNNING,
    *,
    image: str = "msb-base",
    cpus: int = 1,
    memory_mib: int = 512,
    env: dict[str, str] | None = None,
    started_ago: timedelta | None = timedelta(minutes=3, seconds=5),
    exit_reason: str | None = None,
    network: Network | None = None,
    addresses: NetworkInfo | None = None,
    secrets: tuple[SecretConfig, ...] = (),
) -> SandboxInfo:
    running = status.is_live
    config = SandboxConfig(
        name=name,
        cpus=cpus,
        memory_mib=memory_mib,
        env=env or {},
        network=network or Network(),
        secrets=secrets,
    )
    return SandboxInfo(
        name=name,
        status=status,
        config=config,
        detached=True,
        created_at=NOW - timedelta(hours=2),
        started_at=NOW - started_ago if started_ago is not None else None,
        stopped_at=None if running else NOW - timedelta(minutes=30),
        accelerator="kvm",
        boot_ms=812,
        exit_reason=exit_reason,
        network=addresses,
    )


def recorded_sample(second: int, cpu: float, memory_mib: int, limit_mib: int) -> SandboxMetrics:
    return SandboxMetrics(
        cpu_percent=cpu,
        memory_bytes=memory_mib * MiB,
        memory_limit_bytes=limit_mib * MiB,
        host_rss_bytes=(memory_mib + 180) * MiB,
        disk_read_bytes=second * 40_000,
        disk_write_bytes=second * second * 1_000,
        net_rx_bytes=0,
        net_tx_bytes=0,
        uptime_ms=second * 1000,
        sampled_at=NOW - timedelta(seconds=30 - second),
    )


#: ``web``'s secrets: one for a domain's API, one with a pattern that also goes into bodies.
RECORDED_SECRETS = (
    SecretConfig(env_var="OPENAI_API_KEY", allow_hosts=("api.openai.com",)),
    SecretConfig(
        env_var="GITHUB_TOKEN",
        allow_hosts=("api.github.com",),
        allow_host_patterns=("*.githubusercontent.com",),
        inject=SecretInjection(body=True),
    ),
)
#: ``batch``'s secrets (it is stopped): each start reads them again from where they say, or
#: asks for them.
RECORDED_STOPPED_SECRETS = (
    SecretConfig(
        env_var="OPENAI_API_KEY", allow_hosts=("api.openai.com",), source=EnvSource(name="OPENAI")
    ),
    SecretConfig(
        env_var="DB_PASSWORD",
        allow_hosts=("db.example.com",),
        on_violation=ViolationAction.BLOCK_AND_TERMINATE,
        source=FileSource(path="/run/keys/db"),
    ),
    SecretConfig(
        env_var="STRIPE_KEY", allow_hosts=("api.stripe.com",), on_violation=ViolationAction.BLOCK
    ),
)

RECORDED_SANDBOXES = (
    recorded_info(
        "web",
        cpus=2,
        memory_mib=1024,
        env={"PORT": "8080", "MODE": "prod"},
        network=Network(ports=[PublishedPort(8080, 8080), PublishedPort(5353, 53, "udp")]),
        addresses=NetworkInfo("172.16.0.6", "172.16.0.5", 30, "host.msb.internal"),
        secrets=RECORDED_SECRETS,
    ),
    recorded_info(
        "worker",
        started_ago=timedelta(hours=1, minutes=2),
        network=Network(
            NetworkPolicy(
                "deny",
                "allow",
                [
                    Rule.allow(destination="api.example.com", protocol="tcp", port=443),
                    Rule.allow(destination=".pypi.org", protocol="tcp", port="443-444"),
                    Rule.deny(destination="10.0.0.0/8"),
                ],
            ),
            ports=[PublishedPort(9090, 9090)],
        ),
        addresses=NetworkInfo("172.16.0.2", "172.16.0.1", 30, "host.msb.internal"),
    ),
    recorded_info(
        "batch", SandboxStatus.STOPPED, started_ago=None, secrets=RECORDED_STOPPED_SECRETS
    ),
    recorded_info("flaky", SandboxStatus.CRASHED, started_ago=None, exit_reason="vmm exited 137"),
)
RECORDED_IMAGES = (
    ImageInfo("msb-base", "ext4", 12_356_348, NOW - timedelta(days=3)),
    ImageInfo(
        "python-3.12",
        "oci",
        91_234_567,
        NOW - timedelta(hours=5),
        digest="sha256:" + "ab" * 32,
        layer_count=5,
        last_used_at=NOW - timedelta(minutes=20),
    ),
)
RECORDED_VOLUMES = (
    VolumeHandle(
        name="pg-data",
        quota_mib=2048,
        used_bytes=734_003_200,
        created_at=NOW - timedelta(days=2),
        in_use_by=("web", "worker"),
        path="/var/lib/msb/volumes/pg-data.ext4",
    ),
    VolumeHandle(
        name="scratch",
        quota_mib=16,
        used_bytes=0,
        created_at=NOW - timedelta(minutes=7),
        in_use_by=(),
        path="/var/lib/msb/volumes/scratch.ext4",
    ),
)


def recorded_entry(
    path: str, kind: FsEntryKind, size: int, mode: int, link_target: str | None = None
) -> FsEntry:
    return FsEntry(
        path=path,
        kind=kind,
        size=size,
        mode=mode,
        modified=NOW - timedelta(hours=1),
        uid=0,
        gid=0,
        link_target=link_target,
    )


RECORDED_DIRECTORIES = {
    ("web", "/"): (
        recorded_entry("/srv", FsEntryKind.DIRECTORY, 4096, 0o755),
        recorded_entry("/etc", FsEntryKind.DIRECTORY, 4096, 0o755),
        recorded_entry("/init", FsEntryKind.FILE, 1_843_200, 0o755),
        recorded_entry("/bin", FsEntryKind.SYMLINK, 7, 0o777, "usr/bin"),
    ),
    ("web", "/srv"): (
        recorded_entry("/srv/app.py", FsEntryKind.FILE, 2_310, 0o644),
        recorded_entry("/srv/static", FsEntryKind.DIRECTORY, 4096, 0o755),
        recorded_entry("/srv/run.sh", FsEntryKind.FILE, 120, 0o755),
    ),
}
RECORDED_PS = parse_ps(
    """PID   PPID  USER     STAT   VSZ  RSS COMMAND
    1     0 root     S     1520  912 /init
    2     0 root     SW       0    0 [kthreadd]
   57     1 root     S     2204 1432 /bin/sh -c python -m http.server 8080
   58    57 root     S    24012 15880 python -m http.server 8080
"""
)


#: ``worker``'s flow log, in the supervisor's line format: a name resolved and reached, a
#: name refused, a flow to an address no rule allows, a close, and a flow a deny rule stops.
RECORDED_FLOW_LOG_LINES = (
    '{"kind":"dns","time":"2025-01-01T11:59:50.120Z","protocol":"udp","src":"172.16.0.2:41000",'
    '"name":"api.example.com","qtype":"A","action":"allow","rule":0,'
    '"rule_text":"allow@api.example.com:tcp:443","rcode":"NOERROR","answers":["203.0.113.7"],'
    '"reason":null}',
    '{"kind":"flow","time":"2025-01-01T11:59:50.180Z","direction":"egress","protocol":"tcp",'
    '"src":"172.16.0.2:40000","dst":"203.0.113.7:443","domain":"api.example.com","sni":null,'
    '"action":"allow","rule":0,"rule_text":"allow@api.example.com:tcp:443","reason":null}',
    '{"kind":"dns","time":"2025-01-01T11:59:52.004Z","protocol":"udp","src":"172.16.0.2:41001",'
    '"name":"other.example","qtype":"A","action":"deny","rule":null,"rule_text":"default",'
    '"rcode":"NXDOMAIN","answers":[],"reason":"denied by the policy"}',
    '{"kind":"flow","time":"2025-01-01T11:59:55.310Z","direction":"egress","protocol":"tcp",'
    '"src":"172.16.0.2:40002","dst":"198.51.100.20:80","domain":null,"sni":null,'
    '"action":"deny","rule":null,"rule_text":"default","reason":"denied by the policy"}',
    '{"kind":"close","time":"2025-01-01T11:59:56.002Z","direction":"egress","protocol":"tcp",'
    '"src":"172.16.0.2:40000","dst":"203.0.113.7:443","domain":"api.example.com",'
    '"sni":"api.example.com","bytes_sent":812,"bytes_received":40960,"duration_ms":5822,'
    '"reason":"closed"}',
    '{"kind":"flow","time":"2025-01-01T11:59:58.771Z","direction":"egress","protocol":"udp",'
    '"src":"172.16.0.2:40100","dst":"10.77.0.5:5353","domain":null,"sni":null,'
    '"action":"deny","rule":2,"rule_text":"deny@10.0.0.0/8","reason":"denied by the policy"}',
)


#: ``web``'s flow log: a substitution, each of its secrets once sent where it may not go,
#: and between them a flow no secret is about.
RECORDED_SECRET_LOG_LINES = (
    '{"kind":"flow","time":"2025-01-01T11:58:10.010Z","direction":"egress","protocol":"tcp",'
    '"src":"172.16.0.6:40010","dst":"203.0.113.30:443","domain":"api.openai.com",'
    '"sni":"api.openai.com","action":"allow","rule":null,"rule_text":"default",'
    '"reason":"secret_injected","secret":"OPENAI_API_KEY"}',
    '{"kind":"flow","time":"2025-01-01T11:58:42.500Z","direction":"egress","protocol":"tcp",'
    '"src":"172.16.0.6:40011","dst":"198.51.100.66:443","domain":"exfil.example",'
    '"sni":"exfil.example","action":"deny","rule":null,"rule_text":"default",'
    '"reason":"secret_violation","secret":"OPENAI_API_KEY"}',
    '{"kind":"flow","time":"2025-01-01T11:59:01.000Z","direction":"egress","protocol":"tcp",'
    '"src":"172.16.0.6:40012","dst":"203.0.113.7:443","domain":"api.example.com",'
    '"sni":"api.example.com","action":"allow","rule":null,"rule_text":"default",'
    '"reason":null}',
    '{"kind":"flow","time":"2025-01-01T11:59:30.250Z","direction":"egress","protocol":"tcp",'
    '"src":"172.16.0.6:40013","dst":"198.51.100.67:443","domain":"paste.example",'
    '"sni":"paste.example","action":"deny","rule":null,"rule_text":"default",'
    '"reason":"secret_violation","secret":"GITHUB_TOKEN"}',
)


def flow_log_entry(line: str) -> FlowLogEntry:
    entry = FlowLogEntry.parse(line)
    assert entry is not None, line
    return entry


RECORDED_FLOW_LOG = tuple(flow_log_entry(line) for line in RECORDED_FLOW_LOG_LINES)
RECORDED_SECRET_LOG = tuple(flow_log_entry(line) for line in RECORDED_SECRET_LOG_LINES)


def recorded_history() -> MetricsHistory:
    """Thirty seconds of samples: ``web`` goes up and down, ``worker`` ramps up."""
    history = MetricsHistory()
    for second in range(31):
        wave = 100 + 90 * math.sin(second / 3)
        history.record(
            {
                "web": recorded_sample(second, wave, 300 + second, 980),
                "worker": recorded_sample(second, second * 3.2, 60, 470),
            }
        )
    return history


def recorded_app(**options: Any) -> MsbApp:
    """The dashboard on recorded data: one listing at start, then nothing changes."""
    last = {
        "web": recorded_sample(30, 100 + 90 * math.sin(10), 330, 980),
        "worker": recorded_sample(30, 96.0, 60, 470),
    }
    source = RecordedSource(
        sandboxes=RECORDED_SANDBOXES,
        metrics=last,
        images=RECORDED_IMAGES,
        process_tables={"web": RECORDED_PS},
        volumes=RECORDED_VOLUMES,
        directories=RECORDED_DIRECTORIES,
        flow_logs={"worker": RECORDED_FLOW_LOG, "web": RECORDED_SECRET_LOG},
        clock=NOW,
    )
    values: dict[str, Any] = {"host_info": False, "refresh_interval": 3600.0}
    return MsbApp(source=source, history=recorded_history(), **(values | options))


async def wait_for_listing(pilot: Pilot[None]) -> None:
    """Lets a recorded app show its first listing."""
    app = pilot.app
    assert isinstance(app, MsbApp)
    for _ in range(100):
        if app.snapshot is not None:
            break
        await pilot.pause(0.02)
    await pilot.pause()
