//! The coordinator URL a user typed, made into one `connect` can dial: `HOST:PORT` without a
//! scheme means `http://HOST:PORT`; any scheme other than `http` or `https` is refused with
//! the URL it was probably meant to be.

/// Longest coordinator URL accepted.
const MAX_URL_LENGTH: usize = 2_048;

/// `url` with `http://` added when it has no scheme; an error for an empty, overlong or
/// non-HTTP URL that says what to write instead. Used as the value parser of `--coordinator`
/// (and so also of `$PRIME_COORDINATOR`, its default).
pub fn normalize_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    if url.is_empty() {
        return Err("the coordinator URL is empty: expected http://HOST:PORT".into());
    }
    if url.len() > MAX_URL_LENGTH {
        return Err(format!(
            "the coordinator URL has {} characters; at most {MAX_URL_LENGTH}",
            url.len()
        ));
    }
    match url.split_once("://") {
        None => Ok(format!("http://{url}")),
        Some(("http" | "https", rest)) if !rest.is_empty() => Ok(url.to_string()),
        Some(("http" | "https", _)) => Err(format!(
            "the coordinator URL `{url}` has no host: expected http://HOST:PORT"
        )),
        Some((scheme, rest)) => Err(format!(
            "the coordinator URL `{url}` has scheme `{scheme}`; the coordinator speaks gRPC \
             over HTTP: did you mean http://{rest} (or https://{rest} with TLS)?"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_address_gets_http_and_other_schemes_say_what_was_meant() {
        assert_eq!(
            normalize_url("127.0.0.1:50051").unwrap(),
            "http://127.0.0.1:50051"
        );
        assert_eq!(
            normalize_url(" https://head:443 ").unwrap(),
            "https://head:443"
        );
        assert_eq!(normalize_url("http://h:1").unwrap(), "http://h:1");
        let error = normalize_url("grpc://head:50051").unwrap_err();
        assert!(error.contains("did you mean http://head:50051"), "{error}");
        assert!(normalize_url("").unwrap_err().contains("empty"));
        assert!(normalize_url("http://").unwrap_err().contains("no host"));
        assert!(normalize_url(&"a".repeat(3_000)).is_err());
    }
}
