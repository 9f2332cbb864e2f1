//! Hostname intersection of a listener and a route, as Gateway API defines
//! it (`*.example.com` covers one or more labels in front): one function for
//! file mode (`gateways`) and controller mode (`kubernetes::index`).

/// Hostnames a route serves on one listener: `None` is every host.
pub type Hostnames = Option<Vec<String>>;

/// Hostnames served on two listeners: every host if either is.
pub fn union(a: Hostnames, b: Hostnames) -> Hostnames {
    match (a, b) {
        (Some(mut all), Some(h)) => {
            all.extend(h);
            Some(all)
        }
        _ => None,
    }
}

/// The hostnames a route serves on a listener: `Some(None)` every host,
/// `Some(Some(list))` those, `None` none (no intersection).
pub fn intersect(listener: Option<&str>, route: &[String]) -> Option<Hostnames> {
    let Some(l) = listener else {
        return Some(if route.is_empty() {
            None
        } else {
            Some(route.to_vec())
        });
    };
    if route.is_empty() {
        return Some(Some(vec![l.to_string()]));
    }
    let out: Vec<String> = route
        .iter()
        .filter_map(|r| {
            if r == l || matches_wildcard(l, r) {
                Some(r.clone())
            } else if matches_wildcard(r, l) {
                Some(l.to_string())
            } else {
                None
            }
        })
        .collect();
    (!out.is_empty()).then_some(Some(out))
}

/// Whether `pattern` (`*.example.com`) covers `host`, itself perhaps a
/// narrower wildcard (`*.a.example.com`).
fn matches_wildcard(pattern: &str, host: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix('*') else {
        return false;
    };
    host.len() > suffix.len()
        && host.ends_with(suffix)
        && !host[..host.len() - suffix.len()].is_empty()
        && host != pattern
}
