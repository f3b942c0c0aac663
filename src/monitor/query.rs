//! Query parameters read as nats-server reads them (Go's `strconv` rules),
//! with its error texts: a bad value is a 400 naming the parameter.

use crate::monitor::http::{Request, Response};

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A boolean parameter; absent or empty is false.
pub fn boolean(r: &Request, name: &str) -> Result<bool, Response> {
    match r.get(name).filter(|v| !v.is_empty()) {
        None => Ok(false),
        Some(v) => parse_bool(v).ok_or_else(|| {
            Response::text(
                400,
                format!(
                    "Error decoding boolean for '{name}': strconv.ParseBool: parsing {}: invalid syntax",
                    go_quote(v)
                ),
            )
        }),
    }
}

/// An int parameter (Go's `strconv.Atoi`); absent or empty is 0.
pub fn int(r: &Request, name: &str) -> Result<i64, Response> {
    number(r, name, "int", "strconv.Atoi", true)
}

/// A uint64 parameter (Go's `strconv.ParseUint`); absent or empty is 0.
pub fn uint(r: &Request, name: &str) -> Result<u64, Response> {
    number(r, name, "uint64", "strconv.ParseUint", false)
}

fn number<T: std::str::FromStr + Default>(
    r: &Request,
    name: &str,
    kind: &str,
    func: &str,
    signed: bool,
) -> Result<T, Response> {
    let Some(v) = r.get(name).filter(|v| !v.is_empty()) else {
        return Ok(T::default());
    };
    let digits = if signed {
        v.strip_prefix(['+', '-']).unwrap_or(v)
    } else {
        v
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(number_error(kind, name, func, v, "invalid syntax"));
    }
    v.parse::<T>()
        .map_err(|_| number_error(kind, name, func, v, "value out of range"))
}

fn number_error(kind: &str, name: &str, func: &str, v: &str, why: &str) -> Response {
    Response::text(
        400,
        format!(
            "Error decoding {kind} for '{name}': {func}: parsing {}: {why}",
            go_quote(v)
        ),
    )
}

/// Go's `%q` of a string, as strconv errors quote the input.
fn go_quote(v: &str) -> String {
    serde_json::to_string(v).expect("a string serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(q: &str) -> Request {
        crate::monitor::http::parse(format!("GET /x?{q} HTTP/1.1\r\n\r\n").as_bytes())
            .unwrap()
            .unwrap()
            .0
    }

    fn text(r: Response) -> String {
        assert_eq!(r.status, 400);
        String::from_utf8(r.body).unwrap()
    }

    #[test]
    fn values_and_errors_read_as_nats_server_reads_them() {
        assert_eq!(boolean(&req("a=True"), "a").ok(), Some(true));
        assert_eq!(boolean(&req("a=0"), "a").ok(), Some(false));
        assert_eq!(boolean(&req("a="), "a").ok(), Some(false));
        assert_eq!(
            text(boolean(&req("subs=xyz"), "subs").unwrap_err()),
            "Error decoding boolean for 'subs': strconv.ParseBool: parsing \"xyz\": invalid syntax"
        );
        assert_eq!(int(&req("limit=-3"), "limit").ok(), Some(-3));
        assert_eq!(int(&req("limit=%2B3"), "limit").ok(), Some(3));
        assert_eq!(
            text(int(&req("limit=abc"), "limit").unwrap_err()),
            "Error decoding int for 'limit': strconv.Atoi: parsing \"abc\": invalid syntax"
        );
        assert!(
            text(int(&req("limit=99999999999999999999"), "limit").unwrap_err())
                .ends_with("value out of range")
        );
        assert_eq!(uint(&req("cid=7"), "cid").ok(), Some(7));
        assert_eq!(
            text(uint(&req("cid=-1"), "cid").unwrap_err()),
            "Error decoding uint64 for 'cid': strconv.ParseUint: parsing \"-1\": invalid syntax"
        );
    }
}
