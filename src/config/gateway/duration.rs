//! Gateway API durations (GEP-2257): one to four `<1-5 digits><unit>`
//! components, units `h`, `m`, `s`, `ms`, e.g. `10s`, `500ms`, `1h30m`.

use crate::config::resilience::Dur;

/// Parses a Gateway API duration; the error says what is wrong.
pub fn parse(s: &str) -> Result<Dur, String> {
    let bad = || format!("{s:?} is not a Gateway API duration (e.g. 10s, 500ms, 1h30m)");
    let mut rest = s;
    let mut total: u64 = 0;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return Err(bad());
        }
        let (num, tail) = rest.split_at(digits);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let (unit_ms, len) = if tail.starts_with("ms") {
            (1, 2)
        } else if tail.starts_with('h') {
            (3_600_000, 1)
        } else if tail.starts_with('m') {
            (60_000, 1)
        } else if tail.starts_with('s') {
            (1000, 1)
        } else {
            return Err(bad());
        };
        total = total.saturating_add(n.saturating_mul(unit_ms));
        rest = &tail[len..];
        parts += 1;
    }
    if parts == 0 || parts > 4 {
        return Err(bad());
    }
    Ok(Dur::ms(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_api_durations() {
        assert_eq!(parse("10s"), Ok(Dur::secs(10)));
        assert_eq!(parse("500ms"), Ok(Dur::ms(500)));
        assert_eq!(parse("1h30m"), Ok(Dur::secs(5400)));
        assert_eq!(parse("1m1s1ms"), Ok(Dur::ms(61_001)));
        assert_eq!(parse("0s"), Ok(Dur::ms(0)));
        for bad in [
            "",
            "10",
            "1.5s",
            "10S",
            "s",
            "123456s",
            "1h1h1h1h1h",
            "-1s",
            " 1s",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
