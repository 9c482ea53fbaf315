//! `grapevine node --http` in a real browser: three `grapevine node` processes on
//! loopback, the first serving the web view, loaded by headless Chromium. The
//! assertions read the DOM Chromium rendered (`--dump-dom`), never a screenshot: the
//! page's data attributes (`data-member`, `data-state`, `data-owner`...) carry what
//! it shows. Every wait polls under a deadline.
//!
//! Chromium comes from Debian's package (`apt-get install -y chromium`, which
//! `.ci/run` does). Without it the test fails when `CI` is set and says how to get
//! it; elsewhere it prints that it skipped and why.
//!
//! The README's picture of the page comes from here:
//! `GRAPEVINE_WEB_SCREENSHOT=$PWD/docs/web-view.png cargo test -p grapevine-cli --test web`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_grapevine");

/// How long the test waits for the cluster to show on the page.
const DEADLINE: Duration = Duration::from_secs(60);

/// How often the page refreshes what it shows, at the latest.
const PAGE_REFRESH: Duration = Duration::from_secs(1);

/// How long Chromium may take to answer one command.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(40);

/// A `grapevine node` child process, killed on drop.
struct NodeProcess {
    child: Child,
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl NodeProcess {
    fn start(name: &str, extra: &[&str]) -> NodeProcess {
        let mut child = Command::new(BIN)
            .args(["node", "--bind", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(["--profile", "fast", "--cluster", "web-test", "--name", name])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start grapevine node");
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let mut line = String::new();
        stderr.read_line(&mut line).expect("a first log line");
        assert!(
            line.contains("node started"),
            "unexpected first line: {line}"
        );
        let start = line.find("node=").expect("node=") + "node=".len();
        let addr = line[start..].split_whitespace().next().unwrap().to_owned();
        let log = Arc::new(Mutex::new(vec![line]));
        let sink = log.clone();
        // Keep draining the child's logs so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        NodeProcess { child, addr, log }
    }

    /// The web view's URL, from the node's "web view served at" log line.
    fn web_url(&self) -> String {
        let found = wait_for("the web view's log line", || {
            self.log.lock().unwrap().iter().find_map(|l| {
                let at = l.find("web view served at ")? + "web view served at ".len();
                Some(l[at..].trim().to_owned())
            })
        });
        found.0
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `probe` until it returns something, under [`DEADLINE`]; returns it and how
/// long it took.
fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(found) = probe() {
            return (found, start.elapsed());
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The Chromium binary: `$CHROMIUM`, or the first of Debian's and others' names on
/// the PATH.
fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Headless Chromium driven over the DevTools protocol on a pipe
/// (`--remote-debugging-pipe`: commands in on fd 3, replies out on fd 4, each a JSON
/// message ended by a NUL byte), with one page open. `--dump-dom` cannot serve here:
/// with a virtual-time budget it waits for every fetch to end, and the page's event
/// stream never does. `sh` maps the pipes onto fds 3 and 4, so no unsafe `pre_exec`.
struct Browser {
    child: Child,
    commands: std::process::ChildStdin,
    replies: mpsc::Receiver<Value>,
    next_id: u64,
    session: String,
    profile: PathBuf,
}

impl Browser {
    /// Starts Chromium and opens `url` in a new page.
    fn open(binary: &Path, url: &str) -> Browser {
        // One profile per browser: Chromium hands a URL to the instance already
        // running on a profile and exits, and the tests run in parallel.
        static OPENED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let profile =
            std::env::temp_dir().join(format!("grapevine-web-test-{}-{n}", std::process::id()));
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null"#)
            .arg(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--window-size=1280,860",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let commands = child.stdin.take().expect("piped stdin");
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (tx, replies) = mpsc::channel();
        std::thread::spawn(move || {
            let mut message = Vec::new();
            while out.read_until(0, &mut message).unwrap_or(0) > 0 {
                message.pop_if(|b| *b == 0);
                if let Ok(value) = serde_json::from_slice::<Value>(&message)
                    && tx.send(value).is_err()
                {
                    break;
                }
                message.clear();
            }
        });
        let mut browser = Browser {
            child,
            commands,
            replies,
            next_id: 0,
            session: String::new(),
            profile,
        };
        let target = browser.call("Target.createTarget", json!({ "url": url }));
        let target = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_owned();
        browser
    }

    /// Sends one command (to the page once attached) and returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .and_then(|()| self.commands.flush())
            .expect("send a command to chromium");
        let start = Instant::now();
        loop {
            let left = BROWSER_TIMEOUT.saturating_sub(start.elapsed());
            let reply = match self.replies.recv_timeout(left) {
                Ok(reply) => reply,
                Err(e) => {
                    panic!("chromium did not answer {method} within {BROWSER_TIMEOUT:?}: {e}")
                }
            };
            // Skip the protocol's events and other commands' replies.
            if reply["id"] == json!(id) {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        result["result"]["value"].clone()
    }

    /// The page's DOM as it stands now.
    fn dom(&mut self) -> String {
        let dom = self.eval("document.documentElement.outerHTML");
        dom.as_str().unwrap_or_default().to_owned()
    }

    /// Reloads the page: what it then shows, it fetched anew.
    fn reload(&mut self) {
        self.call("Page.reload", json!({ "ignoreCache": true }));
    }

    /// A PNG of the page as it stands.
    fn screenshot(&mut self) -> Vec<u8> {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        base64_decode(shot["data"].as_str().expect("PNG data"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ask Chromium to close, so that it ends its own helper processes; kill it
        // if it has not gone within a few seconds.
        let close = json!({ "id": 0, "method": "Browser.close" });
        let _ = self.commands.write_all(format!("{close}\0").as_bytes());
        let _ = self.commands.flush();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Standard base64 (the protocol's encoding of binary data).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let digits: Vec<u8> = text
        .bytes()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/'))
        .map(value)
        .collect();
    digits
        .chunks(4)
        .flat_map(|chunk| {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, d)| n | u32::from(*d) << (18 - 6 * i));
            let bytes = n.to_be_bytes();
            bytes[1..chunk.len()].to_vec()
        })
        .collect()
}

/// The opening tags in `dom` that carry `attr` (e.g. `data-member`).
fn tags_with<'a>(dom: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!(" {attr}=\"");
    let mut tags = Vec::new();
    let mut rest = dom;
    while let Some(at) = rest.find(&needle) {
        let open = rest[..at].rfind('<').unwrap_or(0);
        let close = at + rest[at..].find('>').unwrap_or(rest.len() - at);
        tags.push(&rest[open..close]);
        rest = &rest[close..];
    }
    tags
}

/// The value of `attr` in one opening tag.
fn attr<'a>(tag: &'a str, attr: &str) -> Option<&'a str> {
    let needle = format!(" {attr}=\"");
    let at = tag.find(&needle)? + needle.len();
    let len = tag[at..].find('"')?;
    Some(&tag[at..at + len])
}

/// The members table as the page shows it: (name, state).
fn members(dom: &str) -> Vec<(String, String)> {
    tags_with(dom, "data-member")
        .into_iter()
        .filter(|t| t.starts_with("<tr"))
        .map(|t| {
            (
                attr(t, "data-member").unwrap_or_default().to_owned(),
                attr(t, "data-state").unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The ring's ranges as the page draws them: their owners, one per range.
fn ranges(dom: &str) -> Vec<String> {
    tags_with(dom, "data-owner")
        .into_iter()
        .filter(|t| t.starts_with("<path"))
        .map(|t| attr(t, "data-owner").unwrap_or_default().to_owned())
        .collect()
}

/// How long after a crash every survivor declares it dead, at most: a probe round
/// over the others (each member is probed once per round, plus the probe timeout),
/// then Lifeguard's longest suspicion (`suspicion_max_mult · suspicion_mult ·
/// max(1, log10 n) · probe_interval`), plus one gossip interval to spread it. The
/// `fast` profile's timings (cli/src/main.rs).
fn detection_bound(n: u32) -> Duration {
    let config = grapevine::Config::lan("web-test");
    let probe = Duration::from_millis(200);
    let probe_timeout = Duration::from_millis(100);
    let gossip = Duration::from_millis(200);
    let round = probe * (n - 1) + probe_timeout;
    let log = f64::from(n).log10().max(1.0);
    let suspicion = probe.mul_f64(log) * config.suspicion_mult * config.suspicion_max_mult;
    round + suspicion + gossip
}

#[test]
fn the_page_shows_the_live_cluster_and_a_death() {
    let Some(chromium) = find_chromium() else {
        let message = "Chromium not found (looked for $CHROMIUM, then chromium, chromium-browser, google-chrome on the PATH): install it with `apt-get install -y chromium`";
        if std::env::var_os("CI").is_some() {
            panic!("{message}; CI must run the browser tests (.ci/run installs it)");
        }
        // Straight to the process's stderr: libtest captures `eprintln!` of a
        // passing test, and a skip must never be silent.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED the_page_shows_the_live_cluster_and_a_death: {message} (under CI this fails)"
        );
        return;
    };
    let n1 = NodeProcess::start("n1", &["--http", "127.0.0.1:0"]);
    let _n2 = NodeProcess::start("n2", &["--seed", &n1.addr]);
    let mut n3 = NodeProcess::start("n3", &["--seed", &n1.addr]);
    let url = n1.web_url();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let mut browser = Browser::open(&chromium, &url);

    // Three alive members, and a ring of 16 ranges each, drawn by owner; first on
    // the open page, then on a reload (what it shows, it fetched).
    let mut last = String::new();
    let cluster_shown = |browser: &mut Browser, last: &mut String| {
        *last = browser.dom();
        let members = members(last);
        let ranges = ranges(last);
        let alive = members.iter().filter(|(_, s)| s == "alive").count();
        let owners: BTreeSet<&String> = ranges.iter().collect();
        (members.len() == 3 && alive == 3 && ranges.len() == 48 && owners.len() == 3).then_some(())
    };
    let (_, shown) = wait_for("the page to list 3 alive members and their ring", || {
        cluster_shown(&mut browser, &mut last)
    });
    eprintln!("the page showed 3 alive members and 48 ranges {shown:?} after it opened");
    browser.reload();
    wait_for(
        "the reloaded page to list 3 alive members and their ring",
        || cluster_shown(&mut browser, &mut last),
    );
    let names: Vec<String> = members(&last).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["n1", "n2", "n3"], "{last}");
    assert!(
        last.contains("data-loaded=\"1\""),
        "rendered from its fetches"
    );
    wait_for("the page's event stream to open", || {
        browser.dom().contains("data-stream=\"open\"").then_some(())
    });

    // n3 crashes: the open page shows it dead within the detection bound (the
    // event stream triggers a refresh; the page also refreshes every second).
    let bound = detection_bound(3);
    n3.kill();
    let killed = Instant::now();
    wait_for("the page to show n3 dead", || {
        last = browser.dom();
        members(&last)
            .iter()
            .any(|(n, s)| n == "n3" && s == "dead")
            .then_some(())
    });
    let seen = killed.elapsed();
    eprintln!("the page showed n3 dead {seen:?} after the kill (detection bound {bound:?})");
    assert!(
        seen <= bound + PAGE_REFRESH,
        "n3 shown dead after {seen:?}, beyond the detection bound {bound:?} + the page's refresh {PAGE_REFRESH:?}"
    );
    // The survivors are still live (a loaded machine may have one of them
    // suspected for a moment, which is not what this test is about).
    let live = members(&last)
        .into_iter()
        .filter(|(n, s)| n != "n3" && (s == "alive" || s == "suspect"))
        .count();
    assert_eq!(live, 2, "{last}");
    // Its ranges stay on the ring (a crash moves no data), drawn as a dead owner's.
    assert_eq!(ranges(&last).iter().filter(|o| *o == "n3").count(), 16);
    assert!(last.contains("data-owner-state=\"dead\""), "{last}");
    // The death arrived as a server-sent event too.
    wait_for("the page's event list to show a death", || {
        browser
            .dom()
            .contains("data-kind=\"member_died\"")
            .then_some(())
    });

    if let Some(path) = std::env::var_os("GRAPEVINE_WEB_SCREENSHOT") {
        // The README's picture: the page with the death in its event list.
        std::fs::write(&path, browser.screenshot()).expect("write the screenshot");
        eprintln!("screenshot written to {}", Path::new(&path).display());
    }

    // A fresh load shows the same (the initial render fetches the JSON).
    browser.reload();
    wait_for("the reloaded page to show n3 dead", || {
        last = browser.dom();
        let members = members(&last);
        (members.len() == 3 && members.iter().any(|(n, s)| n == "n3" && s == "dead")).then_some(())
    });
}

#[test]
fn an_http_port_in_use_is_a_one_line_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("its address").port().to_string();
    let out = Command::new(BIN)
        .args(["node", "--bind", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--http", &port])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run grapevine node");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains(&format!("--http 127.0.0.1:{port}")),
        "{stderr}"
    );
}

/// `grapevine web --replay` on a simulated run's flight log: the page scrubs
/// through time, and the recorded node's view shows the crashed node alive, then
/// suspected, then dead.
#[test]
fn a_replay_scrubs_through_a_suspicion_to_a_death() {
    let Some(chromium) = find_chromium() else {
        let message = "Chromium not found: install it with `apt-get install -y chromium`";
        if std::env::var_os("CI").is_some() {
            panic!("{message}; CI must run the browser tests (.ci/run installs it)");
        }
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED a_replay_scrubs_through_a_suspicion_to_a_death: {message} (under CI this fails)"
        );
        return;
    };
    let dir = std::env::temp_dir().join(format!("grapevine-web-replay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(BIN)
        .args(["simulate", "--nodes", "5", "--seed", "3", "--crash", "3@5s"])
        .args(["--duration", "20s", "--record-node", "0", "--record"])
        .arg(&dir)
        .arg("--svg")
        .arg(dir.with_extension("svg"))
        .output()
        .expect("run grapevine simulate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut child = Command::new(BIN)
        .args(["web", "--http", "127.0.0.1:0", "--replay"])
        .arg(&dir)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start grapevine web");
    let mut line = String::new();
    BufReader::new(child.stderr.take().expect("piped stderr"))
        .read_line(&mut line)
        .expect("its log line");
    let server = KillOnDrop(child);
    let url = line
        .split("served at ")
        .nth(1)
        .unwrap_or_else(|| panic!("unexpected log line: {line}"))
        .trim()
        .to_owned();
    let mut browser = Browser::open(&chromium, &url);
    wait_for("the page to load the timeline", || {
        let dom = browser.dom();
        (dom.contains("data-mode=\"replay\"") && dom.contains("data-loaded=\"1\"")).then_some(())
    });
    let frames = browser
        .eval("Number(document.getElementById('scrub').max) + 1")
        .as_u64()
        .expect("a frame count");
    assert!(frames >= 60, "20 s at 250 ms a frame: {frames}");
    // n3's state in each frame, as the page shows it once the slider moves there.
    let mut states = Vec::new();
    for frame in 0..frames {
        let dom = browser.eval(&format!(
            "(() => {{ const s = document.getElementById('scrub'); s.value = {frame}; \
             s.dispatchEvent(new Event('input')); return document.documentElement.outerHTML; }})()"
        ));
        let dom = dom.as_str().unwrap_or_default();
        assert!(
            dom.contains(&format!("data-frame=\"{frame}\"")),
            "frame {frame} not shown"
        );
        let state = members(dom)
            .into_iter()
            .find(|(n, _)| n == "n3")
            .map(|(_, s)| s);
        if states.last() != Some(&state) {
            states.push(state);
        }
    }
    let states: Vec<&str> = states
        .iter()
        .map(|s| s.as_deref().unwrap_or("absent"))
        .collect();
    eprintln!("n3 as node 0 saw it, frame by frame: {states:?}");
    let alive = states
        .iter()
        .position(|s| *s == "alive")
        .expect("n3 alive at first");
    let suspect = states
        .iter()
        .position(|s| *s == "suspect")
        .expect("n3 suspected");
    let dead = states.iter().position(|s| *s == "dead").expect("n3 dead");
    assert!(alive < suspect && suspect < dead, "{states:?}");
    assert_eq!(states.last(), Some(&"dead"), "{states:?}");
    // At the last frame the event list holds the death, with its time in the log.
    assert!(browser.dom().contains("data-kind=\"member_died\""));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(dir.with_extension("svg"));
}

/// A child process killed when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
