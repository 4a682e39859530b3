//! Codec tests: one round trip per frame type, every error path, and property
//! tests for round trips, hostile input and arbitrary read boundaries.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use proptest::prelude::*;

use super::*;

fn enc(frame: &Frame) -> BytesMut {
    let mut b = BytesMut::new();
    encode(frame, &WireLimits::default(), &mut b).unwrap();
    b
}

fn dec(bytes: &[u8]) -> Result<Option<Frame>, WireError> {
    FrameDecoder::default().decode(&mut BytesMut::from(bytes))
}

fn round_trip(frame: &Frame) {
    let mut buf = enc(frame);
    assert_eq!(buf[0], frame.frame_type() as u8);
    let got = FrameDecoder::default().decode(&mut buf).unwrap();
    assert_eq!(got.as_ref(), Some(frame));
    assert!(buf.is_empty(), "decode consumed the whole frame");
}

/// A frame from its type byte and raw payload, with a minimal length prefix.
fn raw(ty: u8, payload: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_u8(ty);
    varint::encode(payload.len() as u64, &mut b).unwrap();
    b.extend_from_slice(payload);
    b
}

/// Appends a `string` field.
fn s(buf: &mut Vec<u8>, v: &[u8]) {
    let mut b = BytesMut::new();
    varint::encode(v.len() as u64, &mut b).unwrap();
    buf.extend_from_slice(&b);
    buf.extend_from_slice(v);
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(*k, HeaderValue::from_static(v));
    }
    m
}

fn sample_open() -> Open {
    Open {
        kind: StreamKind::Http,
        service: "api".into(),
        request_id: "r1".into(),
        caller: "spiffe://t/c".into(),
        traceparent: None,
        method: Method::GET,
        scheme: "https".into(),
        authority: "api.t".into(),
        path: "/".into(),
        headers: headers(&[("accept", "*/*")]),
    }
}

fn sample_frames() -> Vec<Frame> {
    vec![
        Frame::Hello(Hello {
            version: VERSION,
            services: vec![
                ServiceOffer { name: "api".into() },
                ServiceOffer { name: "db".into() },
            ],
            labels: vec![
                ("zone".into(), "eu-1".into()),
                ("empty".into(), String::new()),
            ],
        }),
        Frame::Welcome(Welcome {
            version: VERSION,
            edge_id: "edge-a".into(),
            limits: PeerLimits {
                max_header_bytes: 65_536,
                max_data_frame: 1 << 20,
                max_streams: u32::MAX,
            },
        }),
        Frame::GoAway(GoAway {
            reason: "restarting".into(),
        }),
        Frame::Error(ControlError {
            code: RefuseCode::Unsupported,
            message: "version 2 is not supported; upgrade the edge".into(),
            retry_after_ms: 0,
        }),
        Frame::Error(ControlError {
            code: RefuseCode::Overloaded,
            message: "too many connections of this tunnel".into(),
            retry_after_ms: 5_000,
        }),
        Frame::Open(Box::new(Open {
            kind: StreamKind::Tcp,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            method: Method::from_bytes(b"PURGE").unwrap(),
            headers: headers(&[("x-a", "1"), ("set-cookie", "a=1"), ("set-cookie", "b=2")]),
            ..sample_open()
        })),
        Frame::Open(Box::new(sample_open())),
        Frame::Response(Box::new(Response {
            status: StatusCode::from_u16(999).unwrap(),
            headers: headers(&[("content-type", "application/grpc")]),
        })),
        Frame::Response(Box::new(Response {
            status: StatusCode::CONTINUE,
            headers: HeaderMap::new(),
        })),
        Frame::Refuse(Refuse {
            code: RefuseCode::UnknownService,
            message: "service `x` is not offered by this tunnel".into(),
        }),
        Frame::Data(Bytes::from_static(b"hello body")),
        Frame::Data(Bytes::new()),
        Frame::Trailers(headers(&[("grpc-status", "0"), ("grpc-message", "")])),
        Frame::Trailers(HeaderMap::new()),
        Frame::Audited,
    ]
}

