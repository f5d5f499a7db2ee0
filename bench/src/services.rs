//! The real services the service exporters read, started in a temp dir for
//! the benchmark (PostgreSQL, nginx, slapd), stopped on drop.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const LDAP_DN: &str = "cn=admin,dc=carbonio,dc=test";
pub const LDAP_PW: &str = "bench-secret";

pub struct Service {
    pub port: u16,
    child: Option<Child>,
    stop: Option<Vec<String>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(cmd) = &self.stop {
            let _ = Command::new(&cmd[0]).args(&cmd[1..]).output();
        }
        if let Some(c) = self.child.as_mut() {
            // SIGTERM so nginx stops its workers too; SIGKILL as a fallback.
            if let Ok(pid) = i32::try_from(c.id()) {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(pid, libc::SIGTERM) };
                for _ in 0..100 {
                    if matches!(c.try_wait(), Ok(Some(_))) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait(what: &str, mut ready: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what} did not become ready in 30 s")
}

fn spawn_logged(bin: &Path, args: &[String], log: &Path) -> Result<Child> {
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

fn pg_bin(name: &str) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL not installed: install the Debian package postgresql")?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found
        .pop()
        .with_context(|| format!("{name} not found: install the Debian package postgresql"))
}

pub fn postgres(dir: &Path, port: u16) -> Result<Service> {
    let data = dir.join("pgdata");
    std::fs::create_dir_all(dir)?;
    let chown = Command::new("chown")
        .args(["postgres:postgres"])
        .arg(dir)
        .status()?;
    if !chown.success() {
        bail!("chown {} to postgres failed", dir.display());
    }
    let as_pg = |args: Vec<String>| -> Result<()> {
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .args(&args)
            .output()?;
        if !out.status.success() {
            bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    let d = data.display().to_string();
    as_pg(vec![
        pg_bin("initdb")?.display().to_string(),
        "-D".into(),
        d.clone(),
        "-U".into(),
        "postgres".into(),
        "--auth=trust".into(),
        "-E".into(),
        "UTF8".into(),
        "--locale=C.UTF-8".into(),
    ])?;
    let pg_ctl = pg_bin("pg_ctl")?.display().to_string();
    as_pg(vec![
        pg_ctl.clone(),
        "-D".into(),
        d.clone(),
        "-l".into(),
        dir.join("postgres.log").display().to_string(),
        "-w".into(),
        "start".into(),
        "-o".into(),
        format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {}",
            dir.display()
        ),
    ])?;
    Ok(Service {
        port,
        child: None,
        stop: Some(vec![
            "runuser".into(),
            "-u".into(),
            "postgres".into(),
            "--".into(),
            pg_ctl,
            "-D".into(),
            d,
            "-m".into(),
            "immediate".into(),
            "stop".into(),
        ]),
    })
}

pub fn nginx(dir: &Path, port: u16) -> Result<Service> {
    std::fs::create_dir_all(dir)?;
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/client_body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         server {{\n    listen 127.0.0.1:{port};\n    location = /stub_status {{ stub_status; }}\n  }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf)?;
    let args = vec![
        "-e".to_string(),
        format!("{d}/error.log"),
        "-p".into(),
        d.to_string(),
        "-c".into(),
        format!("{d}/nginx.conf"),
    ];
    let child = spawn_logged(Path::new("/usr/sbin/nginx"), &args, &dir.join("nginx.log"))
        .context("install the Debian package nginx")?;
    wait("nginx", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })?;
    Ok(Service {
        port,
        child: Some(child),
        stop: None,
    })
}

pub fn slapd(dir: &Path, port: u16) -> Result<Service> {
    std::fs::create_dir_all(dir.join("db"))?;
    let d = dir.display();
    let conf = format!(
        "include /etc/ldap/schema/core.schema\npidfile {d}/slapd.pid\nargsfile {d}/slapd.args\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\n\
         database mdb\nsuffix \"dc=carbonio,dc=test\"\nrootdn \"{LDAP_DN}\"\nrootpw {LDAP_PW}\ndirectory {d}/db\n\
         database monitor\naccess to dn.subtree=\"cn=Monitor\" by dn.exact=\"{LDAP_DN}\" read by * none\n"
    );
    std::fs::write(dir.join("slapd.conf"), conf)?;
    let args = vec![
        "-f".to_string(),
        format!("{d}/slapd.conf"),
        "-h".into(),
        format!("ldap://127.0.0.1:{port}/"),
        "-d".into(),
        "0".into(),
    ];
    let child = spawn_logged(Path::new("/usr/sbin/slapd"), &args, &dir.join("slapd.log"))
        .context("install the Debian package slapd")?;
    wait("slapd", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })?;
    Ok(Service {
        port,
        child: Some(child),
        stop: None,
    })
}
