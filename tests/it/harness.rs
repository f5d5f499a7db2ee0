//! Real services for end-to-end tests: each runs from its Debian binary in a
//! temp dir on a free loopback port, is waited on until ready, is killed on
//! drop, and keeps its directory and prints its logs when the test failed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const OURS: &str = env!("CARGO_BIN_EXE_carbonio-monitor");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// Path of a required binary; a missing one fails the test naming the package.
pub fn require(bin: &str, package: &str) -> PathBuf {
    let candidates = [
        PathBuf::from(bin),
        Path::new("/usr/bin").join(bin),
        Path::new("/usr/sbin").join(bin),
    ];
    for c in candidates {
        if c.is_absolute() && c.exists() {
            return c;
        }
    }
    panic!("{bin} not found: install the Debian package `{package}` (apt-get install -y {package}), or run ./ci.sh which installs test dependencies");
}

pub struct Service {
    pub name: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    stop: Option<Box<dyn FnMut()>>,
}

impl Service {
    fn log_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.path())
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "log"))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, as a crash would: no shutdown code runs.
    pub fn kill_9(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.child = None;
    }

    /// Stops the process (SIGTERM, as a service restart does) and hands
    /// back its directory for the next start.
    pub fn stop_keeping_dir(mut self) -> tempfile::TempDir {
        if let Some(child) = self.child.as_mut() {
            terminate(child);
        }
        self.child = None;
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.as_mut() {
            stop();
        }
        if let Some(child) = self.child.as_mut() {
            terminate(child);
        }
        if std::thread::panicking() {
            for log in self.log_files() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!(
                    "---- {} log {} (last 40 lines) ----",
                    self.name,
                    log.display()
                );
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
            let kept =
                std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir")).keep();
            eprintln!("---- {} files kept in {} ----", self.name, kept.display());
        }
    }
}

/// SIGTERM first so servers stop their own workers (nginx's would outlive a
/// SIGKILLed master), SIGKILL if it has not exited within two seconds.
pub fn terminate(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Starts `cmd` with stdout/stderr into `<dir>/<name>.log`.
pub fn spawn(name: &str, dir: tempfile::TempDir, port: u16, mut cmd: Command) -> Service {
    let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).expect("log file");
    let log2 = log.try_clone().expect("log file");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {name} ({cmd:?}): {e}"));
    Service {
        name: name.to_string(),
        port,
        dir,
        child: Some(child),
        stop: None,
    }
}

/// (status, lower-cased headers, body)
pub type HttpResponse = (u16, Vec<(String, String)>, Vec<u8>);

/// The sum of a self-metric's samples in a server's `/metrics`.
pub fn self_metric(svc: &Service, name: &str) -> f64 {
    get_text(&svc.url("/metrics"))
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Stdout of `carbonio-monitor debug <command> <path>`, which must succeed.
pub fn debug_output(command: &str, path: &Path) -> String {
    run_ok(Command::new(OURS).args(["debug", command]).arg(path))
}

/// Runs a command that must succeed (its stderr is the failure message); its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Minimal HTTP/1.1 GET.
pub fn http_get(url: &str, headers: &[(&str, &str)]) -> Result<HttpResponse, String> {
    http_request("GET", url, headers)
}

/// Minimal HTTP/1.1 request without a body.
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<HttpResponse, String> {
    http_send(method, url, headers, b"")
}

/// Minimal HTTP/1.1 request with a body.
pub fn http_send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = TcpStream::connect(host).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if method != "GET" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).map_err(|e| e.to_string())?;
    let raw = read_response(&mut stream)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no header end")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("bad status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body)?;
    }
    Ok((status, headers, body))
}

