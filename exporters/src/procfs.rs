//! Small, typed readers for /proc and /sys files shared by the exporters.
//! Every function takes the file's full path so collectors can run against
//! a fixture tree (`--path.procfs`, `--path.sysfs`).

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("parsing {path}: {msg}")]
    Parse { path: PathBuf, msg: String },
}

impl ReadError {
    pub fn parse(path: &Path, msg: impl Into<String>) -> Self {
        ReadError::Parse {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
    /// True when the file or process simply is not there (vanished process, absent feature).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io { source, .. }
            if source.kind() == io::ErrorKind::NotFound || source.raw_os_error() == Some(libc::ESRCH))
    }
}

/// Reads a whole file. Unlike `fs::read_to_string` it skips the size probe
/// (statx), which is useless for /proc and /sys and costs a syscall per file.
pub fn read_string(path: &Path) -> Result<String, ReadError> {
    use std::io::Read;
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut text = String::with_capacity(1024);
    file.read_to_string(&mut text).map_err(io)?;
    Ok(text)
}

pub fn read_trimmed(path: &Path) -> Result<String, ReadError> {
    Ok(read_string(path)?.trim().to_string())
}

pub fn parse_num<T: std::str::FromStr>(path: &Path, s: &str) -> Result<T, ReadError> {
    s.trim()
        .parse()
        .map_err(|_| ReadError::parse(path, format!("not a number: {s:?}")))
}

pub fn read_u64(path: &Path) -> Result<u64, ReadError> {
    let s = read_string(path)?;
    parse_num(path, &s)
}

/// Kernel clock ticks per second (USER_HZ).
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// System boot time in seconds since the epoch, from `btime` in /proc/stat.
pub fn boot_time(proc_root: &Path) -> Result<f64, ReadError> {
    let path = proc_root.join("stat");
    let text = read_string(&path)?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .ok_or_else(|| ReadError::parse(&path, "no btime line"))
        .and_then(|v| parse_num(&path, v))
}

/// The fields of /proc/PID/stat that the exporters use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcStat {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub minflt: u64,
    pub majflt: u64,
    /// Clock ticks.
    pub utime: u64,
    pub stime: u64,
    pub num_threads: u64,
    /// Clock ticks since boot.
    pub starttime: u64,
    pub vsize: u64,
    /// Pages.
    pub rss: u64,
}

/// Parses /proc/PID/stat. `comm` may contain spaces and parentheses, so the
/// fields after it are found from the last `)`.
pub fn parse_stat(path: &Path, text: &str) -> Result<ProcStat, ReadError> {
    let open = text
        .find('(')
        .ok_or_else(|| ReadError::parse(path, "no '(' in stat"))?;
    let close = text
        .rfind(')')
        .ok_or_else(|| ReadError::parse(path, "no ')' in stat"))?;
    if close < open {
        return Err(ReadError::parse(path, "malformed comm"));
    }
    let pid = parse_num(path, &text[..open])?;
    let comm = text[open + 1..close].to_string();
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    let field = |n: usize| -> Result<u64, ReadError> {
        rest.get(n - 3)
            .ok_or_else(|| ReadError::parse(path, format!("stat has no field {n}")))
            .and_then(|v| parse_num(path, v))
    };
    let state = rest
        .first()
        .and_then(|s| s.chars().next())
        .ok_or_else(|| ReadError::parse(path, "no state"))?;
    let ppid = rest
        .get(1)
        .ok_or_else(|| ReadError::parse(path, "no ppid"))
        .and_then(|v| parse_num(path, v))?;
    Ok(ProcStat {
        pid,
        comm,
        state,
        ppid,
        minflt: field(10)?,
        majflt: field(12)?,
        utime: field(14)?,
        stime: field(15)?,
        num_threads: field(20)?,
        starttime: field(22)?,
        vsize: field(23)?,
        rss: field(24)?,
    })
}

/// Fields of /proc/PID/status the exporters use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcStatus {
    pub voluntary_ctxt_switches: u64,
    pub nonvoluntary_ctxt_switches: u64,
    /// Bytes.
    pub vm_swap: u64,
    pub uid: Option<u32>,
}

pub fn parse_status(text: &str) -> ProcStatus {
    let mut s = ProcStatus::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let first = value.split_whitespace().next().unwrap_or("");
        match key {
            "voluntary_ctxt_switches" => s.voluntary_ctxt_switches = first.parse().unwrap_or(0),
            "nonvoluntary_ctxt_switches" => {
                s.nonvoluntary_ctxt_switches = first.parse().unwrap_or(0)
            }
            "VmSwap" => s.vm_swap = first.parse::<u64>().unwrap_or(0).saturating_mul(1024),
            "Uid" => s.uid = first.parse().ok(),
            _ => {}
        }
    }
    s
}

