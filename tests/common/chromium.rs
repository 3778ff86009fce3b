//! Headless Chromium for the browser tests, spoken to over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: NUL-terminated JSON messages, commands on file descriptor 3,
//! answers and events on 4), so no WebDriver and no WebSocket client is needed.
//!
//! `find_or_skip` gives the binary, or says loudly that the test does not run; with
//! `DEPLOYBOT_REQUIRE_BROWSER` set (CI sets it) a missing Chromium fails the test instead.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The window's (and every screenshot's) size in CSS pixels, at scale 1.
pub const WIDTH: u32 = 1280;
pub const HEIGHT: u32 = 1000;

/// The Chromium binary: `DEPLOYBOT_CHROMIUM`, else `chromium`, `chromium-browser`,
/// `google-chrome` or `google-chrome-stable` on PATH.
pub fn find() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("DEPLOYBOT_CHROMIUM") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    let names = [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ];
    std::env::split_paths(&path)
        .flat_map(|dir| names.map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// The Chromium binary for `test`; without one, says past the harness's output capture that
/// `test` did not run and gives `None`, or fails when `DEPLOYBOT_REQUIRE_BROWSER` is set.
pub fn find_or_skip(test: &str) -> Option<PathBuf> {
    let binary = find();
    if binary.is_none() {
        let reason = "no Chromium binary was found (DEPLOYBOT_CHROMIUM, or chromium, \
                      chromium-browser, google-chrome on PATH)";
        assert!(
            std::env::var_os("DEPLOYBOT_REQUIRE_BROWSER").is_none(),
            "DEPLOYBOT_REQUIRE_BROWSER is set but {reason}"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: {reason}. Install Chromium (`apt-get install -y chromium`) or \
             point DEPLOYBOT_CHROMIUM at a Chromium binary to run it."
        );
    }
    binary
}

/// A running headless Chromium with its own profile; closed when dropped.
pub struct Chromium {
    child: Child,
    commands: std::io::PipeWriter,
    answers: mpsc::Receiver<Value>,
    last_id: u64,
    _profile: tempfile::TempDir,
}

impl Chromium {
    pub fn launch(binary: &Path) -> Chromium {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let profile = tempfile::tempdir().unwrap();
        let (its_commands, commands) = std::io::pipe().unwrap();
        let (answers_in, its_answers) = std::io::pipe().unwrap();
        let (read_fd, write_fd) = (its_commands.as_raw_fd(), its_answers.as_raw_fd());
        let mut command = Command::new(binary);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
            ])
            .args([
                "--no-first-run",
                "--disable-sync",
                "--disable-background-networking",
                "--disable-component-update",
            ])
            .args(["--hide-scrollbars", "--force-device-scale-factor=1"])
            .arg(format!("--window-size={WIDTH},{HEIGHT}"))
            .arg("--remote-debugging-pipe")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only fcntl, dup2 and close run between fork and exec (async-signal-safe).
        unsafe {
            command.pre_exec(move || {
                // Lift both ends above 4 first, so that placing one cannot close the other.
                let high_read = libc::fcntl(read_fd, libc::F_DUPFD, 10);
                let high_write = libc::fcntl(write_fd, libc::F_DUPFD, 10);
                if high_read < 0
                    || high_write < 0
                    || libc::dup2(high_read, 3) < 0
                    || libc::dup2(high_write, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(high_read);
                libc::close(high_write);
                Ok(())
            });
        }
        let child = command.spawn().unwrap();
        drop((its_commands, its_answers));
        let (sender, answers) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(answers_in);
            let mut message = Vec::new();
            while reader.read_until(0, &mut message).unwrap_or(0) > 0 {
                if message.last() == Some(&0) {
                    message.pop();
                }
                let parsed = serde_json::from_slice::<Value>(&message);
                if parsed.is_ok_and(|value| sender.send(value).is_err()) {
                    return;
                }
                message.clear();
            }
        });
        Chromium {
            child,
            commands,
            answers,
            last_id: 0,
            _profile: profile,
        }
    }

    /// Sends one command (to the browser, or to a tab's `session`) and returns its result.
    pub fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.last_id += 1;
        let id = self.last_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self
                .answers
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("Chromium did not answer {method}: {e}"));
            if answer["id"] == id {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// A new tab showing `url`, once it has loaded; returns the tab's session.
    pub fn open(&mut self, url: &str) -> String {
        let target = self.send(None, "Target.createTarget", json!({"url": url}));
        let attached = self.send(
            None,
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        let session = attached["sessionId"].as_str().unwrap().to_string();
        // The whole window is page: the screenshot has exactly the window's size.
        self.send(
            Some(&session),
            "Emulation.setDeviceMetricsOverride",
            json!({"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": false}),
        );
        let loaded = format!(
            "location.href === {} && document.readyState === 'complete'",
            json!(url)
        );
        self.wait_until(&session, &loaded);
        session
    }

    /// The value of `expression` in the tab (a promise's, once it settles).
    pub fn eval(&mut self, session: &str, expression: &str) -> Value {
        let result = self.send(
            Some(session),
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Waits (at most 30 s) until `expression` is true in the tab.
    pub fn wait_until(&mut self, session: &str, expression: &str) {
        self.wait_within(session, expression, Duration::from_secs(30));
    }

    /// Waits at most `timeout` until `expression` is true in the tab; fails with the page.
    pub fn wait_within(&mut self, session: &str, expression: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.eval(session, expression) != json!(true) {
            if Instant::now() > deadline {
                let dom = self.eval(session, "document.documentElement.outerHTML");
                panic!(
                    "still not true after {timeout:?}: {expression}\nthe page:\n{}",
                    dom.as_str().unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The tab as a PNG of `WIDTH` × `HEIGHT`.
    pub fn screenshot(&mut self, session: &str) -> Vec<u8> {
        use base64::Engine as _;
        let shot = self.send(
            Some(session),
            "Page.captureScreenshot",
            json!({"format": "png"}),
        );
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self
            .commands
            .write_all(b"{\"id\":0,\"method\":\"Browser.close\"}\0");
        wait_or_kill(&mut self.child, Duration::from_secs(5));
    }
}

/// Gives a child that was asked to stop `grace` to exit, then kills it; it is reaped either way.
pub fn wait_or_kill(child: &mut Child, grace: Duration) {
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
