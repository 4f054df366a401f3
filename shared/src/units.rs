//! Durations and sizes as people write them on a command line, read the
//! same way by both programs.

use std::time::Duration;

/// `500ms`, `30s`, `5m`, `1h30m`, `1.5s` (jiff's friendly format, already in
/// the tree through k8s-openapi); a bare number is seconds. No spaces, no
/// negative durations.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if text.contains(char::is_whitespace) {
        return Err(format!(
            "{text:?}: write it without spaces, e.g. 30s or 1m30s"
        ));
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let d: jiff::SignedDuration = text
        .parse()
        .map_err(|e| format!("{text:?} is not a duration such as 500ms, 30s, 5m or 1h30m ({e})"))?;
    Duration::try_from(d).map_err(|_| format!("{text:?} is negative"))
}

/// A size as Kubernetes writes quantities: `64Mi`, `500Ki`, `1Gi`, `10M`,
/// `1k`, or a bare number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 64Mi, 500Ki or 1048576"))?;
    let scale: u64 = match unit {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use Ki, Mi, Gi, k, M or G)"
            ));
        }
    };
    n.checked_mul(scale)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} must be above 0 and below 16 EiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2m30s").unwrap(), Duration::from_secs(150));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        for bad in ["", "s", "5x", "5 s", "-1s", "1..2s", "soon"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_read_like_kubernetes_quantities() {
        assert_eq!(parse_size("64Mi").unwrap(), 64 << 20);
        assert_eq!(parse_size("500Ki").unwrap(), 500 << 10);
        assert_eq!(parse_size("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        for bad in ["", "Mi", "1.5Mi", "10XB", "0"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
