use http::{Request, Version};
use proptest::prelude::*;

use super::*;

fn resolve(version: Version, uri: &str, hosts: &[&str]) -> Result<String, ProxyError> {
    let mut b = Request::builder().version(version).uri(uri);
    for h in hosts {
        b = b.header("host", *h);
    }
    let (mut parts, ()) = b.body(()).unwrap().into_parts();
    ClientHost::resolve(&mut parts).map(|h| h.as_str().to_owned())
}

#[test]
fn hosts_are_normalized() {
    assert_eq!(normalize("Example.COM:8080"), "example.com");
    assert_eq!(normalize("example.com."), "example.com");
    assert_eq!(normalize("[::1]:80"), "::1");
    assert_eq!(normalize("a.b"), "a.b");
}

#[test]
fn host_values_are_host_and_port() {
    for ok in [
        "a.example",
        "A.example:8080",
        "[::1]",
        "[::1]:80",
        "10.0.0.1:1",
        "a:",
        "",
    ] {
        assert!(is_valid_host(ok.as_bytes()), "{ok}");
    }
    for bad in [
        "evil@a.example",
        "a.example x",
        "a.example, b.example",
        ":80",
        "a:80:80",
        "a:123456",
        "[::1",
        "[::1]x",
        "a/b",
        "a%41",
    ] {
        assert!(!is_valid_host(bad.as_bytes()), "{bad}");
    }
}

#[test]
fn the_target_authority_wins() {
    let h1 = resolve(Version::HTTP_11, "http://a.example/", &["127.0.0.1"]);
    assert_eq!(h1.unwrap(), "a.example");
    let h2 = resolve(Version::HTTP_2, "http://a.example/", &["b.example"]);
    assert!(h2.is_err(), "a conflicting host on h2 is a 400");
    let same = resolve(Version::HTTP_2, "http://a.example/", &["A.example"]);
    assert_eq!(same.unwrap(), "a.example");
    let userinfo = resolve(Version::HTTP_11, "http://evil@a.example/", &[]);
    assert!(userinfo.is_err());
}

#[test]
fn host_header_count_is_checked() {
    assert!(resolve(Version::HTTP_11, "/", &[]).is_err());
    assert!(resolve(Version::HTTP_11, "/", &["a", "a"]).is_err());
    assert!(resolve(Version::HTTP_2, "/", &["a", "b"]).is_err());
    assert_eq!(resolve(Version::HTTP_10, "/", &[]).unwrap(), "");
    assert_eq!(resolve(Version::HTTP_11, "/", &["a:1"]).unwrap(), "a:1");
}

proptest! {
    #![proptest_config(crate::prop_config(40_000))]

    /// A valid host never has what makes two parsers disagree about it.
    #[test]
    fn valid_hosts_have_no_separators(s in "[ -~]{0,24}") {
        if is_valid_host(s.as_bytes()) {
            prop_assert!(!s.contains(['@', ' ', ',', '/', '\\', '?', '#', '%']), "{s:?}");
            prop_assert!(s.parse::<Authority>().is_ok() || s.is_empty(), "{s:?}");
        }
    }
}
