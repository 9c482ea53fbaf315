//! `grapevine node` processes for the key and join tests: started with any arguments
//! (optionally inside a network namespace), their logs collected, queried through the
//! `grapevine` binary, killed on drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_grapevine");

/// How long a test waits for any one condition.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A command running `grapevine ARGS`, inside namespace `ns` if one is given.
pub fn command(ns: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, BIN]);
            c
        }
        None => Command::new(BIN),
    };
    cmd.args(args);
    if args.first() == Some(&"node") && !args.contains(&"--cluster") {
        // One cluster per test unless the test names one (libtest names each test's
        // thread after it): tests run at once, and a port one test's killed node
        // freed may be taken by another test's node, which must not merge clusters.
        let test = std::thread::current()
            .name()
            .unwrap_or("test")
            .replace("::", "-");
        cmd.args(["--cluster", &format!("{test}-{}", std::process::id())]);
    }
    cmd.env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// Runs `grapevine ARGS` to completion.
pub fn grapevine(ns: Option<&str>, args: &[&str]) -> Output {
    command(ns, args).output().expect("run grapevine")
}

/// Asserts a clean failure: exit code `code`, one `error:` line on stderr and it is
/// the last line, it contains `expect`, and nothing panicked. Returns stderr.
pub fn assert_error(out: &Output, code: i32, expect: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit {:?}: {stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "one error line expected: {stderr}");
    assert_eq!(stderr.lines().last(), Some(errors[0]), "{stderr}");
    assert!(
        errors[0].contains(expect),
        "expected {expect:?} in {stderr}"
    );
    stderr
}

/// Waits for `done` with a deadline, polling; panics with `what` and `context()` when
/// the deadline passes. Returns how long it took.
pub fn wait_for(
    what: &str,
    mut done: impl FnMut() -> bool,
    context: impl Fn() -> String,
) -> Duration {
    let clock = grapevine_driver::Clock::new();
    let start = clock.now();
    loop {
        if done() {
            return clock.now() - start;
        }
        if clock.now() - start > DEADLINE {
            panic!(
                "timed out after {DEADLINE:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running `grapevine node`.
pub struct NodeProcess {
    child: Child,
    pub label: String,
    pub ns: Option<String>,
    pub addr: String,
    pub admin: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl NodeProcess {
    /// Starts `grapevine node ARGS` and waits for its "node started" line.
    pub fn start(label: &str, ns: Option<&str>, args: &[&str]) -> NodeProcess {
        let mut child = command(ns, &[&["node"], args].concat())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start grapevine node");
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let mut line = String::new();
        stderr
            .read_line(&mut line)
            .expect("read the first log line");
        assert!(
            line.contains("node started"),
            "{label}: unexpected first line: {line}"
        );
        let field = |name: &str| {
            let start = line.find(&format!(" {name}=")).expect("field") + name.len() + 2;
            line[start..]
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        };
        let (addr, admin) = (field("node"), field("admin"));
        let log = Arc::new(Mutex::new(vec![line.clone()]));
        let sink = log.clone();
        // Keep draining the child's logs so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                sink.lock().expect("log lock").push(line);
            }
        });
        NodeProcess {
            child,
            label: label.to_owned(),
            ns: ns.map(str::to_owned),
            addr,
            admin,
            log,
        }
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// Whether a log line contains every one of `needles`.
    pub fn logged(&self, needles: &[&str]) -> bool {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .any(|l| needles.iter().all(|n| l.contains(n)))
    }

    /// `grapevine WHAT... --node ADDR --admin ADMIN --json`, parsed; `None` if it failed.
    pub fn try_json(&self, what: &[&str]) -> Option<serde_json::Value> {
        let args = [
            what,
            &["--node", &self.addr, "--admin", &self.admin, "--json"],
        ]
        .concat();
        let out = grapevine(self.ns.as_deref(), &args);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Like [`NodeProcess::try_json`], failing the test when the command fails.
    pub fn json(&self, what: &[&str]) -> serde_json::Value {
        let args = [
            what,
            &["--node", &self.addr, "--admin", &self.admin, "--json"],
        ]
        .concat();
        let out = grapevine(self.ns.as_deref(), &args);
        assert!(
            out.status.success(),
            "{} {what:?}: {}",
            self.label,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON reply")
    }

    /// The members this node sees alive, by address.
    pub fn alive(&self) -> Vec<String> {
        let Some(reply) = self.try_json(&["members"]) else {
            return Vec::new();
        };
        reply["members"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .filter(|m| m["state"] == "alive")
                    .filter_map(|m| m["addr"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Kills the process (SIGKILL), as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("grapevine-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    /// Writes `text` to `name` with permission bits `mode`; returns its path.
    pub fn file(&self, name: &str, text: &str, mode: u32) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write file");
        set_mode(&path, mode);
        path.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Every node's log, for a failure message.
pub fn logs(nodes: &[&NodeProcess]) -> String {
    nodes
        .iter()
        .map(|n| format!("--- {} ({})\n{}", n.label, n.addr, n.log()))
        .collect::<Vec<_>>()
        .join("\n")
}
