//! A real headless Chromium driven over WebDriver (W3C, JSON over HTTP/1.1 to `chromedriver`
//! on a loopback port): just the commands the browser tests use. chromedriver is started on
//! port 0 (it prints the one it took), Chromium with `--headless=new --no-sandbox` (root needs
//! the latter) and a temporary user-data-dir and HOME. Dropping the [`Browser`] ends the
//! session, kills chromedriver and every process under it by pid (even when the test failed),
//! and removes the temporary directory with what Chromium wrote there.

#![allow(dead_code)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The browser binary and its driver (Debian: `apt-get install chromium chromium-driver`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _dir: tempfile::TempDir,
}

/// Why no browser could be had: the test fails with this (it never passes silently).
pub fn missing() -> Option<String> {
    for (path, what) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
        if !std::path::Path::new(path).exists() {
            return Some(format!(
                "{path} is missing: this test drives a real headless Chromium; install it with \
                 `apt-get install -y chromium chromium-driver` (package {what}; .ci/run does)"
            ));
        }
    }
    None
}

/// One HTTP/1.1 request with a JSON body to chromedriver: the answer's `value`.
fn request(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("chromedriver: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    // chromedriver keeps the connection open whatever the request says: read the head, then
    // exactly Content-Length bytes.
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).map_err(|e| format!("{method} {path}: {e}"))? == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or("no status from chromedriver")?;
    let len: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .ok_or_else(|| format!("no Content-Length from chromedriver: {head}"))?;
    let mut raw = vec![0u8; len];
    r.read_exact(&mut raw).map_err(|e| e.to_string())?;
    let body = String::from_utf8_lossy(&raw).into_owned();
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if status != 200 {
        return Err(format!("{method} {path}: {status} {}", v["value"]));
    }
    Ok(v["value"].clone())
}

impl Browser {
    /// Start chromedriver and a headless Chromium session at `width` x `height`.
    pub fn start(width: u32, height: u32) -> Browser {
        if let Some(why) = missing() {
            panic!("{why}");
        }
        let dir = tempfile::tempdir().unwrap();
        let mut driver = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut out = BufReader::new(driver.stdout.take().unwrap());
        let mut port = None;
        let mut line = String::new();
        while port.is_none() && out.read_line(&mut line).unwrap_or(0) > 0 {
            port = line
                .trim()
                .strip_prefix("ChromeDriver was started successfully on port ")
                .and_then(|p| p.trim_end_matches('.').parse::<u16>().ok());
            line.clear();
        }
        // Keep draining its output so that it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let Some(port) = port else {
            let _ = driver.kill();
            let _ = driver.wait();
            panic!("chromedriver did not say which port it took");
        };
        let profile = dir.path().join("profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--disable-extensions", "--disable-background-networking",
                         format!("--user-data-dir={}", profile.display()),
                         format!("--window-size={width},{height}")],
            }
        }}});
        let mut b = Browser { driver, port, session: String::new(), _dir: dir };
        let v = request(port, "POST", "/session", Some(&caps)).unwrap_or_else(|e| panic!("new session: {e}"));
        b.session = v["sessionId"].as_str().expect("a session id").to_string();
        b
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        request(self.port, method, &format!("/session/{}{path}", self.session), body.as_ref())
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url}))).unwrap_or_else(|e| panic!("{url}: {e}"));
    }

    /// Run `script` (a function body; `arguments` are `args`) in the page: its return value.
    pub fn js(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({"script": script, "args": args})))
            .unwrap_or_else(|e| panic!("script {script:?}: {e}"))
    }

    /// Wait until `script` returns something truthy: that value.
    pub fn wait_js(&self, what: &str, timeout: Duration, script: &str) -> Value {
        let start = Instant::now();
        loop {
            let v = self.js(script, json!([]));
            if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            if start.elapsed() > timeout {
                let page = self.js("return location.href + '\\n' + document.body.innerText", json!([]));
                panic!(
                    "timed out after {timeout:?} waiting for {what} in the page; the page: {}",
                    page.as_str().unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The WebDriver id of the element matching `css`.
    pub fn find(&self, css: &str) -> String {
        let v = self
            .cmd("POST", "/element", Some(json!({"using": "css selector", "value": css})))
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        v.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).expect("an element id").to_string()
    }

    /// Type `text` into the element (as keystrokes).
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/value"), Some(json!({"text": text}))).unwrap();
    }

    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({}))).unwrap();
    }

    /// Resize the window (a phone: 390 x 844).
    pub fn resize(&self, width: u32, height: u32) {
        self.cmd("POST", "/window/rect", Some(json!({"width": width, "height": height}))).unwrap();
    }

    pub fn delete_cookies(&self) {
        self.cmd("DELETE", "/cookie", None).unwrap();
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let v = self.cmd("GET", "/screenshot", None).unwrap();
        base64_decode(v.as_str().expect("base64 PNG"))
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let clean: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for c in clean.chunks(4) {
        let n = c.iter().enumerate().fold(0u32, |n, (i, &b)| n | (u32::from(val(b)) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..c.len()]);
    }
    out
}

/// The pids under `root` (children, grandchildren...), from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent: Vec<(u32, u32)> = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // The field after the command name (which may hold spaces) is the state, then the ppid.
        if let Some(ppid) = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)?.parse().ok()) {
            parent.push((pid, ppid));
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parent.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out.remove(0);
    out
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.cmd("DELETE", "", None);
        }
        // Whatever is left under chromedriver (Chromium and its helpers), then chromedriver.
        for pid in descendants(self.driver.id()) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).stderr(Stdio::null()).status();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("Zm9vYmFy"), b"foobar");
    assert_eq!(base64_decode("Zm8="), b"fo");
    assert_eq!(base64_decode("Zg=="), b"f");
}
