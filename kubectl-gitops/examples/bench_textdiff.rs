//! The diff of one huge object, as `kubectl gitops diff` draws it: 30,000
//! lines with a change every 1,000. Prints the time and the process's peak
//! memory (VmHWM): the hand-written Myers this replaced peaked at 12 GB for
//! 20,000 lines; the target is under 100 MB for 30,000.
#![forbid(unsafe_code)]

use std::time::Instant;

fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    for lines in [20_000, 30_000] {
        let old: String = (0..lines)
            .map(|i| format!("    - destination: {{host: reviews, subset: v{i}}}\n"))
            .collect();
        let new: String = (0..lines)
            .map(|i| {
                if i % 1000 == 500 {
                    format!("    - destination: {{host: reviews, subset: changed-{i}}}\n")
                } else {
                    format!("    - destination: {{host: reviews, subset: v{i}}}\n")
                }
            })
            .collect();
        let t0 = Instant::now();
        let diff = kubectl_gitops::textdiff::unified(&old, &new, "live", "git", false);
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        println!(
            "diff of {lines} lines ({} hunks): {ms:.1} ms, peak RSS of the process so far {:.1} MiB",
            diff.matches("@@ -").count(),
            peak_kib() as f64 / 1024.0
        );
    }
}
