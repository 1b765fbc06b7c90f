//! Protocol versioning: every call carries `x-prime-protocol`, and the coordinator refuses a
//! caller of another version with a clear status.

use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

/// Version of the wire protocol spoken by this build. Version 2: trial specs and results
/// travel as typed messages (`pb::TrialSpec`, `pb::TrialResult`), not as JSON strings.
/// Version 3: listings (trials, workers, logs, metrics) are served in pages, so an older
/// client would silently read only the first page.
pub const PROTOCOL_VERSION: u32 = 3;

/// Metadata header that carries the caller's protocol version.
pub const PROTOCOL_HEADER: &str = "x-prime-protocol";

/// A client interceptor: stamps the protocol version on an outgoing request.
pub fn with_protocol(mut request: Request<()>) -> Result<Request<()>, Status> {
    request
        .metadata_mut()
        .insert(PROTOCOL_HEADER, MetadataValue::from(PROTOCOL_VERSION));
    Ok(request)
}

/// A server interceptor: refuses requests whose protocol version differs from ours.
pub fn check_protocol(request: Request<()>) -> Result<Request<()>, Status> {
    let Some(value) = request.metadata().get(PROTOCOL_HEADER) else {
        return Err(Status::failed_precondition(format!(
            "missing `{PROTOCOL_HEADER}` header: this coordinator speaks darts-prime protocol \
             version {PROTOCOL_VERSION}"
        )));
    };
    let version = value
        .to_str()
        .ok()
        .and_then(|text| text.parse::<u32>().ok());
    match version {
        Some(PROTOCOL_VERSION) => Ok(request),
        _ => Err(Status::failed_precondition(format!(
            "protocol version mismatch: this coordinator speaks darts-prime protocol version \
             {PROTOCOL_VERSION}, the caller sent {:?}; upgrade the older side",
            value.to_str().unwrap_or("<binary>")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_our_version_and_refuses_others() {
        let stamped = with_protocol(Request::new(())).unwrap();
        assert!(check_protocol(stamped).is_ok());
        let error = check_protocol(Request::new(())).unwrap_err();
        assert!(error.message().contains("missing"));
        let mut other = Request::new(());
        other
            .metadata_mut()
            .insert(PROTOCOL_HEADER, MetadataValue::from(PROTOCOL_VERSION + 1));
        let error = check_protocol(other).unwrap_err();
        assert_eq!(error.code(), tonic::Code::FailedPrecondition);
        assert!(
            error.message().contains("version mismatch"),
            "{}",
            error.message()
        );
    }

    #[test]
    fn a_version_2_peer_is_told_to_upgrade() {
        assert_eq!(PROTOCOL_VERSION, 3, "version 3 pages the listings");
        let mut old = Request::new(());
        old.metadata_mut()
            .insert(PROTOCOL_HEADER, MetadataValue::from(2u32));
        let error = check_protocol(old).unwrap_err();
        assert_eq!(error.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            error.message(),
            "protocol version mismatch: this coordinator speaks darts-prime protocol version 3, \
             the caller sent \"2\"; upgrade the older side"
        );
    }
}
