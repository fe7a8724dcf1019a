//! URL policy: which base URLs are accepted, and how a route and its ids become a URL.

use std::net::IpAddr;

use url::{Host, Url};

use crate::error::{Error, Result};
use crate::paths;

/// Parses and checks a base URL: https, or plain http to loopback only; no credentials,
/// query or fragment.
pub(super) fn parse(which: &'static str, raw: &str) -> Result<Url> {
    let invalid = |reason| Error::InvalidBaseUrl { which, reason };
    let url = Url::parse(raw).map_err(|_| invalid("not a valid absolute url"))?;
    if url.cannot_be_a_base() {
        return Err(invalid("not a valid base url"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("credentials in the url are not allowed"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a query or fragment is not allowed"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(url.host()) => Ok(url),
        "http" => Err(invalid("plain http is only allowed to loopback hosts")),
        _ => Err(invalid("the scheme must be https")),
    }
}

fn is_loopback(host: Option<Host<&str>>) -> bool {
    match host {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// `base` with the route `template` filled with `params` (each one percent-encoded path
/// segment) and `query` appended. A path prefix of `base` is kept.
pub(super) fn route(
    base: &Url,
    template: &'static str,
    params: &[&str],
    query: &[(&'static str, String)],
) -> Result<Url> {
    let mut url = base.clone();
    let segments = paths::fill(template, params).ok_or(Error::InvalidConfig {
        reason: "route parameters do not match the route",
    })?;
    {
        let mut path = url.path_segments_mut().map_err(|()| Error::InvalidConfig {
            reason: "base url cannot take a path",
        })?;
        path.pop_if_empty().extend(segments);
    }
    if !query.is_empty() {
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
    }
    Ok(url)
}

/// Rejects ids that would change the route: empty, `.` and `..` (which URL path handling
/// would resolve). Everything else is percent-encoded as one path segment.
pub(super) fn checked_id<'a>(name: &'static str, id: &'a str) -> Result<&'a str> {
    if id.is_empty() || id == "." || id == ".." {
        return Err(Error::InvalidArgument {
            name,
            reason: "must not be empty, `.` or `..`",
        });
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_rules() {
        for ok in [
            "https://api.portalhq.io",
            "https://example.com/prefix/",
            "http://127.0.0.1:8080",
            "http://127.9.9.9",
            "http://[::1]:3000",
            "http://localhost:1234",
            "http://LOCALHOST",
        ] {
            assert!(parse("api", ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com",
            "http://10.0.0.1",
            "http://[::2]",
            "http://localhost.example.com",
            "ftp://127.0.0.1",
            "https://user:pw@example.com",
            "https://example.com/?q=1",
            "not a url",
            "mailto:x@example.com",
        ] {
            let err = parse("api", bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidBaseUrl { which: "api", .. }),
                "{bad}"
            );
            assert!(!err.to_string().contains("pw"), "{err}");
        }
    }

    #[test]
    fn urls_keep_prefix_and_encode_ids() {
        let base = parse("api", "https://example.com/portal/").unwrap();
        let url = route(&base, paths::BACKUP_SHARE_PAIR_CIPHER_TEXT, &["a/b?c"], &[]).unwrap();
        assert_eq!(
            url.as_str(),
            "https://example.com/portal/api/v3/clients/me/backup-share-pairs/a%2Fb%3Fc/cipher-text"
        );
        assert!(checked_id("walletId", "..").is_err());
        assert!(checked_id("walletId", "").is_err());
        assert!(checked_id("walletId", "w1").is_ok());
    }
}
