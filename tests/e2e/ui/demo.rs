//! `cutover demo` prints the dashboard's URL, and the URL serves the page.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{get, http1_client};

#[tokio::test]
async fn the_demo_prints_a_dashboard_url_that_serves_the_page() {
    let mut demo = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the demo");
    let stdout = demo.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut url = None;
    while url.is_none() && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            url = line.strip_prefix("Dashboard: ").map(str::to_string);
        }
    }
    let Some(url) = url else {
        let _ = demo.kill();
        panic!("the demo printed no `Dashboard: URL` line");
    };
    let page = get(&http1_client(), &url, &[]).await;
    let status = get(&http1_client(), &format!("{url}v1/status"), &[]).await;
    let _ = demo.kill();
    let _ = demo.wait();
    assert_eq!(page.status, 200, "{url}");
    assert!(page.body.contains("ui/app.js"), "{}", page.body);
    assert_eq!(status.status, 200, "loopback demo: no token needed");
}
