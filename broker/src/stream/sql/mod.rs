//! Statement → [`JobPlan`](super::plan::JobPlan). Being written (a parallel
//! branch); this placeholder refuses every statement.

use super::plan::JobPlan;

/// Why a statement cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    /// Not parsed yet.
    #[error("SQL jobs are not parsed yet")]
    Unsupported,
}

/// Parses one job statement into a plan.
pub fn parse_job(_sql: &str) -> Result<JobPlan, SqlError> {
    Err(SqlError::Unsupported)
}
