//! Loading a config path: one YAML file or a directory of them, each holding
//! one or more documents (`---`) that are either cutover configs or Gateway
//! API `HTTPRoute`s. Everything is merged into one [`Config`], and errors
//! found later (at compile) can be pointed back at the file and document
//! they came from ([`Origins::annotate`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

use super::error::{ConfigErrors, FieldError};
use super::gateway::{self, ApiVersion, HttpRoute, HttpRouteKind, HttpRouteSpec, ObjectMeta};
use super::model::{AccessLogConfig, Config, GroupConfig, ListenerConfig, RouteConfig};
use crate::reload::watch::content_hash;

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

/// One parsed YAML document.
#[derive(Debug, Clone)]
pub enum Document {
    /// A cutover config (no `apiVersion`/`kind`).
    Cutover(Config),
    /// A Gateway API HTTPRoute.
    HttpRoute(HttpRoute),
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
    let mut config = Config::default();
    let mut origins = Origins::default();
    let mut access_log_from: Option<&str> = None;
    for (label, doc) in &docs {
        let Document::Cutover(c) = doc else { continue };
        for (name, g) in &c.groups {
            let at = format!("{label}groups.{name}");
            if let Some(first) = origins.groups.get(name) {
                errors.push(
                    &at,
                    format!("group \"{name}\" is defined twice (first at {first})"),
                );
                continue;
            }
            origins.groups.insert(name.clone(), at);
            config.groups.insert(name.clone(), g.clone());
        }
        if c.access_log != AccessLogConfig::default() {
            if access_log_from.is_some() {
                errors.push(
                    format!("{label}access_log"),
                    "is set in more than one document; set it once",
                );
            }
            access_log_from = Some(label);
            config.access_log = c.access_log.clone();
        }
    }
    let defined = config.groups.clone();
    let mut groups = gateway::convert::Groups::new(&defined);
    for (label, doc) in &docs {
        match doc {
            Document::Cutover(c) => {
                for (i, l) in c.listeners.iter().enumerate() {
                    origins.listeners.push(format!("{label}listeners[{i}]"));
                    config.listeners.push(l.clone());
                }
                for (i, r) in c.routes.iter().enumerate() {
                    origins
                        .routes
                        .push(RouteOrigin::Own(format!("{label}routes[{i}]")));
                    config.routes.push(r.clone());
                }
            }
            Document::HttpRoute(route) => {
                let shown = route.metadata.name.as_deref().unwrap_or("(unnamed)");
                let route_label = format!("{label}HTTPRoute {shown}: ");
                if let Some(c) = gateway::convert(route, &route_label, &mut groups, &mut errors) {
                    origins.routes.push(RouteOrigin::Gateway {
                        label: route_label,
                        filters: c.filters,
                    });
                    config.routes.push(c.route);
                }
            }
        }
    }
    for (name, (endpoint, at)) in groups.generated {
        origins.groups.insert(name.clone(), at);
        config.groups.insert(name, GroupConfig::new(vec![endpoint]));
    }
    errors.into_result((config, origins))
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

thread_local! {
    /// Field path of the last document that failed to deserialize:
    /// serde-saphyr's multi-document reader gives no other way out.
    static FAILED_AT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Parses one or more YAML documents; a syntax or type error names the
/// field path and line/column.
pub fn parse_documents(text: &str) -> Result<Vec<Document>, ConfigErrors> {
    FAILED_AT.with(|p| p.borrow_mut().clear());
    let options = serde_saphyr::options! { with_snippet: false };
    let parsed =
        serde_saphyr::from_str_multiple_with_options::<Tracked, Vec<Tracked>>(text, options);
    let raw = parsed.map_err(|e| {
        let path = FAILED_AT.with(|p| std::mem::take(&mut *p.borrow_mut()));
        let message = e
            .to_string()
            .replace(", set DuplicateKeyPolicy in Options if acceptable", "");
        ConfigErrors::one(path, message)
    })?;
    let numbered = raw.len() > 1;
    let mut errors = ConfigErrors::default();
    let docs = raw
        .into_iter()
        .enumerate()
        .filter_map(|(i, Tracked(doc))| classify(doc, i, numbered, &mut errors))
        .collect();
    errors.into_result(docs)
}

/// Every top-level field either kind of document may have; the kind is
/// decided after reading (see `classify`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<HttpRouteKind>,
    #[serde(default)]
    metadata: Option<ObjectMeta>,
    #[serde(default)]
    spec: Option<HttpRouteSpec>,
    #[serde(default)]
    status: Option<IgnoredAny>,
    #[serde(default)]
    listeners: Option<Vec<ListenerConfig>>,
    #[serde(default)]
    groups: Option<BTreeMap<String, GroupConfig>>,
    #[serde(default)]
    routes: Option<Vec<RouteConfig>>,
    #[serde(default)]
    access_log: Option<AccessLogConfig>,
}

struct Tracked(RawDocument);

impl<'de> Deserialize<'de> for Tracked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut track = serde_path_to_error::Track::new();
        let result =
            RawDocument::deserialize(serde_path_to_error::Deserializer::new(d, &mut track));
        if result.is_err() {
            let path = track.path().to_string();
            let path = path.trim_end_matches(".?");
            let path = if path == "." || path == "?" { "" } else { path };
            FAILED_AT.with(|p| *p.borrow_mut() = path.to_string());
        }
        result.map(Tracked)
    }
}

