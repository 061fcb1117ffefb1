# Evaluate nix/module.nix offline (against ./lib.nix and ./pkgs.nix) and
# return what the checks need as JSON:
#   unit     - the rendered mcp-multiplayer.service text
#   settings - the attribute set rendered to the daemon's config.toml
#   execStart, firewallPorts, user - for assertions in the test step
# `userConfig` is the services.mcp-multiplayer configuration to evaluate.
{
  userConfig ? {
    enable = true;
    publicUrl = "https://mcp.example.com";
    passphraseFile = "/run/keys/mcp-multiplayer-passphrase";
    settings.log_format = "json";
  },
}:
let
  lib = import ./lib.nix;
  pkgs = import ./pkgs.nix { inherit lib; };
  evaluated = lib.evalModule {
    module = import ../module.nix;
    inherit pkgs;
    userConfig.services.mcp-multiplayer = userConfig;
  };
  out = evaluated.output;
  svc = out.systemd.services.mcp-multiplayer;
in
{
  unit = lib.renderUnit svc;
  settings = (builtins.head svc.restartTriggers).value;
  execStart = svc.serviceConfig.ExecStart;
  firewallPorts = out.networking.firewall.allowedTCPPorts or [ ];
  user = out.users.users.mcp-multiplayer;
}
