//! The QMP client against a real QEMU: a paused microvm without a kernel (`-S` never runs the
//! guest, so none is needed).

use msb_engine::qemu;
use msb_engine::qmp::{Qmp, QmpError};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills QEMU when the test ends, passing or not.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_exit(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn qmp_controls_a_paused_qemu_and_quits_it() {
    let binary = qemu::find_qemu().expect("QEMU is installed by ./dev setup");
    let dir = std::env::temp_dir().join(format!("msb-engine-qmp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket: PathBuf = dir.join("qmp.sock");
    let child = Command::new(&binary)
        .args([
            "-M",
            "microvm",
            "-accel",
            "tcg",
            "-nodefaults",
            "-nographic",
            "-S",
            "-qmp",
        ])
        .arg(format!("unix:{},server=on,wait=off", socket.display()))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut qemu = Guard(child);

    let mut qmp = Qmp::connect(&socket, Duration::from_secs(10)).unwrap();
    assert_eq!(qmp.query_status().unwrap(), "prelaunch");
    qmp.cont().unwrap();
    assert_eq!(qmp.query_status().unwrap(), "running");
    qmp.stop().unwrap();
    assert_eq!(qmp.query_status().unwrap(), "paused");
    assert_eq!(qmp.block_stats().unwrap(), []);
    let error = qmp.execute("no-such-command", None).unwrap_err();
    assert!(
        matches!(&error, QmpError::Command { class, .. } if class == "CommandNotFound"),
        "{error}"
    );
    let name = qmp.execute("query-name", None).unwrap();
    assert!(name.is_object(), "{name}");
    qmp.quit().unwrap();
    assert!(
        wait_for_exit(&mut qemu.0, Duration::from_secs(10)),
        "QEMU exits after quit"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
