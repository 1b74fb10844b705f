//! The generic syntax tree shared by both surface forms: statements with arguments and blocks.
//!
//! Both the podnet language and TOML parse into this tree; lowering into the typed model
//! happens in `lower`, so every semantic diagnostic is the same whichever form a file uses.

use crate::span::Span;

/// One argument of a statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arg {
    /// The argument's value: a bare word as written, or a quoted string unescaped.
    pub text: String,
    pub quoted: bool,
    pub span: Span,
}

/// `keyword arg… [{ items… }]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub keyword: String,
    pub keyword_span: Span,
    pub args: Vec<Arg>,
    pub block: Option<Block>,
    /// From the keyword to the end of the last argument or the closing brace.
    pub span: Span,
    /// A `# comment` on the same line, after the statement (kept by `fmt`).
    pub trailing_comment: Option<String>,
}

/// A `{ … }` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub items: Vec<Item>,
    /// The `{` token.
    pub open: Span,
    /// Whether `{` and `}` stood on one line (fmt keeps such blocks on one line).
    pub inline: bool,
}

/// What a file or block contains, in order. Comments and blank lines exist for `fmt` only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Statement(Statement),
    /// A comment on a line of its own (text without the leading `#`).
    Comment(String),
    /// One or more empty lines between items.
    Blank,
}

impl Block {
    pub fn statements(&self) -> impl Iterator<Item = &Statement> {
        statements(&self.items)
    }
}

/// The statements among `items`, skipping comments and blank lines.
pub fn statements(items: &[Item]) -> impl Iterator<Item = &Statement> {
    items.iter().filter_map(|i| match i {
        Item::Statement(s) => Some(s),
        _ => None,
    })
}
