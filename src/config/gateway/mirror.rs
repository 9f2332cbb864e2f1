//! HTTPRoute `RequestMirror` filters -> cutover's `mirror` list: the
//! backendRef resolved like any other (a cutover group, a Service's DNS
//! name, or in controller mode its pods), `percent` or `fraction` carried
//! over. A mirror backendRef that cannot be resolved is left out (with a
//! warning in file mode), as Gateway API asks: the route keeps serving.

use serde::Deserialize;

use super::convert::ResolveBackend;
use super::{FilterType, HttpBackendRef, HttpRouteFilter};
use crate::config::error::ConfigErrors;
use crate::config::filters::{FractionConfig, MirrorConfig};

/// `HTTPRequestMirrorFilter`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRequestMirror {
    /// Where copies go.
    pub backend_ref: MirrorBackendRef,
    /// Share copied, 0..=100.
    #[serde(default)]
    pub percent: Option<u32>,
    /// Share copied as a fraction.
    #[serde(default)]
    pub fraction: Option<HttpFraction>,
}

/// `BackendObjectReference` (a backendRef without weight or filters).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MirrorBackendRef {
    /// `""` (core) or absent.
    #[serde(default)]
    pub group: Option<String>,
    /// `Service` or absent.
    #[serde(default)]
    pub kind: Option<String>,
    /// A cutover group of that name, or a Kubernetes Service.
    pub name: String,
    /// Service namespace; default the route's.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Service port; required unless `name` is a cutover group.
    #[serde(default)]
    pub port: Option<u16>,
}

/// Gateway API `Fraction`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFraction {
    /// At most `denominator`.
    pub numerator: u32,
    /// Default 100.
    #[serde(default)]
    pub denominator: Option<u32>,
}

/// The rule's mirrors from its `filters[]` (under `at`); `compile` checks
/// the shares. Unresolvable backendRefs are left out with a warning.
pub fn convert_mirrors(
    list: &[HttpRouteFilter],
    at: &str,
    namespace: &str,
    groups: &mut dyn ResolveBackend,
    errors: &mut ConfigErrors,
) -> Vec<MirrorConfig> {
    let mut out = Vec::new();
    for (f, filter) in list.iter().enumerate() {
        if filter.kind != FilterType::RequestMirror {
            continue;
        }
        let here = format!("{at}.filters[{f}].requestMirror");
        let Some(m) = &filter.request_mirror else {
            errors.push(here, "required with type RequestMirror");
            continue;
        };
        let b = as_backend_ref(&m.backend_ref);
        let Some(group) =
            groups.resolve_mirror(&b, &format!("{here}.backendRef"), namespace, errors)
        else {
            continue;
        };
        out.push(MirrorConfig {
            percent: m.percent,
            fraction: m.fraction.map(|f| FractionConfig {
                numerator: f.numerator,
                denominator: f.denominator.unwrap_or(100),
            }),
            ..MirrorConfig::to(group)
        });
    }
    out
}

fn as_backend_ref(r: &MirrorBackendRef) -> HttpBackendRef {
    HttpBackendRef {
        group: r.group.clone(),
        kind: r.kind.clone(),
        name: r.name.clone(),
        namespace: r.namespace.clone(),
        port: r.port,
        weight: None,
        filters: Vec::new(),
    }
}
