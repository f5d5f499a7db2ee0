//! The mesh exporter against a server replaying Consul HTTP API responses,
//! shaped as HashiCorp's API documentation shows them: three servers with a
//! leader, one failed agent, services with passing/warning checks.

use crate::harness::{get_text, ours};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "3f2c9a1e-mesh-test-token";

fn member(name: &str, addr: &str, role: &str, status: u8, dc_suffix: bool) -> String {
    let name = if dc_suffix {
        format!("{name}.dc1")
    } else {
        name.to_string()
    };
    format!(
        r#"{{"Name":"{name}","Addr":"{addr}","Port":8301,"Tags":{{"build":"1.15.4:7de9c08b","dc":"dc1","id":"0d5e","role":"{role}","segment":"","vsn":"2","vsn_max":"3","vsn_min":"2"}},"Status":{status},"ProtocolMin":1,"ProtocolMax":5,"ProtocolCur":2,"DelegateMin":2,"DelegateMax":5,"DelegateCur":4}}"#
    )
}

fn node(name: &str, addr: &str) -> String {
    format!(
        r#"{{"ID":"40e4a748-2192-161a-0510-9bf59fe950b5","Node":"{name}","Address":"{addr}","Datacenter":"dc1","TaggedAddresses":{{"lan":"{addr}","wan":"{addr}"}},"Meta":{{"consul-network-segment":""}},"CreateIndex":5,"ModifyIndex":7}}"#
    )
}

fn check(node: &str, id: &str, name: &str, status: &str, service: &str) -> String {
    format!(
        r#"{{"Node":"{node}","CheckID":"{id}","Name":"{name}","Status":"{status}","Notes":"","Output":"","ServiceID":"{service}","ServiceName":"{service}","ServiceTags":[],"Type":"","Namespace":"default","CreateIndex":10,"ModifyIndex":12}}"#
    )
}

fn health_entry(node_name: &str, service: &str, tags: &str, checks: &[String]) -> String {
    format!(
        r#"{{"Node":{{"ID":"40e4a748","Node":"{node_name}","Address":"10.0.0.1","Datacenter":"dc1"}},"Service":{{"ID":"{service}","Service":"{service}","Tags":{tags},"Address":"","Meta":{{}},"Port":8500}},"Checks":[{}]}}"#,
        checks.join(",")
    )
}

fn route(path: &str) -> Option<String> {
    let servers = [
        ("server-mail1", "10.0.0.1"),
        ("server-mail2", "10.0.0.2"),
        ("server-mail3", "10.0.0.3"),
    ];
    if path == "/v1/agent/members?wan=1" {
        // Only servers join the WAN pool, named <node>.<dc>.
        let m: Vec<String> = servers
            .iter()
            .map(|(n, a)| member(n, a, "consul", 1, true))
            .collect();
        return Some(format!("[{}]", m.join(",")));
    }
    let path = path.split('?').next().unwrap_or(path);
    Some(match path {
        "/v1/status/leader" => r#""10.0.0.1:8300""#.to_string(),
        "/v1/status/peers" => r#"["10.0.0.1:8300","10.0.0.2:8300","10.0.0.3:8300"]"#.to_string(),
        "/v1/catalog/nodes" => {
            let mut nodes: Vec<String> = servers.iter().map(|(n, a)| node(n, a)).collect();
            nodes.push(node("agent-mta1", "10.0.0.4"));
            format!("[{}]", nodes.join(","))
        }
        "/v1/agent/members" => {
            let mut m: Vec<String> = servers
                .iter()
                .map(|(n, a)| member(n, a, "consul", 1, false))
                .collect();
            m.push(member("agent-mta1", "10.0.0.4", "node", 4, false));
            format!("[{}]", m.join(","))
        }
        "/v1/catalog/services" => {
            r#"{"consul":[],"carbonio-mailbox":["prometheus-exporter","mailbox"]}"#.to_string()
        }
        "/v1/health/service/consul" => {
            let e: Vec<String> = servers
                .iter()
                .map(|(n, _)| {
                    health_entry(
                        n,
                        "consul",
                        "[]",
                        &[check(n, "serfHealth", "Serf Health Status", "passing", "")],
                    )
                })
                .collect();
            format!("[{}]", e.join(","))
        }
        "/v1/health/service/carbonio-mailbox" => format!(
            "[{}]",
            health_entry(
                "server-mail1",
                "carbonio-mailbox",
                r#"["prometheus-exporter","mailbox","mailbox"]"#,
                &[
                    check(
                        "server-mail1",
                        "serfHealth",
                        "Serf Health Status",
                        "passing",
                        ""
                    ),
                    check(
                        "server-mail1",
                        "service:carbonio-mailbox",
                        "Service 'carbonio-mailbox' check",
                        "warning",
                        "carbonio-mailbox"
                    ),
                ]
            )
        ),
        "/v1/health/state/any" => format!(
            "[{}]",
            [
                check(
                    "agent-mta1",
                    "serfHealth",
                    "Serf Health Status",
                    "critical",
                    ""
                ),
                check(
                    "server-mail1",
                    "serfHealth",
                    "Serf Health Status",
                    "passing",
                    ""
                ),
                check(
                    "server-mail1",
                    "service:carbonio-mailbox",
                    "Service 'carbonio-mailbox' check",
                    "warning",
                    "carbonio-mailbox"
                ),
            ]
            .join(",")
        ),
        _ => return None,
    })
}

