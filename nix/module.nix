# NixOS module: `services.mcp-multiplayer.enable = true;`
#
# Renders `settings` to TOML, runs the daemon as a dedicated system user with
# the same hardening as systemd/mcp-multiplayer.service (nix/ci checks that the
# two agree key by key, and that neither forbids a syscall or namespace the
# sandbox-runner needs), and hands the approval passphrase over as a systemd
# credential so that it never enters the Nix store.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.mcp-multiplayer;
  format = pkgs.formats.toml { };
  inherit (lib)
    mkIf
    mkOption
    mkEnableOption
    types
    ;

  stateDir = "/var/lib/mcp-multiplayer";
  port = lib.toInt (lib.last (lib.splitString ":" cfg.listen));

  # Module-derived settings; anything in cfg.settings overrides them.
  generated = {
    inherit (cfg) listen;
    state_dir = stateDir;
    bots = {
      python = "${cfg.package.python3}/bin/python3";
      python_path = cfg.package.botPythonPath cfg.botPythonPackages;
    };
  }
  // lib.optionalAttrs (cfg.publicUrl != null) { public_url = cfg.publicUrl; }
  // lib.optionalAttrs (cfg.passphraseFile != null) {
    # The daemon reads $CREDENTIALS_DIRECTORY/passphrase by default.
    auth.approval = "passphrase";
  };
  configFile = format.generate "mcp-multiplayer.toml" (lib.recursiveUpdate generated cfg.settings);

  # Public unicast ranges: IPv4 without 0/8, 10/8, 100.64/10, 127/8,
  # 169.254/16, 172.16/12, 192.168/16 and 224/3; IPv6 global unicast.
  # Same list as systemd/mcp-multiplayer.service.
  publicRanges = [
    "1.0.0.0/8" "2.0.0.0/7" "4.0.0.0/6" "8.0.0.0/7" "11.0.0.0/8" "12.0.0.0/6" "16.0.0.0/4"
    "32.0.0.0/3" "64.0.0.0/3" "96.0.0.0/6" "100.0.0.0/10" "100.128.0.0/9" "101.0.0.0/8"
    "102.0.0.0/7" "104.0.0.0/5" "112.0.0.0/5" "120.0.0.0/6" "124.0.0.0/7" "126.0.0.0/8"
    "128.0.0.0/3" "160.0.0.0/5" "168.0.0.0/8" "169.0.0.0/9" "169.128.0.0/10" "169.192.0.0/11"
    "169.224.0.0/12" "169.240.0.0/13" "169.248.0.0/14" "169.252.0.0/15" "169.255.0.0/16"
    "170.0.0.0/7" "172.0.0.0/12" "172.32.0.0/11" "172.64.0.0/10" "172.128.0.0/9" "173.0.0.0/8"
    "174.0.0.0/7" "176.0.0.0/4" "192.0.0.0/9" "192.128.0.0/11" "192.160.0.0/13" "192.169.0.0/16"
    "192.170.0.0/15" "192.172.0.0/14" "192.176.0.0/12" "192.192.0.0/10" "193.0.0.0/8"
    "194.0.0.0/7" "196.0.0.0/6" "200.0.0.0/5" "208.0.0.0/4"
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
  options.services.mcp-multiplayer = {
    enable = mkEnableOption "mcp-multiplayer, shared MCP channels refereed by sandboxed bots";

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage ./package.nix { }";
      description = "The mcp-multiplayer package (daemon, sandbox-runner, builtin bots).";
    };

    listen = mkOption {
      type = types.str;
      default = "127.0.0.1:8201";
      description = ''
        Address and port to bind. Keep it on loopback behind a TLS reverse
        proxy; off loopback the daemon requires passphrase approval.
      '';
    };

    publicUrl = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "https://mcp.example.com";
      description = ''
        The origin clients use (no path). It becomes the OAuth issuer and an
        accepted Host/Origin. Required behind a reverse proxy.
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

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the `listen` port in the firewall (only useful off loopback).";
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
      inherit (format) type;
      default = { };
      example = {
        log_format = "json";
        bots.max_parallel_hooks = 4;
      };
      description = ''
        Daemon configuration (see systemd/config.toml in the source for every
        key). Merged over the values the options above generate.
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.passphraseFile == null || !(lib.hasPrefix "${builtins.storeDir}/" cfg.passphraseFile);
        message = "services.mcp-multiplayer.passphraseFile must not be in the Nix store (it is world-readable); give a path as a string, e.g. \"/run/secrets/mcp-multiplayer\".";
      }
      {
        assertion = cfg.passphraseFile == null || lib.hasPrefix "/" cfg.passphraseFile;
        message = "services.mcp-multiplayer.passphraseFile must be an absolute path.";
      }
    ];

    users.users.mcp-multiplayer = {
      isSystemUser = true;
      group = "mcp-multiplayer";
      home = stateDir;
      description = "mcp-multiplayer daemon";
    };
    users.groups.mcp-multiplayer = { };

    environment.systemPackages = [ cfg.package ];

    networking.firewall.allowedTCPPorts = mkIf cfg.openFirewall [ port ];

    systemd.services.mcp-multiplayer = {
      description = "mcp-multiplayer: shared MCP channels refereed by sandboxed bots";
      documentation = [ "https://github.com/mcp-multiplayer/mcp-multiplayer/blob/main/docs/operations.md" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      wantedBy = [ "multi-user.target" ];
      restartTriggers = [ configFile ];

      serviceConfig = hardening // {
        Type = "exec";
        ExecStart = "${lib.getExe cfg.package} serve --config ${configFile}";
        User = "mcp-multiplayer";
        Group = "mcp-multiplayer";
        StateDirectory = "mcp-multiplayer";
        StateDirectoryMode = "0700";
        LoadCredential = lib.optional (cfg.passphraseFile != null) "passphrase:${cfg.passphraseFile}";
        KillMode = "mixed";
        TimeoutStopSec = 30;
        Restart = "on-failure";
        RestartSec = 2;
        LimitNOFILE = 65536;
      };
    };
  };
}