fn classify(
    raw: RawDocument,
    index: usize,
    numbered: bool,
    errors: &mut ConfigErrors,
) -> Option<Document> {
    let k8s = raw.api_version.is_some()
        || raw.kind.is_some()
        || raw.metadata.is_some()
        || raw.spec.is_some()
        || raw.status.is_some();
    if !k8s {
        return Some(Document::Cutover(Config {
            listeners: raw.listeners.unwrap_or_default(),
            groups: raw.groups.unwrap_or_default(),
            routes: raw.routes.unwrap_or_default(),
            access_log: raw.access_log.unwrap_or_default(),
        }));
    }
    let doc = if numbered {
        format!("document {}: ", index + 1)
    } else {
        String::new()
    };
    let before = errors.0.len();
    let own = [
        ("listeners", raw.listeners.is_some()),
        ("groups", raw.groups.is_some()),
        ("routes", raw.routes.is_some()),
        ("access_log", raw.access_log.is_some()),
    ];
    for (field, set) in own {
        if set {
            errors.push(
                format!("{doc}{field}"),
                "a cutover config field in a Kubernetes document; put the cutover config in its own document (separated by ---)",
            );
        }
    }
    let api_version = match raw.api_version.as_deref() {
        Some("gateway.networking.k8s.io/v1") => Some(ApiVersion::V1),
        Some("gateway.networking.k8s.io/v1beta1") => Some(ApiVersion::V1beta1),
        Some(other) => {
            errors.push(
                format!("{doc}apiVersion"),
                format!("{other:?} is not supported; HTTPRoute is read from gateway.networking.k8s.io/v1 (or v1beta1)"),
            );
            None
        }
        None => {
            errors.push(
                format!("{doc}apiVersion"),
                "required in a Kubernetes document (gateway.networking.k8s.io/v1)",
            );
            None
        }
    };
    if raw.kind.is_none() {
        errors.push(
            format!("{doc}kind"),
            "required in a Kubernetes document (HTTPRoute)",
        );
    }
    if raw.spec.is_none() {
        errors.push(format!("{doc}spec"), "required in an HTTPRoute");
    }
    if errors.0.len() > before {
        return None;
    }
    Some(Document::HttpRoute(HttpRoute {
        api_version: api_version?,
        metadata: raw.metadata.unwrap_or_default(),
        spec: raw.spec.unwrap_or_default(),
    }))
}