#[derive(Clone, Copy)]
pub enum Mode {
    Normal,
    Garbage,
    Silent,
}

/// (path with query, X-Consul-Token) of each request served.
type RequestLog = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A tiny HTTP server answering like a Consul agent (403 without the token).
pub struct Replay {
    pub port: u16,
    requests: RequestLog,
}

pub fn replay(mode: Mode) -> Replay {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests: RequestLog = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let log = log.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut token = None;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("x-consul-token") {
                                token = Some(v.trim().to_string());
                            }
                        }
                    }
                    log.lock().unwrap().push((path.clone(), token.clone()));
                    let (status, body) = match mode {
                        Mode::Silent => {
                            std::thread::sleep(Duration::from_secs(10));
                            return;
                        }
                        _ if token.as_deref() != Some(TOKEN) => {
                            ("403 Forbidden", "ACL not found".to_string())
                        }
                        Mode::Garbage => ("200 OK", "{\"this is\": not json".to_string()),
                        Mode::Normal => match route(&path) {
                            Some(b) => ("200 OK", b),
                            None => ("404 Not Found", "not found".to_string()),
                        },
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nX-Consul-Index: 42\r\nX-Consul-Knownleader: true\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Replay { port, requests }
}

const EXPECTED: &str = r#"# HELP consul_catalog_service_node_healthy Is this service healthy on this node?
# TYPE consul_catalog_service_node_healthy gauge
consul_catalog_service_node_healthy{node="server-mail1",service_id="carbonio-mailbox",service_name="carbonio-mailbox"} 0
consul_catalog_service_node_healthy{node="server-mail1",service_id="consul",service_name="consul"} 1
consul_catalog_service_node_healthy{node="server-mail2",service_id="consul",service_name="consul"} 1
consul_catalog_service_node_healthy{node="server-mail3",service_id="consul",service_name="consul"} 1
# HELP consul_catalog_services How many services are in the cluster.
# TYPE consul_catalog_services gauge
consul_catalog_services 2
# HELP consul_health_node_status Status of health checks associated with a node.
# TYPE consul_health_node_status gauge
consul_health_node_status{check="serfHealth",node="agent-mta1",status="critical"} 1
consul_health_node_status{check="serfHealth",node="agent-mta1",status="maintenance"} 0
consul_health_node_status{check="serfHealth",node="agent-mta1",status="passing"} 0
consul_health_node_status{check="serfHealth",node="agent-mta1",status="warning"} 0
consul_health_node_status{check="serfHealth",node="server-mail1",status="critical"} 0
consul_health_node_status{check="serfHealth",node="server-mail1",status="maintenance"} 0
consul_health_node_status{check="serfHealth",node="server-mail1",status="passing"} 1
consul_health_node_status{check="serfHealth",node="server-mail1",status="warning"} 0
# HELP consul_health_service_status Status of health checks associated with a service.
# TYPE consul_health_service_status gauge
consul_health_service_status{check="service:carbonio-mailbox",node="server-mail1",service_id="carbonio-mailbox",service_name="carbonio-mailbox",status="critical"} 0
consul_health_service_status{check="service:carbonio-mailbox",node="server-mail1",service_id="carbonio-mailbox",service_name="carbonio-mailbox",status="maintenance"} 0
consul_health_service_status{check="service:carbonio-mailbox",node="server-mail1",service_id="carbonio-mailbox",service_name="carbonio-mailbox",status="passing"} 0
consul_health_service_status{check="service:carbonio-mailbox",node="server-mail1",service_id="carbonio-mailbox",service_name="carbonio-mailbox",status="warning"} 1
# HELP consul_raft_leader Does Raft cluster have a leader (according to this node).
# TYPE consul_raft_leader gauge
consul_raft_leader 1
# HELP consul_raft_peers How many peers (servers) are in the Raft cluster.
# TYPE consul_raft_peers gauge
consul_raft_peers 3
# HELP consul_serf_lan_member_info Information of member in the cluster.
# TYPE consul_serf_lan_member_info gauge
consul_serf_lan_member_info{member="agent-mta1",role="node",version="1.15.4"} 4
consul_serf_lan_member_info{member="server-mail1",role="consul",version="1.15.4"} 1
consul_serf_lan_member_info{member="server-mail2",role="consul",version="1.15.4"} 1
consul_serf_lan_member_info{member="server-mail3",role="consul",version="1.15.4"} 1
# HELP consul_serf_lan_member_status Status of member in the cluster. 1=Alive, 2=Leaving, 3=Left, 4=Failed.
# TYPE consul_serf_lan_member_status gauge
consul_serf_lan_member_status{member="agent-mta1"} 4
consul_serf_lan_member_status{member="server-mail1"} 1
consul_serf_lan_member_status{member="server-mail2"} 1
consul_serf_lan_member_status{member="server-mail3"} 1
# HELP consul_serf_lan_members How many members are in the cluster.
# TYPE consul_serf_lan_members gauge
consul_serf_lan_members 4
# HELP consul_serf_wan_member_info Information of member in the wan cluster.
# TYPE consul_serf_wan_member_info gauge
consul_serf_wan_member_info{dc="dc1",member="server-mail1.dc1",role="consul",version="1.15.4"} 1
consul_serf_wan_member_info{dc="dc1",member="server-mail2.dc1",role="consul",version="1.15.4"} 1
consul_serf_wan_member_info{dc="dc1",member="server-mail3.dc1",role="consul",version="1.15.4"} 1
# HELP consul_serf_wan_member_status Status of member in the wan cluster. 1=Alive, 2=Leaving, 3=Left, 4=Failed.
# TYPE consul_serf_wan_member_status gauge
consul_serf_wan_member_status{dc="dc1",member="server-mail1.dc1"} 1
consul_serf_wan_member_status{dc="dc1",member="server-mail2.dc1"} 1
consul_serf_wan_member_status{dc="dc1",member="server-mail3.dc1"} 1
# HELP consul_service_checks Link the service id and check name if available.
# TYPE consul_service_checks gauge
consul_service_checks{check_id="service:carbonio-mailbox",check_name="Service 'carbonio-mailbox' check",node="server-mail1",service_id="carbonio-mailbox",service_name="carbonio-mailbox"} 1
# HELP consul_service_tag Tags of a service.
# TYPE consul_service_tag gauge
consul_service_tag{node="server-mail1",service_id="carbonio-mailbox",tag="mailbox"} 1
consul_service_tag{node="server-mail1",service_id="carbonio-mailbox",tag="prometheus-exporter"} 1
# HELP consul_up Was the last query of Consul successful.
# TYPE consul_up gauge
consul_up 1
"#;

