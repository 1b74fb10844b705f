//! The TOML form: parses with span-preserving `toml::de::DeTable` and maps onto the same
//! syntax tree as the podnet language, so lowering and every diagnostic are shared.
//!
//! Mapping: a table is a block; `name` (in `cluster`/`node`) and `mode` (in
//! `backend`/`masquerade`) become the statement's argument; an array of scalars is a list
//! of arguments; an array of tables (`[[node]]`) is one statement each; `true`/`false`
//! become `on`/`off`. A `[node.NAME]` table of tables is accepted too. A statement of an
//! array of tables is located at its own `[[…]]` header.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diag::{Code, Diagnostic};
use crate::span::{FileId, Span};
use crate::syntax::{Arg, Block, Item, Statement};

/// Which key of a table becomes the statement's argument.
fn lifted_key(keyword: &str) -> Option<&'static str> {
    match keyword {
        "cluster" | "node" => Some("name"),
        "backend" | "masquerade" => Some("mode"),
        _ => None,
    }
}

pub fn parse(text: &str, file: FileId, diags: &mut Vec<Diagnostic>) -> Vec<Item> {
    let (doc, errors) = DeTable::parse_recoverable(text);
    for e in errors {
        let span = e.span().unwrap_or(0..0);
        diags.push(
            Diagnostic::error(Code::Toml, e.message().trim().to_string())
                .at(Span::new(file, span.start, span.end), "invalid TOML here")
                .help("fix the TOML syntax; see schemas/cluster.schema.json for the keys"),
        );
    }
    let mut items = Vec::new();
    for (k, v) in doc.get_ref() {
        entry(k, v, file, diags, &mut items, true);
    }
    items
}

fn span_of<T>(s: &Spanned<T>, file: FileId) -> Span {
    let r = s.span();
    Span::new(file, r.start, r.end)
}

fn entry(
    key: &Spanned<std::borrow::Cow<'_, str>>,
    value: &Spanned<DeValue<'_>>,
    file: FileId,
    diags: &mut Vec<Diagnostic>,
    out: &mut Vec<Item>,
    top: bool,
) {
    let kw = key.get_ref().to_string();
    let kspan = span_of(key, file);
    match value.get_ref() {
        DeValue::Array(arr)
            if arr.iter().all(|v| matches!(v.get_ref(), DeValue::Table(_))) && !arr.is_empty() =>
        {
            // Each `[[node]]` is its own statement, located at its own header (the key's
            // span is the first header's only).
            for v in arr.iter() {
                push(out, statement(&kw, span_of(v, file), v, file, diags));
            }
        }
        // `[node."a.example.com"]`: a table of tables keyed by name.
        DeValue::Table(t)
            if top
                && kw == "node"
                && !t.is_empty()
                && t.iter()
                    .all(|(_, v)| matches!(v.get_ref(), DeValue::Table(_))) =>
        {
            for (name, v) in t.iter() {
                let mut s = statement(&kw, span_of(v, file), v, file, diags);
                s.args.insert(
                    0,
                    Arg {
                        text: name.get_ref().to_string(),
                        quoted: true,
                        span: span_of(name, file),
                    },
                );
                push(out, s);
            }
        }
        _ => push(out, statement(&kw, kspan, value, file, diags)),
    }
}

fn push(out: &mut Vec<Item>, s: Statement) {
    if !s.keyword.is_empty() {
        out.push(Item::Statement(s));
    }
}

fn statement(
    kw: &str,
    kspan: Span,
    value: &Spanned<DeValue<'_>>,
    file: FileId,
    diags: &mut Vec<Diagnostic>,
) -> Statement {
    let vspan = span_of(value, file);
    let mut s = Statement {
        keyword: kw.to_string(),
        keyword_span: kspan,
        args: Vec::new(),
        block: None,
        span: kspan.to(vspan),
        trailing_comment: None,
    };
    match value.get_ref() {
        DeValue::Table(t) => {
            let lift = lifted_key(kw);
            let mut items = Vec::new();
            for (k, v) in t.iter() {
                if Some(k.get_ref().as_ref()) == lift {
                    if let Some(a) = scalar(v, file, diags) {
                        s.args.insert(0, a);
                    }
                    continue;
                }
                entry(k, v, file, diags, &mut items, false);
            }
            s.block = Some(Block {
                items,
                open: vspan,
                inline: false,
            });
        }
        DeValue::Array(arr) => {
            for v in arr.iter() {
                if let Some(a) = scalar(v, file, diags) {
                    s.args.push(a);
                }
            }
        }
        _ => match scalar(value, file, diags) {
            Some(a) => s.args.push(a),
            // Already reported; a statement without its value would only add an arity error.
            None => s.keyword = String::new(),
        },
    }
    s
}

fn scalar(v: &Spanned<DeValue<'_>>, file: FileId, diags: &mut Vec<Diagnostic>) -> Option<Arg> {
    let span = span_of(v, file);
    let (text, quoted) = match v.get_ref() {
        DeValue::String(s) => (s.to_string(), true),
        DeValue::Integer(i) => match u64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => (n.to_string(), false),
            Err(_) => (i.as_str().to_string(), false),
        },
        DeValue::Boolean(b) => ((if *b { "on" } else { "off" }).to_string(), false),
        DeValue::Float(_) | DeValue::Datetime(_) | DeValue::Array(_) | DeValue::Table(_) => {
            let what = match v.get_ref() {
                DeValue::Float(_) => "a float",
                DeValue::Datetime(_) => "a date",
                DeValue::Array(_) => "a nested array",
                _ => "a table",
            };
            diags.push(
                Diagnostic::error(Code::TomlValue, format!("{what} is not a podnet value"))
                    .at(span, "unexpected value")
                    .help("use a string, an integer, true/false, or an array of those"),
            );
            return None;
        }
    };
    Some(Arg { text, quoted, span })
}
