//! The sandbox's network: the gateway loop (`msb_net::gateway`) started on one end of a
//! socketpair before QEMU, the virtio-net device QEMU gets the other end as, and what the
//! guest agent is told to configure in the hello.
//!
//! `MSB_NET_BASELINE=slirp|passt` replaces our network with QEMU's slirp or with passt, for
//! `./dev bench net` only: the same kernel, image and guest set-up, another network.
//!
//! The gateway's flow log goes to the sandbox's `network.log`, one JSON line per record, and
//! a client's `SetNetworkPolicy` reaches the running gateway through [`PolicyControl`], its
//! `SetSecrets` through [`SecretsControl`]. The gateway gets the sandbox's secrets with their
//! values, and reports a `block_and_terminate` violation to the [`Terminator`].

use std::fs::{self, File};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use msb_engine::qemu::{NetBackend, NetDevice, SlirpForward};
use msb_net::gateway::{Counters, Gateway, GatewayConfig, GatewayError, HostFacts};
use msb_net::gateway::{FlowLogSink, FlowRecord, PolicyHandle, PolicySpec};
use msb_net::gateway::{PortProtocol, PublishedPort};
use msb_net::secrets::Secrets;
use msb_net::stack::{NetConfig, IPV6_PREFIX};
use msb_protocol::guest::{GuestIpv6, GuestNetwork};

use crate::error::{Result, SupervisorError};
use crate::logs::{RotatingLog, MAX_LOG_BYTES};
use crate::paths;
use crate::secrets::{self, SecretsControl, Terminator};
use crate::spec::SandboxSpec;

/// The name the guest's `/etc/hosts` gives the gateway, which stands for the host: under a
/// policy that allows the `host` group, `host.msb.internal:PORT` reaches a service the host
/// runs on its loopback.
pub const HOST_ALIAS: &str = "host.msb.internal";
const ETHERNET_MTU: usize = 1500;

/// Chooses a benchmark baseline instead of our network.
const BASELINE_ENV: &str = "MSB_NET_BASELINE";

/// A started network, until the VM is gone.
pub struct Network {
    /// Ours; `None` under a baseline.
    gateway: Option<Gateway>,
    /// passt, under that baseline.
    passt: Option<Child>,
    /// QEMU's end of the socketpair, kept open until QEMU has inherited it.
    qemu_end: Option<OwnedFd>,
    secrets: SecretsControl,
    pub device: NetDevice,
    pub guest: GuestNetwork,
}

impl Network {
    /// The guest interface's byte counters (zero under a baseline, which counts nothing).
    pub fn counters(&self) -> Arc<Counters> {
        self.gateway
            .as_ref()
            .map_or_else(Arc::default, Gateway::counters)
    }

    /// The interception CA's certificate the guest is to trust; `None` when its TLS is not
    /// intercepted (or under a baseline).
    pub fn tls_ca_pem(&self) -> Option<String> {
        self.gateway.as_ref()?.tls_ca_pem().map(str::to_owned)
    }

    /// What changes the running network's policy.
    pub fn policy_control(&self) -> PolicyControl {
        match &self.gateway {
            Some(gateway) => PolicyControl::Gateway(gateway.policy_handle()),
            None => PolicyControl::Baseline,
        }
    }

    /// What changes the running network's secrets.
    pub fn secrets_control(&self) -> SecretsControl {
        self.secrets.clone()
    }

    /// Ends the network once QEMU is gone.
    pub fn stop(self) {
        if let Some(gateway) = self.gateway {
            gateway.stop();
        }
        if let Some(mut passt) = self.passt {
            let _ = passt.kill();
            let _ = passt.wait();
        }
    }

    /// Closes the supervisor's copy of QEMU's end once QEMU has its own (or never will):
    /// the loop then sees EOF when QEMU exits.
    pub fn qemu_spawned(&mut self) {
        self.qemu_end = None;
    }
}

/// How a client's new policy reaches the network.
#[derive(Clone)]
pub enum PolicyControl {
    Gateway(PolicyHandle),
    /// A benchmark baseline (slirp, passt): no policy at all.
    Baseline,
}

impl PolicyControl {
    /// Parses `policy`, the JSON of a `PolicySpec`, and swaps it into the running gateway.
    /// The error names what was wrong, as the SDK shows it.
    pub fn set(&self, policy: &str) -> std::result::Result<(), String> {
        let PolicyControl::Gateway(handle) = self else {
            return Err(format!(
                "this sandbox's network cannot change its policy: it runs the \
                 {BASELINE_ENV} baseline, which has no policy"
            ));
        };
        let policy = parse_policy(policy)?;
        handle
            .set_policy(policy)
            .map_err(|error| format!("this sandbox's network cannot change its policy: {error}"))?;
        log::info!("network policy replaced");
        Ok(())
    }
}

