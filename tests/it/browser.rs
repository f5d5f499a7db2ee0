//! The web UI in real headless Chromium (Debian `chromium` and
//! `chromium-driver`), driven over the W3C WebDriver protocol: log in
//! (wrong password, a local user, an LDAP user of the harness's slapd),
//! the overview with live data from `run` scraping our node exporter, a
//! range change, a log search and a facet click, live tail showing a line
//! sent while it runs. A failing step saves a screenshot. With
//! `CARBONIO_SCREENSHOTS=DIR` every page is also saved there at 1440×900
//! (how `docs/screenshots/` is made).
//!
//! And over plain HTTP, what the login must refuse: wrong passwords (then
//! rate-limited), a CSRF-less POST, a viewer's admin action, an expired
//! session.

use crate::harness::{free_port, http_get, http_send, require, spawn, wait_until, Service};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

const PASSWORD: &str = "browser-admin-password";
const VIEWER_PASSWORD: &str = "viewer-password";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Service,
    session: String,
}

impl Browser {
    pub fn start() -> Browser {
        let chromedriver = require("chromedriver", "chromium-driver");
        let chromium = require("chromium", "chromium");
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("profile");
        let mut cmd = Command::new(chromedriver);
        cmd.arg(format!("--port={port}"));
        let driver = spawn("chromedriver", dir, port, cmd);
        let status = driver.url("/status");
        wait_until("chromedriver ready", Duration::from_secs(30), || {
            matches!(http_get(&status, &[]), Ok((200, _, _)))
        });
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                // Without the networking flags Chromium keeps calling
                // Google's hosts, which this closed network refuses.
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1440,900",
                    format!("--user-data-dir={}", profile.display())],
            }
        }}});
        let mut b = Browser {
            driver,
            session: String::new(),
        };
        let v = b.cmd("POST", "/session", caps);
        b.session = v["sessionId"]
            .as_str()
            .expect("a WebDriver session")
            .to_string();
        b
    }

    fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        match self.try_cmd(method, path, body) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    fn try_cmd(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let url = if path == "/session" {
            self.driver.url(path)
        } else {
            self.driver.url(&format!("/session/{}{path}", self.session))
        };
        let bytes = serde_json::to_vec(&body).unwrap();
        let (status, _, resp) = http_send(
            method,
            &url,
            &[("Content-Type", "application/json")],
            if method == "GET" { b"" } else { &bytes },
        )
        .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let v: Value = serde_json::from_slice(&resp).unwrap_or(Value::Null);
        if status != 200 {
            return Err(format!("WebDriver {method} {path}: HTTP {status}: {v}"));
        }
        Ok(v["value"].clone())
    }

    /// Types into the field `css`, finding it again if the page replaced
    /// it meanwhile (a re-render).
    pub fn fill(&self, css: &str, text: &str) {
        let mut last = String::new();
        for _ in 0..20 {
            let el = self.wait_for(css);
            let done = self
                .try_cmd("POST", &format!("/element/{el}/clear"), json!({}))
                .and_then(|_| {
                    self.try_cmd(
                        "POST",
                        &format!("/element/{el}/value"),
                        json!({ "text": text }),
                    )
                });
            match done {
                Ok(_) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("typing into {css}: {last}");
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url }));
    }

    pub fn find(&self, css: &str) -> Option<String> {
        let v = self.cmd(
            "POST",
            "/elements",
            json!({"using": "css selector", "value": css}),
        );
        v.as_array()?
            .first()
            .and_then(|e| e[ELEMENT].as_str().map(str::to_string))
    }

    pub fn wait_for(&self, css: &str) -> String {
        let mut found = None;
        wait_until(&format!("element {css}"), Duration::from_secs(30), || {
            found = self.find(css);
            found.is_some()
        });
        found.unwrap()
    }

    pub fn click(&self, el: &str) {
        self.cmd("POST", &format!("/element/{el}/click"), json!({}));
    }

    pub fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    pub fn wait_js(&self, what: &str, script: &str) -> Value {
        let mut last = Value::Null;
        wait_until(what, Duration::from_secs(30), || {
            last = self.js(script);
            !(last.is_null() || last == json!(false))
        });
        last
    }

    pub fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine as _;
        let png = self.cmd("GET", "/screenshot", json!({}));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or(""))
            .unwrap_or_default();
        std::fs::write(path, bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-failure.png");
            self.screenshot(&path);
            eprintln!("screenshot of the failing page: {}", path.display());
            let log = self.cmd("POST", "/se/log", json!({"type": "browser"}));
            for entry in log.as_array().into_iter().flatten() {
                eprintln!("browser console: {} {}", entry["level"], entry["message"]);
            }
        }
        let _ = http_send(
            "DELETE",
            &self.driver.url(&format!("/session/{}", self.session)),
            &[],
            b"",
        );
    }
}