#[test]
fn every_frame_type_round_trips() {
    for f in sample_frames() {
        round_trip(&f);
    }
    assert_eq!(RefuseCode::from_wire(11), None);
    for code in 1..=10 {
        let code = RefuseCode::from_wire(code).unwrap();
        round_trip(&Frame::Refuse(Refuse {
            code,
            message: String::new(),
        }));
        round_trip(&Frame::Error(ControlError {
            code,
            message: "m".into(),
            retry_after_ms: u64::from(code as u8),
        }));
    }
}

#[test]
fn type_bytes_are_stable() {
    for (b, ty) in [
        (0x01, FrameType::Hello),
        (0x02, FrameType::Welcome),
        (0x03, FrameType::GoAway),
        (0x04, FrameType::Error),
        (0x10, FrameType::Open),
        (0x11, FrameType::Response),
        (0x12, FrameType::Refuse),
        (0x13, FrameType::Data),
        (0x14, FrameType::Trailers),
        (0x15, FrameType::Audited),
    ] {
        assert_eq!(ty as u8, b);
        assert_eq!(FrameType::from_wire(b), Some(ty));
    }
    assert_eq!(ALPN, b"tether/1");
}

#[test]
fn repeated_header_names_keep_every_value_in_order() {
    let h = headers(&[("a", "1"), ("b", "x"), ("a", "2"), ("a", "3")]);
    let mut buf = enc(&Frame::Trailers(h));
    let Some(Frame::Trailers(got)) = FrameDecoder::default().decode(&mut buf).unwrap() else {
        panic!("not trailers");
    };
    let a: Vec<_> = got.get_all("a").iter().collect();
    assert_eq!(a, ["1", "2", "3"]);
    assert_eq!(got.len(), 4);
}