/// The policy of a `PolicySpec`'s JSON (a preset's name or a policy object).
fn parse_policy(json: &str) -> std::result::Result<msb_net::policy::Policy, String> {
    serde_json::from_str::<PolicySpec>(json)
        .map(|spec| spec.policy())
        .map_err(|error| format!("network.policy: {error}"))
}

/// Writes each flow record as one JSON line of the sandbox's `network.log`.
struct NetworkLog(RotatingLog);

impl FlowLogSink for NetworkLog {
    fn record(&mut self, record: &FlowRecord) {
        let Ok(mut line) = serde_json::to_string(record) else {
            return;
        };
        line.push('\n');
        // The log is informative; a full disk must not break the sandbox's network.
        let _ = self.0.append(line.as_bytes());
    }
}

/// The link of the sandbox holding network slot `slot`; with IPv6 only when the host has an
/// IPv6 route, so the guest never prefers an address family that leads nowhere.
pub fn link(slot: u32, host_has_ipv6_route: bool) -> Result<NetConfig> {
    let mut link = NetConfig::for_slot(slot)
        .map_err(|error| SupervisorError::InvalidConfig(error.to_string()))?;
    if !host_has_ipv6_route {
        link = link.without_ipv6();
    }
    if let Some(mtu) = mtu_override()? {
        link.mtu = mtu;
        link.validate()
            .map_err(|error| SupervisorError::InvalidConfig(format!("{MTU_ENV}: {error}")))?;
    }
    Ok(link)
}

/// Overrides the guest's MTU, for benchmarks that compare link sizes.
const MTU_ENV: &str = "MSB_NET_MTU";

fn mtu_override() -> Result<Option<usize>> {
    match std::env::var(MTU_ENV) {
        Err(_) => Ok(None),
        Ok(text) => text.trim().parse().map(Some).map_err(|_| {
            SupervisorError::InvalidConfig(format!("{MTU_ENV}={text:?} is not a number"))
        }),
    }
}

/// What the gateway is given besides the spec: where its flow log goes, the secrets with
/// their values, and who stops the VM on a `block_and_terminate` violation.
pub struct GatewaySetup<'a> {
    pub network_log: &'a Path,
    pub secrets: Secrets,
    pub terminator: Arc<Terminator>,
}

/// Binds the published ports and starts the gateway of `spec` on slot `slot`'s link.
pub fn start(spec: &SandboxSpec, slot: u32, setup: GatewaySetup<'_>) -> Result<Network> {
    let host = HostFacts::read();
    let link = link(slot, host.has_ipv6_route)?;
    let guest = guest_network(spec, &link);
    let baseline = std::env::var(BASELINE_ENV).unwrap_or_default();
    if !baseline.is_empty() && !setup.secrets.is_empty() {
        return Err(SupervisorError::InvalidConfig(format!(
            "{BASELINE_ENV}={baseline}: a baseline network cannot substitute secrets"
        )));
    }
    match baseline.as_str() {
        "" => start_ours(spec, link, guest, host, setup),
        "slirp" => Ok(slirp(spec, guest)),
        "passt" => start_passt(spec, link, guest),
        other => Err(SupervisorError::InvalidConfig(format!(
            "{BASELINE_ENV}={other:?}: expected slirp or passt"
        ))),
    }
}

fn guest_network(spec: &SandboxSpec, link: &NetConfig) -> GuestNetwork {
    GuestNetwork {
        mac: link.guest_mac().0,
        address: link.guest_v4,
        prefix_len: link.prefix,
        gateway: link.gateway_v4,
        mtu: link.mtu as u16,
        hostname: spec.name.clone(),
        host_alias: HOST_ALIAS.to_string(),
        ipv6: link.ipv6.map(|ipv6| GuestIpv6 {
            address: ipv6.guest,
            prefix_len: IPV6_PREFIX,
            gateway: ipv6.gateway,
        }),
    }
}

/// QEMU offers the MTU to the guest driver only when it differs from Ethernet's.
fn offered_mtu(link: &NetConfig) -> Option<u16> {
    (link.mtu != ETHERNET_MTU).then_some(link.mtu as u16)
}

