"""Decoding the runtime's records (``_wire``): JSON shaped as the native module sends it, into
the SDK's public types. No virtual machine: the texts are written here as the runtime's
records are specified."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from microsandbox_tui import (
    BindImage,
    CopyFilePatch,
    DiskImage,
    DiskImageFormat,
    DoctorCheck,
    FsEntry,
    FsEntryKind,
    ImageDefaults,
    ImageDetail,
    ImageInfo,
    ImageLayer,
    LayerDownloadComplete,
    LayerDownloadProgress,
    LayerExtractComplete,
    LayerExtractProgress,
    LayerExtractStarted,
    LayerIndexComplete,
    LayerIndexStarted,
    LayerSummary,
    LogLevel,
    PullComplete,
    Resolved,
    Resolving,
    SandboxInfo,
    SandboxMetrics,
    SandboxStatus,
    SessionInfo,
    VolumeHandle,
)
from microsandbox_tui._wire import decode
from microsandbox_tui.pull import _REPORTED_PROGRESS
from microsandbox_tui.validation import STORED_CONFIG

#: 2025-01-01 12:00:00.250 UTC, as the runtime writes it.
MS = 1_735_732_800_250
MOMENT = datetime(2025, 1, 1, 12, 0, 0, 250_000, tzinfo=UTC)
DIGEST = "sha256:" + "ab" * 32
DIFF_ID = "sha256:" + "cd" * 32


def stored_config(**fields: object) -> dict[str, object]:
    """A sandbox config as the SDK stores it (and the runtime embeds it in its records)."""
    return {
        "name": "web",
        "image": {"kind": "local", "name": "msb-base"},
        "cpus": 2,
        "memory_mib": 1024,
        "env": {"PORT": "8080"},
        "workdir": None,
        "image_defaults": {"env": {}, "entrypoint": [], "cmd": [], "workdir": None, "user": None},
        "volumes": {},
        "patches": [],
        "log_level": None,
        **fields,
    }


def sandbox_record(**fields: object) -> dict[str, object]:
    return {
        "name": "web",
        "status": "running",
        "config": stored_config(),
        "detached": True,
        "created_at": MS,
        "started_at": MS + 1000,
        "stopped_at": None,
        "accelerator": "kvm",
        "boot_ms": 812,
        "supervisor_pid": 4242,
        "vmm_pid": 4243,
        "exit_reason": None,
        **fields,
    }


def decode_info(record: dict[str, object]) -> SandboxInfo:
    return decode(SandboxInfo, json.dumps(record), context=STORED_CONFIG)


def test_a_sandbox_record_decodes_with_its_embedded_config() -> None:
    info = decode_info(sandbox_record())
    assert info.name == "web"
    assert info.status is SandboxStatus.RUNNING
    assert info.detached is True
    assert (info.created_at, info.started_at, info.stopped_at) == (
        MOMENT,
        datetime(2025, 1, 1, 12, 0, 1, 250_000, tzinfo=UTC),
        None,
    )
    assert (info.accelerator, info.boot_ms, info.exit_reason) == ("kvm", 812, None)
    assert (info.supervisor_pid, info.vmm_pid) == (4242, 4243)
    assert (info.config.cpus, info.config.memory_mib, info.config.env) == (
        2,
        1024,
        {"PORT": "8080"},
    )
    assert info.image == "msb-base"


def test_a_stopped_sandbox_has_no_pids_and_says_why_it_stopped() -> None:
    info = decode_info(
        sandbox_record(
            status="crashed",
            stopped_at=MS + 5000,
            supervisor_pid=None,
            vmm_pid=None,
            exit_reason="vmm exited 137",
        )
    )
    assert info.status is SandboxStatus.CRASHED
    assert info.stopped_at == datetime(2025, 1, 1, 12, 0, 5, 250_000, tzinfo=UTC)
    assert (info.supervisor_pid, info.vmm_pid, info.exit_reason) == (None, None, "vmm exited 137")


def test_a_stored_config_naming_host_files_that_are_gone_still_decodes(tmp_path: Path) -> None:
    gone = str(tmp_path / "gone")
    config = stored_config(
        image={"kind": "disk", "path": f"{gone}.qcow2", "format": "qcow2", "fstype": "ext4"},
        patches=[{"kind": "copy_file", "src": gone, "dst": "/etc/x", "mode": None}],
        log_level="debug",
    )
    info = decode_info(sandbox_record(config=config))
    image = info.config.image
    assert isinstance(image, DiskImage)
    assert (image.path, image.format, image.fstype) == (
        f"{gone}.qcow2",
        DiskImageFormat.QCOW2,
        "ext4",
    )
    assert info.image == f"{gone}.qcow2", "a disk image's sandbox shows its path"
    (patch,) = info.config.patches
    assert isinstance(patch, CopyFilePatch)
    assert (patch.src, patch.dst) == (gone, "/etc/x")
    assert info.config.log_level is LogLevel.DEBUG


def test_a_bind_rooted_sandbox_shows_its_directory(tmp_path: Path) -> None:
    config = stored_config(image={"kind": "bind", "path": str(tmp_path)})
    info = decode_info(sandbox_record(config=config))
    assert info.config.image == BindImage(path=str(tmp_path))
    assert info.image == str(tmp_path)


def test_a_sandbox_listing_is_a_list_of_records() -> None:
    text = json.dumps(
        [sandbox_record(), sandbox_record(name="db", config=stored_config(name="db"))]
    )
    infos = decode(list[SandboxInfo], text, context=STORED_CONFIG)
    assert [info.name for info in infos] == ["web", "db"]


def test_an_unknown_status_or_field_is_an_error_not_skipped() -> None:
    with pytest.raises(ValidationError, match="status"):
        decode_info(sandbox_record(status="dancing"))
    with pytest.raises(ValidationError, match="surprise"):
        decode_info(sandbox_record(surprise=1))
    with pytest.raises(ValidationError, match="vmm_pid"):
        decode_info(sandbox_record(vmm_pid="4243"))


@pytest.mark.parametrize("value", ["2025-01-01T12:00:00Z", 1.5e12, True])
def test_timestamps_are_integer_milliseconds(value: object) -> None:
    with pytest.raises(ValidationError, match="milliseconds since the Unix epoch"):
        decode_info(sandbox_record(created_at=value))


METRICS = {
    "cpu_percent": 37.5,
    "memory_bytes": 120 * 2**20,
    "memory_limit_bytes": 480 * 2**20,
    "host_rss_bytes": 300 * 2**20,
    "disk_read_bytes": 4096,
    "disk_write_bytes": 8192,
    "net_rx_bytes": 0,
    "net_tx_bytes": 0,
    "uptime_ms": 65_000,
    "sampled_at": MS,
}
EXPECTED_METRICS = SandboxMetrics(
    cpu_percent=37.5,
    memory_bytes=120 * 2**20,
    memory_limit_bytes=480 * 2**20,
    host_rss_bytes=300 * 2**20,
    disk_read_bytes=4096,
    disk_write_bytes=8192,
    net_rx_bytes=0,
    net_tx_bytes=0,
    uptime_ms=65_000,
    sampled_at=MOMENT,
)


def test_a_metrics_sample_decodes() -> None:
    assert decode(SandboxMetrics, json.dumps(METRICS)) == EXPECTED_METRICS


def test_all_metrics_map_sandbox_names_to_samples() -> None:
    text = json.dumps({"web": METRICS, "db": {**METRICS, "cpu_percent": 0.0}})
    samples = decode(dict[str, SandboxMetrics], text)
    assert samples["web"] == EXPECTED_METRICS
    assert samples["db"].cpu_percent == 0.0


OCI_IMAGE = {
    "name": "127.0.0.1:5000/app:1",
    "kind": "oci",
    "digest": DIGEST,
    "size_bytes": 91_234_567,
    "created_at": MS,
    "last_used_at": MS + 60_000,
    "layers": [
        {"digest": DIGEST, "diff_id": DIFF_ID, "size_bytes": 1000},
        {"digest": DIFF_ID, "diff_id": DIGEST, "size_bytes": 2000},
    ],
    "config": {
        "env": ["PATH=/usr/bin:/bin", "GREETING=a=b"],
        "entrypoint": ["/entry"],
        "cmd": ["serve", "--port", "80"],
        "working_dir": "/srv",
        "user": "nobody",
    },
}
BASE_IMAGE = {
    "name": "msb-base",
    "kind": "ext4",
    "digest": "",
    "size_bytes": 12_356_348,
    "created_at": MS,
    "last_used_at": None,
    "layers": [],
    "config": None,
}


def test_an_oci_image_record_decodes_with_its_layers_and_exec_defaults() -> None:
    detail = decode(ImageDetail, json.dumps(OCI_IMAGE))
    assert detail.info == ImageInfo(
        name="127.0.0.1:5000/app:1",
        kind="oci",
        size_bytes=91_234_567,
        created_at=MOMENT,
        digest=DIGEST,
        layer_count=2,
        last_used_at=datetime(2025, 1, 1, 12, 1, 0, 250_000, tzinfo=UTC),
    )
    assert detail.layers == (
        ImageLayer(digest=DIGEST, diff_id=DIFF_ID, size_bytes=1000),
        ImageLayer(digest=DIFF_ID, diff_id=DIGEST, size_bytes=2000),
    )
    assert detail.defaults == ImageDefaults(
        env={"PATH": "/usr/bin:/bin", "GREETING": "a=b"},
        entrypoint=["/entry"],
        cmd=["serve", "--port", "80"],
        workdir="/srv",
        user="nobody",
    )
    assert detail.defaults.command == ["/entry", "serve", "--port", "80"]


def test_the_built_in_image_is_one_layer_with_no_exec_defaults() -> None:
    detail = decode(ImageDetail, json.dumps(BASE_IMAGE))
    assert (detail.name, detail.kind, detail.layer_count, detail.layers) == (
        "msb-base",
        "ext4",
        1,
        (),
    )
    assert detail.last_used_at is None
    assert detail.defaults == ImageDefaults()


def test_an_image_listing_gives_summaries_of_whole_records() -> None:
    images = decode(list[ImageDetail], json.dumps([BASE_IMAGE, OCI_IMAGE]))
    assert [(image.name, image.layer_count) for image in images] == [
        ("msb-base", 1),
        ("127.0.0.1:5000/app:1", 2),
    ]


def test_a_volume_record_decodes() -> None:
    text = json.dumps(
        {
            "name": "pg-data",
            "quota_mib": 2048,
            "used_bytes": 734_003_200,
            "created_at": MS,
            "in_use_by": ["web", "worker"],
            "path": "/var/lib/msb/volumes/pg-data.ext4",
        }
    )
    assert decode(VolumeHandle, text) == VolumeHandle(
        name="pg-data",
        quota_mib=2048,
        used_bytes=734_003_200,
        created_at=MOMENT,
        in_use_by=("web", "worker"),
        path="/var/lib/msb/volumes/pg-data.ext4",
    )
    assert decode(list[VolumeHandle], "[]") == []


def test_fs_entries_decode_with_their_kind_and_modification_time() -> None:
    text = json.dumps(
        [
            {
                "path": "/bin",
                "kind": "symlink",
                "size": 7,
                "mode": 0o777,
                "modified": MS,
                "uid": 0,
                "gid": 0,
                "link_target": "usr/bin",
            },
            {
                "path": "/etc",
                "kind": "directory",
                "size": 4096,
                "mode": 0o755,
                "modified": MS,
                "uid": 0,
                "gid": 0,
                "link_target": None,
            },
        ]
    )
    link, directory = decode(list[FsEntry], text)
    assert link == FsEntry(
        path="/bin",
        kind=FsEntryKind.SYMLINK,
        size=7,
        mode=0o777,
        modified=MOMENT,
        uid=0,
        gid=0,
        link_target="usr/bin",
    )
    assert (directory.name, directory.kind, directory.link_target) == (
        "etc",
        FsEntryKind.DIRECTORY,
        None,
    )


def test_sessions_decode() -> None:
    text = json.dumps(
        [
            {
                "session": 3,
                "program": "/bin/sh",
                "args": ["-c", "top"],
                "tty": True,
                "started_at": MS,
                "attached": False,
            }
        ]
    )
    assert decode(list[SessionInfo], text) == [
        SessionInfo(
            session=3,
            program="/bin/sh",
            args=("-c", "top"),
            tty=True,
            started_at=MOMENT,
            attached=False,
        )
    ]


def test_doctor_checks_decode() -> None:
    text = json.dumps(
        [
            {"name": "accelerator", "ok": True, "detail": "tcg (no /dev/kvm)"},
            {"name": "kernel", "ok": False, "detail": "missing; run msb install"},
        ]
    )
    assert decode(list[DoctorCheck], text) == [
        DoctorCheck("accelerator", True, "tcg (no /dev/kvm)"),
        DoctorCheck("kernel", False, "missing; run msb install"),
    ]


@pytest.mark.parametrize(
    ("report", "event"),
    [
        ({"event": "resolving", "reference": "alpine"}, Resolving("alpine")),
        (
            {
                "event": "resolved",
                "reference": "docker.io/library/alpine:latest",
                "manifest_digest": DIGEST,
                "layers": [{"digest": DIFF_ID, "size_bytes": 3_000_000}],
            },
            Resolved(
                "docker.io/library/alpine:latest", DIGEST, (LayerSummary(DIFF_ID, 3_000_000),)
            ),
        ),
        (
            {"event": "layer_download_progress", "digest": DIFF_ID, "downloaded": 5, "total": 9},
            LayerDownloadProgress(DIFF_ID, downloaded_bytes=5, total_bytes=9),
        ),
        ({"event": "layer_download_complete", "digest": DIFF_ID}, LayerDownloadComplete(DIFF_ID)),
        ({"event": "layer_extract_started", "digest": DIFF_ID}, LayerExtractStarted(DIFF_ID)),
        (
            {"event": "layer_extract_progress", "digest": DIFF_ID, "bytes": 7},
            LayerExtractProgress(DIFF_ID, extracted_bytes=7),
        ),
        ({"event": "layer_extract_complete", "digest": DIFF_ID}, LayerExtractComplete(DIFF_ID)),
        ({"event": "layer_index_started", "digest": DIFF_ID}, LayerIndexStarted(DIFF_ID)),
        ({"event": "layer_index_complete", "digest": DIFF_ID}, LayerIndexComplete(DIFF_ID)),
        (
            {"event": "pull_complete", "reference": "alpine", "manifest_digest": DIGEST},
            PullComplete("alpine", DIGEST),
        ),
    ],
)
def test_each_pull_report_is_its_event(report: dict[str, object], event: object) -> None:
    assert decode(_REPORTED_PROGRESS, json.dumps(report)) == event


def test_a_resolved_pull_adds_up_its_layers() -> None:
    resolved = Resolved("a", DIGEST, (LayerSummary(DIGEST, 3), LayerSummary(DIFF_ID, 4)))
    assert resolved.total_bytes == 7


def test_an_unknown_pull_report_is_an_error() -> None:
    with pytest.raises(ValidationError, match="layer_teleported"):
        decode(_REPORTED_PROGRESS, json.dumps({"event": "layer_teleported", "digest": DIGEST}))
