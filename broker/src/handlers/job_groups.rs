//! A stream job's consumer group (`weir-job-NAME`) as clients see it while
//! the job exists. The job's tasks commit their input positions to it, so
//! that `weir group describe` and Kafka's tools show the job's lag, but the
//! job resumes from its own checkpoints: offsets a client committed there
//! would be silently ignored, and a deleted group would come back at the
//! tasks' next commit. So, as Kafka treats a group with active members:
//! - ListGroups and DescribeGroups report it `Stable`, protocol type
//!   `consumer`, assignor [`JOB_PROTOCOL`], a member per node running the
//!   job's tasks with the input partitions it leads (Kafka's
//!   `kafka-consumer-groups --reset-offsets` then refuses by itself, as
//!   `weir group reset-offsets` does, naming the job);
//! - a client's OffsetCommit gets UNKNOWN_MEMBER_ID (what a commit from
//!   outside an active group gets), OffsetDelete GROUP_SUBSCRIBED_TO_TOPIC
//!   and DeleteGroups NON_EMPTY_GROUP.
//!
//! The tasks' own commits are recognised by their client id
//! ([`crate::reserved::TASK_CLIENT_PREFIX`], or the group's own name, which
//! earlier binaries' tasks used). Once the job is dropped its group is an
//! ordinary empty group, which the node deletes.

use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse,
};

use crate::broker::Broker;
use crate::group::GroupError;
use crate::stream::job::GROUP_PREFIX;

/// The assignor a job's group reports (DescribeGroups' `protocol_data`).
pub const JOB_PROTOCOL: &str = "weir-job";

/// Kafka's state name of a group with active members.
const STABLE: &str = "Stable";

/// The job whose consumer group `group` is, if that job exists.
pub fn job_of<'a>(b: &Broker, group: &'a str) -> Option<&'a str> {
    group
        .strip_prefix(GROUP_PREFIX)
        .filter(|name| b.meta.has_job(name))
}

/// Whether a request with client id `client_id` comes from the tasks of
/// the job owning `group`.
fn from_task(client_id: &str, group: &str) -> bool {
    crate::reserved::Writer::of_client_id(client_id) == crate::reserved::Writer::Task
        || client_id == group
}

/// Why a client may not change `group`'s offsets or delete it (`None` when
/// it may): the job that owns it.
fn refusal(b: &Broker, group: &str, client_id: &str) -> Option<String> {
    let job = job_of(b, group)?;
    (!from_task(client_id, group)).then(|| {
        format!(
            "group {group} belongs to stream job {job}, which resumes from its own \
             checkpoints: drop the job first, or create another job with --from"
        )
    })
}

/// OffsetCommit: refused for a job's group unless a task sends it.
pub fn offset_commit(
    b: &Broker,
    req: &OffsetCommitRequest,
    client_id: &str,
) -> Option<OffsetCommitResponse> {
    let why = refusal(b, &req.group_id.0, client_id)?;
    tracing::info!(client = client_id, "OffsetCommit refused: {why}");
    let refused = GroupError::unknown_member(&req.group_id.0, &req.member_id);
    Some(super::not_coordinator::offset_commit_refused(
        req,
        refused.code(),
    ))
}

/// OffsetDelete: refused for a job's group (its input is subscribed).
pub fn offset_delete(
    b: &Broker,
    req: &OffsetDeleteRequest,
    client_id: &str,
) -> Option<OffsetDeleteResponse> {
    use kafka_protocol::messages::offset_delete_response::{
        OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
    };
    let why = refusal(b, &req.group_id.0, client_id)?;
    tracing::info!(client = client_id, "OffsetDelete refused: {why}");
    let topics = req
        .topics
        .iter()
        .map(|t| {
            OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions({
                    let subscribed = GroupError::GroupSubscribedToTopic {
                        group_id: req.group_id.0.to_string(),
                        topic: t.name.0.to_string(),
                    };
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(subscribed.code())
                        })
                        .collect()
                })
        })
        .collect();
    Some(OffsetDeleteResponse::default().with_topics(topics))
}

