//! What every HTTP/1 request must be before a route sees it, as RFC 9112 has
//! it and hyper does not check: one `Host` (§3.2), and a method the server
//! knows. Checked for every request hyper reads, plain or over TLS; HTTP/2
//! carries the authority in `:authority` instead, and is not checked here.

use warp::http::{self, HeaderValue, Method, StatusCode, Version, header};

use super::refusal::Refusal;
use crate::policy::Reason;

/// The methods of RFC 9110 and PATCH. Methods are case-sensitive: `get` is
/// not `GET`, and hyper takes any token as a method.
const KNOWN: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::CONNECT,
    Method::OPTIONS,
    Method::TRACE,
    Method::PATCH,
];

/// Refuses an HTTP/1 request with no `Host` (HTTP/1.1), several, or one that
/// is not `host[:port]`: 400, as RFC 9112 §3.2 requires; and one with a
/// method the server does not know: 501, as RFC 9110 §9.1 says. The
/// connection closes after the answer.
pub fn check<B>(request: &http::Request<B>) -> Result<(), Refusal> {
    let version = request.version();
    if version != Version::HTTP_10 && version != Version::HTTP_11 {
        return Ok(());
    }
    let close = |refusal: Refusal| {
        refusal.with_header(header::CONNECTION, HeaderValue::from_static("close"))
    };
    if !KNOWN.contains(request.method()) {
        let why = format!(
            "unknown method {} (methods are case-sensitive)",
            request.method()
        );
        let refusal = Refusal::new(Reason::Method, StatusCode::NOT_IMPLEMENTED, why);
        return Err(close(refusal));
    }
    let mut hosts = request.headers().get_all(header::HOST).iter();
    let why = match (hosts.next(), hosts.next()) {
        (None, _) if version == Version::HTTP_11 => "an HTTP/1.1 request needs a Host header",
        (None, _) => return Ok(()),
        (Some(_), Some(_)) => "a request has one Host header, not several",
        (Some(host), None) if !is_host(host) => "the Host header is not host[:port]",
        (Some(_), None) => return Ok(()),
    };
    let refusal = Refusal::new(Reason::MalformedHttp, StatusCode::BAD_REQUEST, why);
    Err(close(refusal))
}

/// `host[:port]`, or empty (a target with no authority).
fn is_host(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    bytes.is_empty() || (!bytes.contains(&b'@') && http::uri::Authority::try_from(bytes).is_ok())
}

/// Whether the client said it will close the connection after this request:
/// `Connection: close`, or HTTP/1.0 without `Connection: keep-alive`.
pub fn asks_close<B>(request: &http::Request<B>) -> bool {
    let tokens = || {
        request
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
    };
    tokens().any(|token| token.eq_ignore_ascii_case("close"))
        || (request.version() == Version::HTTP_10
            && !tokens().any(|token| token.eq_ignore_ascii_case("keep-alive")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, method: &str, hosts: &[&str]) -> http::Request<()> {
        let mut request = http::Request::builder()
            .method(method)
            .uri("/sse")
            .version(version);
        for host in hosts {
            request = request.header(header::HOST, *host);
        }
        request.body(()).unwrap()
    }

    fn status(request: &http::Request<()>) -> Option<u16> {
        check(request).err().map(|refusal| refusal.status.as_u16())
    }

    #[test]
    fn http_1_1_needs_exactly_one_host_and_http_1_0_at_most_one() {
        const HTTP_10: Version = Version::HTTP_10;
        const HTTP_11: Version = Version::HTTP_11;
        const HTTP_2: Version = Version::HTTP_2;
        let cases: [(Version, &[&str], Option<u16>); 12] = [
            (HTTP_11, &["localhost"], None),
            (HTTP_11, &["127.0.0.1:8080"], None),
            (HTTP_11, &["[::1]:8080"], None),
            (HTTP_11, &[""], None),
            (HTTP_11, &[], Some(400)),
            (HTTP_11, &["a", "a"], Some(400)),
            (HTTP_11, &["a b"], Some(400)),
            (HTTP_11, &["user@host"], Some(400)),
            (HTTP_11, &["host/path"], Some(400)),
            (HTTP_10, &[], None),
            (HTTP_10, &["a", "b"], Some(400)),
            (HTTP_2, &[], None),
        ];
        for (version, hosts, expected) in cases {
            let request = request(version, "GET", hosts);
            assert_eq!(status(&request), expected, "{version:?} {hosts:?}");
        }
    }

    #[test]
    fn unknown_methods_get_501_and_close_the_connection() {
        for method in ["get", "Get", "BREW", "PROPFIND"] {
            let refusal = check(&request(Version::HTTP_11, method, &["x"])).unwrap_err();
            assert_eq!(refusal.status, StatusCode::NOT_IMPLEMENTED, "{method}");
            assert_eq!(refusal.reason, Some(Reason::Method));
        }
        for method in ["GET", "POST", "OPTIONS", "DELETE", "PATCH"] {
            assert_eq!(status(&request(Version::HTTP_11, method, &["x"])), None);
        }
        let missing = check(&request(Version::HTTP_11, "GET", &[])).unwrap_err();
        let answer = missing.answer(&Default::default(), "127.0.0.1:1".parse().unwrap());
        assert_eq!(answer.headers()[header::CONNECTION], "close");
    }

    #[test]
    fn close_is_asked_by_the_header_or_by_http_1_0() {
        let with = |version, connection: Option<&str>| {
            let mut request = request(version, "GET", &["x"]);
            if let Some(value) = connection {
                let value = HeaderValue::from_str(value).unwrap();
                request.headers_mut().insert(header::CONNECTION, value);
            }
            asks_close(&request)
        };
        assert!(!with(Version::HTTP_11, None));
        assert!(with(Version::HTTP_11, Some("Close")));
        assert!(with(Version::HTTP_11, Some("upgrade, close")));
        assert!(!with(Version::HTTP_11, Some("keep-alive")));
        assert!(with(Version::HTTP_10, None));
        assert!(!with(Version::HTTP_10, Some("keep-alive")));
    }
}