/// Where the listeners, routes and groups of a merged config came from, so
/// that compile errors (`routes[3].rules[0]...`) name the file and, for an
/// HTTPRoute, its own field (`HTTPRoute reviews: spec.rules[0]...`).
#[derive(Debug, Clone, Default)]
pub struct Origins {
    listeners: Vec<String>,
    routes: Vec<RouteOrigin>,
    groups: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
enum RouteOrigin {
    /// A route of a cutover document: its path there.
    Own(String),
    /// A converted HTTPRoute: its label and per-rule modifier filter indexes.
    Gateway {
        label: String,
        filters: Vec<(Option<usize>, Option<usize>)>,
    },
}

impl Origins {
    /// Rewrites the paths of `errors` (about the merged config) to the
    /// places the user wrote.
    pub fn annotate(&self, errors: ConfigErrors) -> ConfigErrors {
        ConfigErrors(
            errors
                .0
                .into_iter()
                .map(|e| FieldError {
                    path: self.rewrite(&e.path),
                    message: e.message,
                })
                .collect(),
        )
    }

    fn rewrite(&self, path: &str) -> String {
        if let Some((i, rest)) = indexed(path, "listeners[") {
            if let Some(origin) = self.listeners.get(i) {
                return format!("{origin}{rest}");
            }
        }
        if let Some((i, rest)) = indexed(path, "routes[") {
            match self.routes.get(i) {
                Some(RouteOrigin::Own(origin)) => return format!("{origin}{rest}"),
                Some(RouteOrigin::Gateway { label, filters }) => {
                    return format!("{label}{}", gateway_field(rest, filters))
                }
                None => {}
            }
        }
        if let Some(rest) = path.strip_prefix("groups.") {
            let name = rest.split('.').next().unwrap_or(rest);
            if let Some(origin) = self.groups.get(name) {
                let tail = &rest[name.len()..];
                if origin.ends_with(&format!("groups.{name}")) {
                    return format!("{origin}{tail}");
                }
                return format!("{origin} (group {name}){tail}");
            }
        }
        path.to_string()
    }
}

/// `prefix<N>]rest` -> (N, rest).
fn indexed<'a>(path: &'a str, prefix: &str) -> Option<(usize, &'a str)> {
    let rest = path.strip_prefix(prefix)?;
    let close = rest.find(']')?;
    Some((rest[..close].parse().ok()?, &rest[close + 1..]))
}

/// A path inside a converted route (`.rules[0].backends[1].group`) as the
/// HTTPRoute field it came from (`spec.rules[0].backendRefs[1].name`).
fn gateway_field(rest: &str, filters: &[(Option<usize>, Option<usize>)]) -> String {
    if rest.is_empty() {
        return "spec".into();
    }
    if rest == ".name" {
        return "metadata.name".into();
    }
    let Some((rule, tail)) = indexed(rest.trim_start_matches('.'), "rules[") else {
        return format!("spec{rest}");
    };
    let (req, resp) = filters.get(rule).copied().unwrap_or((None, None));
    let filter = |i: Option<usize>, field: &str| match i {
        Some(i) => format!(".filters[{i}].{field}"),
        None => format!(".filters[].{field}"),
    };
    let mut tail = tail
        .replace(".query_params[", ".queryParams[")
        .replace(
            ".request_header_modifier",
            &filter(req, "requestHeaderModifier"),
        )
        .replace(
            ".response_header_modifier",
            &filter(resp, "responseHeaderModifier"),
        )
        .replace(".timeouts.per_try", ".timeouts.backendRequest")
        .replace(".retry.retriable_status_codes", ".retry.codes");
    if tail.starts_with(".backends[") {
        tail = tail.replacen(".backends[", ".backendRefs[", 1);
        if tail.ends_with("].group") {
            tail.truncate(tail.len() - ".group".len());
            tail.push_str(".name");
        }
    }
    format!("spec.rules[{rule}]{tail}")
}
