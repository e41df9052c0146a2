//! Where a webhook may go: https URLs (http only on loopback when allowed, for tests and local receivers)
//! whose host resolves to public addresses only, so an admin's endpoint cannot reach the portal's own
//! network (SSRF). Checked when an endpoint is saved and again at every delivery, whose client resolves
//! names through [`CheckedResolver`]: what it connects to is what was checked, so DNS rebinding between a
//! check and the connection gains nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;

use crate::config::AllowHttp;

/// A URL that passed the checks, and where it resolved to.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: Url,
    pub addr: SocketAddr,
}

/// Checks an endpoint URL's form (not its address).
pub fn check_url(text: &str, allow: AllowHttp) -> Result<Url, String> {
    if text.len() > 2048 {
        return Err("at most 2048 characters".into());
    }
    let url = Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow == AllowHttp::Loopback && names_loopback(&url) => Ok(url),
        "http" => Err("must be https".into()),
        other => Err(format!("must be https, not {other}")),
    }
}

/// Resolves a checked URL and refuses private, loopback and link-local addresses (loopback is allowed under
/// `AllowHttp::Loopback`).
pub async fn resolve(url: &Url, allow: AllowHttp) -> Result<Target, String> {
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("{host} cannot be resolved: {e}"))?
        .collect();
    let first = *addrs.first().ok_or_else(|| format!("{host} has no address"))?;
    if let Some(bad) = addrs.iter().find(|a| !allowed(a.ip(), allow)) {
        return Err(format!("{host} resolves to {}, a private, loopback or link-local address", bad.ip()));
    }
    Ok(Target { url: url.clone(), addr: first })
}

/// The delivery client's resolver: only allowed addresses come back (a name with any other fails).
pub struct CheckedResolver {
    pub allow: AllowHttp,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (allow, host) = (self.allow, name.as_str().to_string());
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| !allowed(a.ip(), allow)) {
                return Err(format!("{host} resolves to {}, which webhooks may not reach", bad.ip()).into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn names_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn allowed(ip: IpAddr, allow: AllowHttp) -> bool {
    if ip.is_loopback() {
        return allow == AllowHttp::Loopback;
    }
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => public_v4(v4),
            None => public_v6(v6),
        },
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier-grade NAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240)
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first == 0x64 && ip.segments()[1] == 0xff9b) // NAT64 into IPv4 space
        || first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_except_loopback_when_allowed() {
        assert!(check_url("https://hooks.example.com/portal", AllowHttp::Never).is_ok());
        assert!(check_url("http://hooks.example.com/", AllowHttp::Never).is_err());
        assert!(check_url("http://127.0.0.1:9/", AllowHttp::Never).is_err());
        assert!(check_url("http://127.0.0.1:9/", AllowHttp::Loopback).is_ok());
        assert!(check_url("http://hooks.example.com/", AllowHttp::Loopback).is_err());
        assert!(check_url("https://user:pw@hooks.example.com/", AllowHttp::Never).is_err());
        assert!(check_url("ftp://hooks.example.com/", AllowHttp::Never).is_err());
        assert!(check_url("not a url", AllowHttp::Never).is_err());
    }

    #[test]
    fn only_public_addresses_are_allowed() {
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!allowed(private.parse().unwrap(), AllowHttp::Never), "{private}");
        }
        assert!(allowed("127.0.0.1".parse().unwrap(), AllowHttp::Loopback));
        assert!(!allowed("10.0.0.1".parse().unwrap(), AllowHttp::Loopback));
        for public in ["93.184.216.34", "2606:2800:220:1:248:1893:25c3:1946", "1.1.1.1"] {
            assert!(allowed(public.parse().unwrap(), AllowHttp::Never), "{public}");
        }
    }

    #[tokio::test]
    async fn resolving_refuses_what_is_not_allowed() {
        let loopback = check_url("http://127.0.0.1:8/", AllowHttp::Loopback).unwrap();
        assert!(resolve(&loopback, AllowHttp::Never).await.is_err());
        assert_eq!(resolve(&loopback, AllowHttp::Loopback).await.unwrap().addr, "127.0.0.1:8".parse().unwrap());
        let metadata = Url::parse("https://169.254.169.254/latest/meta-data").unwrap();
        assert!(resolve(&metadata, AllowHttp::Never).await.unwrap_err().contains("link-local"));
    }
}
