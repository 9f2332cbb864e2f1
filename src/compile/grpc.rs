//! A gRPC service/method condition -> the path condition it stands for
//! (`/<service>/<method>`) and its GRPCRoute rank (characters of service
//! and method). Exact service and method: exact path; service only: path
//! prefix `/<service>`; method only: `/[^/]+/<method>`; regular
//! expressions: `/(service)/(method)`, a missing part matching any name.

use crate::config::error::ConfigErrors;
use crate::config::model::{GrpcMatchConfig, GrpcMatchType, PathMatchType};
use crate::route::matcher::PathMatch;

/// Any one service or method name (no `/`).
const ANY_NAME: &str = "[^/]+";

/// The path condition and rank of `m` (at field path `at`); `None` with
/// an error when a name is not a valid gRPC name or pattern.
pub fn compile(
    m: &GrpcMatchConfig,
    at: &str,
    errors: &mut ConfigErrors,
    path: impl FnOnce(PathMatchType, &str, &mut ConfigErrors) -> Option<PathMatch>,
) -> Option<(PathMatch, (usize, usize))> {
    let service = m.service.as_deref().filter(|s| !s.is_empty());
    let method = m.method.as_deref().filter(|s| !s.is_empty());
    let rank = (service.map_or(0, str::len), method.map_or(0, str::len));
    let (kind, value) = match m.kind {
        GrpcMatchType::Exact => {
            let before = errors.0.len();
            if let Some(s) = service.filter(|s| !service_name(s)) {
                errors.push(
                    format!("{at}.service"),
                    format!("{s:?} is not a gRPC service name (e.g. helloworld.Greeter: letters, digits, '_', dot-separated)"),
                );
            }
            if let Some(s) = method.filter(|s| !method_name(s)) {
                errors.push(
                    format!("{at}.method"),
                    format!("{s:?} is not a gRPC method name (letters, digits, '_')"),
                );
            }
            if errors.0.len() > before {
                return None;
            }
            exact(service, method)
        }
        GrpcMatchType::RegularExpression => {
            let part = |p: Option<&str>| p.map_or(ANY_NAME.to_string(), |p| format!("(?:{p})"));
            let value = format!("/{}/{}", part(service), part(method));
            (PathMatchType::RegularExpression, value)
        }
    };
    let field = match (m.kind, service, method) {
        (GrpcMatchType::RegularExpression, Some(_), None) => format!("{at}.service"),
        (GrpcMatchType::RegularExpression, _, Some(_)) => format!("{at}.method"),
        _ => at.to_string(),
    };
    let mut local = ConfigErrors::default();
    let compiled = path(kind, &value, &mut local);
    for e in local.0 {
        errors.push(field.clone(), e.message);
    }
    Some((compiled?, rank))
}

/// Exact names: the path condition they make.
fn exact(service: Option<&str>, method: Option<&str>) -> (PathMatchType, String) {
    match (service, method) {
        (Some(s), Some(m)) => (PathMatchType::Exact, format!("/{s}/{m}")),
        (Some(s), None) => (PathMatchType::PathPrefix, format!("/{s}")),
        (None, Some(m)) => (
            PathMatchType::RegularExpression,
            format!("/{ANY_NAME}/{}", regex::escape(m)),
        ),
        (None, None) => (PathMatchType::PathPrefix, "/".to_string()),
    }
}

/// Gateway API's service syntax: `\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*`,
/// letters of either case.
fn service_name(s: &str) -> bool {
    let s = s.strip_prefix('.').unwrap_or(s);
    s.split('.').all(method_name)
}

/// Gateway API's method syntax: `[A-Za-z_][A-Za-z_0-9]*`.
fn method_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(m: GrpcMatchConfig) -> Result<(String, (usize, usize)), String> {
        let mut errors = ConfigErrors::default();
        let out = compile(&m, "m", &mut errors, |kind, value, _| {
            Some(match kind {
                PathMatchType::Exact => PathMatch::Exact(format!("= {value}").into()),
                PathMatchType::PathPrefix => PathMatch::Prefix(format!("^ {value}").into()),
                PathMatchType::RegularExpression => PathMatch::Prefix(format!("~ {value}").into()),
            })
        });
        match out {
            Some((PathMatch::Exact(p) | PathMatch::Prefix(p), rank)) => Ok((p.to_string(), rank)),
            _ => Err(errors.to_string()),
        }
    }

    fn exact(service: Option<&str>, method: Option<&str>) -> GrpcMatchConfig {
        GrpcMatchConfig {
            kind: GrpcMatchType::Exact,
            service: service.map(Into::into),
            method: method.map(Into::into),
        }
    }

    #[test]
    fn names_become_the_path_condition_and_rank() {
        let got = |s, m| path_of(exact(s, m)).unwrap();
        assert_eq!(got(Some("a.B"), Some("Do")), ("= /a.B/Do".into(), (3, 2)));
        assert_eq!(got(Some("a.B"), None), ("^ /a.B".into(), (3, 0)));
        assert_eq!(got(None, Some("Do")), ("~ /[^/]+/Do".into(), (0, 2)));
        assert_eq!(got(None, None), ("^ /".into(), (0, 0)));
        let re = GrpcMatchConfig {
            kind: GrpcMatchType::RegularExpression,
            service: Some("a\\..*".into()),
            method: None,
        };
        assert_eq!(path_of(re).unwrap().0, "~ /(?:a\\..*)/[^/]+");
    }

    #[test]
    fn invalid_exact_names_are_refused_naming_the_field() {
        let e = path_of(exact(Some("a/b"), None)).unwrap_err();
        assert!(e.contains("m.service") && e.contains("a/b"), "{e}");
        let e = path_of(exact(Some("a.b"), Some("9x"))).unwrap_err();
        assert!(e.contains("m.method") && e.contains("9x"), "{e}");
        assert!(path_of(exact(Some(".pkg.Svc_1"), Some("_x9"))).is_ok());
    }
}
