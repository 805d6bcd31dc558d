//! Messages between the host and the guest agent.
//!
//! A request id is chosen by the host. Every agent message about that request carries the same
//! id; the last one carries [`crate::FLAG_END`]. Id 0 is reserved for the hello handshake.

use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Request id of the hello handshake, the first frame in each direction.
pub const HELLO_ID: u32 = 0;

/// Everything sandbox-specific the agent needs to finish booting. It travels in the hello
/// rather than on the kernel command line so that a guest restored from a template (a
/// snapshot taken while the agent waited for its first hello) gets its own: the template's
/// command line is the same for every sandbox of its shape.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestBoot {
    pub root: GuestRoot,
    /// The kernel hostname.
    pub hostname: String,
    /// Bytes from the host's random source, mixed into the guest kernel's entropy pool and
    /// made to reseed its generator before anything else runs: guests restored from one
    /// template would otherwise share the random state the template was saved with.
    #[serde(with = "serde_bytes")]
    pub entropy: Vec<u8>,
}

impl std::fmt::Debug for GuestBoot {
    /// Leaves the entropy out: it seeds the guest's keys and has no business in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestBoot")
            .field("root", &self.root)
            .field("hostname", &self.hostname)
            .field("entropy", &format_args!("[{} bytes]", self.entropy.len()))
            .finish()
    }
}

/// Where the sandbox's root file system comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GuestRoot {
    /// A host directory shared with virtio-fs under this tag.
    Virtiofs { tag: String },
    /// virtio-blk disks, named by their serial: read-only lowers (top-most first) joined by
    /// overlayfs over a writable upper disk.
    Overlay {
        lowers: Vec<GuestLower>,
        upper: String,
    },
}

/// One read-only lower disk of an overlay root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestLower {
    /// The disk's virtio-blk serial.
    pub serial: String,
    /// The file system to mount it with; `None` means detect it from the superblock.
    pub fstype: Option<crate::filesystem::DiskFilesystem>,
}

/// Host → agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostMessage {
    /// First frame of a connection. Carries the host's wall clock, because the guest has no
    /// RTC, what the guest boots into (the first hello of a boot; later ones repeat it and
    /// the agent ignores it), and the guest's network.
    Hello {
        version: u32,
        unix_time_ns: u64,
        boot: GuestBoot,
        /// `None`: the sandbox has no network interface. Added within version 2 without a
        /// bump, being compatible both ways: a hello without it decodes as `None`, and an
        /// agent that does not know it ignores it (like any unknown field).
        #[serde(default)]
        network: Option<GuestNetwork>,
        /// The PEM certificate of the CA that signs intercepted TLS flows, which the agent adds
        /// to the guest's trust stores; `None`: no interception. Added within version 2 the
        /// same way as `network`.
        #[serde(default)]
        tls_ca_pem: Option<String>,
    },
    Ping,
    /// Starts a process. Stdin, resize and signal frames for it use the same request id.
    Exec(ExecRequest),
    Stdin {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// End of input for the process (EOF on its stdin; for a PTY, the terminal's EOF key).
    CloseStdin,
    /// Delivers a signal to the process group of the request's process.
    Signal {
        signal: i32,
    },
    /// New terminal size for a PTY process.
    Resize {
        rows: u16,
        cols: u16,
    },
    /// Orderly shutdown: the agent stops processes, syncs and unmounts file systems, then
    /// powers the VM off.
    Shutdown,
    /// The guest's view of its resources (answered with `Stats`).
    Stats,
    /// A file system operation in the guest (see [`FsRequest`] for each one's answers).
    Fs(FsRequest),
    /// Data of a [`FsRequest::Write`], under the write's request id, sent only after the
    /// agent answered `FsReady`.
    FsChunk {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// End of a write's data: the agent flushes the file and answers `FsWritten`.
    FsFinish,
    /// Mounts a volume in the guest (sent by the supervisor after the hello, before any
    /// client's request). Answered with `Done` or an error.
    Mount(MountRequest),
}

/// How the guest's network interface is set up; sent in the hello and applied before the
/// agent answers it, so the network is up when the sandbox is reported ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestNetwork {
    /// The MAC QEMU gives the virtio-net device. The agent finds the interface by it, not by
    /// a name such as `eth0`.
    pub mac: [u8; 6],
    /// The guest's IPv4 address, e.g. 172.16.0.2.
    #[serde(with = "ipv4_octets")]
    pub address: Ipv4Addr,
    /// The prefix length of the guest's link, e.g. 30.
    pub prefix_len: u8,
    /// The host's end of the link: the default route and the only nameserver.
    #[serde(with = "ipv4_octets")]
    pub gateway: Ipv4Addr,
    pub mtu: u16,
    /// The sandbox's name for its address in `/etc/hosts` (the kernel hostname comes from
    /// [`GuestBoot::hostname`], which every sandbox has, networked or not).
    pub hostname: String,
    /// The name `/etc/hosts` gives the gateway, e.g. `host.msb.internal`.
    pub host_alias: String,
    /// The guest's IPv6 address and default route, present only when the host has an IPv6
    /// route (absent from the hellos of older supervisors).
    #[serde(default)]
    pub ipv6: Option<GuestIpv6>,
}

