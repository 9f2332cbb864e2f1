//! File source: watches the config file's directory, or the config directory
//! itself (so editors' write-and-rename and Kubernetes ConfigMap `..data`
//! symlink swaps are seen), debounces
//! bursts, and re-publishes when the content changed. SIGHUP forces a check.
//! An invalid file logs one line and changes nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::Tables;
use super::{change, BaseOrigin, ChangeError};
use crate::config::load::read_path;

/// Quiet time after the last event before the file is read.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// Keeps the watcher alive; dropping it stops watching.
pub struct FileWatch {
    _watcher: notify::RecommendedWatcher,
}

/// Starts watching `path`. The returned handle must be kept.
pub fn spawn(tables: Arc<Tables>, path: PathBuf) -> notify::Result<FileWatch> {
    let (tx, rx) = mpsc::channel::<()>(1);
    let mut watcher = change_watcher(tx.clone(), ())?;
    // A config directory is watched itself; a file through its directory.
    let dir = if path.is_dir() {
        path.clone()
    } else {
        parent_dir(&path)
    };
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    forward_sighup(tx, (), "checking the config file");
    tokio::spawn(reload_loop(tables, path, rx));
    Ok(FileWatch { _watcher: watcher })
}

/// A watcher that sends `value` on every event but reads (ours included are
/// not changes; a write, create, rename or symlink swap is worth a look).
/// Tables with the certificate watcher.
pub(super) fn change_watcher<T: Clone + Send + 'static>(
    tx: mpsc::Sender<T>,
    value: T,
) -> notify::Result<notify::RecommendedWatcher> {
    notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
            let _ = tx.try_send(value.clone());
        }
    })
}

/// The directory a file lives in (`.` for a bare name): where its watcher
/// must look, since replacements arrive by rename into the directory.
pub(super) fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Sends `value` on every SIGHUP, logging `SIGHUP: {what}`.
#[cfg(unix)]
pub(super) fn forward_sighup<T: Clone + Send + 'static>(
    tx: mpsc::Sender<T>,
    value: T,
    what: &'static str,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: {what}");
            if tx.send(value.clone()).await.is_err() {
                return;
            }
        }
    });
}

#[cfg(not(unix))]
pub(super) fn forward_sighup<T>(_tx: mpsc::Sender<T>, _value: T, _what: &'static str) {}

async fn reload_loop(tables: Arc<Tables>, path: PathBuf, mut rx: mpsc::Receiver<()>) {
    while rx.recv().await.is_some() {
        // Debounce: wait until events stop for DEBOUNCE.
        while tokio::time::timeout(DEBOUNCE, rx.recv())
            .await
            .is_ok_and(|e| e.is_some())
        {}
        reload_file(&tables, &path);
    }
}

/// Reads `path` and publishes it as the new base config if its content
/// changed. Returns the new generation, if one was published.
pub fn reload_file(tables: &Tables, path: &Path) -> Option<u64> {
    let shown = path.display();
    let read = match read_path(path) {
        Ok(r) => r,
        Err(e) => {
            // During a ConfigMap swap the file can be briefly missing; the
            // next event retries.
            reject(tables, format_args!("{}", one_line(&e.to_string())));
            return None;
        }
    };
    let hash = read.hash.clone();
    if current_file_hash(tables).as_deref() == Some(hash.as_str()) {
        return None;
    }
    {
        // An invalid file is reported once, not at every event until fixed.
        let mut last = tables
            .last_rejected_file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.as_deref() == Some(hash.as_str()) {
            return None;
        }
        *last = Some(hash.clone());
    }
    let (config, origins) = match read.parse() {
        Ok(loaded) => (loaded.config, loaded.origins),
        Err(e) => {
            reject(
                tables,
                format_args!("{shown}: {}", one_line(&e.to_string())),
            );
            return None;
        }
    };
    let origin = BaseOrigin::File {
        path: shown.to_string(),
        hash,
    };
    let result = change(tables, None, "file", |d| {
        if matches!(d.base_origin, BaseOrigin::Api { .. }) {
            tracing::warn!("{shown} changed: it replaces the config PUT through the API");
        }
        d.base = config;
        d.base_origin = origin;
        Ok(())
    });
    match result {
        Ok(generation) => Some(generation),
        Err(e) => {
            let e = match e {
                // Compile errors name the file and HTTPRoute they came from.
                ChangeError::Invalid(errors) => ChangeError::Invalid(origins.annotate(errors)),
                other => other,
            };
            reject(
                tables,
                format_args!("{shown}: {}", one_line(&e.to_string())),
            );
            None
        }
    }
}

fn current_file_hash(tables: &Tables) -> Option<String> {
    let desired = tables
        .desired
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match &desired.base_origin {
        BaseOrigin::File { hash, .. } => Some(hash.clone()),
        _ => None,
    }
}

fn reject(tables: &Tables, msg: std::fmt::Arguments<'_>) {
    tables.reload_errors.fetch_add(1, Ordering::Relaxed);
    tracing::error!("config reload rejected, still serving the previous table: {msg}");
}

/// A multi-line error as one log line.
pub(super) fn one_line(s: &str) -> String {
    s.lines().collect::<Vec<_>>().join("; ")
}
