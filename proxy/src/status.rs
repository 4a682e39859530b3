//! The live status page each admin listener serves, in three forms from
//! one model: `/status` (and `/`) as plain server-rendered HTML with no
//! external asset (it reloads itself every few seconds), `/status.txt`
//! for a terminal (`tunnel-server status`, `tunnel-client status`) and
//! `/status.json` for tools. Each binary builds its [`Section`]s from its
//! own state; rendering is here, sans-IO, so escaping is tested once.

use std::fmt::Write as _;

/// Seconds between the HTML page's reloads.
pub const REFRESH_SECONDS: u32 = 2;

/// One titled table of the page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    /// The heading.
    pub title: String,
    /// Column names.
    pub columns: Vec<String>,
    /// Rows of cells, each as long as `columns`.
    pub rows: Vec<Vec<String>>,
    /// Said instead of an empty table.
    pub empty: String,
}

impl Section {
    /// A section with these columns and no rows yet.
    pub fn new(title: &str, columns: &[&str], empty: &str) -> Self {
        Self {
            title: title.to_string(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
            empty: empty.to_string(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
}

/// Escapes text for HTML element content and attribute values: names,
/// identities and refusal details can hold anything a caller sent.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The HTML page: `title`, a summary line, then every section.
pub fn html(title: &str, summary: &str, sections: &[Section]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>{t}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}}\
         table{{border-collapse:collapse;margin-bottom:1.5em}}\
         th,td{{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:.9em}}\
         th{{background:#f0f0f0}}code{{font-size:.9em}}.empty{{color:#777}}\
         </style></head><body><h1>{t}</h1><p>{s}</p>\n",
        t = escape(title),
        s = escape(summary)
    );
    for section in sections {
        let _ = writeln!(out, "<h2>{}</h2>", escape(&section.title));
        if section.rows.is_empty() {
            let _ = writeln!(out, "<p class=\"empty\">{}</p>", escape(&section.empty));
            continue;
        }
        out.push_str("<table><tr>");
        for c in &section.columns {
            let _ = write!(out, "<th>{}</th>", escape(c));
        }
        out.push_str("</tr>\n");
        for row in &section.rows {
            out.push_str("<tr>");
            for cell in row {
                let _ = write!(out, "<td>{}</td>", escape(cell));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
    let _ = writeln!(
        out,
        "<p class=\"empty\">Reloads every {REFRESH_SECONDS} s. JSON: <a href=\"/status.json\">/status.json</a>; \
         metrics: <a href=\"/metrics\">/metrics</a>.</p></body></html>"
    );
    out
}

/// The same for a terminal: aligned columns, no markup.
pub fn text(title: &str, summary: &str, sections: &[Section]) -> String {
    let mut out = format!("{title}\n{summary}\n");
    for section in sections {
        let _ = write!(out, "\n{}\n", section.title);
        if section.rows.is_empty() {
            let _ = writeln!(out, "  ({})", section.empty);
            continue;
        }
        let mut widths: Vec<usize> = section.columns.iter().map(|c| c.chars().count()).collect();
        for row in &section.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut l = String::from(" ");
            for (cell, w) in cells.iter().zip(&widths) {
                let _ = write!(l, " {cell:<w$}");
            }
            l.trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line(&section.columns));
        for row in &section.rows {
            let _ = writeln!(out, "{}", line(row));
        }
    }
    out
}

/// A connection's state column: `draining`, `silent N ms` once its peer
/// has been silent longer than `silence_ms` (the bound routing uses), or
/// `live`.
pub fn connection_state(draining: bool, silent_ms: u64, silence_ms: u64) -> String {
    if draining {
        "draining".into()
    } else if silent_ms > silence_ms {
        format!("silent {silent_ms} ms")
    } else {
        "live".into()
    }
}

/// An audit log's state, as both status pages show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditStatus {
    /// Whether it takes records.
    pub healthy: bool,
    /// The newest record.
    pub head: Option<crate::audit::ChainHead>,
    /// The last failure, if any (kept after recovery).
    pub last_error: Option<String>,
}

impl AuditStatus {
    /// `log`'s state now.
    pub fn of(log: &crate::audit::AuditLog) -> Self {
        Self {
            healthy: log.healthy(),
            head: log.head(),
            last_error: log.last_error(),
        }
    }

    /// Its table.
    pub fn section(&self) -> Section {
        let mut audit = Section::new(
            "Audit log",
            &["healthy", "head seq", "head hash", "last error"],
            "",
        );
        audit.row(vec![
            self.healthy.to_string(),
            self.head.as_ref().map_or("-".into(), |h| h.seq.to_string()),
            self.head.as_ref().map_or("-".into(), |h| h.hash.clone()),
            self.last_error.clone().unwrap_or_else(|| "-".into()),
        ]);
        audit
    }
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn at(unix_ms: u64) -> String {
    let mut s = crate::audit::rfc3339_utc(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms),
    );
    if let Some(dot) = s.find('.') {
        s.truncate(dot);
        s.push('Z');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> Section {
        let mut s = Section::new("Tunnels", &["tunnel", "rtt ms"], "no tunnel is connected");
        s.row(vec!["<script>alert(1)</script>".into(), "0.4".into()]);
        s
    }

    #[test]
    fn html_escapes_every_cell_and_reloads_itself() {
        let page = html("edge <1>", "up", &[section()]);
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("edge &lt;1&gt;"));
        assert!(page.contains("http-equiv=\"refresh\""));
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "no external asset"
        );
    }

    #[test]
    fn empty_sections_say_so() {
        let empty = Section::new("Tunnels", &["tunnel"], "no tunnel is connected");
        assert!(html("t", "s", std::slice::from_ref(&empty)).contains("no tunnel is connected"));
        assert!(text("t", "s", &[empty]).contains("(no tunnel is connected)"));
    }

    #[test]
    fn text_aligns_columns() {
        let mut s = Section::new("T", &["a", "b"], "none");
        s.row(vec!["long value".into(), "x".into()]);
        let t = text("title", "summary", &[s]);
        assert!(t.contains("  a          b\n"), "{t}");
        assert!(t.contains("  long value x\n"), "{t}");
    }

    #[test]
    fn connection_states() {
        assert_eq!(connection_state(true, 9_000, 3_000), "draining");
        assert_eq!(connection_state(false, 3_001, 3_000), "silent 3001 ms");
        assert_eq!(connection_state(false, 1_000, 3_000), "live");
    }

    #[test]
    fn times_are_whole_seconds_utc() {
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(1_700_000_000_123), "2023-11-14T22:13:20Z");
    }
}
