//! Diagnostics: one stable code per user-facing failure, labels on spans, a help line,
//! and renderings as miette reports (for people) and JSON (for CI annotations).

use std::fmt;
use std::sync::Arc;

use miette::{LabeledSpan, NamedSource};
use serde::Serialize;

use crate::span::{SourceMap, Span};

macro_rules! codes {
    ($($variant:ident => $code:literal, $doc:literal;)*) => {
        /// Every diagnostic podnet can report. The string form (`podnet::…`) is stable.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Code { $(#[doc = $doc] $variant,)* }

        impl Code {
            /// Every code, for documentation and for tests that require each to be covered.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The stable identifier, e.g. `podnet::host_gw_across_l2`.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// One sentence saying when the code is reported.
            pub fn description(self) -> &'static str {
                match self { $(Code::$variant => $doc,)* }
            }
        }
    };
}

codes! {
    Io => "podnet::io", "A file could not be read, or is not UTF-8.";
    NotAFile => "podnet::io::not_a_file", "An input (cluster file, include or lock file) is a directory, FIFO, device or socket, not a regular file.";
    InputTooLarge => "podnet::io::too_large", "An input file is larger than podnet reads (64 MiB).";
    UnterminatedString => "podnet::syntax::unterminated_string", "A quoted string has no closing quote on its line.";
    InvalidEscape => "podnet::syntax::invalid_escape", "A quoted string contains an unknown escape sequence.";
    UnclosedBlock => "podnet::syntax::unclosed_block", "A `{` has no matching `}`.";
    UnmatchedBrace => "podnet::syntax::unmatched_brace", "A `}` closes no block.";
    ExpectedKeyword => "podnet::syntax::expected_keyword", "A statement does not start with a keyword.";
    ExpectedEnd => "podnet::syntax::expected_end", "Something follows a block on the same statement.";
    TooDeep => "podnet::syntax::too_deep", "Blocks are nested more deeply than podnet allows.";
    Toml => "podnet::syntax::toml", "The TOML file is not valid TOML.";
    TomlValue => "podnet::syntax::toml_value", "A TOML value has a type the schema does not give its key (a string where a boolean or integer belongs, or the reverse), or one podnet never uses (float, date, nested array).";
    UnknownKey => "podnet::unknown_key", "A keyword is not known in this block.";
    DuplicateKey => "podnet::duplicate_key", "A key is given twice in one block.";
    MissingKey => "podnet::missing_key", "A required key is missing.";
    Arity => "podnet::arity", "A key has the wrong number of arguments, or a block where none belongs.";
    InvalidValue => "podnet::invalid_value", "A value is not of the expected kind (number, on/off, one of a list).";
    NoCluster => "podnet::no_cluster", "The file has no `cluster` statement.";
    DuplicateCluster => "podnet::duplicate_cluster", "More than one `cluster` statement.";
    Misplaced => "podnet::misplaced", "A statement stands where it is not allowed (e.g. `cluster` in an included file).";
    IncludeNotFound => "podnet::include_not_found", "An `include` names a file that does not exist.";
    IncludeEmpty => "podnet::include_empty", "An `include` pattern matches no file (warning).";
    IncludeCycle => "podnet::include_cycle", "A file includes itself, directly or through others.";
    IncludeTwice => "podnet::include_twice", "A file is included more than once.";
    IncludeOutside => "podnet::include_outside", "An `include` leads outside the root file's directory tree (symlinks resolved); the file is not read.";
    InvalidCidr => "podnet::invalid_cidr", "An address or CIDR is malformed, or its prefix length is out of range.";
    HostBits => "podnet::host_bits", "A network CIDR has host bits set.";
    Ipv6Unsupported => "podnet::ipv6_unsupported", "An IPv6 address is used where podnet supports IPv4 only.";
    InvalidNodeAddress => "podnet::invalid_node_address", "A node address is the network or broadcast address of its segment.";
    SubnetLenInvalid => "podnet::subnet_len_invalid", "`subnet-len` is shorter than the pod CIDR's prefix or too long for pods.";
    SubnetOutsidePodCidr => "podnet::subnet_outside_pod_cidr", "A node subnet is not inside `pod-cidr`.";
    SubnetLenMismatch => "podnet::subnet_len_mismatch", "A node subnet's prefix length differs from `subnet-len`.";
    OverlappingSubnets => "podnet::overlapping_subnets", "Two node subnets overlap.";
    DuplicateNodeName => "podnet::duplicate_node_name", "Two nodes have the same name.";
    DuplicateNodeAddress => "podnet::duplicate_node_address", "Two nodes have the same underlay address.";
    PodCidrOverlapsService => "podnet::pod_cidr_overlaps_service", "`pod-cidr` overlaps `service-cidr`.";
    PodCidrOverlapsUnderlay => "podnet::pod_cidr_overlaps_underlay", "`pod-cidr` overlaps a node's underlay segment.";
    PodCidrTooSmall => "podnet::pod_cidr_too_small", "`pod-cidr` has fewer subnets of `subnet-len` than there are nodes.";
    HostGwAcrossL2 => "podnet::host_gw_across_l2", "host-gw is used with nodes on different L2 segments.";
    VniRange => "podnet::vni_range", "A VXLAN VNI is outside 1..16777215.";
    PortRange => "podnet::port_range", "A UDP port is outside 1..65535.";
    MtuTooSmall => "podnet::mtu_too_small", "An MTU is too small to carry pod traffic.";
    MtuTooLarge => "podnet::mtu_too_large", "The pod MTU does not fit in the underlay MTU after encapsulation.";
    ExceptContainsPodCidr => "podnet::except_contains_pod_cidr", "A `masquerade except` entry contains the whole pod CIDR.";
    InterfaceName => "podnet::interface_name", "An interface name is empty, longer than 15 bytes, starts with `-` or `.`, or has a character other than `A-Za-z0-9_.-`.";
    CniDir => "podnet::cni_dir", "`cni { dir }` is not an absolute, normalised directory podnet may write to (not `/`, nor under `/proc`, `/sys`, `/dev`, `/boot`).";
    CniFile => "podnet::cni_file", "`cni { file }` is not a plain `NAME.conflist` or `NAME.conf` file name.";
    RouteProtocolReserved => "podnet::route_protocol_reserved", "`route-protocol` is one the kernel or other tools use (0-4) or above 255.";
    VtepMacCollision => "podnet::vtep_mac_collision", "Two nodes derive the same VTEP MAC address.";
    InvalidMac => "podnet::invalid_mac", "A `vtep-mac` is malformed, multicast or all zero.";
    DuplicateVtepMac => "podnet::duplicate_vtep_mac", "Two nodes have the same VTEP MAC, at least one of them set with `vtep-mac`.";
    LockInvalid => "podnet::lock::invalid", "The lock file is malformed.";
    LockMismatch => "podnet::lock::mismatch", "The lock file belongs to another cluster or is outdated for this node.";
    Unallocated => "podnet::lock::unallocated", "A node has no subnet in the file nor in the lock file (`podnet lock` allocates one).";
    LockStale => "podnet::lock::stale", "The lock file has an entry for a node the cluster no longer has (warning: `podnet lock` frees it, `podnet lock --check` fails until then).";
    Exhausted => "podnet::lock::exhausted", "No free subnet is left in `pod-cidr` for a new node.";
    UnknownNode => "podnet::unknown_node", "A node name given on the command line is not in the cluster.";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    /// Only for a related location rendered as its own report (never a diagnostic's own).
    #[serde(skip)]
    Advice,
}

