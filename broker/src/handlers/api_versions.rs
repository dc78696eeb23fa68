//! ApiVersions: the APIs and version ranges this node serves.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;

/// The response listing every supported API, with `error_code`.
pub fn response(error_code: i16) -> ApiVersionsResponse {
    let api_keys = crate::dispatch::supported()
        .into_iter()
        .map(|(k, min, max)| {
            ApiVersion::default()
                .with_api_key(k)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
}
