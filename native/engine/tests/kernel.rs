//! Installing the real Debian cloud kernel. Both tests are opt-in because they need a Debian
//! package: `MSB_TEST_APT=1` downloads it with apt (network, root); `MSB_TEST_KERNEL_DEB`
//! names a `linux-image-*-cloud-amd64` .deb already on disk.

use msb_engine::kernel::{self, KernelArtifacts};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn scratch(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("msb-engine-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn module_names(kernel: &KernelArtifacts) -> Vec<String> {
    kernel
        .modules
        .iter()
        .map(|m| m.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// What any installed Debian cloud kernel must look like.
fn check_installed(cache: &Path, kernel: &KernelArtifacts) {
    let vmlinux = std::fs::read(&kernel.vmlinux).unwrap();
    assert!(vmlinux.starts_with(b"\x7fELF"), "vmlinux is an ELF file");
    assert!(
        vmlinux.len() > 20 << 20,
        "vmlinux is {} bytes",
        vmlinux.len()
    );
    let names = module_names(kernel);
    let position = |name: &str| {
        names
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{name} missing: {names:?}"))
    };
    assert!(position("virtio_ring.ko") < position("virtio.ko"));
    assert!(position("virtio.ko") < position("virtio_mmio.ko"));
    assert!(position("failover.ko") < position("net_failover.ko"));
    assert!(position("net_failover.ko") < position("virtio_net.ko"));
    assert!(position("fuse.ko") < position("virtiofs.ko"));
    assert!(position("libcrc32c.ko") < position("erofs.ko"));
    for name in [
        "virtio_console.ko",
        "virtio_blk.ko",
        "overlay.ko",
        "virtio-rng.ko",
        "virtio_balloon.ko",
    ] {
        position(name);
    }
    assert_eq!(kernel::find_installed(cache).as_ref(), Some(kernel));
    assert_eq!(
        kernel::install(cache, &mut |step| panic!("nothing to do, yet: {step}")).unwrap(),
        *kernel
    );
}

#[test]
#[ignore = "downloads from Debian's archive (./dev setup does this for real); run with --ignored"]
fn install_downloads_and_prepares_the_cloud_kernel_with_apt() {
    let cache = scratch("apt");
    let started = Instant::now();
    let kernel = kernel::install(&cache, &mut |step| eprintln!("install: {step}")).unwrap();
    eprintln!("installed {} in {:?}", kernel.release, started.elapsed());
    check_installed(&cache, &kernel);
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
#[ignore = "needs MSB_TEST_KERNEL_DEB, a linux-image-*-cloud-amd64 .deb; run with --ignored"]
fn install_from_deb_extracts_vmlinux_and_orders_modules() {
    let deb = std::env::var_os("MSB_TEST_KERNEL_DEB").expect("MSB_TEST_KERNEL_DEB");
    let cache = scratch("deb");
    let kernel = kernel::install_from_deb(&cache, Path::new(&deb), &mut |step| {
        eprintln!("install: {step}")
    })
    .unwrap();
    eprintln!("modules in load order: {}", module_names(&kernel).join(" "));
    check_installed(&cache, &kernel);
    let leftovers: Vec<_> = std::fs::read_dir(cache.join("kernel"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "only <release> and current remain: {leftovers:?}"
    );
    std::fs::remove_dir_all(&cache).unwrap();
}
