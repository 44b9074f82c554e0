//! Parsers for the argument values clap cannot parse alone: addresses that
//! may need resolving, and durations with units.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// `HOST:PORT`: an IP literal (`127.0.0.1:7`, `[::1]:7`) or a name that
/// resolves (`localhost:7`). A name with several addresses gives its first
/// IPv4 one, since servers most often listen on IPv4 loopback; else its first.
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if !text.contains(':') {
        return Err(format!("{text:?} has no port: write HOST:PORT"));
    }
    let resolved: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {text:?}: {e}"))?
        .collect();
    resolved
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| resolved.first())
        .copied()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

/// A duration with a unit: `2s`, `500ms`, `1.5s`, `250us`, `1m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{text:?} has no unit: write e.g. 2s or 500ms"))?;
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}: use ns, us, ms, s, m or h"
            ));
        }
    };
    seconds(number, scale, text)
}

/// A duration in seconds when bare (`10`, `0.5`), or with a unit (`500ms`).
pub fn parse_secs(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        seconds(text, 1.0, text)
    } else {
        parse_duration(text)
    }
}

/// The longest duration taken, as in configurations: longer ones are typos,
/// and `now + duration` would overflow the clock (a panic) in the commands
/// that wait or measure that long.
const MAX_DURATION: Duration = netlab::config::defaults::MAX_DURATION;

fn seconds(number: &str, scale: f64, whole: &str) -> Result<Duration, String> {
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{whole:?} is not a duration: write e.g. 2s or 500ms"))?;
    match Duration::try_from_secs_f64(value * scale) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(format!(
            "{whole:?} is too long; expected at most {} days",
            netlab::config::defaults::MAX_DURATION_DAYS
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            parse_addr("127.0.0.1:7"),
            Ok("127.0.0.1:7".parse().unwrap())
        );
        assert_eq!(parse_addr("[::1]:7"), Ok("[::1]:7".parse().unwrap()));
        let local = parse_addr("localhost:7").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 7, "{local}");
        assert!(parse_addr("localhost").unwrap_err().contains("no port"));
        assert!(parse_addr("127.0.0.1:99999").is_err());
        assert!(parse_addr("").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1..2s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1e999s").is_err());
        // Past a year: refused in words, not a clock overflow later
        // (`netlab stats --timeout`, `netlab bench --warmup` panicked).
        assert_eq!(
            parse_duration("365d"),
            Err("unknown unit \"d\" in \"365d\": use ns, us, ms, s, m or h".into())
        );
        assert_eq!(
            parse_duration("8760h"),
            Ok(Duration::from_secs(365 * 24 * 3600))
        );
        let long = parse_duration("9999999999999999999s").unwrap_err();
        assert!(long.contains("at most 365 days"), "{long}");
        assert!(
            parse_secs("8761h")
                .unwrap_err()
                .contains("at most 365 days")
        );
        assert!(
            parse_secs("31536001")
                .unwrap_err()
                .contains("at most 365 days")
        );
    }

    #[test]
    fn seconds_bare_or_with_a_unit() {
        assert_eq!(parse_secs("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_secs("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_secs("200ms"), Ok(Duration::from_millis(200)));
        assert!(parse_secs("ten").is_err());
    }
}
