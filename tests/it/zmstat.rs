//! The deprecated Logger's data: `import zmstat` on a directory built from
//! the layouts and sample rows of `shared/reference/carbonio.md` §2 (every
//! trap it lists), values queried back through PromQL; re-runs and a day
//! seen again as `.csv.gz` add nothing; `--watch` stores rows appended
//! later. The live form: rows sent with `logger -p local1.info -t
//! zimbramon`, one of them split with `:::uuid:::` markers, become the
//! same metrics.

use crate::harness::{free_port, require, run_ok, wait_until, Service, OURS};
use crate::promql_compat::percent_encode;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PASSWORD: &str = "zmstat-password";

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    if name.ends_with(".gz") {
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap();
    } else {
        std::fs::write(path, text).unwrap();
    }
}

fn cpu_header(cpus: usize) -> String {
    let cols = ["user", "nice", "sys", "idle", "iowait", "irq", "softirq"];
    let mut h = String::from("timestamp");
    for cpu in std::iter::once("cpu".to_string()).chain((0..cpus).map(|i| format!("cpu{i}"))) {
        for c in cols {
            h.push_str(&format!(", {cpu}:{c}"));
        }
    }
    h
}

/// A cpu.csv row whose cell k (after the timestamp) is `base + k / 10`.
fn cpu_row(ts: &str, cpus: usize, base: f64) -> String {
    let mut r = ts.to_string();
    for k in 0..7 * (cpus + 1) {
        r.push_str(&format!(", {:.1}", base + k as f64 / 10.0));
    }
    r
}

