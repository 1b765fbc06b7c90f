//! The few W3C WebDriver commands the dashboard's browser test sends to `chromedriver`
//! (headless Chromium): open a session, go to a URL, read the URL and the page source, run a
//! script, take a screenshot. JSON over HTTP on loopback with the workspace's HTTP client.

use base64::Engine;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long chromedriver may take to answer its first request.
const START_LIMIT: Duration = Duration::from_secs(60);

/// A chromedriver process with one browser session; both end when dropped.
pub struct Browser {
    driver: Child,
    agent: ureq::Agent,
    session: String,
}

impl Browser {
    /// Starts `chromedriver` (a path) on a free loopback port and opens a headless Chromium
    /// session with a window of `width` x `height`.
    pub fn start(
        chromedriver: &std::path::Path,
        width: u32,
        height: u32,
    ) -> Result<Browser, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|error| format!("no free port: {error}"))?
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", chromedriver.display()))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut browser = Browser {
            driver,
            agent,
            session: format!("http://127.0.0.1:{port}"),
        };
        let capabilities = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            format!("--window-size={width},{height}"),
        ]}}}});
        let started = Instant::now();
        let session = loop {
            match browser.command("POST", "/session", Some(&capabilities)) {
                Ok(value) => break value,
                Err(_) if started.elapsed() < START_LIMIT => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(error) => return Err(format!("no browser session: {error}")),
            }
        };
        let id = session["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session id in {session}"))?;
        browser.session = format!("{}/session/{id}", browser.session);
        Ok(browser)
    }

    /// Sends a command; its `value`, or the driver's error message.
    fn command(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.session);
        let response = match body {
            Some(body) => self
                .agent
                .post(&url)
                .header("content-type", "application/json")
                .send(body.to_string()),
            None if method == "GET" => self.agent.get(&url).call(),
            None => self.agent.delete(&url).call(),
        };
        let mut response = response.map_err(|error| format!("{method} {path}: {error}"))?;
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|error| format!("{method} {path}: {error}"))?;
        let reply: Value = serde_json::from_str(&text)
            .map_err(|error| format!("{method} {path}: {error} in {text}"))?;
        if !status.is_success() {
            return Err(format!(
                "{method} {path}: {status}: {}",
                reply["value"]["message"]
            ));
        }
        Ok(reply["value"].clone())
    }

    /// Loads `url` and waits for the page.
    pub fn goto(&self, url: &str) -> Result<(), String> {
        self.command("POST", "/url", Some(&json!({ "url": url })))
            .map(drop)
    }

    /// The URL of the page shown.
    pub fn current_url(&self) -> Result<String, String> {
        let value = self.command("GET", "/url", None)?;
        value
            .as_str()
            .map(String::from)
            .ok_or_else(|| format!("URL {value}"))
    }

    /// The page's HTML as the browser holds it now.
    pub fn source(&self) -> Result<String, String> {
        let value = self.command("GET", "/source", None)?;
        value
            .as_str()
            .map(String::from)
            .ok_or_else(|| format!("source {value}"))
    }

    /// Runs `script` (a function body; `return` gives its value) in the page.
    pub fn execute(&self, script: &str) -> Result<Value, String> {
        self.command(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": [] })),
        )
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Result<Vec<u8>, String> {
        let value = self.command("GET", "/screenshot", None)?;
        let encoded = value
            .as_str()
            .ok_or_else(|| format!("screenshot {value}"))?;
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|error| format!("screenshot: {error}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.command("DELETE", "", None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