/// Saves a page for `docs/screenshots/` when asked to.
fn keep(b: &Browser, name: &str) {
    if let Some(dir) = std::env::var_os("CARBONIO_SCREENSHOTS") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        b.screenshot(&dir.join(format!("{name}.png")));
    }
}

fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

#[test]
fn ui_login_dashboards_logs_and_live_tail() {
    let slapd = crate::harness::slapd_with(crate::harness::LdapRole::Directory);
    crate::harness::ldap_add(
        &slapd,
        "dn: dc=carbonio,dc=test\nobjectClass: dcObject\nobjectClass: organization\ndc: carbonio\no: carbonio\n\n\
         dn: ou=people,dc=carbonio,dc=test\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: cn=ops,ou=people,dc=carbonio,dc=test\nobjectClass: person\ncn: ops\nsn: Ops\nuserPassword: ldap-ops-password\n\n\
         dn: cn=boss,ou=people,dc=carbonio,dc=test\nobjectClass: person\ncn: boss\nsn: Boss\nuserPassword: ldap-boss-password\n\n\
         dn: cn=monitoring-admins,dc=carbonio,dc=test\nobjectClass: groupOfNames\ncn: monitoring-admins\nmember: cn=boss,ou=people,dc=carbonio,dc=test\n",
    );
    let node = crate::harness::ours("node", &[]);
    let dir = tempfile::tempdir().unwrap();
    let syslog = free_port();
    let api_port = free_port();
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n\
             scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n\
             \x20 - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{api_port}']\n\
             syslog:\n  listeners:\n    - address: 127.0.0.1:{syslog}\n      protocol: tcp\n\
             auth:\n  ldap:\n    url: ldap://127.0.0.1:{}\n    user_dn: 'cn={{user}},ou=people,dc=carbonio,dc=test'\n\
             \x20   admin_groups: ['cn=monitoring-admins,dc=carbonio,dc=test']\n",
            node.port, slapd.port
        ),
    )
    .unwrap();
    let svc = crate::query_api::start_run(
        &dir.path().join("data"),
        api_port,
        Some(PASSWORD),
        Some(&cfg),
        &[],
    );
    let base = svc.url("/");
    let b = Browser::start();

    // Log in: a wrong password is refused on the page, the right one opens
    // the dashboards.
    b.goto(&base);
    b.fill("#username", "admin");
    b.fill("#password", "not-the-password");
    b.click(&b.wait_for("#login"));
    b.wait_js(
        "the login error",
        "return document.querySelector('#login-error').textContent.includes('wrong user name or password')",
    );
    b.fill("#password", PASSWORD);
    b.click(&b.wait_for("#login"));
    b.wait_for("header.top");
    b.wait_for("a[href='#/d/carbonio-overview']");
    // With screenshots asked for, let some history build up first.
    if std::env::var_os("CARBONIO_SCREENSHOTS").is_some() {
        for i in 0..25 {
            crate::harness::send_syslog_tcp(syslog, "user.notice", "postfix/smtp", &format!("{i:05X}: to=<u{i}@example.com>, relay=mx.example.net[192.0.2.1]:25, status=sent (250 ok)"));
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    keep(&b, "dashboards");

    // The overview with live data: stats and a chart drawn from the scrape
    // of our node exporter (rates need two scrapes).
    b.goto(&format!("{base}#/d/carbonio-overview?from=now-5m&to=now"));
    wait_until("two scrapes", Duration::from_secs(30), || {
        let (_, body) = crate::query_api::get(
            &svc,
            "/api/v1/query?query=count_over_time(up%5B1m%5D)",
            PASSWORD,
        );
        body["data"]["result"][0]["value"][1]
            .as_str()
            .is_some_and(|v| v.parse::<f64>().unwrap_or(0.0) >= 3.0)
    });
    // Loaded afresh, so the first chart's time counts from navigation start.
    b.goto(&format!("{base}#/d/carbonio-overview?from=now-5m&to=now"));
    b.js("location.reload()");
    b.wait_js(
        "the Nodes stat",
        "const v = document.querySelector('section[data-panel=\"Nodes\"] .stat .v'); return v && v.textContent === '1'",
    );
    b.wait_js(
        "the CPU chart",
        "return !!document.querySelector('section[data-panel=\"CPU busy\"] canvas')",
    );
    let first_chart = b.wait_js("chart timing", "return window.__firstChart || null");
    eprintln!("overview: first chart {first_chart} ms after navigation start");
    keep(&b, "overview");

    // A range change reaches the URL and the panels redraw.
    b.js("const s = document.querySelector('#range'); s.value = '15m'; s.dispatchEvent(new Event('change'))");
    b.wait_js(
        "the 15 min range in the URL",
        "return location.hash.includes('from=now-15m')",
    );
    b.wait_js(
        "the CPU chart after the range change",
        "return !!document.querySelector('section[data-panel=\"CPU busy\"] canvas')",
    );

    // Log search, then a facet click adds a filter.
    for i in 0..3 {
        crate::harness::send_syslog_tcp(
            syslog,
            "user.notice",
            "uitest",
            &format!("ui test line {i} status=sent"),
        );
    }
    b.goto(&format!("{base}#/logs?q=app:uitest&from=now-15m&to=now"));
    b.wait_js(
        "three lines",
        "return document.querySelectorAll('tr.line').length >= 3",
    );
    b.wait_for("[data-facet='host'] a");
    keep(&b, "logs");
    b.click(&b.wait_for("[data-facet='host'] a"));
    b.wait_js(
        "the host filter",
        "return document.querySelector('#logq').value.includes('host:')",
    );
    b.wait_js(
        "lines of the filtered search",
        "return document.querySelectorAll('tr.line').length >= 3",
    );
    // A bad query is shown with its position.
    b.goto(&format!("{base}#/logs?q=app:(&from=now-15m&to=now"));
    b.wait_js(
        "the syntax error",
        "return document.querySelector('#logq-error').textContent.includes('^')",
    );

    // A logs panel on a dashboard: the newest warnings.
    crate::harness::send_syslog_tcp(syslog, "user.warning", "uitest", "disk almost full");
    b.goto(&format!("{base}#/d/carbonio-logs?from=now-15m&to=now"));
    b.wait_js(
        "the logs panel",
        "const p = document.querySelector('section[data-panel=\"Recent warnings and errors\"]'); return p && p.textContent.includes('disk almost full')",
    );
    keep(&b, "logs-dashboard");

    // Live tail: a line sent now appears.
    b.goto(&format!(
        "{base}#/logs?q=app:uitest&from=now-15m&to=now&live=1"
    ));
    b.wait_js(
        "the first page",
        "return document.querySelectorAll('tr.line').length >= 3",
    );
    b.wait_js("the live stream open", "return window.__tailOpen === true");
    let nonce = format!("live-{}", std::process::id());
    let sent = Instant::now();
    crate::harness::send_syslog_tcp(
        syslog,
        "user.notice",
        "uitest",
        &format!("tail line {nonce}"),
    );
    b.wait_js(
        "the live line",
        &format!("return document.querySelector('.lines tbody').textContent.includes('{nonce}')"),
    );
    eprintln!(
        "live tail: line shown {:?} after it was sent",
        sent.elapsed()
    );

    for (page, name) in [
        ("#/alerts", "alerts"),
        ("#/targets", "targets"),
        ("#/status", "status"),
    ] {
        b.goto(&format!("{base}{page}"));
        b.wait_for("main");
        keep(&b, name);
    }
    b.wait_js(
        "the node target up",
        "location.hash = '#/targets'; return document.querySelector('[data-job=\"node\"] .up') !== null",
    );

    // An LDAP user of the directory logs in as a viewer; a member of the
    // admin group (memberOf, kept by slapd's overlay) as an admin.
    for (user, password, shown) in [
        ("ops", "ldap-ops-password", "ops (viewer)"),
        ("boss", "ldap-boss-password", "boss (admin)"),
    ] {
        b.click(&b.wait_for("#logout"));
        b.fill("#username", user);
        b.fill("#password", password);
        b.click(&b.wait_for("#login"));
        b.wait_js(
            &format!("{user}'s LDAP session"),
            &format!("const u = document.querySelector('header .user'); return u && u.textContent.includes('{shown}')"),
        );
    }
    drop(b);
    drop(svc);
}

/// Logs in through the page's form.
fn log_in(b: &Browser, base: &str, user: &str, password: &str) {
    b.goto(base);
    b.fill("#username", user);
    b.fill("#password", password);
    b.click(&b.wait_for("#login"));
    b.wait_for("header.top");
}

/// A day of 1,000,000 log lines plus one line of 1.5 MB, written straight
/// into a data directory's log store, read by `query`: the explorer shows
/// a page, not the million (the histogram is computed by the server), and
/// the long line is cut until expanded. Times are printed, not asserted.
#[test]
fn a_million_lines_stay_responsive() {
    use carbonio_collector::logs::LogRecord;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let day_ns = 86_400_000_000_000i64;
    {
        let (store, _) =
            carbonio_collector::store::logs::LogStore::open(&data.join("logs")).unwrap();
        let apps = ["postfix/smtp", "postfix/smtpd", "amavis", "nginx"];
        let total = 1_000_000i64;
        for chunk in 0..100 {
            let batch: Vec<LogRecord> = (0..10_000)
                .map(|i| {
                    let n = chunk * 10_000 + i;
                    let ts = now_ns - day_ns + n * (day_ns / total);
                    LogRecord {
                        timestamp_ns: ts,
                        received_ns: ts,
                        host: format!("mbox{}", n % 4 + 1),
                        app: apps[(n % 7 % 4) as usize].to_string(),
                        severity: Some((n % 8) as u8),
                        facility: Some(2),
                        message: format!("{n:08X}: to=<u{n}@example.com>, relay=mx.example.net[192.0.2.{}]:25, delay=0.{}, status=sent (250 ok)", n % 250, n % 10),
                        source: "tcp://127.0.0.1".into(),
                        ..Default::default()
                    }
                })
                .collect();
            store.append(batch).unwrap();
        }
        store
            .append(vec![LogRecord {
                timestamp_ns: now_ns - 3_600_000_000_000,
                received_ns: now_ns,
                host: "mbox1".into(),
                app: "bigline".into(),
                message: "x".repeat(1_500_000),
                ..Default::default()
            }])
            .unwrap();
        store.flush().unwrap();
    }
    let svc = crate::query_api::start_query(&data, PASSWORD);
    // The server's histogram counts every line.
    let (_, hist) = crate::query_api::get(&svc, "/api/v1/logs/histogram?start=0", PASSWORD);
    let counted: u64 = hist["data"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[1].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 1_000_001);

    let b = Browser::start();
    let base = svc.url("/");
    log_in(&b, &base, "admin", PASSWORD);
    let started = Instant::now();
    b.goto(&format!("{base}#/logs?from=now-25h&to=now"));
    b.wait_js(
        "the first page and the histogram",
        "return document.querySelectorAll('tr.line').length === 100 && !!document.querySelector('#histogram canvas')",
    );
    let first_page = started.elapsed();
    let probe = Instant::now();
    b.js("return 1");
    let idle = probe.elapsed();
    b.click(&b.wait_for("#more"));
    b.wait_js(
        "the second page",
        "return document.querySelectorAll('tr.line').length === 200",
    );
    eprintln!("1,000,001 lines in range: first page and histogram in {first_page:?}, page answers a script in {idle:?}, two pages shown");

    let started = Instant::now();
    b.goto(&format!("{base}#/logs?q=app:bigline&from=now-25h&to=now"));
    b.wait_js(
        "the long line, cut",
        "const m = document.querySelector('tr.line td.msg'); return m && m.textContent.length < 2100 && m.textContent.includes('1500000 characters')",
    );
    b.click(&b.wait_for("tr.line"));
    b.wait_js(
        "the whole line on expanding",
        "const p = document.querySelector('tr.detail pre'); return p && p.textContent.length === 1500000",
    );
    eprintln!(
        "a 1.5 MB line: found and expanded in {:?}",
        started.elapsed()
    );
}

fn post(svc: &Service, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let (status, h, body) = http_send("POST", &svc.url(path), headers, body.as_bytes()).unwrap();
    let cookie = h
        .iter()
        .find(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.split(';').next().unwrap_or("").to_string())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).into_owned();
    (
        status,
        if status == 200 {
            format!("{cookie}\n{text}")
        } else {
            text
        },
    )
}