/// The `consul_*` families of an exposition (leaving out build info).
fn consul_part(text: &str) -> String {
    text.lines()
        .filter(|l| {
            let name = l
                .trim_start_matches("# HELP ")
                .trim_start_matches("# TYPE ");
            name.starts_with("consul_") && !name.starts_with("consul_exporter_")
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn exposition_matches_consul_exporter_exactly() {
    let consul = replay(Mode::Normal);
    let token_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token_file.path(), format!("{TOKEN}\n")).unwrap();
    let ours = ours(
        "mesh",
        &[
            &format!("--consul.server=127.0.0.1:{}", consul.port),
            &format!("--consul.token-file={}", token_file.path().display()),
        ],
    );
    let text = get_text(&ours.url("/metrics"));
    let got = consul_part(&text);
    assert_eq!(got, EXPECTED, "full output:\n{text}");
    assert!(text.contains("consul_exporter_build_info{"));

    let requests = consul.requests.lock().unwrap().clone();
    assert!(
        requests.iter().all(|(_, t)| t.as_deref() == Some(TOKEN)),
        "a request went without the token"
    );
    let paths: Vec<&str> = requests.iter().map(|(p, _)| p.as_str()).collect();
    for expected in [
        "/v1/catalog/services?stale=",
        "/v1/status/peers",
        "/v1/status/leader",
        "/v1/catalog/nodes?stale=",
        "/v1/agent/members",
        "/v1/agent/members?wan=1",
        "/v1/health/state/any?stale=",
        "/v1/health/service/consul?stale=",
        "/v1/health/service/carbonio-mailbox?stale=",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} not requested: {paths:?}"
        );
    }
}

