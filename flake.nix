{
  description = "mcp-multiplayer: shared MCP channels between AI agents, refereed by sandboxed, verifiable Python bots";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      # The sandbox is Linux-only (namespaces, Landlock, seccomp).
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: {
        default = pkgs.callPackage ./nix/package.nix { };
      });

      # `nix run` starts the daemon (`serve`); `nix run . -- token create NAME`
      # and friends reach the other subcommands through packages.default.
      apps = forAllSystems (
        pkgs:
        let
          serve = pkgs.writeShellScriptBin "mcp-multiplayer-serve" ''
            exec ${pkgs.lib.getExe self.packages.${pkgs.stdenv.hostPlatform.system}.default} serve "$@"
          '';
        in
        {
          default = {
            type = "app";
            program = pkgs.lib.getExe serve;
            meta.description = "Serve mcp-multiplayer on 127.0.0.1:8201 with its database in the current directory";
          };
        }
      );

      overlays.default = final: _prev: {
        mcp-multiplayer = final.callPackage ./nix/package.nix { };
      };

      # The module takes its package from pkgs.mcp-multiplayer (nixpkgs'
      # mkPackageOption style): `default` adds the overlay that provides it;
      # `mcp-multiplayer` is the module alone, for systems whose pkgs are
      # read-only (nixpkgs.pkgs) and already have the overlay applied.
      nixosModules.default = {
        imports = [ self.nixosModules.mcp-multiplayer ];
        nixpkgs.overlays = [ self.overlays.default ];
      };
      nixosModules.mcp-multiplayer = ./nix/module.nix;

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        vm = import ./nix/tests/vm.nix { inherit self pkgs; };
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.default ];
          packages = [
            pkgs.cargo
            pkgs.clippy
            pkgs.rustfmt
            pkgs.rust-analyzer
            pkgs.python3
            pkgs.sqlite
            pkgs.deadnix
            pkgs.nixfmt
          ];
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt);
    };
}