/// Up to the connection's end, or to the end of a body with a
/// Content-Length (some servers, chromedriver among them, keep the
/// connection open despite `Connection: close`).
fn read_response(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        };
        if n == 0 {
            return Ok(raw);
        }
        raw.extend_from_slice(&buf[..n]);
        let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        let length = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == "content-length")
            .and_then(|(_, v)| v.trim().parse::<usize>().ok());
        if let Some(length) = length {
            if raw.len() >= split + 4 + length {
                raw.truncate(split + 4 + length);
                return Ok(raw);
            }
        }
    }
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let nl = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..nl]).trim(), 16)
            .map_err(|e| e.to_string())?;
        data = &data[nl + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or("short chunk")?);
        data = data.get(size + 2..).ok_or("short chunk")?;
    }
}

pub fn get_text(url: &str) -> String {
    let (status, _, body) = http_get(url, &[]).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(status, 200, "GET {url}: {}", String::from_utf8_lossy(&body));
    String::from_utf8(body).expect("utf-8 body")
}

pub fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} not ready after {timeout:?}");
}

pub fn wait_http_ok(svc: &Service, path: &str) {
    let url = svc.url(path);
    wait_until(
        &format!("{} at {url}", svc.name),
        Duration::from_secs(30),
        || matches!(http_get(&url, &[]), Ok((200, _, _))),
    );
}

// ---- our binary ----

pub fn ours(kind: &str, extra: &[&str]) -> Service {
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(OURS);
    cmd.args([
        "exporter",
        kind,
        &format!("--web.listen-address=127.0.0.1:{port}"),
    ])
    .args(extra);
    let svc = spawn(&format!("carbonio-monitor exporter {kind}"), dir, port, cmd);
    if !extra.iter().any(|a| a.starts_with("--web.config.file")) {
        wait_http_ok(&svc, "/");
    }
    svc
}

// ---- upstream exporters ----

pub fn upstream_node_exporter(extra: &[&str]) -> Service {
    let bin = require("prometheus-node-exporter", "prometheus-node-exporter");
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(extra);
    let svc = spawn(
        "node_exporter",
        tempfile::tempdir().expect("tempdir"),
        port,
        cmd,
    );
    wait_http_ok(&svc, "/metrics");
    svc
}

pub fn upstream_process_exporter(config: &Path) -> Service {
    let bin = require("prometheus-process-exporter", "prometheus-process-exporter");
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.arg(format!("-web.listen-address=127.0.0.1:{port}"))
        .arg(format!("-config.path={}", config.display()))
        .args(["-threads=true", "-gather-smaps=true", "-children=true"]);
    let svc = spawn(
        "process-exporter",
        tempfile::tempdir().expect("tempdir"),
        port,
        cmd,
    );
    wait_http_ok(&svc, "/metrics");
    svc
}

/// Debian's postgres_exporter against a DSN (for comparing the postgres exporter).
pub fn upstream_postgres_exporter(dsn: &str) -> Service {
    let bin = require(
        "prometheus-postgres-exporter",
        "prometheus-postgres-exporter",
    );
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .env("DATA_SOURCE_NAME", dsn);
    let svc = spawn(
        "postgres_exporter",
        tempfile::tempdir().expect("tempdir"),
        port,
        cmd,
    );
    wait_http_ok(&svc, "/metrics");
    svc
}

/// Debian's nginx-prometheus-exporter reading a stub_status URL.
pub fn upstream_nginx_exporter(stub_status_url: &str) -> Service {
    let bin = require("prometheus-nginx-exporter", "prometheus-nginx-exporter");
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.arg(format!("-web.listen-address=127.0.0.1:{port}"))
        .arg(format!("-nginx.scrape-uri={stub_status_url}"));
    let svc = spawn(
        "nginx-prometheus-exporter",
        tempfile::tempdir().expect("tempdir"),
        port,
        cmd,
    );
    wait_http_ok(&svc, "/metrics");
    svc
}

// ---- PostgreSQL ----

fn postgres_bin(name: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin").join(name))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("{name} not found: install the Debian package `postgresql`"))
}

fn user_ids(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, user]).output().expect("id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| {
                panic!("user {user} missing: install the Debian package `postgresql`")
            })
    };
    (id("-u"), id("-g"))
}

