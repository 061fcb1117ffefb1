# The flake's NixOS module, evaluated by the real nixpkgs module system (the
# flake's locked nixpkgs input) in one small NixOS system per scenario.
# nix/ci/nix-eval.sh runs it with `nix eval --json --impure`; the packaging
# step checks the results (nix/ci/check-module.py).
#
#   flakes: { NAME = "/path/to/a/copy/of/the/repository"; ... } (the first,
#           `repo`, is the real one; others are deliberately broken copies)
#   only:   null for every scenario that must evaluate, with its results; or
#           the name of one scenario in `failing`, which must throw (the
#           caller checks the message).
{
  flakes,
  only ? null,
}:
let
  flakeOf = path: builtins.getFlake "path:${path}";
  inherit (flakeOf flakes.repo) inputs;
  inherit (inputs.nixpkgs) lib;

  # A container system: no boot loader or file systems to declare.
  base = {
    boot.isContainer = true;
    system.stateVersion = lib.trivial.release;
    services.mcp-multiplayer.enable = true;
  };

  evaluate =
    flake: config:
    let
      nixos = lib.nixosSystem {
        system = "x86_64-linux";
        modules = [
          flake.nixosModules.default
          base
          config
        ];
      };
      c = nixos.config;
      failed = map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);
    in
    if failed != [ ] then
      throw "Failed assertions:\n- ${lib.concatStringsSep "\n- " failed}"
    else
      {
        unit = c.systemd.units."mcp-multiplayer.service".text;
        settings = lib.filterAttrsRecursive (_: v: v != null) c.services.mcp-multiplayer.settings;
        inherit (c.services.mcp-multiplayer) openFirewall;
        firewallPorts = c.networking.firewall.allowedTCPPorts;
        tmpfiles = c.systemd.tmpfiles.settings.mcp-multiplayer or { };
        user = {
          inherit (c.users.users.mcp-multiplayer)
            name
            isSystemUser
            home
            group
            ;
        };
        warnings = lib.filter (lib.hasInfix "mcp-multiplayer") c.warnings;
      };

  # Scenarios that must evaluate: NAME = { flake; config; }.
  passing = {
    # What the VM test and docs/operations.md configure.
    default = {
      flake = "repo";
      config = {
        services.mcp-multiplayer = {
          passphraseFile = "/run/keys/mcp-multiplayer-passphrase";
          settings.public_url = "https://mcp.example.com";
          settings.log_format = "json";
        };
      };
    };
    # The firewall opens the port the daemon listens on.
    firewall = {
      flake = "repo";
      config.services.mcp-multiplayer = {
        settings.listen = "0.0.0.0:9000";
        openFirewall = true;
      };
    };
    firewall-ipv6 = {
      flake = "repo";
      config.services.mcp-multiplayer = {
        settings.listen = "[::]:9443";
        openFirewall = true;
      };
    };
    # The options that were renamed into settings still work (with a warning).
    renamed = {
      flake = "repo";
      config.services.mcp-multiplayer = {
        listen = "0.0.0.0:9001";
        publicUrl = "https://old.example.com";
        openFirewall = true;
      };
    };
    # The state directory the daemon uses is the one the unit makes writable.
    state-dir-outside = {
      flake = "repo";
      config.services.mcp-multiplayer.settings.state_dir = "/srv/mcp";
    };
    state-dir-below-var-lib = {
      flake = "repo";
      config.services.mcp-multiplayer.settings.state_dir = "/var/lib/mcp/data";
    };
    # A replacement package made from the project's keeps what the module needs.
    package-override = {
      flake = "repo";
      config =
        { pkgs, ... }:
        {
          services.mcp-multiplayer.package = pkgs.mcp-multiplayer.overrideAttrs {
            pname = "mcp-multiplayer-patched";
          };
        };
    };
    # A foreign package is fine once the module needs nothing from it.
    package-foreign-with-python = {
      flake = "repo";
      config =
        { pkgs, ... }:
        {
          services.mcp-multiplayer.package = pkgs.hello;
          services.mcp-multiplayer.settings.bots = {
            python = "${pkgs.python3}/bin/python3";
            python_path = [ ];
          };
        };
    };
    # The two settings bugs, each put back into a copy of the module: the
    # checks on `firewall` and `state-dir-outside` must fail on these.
    broken-firewall = {
      flake = "broken-firewall";
      inherit (passing.firewall) config;
    };
    broken-state-dir = {
      flake = "broken-state-dir";
      inherit (passing.state-dir-outside) config;
    };
  };

  # Scenarios that must not evaluate (nix/ci/nix-eval.sh checks each message).
  failing = {
    passphrase-in-store.services.mcp-multiplayer.passphraseFile = "${builtins.storeDir}/aaaa-passphrase";
    unknown-option.services.mcp-multiplayer.lsiten = "127.0.0.1:1";
    wrong-type.services.mcp-multiplayer.openFirewall = "yes";
    listen-hostname.services.mcp-multiplayer.settings.listen = "localhost:8201";
    package-without-passthru =
      { pkgs, ... }:
      {
        services.mcp-multiplayer.package = pkgs.hello;
      };
  };
in
if only == null then
  lib.mapAttrs (_: s: evaluate (flakeOf flakes.${s.flake}) s.config) (
    lib.filterAttrs (_: s: flakes ? ${s.flake}) passing
  )
else
  builtins.deepSeq (evaluate (flakeOf flakes.repo) failing.${only}) "should not evaluate"