/// The IPv6 side of the guest's interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestIpv6 {
    /// The guest's address, e.g. `fd6d:7362:0:1::2`.
    #[serde(with = "ipv6_octets")]
    pub address: Ipv6Addr,
    /// The prefix length of the link, e.g. 64.
    pub prefix_len: u8,
    /// The default route's next hop, e.g. `fd6d:7362:0:1::1`.
    #[serde(with = "ipv6_octets")]
    pub gateway: Ipv6Addr,
}

/// An IPv4 address as its four octets. Serde's own encoding depends on the format's
/// `is_human_readable`, and a message inside an internally tagged enum (all of ours) is
/// decoded from serde's buffered content, which claims to be human-readable: the octets
/// MessagePack was given would then be read as a string, and fail.
mod ipv4_octets {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::net::Ipv4Addr;

    pub fn serialize<S: Serializer>(address: &Ipv4Addr, serializer: S) -> Result<S::Ok, S::Error> {
        address.octets().serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Ipv4Addr, D::Error> {
        <[u8; 4]>::deserialize(deserializer).map(Ipv4Addr::from)
    }
}

/// An IPv6 address as its sixteen octets, for the reason of [`ipv4_octets`].
mod ipv6_octets {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::net::Ipv6Addr;

    pub fn serialize<S: Serializer>(address: &Ipv6Addr, serializer: S) -> Result<S::Ok, S::Error> {
        address.octets().serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Ipv6Addr, D::Error> {
        <[u8; 16]>::deserialize(deserializer).map(Ipv6Addr::from)
    }
}

/// File system operations. Paths are absolute guest paths. Answers end with
/// [`crate::FLAG_END`]; any of them can instead be an `Error` of kind `PathNotFound` or
/// `Filesystem` (with the guest errno).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FsRequest {
    /// Metadata of one path (`lstat` unless `follow`). Answer: `FsEntries` with one entry.
    Stat { path: String, follow: bool },
    /// The entries of a directory, sorted by name, without `.` and `..`. Answer: zero or
    /// more `FsEntries` frames, then `Done`.
    List { path: String },
    /// A file's bytes from `offset`, at most `length` of them (all when `None`). Answer:
    /// `FsData` frames of at most [`crate::MAX_PAYLOAD_CHUNK`] bytes, then `Done`.
    Read {
        path: String,
        offset: u64,
        length: Option<u64>,
    },
    /// Opens a file for writing (created with `mode`, default 0644; truncated unless
    /// `append`), creating missing parent directories when `create_parents`. Answer: `FsReady`,
    /// after which the host sends `FsChunk`s and `FsFinish`; then `FsWritten`.
    Write {
        path: String,
        mode: Option<u32>,
        append: bool,
        create_parents: bool,
    },
    /// Creates a directory (and its missing parents with `parents`; an existing directory is
    /// then no error). Answer: `Done`.
    Mkdir {
        path: String,
        mode: Option<u32>,
        parents: bool,
    },
    /// Removes a file, a symlink or an empty directory; a whole tree with `recursive`.
    /// Answer: `Done`.
    Remove { path: String, recursive: bool },
    /// `rename(2)`. Answer: `Done`.
    Rename { from: String, to: String },
    /// Copies a file, or a directory tree, inside the guest, keeping modes. Answer: `Done`.
    Copy { from: String, to: String },
    /// Creates a symbolic link at `link` pointing to `target`. Answer: `Done`.
    Symlink { target: String, link: String },
    /// Changes the permission bits of a path. Answer: `Done`.
    Chmod { path: String, mode: u32 },
    /// Space of the file system holding `path` (`statvfs`). Answer: `FsUsage`.
    Usage { path: String },
}

/// A volume for [`HostMessage::Mount`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRequest {
    /// Absolute guest path; created (with parents) when missing.
    pub target: String,
    pub source: MountSource,
    pub readonly: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MountSource {
    /// A virtio-blk disk found by its serial; `fstype` `None` means detect it from the
    /// superblock.
    Disk {
        serial: String,
        fstype: Option<String>,
    },
    /// A virtio-fs share by its tag.
    Virtiofs { tag: String },
    /// A fresh tmpfs, of at most `size_mib` (the kernel's default, half the RAM, if `None`).
    Tmpfs { size_mib: Option<u32> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsEntryKind {
    File,
    Directory,
    Symlink,
    Other,
}

/// One path's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsEntry {
    /// Absolute guest path.
    pub path: String,
    pub kind: FsEntryKind,
    pub size: u64,
    /// Permission bits and the set-id/sticky bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Last modification, milliseconds since the Unix epoch.
    pub modified_ms: i64,
    pub uid: u32,
    pub gid: u32,
    /// Where a symlink points.
    pub link_target: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// Program to run; looked up in `PATH` (from `env`, else a default) when it has no `/`.
    pub program: String,
    pub args: Vec<String>,
    /// Environment of the process, on top of the agent's defaults (`PATH`, `HOME`, `TERM`).
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    /// Wall-clock limit; on expiry the agent kills the process group with SIGKILL and reports
    /// `timed_out`.
    pub timeout_ms: Option<u64>,
    /// Keep stdin open for `Stdin` frames; otherwise stdin is `/dev/null`.
    pub stdin: bool,
    /// Run on a new pseudo-terminal of this size instead of pipes. Output then arrives as
    /// `Stdout` only.
    pub tty: Option<TerminalSize>,
    /// User name or numeric uid (optionally `user:group`) to run as.
    pub user: Option<String>,
    pub rlimits: Vec<ResourceLimit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    pub rows: u16,
    pub cols: u16,
}

/// A POSIX resource limit, applied with `setrlimit` before the program starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLimit {
    /// Lower-case name without the `RLIMIT_` prefix: `nofile`, `cpu`, `as`, ...
    pub resource: String,
    pub soft: u64,
    pub hard: u64,
}

/// Agent → host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    /// Sent by an agent that has not booted yet each time a host connects: it has loaded
    /// only what the channel needs, touched no disk and no sandbox data, and waits for the
    /// hello. A host building a template saves the VM at this point.
    AwaitingHello,
    Hello {
        version: u32,
        agent_version: String,
        kernel_release: String,
    },
    Pong,
    Started {
        pid: u32,
    },
    Stdout {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    Stderr {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The process ended (always with [`crate::FLAG_END`]). Exactly one of `code` and `signal`
    /// is set.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
        timed_out: bool,
    },
    /// The request failed (always with [`crate::FLAG_END`]).
    Error(AgentError),
    /// Sent just before the agent powers the VM off.
    ShutdownAck,
    /// Answer to `Stats`, from the guest's /proc/meminfo.
    Stats {
        mem_total_bytes: u64,
        mem_available_bytes: u64,
    },
    /// The request was carried out (always with [`crate::FLAG_END`]).
    Done,
    /// Metadata of paths (`Stat`, `List`).
    FsEntries {
        entries: Vec<FsEntry>,
    },
    /// File bytes (`Read`).
    FsData {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The file of a `Write` is open: send its data.
    FsReady,
    /// A `Write` finished: this many bytes were written (always with [`crate::FLAG_END`]).
    FsWritten {
        bytes: u64,
    },
    /// Answer to `Usage`.
    FsUsage {
        total_bytes: u64,
        free_bytes: u64,
        available_bytes: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentError {
    pub kind: AgentErrorKind,
    pub message: String,
    /// The guest's errno, when the failure came from a system call.
    pub errno: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentErrorKind {
    /// The program does not exist in the guest.
    CommandNotFound,
    /// The program exists but cannot be executed (mode, format).
    NotExecutable,
    /// The working directory does not exist or is not a directory.
    InvalidCwd,
    /// The user to run as does not exist in the guest.
    UnknownUser,
    /// The request makes no sense (unknown id, bad rlimit name, ...).
    InvalidRequest,
    /// The peer speaks another protocol version.
    VersionMismatch,
    /// A file system operation named a path that does not exist (`ENOENT`).
    PathNotFound,
    /// Any other failed file system operation or mount; `errno` says why.
    Filesystem,
    /// Any other failure of the agent.
    Internal,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Frame;

    #[test]
    fn exec_request_round_trips() {
        let request = HostMessage::Exec(ExecRequest {
            program: "echo".into(),
            args: vec!["hi".into()],
            env: vec![("A".into(), "b".into())],
            cwd: Some("/tmp".into()),
            timeout_ms: Some(1000),
            stdin: true,
            tty: Some(TerminalSize { rows: 24, cols: 80 }),
            user: None,
            rlimits: vec![ResourceLimit {
                resource: "nofile".into(),
                soft: 64,
                hard: 64,
            }],
        });
        let frame = Frame::new(3, 0, &request).unwrap();
        assert_eq!(frame.decode::<HostMessage>().unwrap(), request);
    }

    #[test]
    fn fs_messages_round_trip() {
        let requests = [
            HostMessage::Fs(FsRequest::Write {
                path: "/tmp/a b".into(),
                mode: Some(0o600),
                append: true,
                create_parents: false,
            }),
            HostMessage::Mount(MountRequest {
                target: "/data".into(),
                source: MountSource::Disk {
                    serial: "vol0".into(),
                    fstype: None,
                },
                readonly: true,
            }),
        ];
        for request in requests {
            let frame = Frame::new(5, 0, &request).unwrap();
            assert_eq!(frame.decode::<HostMessage>().unwrap(), request);
        }
        let answer = AgentMessage::FsEntries {
            entries: vec![FsEntry {
                path: "/etc".into(),
                kind: FsEntryKind::Directory,
                size: 4096,
                mode: 0o755,
                modified_ms: 1_700_000_000_000,
                uid: 0,
                gid: 0,
                link_target: None,
            }],
        };
        let frame = Frame::new(5, 0, &answer).unwrap();
        assert_eq!(frame.decode::<AgentMessage>().unwrap(), answer);
    }

    fn guest_network() -> GuestNetwork {
        GuestNetwork {
            mac: [0x02, 0x6d, 0x73, 0x62, 0x00, 0x01],
            address: Ipv4Addr::new(172, 16, 0, 2),
            prefix_len: 30,
            gateway: Ipv4Addr::new(172, 16, 0, 1),
            mtu: 1500,
            hostname: "web".into(),
            host_alias: "host.msb.internal".into(),
            ipv6: None,
        }
    }

    fn guest_network_with_ipv6() -> GuestNetwork {
        GuestNetwork {
            ipv6: Some(GuestIpv6 {
                address: "fd6d:7362:0:1::2".parse().unwrap(),
                prefix_len: 64,
                gateway: "fd6d:7362:0:1::1".parse().unwrap(),
            }),
            ..guest_network()
        }
    }

    fn guest_boot() -> GuestBoot {
        GuestBoot {
            root: GuestRoot::Overlay {
                lowers: vec![
                    GuestLower {
                        serial: "layer0".into(),
                        fstype: Some(crate::filesystem::DiskFilesystem::Erofs),
                    },
                    GuestLower {
                        serial: "layer1".into(),
                        fstype: None,
                    },
                ],
                upper: "upper".into(),
            },
            hostname: "web".into(),
            entropy: vec![7; 64],
        }
    }

    #[test]
    fn a_hello_with_its_boot_and_network_round_trips() {
        for network in [Some(guest_network()), Some(guest_network_with_ipv6()), None] {
            let hello = HostMessage::Hello {
                version: crate::PROTOCOL_VERSION,
                unix_time_ns: 1_700_000_000_000_000_000,
                boot: guest_boot(),
                network,
                tls_ca_pem: Some("-----BEGIN CERTIFICATE-----\n".into()),
            };
            let frame = Frame::new(HELLO_ID, crate::FLAG_END, &hello).unwrap();
            assert_eq!(frame.decode::<HostMessage>().unwrap(), hello);
        }
    }

    #[test]
    fn a_virtiofs_root_round_trips() {
        let boot = GuestBoot {
            root: GuestRoot::Virtiofs { tag: "root".into() },
            ..guest_boot()
        };
        let frame = Frame::new(HELLO_ID, crate::FLAG_END, &boot).unwrap();
        assert_eq!(frame.decode::<GuestBoot>().unwrap(), boot);
    }

    #[test]
    fn the_boot_entropy_stays_out_of_debug_output() {
        let shown = format!("{:?}", guest_boot());
        assert!(shown.contains("[64 bytes]"), "{shown}");
        assert!(!shown.contains("7, 7"), "{shown}");
    }

    #[test]
    fn awaiting_hello_round_trips() {
        let frame = Frame::new(HELLO_ID, crate::FLAG_END, &AgentMessage::AwaitingHello).unwrap();
        assert_eq!(
            frame.decode::<AgentMessage>().unwrap(),
            AgentMessage::AwaitingHello
        );
    }

    #[test]
    fn binary_output_is_compact() {
        let data = vec![0xffu8; 4096];
        let frame = Frame::new(1, 0, &AgentMessage::Stdout { data }).unwrap();
        assert!(
            frame.body.len() < 4096 + 32,
            "bytes must not be encoded as an array of ints"
        );
    }
}
