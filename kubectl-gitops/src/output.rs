//! Results on stdout as a table (for people), YAML or JSON (for machines).
//! Diagnostics never come here: they go to stderr through `tracing` or as
//! the final `error: ...`.

use std::io::{IsTerminal, Write};

use anyhow::Result;
use serde::Serialize;

/// `-o table|wide|yaml|json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    /// The table with more columns, where a command has them (`status`);
    /// elsewhere the table, as kubectl users type it.
    Wide,
    Yaml,
    Json,
}

/// Print `value` as YAML or JSON (pretty, with a final newline). Table output
/// is each command's own.
pub fn print_data<T: Serialize>(format: Format, value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, value)?;
            writeln!(out)?;
        }
        Format::Yaml | Format::Table | Format::Wide => {
            let value = serde_json::to_value(value)?;
            out.write_all(crate::yaml::to_yaml(&value)?.as_bytes())?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Write text to stdout.
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Whether stdout is a terminal that wants colour (and `NO_COLOR` is unset).
pub fn color_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A table in kubectl's style: upper-case headers, columns padded with three
/// spaces, no borders.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(columns) {
                if i + 1 == columns {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    let pad = widths[i] - cell.chars().count() + 3;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A duration in kubectl's short style: `45s`, `12m`, `3h`, `5d`.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_columns_like_kubectl() {
        let mut t = Table::new(&["NAMESPACE", "PHASE", "MESSAGE"]);
        t.row(vec!["team-a".into(), "Synced".into(), "ok".into()]);
        t.row(vec!["team-bb-long".into(), "Failed".into(), String::new()]);
        assert_eq!(
            t.render(),
            "NAMESPACE      PHASE    MESSAGE\nteam-a         Synced   ok\nteam-bb-long   Failed\n"
        );
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(600), "10m");
        assert_eq!(age(3 * 3600), "3h");
        assert_eq!(age(3 * 86_400), "3d");
    }
}
