//! The three jobs, named once: the CLI's subcommands, the functions' work orders, the region
//! probes, the leases and the reports all speak of a [`Job`].

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Job {
    /// Snapshot the volumes that are due (SPEC §4).
    Snapshot,
    /// Delete expired snapshots, keeping each volume's minimum (SPEC §5).
    Clean,
    /// Copy tagged snapshots to their destination and delete replicas of gone sources (SPEC §6).
    Replication,
}

impl Job {
    pub const ALL: [Job; 3] = [Job::Snapshot, Job::Clean, Job::Replication];

    /// The name in reports, leases and logs: `snapshot`, `clean`, `replication`.
    pub fn as_str(self) -> &'static str {
        match self {
            Job::Snapshot => "snapshot",
            Job::Clean => "clean",
            Job::Replication => "replication",
        }
    }

    /// Whether the job has nothing to do without a valid configuration. Replication follows
    /// snapshot tags, not configurations.
    pub fn needs_configurations(self) -> bool {
        !matches!(self, Job::Replication)
    }
}

impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_serialise_as_they_display() {
        for job in Job::ALL {
            assert_eq!(serde_json::to_value(job).unwrap(), serde_json::json!(job.as_str()));
        }
        assert!(!Job::Replication.needs_configurations() && Job::Clean.needs_configurations());
    }
}