/// The worked example in docs/protocol.md; pinned so the document cannot drift.
#[test]
fn open_example_matches_protocol_doc() {
    let bytes = enc(&Frame::Open(Box::new(sample_open())));
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x10, 0x34,                                     // OPEN, length 52
        0x00,                                           // kind http
        0x03, b'a', b'p', b'i',                         // service "api"
        0x02, b'r', b'1',                               // request_id "r1"
        0x0c, b's', b'p', b'i', b'f', b'f', b'e', b':', // caller "spiffe://t/c"
        b'/', b'/', b't', b'/', b'c',
        0x00,                                           // no traceparent
        0x03, b'G', b'E', b'T',                         // method "GET"
        0x05, b'h', b't', b't', b'p', b's',             // scheme "https"
        0x05, b'a', b'p', b'i', b'.', b't',             // authority "api.t"
        0x01, b'/',                                     // path "/"
        0x01,                                           // 1 header field
        0x06, b'a', b'c', b'c', b'e', b'p', b't',       // name "accept"
        0x03, b'*', b'/', b'*',                         // value "*/*"
    ];
    assert_eq!(&bytes[..], expected);

    let dump = bytes
        .chunks(16)
        .map(|row| {
            row.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let doc = include_str!("../../../docs/protocol.md");
    assert!(
        doc.contains(&dump),
        "docs/protocol.md must contain this hex dump of the OPEN example:\n{dump}"
    );
}

#[test]
fn oversize_is_detected_from_the_header_alone() {
    let dec = FrameDecoder::default();
    // DATA claiming 2 MiB with an 8-byte varint: 9 bytes buffered in total.
    let mut buf = BytesMut::new();
    buf.put_u8(0x13);
    buf.put_u64(0xc000_0000_0000_0000 | (2 << 20));
    assert_eq!(buf.len(), 9);
    let err = dec.decode(&mut buf).unwrap_err();
    assert!(matches!(
        err,
        WireError::FrameTooLarge { frame: FrameType::Data, len, limit }
            if len == 2 << 20 && limit == 1 << 20
    ));
    assert_eq!(buf.len(), 9, "nothing consumed");
    // OPEN claiming one byte over 64 KiB, 4-byte varint: 5 bytes buffered.
    let mut buf = BytesMut::new();
    buf.put_u8(0x10);
    buf.put_u32(0x8000_0000 | (64 * 1024 + 1));
    let err = dec.decode(&mut buf).unwrap_err();
    assert_eq!(err.frame_type(), Some(FrameType::Open));
    assert!(matches!(
        err,
        WireError::FrameTooLarge { limit: 65_536, .. }
    ));
    // The largest varint.
    let mut buf = BytesMut::from(&[0x14, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..]);
    assert!(matches!(
        dec.decode(&mut buf),
        Err(WireError::FrameTooLarge { len, .. }) if len == varint::MAX
    ));
    // Exactly at the limit is fine (and needs the payload).
    let mut buf = BytesMut::new();
    buf.put_u8(0x13);
    buf.put_u32(0x8000_0000 | (1 << 20));
    assert!(dec.decode(&mut buf).unwrap().is_none());
}

#[test]
fn max_frame_len_bounds_buffering() {
    let dec = FrameDecoder::default();
    assert_eq!(dec.max_frame_len(), (1 << 20) + 9);
    // A full-size DATA frame with a non-minimal 8-byte length, one byte short.
    let mut buf = BytesMut::new();
    buf.put_u8(0x13);
    buf.put_u64(0xc000_0000_0000_0000 | (1 << 20));
    buf.resize(dec.max_frame_len() - 1, 0);
    assert!(dec.decode(&mut buf).unwrap().is_none());
    buf.put_u8(0);
    assert!(matches!(dec.decode(&mut buf), Ok(Some(Frame::Data(d))) if d.len() == 1 << 20));
    assert!(buf.is_empty());
}

#[test]
fn unknown_frame_type_fails_on_the_first_byte() {
    for b in [0x00, 0x05, 0x0f, 0x16, 0xff] {
        assert!(matches!(dec(&[b]), Err(WireError::UnknownFrameType(x)) if x == b));
    }
}

fn malformed(bytes: &[u8]) -> (&'static str, &'static str) {
    match dec(bytes) {
        Err(WireError::Malformed { field, reason, .. }) => (field, reason),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn invalid_utf8_is_refused() {
    let mut p = Vec::new();
    s(&mut p, b"caf\xc3");
    assert_eq!(malformed(&raw(0x03, &p)), ("reason", "not valid UTF-8"));
}

#[test]
fn trailing_bytes_are_refused() {
    let mut p = Vec::new();
    s(&mut p, b"bye");
    p.push(0);
    assert_eq!(malformed(&raw(0x03, &p)).0, "payload");
    // DATA has no fields: its payload is whatever the length says.
    let mut buf = enc(&Frame::Trailers(HeaderMap::new()));
    buf[1] += 1;
    buf.put_u8(0);
    assert!(matches!(
        FrameDecoder::default().decode(&mut buf),
        Err(WireError::Malformed {
            field: "payload",
            ..
        })
    ));
}

#[test]
fn truncated_fields_are_refused() {
    // GOAWAY whose string says 5 bytes but the payload holds 2.
    assert_eq!(
        malformed(&raw(0x03, &[5, b'a', b'b'])),
        ("reason", "length runs past the end of the payload")
    );
    // Empty payload where a field is required.
    assert_eq!(malformed(&raw(0x04, &[])).0, "code");
    assert_eq!(malformed(&raw(0x11, &[])).0, "status");
    // Varint cut by the end of the payload.
    assert_eq!(malformed(&raw(0x11, &[0x40])).0, "status");
}

fn header_payload(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut p = vec![1];
    s(&mut p, name);
    s(&mut p, value);
    p
}

#[test]
fn bad_headers_are_refused() {
    let invalid = |p: Vec<u8>| match dec(&raw(0x14, &p)) {
        Err(WireError::InvalidHeader { frame, reason }) => {
            assert_eq!(frame, FrameType::Trailers);
            reason
        }
        other => panic!("expected InvalidHeader, got {other:?}"),
    };
    assert!(invalid(header_payload(b"Content-Type", b"x")).contains("uppercase"));
    assert!(invalid(header_payload(b"", b"x")).contains("name"));
    assert!(invalid(header_payload(b"a b", b"x")).contains("name"));
    assert!(invalid(header_payload(b":path", b"/")).contains("name"));
    assert!(invalid(header_payload(b"a", b"x\r\ny: z")).contains("value"));
    // The lowercase version of the same is fine.
    assert!(dec(&raw(0x14, &header_payload(b"content-type", b"x")))
        .unwrap()
        .is_some());
}

#[test]
fn header_counts_are_bounded() {
    // Over max_headers: refused before reading any field.
    let p = [0x41, 0x01]; // 257
    assert!(matches!(
        dec(&raw(0x14, &p)),
        Err(WireError::TooManyHeaders {
            count: 257,
            limit: 256,
            ..
        })
    ));
    // Under the limit but more than the payload can hold.
    assert_eq!(malformed(&raw(0x14, &[3, 1, b'a', 0])).0, "header count");
    // Encoder refuses what the peer would refuse, writing nothing.
    let mut m = HeaderMap::new();
    for i in 0..3 {
        m.append(HeaderName::from_static("a"), HeaderValue::from(i));
    }
    let limits = WireLimits {
        max_headers: 2,
        ..WireLimits::default()
    };
    let mut buf = BytesMut::from(&b"keep"[..]);
    let err = encode(&Frame::Trailers(m.clone()), &limits, &mut buf).unwrap_err();
    assert!(matches!(
        err,
        WireError::TooManyHeaders {
            count: 3,
            limit: 2,
            ..
        }
    ));
    assert_eq!(&buf[..], b"keep");
    let dec = FrameDecoder::new(limits);
    let mut buf = enc(&Frame::Trailers(m));
    assert!(matches!(
        dec.decode(&mut buf),
        Err(WireError::TooManyHeaders { .. })
    ));
}

#[test]
fn bad_status_is_refused() {
    for status in [0u64, 99, 1000, 65_636, u64::from(u32::MAX) + 1] {
        let mut p = BytesMut::new();
        varint::encode(status, &mut p).unwrap();
        p.put_u8(0);
        assert_eq!(malformed(&raw(0x11, &p)).0, "status", "{status}");
    }
    for status in [100u64, 999] {
        let mut p = BytesMut::new();
        varint::encode(status, &mut p).unwrap();
        p.put_u8(0);
        assert!(dec(&raw(0x11, &p)).unwrap().is_some());
    }
}

#[test]
fn unknown_codes_and_enums_are_refused() {
    for ty in [0x04, 0x12] {
        for code in [0, 11, 0xff] {
            let mut p = vec![code];
            s(&mut p, b"m");
            assert_eq!(malformed(&raw(ty, &p)).0, "code");
        }
    }
    let open = enc(&Frame::Open(Box::new(sample_open())));
    let mut bad_kind = open.clone();
    bad_kind[2] = 2;
    assert_eq!(malformed(&bad_kind).0, "kind");
    // The traceparent flag follows kind, service, request_id, caller.
    let flag_at = 2 + 1 + 4 + 3 + 13;
    assert_eq!(open[flag_at], 0);
    let mut bad_flag = open.clone();
    bad_flag[flag_at] = 2;
    assert_eq!(malformed(&bad_flag).0, "traceparent flag");
    let mut bad_method = open;
    bad_method[flag_at + 2] = b'(';
    assert_eq!(malformed(&bad_method).0, "method");
}

#[test]
fn hello_counts_must_fit_the_payload() {
    // version 1, 5 services, but only 2 bytes follow.
    assert_eq!(malformed(&raw(0x01, &[1, 5, 0, 0])).0, "service count");
    // version 1, 0 services, 2 labels need at least 4 bytes; 3 follow.
    assert_eq!(malformed(&raw(0x01, &[1, 0, 2, 0, 0, 0])).0, "label count");
    // A wrong version still decodes: the control layer answers ERROR Unsupported.
    let f = dec(&raw(0x01, &[2, 0, 0])).unwrap();
    assert!(matches!(f, Some(Frame::Hello(Hello { version: 2, .. }))));
}

#[test]
fn welcome_numbers_must_fit_u32() {
    let mut p = BytesMut::new();
    p.put_u8(1);
    p.put_u8(0);
    varint::encode(1 << 32, &mut p).unwrap();
    p.extend_from_slice(&[0, 0]);
    assert_eq!(
        malformed(&raw(0x02, &p)),
        ("max_header_bytes", "value does not fit in 32 bits")
    );
}

#[test]
fn encode_refuses_oversize_and_writes_nothing() {
    let limits = WireLimits {
        max_header_bytes: 8,
        max_data_frame: 4,
        max_headers: 256,
    };
    let mut buf = BytesMut::from(&b"keep"[..]);
    let big = Frame::GoAway(GoAway {
        reason: "12345678".into(), // 9 bytes of payload
    });
    assert!(matches!(
        encode(&big, &limits, &mut buf),
        Err(WireError::FrameTooLarge {
            frame: FrameType::GoAway,
            len: 9,
            limit: 8
        })
    ));
    let data = Frame::Data(Bytes::from_static(b"12345"));
    assert!(matches!(
        encode(&data, &limits, &mut buf),
        Err(WireError::FrameTooLarge {
            frame: FrameType::Data,
            len: 5,
            limit: 4
        })
    ));
    assert!(encode_data_header(5, &limits, &mut buf).is_err());
    assert_eq!(&buf[..], b"keep");
    // At the limit both succeed.
    let ok = Frame::GoAway(GoAway {
        reason: "1234567".into(),
    });
    encode(&ok, &limits, &mut buf).unwrap();
    encode_data_header(4, &limits, &mut buf).unwrap();
    assert_eq!(&buf[4..], b"\x03\x08\x071234567\x13\x04");
}

#[test]
fn data_header_then_body_is_a_data_frame() {
    let body = Bytes::from_static(b"zero copy body");
    let mut buf = BytesMut::new();
    encode_data_header(body.len(), &WireLimits::default(), &mut buf).unwrap();
    buf.extend_from_slice(&body);
    assert_eq!(buf, enc(&Frame::Data(body.clone())));
    assert_eq!(dec(&buf).unwrap(), Some(Frame::Data(body)));
}

#[test]
fn data_payload_is_not_copied() {
    let mut buf = enc(&Frame::Data(Bytes::from_static(b"payload bytes")));
    buf.extend_from_slice(&enc(&Frame::GoAway(GoAway { reason: "x".into() })));
    let body_at = buf.as_ptr() as usize + 2;
    let Some(Frame::Data(d)) = FrameDecoder::default().decode(&mut buf).unwrap() else {
        panic!("not DATA");
    };
    assert_eq!(
        d.as_ptr() as usize,
        body_at,
        "DATA must point into the read buffer"
    );
    assert_eq!(&d[..], b"payload bytes");
    assert!(matches!(
        FrameDecoder::default().decode(&mut buf),
        Ok(Some(Frame::GoAway(_)))
    ));
}

/// Decodes everything `buf` holds; `Ok(None)` must leave `buf` untouched.
fn drain(dec: &FrameDecoder, buf: &mut BytesMut) -> Result<Vec<Frame>, WireError> {
    let mut out = Vec::new();
    loop {
        let before = buf.clone();
        match dec.decode(buf)? {
            Some(f) => out.push(f),
            None => {
                assert_eq!(*buf, before, "Ok(None) consumed bytes");
                return Ok(out);
            }
        }
    }
}

#[test]
fn every_prefix_waits_then_decodes_exactly_the_frames() {
    let frames = sample_frames();
    let mut all = BytesMut::new();
    let mut ends = Vec::new();
    for f in &frames {
        encode(f, &WireLimits::default(), &mut all).unwrap();
        ends.push(all.len());
    }
    let dec = FrameDecoder::default();
    for n in 0..=all.len() {
        let mut buf = BytesMut::from(&all[..n]);
        let got = drain(&dec, &mut buf).unwrap();
        let complete = ends.iter().take_while(|e| **e <= n).count();
        assert_eq!(got, frames[..complete], "prefix {n}");
        let consumed = if complete == 0 { 0 } else { ends[complete - 1] };
        assert_eq!(buf.len(), n - consumed, "prefix {n}");
    }
}

// ---- property tests ----

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

fn header_map() -> impl Strategy<Value = HeaderMap> {
    // A small name alphabet so repeated names are common.
    let field = ("[a-c][a-z0-9-]{0,3}", "[ -~]{0,16}");
    proptest::collection::vec(field, 0..8).prop_map(|fields| {
        let mut m = HeaderMap::new();
        for (k, v) in fields {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(&v).unwrap(),
            );
        }
        m
    })
}

fn refuse_code() -> impl Strategy<Value = RefuseCode> {
    (1u8..=9).prop_map(|b| RefuseCode::from_wire(b).unwrap())
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::POST),
        Just(Method::CONNECT),
        "[A-Z][A-Z_-]{0,11}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    let open = (
        prop_oneof![Just(StreamKind::Http), Just(StreamKind::Tcp)],
        (text(), text(), text()),
        proptest::option::of(text()),
        method(),
        (text(), text(), text()),
        header_map(),
    )
        .prop_map(
            |(
                kind,
                (service, request_id, caller),
                traceparent,
                method,
                (scheme, authority, path),
                headers,
            )| {
                Frame::Open(Box::new(Open {
                    kind,
                    service,
                    request_id,
                    caller,
                    traceparent,
                    method,
                    scheme,
                    authority,
                    path,
                    headers,
                }))
            },
        );
    prop_oneof![
        (
            any::<u32>(),
            proptest::collection::vec(text(), 0..4),
            proptest::collection::vec((text(), text()), 0..4)
        )
            .prop_map(|(version, services, labels)| Frame::Hello(Hello {
                version,
                services: services
                    .into_iter()
                    .map(|name| ServiceOffer { name })
                    .collect(),
                labels,
            })),
        (any::<u32>(), text(), any::<[u32; 3]>()).prop_map(|(version, edge_id, [h, d, s])| {
            Frame::Welcome(Welcome {
                version,
                edge_id,
                limits: PeerLimits {
                    max_header_bytes: h,
                    max_data_frame: d,
                    max_streams: s,
                },
            })
        }),
        text().prop_map(|reason| Frame::GoAway(GoAway { reason })),
        (refuse_code(), text(), 0u64..(1 << 62)).prop_map(|(code, message, retry_after_ms)| {
            Frame::Error(ControlError {
                code,
                message,
                retry_after_ms,
            })
        }),
        open,
        (100u16..=999, header_map()).prop_map(|(s, headers)| Frame::Response(Box::new(Response {
            status: StatusCode::from_u16(s).unwrap(),
            headers,
        }))),
        (refuse_code(), text()).prop_map(|(code, message)| Frame::Refuse(Refuse { code, message })),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|b| Frame::Data(b.into())),
        header_map().prop_map(Frame::Trailers),
        Just(Frame::Audited),
    ]
}

