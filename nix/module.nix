# NixOS module: `services.mcp-multiplayer.enable = true;`
#
# Renders `settings` to the daemon's TOML config, runs the daemon as a
# dedicated system user with the same hardening as
# systemd/mcp-multiplayer.service (the packaging tests compare the two key by
# key, and check that neither forbids a syscall or namespace the
# sandbox-runner needs), and hands the approval passphrase over as a systemd
# credential so that it never enters the Nix store.
#
# `settings` is the one source of truth for what the daemon reads: the
# firewall port comes from `settings.listen`, and the writable state
# directory (StateDirectory= below /var/lib, else ReadWritePaths= and a
# tmpfiles rule) from `settings.state_dir`.
#
# The package comes from `pkgs.mcp-multiplayer`, which the flake's overlay
# provides (the flake's nixosModules.default applies it).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.mcp-multiplayer;
  settingsFormat = pkgs.formats.toml { };
  inherit (lib)
    mkIf
    mkOption
    mkEnableOption
    mkPackageOption
    types
    ;

  # The daemon binds a socket address: IPv4:PORT or [IPv6]:PORT, no names.
  listenPattern = "(([0-9]{1,3}\\.){3}[0-9]{1,3}|\\[[0-9A-Fa-f:.]+(%[0-9A-Za-z]+)?]):[0-9]{1,5}";
  listenPort = lib.toInt (lib.last (lib.splitString ":" cfg.settings.listen));

  stateDir = cfg.settings.state_dir;
  # StateDirectory= can only name directories below /var/lib.
  stateDirManaged = lib.hasPrefix "/var/lib/" stateDir;

  # What the module takes from the package besides its binaries: the Python
  # bots run on, and the site-packages directories of the Python packages they
  # may import (nix/package.nix puts both in passthru).
  fromPackage =
    attr:
    cfg.package.${attr} or (throw ''
      services.mcp-multiplayer.package (${cfg.package.name or "?"}) has no passthru.${attr}.
      The module runs bots on the package's Python: use a package built by the
      project's nix/package.nix (pkgs.mcp-multiplayer, or its .override or
      .overrideAttrs, which keep passthru), or set both
      services.mcp-multiplayer.settings.bots.python and
      services.mcp-multiplayer.settings.bots.python_path yourself.
    '');

  credentials =
    lib.optional (cfg.passphraseFile != null) "passphrase:${cfg.passphraseFile}"
    ++ lib.optional (cfg.signingKeyFile != null) "signing-key:${cfg.signingKeyFile}";

  # TOML has no null: an unset optional key is left out.
  configFile = settingsFormat.generate "mcp-multiplayer.toml" (
    lib.filterAttrsRecursive (_: v: v != null) cfg.settings
  );

  # Public unicast ranges: IPv4 without 0/8, 10/8, 100.64/10, 127/8,
  # 169.254/16, 172.16/12, 192.168/16 and 224/3; IPv6 global unicast.
  # Same list as systemd/mcp-multiplayer.service.
  publicRanges = [
    "1.0.0.0/8"
    "2.0.0.0/7"
    "4.0.0.0/6"
    "8.0.0.0/7"
    "11.0.0.0/8"
    "12.0.0.0/6"
    "16.0.0.0/4"
    "32.0.0.0/3"
    "64.0.0.0/3"
    "96.0.0.0/6"
    "100.0.0.0/10"
    "100.128.0.0/9"
    "101.0.0.0/8"
    "102.0.0.0/7"
    "104.0.0.0/5"
    "112.0.0.0/5"
    "120.0.0.0/6"
    "124.0.0.0/7"
    "126.0.0.0/8"
    "128.0.0.0/3"
    "160.0.0.0/5"
    "168.0.0.0/8"
    "169.0.0.0/9"
    "169.128.0.0/10"
    "169.192.0.0/11"
    "169.224.0.0/12"
    "169.240.0.0/13"
    "169.248.0.0/14"
    "169.252.0.0/15"
    "169.255.0.0/16"
    "170.0.0.0/7"
    "172.0.0.0/12"
    "172.32.0.0/11"
    "172.64.0.0/10"
    "172.128.0.0/9"
    "173.0.0.0/8"
    "174.0.0.0/7"
    "176.0.0.0/4"
    "192.0.0.0/9"
    "192.128.0.0/11"
    "192.160.0.0/13"
    "192.169.0.0/16"
    "192.170.0.0/15"
    "192.172.0.0/14"
    "192.176.0.0/12"
    "192.192.0.0/10"
    "193.0.0.0/8"
    "194.0.0.0/7"
    "196.0.0.0/6"
    "200.0.0.0/5"
    "208.0.0.0/4"
    "2000::/3"
  ];

  # Why each of these is safe for the sandbox: see systemd/mcp-multiplayer.service.
  hardening = {
    CapabilityBoundingSet = "";
    AmbientCapabilities = "";
    NoNewPrivileges = true;
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    PrivateMounts = true;
    PrivateUsers = true;
    ProtectClock = true;
    ProtectHostname = false; # the runner sets the hostname in its own UTS namespace
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectProc = "invisible";
    ProcSubset = "pid";
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    RemoveIPC = true;
    RestrictAddressFamilies = [
      "AF_INET"
      "AF_INET6"
      "AF_NETLINK"
    ];
    RestrictNamespaces = "user mnt pid ipc uts net";
    SystemCallArchitectures = "native";
    SystemCallFilter = [
      "@system-service @mount landlock_create_ruleset landlock_add_rule landlock_restrict_self seccomp sethostname"
      "~@clock @cpu-emulation @module @obsolete @raw-io @reboot @resources @swap"
    ];
    SystemCallErrorNumber = "EPERM";
    IPAddressDeny = "any";
    IPAddressAllow = [ "localhost" ] ++ publicRanges;
    UMask = "0077";
  };
