//! Help lines in the syntax of the file they are about: `key value` in the podnet language,
//! `key = value` in TOML (strings quoted, `on`/`off` as `true`/`false`).

use crate::span::SourceKind;
use crate::syntax::Arg;

/// An example value, written the way each form spells it.
#[derive(Clone, Copy, Debug)]
pub enum Val<'a> {
    /// A string in TOML, a bare word in the podnet language (CIDRs, names, modes).
    Str(&'a str),
    /// A number: bare in both forms.
    Int(&'a str),
    /// `on`/`off`, or `true`/`false` in TOML.
    Bool(bool),
    /// A placeholder such as `CIDR`: bare in podnet, quoted in TOML.
    Hole(&'a str),
    /// A word whose TOML type lowering checks itself (`mtu auto` or a number): a string.
    Any(&'a str),
}

impl Val<'_> {
    fn render(self, kind: SourceKind) -> String {
        match (self, kind) {
            (Val::Str(s) | Val::Hole(s) | Val::Any(s), SourceKind::Podnet) => s.to_string(),
            (Val::Str(s) | Val::Hole(s) | Val::Any(s), SourceKind::Toml) => quote(s),
            (Val::Int(s), _) => s.to_string(),
            (Val::Bool(b), SourceKind::Podnet) => (if b { "on" } else { "off" }).to_string(),
            (Val::Bool(b), SourceKind::Toml) => b.to_string(),
        }
    }
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `` `key value` `` or `` `key = value` ``.
pub fn setting(kind: SourceKind, key: &str, value: Val<'_>) -> String {
    match kind {
        SourceKind::Podnet => format!("`{key} {}`", value.render(kind)),
        SourceKind::Toml => format!("`{key} = {}`", value.render(kind)),
    }
}

/// `` `key on` or `key off` `` / `` `key = true` or `key = false` ``.
pub fn switch(kind: SourceKind, key: &str) -> String {
    format!(
        "{} or {}",
        setting(kind, key, Val::Bool(true)),
        setting(kind, key, Val::Bool(false))
    )
}

/// The user's own arguments under another key, in the file's syntax (for "write … instead").
pub fn with_args(kind: SourceKind, key: &str, args: &[Arg]) -> String {
    let one = |a: &Arg| match kind {
        SourceKind::Podnet if a.quoted => quote(&a.text),
        SourceKind::Podnet => a.text.clone(),
        SourceKind::Toml if a.quoted => quote(&a.text),
        SourceKind::Toml if a.text == "on" => "true".to_string(),
        SourceKind::Toml if a.text == "off" => "false".to_string(),
        SourceKind::Toml => a.text.clone(),
    };
    let vals: Vec<String> = args.iter().map(one).collect();
    match (kind, vals.len()) {
        (_, 0) => format!("`{key}`"),
        (SourceKind::Podnet, _) => format!("`{key} {}`", vals.join(" ")),
        (SourceKind::Toml, 1) => format!("`{key} = {}`", vals[0]),
        (SourceKind::Toml, _) => format!("`{key} = [{}]`", vals.join(", ")),
    }
}

/// A block with one setting: `` `cni { bridge cni0 }` `` / `` `[cluster.cni]` with `bridge = "cni0"` ``.
pub fn block(
    kind: SourceKind,
    path: &str,
    mode: Option<&str>,
    key: &str,
    value: Val<'_>,
) -> String {
    let last = path.rsplit('.').next().unwrap_or(path);
    match kind {
        SourceKind::Podnet => {
            let head = mode.map_or_else(|| last.to_string(), |m| format!("{last} {m}"));
            let inner = setting(kind, key, value);
            format!("`{head} {{ {} }}`", inner.trim_matches('`'))
        }
        SourceKind::Toml => {
            let mut s = format!("`[{path}]` with ");
            if let Some(m) = mode {
                s.push_str(&format!("{} and ", setting(kind, "mode", Val::Str(m))));
            }
            s.push_str(&setting(kind, key, value));
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms() {
        assert_eq!(
            setting(SourceKind::Podnet, "hairpin", Val::Bool(true)),
            "`hairpin on`"
        );
        assert_eq!(
            setting(SourceKind::Toml, "hairpin", Val::Bool(true)),
            "`hairpin = true`"
        );
        assert_eq!(
            setting(SourceKind::Toml, "pod-cidr", Val::Str("10.244.0.0/16")),
            "`pod-cidr = \"10.244.0.0/16\"`"
        );
        assert_eq!(setting(SourceKind::Toml, "vni", Val::Int("1")), "`vni = 1`");
        assert_eq!(
            block(
                SourceKind::Podnet,
                "cluster.backend",
                Some("vxlan"),
                "direct-routing",
                Val::Bool(true)
            ),
            "`backend vxlan { direct-routing on }`"
        );
        assert_eq!(
            block(
                SourceKind::Toml,
                "cluster.backend",
                Some("vxlan"),
                "direct-routing",
                Val::Bool(true)
            ),
            "`[cluster.backend]` with `mode = \"vxlan\"` and `direct-routing = true`"
        );
    }
}
