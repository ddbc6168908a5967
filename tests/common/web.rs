//! A small HTTP/1.1 client for the daemon's HTTP side (one request per connection, as
//! the server serves them): the WebAdmin tests log in, keep the session cookie and the
//! page's CSRF token, and post forms or JSON.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An answer: status, head (lower-cased header names) and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim().to_ascii_lowercase() == name).then(|| v.trim().to_string())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `application/x-www-form-urlencoded` of the pairs.
pub fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                b => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The daemon's HTTP side, and what a logged-in browser would hold.
pub struct Web {
    pub addr: SocketAddr,
    /// The content of `DATA_DIR/http.token`.
    pub token: String,
    pub cookie: Option<String>,
    pub csrf: String,
    /// What `Host` says (the address when empty).
    pub host: String,
}

impl Web {
    pub fn of(d: &Daemon) -> Web {
        let read = |name: &str| {
            let f = d.dir.path().join("data").join(name);
            std::fs::read_to_string(&f)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
                .trim()
                .to_string()
        };
        Web {
            addr: read("admin.addr").parse().expect("HTTP address"),
            token: read("http.token"),
            cookie: None,
            csrf: String::new(),
            host: String::new(),
        }
    }

    /// One request; `headers` are sent as given (with the session cookie when held).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let mut s = tokio::time::timeout(TIMEOUT, TcpStream::connect(self.addr))
            .await
            .expect("connect timeout")
            .expect("connect");
        let host = if self.host.is_empty() {
            self.addr.to_string()
        } else {
            self.host.clone()
        };
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(c) = &self.cookie {
            req.push_str(&format!("Cookie: {c}\r\n"));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        tokio::time::timeout(TIMEOUT, s.read_to_end(&mut buf))
            .await
            .expect("read timeout")
            .expect("read");
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Answer {
            status,
            head: head.to_string(),
            body: body.to_string(),
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.request("GET", path, &[], "").await
    }

    /// A form POST as a browser sends it (the session cookie, no CSRF added).
    pub async fn post_form(&self, path: &str, pairs: &[(&str, &str)]) -> Answer {
        let ct = ("Content-Type", "application/x-www-form-urlencoded");
        self.request("POST", path, &[ct], &form(pairs)).await
    }

    /// A form POST from a page, with the session's CSRF token.
    pub async fn submit(&self, path: &str, pairs: &[(&str, &str)]) -> Answer {
        let mut all = pairs.to_vec();
        all.push(("csrf", self.csrf.as_str()));
        self.post_form(path, &all).await
    }

    /// A JSON call with the token in `Authorization` (a script).
    pub async fn api(&self, method: &str, path: &str, body: &serde_json::Value) -> Answer {
        let auth = format!("Bearer {}", self.token);
        let ct = ("Content-Type", "application/json");
        let body = if method == "GET" {
            String::new()
        } else {
            body.to_string()
        };
        self.request(method, path, &[("Authorization", &auth), ct], &body)
            .await
    }

    /// Log in with the form; on success keep the session cookie and the pages' CSRF
    /// token. Returns the login's answer.
    pub async fn login(&mut self, jid: &str, password: &str) -> Answer {
        let a = self
            .post_form("/admin/login", &[("jid", jid), ("password", password)])
            .await;
        if let Some(c) = a.header("set-cookie") {
            let pair = c.split(';').next().unwrap_or("").to_string();
            if !pair.ends_with('=') {
                self.cookie = Some(pair);
                let page = self.get("/admin/settings").await;
                assert_eq!(page.status, 200, "{}", page.body);
                self.csrf = csrf_of(&page.body);
            }
        }
        a
    }
}

/// The CSRF token a page's forms carry.
pub fn csrf_of(page: &str) -> String {
    let start = page
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF field: {page}"))
        + 19;
    page[start..start + 48].to_string()
}
