//! Compiles a rule's `mirror` list (Gateway API `RequestMirror`): a known
//! group, a share given as `percent` or `fraction` (not both), and bounds
//! that leave room for at least one copy.

use std::collections::HashMap;

use crate::config::error::ConfigErrors;
use crate::config::filters::MirrorConfig;
use crate::config::model::RuleConfig;
use crate::route::mirror::Mirror;
use crate::route::Inherited;

/// The rule's mirrors; errors name the field under `path`.
pub fn compile_mirrors(
    route: &str,
    rule: &RuleConfig,
    path: &str,
    groups: &HashMap<&str, u32>,
    inherited: &Inherited,
    errors: &mut ConfigErrors,
) -> Box<[Mirror]> {
    if !rule.mirror.is_empty() && rule.request_redirect.is_some() {
        errors.push(
            format!("{path}.mirror"),
            "cannot be used together with request_redirect (a redirected request is not forwarded)",
        );
    }
    rule.mirror
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            compile_one(
                route,
                m,
                &format!("{path}.mirror[{i}]"),
                groups,
                inherited,
                errors,
            )
        })
        .collect()
}

fn compile_one(
    route: &str,
    m: &MirrorConfig,
    path: &str,
    groups: &HashMap<&str, u32>,
    inherited: &Inherited,
    errors: &mut ConfigErrors,
) -> Option<Mirror> {
    let before = errors.0.len();
    let group = groups.get(m.group.as_str()).copied();
    if group.is_none() {
        errors.push(
            format!("{path}.group"),
            format!(
                "unknown group \"{}\"{}",
                m.group,
                super::rules::suggest(&m.group, groups)
            ),
        );
    }
    let (numerator, denominator) = share(m, path, errors);
    if m.max_in_flight == 0 {
        errors.push(
            format!("{path}.max_in_flight"),
            "must be at least 1 (remove the mirror to stop copying)",
        );
    }
    if m.timeout.0.is_zero() {
        errors.push(format!("{path}.timeout"), "must be more than 0");
    }
    if errors.0.len() > before {
        return None;
    }
    Some(Mirror {
        group: group?,
        numerator,
        denominator,
        max_body: m.max_body.0,
        max_in_flight: m.max_in_flight as usize,
        timeout: m.timeout.0,
        metrics: inherited.metrics().series.mirror(route, &m.group),
    })
}

/// `(numerator, denominator)` from `percent` or `fraction`; 100% without
/// either, as in Gateway API.
fn share(m: &MirrorConfig, path: &str, errors: &mut ConfigErrors) -> (u32, u32) {
    match (m.percent, m.fraction) {
        (Some(_), Some(_)) => {
            errors.push(
                format!("{path}.fraction"),
                "give percent or fraction, not both",
            );
            (0, 1)
        }
        (Some(p), None) => {
            if p > 100 {
                errors.push(format!("{path}.percent"), format!("{p} is over 100"));
            }
            (p, 100)
        }
        (None, Some(f)) => {
            if f.denominator == 0 {
                errors.push(format!("{path}.fraction.denominator"), "must be at least 1");
            } else if f.numerator > f.denominator {
                errors.push(
                    format!("{path}.fraction.numerator"),
                    format!("{} is over the denominator {}", f.numerator, f.denominator),
                );
            }
            (f.numerator, f.denominator.max(1))
        }
        (None, None) => (1, 1),
    }
}
