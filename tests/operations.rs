//! Operating the daemon over its HTTP side: Prometheus metrics that move with the
//! traffic a test drives, the connection monitor (its rows, closing a connection with
//! the CSRF token and a loopback Host), and `xmppd reload` applying a new log level
//! without dropping connections.

mod common;
use common::web::Web;
use common::*;
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const D: &str = "localhost";

/// The daemon's HTTP side: its address and the token of `DATA_DIR/http.token`.
type Http = Web;

fn http_addr(d: &Daemon) -> Http {
    Web::of(d)
}

/// One HTTP/1.1 request with the token as a bearer (none when empty); returns (status,
/// body). `host` None sends the address.
async fn http(
    h: &Http,
    method: &str,
    path: &str,
    host: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let bearer = format!("Bearer {}", h.token);
    let mut all = headers.to_vec();
    if !h.token.is_empty() {
        all.push(("Authorization", bearer.as_str()));
    }
    let web = Web {
        addr: h.addr,
        token: h.token.clone(),
        cookie: None,
        csrf: String::new(),
        host: host.unwrap_or_default().to_string(),
    };
    let a = web.request(method, path, &all, body).await;
    (a.status, a.body)
}

async fn get(addr: &Http, path: &str) -> String {
    let (status, body) = http(addr, "GET", path, None, &[], "").await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// `/metrics` as `name{labels}` → value.
async fn metrics(addr: &Http) -> HashMap<String, f64> {
    let text = get(addr, "/metrics").await;
    assert!(text.ends_with("# EOF\n"), "{text}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn m(all: &HashMap<String, f64>, key: &str) -> f64 {
    *all.get(key)
        .unwrap_or_else(|| panic!("no {key} in /metrics: {all:?}"))
}

/// Wait until `key` reads `want` (the counters move asynchronously).
async fn wait_metric(addr: &Http, key: &str, want: f64) -> HashMap<String, f64> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let all = metrics(addr).await;
        if m(&all, key) == want {
            return all;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{key} never became {want}: {}", m(&all, key));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn monitor_rows(addr: &Http) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&get(addr, "/monitor.json").await).expect("JSON");
    v["connections"].as_array().cloned().expect("rows")
}

async fn row_of(addr: &Http, identity: &str) -> serde_json::Value {
    monitor_rows(addr)
        .await
        .into_iter()
        .find(|r| r["identity"] == identity)
        .unwrap_or_else(|| panic!("no monitor row for {identity}"))
}

/// The CSRF token the monitor page embeds.
async fn csrf(addr: &Http) -> String {
    let page = get(addr, "/monitor").await;
    let start = page.find("const CSRF = \"").expect("token in page") + 14;
    page[start..start + 48].to_string()
}

async fn plain_login(d: &Daemon, user: &str, res: &str) -> Raw {
    let mut r = Raw::connect(d.starttls, D).await;
    r.starttls().await;
    let ok = r.auth_plain(user, &format!("{user}-pw")).await;
    assert!(ok.starts_with("<success"), "{ok}");
    r.bind(Some(res)).await;
    r.send("<presence/>").await;
    r.wait_for(&format!("from='{user}@{D}/{res}' to='{user}@{D}/{res}'"))
        .await;
    r
}

#[tokio::test]
async fn metrics_move_with_the_traffic() {
    let d = Daemon::start();
    let addr = &http_addr(&d);
    let before = metrics(addr).await;
    let scram_ok = "xmppd_authentications_total{mechanism=\"SCRAM-SHA-256\",result=\"success\"}";
    let plain_ok = "xmppd_authentications_total{mechanism=\"PLAIN\",result=\"success\"}";
    let plain_bad = "xmppd_authentications_total{mechanism=\"PLAIN\",result=\"failure\"}";
    let delivered = "xmppd_signals_total{kind=\"message\",outcome=\"delivered\"}";
    let offline = "xmppd_signals_total{kind=\"message\",outcome=\"stored_offline\"}";
    let bounced = "xmppd_signals_total{kind=\"message\",outcome=\"bounced\"}";
    let sessions = "xmppd_actors{kind=\"session\"}";
    assert_eq!(m(&before, sessions), 0.0);
    assert_eq!(m(&before, scram_ok), 0.0);

    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "one").await;
    let mut b = plain_login(&d, "bob", "two").await;
    // a wrong password, over PLAIN
    let mut bad = Raw::connect(d.starttls, D).await;
    bad.starttls().await;
    let f = bad.auth_plain("bob", "wrong").await;
    assert!(f.contains("not-authorized"), "{f}");

    let now = wait_metric(addr, sessions, 2.0).await;
    assert_eq!(m(&now, scram_ok), 1.0);
    assert_eq!(m(&now, plain_ok), 1.0);
    assert_eq!(m(&now, plain_bad), 1.0);
    assert_eq!(m(&now, "xmppd_connections{kind=\"client\"}"), 3.0);
    assert_eq!(m(&now, "xmppd_actors{kind=\"io_task\"}"), 3.0);
    // each login's presence came back to it
    let notify = "xmppd_signals_total{kind=\"notify\",outcome=\"delivered\"}";
    assert!(m(&now, notify) >= 2.0, "{}", m(&now, notify));
    assert_eq!(m(&now, "xmppd_connections_secure{tls=\"true\"}"), 3.0);
    assert_eq!(m(&now, "xmppd_connections_secure{tls=\"false\"}"), 0.0);
    // the process, under the standard unprefixed names
    assert!(m(&now, "process_resident_memory_bytes") > 1e6);
    assert!(m(&now, "process_open_fds") >= 3.0);
    assert!(m(&now, "process_max_fds") >= m(&now, "process_open_fds"));
    assert!(m(&now, "process_cpu_seconds_total") > 0.0);
    let start = m(&now, "process_start_time_seconds");
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(start > unix - 300.0 && start <= unix, "{start}");
    let (stanzas_in, bytes_in) = (
        m(&now, "xmppd_stanzas_total{direction=\"in\"}"),
        m(&now, "xmppd_traffic_bytes_total{direction=\"in\"}"),
    );

    for i in 0..3 {
        a.send(&format!(
            "<message to='bob@{D}/two' type='chat' id='m{i}'><body>hi {i}</body></message>"
        ))
        .await;
        b.wait_for(&format!("id='m{i}'")).await;
    }
    let now = metrics(addr).await;
    assert_eq!(m(&now, delivered) - m(&before, delivered), 3.0);
    assert!(m(&now, "xmppd_stanzas_total{direction=\"in\"}") >= stanzas_in + 3.0);
    assert!(m(&now, "xmppd_traffic_bytes_total{direction=\"in\"}") > bytes_in + 150.0);
    // one message in 64 on the direct path is timed: 128 more give at least two samples
    let timed = m(&now, "xmppd_routing_latency_seconds_count");
    for i in 0..128 {
        a.send(&format!(
            "<message to='bob@{D}/two' type='chat' id='t{i}'><body>{i}</body></message>"
        ))
        .await;
    }
    b.wait_for("id='t127'").await;
    let now = metrics(addr).await;
    assert_eq!(m(&now, delivered) - m(&before, delivered), 131.0);
    assert!(m(&now, "xmppd_routing_latency_seconds_count") >= timed + 2.0);
    assert!(m(&now, "xmppd_routing_latency_seconds_sum") > 0.0);
    assert_eq!(
        m(&now, "xmppd_routing_latency_seconds_bucket{le=\"+Inf\"}"),
        m(&now, "xmppd_routing_latency_seconds_count")
    );
    // cumulative buckets
    let le = |b: &str| {
        m(
            &now,
            &format!("xmppd_routing_latency_seconds_bucket{{le=\"{b}\"}}"),
        )
    };
    assert!(le("0.00001") <= le("0.001") && le("0.001") <= le("+Inf"));

    // bob leaves: a chat message to him is kept offline; one to nobody bounces
    drop(b);
    wait_metric(addr, sessions, 1.0).await;
    a.send(&format!(
        "<message to='bob@{D}' type='chat' id='off'><body>later</body></message>"
    ))
    .await;
    a.send(&format!(
        "<message to='nobody@{D}' type='chat' id='gone'><body>?</body></message>"
    ))
    .await;
    let err = a.wait_for("id='gone'").await;
    assert!(err.contains("type='error'"), "{err}");
    let now = wait_metric(addr, offline, m(&before, offline) + 1.0).await;
    assert_eq!(m(&now, bounced) - m(&before, bounced), 1.0);
    // one outcome per signal: the error reply alice got is not a delivered message too
    assert_eq!(m(&now, delivered) - m(&before, delivered), 131.0);
    assert_eq!(
        m(
            &now,
            "xmppd_signals_total{kind=\"message\",outcome=\"dropped\"}"
        ),
        0.0
    );
    assert_eq!(
        m(&now, "xmppd_actors_started_total{kind=\"session\"}")
            - m(&now, "xmppd_actors_stopped_total{kind=\"session\"}"),
        1.0
    );
}

#[tokio::test]
async fn the_monitor_lists_each_connection_with_its_fields() {
    let d = Daemon::start();
    let addr = &http_addr(&d);
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "one").await;
    let _b = plain_login(&d, "bob", "two").await;
    a.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    a.wait_for("id='p1'").await;

    let alice = row_of(addr, "alice@localhost/one").await;
    assert_eq!(alice["kind"], "client");
    assert_eq!(alice["mechanism"], "SCRAM-SHA-256");
    assert_eq!(alice["tls_version"], "TLSv1_3");
    assert!(
        alice["tls_cipher"]
            .as_str()
            .is_some_and(|c| c.starts_with("TLS13_")),
        "{alice}"
    );
    assert!(
        alice["remote"]
            .as_str()
            .is_some_and(|r| r.starts_with("127.0.0.1:")),
        "{alice}"
    );
    // presence and the ping at least; the ping's answer and the presence echo out
    assert!(alice["stanzas_in"].as_u64() >= Some(2), "{alice}");
    assert!(alice["stanzas_out"].as_u64() >= Some(2), "{alice}");
    assert!(alice["bytes_in"].as_u64() > Some(500), "{alice}");
    assert!(alice["bytes_out"].as_u64() > Some(500), "{alice}");
    assert!(alice["since"].as_u64() > Some(1_700_000_000), "{alice}");
    let bob = row_of(addr, "bob@localhost/two").await;
    assert_eq!(bob["mechanism"], "PLAIN");

    // a connection that has not authenticated is listed too, without an identity
    let mut raw = Raw::connect(d.starttls, D).await;
    raw.open().await;
    let rows = monitor_rows(addr).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows.iter()
            .any(|r| r["identity"] == "" && r["tls_version"].is_null()),
        "{rows:?}"
    );
    drop(raw);

    // the page is HTML with the table's script and its token
    let (status, page) = http(addr, "GET", "/monitor", None, &[], "").await;
    assert_eq!(status, 200);
    assert!(page.contains("<table") && page.contains("/monitor.json"));
    assert_eq!(csrf(addr).await.len(), 48);

    // without the token of DATA_DIR/http.token or a WebAdmin login: 401 (the page
    // sends a browser to the login form), no JIDs
    let anon = Http {
        token: String::new(),
        ..Web::of(&d)
    };
    for path in ["/monitor", "/monitor.json", "/stats"] {
        let (s, body) = http(&anon, "GET", path, None, &[], "").await;
        let want = if path == "/monitor" { 303 } else { 401 };
        assert!(s == want && !body.contains("alice"), "{path}: {s} {body}");
    }
    // a browser opens /monitor?token=T once: the page sets a cookie its own requests carry
    let mut raw = TcpStream::connect(addr.addr).await.expect("connect");
    raw.write_all(
        format!(
            "GET /monitor?token={} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            addr.token, addr.addr
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(TIMEOUT, raw.read_to_end(&mut buf))
        .await
        .expect("read timeout")
        .expect("read");
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 200")
            && head.contains(&format!("set-cookie: xmppd_token={}", addr.token))
            && head.contains("httponly")
            && head.contains("samesite=strict"),
        "{head}"
    );
    let cookie = format!("xmppd_token={}", addr.token);
    let (s, body) = http(
        &anon,
        "GET",
        "/monitor.json",
        None,
        &[("Cookie", cookie.as_str())],
        "",
    )
    .await;
    assert!(
        s == 200 && body.contains("alice@localhost/one"),
        "{s} {body}"
    );
    // the token in a URL counts on GET /monitor only, the cookie on the monitor's paths
    let (s, _) = http(
        &anon,
        "GET",
        &format!("/monitor.json?token={}", addr.token),
        None,
        &[],
        "",
    )
    .await;
    assert_eq!(s, 401);
    let (s, _) = http(
        &anon,
        "GET",
        &format!("/api/settings?token={}", addr.token),
        None,
        &[],
        "",
    )
    .await;
    assert_eq!(s, 401);
    let (s, _) = http(
        &anon,
        "GET",
        "/api/settings",
        None,
        &[("Cookie", cookie.as_str())],
        "",
    )
    .await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn closing_a_connection_from_the_monitor_needs_the_token_and_a_loopback_host() {
    let d = Daemon::start();
    let addr = &http_addr(&d);
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "one").await;
    let id = row_of(addr, "alice@localhost/one").await["id"]
        .as_u64()
        .expect("id");
    let token = csrf(addr).await;
    let form = format!("id={id}");
    let ctype = ("Content-Type", "application/x-www-form-urlencoded");

    // without the token, with a wrong one, with the token but another Host or a
    // foreign Origin: refused, and the connection stays
    let (s, _) = http(addr, "POST", "/monitor/close", None, &[ctype], &form).await;
    assert_eq!(s, 403);
    let wrong = format!("{form}&csrf={}", "0".repeat(48));
    let (s, _) = http(addr, "POST", "/monitor/close", None, &[ctype], &wrong).await;
    assert_eq!(s, 403);
    let with_token = [ctype, ("X-CSRF-Token", token.as_str())];
    let (s, _) = http(
        addr,
        "POST",
        "/monitor/close",
        Some("attacker.example"),
        &with_token,
        &form,
    )
    .await;
    assert_eq!(s, 403);
    let foreign = [
        ctype,
        ("X-CSRF-Token", token.as_str()),
        ("Origin", "http://attacker.example"),
    ];
    let (s, _) = http(addr, "POST", "/monitor/close", None, &foreign, &form).await;
    assert_eq!(s, 403);
    // GET cannot close anything
    let (s, _) = http(
        addr,
        "GET",
        &format!("/monitor/close?{form}"),
        None,
        &[],
        "",
    )
    .await;
    assert_eq!(s, 405);
    a.send("<iq type='get' id='still'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let r = a.wait_for("id='still'").await;
    assert!(r.contains("type='result'"), "{r}");

    // with the token (as the page's form field): the stream ends with policy-violation
    let good = format!("{form}&csrf={token}");
    let (s, body) = http(addr, "POST", "/monitor/close", None, &[ctype], &good).await;
    assert_eq!(s, 200, "{body}");
    let rest = a.read_to_close().await;
    assert!(
        rest.contains("<policy-violation") && rest.contains("</stream:stream>"),
        "{rest}"
    );
    // gone from the monitor; an unknown id is 404
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !monitor_rows(addr).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "row never went away"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, _) = http(addr, "POST", "/monitor/close", None, &[ctype], &good).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn the_http_side_refuses_a_non_loopback_address_at_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[[listener]]\naddress = \"127.0.0.1:0\"\n[http]\naddress = \"0.0.0.0:5280\"\n",
            dir.path().join("data").display()
        ),
    )
    .expect("write");
    let out = std::process::Command::new(xmppd_bin())
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loopback"), "{err}");
}

