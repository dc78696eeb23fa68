//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};

use super::{owned, wire, ClientInfo};
use crate::group::coordinator::GroupCoordinator;
use crate::group::error::{code_of, GroupError};
use crate::group::events::{JoinParams, JoinResult, SyncParams, SyncResult};
use crate::group::leave::LeavingMember;
use crate::group::member::{Protocol, ReplyId};

impl GroupCoordinator {
    /// JoinGroup (v0–7). Waits until the join phase of the rebalance completes.
    pub async fn join_group(
        &self,
        req: JoinGroupRequest,
        version: i16,
        client: &ClientInfo,
    ) -> JoinGroupResponse {
        let params = JoinParams {
            group_id: owned(&req.group_id),
            member_id: owned(&req.member_id),
            instance_id: req
                .group_instance_id
                .as_ref()
                .filter(|_| version >= 5)
                .map(owned),
            client_id: client.client_id.clone(),
            client_host: client.client_host.clone(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: if version >= 1 {
                req.rebalance_timeout_ms
            } else {
                req.session_timeout_ms
            },
            protocol_type: owned(&req.protocol_type),
            protocols: req
                .protocols
                .iter()
                .map(|p| Protocol {
                    name: owned(&p.name),
                    metadata: p.metadata.clone(),
                })
                .collect(),
            require_known_member_id: version >= 4,
            reply: ReplyId(0),
        };
        join_response(self.inner.join(params).await, version)
    }

    /// SyncGroup (v0–5). A follower waits for the leader's assignment.
    pub async fn sync_group(&self, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
        let v5 = version >= 5;
        let params = SyncParams {
            group_id: owned(&req.group_id),
            generation: req.generation_id,
            member_id: owned(&req.member_id),
            instance_id: req
                .group_instance_id
                .as_ref()
                .filter(|_| version >= 3)
                .map(owned),
            protocol_type: req.protocol_type.as_ref().filter(|_| v5).map(owned),
            protocol_name: req.protocol_name.as_ref().filter(|_| v5).map(owned),
            assignments: req
                .assignments
                .iter()
                .map(|a| (owned(&a.member_id), a.assignment.clone()))
                .collect(),
            reply: ReplyId(0),
        };
        sync_response(self.inner.sync(params).await, version)
    }

    /// Heartbeat (v0–4).
    pub async fn heartbeat(&self, req: HeartbeatRequest, version: i16) -> HeartbeatResponse {
        let group_id = owned(&req.group_id);
        let member_id = owned(&req.member_id);
        let instance_id = req
            .group_instance_id
            .as_ref()
            .filter(|_| version >= 3)
            .map(owned);
        let result = self.inner.with(|m, now| {
            let r = m.heartbeat(
                &group_id,
                &member_id,
                instance_id.as_deref(),
                req.generation_id,
                now,
            );
            (r, Vec::new())
        });
        let mut resp = HeartbeatResponse::default();
        resp.error_code = code_of(result.err().as_ref());
        resp
    }

    /// LeaveGroup (v0–5): one member by id (v0–2) or a batch by id or instance id (v3+).
    pub async fn leave_group(&self, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        let group_id = owned(&req.group_id);
        let leaving: Vec<LeavingMember> = if version >= 3 {
            req.members
                .iter()
                .map(|m| LeavingMember {
                    member_id: owned(&m.member_id),
                    instance_id: m.group_instance_id.as_ref().map(owned),
                })
                .collect()
        } else {
            vec![LeavingMember {
                member_id: owned(&req.member_id),
                instance_id: None,
            }]
        };
        let result = self.inner.with(|m, now| m.leave(&group_id, &leaving, now));
        leave_response(result, &leaving, version)
    }
}

/// Fills a JoinGroupResponse for `version`.
pub(crate) fn join_response(r: JoinResult, version: i16) -> JoinGroupResponse {
    let mut resp = JoinGroupResponse::default();
    resp.error_code = code_of(r.error.as_ref());
    resp.generation_id = r.generation;
    if version >= 7 {
        resp.protocol_type = r.protocol_type.map(wire);
        resp.protocol_name = r.protocol_name.map(wire);
    } else {
        // Not nullable before v7.
        resp.protocol_name = Some(wire(r.protocol_name.unwrap_or_default()));
    }
    resp.leader = wire(r.leader);
    resp.member_id = wire(r.member_id);
    resp.members = r
        .members
        .into_iter()
        .map(|m| {
            let mut member = JoinGroupResponseMember::default();
            member.member_id = wire(m.member_id);
            member.group_instance_id = m.instance_id.filter(|_| version >= 5).map(wire);
            member.metadata = m.metadata;
            member
        })
        .collect();
    resp
}

/// Fills a SyncGroupResponse for `version`.
pub(crate) fn sync_response(r: SyncResult, version: i16) -> SyncGroupResponse {
    let mut resp = SyncGroupResponse::default();
    resp.error_code = code_of(r.error.as_ref());
    if version >= 5 {
        resp.protocol_type = r.protocol_type.map(wire);
        resp.protocol_name = r.protocol_name.map(wire);
    }
    resp.assignment = r.assignment;
    resp
}

type LeaveResult = Result<Vec<Result<(), GroupError>>, GroupError>;

/// Fills a LeaveGroupResponse for `version`: v0–2 carry the first error at the top level.
fn leave_response(
    result: LeaveResult,
    leaving: &[LeavingMember],
    version: i16,
) -> LeaveGroupResponse {
    let mut resp = LeaveGroupResponse::default();
    let members = match result {
        Err(error) => {
            resp.error_code = error.code();
            return resp;
        }
        Ok(members) => members,
    };
    if version < 3 {
        let first = members.iter().find_map(|r| r.as_ref().err());
        resp.error_code = code_of(first);
        return resp;
    }
    resp.members = leaving
        .iter()
        .zip(members)
        .map(|(m, r)| {
            let mut member = MemberResponse::default();
            member.member_id = wire(m.member_id.clone());
            member.group_instance_id = m.instance_id.clone().map(wire);
            member.error_code = code_of(r.err().as_ref());
            member
        })
        .collect();
    resp
}