fn start_ours(
    spec: &SandboxSpec,
    link: NetConfig,
    guest: GuestNetwork,
    host: HostFacts,
    setup: GatewaySetup<'_>,
) -> Result<Network> {
    let network_log = RotatingLog::open(setup.network_log, MAX_LOG_BYTES)
        .map_err(SupervisorError::io("opening the network log"))?;
    secrets::describe(&setup.secrets)
        .iter()
        .for_each(|line| log::info!("{line}"));
    let (ours, qemus) =
        UnixStream::pair().map_err(SupervisorError::io("creating the network socketpair"))?;
    let config = GatewayConfig {
        link,
        guest_mac: link.guest_mac(),
        spec: spec.network.clone(),
        host,
        random_seed: random_seed(),
        flow_log: Some(Box::new(NetworkLog(network_log))),
        home_ca: paths::interception_ca(),
        secrets: setup.secrets.clone(),
        on_terminate: Some(setup.terminator.callback()),
    };
    // Without a `tls` section, the flows to secret hosts are intercepted with the home's CA.
    let uses_home_ca = match &spec.network.tls {
        Some(tls) => tls.ca_cert.is_none(),
        None => !setup.secrets.is_empty(),
    };
    let home_ca_lock = uses_home_ca.then(lock_home_ca).transpose()?;
    let gateway = Gateway::start(config, ours).map_err(gateway_error)?;
    drop(home_ca_lock);
    let secrets = SecretsControl::new(Some(gateway.secrets_handle()), setup.secrets);
    let qemu_end = OwnedFd::from(qemus);
    let device = NetDevice {
        backend: NetBackend::Socket {
            fd: qemu_end.as_raw_fd(),
        },
        mac: link.guest_mac().0,
        mtu: offered_mtu(&link),
    };
    Ok(Network {
        gateway: Some(gateway),
        passt: None,
        qemu_end: Some(qemu_end),
        secrets,
        device,
        guest,
    })
}

/// QEMU's slirp, on its own fixed addresses.
fn slirp(spec: &SandboxSpec, mut guest: GuestNetwork) -> Network {
    guest.address = std::net::Ipv4Addr::new(10, 0, 2, 15);
    guest.prefix_len = 24;
    guest.gateway = std::net::Ipv4Addr::new(10, 0, 2, 2);
    guest.mtu = ETHERNET_MTU as u16;
    guest.ipv6 = None;
    let host_forwards = spec
        .network
        .ports
        .iter()
        .map(|port| SlirpForward {
            udp: port.protocol == PortProtocol::Udp,
            host_port: port.host_port.get(),
            guest_port: port.guest_port.get(),
        })
        .collect();
    Network {
        gateway: None,
        passt: None,
        qemu_end: None,
        secrets: SecretsControl::new(None, Secrets::default()),
        device: NetDevice {
            backend: NetBackend::Slirp { host_forwards },
            mac: guest.mac,
            mtu: None,
        },
        guest,
    }
}

/// passt on one end of the socketpair, told the guest's addresses and the published ports.
fn start_passt(spec: &SandboxSpec, link: NetConfig, mut guest: GuestNetwork) -> Result<Network> {
    // Run IPv4-only, like the slirp baseline, so all three compare the same traffic.
    guest.ipv6 = None;
    let (passts, qemus) =
        UnixStream::pair().map_err(SupervisorError::io("creating the network socketpair"))?;
    let passt_end = OwnedFd::from(passts);
    let mut command = Command::new("passt");
    command
        .args(["--foreground", "--quiet", "--one-off", "--ipv4-only"])
        .args(["--fd", &passt_end.as_raw_fd().to_string()])
        .args(["--address", &link.guest_v4.to_string()])
        .args(["--netmask", &link.prefix.to_string()])
        .args(["--gateway", &link.gateway_v4.to_string()])
        .args(["--dns-forward", &link.gateway_v4.to_string()])
        .args(["--mtu", &link.mtu.to_string()])
        .stdin(Stdio::null());
    for port in &spec.network.ports {
        command.args([passt_port_flag(port), &passt_port_spec(port)]);
    }
    crate::process::inherit_fd(&mut command, passt_end.as_raw_fd());
    let passt = crate::process::kill_with_parent(&mut command)
        .spawn()
        .map_err(SupervisorError::io("starting passt"))?;
    drop(passt_end);
    let qemu_end = OwnedFd::from(qemus);
    Ok(Network {
        gateway: None,
        passt: Some(passt),
        device: NetDevice {
            backend: NetBackend::Socket {
                fd: qemu_end.as_raw_fd(),
            },
            mac: link.guest_mac().0,
            mtu: offered_mtu(&link),
        },
        qemu_end: Some(qemu_end),
        secrets: SecretsControl::new(None, Secrets::default()),
        guest,
    })
}