fn login(svc: &Service, user: &str, password: &str) -> (u16, String, String) {
    let (status, out) = post(
        svc,
        "/login",
        &[("Content-Type", "application/json")],
        &json!({"username": user, "password": password}).to_string(),
    );
    if status != 200 {
        return (status, String::new(), out);
    }
    let (cookie, body) = out.split_once('\n').unwrap();
    let v: Value = serde_json::from_str(body).unwrap();
    (
        status,
        cookie.to_string(),
        v["data"]["csrf"].as_str().unwrap().to_string(),
    )
}

#[test]
fn login_refuses_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "auth:\n  session_idle_timeout: 2s\n  users:\n    - username: viewer\n      password_hash: '{}'\n      role: viewer\n",
            bcrypt_hash(VIEWER_PASSWORD)
        ),
    )
    .unwrap();
    let svc = crate::query_api::start_run(
        &dir.path().join("data"),
        free_port(),
        Some(PASSWORD),
        Some(&cfg),
        &["--web.enable-lifecycle"],
    );
    // Without a session: the page loads, the data does not.
    let (status, _, page) = http_get(&svc.url("/"), &[]).unwrap();
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains("/ui/app.js"));
    let (status, _, _) = http_get(&svc.url("/api/v1/dashboards"), &[]).unwrap();
    assert_eq!(status, 401);
    // Assets go gzipped to browsers that take it.
    let (status, headers, body) = http_get(
        &svc.url("/ui/app.js"),
        &[("Accept-Encoding", "gzip, deflate")],
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(headers
        .iter()
        .any(|(k, v)| k == "content-encoding" && v == "gzip"));
    let mut js = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut js).unwrap();
    assert!(js.contains("Carbonio Monitoring web UI"));

    // The viewer: reads, but may not reload; a POST without the CSRF
    // token is refused whatever the role.
    let (status, cookie, csrf) = login(&svc, "viewer", VIEWER_PASSWORD);
    assert_eq!(status, 200);
    assert!(cookie.starts_with("cm_session="));
    let (status, _, _) = http_get(&svc.url("/api/v1/dashboards"), &[("Cookie", &cookie)]).unwrap();
    assert_eq!(status, 200);
    let (status, body) = post(
        &svc,
        "/-/reload",
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        "",
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("admin"), "{body}");
    let (status, admin_cookie, admin_csrf) = login(&svc, "admin", PASSWORD);
    assert_eq!(status, 200);
    let (status, body) = post(&svc, "/-/reload", &[("Cookie", &admin_cookie)], "");
    assert_eq!(status, 403, "a POST without the CSRF token: {body}");
    assert!(body.contains("CSRF"), "{body}");
    let (status, body) = post(
        &svc,
        "/-/reload",
        &[("Cookie", &admin_cookie), ("X-CSRF-Token", &admin_csrf)],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        &svc,
        "/-/reload",
        &[("Cookie", &admin_cookie), ("X-CSRF-Token", &csrf)],
        "",
    );
    assert_eq!(status, 403, "another session's token: {body}");

    // An idle session expires.
    std::thread::sleep(Duration::from_secs(3));
    let (status, _, _) = http_get(&svc.url("/api/v1/dashboards"), &[("Cookie", &cookie)]).unwrap();
    assert_eq!(status, 401, "an expired session");

    // Wrong passwords: refused, then the account is locked for a while,
    // even with the right password; other accounts still log in.
    for _ in 0..5 {
        let (status, _, body) = login(&svc, "viewer", "wrong");
        assert_eq!(status, 401, "{body}");
    }
    let (status, _, body) = login(&svc, "viewer", VIEWER_PASSWORD);
    assert_eq!(status, 429, "{body}");
    let (status, _, _) = login(&svc, "admin", PASSWORD);
    assert_eq!(status, 200);
}

