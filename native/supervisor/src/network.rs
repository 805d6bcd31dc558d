//! The sandbox's network: the gateway loop (`msb_net::gateway`) started on one end of a
//! socketpair before QEMU, the virtio-net device QEMU gets the other end as, and what the
//! guest agent is told to configure in the hello.
//!
//! `MSB_NET_BASELINE=slirp|passt` replaces our network with QEMU's slirp or with passt, for
//! `./dev bench net` only: the same kernel, image and guest set-up, another network.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use msb_engine::qemu::{NetBackend, NetDevice, SlirpForward};
use msb_net::gateway::{Counters, Gateway, GatewayConfig, GatewayError, HostFacts};
use msb_net::gateway::{PortProtocol, PublishedPort};
use msb_net::stack::{NetConfig, IPV6_PREFIX};
use msb_protocol::guest::{GuestIpv6, GuestNetwork};

use crate::error::{Result, SupervisorError};
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

/// Binds the published ports and starts the gateway of `spec` on slot `slot`'s link.
pub fn start(spec: &SandboxSpec, slot: u32) -> Result<Network> {
    let host = HostFacts::read();
    let link = link(slot, host.has_ipv6_route)?;
    let guest = guest_network(spec, &link);
    match std::env::var(BASELINE_ENV).as_deref() {
        Err(_) | Ok("") => start_ours(spec, link, guest, host),
        Ok("slirp") => Ok(slirp(spec, guest)),
        Ok("passt") => start_passt(spec, link, guest),
        Ok(other) => Err(SupervisorError::InvalidConfig(format!(
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
) -> Result<Network> {
    let (ours, qemus) =
        UnixStream::pair().map_err(SupervisorError::io("creating the network socketpair"))?;
    let config = GatewayConfig {
        link,
        guest_mac: link.guest_mac(),
        spec: spec.network.clone(),
        host,
        random_seed: random_seed(),
    };
    let gateway = Gateway::start(config, ours).map_err(gateway_error)?;
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
        GatewayError::Spec(_) | GatewayError::Dns(_) | GatewayError::Link(_) => {
            SupervisorError::InvalidConfig(error.to_string())
        }
        other => SupervisorError::Network(other.to_string()),
    }
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
    fn the_link_has_ipv6_only_when_the_host_has_an_ipv6_route() {
        let ipv6 = link(3, true).unwrap().ipv6.expect("an IPv6 link");
        assert_eq!(
            ipv6.guest,
            "fd6d:7362:0:3::2".parse::<std::net::Ipv6Addr>().unwrap()
        );
        assert_eq!(link(3, false).unwrap().ipv6, None);
    }
}
