//! The Dockerfile against the rules it promises (parsed; no engine here).

use super::*;

/// One instruction: keyword and the rest, continuation lines joined.
struct Instruction {
    keyword: String,
    rest: String,
}

pub(super) struct Dockerfile {
    /// Stages, each starting with its FROM.
    stages: Vec<Vec<Instruction>>,
}

pub(super) fn dockerfile() -> Dockerfile {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for line in logical.into_iter().filter(|l| !l.is_empty()) {
        let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let i = Instruction {
            keyword: keyword.to_ascii_uppercase(),
            rest: rest.trim().to_string(),
        };
        if i.keyword == "FROM" {
            stages.push(vec![i]);
        } else {
            stages
                .last_mut()
                .expect("an instruction before FROM")
                .push(i);
        }
    }
    Dockerfile { stages }
}

impl Dockerfile {
    fn last(&self) -> &[Instruction] {
        self.stages.last().unwrap()
    }

    fn get<'a>(stage: &'a [Instruction], keyword: &str) -> Vec<&'a str> {
        stage
            .iter()
            .filter(|i| i.keyword == keyword)
            .map(|i| i.rest.as_str())
            .collect()
    }

    pub(super) fn user_uid(&self) -> i64 {
        let users = Self::get(self.last(), "USER");
        let user = users.last().expect("a USER in the final stage");
        user.split(':')
            .next()
            .unwrap()
            .parse()
            .expect("a numeric USER (runAsNonRoot needs one)")
    }

    fn exec_form(&self, keyword: &str) -> Vec<String> {
        let v = Self::get(self.last(), keyword);
        let v = v.last().unwrap_or_else(|| panic!("no {keyword}"));
        serde_json::from_str(v).unwrap_or_else(|e| panic!("{keyword} is not in exec form: {e}"))
    }
}

#[test]
fn dockerfile_follows_its_rules() {
    let d = dockerfile();
    assert!(d.stages.len() >= 2, "multi-stage");
    let build = &d.stages[0];
    let runs = Dockerfile::get(build, "RUN").join(" ");
    assert!(runs.contains("cargo build --release --locked"), "{runs}");
    // --locked needs the lock file in the repository and in the context.
    let tracked = Command::new("git")
        .args(["ls-files", "--error-unmatch", "Cargo.lock"])
        .current_dir(repo())
        .output();
    if let Ok(out) = tracked {
        assert!(out.status.success(), "Cargo.lock is not committed");
    }
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    for needed in ["Cargo.lock", "Cargo.toml", "src", "config"] {
        assert!(
            !ignore
                .lines()
                .any(|l| l.trim().trim_end_matches('/') == needed),
            ".dockerignore drops {needed}"
        );
    }
    assert!(Dockerfile::get(build, "COPY")
        .iter()
        .any(|c| c.contains("Cargo.lock")));

    let last = d.last();
    let from = &last[0].rest;
    assert!(
        from.contains(':') && !from.ends_with(":latest"),
        "pinned final base: {from}"
    );
    for banned in ["RUN", "SHELL", "ADD"] {
        assert!(
            Dockerfile::get(last, banned).is_empty(),
            "{banned} in the final stage (no shell there)"
        );
    }
    assert!(d.user_uid() > 0, "non-root USER");
    assert_eq!(d.user_uid(), NONROOT);

    let entrypoint = d.exec_form("ENTRYPOINT");
    let cmd = d.exec_form("CMD");
    let copies = Dockerfile::get(last, "COPY");
    assert!(
        copies
            .iter()
            .any(|c| c.starts_with("--from=") && c.ends_with(&format!(" {}", entrypoint[0]))),
        "the binary is copied to the ENTRYPOINT path"
    );
    // The default command runs a config that the image holds and that passes.
    let config = cmd
        .iter()
        .position(|a| a == "--config" || a == "-c")
        .and_then(|i| cmd.get(i + 1))
        .expect("CMD names a config");
    let source = copies
        .iter()
        .find_map(|c| c.strip_suffix(&format!(" {config}")))
        .unwrap_or_else(|| panic!("{config} is not copied into the image"));
    crate::support::assert_check_passes(&repo().join(source.trim()));
    assert_eq!(cmd[0], "run");

    // EXPOSE: the default config's listeners and the admin port.
    let exposed: BTreeSet<u16> = Dockerfile::get(last, "EXPOSE")
        .iter()
        .flat_map(|e| e.split_whitespace())
        .map(|p| p.split('/').next().unwrap().parse().unwrap())
        .collect();
    let text = std::fs::read_to_string(repo().join(source.trim())).unwrap();
    let mut expected: BTreeSet<u16> = cutover::config::parse_yaml(&text)
        .unwrap()
        .listeners
        .iter()
        .map(|l| l.address.parse::<SocketAddr>().unwrap().port())
        .collect();
    expected.insert(9901);
    assert_eq!(exposed, expected);
}