/// A span with the text shown under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

/// One problem found in the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    /// Where the problem is. `None` only for problems of no particular place (e.g. a CLI flag).
    pub primary: Option<Label>,
    /// Other places that explain it (the first definition of a duplicate, …).
    pub secondary: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            primary: None,
            secondary: Vec::new(),
            help: None,
        }
    }

    pub fn warning(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Self::error(code, message)
        }
    }

    /// Sets the primary label.
    pub fn at(mut self, span: Span, label: impl Into<String>) -> Self {
        self.primary = Some(Label {
            span,
            message: label.into(),
        });
        self
    }

    /// Adds a secondary label.
    pub fn also(mut self, span: Span, label: impl Into<String>) -> Self {
        self.secondary.push(Label {
            span,
            message: label.into(),
        });
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// A miette report with the source text attached; labels in other files become related
    /// reports so that every location is shown with its own file.
    pub fn to_report(&self, sources: &SourceMap) -> Report {
        let mut report = Report {
            code: self.code.as_str(),
            severity: self.severity,
            message: self.message.clone(),
            help: self.help.clone(),
            source: None,
            labels: Vec::new(),
            related: Vec::new(),
        };
        let home = self.primary.as_ref().map(|l| l.span.file);
        if let Some(p) = &self.primary {
            let f = sources.get(p.span.file);
            report.source = Some(
                NamedSource::new(f.path.display().to_string(), f.text.clone())
                    .with_language(lang(f.kind)),
            );
            report.labels.push(LabeledSpan::new_primary_with_span(
                Some(p.message.clone()),
                to_miette(p.span),
            ));
        }
        for l in &self.secondary {
            if Some(l.span.file) == home {
                report.labels.push(LabeledSpan::new_with_span(
                    Some(l.message.clone()),
                    to_miette(l.span),
                ));
            } else {
                let f = sources.get(l.span.file);
                // Advice, not the diagnostic's own severity: a related location is neither a
                // second error nor a warning (miette prints the severity of each related report).
                report.related.push(Report {
                    code: self.code.as_str(),
                    severity: Severity::Advice,
                    message: format!("see also {}", f.path.display()),
                    help: None,
                    source: Some(NamedSource::new(
                        f.path.display().to_string(),
                        f.text.clone(),
                    )),
                    labels: vec![LabeledSpan::new_with_span(
                        Some(l.message.clone()),
                        to_miette(l.span),
                    )],
                    related: Vec::new(),
                });
            }
        }
        report
    }

    /// The JSON form used by `podnet check --format json` and by the golden tests.
    pub fn to_json(&self, sources: &SourceMap) -> JsonDiagnostic {
        let loc = |l: &Label| {
            let f = sources.get(l.span.file);
            let (line, column) = f.line_col(l.span.start);
            let (end_line, end_column) = f.line_col(l.span.end);
            JsonLocation {
                file: f.path.display().to_string().replace('\\', "/"),
                line,
                column,
                end_line,
                end_column,
                label: l.message.clone(),
            }
        };
        JsonDiagnostic {
            code: self.code.as_str(),
            severity: self.severity,
            message: self.message.clone(),
            location: self.primary.as_ref().map(loc),
            related: self.secondary.iter().map(loc).collect(),
            help: self.help.clone(),
        }
    }
}