/// The fixture directory; returns the number of rows that must be imported.
fn fixture(dir: &Path) -> usize {
    let mut rows = 0;
    // A gzipped day: the collector restarted mid-file with a CPU more, so
    // a second, different header follows the first rows.
    let mut cpu = format!("{}\n", cpu_header(2));
    cpu += &format!("{}\n", cpu_row("03/30/2024 10:00:00", 2, 1.0));
    cpu += &format!("{}\n", cpu_row("03/30/2024 10:00:30", 2, 2.0));
    cpu += &format!("{}\n", cpu_header(3));
    cpu += &format!("{}\n", cpu_row("03/30/2024 11:00:00", 3, 3.0));
    write(dir, "2024-03-30/cpu.csv.gz", &cpu);
    rows += 3;
    // The DST start in Rome (02:00 → 03:00): 02:30 never happened.
    write(
        dir,
        "2024-03-31/vm.csv.gz",
        "timestamp, r, b, swpd, free, MemTotal, MemFree, Active(anon), loadavg\n\
         03/31/2024 01:59:30, 1, 0, 0, 51200, 8000000, 51200, 1000, 0.5\n\
         03/31/2024 02:30:00, 1, 0, 0, 51300, 8000000, 51300, 1100, 0.6\n\
         03/31/2024 03:00:00, 2, 0, 0, 51400, 8000000, 51400, 1200, 0.7\n",
    );
    rows += 2;
    // Old sysstat's `Device:`: a bogus column per device in the header.
    write(
        dir,
        "2024-03-31/io.csv.gz",
        "timestamp, sda:Device:, sda:tps, sda:kB_read/s, sda:kB_wrtn/s, sdb:Device:, sdb:tps, sdb:kB_read/s, sdb:kB_wrtn/s\n\
         03/31/2024 10:00:00, 1.5, 10.0, 20.0, 2.5, 30.0, 40.0\n",
    );
    rows += 1;
    // zmstat-ldap (Carbonio's slapd.csv): the first row's deltas are empty.
    write(
        dir,
        "2024-03-31/slapd.csv.gz",
        "timestamp, abandon_ops, add_ops, bind_ops, bytes_sent, compare_ops, completed_ops, connections, delete_ops, entries_sent, extended_ops, initiated_ops, modify_ops, modrdn_ops, read_waiters, referrals_sent, search_ops, unbind_ops, write_waiters\n\
         03/31/2024 10:00:00, '', '', '', '', '', '', '', '', '', '', '', '', '', 0, '', '', '', 0\n\
         03/31/2024 10:00:30, 0, 0, 4, 9000, 0, 40, 2, 0, 30, 1, 41, 0, 0, 1, 0, 33, 3, 0\n",
    );
    rows += 2;

    // Today's files: the CPU count differs from yesterday's header.
    write(
        dir,
        "cpu.csv",
        &format!(
            "{}\n{}\n",
            cpu_header(1),
            cpu_row("04/01/2024 10:00:00", 1, 5.0)
        ),
    );
    rows += 1;
    write(
        dir,
        "io-x.csv",
        "timestamp, sda:r/s, sda:w/s, sda:%util, nvme0n1:r/s, nvme0n1:w/s, nvme0n1:%util\n\
         04/01/2024 10:00:00, 1.0, 2.0, 3.5, 4.0, 5.0, 6.5\n",
    );
    rows += 1;
    write(
        dir,
        "df.csv",
        "timestamp, path, disk, disk_use, disk_space, disk_pct_used\n\
         04/01/2024 10:00:00, /, /dev/sda1, 1000, 5000, 20\n\
         04/01/2024 10:00:00, /opt/zextras, /dev/sdb1, 3000, 10000, \n",
    );
    rows += 2;
    write(
        dir,
        "fd.csv",
        "timestamp, fd_count, mailboxd_fd_count\n04/01/2024 10:00:00, 5216, 1451\n",
    );
    write(
        dir,
        "mtaqueue.csv",
        "timestamp, KBytes, requests\n04/01/2024 10:00:00, 12, 3\n",
    );
    rows += 2;
    write(
        dir,
        "proc.csv",
        "timestamp, system, user, sys, idle, iowait, mailbox, mailbox-total-cpu, mailbox-utime, mailbox-stime, mailbox-totalMB, mailbox-rssMB, mailbox-sharedMB, mailbox-process-count, zmstat, zmstat-total-cpu, zmstat-utime, zmstat-stime, zmstat-totalMB, zmstat-rssMB, zmstat-sharedMB, zmstat-process-count\n\
         04/01/2024 10:00:00, system, 3.9, 1.0, 94.4, 0.7, mailbox, 0.4, 0.4, 0.0, 1074.9, 863.8, 5.8, 1, zmstat, 0.1, 0.1, 0.0, 4.0, 0.6, 0.4, 15\n",
    );
    rows += 1;
    write(
        dir,
        "allprocs.csv",
        "timestamp, process, utime, stime, cputime, rchar, wchar, read_bytes, write_bytes, rss, processes, threads\n\
         04/01/2024 10:00:00, java-mailboxd, 120, 30, 150, 1000, 2000, 0, 4096, 900000, 1, 250\n\
         04/01/2024 10:00:00, slapd, 10, 5, 15, 10, 20, 0, 0, 50000, 1, 8\n",
    );
    rows += 2;
    // A line that is no row at all is skipped and reported.
    write(
        dir,
        "nginx.csv",
        "timestamp, utime, stime, cputime, rchar, wchar, read_bytes, write_bytes, rss, processes, threads\n\
         04/01/2024 10:00:00, 5, 2, 7, 100, 200, 0, 0, 30000, 5, 5\n\
         this is not a row\n",
    );
    rows += 1;
    // mysql.csv: `", "` in the header, `","` in the rows.
    write(
        dir,
        "mysql.csv",
        "timestamp, Aborted_clients, Opened_tables, Slow_queries\n04/01/2024 10:00:00,5,120,2\n",
    );
    rows += 1;
    // Zimbra's ldap.csv on a single server: zmstat-ldap (Perl) and the
    // mailbox's LDAP client stats (Java) interleaved in one file.
    write(
        dir,
        "ldap.csv",
        "timestamp, abandon_ops, add_ops, bind_ops, bytes_sent, compare_ops, completed_ops, connections, delete_ops, entries_sent, extended_ops, initiated_ops, modify_ops, modrdn_ops, read_waiters, referrals_sent, search_ops, unbind_ops, write_waiters\n\
         timestamp,command,exec_count,exec_ms_avg\n\
         04/01/2024 10:00:00, 0, 0, 2, 100, 0, 9, 1, 0, 5, 0, 9, 0, 0, 0, 0, 7, 1, 0\n\
         04/01/2024 10:00:10,searchDirectory,12,3\n\
         04/01/2024 10:00:30, 0, 0, 3, 200, 0, 11, 1, 0, 6, 0, 11, 0, 0, 0, 0, 8, 1, 0\n",
    );
    rows += 3;
    // The mailbox JVM: `","`, `""` for a null realtime stat, G1 pool names.
    write(
        dir,
        "mailboxd.csv",
        "timestamp,lmtp_rcvd_msgs,soap_count,imap_conn,gc_g1_young_generation_count,gc_g1_young_generation_ms,gc_minor_count,gc_major_count,mpool_g1_eden_space_used,mpool_codeheap_'non-nmethods'_used,heap_used,heap_free\n\
         04/01/2024 10:00:00,4,138,\"\",17,250,17,0,1048576,2048,312645872,210855696\n",
    );
    rows += 1;
    for (file, command) in [
        ("soap.csv", "MsgActionRequest.move"),
        ("imap.csv", "CHECK"),
        ("pop3.csv", "RETR"),
        ("sql.csv", "SELECT"),
    ] {
        write(
            dir,
            file,
            &format!(
                "timestamp,command,exec_count,exec_ms_avg\n\
                 04/01/2024 10:01:00,{command},3,12\n\
                 04/01/2024 10:01:00,ConvActionRequest.!read,1,0\n"
            ),
        );
        rows += 2;
    }
    write(
        dir,
        "threads.csv",
        "timestamp,AnonymousIoService,GC,ImapServer,LmtpServer,qtp,other,total\n\
         04/01/2024 10:00:00,0,2,6,3,40,39,90\n",
    );
    rows += 1;
    rows
}

