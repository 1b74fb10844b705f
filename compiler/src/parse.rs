//! Parser for the podnet language: a nom lexer, then a recovering recursive-descent pass
//! that builds the generic [`syntax`](crate::syntax) tree and reports every syntax error.

use nom::branch::alt;
use nom::bytes::complete::{take_till, take_while, take_while1};
use nom::character::complete::char;
use nom::combinator::{map, recognize};
use nom::sequence::preceded;
use nom::{IResult, Parser};

use crate::diag::{Code, Diagnostic};
use crate::span::{FileId, Span};
use crate::syntax::{Arg, Block, Item, Statement};

/// Deepest block nesting accepted; real files use three levels.
pub const MAX_DEPTH: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    Str(String),
    LBrace,
    RBrace,
    Semi,
    Newline,
    Comment(String),
    Eof,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    start: usize,
    end: usize,
}

fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, '{' | '}' | ';' | '"' | '#')
}

fn blank(i: &str) -> IResult<&str, &str> {
    take_while(|c: char| c != '\n' && c.is_whitespace()).parse(i)
}

/// Tokens that need no error handling: punctuation, newlines, comments, words.
fn simple_token(i: &str) -> IResult<&str, Tok> {
    alt((
        map(char('{'), |_| Tok::LBrace),
        map(char('}'), |_| Tok::RBrace),
        map(char(';'), |_| Tok::Semi),
        map(char('\n'), |_| Tok::Newline),
        map(preceded(char('#'), take_till(|c| c == '\n')), |c: &str| {
            Tok::Comment(c.trim_end().to_string())
        }),
        map(recognize(take_while1(is_word_char)), |w: &str| {
            Tok::Word(w.to_string())
        }),
    ))
    .parse(i)
}

/// Lexes a quoted string starting at `i` (which begins with `"`). Returns the value, the
/// bytes consumed, and any diagnostics (unknown escapes, missing closing quote).
fn quoted(i: &str, base: usize, file: FileId, diags: &mut Vec<Diagnostic>) -> (String, usize) {
    let mut out = String::new();
    let mut chars = i.char_indices().skip(1);
    while let Some((off, c)) = chars.next() {
        match c {
            '"' => return (out, off + 1),
            '\n' => break,
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((eoff, e)) if e != '\n' => {
                    diags.push(
                        Diagnostic::error(Code::InvalidEscape, format!("unknown escape `\\{e}`"))
                            .at(
                                Span::new(file, base + off, base + eoff + e.len_utf8()),
                                "not a known escape",
                            )
                            .help(r#"the escapes are \" \\ \n \t; write `\\` for a backslash"#),
                    );
                    out.push(e);
                }
                _ => break,
            },
            c => out.push(c),
        }
    }
    let end = i.find('\n').unwrap_or(i.len());
    diags.push(
        Diagnostic::error(Code::UnterminatedString, "unterminated string")
            .at(
                Span::new(file, base, base + end),
                "this string has no closing `\"`",
            )
            .help("add a `\"` before the end of the line"),
    );
    (out, end)
}

fn lex(text: &str, file: FileId, diags: &mut Vec<Diagnostic>) -> Vec<Token> {
    let mut toks = Vec::with_capacity(text.len() / 4);
    let mut rest = text;
    loop {
        if let Ok((r, _)) = blank(rest) {
            rest = r;
        }
        let start = text.len() - rest.len();
        if rest.is_empty() {
            toks.push(Token {
                tok: Tok::Eof,
                start,
                end: start,
            });
            return toks;
        }
        if rest.starts_with('"') {
            let (value, used) = quoted(rest, start, file, diags);
            toks.push(Token {
                tok: Tok::Str(value),
                start,
                end: start + used,
            });
            rest = &rest[used..];
            continue;
        }
        match simple_token(rest) {
            Ok((r, tok)) => {
                toks.push(Token {
                    tok,
                    start,
                    end: text.len() - r.len(),
                });
                rest = r;
            }
            // Unreachable in practice: every character starts some token. Skip one
            // character rather than loop forever.
            Err(_) => {
                let n = rest.chars().next().map_or(1, char::len_utf8);
                rest = &rest[n..];
            }
        }
    }
}

/// Parses one file of the podnet language into items, pushing every syntax error into
/// `diags`. Never panics; a broken statement is skipped up to the end of its line.
pub fn parse(text: &str, file: FileId, diags: &mut Vec<Diagnostic>) -> Vec<Item> {
    let first = diags.len();
    let items = parse_items(text, file, diags);
    crate::diag::sort(&mut diags[first..]);
    items
}

