//! The guest's network, set up from the host's hello before the agent answers it, so the
//! network is up when the sandbox is reported ready.
//!
//! The interface whose MAC the hello names gets its MTU, IPv4 address and the default route
//! via the gateway, and the same for IPv6 when the hello has it ([`interface`]) (the kernel
//! hostname is set earlier, by [`crate::boot`], for every sandbox);
//! `/etc/resolv.conf` names the gateway as the only nameserver and `/etc/hosts` gives the
//! sandbox's name and the gateway's alias ([`files`]), put in place without ever writing a
//! live host root ([`placement`]). A failure is logged and the rest still done: the sandbox
//! boots and runs commands without a network. The hello arrives after the switch into the
//! sandbox's root, so `/etc` here is the sandbox's own. The interception CA, when the hello
//! carries one, goes into the trust stores the same way ([`trust`]).

mod files;
pub mod interface;
mod placement;
pub mod trust;

use msb_protocol::guest::GuestNetwork;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long the interface may take to appear: virtio_net is loaded at boot, long before the
/// hello, but the device's probe may lag behind the module.
const INTERFACE_WAIT: Duration = Duration::from_secs(2);
const INTERFACE_POLL: Duration = Duration::from_millis(10);
const RESOLV_CONF: &str = "/etc/resolv.conf";
const HOSTS: &str = "/etc/hosts";

/// Whose file system the sandbox's root is, which decides how `/etc` files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// An overlay whose upper disk belongs to the sandbox: its files may be replaced.
    Ours,
    /// A live host directory shared with virtio-fs: the user's files are never written.
    LiveHostDirectory,
}

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(
        "no network interface with MAC {mac} appeared within {seconds:.1} s (interfaces: {seen})"
    )]
    InterfaceMissing {
        mac: String,
        seconds: f64,
        seen: String,
    },
    #[error("{interface}: {step}: {source}")]
    Interface {
        interface: String,
        step: String,
        source: io::Error,
    },
    #[error("{field} {value:?} cannot be a name in {HOSTS}; it is left as it was")]
    InvalidName { field: &'static str, value: String },
    #[error("reading {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("writing {path}: {source}")]
    Write { path: String, source: io::Error },
    #[error("bind-mounting {staged} over {path}: {source}")]
    Bind {
        staged: String,
        path: String,
        source: io::Error,
    },
    #[error(
        "{path} is absent from the root, a live host directory; it is left so rather than created on the host"
    )]
    AbsentOnLiveRoot { path: String },
    #[error(
        "{path} links to {} which is absent from the root, a live host directory; it is left so rather than created on the host",
        destination.display()
    )]
    DanglingOnLiveRoot { path: String, destination: PathBuf },
}

/// The network set up by the first hello that carried one. A host that connects again sends
/// the same network, and nothing is done twice (the files would be bind-mounted twice).
#[derive(Default)]
pub struct NetworkSetup {
    applied: OnceLock<GuestNetwork>,
}

impl NetworkSetup {
    /// Sets the network up, once; every failure goes to the console.
    pub fn apply(&self, network: GuestNetwork, root: Root) {
        if let Some(applied) = self.applied.get() {
            if *applied != network {
                log!(
                    "network: already set up as {}/{}; a hello with another network changes nothing",
                    applied.address,
                    applied.prefix_len
                );
            }
            return;
        }
        for failure in configure(&network, root) {
            log!("network: {failure}");
        }
        let _ = self.applied.set(network);
    }
}

/// Every step, each attempted whatever became of the others.
fn configure(network: &GuestNetwork, root: Root) -> Vec<NetworkError> {
    let mut failures = Vec::new();
    match set_up_interface(network) {
        Ok(name) => log!(
            "network: {name} ({}) is {}/{} via {}{}, MTU {}",
            interface::format_mac(network.mac),
            network.address,
            network.prefix_len,
            network.gateway,
            network.ipv6.map_or(String::new(), |ipv6| format!(
                " and {}/{} via {}",
                ipv6.address, ipv6.prefix_len, ipv6.gateway
            )),
            network.mtu
        ),
        Err(failure) => failures.push(failure),
    }
    let resolv_conf = files::resolv_conf(network.gateway);
    failures.extend(placement::place(RESOLV_CONF, &resolv_conf, root).err());
    failures.extend(write_hosts(network, root).err());
    failures
}

/// Finds the interface and sets it up; returns its name.
fn set_up_interface(network: &GuestNetwork) -> Result<String, NetworkError> {
    let name = wait_for_interface(network.mac)?;
    let failed = |step: String| {
        let interface = name.clone();
        move |source| NetworkError::Interface {
            interface,
            step,
            source,
        }
    };
    interface::set_mtu(&name, network.mtu)
        .map_err(failed(format!("setting the MTU {}", network.mtu)))?;
    interface::set_ipv4(&name, network.address, network.prefix_len).map_err(failed(format!(
        "setting the address {}/{}",
        network.address, network.prefix_len
    )))?;
    interface::bring_up(&name).map_err(failed("bringing it up".into()))?;
    interface::add_default_route(&name, network.gateway).map_err(failed(format!(
        "adding the default route via {}",
        network.gateway
    )))?;
    if let Some(ipv6) = &network.ipv6 {
        interface::disable_ipv6_dad(&name).map_err(failed(
            "turning IPv6 duplicate address detection off".into(),
        ))?;
        interface::add_ipv6(&name, ipv6.address, ipv6.prefix_len).map_err(failed(format!(
            "adding the address {}/{}",
            ipv6.address, ipv6.prefix_len
        )))?;
        interface::add_ipv6_default_route(&name, ipv6.gateway).map_err(failed(format!(
            "adding the IPv6 default route via {}",
            ipv6.gateway
        )))?;
    }
    Ok(name)
}

/// The interface with `mac`. A guest restored from a template has the template's MAC on its
/// one virtio-net interface (QEMU restores the device's MAC with its state), which is given
/// `mac` here.
fn wait_for_interface(mac: [u8; 6]) -> Result<String, NetworkError> {
    let sysfs = Path::new(interface::SYSFS_NET);
    let started = Instant::now();
    loop {
        if let Some(name) = interface::with_mac(sysfs, mac) {
            return Ok(name);
        }
        if let Some(name) = interface::only_device(sysfs) {
            interface::set_mac(&name, mac).map_err(|source| NetworkError::Interface {
                interface: name.clone(),
                step: format!("setting the MAC {}", interface::format_mac(mac)),
                source,
            })?;
            return Ok(name);
        }
        if started.elapsed() >= INTERFACE_WAIT {
            return Err(NetworkError::InterfaceMissing {
                mac: interface::format_mac(mac),
                seconds: started.elapsed().as_secs_f64(),
                seen: interface::names(sysfs).join(", "),
            });
        }
        std::thread::sleep(INTERFACE_POLL);
    }
}

fn write_hosts(network: &GuestNetwork, root: Root) -> Result<(), NetworkError> {
    for (field, value) in [
        ("the hostname", &network.hostname),
        ("the host alias", &network.host_alias),
    ] {
        if !files::is_host_name(value) {
            return Err(NetworkError::InvalidName {
                field,
                value: value.clone(),
            });
        }
    }
    let image_hosts = match std::fs::read(HOSTS) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(NetworkError::Read {
                path: HOSTS.into(),
                source,
            })
        }
    };
    placement::place(HOSTS, &files::hosts(&image_hosts, network), root)
}
