//! Configuration: the YAML model ([`model`]), parsing with field paths (here),
//! files, directories and Gateway API HTTPRoutes ([`load`], [`gateway`]);
//! the model only: the top-level `compile` module turns it into a table.

pub mod error;
pub mod fault;
pub mod filters;
pub mod gateway;
pub mod load;
pub mod model;
pub mod resilience;
pub mod rollout;
pub mod tls;

use std::path::Path;

use serde::Deserialize;

pub use error::{ConfigErrors, FieldError};
pub use load::{load_path, Loaded};
pub use model::Config;

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

/// Reads and parses a config file or directory (see [`load_path`]),
/// keeping only the merged config.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    load_path(path).map(|l| l.config)
}
