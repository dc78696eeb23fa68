//! Weir's own topics and who may write them. `__consumer_offsets` and the
//! stream jobs' topics (`__weir_job_state`, `__weir_job_status`, each job's
//! `__weir_job-…-repartition`) hold state that Weir alone writes: a client's
//! produce, DeleteRecords or CreateTopics of such a name is refused with
//! INVALID_TOPIC_EXCEPTION, as Kafka refuses them for its internal topics.
//! A job's tasks write them, in-process or, for a partition led by another
//! node, over Kafka connections whose client id starts with
//! [`TASK_CLIENT_PREFIX`]. That prefix guards against mistakes (a mirror
//! tool or a script producing to every topic), not against a hostile client:
//! authentication comes with SASL.

/// The client id prefix of the Kafka connections of a job's tasks.
pub const TASK_CLIENT_PREFIX: &str = "__weir_task/";

/// Who sends a request, as the checks of Weir's own topics see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// A client (anything not one of Weir's own tasks).
    Client,
    /// One of Weir's own tasks (in-process, or by its client id).
    Task,
}

impl Writer {
    /// The writer a request with client id `client_id` comes from.
    pub fn of_client_id(client_id: &str) -> Self {
        match client_id.starts_with(TASK_CLIENT_PREFIX) {
            true => Writer::Task,
            false => Writer::Client,
        }
    }
}

/// The client id of a task's connection named `name` (unique per task).
pub fn task_client_id(name: &str) -> String {
    format!("{TASK_CLIENT_PREFIX}{name}")
}

/// Whether `topic` is one of Weir's own topics (see the module docs).
pub fn is_reserved(topic: &str) -> bool {
    topic == crate::broker::OFFSETS_TOPIC || topic.starts_with("__weir")
}

/// Why `writer` may not write (produce to, delete records of, create)
/// `topic`; `None` when it may. `__consumer_offsets` is the group
/// coordinator's alone, which writes it without a request.
pub fn refusal(topic: &str, writer: Writer) -> Option<String> {
    if topic == crate::broker::OFFSETS_TOPIC {
        return Some(format!(
            "{topic} is internal: only the group coordinator writes it"
        ));
    }
    (is_reserved(topic) && writer == Writer::Client)
        .then(|| format!("{topic} is internal: only Weir's stream jobs write topics named __weir*"))
}

/// Why `writer` may not create a topic named `topic` (one of the jobs'
/// names, and not a task); `None` when it may (`__consumer_offsets` exists
/// from the start: creating it again is TOPIC_ALREADY_EXISTS, as in Kafka).
pub fn creation_refusal(topic: &str, writer: Writer) -> Option<String> {
    (topic != crate::broker::OFFSETS_TOPIC)
        .then(|| refusal(topic, writer))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clients are refused every reserved name; tasks all but the offsets
    /// topic; anyone may write other topics (a leading `__` alone is not
    /// reserved, as in Kafka).
    #[test]
    fn only_tasks_write_job_topics() {
        let task = Writer::of_client_id(&task_client_id("job-x-out-0"));
        assert_eq!(task, Writer::Task);
        assert_eq!(Writer::of_client_id("weir-job-x"), Writer::Client);
        assert_eq!(Writer::of_client_id(""), Writer::Client);
        for t in [
            "__weir_job_state",
            "__weir_job_status",
            "__weir_job-j-repartition",
        ] {
            assert!(refusal(t, Writer::Client).is_some(), "{t}");
            assert_eq!(refusal(t, task), None, "{t}");
            assert!(creation_refusal(t, Writer::Client).is_some(), "{t}");
            assert_eq!(creation_refusal(t, task), None, "{t}");
        }
        for w in [Writer::Client, Writer::Task] {
            assert!(refusal("__consumer_offsets", w).is_some());
            assert_eq!(creation_refusal("__consumer_offsets", w), None);
            assert_eq!(refusal("orders", w), None);
            assert_eq!(refusal("__mine", w), None);
        }
    }
}
