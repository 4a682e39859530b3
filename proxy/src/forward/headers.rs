//! Header hygiene at every hop: connection-specific headers never cross the
//! tunnel, and identity headers are only ever set by Tether.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The header services read to learn who called, in Envoy's format
/// (`By=<tunnel id>;URI=<caller id>`) so existing mesh middleware works.
pub const CLIENT_CERT_HEADER: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// Correlates a call across caller, edge, client and service logs.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Names the Tether error behind a refusal (`unknown-tunnel`, …) so scripts
/// can tell refusals apart without parsing messages.
pub const ERROR_HEADER: HeaderName = HeaderName::from_static("tether-error");

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1,
/// RFC 9113 §8.2.2).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
];

/// Removes hop-by-hop headers, those the `Connection` header names, and `TE`
/// unless it is exactly `trailers` (which gRPC needs end to end). `Host`
/// goes too: the authority travels separately.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    let te_is_trailers = headers
        .get_all(header::TE)
        .iter()
        .all(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !te_is_trailers {
        headers.remove(header::TE);
    }
}

/// Removes identity headers a peer might have forged; only Tether sets them.
pub fn strip_identity_headers(headers: &mut HeaderMap) {
    headers.remove(CLIENT_CERT_HEADER);
}

/// The XFCC value telling a service which tunnel carried the call and who
/// the verified caller is.
pub fn client_cert_value(by: &str, caller: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("By={by};URI={caller}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_connection_specific_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("x-custom, keep-alive"),
        );
        h.insert("x-custom", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        h.insert("x-keep", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-keep"], "yes");
    }

    #[test]
    fn keeps_te_trailers_for_grpc() {
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h[header::TE], "trailers");
    }

    #[test]
    fn removes_forged_identity() {
        let mut h = HeaderMap::new();
        h.insert(
            CLIENT_CERT_HEADER,
            HeaderValue::from_static("By=x;URI=forged"),
        );
        strip_identity_headers(&mut h);
        assert!(h.is_empty());
    }
}
