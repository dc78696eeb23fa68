//! Statement → [`JobPlan`](super::plan::JobPlan). Written in the next step.