in
{
  imports = [
    (lib.mkRenamedOptionModule
      [ "services" "mcp-multiplayer" "listen" ]
      [ "services" "mcp-multiplayer" "settings" "listen" ]
    )
    (lib.mkRenamedOptionModule
      [ "services" "mcp-multiplayer" "publicUrl" ]
      [ "services" "mcp-multiplayer" "settings" "public_url" ]
    )
  ];

  options.services.mcp-multiplayer = {
    enable = mkEnableOption "mcp-multiplayer, shared MCP channels refereed by sandboxed bots";

    package = mkPackageOption pkgs "mcp-multiplayer" {
      extraDescription = ''
        It must carry `passthru.python3` and `passthru.botPythonPath`, as
        the project's nix/package.nix does, unless `settings.bots.python`
        and `settings.bots.python_path` are both set.
      '';
    };

    passphraseFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/secrets/mcp-multiplayer-passphrase";
      description = ''
        File holding the passphrase that approves new OAuth clients. Loaded
        with systemd's LoadCredential=, so it may be readable by root only.
        Setting it turns on passphrase approval. Must not be in the Nix store
        (the store is world-readable): give a path as a string.
      '';
    };

    signingKeyFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/secrets/mcp-multiplayer-signing-key.pem";
      description = ''
        Ed25519 private key (PKCS#8 PEM, `openssl genpkey -algorithm ed25519`)
        that signs transcript heads, loaded with systemd's LoadCredential= as
        the credential `signing-key`. Default null: the daemon generates one
        in its state directory on first start. Must not be in the Nix store.
        Replacing it rotates the key from the next start; the old public key
        stays listed (docs/transcripts.md).
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the port of `settings.listen` in the firewall (only useful off loopback).";
    };

    botPythonPackages = mkOption {
      type = types.functionTo (types.listOf types.package);
      default = ps: [ ps.requests ];
      defaultText = lib.literalExpression "ps: [ ps.requests ]";
      description = ''
        Python packages bots may import (network bots use `requests`). They
        still pass the bots' import allowlist; this only makes them present.
      '';
    };

    settings = mkOption {
      default = { };
      example = {
        listen = "0.0.0.0:8201";
        public_url = "https://mcp.example.com";
        log_format = "json";
        bots.max_parallel_hooks = 4;
      };
      description = ''
        The daemon's configuration, rendered to TOML: any key of
        systemd/config.toml in the source. The keys below are typed because
        the module derives other settings from them.
      '';
      type = types.submodule {
        freeformType = settingsFormat.type;
        options = {
          listen = mkOption {
            type = types.strMatching listenPattern;
            default = "127.0.0.1:8201";
            example = "[::]:8201";
            description = ''
              Socket address to bind (IPv4:PORT or [IPv6]:PORT). Keep it on
              loopback behind a TLS reverse proxy; off loopback the daemon
              requires passphrase approval. `openFirewall` opens its port.
            '';
          };
          state_dir = mkOption {
            type = types.strMatching "(/[^/]+)+";
            default = "/var/lib/mcp-multiplayer";
            description = ''
              Directory of the SQLite database: an absolute path as a string,
              without a trailing slash. Below /var/lib it is the unit's
              StateDirectory=; anywhere else tmpfiles creates it and
              ReadWritePaths= makes it writable (the rest of the file system
              is read-only to the service).
            '';
          };
          public_url = mkOption {
            type = types.nullOr types.str;
            default = null;
            example = "https://mcp.example.com";
            description = ''
              The origin clients use (no path). It becomes the OAuth issuer
              and an accepted Host/Origin. Required behind a reverse proxy.
            '';
          };
          bots = mkOption {
            default = { };
            description = "The `[bots]` table.";
            type = types.submodule {
              freeformType = settingsFormat.type;
              options = {
                python = mkOption {
                  type = types.str;
                  default = "${fromPackage "python3"}/bin/python3";
                  defaultText = lib.literalExpression ''"''${config.services.mcp-multiplayer.package.python3}/bin/python3"'';
                  description = "The interpreter bots run on, by store path (never a wrapper script).";
                };
                python_path = mkOption {
                  type = types.listOf types.str;
                  default = fromPackage "botPythonPath" cfg.botPythonPackages;
                  defaultText = lib.literalExpression "config.services.mcp-multiplayer.package.botPythonPath config.services.mcp-multiplayer.botPythonPackages";
                  description = "Read-only directories added to bots' sys.path: one per package of `botPythonPackages`.";
                };
              };
            };
          };
        };
      };
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion =
          cfg.passphraseFile == null || !(lib.hasPrefix "${builtins.storeDir}/" cfg.passphraseFile);
        message = "services.mcp-multiplayer.passphraseFile must not be in the Nix store (it is world-readable); give a path as a string, e.g. \"/run/secrets/mcp-multiplayer\".";
      }
      {
        assertion = cfg.passphraseFile == null || lib.hasPrefix "/" cfg.passphraseFile;
        message = "services.mcp-multiplayer.passphraseFile must be an absolute path.";
      }
      {
        assertion =
          cfg.signingKeyFile == null
          || (
            lib.hasPrefix "/" cfg.signingKeyFile && !(lib.hasPrefix "${builtins.storeDir}/" cfg.signingKeyFile)
          );
        message = "services.mcp-multiplayer.signingKeyFile must be an absolute path outside the Nix store (it is world-readable).";
      }
    ];

    # The daemon reads $CREDENTIALS_DIRECTORY/passphrase by default.
    services.mcp-multiplayer.settings = mkIf (cfg.passphraseFile != null) {
      auth.approval = "passphrase";
    };

    users.users.mcp-multiplayer = {
      isSystemUser = true;
      group = "mcp-multiplayer";
      home = stateDir;
      description = "mcp-multiplayer daemon";
    };
    users.groups.mcp-multiplayer = { };

    environment.systemPackages = [ cfg.package ];

    networking.firewall.allowedTCPPorts = mkIf cfg.openFirewall [ listenPort ];

    systemd.tmpfiles.settings.mcp-multiplayer = mkIf (!stateDirManaged) {
      ${stateDir}.d = {
        user = "mcp-multiplayer";
        group = "mcp-multiplayer";
        mode = "0700";
      };
    };

    systemd.services.mcp-multiplayer = {
      description = "mcp-multiplayer: shared MCP channels refereed by sandboxed bots";
      documentation = [
        "https://github.com/mcp-multiplayer/mcp-multiplayer/blob/main/docs/operations.md"
      ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      wantedBy = [ "multi-user.target" ];
      restartTriggers = [ configFile ];

      serviceConfig =
        hardening
        // {
          Type = "exec";
          ExecStart = "${lib.getExe cfg.package} serve --config ${configFile}";
          User = "mcp-multiplayer";
          Group = "mcp-multiplayer";
          LoadCredential = credentials;
          KillMode = "mixed";
          TimeoutStopSec = 30;
          Restart = "on-failure";
          RestartSec = 2;
          LimitNOFILE = 65536;
        }
        // (
          if stateDirManaged then
            {
              StateDirectory = lib.removePrefix "/var/lib/" stateDir;
              StateDirectoryMode = "0700";
            }
          else
            { ReadWritePaths = [ stateDir ]; }
        );
    };
  };

  meta = {
    # Placeholder until the module has named maintainers in nixpkgs.
    maintainers = [ ];
    doc = ./module.md;
  };
}
