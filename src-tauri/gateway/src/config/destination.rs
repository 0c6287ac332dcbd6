//! Where a secret may be sent: the rules for URLs that receive a provider key or an account's
//! tokens.
//!
//! A key belongs to the origin (scheme, host and port) it was given for: `management` clears a
//! provider's keys when its URL moves to another origin, `registry` drops an adapter's URL
//! override that names another origin than its provider's, and `server::account_views` signs
//! accounts out when an endpoint their tokens go to moves. Account endpoints must also be
//! `https` (plain `http` only on this machine, for local servers and tests), and no URL may carry
//! a user name or password, which would be a secret shown back by every `GET`.

use std::net::IpAddr;

use reqwest::Url;

/// Why a URL cannot receive secrets. `Display` says what to write instead; the URL itself is
/// not repeated when it may carry a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    #[error("`{field}` must be an http(s) URL with a host, such as {example}")]
    NotHttp {
        field: String,
        example: &'static str,
    },
    #[error(
        "`{field}` carries a user name or password; keys do not belong in a URL (they would be \
         shown back in clear): remove them and give the key as the API key instead"
    )]
    UserInfo { field: String },
    #[error(
        "`{field}` must use https: it receives an account's tokens, which plain http would send \
         readable to anyone on the way (`{url}`). Plain http is accepted only for this machine \
         (127.0.0.1, ::1, localhost)"
    )]
    NotHttps { field: String, url: String },
    #[error(
        "`{field}` must be this machine (localhost, 127.0.0.1 or ::1), not `{host}`: the login's \
         callback carries its code to that host"
    )]
    NotLoopback { field: String, host: String },
}

/// Parses an http(s) URL with a host and without user info.
pub fn parse_http(field: &str, raw: &str, example: &'static str) -> Result<Url, UrlRefusal> {
    let url = Url::parse(raw.trim()).map_err(|_| UrlRefusal::NotHttp {
        field: field.to_owned(),
        example,
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(UrlRefusal::NotHttp {
            field: field.to_owned(),
            example,
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlRefusal::UserInfo {
            field: field.to_owned(),
        });
    }
    Ok(url)
}

/// A URL an account's tokens (or its login's code) go to: https, or http on loopback.
pub fn check_account_endpoint(field: &str, raw: &str) -> Result<(), UrlRefusal> {
    let url = parse_http(field, raw, "https://auth.example.com/oauth/token")?;
    if url.scheme() == "http" && !is_loopback_url(&url) {
        return Err(UrlRefusal::NotHttps {
            field: field.to_owned(),
            url: url.to_string(),
        });
    }
    Ok(())
}

/// A host name written into a loopback callback URI: `localhost` or a loopback address.
pub fn check_loopback_host(field: &str, host: &str) -> Result<(), UrlRefusal> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(UrlRefusal::NotLoopback {
            field: field.to_owned(),
            host: host.chars().take(100).collect(),
        })
    }
}

fn is_loopback_url(url: &Url) -> bool {
    url.host_str()
        .is_some_and(|host| check_loopback_host("", host).is_ok())
}

/// The origin of a URL (`https://api.example.com:443`), in the form two URLs of the same
/// server share whatever their path, case or default port; `None` when it does not parse.
pub fn origin(raw: &str) -> Option<String> {
    let origin = Url::parse(raw.trim()).ok()?.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// Whether two URLs name the same server. A URL that does not parse has no origin and so
/// matches nothing, not even itself: a key is never sent where its origin cannot be told.
pub fn same_origin(a: &str, b: &str) -> bool {
    matches!((origin(a), origin(b)), (Some(a), Some(b)) if a == b)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    /// `check` lets every one of `ok` through and refuses every one of `bad`.
    fn accepts_only(check: impl Fn(&str) -> Result<(), UrlRefusal>, ok: &[&str], bad: &[&str]) {
        for ok in ok {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for bad in bad {
            assert!(check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_ignore_path_case_and_default_port() {
        assert!(same_origin(
            "https://API.example.com/v1",
            "https://api.example.com:443/other"
        ));
        assert!(same_origin("http://127.0.0.1:80/x", "http://127.0.0.1/y"));
        assert!(!same_origin(
            "https://api.example.com",
            "http://api.example.com"
        ));
        assert!(!same_origin(
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8081"
        ));
        assert!(!same_origin(
            "https://a.example.com",
            "https://b.example.com"
        ));
        assert!(!same_origin("not a url", "not a url"));
        // userinfo is not part of the origin, but a host after `@` is the host.
        assert!(!same_origin(
            "https://api.example.com@evil.example/v1",
            "https://api.example.com/v1"
        ));
    }

    #[test]
    fn account_endpoints_are_https_or_loopback() {
        let check = |url: &str| check_account_endpoint("token_url", url);
        let ok = [
            "https://auth.example.com/token",
            "http://127.0.0.1:9/token",
            "http://localhost:9/token",
            "http://[::1]:9/token",
            "http://127.8.9.10/token",
        ];
        let bad = [
            "http://evil.example/token",
            "http://10.0.0.1/token",
            "http://localhost.evil.example/token",
            "http://127.0.0.1.nip.io/token",
            "ftp://127.0.0.1/token",
            "",
        ];
        accepts_only(check, &ok, &bad);
        let e = check_account_endpoint("token_url", "http://evil.example/t").unwrap_err();
        assert!(e.to_string().contains("must use https"), "{e}");
        let e = check_account_endpoint("token_url", "https://u:p@auth.example.com/").unwrap_err();
        assert!(!e.to_string().contains("u:p"), "{e}");
    }

    #[test]
    fn callback_hosts_are_loopback() {
        let check = |host: &str| check_loopback_host("redirect_host", host);
        let ok = ["localhost", "LOCALHOST", "127.0.0.1", "::1", "[::1]"];
        let bad = [
            "evil.example",
            "0.0.0.0",
            "10.0.0.2",
            "localhost.evil.example",
            "",
        ];
        accepts_only(check, &ok, &bad);
    }
}