/// (PromQL, RFC 3339 time, value): cells of the fixture read back.
const EXPECTED: &[(&str, &str, f64)] = &[
    // 10:00 in Rome on 30 March is 09:00 UTC; cell 1 of cpu0 after the
    // 7 aggregate cells is base + 0.7 + 0.1.
    (r#"zmstat_cpu_nice{cpu="0"}"#, "2024-03-30T09:00:00Z", 1.8),
    (r#"zmstat_cpu_user{cpu="all"}"#, "2024-03-30T09:00:30Z", 2.0),
    (r#"zmstat_cpu_user{cpu="2"}"#, "2024-03-30T10:00:00Z", 5.1),
    (r#"zmstat_vm_active_anon"#, "2024-03-31T00:59:30Z", 1000.0),
    // After the DST start Rome is UTC+2: 03:00 local is 01:00 UTC.
    (r#"zmstat_vm_memfree"#, "2024-03-31T01:00:00Z", 51400.0),
    (
        r#"zmstat_io_tps{device="sdb"}"#,
        "2024-03-31T08:00:00Z",
        2.5,
    ),
    (
        r#"zmstat_io_kb_read_per_s{device="sda"}"#,
        "2024-03-31T08:00:00Z",
        10.0,
    ),
    (r#"zmstat_slapd_read_waiters"#, "2024-03-31T08:00:00Z", 0.0),
    (r#"zmstat_slapd_search_ops"#, "2024-03-31T08:00:30Z", 33.0),
    // 1 April: UTC+2.
    (r#"zmstat_cpu_idle{cpu="0"}"#, "2024-04-01T08:00:00Z", 6.0),
    (
        r#"zmstat_io_x_pct_util{device="nvme0n1"}"#,
        "2024-04-01T08:00:00Z",
        6.5,
    ),
    (
        r#"zmstat_df_disk_use{path="/opt/zextras",disk="/dev/sdb1"}"#,
        "2024-04-01T08:00:00Z",
        3000.0,
    ),
    (
        r#"zmstat_df_disk_pct_used{path="/"}"#,
        "2024-04-01T08:00:00Z",
        20.0,
    ),
    (
        r#"zmstat_fd_mailboxd_fd_count"#,
        "2024-04-01T08:00:00Z",
        1451.0,
    ),
    (r#"zmstat_mtaqueue_requests"#, "2024-04-01T08:00:00Z", 3.0),
    (
        r#"zmstat_proc_idle{process="system"}"#,
        "2024-04-01T08:00:00Z",
        94.4,
    ),
    (
        r#"zmstat_proc_rssmb{process="mailbox"}"#,
        "2024-04-01T08:00:00Z",
        863.8,
    ),
    (
        r#"zmstat_proc_process_count{process="zmstat"}"#,
        "2024-04-01T08:00:00Z",
        15.0,
    ),
    (
        r#"zmstat_allprocs_rss{process="java-mailboxd"}"#,
        "2024-04-01T08:00:00Z",
        900000.0,
    ),
    (r#"zmstat_nginx_rss"#, "2024-04-01T08:00:00Z", 30000.0),
    (
        r#"zmstat_mysql_opened_tables"#,
        "2024-04-01T08:00:00Z",
        120.0,
    ),
    (r#"zmstat_mysql_slow_queries"#, "2024-04-01T08:00:00Z", 2.0),
    (r#"zmstat_slapd_bind_ops"#, "2024-04-01T08:00:30Z", 3.0),
    (
        r#"zmstat_ldap_exec_count{command="searchDirectory"}"#,
        "2024-04-01T08:00:10Z",
        12.0,
    ),
    (
        r#"zmstat_mailboxd_soap_count"#,
        "2024-04-01T08:00:00Z",
        138.0,
    ),
    (
        r#"zmstat_mailboxd_gc_count{collector="g1_young_generation"}"#,
        "2024-04-01T08:00:00Z",
        17.0,
    ),
    (
        r#"zmstat_mailboxd_mpool_used{pool="codeheap_'non-nmethods'"}"#,
        "2024-04-01T08:00:00Z",
        2048.0,
    ),
    (
        r#"zmstat_mailboxd_heap_free"#,
        "2024-04-01T08:00:00Z",
        210855696.0,
    ),
    (
        r#"zmstat_soap_exec_count{command="MsgActionRequest.move"}"#,
        "2024-04-01T08:01:00Z",
        3.0,
    ),
    (
        r#"zmstat_soap_exec_ms_avg{command="MsgActionRequest.move"}"#,
        "2024-04-01T08:01:00Z",
        12.0,
    ),
    (
        r#"zmstat_imap_exec_count{command="ConvActionRequest.!read"}"#,
        "2024-04-01T08:01:00Z",
        1.0,
    ),
    (
        r#"zmstat_pop3_exec_count{command="RETR"}"#,
        "2024-04-01T08:01:00Z",
        3.0,
    ),
    (
        r#"zmstat_sql_exec_ms_avg{command="SELECT"}"#,
        "2024-04-01T08:01:00Z",
        12.0,
    ),
    (
        r#"zmstat_threads{prefix="ImapServer"}"#,
        "2024-04-01T08:00:00Z",
        6.0,
    ),
    (r#"zmstat_threads_all"#, "2024-04-01T08:00:00Z", 90.0),
];

fn import(dir: &Path, data: &Path, extra: &[&str]) -> String {
    run_ok(
        Command::new(OURS)
            .args(["import", "zmstat"])
            .arg(dir)
            .arg("--data")
            .arg(data)
            .args(["--host", "mbox1.example.com", "--timezone", "Europe/Rome"])
            .args(extra),
    )
}

/// The number in the summary before `what` (`rows imported`, ...).
fn summary_count(out: &str, what: &str) -> usize {
    let at = out
        .find(what)
        .unwrap_or_else(|| panic!("no {what:?} in:\n{out}"));
    out[..at]
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before {what:?} in:\n{out}"))
}

/// The instant vector of `q` at `time` (RFC 3339, or "" for now).
fn instant(svc: &Service, q: &str, time: &str) -> Vec<(serde_json::Value, f64)> {
    let at = if time.is_empty() {
        String::new()
    } else {
        format!("&time={time}")
    };
    let (status, body) = crate::query_api::get(
        svc,
        &format!("/api/v1/query?query={}{at}", percent_encode(q)),
        PASSWORD,
    );
    assert_eq!(status, 200, "{q}: {body}");
    body["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{q}: {body}"))
        .iter()
        .map(|r| {
            (
                r["metric"].clone(),
                r["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn import_reads_every_layout_and_re_runs_add_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("zmstat");
    let data = tmp.path().join("data");
    let rows = fixture(&dir);
    let out = import(&dir, &data, &[]);
    assert_eq!(summary_count(&out, "rows imported"), rows, "{out}");
    assert_eq!(summary_count(&out, "rows: local time skipped"), 1, "{out}");
    assert_eq!(
        summary_count(&out, "rows: cell count matches no header"),
        1,
        "{out}"
    );

    let svc = crate::query_api::start_query(&data, PASSWORD);
    let mut wrong = Vec::new();
    for (q, time, want) in EXPECTED {
        let got = instant(&svc, q, time);
        let ok = got.len() == 1 && (got[0].1 - want).abs() <= 1e-9 * want.abs().max(1.0);
        if !ok {
            wrong.push(format!("{q} at {time}: want {want}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Every sample has the host and job; an empty cell makes no sample.
    let labels = &instant(&svc, "zmstat_fd_fd_count", "2024-04-01T08:00:00Z")[0].0;
    assert_eq!(labels["host"], "mbox1.example.com");
    assert_eq!(labels["job"], "zmstat");
    let empty = instant(
        &svc,
        r#"zmstat_df_disk_pct_used{path="/opt/zextras"}"#,
        "2024-04-01T08:00:00Z",
    );
    assert!(empty.is_empty(), "{empty:?}");
    let vm_rows = instant(
        &svc,
        "count_over_time(zmstat_vm_memfree[1d])",
        "2024-03-31T12:00:00Z",
    );
    assert_eq!(vm_rows[0].1, 2.0, "the 02:30 row was stored");
    // Types from the Zimbra Logger's column table.
    let (_, meta) = crate::query_api::get(&svc, "/api/v1/metadata", PASSWORD);
    assert_eq!(
        meta["data"]["zmstat_mysql_slow_queries"][0]["type"],
        "counter"
    );
    assert_eq!(
        meta["data"]["zmstat_mailboxd_gc_count"][0]["type"],
        "counter"
    );
    assert_eq!(meta["data"]["zmstat_cpu_user"][0]["type"], "gauge");
    drop(svc);

    // Again: nothing new. Then today's df.csv archived as it is at
    // midnight (gzipped into its day's directory): still nothing new.
    let blocks = std::fs::read_dir(data.join("blocks")).unwrap().count();
    let out = import(&dir, &data, &[]);
    assert_eq!(summary_count(&out, "rows imported"), 0, "{out}");
    assert_eq!(summary_count(&out, "rows: already imported"), rows, "{out}");
    let df = std::fs::read_to_string(dir.join("df.csv")).unwrap();
    write(&dir, "2024-04-01/df.csv.gz", &df);
    std::fs::remove_file(dir.join("df.csv")).unwrap();
    let out = import(&dir, &data, &[]);
    assert_eq!(summary_count(&out, "rows imported"), 0, "{out}");
    assert_eq!(
        std::fs::read_dir(data.join("blocks")).unwrap().count(),
        blocks
    );
}

#[test]
fn watch_stores_rows_appended_later() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("zmstat");
    let data = tmp.path().join("data");
    write(
        &dir,
        "mtaqueue.csv",
        "timestamp, KBytes, requests\n04/01/2024 10:00:00, 12, 3\n",
    );
    let log = std::fs::File::create(tmp.path().join("watch.log")).unwrap();
    let mut watcher = Command::new(OURS)
        .args(["import", "zmstat"])
        .arg(&dir)
        .arg("--data")
        .arg(&data)
        .args(["--host", "mta1", "--timezone", "UTC", "--watch"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let svc = crate::query_api::start_query(&data, PASSWORD);
    wait_until("the imported row", Duration::from_secs(60), || {
        !instant(&svc, "zmstat_mtaqueue_requests", "2024-04-01T10:00:00Z").is_empty()
    });
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("mtaqueue.csv"))
        .unwrap();
    // The collector restarts: a header again, then a row.
    f.write_all(b"timestamp, KBytes, requests\n04/01/2024 10:00:30, 40, 9\n")
        .unwrap();
    drop(f);
    wait_until("the appended row", Duration::from_secs(60), || {
        instant(&svc, "zmstat_mtaqueue_requests", "2024-04-01T10:00:30Z")
            .first()
            .is_some_and(|(_, v)| *v == 9.0)
    });
    // SIGTERM: the watcher writes its head out and exits cleanly.
    unsafe { libc::kill(watcher.id() as i32, libc::SIGTERM) };
    let status = watcher.wait().unwrap();
    let text = std::fs::read_to_string(tmp.path().join("watch.log")).unwrap();
    assert!(status.success(), "{text}");
    assert!(
        data.join("blocks").read_dir().unwrap().count() > 0,
        "{text}"
    );
}

#[test]
fn live_rows_over_syslog_become_metrics() {
    let logger = require("logger", "bsdutils");
    let dir = tempfile::tempdir().unwrap();
    let syslog = free_port();
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "syslog:\n  listeners:\n    - address: 127.0.0.1:{syslog}\n      protocol: udp\n    - address: 127.0.0.1:{syslog}\n      protocol: tcp\n"
        ),
    )
    .unwrap();
    let svc = crate::query_api::start_run(
        &dir.path().join("data"),
        free_port(),
        Some(PASSWORD),
        Some(&cfg),
        &[],
    );
    // The rows' local time is this machine's (logger's timestamps say its
    // offset): use UTC as the zone for both.
    let now = chrono::Utc::now();
    let ts = now.format("%m/%d/%Y %H:%M:%S").to_string();
    let send = |tcp: bool, text: &str| {
        let mut cmd = Command::new(&logger);
        cmd.args(["-n", "127.0.0.1", "-P", &syslog.to_string()])
            .args(["--rfc5424", "-p", "local1.info", "-t", "zimbramon"]);
        if tcp {
            cmd.args(["-T", "--octet-count"]);
        } else {
            cmd.arg("-d");
        }
        let status = cmd.env("TZ", "UTC").arg(text).status().unwrap();
        assert!(status.success());
    };
    send(
        true,
        &format!("4242:info: zmstat mtaqueue.csv: timestamp, KBytes, requests:: {ts}, 120, 17"),
    );
    // A vm.csv row over 800 characters, in chunks as Zextras::Mon::Logger
    // sends it.
    let keys: Vec<String> = (0..120).map(|i| format!("Key{i}")).collect();
    let header = format!("timestamp, {}", keys.join(", "));
    let values: Vec<String> = (0..120).map(|i| (1_000_000 + i).to_string()).collect();
    let full = format!("zmstat vm.csv: {header}:: {ts}, {}", values.join(", "));
    assert!(full.len() > 1600);
    let uuids = [
        "CD897126-A1B4-11EB-9C85-EB0C489C3827",
        "CD897126-A1B4-11EB-9C85-EB0C489C3828",
    ];
    let chunks: Vec<&str> = vec![&full[..800], &full[800..1600], &full[1600..]];
    for (i, chunk) in chunks.iter().enumerate() {
        let mut text = String::from("4243:info: ");
        if i > 0 {
            text += &format!(":::{}:::", uuids[i - 1]);
        }
        text += chunk;
        if i < 2 {
            text += &format!(":::{}:::", uuids[i]);
        }
        send(true, &text);
    }
    // The mailbox JVM's form, over UDP.
    send(
        false,
        &format!("mailboxd.csv: timestamp,soap_count,heap_used:: {ts},42,1048576"),
    );
    let t = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let want = [
        ("zmstat_mtaqueue_requests", 17.0),
        ("zmstat_vm_key0", 1_000_000.0),
        ("zmstat_vm_key119", 1_000_119.0),
        ("zmstat_mailboxd_soap_count", 42.0),
    ];
    for (q, v) in want {
        wait_until(q, Duration::from_secs(30), || {
            instant(&svc, q, &t)
                .first()
                .is_some_and(|(_, got)| *got == v)
        });
    }
    let (labels, _) = &instant(&svc, "zmstat_vm_key60", &t)[0];
    assert_eq!(labels["job"], "zmstat");
    assert!(labels["host"].as_str().is_some_and(|h| !h.is_empty()));
}