fn parse_items(text: &str, file: FileId, diags: &mut Vec<Diagnostic>) -> Vec<Item> {
    let toks = lex(text, file, diags);
    let mut p = P {
        toks: &toks,
        pos: 0,
        file,
        text,
        diags,
    };
    let (items, _) = p.items(None, 0);
    items
}

struct P<'a> {
    toks: &'a [Token],
    pos: usize,
    file: FileId,
    text: &'a str,
    diags: &'a mut Vec<Diagnostic>,
}

impl P<'_> {
    fn peek(&self) -> &Token {
        // The token list always ends with Eof and `pos` never moves past it.
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn bump(&mut self) {
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
    }

    fn span(&self, t: &Token) -> Span {
        Span::new(self.file, t.start, t.end)
    }

    /// Items until the closing `}` of a block opened at `open` (or end of file at top level).
    /// Returns the items and the span of the closing brace, if any.
    fn items(&mut self, open: Option<Span>, depth: usize) -> (Vec<Item>, Option<Span>) {
        let mut items: Vec<Item> = Vec::new();
        let mut newlines = 0usize;
        loop {
            let t = self.peek().clone();
            match &t.tok {
                Tok::Newline => {
                    newlines += 1;
                    if newlines == 2 && !items.is_empty() && items.last() != Some(&Item::Blank) {
                        items.push(Item::Blank);
                    }
                    self.bump();
                    continue;
                }
                Tok::Semi => self.bump(),
                Tok::Comment(c) => {
                    items.push(Item::Comment(c.clone()));
                    self.bump();
                }
                Tok::RBrace => {
                    if open.is_some() {
                        self.bump();
                        trim_blank(&mut items);
                        return (items, Some(self.span(&t)));
                    }
                    self.diags.push(
                        Diagnostic::error(Code::UnmatchedBrace, "unmatched `}`")
                            .at(self.span(&t), "this closes no block")
                            .help("remove it, or add the `{` it was meant to close"),
                    );
                    self.bump();
                }
                Tok::Eof => {
                    if let Some(open) = open {
                        self.diags.push(
                            Diagnostic::error(Code::UnclosedBlock, "unclosed block")
                                .at(open, "this `{` is never closed")
                                .help("add a `}` at the end of the block"),
                        );
                    }
                    trim_blank(&mut items);
                    return (items, None);
                }
                Tok::Word(_) => {
                    if let Some(s) = self.statement(depth) {
                        items.push(Item::Statement(s));
                    }
                }
                Tok::Str(_) | Tok::LBrace => {
                    let help = if t.tok == Tok::LBrace {
                        "put `{` on the same line as the keyword it belongs to"
                    } else {
                        "a statement starts with a bare keyword such as `node` or `address`"
                    };
                    self.diags.push(
                        Diagnostic::error(Code::ExpectedKeyword, "expected a keyword")
                            .at(self.span(&t), "a statement cannot start here")
                            .help(help),
                    );
                    self.skip_statement();
                }
            }
            newlines = 0;
        }
    }

    fn statement(&mut self, depth: usize) -> Option<Statement> {
        let kw = self.peek().clone();
        let Tok::Word(keyword) = kw.tok else {
            return None;
        };
        self.bump();
        let keyword_span = Span::new(self.file, kw.start, kw.end);
        let mut end = kw.end;
        let mut args = Vec::new();
        loop {
            let t = self.peek().clone();
            match t.tok {
                Tok::Word(w) => args.push(Arg {
                    text: w,
                    quoted: false,
                    span: Span::new(self.file, t.start, t.end),
                }),
                Tok::Str(s) => args.push(Arg {
                    text: s,
                    quoted: true,
                    span: Span::new(self.file, t.start, t.end),
                }),
                _ => break,
            }
            end = t.end;
            self.bump();
        }
        let mut block = None;
        let t = self.peek().clone();
        if t.tok == Tok::LBrace {
            let open = self.span(&t);
            self.bump();
            if depth + 1 > MAX_DEPTH {
                self.diags.push(
                    Diagnostic::error(Code::TooDeep, "blocks nested too deeply")
                        .at(open, format!("more than {MAX_DEPTH} levels deep"))
                        .help("podnet files need at most three levels of blocks"),
                );
                self.skip_balanced();
                return None;
            }
            let (items, close) = self.items(Some(open), depth + 1);
            let close_at = close.map_or(self.text.len(), |c| c.start as usize);
            end = close.map_or(self.text.len(), |c| c.end as usize);
            let inline = !self.text[open.start as usize..close_at].contains('\n');
            block = Some(Block {
                items,
                open,
                inline,
            });
        }
        let mut stmt = Statement {
            keyword,
            keyword_span,
            args,
            block,
            span: Span::new(self.file, kw.start, end),
            trailing_comment: None,
        };
        // The statement's end: `;`, a newline, a comment, `}` or the end of the file.
        let t = self.peek().clone();
        match t.tok {
            Tok::Semi => {
                self.bump();
                if let Tok::Comment(c) = &self.peek().tok {
                    stmt.trailing_comment = Some(c.clone());
                    self.bump();
                }
            }
            Tok::Comment(c) => {
                stmt.trailing_comment = Some(c);
                self.bump();
            }
            Tok::Newline | Tok::RBrace | Tok::Eof => {}
            Tok::Word(_) | Tok::Str(_) | Tok::LBrace => {
                self.diags.push(
                    Diagnostic::error(Code::ExpectedEnd, "expected the end of the statement")
                        .at(self.span(&t), "unexpected after the block")
                        .help("end the statement with a newline or `;` before this"),
                );
                self.skip_statement();
            }
        }
        Some(stmt)
    }

    /// Skips to the end of the current statement (newline, `;`, or an unmatched `}` which
    /// is left for the caller), stepping over balanced blocks.
    fn skip_statement(&mut self) {
        loop {
            match self.peek().tok {
                Tok::Newline | Tok::Semi => {
                    self.bump();
                    return;
                }
                Tok::RBrace | Tok::Eof => return,
                Tok::LBrace => {
                    self.bump();
                    self.skip_balanced();
                }
                _ => self.bump(),
            }
        }
    }

    /// Skips past the `}` matching an already consumed `{`.
    fn skip_balanced(&mut self) {
        let mut depth = 1usize;
        loop {
            match self.peek().tok {
                Tok::LBrace => depth += 1,
                Tok::RBrace => {
                    depth -= 1;
                    if depth == 0 {
                        self.bump();
                        return;
                    }
                }
                Tok::Eof => return,
                _ => {}
            }
            self.bump();
        }
    }
}