/// DeleteGroups: the job groups among `req`'s are answered NON_EMPTY_GROUP
/// (in `refused`), the others left in the returned request.
pub fn delete_groups(
    b: &Broker,
    mut req: DeleteGroupsRequest,
    client_id: &str,
) -> (DeleteGroupsRequest, DeleteGroupsResponse) {
    use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
    let mut refused = DeleteGroupsResponse::default();
    req.groups_names
        .retain(|g| match refusal(b, &g.0, client_id) {
            Some(why) => {
                tracing::info!(client = client_id, "DeleteGroups refused: {why}");
                refused.results.push(
                    DeletableGroupResult::default()
                        .with_group_id(g.clone())
                        .with_error_code(GroupError::NonEmptyGroup(g.0.to_string()).code()),
                );
                false
            }
            None => true,
        });
    (req, refused)
}

/// ListGroups: a job's group is listed `Stable` (the request's state filter
/// applied to what is reported, not to the coordinator's own state).
pub async fn list_groups(
    b: &Broker,
    mut req: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let states: Vec<String> = if version >= 4 {
        std::mem::take(&mut req.states_filter)
            .iter()
            .map(|s| s.to_lowercase())
            .collect()
    } else {
        Vec::new()
    };
    let mut resp = b.list_groups(req, version).await;
    for g in &mut resp.groups {
        if job_of(b, &g.group_id.0).is_some() {
            g.protocol_type = crate::handlers::s("consumer");
            if version >= 4 {
                g.group_state = crate::handlers::s(STABLE);
            }
        }
    }
    if !states.is_empty() {
        resp.groups
            .retain(|g| states.contains(&g.group_state.to_lowercase()));
    }
    resp
}

/// DescribeGroups: a job's group is described `Stable`, its assignor
/// [`JOB_PROTOCOL`], with a member per node that runs the job's tasks over
/// input partitions (its tasks join no group: they read the partitions
/// their node leads), assigned those partitions, as Kafka's tools show the
/// members of a group and the partitions each consumes.
pub fn describe_groups(b: &Broker, resp: &mut DescribeGroupsResponse) {
    for g in &mut resp.groups {
        let Some(job) = job_of(b, &g.group_id.0).filter(|_| g.error_code == 0) else {
            continue;
        };
        g.group_state = crate::handlers::s(STABLE);
        g.protocol_type = crate::handlers::s("consumer");
        g.protocol_data = crate::handlers::s(JOB_PROTOCOL);
        g.members = members(b, job);
    }
}

/// A member per node leading partitions of job `job`'s input: id
/// `weir-job-NAME@node-N`, the tasks' client id, the node's host, and the
/// input partitions it leads.
fn members(
    b: &Broker,
    job: &str,
) -> Vec<kafka_protocol::messages::describe_groups_response::DescribedGroupMember> {
    use kafka_protocol::messages::describe_groups_response::DescribedGroupMember;
    use weir_client::topic_partition::TopicPartition;
    let Some(input) = b
        .meta
        .jobs()
        .get(job)
        .and_then(|d| d.plan().ok())
        .map(|p| p.input_topic)
    else {
        return Vec::new();
    };
    let Some(topic) = b.meta.topic(&input) else {
        return Vec::new();
    };
    let mut by_node: std::collections::BTreeMap<i32, Vec<TopicPartition>> = Default::default();
    for p in 0..topic.partitions {
        let (leader, _) = b.leader_of(&input, &topic, p);
        if leader >= 0 {
            by_node
                .entry(leader)
                .or_default()
                .push(TopicPartition::new(&input, p));
        }
    }
    let brokers = b.brokers();
    let group = format!("{GROUP_PREFIX}{job}");
    by_node
        .into_iter()
        .map(|(node, tps)| {
            let host = brokers.get(&node).map_or("", |m| m.host.as_str());
            DescribedGroupMember::default()
                .with_member_id(crate::handlers::s(format!("{group}@node-{node}")))
                .with_client_id(crate::handlers::s(crate::reserved::task_client_id(&group)))
                .with_client_host(crate::handlers::s(format!("/{host}")))
                .with_member_metadata(
                    weir_client::assignor::encode_subscription(std::slice::from_ref(&input))
                        .unwrap_or_default(),
                )
                .with_member_assignment(
                    weir_client::assignor::encode_assignment(&tps).unwrap_or_default(),
                )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job's tasks commit by their client id, as the tasks of earlier
    /// binaries did by the group's name; anything else is a client.
    #[test]
    fn tasks_are_told_from_clients_by_client_id() {
        let group = "weir-job-totals";
        assert!(from_task(&crate::reserved::task_client_id(group), group));
        assert!(from_task(group, group));
        for client in ["", "rdkafka", "weir-job-other", "weir-job-totals-x"] {
            assert!(!from_task(client, group), "{client}");
        }
    }
}
