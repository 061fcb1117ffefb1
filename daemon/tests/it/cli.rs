//! The command line for bot authors: `bot check` and `bot run` go through
//! the real sandbox.

use crate::util::*;
use std::process::Command;

fn bot(args: &[&str], file: &std::path::Path) -> (i32, String) {
    let out = Command::new(daemon_bin())
        .arg("bot")
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn bot_check_names_the_refused_line_and_passes_a_builtin() {
    let dir = TempDir::new("cli-check");
    let bad = dir.path().join("bad.py");
    std::fs::write(
        &bad,
        "class B:\n    def on_message(self, msg):\n        import subprocess\n",
    )
    .unwrap();
    let (code, out) = bot(&["check"], &bad);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("refused") && out.contains("line 3") && out.contains("subprocess"),
        "{out}"
    );

    let guess = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bots/guess.py");
    let (code, out) = bot(&["check"], &guess);
    assert_eq!(code, 0, "{out}");
    let bytes = std::fs::read(&guess).unwrap();
    let want = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
    );
    assert!(
        out.contains(&want),
        "bot check prints the hash of the exact bytes: {out}"
    );
}

#[test]
fn bot_run_plays_hooks_in_the_sandbox_and_threads_state() {
    let dir = TempDir::new("cli-run");
    let f = dir.path().join("count.py");
    std::fs::write(
        &f,
        "class Count:\n    def __init__(self, ctx, params):\n        self.ctx = ctx\n    def on_message(self, msg):\n        s = self.ctx.get_state()\n        s['n'] = s.get('n', 0) + 1\n        self.ctx.set_state(s)\n        self.ctx.post('count', {'n': s['n'], 'from': msg['sender']})\n",
    )
    .unwrap();
    let out = Command::new(daemon_bin())
        .args(["bot", "run"])
        .arg(&f)
        .args(["--message", "hi", "--message", "bob: hello"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(r#"post: count {"from":"alice","n":1}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"post: count {"from":"bob","n":2}"#),
        "{text}"
    );
    assert!(text.contains(r#"state: {"n":2}"#), "{text}");
}