fn passt_port_flag(port: &PublishedPort) -> &'static str {
    match port.protocol {
        PortProtocol::Tcp => "--tcp-ports",
        PortProtocol::Udp => "--udp-ports",
    }
}

fn passt_port_spec(port: &PublishedPort) -> String {
    format!(
        "{}/{}:{}",
        port.host_address, port.host_port, port.guest_port
    )
}

fn gateway_error(error: GatewayError) -> SupervisorError {
    match error {
        GatewayError::PortInUse { address, protocol } => SupervisorError::PortInUse {
            address: format!("{address}/{protocol}"),
        },
        GatewayError::Spec(_)
        | GatewayError::Dns(_)
        | GatewayError::Link(_)
        | GatewayError::Tls(_) => SupervisorError::InvalidConfig(error.to_string()),
        other => SupervisorError::Network(other.to_string()),
    }
}

/// An exclusive lock on the home's CA directory, held while the gateway loads the home's CA:
/// two sandboxes starting at once would otherwise both generate it, and the files left could
/// be one's certificate and the other's key.
fn lock_home_ca() -> Result<File> {
    let dir = paths::interception_ca_dir();
    fs::create_dir_all(&dir).map_err(SupervisorError::io(format!("creating {}", dir.display())))?;
    let lock_path = dir.join(".lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(SupervisorError::io(format!(
            "opening {}",
            lock_path.display()
        )))?;
    // SAFETY: flock on a descriptor this function owns; the lock goes with the file.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        let error = std::io::Error::last_os_error();
        return Err(SupervisorError::io(format!(
            "locking {}",
            lock_path.display()
        ))(error));
    }
    Ok(lock)
}

/// A seed for TCP sequence numbers and DNS ids that another sandbox cannot guess.
fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the buffer.
    let filled = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if filled != bytes.len() as isize {
        // Without getrandom (never on Linux ≥ 3.17): the clock, which is at least unique.
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos() as u64)
            .unwrap_or(0);
    }
    u64::from_ne_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_is_a_preset_name_or_a_policy_object_and_errors_name_the_field() {
        assert_eq!(
            parse_policy(r#""none""#),
            Ok(msb_net::policy::Policy::none())
        );
        let custom = parse_policy(
            r#"{"default_egress": "deny", "rules": [
                {"action": "allow", "destination": "api.example.com", "port": 443}]}"#,
        )
        .unwrap();
        assert_eq!(custom.rules.len(), 1);
        for bad in [
            r#""public""#,
            r#"{"rules": [{"action": "allow", "port": "9-1"}]}"#,
            "not json",
        ] {
            let error = parse_policy(bad).unwrap_err();
            assert!(error.starts_with("network.policy: "), "{bad}: {error}");
        }
    }

    #[test]
    fn a_baseline_network_says_it_cannot_change_its_policy() {
        let error = PolicyControl::Baseline.set(r#""none""#).unwrap_err();
        assert!(
            error.starts_with("this sandbox's network cannot change its policy: "),
            "{error}"
        );
    }

    #[test]
    fn the_flow_log_sink_writes_one_json_line_per_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("network.log");
        let mut sink = NetworkLog(RotatingLog::open(&path, MAX_LOG_BYTES).unwrap());
        let record = FlowRecord::Close(msb_net::gateway::flow_log::FlowClose {
            flow: msb_net::gateway::flow_log::FlowSeen {
                time: std::time::UNIX_EPOCH,
                direction: msb_net::policy::FlowDirection::Egress,
                protocol: msb_net::policy::Protocol::Tcp,
                src: "172.16.0.2:40000".into(),
                dst: "203.0.113.7:443".into(),
                domain: None,
                sni: Some("api.example.com".into()),
            },
            bytes_sent: 1,
            bytes_received: 2,
            duration_ms: 3,
            reason: "closed",
        });
        sink.record(&record);
        sink.record(&record);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let value: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(value["kind"], "close");
        assert_eq!(value["sni"], "api.example.com");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn the_link_has_ipv6_only_when_the_host_has_an_ipv6_route() {
        let ipv6 = link(3, true).unwrap().ipv6.expect("an IPv6 link");
        assert_eq!(
            ipv6.guest,
            "fd6d:7362:0:3::2".parse::<std::net::Ipv6Addr>().unwrap()
        );
        assert_eq!(link(3, false).unwrap().ipv6, None);
    }
}