/// PostgreSQL with trust auth on 127.0.0.1; `initdb` refuses root, so it runs as `postgres`.
pub fn postgres() -> Service {
    postgres_with(false)
}

/// Runs a PostgreSQL client program (psql, pgbench, ...) against a test server as `postgres`.
pub fn pg_run(pg: &Service, program: &str, args: &[&str]) -> String {
    let out = Command::new(postgres_bin(program))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            "postgres",
        ])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// PostgreSQL, optionally with TLS on (a self-signed certificate) so clients can require it.
pub fn postgres_with(tls: bool) -> Service {
    let initdb = postgres_bin("initdb");
    let pg_ctl = postgres_bin("pg_ctl");
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let (uid, gid) = user_ids("postgres");
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown tempdir to postgres");
    let data = dir.path().join("data");
    let as_postgres = |args: &[&str]| {
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .args(args)
            .output()
            .expect("runuser");
        assert!(
            out.status.success(),
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let data_s = data.display().to_string();
    let sock = dir.path().display().to_string();
    as_postgres(&[
        &initdb.display().to_string(),
        "-D",
        &data_s,
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--locale=C.UTF-8",
    ]);
    let log = dir.path().join("postgres.log").display().to_string();
    let mut server_opts = format!("-c listen_addresses=127.0.0.1 -p {port} -k {sock}");
    if tls {
        let (_, cert, key) = test_pki(dir.path());
        for f in [&cert, &key] {
            std::os::unix::fs::chown(f, Some(uid), Some(gid)).expect("chown cert");
        }
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod key");
        server_opts.push_str(&format!(
            " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            cert.display(),
            key.display()
        ));
    }
    as_postgres(&[
        &pg_ctl.display().to_string(),
        "-D",
        &data_s,
        "-l",
        &log,
        "-w",
        "start",
        "-o",
        &server_opts,
    ]);
    let mut svc = Service {
        name: "postgresql".into(),
        port,
        dir,
        child: None,
        stop: None,
    };
    let pg_ctl_s = pg_ctl.display().to_string();
    svc.stop = Some(Box::new(move || {
        let _ = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                &pg_ctl_s,
                "-D",
                &data_s,
                "-m",
                "immediate",
                "stop",
            ])
            .output();
    }));
    svc
}

// ---- slapd with cn=Monitor ----

pub const LDAP_ADMIN_DN: &str = "cn=admin,dc=carbonio,dc=test";
pub const LDAP_ADMIN_PW: &str = "test-secret";

/// Role of a test slapd in replication.
pub enum LdapRole {
    /// With the memberof overlay: groups show in their members' `memberOf`.
    Directory,
    Standalone,
    /// Has the syncprov overlay, so the suffix carries a contextCSN.
    Provider,
    /// Replicates the suffix from a provider on this port.
    ConsumerOf(u16),
}

pub fn slapd() -> Service {
    slapd_with(LdapRole::Standalone)
}

/// A test CA and a server certificate for 127.0.0.1 it signed, in `dir`:
/// (CA cert, server cert, server key). rustls refuses a self-signed CA used
/// as the server's own certificate, so clients get a real chain.
pub fn test_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    openssl_in(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=Carbonio Test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    let (cert, key) = issue_cert(
        dir,
        "server",
        "/CN=127.0.0.1",
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    );
    (dir.join("ca.pem"), cert, key)
}

/// A client certificate from the CA `test_pki` made in `dir`: (cert, key).
pub fn test_client_cert(dir: &Path, subject: &str) -> (PathBuf, PathBuf) {
    issue_cert(
        dir,
        "client",
        subject,
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
}

/// A key and an X.509 v3 certificate (the extensions make it v3, which
/// rustls requires) signed by `dir/ca.pem`: (`<name>.pem`, `<name>.key`).
fn issue_cert(dir: &Path, name: &str, subject: &str, extensions: &str) -> (PathBuf, PathBuf) {
    let (key, csr, ext, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}-ext.cnf"),
        format!("{name}.pem"),
    );
    openssl_in(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
    );
    std::fs::write(dir.join(&ext), extensions).expect("extensions file");
    openssl_in(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ],
    );
    (dir.join(pem), dir.join(key))
}