/// The API and UI over TLS (`--web.config.file`): the page and a login
/// over HTTPS, the session cookie marked `Secure`.
#[test]
fn ui_over_tls_gets_secure_cookies() {
    let curl = require("curl", "curl");
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = crate::harness::test_pki(dir.path());
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let cfg = dir.path().join("config.yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 5s\n").unwrap();
    let port = free_port();
    let mut cmd = Command::new(crate::harness::OURS);
    cmd.arg("run")
        .arg("--config")
        .arg(&cfg)
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.config.file")
        .arg(&web)
        .env("CARBONIO_MONITOR_ADMIN_PASSWORD", PASSWORD);
    let _svc = spawn(
        "carbonio-monitor run",
        tempfile::tempdir().unwrap(),
        port,
        cmd,
    );
    let https = |path: &str, extra: &[&str]| {
        Command::new(&curl)
            .args(["-s", "-i", "--cacert"])
            .arg(&ca)
            .args(extra)
            .arg(format!("https://127.0.0.1:{port}{path}"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    wait_until("run over TLS", Duration::from_secs(30), || {
        https("/-/ready", &[]).starts_with("HTTP/1.1 200")
    });
    assert!(https("/", &[]).contains("/ui/app.js"));
    let login = https(
        "/login",
        &[
            "-H",
            "Content-Type: application/json",
            "-d",
            &json!({"username": "admin", "password": PASSWORD}).to_string(),
        ],
    );
    let cookie = login
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {login}"));
    assert!(
        cookie.contains("; Secure")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    // Plain HTTP on the TLS port gets nothing.
    let (plain, _, _) = http_get(&format!("http://127.0.0.1:{port}/"), &[]).unwrap_or_default();
    assert_ne!(plain, 200);
}
