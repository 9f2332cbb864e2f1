//! `--state-dir`: API changes survive a restart. The desired state is written
//! atomically (temp file, fsync, rename, fsync of the directory), so a crash
//! leaves either the old state or the new one, never half of one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::Desired;

const STATE_FILE: &str = "cutover-state.json";

fn state_path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

/// Writes the desired state. Returns only after it is durable.
pub fn save(dir: &Path, desired: &Desired) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(desired).map_err(io::Error::other)?;
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, state_path(dir))?;
    File::open(dir)?.sync_all()
}

/// Reads the state saved by [`save`], if any.
pub fn load(dir: &Path) -> io::Result<Option<Desired>> {
    let path = state_path(dir);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// At start: re-applies the API changes saved in the state directory on top
/// of the file just loaded. A `PUT` config is kept only if the file has not
/// changed since; otherwise the file wins (logged). Saved state that no longer
/// applies is logged and the file's config is served.
pub fn restore(tables: &super::Tables) -> Result<(), String> {
    use super::BaseOrigin;
    let Some(dir) = &tables.state_dir else {
        return Ok(());
    };
    let saved = load(dir).map_err(|e| format!("cannot read the saved state: {e}"))?;
    let Some(saved) = saved else {
        return Ok(());
    };
    let result = super::change(tables, None, "restore", |d| {
        let file_hash = match &d.base_origin {
            BaseOrigin::File { hash, .. } => Some(hash.clone()),
            _ => None,
        };
        if let BaseOrigin::Api {
            file_hash: at_put, ..
        } = &saved.base_origin
        {
            if *at_put == file_hash {
                d.base = saved.base.clone();
                d.base_origin = saved.base_origin.clone();
            } else {
                tracing::warn!("the config file changed since the config was PUT through the API; the file wins");
            }
        }
        d.overrides = saved.overrides.clone();
        d.history = saved.history.clone();
        d.rollouts = saved.rollouts.clone();
        Ok(())
    });
    match result {
        Ok(generation) => tracing::info!(
            dir = %dir.display(),
            overrides = saved.overrides.len(),
            generation,
            "restored API changes from the state directory"
        ),
        Err(e) => tracing::error!(
            dir = %dir.display(),
            "saved API changes do not apply to this config and were NOT restored: {e}"
        ),
    }
    Ok(())
}
