# A stand-in for the few nixpkgs packages and builders that nix/package.nix
# and nix/module.nix touch, for offline evaluation. Derivations are plain
# attribute sets with a made-up store path; nothing is built.
{ lib }:
let
  fakeDrv =
    name: attrs:
    {
      type = "derivation";
      inherit name;
      outPath = "${builtins.storeDir}/${builtins.substring 0 32 (builtins.hashString "sha256" name)}-${name}";
    }
    // attrs;

  pythonPackages = rec {
    certifi = fakeDrv "python3.12-certifi-2025.1.31" { deps = [ ]; };
    idna = fakeDrv "python3.12-idna-3.10" { deps = [ ]; };
    urllib3 = fakeDrv "python3.12-urllib3-2.3.0" { deps = [ ]; };
    charset-normalizer = fakeDrv "python3.12-charset-normalizer-3.4.1" { deps = [ ]; };
    requests = fakeDrv "python3.12-requests-2.32.3" {
      deps = [
        certifi
        idna
        urllib3
        charset-normalizer
      ];
    };
    # nixpkgs: the packages and everything they propagate, without repeats.
    requiredPythonModules =
      ps:
      let
        closure = builtins.concatLists (map (p: [ p ] ++ requiredPythonModules p.deps) ps);
      in
      builtins.foldl' (acc: p: if builtins.elem p acc then acc else acc ++ [ p ]) [ ] closure;
  };

  python3 = fakeDrv "python3-3.12.9" {
    sitePackages = "lib/python3.12/site-packages";
    pkgs = pythonPackages;
  };

  pkgs = {
    inherit lib python3;
    formats.toml =
      { }:
      {
        type = lib.types.attrsOf lib.types.anything;
        # The value is kept on the fake file so the checks can inspect it.
        generate = name: value: fakeDrv name { inherit value; };
      };
    makeBinaryWrapper = fakeDrv "make-binary-wrapper-hook" { };
    rustPlatform.buildRustPackage =
      attrs:
      fakeDrv "${attrs.pname}-${attrs.version}" (
        {
          inherit (attrs) meta postInstall;
          cargoLockFile = attrs.cargoLock.lockFile;
        }
        // attrs.passthru
      );
    callPackage =
      path: overrides:
      let
        f = import path;
        wanted = builtins.functionArgs f;
      in
      f (builtins.intersectAttrs wanted pkgs // overrides);
  };
in
pkgs
