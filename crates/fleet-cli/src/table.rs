//! Aligned text tables for people.

/// Render rows under headers, columns separated by two spaces; the last
/// column is not padded.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 < widths.len() {
                s.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            } else {
                s.push_str(cell);
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// `42s`, `3m`, `5h`, `2d`.
pub fn duration(secs: i64) -> String {
    let (sign, s) = if secs < 0 { ("-", -secs) } else { ("", secs) };
    match s {
        0..60 => format!("{sign}{s}s"),
        60..3600 => format!("{sign}{}m", s / 60),
        3600..86400 => format!("{sign}{}h", s / 3600),
        _ => format!("{sign}{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned() {
        let t = render(&["A", "BB", "C"], &[vec!["xxx".into(), "y".into(), "z".into()]]);
        assert_eq!(t, "A    BB  C\nxxx  y   z\n");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(61), "1m");
        assert_eq!(duration(7200), "2h");
        assert_eq!(duration(-5), "-5s");
    }
}
