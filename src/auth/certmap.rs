//! `verify_and_map`: the user a client certificate stands for, found as
//! nats-server finds it: the certificate's e-mail addresses, then its DNS
//! names, then its URIs, each looked up as a user name; then its subject,
//! equal to a user name written as a distinguished name (`CN=x,O=y`, in any
//! order of its parts).

use x509_parser::prelude::*;

/// What a certificate offers for the lookup.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CertNames {
    /// E-mail addresses, DNS names, URIs, in that order.
    pub alt: Vec<String>,
    /// The subject's attributes (upper-case type, value), in certificate order.
    pub dn: Vec<(String, String)>,
}

/// The names in a DER certificate (None: not a certificate we can read).
pub fn names(der: &[u8]) -> Option<CertNames> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let mut out = CertNames::default();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        let general = &san.value.general_names;
        let pick = |f: &dyn Fn(&GeneralName) -> Option<String>| -> Vec<String> {
            general.iter().filter_map(f).collect()
        };
        out.alt.extend(pick(&|g| match g {
            GeneralName::RFC822Name(s) => Some(s.to_string()),
            _ => None,
        }));
        out.alt.extend(pick(&|g| match g {
            GeneralName::DNSName(s) => Some(s.to_string()),
            _ => None,
        }));
        out.alt.extend(pick(&|g| match g {
            GeneralName::URI(s) => Some(s.to_string()),
            _ => None,
        }));
    }
    for rdn in cert.subject().iter_rdn() {
        for attr in rdn.iter() {
            let registry = x509_parser::objects::oid_registry();
            let ty = x509_parser::objects::oid2abbrev(attr.attr_type(), registry)
                .map(str::to_string)
                .unwrap_or_else(|_| attr.attr_type().to_id_string());
            let value = attr.as_str().unwrap_or_default().to_string();
            out.dn.push((ty.to_ascii_uppercase(), value));
        }
    }
    Some(out)
}

/// A user name read as a distinguished name (`CN=a,O=b`, RFC 4514 with `\`
/// escapes); None when it is not one.
pub fn parse_dn(s: &str) -> Option<Vec<(String, String)>> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for ch in s.chars() {
        match (escaped, ch) {
            (true, c) => {
                cur.push(c);
                escaped = false;
            }
            (false, '\\') => escaped = true,
            (false, ',' | '+') => parts.push(std::mem::take(&mut cur)),
            (false, c) => cur.push(c),
        }
    }
    parts.push(cur);
    parts
        .into_iter()
        .map(|p| {
            let (ty, value) = p.split_once('=')?;
            let ty = ty.trim();
            (!ty.is_empty()).then(|| (ty.to_ascii_uppercase(), value.trim().to_string()))
        })
        .collect()
}

/// The same attributes, in any order (nats-server's exact and reordered
/// matches together).
pub fn dn_matches(user: &[(String, String)], cert: &[(String, String)]) -> bool {
    if user.len() != cert.len() || user.is_empty() {
        return false;
    }
    let mut a: Vec<_> = user.to_vec();
    let mut b: Vec<_> = cert.to_vec();
    a.sort();
    b.sort();
    a == b
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinguished_names_compare_by_their_parts() {
        let u = parse_dn("CN=alice, O=Acme,OU=ops").unwrap();
        assert_eq!(u[0], ("CN".to_string(), "alice".to_string()));
        let cert = vec![
            ("OU".to_string(), "ops".to_string()),
            ("O".to_string(), "Acme".to_string()),
            ("CN".to_string(), "alice".to_string()),
        ];
        assert!(dn_matches(&u, &cert), "reordered");
        assert!(!dn_matches(&u, &cert[..2]));
        assert!(parse_dn("alice").is_none(), "a plain user name");
        assert_eq!(
            parse_dn(r"CN=a\,b").unwrap(),
            [("CN".to_string(), "a,b".to_string())]
        );
    }
}
