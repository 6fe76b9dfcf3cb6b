//! What the bench reads of this machine and its processes (`/proc`), and the
//! cores it pins them to (`taskset`, from util-linux).

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// A process's user and system CPU time so far, from `/proc` (0 where there
/// is none). Linux counts it in ticks of 1/100 s.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<f64>().ok())
    };
    // utime and stime are the 14th and 15th fields of the whole line.
    ticks(11).unwrap_or(0.0) / 100.0 + ticks(12).unwrap_or(0.0) / 100.0
}

/// CPU time every process of the machine has used so far, all cores
/// together, from `/proc/stat` (user, nice, system, irq, softirq, steal), in
/// ticks of 1/100 s.
pub fn machine_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|line| line.starts_with("cpu ")) else {
        return 0.0;
    };
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().unwrap_or(0.0))
        .collect();
    // Not idle (3) and iowait (4), nor guest time, already counted in user.
    [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|index| ticks.get(*index))
        .sum::<f64>()
        / 100.0
}

/// A process's resident memory, from `/proc` (0 where there is none).
pub fn resident_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| kib_field(&status, "VmRSS:"))
        .unwrap_or(0)
}

/// The machine's memory, and how much of it is still available, in bytes.
pub fn memory() -> (u64, u64) {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name| kib_field(&info, name).unwrap_or(0);
    (field("MemTotal:"), field("MemAvailable:"))
}

/// `Name:   1234 kB` in a `/proc` file, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with(name))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// The cores this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The hard limit of open files: what any process here can raise its own to.
pub fn open_file_limit() -> Result<u64> {
    let (_, hard) =
        rlimit::getrlimit(rlimit::Resource::NOFILE).context("cannot read the open file limit")?;
    Ok(hard)
}

/// Moves every thread of process `pid` to `core`; threads it starts later
/// inherit it.
pub fn pin(pid: u32, core: usize) -> Result<()> {
    let status = Command::new("taskset")
        .args(["--all-tasks", "--pid", "--cpu-list"])
        .args([core.to_string(), pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("cannot run taskset (Debian's util-linux)")?;
    if !status.success() {
        bail!("taskset could not pin process {pid} to core {core} ({status})");
    }
    Ok(())
}

/// Wall-clock microseconds since the Unix epoch: the one clock every process
/// of a run reads alike, so a send in one and a receipt in another compare.
pub fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_time() {
        let me = std::process::id();
        assert!(resident_bytes(me) > 0);
        assert!(cpu_seconds(me) >= 0.0);
        assert!(machine_cpu_seconds() >= cpu_seconds(me));
        let (total, available) = memory();
        assert!(total >= available && available > 0, "{total} {available}");
    }

    #[test]
    fn a_process_that_is_not_there_reads_as_nothing() {
        assert_eq!(resident_bytes(u32::MAX), 0);
        assert_eq!(cpu_seconds(u32::MAX), 0.0);
    }
}
