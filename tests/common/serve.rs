//! `deploybot serve` as a child process on a test's configuration file, and the other
//! commands run beside it: signed pushes (`deploybot simulate`) and the API's list routes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cli_run::Run;
use super::http;

const BIN: &str = env!("CARGO_BIN_EXE_deploybot");
/// No start or wait may take longer than this; a hang fails the test instead.
pub const LIMIT: Duration = Duration::from_secs(90);

/// Variables of the developer's shell that would change what the commands do.
const SCRUBBED: &[&str] = &[
    "DATABASE_URL",
    "DEPLOYBOT_CONFIG",
    "DEPLOYBOT_LISTEN",
    "DEPLOYBOT_WEBHOOK_SECRET",
    "DEPLOYBOT_URL",
    "DEPLOYBOT_TOKEN",
    "DEPLOYBOT_LOG",
    "DEPLOYBOT_LOG_FORMAT",
    "RUST_LOG",
    "GITHUB_TOKEN",
    "GITHUB_APP_ID",
    "GITHUB_APP_PRIVATE_KEY",
    "GITHUB_APP_PRIVATE_KEY_PATH",
];

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `deploybot ARGS` in `dir` with the developer's variables scrubbed and `env` set
/// (logging only warnings unless `env` says otherwise).
pub fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(BIN);
    for name in SCRUBBED {
        command.env_remove(name);
    }
    let output = command
        .args(args)
        .env("DEPLOYBOT_LOG", "warn")
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run {
        args: args.join(" "),
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `deploybot serve` on a configuration file whose `listen` is 127.0.0.1:`port`; its
/// stderr goes to `serve.log` in `dir`. Killed when dropped.
pub struct Served {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    config: PathBuf,
    token: String,
}

impl Served {
    /// Starts it with `env` set, and waits until the API answers `token`.
    pub fn start(dir: &Path, config: &Path, port: u16, token: &str, env: &[(&str, &str)]) -> Self {
        let log = std::fs::File::create(dir.join("serve.log")).unwrap();
        let mut command = Command::new(BIN);
        for name in SCRUBBED {
            command.env_remove(name);
        }
        let child = command
            .args(["serve", "--config"])
            .arg(config)
            .env("DEPLOYBOT_LOG", "warn")
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut served = Served {
            child,
            port,
            dir: dir.to_path_buf(),
            config: config.to_path_buf(),
            token: token.to_string(),
        };
        // The port is bound before the instances are stored: wait for an API answer.
        let started = Instant::now();
        while !served.answers() {
            if let Some(status) = served.child.try_wait().unwrap() {
                panic!("deploybot serve exited with {status}:\n{}", served.log());
            }
            assert!(
                started.elapsed() < LIMIT,
                "serve did not start:\n{}",
                served.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        served
    }

    fn answers(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && http(self.port, "GET", "/v1/instances", Some(&self.token), "").0 == 200
    }

    /// What it wrote on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    /// Stops it as an operator does, SIGTERM, and waits until it has ended cleanly.
    pub fn stop(mut self) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill only sends a signal, to the server this test started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "serve stopped with {status}:\n{}",
            self.log()
        );
    }

    /// A signed push to main of `repo` (`deploybot simulate push`, with the delivery id
    /// `delivery` when given): the id of the deployment it created.
    pub fn push(&self, repo: &str, delivery: Option<&str>) -> String {
        let config = self.config.display().to_string();
        let url = format!("http://127.0.0.1:{}", self.port);
        let mut args = vec!["simulate", "push", "--repo", repo, "--json"];
        if let Some(delivery) = delivery {
            args.extend(["--delivery", delivery]);
        }
        let push = run_in(
            &self.dir,
            &args,
            &[("DEPLOYBOT_CONFIG", &config), ("DEPLOYBOT_URL", &url)],
        );
        let answer = push.expect(0).json();
        assert_eq!(answer["status"], "accepted", "{answer}");
        answer["deployments"][0].as_str().unwrap().to_string()
    }

    /// Every item of an instance's list route (`what`: deployments or releases).
    pub fn list(&self, instance: &str, what: &str) -> Vec<Value> {
        let path = format!("/v1/instances/{instance}/{what}?limit=100");
        let (status, body) = http(self.port, "GET", &path, Some(&self.token), "");
        assert_eq!(status, 200, "GET {path}: {body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        assert!(page["next_cursor"].is_null(), "one page holds them: {page}");
        page["items"].as_array().unwrap().clone()
    }

    /// Waits until none of `instance`'s deployments is pending or running.
    pub fn settle(&self, instance: &str) {
        let started = Instant::now();
        loop {
            let items = self.list(instance, "deployments");
            if items
                .iter()
                .all(|d| d["state"] != "pending" && d["state"] != "running")
            {
                return;
            }
            assert!(
                started.elapsed() < LIMIT,
                "deployments did not end: {items:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
