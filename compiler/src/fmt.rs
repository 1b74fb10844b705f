//! The canonical layout of the podnet language: four-space indent, one statement per line,
//! keywords aligned within a run of statements in a block, comments kept, one blank line at
//! most, and one-line blocks kept on one line when they hold only statements. Idempotent.

use crate::syntax::{Arg, Block, Item, Statement};

/// Formats parsed items. Only call this on a file that parsed without syntax errors: a
/// statement skipped by error recovery would be dropped from the output.
pub fn format(items: &[Item]) -> String {
    let mut out = String::new();
    block_items(items, 0, &mut out);
    out
}

fn block_items(items: &[Item], depth: usize, out: &mut String) {
    let indent = "    ".repeat(depth);
    // Keyword width for alignment: per run of consecutive statements with arguments.
    let widths = align_widths(items, depth);
    for (i, item) in items.iter().enumerate() {
        match item {
            Item::Blank => out.push('\n'),
            Item::Comment(c) => {
                out.push_str(&indent);
                out.push('#');
                out.push_str(c);
                out.push('\n');
            }
            Item::Statement(s) => {
                out.push_str(&indent);
                statement(s, widths[i], depth, out);
                if let Some(c) = &s.trailing_comment {
                    out.push_str("  #");
                    out.push_str(c);
                }
                out.push('\n');
            }
        }
    }
}

fn align_widths(items: &[Item], depth: usize) -> Vec<usize> {
    let mut widths = vec![0; items.len()];
    if depth == 0 {
        return widths;
    }
    let mut start = 0;
    while start < items.len() {
        // A run: consecutive statements, ended by a comment, a blank line or a statement
        // whose block spans lines (which is not aligned itself).
        let mut end = start;
        while let Some(Item::Statement(s)) = items.get(end) {
            if s.block.as_ref().is_some_and(|b| !inline(b)) {
                break;
            }
            end += 1;
        }
        let w = items[start..end]
            .iter()
            .filter_map(|i| match i {
                Item::Statement(s) if !s.args.is_empty() => Some(s.keyword.chars().count()),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        for slot in &mut widths[start..end] {
            *slot = w;
        }
        start = end + 1;
    }
    widths
}

fn statement(s: &Statement, width: usize, depth: usize, out: &mut String) {
    out.push_str(&s.keyword);
    if !s.args.is_empty() {
        let pad = width.saturating_sub(s.keyword.chars().count());
        for _ in 0..pad {
            out.push(' ');
        }
        for a in &s.args {
            out.push(' ');
            arg(a, out);
        }
    }
    if let Some(b) = &s.block {
        out.push_str(" {");
        if inline(b) {
            let stmts: Vec<String> = b
                .statements()
                .map(|s| {
                    let mut o = String::new();
                    statement(s, 0, depth + 1, &mut o);
                    o
                })
                .collect();
            if stmts.is_empty() {
                out.push('}');
            } else {
                out.push(' ');
                out.push_str(&stmts.join("; "));
                out.push_str(" }");
            }
        } else {
            out.push('\n');
            block_items(&b.items, depth + 1, out);
            out.push_str(&"    ".repeat(depth));
            out.push('}');
        }
    }
}

/// A block stays on one line when it was written on one line and holds only statements
/// (no comments) whose own blocks can stay on one line too.
fn inline(b: &Block) -> bool {
    b.inline
        && b.items.iter().all(|i| match i {
            Item::Statement(s) => {
                s.trailing_comment.is_none() && s.block.as_ref().is_none_or(inline)
            }
            _ => false,
        })
}

fn arg(a: &Arg, out: &mut String) {
    let bare_ok = !a.text.is_empty()
        && a.text
            .chars()
            .all(|c| !c.is_whitespace() && !matches!(c, '{' | '}' | ';' | '"' | '#' | '\\'));
    if !a.quoted && bare_ok {
        out.push_str(&a.text);
        return;
    }
    out.push('"');
    for c in a.text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::FileId;

    fn fmt(text: &str) -> String {
        let mut d = Vec::new();
        let items = crate::parse::parse(text, FileId(0), &mut d);
        assert!(d.is_empty(), "{d:?}");
        format(&items)
    }

    #[test]
    fn canonical_layout() {
        let src = "# top\n\n\n\ncluster x {\n  pod-cidr 10.0.0.0/16   # pods\n\tsubnet-len 24\n  cni { bridge \"cni0\"; hairpin on }\n\n  backend vxlan {\n vni 4\n }\n}\nnode a { address 10.1.0.1/24 }\n";
        let want = "# top\n\ncluster x {\n    pod-cidr   10.0.0.0/16  # pods\n    subnet-len 24\n    cni { bridge \"cni0\"; hairpin on }\n\n    backend vxlan {\n        vni 4\n    }\n}\nnode a { address 10.1.0.1/24 }\n";
        assert_eq!(fmt(src), want);
        assert_eq!(fmt(want), want, "idempotent");
    }

    #[test]
    fn strings_are_requoted_and_semicolons_become_lines() {
        assert_eq!(
            fmt("a \"x y\" \"q\\\"\"; b c\n"),
            "a \"x y\" \"q\\\"\"\nb c\n"
        );
    }
}
