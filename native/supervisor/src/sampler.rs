//! The supervisor's metrics sampler: once a second, CPU and memory of the QEMU process, the
//! guest's memory (asked of the agent), disk bytes (QMP) and network bytes (the network loop),
//! written for readers to pick up.

use crate::controls::VmControls;
use crate::metrics::{self, MetricsSample, SAMPLE_INTERVAL};
use crate::paths::SandboxFiles;
use crate::relay::Relay;
use msb_net::gateway::Counters;
use msb_protocol::guest::{AgentMessage, HostMessage};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub struct Sampler {
    pub vmm_pid: u32,
    pub files: SandboxFiles,
    pub relay: Arc<Relay>,
    pub controls: Arc<VmControls>,
    /// The guest interface's bytes, counted by the network loop.
    pub network: Arc<Counters>,
}

pub fn spawn(sampler: Sampler) {
    std::thread::spawn(move || sampler.run());
}

impl Sampler {
    fn run(self) {
        let booted = Instant::now();
        let mut previous = (
            Instant::now(),
            metrics::process_cpu_seconds(self.vmm_pid).unwrap_or(0.0),
        );
        // A paused guest does not answer; its last memory figures stay valid meanwhile.
        let mut memory = (0, 0);
        loop {
            std::thread::sleep(SAMPLE_INTERVAL);
            let Some(cpu_seconds) = metrics::process_cpu_seconds(self.vmm_pid) else {
                return; // QEMU is gone: the supervisor is ending.
            };
            let now = Instant::now();
            let elapsed = now.duration_since(previous.0).as_secs_f64().max(1e-3);
            let cpu_percent = ((cpu_seconds - previous.1) / elapsed * 100.0).max(0.0);
            previous = (now, cpu_seconds);
            if let Some(AgentMessage::Stats {
                mem_total_bytes,
                mem_available_bytes,
            }) = self.relay.ask_agent(&HostMessage::Stats, SAMPLE_INTERVAL)
            {
                memory = (
                    mem_total_bytes.saturating_sub(mem_available_bytes),
                    mem_total_bytes,
                );
            }
            let (disk_read_bytes, disk_write_bytes) =
                self.controls.disk_bytes().unwrap_or_default();
            let sample = MetricsSample {
                cpu_percent,
                memory_bytes: memory.0,
                memory_limit_bytes: memory.1,
                host_rss_bytes: metrics::process_rss_bytes(self.vmm_pid).unwrap_or(0),
                disk_read_bytes,
                disk_write_bytes,
                net_rx_bytes: self.network.rx_bytes(),
                net_tx_bytes: self.network.tx_bytes(),
                uptime_ms: booted.elapsed().as_millis() as u64,
                sampled_at: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
            };
            // Metrics are informative: a failed write waits for the next sample.
            let _ = metrics::write(&self.files, &sample);
        }
    }
}
