//! Configuration: the YAML model ([`model`]), parsing with field paths (here),
//! and compilation into a validated [`crate::route::RouteTable`] ([`compile`]).

pub mod compile;
pub mod error;
pub mod model;
mod policy;
pub mod resilience;
mod rules;
pub mod tls;

use std::path::Path;

use serde::Deserialize;

pub use error::{ConfigErrors, FieldError};
pub use model::Config;

/// Largest config file accepted; a routing table is text, not data.
const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// Parses YAML; a syntax or type error names the field path and line/column.
pub fn parse_yaml(text: &str) -> Result<Config, ConfigErrors> {
    let mut track = serde_path_to_error::Track::new();
    let options = serde_saphyr::options! { with_snippet: false };
    let parsed = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        Config::deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
    });
    parsed.map_err(|e| {
        let path = track.path().to_string();
        let path = path.trim_end_matches(".?").to_string();
        let path = if path == "." || path == "?" {
            String::new()
        } else {
            path
        };
        let message = e
            .to_string()
            .replace(", set DuplicateKeyPolicy in Options if acceptable", "");
        ConfigErrors::one(path, message)
    })
}

/// Reads and parses a config file.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let name = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| ConfigErrors::one("", format!("cannot read {name}: {e}")))?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(ConfigErrors::one(
            "",
            format!(
                "{name} is {} bytes; the limit is {MAX_CONFIG_BYTES}",
                meta.len()
            ),
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::one("", format!("cannot read {name}: {e}")))?;
    parse_yaml(&text)
}