fn openssl_in(dir: &Path, args: &[&str]) {
    let openssl = require("openssl", "openssl");
    run_ok(Command::new(openssl).current_dir(dir).args(args));
}

/// slapd with StartTLS on its ldap:// port and an ldaps:// listener: (service, ldaps port, CA cert).
pub fn slapd_tls() -> (Service, u16, PathBuf) {
    let tls_port = free_port();
    let certs = tempfile::tempdir().expect("tempdir").keep();
    let (ca, cert, key) = test_pki(&certs);
    let svc = slapd_inner(LdapRole::Standalone, Some((tls_port, cert, key)));
    (svc, tls_port, ca)
}

pub fn slapd_with(role: LdapRole) -> Service {
    slapd_inner(role, None)
}

fn slapd_inner(role: LdapRole, tls: Option<(u16, PathBuf, PathBuf)>) -> Service {
    let bin = require("slapd", "slapd");
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::create_dir(d.join("db")).expect("db dir");
    let tls_conf = tls
        .as_ref()
        .map(|(_, cert, key)| {
            format!(
                "TLSCertificateFile {}\nTLSCertificateKeyFile {}\n",
                cert.display(),
                key.display()
            )
        })
        .unwrap_or_default();
    let (modules, overlay) = match role {
        LdapRole::Standalone => (String::new(), String::new()),
        LdapRole::Directory => ("moduleload memberof\n".into(), "overlay memberof\n".into()),
        LdapRole::Provider => ("moduleload syncprov\n".into(), "overlay syncprov\nsyncprov-checkpoint 1 1\n".into()),
        LdapRole::ConsumerOf(provider) => (
            "moduleload syncprov\n".into(),
            format!(
                "syncrepl rid=001 provider=ldap://127.0.0.1:{provider}/ bindmethod=simple binddn=\"{LDAP_ADMIN_DN}\" credentials={LDAP_ADMIN_PW} searchbase=\"dc=carbonio,dc=test\" type=refreshAndPersist retry=\"1 +\"\n"
            ),
        ),
    };
    let conf = format!(
        "include /etc/ldap/schema/core.schema\npidfile {d}/slapd.pid\nargsfile {d}/slapd.args\n{tls_conf}modulepath /usr/lib/ldap\nmoduleload back_mdb\n{modules}\
         database mdb\nsuffix \"dc=carbonio,dc=test\"\nrootdn \"{dn}\"\nrootpw {pw}\ndirectory {d}/db\n{overlay}\
         database monitor\naccess to dn.subtree=\"cn=Monitor\" by dn.exact=\"{dn}\" read by * none\n",
        d = d.display(),
        dn = LDAP_ADMIN_DN,
        pw = LDAP_ADMIN_PW
    );
    std::fs::write(d.join("slapd.conf"), conf).expect("slapd.conf");
    let mut cmd = Command::new(bin);
    cmd.arg("-f")
        .arg(d.join("slapd.conf"))
        .arg("-h")
        .arg(match &tls {
            Some((tls_port, _, _)) => {
                format!("ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/")
            }
            None => format!("ldap://127.0.0.1:{port}/"),
        })
        .args(["-d", "0"]);
    let svc = spawn("slapd", dir, port, cmd);
    let ldapsearch = require("ldapsearch", "ldap-utils");
    wait_until("slapd cn=Monitor", Duration::from_secs(30), || {
        Command::new(&ldapsearch)
            .args([
                "-x",
                "-H",
                &format!("ldap://127.0.0.1:{port}/"),
                "-D",
                LDAP_ADMIN_DN,
                "-w",
                LDAP_ADMIN_PW,
                "-b",
                "cn=Monitor",
                "-s",
                "base",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    svc
}

/// One RFC 5424 message sent with util-linux `logger` over TCP (octet
/// counting) to 127.0.0.1:`port`, at `priority` (`user.notice` is
/// logger's own default) and with `tag` as the app.
pub fn send_syslog_tcp(port: u16, priority: &str, tag: &str, text: &str) {
    let logger = require("logger", "bsdutils");
    let status = Command::new(logger)
        .args(["-n", "127.0.0.1", "-P", &port.to_string(), "-T"])
        .args(["--octet-count", "--rfc5424", "-p", priority, "-t", tag])
        .arg(text)
        .status()
        .expect("running logger");
    assert!(status.success(), "logger failed");
}

/// Adds LDIF to a test slapd as its rootdn.
pub fn ldap_add(svc: &Service, ldif: &str) {
    let ldapadd = require("ldapadd", "ldap-utils");
    let (code, out, err) = run_with_stdin(
        &ldapadd,
        &[
            "-x",
            "-H",
            &format!("ldap://127.0.0.1:{}/", svc.port),
            "-D",
            LDAP_ADMIN_DN,
            "-w",
            LDAP_ADMIN_PW,
        ],
        ldif.as_bytes(),
    );
    assert_eq!(code, 0, "ldapadd failed: {out}{err}");
}

// ---- nginx with stub_status ----
// Its access log uses Carbonio's proxy format (`log_format upstream`).

pub fn nginx() -> Service {
    let bin = require("nginx", "nginx");
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display().to_string();
    let conf = format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 64; }}\n\
         http {{\n  log_format upstream '$remote_addr:$remote_port - $remote_user [$time_local]  \"$request_method $scheme://$host$request_uri $server_protocol\" $status $bytes_sent \"$http_referer\" \"$http_user_agent\" \"$upstream_addr\" \"$server_addr:$server_port\"';\n  access_log {d}/access.log upstream;\n  client_body_temp_path {d}/client_body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         server {{\n    listen 127.0.0.1:{port};\n    location = /stub_status {{ stub_status; }}\n  }}\n}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).expect("nginx.conf");
    let mut cmd = Command::new(bin);
    cmd.args([
        "-e",
        &format!("{d}/error.log"),
        "-p",
        &d,
        "-c",
        &format!("{d}/nginx.conf"),
    ]);
    let svc = spawn("nginx", dir, port, cmd);
    wait_http_ok(&svc, "/stub_status");
    svc
}

/// nginx terminating TLS for a plain HTTP server on `upstream_port`:
/// (service, CA certificate that signed its server certificate).
pub fn nginx_tls_proxy(upstream_port: u16) -> (Service, PathBuf) {
    let bin = require("nginx", "nginx");
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = test_pki(dir.path());
    let d = dir.path().display().to_string();
    let conf = format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 64; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/client_body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n    location / {{ proxy_pass http://127.0.0.1:{upstream_port}; }}\n  }}\n}}\n",
        cert = cert.display(),
        key = key.display()
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).expect("nginx.conf");
    let mut cmd = Command::new(bin);
    cmd.args([
        "-e",
        &format!("{d}/error.log"),
        "-p",
        &d,
        "-c",
        &format!("{d}/nginx.conf"),
    ]);
    let svc = spawn("nginx-tls", dir, port, cmd);
    wait_until("nginx TLS proxy", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (svc, ca)
}

// ---- Prometheus ----

/// A real Prometheus with the given configuration file contents.
pub fn prometheus_with_config(config: &str) -> Service {
    prometheus_with_storage(config, tempfile::tempdir().expect("tempdir"))
}

/// A real Prometheus in `dir` whose TSDB is `dir/data`: empty, or blocks
/// written there beforehand (e.g. by `promtool tsdb create-blocks-from`).
pub fn prometheus_with_storage(config: &str, dir: tempfile::TempDir) -> Service {
    prometheus_at(config, dir, free_port(), &[])
}

/// A real Prometheus in `dir` (its TSDB in `dir/data`) on `port`, with
/// extra flags; starting it again on the same `dir` and port is a restart.
pub fn prometheus_at(config: &str, dir: tempfile::TempDir, port: u16, extra: &[&str]) -> Service {
    let bin = require("prometheus", "prometheus");
    std::fs::write(dir.path().join("prometheus.yml"), config).expect("prometheus.yml");
    let mut cmd = Command::new(bin);
    cmd.arg(format!(
        "--config.file={}",
        dir.path().join("prometheus.yml").display()
    ))
    .arg(format!(
        "--storage.tsdb.path={}",
        dir.path().join("data").display()
    ))
    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
    .args(extra);
    let svc = spawn("prometheus", dir, port, cmd);
    wait_http_ok(&svc, "/-/ready");
    svc
}

/// A real Prometheus scraping `targets` (job name → host:port) every second.
pub fn prometheus(targets: &[(&str, String)]) -> Service {
    let mut conf =
        String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
    for (job, addr) in targets {
        conf.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n"
        ));
    }
    prometheus_with_config(&conf)
}

/// Runs a program with stdin, returning (exit code, stdout, stderr).
pub fn run_with_stdin(program: &Path, args: &[&str], input: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends SIGHUP to a service (a configuration reload).
pub fn sighup(svc: &Service) {
    let pid = svc.pid().expect("running").to_string();
    let status = Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -HUP {pid}");
}

/// What `mutual_tls` made.
pub struct MutualTls {
    pub web_config: PathBuf,
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// A test PKI in `dir` and an exporter-toolkit web config (`dir/web.yml`)
/// serving TLS that requires a client certificate from the same CA.
pub fn mutual_tls(dir: &Path) -> MutualTls {
    let (ca, cert, key) = test_pki(dir);
    let (client_cert, client_key) = test_client_cert(dir, "/CN=client");
    let web_config = dir.join("web.yml");
    std::fs::write(
        &web_config,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
            cert.display(),
            key.display(),
            ca.display()
        ),
    )
    .expect("web.yml");
    MutualTls {
        web_config,
        ca,
        client_cert,
        client_key,
    }
}

// ---- S3 (moto_server) ----

/// moto_server (PyPI `moto[server]`, an in-memory S3) on `port`, with
/// `bucket` created. Restarting it on the same port gives an empty server.
pub fn moto_on(port: u16, bucket: &str) -> Service {
    moto_at("127.0.0.1", port, bucket)
}

/// `moto_on` bound to `host` (e.g. `0.0.0.0` for network namespaces).
pub fn moto_at(host: &str, port: u16, bucket: &str) -> Service {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let bin = PathBuf::from(home).join(".cache/carbonio-monitor/moto/bin/moto_server");
    assert!(
        bin.exists(),
        "{} not found: python3 -m venv ~/.cache/carbonio-monitor/moto && ~/.cache/carbonio-monitor/moto/bin/pip install 'moto[server]' (./test.sh does; needs the Debian package python3-venv)",
        bin.display()
    );
    let mut cmd = Command::new(bin);
    cmd.args(["-H", host, "-p", &port.to_string()]);
    let svc = spawn(
        "moto_server",
        tempfile::tempdir().expect("tempdir"),
        port,
        cmd,
    );
    wait_until("moto_server answers", Duration::from_secs(30), || {
        http_request("PUT", &svc.url(&format!("/{bucket}")), &[]).is_ok_and(|r| r.0 == 200)
    });
    svc
}

/// Keys and sizes in a moto bucket (up to 1000).
pub fn s3_list(svc: &Service, bucket: &str) -> Vec<(String, u64)> {
    let xml = get_text(&svc.url(&format!("/{bucket}?list-type=2")));
    xml.split("<Contents>")
        .skip(1)
        .filter_map(|c| {
            let key = c.split("<Key>").nth(1)?.split("</Key>").next()?;
            let size = c.split("<Size>").nth(1)?.split("</Size>").next()?;
            Some((key.to_string(), size.parse().ok()?))
        })
        .collect()
}
