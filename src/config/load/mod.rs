//! Loading a config path: one YAML file or a directory of them, each holding
//! one or more documents (`---`) that are either cutover configs or Gateway
//! API `HTTPRoute`s. Everything is merged into one [`Config`], and errors
//! found later (at compile) can be pointed back at the file and document
//! they came from ([`Origins::annotate`]).

mod documents;
mod origins;

use std::path::{Path, PathBuf};

pub use documents::{parse_documents, Document};
pub use origins::Origins;
use origins::RouteOrigin;

use super::error::{ConfigErrors, FieldError};
use super::gateway;
use super::model::{AccessLogConfig, Config, GroupConfig};
use crate::hash::content_hash;

/// Largest config file accepted; a routing table is text, not data.
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// A loaded config path.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Every document merged, HTTPRoutes converted.
    pub config: Config,
    /// Content hash over every file read (names included for a directory),
    /// to skip no-op reloads and to detect changes across a restart.
    pub hash: String,
    /// Where each listener, route and group came from.
    pub origins: Origins,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
}

/// Reads `path`: a file, or every `*.yaml`/`*.yml` file of a directory (not
/// recursive, by name, hidden files skipped, symlinks followed, as a
/// Kubernetes ConfigMap mount shows them), and parses and merges it.
pub fn load_path(path: &Path) -> Result<Loaded, ConfigErrors> {
    read_path(path)?.parse()
}

/// The files of a config path, read but not parsed: the hash alone decides
/// whether a reload has anything new to look at.
#[derive(Debug, Clone)]
pub struct ReadPath {
    /// See [`Loaded::hash`].
    pub hash: String,
    files: Vec<PathBuf>,
    /// (label prefixed to error paths, text) per file.
    sources: Vec<(String, String)>,
}

/// Reads the files of `path` (see [`load_path`]).
pub fn read_path(path: &Path) -> Result<ReadPath, ConfigErrors> {
    let name = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| ConfigErrors::one("", format!("cannot read {name}: {e}")))?;
    let (files, labelled) = if meta.is_dir() {
        (config_files(path)?, true)
    } else {
        (vec![path.to_path_buf()], false)
    };
    let mut sources = Vec::with_capacity(files.len());
    let mut hashed = Vec::new();
    for file in &files {
        let bytes = read_limited(file)?;
        let label = if labelled {
            let short = file.file_name().map_or(file.as_os_str(), |n| n);
            format!("{}: ", short.to_string_lossy())
        } else {
            String::new()
        };
        if labelled {
            hashed.extend_from_slice(label.as_bytes());
            hashed.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        }
        hashed.extend_from_slice(&bytes);
        sources.push((label, String::from_utf8_lossy(&bytes).into_owned()));
    }
    Ok(ReadPath {
        hash: content_hash(&hashed),
        files,
        sources,
    })
}

impl ReadPath {
    /// Parses and merges the files read.
    pub fn parse(self) -> Result<Loaded, ConfigErrors> {
        let (config, origins) = parse_sources(&self.sources)?;
        Ok(Loaded {
            config,
            hash: self.hash,
            origins,
            files: self.files,
        })
    }
}

/// Parses YAML text (one or more documents) as `load_path` does a file:
/// for the control API's `PUT /v1/config`.
pub fn parse_text(text: &str) -> Result<(Config, Origins), ConfigErrors> {
    parse_sources(&[(String::new(), text.to_string())])
}