fn consul_up(svc: &crate::harness::Service) -> String {
    let text = get_text(&svc.url("/metrics"));
    text.lines()
        .find(|l| l.starts_with("consul_up "))
        .unwrap_or("consul_up missing")
        .to_string()
}

#[test]
fn wrong_token_garbage_down_and_slow_give_up_0() {
    let consul = replay(Mode::Normal);
    let wrong = ours(
        "mesh",
        &[
            &format!("--consul.server=http://127.0.0.1:{}", consul.port),
            "--consul.token=wrong",
        ],
    );
    assert_eq!(consul_up(&wrong), "consul_up 0");
    let log = std::fs::read_to_string(wrong.path("carbonio-monitor exporter mesh.log"))
        .unwrap_or_default();
    assert!(log.contains("403"), "the log should say why: {log}");
    assert!(
        !log.contains("wrong"),
        "the token must not be logged: {log}"
    );

    let garbage = replay(Mode::Garbage);
    let g = ours(
        "mesh",
        &[
            &format!("--consul.server=http://127.0.0.1:{}", garbage.port),
            &format!("--consul.token={TOKEN}"),
        ],
    );
    assert_eq!(consul_up(&g), "consul_up 0");

    let closed = crate::harness::free_port();
    let down = ours(
        "mesh",
        &[&format!("--consul.server=http://127.0.0.1:{closed}")],
    );
    assert_eq!(consul_up(&down), "consul_up 0");

    let silent = replay(Mode::Silent);
    let slow = ours(
        "mesh",
        &[
            &format!("--consul.server=http://127.0.0.1:{}", silent.port),
            "--consul.timeout=300ms",
        ],
    );
    let t = Instant::now();
    assert_eq!(consul_up(&slow), "consul_up 0");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "scrape took {:?}",
        t.elapsed()
    );
}

#[test]
fn https_consul_with_a_ca_file() {
    let consul = replay(Mode::Normal);
    let (proxy, ca) = crate::harness::nginx_tls_proxy(consul.port);
    let server = format!("--consul.server=https://127.0.0.1:{}", proxy.port);
    let token = format!("--consul.token={TOKEN}");
    let trusted = ours(
        "mesh",
        &[
            &server,
            &token,
            &format!("--consul.ca-file={}", ca.display()),
        ],
    );
    assert_eq!(consul_part(&get_text(&trusted.url("/metrics"))), EXPECTED);
    // Without the CA the certificate is not trusted: consul_up 0.
    let untrusted = ours("mesh", &[&server, &token]);
    assert_eq!(consul_up(&untrusted), "consul_up 0");
}
