use super::{CollectError, NodeConfig};
use crate::exposition::Family;

const STA_NANO: i32 = 0x2000;
const TIME_ERROR: i32 = 5;
const PPM16FRAC: f64 = 1_000_000.0 * 65536.0;

pub fn collect(_cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    // SAFETY: modes = 0 only reads the kernel clock state into the zeroed struct.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let status = unsafe { libc::adjtimex(&mut tx) };
    if status < 0 {
        return Err(CollectError::Other(format!(
            "adjtimex: {}",
            std::io::Error::last_os_error()
        )));
    }
    let divisor = if tx.status & STA_NANO != 0 { 1e9 } else { 1e6 };
    let g = |name: &str, help: &str, v: f64| {
        Family::gauge(format!("node_timex_{name}"), help).with(&[], v)
    };
    let c = |name: &str, help: &str, v: f64| {
        Family::counter(format!("node_timex_{name}"), help).with(&[], v)
    };
    out.extend([
        g(
            "sync_status",
            "Is clock synchronized to a reliable server (1 = yes, 0 = no).",
            if status == TIME_ERROR { 0.0 } else { 1.0 },
        ),
        g(
            "offset_seconds",
            "Time offset in between local system and reference clock.",
            tx.offset as f64 / divisor,
        ),
        g(
            "frequency_adjustment_ratio",
            "Local clock frequency adjustment.",
            1.0 + tx.freq as f64 / PPM16FRAC,
        ),
        g(
            "maxerror_seconds",
            "Maximum error in seconds.",
            tx.maxerror as f64 / 1e6,
        ),
        g(
            "estimated_error_seconds",
            "Estimated error in seconds.",
            tx.esterror as f64 / 1e6,
        ),
        g(
            "status",
            "Value of the status array bits.",
            tx.status as f64,
        ),
        g(
            "loop_time_constant",
            "Phase-locked loop time constant.",
            tx.constant as f64,
        ),
        g(
            "tick_seconds",
            "Seconds between clock ticks.",
            tx.tick as f64 / 1e6,
        ),
        g(
            "pps_frequency_hertz",
            "Pulse per second frequency.",
            tx.ppsfreq as f64 / PPM16FRAC,
        ),
        g(
            "pps_jitter_seconds",
            "Pulse per second jitter.",
            tx.jitter as f64 / divisor,
        ),
        g(
            "pps_shift_seconds",
            "Pulse per second interval duration.",
            tx.shift as f64,
        ),
        g(
            "pps_stability_hertz",
            "Pulse per second stability, average of recent frequency changes.",
            tx.stabil as f64 / PPM16FRAC,
        ),
        c(
            "pps_jitter_total",
            "Pulse per second count of jitter limit exceeded events.",
            tx.jitcnt as f64,
        ),
        c(
            "pps_calibration_total",
            "Pulse per second count of calibration intervals.",
            tx.calcnt as f64,
        ),
        c(
            "pps_error_total",
            "Pulse per second count of calibration errors.",
            tx.errcnt as f64,
        ),
        c(
            "pps_stability_exceeded_total",
            "Pulse per second count of stability limit exceeded events.",
            tx.stbcnt as f64,
        ),
        g(
            "tai_offset_seconds",
            "International Atomic Time (TAI) offset.",
            tx.tai as f64,
        ),
    ]);
    Ok(())
}
