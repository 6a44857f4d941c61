//! The planners: configurations + inventory + time -> actions, each with its reason (SPEC §4, §5,
//! §6, §11, §12), and the fleet check `configure -c` makes from the same rules.

pub mod drill_plan;
pub mod fleet;
pub mod lock_plan;
pub mod replication_plan;
pub mod retention_plan;
pub mod snapshot_plan;
pub mod vault_plan;
