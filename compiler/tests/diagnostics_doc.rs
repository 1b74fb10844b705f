//! Keeps the code list in `docs/diagnostics.md` equal to the compiler's table of diagnostic
//! codes (`Code::ALL` with each description). `PODNET_BLESS=1` rewrites the list.

use std::path::{Path, PathBuf};

use podnet_compiler::Code;

const BEGIN: &str = "<!-- BEGIN CODES -->\n";
const END: &str = "<!-- END CODES -->";

fn page_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/diagnostics.md")
}

fn list() -> String {
    let mut s = String::from("| code | reported when |\n|---|---|\n");
    for c in Code::ALL {
        s.push_str(&format!(
            "| `{}` | {} |\n",
            c.as_str(),
            c.description().replace('|', "\\|")
        ));
    }
    s
}

#[test]
fn the_code_list_is_the_compilers() {
    let path = page_path();
    let page = std::fs::read_to_string(&path).expect("docs/diagnostics.md");
    let start = page.find(BEGIN).expect("BEGIN CODES marker") + BEGIN.len();
    let end = page.find(END).expect("END CODES marker");
    let want = list();
    if std::env::var_os("PODNET_BLESS").is_some() {
        let new = format!("{}{want}{}", &page[..start], &page[end..]);
        std::fs::write(&path, new).expect("write docs/diagnostics.md");
        return;
    }
    assert_eq!(
        &page[start..end],
        want,
        "docs/diagnostics.md is out of date: run PODNET_BLESS=1 cargo test -p podnet-compiler --test diagnostics_doc"
    );
}