/// `read_bytes` and `write_bytes` of /proc/PID/io.
pub fn parse_io(text: &str) -> (u64, u64) {
    let mut read = 0;
    let mut write = 0;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("read_bytes:") {
            read = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("write_bytes:") {
            write = v.trim().parse().unwrap_or(0);
        }
    }
    (read, write)
}

/// Soft limit of "Max open files" in /proc/PID/limits (None = unlimited).
pub fn parse_max_fds(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
}

/// Number of entries in /proc/PID/fd.
pub fn count_fds(dir: &Path) -> Result<u64, ReadError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ReadError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(entries.count() as u64)
}

/// A directory held open so its files are opened relative to it (openat):
/// reading many files of one /proc/PID or /sys device then skips the path
/// walk, which is most of the cost of opening such a file.
pub struct Dir {
    fd: std::os::fd::OwnedFd,
    path: PathBuf,
}

impl Dir {
    pub fn open(path: &Path) -> Result<Dir, ReadError> {
        let fd = open_at(
            libc::AT_FDCWD,
            path.as_os_str().as_encoded_bytes(),
            libc::O_PATH | libc::O_DIRECTORY,
        )
        .map_err(|source| ReadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// A subdirectory, opened relative to this one.
    pub fn sub(&self, name: &str) -> Result<Dir, ReadError> {
        use std::os::fd::AsRawFd;
        let fd = open_at(
            self.fd.as_raw_fd(),
            name.as_bytes(),
            libc::O_PATH | libc::O_DIRECTORY,
        )
        .map_err(|source| self.io_error(name, source))?;
        Ok(Dir {
            fd,
            path: self.path.join(name),
        })
    }

    /// The whole contents of `name` in this directory.
    pub fn read(&self, name: &str) -> Result<String, ReadError> {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let fd = open_at(self.fd.as_raw_fd(), name.as_bytes(), libc::O_RDONLY)
            .map_err(|source| self.io_error(name, source))?;
        let mut file = std::fs::File::from(fd);
        let mut text = String::with_capacity(1024);
        file.read_to_string(&mut text)
            .map_err(|source| self.io_error(name, source))?;
        Ok(text)
    }

    /// The trimmed contents of `name`, or None if unreadable.
    pub fn read_trimmed(&self, name: &str) -> Option<String> {
        self.read(name).ok().map(|s| s.trim().to_string())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_error(&self, name: &str, source: io::Error) -> ReadError {
        ReadError::Io {
            path: self.path.join(name),
            source,
        }
    }
}

fn open_at(dir: libc::c_int, name: &[u8], flags: libc::c_int) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let c =
        std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: c is NUL-terminated and dir is a valid fd or AT_FDCWD; a
    // non-negative return is a new fd that we own.
    let fd = unsafe { libc::openat(dir, c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Sorted entry names of a directory (e.g. /sys/class/net).
pub fn list_dir(dir: &Path) -> Result<Vec<String>, ReadError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ReadError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Numeric entries of /proc.
pub fn list_pids(proc_root: &Path) -> Result<Vec<i32>, ReadError> {
    let entries = std::fs::read_dir(proc_root).map_err(|source| ReadError::Io {
        path: proc_root.to_path_buf(),
        source,
    })?;
    let mut pids: Vec<i32> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_comm() {
        let line = "1234 (my (weird) proc) S 1 1234 1234 0 -1 4194560 500 0 3 0 120 30 0 0 20 0 7 0 9000 123456789 2500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let s = parse_stat(Path::new("x"), line).unwrap();
        assert_eq!(s.comm, "my (weird) proc");
        assert_eq!((s.state, s.ppid, s.minflt, s.majflt), ('S', 1, 500, 3));
        assert_eq!(
            (s.utime, s.stime, s.num_threads, s.starttime),
            (120, 30, 7, 9000)
        );
        assert_eq!((s.vsize, s.rss), (123456789, 2500));
    }

    #[test]
    fn stat_garbage_is_an_error() {
        for bad in ["", "12", "12 (x", "x) (", "1 (a) S"] {
            assert!(parse_stat(Path::new("x"), bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn huge_values_do_not_overflow() {
        // Found by the proc_stat fuzz target.
        assert_eq!(
            parse_status("VmSwap: 18446744073709551615 kB\n").vm_swap,
            u64::MAX
        );
    }

    #[test]
    fn limits() {
        let t = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(t), Some(1024));
    }
}
