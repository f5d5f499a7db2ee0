use super::{CollectError, NodeConfig};
use crate::exposition::Family;
use std::ffi::CStr;

pub fn collect(_cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    // SAFETY: utsname is plain data; uname fills it or fails.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return Err(CollectError::Other(format!(
            "uname: {}",
            std::io::Error::last_os_error()
        )));
    }
    let field = |f: &[libc::c_char]| {
        // SAFETY: the kernel NUL-terminates every utsname field.
        unsafe { CStr::from_ptr(f.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    let (sysname, nodename, release, version, machine, domainname) = (
        field(&u.sysname),
        field(&u.nodename),
        field(&u.release),
        field(&u.version),
        field(&u.machine),
        field(&u.domainname),
    );
    out.push(
        Family::gauge(
            "node_uname_info",
            "Labeled system information as provided by the uname system call.",
        )
        .with(
            &[
                ("sysname", &sysname),
                ("release", &release),
                ("version", &version),
                ("machine", &machine),
                ("nodename", &nodename),
                ("domainname", &domainname),
            ],
            1.0,
        ),
    );
    Ok(())
}
