"""The ``msb`` command line as parsed, without running anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from microsandbox_tui import (
    DEFAULT_IMAGE,
    BindMount,
    DnsConfig,
    NamedMount,
    Network,
    NetworkPolicy,
    PublishedPort,
    Rule,
    Size,
    TlsConfig,
    TmpfsMount,
    __version__,
)
from microsandbox_tui.cli import commands, parse_args
from microsandbox_tui.cli.locations import GuestPath, location


def test_create_is_always_detached_and_takes_resources() -> None:
    args = parse_args(["create", "web", "--image", "img", "--cpus", "2", "--memory", "256"])
    assert args.handler is commands.create
    assert (args.name, args.image, args.cpus, args.memory) == ("web", "img", 2, Size.mib(256))
    assert parse_args(["create", "web", "--detached"]).detached


def test_sizes_take_units_and_a_number_alone_is_mib() -> None:
    assert parse_args(["create", "web", "--memory", "1.5G"]).memory == Size.mib(1536)
    assert parse_args(["volume", "create", "v", "--quota", "2GiB"]).quota == Size.gib(2)
    assert parse_args(["create", "web", "--tmpfs", "/t:64M"]).tmpfs == [
        ("/t", TmpfsMount(size_mib=64))
    ]


def test_create_defaults() -> None:
    args = parse_args(["create", "web"])
    assert (args.image, args.cpus, args.memory) == (DEFAULT_IMAGE, None, None)


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["run", "--", "echo", "-n", "hi"], ["echo", "-n", "hi"]),
        (["run", "--image", "x", "--", "sh", "-c", "a -- b"], ["sh", "-c", "a -- b"]),
        (["run", "echo", "hi"], ["echo", "hi"]),
        (["run", "echo", "--", "hi"], ["echo", "--", "hi"]),
        (["run", "--", "--", "x"], ["--", "x"]),
    ],
)
def test_run_takes_the_command_after_the_separator(argv: list[str], command: list[str]) -> None:
    args = parse_args(argv)
    assert args.handler is commands.run
    assert args.argv == command


def test_run_options() -> None:
    args = parse_args(["run", "--name", "n", "--cpus", "2", "--", "true"])
    assert (args.name, args.cpus, args.argv) == ("n", 2, ["true"])


@pytest.mark.parametrize(
    "argv",
    [["exec", "box", "--", "ls", "-la"], ["exec", "box", "ls", "-la"]],
)
def test_exec(argv: list[str]) -> None:
    args = parse_args(argv)
    assert args.handler is commands.exec_
    assert (args.name, args.argv) == ("box", ["ls", "-la"])


def test_other_commands() -> None:
    assert parse_args(["ls", "--json"]).json
    stop = parse_args(["stop", "box", "--timeout", "3"])
    assert (stop.name, stop.timeout, stop.kill) == ("box", 3.0, False)
    rm = parse_args(["rm", "-f", "a", "b"])
    assert (rm.names, rm.force) == (["a", "b"], True)
    for name in ("images", "install", "doctor", "version"):
        assert parse_args([name]).handler is getattr(commands, name)


def test_log_level_comes_before_the_command() -> None:
    assert parse_args(["--log-level", "debug", "images"]).log_level == "debug"
    assert parse_args(["images"]).log_level is None


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"msb {__version__}\n"


def test_volume_flags_on_create_and_run() -> None:
    args = parse_args(
        [
            "create",
            "web",
            "-v",
            "data:/data",
            "--volume",
            "cache:/cache:ro",
            "-v",
            "./src:/src:ro",
            "-v",
            "/srv/www:/www",
            "--tmpfs",
            "/tmp",
            "--tmpfs",
            "/scratch:64",
        ]
    )
    assert args.volumes == [
        ("/data", NamedMount(name="data")),
        ("/cache", NamedMount(name="cache", readonly=True)),
        ("/src", BindMount(path=str(Path("src").resolve()), readonly=True)),
        ("/www", BindMount(path="/srv/www")),
    ]
    assert args.tmpfs == [("/tmp", TmpfsMount()), ("/scratch", TmpfsMount(size_mib=64))]
    run = parse_args(["run", "-v", "data:/data", "--tmpfs", "/t:8", "--", "true"])
    assert (run.volumes, run.tmpfs, run.argv) == (
        [("/data", NamedMount(name="data"))],
        [("/t", TmpfsMount(size_mib=8))],
        ["true"],
    )
    assert parse_args(["create", "web"]).volumes == []


def test_volume_commands() -> None:
    create = parse_args(["volume", "create", "data", "--quota", "100"])
    assert (create.handler, create.name, create.quota) == (
        commands.volume_create,
        "data",
        Size.mib(100),
    )
    assert parse_args(["volume", "ls", "--json"]).json
    inspect = parse_args(["volume", "inspect", "data"])
    assert (inspect.handler, inspect.name) == (commands.volume_inspect, "data")
    rm = parse_args(["volume", "rm", "a", "b"])
    assert (rm.handler, rm.names) == (commands.volume_rm, ["a", "b"])


@pytest.mark.parametrize(
    "argv",
    [
        ["create", "x", "-v", "data"],
        ["create", "x", "-v", "data:/d:rw"],
        ["create", "x", "-v", "a:b:ro:x"],
        ["create", "x", "-v", "bad name:/d"],
        ["create", "x", "--tmpfs", "/t:big"],
        ["create", "x", "--tmpfs", "/t:0"],
        ["create", "x", "--tmpfs", "/t:512K"],
        ["volume"],
        ["volume", "create", "data"],
        ["volume", "create", "data", "--quota", "lots"],
        ["volume", "rm"],
    ],
)
def test_bad_volume_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    assert "usage: msb" in capsys.readouterr().err


def test_cp_and_ls_take_sandbox_paths() -> None:
    cp = parse_args(["cp", "./local.txt", "box:/tmp/f"])
    assert cp.handler is commands.cp
    assert (cp.source, cp.target) == ("./local.txt", GuestPath("box", "/tmp/f"))
    cp = parse_args(["cp", "box:/etc", "out"])
    assert (cp.source, cp.target) == (GuestPath("box", "/etc"), "out")
    ls = parse_args(["ls", "box:/etc", "--json"])
    assert (ls.target, ls.json) == (GuestPath("box", "/etc"), True)
    assert parse_args(["ls"]).target is None


@pytest.mark.parametrize("host_path", ["./a:/b", "a:b", ":/x", "a/b:/c", "/abs:/x", "plain"])
def test_paths_that_only_look_like_sandbox_paths_are_host_paths(host_path: str) -> None:
    assert location(host_path) == host_path


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nope"],
        ["run"],
        ["run", "--"],
        ["exec", "box"],
        ["exec"],
        ["create"],
        ["create", "x", "--cpus", "two"],
        ["rm"],
        ["ls", "--", "x"],
        ["ls", "box"],
        ["ls", "box:/a", "box:/b"],
        ["cp", "a"],
        ["stop", "a", "b"],
        ["--log-level", "loud", "images"],
        ["create", "x", "--memory", "lots"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    assert "usage: msb" in capsys.readouterr().err


def test_network_flags_on_create_and_run() -> None:
    args = parse_args(
        [
            "create",
            "web",
            "--net",
            "all",
            "-p",
            "8080:80",
            "--publish",
            "127.0.0.2:5353:53/udp",
            "--deny-domain",
            "ads.example",
            "--deny-domain",
            ".evil.com",
            "--dns-nameserver",
            "198.51.100.53",
            "--dns-nameserver",
            "[2001:db8::53]:5353",
        ]
    )
    assert commands.network_of(args) == Network(
        "allow_all",
        [PublishedPort(8080, 80), PublishedPort(5353, 53, "udp", "127.0.0.2")],
        deny_domains=["ads.example"],
        deny_domain_suffixes=[".evil.com"],
        dns=DnsConfig(nameservers=["198.51.100.53", "[2001:db8::53]:5353"]),
    )
    run = parse_args(["run", "--net", "none", "-p", "9000:90", "--", "true"])
    assert commands.network_of(run) == Network("none", {9000: 90})
    assert commands.network_of(parse_args(["create", "web"])) == Network.public_only()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--net", "public_only"], "argument --net: invalid choice"),
        (["-p", "8080"], "argument -p/--publish: port '8080': expected HOST:GUEST"),
        (["-p", "8080:0"], "port '8080:0': guest_port: 0 is outside 1..65535"),
        (["-p", "8080:80/sctp"], "port '8080:80/sctp': expected HOST:GUEST"),
        (["-p", "host:8080:80"], "host_address: 'host' is not an IP address"),
        (["--deny-domain", "a..b"], "argument --deny-domain: 'a..b' is not a valid domain"),
        (["--deny-domain", "."], "argument --deny-domain: '.' is not a valid domain"),
        (["--dns-nameserver", "dns.example"], "'dns.example' is not an IP address"),
    ],
)
def test_bad_network_flags_exit_2_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["create", "x"], ["run"]):
        with pytest.raises(SystemExit) as exited:
            parse_args([*command, *argv, "--", "true"] if command == ["run"] else [*command, *argv])
        assert exited.value.code == 2
        error = capsys.readouterr().err
        assert "usage: msb" in error
        assert message in error


def test_tls_flags_turn_interception_on(tmp_path: Path) -> None:
    ca = tmp_path / "test-ca.pem"
    ca.write_text("pem")
    assert commands.network_of(parse_args(["create", "web"])).tls is None
    intercept = parse_args(["create", "web", "--tls-intercept"])
    assert commands.network_of(intercept).tls == TlsConfig()
    for command in (["create", "web"], ["run"]):
        argv = [
            *command,
            "--tls-bypass",
            "*.internal.example",
            "--tls-bypass",
            "pinned.example.com",
            "--tls-upstream-ca",
            str(ca),
        ]
        parsed = parse_args([*argv, "--", "true"] if command == ["run"] else argv)
        assert commands.network_of(parsed).tls == TlsConfig(
            bypass=["*.internal.example", "pinned.example.com"], upstream_ca_cert=[ca]
        )
    only_ca = parse_args(["run", "--tls-upstream-ca", str(ca), "--", "true"])
    assert commands.network_of(only_ca).tls == TlsConfig(upstream_ca_cert=ca)


def test_a_relative_upstream_ca_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "test-ca.pem").write_text("pem")
    monkeypatch.chdir(tmp_path)
    args = parse_args(["create", "web", "--tls-upstream-ca", "test-ca.pem"])
    assert args.tls_upstream_cas == [str((tmp_path / "test-ca.pem").resolve())]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tls-bypass", ""], "argument --tls-bypass: an empty name cannot be bypassed"),
        (["--tls-bypass", "a.*.example"], "a wildcard may only be a leading '*.'"),
        (["--tls-bypass", "a..example"], "'a..example' is not a valid domain"),
        (
            ["--tls-upstream-ca", "/nonexistent/ca.pem"],
            "argument --tls-upstream-ca: '/nonexistent/ca.pem' is not an existing file",
        ),
        (["--tls-intercept=yes"], "argument --tls-intercept: ignored explicit argument"),
    ],
)
def test_bad_tls_flags_exit_2_with_one_usage_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["create", "x"], ["run"]):
        with pytest.raises(SystemExit) as exited:
            parse_args([*command, *argv, "--", "true"] if command == ["run"] else [*command, *argv])
        assert exited.value.code == 2
        error = capsys.readouterr().err
        assert "usage: msb" in error
        last = error.strip().splitlines()[-1]
        assert message in last
        assert last.startswith("msb ")


def test_inspect_takes_a_sandbox_name() -> None:
    args = parse_args(["inspect", "web"])
    assert (args.handler, args.name) == (commands.inspect, "web")


def test_net_rules_and_defaults_build_a_custom_policy_in_order() -> None:
    args = parse_args(
        [
            "create",
            "web",
            "--net-rule",
            "deny@198.51.100.5,allow@public",
            "--net-rule",
            "allow:ingress@*:tcp:8080",
            "-p",
            "8080:80",
        ]
    )
    rules = [
        Rule.deny(destination="198.51.100.5"),
        Rule.allow(destination="public"),
        Rule.allow(direction="ingress", protocol="tcp", port=8080),
    ]
    assert commands.network_of(args) == Network(NetworkPolicy("deny", "allow", rules), {8080: 80})
    egress = parse_args(["run", "--net-default-egress", "allow", "--", "true"])
    assert commands.network_of(egress).policy == NetworkPolicy("allow", "allow")
    ingress = parse_args(["create", "web", "--net-default-ingress", "deny"])
    assert commands.network_of(ingress).policy == NetworkPolicy("deny", "deny")


def test_net_rules_go_before_the_rules_of_a_net_preset() -> None:
    args = parse_args(["create", "web", "--net", "public", "--net-rule", "deny@.tracker.test"])
    public = NetworkPolicy.from_preset("public_only")
    tracker = Rule.deny(destination=".tracker.test")
    assert commands.policy_of(args) == NetworkPolicy(
        public.default_egress, public.default_ingress, [tracker, *public.rules]
    )
    closed = parse_args(["create", "web", "--net", "all", "--net-default-egress", "deny"])
    assert commands.policy_of(closed) == NetworkPolicy("deny", "allow")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--net-rule", "allow@x.com:tcp:8000-"],
            "argument --net-rule: rule 'allow@x.com:tcp:8000-'",
        ),
        (["--net-rule", "allow@public:tcp:x"], "ports 'x' is neither a number nor a lo-hi range"),
        (["--net-rule", "permit@public"], "unknown action 'permit'"),
        (["--net-rule", "allow:sideways@public"], "unknown direction 'sideways'"),
        (["--net-rule", "allow@public:sctp"], "unknown protocol 'sctp'"),
        (["--net-rule", "allow@"], "the target is empty"),
        (["--net-default-egress", "maybe"], "argument --net-default-egress: invalid choice"),
    ],
)
def test_bad_policy_flags_exit_2_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["create", "x"], ["run"], ["net", "set", "x"]):
        with pytest.raises(SystemExit) as exited:
            parse_args([*command, *argv, "--", "true"] if command == ["run"] else [*command, *argv])
        assert exited.value.code == 2
        error = capsys.readouterr().err
        assert "usage: msb" in error
        assert message in error.strip().splitlines()[-1]


def test_net_set_takes_a_preset_or_a_custom_policy_and_net_show_a_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    preset = parse_args(["net", "set", "web", "--net", "none"])
    assert (preset.handler, preset.name, commands.policy_of(preset)) == (
        commands.net_set,
        "web",
        "none",
    )
    custom = parse_args(["net", "set", "web", "--net-rule", "allow@.example.com:tcp:443"])
    assert commands.policy_of(custom) == NetworkPolicy(
        rules=[Rule.allow(destination=".example.com", protocol="tcp", port=443)]
    )
    show = parse_args(["net", "show", "web"])
    assert (show.handler, show.name) == (commands.net_show, "web")
    with pytest.raises(SystemExit) as exited:
        parse_args(["net", "set", "web"])
    assert exited.value.code == 2
    assert "net set: give --net PRESET, or --net-rule" in capsys.readouterr().err


def test_logs_reads_the_console_the_exec_or_the_network_log(
    capsys: pytest.CaptureFixture[str],
) -> None:
    network = parse_args(["logs", "web", "--network", "-f", "--tail", "5"])
    assert (network.network, network.exec, network.follow, network.tail) == (True, False, True, 5)
    with pytest.raises(SystemExit) as exited:
        parse_args(["logs", "web", "--network", "--exec"])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