fn lang(kind: crate::span::SourceKind) -> &'static str {
    match kind {
        crate::span::SourceKind::Podnet => "podnet",
        crate::span::SourceKind::Toml => "toml",
    }
}

fn to_miette(span: Span) -> miette::SourceSpan {
    (span.start as usize, span.len()).into()
}

/// A location in the JSON rendering (1-based line and column).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct JsonLocation {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub label: String,
}

/// A diagnostic as JSON: file, line, column, code, message (and the rest).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct JsonDiagnostic {
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub location: Option<JsonLocation>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<JsonLocation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

/// A diagnostic ready for a miette handler.
#[derive(Debug)]
pub struct Report {
    code: &'static str,
    severity: Severity,
    message: String,
    help: Option<String>,
    source: Option<NamedSource<Arc<str>>>,
    labels: Vec<LabeledSpan>,
    related: Vec<Report>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Report {}

impl miette::Diagnostic for Report {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
            Severity::Advice => miette::Severity::Advice,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display + 'a>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.iter().cloned()))
        }
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        if self.related.is_empty() {
            None
        } else {
            Some(Box::new(
                self.related.iter().map(|r| r as &dyn miette::Diagnostic),
            ))
        }
    }
}

/// Sorts diagnostics by file and position (stable order for output and golden tests).
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by_key(|d| {
        d.primary
            .as_ref()
            .map(|l| (l.span.file, l.span.start, l.span.end))
    });
}
