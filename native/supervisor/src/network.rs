//! The sandbox's network: the gateway loop (`msb_net::gateway`) started on one end of a
//! socketpair before QEMU, the virtio-net device QEMU gets the other end as, and what the
//! guest agent is told to configure in the hello.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use msb_engine::qemu::NetDevice;
use msb_net::gateway::{Counters, Gateway, GatewayConfig, GatewayError, HostFacts};
use msb_net::stack::{NetConfig, IPV6_PREFIX};
use msb_protocol::guest::{GuestIpv6, GuestNetwork};

use crate::error::{Result, SupervisorError};
use crate::spec::SandboxSpec;

/// The name the guest's `/etc/hosts` gives the gateway, which stands for the host: under a
/// policy that allows the `host` group, `host.msb.internal:PORT` reaches a service the host
/// runs on its loopback.
pub const HOST_ALIAS: &str = "host.msb.internal";
const ETHERNET_MTU: usize = 1500;

/// A started network, until the VM is gone.
pub struct Network {
    pub gateway: Gateway,
    /// QEMU's end of the socketpair, kept open until QEMU has inherited it.
    qemu_end: Option<OwnedFd>,
    pub device: NetDevice,
    pub guest: GuestNetwork,
}

impl Network {
    pub fn counters(&self) -> Arc<Counters> {
        self.gateway.counters()
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
    // QEMU offers the MTU to the guest driver only when it differs from Ethernet's.
    let device = NetDevice {
        fd: qemu_end.as_raw_fd(),
        mac: link.guest_mac().0,
        mtu: (link.mtu != ETHERNET_MTU).then_some(link.mtu as u16),
    };
    let guest = GuestNetwork {
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
    };
    Ok(Network {
        gateway,
        qemu_end: Some(qemu_end),
        device,
        guest,
    })
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
