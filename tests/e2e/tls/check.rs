//! `cutover check` names the field and the file of a bad TLS file.

use super::*;

#[test]
fn check_names_the_field_and_the_file_of_a_bad_tls_file() {
    let ca = Ca::new("test-ca");
    let dir = TempDir::new("check");
    let (cert, _) = dir.pair("a", &ca.server(&["localhost"]));
    let (_, other_key) = dir.pair("b", &ca.server(&["localhost"]));
    let garbage = dir.file("garbage.pem", "hello\n");
    let missing = dir.0.join("missing.key").display().to_string();
    let tls = format!(
        "      certificates:\n{}{}",
        certificate(&cert, &other_key, "[a.test]"),
        certificate(&garbage, &missing, "")
    );
    let group = format!("    endpoints: [\"127.0.0.1:9\"]\n    tls:\n      ca: \"{garbage}\"\n      cert: \"{cert}\"\n");
    let file = dir.file("bad.yaml", &yaml(&tls, &group));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["check", &file])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for want in [
        format!("listeners[0].tls.certificates[0].key: {other_key}: key does not match the certificate in {cert}"),
        format!("listeners[0].tls.certificates[1].cert: {garbage}: no certificate found in PEM"),
        format!("listeners[0].tls.certificates[1].key: {missing}: cannot read: No such file"),
        format!("groups.app.tls.ca: {garbage}: no certificate found in PEM"),
        "groups.app.tls: cert and key come together".to_string(),
    ] {
        assert!(stderr.contains(&want), "missing {want:?} in:\n{stderr}");
    }
}
