//! Converts HTTP request and response heads to and from the OPEN and
//! RESPONSE frames, applying header hygiene on the way in and out.

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{request, response, Request, Response, Uri};

use super::headers::{strip_hop_by_hop, strip_identity_headers, REQUEST_ID_HEADER};
use super::status::CallError;
use crate::wire::{Open, StreamKind};

/// Longest request id accepted from a caller; longer ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// True for gRPC requests and responses (`application/grpc`, `+proto` …),
/// which get gRPC statuses instead of HTTP ones.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The authority a caller addressed: `:authority` for HTTP/2, `Host` for
/// HTTP/1.1.
pub fn request_authority(parts: &request::Parts) -> Option<String> {
    if let Some(a) = parts.uri.authority() {
        return Some(a.as_str().to_string());
    }
    parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
}

/// The caller's request id if it sent a sane one, else a fresh random one.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID)
        .map(str::to_string)
        .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()))
}

/// The trace id of a W3C `traceparent` header (`00-<trace id>-<span id>-<flags>`),
/// in lowercase, if the header is well formed; for audit records.
pub fn trace_id(headers: &HeaderMap) -> Option<String> {
    trace_id_of(headers.get("traceparent")?.to_str().ok()?)
}

/// The trace id inside a W3C `traceparent` value
/// (`00-<trace id>-<span id>-<flags>`), if well formed.
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    let id = traceparent.split('-').nth(1)?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_ascii_lowercase())
}

/// Builds the OPEN frame for a caller's request. `body_empty` says the
/// request has no body, so the far end can send a bodiless request too.
pub fn open_for_request(
    parts: &request::Parts,
    service: &str,
    caller: &str,
    request_id: &str,
    body_empty: bool,
) -> Open {
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    strip_identity_headers(&mut headers);
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID_HEADER, v);
    }
    if body_empty
        && !headers.contains_key(header::CONTENT_LENGTH)
        && parts.method != http::Method::GET
        && parts.method != http::Method::HEAD
    {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    Open {
        kind: StreamKind::Http,
        service: service.to_string(),
        request_id: request_id.to_string(),
        caller: caller.to_string(),
        traceparent,
        method: parts.method.clone(),
        scheme: parts.uri.scheme_str().unwrap_or("http").to_string(),
        authority: request_authority(parts).unwrap_or_default(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".to_string()),
        headers,
    }
}

/// The request to send to a local service for an OPEN frame: the service's
/// own scheme and authority, the caller's method, path and headers.
pub fn request_for_open<B>(
    open: &Open,
    service_base: &Uri,
    body: B,
) -> Result<Request<B>, CallError> {
    let bad = |reason: String| CallError::BadRequest { reason };
    if !open.path.starts_with('/') {
        return Err(bad(format!("path '{}' is not in origin form", open.path)));
    }
    let path = PathAndQuery::try_from(open.path.as_str())
        .map_err(|e| bad(format!("path '{}': {e}", open.path)))?;
    let scheme = service_base.scheme().cloned().unwrap_or(Scheme::HTTP);
    let authority: Authority =
        service_base
            .authority()
            .cloned()
            .ok_or_else(|| CallError::Internal {
                reason: "service URL has no authority".into(),
            })?;
    let uri = Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let mut headers = open.headers.clone();
    strip_hop_by_hop(&mut headers);
    strip_identity_headers(&mut headers);
    let mut req = Request::new(body);
    *req.method_mut() = open.method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Ok(req)
}

/// The RESPONSE frame for a service's response head.
pub fn response_frame(parts: &response::Parts) -> crate::wire::Response {
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    crate::wire::Response {
        status: parts.status,
        headers,
    }
}

/// The caller-facing response for a RESPONSE frame.
pub fn response_for_frame<B>(frame: crate::wire::Response, body: B) -> Response<B> {
    let mut resp = Response::new(body);
    *resp.status_mut() = frame.status;
    *resp.headers_mut() = frame.headers;
    resp
}

/// The exact body length a head declares, if any.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}
