//! Certificate source: watches the directories of every certificate, key and
//! CA file the live config names (Kubernetes Secret mounts swap a `..data`
//! symlink there, like ConfigMaps) and, when their content changes or on
//! SIGHUP, republishes the unchanged desired state through [`change`], so the
//! table and its TLS configs are recompiled from the new files. A bad file is
//! rejected like a bad config: one log line naming the field, file and
//! reason, `reload_errors` + 1, the old certificates keep serving.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, oneshot};

use super::watch::{change_watcher, forward_sighup, one_line, parent_dir};
use super::Tables;
use super::{change, snapshot, ChangeError};
use crate::config::Config;
use crate::hash::hash_key;

/// Quiet time after the last event before the files are read: a cert and its
/// key replaced one after the other are read together.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// Stops the watcher task when dropped.
pub struct CertWatch {
    _stop: oneshot::Sender<()>,
}

/// Starts following the TLS files of the live config. No watcher exists (and
/// SIGHUP is not taken) until the config names a TLS file.
pub fn spawn(tables: &Arc<Tables>) -> CertWatch {
    let (stop, stopped) = oneshot::channel();
    let mut published = tables.published.subscribe();
    published.mark_unchanged();
    // Watch before returning, so that no change made after the app started
    // can be missed.
    let (tx, rx) = mpsc::channel::<Wake>(1);
    let mut watch = Watching {
        tx,
        watcher: None,
        dirs: BTreeSet::new(),
    };
    let config = snapshot(tables).2;
    watch.sync(&config);
    let last = content(&config);
    tokio::spawn(run(
        Arc::downgrade(tables),
        published,
        stopped,
        watch,
        rx,
        last,
    ));
    CertWatch { _stop: stop }
}

/// What woke the task: a file event, or SIGHUP (a forced re-read).
type Wake = bool;

/// `last`: content of the files when they were last compiled by this task
/// (or at start): an event that changes nothing publishes nothing.
async fn run(
    tables: Weak<Tables>,
    mut published: tokio::sync::watch::Receiver<u64>,
    mut stopped: oneshot::Receiver<()>,
    mut watch: Watching,
    mut rx: mpsc::Receiver<Wake>,
    mut last: u64,
) {
    loop {
        let forced = tokio::select! {
            _ = &mut stopped => return,
            r = published.changed() => {
                let Some(s) = tables.upgrade().filter(|_| r.is_ok()) else { return };
                watch.sync(&snapshot(&s).2);
                continue;
            }
            wake = rx.recv() => match wake {
                Some(forced) => forced,
                None => return,
            },
        };
        let mut forced = forced;
        while let Ok(Some(f)) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {
            forced |= f;
        }
        let Some(s) = tables.upgrade() else { return };
        let now = content(&snapshot(&s).2);
        if forced || last != now {
            last = now;
            refresh(&s);
        }
    }
}

/// Recompiles and publishes the live desired state with the files as they
/// are now.
fn refresh(tables: &Tables) {
    match change(tables, None, "certificates", |_| Ok(())) {
        Ok(generation) => {
            tracing::info!(generation, "TLS files changed: certificates reloaded");
        }
        Err(e) => {
            tables.reload_errors.fetch_add(1, Ordering::Relaxed);
            let why = match e {
                ChangeError::Invalid(errors) => one_line(&errors.to_string()),
                other => one_line(&other.to_string()),
            };
            tracing::error!(
                "certificate reload rejected, still serving the previous certificates: {why}"
            );
        }
    }
}

/// Every TLS file the config names.
fn tls_files(config: &Config) -> Vec<&str> {
    let mut files = Vec::new();
    for l in &config.listeners {
        let Some(t) = &l.tls else { continue };
        for c in &t.certificates {
            files.extend([c.cert.as_str(), c.key.as_str()]);
        }
        if let Some(a) = &t.client_auth {
            files.push(a.ca.as_str());
        }
    }
    for g in config.groups.values() {
        let Some(t) = &g.tls else { continue };
        files.extend(
            [&t.ca, &t.cert, &t.key]
                .into_iter()
                .flatten()
                .map(String::as_str),
        );
    }
    files
}

/// A hash of the files' names and content (or read errors).
fn content(config: &Config) -> u64 {
    let mut all = Vec::new();
    for f in tls_files(config) {
        all.extend_from_slice(f.as_bytes());
        match std::fs::read(f) {
            Ok(b) => all.extend_from_slice(&b),
            Err(e) => all.extend_from_slice(e.to_string().as_bytes()),
        }
        all.push(0);
    }
    hash_key(&all)
}

/// The watcher (made when first needed) and what it watches.
struct Watching {
    tx: mpsc::Sender<Wake>,
    watcher: Option<notify::RecommendedWatcher>,
    dirs: BTreeSet<PathBuf>,
}

impl Watching {
    /// Watches exactly the directories of the config's TLS files.
    fn sync(&mut self, config: &Config) {
        let wanted: BTreeSet<PathBuf> = tls_files(config)
            .into_iter()
            .map(|f| parent_dir(Path::new(f)))
            .collect();
        if wanted == self.dirs {
            return;
        }
        if self.watcher.is_none() {
            match change_watcher(self.tx.clone(), false) {
                Ok(w) => self.watcher = Some(w),
                Err(e) => {
                    tracing::error!(error = %e, "cannot watch certificate files; they reload only with the config");
                    return;
                }
            }
            forward_sighup(self.tx.clone(), true, "re-reading the TLS files");
        }
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        for gone in self.dirs.difference(&wanted) {
            let _ = w.unwatch(gone);
        }
        let mut failed = Vec::new();
        for dir in wanted.difference(&self.dirs) {
            if let Err(e) = w.watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch a certificate directory");
                failed.push(dir.clone());
            }
        }
        self.dirs = wanted;
        // Tried again at the next publish or event.
        for dir in failed {
            self.dirs.remove(&dir);
        }
    }
}
