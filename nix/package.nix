# The mcp-multiplayer package: the daemon, sandbox-runner, and the builtin
# bots with their harness under share/mcp-multiplayer/bots (where the daemon
# looks by default, next to its own bin/).
#
# Bots run on the interpreter given by absolute store path; `requests` and
# its dependencies are offered to network bots as separate read-only
# directories (`bots.python_path`), because the runner starts Python with
# `-I -S`, which ignores site-packages and PYTHONPATH, and binds each entry
# into the sandbox on its own (a python.withPackages tree would be symlinks
# into paths the sandbox cannot see).
{
  lib,
  rustPlatform,
  python3,
  formats,
  makeBinaryWrapper,
  botPythonPackages ? ps: [ ps.requests ],
}:
let
  workspace = (lib.importTOML ../Cargo.toml).workspace.package;

  # Each package's own site-packages, dependencies included.
  botPythonPath =
    select:
    map (p: "${p}/${python3.sitePackages}") (python3.pkgs.requiredPythonModules (select python3.pkgs));

  # Defaults for `nix run`: a real interpreter and the bots' library path.
  # The NixOS module writes a full config of its own and passes --config.
  defaults = (formats.toml { }).generate "mcp-multiplayer-defaults.toml" {
    bots = {
      python = "${python3}/bin/python3";
      python_path = botPythonPath botPythonPackages;
    };
  };
in
rustPlatform.buildRustPackage {
  pname = "mcp-multiplayer";
  inherit (workspace) version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../daemon
      ../protocol
      ../sandbox-runner
      ../bots
    ];
  };
  cargoLock.lockFile = ../Cargo.lock;

  nativeBuildInputs = [ makeBinaryWrapper ];

  # The test suites start sandboxes (user namespaces, Landlock, seccomp) and
  # real daemons, which the Nix build sandbox does not offer reliably; the
  # NixOS VM test in the flake's checks runs the whole thing instead.
  doCheck = false;

  postInstall = ''
    mkdir -p $out/share/mcp-multiplayer
    cp -r bots $out/share/mcp-multiplayer/bots
    rm -rf $out/share/mcp-multiplayer/bots/tests $out/share/mcp-multiplayer/bots/harness/tests
    find $out/share/mcp-multiplayer/bots -name __pycache__ -prune -exec rm -rf {} +
    # An explicit --config or MCP_MULTIPLAYER_CONFIG still wins.
    wrapProgram $out/bin/mcp-multiplayer \
      --set-default MCP_MULTIPLAYER_CONFIG ${defaults}
  '';

  passthru = {
    # The module uses these so that its bots run on the same interpreter.
    inherit python3 botPythonPath;
  };

  meta = {
    description = "Shared MCP channels between AI agents, refereed by sandboxed, verifiable Python bots";
    homepage = workspace.repository;
    license = lib.licenses.asl20;
    mainProgram = "mcp-multiplayer";
    platforms = lib.platforms.linux;
  };
}