/// Random bytes, and random bytes behind a valid type byte and a small
/// length, so that payload parsing is exercised as much as framing.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let type_byte = prop_oneof![
        Just(0x01u8),
        Just(0x02),
        Just(0x03),
        Just(0x04),
        Just(0x10),
        Just(0x11),
        Just(0x12),
        Just(0x13),
        Just(0x14),
        Just(0x15),
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        (type_byte, proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(t, body)| {
            let mut v = vec![t, body.len().min(63) as u8];
            v.extend(body);
            v
        }),
    ]
}

proptest! {
    #[test]
    fn prop_valid_frames_round_trip(f in frame()) {
        let mut buf = enc(&f);
        prop_assert_eq!(FrameDecoder::default().decode(&mut buf).unwrap(), Some(f));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn prop_hostile_bytes_never_panic(
        bytes in hostile_bytes(),
        small in any::<bool>(),
    ) {
        let limits = if small {
            WireLimits { max_header_bytes: 16, max_data_frame: 8, max_headers: 2 }
        } else {
            WireLimits::default()
        };
        let dec = FrameDecoder::new(limits);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(res) = dec.decode(&mut buf) {
            match res {
                None => {
                    prop_assert!(buf.len() < dec.max_frame_len());
                    break;
                }
                Some(f) => {
                    let mut out = BytesMut::new();
                    prop_assert!(encode(&f, &limits, &mut out).is_ok(), "{:?}", f);
                    prop_assert_eq!(dec.decode(&mut out).unwrap(), Some(f));
                }
            }
        }
    }

    #[test]
    fn prop_split_stream_decodes_the_same_frames(
        frames in proptest::collection::vec(frame(), 1..6),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut all = BytesMut::new();
        for f in &frames {
            encode(f, &WireLimits::default(), &mut all).unwrap();
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(all.len() + 1)).collect();
        cuts.push(all.len());
        cuts.sort_unstable();
        let dec = FrameDecoder::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut at = 0;
        for cut in cuts {
            buf.extend_from_slice(&all[at..cut]);
            at = cut;
            got.extend(drain(&dec, &mut buf).unwrap());
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, frames);
    }
}
