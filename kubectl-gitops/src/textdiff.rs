//! A unified line diff (Myers' O(ND) algorithm), coloured with ANSI escapes
//! when asked to: `kubectl gitops diff` shows each object's YAML this way.

use std::fmt::Write as _;

/// Lines of context around each change, as `diff -u`.
const CONTEXT: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equal,
    Delete,
    Insert,
}

/// One edit: the op with the index of its line in `a` (Equal, Delete) and
/// in `b` (Equal, Insert).
#[derive(Debug, Clone, Copy)]
struct Edit {
    op: Op,
    a: usize,
    b: usize,
}

/// The shortest edit script from `a` to `b` (Myers 1986, with the greedy
/// forward pass and a backtrack over the saved frontier of each round).
fn myers(a: &[&str], b: &[&str]) -> Vec<Edit> {
    let n = a.len() as isize;
    let m = b.len() as isize;
    let max = n + m;
    let offset = max + 1;
    let idx = |k: isize| (k + offset) as usize;
    let mut v = vec![0isize; (2 * max + 3) as usize];
    let mut trace: Vec<Vec<isize>> = Vec::new();
    let mut rounds = 0;
    'search: for d in 0..=max {
        trace.push(v.clone());
        let mut k = -d;
        while k <= d {
            let mut x = if k == -d || (k != d && v[idx(k - 1)] < v[idx(k + 1)]) {
                v[idx(k + 1)]
            } else {
                v[idx(k - 1)] + 1
            };
            let mut y = x - k;
            while x < n && y < m && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
            }
            v[idx(k)] = x;
            if x >= n && y >= m {
                rounds = d;
                break 'search;
            }
            k += 2;
        }
    }
    let mut edits = Vec::new();
    let (mut x, mut y) = (n, m);
    for d in (0..=rounds).rev() {
        let v = &trace[d as usize];
        let k = x - y;
        let prev_k = if k == -d || (k != d && v[idx(k - 1)] < v[idx(k + 1)]) {
            k + 1
        } else {
            k - 1
        };
        let prev_x = v[idx(prev_k)];
        let prev_y = prev_x - prev_k;
        while x > prev_x && y > prev_y {
            x -= 1;
            y -= 1;
            edits.push(Edit {
                op: Op::Equal,
                a: x as usize,
                b: y as usize,
            });
        }
        if d > 0 {
            if x == prev_x {
                edits.push(Edit {
                    op: Op::Insert,
                    a: x as usize,
                    b: (y - 1) as usize,
                });
            } else {
                edits.push(Edit {
                    op: Op::Delete,
                    a: (x - 1) as usize,
                    b: y as usize,
                });
            }
        }
        x = prev_x;
        y = prev_y;
    }
    edits.reverse();
    edits
}

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const CYAN: &str = "\x1b[36m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// The unified diff of two texts, with `---`/`+++` headers naming them;
/// empty when they are equal. ANSI colours when `color`.
pub fn unified(old: &str, new: &str, old_name: &str, new_name: &str, color: bool) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let edits = myers(&a, &b);
    let changes: Vec<usize> = edits
        .iter()
        .enumerate()
        .filter(|(_, e)| e.op != Op::Equal)
        .map(|(i, _)| i)
        .collect();
    if changes.is_empty() {
        return String::new();
    }
    let paint = |code: &str, text: &str| {
        if color {
            format!("{code}{text}{RESET}")
        } else {
            text.to_string()
        }
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}", paint(BOLD, &format!("--- {old_name}")));
    let _ = writeln!(out, "{}", paint(BOLD, &format!("+++ {new_name}")));
    // Group changes whose context overlaps into one hunk.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for &i in &changes {
        let start = i.saturating_sub(CONTEXT);
        let end = (i + CONTEXT + 1).min(edits.len());
        match groups.last_mut() {
            Some(last) if start <= last.1 => last.1 = end,
            _ => groups.push((start, end)),
        }
    }
    for (start, end) in groups {
        let hunk = &edits[start..end];
        let a_len = hunk.iter().filter(|e| e.op != Op::Insert).count();
        let b_len = hunk.iter().filter(|e| e.op != Op::Delete).count();
        let a_start = hunk[0].a + usize::from(a_len > 0);
        let b_start = hunk[0].b + usize::from(b_len > 0);
        let header = format!("@@ -{a_start},{a_len} +{b_start},{b_len} @@");
        let _ = writeln!(out, "{}", paint(CYAN, &header));
        for e in hunk {
            let _ = match e.op {
                Op::Equal => writeln!(out, " {}", a[e.a]),
                Op::Delete => writeln!(out, "{}", paint(RED, &format!("-{}", a[e.a]))),
                Op::Insert => writeln!(out, "{}", paint(GREEN, &format!("+{}", b[e.b]))),
            };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(a: &[&str], b: &[&str]) -> Vec<String> {
        // Replaying the script on `a` must give `b`.
        myers(a, b)
            .iter()
            .filter(|e| e.op != Op::Delete)
            .map(|e| match e.op {
                Op::Equal => a[e.a].to_string(),
                _ => b[e.b].to_string(),
            })
            .collect()
    }

    #[test]
    fn edit_scripts_are_minimal_and_correct() {
        let cases: &[(&[&str], &[&str], usize)] = &[
            (&[], &[], 0),
            (&["a"], &[], 1),
            (&[], &["a", "b"], 2),
            (&["a", "b", "c"], &["a", "b", "c"], 0),
            (
                &["a", "b", "c", "a", "b", "b", "a"],
                &["c", "b", "a", "b", "a", "c"],
                5,
            ),
            (&["x", "weight: 80", "y"], &["x", "weight: 50", "y"], 2),
        ];
        for (a, b, d) in cases {
            let edits = myers(a, b);
            assert_eq!(apply(a, b), b.to_vec(), "{a:?} -> {b:?}");
            let changes = edits.iter().filter(|e| e.op != Op::Equal).count();
            assert_eq!(changes, *d, "{a:?} -> {b:?}");
        }
    }

    #[test]
    fn unified_output_has_headers_hunks_and_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nweight: 80\nk\n";
        let new = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nweight: 20\nk\nl\n";
        assert_eq!(
            unified(old, new, "live", "git", false),
            "--- live\n+++ git\n@@ -8,5 +8,6 @@\n h\n i\n j\n-weight: 80\n+weight: 20\n k\n+l\n"
        );
        assert_eq!(unified(old, old, "a", "b", false), "");
        assert_eq!(
            unified("", "x\n", "/dev/null", "git", false),
            "--- /dev/null\n+++ git\n@@ -0,0 +1,1 @@\n+x\n"
        );
        let coloured = unified("a\n", "b\n", "l", "g", true);
        assert!(coloured.contains("\x1b[31m-a\x1b[0m"), "{coloured:?}");
        assert!(coloured.contains("\x1b[32m+b\x1b[0m"), "{coloured:?}");
    }

    #[test]
    fn distant_changes_make_separate_hunks() {
        let old: String = (0..20).map(|i| format!("{i}\n")).collect();
        let new: String = (0..20)
            .map(|i| match i {
                2 => "two\n".to_string(),
                17 => "seventeen\n".to_string(),
                i => format!("{i}\n"),
            })
            .collect();
        let diff = unified(&old, &new, "a", "b", false);
        assert_eq!(diff.matches("@@ -").count(), 2, "{diff}");
        assert!(diff.contains("@@ -1,6 +1,6 @@"), "{diff}");
        assert!(diff.contains("@@ -15,6 +15,6 @@"), "{diff}");
    }
}
