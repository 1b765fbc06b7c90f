//! The role each RPC needs.

use prime_proto::auth::Role;

/// Path prefix of the coordinator's methods.
const COORDINATOR: &str = "/prime.v1.Coordinator/";

/// Path prefix of the standard gRPC health service (open: load balancers and probes carry
/// no token).
const HEALTH: &str = "/grpc.health.v1.Health/";

/// What a method needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health checks).
    Open,
    /// An admin token.
    Admin,
    /// A viewer or admin token.
    Read,
    /// A worker token, or an admin token acting on the sessions it registered.
    Work,
    /// Checkpoint listings and reads: a viewer or admin token for any trial, a worker token
    /// for the trials it holds.
    Checkpoints,
}

impl Access {
    /// The access the gRPC method at `path` needs. Methods not listed need an admin token,
    /// so a new RPC is closed until it is given its place here.
    pub fn of_path(path: &str) -> Access {
        if path.starts_with(HEALTH) {
            return Access::Open;
        }
        let Some(method) = path.strip_prefix(COORDINATOR) else {
            return Access::Admin;
        };
        match method {
            "RegisterWorker" | "Heartbeat" | "RequestTrial" | "ReportMetrics"
            | "PutCheckpointChunk" | "CommitCheckpoint" | "FinishTrial" => Access::Work,
            "ListTrials" | "ListWorkers" | "TrialLogs" | "TrialMetrics" => Access::Read,
            "TrialCheckpoints" | "ReadCheckpoint" => Access::Checkpoints,
            _ => Access::Admin,
        }
    }

    /// Whether a token of `role` may call a method of this access.
    pub fn allows(self, role: Role) -> bool {
        match self {
            Access::Open => true,
            Access::Admin => role == Role::Admin,
            Access::Read => matches!(role, Role::Admin | Role::Viewer),
            Access::Work => matches!(role, Role::Admin | Role::Worker),
            Access::Checkpoints => true,
        }
    }

    /// The roles that may call, as a refusal names them.
    pub fn needed(self) -> &'static str {
        match self {
            Access::Open => "none",
            Access::Admin => "an admin token",
            Access::Read => "a viewer or admin token",
            Access::Work => "a worker token",
            Access::Checkpoints => "a viewer or admin token, or the worker token holding the trial",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(method: &str) -> String {
        format!("{COORDINATOR}{method}")
    }

    #[test]
    fn every_rpc_has_the_access_of_the_role_table() {
        use Role::{Admin, Viewer, Worker};
        let table: [(&str, &[Role]); 18] = [
            ("RegisterWorker", &[Admin, Worker]),
            ("Heartbeat", &[Admin, Worker]),
            ("RequestTrial", &[Admin, Worker]),
            ("ReportMetrics", &[Admin, Worker]),
            ("PutCheckpointChunk", &[Admin, Worker]),
            ("CommitCheckpoint", &[Admin, Worker]),
            ("FinishTrial", &[Admin, Worker]),
            ("SubmitGrid", &[Admin]),
            ("CancelTrials", &[Admin]),
            ("RetryTrials", &[Admin]),
            ("SetWorkerMode", &[Admin]),
            ("BackupDatabase", &[Admin]),
            ("ListTrials", &[Admin, Viewer]),
            ("ListWorkers", &[Admin, Viewer]),
            ("TrialLogs", &[Admin, Viewer]),
            ("TrialMetrics", &[Admin, Viewer]),
            ("TrialCheckpoints", &[Admin, Viewer, Worker]),
            ("ReadCheckpoint", &[Admin, Viewer, Worker]),
        ];
        for (method, allowed) in table {
            let access = Access::of_path(&path(method));
            for role in Role::ALL {
                assert_eq!(
                    access.allows(role),
                    allowed.contains(&role),
                    "{method} for {role}"
                );
            }
        }
    }

    #[test]
    fn unknown_methods_need_admin_and_health_is_open() {
        assert_eq!(Access::of_path(&path("DropEverything")), Access::Admin);
        assert_eq!(Access::of_path("/other.Service/Call"), Access::Admin);
        assert_eq!(Access::of_path("/"), Access::Admin);
        assert_eq!(
            Access::of_path("/grpc.health.v1.Health/Check"),
            Access::Open
        );
    }
}