fn trim_blank(items: &mut Vec<Item>) {
    while items.last() == Some(&Item::Blank) {
        items.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> (Vec<Item>, Vec<Diagnostic>) {
        let mut d = Vec::new();
        let items = parse(text, FileId(0), &mut d);
        (items, d)
    }

    #[test]
    fn statements_args_blocks_and_comments() {
        let (items, d) =
            p("# head\nnode a.b-c { address 10.0.0.1/24; subnet \"x\\\"y\" } # tail\n\n\nx 1\n");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(items.len(), 4);
        assert_eq!(items[0], Item::Comment(" head".into()));
        let Item::Statement(s) = &items[1] else {
            panic!("not a statement")
        };
        assert_eq!(s.keyword, "node");
        assert_eq!(s.args[0].text, "a.b-c");
        assert_eq!(s.trailing_comment.as_deref(), Some(" tail"));
        let b = s.block.as_ref().map(|b| b.statements().count());
        assert_eq!(b, Some(2));
        assert!(s.block.as_ref().is_some_and(|b| b.inline));
        let sub: Vec<_> = s.block.iter().flat_map(|b| b.statements()).collect();
        assert_eq!(sub[1].args[0].text, "x\"y");
        assert!(sub[1].args[0].quoted);
        assert_eq!(items[2], Item::Blank);
    }

    #[test]
    fn every_error_is_reported_and_parsing_continues() {
        let (items, d) = p("a \"open\n}\nb { c \"\\q\" }\n{ x }\nd {\n");
        let codes: Vec<_> = d.iter().map(|d| d.code).collect();
        assert_eq!(
            codes,
            vec![
                Code::UnterminatedString,
                Code::UnmatchedBrace,
                Code::InvalidEscape,
                Code::ExpectedKeyword,
                Code::UnclosedBlock
            ]
        );
        let kws: Vec<_> = crate::syntax::statements(&items)
            .map(|s| s.keyword.as_str())
            .collect();
        assert_eq!(kws, vec!["a", "b", "d"]);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let text = "a {".repeat(100_000);
        let (_, d) = p(&text);
        assert!(d.iter().any(|d| d.code == Code::TooDeep));
    }
}