fn config_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigErrors> {
    let name = dir.display();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ConfigErrors::one("", format!("cannot read {name}: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ConfigErrors::one("", format!("cannot read {name}: {e}")))?;
        let file_name = entry.file_name();
        let n = file_name.to_string_lossy();
        // Hidden files include a ConfigMap's `..data` and `..<timestamp>`.
        if n.starts_with('.') || !(n.ends_with(".yaml") || n.ends_with(".yml")) {
            continue;
        }
        let path = entry.path();
        // `metadata` follows symlinks (ConfigMap files link into `..data`).
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(ConfigErrors::one(
            "",
            format!("{name} holds no *.yaml or *.yml file"),
        ));
    }
    Ok(files)
}

fn read_limited(path: &Path) -> Result<Vec<u8>, ConfigErrors> {
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
    std::fs::read(path).map_err(|e| ConfigErrors::one("", format!("cannot read {name}: {e}")))
}

/// Parses every source (label, text), then merges: cutover documents first
/// contribute their groups (so backendRefs can name them), then listeners,
/// routes and converted HTTPRoutes follow in file and document order.
fn parse_sources(sources: &[(String, String)]) -> Result<(Config, Origins), ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let mut docs = Vec::new();
    for (label, text) in sources {
        match parse_documents(text) {
            Ok(d) => docs.extend(d.into_iter().map(|d| (label.as_str(), d))),
            Err(e) => errors.0.extend(prefixed(label, e)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut merged = Merged::default();
    for (label, doc) in &docs {
        if let Document::Cutover(c) = doc {
            merged.groups_and_access_log(label, c, &mut errors);
        }
    }
    let defined = merged.config.groups.clone();
    let mut groups = gateway::convert::Groups::new(&defined);
    for (_, doc) in &docs {
        if let Document::ReferenceGrant(g) = doc {
            groups.grants.push(g.clone());
        }
    }
    let (mut gateways, mut attachments, mut own) = (Vec::new(), Vec::new(), Vec::new());
    for (label, doc) in &docs {
        match doc {
            Document::Cutover(c) => {
                own.extend(c.routes.iter().map(|r| r.name.clone()));
                merged.listeners_and_routes(label, c);
            }
            Document::HttpRoute(route) => {
                let shown = route.metadata.name.as_deref().unwrap_or("(unnamed)");
                let route_label = format!("{label}{} {shown}: ", route.kind.name());
                if let Some(c) = gateway::convert(route, &route_label, &mut groups, &mut errors) {
                    attachments.push(gateway::gateways::RouteAttachment {
                        route: merged.config.routes.len(),
                        namespace: route
                            .metadata
                            .namespace
                            .clone()
                            .unwrap_or_else(|| "default".into()),
                        parent_refs: route.spec.parent_refs.clone(),
                        kind: route.kind,
                        label: route_label.clone(),
                    });
                    merged.origins.routes.push(RouteOrigin::Gateway {
                        label: route_label,
                        filters: c.filters,
                    });
                    merged.config.routes.push(c.route);
                }
            }
            Document::Gateway(g) => gateways.push(gateway::gateways::GatewayDoc {
                label: format!("{label}{}Gateway {}: ", g.label, g.name),
                ..g.clone()
            }),
            Document::ReferenceGrant(_) => {}
        }
    }
    let Merged {
        mut config,
        mut origins,
        ..
    } = merged;
    gateway::gateways::attach_all(
        &gateways,
        &attachments,
        &own,
        &mut config,
        &mut origins.warnings,
    );
    for (name, at) in groups.unresolved {
        origins.groups.insert(name.clone(), at);
        config.groups.insert(name, GroupConfig::new(Vec::new()));
    }
    origins.warnings.0.append(&mut groups.warnings.0);
    for (name, (endpoint, at)) in groups.generated {
        origins.groups.insert(name.clone(), at);
        let mut group = GroupConfig::new(vec![endpoint]);
        if groups.h2.contains(&name) {
            group.protocol = super::model::UpstreamProtocol::H2;
        }
        config.groups.insert(name, group);
    }
    errors.into_result((config, origins))
}

/// The config being merged, and where each part came from.
#[derive(Default)]
struct Merged {
    config: Config,
    origins: Origins,
    access_log_set: bool,
}

impl Merged {
    /// Groups by name (twice is an error) and `access_log` (once).
    fn groups_and_access_log(&mut self, label: &str, c: &Config, errors: &mut ConfigErrors) {
        for (name, g) in &c.groups {
            let at = format!("{label}groups.{name}");
            if let Some(first) = self.origins.groups.get(name) {
                errors.push(
                    &at,
                    format!("group \"{name}\" is defined twice (first at {first})"),
                );
                continue;
            }
            self.origins.groups.insert(name.clone(), at);
            self.config.groups.insert(name.clone(), g.clone());
        }
        if c.access_log != AccessLogConfig::default() {
            if self.access_log_set {
                errors.push(
                    format!("{label}access_log"),
                    "is set in more than one document; set it once",
                );
            }
            self.access_log_set = true;
            self.config.access_log = c.access_log.clone();
        }
    }

    /// Listeners, routes and rollouts, concatenated in order.
    fn listeners_and_routes(&mut self, label: &str, c: &Config) {
        for (i, l) in c.listeners.iter().enumerate() {
            self.origins
                .listeners
                .push(format!("{label}listeners[{i}]"));
            self.config.listeners.push(l.clone());
        }
        for (i, r) in c.routes.iter().enumerate() {
            self.origins
                .routes
                .push(RouteOrigin::Own(format!("{label}routes[{i}]")));
            self.config.routes.push(r.clone());
        }
        for (i, b) in c.rollouts.iter().enumerate() {
            self.origins.rollouts.push(format!("{label}rollouts[{i}]"));
            self.config.rollouts.push(b.clone());
        }
    }
}

fn prefixed(label: &str, errors: ConfigErrors) -> Vec<FieldError> {
    errors
        .0
        .into_iter()
        .map(|e| FieldError {
            path: if label.is_empty() {
                e.path
            } else if e.path.is_empty() {
                label.trim_end_matches(": ").to_string()
            } else {
                format!("{label}{}", e.path)
            },
            message: e.message,
        })
        .collect()
}