#[tokio::test]
async fn reload_applies_a_new_log_level_without_dropping_connections() {
    let d = Daemon::with(Options {
        log_level: "major".into(),
        ..Options::default()
    });
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "one").await;
    a.send("<iq type='get' id='quiet-ping'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    a.wait_for("id='quiet-ping'").await;
    assert!(!d.log().contains("quiet-ping"), "major logs no XML");

    // a domain not served yet: host-unknown
    let mut other = Raw::connect(d.starttls, "new.example").await;
    let h = other.header();
    other.send(&h).await;
    let refused = other.read_to_close().await;
    assert!(refused.contains("host-unknown"), "{refused}");

    let text = std::fs::read_to_string(&d.config).expect("config");
    let text = text.replace("log_level = \"major\"", "log_level = \"all\"");
    let text = format!("{text}\n[[domain]]\nname = \"new.example\"\n");
    std::fs::write(&d.config, text).expect("config");
    let out = d.cli(&["reload"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("applied log_level"), "{stdout}");
    // a new domain without a certificate of its own is served with [tls]'s at once
    assert!(
        stdout.contains("added [new.example]") && !stdout.contains("needs-restart"),
        "{stdout}"
    );
    // the new domain is served at once
    let mut other = Raw::connect(d.starttls, "new.example").await;
    let features = other.open().await;
    assert!(
        features.contains("urn:ietf:params:xml:ns:xmpp-tls"),
        "{features}"
    );

    // the same connection goes on, and its XML is logged now
    a.send("<iq type='get' id='loud-ping'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let r = a.wait_for("id='loud-ping'").await;
    assert!(r.contains("type='result'"), "{r}");
    d.wait_log("loud-ping", 1);

    // a broken file is reported and changes nothing
    std::fs::write(&d.config, "log_level = 7\n").expect("config");
    let out = d.cli(&["reload"]);
    assert!(!out.status.success());
    a.send("<iq type='get' id='after'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    a.wait_for("id='after'").await;
}

fn reload_in(dir: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(xmppd_bin())
        .arg("--data-dir")
        .arg(dir)
        .arg("reload")
        .output()
        .expect("reload");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn reload_never_signals_a_process_that_is_not_xmppd() {
    // a pid file left behind (not locked by a daemon), naming a live process that a
    // SIGHUP would end
    let dir = tempfile::tempdir().expect("tmp");
    let mut victim = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    let pf = dir.path().join("xmppd.pid");
    std::fs::write(&pf, format!("{}\n", victim.id())).expect("pid file");
    let (ok, stderr) = reload_in(dir.path());
    assert!(!ok && stderr.contains("stale pid file"), "{stderr}");
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        victim.try_wait().expect("wait").is_none(),
        "the process named by a stale pid file got a signal"
    );
    let _ = victim.kill();
    let _ = victim.wait();
    // garbage: refused before any kill(2) (-1, 0 and 1 are refused the same way, in
    // the unit tests of src/reload.rs: a regression here would signal every process)
    for bad in ["", "12abc", "99999999999", "+-3"] {
        std::fs::write(&pf, format!("{bad}\n")).expect("pid file");
        let (ok, stderr) = reload_in(dir.path());
        assert!(
            !ok && stderr.contains("not a process id"),
            "{bad}: {stderr}"
        );
    }
    // no pid file: nothing running
    std::fs::remove_file(&pf).expect("rm");
    let (ok, stderr) = reload_in(dir.path());
    assert!(!ok && stderr.contains("no running xmppd"), "{stderr}");
}

#[tokio::test]
async fn a_second_daemon_on_the_same_data_directory_refuses_to_start() {
    let d = Daemon::start();
    let out = d.cli(&["run"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("another xmppd is running"),
        "{stderr}"
    );
    // the first one still serves, and still reloads
    let (_a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "one").await;
    let out = d.cli(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn offline_messages_a_closing_session_did_not_write_stay_stored() {
    let d = Daemon::start();
    let addr = &http_addr(&d);
    let stored = "xmppd_signals_total{kind=\"message\",outcome=\"stored_offline\"}";
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "one").await;
    for i in 0..20 {
        a.send(&format!(
            "<message to='bob@{D}' type='chat' id='off{i}'><body>kept {i}</body></message>"
        ))
        .await;
    }
    wait_metric(addr, stored, 20.0).await;
    // bob comes online and leaves in the same breath: his session is closing while the
    // account hands it the stored messages
    let (mut b, _) = Raw::bound(d.starttls, D, "bob", "bob-pw", "gone").await;
    b.send("<presence/></stream:stream>").await;
    let first = b.read_to_close().await;
    // every message reaches bob exactly once: on the first stream or the next one
    let (mut b, _) = Raw::login(d.starttls, D, "bob", "bob-pw", "back").await;
    let mut again = 0;
    for i in 0..20 {
        let id = format!("id='off{i}'");
        if !first.contains(&id) {
            b.wait_for(&id).await;
            again += 1;
        }
    }
    // written once each: a batch counted twice would skip past 20
    let now = wait_metric(addr, "xmppd_offline_delivered_total", 20.0).await;
    assert_eq!(m(&now, stored), 20.0, "stored once, not counted again");
    assert!(again > 0 || first.contains("id='off19'"), "{first}");
}

#[tokio::test]
async fn presence_from_a_blocked_sender_is_counted_dropped() {
    let d = Daemon::start();
    let addr = &http_addr(&d);
    let dropped = "xmppd_signals_total{kind=\"notify\",outcome=\"dropped\"}";
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "one").await;
    let (mut b, _) = Raw::login(d.starttls, D, "bob", "bob-pw", "two").await;
    b.send(&format!(
        "<iq type='set' id='blk'><block xmlns='urn:xmpp:blocking'><item jid='alice@{D}'/></block></iq>"
    ))
    .await;
    b.wait_for("id='blk'").await;
    let before = m(&metrics(addr).await, dropped);
    // directed presence from someone bob blocks: not delivered, not answered (XEP-0191 §3.3)
    a.send(&format!("<presence to='bob@{D}/two'/>")).await;
    wait_metric(addr, dropped, before + 1.0).await;
    b.send("<iq type='get' id='after'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    b.wait_for("id='after'").await;
    assert!(
        !b.stash_has(&format!("from='alice@{D}/one'")),
        "presence from a blocked sender reached bob"
    );
}
