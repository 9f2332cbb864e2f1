//! `fault` blocks compiled into the route's [`Fault`]: fractions to parts
//! per million, statuses and header names checked, with field paths.

use std::sync::Arc;

use http::{HeaderName, StatusCode};

use crate::config::error::ConfigErrors;
use crate::config::fault::FaultConfig;
use crate::route::fault::{Fault, PER_MILLION};

fn fraction(f: f64, path: &str, errors: &mut ConfigErrors) -> u32 {
    if !(0.0..=1.0).contains(&f) {
        errors.push(path, format!("{f} is out of range 0..=1"));
        return 0;
    }
    (f * f64::from(PER_MILLION)).round() as u32
}

/// Compiles `fault` at `path`; `None` (with errors) when a field is wrong.
pub fn compile(fault: &FaultConfig, path: &str, errors: &mut ConfigErrors) -> Option<Arc<Fault>> {
    let before = errors.0.len();
    let abort = fault.abort.as_ref().and_then(|a| {
        let share = fraction(a.fraction, &format!("{path}.abort.fraction"), errors);
        match StatusCode::from_u16(a.status) {
            Ok(s) if (200..=599).contains(&a.status) => Some((s, share)),
            _ => {
                errors.push(
                    format!("{path}.abort.status"),
                    format!("{} is not a status in 200..=599", a.status),
                );
                None
            }
        }
    });
    let delay = fault.delay.as_ref().map(|d| {
        let share = fraction(d.fraction, &format!("{path}.delay.fraction"), errors);
        (d.duration.0, share)
    });
    let header = fault.header.as_ref().and_then(|h| {
        HeaderName::try_from(h.as_str())
            .map_err(|_| {
                errors.push(
                    format!("{path}.header"),
                    format!("{h:?} is not a header name"),
                )
            })
            .ok()
    });
    if abort.is_none() && delay.is_none() && errors.0.len() == before {
        errors.push(path, "needs abort, delay or both");
    }
    if fault.max_active == 0 {
        errors.push(format!("{path}.max_active"), "must be at least 1");
    }
    (errors.0.len() == before).then(|| Arc::new(Fault::new(abort, delay, header, fault.max_active)))
}
