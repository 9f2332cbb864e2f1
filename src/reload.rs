//! The one path by which a routing table changes: compile -> validate ->
//! publish. A config with any error changes nothing.

use crate::app::Shared;
use crate::config::{compile::compile, Config, ConfigErrors};

/// Compiles `config` and, if it is valid, publishes it as the next
/// generation. Requests already running finish on the table they started with.
pub fn publish(shared: &Shared, config: &Config) -> Result<u64, ConfigErrors> {
    let _one_at_a_time = shared
        .publish_lock
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let generation = shared.routes.load().generation + 1;
    let table = compile(config, &shared.endpoints, generation)?;
    if listeners_changed(&shared.routes.load(), &table) {
        return Err(ConfigErrors::one(
            "listeners",
            "listener names and addresses cannot change without a restart",
        ));
    }
    shared.routes.store(std::sync::Arc::new(table));
    tracing::info!(generation, "routing table published");
    Ok(generation)
}

fn listeners_changed(old: &crate::route::RouteTable, new: &crate::route::RouteTable) -> bool {
    old.listeners.len() != new.listeners.len()
        || old
            .listeners
            .iter()
            .zip(new.listeners.iter())
            .any(|(a, b)| a.name != b.name || a.address != b.address)
}
