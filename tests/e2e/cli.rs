//! The `cutover` binary: `check` on good and bad files, `--help`, and the
//! demo driven by the `ctl` commands it prints.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::TempDir;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn cutover(args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run the cutover binary");
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

fn check(files: &[&Path]) -> Run {
    let mut args = vec!["check"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    cutover(&args)
}

/// Exercises most features, with weights at both ends of the range.
const GOOD: &str = r#"listeners:
  - name: public
    address: "127.0.0.1:8080"
  - name: admin
    address: "[::1]:8081"
    routes: [web]
groups:
  stable:
    endpoints: ["127.0.0.1:9001", "localhost:9002"]
    balance: hash
  canary:
    endpoints: ["127.0.0.1:9101"]
    protocol: h2
  dark:
    endpoints: []
routes:
  - name: web
    hostnames: [example.com, "*.example.com"]
    rules:
      - name: canary-override
        matches:
          - headers: [{name: x-canary, value: always}]
          - query_params: [{name: canary, type: Present}]
        backends: [{group: canary}]
      - name: users
        matches: [{path: {type: RegularExpression, value: "/users/[0-9]+"}, method: GET}]
        sticky: {cookie: session}
        backends: [{group: stable, weight: 1000000}, {group: canary, weight: 0}]
        request_header_modifier: {set: [{name: x-env, value: prod}], remove: [x-debug]}
      - name: default
        backends: [{group: stable, weight: 95}, {group: canary, weight: 5}, {group: dark, weight: 0}]
        response_header_modifier: {add: [{name: x-served-by, value: cutover}]}
"#;

#[test]
fn check_accepts_a_good_file() {
    let dir = TempDir::new("good");
    let good = dir.write("good.yaml", GOOD);
    let run = check(&[&good]);
    assert_eq!(
        run.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stdout.contains(&format!("{}: ok", good.display())),
        "stdout: {}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("2 listeners, 1 routes, 3 rules, 3 groups"),
        "stdout: {}",
        run.stdout
    );
    assert!(run.stderr.is_empty(), "stderr: {}", run.stderr);
}

#[test]
fn check_reports_every_error_with_its_field_path() {
    let dir = TempDir::new("bad");
    let bad = dir.write(
        "bad.yaml",
        r#"listeners:
  - name: public
    address: "localhost:8080"
groups:
  stable: {endpoints: ["127.0.0.1:9001"]}
  canary: {endpoints: ["127.0.0.1:9002"]}
routes:
  - name: web
    rules:
      - name: split
        backends: [{group: stable, weight: 1000001}, {group: canry, weight: 5}]
      - name: rx
        matches: [{path: {type: RegularExpression, value: "/a/("}}]
        backends: [{group: stable}]
      - name: two-keys
        matches: [{path: {value: /s}}]
        sticky: {header: x-user-id, cookie: session}
        backends: [{group: stable}]
"#,
    );
    let run = check(&[&bad]);
    assert_eq!(
        run.code,
        Some(1),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    let expected = [
        "listeners[0].address: \"localhost:8080\" is not ip:port",
        "routes[0].rules[0].backends[0].weight: 1000001 is out of range 0..=1000000",
        "routes[0].rules[0].backends[1].group: unknown group \"canry\"; did you mean \"canary\"?",
        "routes[0].rules[1].matches[0].path.value: invalid regular expression \"/a/(\"",
        "routes[0].rules[2].sticky: set exactly one of header, cookie or source_ip",
    ];
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|e| !run.stderr.contains(e))
        .collect();
    assert!(
        missing.is_empty(),
        "missing {missing:#?}\nstderr:\n{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("{}: 5 error(s)", bad.display())),
        "stderr:\n{}",
        run.stderr
    );
    assert!(!run.stdout.contains("ok"), "stdout: {}", run.stdout);

    // Several files: each is reported, and one bad file fails the run.
    let good = dir.write("good.yaml", GOOD);
    let run = check(&[&good, &bad]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stdout.contains(&format!("{}: ok", good.display())),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains(&format!("{}: 5 error(s)", bad.display())),
        "{}",
        run.stderr
    );
}

#[test]
fn check_names_field_and_line_of_yaml_errors() {
    let dir = TempDir::new("yaml");
    let head = "listeners:\n  - name: public\n    address: \"127.0.0.1:8080\"\ngroups:\n  stable: {endpoints: [\"127.0.0.1:9001\"]}\n";
    let cases = [
        // A value of the wrong type, on line 11.
        (
            "type.yaml",
            format!("{head}routes:\n  - name: web\n    rules:\n      - name: split\n        backends:\n          - {{group: stable, weight: heavy}}\n"),
            "routes[0].rules[0].backends[0].weight",
            "line 11",
        ),
        // A negative weight.
        (
            "negative.yaml",
            format!("{head}routes:\n  - name: web\n    rules:\n      - name: split\n        backends: [{{group: stable, weight: -1}}]\n"),
            "routes[0].rules[0].backends[0].weight",
            "line 10",
        ),
        // A misspelt field is an error, not silently ignored.
        (
            "typo.yaml",
            format!("{head}routes:\n  - name: web\n    rules:\n      - name: split\n        backend: [{{group: stable}}]\n"),
            "routes[0].rules[0].backend: unknown field `backend`",
            "line 10",
        ),
        // Broken YAML: an unclosed flow sequence.
        (
            "syntax.yaml",
            "listeners:\n  - name: public\n    address: \"127.0.0.1:8080\"\ngroups:\n  stable: {endpoints: [\"127.0.0.1:9001\"\nroutes: []\n".to_string(),
            "groups.stable",
            "line ",
        ),
    ];
    for (name, text, field, line) in cases {
        let file = dir.write(name, &text);
        let run = check(&[&file]);
        assert_eq!(run.code, Some(1), "{name}: {}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("{}: 1 error(s)", file.display())),
            "{name}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(field),
            "{name}: should name {field:?}:\n{}",
            run.stderr
        );
        assert!(
            run.stderr.contains(line),
            "{name}: should name {line:?}:\n{}",
            run.stderr
        );
    }
}

#[test]
fn check_on_a_missing_file_says_so() {
    let dir = TempDir::new("missing");
    let missing = dir.0.join("nope.yaml");
    let run = check(&[&missing]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("cannot read {}", missing.display())),
        "stderr: {}",
        run.stderr
    );
    if cfg!(unix) {
        assert!(
            run.stderr.contains("No such file"),
            "stderr: {}",
            run.stderr
        );
    }

    // No file at all is a usage error.
    let run = cutover(&["check"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("<FILES>"), "stderr: {}", run.stderr);
}

#[test]
fn help_lists_commands_and_check_usage() {
    let run = cutover(&["--help"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for word in ["Usage: cutover", "run", "check", "demo", "--version"] {
        assert!(
            run.stdout.contains(word),
            "--help lacks {word:?}:\n{}",
            run.stdout
        );
    }
    let run = cutover(&["check", "--help"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains("Usage: cutover check <FILES>..."),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("field path"), "{}", run.stdout);
    let run = cutover(&["--version"]);
    assert_eq!(run.code, Some(0));
    assert!(run.stdout.starts_with("cutover "), "{}", run.stdout);
    let run = cutover(&["no-such-command"]);
    assert_eq!(run.code, Some(2));
}

/// A new user follows the demo's own instructions: the `cutover ctl`
/// commands it prints reach its admin listener and move its split.
#[test]
fn demo_prints_ctl_commands_that_reach_its_admin_listener() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let mut demo = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the demo");
    let stdout = demo.stdout.take().expect("piped stdout");
    let (lines, rx) = (BufReader::new(stdout).lines(), std::sync::mpsc::channel());
    let tx = rx.0;
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ctl_prefix = None;
    let mut printed = String::new();
    while ctl_prefix.is_none() && Instant::now() < deadline {
        let Ok(line) = rx.1.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        printed.push_str(&line);
        printed.push('\n');
        let command = line.split('#').next().unwrap_or_default().trim();
        if let Some(cmd) = command.strip_suffix("status").map(str::trim) {
            if let Some(rest) = cmd.strip_prefix("cutover ctl") {
                ctl_prefix = Some(
                    rest.split_whitespace()
                        .map(String::from)
                        .collect::<Vec<_>>(),
                );
            }
        }
    }
    let prefix = ctl_prefix.unwrap_or_else(|| {
        let _ = demo.kill();
        panic!("the demo printed no `cutover ctl ... status` line:\n{printed}")
    });
    let ctl = |args: &[&str]| {
        let mut all: Vec<&str> = vec!["ctl"];
        all.extend(prefix.iter().map(String::as_str));
        all.extend_from_slice(args);
        cutover(&all)
    };
    let status = ctl(&["status"]);
    let weights = ctl(&["weights", "web", "split", "stable=50", "canary=50"]);
    let after = ctl(&["status"]);
    let _ = demo.kill();
    let _ = demo.wait();
    assert_eq!(status.code, Some(0), "ctl status: {}", status.stderr);
    assert!(status.stdout.contains("split"), "{}", status.stdout);
    assert_eq!(weights.code, Some(0), "ctl weights: {}", weights.stderr);
    let moved = |l: &&str| l.contains("split") && l.contains("stable") && l.contains("50.0%");
    assert!(
        after.stdout.lines().any(|l| moved(&l)),
        "the new weights show in status:\n{}",
        after.stdout
    );
    assert!(
        printed.contains("Control API on http://127.0.0.1:"),
        "{printed}"
    );
}
